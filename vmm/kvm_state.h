/* kvm_state.h - the saved state of a KVM VM (vCPUs, in-kernel irqchip,
 * clock, ferry's own devices) and its byte format.
 *
 * Pure: encoding and decoding only, no ioctls (vmm/kvm_vcpu.c applies it).
 * The decoder takes bytes from the network and trusts none of them: every
 * record length, count, index, MSR number and flag word is checked, and it
 * never reads past len.
 *
 * Format (host byte order; x86-64 hosts only), version 2:
 *
 *   header  u32 magic "FVMS" | u16 version | u16 record count | u32 total bytes | u32 zero
 *   record  u16 type | u16 index | u32 payload bytes | payload | zero pad to 8 bytes
 *
 * The first record is KVM_REC_MACHINE. Vcpu records carry the vCPU index;
 * each (type, index) appears exactly once and all of them are required.
 *
 * Version 2 added NOTICE_ACK to the report registers in the devices record
 * (guest_report.h). The decoder still reads version 1 (NOTICE_ACK comes out
 * 0), so a VM saved by an older build restores here; the encoder writes
 * version 2 only. */
#ifndef FERRY_VMM_KVM_STATE_H
#define FERRY_VMM_KVM_STATE_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/guest_report.h"

#define KVM_STATE_MAGIC 0x534d5646u  /* "FVMS" */
#define KVM_STATE_VERSION 2u
#define KVM_STATE_OLDEST_VERSION 1u  /* the oldest version the decoder reads */
#define KVM_STATE_MAX_MSRS 48u
#define KVM_STATE_MAX_XSAVE 16384u
#define KVM_STATE_MIN_XSAVE 4096u

enum {
    KVM_REC_MACHINE = 1,   /* memory bytes, vcpus */
    KVM_REC_DEVICES = 2,   /* UART registers, guest report registers */
    KVM_REC_CLOCK = 3,
    KVM_REC_PIC_MASTER = 4,
    KVM_REC_PIC_SLAVE = 5,
    KVM_REC_IOAPIC = 6,
    KVM_REC_REGS = 16,     /* per vCPU from here on */
    KVM_REC_SREGS,
    KVM_REC_XSAVE,
    KVM_REC_XCRS,
    KVM_REC_MSRS,
    KVM_REC_LAPIC,
    KVM_REC_EVENTS,
    KVM_REC_MP_STATE,
    KVM_REC_DEBUGREGS,
    KVM_REC_TSC_KHZ,
    KVM_REC_LAST = KVM_REC_TSC_KHZ,
};

/* The 16550 registers the guest can read back. */
typedef struct {
    uint8_t ier, lcr, mcr, scr, dll, dlm;
} uart_regs_t;

typedef struct {
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    uint32_t xsave_bytes;
    uint8_t xsave[KVM_STATE_MAX_XSAVE];
    struct kvm_xcrs xcrs;
    uint32_t msr_count;
    struct kvm_msr_entry msrs[KVM_STATE_MAX_MSRS];
    struct kvm_lapic_state lapic;
    struct kvm_vcpu_events events;
    struct kvm_mp_state mp_state;
    struct kvm_debugregs debugregs;
    uint32_t tsc_khz;
} kvm_vcpu_state_t;

typedef struct {
    uint64_t memory_bytes;
    uint32_t vcpu_count;
    uart_regs_t uart;
    guest_report_t report;          /* host-side fields are not saved */
    struct kvm_clock_data clock;
    struct kvm_irqchip pic_master, pic_slave, ioapic;
    kvm_vcpu_state_t *vcpus;        /* vcpu_count of them */
} kvm_state_t;

/* Allocates s->vcpus for n vCPUs (zeroed). 0 or -ENOMEM. */
int kvm_state_alloc(kvm_state_t *s, uint32_t n);
void kvm_state_free(kvm_state_t *s);

/* The MSRs a vCPU's state includes (those the host also supports). */
extern const uint32_t kvm_state_msr_indices[];
extern const unsigned kvm_state_msr_index_count;

/* Bytes kvm_state_encode will need. */
size_t kvm_state_encoded_size(const kvm_state_t *s);
/* 0, or -ENOSPC if cap is too small. */
int kvm_state_encode(const kvm_state_t *s, uint8_t *buf, size_t cap, size_t *len);
/* 0, or -EINVAL with the reason (record and field) in err. On success the
 * caller owns out (kvm_state_free); on failure nothing is allocated. */
int kvm_state_decode(const uint8_t *buf, size_t len, kvm_state_t *out, char *err, size_t errlen);

#endif
