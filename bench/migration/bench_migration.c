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
 * shows what verifying memory hashes costs.
 *
 * Then, once, the db-heavy case (1 GiB): a guest that dirties pages faster
 * than the migration may send them (random writes over its working set as
 * fast as its vCPU goes, the send rate capped below that for both ferry and
 * QEMU), so that pre-copy alone never converges. It is migrated four times:
 * ferry with its throttling policy and QEMU with auto-converge must switch
 * over within the 100 ms limit; ferry with throttle_allowed = false and QEMU
 * without auto-converge must give up at the same bound (the VM running on
 * at the source). The defaults fit this machine, whose KVM emulates guest
 * instructions: the guest writes ~20-25 MiB/s there, hence a 16 MiB working
 * set and an 8 MiB/s cap. On hardware KVM the guest writes ~100x faster:
 * scale both up (e.g. wss=512M and a 300 MiB/s cap), or throttling to 99%
 * still leaves it faster than the cap.
 *
 *   bench_migration                 every case, sizes 1,4 GiB, warm-up 8 s
 *   FERRY_BENCH_SIZES_GIB=1 bench_migration
 *   FERRY_BENCH_WARMUP_S=4 bench_migration
 *   FERRY_BENCH_CASES=dbheavy bench_migration    some cases only, of:
 *                                   profiles (idle, web, db), verify, dbheavy
 *   FERRY_BENCH_DBHEAVY_CAP_MIB=8   db-heavy: the send-rate cap, MiB/s
 *   FERRY_BENCH_DBHEAVY_BOUND_S=30  db-heavy: give up after this much pre-copy
 *   FERRY_BENCH_DBHEAVY_GUEST="profile=db wss=16M rate=0 print=1000"
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
#include "migration/stream.h"
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

/* A JSON string: notes carry QEMU's replies, which have quotes in them. */
static void json_string(const char *key, const char *value)
{
    printf(", \"%s\": \"", key);
    for (const char *c = value; *c; c++) {
        if (*c == '"' || *c == '\\')
            printf("\\%c", *c);
        else if ((unsigned char)*c < 0x20)
            printf("\\u%04x", (unsigned char)*c);
        else
            putchar(*c);
    }
    putchar('"');
}

static void row_begin(const char *name)
{
    printf("%s\n  {\"case\": \"%s\"", rows_printed++ ? "," : "", name);
}

static void row_end(void)
{
    printf("}");
    fflush(stdout);
}

/* A measured row, left open for optional fields (goal, outcomes); row_end closes it. */
static void row_open(const char *name, const char *unit, const char *better, double ferry,
                     const double *anchor, const char *anchor_name, const char *note)
{
    row_begin(name);
    printf(", \"unit\": \"%s\", \"better\": \"%s\", \"ferry\": %.4g", unit, better, ferry);
    if (anchor) {
        printf(", \"anchor\": %.4g", *anchor);
        json_string("anchor_name", anchor_name);
    }
    if (note)
        json_string("note", note);
}

static void row(const char *name, const char *unit, const char *better, double ferry,
                const double *anchor, const char *anchor_name, const char *note)
{
    row_open(name, unit, better, ferry, anchor, anchor_name, note);
    row_end();
}

