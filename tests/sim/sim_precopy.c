/* sim_precopy.c - the pre-copy policy against a modelled VM and link.
 *
 * The model: a VM of `pages` pages writes `write_rate` pages per second,
 * `hot_fraction` of them into a hot set of `hot_pages`, the rest anywhere.
 * Throttle level L leaves it (100 - L)% of its time, so it writes that much
 * less. A pass sends the current dirty set over a link of `bandwidth` bytes
 * per second, plus a fixed per-pass overhead (dirty-log sync); the pages
 * written meanwhile form the next dirty set. The policy sees what a real
 * sender would: bytes, time, pages dirtied, pages remaining and a bandwidth
 * estimate (exact, or off by up to `estimate_error`).
 *
 * Every seed draws one scenario of each class and checks:
 *   converge  D <= B/2:      switches over, never throttles;
 *   throttle  D > B, spread or on a hot set too big for the limit:
 *             throttles, then switches over;
 *   abort     D > B, throttling disallowed: aborts at max time, not before
 *             and not later than one pass after;
 *   always    no switchover with a predicted stun above the limit, and the
 *             stun the model then takes stays within the limit (stretched by
 *             the estimate error when there is one).
 *
 *   sim_precopy                 200 seeds
 *   sim_precopy --seeds 2000    more
 *   sim_precopy --seed 17       replay one seed
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "migration/policy.h"
#include "sim.h"

#define PAGE_SIZE 4096.0

typedef enum { CLASS_CONVERGE, CLASS_THROTTLE, CLASS_ABORT, CLASS_COUNT } scenario_class_t;

static const char *class_names[CLASS_COUNT] = { "converge", "throttle", "abort" };

typedef struct {
    uint64_t pages;
    uint64_t hot_pages;
    double hot_fraction;
    double write_rate;        /* page writes per second, unthrottled */
    double bandwidth;         /* bytes per second */
    double estimate_error;    /* the estimate is within +-this fraction */
    uint64_t pass_overhead_us;
    policy_config_t policy;
} scenario_t;

typedef struct {
    policy_decision_t last;
    uint32_t max_throttle;
    double stun_us;               /* modelled stun at switchover */
    double estimate_factor;       /* estimate / truth at switchover */
    uint64_t longest_pass_us;
    char failure[256];
} outcome_t;

static double uniform(rng_t *rng, double lo, double hi)
{
    return lo + (hi - lo) * rng_unit(rng);
}

static scenario_t draw_scenario(rng_t *rng, scenario_class_t kind)
{
    scenario_t s = { 0 };
    s.bandwidth = uniform(rng, 50e6, 200e6);
    s.pass_overhead_us = 500 + rng_below(rng, 4500);
    s.estimate_error = rng_below(rng, 2) ? uniform(rng, 0.0, 0.2) : 0.0;
    policy_config_defaults(&s.policy);
    s.policy.downtime_limit_us = 50000 + rng_below(rng, 150000);
    s.policy.switchover_cost_us = 5000 + rng_below(rng, s.policy.downtime_limit_us / 2 - 5000);
    s.policy.max_time_us = 600ULL * 1000000ULL;
    double pages_per_s = s.bandwidth / PAGE_SIZE;
    /* Pages the link moves within the downtime limit; memory is many times
     * that, or any migration would fit the limit in one go. */
    double limit_pages = (double)s.policy.downtime_limit_us * 1e-6 * pages_per_s;
    s.pages = (uint64_t)(limit_pages * uniform(rng, 8.0, kind == CLASS_CONVERGE ? 64.0 : 16.0));

    switch (kind) {
    case CLASS_CONVERGE:
        /* Writes at no more than half the bandwidth, maybe into a hot set
         * that fits the limit with room to spare. Half the seeds aim lower
         * than the limit (stun_target_ratio): the run must still switch over,
         * within the limit, without throttling. */
        s.write_rate = pages_per_s * uniform(rng, 0.02, 0.5);
        if (rng_below(rng, 2))
            s.policy.stun_target_ratio = uniform(rng, 0.05, 0.5);
        if (rng_below(rng, 2)) {
            double fits = (double)(s.policy.downtime_limit_us - s.policy.switchover_cost_us)
                          * 1e-6 * pages_per_s;
            s.hot_pages = 1 + (uint64_t)(fits * uniform(rng, 0.05, 0.3));
            s.hot_fraction = uniform(rng, 0.5, 0.95);
        }
        break;
    case CLASS_THROTTLE:
        s.write_rate = pages_per_s * uniform(rng, 1.5, 4.0);   /* D > B */
        if (rng_below(rng, 2)) {
            /* Most writes hammer a hot set that alone takes two to four
             * times the limit to send: few distinct pages, still no fit. */
            s.hot_pages = (uint64_t)(limit_pages * uniform(rng, 2.0, 4.0));
            s.hot_fraction = uniform(rng, 0.9, 0.99);
        }
        break;
    case CLASS_ABORT:
        s.write_rate = pages_per_s * uniform(rng, 1.5, 4.0);
        s.policy.throttle_allowed = false;
        s.policy.max_time_us = (10 + rng_below(rng, 20)) * 1000000ULL;
        break;
    default:
        break;
    }
    return s;
}

