/* test_wire.c - the envelope and control messages: round trips, and
 * rejection of truncated, corrupted, oversized and random input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/rng.h"
#include "common/wire.h"

#include <stdlib.h>
#include <string.h>

static void pack_request(msgpack_sbuffer *buf, const char *command)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    wire_envelope_begin(&pk, WIRE_CONTROL_REQUEST, "tester");
    msgpack_pack_map(&pk, 2);
    wire_pack_kv_str(&pk, "command", command);
    wire_pack_str(&pk, "args");
    msgpack_pack_map(&pk, 3);
    wire_pack_kv_str(&pk, "name", "vm1");
    wire_pack_kv_u64(&pk, "memory", 1ULL << 30);
    wire_pack_kv_bool(&pk, "force", true);
}

static void pack_reply(msgpack_sbuffer *buf, bool ok)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    wire_envelope_begin(&pk, WIRE_CONTROL_REPLY, "agent-1");
    msgpack_pack_map(&pk, ok ? 2 : 3);
    wire_pack_kv_bool(&pk, "ok", ok);
    if (ok) {
        wire_pack_str(&pk, "result");
        msgpack_pack_map(&pk, 1);
        wire_pack_kv_i64(&pk, "delta", -5);
    } else {
        wire_pack_kv_i64(&pk, "code", 3);
        wire_pack_kv_str(&pk, "error", "no such vm");
    }
}

static void request_round_trip(void **state)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    pack_request(&buf, "vm.create");
    wire_envelope_t env;
    char err[256];
    assert_int_equal(wire_envelope_decode(&env, buf.data, buf.size, err, sizeof(err)), 0);
    assert_int_equal(env.version, WIRE_PROTOCOL_VERSION);
    assert_int_equal(env.type, WIRE_CONTROL_REQUEST);
    assert_string_equal(env.sender, "tester");
    wire_control_request_t req;
    assert_int_equal(wire_control_request_decode(&env, &req, err, sizeof(err)), 0);
    assert_string_equal(req.command, "vm.create");
    char name[16];
    uint64_t memory = 0;
    bool force = false;
    assert_int_equal(wire_get_str(req.args, "name", name, sizeof(name), err, sizeof(err)), 0);
    assert_string_equal(name, "vm1");
    assert_int_equal(wire_get_u64(req.args, "memory", &memory, err, sizeof(err)), 0);
    assert_int_equal(memory, 1ULL << 30);
    assert_int_equal(wire_get_bool(req.args, "force", &force, err, sizeof(err)), 0);
    assert_true(force);
    /* Absent and mistyped fields are told apart. */
    assert_int_equal(wire_get_u64(req.args, "vcpus", &memory, err, sizeof(err)), 1);
    assert_int_equal(wire_get_u64(req.args, "name", &memory, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "'name'"));
    /* A string longer than the caller's buffer is an error, not a truncation. */
    char tiny[3];
    assert_int_equal(wire_get_str(req.args, "name", tiny, sizeof(tiny), err, sizeof(err)), -1);
    wire_envelope_release(&env);
    msgpack_sbuffer_destroy(&buf);
}

static void reply_round_trip(void **state)
{
    char err[256];
    for (int ok = 0; ok <= 1; ok++) {
        msgpack_sbuffer buf;
        msgpack_sbuffer_init(&buf);
        pack_reply(&buf, ok);
        wire_envelope_t env;
        assert_int_equal(wire_envelope_decode(&env, buf.data, buf.size, err, sizeof(err)), 0);
        wire_control_reply_t rep;
        assert_int_equal(wire_control_reply_decode(&env, &rep, err, sizeof(err)), 0);
        assert_int_equal(rep.ok, ok);
        if (ok) {
            int64_t delta = 0;
            assert_int_equal(wire_get_i64(rep.result, "delta", &delta, err, sizeof(err)), 0);
            assert_int_equal(delta, -5);
        } else {
            assert_int_equal(rep.code, 3);
            assert_string_equal(rep.error, "no such vm");
        }
        /* A reply is not a request. */
        wire_control_request_t req;
        assert_int_equal(wire_control_request_decode(&env, &req, err, sizeof(err)), -1);
        wire_envelope_release(&env);
        msgpack_sbuffer_destroy(&buf);
    }
}

/* Every strict prefix of a valid message is rejected. */
static void truncated_input_is_rejected(void **state)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    pack_request(&buf, "host.show");
    char err[256];
    for (size_t len = 0; len < buf.size; len++) {
        wire_envelope_t env;
        assert_int_equal(wire_envelope_decode(&env, buf.data, len, err, sizeof(err)), -1);
    }
    msgpack_sbuffer_destroy(&buf);
}

/* Corrupting any single byte must never crash; a decode that still
 * succeeds must yield a well-formed request or a clean decode error. */
