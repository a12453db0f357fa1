/* test_migrate_slots.c - the per-host migration limit: slots, FIFO queue,
 * cancel, bounds; and a random run checked against a plain model. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/rng.h"
#include "migration/slots.h"

static void test_four_run_the_rest_wait_in_order(void **state)
{
    (void)state;
    slots_t *s = slots_new(SLOTS_DEFAULT_MAX, SLOTS_DEFAULT_WAITING);
    assert_non_null(s);
    for (uint64_t t = 1; t <= 4; t++)
        assert_int_equal(slots_acquire(s, t), SLOTS_RUNNING);
    for (uint64_t t = 5; t <= 7; t++)
        assert_int_equal(slots_acquire(s, t), SLOTS_WAITING);
    assert_int_equal(slots_running(s), 4);
    assert_int_equal(slots_waiting(s), 3);
    assert_int_equal(slots_position(s, 2), 0);
    assert_int_equal(slots_position(s, 5), 1);
    assert_int_equal(slots_position(s, 7), 3);
    assert_int_equal(slots_position(s, 99), -ENOENT);

    /* A release hands the slot to the longest waiting. */
    uint64_t started = 0;
    assert_int_equal(slots_release(s, 3, &started), 1);
    assert_int_equal(started, 5);
    assert_int_equal(slots_position(s, 5), 0);
    assert_int_equal(slots_position(s, 6), 1);
    assert_int_equal(slots_position(s, 3), -ENOENT);

    /* Cancelling a waiting ticket frees no slot and keeps the order. */
    assert_int_equal(slots_release(s, 6, &started), 0);
    assert_int_equal(slots_position(s, 7), 1);
    assert_int_equal(slots_release(s, 1, &started), 1);
    assert_int_equal(started, 7);
    assert_int_equal(slots_waiting(s), 0);
    started = 1234;
    assert_int_equal(slots_release(s, 2, &started), 0);   /* nobody waiting */
    assert_int_equal(started, 1234);
    assert_int_equal(slots_running(s), 3);
    assert_int_equal(slots_acquire(s, 8), SLOTS_RUNNING);
    slots_destroy(&s);
    assert_null(s);
}

static void test_bounds_and_duplicates(void **state)
{
    (void)state;
    assert_null(slots_new(0, 4));
    assert_null(slots_new(5000, 4));
    assert_null(slots_new(4, 5000));
    slots_t *s = slots_new(1, 2);
    assert_int_equal(slots_acquire(s, 10), SLOTS_RUNNING);
    assert_int_equal(slots_acquire(s, 10), -EEXIST);
    assert_int_equal(slots_acquire(s, 11), SLOTS_WAITING);
    assert_int_equal(slots_acquire(s, 11), -EEXIST);
    assert_int_equal(slots_acquire(s, 12), SLOTS_WAITING);
    assert_int_equal(slots_acquire(s, 13), -ENOSPC);   /* queue full: refuse */
    assert_int_equal(slots_release(s, 99, NULL), -ENOENT);
    slots_destroy(&s);

    /* No queue at all: beyond the slots, refuse. */
    s = slots_new(2, 0);
    assert_int_equal(slots_acquire(s, 1), SLOTS_RUNNING);
    assert_int_equal(slots_acquire(s, 2), SLOTS_RUNNING);
    assert_int_equal(slots_acquire(s, 3), -ENOSPC);
    assert_int_equal(slots_release(s, 1, NULL), 0);
    assert_int_equal(slots_acquire(s, 3), SLOTS_RUNNING);
    slots_destroy(&s);
    slots_destroy(&s);   /* NULL-safe */
}

/* Random acquire/release against a model: a list of running tickets and a
 * list of waiting ones, in order. */
#define MODEL_MAX 64

typedef struct {
    uint64_t running[MODEL_MAX], waiting[MODEL_MAX];
    unsigned nr, nw;
} model_t;

static int find(const uint64_t *list, unsigned n, uint64_t t)
{
    for (unsigned i = 0; i < n; i++)
        if (list[i] == t)
            return (int)i;
    return -1;
}

static void drop(uint64_t *list, unsigned *n, unsigned at)
{
    memmove(list + at, list + at + 1, (*n - at - 1) * sizeof *list);
    (*n)--;
}

static void test_random_runs_match_the_model(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 200; seed++) {
        rng_t rng;
        rng_seed(&rng, seed);
        unsigned max_running = 1 + (unsigned)rng_below(&rng, 6);
        unsigned max_waiting = (unsigned)rng_below(&rng, 8);
        slots_t *s = slots_new(max_running, max_waiting);
        model_t m = { 0 };
        for (int step = 0; step < 400; step++) {
            uint64_t t = 1 + rng_below(&rng, 20);
            if (rng_below(&rng, 2)) {
                int want;
                if (find(m.running, m.nr, t) >= 0 || find(m.waiting, m.nw, t) >= 0)
                    want = -EEXIST;
                else if (m.nr < max_running)
                    want = SLOTS_RUNNING, m.running[m.nr++] = t;
                else if (m.nw < max_waiting)
                    want = SLOTS_WAITING, m.waiting[m.nw++] = t;
                else
                    want = -ENOSPC;
                int got = slots_acquire(s, t);
                if (got != want)
                    fail_msg("seed %llu step %d: acquire %llu = %d, model says %d",
                             (unsigned long long)seed, step, (unsigned long long)t, got, want);
            } else {
                int want = -ENOENT;
                uint64_t want_started = 0, started = 0;
                int w = find(m.waiting, m.nw, t), r = find(m.running, m.nr, t);
                if (w >= 0) {
                    drop(m.waiting, &m.nw, (unsigned)w);
                    want = 0;
                } else if (r >= 0) {
                    drop(m.running, &m.nr, (unsigned)r);
                    want = 0;
                    if (m.nw) {
                        want = 1;
                        want_started = m.waiting[0];
                        drop(m.waiting, &m.nw, 0);
                        m.running[m.nr++] = want_started;
                    }
                }
                int got = slots_release(s, t, &started);
                if (got != want || (want == 1 && started != want_started))
                    fail_msg("seed %llu step %d: release %llu = %d (started %llu), model says "
                             "%d (%llu)", (unsigned long long)seed, step, (unsigned long long)t,
                             got, (unsigned long long)started, want,
                             (unsigned long long)want_started);
            }
            assert_int_equal(slots_running(s), m.nr);
            assert_int_equal(slots_waiting(s), m.nw);
            for (unsigned i = 0; i < m.nw; i++)
                assert_int_equal(slots_position(s, m.waiting[i]), (int)i + 1);
        }
        slots_destroy(&s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_four_run_the_rest_wait_in_order),
        cmocka_unit_test(test_bounds_and_duplicates),
        cmocka_unit_test(test_random_runs_match_the_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
