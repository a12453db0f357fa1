/* guest_report.c - decodes the guest's report port writes. */
#include "vmm/guest_report.h"

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
    default: break;  /* read-only or unassigned: ignored */
    }
}

uint32_t guest_report_in(const guest_report_t *r, uint16_t port)
{
    return port == GUEST_PORT_MAILBOX ? r->mailbox : UINT32_MAX;
}
