/* sim_swim.c - SWIM membership on the simulated network, over many seeds.
 *
 *   sim_swim                 every scenario over its default number of seeds
 *   sim_swim --seeds 200     more seeds
 *   sim_swim --seed 1234     replay one seed (what a failure prints)
 *
 * Each scenario builds a cluster (tests/sim/swim_cluster.h), drives it, and
 * returns a reason when an expectation fails; the cmocka test prints every
 * failing seed with the command that replays it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "swim_cluster.h"

/* Set once by main from the command line. */
static uint64_t opt_seed;       /* 0: run the default seed range */
static uint64_t opt_seeds;      /* 0: each scenario's default count */

/* Loss scenario bound, stated: with 20 members under 10% packet loss for
 * 60 s, at most this many live members may be declared dead (each false
 * declaration counted once, however many members repeat it). */
#define LOSS_NODES           20
#define LOSS_RATE            0.10
#define LOSS_SECONDS         60
#define LOSS_MAX_FALSE_DEAD  1

typedef struct {
    swim_cluster_t *c;
    /* false positives: a live node declared dead, counted per (subject, incarnation) */
    int false_dead;
    uint64_t last_false_inc[64];
    bool counted[64];
    int dead_events[64];     /* DEAD events about each subject, from anyone */
    int left_events[64];
    int suspect_events[64];
} watch_t;

static void on_event(void *ctx, int node, const swim_event_t *ev)
{
    watch_t *w = ctx;
    int subject = swim_cluster_index(ev->name);
    if (subject < 0 || subject >= 64)
        return;
    if (ev->type == SWIM_EVENT_SUSPECT)
        w->suspect_events[subject]++;
    if (ev->type == SWIM_EVENT_LEFT)
        w->left_events[subject]++;
    if (ev->type != SWIM_EVENT_DEAD)
        return;
    w->dead_events[subject]++;
    if (w->c && sim_is_up(swim_cluster_sim(w->c), subject) &&
        (!w->counted[subject] || w->last_false_inc[subject] != ev->incarnation)) {
        w->counted[subject] = true;
        w->last_false_inc[subject] = ev->incarnation;
        w->false_dead++;
    }
}

static swim_cluster_t *make_cluster(watch_t *w, int nodes, uint64_t seed)
{
    memset(w, 0, sizeof(*w));
    w->c = swim_cluster_new(&(swim_cluster_config_t){
        .nodes = nodes, .seed = seed, .on_event = on_event, .event_ctx = w });
    return w->c;
}

#define FAIL(...) do { snprintf(why, why_len, __VA_ARGS__); goto done; } while (0)

static bool join_and_converge(swim_cluster_t *c, uint64_t within_us)
{
    swim_cluster_join_all(c, 0);
    return swim_cluster_run_until(c, swim_cluster_converged, c,
                                  sim_now(swim_cluster_sim(c)) + within_us, 0);
}

typedef bool (*scenario_fn)(uint64_t seed, char *why, size_t why_len);

static bool scenario_join(int nodes, uint64_t seed, char *why, size_t why_len)
{
    watch_t w;
    swim_cluster_t *c = make_cluster(&w, nodes, seed);
    bool ok = false;
    if (!join_and_converge(c, 60 * SIM_SECOND))
        FAIL("%d nodes did not converge within 60 s", nodes);
    if (w.false_dead)
        FAIL("%d live nodes declared dead while joining", w.false_dead);
    ok = true;
done:
    swim_cluster_destroy(&c);
    return ok;
}

static bool scenario_join_5(uint64_t seed, char *why, size_t n) { return scenario_join(5, seed, why, n); }
static bool scenario_join_50(uint64_t seed, char *why, size_t n) { return scenario_join(50, seed, why, n); }

typedef struct {
    swim_cluster_t *c;
    int subject;
    swim_state_t state;
} all_see_t;

/* Every up node other than the subject sees the subject in the given state. */
static bool all_see(void *ctx)
{
    all_see_t *a = ctx;
    sim_t *sim = swim_cluster_sim(a->c);
    for (int i = 0; i < swim_cluster_size(a->c); i++)
        if (i != a->subject && sim_is_up(sim, i) &&
            !swim_cluster_sees(a->c, i, a->subject, a->state))
            return false;
    return true;
}

static bool scenario_crash_detected(uint64_t seed, char *why, size_t why_len)
{
    watch_t w;
    swim_cluster_t *c = make_cluster(&w, 10, seed);
    bool ok = false;
    int victim = 1 + (int)(seed % 9);
    if (!join_and_converge(c, 30 * SIM_SECOND))
        FAIL("did not converge");
    swim_cluster_crash(c, victim);
    all_see_t a = { c, victim, SWIM_DEAD };
    if (!swim_cluster_run_until(c, all_see, &a, sim_now(swim_cluster_sim(c)) + 30 * SIM_SECOND, 0))
        FAIL("crashed node-%d not marked dead by every live node within 30 s", victim);
    if (w.false_dead)
        FAIL("%d live nodes declared dead", w.false_dead);
    ok = true;
done:
    swim_cluster_destroy(&c);
    return ok;
}

