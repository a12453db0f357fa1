/* measure.h - the measurements, written once for every system in cluster.h.
 * Each returns 0, or -1 with `why` saying what went wrong; whatever was
 * measured before a failure stays in the outputs. */
#ifndef BENCH_RAFT_MEASURE_H
#define BENCH_RAFT_MEASURE_H

#include "cluster.h"

/* Waits until the cluster is whole: every member runs and answers, all name
 * the same leader at the same term and the same applied index, and the
 * leader counts every member as a voter (where the system reports it).
 * Sets *leader to its member number. */
int measure_wait_whole(cluster_t *c, double timeout_s, int *leader, char *why, size_t whylen);

/* `kills` times: wait until whole, pause 200-700 ms (so kills fall anywhere
 * in the heartbeat cycle), SIGKILL the leader, then ask every survivor for
 * its leader every `poll_ms` until one names another member; the time from
 * just before kill() to that answer goes into ms[]. The killed member is
 * restarted before the next round. *done counts the samples. */
int measure_failover(cluster_t *c, int kills, double poll_ms, rng_t *rng, double *ms, int *done, char *why,
                     size_t whylen);

/* `count` writes one after another over one connection to `member`, after
 * a warm-up; each one's time until committed goes into ms[]. */
int measure_commit_latency(cluster_t *c, int member, int count, double *ms, int *done, char *why, size_t whylen);

typedef struct {
    double commits_per_s;
    long commits;
    long errors;
    double seconds;
    char first_error[300];   /* what the first failed write said; "" when none failed */
} throughput_t;

/* `clients` threads, each with a connection of its own to `member`, write
 * one after another for `seconds`; commits per second across all. */
int measure_throughput(cluster_t *c, int member, int clients, double seconds, throughput_t *out, char *why,
                       size_t whylen);

#define IDLE_MAX_RAISES 32

typedef struct {
    double seconds;            /* the window actually watched */
    uint64_t term_first, term_last;   /* highest term any member reported, at start and at end */
    int leader_changes;        /* times the leader most members name changed to another member */
    int polls, failed_polls;
    double raised_at[IDLE_MAX_RAISES];   /* seconds into the window at which the top term rose */
    int n_raised;
} idle_t;

/* Watches the cluster with no client writes for `seconds`, asking every
 * member for its status every `poll_s`. Spurious elections = term_last -
 * term_first (each candidacy raises the term). */
int measure_idle(cluster_t *c, double seconds, double poll_s, idle_t *out, char *why, size_t whylen);

/* The highest term any running member reports; 0 or -1 when none answers.
 * Taken before and after a phase, it counts the elections in the phase. */
int measure_top_term(cluster_t *c, uint64_t *term);

/* Nearest-rank percentile (0 < p <= 100) of v[0..n-1]; sorts v. */
double measure_percentile(double *v, int n, double p);

#endif
