/* test_swim_codec.c - the SWIM wire codec and the host-state record:
 * round trips, limits, and truncated, corrupted and random input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "agent/membership/swim_codec.h"
#include "agent/membership/swim_record.h"
#include "common/rng.h"

static swim_record_t sample_record(void)
{
    swim_record_t r = { .cpus = 16, .cpu_mhz = 2600, .mem_bytes = 64ULL << 30,
                        .used_cpu_mhz = 9000, .used_mem_bytes = 20ULL << 30 };
    strcpy(r.agent_version, "0.1.0");
    strcpy(r.raft_addr, "127.0.0.1:7401");
    strcpy(r.control_addr, "127.0.0.1:7400");
    strcpy(r.migration_addr, "127.0.0.1:7403");
    strcpy(r.curve_public_key, "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7");
    assert_int_equal(swim_record_add_iface(&r, "eth0", "10.0.0.5", "management,provisioning"), 0);
    assert_int_equal(swim_record_add_iface(&r, "eth1", "10.1.0.5", "vmotion"), 0);
    assert_int_equal(swim_record_add_device(&r, "gpu0", "gpu", "vendor=10de,model=a100"), 0);
    return r;
}

static void test_record_round_trip(void **state)
{
    swim_record_t in = sample_record(), out;
    uint8_t buf[SWIM_RECORD_MAX];
    size_t len;
    assert_int_equal(swim_record_encode(&in, buf, sizeof(buf), &len), 0);
    assert_int_equal(swim_record_decode(buf, len, &out, NULL, NULL), 0);
    assert_int_equal(out.cpus, 16);
    assert_int_equal(out.mem_bytes, 64ULL << 30);
    assert_int_equal(out.used_cpu_mhz, 9000);
    assert_string_equal(out.raft_addr, "127.0.0.1:7401");
    assert_string_equal(out.curve_public_key, in.curve_public_key);
    assert_int_equal(out.iface_count, 2);
    assert_string_equal(out.ifaces[0].name, "eth0");
    assert_int_equal(out.ifaces[0].service_count, 2);
    assert_true(swim_iface_has_service(&out.ifaces[0], "provisioning"));
    assert_false(swim_iface_has_service(&out.ifaces[0], "vmotion"));
    assert_true(swim_iface_has_service(&out.ifaces[1], "vmotion"));
    assert_int_equal(out.device_count, 1);
    assert_string_equal(out.devices[0].attrs, "vendor=10de,model=a100");
}

static void test_record_limits(void **state)
{
    swim_record_t r = { 0 };
    char name[40];
    for (int i = 0; i < SWIM_RECORD_MAX_IFACES; i++) {
        snprintf(name, sizeof(name), "eth%d", i);
        assert_int_equal(swim_record_add_iface(&r, name, "10.0.0.1", "management"), 0);
    }
    assert_int_equal(swim_record_add_iface(&r, "one-more", "10.0.0.1", NULL), -ENOSPC);
    assert_int_equal(swim_record_add_iface(&(swim_record_t){ 0 }, "an-interface-name-too-long",
                                           "x", NULL), -EINVAL);
    assert_int_equal(swim_record_add_iface(&(swim_record_t){ 0 }, "eth0", "x", "a,b,c,d,e,f,g"),
                     -ENOSPC);
    /* Full device attributes everywhere do not fit in one packet's record. */
    char attrs[SWIM_DEVICE_ATTRS_CAP];
    memset(attrs, 'a', sizeof(attrs) - 1);
    attrs[sizeof(attrs) - 1] = '\0';
    for (int i = 0; i < SWIM_RECORD_MAX_DEVICES; i++) {
        snprintf(name, sizeof(name), "dev%d", i);
        assert_int_equal(swim_record_add_device(&r, name, "gpu", attrs), 0);
    }
    uint8_t buf[SWIM_RECORD_MAX];
    size_t len;
    assert_int_equal(swim_record_encode(&r, buf, sizeof(buf), &len), -EMSGSIZE);
    /* Counts out of range are refused, not read past the arrays. */
    swim_record_t bad = { .iface_count = SWIM_RECORD_MAX_IFACES + 1 };
    assert_int_equal(swim_record_encode(&bad, buf, sizeof(buf), &len), -EINVAL);
}