static bool scenario_false_suspicion_refuted(uint64_t seed, char *why, size_t why_len)
{
    watch_t w;
    swim_cluster_t *c = make_cluster(&w, 10, seed);
    bool ok = false;
    int subject = 1 + (int)(seed % 9);
    int accuser = (subject + 1) % 10, listener = (subject + 2) % 10;
    if (!join_and_converge(c, 30 * SIM_SECOND))
        FAIL("did not converge");
    swim_t *s = swim_cluster_node(c, subject);
    uint64_t inc = swim_incarnation(s);
    int suspects_before = w.suspect_events[subject];
    /* The accuser tells the listener the subject failed its probe. */
    swim_msg_t msg = { .type = SWIM_MSG_SUSPECT, .incarnation = inc };
    snprintf(msg.node, sizeof(msg.node), "%s", swim_cluster_name(c, subject));
    snprintf(msg.from, sizeof(msg.from), "%s", swim_cluster_name(c, accuser));
    swim_cluster_inject(c, accuser, listener, &msg);
    sim_run_for(swim_cluster_sim(c), 20 * SIM_MS);
    if (w.suspect_events[subject] == suspects_before)
        FAIL("the planted suspicion of node-%d was not taken up", subject);
    if (!swim_cluster_run_until(c, swim_cluster_converged, c,
                                sim_now(swim_cluster_sim(c)) + 10 * SIM_SECOND, 0))
        FAIL("node-%d still suspect somewhere 10 s after a false suspicion", subject);
    if (swim_incarnation(s) <= inc)
        FAIL("node-%d did not refute (incarnation %llu)", subject,
             (unsigned long long)swim_incarnation(s));
    if (w.dead_events[subject])
        FAIL("falsely suspected node-%d was declared dead", subject);
    ok = true;
done:
    swim_cluster_destroy(&c);
    return ok;
}

typedef struct {
    swim_cluster_t *c;
    int half;
} split_t;

/* Every node sees every node of the other side as dead. */
static bool sides_buried(void *ctx)
{
    split_t *p = ctx;
    int n = swim_cluster_size(p->c);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if ((i < p->half) != (j < p->half) && !swim_cluster_sees(p->c, i, j, SWIM_DEAD))
                return false;
    return true;
}

static bool scenario_partition_heals(uint64_t seed, char *why, size_t why_len)
{
    watch_t w;
    swim_cluster_t *c = make_cluster(&w, 10, seed);
    sim_t *sim = swim_cluster_sim(c);
    bool ok = false;
    split_t split = { c, 3 + (int)(seed % 5) };   /* sides of 3..7 */
    if (!join_and_converge(c, 30 * SIM_SECOND))
        FAIL("did not converge");
    for (int i = split.half; i < 10; i++)
        sim_partition(sim, i, 1);
    if (!swim_cluster_run_until(c, sides_buried, &split, sim_now(sim) + 60 * SIM_SECOND, 0))
        FAIL("the sides of a %d/%d partition did not declare each other dead in 60 s",
             split.half, 10 - split.half);
    sim_heal(sim);
    if (!swim_cluster_run_until(c, swim_cluster_converged, c, sim_now(sim) + 60 * SIM_SECOND, 0))
        FAIL("did not converge within 60 s after the partition healed");
    ok = true;
done:
    swim_cluster_destroy(&c);
    return ok;
}

static bool scenario_loss_false_positives(uint64_t seed, char *why, size_t why_len)
{
    watch_t w;
    swim_cluster_t *c = make_cluster(&w, LOSS_NODES, seed);
    sim_t *sim = swim_cluster_sim(c);
    bool ok = false;
    if (!join_and_converge(c, 30 * SIM_SECOND))
        FAIL("did not converge");
    sim_set_faults(sim, &(sim_faults_t){ .loss = LOSS_RATE, .delay_min_us = 100,
                                         .delay_max_us = 2000 });
    sim_run_for(sim, LOSS_SECONDS * SIM_SECOND);
    if (w.false_dead > LOSS_MAX_FALSE_DEAD)
        FAIL("%d live members declared dead under %.0f%% loss in %d s (bound %d)",
             w.false_dead, LOSS_RATE * 100, LOSS_SECONDS, LOSS_MAX_FALSE_DEAD);
    sim_set_faults(sim, &(sim_faults_t){ 0 });
    if (!swim_cluster_run_until(c, swim_cluster_converged, c, sim_now(sim) + 30 * SIM_SECOND, 0))
        FAIL("did not reconverge after the loss stopped");
    ok = true;
done:
    swim_cluster_destroy(&c);
    return ok;
}

