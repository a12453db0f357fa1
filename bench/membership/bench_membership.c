/* bench_membership - ferry's membership layer measured two ways, one JSON
 * object on stdout (progress on stderr):
 *
 * (a) In the simulator (tests/sim), for N = 10, 100 and 1000: how long until
 *     every live member marks a crashed one dead (median and p99 over
 *     crashes and seeds), how long a record update takes to reach everyone,
 *     how many live members get declared dead under 5% and 20% packet loss,
 *     and the bytes each member sends per second. Every figure is measured
 *     for ferry's defaults and, on the same seeds, for the same core run
 *     with hashicorp/memberlist's DefaultLANConfig parameters.
 * (b) On real loopback sockets, N gossip_t instances in this process
 *     (N = 10 and 100): stop one without leaving, time until every other
 *     member marks it dead. Real memberlist does the same in the same run
 *     (bench/peers/memberlist, started as a child process).
 *
 *   bench_membership [--peer PATH] [--quick] [--no-sim] [--no-loopback]
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/membership/gossip.h"
#include "common/log.h"
#include "swim_cluster.h"

/* --- small helpers ------------------------------------------------------ */

typedef struct {
    double *v;
    size_t n, cap;
} samples_t;

static void add_sample(samples_t *s, double x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = realloc(s->v, s->cap * sizeof(double));
        if (!s->v)
            abort();
    }
    s->v[s->n++] = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile; NAN when there are no samples. */
