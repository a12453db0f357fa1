/* policy.c - pre-copy convergence: when to switch over, throttle or give up.
 *
 * The rules, in the order they are checked after each pass:
 *   1. the switchover cost alone is over the limit: ABORT (it never can fit);
 *   2. predicted stun <= limit: SWITCHOVER, unless it is still settling:
 *      above stun_target_ratio of the limit, the last pass shrank the dirty set by
 *      min_shrink, and fewer than settle_passes_max passes have fit already
 *      (then CONTINUE: another short pass makes the stun shorter);
 *   3. pre-copy ran max_time_us: ABORT;
 *   4. the dirty set failed to shrink by min_shrink for stall_passes passes
 *      in a row: raise the throttle level (THROTTLE), if allowed and not at
 *      the top already;
 *   5. otherwise CONTINUE.
 *
 * The throttle level is raised by at least throttle_step, and further when
 * the pass shows the guest dirtying much more than was sent: the new level
 * scales the vCPUs' running share so that the throttled dirty rate becomes
 * target_ratio of the send rate (SDPS: sleep slices scaled to the excess).
 * The level is never lowered during a migration: a converging migration is
 * about to switch over, and lowering would invite oscillation. */
#include "migration/policy.h"

#include <math.h>
#include <stdlib.h>

struct policy {
    policy_config_t cfg;
    uint32_t passes;
    uint64_t total_us;
    uint64_t previous_remaining;   /* dirty set handed to the last pass */
    uint32_t stalled;              /* passes without progress, in a row */
    uint32_t level;                /* current throttle percent */
    uint32_t settling;             /* passes that fit the limit but went on */
    bool finished;                 /* SWITCHOVER or ABORT answered */
    policy_decision_t final;
};

void policy_config_defaults(policy_config_t *cfg)
{
    *cfg = (policy_config_t){
        .downtime_limit_us = POLICY_DEFAULT_DOWNTIME_US,
        .switchover_cost_us = 20000,
        .max_time_us = 600ULL * 1000000ULL,
        .page_size = 4096,
        .throttle_allowed = true,
        .throttle_initial = 20,
        .throttle_step = 10,
        .throttle_max = POLICY_THROTTLE_MAX,
        .stall_passes = 2,
        .min_shrink = 0.2,
        .target_ratio = 0.5,
        .stun_target_ratio = 0.0,
        .settle_passes_max = 8,
    };
}

uint64_t policy_downtime_limit(uint64_t vm_limit_us, uint64_t migration_limit_us)
{
    if (migration_limit_us)
        return migration_limit_us;
    if (vm_limit_us)
        return vm_limit_us;
    return POLICY_DEFAULT_DOWNTIME_US;
}

static bool config_valid(const policy_config_t *cfg)
{
    return cfg->page_size > 0 && cfg->downtime_limit_us > 0 && cfg->max_time_us > 0
        && cfg->stall_passes > 0
        && cfg->throttle_max <= POLICY_THROTTLE_MAX
        && cfg->throttle_initial <= cfg->throttle_max
        && cfg->min_shrink > 0.0 && cfg->min_shrink < 1.0
        && cfg->target_ratio > 0.0 && cfg->target_ratio < 1.0
        && cfg->stun_target_ratio >= 0.0 && cfg->stun_target_ratio < 1.0;
}

policy_t *policy_new(const policy_config_t *cfg)
{
    if (!cfg || !config_valid(cfg))
        return NULL;
    policy_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = *cfg;
    return self;
}

void policy_destroy(policy_t **self_p)
{
    if (self_p && *self_p) {
        free(*self_p);
        *self_p = NULL;
    }
}

/* Bytes per second over a pass; 0 when nothing can be said. */
static uint64_t rate_Bps(double bytes, uint64_t elapsed_us)
{
    if (elapsed_us == 0)
        return 0;
    double rate = bytes * 1e6 / (double)elapsed_us;
    return rate >= 1.8e19 ? UINT64_MAX : (uint64_t)rate;
}

/* Rounded up, so that a prediction is never below the truth it models. */
static uint64_t predict_stun_us(const policy_config_t *cfg, uint64_t remaining_pages,
                                uint64_t bandwidth_Bps)
{
    if (remaining_pages == 0)
        return cfg->switchover_cost_us;
    if (bandwidth_Bps == 0)
        return UINT64_MAX;
    double send_us = ceil((double)remaining_pages * cfg->page_size * 1e6 / (double)bandwidth_Bps);
    double stun = send_us + (double)cfg->switchover_cost_us;
    return stun >= 1.8e19 ? UINT64_MAX : (uint64_t)stun;
}

