/* sim_raft_scenarios.c - liveness scenarios for the Raft core under the
 * simulator: leader failover, membership changes (add a learner, let it
 * catch up, promote it, remove founders), leadership transfer and snapshot
 * installation. Each runs for many seeds with a client workload whose
 * history must stay linearizable and with the safety checks of
 * raft_harness.h after every event; each step must finish within a bound of
 * virtual time.
 *
 *   sim_raft_scenarios [--seeds N | --seed N | --first N]
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "consensus/raft.h"
#include "raft_world.h"

#if defined(__SANITIZE_ADDRESS__)
#define SEED_SCALE 5
#else
#define SEED_SCALE 1
#endif

static world_options_t options;

static bool leader_serves(world_t *w, void *ctx)
{
    return world_serving_leader(w) >= 0;
}

static raft_t *leader_raft(world_t *w)
{
    return rc_raft(w->c, world_serving_leader(w));
}

/* --- failover ------------------------------------------------------------- */

typedef struct {
    int old;
    uint64_t old_term;
} successor_t;

static bool successor_serves(world_t *w, void *ctx)
{
    successor_t *s = ctx;
    int leader = world_serving_leader(w);
    return leader >= 0 && leader != s->old && raft_term(rc_raft(w->c, leader)) > s->old_term;
}

/* The leader crashes three times; each time another takes over and commits
 * within a second. The times (crash to a leader that has committed in its
 * term) are the samples printed in the summary. */
static bool failover_script(world_t *w)
{
    if (!world_wait(w, leader_serves, NULL, 1 * SIM_SECOND, "first leader"))
        return false;
    sim_run_for(w->sim, 300 * SIM_MS);
    for (int round = 0; round < 3; round++) {
        if (!world_wait(w, leader_serves, NULL, 1 * SIM_SECOND, "a leader before the crash"))
            return false;
        successor_t s = { .old = world_serving_leader(w) };
        s.old_term = raft_term(rc_raft(w->c, s.old));
        world_crash(w, s.old);
        uint64_t crashed = sim_now(w->sim);
        if (!world_wait(w, successor_serves, &s, 1 * SIM_SECOND, "a new leader after the leader crashed"))
            return false;
        world_sample(w, (double)(sim_now(w->sim) - crashed) / SIM_MS);
        world_restart(w, s.old);
        sim_run_for(w->sim, 300 * SIM_MS);
    }
    return world_check_liveness(w);
}

static void test_leader_failover(void **state)
{
    scenario_t sc = { .name = "failover (ms from leader crash to a new serving leader)", .voters = 0,
                      .spares = 0, .workload = true, .script = failover_script,
                      .faults = { .delay_min_us = 50, .delay_max_us = 500 } };
    assert_int_equal(world_run_seeds(&sc, &options, 400 / SEED_SCALE), 0);
}

/* --- membership ------------------------------------------------------------ */

static bool learner_caught_up(world_t *w, void *ctx)
{
    uint64_t id = rc_id(w->c, *(int *)ctx);
    int leader = world_serving_leader(w);
    if (leader < 0)
        return false;
    raft_status_t st;
    raft_status(rc_raft(w->c, leader), &st);
    for (size_t i = 0; i < st.n_peers; i++)
        if (st.peers[i].id == id)
            return !st.peers[i].voter && st.peers[i].match >= st.commit;
    return false;
}

/* Two empty nodes join as learners, catch up (through a snapshot, when the
 * log was compacted) and are promoted; then two founders are removed, the
 * leader among them if it is one. Loss and duplication stay on. */
static bool membership_script(world_t *w)
{
    if (!world_wait(w, leader_serves, NULL, 1 * SIM_SECOND, "first leader"))
        return false;
    sim_run_for(w->sim, 500 * SIM_MS);
    for (int node = w->voters; node < w->slots; node++) {
        if (!world_change_membership(w, RAFT_CONF_ADD_LEARNER, node, 3 * SIM_SECOND) ||
            !world_wait(w, learner_caught_up, &node, 3 * SIM_SECOND, "the learner catching up") ||
            !world_change_membership(w, RAFT_CONF_PROMOTE, node, 3 * SIM_SECOND))
            return false;
    }
    for (int node = 0; node < 2; node++)
        if (!world_change_membership(w, RAFT_CONF_REMOVE, node, 3 * SIM_SECOND))
            return false;
    if (!world_wait(w, leader_serves, NULL, 2 * SIM_SECOND, "a leader after the removals"))
        return false;
    const raft_conf_t *conf = raft_conf(leader_raft(w));
    if (conf->n_voters != (size_t)w->slots - 2 || conf->n_learners != 0)
        return world_fail(w, "%zu voters and %zu learners at the end, want %d and 0", conf->n_voters,
                          conf->n_learners, w->slots - 2);
    return world_check_liveness(w);
}

