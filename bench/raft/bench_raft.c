/* bench_raft.c - ferry's Raft on real agents, beside etcd, in one run.
 *
 *   bench_raft --ferryd PATH --etcd PATH --workdir DIR [--quick]
 *              [--sizes 3,5] [--etcd-sizes 3] [--kills N] [--idle-seconds S]
 *              [--commits N] [--clients N] [--throughput-seconds S]
 *              [--poll-ms MS] [--seed N] [--ferry-log-level LEVEL]
 *
 * For each cluster (ferry agents of each size, then etcd members), on
 * 127.0.0.1 with default timings, one after another:
 *   1. start the members and wait until the cluster is whole;
 *   2. idle: no client writes for --idle-seconds, every member's term
 *      watched; each term change is a spurious election;
 *   3. commit latency: --commits writes one after another over one
 *      connection to the leader (ferry: cluster.set on the control API;
 *      etcd: PUT /v3/kv/put on a kept-alive HTTP/1.1 connection);
 *   4. commits per second: --clients connections to the leader, each writing
 *      one after another, for --throughput-seconds;
 *   5. failover: --kills times SIGKILL the leader and poll every survivor
 *      every --poll-ms until one names a new leader; restart the killed
 *      member and wait until the cluster is whole again.
 * Prints one JSON object (docs/benchmarks.md) on stdout, progress on stderr.
 * Asserts nothing; a phase that fails leaves its rows "skipped" with the
 * reason. Every child dies with this process (PR_SET_PDEATHSIG). */
#include "cluster.h"
#include "measure.h"
#include "proc.h"
#include "stall_probe.h"

#include "common/crypto.h"
#include "common/log.h"

#include <czmq.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define MAX_SIZES 4
#define MAX_KILLS 1000
#define MAX_COMMITS 100000
#define MAX_CLIENTS 256
#define FORM_DEADLINE_S 90.0
#define IDLE_POLL_S 0.5
#define WHY_LEN 400

typedef struct {
    const char *ferryd, *etcd, *workdir, *ferry_log_level;
    int ferry_sizes[MAX_SIZES], n_ferry_sizes;
    int etcd_sizes[MAX_SIZES], n_etcd_sizes;
    int kills, commits, clients;
    double idle_s, throughput_s, poll_ms;
    uint64_t seed;
    bool quick;
} options_t;

/* Everything measured on one cluster; a phase that failed says why. */
typedef struct {
    const char *system;
    int size;
    char skipped[WHY_LEN];          /* the cluster never formed */
    double failover_ms[MAX_KILLS];
    int kills_done;
    char failover_why[WHY_LEN];
    double *latency_ms;
    int commits_done;
    char latency_why[WHY_LEN];
    int latency_elections;          /* term changes during the phase; -1 unknown */
    throughput_t throughput;
    char throughput_why[WHY_LEN];
    int throughput_elections;
    idle_t idle;
    char idle_why[WHY_LEN];
    stall_stats_t idle_stalls;      /* what the machine did to timers and fsync meanwhile */
    bool have_stalls;
} run_t;

/* --- machine ------------------------------------------------------------------------ */

static double load_1m(void)
{
    double load = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1)
            load = -1;
        fclose(f);
    }
    return load;
}

/* The first line of /proc/cpuinfo's "model name", or of `etcd --version`. */
static void first_value(const char *path, const char *prefix, char *out, size_t len)
{
    snprintf(out, len, "unknown");
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, prefix, strlen(prefix)) == 0) {
            char *value = line + strlen(prefix);
            value += strspn(value, " \t:");
            value[strcspn(value, "\n\"\\")] = '\0';
            snprintf(out, len, "%s", value);
            break;
        }
    fclose(f);
}

/* The kind of filesystem holding the state dirs: its fsync stalls are part
 * of what every commit and heartbeat waits on. */
static const char *filesystem_of(const char *path)
{
    struct statfs fs;
    if (statfs(path, &fs) != 0)
        return "unknown";
    switch ((unsigned long)fs.f_type) {
    case 0xEF53: return "ext4";
    case 0x01021994: return "tmpfs";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x794C7630: return "overlayfs";
    default: return "other";
    }
}

