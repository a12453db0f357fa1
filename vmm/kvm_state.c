/* kvm_state.c - encoder and bounded decoder of a KVM VM's saved state. */
#include "vmm/kvm_state.h"
#include "vmm/vm.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_BYTES 16u
#define RECORD_HEADER_BYTES 8u
#define DEVICE_BYTES (8u + GUEST_REPORT_ENCODED_BYTES)
#define DEVICE_BYTES_V1 (8u + GUEST_REPORT_V1_BYTES)  /* before NOTICE_ACK */
#define MACHINE_BYTES 24u

/* TSC first (the others may be relative to it), TSC deadline last (it needs
 * the LAPIC, restored before the MSRs, in TSC-deadline mode). */
const uint32_t kvm_state_msr_indices[] = {
    0x00000010, /* IA32_TSC */
    0x00000174, 0x00000175, 0x00000176, /* SYSENTER_CS/ESP/EIP */
    0x000001a0, /* IA32_MISC_ENABLE */
    0x00000277, /* IA32_PAT */
    0x000002ff, /* MTRR default type */
    0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, /* STAR LSTAR CSTAR SFMASK */
    0xc0000100, 0xc0000101, 0xc0000102, 0xc0000103, /* FS/GS/KERNEL_GS base, TSC_AUX */
    0x00000011, 0x00000012, /* kvmclock (old) wall clock, system time */
    0x4b564d00, 0x4b564d01, 0x4b564d02, 0x4b564d03, 0x4b564d04, /* kvmclock, async PF, steal, PV EOI */
    0x000006e0, /* IA32_TSC_DEADLINE */
};
const unsigned kvm_state_msr_index_count =
    sizeof kvm_state_msr_indices / sizeof kvm_state_msr_indices[0];

_Static_assert(sizeof kvm_state_msr_indices / sizeof kvm_state_msr_indices[0] <= KVM_STATE_MAX_MSRS,
               "MSR list larger than a record may hold");

int kvm_state_alloc(kvm_state_t *s, uint32_t n)
{
    s->vcpus = calloc(n ? n : 1, sizeof *s->vcpus);
    if (!s->vcpus)
        return -ENOMEM;
    s->vcpu_count = n;
    return 0;
}

void kvm_state_free(kvm_state_t *s)
{
    free(s->vcpus);
    s->vcpus = NULL;
    s->vcpu_count = 0;
}

/* --- writer ------------------------------------------------------------------ */

typedef struct {
    uint8_t *buf;
    size_t cap, len;
    bool overflow;
    uint16_t records;
} writer_t;

/* With buf NULL the writer only counts. */
static void put(writer_t *w, const void *p, size_t n)
{
    if (!w->buf) {
        w->len += n;
        return;
    }
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = true;
        return;
    }
    if (n)
        memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void put_u16(writer_t *w, uint16_t v) { put(w, &v, 2); }
