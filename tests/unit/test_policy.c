/* test_policy.c - the pre-copy policy's rules, one by one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/rng.h"
#include "migration/policy.h"

#define MB 1000000ULL

/* 100 MB/s link, 100 ms limit, 20 ms switchover cost: 80 ms of sending fits
 * 8 MB, i.e. 1953 pages of 4096 bytes (1953.125). */
static policy_config_t test_config(void)
{
    policy_config_t cfg;
    policy_config_defaults(&cfg);
    cfg.max_time_us = 60ULL * 1000000ULL;
    return cfg;
}

static policy_pass_t pass_of(uint64_t remaining, uint64_t dirtied)
{
    return (policy_pass_t){ .bytes_sent = 100 * MB, .elapsed_us = 1000000,
                            .pages_dirtied = dirtied, .remaining_pages = remaining,
                            .bandwidth_Bps = 100 * MB };
}

static policy_decision_t step(policy_t *p, policy_pass_t pass)
{
    return policy_step(p, &pass);
}

static void test_config_validation(void **state)
{
    policy_config_t cfg = test_config();
    policy_t *p = policy_new(&cfg);
    assert_non_null(p);
    policy_destroy(&p);
    assert_null(p);
    policy_destroy(&p);   /* twice is harmless */

    policy_config_t bad = cfg;
    bad.page_size = 0;
    assert_null(policy_new(&bad));
    bad = cfg;
    bad.throttle_max = 100;
    assert_null(policy_new(&bad));
    bad = cfg;
    bad.throttle_initial = 50;
    bad.throttle_max = 40;
    assert_null(policy_new(&bad));
    bad = cfg;
    bad.min_shrink = 1.0;
    assert_null(policy_new(&bad));
    bad = cfg;
    bad.downtime_limit_us = 0;
    assert_null(policy_new(&bad));
    assert_null(policy_new(NULL));
}

static void test_downtime_limit_resolution(void **state)
{
    assert_int_equal(policy_downtime_limit(0, 0), POLICY_DEFAULT_DOWNTIME_US);
    assert_int_equal(policy_downtime_limit(250000, 0), 250000);
    assert_int_equal(policy_downtime_limit(250000, 30000), 30000);
    assert_int_equal(policy_downtime_limit(0, 30000), 30000);
}

static void test_switchover_at_the_limit_and_not_above(void **state)
{
    policy_config_t cfg = test_config();
    policy_t *p = policy_new(&cfg);
    /* 1953 pages: 80 ms minus a bit, plus 20 ms: fits. */
    policy_decision_t d = policy_step(p, &(policy_pass_t){ .bytes_sent = 1, .elapsed_us = 1,
                                      .remaining_pages = 1954, .bandwidth_Bps = 100 * MB });
    assert_int_equal(d.action, POLICY_CONTINUE);
    assert_true(d.predicted_stun_us > cfg.downtime_limit_us);
    policy_destroy(&p);

    p = policy_new(&cfg);
    d = policy_step(p, &(policy_pass_t){ .bytes_sent = 1, .elapsed_us = 1,
                    .remaining_pages = 1953, .bandwidth_Bps = 100 * MB });
    assert_int_equal(d.action, POLICY_SWITCHOVER);
    assert_true(d.predicted_stun_us <= cfg.downtime_limit_us);
    assert_true(d.predicted_stun_us >= cfg.switchover_cost_us);
    /* Finished: the same answer whatever comes next. */
    policy_decision_t again = policy_step(p, &(policy_pass_t){ .remaining_pages = 1 << 30 });
    assert_int_equal(again.action, POLICY_SWITCHOVER);
    assert_int_equal(again.pass, d.pass);
    policy_destroy(&p);
}

/* With a stun target, a pass that fits the limit is not the end while the
 * dirty set keeps shrinking; it ends at the target, when shrinking stops,
 * or after settle_passes_max such passes. */
