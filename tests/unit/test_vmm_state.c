/* test_vmm_state.c - the saved VM state format: round trip, and a decoder
 * that rejects truncated, corrupted and random input with a reason, without
 * crashing or reading out of bounds (run it under ASan). No KVM needed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/rng.h"
#include "vmm/kvm_state.h"

/* A plausible two-vCPU state. */
static void make_state(kvm_state_t *s)
{
    memset(s, 0, sizeof *s);
    assert_int_equal(kvm_state_alloc(s, 2), 0);
    s->memory_bytes = 256ull << 20;
    s->uart = (uart_regs_t){.lcr = 3, .mcr = 3, .dll = 1};
    s->report.heartbeat = 1234;
    s->report.status = 1;
    s->report.verified = 5000000000ull;
    s->report.raw_verified = (uint32_t)s->report.verified;
    s->report.info[4] = 0x148000;
    s->report.info_valid = 0x7f;
    s->report.mailbox = 0xa6000005u;
    s->report.notice_ack = 0xa5000005u;
    s->clock.clock = 987654321;
    s->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
    s->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
    s->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
    s->ioapic.chip.ioapic.base_address = 0xfec00000;
    for (uint32_t i = 0; i < 2; i++) {
        kvm_vcpu_state_t *v = &s->vcpus[i];
        v->regs.rip = 0x100000 + i;
        v->regs.rsp = 0x14d000;
        v->sregs.cr0 = 0x80000011;
        v->sregs.efer = 0x500;
        v->xsave_bytes = 4096;
        for (uint32_t b = 0; b < 4096; b++)
            v->xsave[b] = (uint8_t)(b * 7 + i);
        v->xcrs.nr_xcrs = 1;
        v->xcrs.xcrs[0].value = 7;
        v->msr_count = 3;
        v->msrs[0] = (struct kvm_msr_entry){.index = 0x10, .data = 123456789};
        v->msrs[1] = (struct kvm_msr_entry){.index = 0x277, .data = 0x0007040600070406ull};
        v->msrs[2] = (struct kvm_msr_entry){.index = 0x6e0, .data = 123999999};
        v->lapic.regs[0x20] = (char)i;
        v->events.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW;
        v->mp_state.mp_state = i ? KVM_MP_STATE_UNINITIALIZED : KVM_MP_STATE_RUNNABLE;
        v->debugregs.dr7 = 0x400;
        v->tsc_khz = 2445402;
    }
}

static uint8_t *encode(const kvm_state_t *s, size_t *len)
{
    size_t need = kvm_state_encoded_size(s);
    uint8_t *buf = malloc(need);
    assert_non_null(buf);
    assert_int_equal(kvm_state_encode(s, buf, need, len), 0);
    assert_int_equal(*len, need);
    return buf;
}

static void test_round_trip(void **state)
{
    (void)state;
    kvm_state_t s, d;
    make_state(&s);
    size_t len;
    uint8_t *buf = encode(&s, &len);
    char err[200];
    assert_int_equal(kvm_state_decode(buf, len, &d, err, sizeof err), 0);
    assert_int_equal(d.memory_bytes, s.memory_bytes);
    assert_int_equal(d.vcpu_count, 2);
    assert_memory_equal(&d.uart, &s.uart, sizeof s.uart);
    assert_int_equal(d.report.heartbeat, 1234);
    assert_int_equal(d.report.verified, 5000000000ull);
    assert_int_equal(d.report.info[4], 0x148000);
    assert_int_equal(d.report.mailbox, 0xa6000005u);
    assert_int_equal(d.report.notice_ack, 0xa5000005u);
    assert_memory_equal(&d.clock, &s.clock, sizeof s.clock);
    assert_memory_equal(&d.ioapic, &s.ioapic, sizeof s.ioapic);
    for (int i = 0; i < 2; i++)
        assert_memory_equal(&d.vcpus[i], &s.vcpus[i], sizeof s.vcpus[i]);
    /* Too small a buffer is refused, not overrun. */
    size_t short_len;
    assert_int_equal(kvm_state_encode(&s, buf, len - 1, &short_len), -ENOSPC);
    kvm_state_free(&d);
    kvm_state_free(&s);
    free(buf);
}

static void test_truncated_at_every_length(void **state)
{
    (void)state;
    kvm_state_t s, d;
    make_state(&s);
    size_t len;
    uint8_t *buf = encode(&s, &len);
    char err[200];
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n ? n : 1);  /* exact size: ASan catches over-reads */
        memcpy(copy, buf, n);
        if (kvm_state_decode(copy, n, &d, err, sizeof err) != -EINVAL)
            fail_msg("a state truncated to %zu of %zu bytes was accepted", n, len);
        assert_null(d.vcpus);
        free(copy);
    }
    kvm_state_free(&s);
    free(buf);
}

