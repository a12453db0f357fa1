/* kvm_machine.h - the KVM backend's insides, shared by kvm.c (VM, memory,
 * vCPU threads, exits) and kvm_vcpu.c (vCPU setup and state). Internal. */
#ifndef FERRY_VMM_KVM_MACHINE_H
#define FERRY_VMM_KVM_MACHINE_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "vmm/kvm_state.h"
#include "vmm/vm_backend.h"

/* Guest-physical layout: RAM from 0 up to 3 GiB, the rest from 4 GiB. The
 * hole holds the LAPIC, IOAPIC and KVM's TSS/identity pages. */
#define KVM_LOW_RAM_LIMIT (3ull << 30)
#define KVM_HIGH_RAM_BASE (4ull << 30)
#define KVM_TSS_ADDR 0xfffbd000u
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000u

typedef struct kvm_machine kvm_machine_t;
typedef struct kvm_vcpu kvm_vcpu_t;

typedef enum { WANT_PARK, WANT_RUN, WANT_QUIT } vcpu_want_t;

typedef int (*vcpu_work_fn)(kvm_vcpu_t *v, void *arg);

struct kvm_vcpu {
    kvm_machine_t *m;
    unsigned index;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool thread_started;
    pid_t tid;
    /* guarded by m->lock */
    bool parked;
    vcpu_work_fn work;
    void *work_arg;
    int work_rc;
    bool work_done;
    /* vCPU thread only */
    bool io_pending;          /* an I/O exit is completed by the next KVM_RUN */
    timer_t throttle_timer;
    bool has_throttle_timer;
};

struct kvm_machine {
    vm_t *vm;
    int kvm_fd, vm_fd;
    size_t run_size;
    uint64_t low_bytes, high_bytes;   /* RAM below 3 GiB / from 4 GiB */
    bool dirty_on;
    bool have_deadline_timer;
    uint32_t tsc_khz;
    uint32_t xsave_bytes;
    struct kvm_cpuid2 *cpuid;         /* what KVM supports, before per-vCPU fixes */
    uint32_t msr_indices[KVM_STATE_MAX_MSRS];
    unsigned msr_count;               /* kvm_state_msr_indices the host supports */

    kvm_vcpu_t *vcpus;
    unsigned vcpu_count;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    vcpu_want_t want;
    unsigned parked;
    unsigned throttle_percent;        /* read by vCPU threads without the lock */
    uart_regs_t uart;
};

/* kvm_vcpu.c */
int kvm_vcpu_setup_cpuid(kvm_vcpu_t *v, char *err, size_t errlen);
int kvm_vcpu_set_boot_state(kvm_vcpu_t *v, uint32_t entry, uint32_t info_gpa);
int kvm_vcpu_save(kvm_vcpu_t *v, kvm_vcpu_state_t *out);
/* Returns 0 or -errno; on failure err names the step. */
int kvm_vcpu_load(kvm_vcpu_t *v, const kvm_vcpu_state_t *in, char *err, size_t errlen);

/* kvm.c: runs fn on v's thread while it is parked. */
int kvm_vcpu_run_on(kvm_vcpu_t *v, vcpu_work_fn fn, void *arg);

#endif