static double percentile(samples_t *s, double p)
{
    if (!s->n)
        return NAN;
    qsort(s->v, s->n, sizeof(double), cmp_double);
    size_t rank = (size_t)ceil(p / 100.0 * (double)s->n);
    return s->v[rank ? rank - 1 : 0];
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- JSON rows ---------------------------------------------------------- */

static int rows_out;

static void json_num(const char *key, double v)
{
    if (isnan(v))
        printf(", \"%s\": null", key);
    else
        printf(", \"%s\": %.4g", key, v);
}

/* A row; anchor/goal may be NAN (left out). */
static void row(const char *name, const char *unit, const char *better, double ferry,
                double anchor, const char *anchor_name, double goal)
{
    printf("%s\n  {\"case\": \"%s\", \"unit\": \"%s\", \"better\": \"%s\"", rows_out++ ? "," : "",
           name, unit, better);
    json_num("ferry", ferry);
    if (!isnan(anchor)) {
        json_num("anchor", anchor);
        printf(", \"anchor_name\": \"%s\"", anchor_name);
    }
    if (!isnan(goal))
        json_num("goal", goal);
    printf("}");
    fflush(stdout);
}

static void skipped(const char *name, const char *reason)
{
    printf("%s\n  {\"case\": \"%s\", \"skipped\": \"%s\"}", rows_out++ ? "," : "", name, reason);
    fflush(stdout);
}

/* --- (a) the simulator -------------------------------------------------- */

typedef struct {
    swim_cluster_t *c;
    int victim;                 /* crash under observation, or -1 */
    int victim_dead_seen;       /* members that marked it dead */
    uint64_t victim_last_dead_us;
    int false_dead;             /* live members declared dead, once per incarnation */
    uint64_t *false_inc;
    bool *false_counted;
} watch_t;

static void on_event(void *ctx, int node, const swim_event_t *ev)
{
    watch_t *w = ctx;
    if (ev->type != SWIM_EVENT_DEAD)
        return;
    int subject = swim_cluster_index(ev->name);
    if (subject < 0 || subject >= swim_cluster_size(w->c))
        return;
    if (subject == w->victim) {
        w->victim_dead_seen++;
        w->victim_last_dead_us = ev->at_us;
    }
    if (sim_is_up(swim_cluster_sim(w->c), subject) &&
        (!w->false_counted[subject] || w->false_inc[subject] != ev->incarnation)) {
        w->false_counted[subject] = true;
        w->false_inc[subject] = ev->incarnation;
        w->false_dead++;
    }
}

static int up_count(swim_cluster_t *c)
{
    int up = 0;
    for (int i = 0; i < swim_cluster_size(c); i++)
        up += sim_is_up(swim_cluster_sim(c), i);
    return up;
}

/* A converged cluster of n on the simulator, or NULL. Large clusters join
 * in two rounds: everyone through node 0, then everyone again through node 0,
 * which by then knows all (as an operator restarting seeds would). */
static swim_cluster_t *bootstrap(watch_t *w, int n, uint64_t seed, const swim_config_t *cfg)
{
    memset(w, 0, sizeof(*w));
    w->victim = -1;
    w->false_inc = calloc((size_t)n, sizeof(uint64_t));
    w->false_counted = calloc((size_t)n, sizeof(bool));
    w->c = swim_cluster_new(&(swim_cluster_config_t){ .nodes = n, .seed = seed, .swim = cfg,
                                                      .on_event = on_event, .event_ctx = w });
    if (!w->c || !w->false_inc || !w->false_counted)
        return NULL;
    swim_cluster_join_all(w->c, 0);
    sim_run_for(swim_cluster_sim(w->c), 2 * SIM_SECOND);
    swim_cluster_join_all(w->c, 0);
    if (!swim_cluster_run_until(w->c, swim_cluster_converged, w->c,
                                sim_now(swim_cluster_sim(w->c)) + 120 * SIM_SECOND, SIM_SECOND / 2)) {
        fprintf(stderr, "bench: n=%d seed %llu did not converge\n", n, (unsigned long long)seed);
        swim_cluster_destroy(&w->c);
        return NULL;
    }
    w->false_dead = 0;
    return w->c;
}

static void teardown(watch_t *w)
{
    swim_cluster_destroy(&w->c);
    free(w->false_inc);
    free(w->false_counted);
}

static bool victim_buried(void *ctx)
{
    watch_t *w = ctx;
    return w->victim_dead_seen >= up_count(w->c);
}

typedef struct {
    swim_cluster_t *c;
    int subject;
    uint64_t incarnation;
} update_t;

static bool update_everywhere(void *ctx)
{
    update_t *u = ctx;
    sim_t *sim = swim_cluster_sim(u->c);
    swim_member_t m;
    for (int i = 0; i < swim_cluster_size(u->c); i++)
        if (sim_is_up(sim, i) &&
            (swim_member_find(swim_cluster_node(u->c, i), swim_cluster_name(u->c, u->subject), &m) < 0 ||
             m.incarnation < u->incarnation))
            return false;
    return true;
}

typedef struct {
    samples_t detect, update;
    double false_5, false_20;   /* live members declared dead, summed over seeds */
    double udp_per_node_s, total_per_node_s;
} sim_result_t;

typedef struct {
    int n;
    int seeds;
    int crashes_per_seed;
    int idle_seconds;
    int loss5_seconds, loss20_seconds;
} sim_plan_t;

static bool queues_empty(void *ctx)
{
    swim_cluster_t *c = ctx;
    for (int i = 0; i < swim_cluster_size(c); i++)
        if (sim_is_up(swim_cluster_sim(c), i) && swim_pending_updates(swim_cluster_node(c, i)))
            return false;
    return true;
}

/* Live members declared dead during `seconds` at the given loss rate. */
static int run_lossy(watch_t *w, double loss, int seconds)
{
    sim_t *sim = swim_cluster_sim(w->c);
    sim_set_faults(sim, &(sim_faults_t){ .loss = loss, .delay_min_us = 100, .delay_max_us = 2000 });
    w->false_dead = 0;
    sim_run_for(sim, (uint64_t)seconds * SIM_SECOND);
    int result = w->false_dead;
    sim_set_faults(sim, &(sim_faults_t){ .delay_min_us = 100, .delay_max_us = 2000 });
    return result;
}

/* One cluster through every phase: quiet traffic, record updates and
 * crashes, then 5% and 20% loss. */
static void run_cluster(const sim_plan_t *p, const swim_config_t *cfg, uint64_t seed,
                        sim_result_t *r)
{
    watch_t w;
    swim_cluster_t *c = bootstrap(&w, p->n, seed, cfg);
    if (!c) {
        teardown(&w);
        return;
    }
    sim_t *sim = swim_cluster_sim(c);
    sim_set_faults(sim, &(sim_faults_t){ .delay_min_us = 100, .delay_max_us = 2000 });
    /* Traffic of a quiet cluster: once the join news has been told. */
    swim_cluster_run_until(c, queues_empty, c, sim_now(sim) + 60 * SIM_SECOND, 100 * SIM_MS);
    uint64_t udp0 = swim_cluster_udp_bytes(c), stream0 = swim_cluster_stream_bytes(c);
    sim_run_for(sim, (uint64_t)p->idle_seconds * SIM_SECOND);
    double udp = (double)(swim_cluster_udp_bytes(c) - udp0);
    double stream = (double)(swim_cluster_stream_bytes(c) - stream0);
    r->udp_per_node_s += udp / p->idle_seconds / p->n / p->seeds;
    r->total_per_node_s += (udp + stream) / p->idle_seconds / p->n / p->seeds;

    for (int k = 0; k < p->crashes_per_seed; k++) {
        /* A record update from a random live member... */
        int subject = 1 + (int)rng_below(sim_rng(sim), (uint64_t)p->n - 1);
        if (sim_is_up(sim, subject)) {
            swim_t *s = swim_cluster_node(c, subject);
            swim_member_t me;
            swim_record_t rec;
            swim_member_at(s, 0, &me);
            swim_record_decode(me.record, me.record_len, &rec, NULL, NULL);
            rec.used_cpu_mhz += 100;
            uint64_t t0 = sim_now(sim);
            swim_update_record(s, t0, &rec);
            update_t u = { c, subject, swim_incarnation(s) };
            if (swim_cluster_run_until(c, update_everywhere, &u, t0 + 60 * SIM_SECOND, SIM_MS))
                add_sample(&r->update, (double)(sim_now(sim) - t0) / 1e6);
        }
        /* ...and a crash of another. */
        int victim;
        do
            victim = 1 + (int)rng_below(sim_rng(sim), (uint64_t)p->n - 1);
        while (!sim_is_up(sim, victim));
        w.victim = victim;
        w.victim_dead_seen = 0;
        uint64_t t0 = sim_now(sim);
        swim_cluster_crash(c, victim);
        if (swim_cluster_run_until(c, victim_buried, &w, t0 + 120 * SIM_SECOND, 10 * SIM_MS)) {
            double took = (double)(w.victim_last_dead_us - t0) / 1e6;
            add_sample(&r->detect, took);
            fprintf(stderr, "bench: n=%d seed %llu probe %.0f ms: crash of node-%d seen by all "
                    "after %.3f s\n", p->n, (unsigned long long)seed,
                    (double)cfg->probe_interval_us / 1000, victim, took);
        } else
            fprintf(stderr, "bench: n=%d seed %llu: crash not detected in 120 s\n", p->n,
                    (unsigned long long)seed);
        w.victim = -1;
        sim_run_for(sim, 2 * SIM_SECOND);   /* let the news settle */
    }

    r->false_5 += run_lossy(&w, 0.05, p->loss5_seconds);
    swim_cluster_run_until(c, swim_cluster_converged, c, sim_now(sim) + 60 * SIM_SECOND,
                           SIM_SECOND / 2);
    r->false_20 += run_lossy(&w, 0.20, p->loss20_seconds);
    teardown(&w);
}

static void run_sim(const sim_plan_t *p, const swim_config_t *cfg, sim_result_t *r)
{
    memset(r, 0, sizeof(*r));
    for (int s = 0; s < p->seeds; s++)
        run_cluster(p, cfg, 1000 + (uint64_t)s, r);
}

static void report_sim(const sim_plan_t *p, sim_result_t *f, sim_result_t *m)
{
    const char *ml = "same core, memberlist DefaultLANConfig parameters, same seeds";
    char name[160];
    snprintf(name, sizeof(name), "sim N=%d crash marked dead by all, median of %zu", p->n, f->detect.n);
    row(name, "s", "lower", percentile(&f->detect, 50), percentile(&m->detect, 50), ml, NAN);
    snprintf(name, sizeof(name), "sim N=%d crash marked dead by all, p99 of %zu", p->n, f->detect.n);
    row(name, "s", "lower", percentile(&f->detect, 99), percentile(&m->detect, 99), ml, NAN);
    snprintf(name, sizeof(name), "sim N=%d record update reaches all, median of %zu", p->n,
             f->update.n);
    row(name, "s", "lower", percentile(&f->update, 50), percentile(&m->update, 50), ml, NAN);
    snprintf(name, sizeof(name), "sim N=%d live members declared dead, 5%% loss, %d seeds x %d s",
             p->n, p->seeds, p->loss5_seconds);
    /* The goal: no more false positives than memberlist's LAN config. */
    row(name, "count", "lower", f->false_5, m->false_5, ml, m->false_5);
    snprintf(name, sizeof(name), "sim N=%d live members declared dead, 20%% loss, %d seeds x %d s",
             p->n, p->seeds, p->loss20_seconds);
    row(name, "count", "lower", f->false_20, m->false_20, ml, NAN);
    snprintf(name, sizeof(name), "sim N=%d gossip bytes sent per member per second, sealed UDP, "
             "quiet cluster, %d s", p->n, p->idle_seconds);
    row(name, "B/s", "lower", f->udp_per_node_s, m->udp_per_node_s, ml, NAN);
    snprintf(name, sizeof(name), "sim N=%d all bytes sent per member per second, UDP + push-pull, "
             "quiet cluster, %d s", p->n, p->idle_seconds);
    row(name, "B/s", "lower", f->total_per_node_s, m->total_per_node_s, ml, NAN);
    free(f->detect.v);
    free(f->update.v);
    free(m->detect.v);
    free(m->update.v);
}

/* --- (b) real sockets --------------------------------------------------- */

typedef struct {
    gossip_t **g;
    int n;
} fleet_t;

static void fleet_turn(fleet_t *f)
{
    struct pollfd *pfds = calloc((size_t)f->n * 2, sizeof(*pfds));
    int *owner = calloc((size_t)f->n * 2, sizeof(int));
    int k = 0, timeout = 10;
    for (int i = 0; i < f->n; i++) {
        if (!f->g[i])
            continue;
        int fds[2];
        int m = gossip_fds(f->g[i], fds, 2);
        for (int j = 0; j < m; j++) {
            pfds[k] = (struct pollfd){ .fd = fds[j], .events = POLLIN };
            owner[k++] = i;
        }
        int t = gossip_timeout_ms(f->g[i]);
        if (t < timeout)
            timeout = t;
    }
    if (poll(pfds, (nfds_t)k, timeout) > 0)
        for (int i = 0; i < k; i++)
            if (pfds[i].revents & POLLIN)
                gossip_on_readable(f->g[owner[i]], pfds[i].fd);
    for (int i = 0; i < f->n; i++)
        if (f->g[i])
            gossip_tick(f->g[i]);
    free(pfds);
    free(owner);
}

static bool fleet_converged(fleet_t *f)
{
    for (int i = 0; i < f->n; i++)
        if (f->g[i] && swim_live_count(gossip_swim(f->g[i])) != (size_t)f->n)
            return false;
    return true;
}

/* One trial: n members join, one stops without leaving; returns the seconds
 * until every other member marked it dead, or NAN. */
static double loopback_trial(int n, uint8_t key[KEYRING_KEY_BYTES], int trial)
{
    fleet_t f = { calloc((size_t)n, sizeof(gossip_t *)), n };
    double result = NAN;
    char name[32];
    swim_record_t rec = { .cpus = 4, .cpu_mhz = 2400, .mem_bytes = 8ULL << 30 };
    swim_record_add_iface(&rec, "lo", "127.0.0.1", "management,vmotion");
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "host-%d-%d", trial, i);
        f.g[i] = gossip_new(&(gossip_config_t){ .name = name, .bind = "127.0.0.1:0", .key = key,
                                                .join = i ? gossip_address(f.g[0]) : NULL,
                                                .record = &rec });
        if (!f.g[i])
            goto done;
    }
    double start = wall_s();
    while (!fleet_converged(&f)) {
        if (wall_s() - start > 60) {
            fprintf(stderr, "bench: loopback n=%d did not converge in 60 s\n", n);
            goto done;
        }
        fleet_turn(&f);
    }
    fprintf(stderr, "bench: loopback n=%d trial %d joined in %.2f s\n", n, trial, wall_s() - start);
    /* Drain the join events, then stop the last member without a leave. */
    swim_event_t ev;
    for (int i = 0; i < n; i++)
        while (gossip_next_event(f.g[i], &ev))
            ;
    char victim[SWIM_NAME_CAP];
    snprintf(victim, sizeof(victim), "%s", gossip_name(f.g[n - 1]));
    gossip_destroy(&f.g[n - 1]);
    double t0 = wall_s(), last = t0;
    int seen = 0;
    while (seen < n - 1 && wall_s() - t0 < 60) {
        fleet_turn(&f);
        for (int i = 0; i < n - 1; i++)
            while (gossip_next_event(f.g[i], &ev))
                if (ev.type == SWIM_EVENT_DEAD && strcmp(ev.name, victim) == 0) {
                    seen++;
                    last = wall_s();
                }
    }
    if (seen == n - 1)
        result = last - t0;
    fprintf(stderr, "bench: loopback n=%d trial %d: %d of %d saw the failure, after %.3f s\n", n,
            trial, seen, n - 1, last - t0);