static void test_membership_changes(void **state)
{
    scenario_t sc = { .name = "membership", .voters = 3, .spares = 2, .workload = true, .compact_every = 30,
                      .script = membership_script,
                      .faults = { .loss = 0.02, .duplicate = 0.01, .delay_min_us = 100, .delay_max_us = 5000 } };
    assert_int_equal(world_run_seeds(&sc, &options, 300 / SEED_SCALE), 0);
}

/* --- leadership transfer ---------------------------------------------------- */

static bool target_leads(world_t *w, void *ctx)
{
    return world_serving_leader(w) == *(int *)ctx;
}

/* Leadership goes round five times, each transfer done within a second
 * (samples: ms from the request to the target serving as leader). */
static bool transfer_script(world_t *w)
{
    if (!world_wait(w, leader_serves, NULL, 1 * SIM_SECOND, "first leader"))
        return false;
    for (int round = 0; round < 5; round++) {
        sim_run_for(w->sim, 100 * SIM_MS);
        if (!world_wait(w, leader_serves, NULL, 1 * SIM_SECOND, "a leader before the transfer"))
            return false;
        int leader = world_serving_leader(w);
        int target = (leader + 1 + (int)rng_below(&w->pick, (uint64_t)w->voters - 1)) % w->voters;
        int rc = raft_transfer_leadership(rc_raft(w->c, leader), rc_id(w->c, target));
        if (rc != 0)
            return world_fail(w, "leader %d refuses a transfer to %d: %s", leader, target, raft_strerror(rc));
        w->transfers++;
        world_say(w, "transfer from %d to %d", leader, target);
        rc_process(w->c, leader);
        uint64_t asked = sim_now(w->sim);
        if (!world_wait(w, target_leads, &target, 1 * SIM_SECOND, "the transfer target leading"))
            return false;
        world_sample(w, (double)(sim_now(w->sim) - asked) / SIM_MS);
    }
    return world_check_liveness(w);
}

static void test_leadership_transfer(void **state)
{
    scenario_t sc = { .name = "transfer (ms from request to the target serving)", .spares = 0, .workload = true,
                      .script = transfer_script, .faults = { .delay_min_us = 100, .delay_max_us = 2000 } };
    assert_int_equal(world_run_seeds(&sc, &options, 300 / SEED_SCALE), 0);
}

/* --- snapshots ------------------------------------------------------------- */

typedef struct {
    int node;
    uint64_t index;
} applied_goal_t;

static bool applied_reaches(world_t *w, void *ctx)
{
    applied_goal_t *g = ctx;
    return rc_applied(w->c, g->node) >= g->index;
}

/* A follower is down while the others move on and compact their logs; when
 * it comes back it must be sent a snapshot, install it and catch up. */
static bool snapshot_script(world_t *w)
{
    if (!world_wait(w, leader_serves, NULL, 1 * SIM_SECOND, "first leader"))
        return false;
    int leader = world_serving_leader(w);
    int victim = (leader + 1) % w->voters;
    uint64_t behind = raft_last_index(rc_raft(w->c, victim));
    world_crash(w, victim);
    for (int i = 0; i < 40; i++) {
        sim_run_for(w->sim, 100 * SIM_MS);
        leader = world_serving_leader(w);
        if (leader >= 0 && raft_first_index(rc_raft(w->c, leader)) > behind + 1)
            break;
    }
    if (leader < 0 || raft_first_index(rc_raft(w->c, leader)) <= behind + 1)
        return world_fail(w, "the leader never compacted past the victim's log (%" PRIu64 ")", behind);
    uint64_t installed = rc_snapshots_installed(w->c);
    world_restart(w, victim);
    applied_goal_t goal = { victim, raft_commit_index(rc_raft(w->c, leader)) };
    if (!world_wait(w, applied_reaches, &goal, 2 * SIM_SECOND, "the restarted follower catching up"))
        return false;
    if (rc_snapshots_installed(w->c) == installed)
        return world_fail(w, "node %d caught up without a snapshot", victim);
    return world_check_liveness(w);
}

static void test_snapshot_install(void **state)
{
    scenario_t sc = { .name = "snapshot", .voters = 3, .spares = 0, .workload = true, .compact_every = 20,
                      .script = snapshot_script, .faults = { .delay_min_us = 100, .delay_max_us = 2000 } };
    assert_int_equal(world_run_seeds(&sc, &options, 300 / SEED_SCALE), 0);
}

int main(int argc, char **argv)
{
    options = world_options(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leader_failover),
        cmocka_unit_test(test_membership_changes),
        cmocka_unit_test(test_leadership_transfer),
        cmocka_unit_test(test_snapshot_install),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
