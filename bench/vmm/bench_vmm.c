/* bench_vmm.c - the KVM micro-VMM, measured; one JSON object on stdout.
 *
 *   boot          vm_new + vm_start to the guest's first heartbeat, against
 *                 the same image under QEMU -kernel (process start to the
 *                 first status line on its serial console), same run
 *   pause/resume  vm_pause until every vCPU is parked; vm_resume
 *   dirty log     KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG for 1, 4 and
 *                 16 GiB guests (sparse: untouched memfd pages cost nothing)
 *   memory hash   vm_memory_hash (BLAKE2b) against a plain read of the same
 *                 pages (the memory-bandwidth ceiling)
 *
 * Progress goes to stderr. A row that cannot be measured says why. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
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

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* --- JSON rows ---------------------------------------------------------------- */

static int rows_printed;

static void row_begin(const char *name)
{
    printf("%s\n  {\"case\": \"%s\"", rows_printed++ ? "," : "", name);
}

static void row(const char *name, const char *unit, const char *better, double ferry,
                double anchor, const char *anchor_name, const char *note)
{
    row_begin(name);
    printf(", \"unit\": \"%s\", \"better\": \"%s\", \"ferry\": %.4g", unit, better, ferry);
    if (anchor_name)
        printf(", \"anchor\": %.4g, \"anchor_name\": \"%s\"", anchor, anchor_name);
    if (note)
        printf(", \"note\": \"%s\"", note);
    printf("}");
}

static void row_skipped(const char *name, const char *why)
{
    row_begin(name);
    printf(", \"skipped\": \"%s\"}", why);
}

/* --- helpers -------------------------------------------------------------------- */

static vm_t *new_vm(const char *name, uint64_t mem, unsigned vcpus, const char *cmdline,
                    char *err, size_t errlen)
{
    vm_config_t cfg = {.name = name, .memory_bytes = mem, .vcpus = vcpus, .cmdline = cmdline};
    return vm_new(&cfg, err, errlen);
}

/* Waits (bounded) for the first heartbeat; returns its CLOCK_MONOTONIC ns or 0. */
static int64_t first_heartbeat(vm_t *vm, double timeout_s)
{
    double end = now_s() + timeout_s;
    vm_status_t st;
    do {
        vm_status(vm, &st);
        if (st.heartbeats_seen > 0)
            return st.last_heartbeat_ns;
        nap_us(100);
    } while (now_s() < end && st.state != VM_STOPPED);
    return 0;
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

/* --- boot --------------------------------------------------------------------------- */

static double ferry_boot_ms(int runs, char *why, size_t whylen)
{
    double v[16];
    int n = 0;
    for (int i = 0; i < runs; i++) {
        char err[200];
        int64_t t0 = (int64_t)(now_s() * 1e9);
        vm_t *vm = new_vm("bench-boot", 64 * MIB, 1, "profile=idle print=1000", err, sizeof err);
        if (!vm) {
            snprintf(why, whylen, "vm_new: %s", err);
            return -1;
        }
        vm_start(vm);
        int64_t hb = first_heartbeat(vm, 60);
        vm_destroy(&vm);
        if (!hb) {
            snprintf(why, whylen, "no heartbeat within 60 s");
            return -1;
        }
        v[n++] = (double)(hb - t0) / 1e6;
        fprintf(stderr, "bench vmm: ferry boot %d: %.2f ms\n", i, v[n - 1]);
    }
    return median(v, n);
}

/* Starts QEMU on the image; returns its pid, serial output in log_path. */
static pid_t start_qemu(const char *image, const char *cpu, const char *log_path)
{
    char serial[300];
    snprintf(serial, sizeof serial, "file:%s", log_path);
    unlink(log_path);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        execlp("qemu-system-x86_64", "qemu-system-x86_64", "-enable-kvm", "-cpu", cpu, "-m", "64",
               "-smp", "1", "-no-reboot", "-net", "none", "-display", "none", "-monitor", "none",
               "-serial", serial, "-kernel", image, "-append", "profile=idle print=1000",
               (char *)NULL);
        _exit(127);
    }
    return pid;
}

static bool file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

