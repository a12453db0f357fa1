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
#include "vmm/vm.h"

#define MIB (1ull << 20)
#define GIB (1ull << 30)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One measurement on one backend: a value, or why there is none. */
typedef struct {
    double value;
    char why[160];
} result_t;

static vm_t *started_vm(const char *backend, uint64_t mem, const char *cmdline, result_t *r)
{
    vm_config_t cfg = {.name = "bench", .memory_bytes = mem, .vcpus = 1, .cmdline = cmdline,
                       .backend = backend};
    char err[200];
    vm_t *vm = vm_new(&cfg, err, sizeof err);
    if (!vm) {
        snprintf(r->why, sizeof r->why, "vm_new: %.140s", err);
        return NULL;
    }
    vm_start(vm);
    double end = now_s() + 60;
    vm_status_t st;
    do {
        nap_us(100);
        vm_status(vm, &st);
    } while (st.heartbeats_seen == 0 && now_s() < end && st.state != VM_STOPPED);
    if (st.heartbeats_seen == 0) {
        snprintf(r->why, sizeof r->why, "no heartbeat within 60 s");
        vm_destroy(&vm);
    }
    return vm;
}

static result_t boot_ms(const char *backend)
{
    result_t r = {-1, ""};
    double v[5];
    for (int i = 0; i < 5; i++) {
        double t0 = now_s();
        vm_t *vm = started_vm(backend, 64 * MIB, "profile=idle print=0", &r);
        if (!vm)
            return r;
        v[i] = (now_s() - t0) * 1e3;
        vm_destroy(&vm);
    }
    r.value = median(v, 5);
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
    enum { RUNS = 50 };
    double p[RUNS], q[RUNS];
    for (int i = 0; i < RUNS; i++) {
        nap_us(20000);
        double t0 = now_s();
        vm_pause(vm);
        double t1 = now_s();
        vm_resume(vm);
        p[i] = (t1 - t0) * 1e6;
        q[i] = (now_s() - t1) * 1e6;
    }
    vm_destroy(&vm);
    pause->value = median(p, RUNS);
    resume->value = median(q, RUNS);
}

static void dirty_log_us(const char *backend, uint64_t mem, result_t *collect, result_t *clear)
{
    *collect = *clear = (result_t){-1, ""};
    vm_t *vm = started_vm(backend, mem, "profile=db wss=64M rate=8M print=0 verify=0", collect);
    if (!vm) {
        *clear = *collect;
        return;
    }
    size_t words = vm_dirty_bitmap_words(vm);
    uint64_t *bitmap = calloc(words, 8);
    int rc = vm_dirty_log_enable(vm);
    enum { RUNS = 20 };
    double c[RUNS], k[RUNS];
    for (int i = 0; i < RUNS && rc == 0; i++) {
        nap_us(10000);
        double t0 = now_s();
        rc = vm_dirty_log_collect(vm, bitmap);
        double t1 = now_s();
        rc = rc ? rc : vm_dirty_log_clear(vm, bitmap);
        c[i] = (t1 - t0) * 1e6;
        k[i] = (now_s() - t1) * 1e6;
    }
    free(bitmap);
    vm_destroy(&vm);
    if (rc) {
        snprintf(collect->why, sizeof collect->why, "dirty log: %s", strerror(-rc));
        *clear = *collect;
        return;
    }
    collect->value = median(c, RUNS);
    clear->value = median(k, RUNS);
}

static double cpu_share(vm_t *vm, double seconds)
{
    vm_status_t a, b;
    vm_status(vm, &a);
    double t0 = now_s();
    nap_us((long)(seconds * 1e6));
    vm_status(vm, &b);
    return (double)(b.vcpu_cpu_ns - a.vcpu_cpu_ns) / 1e9 / (now_s() - t0) * 100;
}

static void throttle_share(const char *backend, result_t *full, result_t *half)
{
    *full = *half = (result_t){-1, ""};
    vm_t *vm = started_vm(backend, 256 * MIB, "profile=stream rate=0 print=0 verify=0", full);
    if (!vm) {
        *half = *full;
        return;
    }
    full->value = cpu_share(vm, 2);
    vm_throttle(vm, 50);
    half->value = cpu_share(vm, 2);
    vm_destroy(&vm);
}

/* --- output ------------------------------------------------------------------ */

static int rows;

static void row(const char *name, const char *unit, const char *better, result_t ferry,
                result_t anchor, const char *anchor_name, const char *note)
{
    printf("%s\n  {\"case\": \"%s\"", rows++ ? "," : "", name);
    if (ferry.value < 0) {
        printf(", \"skipped\": \"%s\"}", ferry.why);
        return;
    }
    printf(", \"unit\": \"%s\", \"better\": \"%s\", \"ferry\": %.4g", unit, better, ferry.value);
    if (anchor.value >= 0)
        printf(", \"anchor\": %.4g, \"anchor_name\": \"%s\"", anchor.value, anchor_name);
    else
        printf(", \"anchor_skipped\": \"%s\"", anchor.why);
    printf(", \"note\": \"%s\"}", note);
}

static uint64_t mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    unsigned long long kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return (uint64_t)kib * 1024;
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
        if (sizes[i] + GIB > mem_available()) {  /* one VM at a time */
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
