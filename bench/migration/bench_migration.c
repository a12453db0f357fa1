/* bench_migration.c - live migration, measured; one JSON object on stdout.
 *
 * For each VM size (1 and 4 GiB) and guest profile (idle, web, db): boot
 * the workload kernel, let it run a warm-up, live-migrate it over loopback
 * (receiver on a thread of this process, encrypted stream, default policy:
 * 100 ms downtime limit, no memory verification, as QEMU does none), and
 * report downtime, total time, wire throughput and bytes sent. The anchor
 * of every row is the same guest image, same command line, same warm-up,
 * migrated by QEMU (-incoming tcp:127.0.0.1:PORT, QMP: max-bandwidth
 * 64 GiB/s, downtime-limit 100 ms) in the same run. A last row per size
 * shows what verifying memory hashes at switchover costs.
 *
 *   bench_migration                 sizes 1,4 GiB, warm-up 8 s
 *   FERRY_BENCH_SIZES_GIB=1 bench_migration
 *   FERRY_BENCH_WARMUP_S=4 bench_migration
 *   FERRY_BENCH_LOG=debug bench_migration     the library's logs, each pass
 *
 * Progress goes to stderr. A row that cannot be measured says why. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/log.h"
#include "migration/migrate.h"
#include "qemu_peer.h"
#include "vmm/vm.h"

#define MIB (1ull << 20)
#define GIB (1ull << 30)
#define DOWNTIME_LIMIT_MS 100

typedef struct {
    const char *name;
    const char *cmdline;
} profile_t;

static const profile_t profiles[] = {
    { "idle", "profile=idle print=1000" },
    { "web", "profile=web hot=64M rate=100M print=1000" },
    { "db", "profile=db wss=256M rate=100M print=1000" },
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap_ms(int ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* --- JSON rows -------------------------------------------------------------------- */

static int rows_printed;

static void row_begin(const char *name)
{
    printf("%s\n  {\"case\": \"%s\"", rows_printed++ ? "," : "", name);
}

static void row(const char *name, const char *unit, const char *better, double ferry,
                const double *anchor, const char *anchor_name, const char *note)
{
    row_begin(name);
    printf(", \"unit\": \"%s\", \"better\": \"%s\", \"ferry\": %.4g", unit, better, ferry);
    if (anchor)
        printf(", \"anchor\": %.4g, \"anchor_name\": \"%s\"", *anchor, anchor_name);
    if (note)
        printf(", \"note\": \"%s\"", note);
    printf("}");
    fflush(stdout);
}

static void row_skipped(const char *name, const char *why)
{
    row_begin(name);
    printf(", \"skipped\": \"%s\"}", why);
    fflush(stdout);
}

/* --- ferry ---------------------------------------------------------------------------- */

typedef struct {
    stream_identity_t source, destination;
    uint8_t migration_id[STREAM_MIGRATION_ID_BYTES];
} keys_t;

static void curve_identity(stream_identity_t *identity)
{
    char public_z85[41], secret_z85[41];
    zmq_curve_keypair(public_z85, secret_z85);
    zmq_z85_decode(identity->public_key, public_z85);
    zmq_z85_decode(identity->secret_key, secret_z85);
}

typedef struct {
    migration_receiver_t *rx;
    migration_result_t result;
    vm_t *vm;
} receiver_run_t;

static void *receiver_main(void *arg)
{
    receiver_run_t *r = arg;
    migration_receiver_run(r->rx, NULL, NULL, &r->result);
    r->vm = migration_receiver_take_vm(r->rx);
    return NULL;
}

static int commit_nothing(void *ctx, char *why, size_t whylen)
{
    return 0;   /* no cluster here: the commit point costs nothing */
}

static bool wait_running(vm_t *vm, double timeout_s)
{
    double end = now_s() + timeout_s;
    vm_status_t st;
    do {
        vm_status(vm, &st);
        if (st.heartbeats_seen > 2)
            return true;
        nap_ms(10);
    } while (now_s() < end && st.state != VM_STOPPED);
    return false;
}

