/* test_vm_policy.c - the pure decisions of the agent's VM runtime
 * (agent/vm_policy.c): every combination of owner, desired power, lease and
 * local state for reconciliation (the ownership invariant, self-fencing),
 * and the heartbeat monitor's reset budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "agent/vm_policy.h"

#define SEC 1000000000ll

static fsm_vm_t vm(const char *owner, fsm_power_t power)
{
    fsm_vm_t v = { .name = "web1", .memory_bytes = 64 << 20, .vcpus = 1, .power = power, .generation = 1 };
    strcpy(v.owner, owner);
    return v;
}

/* The invariant over every input: after the action, the VM runs here iff
 * it is ours, wanted on, and the lease is valid. */
static void test_reconcile_keeps_the_ownership_invariant(void **state)
{
    (void)state;
    const char *owners[] = { "h1", "h2", "" };
    for (int o = 0; o < 3; o++)
        for (int power = 0; power < 2; power++)
            for (int lease = 0; lease < 2; lease++)
                for (int running = 0; running < 2; running++) {
                    fsm_vm_t v = vm(owners[o], power ? FSM_POWER_ON : FSM_POWER_OFF);
                    char why[96] = "";
                    vm_run_action_t a = vm_run_decide(&v, "h1", lease, running, why, sizeof why);
                    bool should = o == 0 && power && lease;
                    bool runs_after = a == VM_RUN_START ? true : (a == VM_RUN_STOP || a == VM_RUN_FENCE) ? false : running;
                    assert_int_equal(runs_after, should);
                    if (a == VM_RUN_START)
                        assert_false(running);
                    if (a == VM_RUN_STOP || a == VM_RUN_FENCE)
                        assert_true(running && why[0]);
                }
}

static void test_reasons(void **state)
{
    (void)state;
    char why[96];
    fsm_vm_t v = vm("h1", FSM_POWER_ON);
    assert_int_equal(vm_run_decide(&v, "h1", false, true, why, sizeof why), VM_RUN_FENCE);
    assert_string_equal(why, "self-fencing: this host's lease is not valid");
    assert_int_equal(vm_run_decide(&v, "h1", false, false, why, sizeof why), VM_RUN_KEEP);   /* nothing to fence */
    v = vm("h2", FSM_POWER_ON);
    assert_int_equal(vm_run_decide(&v, "h1", true, true, why, sizeof why), VM_RUN_STOP);
    assert_string_equal(why, "its owner is now h2");
    v = vm("h1", FSM_POWER_OFF);
    assert_int_equal(vm_run_decide(&v, "h1", true, true, why, sizeof why), VM_RUN_STOP);
    assert_string_equal(why, "desired power is off");
    v = vm("", FSM_POWER_OFF);
    assert_int_equal(vm_run_decide(&v, "h1", true, true, why, sizeof why), VM_RUN_STOP);
    assert_string_equal(why, "it has no owner");
    /* A host name that only shares a prefix is another host. */
    v = vm("h10", FSM_POWER_ON);
    assert_int_equal(vm_run_decide(&v, "h1", true, false, why, sizeof why), VM_RUN_KEEP);
}

static vm_monitor_input_t running_vm(int64_t silent_s, unsigned resets)
{
    return (vm_monitor_input_t){ .timeout_ms = 10000, .max_resets = 3, .executing = true,
                                 .last_heartbeat_ns = 100 * SEC, .now_ns = (100 + silent_s) * SEC,
                                 .resets_done = resets };
}

static void test_monitor(void **state)
{
    (void)state;
    vm_monitor_input_t in = running_vm(9, 0);
    assert_int_equal(vm_monitor_decide(&in), VM_MONITOR_OK);
    in = running_vm(10, 0);
    assert_int_equal(vm_monitor_decide(&in), VM_MONITOR_RESET);
    in = running_vm(10, 2);
    assert_int_equal(vm_monitor_decide(&in), VM_MONITOR_RESET);
    in = running_vm(10, 3);
    assert_int_equal(vm_monitor_decide(&in), VM_MONITOR_GIVE_UP);
    in.gave_up = true;
    assert_int_equal(vm_monitor_decide(&in), VM_MONITOR_OK);   /* said once */

    /* Never reset: a guest that never heartbeated, a paused VM, monitoring off. */
    in = running_vm(1000, 0);
    in.last_heartbeat_ns = 0;
    assert_int_equal(vm_monitor_decide(&in), VM_MONITOR_OK);
    in = running_vm(1000, 0);
    in.executing = false;
    assert_int_equal(vm_monitor_decide(&in), VM_MONITOR_OK);
    in = running_vm(1000, 0);
    in.timeout_ms = 0;
    assert_int_equal(vm_monitor_decide(&in), VM_MONITOR_OK);
    in = running_vm(1000, 0);
    in.timeout_ms = UINT64_MAX;   /* no overflow into "always silent" */
    assert_int_equal(vm_monitor_decide(&in), VM_MONITOR_OK);
}

/* A guest that hangs after every boot is reset exactly max_resets times. */
static void test_monitor_budget(void **state)
{
    (void)state;
    vm_monitor_input_t in = running_vm(0, 0);
    int resets = 0, give_ups = 0;
    for (int second = 0; second < 200; second++) {
        in.now_ns += SEC;
        switch (vm_monitor_decide(&in)) {
        case VM_MONITOR_RESET:
            resets++;
            in.resets_done++;
            in.last_heartbeat_ns = in.now_ns + SEC;   /* boots, heartbeats once, hangs */
            break;
        case VM_MONITOR_GIVE_UP:
            give_ups++;
            in.gave_up = true;
            break;
        case VM_MONITOR_OK:
            break;
        }
    }
    assert_int_equal(resets, 3);
    assert_int_equal(give_ups, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reconcile_keeps_the_ownership_invariant),
        cmocka_unit_test(test_reasons),
        cmocka_unit_test(test_monitor),
        cmocka_unit_test(test_monitor_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
