/* vm_policy.c - see vm_policy.h. */
#include "agent/vm_policy.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

vm_run_action_t vm_run_decide(const fsm_vm_t *v, const char *self, bool lease_valid, bool running_here,
                              char *reason, size_t reason_cap)
{
    bool mine = strcmp(v->owner, self) == 0;
    bool wanted_on = v->power == FSM_POWER_ON;
    if (mine && wanted_on && lease_valid)
        return running_here ? VM_RUN_KEEP : VM_RUN_START;
    if (!running_here)
        return VM_RUN_KEEP;
    if (!mine) {
        if (v->owner[0])
            snprintf(reason, reason_cap, "its owner is now %s", v->owner);
        else
            snprintf(reason, reason_cap, "it has no owner");
        return VM_RUN_STOP;
    }
    if (!wanted_on) {
        snprintf(reason, reason_cap, "desired power is off");
        return VM_RUN_STOP;
    }
    snprintf(reason, reason_cap, "self-fencing: this host's lease is not valid");
    return VM_RUN_FENCE;
}

vm_monitor_action_t vm_monitor_decide(const vm_monitor_input_t *in)
{
    /* A paused VM is held by someone (a migration); a guest that never
     * heartbeated since it booted (a custom kernel) has nothing to miss. */
    if (in->timeout_ms == 0 || in->gave_up || !in->executing || in->last_heartbeat_ns == 0)
        return VM_MONITOR_OK;
    if (in->timeout_ms > (uint64_t)INT64_MAX / 1000000 ||
        in->now_ns - in->last_heartbeat_ns < (int64_t)(in->timeout_ms * 1000000))
        return VM_MONITOR_OK;
    return in->resets_done < in->max_resets ? VM_MONITOR_RESET : VM_MONITOR_GIVE_UP;
}