done:
    for (int i = 0; i < n; i++)
        gossip_destroy(&f.g[i]);
    free(f.g);
    return result;
}

/* Runs the memberlist peer; fills its detection samples. */
static bool run_peer(const char *peer, int n, int trials, samples_t *out, char *why, size_t why_len)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "'%s' -n %d -trials %d", peer, n, trials);
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(why, why_len, "cannot start %s", peer);
        return false;
    }
    char line[8192] = "";
    if (!fgets(line, sizeof(line), p))
        line[0] = '\0';
    int status = pclose(p);
    const char *at = strstr(line, "\"detect_s\":[");
    if (status != 0 || !at) {
        snprintf(why, why_len, "memberlist peer failed (exit %d)", status);
        return false;
    }
    for (const char *q = at + strlen("\"detect_s\":["); *q && *q != ']';) {
        char *end;
        double v = strtod(q, &end);
        if (end == q)
            break;
        add_sample(out, v);
        q = *end == ',' ? end + 1 : end;
    }
    if (strstr(line, "\"error\"")) {
        snprintf(why, why_len, "memberlist peer reported an error");
        return out->n > 0;
    }
    return out->n > 0;
}

static void run_loopback(int n, int trials, const char *peer)
{
    uint8_t key[KEYRING_KEY_BYTES];
    keyring_generate_key(key);
    samples_t ferry = { 0 }, ml = { 0 };
    for (int t = 0; t < trials; t++) {
        double d = loopback_trial(n, key, t);
        if (!isnan(d))
            add_sample(&ferry, d);
    }
    char why[256] = "", name[160];
    bool have_peer = peer && access(peer, X_OK) == 0;
    if (!have_peer)
        snprintf(why, sizeof(why), "memberlist peer not built (see bench/membership/run.sh)");
    else {
        fprintf(stderr, "bench: memberlist n=%d, %d trials...\n", n, trials);
        have_peer = run_peer(peer, n, trials, &ml, why, sizeof(why));
    }
    double fm = percentile(&ferry, 50), mm = have_peer ? percentile(&ml, 50) : NAN;
    const char *anchor = "hashicorp/memberlist 0.2.2 DefaultLANConfig, same machine, same run";
    snprintf(name, sizeof(name), "loopback N=%d crash marked dead by all, median of %zu", n,
             ferry.n);
    if (ferry.n == 0)
        skipped(name, "ferry trials failed (see stderr)");
    else
        row(name, "s", "lower", fm, mm, anchor, n == 100 ? 2.0 : NAN);
    snprintf(name, sizeof(name), "loopback N=%d detection speedup over memberlist", n);
    if (!have_peer || ferry.n == 0)
        skipped(name, have_peer ? "ferry trials failed" : why);
    else
        row(name, "x", "higher", mm / fm, NAN, NULL, n == 100 ? 5.0 : NAN);
    free(ferry.v);
    free(ml.v);
}

