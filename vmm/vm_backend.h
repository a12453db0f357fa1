/* vm_backend.h - what a backend (kvm, process) implements behind vm.h,
 * and the shared VM record it works on. Internal to vmm/.
 *
 * vm.c owns what every backend shares: the checked config, guest memory
 * (memfd), the console, the guest's report registers and the run state.
 * A backend owns how the guest runs. */
#ifndef FERRY_VMM_VM_BACKEND_H
#define FERRY_VMM_VM_BACKEND_H

#include <pthread.h>

#include "guest/args.h"
#include "vmm/console.h"
#include "vmm/guest_memory.h"
#include "vmm/guest_report.h"
#include "vmm/vm.h"

typedef struct vm_backend_ops {
    const char *name;
    /* Called with memory, console and config in place. Sets vm->impl.
     * On failure releases whatever it made. */
    int (*create)(vm_t *vm, char *err, size_t errlen);
    void (*destroy)(vm_t *vm);
    int (*start)(vm_t *vm);
    int (*pause)(vm_t *vm);
    int (*resume)(vm_t *vm);
    int (*reset)(vm_t *vm, char *err, size_t errlen);
    uint64_t (*cpu_ns)(vm_t *vm);
    int (*gpa_to_page)(const vm_t *vm, uint64_t gpa, uint64_t *page);
    int (*dirty_enable)(vm_t *vm, bool on);
    int (*dirty_collect)(vm_t *vm, uint64_t *bitmap);
    int (*dirty_clear)(vm_t *vm, const uint64_t *bitmap);
    int (*save_state)(vm_t *vm, uint8_t *buf, size_t cap, size_t *len);
    int (*load_state)(vm_t *vm, const uint8_t *buf, size_t len, char *err, size_t errlen);
    int (*throttle)(vm_t *vm, unsigned percent);
} vm_backend_ops_t;

struct vm {
    char name[VM_NAME_MAX + 1];
    uint64_t memory_bytes;
    unsigned vcpus;
    char *kernel_path;
    char *cmdline;
    bool incoming;
    bool awaiting_state;             /* incoming and no vm_load_state yet: no vm_start */
    guest_args_t args;               /* the parsed command line */

    const vm_backend_ops_t *ops;
    void *impl;

    guest_memory_t memory;
    console_t *console;

    pthread_mutex_t lock;            /* guards the fields below */
    vm_run_state_t state;
    guest_report_t report;
    char stop_reason[96];
    unsigned throttle_percent;
};

/* --- for backends ------------------------------------------------------------ */

/* A 32-bit port access from the guest to the report block (locks vm). */
void vm_report_out(vm_t *vm, uint16_t port, uint32_t value);
uint32_t vm_report_in(vm_t *vm, uint16_t port);
/* The guest stopped the machine (shutdown, triple fault, internal error). */
void vm_set_stopped(vm_t *vm, const char *reason);
int64_t vm_now_ns(void);

extern const vm_backend_ops_t vm_kvm_backend;
extern const vm_backend_ops_t vm_proc_backend;   /* "process": vmm/proc.c */

#endif