static void test_settling_towards_the_target(void **state)
{
    policy_config_t cfg = test_config();
    cfg.switchover_cost_us = 2000;
    cfg.stun_target_ratio = 0.1;   /* 10 ms of the 100 ms limit */
    cfg.settle_passes_max = 3;
    policy_t *p = policy_new(&cfg);
    /* 100 MB/s: 4096 pages take 168 ms (+2): over the limit. */
    policy_decision_t d = policy_step(p, &(policy_pass_t){ .bytes_sent = 1, .elapsed_us = 1,
                                      .remaining_pages = 4096, .bandwidth_Bps = 100 * MB });
    assert_int_equal(d.action, POLICY_CONTINUE);
    /* 1000 pages: 41 ms: fits, still shrinking, above the target: go on. */
    d = policy_step(p, &(policy_pass_t){ .bytes_sent = 1, .elapsed_us = 1, .remaining_pages = 1000,
                    .bandwidth_Bps = 100 * MB });
    assert_int_equal(d.action, POLICY_CONTINUE);
    assert_true(d.predicted_stun_us <= cfg.downtime_limit_us);
    /* 500 pages: 22 ms: shrinking by half: go on. */
    d = policy_step(p, &(policy_pass_t){ .bytes_sent = 1, .elapsed_us = 1, .remaining_pages = 500,
                    .bandwidth_Bps = 100 * MB });
    assert_int_equal(d.action, POLICY_CONTINUE);
    /* 450 pages: shrank by 10% only: this is the floor the guest allows. */
    d = policy_step(p, &(policy_pass_t){ .bytes_sent = 1, .elapsed_us = 1, .remaining_pages = 450,
                    .bandwidth_Bps = 100 * MB });
    assert_int_equal(d.action, POLICY_SWITCHOVER);
    assert_false(d.converging);
    policy_destroy(&p);

    /* Reaching the target ends it at once. */
    p = policy_new(&cfg);
    d = policy_step(p, &(policy_pass_t){ .bytes_sent = 1, .elapsed_us = 1, .remaining_pages = 100,
                    .bandwidth_Bps = 100 * MB });
    assert_int_equal(d.action, POLICY_SWITCHOVER);
    assert_true(d.predicted_stun_us <= 10000);
    policy_destroy(&p);

    /* A guest that keeps shrinking slowly is cut off after settle_passes_max. */
    p = policy_new(&cfg);
    uint64_t pages = 2000;
    unsigned fitting = 0;
    for (;;) {
        d = policy_step(p, &(policy_pass_t){ .bytes_sent = 1, .elapsed_us = 1, .remaining_pages = pages,
                        .bandwidth_Bps = 100 * MB });
        if (d.predicted_stun_us <= cfg.downtime_limit_us)
            fitting++;
        if (d.action != POLICY_CONTINUE)
            break;
        pages = pages * 3 / 4;   /* shrinks by 25% a pass: always "converging" */
    }
    assert_int_equal(d.action, POLICY_SWITCHOVER);
    assert_int_equal(fitting, cfg.settle_passes_max + 1);
    assert_true(d.predicted_stun_us > 10000);
    policy_destroy(&p);
}

static void test_bandwidth_falls_back_to_pass_throughput(void **state)
{
    policy_config_t cfg = test_config();
    policy_t *p = policy_new(&cfg);
    /* 50 MB in 0.5 s = 100 MB/s measured. */
    policy_decision_t d = policy_step(p, &(policy_pass_t){ .bytes_sent = 50 * MB,
                                      .elapsed_us = 500000, .remaining_pages = 1000 });
    assert_int_equal(d.bandwidth_Bps, 100 * MB);
    assert_int_equal(d.action, POLICY_SWITCHOVER);
    policy_destroy(&p);

    /* Nothing measured at all: no prediction, no switchover. */
    p = policy_new(&cfg);
    d = policy_step(p, &(policy_pass_t){ .remaining_pages = 1 });
    assert_int_equal(d.predicted_stun_us, UINT64_MAX);
    assert_int_equal(d.action, POLICY_CONTINUE);
    /* ...unless there is nothing left to send. */
    d = policy_step(p, &(policy_pass_t){ .remaining_pages = 0 });
    assert_int_equal(d.action, POLICY_SWITCHOVER);
    assert_int_equal(d.predicted_stun_us, cfg.switchover_cost_us);
    policy_destroy(&p);
}