static void row_skipped(const char *name, const char *why)
{
    row_begin(name);
    json_string("skipped", why);
    row_end();
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

/* True once the guest has sent `beats` heartbeats more than `seen`. */
static bool wait_heartbeats(vm_t *vm, uint64_t seen, uint64_t beats, double timeout_s)
{
    double end = now_s() + timeout_s;
    vm_status_t st;
    do {
        vm_status(vm, &st);
        if (st.heartbeats_seen > seen + beats)
            return true;
        nap_ms(10);
    } while (now_s() < end && st.state != VM_STOPPED);
    return false;
}

static bool wait_running(vm_t *vm, double timeout_s)
{
    return wait_heartbeats(vm, 0, 2, timeout_s);
}

static uint64_t guest_pages_written(vm_t *vm)
{
    vm_status_t st;
    vm_status(vm, &st);
    return st.pages_written;
}

/* How one ferry migration is run; zero values are the bench's defaults. */
typedef struct {
    bool verify;                 /* hash memory at switchover */
    uint64_t max_bandwidth_Bps;  /* pre-copy cap (0: none) */
    bool no_throttle;            /* policy.throttle_allowed = false */
    double max_time_s;           /* the policy's max pre-copy time (0: its default) */
} ferry_options_t;

/* What the guest and the policy showed while pre-copy ran (the progress
 * callback's view). */
typedef struct {
    vm_t *vm;                        /* the source; only touched during pre-copy */
    uint64_t written_before;         /* guest page writes when the migration began */
    double began_s;
    double write_rate_Bps;           /* guest page writes x 4 KiB / s over the full pass */
    double warmup_write_rate_Bps;    /* the same over the warm-up, before dirty logging */
    uint64_t dirty_rate_max_Bps;     /* highest dirty rate the policy measured */
    uint64_t predicted_stun_us;      /* the policy's prediction at the last pass end */
} precopy_watch_t;

static int watch_precopy(const migration_progress_t *pr, void *ctx)
{
    precopy_watch_t *w = ctx;
    if (!pr->pass_done)
        return 0;
    if (pr->pass == 1 && pr->phase == MIGRATION_PHASE_FULL)
        w->write_rate_Bps = (double)(guest_pages_written(w->vm) - w->written_before)
                            * VM_PAGE_SIZE / (now_s() - w->began_s);
    if (pr->dirty_rate_Bps > w->dirty_rate_max_Bps)
        w->dirty_rate_max_Bps = pr->dirty_rate_Bps;
    w->predicted_stun_us = pr->predicted_stun_us;
    return 0;
}

/* One ferry migration. 0 with *res filled: the VM moved. 1: the policy gave
 * up (MIGRATION_ERR_NOT_CONVERGED) and the VM still runs at the source. -1
 * with why: anything else. */
static int ferry_migrate(const keys_t *keys, uint64_t memory, const profile_t *profile,
                         double warmup_s, const ferry_options_t *options,
                         migration_result_t *res, precopy_watch_t *watch, char *why,
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
    *watch = (precopy_watch_t){ .vm = vm, .written_before = guest_pages_written(vm),
                                .began_s = now_s() };
    nap_ms((int)(warmup_s * 1000));
    watch->warmup_write_rate_Bps = (double)(guest_pages_written(vm) - watch->written_before)
                                   * VM_PAGE_SIZE / (now_s() - watch->began_s);
    watch->written_before = guest_pages_written(vm);
    watch->began_s = now_s();

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
    p.verify_memory_hash = options->verify;
    p.max_bandwidth_Bps = options->max_bandwidth_Bps;
    p.policy.downtime_limit_us = DOWNTIME_LIMIT_MS * 1000;
    p.policy.throttle_allowed = !options->no_throttle;
    if (options->max_time_s > 0)
        p.policy.max_time_us = (uint64_t)(options->max_time_s * 1e6);
    p.commit = commit_nothing;
    int rc = migration_send(&vm, &p, watch_precopy, watch, res);
    watch->vm = NULL;
    pthread_join(thread, NULL);
    migration_receiver_destroy(&r.rx);
    if (rc == 0 && r.vm && !wait_running(r.vm, 30))
        rc = -1, snprintf(res->error_text, sizeof res->error_text, "the guest does not run "
                          "after the move");
    if (rc == MIGRATION_ERR_NOT_CONVERGED) {
        vm_status_t st;
        vm_status(vm, &st);
        rc = wait_heartbeats(vm, st.heartbeats_seen, 2, 10) ? 1 : -1;
        if (rc < 0)
            snprintf(res->error_text, sizeof res->error_text, "the policy gave up and the "
                     "guest no longer runs at the source");
    }
    if (rc < 0)
        snprintf(why, whylen, "ferry migration failed: %s", res->error_text);
    if (r.vm)
        vm_destroy(&r.vm);
    if (vm)
        vm_destroy(&vm);
    return rc < 0 ? -1 : rc;
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

/* --- the run ------------------------------------------------------------------------ */

typedef struct {
    keys_t keys;
    double warmup_s;
    bool have_qemu;
    char anchor_name[160];
    char qemu_why[256];   /* why QEMU cannot run here, when !have_qemu */
} bench_t;

/* FERRY_BENCH_CASES: a comma-separated list; unset, every case runs. */
static bool case_selected(const char *name)
{
    const char *cases = getenv("FERRY_BENCH_CASES");
    if (!cases || !*cases)
        return true;
    size_t n = strlen(name);
    for (const char *at = cases; (at = strstr(at, name)) != NULL; at += n)
        if ((at == cases || at[-1] == ',') && (at[n] == '\0' || at[n] == ','))
            return true;
    return false;
}

static double env_number(const char *name, double fallback)
{
    const char *value = getenv(name);
    return value && *value ? atof(value) : fallback;
}

/* idle, web and db: ferry, then QEMU, same guest, no cap. */
static void profile_cases(const bench_t *b, const char *size, uint64_t memory)
{
    for (size_t k = 0; k < sizeof profiles / sizeof profiles[0]; k++) {
        const profile_t *profile = &profiles[k];
        char label[64], why[300];
        snprintf(label, sizeof label, "%s %sGiB", profile->name, size);
        fprintf(stderr, "bench migration: %s: ferry...\n", label);
        migration_result_t f;
        precopy_watch_t watch;
        if (ferry_migrate(&b->keys, memory, profile, b->warmup_s, &(ferry_options_t){ 0 }, &f,
                          &watch, why, sizeof why) != 0) {
            fprintf(stderr, "bench migration: %s: %s\n", label, why);
            row_skipped(label, why);
            continue;
        }
        fprintf(stderr, "bench migration: %s: ferry downtime %.1f ms, total %.0f ms, %llu "
                "bytes, %u passes; QEMU...\n", label, f.downtime_ms, f.total_ms,
                (unsigned long long)f.bytes_sent, f.passes);
        qemu_result_t q;
        char qwhy[300] = "";
        qemu_options_t qo = { .downtime_limit_ms = DOWNTIME_LIMIT_MS };
        bool qemu_ok = b->have_qemu
                       && qemu_peer_migrate(vm_default_kernel_path(), memory, profile->cmdline,
                                            b->warmup_s, &qo, &q, qwhy, sizeof qwhy) == 0;
        if (!b->have_qemu)
            snprintf(qwhy, sizeof qwhy, "%s", b->qemu_why);
        if (qemu_ok)
            fprintf(stderr, "bench migration: %s: QEMU downtime %.0f ms, total %.0f ms, "
                    "%llu bytes\n", label, q.downtime_ms, q.total_ms,
                    (unsigned long long)q.bytes);
        else
            fprintf(stderr, "bench migration: %s: QEMU: %s\n", label, qwhy);
        rows_for_case(label, &f, qemu_ok ? &q : NULL, b->anchor_name, qwhy);
    }
}

/* What verifying memory hashes costs: web again, hashing both sides at switchover. */
static void verify_case(const bench_t *b, const char *size, uint64_t memory)
{
    char name[96], why[300];
    snprintf(name, sizeof name, "web %sGiB downtime with memory hash verification", size);
    migration_result_t plain, verified;
    precopy_watch_t watch;
    fprintf(stderr, "bench migration: %s\n", name);
    if (ferry_migrate(&b->keys, memory, &profiles[1], b->warmup_s, &(ferry_options_t){ 0 },
                      &plain, &watch, why, sizeof why) != 0
        || ferry_migrate(&b->keys, memory, &profiles[1], b->warmup_s,
                         &(ferry_options_t){ .verify = true }, &verified, &watch, why,
                         sizeof why) != 0) {
        row_skipped(name, why);
        return;
    }
    row(name, "ms", "lower", verified.downtime_ms, &plain.downtime_ms,
        "ferry without verification, same run",
        "BLAKE2b over the guest's data pages on both ends, in parallel, while paused");
}

/* --- db-heavy: a guest that dirties memory faster than the migration may send ---------- */

/* Random page writes over the working set as fast as the vCPU can go, and a
 * send-rate cap below that rate, so that pre-copy cannot converge by itself:
 * each pass finds about as much dirty as it sent. With throttling (ferry's
 * policy, QEMU's auto-converge) it must still switch over within the downtime
 * limit; without, both must give up at the same bound, the VM running on at
 * the source. */
#define DBHEAVY_GUEST "profile=db wss=16M rate=0 print=1000"

typedef struct {
    int rc;                       /* ferry_migrate: 0 moved, 1 gave up, -1 failed */
    migration_result_t result;
    precopy_watch_t watch;
    char why[300];
} ferry_run_t;

typedef struct {
    int rc;                       /* qemu_peer_migrate: 0 ran (see completed), -1 failed */
    qemu_result_t result;
    char why[300];
} qemu_run_t;

typedef struct {
    const bench_t *b;
    profile_t guest;
    uint64_t cap_Bps;
    double bound_s;
} dbheavy_t;

/* One progress line: why it failed, or what happened. */
static void say_outcome(const char *who, int rc, const char *why, const char *what)
{
    fprintf(stderr, "bench migration: db-heavy: %s: %s\n", who, rc < 0 ? why : what);
}

static void dbheavy_ferry(const dbheavy_t *d, bool throttle, ferry_run_t *run)
{
    fprintf(stderr, "bench migration: db-heavy: ferry, throttle %s...\n", throttle ? "on" : "off");
    ferry_options_t options = { .max_bandwidth_Bps = d->cap_Bps, .no_throttle = !throttle,
                                .max_time_s = d->bound_s };
    run->rc = ferry_migrate(&d->b->keys, GIB, &d->guest, d->b->warmup_s, &options,
                            &run->result, &run->watch, run->why, sizeof run->why);
    const migration_result_t *f = &run->result;
    char what[300];
    snprintf(what, sizeof what, "%s after %.1f s, %u passes, throttle max %u%%, downtime %.1f "
             "ms, guest writes %.0f MiB/s (warm-up) / %.0f MiB/s (full pass), dirty rate max "
             "%.0f MiB/s", run->rc == 0 ? "moved" : "gave up", f->total_ms / 1000, f->passes,
             f->throttle_max, f->downtime_ms, run->watch.warmup_write_rate_Bps / MIB,
             run->watch.write_rate_Bps / MIB, (double)run->watch.dirty_rate_max_Bps / MIB);
    say_outcome("ferry", run->rc, run->why, what);
}

static void dbheavy_qemu(const dbheavy_t *d, bool auto_converge, qemu_run_t *run)
{
    if (!d->b->have_qemu) {
        run->rc = -1;
        snprintf(run->why, sizeof run->why, "%s", d->b->qemu_why);
        return;
    }
    fprintf(stderr, "bench migration: db-heavy: QEMU, auto-converge %s...\n",
            auto_converge ? "on" : "off");
    qemu_options_t options = { .downtime_limit_ms = DOWNTIME_LIMIT_MS,
                               .max_bandwidth_Bps = d->cap_Bps, .auto_converge = auto_converge,
                               .give_up_s = d->bound_s };
    run->rc = qemu_peer_migrate(vm_default_kernel_path(), GIB, d->guest.cmdline,
                                d->b->warmup_s, &options, &run->result, run->why,
                                sizeof run->why);
    const qemu_result_t *q = &run->result;
    char what[300];
    snprintf(what, sizeof what, "%s after %.1f s, %llu dirty syncs, throttle max %u%%, downtime "
             "%.0f ms, expected downtime %.0f ms, dirty rate max %.0f MiB/s",
             q->completed ? "completed" : "cancelled", q->elapsed_s,
             (unsigned long long)q->passes, q->throttle_max, q->downtime_ms,
             q->expected_downtime_ms, q->dirty_rate_max_Bps / MIB);
    say_outcome("QEMU", run->rc, run->why, what);
}

static void dbheavy_mode_rows(const dbheavy_t *d, bool throttle, const ferry_run_t *fr,
                              const qemu_run_t *qr)
{
    char label[96], name[160], note[600], ferry_outcome[96], qemu_outcome[400];
    snprintf(label, sizeof label, "db-heavy 1GiB, throttling %s (QEMU: auto-converge %s)",
             throttle ? "on" : "off", throttle ? "on" : "off");
    if (fr->rc < 0) {
        row_skipped(label, fr->why);
        return;
    }
    const migration_result_t *f = &fr->result;
    const qemu_result_t *q = qr->rc == 0 ? &qr->result : NULL;
    snprintf(ferry_outcome, sizeof ferry_outcome, fr->rc == 0 ? "moved" :
             "did not converge in %.0f s: given up, the VM ran on at the source", d->bound_s);
    if (!q)
        snprintf(qemu_outcome, sizeof qemu_outcome, "not measured: %s", qr->why);
    else
        snprintf(qemu_outcome, sizeof qemu_outcome, q->completed ? "completed" :
                 "did not converge in %.0f s: cancelled, the VM ran on at the source",
                 d->bound_s);
    const double limit = DOWNTIME_LIMIT_MS;

    /* Whether it converged within the bound, and how long it took to tell. */
    double ferry_s = f->total_ms / 1000;
    double qemu_s = q ? (q->completed ? q->total_ms / 1000 : q->elapsed_s) : 0;
    snprintf(name, sizeof name, "%s: time to switchover or give-up", label);
    snprintf(note, sizeof note, "both capped at %.0f MiB/s, downtime limit %.0f ms, given up "
             "after %.0f s of pre-copy; ferry: %u passes, throttle max %u%%; QEMU: %llu dirty "
             "syncs, throttle max %u%%", (double)d->cap_Bps / MIB, limit, d->bound_s,
             f->passes, f->throttle_max, (unsigned long long)(q ? q->passes : 0),
             q ? q->throttle_max : 0);
    row_open(name, "s", "lower", ferry_s, q ? &qemu_s : NULL, d->b->anchor_name, note);
    json_string("ferry_outcome", ferry_outcome);
    json_string("anchor_outcome", qemu_outcome);
    row_end();

    snprintf(name, sizeof name, "%s: downtime", label);
    if (fr->rc == 0) {
        bool qemu_done = q && q->completed;
        snprintf(note, sizeof note, "ferry: paused -> destination running, %llu pages sent "
                 "while paused; QEMU: %s", (unsigned long long)f->final_pages,
                 qemu_done ? "its own figure" : qemu_outcome);
        row_open(name, "ms", "lower", f->downtime_ms, qemu_done ? &q->downtime_ms : NULL,
                 d->b->anchor_name, note);
        printf(", \"goal\": %.0f", limit);
        row_end();
    } else {
        char why[200], qemu_downtime[48] = "";
        if (q && q->completed)
            snprintf(qemu_downtime, sizeof qemu_downtime, " (QEMU's downtime: %.0f ms)",
                     q->downtime_ms);
        snprintf(why, sizeof why, "ferry did not switch over: %s%s", ferry_outcome, qemu_downtime);
        row_skipped(name, why);
    }

    /* The stun each would have needed at the last look: within the limit
     * when it switched over, far above when it gave up. */
    snprintf(name, sizeof name, "%s: predicted stun at the last pass", label);
    double ferry_stun = fr->watch.predicted_stun_us == UINT64_MAX
                            ? -1 : (double)fr->watch.predicted_stun_us / 1000;
    bool qemu_expected = q && q->expected_downtime_ms >= 0;
    row_open(name, "ms", "lower", ferry_stun, qemu_expected ? &q->expected_downtime_ms : NULL,
             d->b->anchor_name, "ferry: its policy's prediction (dirty bytes left / send rate + "
             "the switchover cost, 5 ms by default); QEMU: expected-downtime at its last "
             "query-migrate, updated once per iteration (may be stale when it completes)");
    printf(", \"goal\": %.0f", limit);
    row_end();

    if (throttle) {
        snprintf(name, sizeof name, "%s: highest throttle", label);
        double ferry_level = f->throttle_max, qemu_level = q ? q->throttle_max : 0;
        row(name, "%", "lower", ferry_level, q ? &qemu_level : NULL, d->b->anchor_name,
            "share of vCPU time taken away; ferry: its policy's level (starts at 20, steps of at "
            "least 10, up to 99); QEMU: cpu-throttle-percentage (20, +10, up to 99)");
    }
}

static void dbheavy_case(const bench_t *b)
{
    dbheavy_t d = { .b = b, .bound_s = env_number("FERRY_BENCH_DBHEAVY_BOUND_S", 30),
                    .cap_Bps = (uint64_t)(env_number("FERRY_BENCH_DBHEAVY_CAP_MIB", 8) * MIB) };
    const char *guest = getenv("FERRY_BENCH_DBHEAVY_GUEST");
    d.guest = (profile_t){ "db-heavy", guest && *guest ? guest : DBHEAVY_GUEST };
    ferry_run_t ferry_on, ferry_off;
    qemu_run_t qemu_on, qemu_off;
    dbheavy_ferry(&d, true, &ferry_on);
    dbheavy_ferry(&d, false, &ferry_off);
    dbheavy_qemu(&d, true, &qemu_on);
    dbheavy_qemu(&d, false, &qemu_off);

    /* First what the guest did to memory, as both measured it unthrottled. */
    if (ferry_off.rc >= 0) {
        char note[400];
        const precopy_watch_t *w = &ferry_off.watch;
        double qemu_rate = qemu_off.result.dirty_rate_max_Bps / MIB;
        snprintf(note, sizeof note, "guest '%s', 1 GiB; distinct pages dirtied per second, the "
                 "highest of any pass, throttling off; the cap is %.0f MiB/s; the guest's own "
                 "page writes: %.0f MiB/s in the warm-up, %.0f MiB/s during ferry's full pass "
                 "(dirty logging on)", d.guest.cmdline, (double)d.cap_Bps / MIB,
                 w->warmup_write_rate_Bps / MIB, w->write_rate_Bps / MIB);
        row("db-heavy 1GiB: dirty rate", "MiB/s", "none",
            (double)w->dirty_rate_max_Bps / MIB, qemu_off.rc == 0 ? &qemu_rate : NULL,
            b->anchor_name, note);
    }
    dbheavy_mode_rows(&d, true, &ferry_on, &qemu_on);
    dbheavy_mode_rows(&d, false, &ferry_off, &qemu_off);
}

int main(void)
{
    log_level_t level;   /* FERRY_BENCH_LOG=debug shows each pass */
    const char *log_env = getenv("FERRY_BENCH_LOG");
    if (log_level_parse(log_env ? log_env : "warn", &level) == 0)
        log_set_level(level);
    stream_tune_malloc();   /* as ferryd does: stream chunks stay in the heap */
    const char *sizes_env = getenv("FERRY_BENCH_SIZES_GIB");
    bench_t b = { .warmup_s = env_number("FERRY_BENCH_WARMUP_S", 8) };
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
               : "hardware KVM", load[0], b.warmup_s);
    printf(" \"rows\": [");
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
        row_skipped("all", "no /dev/kvm");
        printf("\n]}\n");
        return 0;
    }
    b.have_qemu = qemu_peer_available(b.anchor_name, sizeof b.anchor_name, b.qemu_why,
                                      sizeof b.qemu_why) == 0;
    curve_identity(&b.keys.source);
    curve_identity(&b.keys.destination);
    for (int i = 0; i < STREAM_MIGRATION_ID_BYTES; i++)
        b.keys.migration_id[i] = (uint8_t)(i + 1);

    for (char *save = NULL, *tok = strtok_r(sizes, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        uint64_t memory = (uint64_t)atoi(tok) * GIB;
        if (case_selected("profiles"))
            profile_cases(&b, tok, memory);
        if (case_selected("verify"))
            verify_case(&b, tok, memory);
    }
    if (case_selected("dbheavy"))
        dbheavy_case(&b);
    getloadavg(load, 3);
    printf("\n], \"loadavg_at_end\": %.2f}\n", load[0]);
    return 0;
}