/* One ferry migration; 0 with *res filled, or -1 with why. */
static int ferry_migrate(const keys_t *keys, uint64_t memory, const profile_t *profile,
                         double warmup_s, bool verify, migration_result_t *res, char *why,
                         size_t whylen)
{
    char name[32];
    snprintf(name, sizeof name, "bench-%s", profile->name);
    vm_config_t cfg = { .name = name, .memory_bytes = memory, .vcpus = 1,
                        .cmdline = profile->cmdline };
    char err[256];
    vm_t *vm = vm_new(&cfg, err, sizeof err);
    if (!vm) {
        snprintf(why, whylen, "vm_new: %s", err);
        return -1;
    }
    if (vm_start(vm) != 0 || !wait_running(vm, 60)) {
        snprintf(why, whylen, "the guest did not start");
        vm_destroy(&vm);
        return -1;
    }
    nap_ms((int)(warmup_s * 1000));

    migration_receiver_config_t rcfg;
    migration_receiver_config_defaults(&rcfg);
    rcfg.bind_endpoint = "tcp://127.0.0.1:*";
    rcfg.identity = keys->destination;
    memcpy(rcfg.peer_public_key, keys->source.public_key, STREAM_KEY_BYTES);
    memcpy(rcfg.migration_id, keys->migration_id, STREAM_MIGRATION_ID_BYTES);
    receiver_run_t r = { .rx = migration_receiver_new(&rcfg, err, sizeof err) };
    if (!r.rx) {
        snprintf(why, whylen, "receiver: %s", err);
        vm_destroy(&vm);
        return -1;
    }
    pthread_t thread;
    pthread_create(&thread, NULL, receiver_main, &r);
    migration_params_t p;
    migration_params_defaults(&p);
    p.endpoint = migration_receiver_endpoint(r.rx);
    p.identity = keys->source;
    memcpy(p.peer_public_key, keys->destination.public_key, STREAM_KEY_BYTES);
    memcpy(p.migration_id, keys->migration_id, STREAM_MIGRATION_ID_BYTES);
    p.vm_config = &cfg;
    p.verify_memory_hash = verify;
    p.policy.downtime_limit_us = DOWNTIME_LIMIT_MS * 1000;
    p.commit = commit_nothing;
    int rc = migration_send(&vm, &p, NULL, NULL, res);
    pthread_join(thread, NULL);
    migration_receiver_destroy(&r.rx);
    if (rc == 0 && r.vm && !wait_running(r.vm, 30))
        rc = -1, snprintf(res->error_text, sizeof res->error_text, "the guest does not run "
                          "after the move");
    if (rc)
        snprintf(why, whylen, "ferry migration failed: %s", res->error_text);
    if (r.vm)
        vm_destroy(&r.vm);
    if (vm)
        vm_destroy(&vm);
    return rc ? -1 : 0;
}

/* --- rows ----------------------------------------------------------------------------- */

