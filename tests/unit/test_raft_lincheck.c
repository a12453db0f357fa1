/* test_raft_lincheck.c - the linearizability checker used by sim_raft must
 * accept linearizable histories and reject the rest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/rng.h"
#include "raft_lincheck.h"

#define PUT(k, v, c, r) { .key = k, .put = true, .value = v, .call = c, .ret = r }
#define GET(k, v, c, r) { .key = k, .put = false, .value = v, .call = c, .ret = r }

static bool check(const lin_op_t *ops, size_t n)
{
    char why[128];
    return lin_check(ops, n, 0, NULL, why, sizeof(why));
}

static void test_sequential_history_is_linearizable(void **state)
{
    lin_op_t ops[] = { GET(1, 0, 0, 1), PUT(1, 5, 2, 3), GET(1, 5, 4, 5), PUT(1, 6, 6, 7), GET(1, 6, 8, 9) };
    assert_true(check(ops, 5));
}

static void test_read_of_unwritten_value_is_rejected(void **state)
{
    lin_op_t ops[] = { PUT(1, 5, 0, 1), GET(1, 7, 2, 3) };
    assert_false(check(ops, 2));
}

static void test_stale_read_is_rejected(void **state)
{
    lin_op_t ops[] = { PUT(1, 1, 0, 1), PUT(1, 2, 2, 3), GET(1, 1, 4, 5) };
    assert_false(check(ops, 3));
}

static void test_concurrent_reads_may_see_either_but_not_go_back(void **state)
{
    /* A put overlapping two reads: old-then-new is fine, new-then-old is not. */
    lin_op_t fine[] = { PUT(1, 1, 0, 10), GET(1, 0, 1, 2), GET(1, 1, 3, 4) };
    assert_true(check(fine, 3));
    lin_op_t back[] = { PUT(1, 1, 0, 10), GET(1, 1, 1, 2), GET(1, 0, 3, 4) };
    assert_false(check(back, 3));
}

static void test_pending_put_may_happen_or_not(void **state)
{
    lin_op_t seen[] = { PUT(1, 5, 0, LIN_PENDING), GET(1, 5, 10, 11) };
    assert_true(check(seen, 2));
    lin_op_t unseen[] = { PUT(1, 5, 0, LIN_PENDING), GET(1, 0, 10, 11) };
    assert_true(check(unseen, 2));
    lin_op_t flicker[] = { PUT(1, 5, 0, LIN_PENDING), GET(1, 5, 3, 4), GET(1, 0, 5, 6) };
    assert_false(check(flicker, 3));
}

static void test_keys_are_checked_independently(void **state)
{
    lin_op_t ops[] = { PUT(1, 1, 0, 1), GET(2, 9, 2, 3), GET(1, 1, 4, 5) };
    char why[128] = "";
    assert_false(lin_check(ops, 3, 0, NULL, why, sizeof(why)));
    assert_non_null(strstr(why, "key 2"));
}

/* Histories made from a real sequential execution, with each operation's
 * interval stretched at random around its instant, are always linearizable;
 * swapping one read's answer for a value never written is caught. */
static void test_random_histories_from_executions(void **state)
{
    rng_t rng;
    rng_seed(&rng, 7);
    for (int round = 0; round < 200; round++) {
        enum { N = 120 };
        lin_op_t ops[N];
        uint64_t reg[3] = { 0, 0, 0 };
        for (int i = 0; i < N; i++) {
            uint64_t key = rng_below(&rng, 3);
            uint64_t at = 1000 + 10 * (uint64_t)i;   /* the instant it takes effect */
            uint64_t call = at - rng_below(&rng, 40), ret = at + 1 + rng_below(&rng, 40);
            if (rng_below(&rng, 2)) {
                reg[key] = 1 + (uint64_t)i;
                ops[i] = (lin_op_t)PUT(key, reg[key], call, rng_below(&rng, 10) ? ret : LIN_PENDING);
            } else {
                ops[i] = (lin_op_t)GET(key, reg[key], call, ret);
            }
        }
        assert_true(check(ops, N));
        for (int i = 0; i < N; i++) {
            if (!ops[i].put) {
                ops[i].value = 999999;
                assert_false(check(ops, N));
                break;
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequential_history_is_linearizable),
        cmocka_unit_test(test_read_of_unwritten_value_is_rejected),
        cmocka_unit_test(test_stale_read_is_rejected),
        cmocka_unit_test(test_concurrent_reads_may_see_either_but_not_go_back),
        cmocka_unit_test(test_pending_put_may_happen_or_not),
        cmocka_unit_test(test_keys_are_checked_independently),
        cmocka_unit_test(test_random_histories_from_executions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