static void expect_reject(uint8_t *buf, size_t len, const char *needle)
{
    kvm_state_t d;
    char err[200];
    int rc = kvm_state_decode(buf, len, &d, err, sizeof err);
    if (rc != -EINVAL || !strstr(err, needle))
        fail_msg("rc %d, err '%s', expected '%s'", rc, err, needle);
}

/* Offset of the first record of type t (and index i). */
static size_t find_record(const uint8_t *buf, size_t len, uint16_t t, uint16_t i)
{
    size_t at = 16;
    while (at + 8 <= len) {
        uint16_t type, index;
        uint32_t n;
        memcpy(&type, buf + at, 2);
        memcpy(&index, buf + at + 2, 2);
        memcpy(&n, buf + at + 4, 4);
        if (type == t && index == i)
            return at;
        at += 8 + ((n + 7) & ~7u);
    }
    fail_msg("record %u/%u not found", t, i);
    return 0;
}

static void test_semantic_checks(void **state)
{
    (void)state;
    kvm_state_t s;
    make_state(&s);
    size_t len;
    char err[200];
    (void)err;

    uint8_t *buf = encode(&s, &len);
    buf[0] ^= 1;
    expect_reject(buf, len, "bad magic");
    free(buf);

    buf = encode(&s, &len);
    buf[4] = 9;
    expect_reject(buf, len, "version 9");
    free(buf);

    /* An MSR that ferry does not save (IA32_APIC_BASE is in sregs). */
    s.vcpus[1].msrs[1].index = 0x1b;
    buf = encode(&s, &len);
    expect_reject(buf, len, "MSR 0x1b is not one ferry saves");
    free(buf);
    s.vcpus[1].msrs[1].index = 0x277;

    s.vcpus[0].msrs[2].index = 0x10;
    buf = encode(&s, &len);
    expect_reject(buf, len, "MSR 0x10 twice");
    free(buf);
    s.vcpus[0].msrs[2].index = 0x6e0;

    s.vcpus[0].events.smi.smm = 1;
    buf = encode(&s, &len);
    expect_reject(buf, len, "SMM");
    free(buf);
    s.vcpus[0].events.smi.smm = 0;

    s.vcpus[1].mp_state.mp_state = 77;
    buf = encode(&s, &len);
    expect_reject(buf, len, "mp-state 77");
    free(buf);
    s.vcpus[1].mp_state.mp_state = 0;

    s.vcpus[0].tsc_khz = 3;
    buf = encode(&s, &len);
    expect_reject(buf, len, "implausible");
    free(buf);
    s.vcpus[0].tsc_khz = 2445402;

    s.ioapic.chip_id = KVM_IRQCHIP_PIC_MASTER;
    buf = encode(&s, &len);
    expect_reject(buf, len, "ioapic record holds chip 0");
    free(buf);
    s.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;

    s.memory_bytes = 12345;
    buf = encode(&s, &len);
    expect_reject(buf, len, "not a valid VM size");
    free(buf);
    s.memory_bytes = 256ull << 20;

    /* A record for a vCPU that does not exist. */
    buf = encode(&s, &len);
    size_t at = find_record(buf, len, KVM_REC_LAPIC, 1);
    uint16_t five = 5;
    memcpy(buf + at + 2, &five, 2);
    expect_reject(buf, len, "lapic record for vCPU 5 of 2");
    /* The same record twice. */
    uint16_t zero = 0;
    memcpy(buf + at + 2, &zero, 2);
    expect_reject(buf, len, "repeated lapic record for vCPU 0");
    free(buf);

    /* Drop the last record (vCPU 1's tsc-khz): header patched to match. */
    buf = encode(&s, &len);
    uint16_t count;
    memcpy(&count, buf + 6, 2);
    count--;
    memcpy(buf + 6, &count, 2);
    uint32_t total = (uint32_t)(len - 16);
    memcpy(buf + 8, &total, 4);
    expect_reject(buf, len - 16, "vCPU 1 has no tsc-khz record");
    free(buf);

    /* A length field that points past the end. */
    buf = encode(&s, &len);
    at = find_record(buf, len, KVM_REC_XSAVE, 0);
    uint32_t huge = 0xfffffff0u;
    memcpy(buf + at + 4, &huge, 4);
    expect_reject(buf, len, "overruns");
    free(buf);

    /* Trailing garbage. */
    buf = encode(&s, &len);
    uint8_t *longer = calloc(1, len + 8);
    memcpy(longer, buf, len);
    total = (uint32_t)(len + 8);
    memcpy(longer + 8, &total, 4);
    expect_reject(longer, len + 8, "trailing bytes");
    free(longer);
    free(buf);
    kvm_state_free(&s);
}