static void corrupted_input_never_crashes(void **state)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    pack_request(&buf, "host.show");
    char *copy = malloc(buf.size);
    char err[256];
    for (size_t i = 0; i < buf.size; i++) {
        for (int v = 0; v < 256; v += 7) {
            memcpy(copy, buf.data, buf.size);
            copy[i] = (char)v;
            wire_envelope_t env;
            if (wire_envelope_decode(&env, copy, buf.size, err, sizeof(err)) == 0) {
                wire_control_request_t req;
                (void)wire_control_request_decode(&env, &req, err, sizeof(err));
                wire_envelope_release(&env);
            } else {
                assert_true(err[0] != '\0');
            }
        }
    }
    free(copy);
    msgpack_sbuffer_destroy(&buf);
}

static void random_input_is_rejected(void **state)
{
    rng_t rng;
    rng_seed(&rng, 42);
    uint8_t data[512];
    char err[256];
    int accepted = 0;
    for (int round = 0; round < 20000; round++) {
        size_t len = 1 + rng_below(&rng, sizeof(data));
        for (size_t i = 0; i < len; i++)
            data[i] = (uint8_t)rng_next(&rng);
        wire_envelope_t env;
        if (wire_envelope_decode(&env, data, len, err, sizeof(err)) == 0) {
            accepted++;
            wire_envelope_release(&env);
        }
    }
    /* Random bytes almost never form [1, type, str, body] exactly. */
    assert_true(accepted < 5);
}

static void bounds_are_enforced(void **state)
{
    char err[256];
    wire_envelope_t env;
    msgpack_packer pk;

    /* Nesting deeper than the limit. */
    msgpack_sbuffer deep;
    msgpack_sbuffer_init(&deep);
    msgpack_packer_init(&pk, &deep, msgpack_sbuffer_write);
    wire_envelope_begin(&pk, WIRE_CONTROL_REQUEST, "x");
    for (int i = 0; i < WIRE_MAX_DEPTH + 2; i++)
        msgpack_pack_array(&pk, 1);
    msgpack_pack_nil(&pk);
    assert_int_equal(wire_envelope_decode(&env, deep.data, deep.size, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "nesting"));
    msgpack_sbuffer_destroy(&deep);

    /* An array header claiming more elements than the limit (and than the bytes). */
    const uint8_t huge_array[] = { 0x94, 0x01, 0x01, 0xa1, 'x', 0xdd, 0x7f, 0xff, 0xff, 0xff };
    assert_int_equal(wire_envelope_decode(&env, huge_array, sizeof(huge_array), err, sizeof(err)), -1);

    /* A sender id that is too long. */
    msgpack_sbuffer longname;
    msgpack_sbuffer_init(&longname);
    msgpack_packer_init(&pk, &longname, msgpack_sbuffer_write);
    char name[WIRE_MAX_SENDER + 10];
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    wire_envelope_begin(&pk, WIRE_CONTROL_REQUEST, name);
    msgpack_pack_nil(&pk);
    assert_int_equal(wire_envelope_decode(&env, longname.data, longname.size, err, sizeof(err)), -1);
    msgpack_sbuffer_destroy(&longname);

    /* Unknown message type, wrong version, trailing bytes, extension types. */
    const uint8_t unknown_type[] = { 0x94, 0x01, 0x7f, 0xa1, 'x', 0xc0 };
    const uint8_t wrong_version[] = { 0x94, 0x09, 0x01, 0xa1, 'x', 0xc0 };
    const uint8_t trailing[] = { 0x94, 0x01, 0x01, 0xa1, 'x', 0xc0, 0x00 };
    const uint8_t ext[] = { 0x94, 0x01, 0x01, 0xa1, 'x', 0xd4, 0x01, 0x00 };
    assert_int_equal(wire_envelope_decode(&env, unknown_type, sizeof(unknown_type), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "type"));
    assert_int_equal(wire_envelope_decode(&env, wrong_version, sizeof(wrong_version), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "version"));
    assert_int_equal(wire_envelope_decode(&env, trailing, sizeof(trailing), err, sizeof(err)), -1);
    assert_int_equal(wire_envelope_decode(&env, ext, sizeof(ext), err, sizeof(err)), -1);
    /* Oversized frame. */
    assert_int_equal(wire_envelope_decode(&env, unknown_type, WIRE_MAX_FRAME + 1, err, sizeof(err)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_round_trip),
        cmocka_unit_test(reply_round_trip),
        cmocka_unit_test(truncated_input_is_rejected),
        cmocka_unit_test(corrupted_input_never_crashes),
        cmocka_unit_test(random_input_is_rejected),
        cmocka_unit_test(bounds_are_enforced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