static void rows_for_case(const char *label, const migration_result_t *f, const qemu_result_t *q,
                          const char *anchor_name, const char *qemu_why)
{
    char name[96], note[400];
    const double *anchor;
    snprintf(name, sizeof name, "%s downtime", label);
    snprintf(note, sizeof note, "ferry: paused -> destination running (commit included), "
             "%u pre-copy passes, %llu pages sent while paused, throttle max %u%%; QEMU: "
             "its own figure, %llu dirty syncs%s%s", f->passes,
             (unsigned long long)f->final_pages, f->throttle_max,
             (unsigned long long)(q ? q->passes : 0), q ? "" : "; QEMU skipped: ",
             q ? "" : qemu_why);
    anchor = q ? &q->downtime_ms : NULL;
    row(name, "ms", "lower", f->downtime_ms, anchor, anchor_name, note);

    /* The two downtimes do not measure the same span: QEMU's ends when the
     * source has sent the last byte; ferry's when the destination says the
     * VM runs (load, the commit point and two round trips included). This
     * row measures ferry QEMU's way. */
    snprintf(name, sizeof name, "%s stop-and-copy (QEMU's downtime span)", label);
    row(name, "ms", "lower", f->stop_copy_ms, anchor, anchor_name,
        "paused -> last pages and vCPU state handed to the network");

    snprintf(name, sizeof name, "%s total time", label);
    anchor = q ? &q->total_ms : NULL;
    row(name, "ms", "lower", f->total_ms, anchor, anchor_name,
        "handshake to destination running; ferry skips memfd holes, QEMU scans every page");

    double ferry_mbps = (double)f->bytes_sent / MIB / (f->total_ms / 1000);
    double qemu_mbps = q ? (double)q->bytes / MIB / (q->total_ms / 1000) : 0;
    snprintf(name, sizeof name, "%s wire throughput", label);
    row(name, "MiB/s", "higher", ferry_mbps, q ? &qemu_mbps : NULL, anchor_name,
        "bytes on the wire over total time (ferry: AEAD-sealed; QEMU: plain TCP)");

    double ferry_mib = (double)f->bytes_sent / MIB;
    double qemu_mib = q ? (double)q->bytes / MIB : 0;
    snprintf(name, sizeof name, "%s bytes sent", label);
    row(name, "MiB", "lower", ferry_mib, q ? &qemu_mib : NULL, anchor_name,
        "ferry: wire bytes incl. headers and tags; QEMU: ram.transferred");
}

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
    log_level_t level;   /* FERRY_BENCH_LOG=debug shows each pass */
    const char *log_env = getenv("FERRY_BENCH_LOG");
    if (log_level_parse(log_env ? log_env : "warn", &level) == 0)
        log_set_level(level);
    const char *sizes_env = getenv("FERRY_BENCH_SIZES_GIB");
    const char *warmup_env = getenv("FERRY_BENCH_WARMUP_S");
    double warmup_s = warmup_env ? atof(warmup_env) : 8;
    char sizes[64];
    snprintf(sizes, sizeof sizes, "%s", sizes_env ? sizes_env : "1,4");

    char model[128];
    cpu_model(model, sizeof model);
    bool pvm = access("/sys/module/kvm_pvm", F_OK) == 0;
    /* Both ends, the guest and other work share this machine's cores: the
     * load says how much of them this run had. */
    double load[3] = { 0 };
    getloadavg(load, 3);
    printf("{\"bench\": \"migration\", \"machine\": {\"cpus\": %ld, \"model\": \"%s\", "
           "\"kvm\": \"%s\", \"loadavg_at_start\": %.2f, \"warmup_s\": %.1f},\n",
           sysconf(_SC_NPROCESSORS_ONLN), model,
           pvm ? "kvm_pvm: no hardware virtualization, KVM emulates guest instructions"
               : "hardware KVM", load[0], warmup_s);
    printf(" \"rows\": [");
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
        row_skipped("all", "no /dev/kvm");
        printf("\n]}\n");
        return 0;
    }
    char anchor_name[160], qemu_why[256] = "";
    bool have_qemu = qemu_peer_available(anchor_name, sizeof anchor_name, qemu_why,
                                         sizeof qemu_why) == 0;
    keys_t keys;
    curve_identity(&keys.source);
    curve_identity(&keys.destination);
    for (int i = 0; i < STREAM_MIGRATION_ID_BYTES; i++)
        keys.migration_id[i] = (uint8_t)(i + 1);

    for (char *save = NULL, *tok = strtok_r(sizes, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        uint64_t memory = (uint64_t)atoi(tok) * GIB;
        for (size_t k = 0; k < sizeof profiles / sizeof profiles[0]; k++) {
            const profile_t *profile = &profiles[k];
            char label[64], why[300];
            snprintf(label, sizeof label, "%s %sGiB", profile->name, tok);
            fprintf(stderr, "bench migration: %s: ferry...\n", label);
            migration_result_t f;
            if (ferry_migrate(&keys, memory, profile, warmup_s, false, &f, why, sizeof why) != 0) {
                fprintf(stderr, "bench migration: %s: %s\n", label, why);
                row_skipped(label, why);
                continue;
            }
            fprintf(stderr, "bench migration: %s: ferry downtime %.1f ms, total %.0f ms, %llu "
                    "bytes, %u passes; QEMU...\n", label, f.downtime_ms, f.total_ms,
                    (unsigned long long)f.bytes_sent, f.passes);
            qemu_result_t q;
            char qwhy[300] = "";
            bool qemu_ok = have_qemu
                           && qemu_peer_migrate(vm_default_kernel_path(), memory,
                                                profile->cmdline, warmup_s, DOWNTIME_LIMIT_MS,
                                                &q, qwhy, sizeof qwhy) == 0;
            if (!have_qemu)
                snprintf(qwhy, sizeof qwhy, "%s", qemu_why);
            if (qemu_ok)
                fprintf(stderr, "bench migration: %s: QEMU downtime %.0f ms, total %.0f ms, "
                        "%llu bytes\n", label, q.downtime_ms, q.total_ms,
                        (unsigned long long)q.bytes);
            else
                fprintf(stderr, "bench migration: %s: QEMU: %s\n", label, qwhy);
            rows_for_case(label, &f, qemu_ok ? &q : NULL, anchor_name, qwhy);
        }
        /* What verification costs: web again, hashing both sides at switchover. */
        char label[64], name[96], why[300];
        snprintf(label, sizeof label, "web %sGiB", tok);
        snprintf(name, sizeof name, "%s downtime with memory hash verification", label);
        migration_result_t plain, verified;
        fprintf(stderr, "bench migration: %s\n", name);
        if (ferry_migrate(&keys, memory, &profiles[1], warmup_s, false, &plain, why, sizeof why)
                != 0
            || ferry_migrate(&keys, memory, &profiles[1], warmup_s, true, &verified, why,
                             sizeof why) != 0) {
            row_skipped(name, why);
            continue;
        }
        row(name, "ms", "lower", verified.downtime_ms, &plain.downtime_ms,
            "ferry without verification, same run",
            "BLAKE2b over the guest's data pages on both ends, in parallel, while paused");
    }
    printf("\n]}\n");
    return 0;
}
