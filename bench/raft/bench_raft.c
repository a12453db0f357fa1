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
#include "bench_raft.h"
#include "cluster.h"
#include "proc.h"

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

#define FORM_DEADLINE_S 90.0

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
        proc_log_tail(cluster_log(c, i), 12);
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

/* All phases on one cluster of r->system and r->size. */
static void run_cluster(const options_t *opts, bool etcd, rng_t *rng, run_t *r, double *load_max)
{
    int size = r->size;
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
            r->system = etcd ? "etcd" : "ferry";
            r->size = etcd ? opts.etcd_sizes[i] : opts.ferry_sizes[i];
            r->latency_ms = calloc((size_t)opts.commits, sizeof(double));
            if (!r->latency_ms)
                snprintf(r->skipped, sizeof(r->skipped), "out of memory for %d latency samples", opts.commits);
            else if (etcd && !have_etcd)
                snprintf(r->skipped, sizeof(r->skipped), "%s", strcmp(opts.etcd, "none") == 0
                         ? "not run (--etcd none; Debian: apt-get install etcd-server)"
                         : "not found or not executable (Debian: apt-get install etcd-server)");
            else
                run_cluster(&opts, etcd, &rng, r, &load_max);
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
    report_rows(stdout, &opts, runs, n_runs, etcd_version[0] ? etcd_version : "unknown");
    for (int i = 0; i < n_runs; i++)
        free(runs[i].latency_ms);
    return 0;
}
