/* guest_report.h - the host side of the guest's report registers
 * (guest/protocol.h): a pure state machine fed with port writes.
 * Any backend whose guest speaks the protocol can use it. */
#ifndef FERRY_VMM_GUEST_REPORT_H
#define FERRY_VMM_GUEST_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest/protocol.h"

typedef struct {
    /* as reported */
    uint32_t heartbeat;
    uint32_t status;
    /* the guest's 32-bit counters wrap; these are extended to 64 bits */
    uint32_t raw_verified, raw_errors, raw_sweeps, raw_written;
    uint64_t verified, errors, sweeps, written;
    uint64_t info[GUEST_INFO_SLOTS];
    uint32_t info_valid;
    uint32_t info_key, info_lo;  /* staged by INFO_KEY / INFO_LO */
    uint32_t mailbox;            /* host -> guest */
    uint32_t notice_ack;         /* NOTICE_ACK: the last notice the guest acted on */
    /* host side, not saved with the VM */
    uint64_t heartbeats_seen;
    int64_t last_heartbeat_ns;
} guest_report_t;

/* True if port belongs to the report block. */
bool guest_report_owns(uint16_t port);
/* A 32-bit OUT to a report port. Writes of other sizes are ignored. */
void guest_report_out(guest_report_t *r, uint16_t port, uint32_t value, int64_t now_ns);
/* A 32-bit IN from a report port. */
uint32_t guest_report_in(const guest_report_t *r, uint16_t port);

/* The registers a saved VM carries (the host-side fields are not saved), in
 * host byte order: heartbeat, status, the four raw counters (u32 each), the
 * four extended counters (u64), the info slots (u64), info_valid, info_key,
 * info_lo, mailbox, notice_ack (u32). Used by every backend's state format.
 * The first form (GUEST_REPORT_V1_BYTES) ended at mailbox; it decodes with
 * notice_ack 0, so states saved by older builds still restore. */
#define GUEST_REPORT_V1_BYTES (6u * 4 + 4u * 8 + GUEST_INFO_SLOTS * 8u + 4u * 4)
#define GUEST_REPORT_ENCODED_BYTES (GUEST_REPORT_V1_BYTES + 4u)
void guest_report_encode(const guest_report_t *r, uint8_t out[GUEST_REPORT_ENCODED_BYTES]);
/* Decodes len bytes: GUEST_REPORT_ENCODED_BYTES, or GUEST_REPORT_V1_BYTES
 * for the first form. 0, or -1 with the reason in err; host-side fields
 * come out zero. */
int guest_report_decode(const uint8_t *in, size_t len, guest_report_t *r, char *err, size_t errlen);

#endif