/* One QEMU boot to the first status line; -1 if QEMU died or timed out. */
static double qemu_boot_once(const char *image, const char *cpu, const char *log_path)
{
    double t0 = now_s();
    pid_t pid = start_qemu(image, cpu, log_path);
    if (pid < 0)
        return -1;
    double result = -1;
    while (now_s() - t0 < 120) {
        if (file_has(log_path, "ferry-guest: hb=1 ")) {
            result = (now_s() - t0) * 1e3;
            break;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            pid = -1;
            break;
        }
        nap_us(1000);
    }
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    unlink(log_path);
    return result;
}

static double qemu_boot_ms(int runs, char *name, size_t namelen, char *why, size_t whylen)
{
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
        snprintf(why, whylen, "no /dev/kvm");
        return -1;
    }
    if (system("command -v qemu-system-x86_64 > /dev/null 2>&1") != 0) {
        snprintf(why, whylen, "no qemu-system-x86_64 installed");
        return -1;
    }
    const char *image = vm_default_kernel_path();
    char log_path[64];
    snprintf(log_path, sizeof log_path, "/tmp/ferry-bench-qemu-%d.log", (int)getpid());
    /* QEMU 7.2 aborts on hosts whose KVM refuses IA32_ARCH_CAPABILITIES. */
    static const char *const cpus[] = {"host", "host,-arch-capabilities"};
    for (size_t c = 0; c < sizeof cpus / sizeof cpus[0]; c++) {
        double v[8];
        int n = 0;
        for (int i = 0; i < runs; i++) {
            double ms = qemu_boot_once(image, cpus[c], log_path);
            if (ms < 0)
                break;
            v[n++] = ms;
            fprintf(stderr, "bench vmm: qemu -cpu %s boot %d: %.1f ms\n", cpus[c], i, ms);
        }
        if (n == runs) {
            FILE *p = popen("qemu-system-x86_64 --version", "r");
            char version[64] = "?";
            if (p) {
                if (fscanf(p, "QEMU emulator version %63s", version) != 1)
                    snprintf(version, sizeof version, "?");
                pclose(p);
            }
            snprintf(name, namelen,
                     "QEMU %s -enable-kvm -cpu %s -kernel, same image, to its first status line", version,
                     cpus[c]);
            return median(v, n);
        }
    }
    snprintf(why, whylen, "QEMU did not boot the guest with -cpu host or host,-arch-capabilities");
    return -1;
}

/* --- pause / resume ------------------------------------------------------------------- */

static int pause_resume(double *pause_us, double *resume_us, char *why, size_t whylen)
{
    char err[200];
    vm_t *vm = new_vm("bench-pause", 256 * MIB, 2, "profile=db wss=32M rate=8M print=0", err,
                      sizeof err);
    if (!vm) {
        snprintf(why, whylen, "vm_new: %s", err);
        return -1;
    }
    vm_start(vm);
    if (!first_heartbeat(vm, 60)) {
        vm_destroy(&vm);
        snprintf(why, whylen, "no heartbeat within 60 s");
        return -1;
    }
    enum { RUNS = 50 };
    double p[RUNS], r[RUNS];
    for (int i = 0; i < RUNS; i++) {
        nap_us(20000);  /* let it run between measurements */
        double t0 = now_s();
        vm_pause(vm);
        double t1 = now_s();
        vm_resume(vm);
        double t2 = now_s();
        p[i] = (t1 - t0) * 1e6;
        r[i] = (t2 - t1) * 1e6;
    }
    vm_destroy(&vm);
    *pause_us = median(p, RUNS);
    *resume_us = median(r, RUNS);
    return 0;
}

/* --- dirty log -------------------------------------------------------------------------- */

static int dirty_log(uint64_t mem, double *collect_us, double *clear_us, char *why, size_t whylen)
{
    char err[200];
    vm_t *vm = new_vm("bench-dirty", mem, 1, "profile=idle print=0 verify=0", err, sizeof err);
    if (!vm) {
        snprintf(why, whylen, "vm_new: %s", err);
        return -1;
    }
    vm_start(vm);
    if (!first_heartbeat(vm, 60)) {
        vm_destroy(&vm);
        snprintf(why, whylen, "no heartbeat within 60 s");
        return -1;
    }
    size_t words = vm_dirty_bitmap_words(vm);
    uint64_t *bitmap = calloc(words, 8);
    vm_dirty_log_enable(vm);
    enum { RUNS = 20 };
    double c[RUNS], k[RUNS];
    int rc = 0;
    for (int i = 0; i < RUNS && rc == 0; i++) {
        nap_us(10000);
        double t0 = now_s();
        rc = vm_dirty_log_collect(vm, bitmap);
        double t1 = now_s();
        rc = rc ? rc : vm_dirty_log_clear(vm, bitmap);
        double t2 = now_s();
        c[i] = (t1 - t0) * 1e6;
        k[i] = (t2 - t1) * 1e6;
    }
    free(bitmap);
    vm_destroy(&vm);
    if (rc) {
        snprintf(why, whylen, "dirty log: %s", strerror(-rc));
        return -1;
    }
    *collect_us = median(c, RUNS);
    *clear_us = median(k, RUNS);
    return 0;
}

