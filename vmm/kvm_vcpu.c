/* kvm_vcpu.c - one vCPU's CPUID, boot registers and saved state. These run
 * on the vCPU's own thread (kvm_vcpu_run_on), as KVM asks. */
#include "vmm/kvm_machine.h"
#include "guest/multiboot.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define MSR_IA32_TSC 0x10u
#define MSR_IA32_TSC_DEADLINE 0x6e0u

int kvm_vcpu_setup_cpuid(kvm_vcpu_t *v, char *err, size_t errlen)
{
    const struct kvm_cpuid2 *supported = v->m->cpuid;
    size_t bytes = sizeof *supported + supported->nent * sizeof supported->entries[0];
    struct kvm_cpuid2 *c = malloc(bytes);
    if (!c) {
        snprintf(err, errlen, "cpuid: out of memory");
        return -ENOMEM;
    }
    memcpy(c, supported, bytes);
    for (uint32_t i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        switch (e->function) {
        case 1:
            e->ebx = (e->ebx & 0x00ffffffu) | v->index << 24;  /* initial APIC ID */
            if (v->m->have_deadline_timer)
                e->ecx |= 1u << 24;  /* KVM emulates the TSC-deadline timer */
            e->ecx |= 1u << 31;      /* hypervisor present */
            break;
        case 0xb:
        case 0x1f:
            e->edx = v->index;  /* x2APIC ID */
            break;
        default:
            break;
        }
    }
    int rc = ioctl(v->fd, KVM_SET_CPUID2, c);
    int e = errno;
    free(c);
    if (rc < 0) {
        snprintf(err, errlen, "KVM_SET_CPUID2: %s", strerror(e));
        return -e;
    }
    return 0;
}

/* Multiboot hand-over: 32-bit protected mode, flat 4 GiB segments, paging
 * off, EAX = magic, EBX = info block. */
int kvm_vcpu_set_boot_state(kvm_vcpu_t *v, uint32_t entry, uint32_t info_gpa)
{
    struct kvm_sregs sregs;
    if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
        return -errno;
    struct kvm_segment code = {
        .base = 0, .limit = 0xffffffff, .selector = 0x08, .type = 0xb /* exec/read, accessed */,
        .present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
    };
    struct kvm_segment data = code;
    data.selector = 0x10;
    data.type = 0x3; /* read/write, accessed */
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.tr = (struct kvm_segment){
        .base = 0, .limit = 0xffff, .selector = 0x18, .type = 0xb /* busy 32-bit TSS */,
        .present = 1, .s = 0,
    };
    sregs.ldt = (struct kvm_segment){.limit = 0xffff, .type = 0x2, .present = 1, .unusable = 1};
    sregs.cr0 = 0x11;  /* PE | ET */
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    sregs.gdt = (struct kvm_dtable){.base = 0, .limit = 0xffff};
    sregs.idt = (struct kvm_dtable){.base = 0, .limit = 0xffff};
    if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
        return -errno;

    struct kvm_regs regs = {
        .rip = entry,
        .rax = MULTIBOOT_BOOTLOADER_MAGIC,
        .rbx = info_gpa,
        .rflags = 0x2,
    };
    if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
        return -errno;
    return 0;
}

/* --- save / load ----------------------------------------------------------------- */

static int get_xsave(kvm_vcpu_t *v, kvm_vcpu_state_t *out)
{
    uint32_t n = v->m->xsave_bytes;
    unsigned long request = n > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
    if (ioctl(v->fd, request, out->xsave) < 0)
        return -errno;
    out->xsave_bytes = n;
    return 0;
}

/* struct kvm_msrs with room for our list (same layout, fixed size). */
typedef struct {
    uint32_t nmsrs, pad;
    struct kvm_msr_entry entries[KVM_STATE_MAX_MSRS];
} msr_buffer_t;
_Static_assert(offsetof(msr_buffer_t, entries) == offsetof(struct kvm_msrs, entries),
               "msr_buffer_t must look like struct kvm_msrs");