typedef struct {
    swim_cluster_t *c;
    int outsider;
} outsider_t;

static bool insiders_converged(void *ctx)
{
    outsider_t *o = ctx;
    for (int i = 0; i < swim_cluster_size(o->c); i++)
        if (i != o->outsider &&
            swim_live_count(swim_cluster_node(o->c, i)) != (size_t)swim_cluster_size(o->c) - 1)
            return false;
    return true;
}

static bool scenario_wrong_key_ignored(uint64_t seed, char *why, size_t why_len)
{
    watch_t w;
    swim_cluster_t *c = make_cluster(&w, 5, seed);
    bool ok = false;
    outsider_t o = { c, 1 + (int)(seed % 4) };
    uint8_t other_key[KEYRING_KEY_BYTES];
    for (int i = 0; i < KEYRING_KEY_BYTES; i++)
        other_key[i] = (uint8_t)(seed * 31 + (uint64_t)i);
    swim_cluster_set_key(c, o.outsider, other_key);
    swim_cluster_join_all(c, 0);
    if (!swim_cluster_run_until(c, insiders_converged, &o,
                                sim_now(swim_cluster_sim(c)) + 30 * SIM_SECOND, 0))
        FAIL("the members holding the cluster key did not converge");
    sim_run_for(swim_cluster_sim(c), 10 * SIM_SECOND);   /* give the outsider every chance */
    swim_member_t m;
    for (int i = 0; i < 5; i++)
        if (i != o.outsider &&
            swim_member_find(swim_cluster_node(c, i), swim_cluster_name(c, o.outsider), &m) == 0)
            FAIL("node-%d lists node-%d, whose key is wrong", i, o.outsider);
    if (swim_member_count(swim_cluster_node(c, o.outsider)) != 1)
        FAIL("node-%d with the wrong key learned of %zu members", o.outsider,
             swim_member_count(swim_cluster_node(c, o.outsider)) - 1);
    if (swim_cluster_auth_failures(c, 0) == 0)
        FAIL("node-0 counted no authentication failures from the outsider's join");
    ok = true;
done:
    swim_cluster_destroy(&c);
    return ok;
}

static bool scenario_leave(uint64_t seed, char *why, size_t why_len)
{
    watch_t w;
    swim_cluster_t *c = make_cluster(&w, 8, seed);
    sim_t *sim = swim_cluster_sim(c);
    bool ok = false;
    int leaver = 1 + (int)(seed % 7);
    if (!join_and_converge(c, 30 * SIM_SECOND))
        FAIL("did not converge");
    swim_cluster_leave(c, leaver);
    if (!swim_cluster_run_until(c, (bool (*)(void *))swim_leave_sent, swim_cluster_node(c, leaver),
                                sim_now(sim) + 5 * SIM_SECOND, 0))
        FAIL("node-%d's leave was not sent within 5 s", leaver);
    swim_cluster_crash(c, leaver);   /* the process exits */
    all_see_t a = { c, leaver, SWIM_LEFT };
    if (!swim_cluster_run_until(c, all_see, &a, sim_now(sim) + 10 * SIM_SECOND, 0))
        FAIL("node-%d left but not everyone recorded it as left", leaver);
    if (w.dead_events[leaver])
        FAIL("node-%d left gracefully but was declared dead", leaver);
    ok = true;
done:
    swim_cluster_destroy(&c);
    return ok;
}

typedef struct {
    swim_cluster_t *c;
    int subject;
    uint64_t incarnation;
} seen_inc_t;

static bool all_have_incarnation(void *ctx)
{
    seen_inc_t *s = ctx;
    swim_member_t m;
    for (int i = 0; i < swim_cluster_size(s->c); i++)
        if (swim_member_find(swim_cluster_node(s->c, i), swim_cluster_name(s->c, s->subject), &m) < 0 ||
            m.incarnation < s->incarnation)
            return false;
    return true;
}

