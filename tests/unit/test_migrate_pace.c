/* test_migrate_pace.c - the send-rate cap (pace_t in migrate_internal.h):
 * how long the sender waits, with time passed in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "migration/migrate_internal.h"

#define MB 1000000ULL
#define MS 1000000LL          /* ns */
#define S (1000 * MS)

static void test_no_cap_never_waits(void **state)
{
    pace_t pace;
    pace_start(&pace, 0, 0, 0);
    assert_int_equal(pace_wait_ns(&pace, 0, 0), 0);
    assert_int_equal(pace_wait_ns(&pace, 1000 * MB, 1), 0);
}

static void test_steady_sending_waits_for_the_cap(void **state)
{
    pace_t pace;
    pace_start(&pace, 10 * MB, 0, 0);   /* 10 MB/s */
    assert_int_equal(pace_wait_ns(&pace, 0, 0), 0);
    assert_int_equal(pace_wait_ns(&pace, 10 * MB, 0), 1 * S);
    assert_int_equal(pace_wait_ns(&pace, 10 * MB, 1 * S), 0);
    assert_int_equal(pace_wait_ns(&pace, 15 * MB, 1 * S), 500 * MS);
}

/* Less than a burst of idle time is credit the stream may use. */
static void test_short_idle_is_credit(void **state)
{
    pace_t pace;
    pace_start(&pace, 10 * MB, 0, 0);
    /* 50 ms idle, then 1.5 MB (150 ms at the cap): 100 ms to wait. */
    assert_int_equal(pace_wait_ns(&pace, 1500000, 50 * MS), 100 * MS);
}

/* A long idle spell (a pass end, the dirty log) banks one burst, not all of
 * it: before this rule, 10 s of idle let the next 100 MB through unpaced. */
static void test_long_idle_banks_one_burst_only(void **state)
{
    pace_t pace;
    pace_start(&pace, 10 * MB, 0, 0);
    assert_int_equal(pace_wait_ns(&pace, 10 * MB, 1 * S), 0);    /* on schedule */
    assert_int_equal(pace_wait_ns(&pace, 10 * MB, 11 * S), 0);   /* 10 s of idle */
    /* 1 MB (100 ms at the cap) fits the burst; 10 MB needs 1 s, 0.9 s of it waited. */
    assert_int_equal(pace_wait_ns(&pace, 11 * MB, 11 * S), 0);
    assert_int_equal(pace_wait_ns(&pace, 20 * MB, 11 * S), 900 * MS);
    /* Sent on schedule from there: no more waiting than the cap asks. */
    assert_int_equal(pace_wait_ns(&pace, 20 * MB, 11 * S + 900 * MS), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_cap_never_waits),
        cmocka_unit_test(test_steady_sending_waits_for_the_cap),
        cmocka_unit_test(test_short_idle_is_credit),
        cmocka_unit_test(test_long_idle_banks_one_burst_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
