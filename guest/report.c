/* report.c - the guest side of the port protocol (guest/protocol.h). */
#include "kernel.h"
#include "protocol.h"

void report_info(uint32_t key, uint64_t value)
{
    outl(GUEST_PORT_INFO_KEY, key);
    outl(GUEST_PORT_INFO_LO, (uint32_t)value);
    outl(GUEST_PORT_INFO_HI, (uint32_t)(value >> 32));  /* commits */
}

void report_status(uint32_t status)
{
    state.status = status;
    outl(GUEST_PORT_STATUS, status);
}

/* Counters first, heartbeat last: a reader that sees heartbeat n also sees
 * the counters of heartbeat n. */
void report_heartbeat(void)
{
    state.heartbeat++;
    outl(GUEST_PORT_STATUS, state.status);
    outl(GUEST_PORT_VERIFIED, (uint32_t)state.pages_verified);
    outl(GUEST_PORT_ERRORS, (uint32_t)state.errors);
    outl(GUEST_PORT_SWEEPS, (uint32_t)state.sweeps);
    outl(GUEST_PORT_WRITTEN, (uint32_t)state.pages_written);
    outl(GUEST_PORT_HEARTBEAT, state.heartbeat);
}
