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
#include "vm_bench.h"
#include "vmm/vm.h"

/* --- JSON rows ---------------------------------------------------------------- */

static void row(const char *name, const char *unit, const char *better, double ferry,
                double anchor, const char *anchor_name, const char *note)
{
    vmb_row_measured(name, unit, better, ferry);
    if (anchor_name)
        vmb_row_anchor(anchor, anchor_name);
    vmb_row_end(note);
}

/* --- boot --------------------------------------------------------------------------- */

static double ferry_boot_ms(int runs, char *why, size_t whylen)
{
    double v[16];
    int n = 0;
    for (int i = 0; i < runs; i++) {
        int64_t t0 = (int64_t)(vmb_now_s() * 1e9), hb;
        vm_t *vm = vmb_started_vm(NULL, "bench-boot", 64 * MIB, 1, "profile=idle print=1000", &hb,
                                  why, whylen);
        if (!vm)
            return -1;
        vm_destroy(&vm);
        v[n++] = (double)(hb - t0) / 1e6;
        fprintf(stderr, "bench vmm: ferry boot %d: %.2f ms\n", i, v[n - 1]);
    }
    return vmb_median(v, n);
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
    double t0 = vmb_now_s();
    pid_t pid = start_qemu(image, cpu, log_path);
    if (pid < 0)
        return -1;
    double result = -1;
    while (vmb_now_s() - t0 < 120) {
        if (file_has(log_path, "ferry-guest: hb=1 ")) {
            result = (vmb_now_s() - t0) * 1e3;
            break;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            pid = -1;
            break;
        }
        vmb_nap_us(1000);
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
            return vmb_median(v, n);
        }
    }
    snprintf(why, whylen, "QEMU did not boot the guest with -cpu host or host,-arch-capabilities");
    return -1;
}

/* --- pause / resume ------------------------------------------------------------------- */

static int pause_resume(double *pause_us, double *resume_us, char *why, size_t whylen)
{
    vm_t *vm = vmb_started_vm(NULL, "bench-pause", 256 * MIB, 2, "profile=db wss=32M rate=8M print=0",
                              NULL, why, whylen);
    if (!vm)
        return -1;
    vmb_pause_resume_us(vm, pause_us, resume_us);
    vm_destroy(&vm);
    return 0;
}

/* --- dirty log -------------------------------------------------------------------------- */

static int dirty_log(uint64_t mem, double *collect_us, double *clear_us, char *why, size_t whylen)
{
    vm_t *vm = vmb_started_vm(NULL, "bench-dirty", mem, 1, "profile=idle print=0 verify=0", NULL,
                              why, whylen);
    if (!vm)
        return -1;
    int rc = vmb_dirty_log_us(vm, collect_us, clear_us);
    vm_destroy(&vm);
    if (rc) {
        snprintf(why, whylen, "dirty log: %s", strerror(-rc));
        return -1;
    }
    return 0;
}

/* --- throttle -------------------------------------------------------------------------------
 * A guest that never idles (stream at full speed): the share of wall time
 * its vCPU thread gets, unthrottled and at 50%. */

static int throttle(double *full, double *half, char *why, size_t whylen)
{
    vm_t *vm = vmb_started_vm(NULL, "bench-throttle", 256 * MIB, 1,
                              "profile=stream rate=0 print=0 verify=0", NULL, why, whylen);
    if (!vm)
        return -1;
    vmb_throttle_share(vm, full, half);
    vm_destroy(&vm);
    return 0;
}

/* --- memory hash ---------------------------------------------------------------------------- */

static int memory_hash(double *hash_gbs, double *read_gbs, char *why, size_t whylen)
{
    vm_config_t cfg = {.name = "bench-hash", .memory_bytes = 1 * GIB, .vcpus = 1,
                       .cmdline = "profile=idle"};
    char err[200];
    vm_t *vm = vm_new(&cfg, err, sizeof err);
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
        double t0 = vmb_now_s();
        vm_memory_hash(vm, out);
        double t1 = vmb_now_s();
        uint64_t acc = 0;
        for (const uint64_t *p = (const uint64_t *)(mem.base + at);
             p < (const uint64_t *)(mem.base + at + data); p++)
            acc |= *p;
        __asm__ volatile("" ::"r"(acc));  /* keep the reads */
        double t2 = vmb_now_s();
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
        vmb_row_skipped("boot to first heartbeat, 64 MiB", "no /dev/kvm");
        vmb_row_skipped("pause (all vCPUs parked), 2 vCPUs", "no /dev/kvm");
        vmb_row_skipped("resume, 2 vCPUs", "no /dev/kvm");
        vmb_row_skipped("dirty log collect, 1 GiB", "no /dev/kvm");
        vmb_row_skipped("memory hash BLAKE2b", "no /dev/kvm");
        printf("\n]}\n");
        return 0;
    }

    fprintf(stderr, "bench vmm: boot\n");
    double ferry = ferry_boot_ms(5, why, sizeof why);
    char qemu_name[200], qwhy[256];
    double qemu = ferry >= 0 ? qemu_boot_ms(3, qemu_name, sizeof qemu_name, qwhy, sizeof qwhy) : -1;
    if (ferry < 0)
        vmb_row_skipped("boot to first heartbeat, 64 MiB", why);
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
        vmb_row_skipped("pause (all vCPUs parked), 2 vCPUs, db profile", why);
        vmb_row_skipped("resume, 2 vCPUs", why);
    }

    static const uint64_t sizes[] = {1 * GIB, 4 * GIB, 16 * GIB};
    for (size_t i = 0; i < 3; i++) {
        char collect_name[64], clear_name[64];
        snprintf(collect_name, sizeof collect_name, "dirty log collect, %llu GiB guest",
                 (unsigned long long)(sizes[i] / GIB));
        snprintf(clear_name, sizeof clear_name, "dirty log clear, %llu GiB guest",
                 (unsigned long long)(sizes[i] / GIB));
        if (sizes[i] + GIB > vmb_mem_available()) {
            vmb_row_skipped(collect_name, "not enough host memory available right now");
            vmb_row_skipped(clear_name, "not enough host memory available right now");
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
            vmb_row_skipped(collect_name, why);
            vmb_row_skipped(clear_name, why);
        }
    }

    fprintf(stderr, "bench vmm: throttle\n");
    double full, half;
    if (throttle(&full, &half, why, sizeof why) == 0)
        row("vCPU share of wall time, busy guest, throttle 50%", "%", "lower", half, full,
            "same guest unthrottled, same run", "goal is half the anchor; 10 ms slices");
    else
        vmb_row_skipped("vCPU share of wall time, busy guest, throttle 50%", why);

    fprintf(stderr, "bench vmm: memory hash\n");
    double h_gbs, rd_gbs;
    if (memory_hash(&h_gbs, &rd_gbs, why, sizeof why) == 0)
        row("memory hash BLAKE2b, 256 MiB written of 1 GiB", "GB/s", "higher", h_gbs, rd_gbs,
            "plain read of the same pages, same run (ceiling)",
            "holes skipped by SEEK_DATA; GB of written pages per second");
    else
        vmb_row_skipped("memory hash BLAKE2b, 256 MiB written of 1 GiB", why);
    printf("\n]}\n");
    return 0;
}
