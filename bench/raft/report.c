/* report.c - the JSON rows of bench_raft (format: docs/benchmarks.md).
 * Each ferry row carries the etcd figure of the same run as its anchor, or
 * says why there is none; the goals are those of the issue. */
#include "bench_raft.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* --- rows ------------------------------------------------------------------------------ */

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

/* Where rows go, and how many went. */
typedef struct {
    FILE *out;
    int rows;
} report_t;

static void emit(report_t *rep, const char *name, const row_t *r)
{
    fprintf(rep->out, "%s\n  {\"case\": \"%s\"%s}", rep->rows++ ? "," : "", name, r->text);
}

static void emit_skipped(report_t *rep, const char *name, const char *reason)
{
    row_t r = { .len = 0 };
    add_str(&r, "skipped", reason[0] ? reason : "not measured; see stderr");
    emit(rep, name, &r);
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

static void report_failover(report_t *rep, const options_t *opts, run_t *ferry, run_t *etcd, const char *anchor_name,
                            const char *missing)
{
    char name[200];
    int size = ferry->size;
    summary_t f = summarize(ferry->failover_ms, ferry->kills_done);
    summary_t e = etcd ? summarize(etcd->failover_ms, etcd->kills_done) : (summary_t){ 0 };
    const char *etcd_missing = etcd ? "etcd's failover was not measured; see stderr" : missing;
    snprintf(name, sizeof(name), "%d agents: leader failover after SIGKILL, median", size);
    if (ferry->skipped[0] || !f.ok) {
        emit_skipped(rep, name, ferry->skipped[0] ? ferry->skipped : ferry->failover_why);
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
    emit(rep, name, &r);

    snprintf(name, sizeof(name), "%d agents: leader failover after SIGKILL, p99", size);
    r = (row_t){ .len = 0 };
    measured(&r, "ms", "lower", f.p99);
    anchor(&r, e.ok, e.p99, anchor_name, etcd_missing);
    add(&r, ", \"samples\": %d", f.n);
    add_str(&r, "note", "nearest rank: with fewer than 100 kills this is the slowest one");
    emit(rep, name, &r);

    snprintf(name, sizeof(name), "%d agents: failover speedup over etcd, median", size);
    if (!e.ok) {
        emit_skipped(rep, name, etcd_missing);
        return;
    }
    r = (row_t){ .len = 0 };
    measured(&r, "x", "higher", e.median / f.median);
    add(&r, ", \"goal\": 5");
    add_str(&r, "note", "etcd's median failover divided by ferry's, same run; the issue asks for more than 5x");
    emit(rep, name, &r);
}

static void report_commits(report_t *rep, const options_t *opts, run_t *ferry, run_t *etcd, const char *anchor_name,
                           const char *missing)
{
    char name[200];
    int size = ferry->size;
    summary_t f = summarize(ferry->latency_ms, ferry->commits_done);
    summary_t e = etcd ? summarize(etcd->latency_ms, etcd->commits_done) : (summary_t){ 0 };
    const char *etcd_missing = etcd ? "etcd's commit latency was not measured; see stderr" : missing;
    snprintf(name, sizeof(name), "%d agents: commit latency p50, sequential writes to the leader", size);
    if (ferry->skipped[0] || !f.ok) {
        emit_skipped(rep, name, ferry->skipped[0] ? ferry->skipped : ferry->latency_why);
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
        emit(rep, name, &r);
        snprintf(name, sizeof(name), "%d agents: commit latency p99, sequential writes to the leader", size);
        r = (row_t){ .len = 0 };
        measured(&r, "ms", "lower", f.p99);
        anchor(&r, e.ok, e.p99, anchor_name, etcd_missing);
        add(&r, ", \"samples\": %d", f.n);
        emit(rep, name, &r);
    }

    snprintf(name, sizeof(name), "%d agents: commits per second, %d concurrent clients", size, opts->clients);
    if (ferry->skipped[0] || ferry->throughput.commits == 0) {
        emit_skipped(rep, name, ferry->skipped[0] ? ferry->skipped : ferry->throughput_why);
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
    emit(rep, name, &r);
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

static void report_idle(report_t *rep, const options_t *opts, run_t *ferry, run_t *etcd, const char *anchor_name,
                        const char *missing)
{
    char name[200];
    snprintf(name, sizeof(name), "%d agents: spurious elections while idle", ferry->size);
    if (opts->idle_s <= 0) {
        emit_skipped(rep, name, "--idle-seconds 0");
        return;
    }
    if (ferry->skipped[0] || ferry->idle_why[0]) {
        emit_skipped(rep, name, ferry->skipped[0] ? ferry->skipped : ferry->idle_why);
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
    emit(rep, name, &r);
}

/* The rows of one ferry cluster, against the etcd cluster of the same size
 * when there is one. */
static void report_cluster(report_t *rep, const options_t *opts, run_t *ferry, run_t *etcd, const char *etcd_version)
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
    report_failover(rep, opts, ferry, etcd, anchor_name, missing);
    report_commits(rep, opts, ferry, etcd, anchor_name, missing);
    report_idle(rep, opts, ferry, etcd, anchor_name, missing);
}

void report_rows(FILE *out, const options_t *opts, run_t *runs, int n_runs, const char *etcd_version)
{
    report_t rep = { .out = out };
    fprintf(out, " \"rows\": [");
    for (int i = 0; i < n_runs; i++) {
        if (strcmp(runs[i].system, "ferry") != 0)
            continue;
        run_t *etcd = NULL;
        for (int j = 0; j < n_runs; j++)
            if (strcmp(runs[j].system, "etcd") == 0 && runs[j].size == runs[i].size)
                etcd = &runs[j];
        report_cluster(&rep, opts, &runs[i], etcd, etcd_version);
    }
    fprintf(out, "\n]}\n");
}