/* The same state as version 1 wrote it: no NOTICE_ACK in the devices
 * record (8 bytes shorter with its padding). */
static uint8_t *encode_v1(const kvm_state_t *s, size_t *len)
{
    size_t v2_len;
    uint8_t *buf = encode(s, &v2_len);
    size_t at = find_record(buf, v2_len, KVM_REC_DEVICES, 0);
    uint32_t n;
    memcpy(&n, buf + at + 4, 4);
    assert_int_equal(n, 8 + GUEST_REPORT_ENCODED_BYTES);
    uint32_t v1_n = 8 + GUEST_REPORT_V1_BYTES;
    size_t cut = ((n + 7) & ~7u) - ((v1_n + 7) & ~7u);
    size_t rest = at + 8 + ((n + 7) & ~7u);
    memmove(buf + rest - cut, buf + rest, v2_len - rest);
    memset(buf + at + 8 + v1_n, 0, ((v1_n + 7) & ~7u) - v1_n);
    memcpy(buf + at + 4, &v1_n, 4);
    *len = v2_len - cut;
    uint16_t version = 1;
    uint32_t total = (uint32_t)*len;
    memcpy(buf + 4, &version, 2);
    memcpy(buf + 8, &total, 4);
    return buf;
}

static void test_version_1_still_decodes(void **state)
{
    (void)state;
    kvm_state_t s, d;
    make_state(&s);
    size_t len;
    uint8_t *buf = encode_v1(&s, &len);
    char err[200];
    if (kvm_state_decode(buf, len, &d, err, sizeof err) != 0)
        fail_msg("version 1 state refused: %s", err);
    assert_int_equal(d.report.heartbeat, 1234);
    assert_int_equal(d.report.mailbox, 0xa6000005u);
    assert_int_equal(d.report.notice_ack, 0);
    for (int i = 0; i < 2; i++)
        assert_memory_equal(&d.vcpus[i], &s.vcpus[i], sizeof s.vcpus[i]);
    kvm_state_free(&d);
    /* A version 2 header over a version 1 devices record is refused. */
    uint16_t two = 2;
    memcpy(buf + 4, &two, 2);
    expect_reject(buf, len, "devices record is");
    free(buf);
    /* ...and a version 1 header over a version 2 one. */
    buf = encode(&s, &len);
    uint16_t one = 1;
    memcpy(buf + 4, &one, 2);
    expect_reject(buf, len, "devices record is");
    free(buf);
    kvm_state_free(&s);
}

/* Random flips and random blobs: decode or reject, never crash. */
static void test_corrupted_and_random(void **state)
{
    (void)state;
    kvm_state_t s, d;
    make_state(&s);
    size_t len;
    uint8_t *buf = encode(&s, &len);
    uint8_t *copy = malloc(len);
    rng_t rng;
    rng_seed(&rng, 7);
    char err[200];
    int accepted = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(copy, buf, len);
        int flips = 1 + (int)rng_below(&rng, 4);
        for (int f = 0; f < flips; f++)
            copy[rng_below(&rng, len)] ^= (uint8_t)(1 + rng_below(&rng, 255));
        int rc = kvm_state_decode(copy, len, &d, err, sizeof err);
        assert_true(rc == 0 || rc == -EINVAL);
        if (rc == 0) {
            accepted++;  /* a flip inside a free-form payload (registers...) */
            kvm_state_free(&d);
        } else {
            assert_null(d.vcpus);
            assert_true(strncmp(err, "vm state: ", 10) == 0);
        }
    }
    assert_true(accepted > 0 && accepted < 3000);
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = rng_below(&rng, len);
        for (size_t i = 0; i < n; i++)
            copy[i] = (uint8_t)rng_next(&rng);
        if (n >= 16 && iter % 2) {  /* a valid header over random records */
            memcpy(copy, buf, 8);
            uint32_t total = (uint32_t)n;
            memcpy(copy + 8, &total, 4);
            memset(copy + 12, 0, 4);
        }
        assert_int_equal(kvm_state_decode(copy, n, &d, err, sizeof err), -EINVAL);
    }
    free(copy);
    free(buf);
    kvm_state_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_truncated_at_every_length),
        cmocka_unit_test(test_semantic_checks),
        cmocka_unit_test(test_version_1_still_decodes),
        cmocka_unit_test(test_corrupted_and_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