static void test_record_truncated_and_corrupt(void **state)
{
    swim_record_t in = sample_record(), out;
    uint8_t buf[SWIM_RECORD_MAX];
    size_t len;
    assert_int_equal(swim_record_encode(&in, buf, sizeof(buf), &len), 0);
    for (size_t cut = 0; cut < len; cut++) {
        const char *why = NULL;
        assert_int_equal(swim_record_decode(buf, cut, &out, &why, NULL), -EBADMSG);
        assert_non_null(why);
    }
    rng_t rng;
    rng_seed(&rng, 7);
    for (int i = 0; i < 20000; i++) {
        uint8_t copy[SWIM_RECORD_MAX];
        memcpy(copy, buf, len);
        copy[rng_below(&rng, len)] ^= (uint8_t)(1 + rng_below(&rng, 255));
        int rc = swim_record_decode(copy, len, &out, NULL, NULL);
        assert_true(rc == 0 || rc == -EBADMSG);
        if (rc == 0) {   /* whatever decodes must respect the limits */
            assert_true(out.iface_count <= SWIM_RECORD_MAX_IFACES);
            assert_true(out.device_count <= SWIM_RECORD_MAX_DEVICES);
            assert_true(strlen(out.raft_addr) < sizeof(out.raft_addr));
        }
    }
}

static size_t encode(const swim_msg_t *m, uint8_t *buf, size_t cap)
{
    size_t len = 0;
    assert_int_equal(swim_msg_encode(m, buf, cap, &len), 0);
    return len;
}

/* A packet holding one message of every type. */
static size_t sample_packet(uint8_t *pkt, size_t cap, const uint8_t *record, size_t record_len)
{
    swim_msg_t msgs[] = {
        { .type = SWIM_MSG_PING, .seq = 7, .node = "node-2" },
        { .type = SWIM_MSG_ACK, .seq = 4000000000u },
        { .type = SWIM_MSG_NACK, .seq = 9 },
        { .type = SWIM_MSG_PING_REQ, .seq = 11, .node = "node-3", .addr = "127.0.0.1:7402" },
        { .type = SWIM_MSG_ALIVE, .node = "node-4", .addr = "10.0.0.4:7402",
          .incarnation = 1ULL << 40, .record = record, .record_len = record_len },
        { .type = SWIM_MSG_SUSPECT, .node = "node-5", .incarnation = 3, .from = "node-1" },
        { .type = SWIM_MSG_DEAD, .node = "node-6", .incarnation = 0, .from = "node-6" },
    };
    swim_packet_builder_t b;
    assert_int_equal(swim_packet_begin(&b, pkt, cap, "node-1"), 0);
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        uint8_t buf[2048];
        size_t len = encode(&msgs[i], buf, sizeof(buf));
        assert_true(swim_packet_add(&b, buf, len));
    }
    return swim_packet_len(&b);
}

static void test_packet_round_trip(void **state)
{
    swim_record_t rec = sample_record();
    uint8_t rbuf[SWIM_RECORD_MAX];
    size_t rlen;
    assert_int_equal(swim_record_encode(&rec, rbuf, sizeof(rbuf), &rlen), 0);
    uint8_t pkt[1400];
    size_t len = sample_packet(pkt, sizeof(pkt), rbuf, rlen);
    static swim_packet_t p;
    assert_int_equal(swim_packet_decode(pkt, len, &p, NULL), 0);
    assert_string_equal(p.sender, "node-1");
    assert_int_equal(p.count, 7);
    assert_int_equal(p.msgs[0].type, SWIM_MSG_PING);
    assert_string_equal(p.msgs[0].node, "node-2");
    assert_int_equal(p.msgs[1].seq, 4000000000u);
    assert_int_equal(p.msgs[2].type, SWIM_MSG_NACK);
    assert_string_equal(p.msgs[3].addr, "127.0.0.1:7402");
    assert_int_equal(p.msgs[4].incarnation, 1ULL << 40);
    assert_int_equal(p.msgs[4].record_len, rlen);
    assert_memory_equal(p.msgs[4].record, rbuf, rlen);
    assert_string_equal(p.msgs[5].from, "node-1");
    assert_int_equal(p.msgs[6].type, SWIM_MSG_DEAD);
}

static void test_packet_builder_respects_size(void **state)
{
    uint8_t pkt[100];
    swim_packet_builder_t b;
    assert_int_equal(swim_packet_begin(&b, pkt, sizeof(pkt), "node-1"), 0);
    swim_msg_t m = { .type = SWIM_MSG_SUSPECT, .node = "node-5", .incarnation = 3,
                     .from = "node-1" };
    uint8_t buf[128];
    size_t len = encode(&m, buf, sizeof(buf));
    size_t added = 0;
    while (swim_packet_add(&b, buf, len))
        added++;
    assert_true(added > 0);
    assert_true(swim_packet_len(&b) <= sizeof(pkt));
    assert_true(swim_packet_room(&b) < len);
    static swim_packet_t p;
    assert_int_equal(swim_packet_decode(pkt, swim_packet_len(&b), &p, NULL), 0);
    assert_int_equal(p.count, added);
}

