/* test_vm_spec.c - the VM spec (agent/vm_spec.c): profiles become the
 * workload kernel's command line, custom kernels round-trip through the
 * FSM's string, and every kind of bad input is refused with a message that
 * names it. Random bytes never crash it or overrun the error buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "agent/vm_spec.h"
#include "common/rng.h"

#define MIB (1ull << 20)
#define GIB (1ull << 30)

static void assert_contains(const char *text, const char *part)
{
    if (!strstr(text, part))
        fail_msg("'%s' does not contain '%s'", text, part);
}

static void test_profiles_become_cmdlines(void **state)
{
    (void)state;
    vm_boot_t boot;
    char err[320];
    assert_int_equal(vm_spec_decode("web:hot=64M,rate=200M", GIB, &boot, err, sizeof err), 0);
    assert_false(boot.custom_kernel);
    assert_string_equal(boot.cmdline, "profile=web hot=64M rate=200M");
    assert_int_equal(vm_spec_decode("idle", 64 * MIB, &boot, err, sizeof err), 0);
    assert_string_equal(boot.cmdline, "profile=idle");
    assert_int_equal(vm_spec_decode("", 64 * MIB, &boot, err, sizeof err), 0);
    assert_string_equal(boot.cmdline, "profile=idle");
    assert_int_equal(vm_spec_decode("db:wss=16M,rate=1M,seed=7", 64 * MIB, &boot, err, sizeof err), 0);
    assert_string_equal(boot.cmdline, "profile=db wss=16M rate=1M seed=7");
    assert_int_equal(vm_spec_decode("idle:hb=50", 64 * MIB, &boot, err, sizeof err), 0);
    assert_string_equal(boot.cmdline, "profile=idle hb=50");
}

static void test_bad_profiles_are_named(void **state)
{
    (void)state;
    static const struct { const char *spec, *says; } cases[] = {
        { "bogus", "unknown profile 'bogus'" },
        { "bogus:hot=1M", "profile 'bogus:hot=1M'" },
        { "web:hot=64M rate=1M", "character 12 is ' '" },
        { "web:hot", "setting 'hot' is not KEY=VALUE" },
        { "web:hot=", "setting 'hot=' is not KEY=VALUE" },
        { "web:=1", "setting '=1' is not KEY=VALUE" },
        { "web:hot=1M,,rate=1M", "setting '' is not KEY=VALUE" },
        { "web:hot=1M,", "setting '' is not KEY=VALUE" },
        { "web:a:b=1", "setting 'a:b=1' is not KEY=VALUE" },
        { ":hot=1M", "no profile name" },
        { "hot=1M", "write the profile's name first" },
        { "web:profile=db", "named before ':'" },
        { "web:wss=1M", "does not apply to this profile" },
        { "web:hot=1M,hot=2M", "given twice" },
        { "web:frob=1", "unknown parameter 'frob'" },
        { "web:hot=lots", "not a number" },
        { "web", "hot set larger than the guest's usable memory" },   /* 64M default hot set in 64 MiB */
        { "web;rm -rf /", "character 4 is ';'" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vm_boot_t boot;
        char err[320] = "";
        if (vm_spec_decode(cases[i].spec, 64 * MIB, &boot, err, sizeof err) == 0)
            fail_msg("'%s' was accepted", cases[i].spec);
        assert_contains(err, cases[i].says);
        assert_null(strstr(err, "cmdline: "));   /* the guest parser's prefix is dropped */
    }
    char long_spec[FSM_PROFILE_MAX + 10];
    memset(long_spec, 'a', sizeof long_spec - 1);
    long_spec[sizeof long_spec - 1] = '\0';
    vm_boot_t boot;
    char err[320];
    assert_int_equal(vm_spec_decode(long_spec, GIB, &boot, err, sizeof err), -1);
    assert_contains(err, "longer than 127 characters");
}

static void test_custom_kernel_round_trip(void **state)
{
    (void)state;
    char spec[FSM_PROFILE_MAX], err[320];
    vm_boot_t boot;
    assert_int_equal(vm_spec_encode_kernel("/boot/k.elf", "", spec, err, sizeof err), 0);
    assert_string_equal(spec, "kernel:/boot/k.elf");
    assert_int_equal(vm_spec_decode(spec, 64 * MIB, &boot, err, sizeof err), 0);
    assert_true(boot.custom_kernel);
    assert_string_equal(boot.kernel_path, "/boot/k.elf");
    assert_string_equal(boot.cmdline, "");

    assert_int_equal(vm_spec_encode_kernel("/boot/k.elf", "seed=3 hb=100", spec, err, sizeof err), 0);
    assert_string_equal(spec, "kernel:/boot/k.elf seed=3 hb=100");
    assert_int_equal(vm_spec_decode(spec, 64 * MIB, &boot, err, sizeof err), 0);
    assert_string_equal(boot.kernel_path, "/boot/k.elf");
    assert_string_equal(boot.cmdline, "seed=3 hb=100");

    /* The VMM runs every command line through the workload kernel's parser. */
    assert_int_equal(vm_spec_encode_kernel("/boot/k.elf", "console=ttyS0", spec, err, sizeof err), 0);
    assert_int_equal(vm_spec_decode(spec, 64 * MIB, &boot, err, sizeof err), -1);
    assert_contains(err, "unknown parameter 'console'");

    assert_int_equal(vm_spec_encode_kernel("boot/k.elf", "", spec, err, sizeof err), -1);
    assert_contains(err, "absolute path");
    assert_int_equal(vm_spec_encode_kernel("/my kernels/k.elf", "", spec, err, sizeof err), -1);
    assert_contains(err, "spaces");
    assert_int_equal(vm_spec_encode_kernel("/k.elf", "a=\x01", spec, err, sizeof err), -1);
    assert_contains(err, "control characters");
    char long_path[200];
    memset(long_path, 'k', sizeof long_path - 1);
    long_path[0] = '/';
    long_path[sizeof long_path - 1] = '\0';
    assert_int_equal(vm_spec_encode_kernel(long_path, "", spec, err, sizeof err), -1);
    assert_contains(err, "the cluster stores at most");
    assert_int_equal(vm_spec_decode("kernel:relative.elf", 64 * MIB, &boot, err, sizeof err), -1);
    assert_contains(err, "must be absolute");
    assert_int_equal(vm_spec_decode("kernel:", 64 * MIB, &boot, err, sizeof err), -1);
}

