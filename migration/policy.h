/* policy.h - the pre-copy convergence policy of live migration (pure core).
 *
 * Pre-copy sends all guest memory once, then keeps sending the pages the
 * guest dirtied meanwhile, pass after pass, until what is left is small
 * enough to send while the VM is stunned. After each pass the migration
 * sender feeds the policy what happened (bytes sent, time taken, pages
 * dirtied, pages still dirty, bandwidth estimate) and the policy answers:
 *
 *   CONTINUE    run another pass;
 *   SWITCHOVER  the predicted stun time fits the downtime limit: stop the
 *               vCPUs, send the rest, commit (with stun_target_ratio set, not
 *               before the prediction reaches the target or the dirty set
 *               stops shrinking: a stun that fits is not yet a short one);
 *   THROTTLE    the dirty set is not shrinking: make the vCPUs sleep
 *               `throttle_percent` of their time (as vMotion's SDPS does),
 *               then run another pass;
 *   ABORT       give up (see policy_abort_reason_t); the VM keeps running
 *               on the source.
 *
 * predicted stun = remaining dirty bytes / bandwidth + switchover cost
 * (vCPU state, device state, the Raft commit), and a SWITCHOVER is only ever
 * answered when that prediction is within the downtime limit.
 *
 * Pure: no clock, no I/O. Time comes in as each pass's elapsed time.
 *
 *   policy_config_t cfg;
 *   policy_config_defaults(&cfg);
 *   cfg.downtime_limit_us = policy_downtime_limit(vm_limit, migration_limit);
 *   policy_t *p = policy_new(&cfg);
 *   policy_decision_t d = policy_step(p, &(policy_pass_t){ ... });
 *   policy_destroy(&p);
 */
#ifndef FERRY_MIGRATION_POLICY_H
#define FERRY_MIGRATION_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#define POLICY_DEFAULT_DOWNTIME_US 100000ULL   /* 100 ms */
#define POLICY_THROTTLE_MAX        99          /* a vCPU always keeps 1% */

typedef struct {
    uint64_t downtime_limit_us;   /* longest acceptable stun (default 100 ms) */
    uint64_t switchover_cost_us;  /* fixed stun cost besides memory: vCPU and
                                     device state, Raft commit (default 20 ms) */
    uint64_t max_time_us;         /* abort when pre-copy has run this long
                                     (default 10 min) */
    uint32_t page_size;           /* bytes per dirty page (default 4096) */
    bool throttle_allowed;        /* may the policy slow the vCPUs? (default yes) */
    uint32_t throttle_initial;    /* first level, percent (default 20) */
    uint32_t throttle_step;       /* least raise per step, percent (default 10) */
    uint32_t throttle_max;        /* highest level, percent <= 99 (default 99) */
    uint32_t stall_passes;        /* consecutive passes without progress before
                                     the level is raised (default 2) */
    double min_shrink;            /* a pass makes progress when the dirty set
                                     shrank by at least this fraction (0.2) */
    double target_ratio;          /* throttling aims at a throttled dirty rate
                                     of this fraction of the send rate (0.5) */
    double stun_target_ratio;     /* once the prediction fits the limit, keep
                                     going while each pass still shrinks the
                                     dirty set and the prediction is above
                                     this fraction of the limit (default 0:
                                     switch over as soon as it fits, as QEMU
                                     does; migration_params_defaults: 0.1) */
    uint32_t settle_passes_max;   /* at most this many such extra passes
                                     (default 8) */
} policy_config_t;

/* What one pre-copy pass did, as measured by the sender. */
typedef struct {
    uint64_t bytes_sent;          /* payload bytes sent during the pass */
    uint64_t elapsed_us;          /* wall time since the previous report */
    uint64_t pages_dirtied;       /* distinct pages the guest dirtied meanwhile */
    uint64_t remaining_pages;     /* dirty pages still to send */
    uint64_t bandwidth_Bps;       /* bandwidth estimate, bytes/s; 0 = use
                                     bytes_sent / elapsed_us */
} policy_pass_t;

typedef enum {
    POLICY_CONTINUE,
    POLICY_SWITCHOVER,
    POLICY_THROTTLE,
    POLICY_ABORT,
} policy_action_t;

typedef enum {
    POLICY_ABORT_NONE,
    POLICY_ABORT_TIMEOUT,          /* max_time_us reached without converging */
    POLICY_ABORT_COST_OVER_LIMIT,  /* switchover cost alone exceeds the limit */
} policy_abort_reason_t;

typedef struct {
    policy_action_t action;
    policy_abort_reason_t reason;    /* for POLICY_ABORT */
    uint32_t throttle_percent;       /* level to apply now (all actions) */
    uint64_t predicted_stun_us;      /* UINT64_MAX when there is no bandwidth */
    uint64_t bandwidth_Bps;          /* the bandwidth the prediction used */
    uint64_t dirty_rate_Bps;         /* measured (throttled) dirty rate */
    bool converging;                 /* did this pass make progress? */
    uint32_t pass;                   /* 1 for the first (full) pass */
    uint64_t total_us;               /* pre-copy time so far */
} policy_decision_t;

typedef struct policy policy_t;

void policy_config_defaults(policy_config_t *cfg);

/* The downtime limit of one migration: its own if set, else the VM's, else
 * POLICY_DEFAULT_DOWNTIME_US. Zero means "not set". */
uint64_t policy_downtime_limit(uint64_t vm_limit_us, uint64_t migration_limit_us);

/* NULL if the config is invalid (zero page size or limit, throttle levels
 * out of 0..99, fractions out of (0, 1)). */
policy_t *policy_new(const policy_config_t *cfg);
void policy_destroy(policy_t **self_p);

/* Feed one pass; get the decision. After SWITCHOVER or ABORT the policy is
 * finished and keeps answering the same decision. */
policy_decision_t policy_step(policy_t *self, const policy_pass_t *pass);

const char *policy_action_name(policy_action_t action);
const char *policy_abort_reason_name(policy_abort_reason_t reason);

#endif