/* --- main --------------------------------------------------------------- */

static void print_machine(void)
{
    char model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "model name", 10) == 0) {
            char *colon = strchr(line, ':');
            if (colon) {
                snprintf(model, sizeof(model), "%s", colon + 2);
                model[strcspn(model, "\n\"\\")] = '\0';
            }
            break;
        }
    if (f)
        fclose(f);
    printf("{\"bench\": \"membership\", \"machine\": {\"cpus\": %ld, \"model\": \"%s\"},\n"
           " \"rows\": [", sysconf(_SC_NPROCESSORS_ONLN), model);
}

int main(int argc, char **argv)
{
    const char *peer = NULL;
    bool quick = false, sim = true, loopback = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--peer") == 0 && i + 1 < argc)
            peer = argv[++i];
        else if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--no-sim") == 0)
            sim = false;
        else if (strcmp(argv[i], "--no-loopback") == 0)
            loopback = false;
        else {
            fprintf(stderr, "usage: bench_membership [--peer PATH] [--quick] [--no-sim] "
                            "[--no-loopback]\n");
            return 2;
        }
    }
    log_set_level(LOG_LEVEL_ERROR);
    print_machine();

    swim_config_t ferry_cfg, ml_cfg;
    swim_config_default(&ferry_cfg);
    swim_config_memberlist_lan(&ml_cfg);
    sim_plan_t plans[] = {
        { .n = 10, .seeds = quick ? 2 : 10, .crashes_per_seed = 5, .idle_seconds = 60,
          .loss5_seconds = 120, .loss20_seconds = 120 },
        { .n = 100, .seeds = quick ? 1 : 3, .crashes_per_seed = 5, .idle_seconds = 60,
          .loss5_seconds = 60, .loss20_seconds = 30 },
        { .n = 1000, .seeds = 1, .crashes_per_seed = quick ? 2 : 4, .idle_seconds = 60,
          .loss5_seconds = quick ? 5 : 20, .loss20_seconds = quick ? 5 : 10 },
    };
    for (size_t i = 0; sim && i < sizeof(plans) / sizeof(plans[0]); i++) {
        sim_result_t f, m;
        double t0 = wall_s();
        fprintf(stderr, "bench: simulator n=%d, ferry defaults...\n", plans[i].n);
        run_sim(&plans[i], &ferry_cfg, &f);
        fprintf(stderr, "bench: simulator n=%d, memberlist parameters...\n", plans[i].n);
        run_sim(&plans[i], &ml_cfg, &m);
        fprintf(stderr, "bench: simulator n=%d took %.0f s\n", plans[i].n, wall_s() - t0);
        report_sim(&plans[i], &f, &m);
    }
    if (loopback) {
        run_loopback(10, quick ? 2 : 5, peer);
        run_loopback(100, quick ? 1 : 3, peer);
    }
    printf("\n ]}\n");
    return 0;
}
