/* vm_bench.c - shared by the VM benches; see vm_bench.h. */
#include "vm_bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

double vmb_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void vmb_nap_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double vmb_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

uint64_t vmb_mem_available(void)
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

/* Waits (bounded) for the first heartbeat; returns its CLOCK_MONOTONIC ns or 0. */
static int64_t first_heartbeat(vm_t *vm, double timeout_s)
{
    double end = vmb_now_s() + timeout_s;
    vm_status_t st;
    do {
        vm_status(vm, &st);
        if (st.heartbeats_seen > 0)
            return st.last_heartbeat_ns;
        vmb_nap_us(100);
    } while (vmb_now_s() < end && st.state != VM_STOPPED);
    return 0;
}

vm_t *vmb_started_vm(const char *backend, const char *name, uint64_t mem, unsigned vcpus,
                     const char *cmdline, int64_t *heartbeat_ns, char *why, size_t whylen)
{
    vm_config_t cfg = {.name = name, .memory_bytes = mem, .vcpus = vcpus, .cmdline = cmdline,
                       .backend = backend};
    char err[200];
    vm_t *vm = vm_new(&cfg, err, sizeof err);
    if (!vm) {
        snprintf(why, whylen, "vm_new: %.140s", err);
        return NULL;
    }
    vm_start(vm);
    int64_t hb = first_heartbeat(vm, 60);
    if (!hb) {
        vm_destroy(&vm);
        snprintf(why, whylen, "no heartbeat within 60 s");
        return NULL;
    }
    if (heartbeat_ns)
        *heartbeat_ns = hb;
    return vm;
}

void vmb_pause_resume_us(vm_t *vm, double *pause_us, double *resume_us)
{
    enum { RUNS = 50 };
    double p[RUNS], r[RUNS];
    for (int i = 0; i < RUNS; i++) {
        vmb_nap_us(20000);  /* let it run between measurements */
        double t0 = vmb_now_s();
        vm_pause(vm);
        double t1 = vmb_now_s();
        vm_resume(vm);
        double t2 = vmb_now_s();
        p[i] = (t1 - t0) * 1e6;
        r[i] = (t2 - t1) * 1e6;
    }
    *pause_us = vmb_median(p, RUNS);
    *resume_us = vmb_median(r, RUNS);
}

int vmb_dirty_log_us(vm_t *vm, double *collect_us, double *clear_us)
{
    size_t words = vm_dirty_bitmap_words(vm);
    uint64_t *bitmap = calloc(words, 8);
    int rc = vm_dirty_log_enable(vm);
    enum { RUNS = 20 };
    double c[RUNS], k[RUNS];
    for (int i = 0; i < RUNS && rc == 0; i++) {
        vmb_nap_us(10000);
        double t0 = vmb_now_s();
        rc = vm_dirty_log_collect(vm, bitmap);
        double t1 = vmb_now_s();
        rc = rc ? rc : vm_dirty_log_clear(vm, bitmap);
        double t2 = vmb_now_s();
        c[i] = (t1 - t0) * 1e6;
        k[i] = (t2 - t1) * 1e6;
    }
    free(bitmap);
    if (rc)
        return rc;
    *collect_us = vmb_median(c, RUNS);
    *clear_us = vmb_median(k, RUNS);
    return 0;
}

static double cpu_share(vm_t *vm, double seconds)
{
    vm_status_t a, b;
    vm_status(vm, &a);
    double t0 = vmb_now_s();
    vmb_nap_us((long)(seconds * 1e6));
    vm_status(vm, &b);
    return (double)(b.vcpu_cpu_ns - a.vcpu_cpu_ns) / 1e9 / (vmb_now_s() - t0) * 100;
}

void vmb_throttle_share(vm_t *vm, double *full, double *half)
{
    *full = cpu_share(vm, 2);
    vm_throttle(vm, 50);
    *half = cpu_share(vm, 2);
}

/* --- JSON rows ---------------------------------------------------------------- */

static int rows_printed;

static void row_begin(const char *name)
{
    printf("%s\n  {\"case\": \"%s\"", rows_printed++ ? "," : "", name);
}

void vmb_row_skipped(const char *name, const char *why)
{
    row_begin(name);
    printf(", \"skipped\": \"%s\"}", why);
}

void vmb_row_measured(const char *name, const char *unit, const char *better, double ferry)
{
    row_begin(name);
    printf(", \"unit\": \"%s\", \"better\": \"%s\", \"ferry\": %.4g", unit, better, ferry);
}

void vmb_row_anchor(double anchor, const char *anchor_name)
{
    printf(", \"anchor\": %.4g, \"anchor_name\": \"%s\"", anchor, anchor_name);
}

void vmb_row_anchor_skipped(const char *why)
{
    printf(", \"anchor_skipped\": \"%s\"", why);
}

void vmb_row_end(const char *note)
{
    if (note)
        printf(", \"note\": \"%s\"", note);
    printf("}");
}