/* --- running one cluster ------------------------------------------------------------ */

static void show_logs(cluster_t *c)
{
    for (int i = 0; i < cluster_size(c); i++)
        measure_log_tail(cluster_log(c, i), 12);
}

static void phase_failed(cluster_t *c, const char *phase, const char *why)
{
    fprintf(stderr, "bench raft: %s %d: %s failed: %s\n", cluster_system(c), cluster_size(c), phase, why);
    show_logs(c);
}

/* The idle window, with the stall probe writing beside the members' logs. */
static void idle_phase(cluster_t *c, const options_t *opts, const char *dir, run_t *r)
{
    stall_probe_t *probe = stall_probe_start(dir);
    int rc = measure_idle(c, opts->idle_s, IDLE_POLL_S, &r->idle, r->idle_why, WHY_LEN);
    r->have_stalls = probe != NULL;
    stall_probe_stop(&probe, &r->idle_stalls);
    if (rc != 0) {
        phase_failed(c, "idle", r->idle_why);
        return;
    }
    fprintf(stderr, "bench raft: %s %d: idle %.0f s: term %llu -> %llu, %d leader changes; fdatasync max %.0f ms "
            "(%d over 100 ms), timer wake-up late by up to %.0f ms (%d over 100 ms)\n", r->system, r->size,
            r->idle.seconds, (unsigned long long)r->idle.term_first, (unsigned long long)r->idle.term_last,
            r->idle.leader_changes, r->idle_stalls.sync_max_ms, r->idle_stalls.syncs_over_100ms,
            r->idle_stalls.wake_late_max_ms, r->idle_stalls.wakes_late_over_100ms);
}

/* Commit latency (sequential) or throughput (concurrent) through the
 * leader, with the elections the load caused. */
static void load_phase(cluster_t *c, const options_t *opts, run_t *r, bool concurrent)
{
    char *why = concurrent ? r->throughput_why : r->latency_why;
    int *elections = concurrent ? &r->throughput_elections : &r->latency_elections;
    int leader, rc;
    uint64_t term_before, term_after;
    *elections = -1;
    if (measure_wait_whole(c, FORM_DEADLINE_S, &leader, why, WHY_LEN) != 0 ||
        measure_top_term(c, &term_before) != 0) {
        phase_failed(c, concurrent ? "throughput" : "commit latency", why);
        return;
    }
    if (concurrent)
        rc = measure_throughput(c, leader, opts->clients, opts->throughput_s, &r->throughput, why, WHY_LEN);
    else
        rc = measure_commit_latency(c, leader, opts->commits, r->latency_ms, &r->commits_done, why, WHY_LEN);
    if (measure_top_term(c, &term_after) == 0)
        *elections = (int)(term_after - term_before);
    if (rc != 0)
        phase_failed(c, concurrent ? "throughput" : "commit latency", why);
    if (concurrent)
        fprintf(stderr, "bench raft: %s %d: %ld commits in %.1f s from %d clients through member %d, %ld errors%s%s; "
                "%d elections\n", r->system, r->size, r->throughput.commits, r->throughput.seconds, opts->clients,
                leader + 1, r->throughput.errors, r->throughput.errors ? ", the first: " : "",
                r->throughput.first_error, *elections);
    else
        fprintf(stderr, "bench raft: %s %d: %d sequential commits through member %d; %d elections\n", r->system,
                r->size, r->commits_done, leader + 1, *elections);
}