/* The next throttle level after a stall: at least one step up, more when
 * the guest dirtied `excess` times what the pass had to send. */
static uint32_t next_level(const policy_t *self, double excess)
{
    const policy_config_t *cfg = &self->cfg;
    double wanted = self->level == 0 ? cfg->throttle_initial
                                     : (double)self->level + cfg->throttle_step;
    if (excess > cfg->target_ratio) {
        double running = (100.0 - self->level) * cfg->target_ratio / excess;
        double scaled = ceil(100.0 - running);
        if (scaled > wanted)
            wanted = scaled;
    }
    if (wanted > cfg->throttle_max)
        wanted = cfg->throttle_max;
    if (wanted <= self->level)   /* throttle_step 0 and no excess: still move */
        wanted = self->level + 1;   /* the caller checked level < throttle_max */
    return (uint32_t)wanted;
}

static policy_decision_t finish(policy_t *self, policy_decision_t d)
{
    self->finished = true;
    self->final = d;
    return d;
}

policy_decision_t policy_step(policy_t *self, const policy_pass_t *pass)
{
    if (self->finished)
        return self->final;

    const policy_config_t *cfg = &self->cfg;
    policy_decision_t d = { .action = POLICY_CONTINUE };
    self->passes++;
    self->total_us = pass->elapsed_us > UINT64_MAX - self->total_us
                         ? UINT64_MAX : self->total_us + pass->elapsed_us;
    d.pass = self->passes;
    d.total_us = self->total_us;
    d.bandwidth_Bps = pass->bandwidth_Bps ? pass->bandwidth_Bps
                                          : rate_Bps((double)pass->bytes_sent, pass->elapsed_us);
    d.dirty_rate_Bps = rate_Bps((double)pass->pages_dirtied * cfg->page_size, pass->elapsed_us);
    d.predicted_stun_us = predict_stun_us(cfg, pass->remaining_pages, d.bandwidth_Bps);
    d.throttle_percent = self->level;

    if (cfg->switchover_cost_us > cfg->downtime_limit_us) {
        d.action = POLICY_ABORT;
        d.reason = POLICY_ABORT_COST_OVER_LIMIT;
        return finish(self, d);
    }
    /* The first (full) pass has no earlier dirty set to compare with. */
    uint64_t sent_set = self->previous_remaining;
    if (self->passes == 1)
        d.converging = true;
    else
        d.converging = (double)pass->remaining_pages
                       <= (double)sent_set * (1.0 - cfg->min_shrink);
    self->previous_remaining = pass->remaining_pages;

    if (d.predicted_stun_us <= cfg->downtime_limit_us) {
        double target_us = cfg->stun_target_ratio * (double)cfg->downtime_limit_us;
        bool settling = target_us > 0 && (double)d.predicted_stun_us > target_us && d.converging
                        && self->settling < cfg->settle_passes_max && self->total_us < cfg->max_time_us;
        if (!settling) {
            d.action = POLICY_SWITCHOVER;
            return finish(self, d);
        }
        self->settling++;
        return d;   /* CONTINUE: it fits, and is still getting shorter */
    }

    if (self->total_us >= cfg->max_time_us) {
        d.action = POLICY_ABORT;
        d.reason = POLICY_ABORT_TIMEOUT;
        return finish(self, d);
    }

    self->stalled = d.converging ? 0 : self->stalled + 1;
    if (self->stalled >= cfg->stall_passes && cfg->throttle_allowed
        && self->level < cfg->throttle_max) {
        if (sent_set == 0)
            sent_set = pass->bytes_sent / cfg->page_size;
        double excess = (double)pass->pages_dirtied / (double)(sent_set ? sent_set : 1);
        self->level = next_level(self, excess);
        self->stalled = 0;   /* give the new level passes to show its effect */
        d.action = POLICY_THROTTLE;
        d.throttle_percent = self->level;
    }
    return d;
}

const char *policy_action_name(policy_action_t action)
{
    switch (action) {
    case POLICY_CONTINUE:   return "continue";
    case POLICY_SWITCHOVER: return "switchover";
    case POLICY_THROTTLE:   return "throttle";
    case POLICY_ABORT:      return "abort";
    }
    return "unknown";
}

const char *policy_abort_reason_name(policy_abort_reason_t reason)
{
    switch (reason) {
    case POLICY_ABORT_NONE:             return "none";
    case POLICY_ABORT_TIMEOUT:          return "pre-copy exceeded its maximum time";
    case POLICY_ABORT_COST_OVER_LIMIT:  return "switchover cost alone exceeds the downtime limit";
    }
    return "unknown";
}
