/* guest_report.h - the host side of the guest's report registers
 * (guest/protocol.h): a pure state machine fed with port writes.
 * Any backend whose guest speaks the protocol can use it. */
#ifndef FERRY_VMM_GUEST_REPORT_H
#define FERRY_VMM_GUEST_REPORT_H

#include <stdbool.h>
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

#endif
