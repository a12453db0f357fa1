/* test_vmm_proc_state.c - the process backend's saved state format: round
 * trip, and a decoder that refuses truncated, corrupted and random input
 * with a reason, without crashing or reading out of bounds (run it under
 * ASan). No guest process needed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/rng.h"
#include "vmm/proc_state.h"
#include "vmm/vm.h"

static proc_state_t sample(void)
{
    proc_state_t s = {.memory_bytes = 256ull << 20, .vcpus = 2, .started = true,
                      .base = 64ull << 30, .clock_ns = 123456789012ull};
    s.report.heartbeat = 4321;
    s.report.status = 1;
    s.report.raw_written = 77;
    s.report.written = (5ull << 32) + 77;
    s.report.info[3] = 60000;
    s.report.info[10] = 9;
    s.report.info_valid = 1u << 3 | 1u << 10;
    s.report.mailbox = 0xa5000003u;
    s.report.notice_ack = 0xa5000002u;
    s.report.heartbeats_seen = 999;      /* host side: not saved */
    s.report.last_heartbeat_ns = 12345;  /* host side: not saved */
    return s;
}

static void test_round_trip(void **state)
{
    (void)state;
    proc_state_t s = sample(), back;
    uint8_t buf[PROC_STATE_BYTES];
    size_t len = 0;
    assert_int_equal(proc_state_encode(&s, buf, sizeof buf - 1, &len), -ENOSPC);
    assert_int_equal(proc_state_encode(&s, buf, sizeof buf, &len), 0);
    assert_int_equal(len, PROC_STATE_BYTES);
    char err[200];
    assert_int_equal(proc_state_decode(buf, len, &back, err, sizeof err), 0);
    assert_int_equal(back.memory_bytes, s.memory_bytes);
    assert_int_equal(back.vcpus, 2);
    assert_true(back.started);
    assert_int_equal(back.base, s.base);
    assert_int_equal(back.clock_ns, s.clock_ns);
    assert_int_equal(back.report.heartbeat, 4321);
    assert_int_equal(back.report.written, s.report.written);
    assert_int_equal(back.report.raw_written, 77);
    assert_int_equal(back.report.info[3], 60000);
    assert_int_equal(back.report.info_valid, s.report.info_valid);
    assert_int_equal(back.report.mailbox, 0xa5000003u);
    assert_int_equal(back.report.notice_ack, 0xa5000002u);
    assert_int_equal(back.report.heartbeats_seen, 0);
    assert_int_equal(back.report.last_heartbeat_ns, 0);
    s.started = false;
    assert_int_equal(proc_state_encode(&s, buf, sizeof buf, &len), 0);
    assert_int_equal(proc_state_decode(buf, len, &back, err, sizeof err), 0);
    assert_false(back.started);
}