static void put_u32(writer_t *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(writer_t *w, uint64_t v) { put(w, &v, 8); }

static void pad8(writer_t *w)
{
    static const uint8_t zeros[8];
    put(w, zeros, (8 - w->len % 8) % 8);
}

static size_t record_begin(writer_t *w, uint16_t type, uint16_t index)
{
    w->records++;
    put_u16(w, type);
    put_u16(w, index);
    size_t at = w->len;
    put_u32(w, 0);  /* length, patched by record_end */
    return at;
}

static void record_end(writer_t *w, size_t length_at)
{
    if (w->buf && !w->overflow) {
        uint32_t n = (uint32_t)(w->len - length_at - 4);
        memcpy(w->buf + length_at, &n, 4);
    }
    pad8(w);
}

static void put_record(writer_t *w, uint16_t type, uint16_t index, const void *p, size_t n)
{
    size_t at = record_begin(w, type, index);
    put(w, p, n);
    record_end(w, at);
}

static void put_devices(writer_t *w, const kvm_state_t *s)
{
    size_t at = record_begin(w, KVM_REC_DEVICES, 0);
    const uart_regs_t *u = &s->uart;
    uint8_t uart[8] = {u->ier, u->lcr, u->mcr, u->scr, u->dll, u->dlm, 0, 0};
    put(w, uart, sizeof uart);
    uint8_t report[GUEST_REPORT_ENCODED_BYTES];
    guest_report_encode(&s->report, report);
    put(w, report, sizeof report);
    record_end(w, at);
}

static void put_vcpu(writer_t *w, const kvm_vcpu_state_t *v, uint16_t i)
{
    put_record(w, KVM_REC_REGS, i, &v->regs, sizeof v->regs);
    put_record(w, KVM_REC_SREGS, i, &v->sregs, sizeof v->sregs);
    put_record(w, KVM_REC_XSAVE, i, v->xsave, v->xsave_bytes);
    put_record(w, KVM_REC_XCRS, i, &v->xcrs, sizeof v->xcrs);
    size_t at = record_begin(w, KVM_REC_MSRS, i);
    put_u32(w, v->msr_count);
    put_u32(w, 0);
    put(w, v->msrs, v->msr_count * sizeof v->msrs[0]);
    record_end(w, at);
    put_record(w, KVM_REC_LAPIC, i, &v->lapic, sizeof v->lapic);
    put_record(w, KVM_REC_EVENTS, i, &v->events, sizeof v->events);
    put_record(w, KVM_REC_MP_STATE, i, &v->mp_state, sizeof v->mp_state);
    put_record(w, KVM_REC_DEBUGREGS, i, &v->debugregs, sizeof v->debugregs);
    uint32_t khz[2] = {v->tsc_khz, 0};
    put_record(w, KVM_REC_TSC_KHZ, i, khz, sizeof khz);
}

static void encode(writer_t *w, const kvm_state_t *s)
{
    put_u32(w, KVM_STATE_MAGIC);
    put_u16(w, KVM_STATE_VERSION);
    put_u16(w, 0);  /* record count, patched */
    put_u32(w, 0);  /* total, patched */
    put_u32(w, 0);

    size_t at = record_begin(w, KVM_REC_MACHINE, 0);
    put_u64(w, s->memory_bytes);
    put_u32(w, s->vcpu_count);
    put_u32(w, 0);
    put(w, "kvm\0\0\0\0\0", 8);
    record_end(w, at);
    put_devices(w, s);
    put_record(w, KVM_REC_CLOCK, 0, &s->clock, sizeof s->clock);
    put_record(w, KVM_REC_PIC_MASTER, 0, &s->pic_master, sizeof s->pic_master);
    put_record(w, KVM_REC_PIC_SLAVE, 0, &s->pic_slave, sizeof s->pic_slave);
    put_record(w, KVM_REC_IOAPIC, 0, &s->ioapic, sizeof s->ioapic);
    for (uint32_t i = 0; i < s->vcpu_count; i++)
        put_vcpu(w, &s->vcpus[i], (uint16_t)i);

    if (w->buf && !w->overflow) {
        uint32_t total = (uint32_t)w->len;
        memcpy(w->buf + 6, &w->records, 2);
        memcpy(w->buf + 8, &total, 4);
    }
}

size_t kvm_state_encoded_size(const kvm_state_t *s)
{
    writer_t w = {.buf = NULL, .cap = SIZE_MAX};  /* counting only */
    encode(&w, s);
    return w.len;
}

int kvm_state_encode(const kvm_state_t *s, uint8_t *buf, size_t cap, size_t *len)
{
    writer_t w = {.buf = buf, .cap = cap};
    encode(&w, s);
    if (w.overflow)
        return -ENOSPC;
    *len = w.len;
    return 0;
}

/* --- reader ------------------------------------------------------------------ */

#define BAD(...)                            \
    do {                                    \
        snprintf(err, errlen, __VA_ARGS__); \
        return -EINVAL;                     \
    } while (0)

static uint16_t get_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t get_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static const char *record_name(unsigned type)
{
    static const char *const names[] = {
        [KVM_REC_MACHINE] = "machine", [KVM_REC_DEVICES] = "devices", [KVM_REC_CLOCK] = "clock",
        [KVM_REC_PIC_MASTER] = "pic-master", [KVM_REC_PIC_SLAVE] = "pic-slave",
        [KVM_REC_IOAPIC] = "ioapic", [KVM_REC_REGS] = "regs", [KVM_REC_SREGS] = "sregs",
        [KVM_REC_XSAVE] = "xsave", [KVM_REC_XCRS] = "xcrs", [KVM_REC_MSRS] = "msrs",
        [KVM_REC_LAPIC] = "lapic", [KVM_REC_EVENTS] = "events", [KVM_REC_MP_STATE] = "mp-state",
        [KVM_REC_DEBUGREGS] = "debugregs", [KVM_REC_TSC_KHZ] = "tsc-khz",
    };
    return type < sizeof names / sizeof names[0] && names[type] ? names[type] : "unknown";
}

static bool msr_allowed(uint32_t index)
{
    for (unsigned i = 0; i < kvm_state_msr_index_count; i++)
        if (kvm_state_msr_indices[i] == index)
            return true;
    return false;
}

static bool all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

static int decode_machine(const uint8_t *p, uint32_t n, kvm_state_t *out, char *err, size_t errlen)
{
    if (n != MACHINE_BYTES)
        BAD("vm state: machine record is %u bytes, expected %u", n, MACHINE_BYTES);
    uint64_t mem = get_u64(p);
    uint32_t vcpus = get_u32(p + 8);
    if (mem < VM_MIN_MEMORY || mem > VM_MAX_MEMORY || mem % (1u << 20))
        BAD("vm state: memory size %llu bytes is not a valid VM size", (unsigned long long)mem);
    if (vcpus < 1 || vcpus > VM_MAX_VCPUS)
        BAD("vm state: %u vCPUs (valid: 1..%d)", vcpus, VM_MAX_VCPUS);
    if (get_u32(p + 12) != 0 || memcmp(p + 16, "kvm\0\0\0\0\0", 8) != 0)
        BAD("vm state: not a kvm backend state");
    out->memory_bytes = mem;
    if (kvm_state_alloc(out, vcpus) < 0)
        BAD("vm state: out of memory for %u vCPUs", vcpus);
    return 0;
}

static int decode_devices(const uint8_t *p, uint32_t n, unsigned version, kvm_state_t *out,
                          char *err, size_t errlen)
{
    uint32_t want = version == 1 ? DEVICE_BYTES_V1 : DEVICE_BYTES;
    if (n != want)
        BAD("vm state: devices record is %u bytes, expected %u (version %u)", n, want, version);
    out->uart = (uart_regs_t){p[0], p[1], p[2], p[3], p[4], p[5]};
    if (p[6] || p[7])
        BAD("vm state: devices record: nonzero padding");
    char why[96];
    if (guest_report_decode(p + 8, n - 8, &out->report, why, sizeof why) < 0)
        BAD("vm state: devices record: %s", why);
    return 0;
}

static int decode_irqchip(const uint8_t *p, uint32_t n, unsigned type, struct kvm_irqchip *chip,
                          char *err, size_t errlen)
{
    if (n != sizeof *chip)
        BAD("vm state: %s record is %u bytes, expected %zu", record_name(type), n, sizeof *chip);
    memcpy(chip, p, sizeof *chip);
    uint32_t want = type == KVM_REC_PIC_MASTER ? KVM_IRQCHIP_PIC_MASTER
                    : type == KVM_REC_PIC_SLAVE ? KVM_IRQCHIP_PIC_SLAVE
                                                : KVM_IRQCHIP_IOAPIC;
    if (chip->chip_id != want)
        BAD("vm state: %s record holds chip %u", record_name(type), chip->chip_id);
    return 0;
}

#define EXACT(type, field)                                                               \
    do {                                                                                 \
        if (n != sizeof(field))                                                          \
            BAD("vm state: vCPU %u %s record is %u bytes, expected %zu", index,           \
                record_name(type), n, sizeof(field));                                    \
        memcpy(&(field), p, sizeof(field));                                              \
    } while (0)

static int decode_vcpu_record(unsigned type, unsigned index, const uint8_t *p, uint32_t n,
                              kvm_vcpu_state_t *v, char *err, size_t errlen)
{
    switch (type) {
    case KVM_REC_REGS: EXACT(type, v->regs); break;
    case KVM_REC_SREGS: EXACT(type, v->sregs); break;
    case KVM_REC_XSAVE:
        if (n < KVM_STATE_MIN_XSAVE || n > KVM_STATE_MAX_XSAVE || n % 64)
            BAD("vm state: vCPU %u xsave record is %u bytes (valid: %u..%u, multiple of 64)",
                index, n, KVM_STATE_MIN_XSAVE, KVM_STATE_MAX_XSAVE);
        memcpy(v->xsave, p, n);
        v->xsave_bytes = n;
        break;
    case KVM_REC_XCRS:
        EXACT(type, v->xcrs);
        if (v->xcrs.nr_xcrs > KVM_MAX_XCRS || v->xcrs.flags)
            BAD("vm state: vCPU %u xcrs: %u registers, flags 0x%x", index, v->xcrs.nr_xcrs,
                v->xcrs.flags);
        break;
    case KVM_REC_MSRS: {
        if (n < 8)
            BAD("vm state: vCPU %u msrs record is %u bytes", index, n);
        uint32_t count = get_u32(p);
        if (count > KVM_STATE_MAX_MSRS || get_u32(p + 4) != 0 ||
            n != 8 + count * sizeof v->msrs[0])
            BAD("vm state: vCPU %u msrs record: %u entries in %u bytes", index, count, n);
        memcpy(v->msrs, p + 8, count * sizeof v->msrs[0]);
        v->msr_count = count;
        for (uint32_t i = 0; i < count; i++) {
            if (!msr_allowed(v->msrs[i].index) || v->msrs[i].reserved)
                BAD("vm state: vCPU %u msrs: MSR 0x%x is not one ferry saves", index,
                    v->msrs[i].index);
            for (uint32_t j = 0; j < i; j++)
                if (v->msrs[j].index == v->msrs[i].index)
                    BAD("vm state: vCPU %u msrs: MSR 0x%x twice", index, v->msrs[i].index);
        }
        break;
    }
    case KVM_REC_LAPIC: EXACT(type, v->lapic); break;
    case KVM_REC_EVENTS: {
        EXACT(type, v->events);
        const struct kvm_vcpu_events *e = &v->events;
        uint32_t known = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
                         KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
        if (e->flags & ~known)
            BAD("vm state: vCPU %u events: unsupported flags 0x%x", index, e->flags & ~known);
        if (e->exception.nr >= 32 || e->exception.injected > 1 || e->exception.pending > 1 ||
            e->exception.has_error_code > 1 || e->interrupt.injected > 1 ||
            e->interrupt.soft > 1 || e->nmi.injected > 1 || e->nmi.pending > 1 ||
            e->nmi.masked > 1)
            BAD("vm state: vCPU %u events: a field is out of range", index);
        if (e->smi.smm || e->smi.pending || e->smi.smm_inside_nmi || e->smi.latched_init > 1 ||
            e->triple_fault.pending || e->exception_has_payload ||
            !all_zero(e->reserved, sizeof e->reserved))
            BAD("vm state: vCPU %u events: SMM, payload or reserved fields set", index);
        break;
    }
    case KVM_REC_MP_STATE:
        EXACT(type, v->mp_state);
        if (v->mp_state.mp_state > KVM_MP_STATE_SIPI_RECEIVED)
            BAD("vm state: vCPU %u mp-state %u is not supported", index, v->mp_state.mp_state);
        break;
    case KVM_REC_DEBUGREGS:
        EXACT(type, v->debugregs);
        if (v->debugregs.flags)
            BAD("vm state: vCPU %u debugregs: flags 0x%llx", index, (unsigned long long)v->debugregs.flags);
        break;
    case KVM_REC_TSC_KHZ:
        if (n != 8 || get_u32(p + 4) != 0)
            BAD("vm state: vCPU %u tsc-khz record is malformed", index);
        v->tsc_khz = get_u32(p);
        if (v->tsc_khz < 1000 || v->tsc_khz > 100000000)
            BAD("vm state: vCPU %u TSC frequency %u kHz is implausible", index, v->tsc_khz);
        break;
    default:
        BAD("vm state: unknown record type %u", type);
    }
    return 0;
}

static int decode(const uint8_t *buf, size_t len, kvm_state_t *out, char *err, size_t errlen)
{
    if (len < HEADER_BYTES)
        BAD("vm state: %zu bytes is shorter than the header", len);
    if (get_u32(buf) != KVM_STATE_MAGIC)
        BAD("vm state: bad magic (not a ferry VM state)");
    unsigned version = get_u16(buf + 4);
    if (version < KVM_STATE_OLDEST_VERSION || version > KVM_STATE_VERSION)
        BAD("vm state: version %u (this build reads versions %u..%u)", version,
            KVM_STATE_OLDEST_VERSION, KVM_STATE_VERSION);
    unsigned records = get_u16(buf + 6);
    if (get_u32(buf + 8) != len || get_u32(buf + 12) != 0)
        BAD("vm state: header says %u bytes, got %zu", get_u32(buf + 8), len);

    size_t at = HEADER_BYTES;
    uint32_t seen_global = 0;           /* bit per global record type */
    uint16_t *seen_vcpu = NULL;         /* bit per vcpu record type - KVM_REC_REGS */
    int rc = 0;
    for (unsigned r = 0; r < records && rc == 0; r++) {
        if (len - at < RECORD_HEADER_BYTES) {
            snprintf(err, errlen, "vm state: record %u of %u is truncated", r + 1, records);
            rc = -EINVAL;
            break;
        }
        unsigned type = get_u16(buf + at), index = get_u16(buf + at + 2);
        uint32_t n = get_u32(buf + at + 4);
        at += RECORD_HEADER_BYTES;
        size_t padded = ((size_t)n + 7) & ~(size_t)7;
        if (n > len - at || padded > len - at || !all_zero(buf + at + n, padded - n)) {
            snprintf(err, errlen, "vm state: %s record (%u bytes) overruns the state or has "
                     "nonzero padding", record_name(type), n);
            rc = -EINVAL;
            break;
        }
        const uint8_t *p = buf + at;
        at += padded;

        if (r == 0 && type != KVM_REC_MACHINE) {
            snprintf(err, errlen, "vm state: first record is %s, expected machine", record_name(type));
            rc = -EINVAL;
        } else if (type < KVM_REC_REGS) {
            if (type == 0 || index != 0 || (seen_global & (1u << type))) {
                snprintf(err, errlen, "vm state: unexpected or repeated %s record", record_name(type));
                rc = -EINVAL;
                break;
            }
            seen_global |= 1u << type;
            switch (type) {
            case KVM_REC_MACHINE:
                rc = decode_machine(p, n, out, err, errlen);
                if (rc == 0) {
                    seen_vcpu = calloc(out->vcpu_count, sizeof *seen_vcpu);
                    if (!seen_vcpu) {
                        snprintf(err, errlen, "vm state: out of memory");
                        rc = -ENOMEM;
                    }
                }
                break;
            case KVM_REC_DEVICES: rc = decode_devices(p, n, version, out, err, errlen); break;
            case KVM_REC_CLOCK:
                if (n != sizeof out->clock) {
                    snprintf(err, errlen, "vm state: clock record is %u bytes", n);
                    rc = -EINVAL;
                    break;
                }
                memcpy(&out->clock, p, n);
                if (out->clock.flags & ~(uint32_t)(KVM_CLOCK_TSC_STABLE | (1u << 2) | (1u << 3))) {
                    snprintf(err, errlen, "vm state: clock flags 0x%x", out->clock.flags);
                    rc = -EINVAL;
                }
                break;
            case KVM_REC_PIC_MASTER: rc = decode_irqchip(p, n, type, &out->pic_master, err, errlen); break;
            case KVM_REC_PIC_SLAVE: rc = decode_irqchip(p, n, type, &out->pic_slave, err, errlen); break;
            case KVM_REC_IOAPIC: rc = decode_irqchip(p, n, type, &out->ioapic, err, errlen); break;
            default:
                snprintf(err, errlen, "vm state: unknown record type %u", type);
                rc = -EINVAL;
            }
        } else if (type <= KVM_REC_LAST) {
            if (index >= out->vcpu_count) {
                snprintf(err, errlen, "vm state: %s record for vCPU %u of %u", record_name(type),
                         index, out->vcpu_count);
                rc = -EINVAL;
                break;
            }
            uint16_t bit = (uint16_t)(1u << (type - KVM_REC_REGS));
            if (seen_vcpu[index] & bit) {
                snprintf(err, errlen, "vm state: repeated %s record for vCPU %u", record_name(type), index);
                rc = -EINVAL;
                break;
            }
            seen_vcpu[index] |= bit;
            rc = decode_vcpu_record(type, index, p, n, &out->vcpus[index], err, errlen);
        } else {
            snprintf(err, errlen, "vm state: unknown record type %u", type);
            rc = -EINVAL;
        }
    }
    if (rc == 0 && at != len) {
        snprintf(err, errlen, "vm state: %zu trailing bytes after %u records", len - at, records);
        rc = -EINVAL;
    }
    uint32_t need_global = 1u << KVM_REC_MACHINE | 1u << KVM_REC_DEVICES | 1u << KVM_REC_CLOCK |
                           1u << KVM_REC_PIC_MASTER | 1u << KVM_REC_PIC_SLAVE | 1u << KVM_REC_IOAPIC;
    if (rc == 0 && seen_global != need_global) {
        snprintf(err, errlen, "vm state: missing %s record",
                 record_name((unsigned)__builtin_ctz(need_global & ~seen_global)));
        rc = -EINVAL;
    }
    uint16_t need_vcpu = (uint16_t)((1u << (KVM_REC_LAST - KVM_REC_REGS + 1)) - 1);
    for (uint32_t i = 0; rc == 0 && i < out->vcpu_count; i++) {
        if (seen_vcpu[i] != need_vcpu) {
            snprintf(err, errlen, "vm state: vCPU %u has no %s record", i,
                     record_name(KVM_REC_REGS + (unsigned)__builtin_ctz(need_vcpu & ~seen_vcpu[i])));
            rc = -EINVAL;
        }
    }
    free(seen_vcpu);
    return rc;
}

int kvm_state_decode(const uint8_t *buf, size_t len, kvm_state_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    int rc = decode(buf, len, out, err, errlen);
    if (rc)
        kvm_state_free(out);
    return rc;
}