static void run_cluster(const options_t *opts, bool etcd, int size, rng_t *rng, run_t *r, double *load_max)
{
    r->system = etcd ? "etcd" : "ferry";
    r->size = size;
    char dir[PATH_MAX], why[WHY_LEN];
    snprintf(dir, sizeof(dir), "%s/%s-%d", opts->workdir, r->system, size);
    if (mkdir(dir, 0700) != 0) {
        snprintf(r->skipped, sizeof(r->skipped), "cannot create %s", dir);
        return;
    }
    cluster_options_t copts = { .binary = etcd ? opts->etcd : opts->ferryd, .workdir = dir, .size = size, .rng = rng,
                               .log_level = opts->ferry_log_level };
    cluster_t *c = etcd ? cluster_etcd_new(&copts, why, sizeof(why)) : cluster_ferry_new(&copts, why, sizeof(why));
    if (!c) {
        snprintf(r->skipped, sizeof(r->skipped), "%s", why);
        return;
    }
    fprintf(stderr, "bench raft: %s %d: starting\n", r->system, size);
    int leader;
    double t0 = proc_now();
    if (cluster_start_all(c) != 0 || measure_wait_whole(c, FORM_DEADLINE_S, &leader, why, sizeof(why)) != 0) {
        snprintf(r->skipped, sizeof(r->skipped), "the cluster did not form: %s", why);
        phase_failed(c, "forming", why);
        cluster_destroy(&c);
        return;
    }
    fprintf(stderr, "bench raft: %s %d: whole after %.1f s, leader member %d; idle for %.0f s\n", r->system, size,
            proc_now() - t0, leader + 1, opts->idle_s);

    if (opts->idle_s > 0)
        idle_phase(c, opts, dir, r);
    *load_max = fmax(*load_max, load_1m());

    load_phase(c, opts, r, false);
    load_phase(c, opts, r, true);
    *load_max = fmax(*load_max, load_1m());

    if (measure_failover(c, opts->kills, opts->poll_ms, rng, r->failover_ms, &r->kills_done, r->failover_why,
                         WHY_LEN) != 0)
        phase_failed(c, "failover", r->failover_why);
    *load_max = fmax(*load_max, load_1m());
    cluster_destroy(&c);
}

/* --- JSON ------------------------------------------------------------------------------ */

/* One row's members after "case", built up piece by piece. */
typedef struct {
    char text[4096];
    size_t len;
} row_t;

__attribute__((format(printf, 2, 3))) static void add(row_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->text + r->len, sizeof(r->text) - r->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        r->len = r->len + (size_t)n < sizeof(r->text) ? r->len + (size_t)n : sizeof(r->text) - 1;
}

/* , "key": "value" with the value made JSON-safe (reasons quote logs). */
static void add_str(row_t *r, const char *key, const char *value)
{
    add(r, ", \"%s\": \"", key);
    for (const char *p = value; *p; p++)
        if (*p == '"' || *p == '\\')
            add(r, "'");
        else if ((unsigned char)*p >= 0x20)
            add(r, "%c", *p);
    add(r, "\"");
}

static void measured(row_t *r, const char *unit, const char *better, double ferry)
{
    add(r, ", \"unit\": \"%s\", \"better\": \"%s\", \"ferry\": %.3f", unit, better, ferry);
}

/* The anchor, or why there is none. */
static void anchor(row_t *r, bool ok, double value, const char *name, const char *missing)
{
    if (ok) {
        add(r, ", \"anchor\": %.3f", value);
        add_str(r, "anchor_name", name);
    } else {
        add_str(r, "anchor_skipped", missing);
    }
}

static int rows_printed;

static void emit(const char *name, const row_t *r)
{
    printf("%s\n  {\"case\": \"%s\"%s}", rows_printed++ ? "," : "", name, r->text);
}

static void emit_skipped(const char *name, const char *reason)
{
    row_t r = { .len = 0 };
    add_str(&r, "skipped", reason[0] ? reason : "not measured; see stderr");
    emit(name, &r);
}

typedef struct {
    bool ok;
    double median, p99, min, max;
    int n;
} summary_t;

static summary_t summarize(double *v, int n)
{
    summary_t s = { .ok = n > 0, .n = n };
    if (n > 0) {
        s.median = measure_percentile(v, n, 50);
        s.p99 = measure_percentile(v, n, 99);
        s.min = v[0];
        s.max = v[n - 1];
    }
    return s;
}