static void expect_refused(const uint8_t *buf, size_t len, const char *needle)
{
    proc_state_t out;
    char err[200] = "";
    assert_int_equal(proc_state_decode(buf, len, &out, err, sizeof err), -EINVAL);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_each_field_is_checked(void **state)
{
    (void)state;
    uint8_t good[PROC_STATE_BYTES], b[PROC_STATE_BYTES + 8];
    size_t len;
    proc_state_t s = sample();
    assert_int_equal(proc_state_encode(&s, good, sizeof good, &len), 0);
#define MUTATE(offset, type, value, needle)         \
    do {                                            \
        memcpy(b, good, sizeof good);               \
        type v_ = (value);                          \
        memcpy(b + (offset), &v_, sizeof v_);       \
        expect_refused(b, sizeof good, needle);     \
    } while (0)
    MUTATE(0, uint32_t, 0x534d5646u, "bad magic");          /* a KVM state */
    MUTATE(4, uint16_t, 0, "version 0");
    MUTATE(4, uint16_t, 3, "version 3");
    MUTATE(4, uint16_t, 1, "version 1 is");  /* a version 2 length */
    MUTATE(6, uint16_t, 1, "reserved");
    MUTATE(8, uint32_t, PROC_STATE_BYTES + 8, "header says");
    MUTATE(12, uint32_t, 1, "reserved");
    MUTATE(16, uint64_t, (64ull << 20) + 4096, "memory");
    MUTATE(16, uint64_t, 16ull << 20, "memory");
    MUTATE(16, uint64_t, 128ull << 30, "memory");
    MUTATE(24, uint32_t, 0, "0 vCPUs");
    MUTATE(24, uint32_t, 65, "65 vCPUs");
    MUTATE(28, uint32_t, 2, "flags");
    MUTATE(32, uint64_t, 0x7f0000000000ull, "base");
    MUTATE(32, uint64_t, 4096, "base");
    MUTATE(40, uint64_t, UINT64_MAX, "clock");
    /* report: info_valid is the 23rd u32/u64 field, after 6*4 + 4*8 + 16*8 */
    MUTATE(48 + 24 + 32 + 128, uint32_t, 1u << 16, "info mask");
#undef MUTATE
    /* Longer input with a matching header is refused too. */
    memcpy(b, good, sizeof good);
    memset(b + sizeof good, 0, 8);
    uint32_t longer = PROC_STATE_BYTES + 8;
    memcpy(b + 8, &longer, 4);
    expect_refused(b, sizeof good + 8, "version 2 is");
}

/* A version 1 state (saved before NOTICE_ACK existed) still restores: the
 * same bytes less the last register, with NOTICE_ACK coming out 0. */
static void test_version_1_still_decodes(void **state)
{
    (void)state;
    proc_state_t s = sample(), back;
    uint8_t buf[PROC_STATE_BYTES];
    size_t len;
    assert_int_equal(proc_state_encode(&s, buf, sizeof buf, &len), 0);
    uint16_t v1 = 1;
    uint32_t v1_bytes = PROC_STATE_V1_BYTES;
    memcpy(buf + 4, &v1, 2);
    memcpy(buf + 8, &v1_bytes, 4);
    char err[200];
    assert_int_equal(proc_state_decode(buf, PROC_STATE_V1_BYTES, &back, err, sizeof err), 0);
    assert_int_equal(back.report.heartbeat, 4321);
    assert_int_equal(back.report.info_valid, s.report.info_valid);
    assert_int_equal(back.report.mailbox, 0xa5000003u);
    assert_int_equal(back.report.notice_ack, 0);
    /* ...and is written back as version 2. */
    assert_int_equal(proc_state_encode(&back, buf, sizeof buf, &len), 0);
    assert_int_equal(len, PROC_STATE_BYTES);
    uint16_t version;
    memcpy(&version, buf + 4, 2);
    assert_int_equal(version, PROC_STATE_VERSION);
    /* A version 1 header on a version 2 length, and the reverse, are refused. */
    memcpy(buf + 4, &v1, 2);
    expect_refused(buf, PROC_STATE_BYTES, "header says");
    memcpy(buf + 4, &version, 2);
    memcpy(buf + 8, &v1_bytes, 4);
    expect_refused(buf, PROC_STATE_V1_BYTES, "version 2 is");
}

static void test_truncated_input(void **state)
{
    (void)state;
    uint8_t good[PROC_STATE_BYTES];
    size_t len;
    proc_state_t s = sample();
    assert_int_equal(proc_state_encode(&s, good, sizeof good, &len), 0);
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n ? n : 1);  /* exact size: ASan sees any overread */
        memcpy(copy, good, n);
        proc_state_t out;
        char err[200] = "";
        assert_int_equal(proc_state_decode(copy, n, &out, err, sizeof err), -EINVAL);
        assert_true(err[0] != '\0');
        free(copy);
    }
}

/* Every single-bit flip either decodes (a field that takes any value) or is
 * refused with a reason; random inputs of every length are refused. */
static void test_corrupted_and_random_input(void **state)
{
    (void)state;
    uint8_t good[PROC_STATE_BYTES], b[PROC_STATE_BYTES];
    size_t len;
    proc_state_t s = sample(), out;
    assert_int_equal(proc_state_encode(&s, good, sizeof good, &len), 0);
    char err[200];
    unsigned refused = 0;
    for (size_t bit = 0; bit < len * 8; bit++) {
        memcpy(b, good, len);
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        err[0] = '\0';
        int rc = proc_state_decode(b, len, &out, err, sizeof err);
        assert_true(rc == 0 || (rc == -EINVAL && err[0]));
        refused += rc != 0;
    }
    assert_true(refused >= 16 * 8);  /* every header bit, at least */
    rng_t r;
    rng_seed(&r, 7);
    for (unsigned i = 0; i < 2000; i++) {
        size_t n = (size_t)rng_below(&r, PROC_STATE_BYTES + 64);
        uint8_t *junk = malloc(n ? n : 1);
        for (size_t k = 0; k < n; k++)
            junk[k] = (uint8_t)rng_next(&r);
        assert_int_equal(proc_state_decode(junk, n, &out, err, sizeof err), -EINVAL);
        free(junk);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_each_field_is_checked),
        cmocka_unit_test(test_version_1_still_decodes),
        cmocka_unit_test(test_truncated_input),
        cmocka_unit_test(test_corrupted_and_random_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
