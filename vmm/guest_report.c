/* guest_report.c - decodes the guest's report port writes. */
#include "vmm/guest_report.h"

#include <stdio.h>
#include <string.h>

bool guest_report_owns(uint16_t port)
{
    return port >= GUEST_PORT_BASE && port < GUEST_PORT_END;
}

static void extend(uint32_t *raw, uint64_t *total, uint32_t value)
{
    *total += (uint32_t)(value - *raw);
    *raw = value;
}

void guest_report_out(guest_report_t *r, uint16_t port, uint32_t value, int64_t now_ns)
{
    switch (port) {
    case GUEST_PORT_HEARTBEAT:
        r->heartbeat = value;
        r->heartbeats_seen++;
        r->last_heartbeat_ns = now_ns;
        break;
    case GUEST_PORT_STATUS: r->status = value; break;
    case GUEST_PORT_VERIFIED: extend(&r->raw_verified, &r->verified, value); break;
    case GUEST_PORT_ERRORS: extend(&r->raw_errors, &r->errors, value); break;
    case GUEST_PORT_SWEEPS: extend(&r->raw_sweeps, &r->sweeps, value); break;
    case GUEST_PORT_WRITTEN: extend(&r->raw_written, &r->written, value); break;
    case GUEST_PORT_INFO_KEY: r->info_key = value; break;
    case GUEST_PORT_INFO_LO: r->info_lo = value; break;
    case GUEST_PORT_INFO_HI:
        if (r->info_key < GUEST_INFO_SLOTS) {
            r->info[r->info_key] = (uint64_t)value << 32 | r->info_lo;
            r->info_valid |= 1u << r->info_key;
        }
        break;
    case GUEST_PORT_NOTICE_ACK: r->notice_ack = value; break;
    default: break;  /* read-only or unassigned: ignored */
    }
}

uint32_t guest_report_in(const guest_report_t *r, uint16_t port)
{
    return port == GUEST_PORT_MAILBOX ? r->mailbox : UINT32_MAX;
}

/* --- saved form ----------------------------------------------------------------- */

static uint8_t *put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); return p + 4; }
static uint8_t *put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); return p + 8; }
static const uint8_t *get32(const uint8_t *p, uint32_t *v) { memcpy(v, p, 4); return p + 4; }
static const uint8_t *get64(const uint8_t *p, uint64_t *v) { memcpy(v, p, 8); return p + 8; }

void guest_report_encode(const guest_report_t *r, uint8_t out[GUEST_REPORT_ENCODED_BYTES])
{
    uint8_t *p = out;
    p = put32(p, r->heartbeat);
    p = put32(p, r->status);
    p = put32(p, r->raw_verified);
    p = put32(p, r->raw_errors);
    p = put32(p, r->raw_sweeps);
    p = put32(p, r->raw_written);
    p = put64(p, r->verified);
    p = put64(p, r->errors);
    p = put64(p, r->sweeps);
    p = put64(p, r->written);
    for (unsigned i = 0; i < GUEST_INFO_SLOTS; i++)
        p = put64(p, r->info[i]);
    p = put32(p, r->info_valid);
    p = put32(p, r->info_key);
    p = put32(p, r->info_lo);
    p = put32(p, r->mailbox);
    put32(p, r->notice_ack);
}

int guest_report_decode(const uint8_t *in, size_t len, guest_report_t *r, char *err, size_t errlen)
{
    if (len != GUEST_REPORT_ENCODED_BYTES && len != GUEST_REPORT_V1_BYTES) {
        snprintf(err, errlen, "report registers are %zu bytes, expected %u (or %u)", len,
                 GUEST_REPORT_ENCODED_BYTES, GUEST_REPORT_V1_BYTES);
        return -1;
    }
    guest_report_t d = {0};
    const uint8_t *p = in;
    p = get32(p, &d.heartbeat);
    p = get32(p, &d.status);
    p = get32(p, &d.raw_verified);
    p = get32(p, &d.raw_errors);
    p = get32(p, &d.raw_sweeps);
    p = get32(p, &d.raw_written);
    p = get64(p, &d.verified);
    p = get64(p, &d.errors);
    p = get64(p, &d.sweeps);
    p = get64(p, &d.written);
    for (unsigned i = 0; i < GUEST_INFO_SLOTS; i++)
        p = get64(p, &d.info[i]);
    p = get32(p, &d.info_valid);
    p = get32(p, &d.info_key);
    p = get32(p, &d.info_lo);
    p = get32(p, &d.mailbox);
    if (len == GUEST_REPORT_ENCODED_BYTES)
        get32(p, &d.notice_ack);
    if (d.info_valid >> GUEST_INFO_SLOTS) {
        snprintf(err, errlen, "info mask 0x%x names unknown slots", d.info_valid);
        return -1;
    }
    *r = d;
    return 0;
}