int kvm_vcpu_save(kvm_vcpu_t *v, kvm_vcpu_state_t *out)
{
    memset(out, 0, sizeof *out);
    if (ioctl(v->fd, KVM_GET_REGS, &out->regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &out->sregs) < 0)
        return -errno;
    int rc = get_xsave(v, out);
    if (rc < 0)
        return rc;
    if (ioctl(v->fd, KVM_GET_XCRS, &out->xcrs) < 0 || ioctl(v->fd, KVM_GET_LAPIC, &out->lapic) < 0 ||
        ioctl(v->fd, KVM_GET_VCPU_EVENTS, &out->events) < 0 ||
        ioctl(v->fd, KVM_GET_MP_STATE, &out->mp_state) < 0 ||
        ioctl(v->fd, KVM_GET_DEBUGREGS, &out->debugregs) < 0)
        return -errno;

    msr_buffer_t msrs = {.nmsrs = v->m->msr_count};
    for (unsigned i = 0; i < v->m->msr_count; i++)
        msrs.entries[i].index = v->m->msr_indices[i];
    int got = ioctl(v->fd, KVM_GET_MSRS, &msrs);
    if (got < 0)
        return -errno;
    if ((unsigned)got != v->m->msr_count)
        return -EIO;  /* KVM could not read msrs.entries[got] */
    memcpy(out->msrs, msrs.entries, got * sizeof msrs.entries[0]);
    out->msr_count = (uint32_t)got;

    int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
    if (khz <= 0)
        return khz < 0 ? -errno : -EIO;
    out->tsc_khz = (uint32_t)khz;
    return 0;
}

static int set_msrs(kvm_vcpu_t *v, const struct kvm_msr_entry *e, uint32_t n, char *err,
                    size_t errlen)
{
    if (n == 0)
        return 0;
    msr_buffer_t msrs = {.nmsrs = n};
    memcpy(msrs.entries, e, n * sizeof e[0]);
    int set = ioctl(v->fd, KVM_SET_MSRS, &msrs);
    if (set < 0) {
        snprintf(err, errlen, "vCPU %u: KVM_SET_MSRS: %s", v->index, strerror(errno));
        return -errno;
    }
    if ((uint32_t)set != n) {
        snprintf(err, errlen, "vCPU %u: KVM refused MSR 0x%x = 0x%llx", v->index,
                 e[set].index, (unsigned long long)e[set].data);
        return -EINVAL;
    }
    return 0;
}

#define STEP(call, what)                                                                 \
    do {                                                                                 \
        if ((call) < 0) {                                                                \
            int e_ = errno;                                                              \
            snprintf(err, errlen, "vCPU %u: %s: %s", v->index, what, strerror(e_));      \
            return -e_;                                                                  \
        }                                                                                \
    } while (0)

/* Order matters: registers, FPU, control registers, MSRs, then the LAPIC
 * (which TSC_DEADLINE needs in TSC-deadline mode), then events last. */
int kvm_vcpu_load(kvm_vcpu_t *v, const kvm_vcpu_state_t *in, char *err, size_t errlen)
{
    if (in->tsc_khz != v->m->tsc_khz) {
        if (ioctl(v->fd, KVM_SET_TSC_KHZ, (unsigned long)in->tsc_khz) < 0) {
            snprintf(err, errlen,
                     "vCPU %u: saved TSC runs at %u kHz, this host at %u kHz, and KVM cannot "
                     "scale it (%s)", v->index, in->tsc_khz, v->m->tsc_khz, strerror(errno));
            return -EINVAL;
        }
    }
    if (in->xsave_bytes != v->m->xsave_bytes) {
        snprintf(err, errlen, "vCPU %u: saved XSAVE area is %u bytes, this host's is %u",
                 v->index, in->xsave_bytes, v->m->xsave_bytes);
        return -EINVAL;
    }
    STEP(ioctl(v->fd, KVM_SET_REGS, &in->regs), "KVM_SET_REGS");
    STEP(ioctl(v->fd, KVM_SET_XSAVE, in->xsave), "KVM_SET_XSAVE");
    STEP(ioctl(v->fd, KVM_SET_XCRS, &in->xcrs), "KVM_SET_XCRS");
    STEP(ioctl(v->fd, KVM_SET_SREGS, &in->sregs), "KVM_SET_SREGS");

    struct kvm_msr_entry early[KVM_STATE_MAX_MSRS], late[KVM_STATE_MAX_MSRS];
    uint32_t n_early = 0, n_late = 0;
    for (uint32_t i = 0; i < in->msr_count; i++) {
        if (in->msrs[i].index == MSR_IA32_TSC_DEADLINE)
            late[n_late++] = in->msrs[i];
        else
            early[n_early++] = in->msrs[i];
    }
    int rc = set_msrs(v, early, n_early, err, errlen);
    if (rc < 0)
        return rc;
    STEP(ioctl(v->fd, KVM_SET_MP_STATE, &in->mp_state), "KVM_SET_MP_STATE");
    STEP(ioctl(v->fd, KVM_SET_LAPIC, &in->lapic), "KVM_SET_LAPIC");
    rc = set_msrs(v, late, n_late, err, errlen);
    if (rc < 0)
        return rc;
    STEP(ioctl(v->fd, KVM_SET_VCPU_EVENTS, &in->events), "KVM_SET_VCPU_EVENTS");
    STEP(ioctl(v->fd, KVM_SET_DEBUGREGS, &in->debugregs), "KVM_SET_DEBUGREGS");
    return 0;
}