static void test_packet_truncated_and_corrupt(void **state)
{
    uint8_t rbuf[] = { 0x90 };   /* a record is opaque to the packet codec */
    uint8_t pkt[1400];
    size_t len = sample_packet(pkt, sizeof(pkt), rbuf, sizeof(rbuf));
    static swim_packet_t p;
    /* Every cut either fails cleanly or (at a message boundary) decodes fewer messages. */
    for (size_t cut = 0; cut < len; cut++) {
        swim_decode_error_t err = { 0 };
        int rc = swim_packet_decode(pkt, cut, &p, &err);
        if (rc == 0)
            assert_true(p.count < 7);
        else
            assert_non_null(err.what);
        assert_true(err.at <= cut);
    }
    rng_t rng;
    rng_seed(&rng, 11);
    for (int i = 0; i < 50000; i++) {
        uint8_t copy[1400];
        memcpy(copy, pkt, len);
        int flips = 1 + (int)rng_below(&rng, 4);
        for (int f = 0; f < flips; f++)
            copy[rng_below(&rng, len)] = (uint8_t)rng_next(&rng);
        int rc = swim_packet_decode(copy, len, &p, NULL);
        assert_true(rc == 0 || rc == -EBADMSG);
        for (size_t m = 0; rc == 0 && m < p.count; m++) {
            assert_true(strlen(p.msgs[m].node) < SWIM_NAME_CAP);
            assert_true(p.msgs[m].record_len <= SWIM_RECORD_MAX);
            if (p.msgs[m].record_len)
                assert_true(p.msgs[m].record >= copy && p.msgs[m].record + p.msgs[m].record_len
                                                            <= copy + len);
        }
    }
}

static void test_packet_random_bytes(void **state)
{
    rng_t rng;
    rng_seed(&rng, 3);
    static swim_packet_t p;
    uint8_t buf[1400];
    int decoded = 0;
    for (int i = 0; i < 100000; i++) {
        size_t len = rng_below(&rng, sizeof(buf) + 1);
        for (size_t j = 0; j < len; j++)
            buf[j] = (uint8_t)rng_next(&rng);
        if (len > 0 && rng_below(&rng, 2))
            buf[0] = SWIM_PROTOCOL_VERSION;   /* get past the version check often */
        int rc = swim_packet_decode(buf, len, &p, NULL);
        assert_true(rc == 0 || rc == -EBADMSG);
        decoded += rc == 0;
    }
    (void)decoded;
}

static void test_hostile_headers(void **state)
{
    static swim_packet_t p;
    swim_decode_error_t err;
    /* version, sender "a", then an array claiming 2^32-1 elements. */
    const uint8_t huge_array[] = { 0x01, 0xa1, 'a', 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01 };
    assert_int_equal(swim_packet_decode(huge_array, sizeof(huge_array), &p, &err), -EBADMSG);
    assert_string_equal(err.what, "message");
    assert_int_equal(err.at, 3);
    /* A string claiming 4 GiB. */
    const uint8_t huge_str[] = { 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff, 'a' };
    assert_int_equal(swim_packet_decode(huge_str, sizeof(huge_str), &p, &err), -EBADMSG);
    assert_string_equal(err.what, "packet.sender");
    /* A name with a NUL inside. */
    const uint8_t nul_name[] = { 0x01, 0xa3, 'a', 0, 'b' };
    assert_int_equal(swim_packet_decode(nul_name, sizeof(nul_name), &p, &err), -EBADMSG);
    /* Wrong version. */
    const uint8_t v2[] = { 0x02, 0xa1, 'a' };
    assert_int_equal(swim_packet_decode(v2, sizeof(v2), &p, &err), -EBADMSG);
    /* Too many messages: 97 acks. */
    uint8_t many[3 + 97 * 3];
    size_t n = 0;
    many[n++] = 0x01;
    many[n++] = 0xa1;
    many[n++] = 'a';
    for (int i = 0; i < 97; i++) {
        many[n++] = 0x92;
        many[n++] = SWIM_MSG_ACK;
        many[n++] = 0x05;
    }
    assert_int_equal(swim_packet_decode(many, n, &p, &err), -EBADMSG);
    assert_string_equal(err.what, "packet: too many messages");
    assert_int_equal(swim_packet_decode(many, n - 3, &p, &err), 0);
    assert_int_equal(p.count, 96);
    /* Deeply nested unknown message: skipping stops at a depth limit. */
    uint8_t deep[64];
    n = 0;
    deep[n++] = 0x01;
    deep[n++] = 0xa1;
    deep[n++] = 'a';
    deep[n++] = 0x92;
    deep[n++] = 0x63;   /* unknown type 99 */
    while (n < sizeof(deep))
        deep[n++] = 0x91;
    assert_int_equal(swim_packet_decode(deep, n, &p, &err), -EBADMSG);
}

