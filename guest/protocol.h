/* protocol.h - the contract between the workload kernel (guest/) and the VMM.
 *
 * Shared by both sides: the guest includes it freestanding, the VMM includes
 * it from vmm/. Only constants live here. docs/guest.md explains the protocol.
 *
 * All registers are 32-bit port I/O (OUT/IN with a 32-bit operand). A VMM
 * that does not know a port ignores OUTs and returns all ones for INs, which
 * is what QEMU does: the guest then just runs without a reader. */
#ifndef FERRY_GUEST_PROTOCOL_H
#define FERRY_GUEST_PROTOCOL_H

/* Serial console: a 16550 UART at COM1. The guest only transmits. */
#define GUEST_PORT_COM1          0x3f8

/* The report block: base 0x500, eight consecutive 32-bit registers. */
#define GUEST_PORT_BASE          0x500
#define GUEST_PORT_HEARTBEAT     0x500  /* OUT: guest heartbeat counter (wraps); every write is one heartbeat */
#define GUEST_PORT_STATUS        0x504  /* OUT: GUEST_STATUS_* */
#define GUEST_PORT_VERIFIED      0x508  /* OUT: pages verified by sweeps, cumulative, wraps at 2^32 */
#define GUEST_PORT_ERRORS        0x50c  /* OUT: self-check errors, cumulative, wraps at 2^32 */
#define GUEST_PORT_SWEEPS        0x510  /* OUT: completed verification sweeps, cumulative */
#define GUEST_PORT_WRITTEN       0x514  /* OUT: pages written by the profile, cumulative, wraps */
#define GUEST_PORT_INFO_KEY      0x518  /* OUT: selects an info slot (GUEST_INFO_*) */
#define GUEST_PORT_INFO_LO       0x51c  /* OUT: low 32 bits of the selected slot's value (staged) */
#define GUEST_PORT_INFO_HI       0x520  /* OUT: high 32 bits; this write commits lo+hi to the slot */
#define GUEST_PORT_MAILBOX       0x524  /* IN: the last value the host posted (0 if none) */
#define GUEST_PORT_NOTICE_ACK    0x528  /* OUT: the notice (whole mailbox value) the guest acted on */
#define GUEST_PORT_END           0x52c  /* first port past the block */

/* Notices: mailbox values whose top byte is a notice tag; the low 24 bits
 * are the host's sequence number. Any other value is a test round (test
 * profile), so test rounds must stay below 0xA5000000. Every profile polls
 * the mailbox, prints a line for each new notice and acknowledges it by
 * writing the mailbox value to NOTICE_ACK (docs/guest.md, "Migration
 * notices"). */
#define GUEST_NOTICE_TAG_SHIFT   24
#define GUEST_NOTICE_SEQ_MASK    0x00ffffffu
#define GUEST_NOTICE_MIGRATING   0xa5u  /* tag: the host is about to migrate this VM */
#define GUEST_NOTICE_MIGRATED    0xa6u  /* tag: that migration finished */

/* Guest status. The guest writes it on every change and with every heartbeat. */
#define GUEST_STATUS_BOOTING     0u  /* reset value: no report yet */
#define GUEST_STATUS_RUNNING     1u  /* profile running, self-check clean */
#define GUEST_STATUS_CHECK_FAILED 2u /* running, but the self-check found errors */
#define GUEST_STATUS_BAD_CMDLINE 3u  /* command line rejected; the guest halts (reason on the console) */
#define GUEST_STATUS_NO_MEMORY   4u  /* memory map unusable or too small; the guest halts */
#define GUEST_STATUS_FAULT       5u  /* CPU exception; the guest halts (vector and RIP on the console) */

/* Info slots: 64-bit values the guest publishes once (layout) or per test
 * round. The VMM keeps the last value of each slot. */
#define GUEST_INFO_PROFILE       0u  /* GUEST_PROFILE_* */
#define GUEST_INFO_TSC_KHZ       1u  /* TSC frequency the guest paces itself with */
#define GUEST_INFO_MEMORY_BYTES  2u  /* RAM the guest found in its memory map */
#define GUEST_INFO_ARENA_PAGES   3u  /* pages the profile may write */
#define GUEST_INFO_STATE_GPA     4u  /* the one page of mutable kernel state */
#define GUEST_INFO_STACK_GPA     5u  /* the one stack page in use (top of the stack) */
#define GUEST_INFO_TABLE_GPA     6u  /* self-check table: 8 bytes per guest frame number */
#define GUEST_INFO_TEST_FIRST_GFN 7u /* test profile: first frame written in the last round */
#define GUEST_INFO_TEST_STRIDE   8u  /* test profile: frame stride of the last round */
#define GUEST_INFO_TEST_COUNT    9u  /* test profile: frames written in the last round */
#define GUEST_INFO_TEST_ROUND   10u  /* test profile: last completed round; written last */
#define GUEST_INFO_SLOTS        16u

/* Profiles (command line "profile=NAME"). */
#define GUEST_PROFILE_IDLE       0u
#define GUEST_PROFILE_WEB        1u
#define GUEST_PROFILE_DB         2u
#define GUEST_PROFILE_STREAM     3u
#define GUEST_PROFILE_TEST       4u

/* Self-check table entry, one per guest frame number (gfn = gpa >> 12):
 * struct { uint32_t seq; uint32_t sum; }. seq 0 means "never written". */
#define GUEST_TABLE_ENTRY_BYTES  8u

#endif