static void report_failover(const options_t *opts, run_t *ferry, run_t *etcd, const char *anchor_name,
                            const char *missing)
{
    char name[200];
    int size = ferry->size;
    summary_t f = summarize(ferry->failover_ms, ferry->kills_done);
    summary_t e = etcd ? summarize(etcd->failover_ms, etcd->kills_done) : (summary_t){ 0 };
    const char *etcd_missing = etcd ? "etcd's failover was not measured; see stderr" : missing;
    snprintf(name, sizeof(name), "%d agents: leader failover after SIGKILL, median", size);
    if (ferry->skipped[0] || !f.ok) {
        emit_skipped(name, ferry->skipped[0] ? ferry->skipped : ferry->failover_why);
        return;
    }
    row_t r = { .len = 0 };
    measured(&r, "ms", "lower", f.median);
    anchor(&r, e.ok, e.median, anchor_name, etcd_missing);
    add(&r, ", \"goal\": 300, \"samples\": %d, \"min\": %.1f, \"max\": %.1f", f.n, f.min, f.max);
    if (e.ok)
        add(&r, ", \"anchor_samples\": %d, \"anchor_min\": %.1f, \"anchor_max\": %.1f", e.n, e.min, e.max);
    char note[400];
    snprintf(note, sizeof(note), "from just before kill() to the first survivor naming another leader; every "
             "survivor polled every %.0f ms over kept connections; the killed member restarted and the cluster "
             "whole again before each kill%s", opts->poll_ms,
             ferry->failover_why[0] ? "; stopped early, see stderr" : "");
    add_str(&r, "note", note);
    emit(name, &r);

    snprintf(name, sizeof(name), "%d agents: leader failover after SIGKILL, p99", size);
    r = (row_t){ .len = 0 };
    measured(&r, "ms", "lower", f.p99);
    anchor(&r, e.ok, e.p99, anchor_name, etcd_missing);
    add(&r, ", \"samples\": %d", f.n);
    add_str(&r, "note", "nearest rank: with fewer than 100 kills this is the slowest one");
    emit(name, &r);

    snprintf(name, sizeof(name), "%d agents: failover speedup over etcd, median", size);
    if (!e.ok) {
        emit_skipped(name, etcd_missing);
        return;
    }
    r = (row_t){ .len = 0 };
    measured(&r, "x", "higher", e.median / f.median);
    add(&r, ", \"goal\": 5");
    add_str(&r, "note", "etcd's median failover divided by ferry's, same run; the issue asks for more than 5x");
    emit(name, &r);
}

static void report_commits(const options_t *opts, run_t *ferry, run_t *etcd, const char *anchor_name,
                           const char *missing)
{
    char name[200];
    int size = ferry->size;
    summary_t f = summarize(ferry->latency_ms, ferry->commits_done);
    summary_t e = etcd ? summarize(etcd->latency_ms, etcd->commits_done) : (summary_t){ 0 };
    const char *etcd_missing = etcd ? "etcd's commit latency was not measured; see stderr" : missing;
    snprintf(name, sizeof(name), "%d agents: commit latency p50, sequential writes to the leader", size);
    if (ferry->skipped[0] || !f.ok) {
        emit_skipped(name, ferry->skipped[0] ? ferry->skipped : ferry->latency_why);
    } else {
        row_t r = { .len = 0 };
        measured(&r, "ms", "lower", f.median);
        anchor(&r, e.ok, e.median, anchor_name, etcd_missing);
        if (e.ok)
            add(&r, ", \"goal\": %.3f", e.median);
        add(&r, ", \"samples\": %d, \"elections_during\": %d", f.n, ferry->latency_elections);
        if (e.ok)
            add(&r, ", \"anchor_elections_during\": %d", etcd->latency_elections);
        add_str(&r, "note", "ferry: cluster.set over one CURVE control connection; etcd: PUT /v3/kv/put over one "
                "kept-alive HTTP/1.1 connection (JSON gateway); goal: no worse than etcd in the same run");
        emit(name, &r);
        snprintf(name, sizeof(name), "%d agents: commit latency p99, sequential writes to the leader", size);
        r = (row_t){ .len = 0 };
        measured(&r, "ms", "lower", f.p99);
        anchor(&r, e.ok, e.p99, anchor_name, etcd_missing);
        add(&r, ", \"samples\": %d", f.n);
        emit(name, &r);
    }

    snprintf(name, sizeof(name), "%d agents: commits per second, %d concurrent clients", size, opts->clients);
    if (ferry->skipped[0] || ferry->throughput.commits == 0) {
        emit_skipped(name, ferry->skipped[0] ? ferry->skipped : ferry->throughput_why);
        return;
    }
    row_t r = { .len = 0 };
    measured(&r, "commits/s", "higher", ferry->throughput.commits_per_s);
    bool etcd_ok = etcd && etcd->throughput.commits > 0;
    anchor(&r, etcd_ok, etcd_ok ? etcd->throughput.commits_per_s : 0, anchor_name,
           etcd ? "etcd's throughput was not measured; see stderr" : missing);
    add(&r, ", \"seconds\": %.1f, \"errors\": %ld", ferry->throughput.seconds, ferry->throughput.errors);
    if (ferry->throughput.errors)
        add_str(&r, "first_error", ferry->throughput.first_error);
    add(&r, ", \"elections_during\": %d", ferry->throughput_elections);
    if (etcd_ok)
        add(&r, ", \"anchor_errors\": %ld, \"anchor_elections_during\": %d", etcd->throughput.errors,
            etcd->throughput_elections);
    add_str(&r, "note", "each client has its own connection to the leader and writes one after another");
    emit(name, &r);
}