/* Run one migration; false with outcome->failure set if a check failed. */
static bool run_scenario(const scenario_t *s, rng_t *rng, outcome_t *out)
{
    memset(out, 0, sizeof *out);
    uint8_t *dirty = calloc(s->pages, 1);
    policy_t *policy = policy_new(&s->policy);
    if (!dirty || !policy) {
        snprintf(out->failure, sizeof out->failure, "setup failed");
        free(dirty);
        policy_destroy(&policy);
        return false;
    }
    uint64_t hot_base = s->hot_pages ? rng_below(rng, s->pages - s->hot_pages + 1) : 0;
    uint64_t remaining = s->pages;     /* the first pass sends everything */
    uint32_t level = 0;
    bool ok = true;

    for (int pass = 0; pass < 100000; pass++) {
        double send_us = (double)remaining * PAGE_SIZE / s->bandwidth * 1e6;
        uint64_t elapsed_us = (uint64_t)send_us + s->pass_overhead_us;
        if (elapsed_us > out->longest_pass_us)
            out->longest_pass_us = elapsed_us;

        /* The guest writes while the pass runs; throttled, it runs less. */
        double expected = s->write_rate * (100 - level) / 100.0 * (double)elapsed_us * 1e-6;
        uint64_t writes = (uint64_t)expected + (rng_unit(rng) < expected - floor(expected));
        memset(dirty, 0, s->pages);
        uint64_t dirtied = 0;
        for (uint64_t w = 0; w < writes; w++) {
            uint64_t page = s->hot_pages && rng_unit(rng) < s->hot_fraction
                                ? hot_base + rng_below(rng, s->hot_pages)
                                : rng_below(rng, s->pages);
            dirtied += !dirty[page];
            dirty[page] = 1;
        }

        double factor = 1.0 + s->estimate_error * (2.0 * rng_unit(rng) - 1.0);
        policy_pass_t report = {
            .bytes_sent = (uint64_t)((double)remaining * PAGE_SIZE),
            .elapsed_us = elapsed_us,
            .pages_dirtied = dirtied,
            .remaining_pages = dirtied,
            .bandwidth_Bps = (uint64_t)(s->bandwidth * factor),
        };
        remaining = dirtied;
        policy_decision_t d = policy_step(policy, &report);
        out->last = d;
        if (d.throttle_percent < level || d.throttle_percent > s->policy.throttle_max) {
            snprintf(out->failure, sizeof out->failure,
                     "pass %u: throttle went from %u to %u", d.pass, level, d.throttle_percent);
            ok = false;
            break;
        }
        level = d.throttle_percent;
        if (level > out->max_throttle)
            out->max_throttle = level;
        if (d.action == POLICY_SWITCHOVER) {
            out->stun_us = (double)remaining * PAGE_SIZE / s->bandwidth * 1e6
                           + (double)s->policy.switchover_cost_us;
            out->estimate_factor = factor;
            if (d.predicted_stun_us > s->policy.downtime_limit_us) {
                snprintf(out->failure, sizeof out->failure,
                         "switchover with predicted stun %llu us over limit %llu us",
                         (unsigned long long)d.predicted_stun_us,
                         (unsigned long long)s->policy.downtime_limit_us);
                ok = false;
            }
            break;
        }
        if (d.action == POLICY_ABORT)
            break;
    }
    free(dirty);
    policy_destroy(&policy);
    return ok;
}

#define CHECK(cond, ...) do { if (!(cond)) { \
        snprintf(out->failure, sizeof out->failure, __VA_ARGS__); return false; } } while (0)

