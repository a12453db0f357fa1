/* bench_raft.h - what bench_raft measures and how it was asked to, shared
 * by the run (bench_raft.c) and the JSON report (report.c). */
#ifndef BENCH_RAFT_BENCH_RAFT_H
#define BENCH_RAFT_BENCH_RAFT_H

#include "measure.h"
#include "stall_probe.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define MAX_SIZES 4
#define MAX_KILLS 1000
#define MAX_COMMITS 100000
#define MAX_CLIENTS 256
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

/* Prints the "rows" array: for each ferry cluster, its rows against the etcd
 * cluster of the same size when there is one. */
void report_rows(FILE *out, const options_t *opts, run_t *runs, int n_runs, const char *etcd_version);

#endif