/* What the stall probe saw in a run's idle window. */
static void stalls(row_t *r, const char *key, const run_t *run)
{
    if (!run->have_stalls)
        return;
    const stall_stats_t *s = &run->idle_stalls;
    add(r, ", \"%s\": {\"fdatasync_max_ms\": %.1f, \"fdatasyncs_over_100ms\": %d, \"fdatasyncs\": %d, "
        "\"wake_late_max_ms\": %.1f, \"wakes_late_over_100ms\": %d}", key, s->sync_max_ms, s->syncs_over_100ms,
        s->syncs, s->wake_late_max_ms, s->wakes_late_over_100ms);
}

static void report_idle(const options_t *opts, run_t *ferry, run_t *etcd, const char *anchor_name,
                        const char *missing)
{
    char name[200];
    snprintf(name, sizeof(name), "%d agents: spurious elections while idle", ferry->size);
    if (opts->idle_s <= 0) {
        emit_skipped(name, "--idle-seconds 0");
        return;
    }
    if (ferry->skipped[0] || ferry->idle_why[0]) {
        emit_skipped(name, ferry->skipped[0] ? ferry->skipped : ferry->idle_why);
        return;
    }
    row_t r = { .len = 0 };
    measured(&r, "elections", "lower", (double)(ferry->idle.term_last - ferry->idle.term_first));
    bool etcd_ok = etcd && etcd->idle.seconds > 0 && !etcd->idle_why[0];
    anchor(&r, etcd_ok, etcd_ok ? (double)(etcd->idle.term_last - etcd->idle.term_first) : 0, anchor_name,
           etcd ? "etcd's idle window failed; see stderr" : missing);
    add(&r, ", \"goal\": 0, \"window_s\": %.0f, \"leader_changes\": %d, \"failed_polls\": %d",
        ferry->idle.seconds, ferry->idle.leader_changes, ferry->idle.failed_polls);
    add(&r, ", \"term_rose_at_s\": [");
    for (int i = 0; i < ferry->idle.n_raised; i++)
        add(&r, "%s%.1f", i ? ", " : "", ferry->idle.raised_at[i]);
    add(&r, "]");
    stalls(&r, "stalls", ferry);
    if (etcd_ok) {
        add(&r, ", \"anchor_window_s\": %.0f, \"anchor_leader_changes\": %d", etcd->idle.seconds,
            etcd->idle.leader_changes);
        stalls(&r, "anchor_stalls", etcd);
    }
    char note[400];
    snprintf(note, sizeof(note), "term changes in a window without client writes, every member polled every %.1f s; "
             "stalls: a 512-byte write + fdatasync every 0.2 s on the state dirs' filesystem, and how late a 10 ms "
             "sleep wakes, in the same window", IDLE_POLL_S);
    add_str(&r, "note", note);
    emit(name, &r);
}

/* The rows of one ferry cluster, against the etcd cluster of the same size
 * when there is one. */