static bool scenario_record_update(uint64_t seed, char *why, size_t why_len)
{
    watch_t w;
    swim_cluster_t *c = make_cluster(&w, 10, seed);
    sim_t *sim = swim_cluster_sim(c);
    bool ok = false;
    int subject = (int)(seed % 10);
    if (!join_and_converge(c, 30 * SIM_SECOND))
        FAIL("did not converge");
    swim_t *s = swim_cluster_node(c, subject);
    swim_member_t me;
    swim_record_t rec;
    swim_member_at(s, 0, &me);
    if (swim_record_decode(me.record, me.record_len, &rec, NULL, NULL) < 0)
        FAIL("node-%d's own record does not decode", subject);
    rec.used_cpu_mhz = 12345;
    swim_record_add_device(&rec, "gpu0", "gpu", "model=sim");
    if (swim_update_record(s, sim_now(sim), &rec) < 0)
        FAIL("swim_update_record refused a valid record");
    seen_inc_t target = { c, subject, swim_incarnation(s) };
    if (!swim_cluster_run_until(c, all_have_incarnation, &target, sim_now(sim) + 10 * SIM_SECOND, 0))
        FAIL("node-%d's new record did not reach everyone in 10 s", subject);
    for (int i = 0; i < 10; i++) {
        swim_member_t m;
        swim_record_t got;
        swim_member_find(swim_cluster_node(c, i), swim_cluster_name(c, subject), &m);
        if (swim_record_decode(m.record, m.record_len, &got, NULL, NULL) < 0 ||
            got.used_cpu_mhz != 12345 || got.device_count != 1)
            FAIL("node-%d holds a stale or broken record of node-%d", i, subject);
    }
    ok = true;
done:
    swim_cluster_destroy(&c);
    return ok;
}

static bool scenario_restart_rejoins(uint64_t seed, char *why, size_t why_len)
{
    watch_t w;
    swim_cluster_t *c = make_cluster(&w, 6, seed);
    sim_t *sim = swim_cluster_sim(c);
    bool ok = false;
    int victim = 1 + (int)(seed % 5);
    if (!join_and_converge(c, 30 * SIM_SECOND))
        FAIL("did not converge");
    swim_cluster_crash(c, victim);
    all_see_t a = { c, victim, SWIM_DEAD };
    if (!swim_cluster_run_until(c, all_see, &a, sim_now(sim) + 30 * SIM_SECOND, 0))
        FAIL("crash of node-%d not detected", victim);
    /* Back with a fresh core: incarnation 0, below what the others hold. */
    swim_cluster_restart(c, victim, 0);
    if (!swim_cluster_run_until(c, swim_cluster_converged, c, sim_now(sim) + 30 * SIM_SECOND, 0))
        FAIL("restarted node-%d not seen alive by everyone within 30 s", victim);
    ok = true;
done:
    swim_cluster_destroy(&c);
    return ok;
}

/* Runs a scenario over the seeds; prints every failure with its replay command. */
static void run_seeds(const char *name, scenario_fn fn, uint64_t default_seeds)
{
    uint64_t first = opt_seed ? opt_seed : 1;
    uint64_t count = opt_seed ? 1 : (opt_seeds ? opt_seeds : default_seeds);
    int failures = 0;
    for (uint64_t seed = first; seed < first + count; seed++) {
        char why[256] = "";
        if (!fn(seed, why, sizeof(why))) {
            fprintf(stderr, "sim_swim: %s failed on seed %llu: %s\n"
                            "  replay: sim_swim --seed %llu\n",
                    name, (unsigned long long)seed, why, (unsigned long long)seed);
            failures++;
        }
    }
    if (failures)
        fail_msg("%s: %d of %llu seeds failed", name, failures, (unsigned long long)count);
}

static void test_join_5(void **state) { run_seeds("join_5", scenario_join_5, 400); }
static void test_join_50(void **state) { run_seeds("join_50", scenario_join_50, 60); }
static void test_crash_detected(void **state) { run_seeds("crash_detected", scenario_crash_detected, 300); }
static void test_false_suspicion_refuted(void **state)
{
    run_seeds("false_suspicion_refuted", scenario_false_suspicion_refuted, 300);
}
static void test_partition_heals(void **state) { run_seeds("partition_heals", scenario_partition_heals, 120); }
static void test_loss_false_positives(void **state)
{
    run_seeds("loss_false_positives", scenario_loss_false_positives, 60);
}
static void test_wrong_key_ignored(void **state) { run_seeds("wrong_key_ignored", scenario_wrong_key_ignored, 200); }
static void test_leave(void **state) { run_seeds("leave", scenario_leave, 300); }
static void test_record_update(void **state) { run_seeds("record_update", scenario_record_update, 200); }
static void test_restart_rejoins(void **state) { run_seeds("restart_rejoins", scenario_restart_rejoins, 200); }

int main(int argc, char **argv)
{
    opt_seed = sim_arg_u64(argc, argv, "--seed", 0);
    opt_seeds = sim_arg_u64(argc, argv, "--seeds", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_5),
        cmocka_unit_test(test_join_50),
        cmocka_unit_test(test_crash_detected),
        cmocka_unit_test(test_false_suspicion_refuted),
        cmocka_unit_test(test_partition_heals),
        cmocka_unit_test(test_loss_false_positives),
        cmocka_unit_test(test_wrong_key_ignored),
        cmocka_unit_test(test_leave),
        cmocka_unit_test(test_record_update),
        cmocka_unit_test(test_restart_rejoins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