static void test_cost_over_limit_aborts_at_once(void **state)
{
    policy_config_t cfg = test_config();
    cfg.switchover_cost_us = 150000;
    policy_t *p = policy_new(&cfg);
    policy_decision_t d = policy_step(p, &(policy_pass_t){ .remaining_pages = 0 });
    assert_int_equal(d.action, POLICY_ABORT);
    assert_int_equal(d.reason, POLICY_ABORT_COST_OVER_LIMIT);
    policy_destroy(&p);
}

static void test_timeout_aborts(void **state)
{
    policy_config_t cfg = test_config();
    cfg.throttle_allowed = false;
    cfg.max_time_us = 5000000;
    policy_t *p = policy_new(&cfg);
    policy_decision_t d;
    int passes = 0;
    do {
        d = step(p, pass_of(20000, 20000));
        passes++;
        assert_int_not_equal(d.action, POLICY_THROTTLE);
    } while (d.action == POLICY_CONTINUE && passes < 100);
    assert_int_equal(d.action, POLICY_ABORT);
    assert_int_equal(d.reason, POLICY_ABORT_TIMEOUT);
    assert_int_equal(passes, 5);   /* 1 s per pass, 5 s max */
    assert_int_equal(d.total_us, 5000000);
    assert_string_equal(policy_action_name(d.action), "abort");
    policy_destroy(&p);
}

static void test_stall_raises_throttle_step_by_step(void **state)
{
    policy_config_t cfg = test_config();
    policy_t *p = policy_new(&cfg);
    /* Dirty set stuck at 10000 pages, dirtied about what was sent. */
    policy_decision_t d = step(p, pass_of(10000, 10000));
    assert_int_equal(d.action, POLICY_CONTINUE);       /* full pass: baseline */
    d = step(p, pass_of(10000, 10000));
    assert_int_equal(d.action, POLICY_CONTINUE);       /* first stalled pass */
    assert_false(d.converging);
    d = step(p, pass_of(10000, 10000));
    assert_int_equal(d.action, POLICY_THROTTLE);       /* second: throttle */
    /* excess 1.0 over target 0.5 asks for half the running time. */
    assert_int_equal(d.throttle_percent, 50);
    uint32_t level = d.throttle_percent;
    for (int i = 0; i < 40; i++) {
        d = step(p, pass_of(10000, 10000));
        assert_true(d.throttle_percent >= level);     /* never lowered */
        assert_true(d.throttle_percent <= cfg.throttle_max);
        if (d.action == POLICY_THROTTLE)
            assert_true(d.throttle_percent >= level + cfg.throttle_step
                        || d.throttle_percent == cfg.throttle_max);
        level = d.throttle_percent;
    }
    assert_int_equal(level, cfg.throttle_max);
    policy_destroy(&p);
}

static void test_small_stall_takes_the_initial_level(void **state)
{
    policy_config_t cfg = test_config();
    policy_t *p = policy_new(&cfg);
    /* Dirty set shrinks only 5% per pass, little dirtied: no excess. */
    step(p, pass_of(10000, 1000));
    step(p, pass_of(9500, 1000));
    policy_decision_t d = step(p, pass_of(9025, 1000));
    assert_int_equal(d.action, POLICY_THROTTLE);
    assert_int_equal(d.throttle_percent, cfg.throttle_initial);
    policy_destroy(&p);
}

