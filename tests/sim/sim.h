/* sim.h - a deterministic cluster simulator: a virtual clock and a virtual
 * network, for running the pure cores of many agents in one process.
 *
 * The simulator knows nothing about SWIM or Raft. It owns:
 *   - time (microseconds, starting at 0, advanced only by events);
 *   - a seeded PRNG, from which every random choice of the run is drawn;
 *   - a network of N nodes that can lose, delay (and so reorder),
 *     duplicate and partition messages;
 *   - the up/down state of each node (crash and restart).
 *
 * The test harness owns the nodes. It registers two callbacks: `deliver`
 * hands a message to a node, `tick` wakes a node every tick period. Nodes
 * answer by calling sim_send(). Running the same seed with the same harness
 * gives the same run, event for event; a failing seed is replayed by passing
 * it again (each sim test takes --seed N).
 *
 *   sim_t *sim = sim_new(seed, 5, &callbacks, harness);
 *   sim_set_faults(sim, &(sim_faults_t){ .loss = 0.1, .delay_max_us = 5000 });
 *   sim_run_for(sim, 10 * SIM_SECOND);
 *   sim_destroy(&sim);
 */
#ifndef FERRY_SIM_H
#define FERRY_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/rng.h"

#define SIM_MS     1000ULL
#define SIM_SECOND 1000000ULL

typedef struct sim sim_t;

typedef struct {
    /* A message from `from` arrives at `to`. `data` is valid only during the call. */
    void (*deliver)(void *harness, int to, int from, const uint8_t *data, size_t len);
    /* Node `node` is woken; called every tick period while the node is up. */
    void (*tick)(void *harness, int node, uint64_t now_us);
} sim_callbacks_t;

/* Network faults, applied to every message sent after they are set. */
typedef struct {
    double loss;            /* probability a message is dropped */
    double duplicate;       /* probability a message is delivered twice */
    uint64_t delay_min_us;  /* each delivery is delayed uniformly in [min, max]; */
    uint64_t delay_max_us;  /* a wide range reorders messages */
} sim_faults_t;

typedef struct {
    uint64_t sent;
    uint64_t delivered;
    uint64_t dropped;       /* by loss, partition or a down endpoint */
    uint64_t duplicated;
    uint64_t bytes_sent;
} sim_stats_t;

/* A filter sees every message at send time; return false to drop it. It may
 * also rewrite the bytes in place (to forge or corrupt a packet). */
typedef bool (*sim_filter_fn)(void *ctx, int from, int to, uint8_t *data, size_t len);

sim_t *sim_new(uint64_t seed, int nodes, const sim_callbacks_t *callbacks, void *harness);
void sim_destroy(sim_t **self_p);

int sim_nodes(const sim_t *self);
uint64_t sim_now(const sim_t *self);
rng_t *sim_rng(sim_t *self);                     /* the run's PRNG */

void sim_set_tick(sim_t *self, uint64_t period_us); /* default 10 ms */
void sim_set_faults(sim_t *self, const sim_faults_t *faults);
void sim_set_filter(sim_t *self, sim_filter_fn filter, void *ctx);

/* Queue a message. Dropped at once if either end is down, the nodes are in
 * different partition groups, or the loss roll says so. */
void sim_send(sim_t *self, int from, int to, const void *data, size_t len);

/* Partitions: every node is in group 0 until moved. Messages cross only
 * between nodes of the same group, checked at delivery time as well. */
void sim_partition(sim_t *self, int node, int group);
void sim_heal(sim_t *self);                      /* everyone back to group 0 */

/* A crashed node gets no ticks and no messages; in-flight messages to it are
 * lost. What the node itself loses is the harness's business. */
void sim_crash(sim_t *self, int node);
void sim_restart(sim_t *self, int node);
bool sim_is_up(const sim_t *self, int node);

/* Process the next event. Returns false when nothing is queued. */
bool sim_step(sim_t *self);
/* Process events until the clock would pass now + duration. */
void sim_run_for(sim_t *self, uint64_t duration_us);
/* Run until pred(ctx) holds (checked after every event) or the deadline
 * passes. Returns true if the predicate held. */
bool sim_run_until(sim_t *self, bool (*pred)(void *ctx), void *ctx, uint64_t deadline_us);

sim_stats_t sim_stats(const sim_t *self);

/* Parses --seed N / --seeds N / --nodes N style flags shared by sim tests:
 * returns the value of `flag` from argv, or `fallback`. */
uint64_t sim_arg_u64(int argc, char **argv, const char *flag, uint64_t fallback);

#endif