static bool check_class(scenario_class_t kind, const scenario_t *s, outcome_t *out)
{
    const policy_decision_t *d = &out->last;
    double limit = (double)s->policy.downtime_limit_us;
    double cost = (double)s->policy.switchover_cost_us;

    if (d->action == POLICY_SWITCHOVER) {
        /* Sending takes at most (limit - cost) as estimated; a generous
         * estimate stretches the true time by the same factor. */
        double allowed = cost + (limit - cost) * (out->estimate_factor > 1.0 ? out->estimate_factor : 1.0);
        CHECK(out->stun_us <= allowed + 1.0, "stun %.0f us over the allowed %.0f us (limit %.0f)",
              out->stun_us, allowed, limit);
    }
    switch (kind) {
    case CLASS_CONVERGE:
        CHECK(d->action == POLICY_SWITCHOVER, "expected switchover, got %s after %u passes",
              policy_action_name(d->action), d->pass);
        CHECK(out->max_throttle == 0, "throttled to %u%% although D <= B/2", out->max_throttle);
        break;
    case CLASS_THROTTLE:
        CHECK(d->action == POLICY_SWITCHOVER, "expected switchover, got %s (%s) after %u passes, throttle %u%%",
              policy_action_name(d->action), policy_abort_reason_name(d->reason), d->pass,
              out->max_throttle);
        CHECK(out->max_throttle > 0, "switched over without throttling although not converging");
        break;
    case CLASS_ABORT:
        CHECK(d->action == POLICY_ABORT && d->reason == POLICY_ABORT_TIMEOUT,
              "expected abort on timeout, got %s", policy_action_name(d->action));
        CHECK(out->max_throttle == 0, "throttled although throttling is disallowed");
        CHECK(d->total_us >= s->policy.max_time_us, "aborted early at %llu us",
              (unsigned long long)d->total_us);
        CHECK(d->total_us < s->policy.max_time_us + out->longest_pass_us,
              "aborted late at %llu us", (unsigned long long)d->total_us);
        break;
    default:
        break;
    }
    return true;
}

static bool run_seed(uint64_t seed, bool verbose)
{
    bool ok = true;
    for (int kind = 0; kind < CLASS_COUNT; kind++) {
        rng_t rng;
        rng_seed(&rng, seed * CLASS_COUNT + (uint64_t)kind);
        scenario_t s = draw_scenario(&rng, kind);
        outcome_t out;
        bool passed = run_scenario(&s, &rng, &out) && check_class(kind, &s, &out);
        if (verbose || !passed) {
            fprintf(stderr,
                    "seed %llu %-8s %s: pages=%llu hot=%llu@%.2f D/B=%.2f B=%.0fMB/s limit=%llums "
                    "cost=%llums err=%.2f -> %s after %u passes, %.1f s, throttle %u%%, stun %.1f ms%s%s\n",
                    (unsigned long long)seed, class_names[kind], passed ? "ok" : "FAILED",
                    (unsigned long long)s.pages, (unsigned long long)s.hot_pages, s.hot_fraction,
                    s.write_rate * PAGE_SIZE / s.bandwidth, s.bandwidth / 1e6,
                    (unsigned long long)s.policy.downtime_limit_us / 1000,
                    (unsigned long long)s.policy.switchover_cost_us / 1000, s.estimate_error,
                    policy_action_name(out.last.action), out.last.pass,
                    (double)out.last.total_us / 1e6, out.max_throttle, out.stun_us / 1000.0,
                    passed ? "" : ": ", passed ? "" : out.failure);
        }
        ok = ok && passed;
    }
    if (!ok)
        fprintf(stderr, "replay: sim_precopy --seed %llu\n", (unsigned long long)seed);
    return ok;
}

int main(int argc, char **argv)
{
    uint64_t one = sim_arg_u64(argc, argv, "--seed", UINT64_MAX);
    if (one != UINT64_MAX)
        return run_seed(one, true) ? 0 : 1;

    uint64_t seeds = sim_arg_u64(argc, argv, "--seeds", 200);
    uint64_t failed = 0;
    for (uint64_t seed = 1; seed <= seeds; seed++)
        failed += !run_seed(seed, false);
    fprintf(stderr, "sim_precopy: %llu seeds x %d scenarios, %llu failing seeds\n",
            (unsigned long long)seeds, CLASS_COUNT, (unsigned long long)failed);
    return failed ? 1 : 0;
}