static void test_large_excess_scales_the_level(void **state)
{
    policy_config_t cfg = test_config();
    policy_t *p = policy_new(&cfg);
    step(p, pass_of(10000, 40000));
    step(p, pass_of(10000, 40000));
    policy_decision_t d = step(p, pass_of(10000, 40000));
    /* 4x excess: running share 100 * 0.5 / 4 = 12.5% -> level 88. */
    assert_int_equal(d.action, POLICY_THROTTLE);
    assert_int_equal(d.throttle_percent, 88);
    policy_destroy(&p);
}

static void test_progress_resets_the_stall_count(void **state)
{
    policy_config_t cfg = test_config();
    policy_t *p = policy_new(&cfg);
    step(p, pass_of(100000, 100000));
    policy_decision_t d = step(p, pass_of(100000, 100000));   /* stalled */
    d = step(p, pass_of(50000, 50000));                       /* progress */
    assert_true(d.converging);
    d = step(p, pass_of(50000, 50000));                       /* stalled once */
    assert_int_equal(d.action, POLICY_CONTINUE);
    assert_int_equal(d.throttle_percent, 0);
    policy_destroy(&p);
}

/* Whatever is fed in, SWITCHOVER comes only with a prediction within the
 * limit, recomputed here independently of the policy. */
static void test_random_inputs_never_switch_over_above_limit(void **state)
{
    rng_t rng;
    rng_seed(&rng, 42);
    int switchovers = 0;
    for (int run = 0; run < 2000; run++) {
        policy_config_t cfg = test_config();
        cfg.downtime_limit_us = 1000 + rng_below(&rng, 500000);
        cfg.switchover_cost_us = rng_below(&rng, cfg.downtime_limit_us);
        cfg.throttle_allowed = rng_below(&rng, 2);
        policy_t *p = policy_new(&cfg);
        for (int i = 0; i < 50; i++) {
            policy_pass_t pass = {
                .bytes_sent = rng_below(&rng, 1ULL << 34),
                .elapsed_us = rng_below(&rng, 5000000),
                .pages_dirtied = rng_below(&rng, 1 << 20),
                .remaining_pages = rng_below(&rng, 4) ? rng_below(&rng, 1 << 20) : rng_below(&rng, 64),
                .bandwidth_Bps = rng_below(&rng, 3) ? rng_below(&rng, 10ULL << 30) : 0,
            };
            policy_decision_t d = policy_step(p, &pass);
            assert_true(d.throttle_percent <= POLICY_THROTTLE_MAX);
            if (d.action == POLICY_SWITCHOVER) {
                double bw = (double)d.bandwidth_Bps;
                double stun = pass.remaining_pages == 0 ? 0.0
                              : (double)pass.remaining_pages * cfg.page_size * 1e6 / bw;
                assert_true(bw > 0 || pass.remaining_pages == 0);
                assert_true(stun + (double)cfg.switchover_cost_us <= (double)cfg.downtime_limit_us);
                switchovers++;
                break;
            }
            if (d.action == POLICY_ABORT)
                break;
        }
        policy_destroy(&p);
    }
    assert_true(switchovers > 100);   /* the property was exercised */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_downtime_limit_resolution),
        cmocka_unit_test(test_switchover_at_the_limit_and_not_above),
        cmocka_unit_test(test_settling_towards_the_target),
        cmocka_unit_test(test_bandwidth_falls_back_to_pass_throughput),
        cmocka_unit_test(test_cost_over_limit_aborts_at_once),
        cmocka_unit_test(test_timeout_aborts),
        cmocka_unit_test(test_stall_raises_throttle_step_by_step),
        cmocka_unit_test(test_small_stall_takes_the_initial_level),
        cmocka_unit_test(test_large_excess_scales_the_level),
        cmocka_unit_test(test_progress_resets_the_stall_count),
        cmocka_unit_test(test_random_inputs_never_switch_over_above_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