static void test_unknown_message_skipped(void **state)
{
    /* An unknown type with a map and a string inside, then a known ack. */
    const uint8_t pkt[] = { 0x01, 0xa1, 'a',
                            0x93, 0x63, 0x81, 0xa1, 'k', 0x05, 0xa2, 'h', 'i',
                            0x92, SWIM_MSG_ACK, 0x07 };
    static swim_packet_t p;
    assert_int_equal(swim_packet_decode(pkt, sizeof(pkt), &p, NULL), 0);
    assert_int_equal(p.count, 1);
    assert_int_equal(p.msgs[0].seq, 7);
    /* Extra trailing fields on a known message are skipped too. */
    const uint8_t extra[] = { 0x01, 0xa1, 'a', 0x93, SWIM_MSG_NACK, 0x07, 0xc0 };
    assert_int_equal(swim_packet_decode(extra, sizeof(extra), &p, NULL), 0);
    assert_int_equal(p.msgs[0].type, SWIM_MSG_NACK);
}

static size_t sample_pushpull(uint8_t *buf, size_t cap)
{
    wire_writer_t w;
    wire_writer_init(&w, buf, cap);
    swim_pushpull_write_header(&w, "node-1", "127.0.0.1:7402", true, 3);
    const uint8_t rec[] = { 0x90 };
    swim_pp_member_t ms[] = {
        { .name = "node-1", .addr = "127.0.0.1:7402", .state = SWIM_ALIVE, .incarnation = 2,
          .record = rec, .record_len = 1 },
        { .name = "node-2", .addr = "127.0.0.2:7402", .state = SWIM_DEAD, .incarnation = 5 },
        { .name = "node-3", .addr = "127.0.0.3:7402", .state = SWIM_LEFT, .incarnation = 1 },
    };
    for (int i = 0; i < 3; i++)
        swim_pushpull_write_member(&w, &ms[i]);
    assert_false(w.overflow);
    return w.len;
}

/* Reads a whole push-pull payload; returns 0 or -EBADMSG. */
static int read_all(const uint8_t *buf, size_t len, int *members)
{
    swim_pushpull_reader_t pr;
    swim_pp_member_t m;
    if (swim_pushpull_open(&pr, buf, len, NULL) < 0)
        return -EBADMSG;
    int rc;
    while ((rc = swim_pushpull_next(&pr, &m, NULL)) == 1) {
        assert_true(m.state <= SWIM_LEFT);
        assert_true(m.record_len <= SWIM_RECORD_MAX);
        if (members)
            (*members)++;
    }
    return rc;
}

static void test_pushpull_round_trip_and_damage(void **state)
{
    uint8_t buf[512];
    size_t len = sample_pushpull(buf, sizeof(buf));
    swim_pushpull_reader_t pr;
    swim_pp_member_t m;
    assert_int_equal(swim_pushpull_open(&pr, buf, len, NULL), 0);
    assert_string_equal(pr.sender, "node-1");
    assert_true(pr.wants_reply);
    assert_int_equal(pr.count, 3);
    assert_int_equal(swim_pushpull_next(&pr, &m, NULL), 1);
    assert_int_equal(m.record_len, 1);
    assert_int_equal(swim_pushpull_next(&pr, &m, NULL), 1);
    assert_int_equal(m.state, SWIM_DEAD);
    assert_int_equal(m.incarnation, 5);
    assert_int_equal(swim_pushpull_next(&pr, &m, NULL), 1);
    assert_int_equal(m.state, SWIM_LEFT);
    assert_int_equal(swim_pushpull_next(&pr, &m, NULL), 0);

    /* Truncation anywhere is an error, never a short success. */
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(read_all(buf, cut, NULL), -EBADMSG);
    rng_t rng;
    rng_seed(&rng, 5);
    for (int i = 0; i < 20000; i++) {
        uint8_t copy[512];
        memcpy(copy, buf, len);
        copy[rng_below(&rng, len)] = (uint8_t)rng_next(&rng);
        int members = 0;
        int rc = read_all(copy, len, &members);
        assert_true(rc == 0 || rc == -EBADMSG);
        assert_true(members <= 3 || rc < 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_round_trip),
        cmocka_unit_test(test_record_limits),
        cmocka_unit_test(test_record_truncated_and_corrupt),
        cmocka_unit_test(test_packet_round_trip),
        cmocka_unit_test(test_packet_builder_respects_size),
        cmocka_unit_test(test_packet_truncated_and_corrupt),
        cmocka_unit_test(test_packet_random_bytes),
        cmocka_unit_test(test_hostile_headers),
        cmocka_unit_test(test_unknown_message_skipped),
        cmocka_unit_test(test_pushpull_round_trip_and_damage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
