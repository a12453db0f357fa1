/* proc_state.h - the saved state of a process-backend VM and its byte format.
 *
 * Pure: encoding and decoding only. A process guest keeps its "registers" in
 * guest memory (the boot and state pages, vmm/proc_protocol.h), so this holds
 * only what lives outside memory: the VM's shape, where the guest process maps
 * memory, the guest clock, whether the profile has started, and the report
 * registers the VMM keeps for the guest. The decoder takes bytes from the
 * network and checks every field.
 *
 * Format, version 2, host byte order (x86-64 hosts), PROC_STATE_BYTES long:
 *
 *   u32 magic "FPRS" | u16 version | u16 zero | u32 total bytes | u32 zero
 *   u64 memory bytes | u32 vCPUs | u32 flags (bit 0: profile started)
 *   u64 base | u64 guest clock (ns)
 *   report registers (guest_report_encode)
 *
 * Version 2 added NOTICE_ACK to the report registers. The decoder still
 * reads version 1 (PROC_STATE_V1_BYTES long, NOTICE_ACK 0); the encoder
 * writes version 2 only. */
#ifndef FERRY_VMM_PROC_STATE_H
#define FERRY_VMM_PROC_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/guest_report.h"

#define PROC_STATE_MAGIC 0x53525046u  /* "FPRS" */
#define PROC_STATE_VERSION 2u
#define PROC_STATE_BYTES (16u + 32u + GUEST_REPORT_ENCODED_BYTES)
#define PROC_STATE_V1_BYTES (16u + 32u + GUEST_REPORT_V1_BYTES)

typedef struct {
    uint64_t memory_bytes;
    uint32_t vcpus;
    bool started;            /* the profile ran: a restore resumes its loop */
    uint64_t base;           /* guest-physical address of memfd offset 0 */
    uint64_t clock_ns;       /* the guest clock when saved (at most INT64_MAX) */
    guest_report_t report;   /* host-side fields are not saved */
} proc_state_t;

/* 0, or -ENOSPC if cap < PROC_STATE_BYTES. */
int proc_state_encode(const proc_state_t *s, uint8_t *buf, size_t cap, size_t *len);
/* 0, or -EINVAL with the reason (field and value) in err. */
int proc_state_decode(const uint8_t *buf, size_t len, proc_state_t *out, char *err, size_t errlen);

#endif
