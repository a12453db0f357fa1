/* vm_policy.h - the decisions behind the agent's VM runtime (vms.c), as
 * pure functions: what to do with one VM given the cluster state, and what
 * VM monitoring does about a silent guest. No clock, no VMM: time comes in
 * as arguments, actions go out as values, and tests/unit/test_vm_policy.c
 * walks every case.
 *
 * The rule they encode is DESIGN.md's ownership invariant: a VM runs on a
 * host only if the FSM names that host its owner, wants it powered on, and
 * the host holds a valid lease. */
#ifndef FERRY_AGENT_VM_POLICY_H
#define FERRY_AGENT_VM_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "consensus/fsm.h"

typedef enum {
    VM_RUN_KEEP,     /* nothing to do: runs and should, or is off and should be */
    VM_RUN_START,    /* should run here and does not */
    VM_RUN_STOP,     /* runs here and must not: off, or owned elsewhere */
    VM_RUN_FENCE,    /* runs here, should, but this host's lease is not valid */
} vm_run_action_t;

/* What host `self` does with VM v; when it stops one, *reason says why in a
 * few words ("desired power is off", "its owner is now h2", ...). */
vm_run_action_t vm_run_decide(const fsm_vm_t *v, const char *self, bool lease_valid, bool running_here,
                              char *reason, size_t reason_cap);

typedef enum {
    VM_MONITOR_OK,        /* heartbeating, never heartbeated, held, or monitoring is off */
    VM_MONITOR_RESET,     /* silent past the timeout: reset it */
    VM_MONITOR_GIVE_UP,   /* silent again after the last allowed reset: leave it, say so once */
} vm_monitor_action_t;

typedef struct {
    uint64_t timeout_ms;          /* 0: monitoring off */
    unsigned max_resets;          /* per power-on */
    bool executing;               /* running, or stopped by the guest; false when paused or created */
    int64_t last_heartbeat_ns;    /* 0: none since the guest booted */
    int64_t now_ns;               /* same clock as last_heartbeat_ns */
    unsigned resets_done;         /* by the monitor, in this power-on */
    bool gave_up;
} vm_monitor_input_t;

vm_monitor_action_t vm_monitor_decide(const vm_monitor_input_t *in);

#endif