/* --- throttle -------------------------------------------------------------------------------
 * A guest that never idles (stream at full speed): the share of wall time
 * its vCPU thread gets, unthrottled and at 50%. */

static double cpu_share(vm_t *vm, double seconds)
{
    vm_status_t a, b;
    vm_status(vm, &a);
    double t0 = now_s();
    nap_us((long)(seconds * 1e6));
    vm_status(vm, &b);
    return (double)(b.vcpu_cpu_ns - a.vcpu_cpu_ns) / 1e9 / (now_s() - t0) * 100;
}

static int throttle(double *full, double *half, char *why, size_t whylen)
{
    char err[200];
    vm_t *vm = new_vm("bench-throttle", 256 * MIB, 1, "profile=stream rate=0 print=0 verify=0",
                      err, sizeof err);
    if (!vm) {
        snprintf(why, whylen, "vm_new: %s", err);
        return -1;
    }
    vm_start(vm);
    if (!first_heartbeat(vm, 60)) {
        vm_destroy(&vm);
        snprintf(why, whylen, "no heartbeat within 60 s");
        return -1;
    }
    *full = cpu_share(vm, 2);
    vm_throttle(vm, 50);
    *half = cpu_share(vm, 2);
    vm_destroy(&vm);
    return 0;
}

/* --- memory hash ---------------------------------------------------------------------------- */

static int memory_hash(double *hash_gbs, double *read_gbs, char *why, size_t whylen)
{
    char err[200];
    vm_t *vm = new_vm("bench-hash", 1 * GIB, 1, "profile=idle", err, sizeof err);
    if (!vm) {
        snprintf(why, whylen, "vm_new: %s", err);
        return -1;
    }
    vm_memory_t mem;
    vm_memory(vm, &mem);
    const uint64_t data = 256 * MIB, at = 512 * MIB;
    uint64_t x = 88172645463325252ull;
    for (uint64_t *p = (uint64_t *)(mem.base + at); p < (uint64_t *)(mem.base + at + data); p++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        *p = x;
    }
    uint8_t out[32];
    double best_hash = 1e9, best_read = 1e9;
    for (int i = 0; i < 3; i++) {
        double t0 = now_s();
        vm_memory_hash(vm, out);
        double t1 = now_s();
        uint64_t acc = 0;
        for (const uint64_t *p = (const uint64_t *)(mem.base + at);
             p < (const uint64_t *)(mem.base + at + data); p++)
            acc |= *p;
        __asm__ volatile("" ::"r"(acc));  /* keep the reads */
        double t2 = now_s();
        if (t1 - t0 < best_hash) best_hash = t1 - t0;
        if (t2 - t1 < best_read) best_read = t2 - t1;
    }
    vm_destroy(&vm);
    *hash_gbs = (double)data / best_hash / 1e9;
    *read_gbs = (double)data / best_read / 1e9;
    return 0;
}

/* --- main -------------------------------------------------------------------------------------- */

static void cpu_model(char *out, size_t len)
{
    snprintf(out, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *colon = strchr(line, ':');
            if (colon) {
                snprintf(out, len, "%s", colon + 2);
                out[strcspn(out, "\n")] = '\0';
            }
            break;
        }
    }
    if (f)
        fclose(f);
}

