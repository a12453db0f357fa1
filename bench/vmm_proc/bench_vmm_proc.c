/* bench_vmm_proc.c - the process backend, measured; one JSON object on
 * stdout, progress on stderr. Each row's anchor is the KVM backend doing the
 * same in the same run (left out, with the reason, where /dev/kvm is not
 * usable).
 *
 *   boot          vm_new + vm_start to the first heartbeat, 64 MiB
 *   pause/resume  vm_pause until the guest no longer runs; vm_resume
 *   dirty log     collect / clear for 1, 4 and 16 GiB guests writing 8 MiB/s
 *                 into a 64 MiB working set (sparse memfds)
 *   throttle      CPU share of a guest writing as fast as it can, at 50% */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "vm_bench.h"
#include "vmm/vm.h"

/* One measurement on one backend: a value, or why there is none. */
typedef struct {
    double value;
    char why[160];
} result_t;

static vm_t *started_vm(const char *backend, uint64_t mem, const char *cmdline, result_t *r)
{
    return vmb_started_vm(backend, "bench", mem, 1, cmdline, NULL, r->why, sizeof r->why);
}

static result_t boot_ms(const char *backend)
{
    result_t r = {-1, ""};
    double v[5];
    for (int i = 0; i < 5; i++) {
        double t0 = vmb_now_s();
        vm_t *vm = started_vm(backend, 64 * MIB, "profile=idle print=0", &r);
        if (!vm)
            return r;
        v[i] = (vmb_now_s() - t0) * 1e3;
        vm_destroy(&vm);
    }
    r.value = vmb_median(v, 5);
    return r;
}

static void pause_resume_us(const char *backend, result_t *pause, result_t *resume)
{
    *pause = *resume = (result_t){-1, ""};
    vm_t *vm = started_vm(backend, 256 * MIB, "profile=db wss=32M rate=8M print=0", pause);
    if (!vm) {
        *resume = *pause;
        return;
    }
    vmb_pause_resume_us(vm, &pause->value, &resume->value);
    vm_destroy(&vm);
}

static void dirty_log_us(const char *backend, uint64_t mem, result_t *collect, result_t *clear)
{
    *collect = *clear = (result_t){-1, ""};
    vm_t *vm = started_vm(backend, mem, "profile=db wss=64M rate=8M print=0 verify=0", collect);
    if (!vm) {
        *clear = *collect;
        return;
    }
    double c, k;
    int rc = vmb_dirty_log_us(vm, &c, &k);
    vm_destroy(&vm);
    if (rc) {
        snprintf(collect->why, sizeof collect->why, "dirty log: %s", strerror(-rc));
        *clear = *collect;
        return;
    }
    collect->value = c;
    clear->value = k;
}

static void throttle_share(const char *backend, result_t *full, result_t *half)
{
    *full = *half = (result_t){-1, ""};
    vm_t *vm = started_vm(backend, 256 * MIB, "profile=stream rate=0 print=0 verify=0", full);
    if (!vm) {
        *half = *full;
        return;
    }
    vmb_throttle_share(vm, &full->value, &half->value);
    vm_destroy(&vm);
}

/* --- output ------------------------------------------------------------------ */

static void row(const char *name, const char *unit, const char *better, result_t ferry,
                result_t anchor, const char *anchor_name, const char *note)
{
    if (ferry.value < 0) {
        vmb_row_skipped(name, ferry.why);
        return;
    }
    vmb_row_measured(name, unit, better, ferry.value);
    if (anchor.value >= 0)
        vmb_row_anchor(anchor.value, anchor_name);
    else
        vmb_row_anchor_skipped(anchor.why);
    vmb_row_end(note);
}

int main(void)
{
    log_level_t quiet;
    if (log_level_parse("warn", &quiet) == 0)
        log_set_level(quiet);
    bool kvm = strcmp(vm_default_backend(), "kvm") == 0;
    result_t no_kvm = {-1, "/dev/kvm not usable on this host"}, p, k, p2, k2;
    const char *kvm_name = "KVM backend, same guest, same run";
    printf("{\"bench\": \"vmm_proc\", \"machine\": {\"cpus\": %ld, \"kvm\": \"%s\"},\n \"rows\": [",
           sysconf(_SC_NPROCESSORS_ONLN),
           access("/sys/module/kvm_pvm", F_OK) == 0 ? "kvm_pvm (KVM emulates guest instructions)"
           : kvm ? "hardware KVM" : "none");

    fprintf(stderr, "bench vmm_proc: boot\n");
    row("boot to first heartbeat, 64 MiB", "ms", "lower", boot_ms("process"),
        kvm ? boot_ms("kvm") : no_kvm, kvm_name, "median of 5; vm_new to the first heartbeat");

    fprintf(stderr, "bench vmm_proc: pause/resume\n");
    pause_resume_us("process", &p, &k);
    if (kvm)
        pause_resume_us("kvm", &p2, &k2);
    else
        p2 = k2 = no_kvm;
    row("pause, db profile", "us", "lower", p, p2, kvm_name,
        "median of 50; SIGSTOP until waitid reports it stopped, queued messages handled");
    row("resume", "us", "lower", k, k2, kvm_name, "median of 50; SIGCONT");

    static const uint64_t sizes[] = {1 * GIB, 4 * GIB, 16 * GIB};
    for (int i = 0; i < 3; i++) {
        char cname[64], kname[64];
        snprintf(cname, sizeof cname, "dirty log collect, %llu GiB guest",
                 (unsigned long long)(sizes[i] / GIB));
        snprintf(kname, sizeof kname, "dirty log clear, %llu GiB guest",
                 (unsigned long long)(sizes[i] / GIB));
        if (sizes[i] + GIB > vmb_mem_available()) {  /* one VM at a time */
            result_t none = {-1, "not enough host memory available right now"};
            row(cname, "us", "lower", none, none, kvm_name, "");
            row(kname, "us", "lower", none, none, kvm_name, "");
            continue;
        }
        fprintf(stderr, "bench vmm_proc: dirty log %llu GiB\n", (unsigned long long)(sizes[i] / GIB));
        dirty_log_us("process", sizes[i], &p, &k);
        if (kvm)
            dirty_log_us("kvm", sizes[i], &p2, &k2);
        else
            p2 = k2 = no_kvm;
        row(cname, "us", "lower", p, p2, kvm_name,
            "median of 20, guest writing 8 MiB/s in 64 MiB; PAGEMAP_SCAN with write-protect");
        row(kname, "us", "lower", k, k2, kvm_name,
            "median of 20; the process backend clears bits in its own bitmap");
    }

    fprintf(stderr, "bench vmm_proc: throttle\n");
    throttle_share("process", &p, &k);
    row("CPU share of a busy guest, throttle 50%", "%", "lower", k, p,
        "same guest process unthrottled, same run", "goal is half the anchor; 10 ms slices");
    printf("\n]}\n");
    return 0;
}