static void report(const options_t *opts, run_t *ferry, run_t *etcd, const char *etcd_version)
{
    char anchor_name[300], missing[WHY_LEN + 64] = "";
    snprintf(anchor_name, sizeof(anchor_name),
             "etcd %s, %d members on 127.0.0.1, default timings (heartbeat 100 ms, election 1000 ms), same run",
             etcd_version, ferry->size);
    if (!etcd)
        snprintf(missing, sizeof(missing), "etcd was not run with %d members (--etcd-sizes)", ferry->size);
    else if (etcd->skipped[0])
        snprintf(missing, sizeof(missing), "etcd: %s", etcd->skipped);
    if (etcd && etcd->skipped[0])
        etcd = NULL;
    report_failover(opts, ferry, etcd, anchor_name, missing);
    report_commits(opts, ferry, etcd, anchor_name, missing);
    report_idle(opts, ferry, etcd, anchor_name, missing);
}

/* --- options ------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: bench_raft --ferryd PATH --etcd PATH|none --workdir DIR [--quick] [--sizes 3,5]\n"
                    "       [--etcd-sizes 3] [--kills N] [--idle-seconds S] [--commits N] [--clients N]\n"
                    "       [--throughput-seconds S] [--poll-ms MS] [--seed N] [--ferry-log-level debug]\n");
}

static int parse_sizes(const char *text, int *sizes, int *n)
{
    *n = 0;
    if (strcmp(text, "none") == 0)
        return 0;
    for (const char *p = text; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > CLUSTER_MAX_MEMBERS || *n == MAX_SIZES || (*end && *end != ','))
            return -1;
        sizes[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return 0;
}

static int parse_number(const char *flag, const char *text, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || v < lo || v > hi) {
        fprintf(stderr, "bench_raft: %s %s: expected a number from %g to %g\n", flag, text, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_options(int argc, char **argv, options_t *o)
{
    *o = (options_t){ .ferry_sizes = { 3, 5 }, .n_ferry_sizes = 2, .etcd_sizes = { 3 }, .n_etcd_sizes = 1,
                      .kills = 20, .commits = 2000, .clients = 16, .idle_s = 600, .throughput_s = 5,
                      .poll_ms = 10, .seed = 1 };
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--quick") == 0) {
            o->quick = true;
            o->kills = 5;
            o->commits = 300;
            o->idle_s = 20;
            o->throughput_s = 2;
        }
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (strcmp(flag, "--quick") == 0)
            continue;
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_raft: %s needs a value\n", flag);
            return -1;
        }
        const char *value = argv[++i];
        double v = 0;
        int rc = 0;
        if (strcmp(flag, "--ferryd") == 0) {
            o->ferryd = value;
        } else if (strcmp(flag, "--etcd") == 0) {
            o->etcd = value;
        } else if (strcmp(flag, "--workdir") == 0) {
            o->workdir = value;
        } else if (strcmp(flag, "--ferry-log-level") == 0) {
            o->ferry_log_level = value;
        } else if (strcmp(flag, "--sizes") == 0) {
            if ((rc = parse_sizes(value, o->ferry_sizes, &o->n_ferry_sizes)) != 0)
                fprintf(stderr, "bench_raft: --sizes %s: expected up to %d sizes 1-%d, comma separated\n", value,
                        MAX_SIZES, CLUSTER_MAX_MEMBERS);
        } else if (strcmp(flag, "--etcd-sizes") == 0) {
            if ((rc = parse_sizes(value, o->etcd_sizes, &o->n_etcd_sizes)) != 0)
                fprintf(stderr, "bench_raft: --etcd-sizes %s: expected up to %d sizes 1-%d, or none\n", value,
                        MAX_SIZES, CLUSTER_MAX_MEMBERS);
        } else if (strcmp(flag, "--kills") == 0) {
            rc = parse_number(flag, value, 1, MAX_KILLS, &v);
            o->kills = (int)v;
        } else if (strcmp(flag, "--commits") == 0) {
            rc = parse_number(flag, value, 1, MAX_COMMITS, &v);
            o->commits = (int)v;
        } else if (strcmp(flag, "--clients") == 0) {
            rc = parse_number(flag, value, 1, MAX_CLIENTS, &v);
            o->clients = (int)v;
        } else if (strcmp(flag, "--seed") == 0) {
            rc = parse_number(flag, value, 0, 1e15, &v);
            o->seed = (uint64_t)v;
        } else if (strcmp(flag, "--idle-seconds") == 0) {
            rc = parse_number(flag, value, 0, 86400, &o->idle_s);
        } else if (strcmp(flag, "--throughput-seconds") == 0) {
            rc = parse_number(flag, value, 0.5, 600, &o->throughput_s);
        } else if (strcmp(flag, "--poll-ms") == 0) {
            rc = parse_number(flag, value, 1, 1000, &o->poll_ms);
        } else {
            fprintf(stderr, "bench_raft: unknown flag %s\n", flag);
            usage();
            return -1;
        }
        if (rc != 0)
            return -1;
    }
    if (!o->ferryd || !o->etcd || !o->workdir) {
        usage();
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    options_t opts;
    if (parse_options(argc, argv, &opts) != 0)
        return 2;
    zsys_handler_set(NULL);   /* die on SIGINT/SIGTERM, and the children with us */
    log_set_level(LOG_LEVEL_WARN);
    crypto_init();
    rng_t rng;
    rng_seed(&rng, opts.seed);

    char model[256], etcd_version[64] = "", version_file[PATH_MAX];
    first_value("/proc/cpuinfo", "model name", model, sizeof(model));
    bool have_etcd = strcmp(opts.etcd, "none") != 0 && access(opts.etcd, X_OK) == 0;
    if (have_etcd) {
        snprintf(version_file, sizeof(version_file), "%s/etcd-version.txt", opts.workdir);
        char *args[] = { (char *)opts.etcd, "--version", NULL };
        proc_run(args, version_file, 10);
        first_value(version_file, "etcd Version", etcd_version, sizeof(etcd_version));
    }
    double load_before = load_1m(), load_max = load_before;

    run_t runs[2 * MAX_SIZES];
    int n_runs = 0;
    for (int pass = 0; pass < 2; pass++) {
        bool etcd = pass == 1;
        int n = etcd ? opts.n_etcd_sizes : opts.n_ferry_sizes;
        for (int i = 0; i < n; i++) {
            run_t *r = &runs[n_runs++];
            memset(r, 0, sizeof(*r));
            r->latency_ms = calloc((size_t)opts.commits, sizeof(double));
            if (etcd && !have_etcd) {
                r->system = "etcd";
                r->size = opts.etcd_sizes[i];
                snprintf(r->skipped, sizeof(r->skipped), "%s not found (Debian: apt-get install etcd-server)",
                         opts.etcd);
                continue;
            }
            run_cluster(&opts, etcd, etcd ? opts.etcd_sizes[i] : opts.ferry_sizes[i], &rng, r, &load_max);
        }
    }

    printf("{\"bench\": \"raft\", \"machine\": {\"cpus\": %ld, \"model\": \"%s\", \"load_1m_before\": %.2f, "
           "\"load_1m_max\": %.2f, \"load_1m_after\": %.2f, \"state_fs\": \"%s\"},\n",
           sysconf(_SC_NPROCESSORS_ONLN), model, load_before, fmax(load_max, load_1m()), load_1m(),
           filesystem_of(opts.workdir));
    printf(" \"params\": {\"quick\": %s, \"kills\": %d, \"idle_seconds\": %.0f, \"commits\": %d, \"clients\": %d, "
           "\"throughput_seconds\": %.1f, \"poll_ms\": %.0f, \"seed\": %llu, "
           "\"ferry_timings\": \"defaults: tick 10 ms, heartbeat 20 ms, election 100 ms\"},\n",
           opts.quick ? "true" : "false", opts.kills, opts.idle_s, opts.commits, opts.clients, opts.throughput_s,
           opts.poll_ms, (unsigned long long)opts.seed);
    printf(" \"rows\": [");
    for (int i = 0; i < n_runs; i++) {
        if (strcmp(runs[i].system, "ferry") != 0)
            continue;
        run_t *etcd = NULL;
        for (int j = 0; j < n_runs; j++)
            if (strcmp(runs[j].system, "etcd") == 0 && runs[j].size == runs[i].size)
                etcd = &runs[j];
        report(&opts, &runs[i], etcd, etcd_version[0] ? etcd_version : "unknown");
    }
    printf("\n]}\n");
    for (int i = 0; i < n_runs; i++)
        free(runs[i].latency_ms);
    return 0;
}