int main(void)
{
    log_level_t quiet;
    if (log_level_parse("warn", &quiet) == 0)
        log_set_level(quiet);
    char model[128], why[256];
    cpu_model(model, sizeof model);
    bool pvm = access("/sys/module/kvm_pvm", F_OK) == 0;
    printf("{\"bench\": \"vmm\", \"machine\": {\"cpus\": %ld, \"model\": \"%s\", \"kvm\": \"%s\"},\n",
           sysconf(_SC_NPROCESSORS_ONLN), model,
           pvm ? "kvm_pvm: no hardware virtualization, KVM emulates guest instructions"
               : "hardware KVM");
    printf(" \"rows\": [");

    bool kvm = access("/dev/kvm", R_OK | W_OK) == 0;
    if (!kvm) {
        row_skipped("boot to first heartbeat, 64 MiB", "no /dev/kvm");
        row_skipped("pause (all vCPUs parked), 2 vCPUs", "no /dev/kvm");
        row_skipped("resume, 2 vCPUs", "no /dev/kvm");
        row_skipped("dirty log collect, 1 GiB", "no /dev/kvm");
        row_skipped("memory hash BLAKE2b", "no /dev/kvm");
        printf("\n]}\n");
        return 0;
    }

    fprintf(stderr, "bench vmm: boot\n");
    double ferry = ferry_boot_ms(5, why, sizeof why);
    char qemu_name[200], qwhy[256];
    double qemu = ferry >= 0 ? qemu_boot_ms(3, qemu_name, sizeof qemu_name, qwhy, sizeof qwhy) : -1;
    if (ferry < 0)
        row_skipped("boot to first heartbeat, 64 MiB", why);
    else if (qemu < 0)
        row("boot to first heartbeat, 64 MiB", "ms", "lower", ferry, 0, NULL, qwhy);
    else
        row("boot to first heartbeat, 64 MiB", "ms", "lower", ferry, qemu, qemu_name,
            "ferry: vm_new to the heartbeat port write; QEMU: process start to the status line "
            "printed right after it (includes SeaBIOS)");

    fprintf(stderr, "bench vmm: pause/resume\n");
    double p_us, r_us;
    if (pause_resume(&p_us, &r_us, why, sizeof why) == 0) {
        row("pause (all vCPUs parked), 2 vCPUs, db profile", "us", "lower", p_us, 0, NULL,
            "median of 50; signal + immediate_exit");
        row("resume, 2 vCPUs", "us", "lower", r_us, 0, NULL, "median of 50; returns once woken");
    } else {
        row_skipped("pause (all vCPUs parked), 2 vCPUs, db profile", why);
        row_skipped("resume, 2 vCPUs", why);
    }

    static const uint64_t sizes[] = {1 * GIB, 4 * GIB, 16 * GIB};
    for (size_t i = 0; i < 3; i++) {
        char collect_name[64], clear_name[64];
        snprintf(collect_name, sizeof collect_name, "dirty log collect, %llu GiB guest",
                 (unsigned long long)(sizes[i] / GIB));
        snprintf(clear_name, sizeof clear_name, "dirty log clear, %llu GiB guest",
                 (unsigned long long)(sizes[i] / GIB));
        if (sizes[i] + GIB > mem_available()) {
            row_skipped(collect_name, "not enough host memory available right now");
            row_skipped(clear_name, "not enough host memory available right now");
            continue;
        }
        fprintf(stderr, "bench vmm: dirty log %llu GiB\n", (unsigned long long)(sizes[i] / GIB));
        double c_us, k_us;
        if (dirty_log(sizes[i], &c_us, &k_us, why, sizeof why) == 0) {
            row(collect_name, "us", "lower", c_us, 0, NULL,
                "median of 20, idle guest, KVM_GET_DIRTY_LOG on every slot");
            row(clear_name, "us", "lower", k_us, 0, NULL,
                "median of 20, KVM_CLEAR_DIRTY_LOG of what was collected");
        } else {
            row_skipped(collect_name, why);
            row_skipped(clear_name, why);
        }
    }

    fprintf(stderr, "bench vmm: throttle\n");
    double full, half;
    if (throttle(&full, &half, why, sizeof why) == 0)
        row("vCPU share of wall time, busy guest, throttle 50%", "%", "lower", half, full,
            "same guest unthrottled, same run", "goal is half the anchor; 10 ms slices");
    else
        row_skipped("vCPU share of wall time, busy guest, throttle 50%", why);

    fprintf(stderr, "bench vmm: memory hash\n");
    double h_gbs, rd_gbs;
    if (memory_hash(&h_gbs, &rd_gbs, why, sizeof why) == 0)
        row("memory hash BLAKE2b, 256 MiB written of 1 GiB", "GB/s", "higher", h_gbs, rd_gbs,
            "plain read of the same pages, same run (ceiling)",
            "holes skipped by SEEK_DATA; GB of written pages per second");
    else
        row_skipped("memory hash BLAKE2b, 256 MiB written of 1 GiB", why);
    printf("\n]}\n");
    return 0;
}
