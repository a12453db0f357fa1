/* test_guest_args.c - the workload kernel's command line parser (shared by
 * the guest and the VMM): good lines, every kind of bad line, and random
 * bytes, which must never crash it or overrun the error buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/rng.h"
#include "guest/args.h"
#include "guest/protocol.h"

#define MIB (1024ull * 1024)

static int parse(const char *line, guest_args_t *a, char *err, size_t errlen)
{
    return guest_args_parse(line, strlen(line), a, err, errlen);
}

static void test_profiles_and_defaults(void **state)
{
    (void)state;
    guest_args_t a;
    char err[160];
    assert_int_equal(parse("", &a, err, sizeof err), 0);
    assert_int_equal(a.profile, GUEST_PROFILE_IDLE);

    assert_int_equal(parse("profile=web hot=64M rate=200M", &a, err, sizeof err), 0);
    assert_int_equal(a.profile, GUEST_PROFILE_WEB);
    assert_int_equal(a.hot_bytes, 64 * MIB);
    assert_int_equal(a.rate_bytes, 200 * MIB);

    assert_int_equal(parse("profile=db wss=256M rate=100M seed=7", &a, err, sizeof err), 0);
    assert_int_equal(a.profile, GUEST_PROFILE_DB);
    assert_int_equal(a.wss_bytes, 256 * MIB);
    assert_int_equal(a.seed, 7);

    assert_int_equal(parse("profile=stream", &a, err, sizeof err), 0);
    assert_int_equal(a.rate_bytes, 500 * MIB);  /* the profile's default */
    assert_int_equal(a.wss_bytes, 0);            /* whole arena */

    assert_int_equal(parse("profile=test pages=32 tsc_khz=2400000 hb=5 print=0 verify=0", &a,
                           err, sizeof err), 0);
    assert_int_equal(a.test_pages, 32);
    assert_int_equal(a.tsc_khz, 2400000);
    assert_int_equal(a.heartbeat_ms, 5);
    assert_int_equal(a.print_ms, 0);
    assert_int_equal(a.verify_rate, 0);
    assert_false(a.verify_auto);
}

static void test_sizes(void **state)
{
    (void)state;
    guest_args_t a;
    char err[160];
    assert_int_equal(parse("profile=web hot=0x100000", &a, err, sizeof err), 0);
    assert_int_equal(a.hot_bytes, 1 * MIB);
    assert_int_equal(parse("profile=web hot=2g", &a, err, sizeof err), 0);
    assert_int_equal(a.hot_bytes, 2048 * MIB);
    assert_int_equal(parse("profile=web hot=512K", &a, err, sizeof err), 0);
    assert_int_equal(a.hot_bytes, 512 * 1024);
}

static void test_image_path_first(void **state)
{
    (void)state;
    guest_args_t a;
    char err[160];
    /* Boot loaders (QEMU, GRUB) put the image path first. */
    assert_int_equal(parse("/boot/ferry-guest.elf profile=db", &a, err, sizeof err), 0);
    assert_int_equal(a.profile, GUEST_PROFILE_DB);
    /* Elsewhere a bare word is an error. */
    assert_int_equal(parse("profile=db junk", &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "expected key=value"));
}

static void expect_error(const char *line, const char *needle)
{
    guest_args_t a;
    char err[160];
    int rc = parse(line, &a, err, sizeof err);
    if (rc != -1 || !strstr(err, needle))
        fail_msg("'%s': rc %d, err '%s', expected '%s'", line, rc, err, needle);
}

static void test_errors_name_the_problem(void **state)
{
    (void)state;
    expect_error("profile=bogus", "unknown profile 'bogus'");
    expect_error("profile=web colour=blue", "unknown parameter 'colour'");
    expect_error("profile=web rate=1M rate=2M", "given twice");
    expect_error("profile=db hot=1M", "does not apply to this profile: 'hot'");
    expect_error("profile=web rate=fast", "not a number");
    expect_error("profile=web rate=", "not a number");
    expect_error("profile=web rate=99999999999999999999", "not a number");
    expect_error("profile=web hot=99999999999G", "not a number");
    expect_error("profile=web hot=1", "out of range");
    expect_error("hb=0", "out of range");
    expect_error("tsc_khz=5", "out of range");

    char longline[GUEST_CMDLINE_MAX + 10];
    memset(longline, 'x', sizeof longline);
    guest_args_t a;
    char err[160];
    assert_int_equal(guest_args_parse(longline, sizeof longline, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "longer than"));
}

static void test_arena_check(void **state)
{
    (void)state;
    guest_args_t a;
    char err[160];
    assert_int_equal(parse("profile=web hot=64M", &a, err, sizeof err), 0);
    assert_int_equal(guest_args_check_arena(&a, 128 * MIB, err, sizeof err), 0);
    assert_int_equal(guest_args_check_arena(&a, 32 * MIB, err, sizeof err), -1);
    assert_non_null(strstr(err, "hot set larger"));
    assert_non_null(strstr(err, "64 MiB > 32 MiB"));
    /* The estimate the VMM uses is below the memory and not absurdly so. */
    assert_true(guest_arena_estimate(64 * MIB) < 64 * MIB);
    assert_true(guest_arena_estimate(64 * MIB) > 48 * MIB);
    assert_int_equal(guest_arena_estimate(1 * MIB), 0);
}

/* Random and mutated input: never crashes, always terminates the error. */
static void test_random_input(void **state)
{
    (void)state;
    rng_t rng;
    rng_seed(&rng, 42);
    static const char alphabet[] = "profile=webdbstreamhotwssrate0123456789xXKMG =\t\n";
    char line[300], err[48];
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = rng_below(&rng, sizeof line);
        for (size_t i = 0; i < n; i++)
            line[i] = (iter & 1) ? (char)rng_below(&rng, 256)
                                 : alphabet[rng_below(&rng, sizeof alphabet - 1)];
        guest_args_t a;
        memset(err, 0x7f, sizeof err);
        int rc = guest_args_parse(line, n, &a, err, sizeof err);
        assert_true(rc == 0 || rc == -1);
        if (rc == -1) {
            assert_non_null(memchr(err, '\0', sizeof err));
            assert_true(strncmp(err, "cmdline: ", 9) == 0);
        } else {
            assert_true(a.profile <= GUEST_PROFILE_TEST);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_profiles_and_defaults),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_image_path_first),
        cmocka_unit_test(test_errors_name_the_problem),
        cmocka_unit_test(test_arena_check),
        cmocka_unit_test(test_random_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
