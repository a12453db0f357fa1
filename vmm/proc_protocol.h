/* proc_protocol.h - what the process backend's two sides share: the parent
 * (vmm/proc.c, inside the VMM) and the guest process it forks
 * (vmm/proc_child.c running vmm/proc_guest.c). Internal to vmm/.
 *
 * Guest-physical addresses. The guest process maps guest memory at a fixed
 * virtual address `base` and its "physical" address of memfd offset x is
 * base + x, so that the workload kernel's code, which treats frame numbers as
 * addresses (gfn << 12), runs unchanged. base is 0 when the low part of the
 * address space is free (then addresses equal memfd offsets, as in the KVM
 * backend's low RAM); otherwise one of the other candidates below. A saved
 * state names its base and the restored guest maps memory there again.
 *
 * Memory layout, in pages of the memfd:
 *
 *     0 .. 255     unused (nothing is mapped below 1 MiB)
 *     256          boot page: the guest's config and layout, written once
 *     257          state page: everything the profile loop changes
 *     258 ..       self-check table, 8 bytes per frame of [0, base + size)
 *     then         the arena the profile writes
 *
 * Messages go over a SOCK_SEQPACKET socketpair, one datagram each: a header
 * and up to PROC_MSG_MAX_PAYLOAD bytes. */
#ifndef FERRY_VMM_PROC_PROTOCOL_H
#define FERRY_VMM_PROC_PROTOCOL_H

#include <stdbool.h>
#include <stdint.h>

#include "guest/args.h"

#define PROC_PAGE_SIZE 4096ull
#define PROC_LOW_BYTES (1ull << 20)     /* the unmapped low megabyte */
#define PROC_BOOT_PAGE 256ull
#define PROC_STATE_PAGE 257ull
#define PROC_TABLE_PAGE 258ull
#define PROC_TSC_HZ 1000000000ull      /* the guest's "TSC" counts nanoseconds */

/* Where guest memory may sit in the guest process, in order of preference:
 * addresses equal to memfd offsets; 64 GiB up (free under valgrind, whose
 * client image sits near 1 MiB); 32 TiB up (free under ASan, whose shadow
 * covers 2 GiB .. 16 TiB). */
#define PROC_BASE_COUNT 3
static inline uint64_t proc_base_candidate(unsigned i)
{
    static const uint64_t bases[PROC_BASE_COUNT] = {0, 64ull << 30, 32ull << 40};
    return i < PROC_BASE_COUNT ? bases[i] : UINT64_MAX;
}
static inline bool proc_base_known(uint64_t base)
{
    for (unsigned i = 0; i < PROC_BASE_COUNT; i++)
        if (proc_base_candidate(i) == base)
            return true;
    return false;
}

/* One shared page, mapped in both processes. */
typedef struct {
    uint32_t throttle_percent;  /* the parent writes, the guest reads (atomically) */
} proc_shared_t;

enum {
    PROC_MSG_MAP = 1,   /* parent -> guest: proc_map_t */
    PROC_MSG_READY,     /* guest -> parent: proc_ready_t, the userfaultfd attached (SCM_RIGHTS) */
    PROC_MSG_FAILED,    /* guest -> parent: why setting up failed (text); the guest exits */
    PROC_MSG_GO,        /* parent -> guest: proc_go_t */
    PROC_MSG_OUT,       /* guest -> parent: port writes, proc_port_write_t each, in order */
    PROC_MSG_IN,        /* guest -> parent: a uint32_t port; answered by PROC_MSG_IN_VALUE */
    PROC_MSG_IN_VALUE,  /* parent -> guest: uint32_t */
    PROC_MSG_CONSOLE,   /* guest -> parent: console bytes */
    PROC_MSG_STOPPED,   /* guest -> parent: the guest stopped the machine (text); it exits */
};

#define PROC_MSG_MAX_PAYLOAD 4096u
#define PROC_MSG_MAX_WRITES (PROC_MSG_MAX_PAYLOAD / sizeof(proc_port_write_t))

typedef struct {
    uint32_t kind;
    uint32_t bytes;  /* payload bytes that follow */
} proc_msg_header_t;

typedef struct {
    uint64_t base;      /* where to map memory; ignored if any_base */
    uint32_t any_base;  /* try the candidates in order */
    uint32_t boot;      /* lay out a fresh guest (else memory holds one already) */
} proc_map_t;

typedef struct {
    uint64_t base;           /* where memory was mapped */
    uint32_t has_uffd;       /* a userfaultfd registered for async WP is attached */
    uint32_t pad;
    char no_uffd_why[160];   /* else why not */
} proc_ready_t;

typedef struct {
    int64_t clock_offset;  /* guest clock = CLOCK_MONOTONIC ns + offset */
    uint32_t resume;       /* enter the profile loop with the state in memory */
    uint32_t pad;
} proc_go_t;

typedef struct {
    uint32_t port;
    uint32_t value;
} proc_port_write_t;

/* What the forked guest process starts from (a copy, made by fork). */
typedef struct {
    int sock;                  /* guest end of the socketpair */
    int memfd;                 /* guest memory */
    proc_shared_t *shared;
    uint64_t memory_bytes;
    guest_args_t args;
    char name[64];
} proc_child_setup_t;

/* vmm/proc_child.c: the guest process's main. Never returns. */
__attribute__((noreturn)) void proc_child_main(const proc_child_setup_t *setup);

#endif
