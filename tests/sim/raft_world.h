/* raft_world.h - one simulated Raft deployment per seed, for the sim tests.
 *
 * A world is the simulator (virtual clock and network, tests/sim/sim.h), a
 * cluster of Raft cores with storage and safety checks (raft_harness.h), a
 * key-value workload of a few clients whose history is checked for
 * linearizability (raft_lincheck.h), and optionally a nemesis: crashes and
 * restarts (some in the middle of persisting), partitions, loss and
 * duplication, membership changes and leadership transfers.
 *
 * A scenario says how to build the world and what to do with it; the runner
 * plays it for many seeds and prints a failing seed with the command that
 * replays it:
 *
 *   static bool script(world_t *w) { ... world_wait(...) ... }
 *   scenario_t sc = { .name = "failover", .script = script, ... };
 *   world_run_seeds(&sc, &opts, 200);
 */
#ifndef FERRY_RAFT_WORLD_H
#define FERRY_RAFT_WORLD_H

#include <stdbool.h>
#include <stdint.h>

#include "raft_harness.h"
#include "raft_lincheck.h"
#include "sim.h"

#define WORLD_MAX_SLOTS 7
#define WORLD_CLIENTS 4
#define WORLD_KEYS 3
#define WORLD_OP_TIMEOUT_US (1 * SIM_SECOND)

typedef struct world world_t;

typedef struct {
    const char *name;
    bool nemesis;             /* random faults for chaos_us, then heal and check liveness */
    uint64_t chaos_us;
    bool workload;            /* clients run and their history is checked */
    int voters;               /* founding voters; 0: 3 or 5 by seed */
    int spares;               /* empty nodes that may join; -1: 1 or 2 by seed */
    size_t compact_every;     /* snapshot every so many entries (0: never) */
    sim_faults_t faults;      /* the network, for scripted scenarios */
    int election_tick;        /* 0: raft_config_defaults() (8 ticks of 10 ms) */
    int heartbeat_tick;       /* 0: raft_config_defaults() (2) */
    /* Scripted scenarios: runs after the cluster starts; false on failure
     * (after world_fail()). NULL: the nemesis run. */
    bool (*script)(world_t *w);
} scenario_t;

typedef struct {
    uint64_t seeds;           /* 0: the scenario's default */
    uint64_t first;           /* first seed */
    bool replay;              /* one seed, verbosely */
    int election_tick;        /* overrides every scenario's, to try settings */
    int heartbeat_tick;
    int async;                /* --async: 0 synchronous storage, 1 asynchronous, 2 (default) either by seed */
} world_options_t;

/* Parses --seeds N, --seed N (replay), --first N, --election-tick N,
 * --heartbeat-tick N and --async 0|1|2. */
world_options_t world_options(int argc, char **argv);

/* Runs the scenario for many seeds; returns the number that failed (it stops
 * after three) and prints a summary line with seeds per second. */
uint64_t world_run_seeds(const scenario_t *sc, const world_options_t *opts, uint64_t default_seeds);

/* --- for scripts ----------------------------------------------------------- */

struct world {
    void *run;                /* the runner's tallies */
    uint64_t seed;
    const scenario_t *sc;
    bool verbose;
    sim_t *sim;
    raft_cluster_t *c;
    rng_t pick;               /* the scenario's own choices, apart from the simulator's */
    int slots, voters;
    bool workload_on, nemesis_on;
    uint64_t next_nemesis_us;
    int seen_leader, doomed_leader;
    uint64_t seen_leader_term, doom_us;
    uint64_t restart_at[WORLD_MAX_SLOTS];
    struct world_client {
        bool active;
        int leader_hint;
        int kind;
        int node;
        uint64_t op_id, key, value, call, deadline_us;
        size_t hist;
        bool read_known;
        uint64_t read_index;
    } clients[WORLD_CLIENTS];
    uint64_t next_op_id, clock;
    lin_op_t *hist;
    size_t n_hist, cap_hist;
    sim_faults_t faults;
    uint64_t completed, crashes, conf_changes, transfers;
    double samples[64];       /* a script's measurements (e.g. failover times, ms) */
    size_t n_samples;
};

__attribute__((format(printf, 2, 3))) void world_say(const world_t *w, const char *fmt, ...);
/* Records why the seed failed (and dumps every node in replay mode); returns false. */
__attribute__((format(printf, 2, 3))) bool world_fail(world_t *w, const char *fmt, ...);

/* Runs until pred holds; false (after world_fail naming `what`) if it does
 * not within `bound_us` of virtual time, or if a safety check failed. */
bool world_wait(world_t *w, bool (*pred)(world_t *w, void *ctx), void *ctx, uint64_t bound_us,
                const char *what);

void world_crash(world_t *w, int node);
void world_restart(world_t *w, int node);
/* A live leader whose term has a committed entry (it can serve); -1 if none. */
int world_serving_leader(world_t *w);
/* A membership change, retried through leader changes until it is committed. */
bool world_change_membership(world_t *w, raft_conf_op_t op, int node, uint64_t bound_us);
/* Heals everything; a leader is elected and a write is applied on every
 * member, within bounds of virtual time. */
bool world_check_liveness(world_t *w);
void world_sample(world_t *w, double value);

#endif