static void test_names_and_shapes(void **state)
{
    (void)state;
    char err[320];
    assert_int_equal(vm_spec_check_name("web-1.prod_a", err, sizeof err), 0);
    assert_int_equal(vm_spec_check_name("", err, sizeof err), -1);
    assert_int_equal(vm_spec_check_name("a b", err, sizeof err), -1);
    assert_contains(err, "not ' '");
    assert_int_equal(vm_spec_check_name("../etc", err, sizeof err), -1);
    assert_int_equal(vm_spec_check_name("..", err, sizeof err), -1);
    char long_name[80];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_int_equal(vm_spec_check_name(long_name, err, sizeof err), -1);
    assert_contains(err, "1 to 63 characters");

    assert_int_equal(vm_spec_check_shape(64 * MIB, 1, err, sizeof err), 0);
    assert_int_equal(vm_spec_check_shape(64 * GIB, 64, err, sizeof err), 0);
    assert_int_equal(vm_spec_check_shape(100ull << 40, 1, err, sizeof err), -1);
    assert_contains(err, "memory 100 TiB is out of range");
    assert_int_equal(vm_spec_check_shape(16 * MIB, 1, err, sizeof err), -1);
    assert_contains(err, "32 MiB to 64 GiB");
    assert_int_equal(vm_spec_check_shape(64 * MIB + 4096, 1, err, sizeof err), -1);
    assert_contains(err, "whole number of MiB");
    assert_int_equal(vm_spec_check_shape(64 * MIB, 0, err, sizeof err), -1);
    assert_int_equal(vm_spec_check_shape(64 * MIB, 65, err, sizeof err), -1);
    assert_contains(err, "65 vCPUs");
}

static void test_bytes(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(vm_spec_bytes(0, buf, sizeof buf), "0 bytes");
    assert_string_equal(vm_spec_bytes(64 * MIB, buf, sizeof buf), "64 MiB");
    assert_string_equal(vm_spec_bytes(3 * GIB / 2, buf, sizeof buf), "1.5 GiB");
    assert_string_equal(vm_spec_bytes(100ull << 40, buf, sizeof buf), "100 TiB");
}

/* Truncations and corruptions of good specs, and random bytes. */
static void test_random_input(void **state)
{
    (void)state;
    static const char *const good[] = { "web:hot=16M,rate=20M", "kernel:/boot/k.elf seed=3", "db:wss=8M" };
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789=,:-_. /kernel";
    rng_t rng;
    rng_seed(&rng, 1);
    for (int iter = 0; iter < 20000; iter++) {
        char text[200];
        size_t n;
        if (iter % 3 == 0) {
            const char *g = good[rng_below(&rng, 3)];
            n = rng_below(&rng, strlen(g) + 1);
            memcpy(text, g, n);
            if (n && rng_below(&rng, 2))
                text[rng_below(&rng, n)] = (char)(1 + rng_below(&rng, 255));
        } else {
            n = rng_below(&rng, sizeof text - 1);
            for (size_t i = 0; i < n; i++)
                text[i] = (iter & 1) ? (char)(1 + rng_below(&rng, 255)) : alphabet[rng_below(&rng, sizeof alphabet - 1)];
        }
        text[n] = '\0';
        vm_boot_t boot;
        char err[96];
        memset(err, 0x7f, sizeof err);
        int rc = vm_spec_decode(text, (1 + rng_below(&rng, 512)) * MIB, &boot, err, sizeof err);
        assert_true(rc == 0 || rc == -1);
        if (rc == -1)
            assert_non_null(memchr(err, '\0', sizeof err));
        else
            assert_true(strlen(boot.cmdline) <= GUEST_CMDLINE_MAX);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_profiles_become_cmdlines),
        cmocka_unit_test(test_bad_profiles_are_named),
        cmocka_unit_test(test_custom_kernel_round_trip),
        cmocka_unit_test(test_names_and_shapes),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_random_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
