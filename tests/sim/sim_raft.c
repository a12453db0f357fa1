/* sim_raft.c - the Raft core under the deterministic simulator, with faults.
 *
 * Each seed builds a cluster of 3 or 5 voters (plus one or two empty nodes
 * that may join) on a virtual network and runs a key-value workload while a
 * nemesis crashes and restarts nodes (losing what they had not persisted,
 * sometimes in the middle of persisting), partitions the network, changes
 * loss and duplication, adds, promotes and removes members and transfers
 * leadership. The Raft safety properties are checked after every simulated
 * event. Then everything heals and the cluster must elect a leader and apply
 * a write everywhere within bounds of virtual time; last, the clients'
 * history must be linearizable. See tests/sim/raft_world.h.
 *
 *   sim_raft                 the default run
 *   sim_raft --seeds N       N seeds of each scenario
 *   sim_raft --seed N        replay one seed, saying what happens
 *   sim_raft --first N       start at seed N
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "consensus/raft.h"
#include "raft_world.h"

/* Sanitizers slow the run down about five times. */
#if defined(__SANITIZE_ADDRESS__)
#define SEED_SCALE 5
#else
#define SEED_SCALE 1
#endif

static world_options_t options;

static void test_random_faults(void **state)
{
    scenario_t sc = { .name = "sim_raft random faults", .nemesis = true, .chaos_us = 3 * SIM_SECOND,
                      .workload = true, .spares = -1 };
    assert_int_equal(world_run_seeds(&sc, &options, 10000 / SEED_SCALE), 0);
}

static bool leader_serves(world_t *w, void *ctx)
{
    return world_serving_leader(w) >= 0;
}

/* No faults: a leader within a second, a busy two seconds of clients
 * without any further election (heartbeats keep the followers quiet), a
 * write applied everywhere; the history is linearizable. */
static bool stable_script(world_t *w)
{
    if (!world_wait(w, leader_serves, NULL, 1 * SIM_SECOND, "first leader"))
        return false;
    int leader = world_serving_leader(w);
    uint64_t term = raft_term(rc_raft(w->c, leader));
    sim_run_for(w->sim, 2 * SIM_SECOND);
    for (int i = 0; i < w->slots; i++)
        if (raft_term(rc_raft(w->c, i)) != term)
            return world_fail(w, "spurious election: node %d is at term %" PRIu64 ", the leader was elected in %" PRIu64,
                              i, raft_term(rc_raft(w->c, i)), term);
    return world_check_liveness(w);
}

static void test_stable_cluster(void **state)
{
    scenario_t sc = { .name = "sim_raft stable", .workload = true, .script = stable_script,
                      .faults = { .delay_min_us = 100, .delay_max_us = 1000 } };
    assert_int_equal(world_run_seeds(&sc, &options, 500 / SEED_SCALE), 0);
}

int main(int argc, char **argv)
{
    options = world_options(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stable_cluster),
        cmocka_unit_test(test_random_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
