/* test_raft_codec.c - the Raft wire codec: round trips, and truncated,
 * corrupted, random and hostile input that must be refused, never crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/rng.h"
#include "consensus/raft.h"
#include "consensus/raft_codec.h"

static const uint8_t payload_a[] = "first entry";
static const uint8_t payload_b[] = { 0, 1, 2, 3, 255 };

static raft_entry_t sample_entries[3] = {
    { .term = 5, .index = 11, .type = RAFT_ENTRY_NORMAL, .data = payload_a, .len = sizeof(payload_a) },
    { .term = 5, .index = 12, .type = RAFT_ENTRY_NOOP },
    { .term = 6, .index = 13, .type = RAFT_ENTRY_CONFIG, .data = payload_b, .len = sizeof(payload_b) },
};

static raft_snapshot_t sample_snapshot = {
    .index = 1ULL << 40, .term = 77,
    .conf = { .n_voters = 2, .voters = { 1, UINT64_MAX }, .n_learners = 1, .learners = { 9 } },
    .data = payload_a, .len = sizeof(payload_a),
};

static raft_msg_t sample(int type)
{
    raft_msg_t m = { .type = (uint8_t)type, .from = 0x1122334455667788ULL, .to = 2, .term = 1000,
                     .log_term = 999, .index = 123456789, .commit = 42, .reject = type % 2,
                     .force = type == RAFT_MSG_VOTE, .hint_index = 7, .hint_term = 3, .context = UINT64_MAX };
    if (type == RAFT_MSG_APPEND) {
        m.entries = sample_entries;
        m.n_entries = 3;
    }
    if (type == RAFT_MSG_SNAPSHOT)
        m.snapshot = &sample_snapshot;
    return m;
}

static void assert_same(const raft_msg_t *a, const raft_msg_t *b)
{
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->from, b->from);
    assert_int_equal(a->to, b->to);
    assert_int_equal(a->term, b->term);
    assert_int_equal(a->log_term, b->log_term);
    assert_int_equal(a->index, b->index);
    assert_int_equal(a->commit, b->commit);
    assert_int_equal(a->reject, b->reject);
    assert_int_equal(a->force, b->force);
    assert_int_equal(a->hint_index, b->hint_index);
    assert_int_equal(a->hint_term, b->hint_term);
    assert_int_equal(a->context, b->context);
    assert_int_equal(a->n_entries, b->n_entries);
    for (size_t i = 0; i < a->n_entries; i++) {
        assert_int_equal(a->entries[i].term, b->entries[i].term);
        assert_int_equal(a->entries[i].index, b->entries[i].index);
        assert_int_equal(a->entries[i].type, b->entries[i].type);
        assert_int_equal(a->entries[i].len, b->entries[i].len);
        if (a->entries[i].len)
            assert_memory_equal(a->entries[i].data, b->entries[i].data, a->entries[i].len);
    }
    assert_int_equal(a->snapshot == NULL, b->snapshot == NULL);
    if (a->snapshot) {
        const raft_snapshot_t *x = a->snapshot, *y = b->snapshot;
        assert_int_equal(x->index, y->index);
        assert_int_equal(x->term, y->term);
        assert_int_equal(x->conf.n_voters, y->conf.n_voters);
        assert_int_equal(x->conf.n_learners, y->conf.n_learners);
        assert_memory_equal(x->conf.voters, y->conf.voters, x->conf.n_voters * 8);
        assert_memory_equal(x->conf.learners, y->conf.learners, x->conf.n_learners * 8);
        assert_int_equal(x->len, y->len);
        assert_memory_equal(x->data, y->data, x->len);
    }
}

static void test_every_type_round_trips(void **state)
{
    for (int type = 1; type < RAFT_MSG_TYPE_MAX; type++) {
        raft_msg_t m = sample(type), back;
        uint8_t *buf;
        size_t len;
        assert_int_equal(raft_msg_encode(&m, &buf, &len), 0);
        assert_int_equal(raft_msg_decode(buf, len, &back, NULL), 0);
        assert_same(&m, &back);
        raft_msg_release(&back);
        free(buf);
    }
}

static void test_truncated_input_is_refused(void **state)
{
    raft_msg_t m = sample(RAFT_MSG_SNAPSHOT);
    m.entries = sample_entries;   /* the codec carries both; the core refuses the mix */
    m.n_entries = 3;
    uint8_t *buf;
    size_t len;
    assert_int_equal(raft_msg_encode(&m, &buf, &len), 0);
    for (size_t cut = 0; cut < len; cut++) {
        raft_msg_t out;
        raft_decode_error_t err;
        assert_int_equal(raft_msg_decode(buf, cut, &out, &err), RAFT_ERR_DECODE);
        assert_true(err.what[0] != '\0');
        assert_true(err.offset <= cut);
        assert_null(out.entries);
        assert_null(out.snapshot);
    }
    raft_msg_t out;
    raft_decode_error_t err;
    assert_int_equal(raft_msg_decode(NULL, 10, &out, &err), RAFT_ERR_DECODE);
    free(buf);
}

/* Every single-byte corruption either decodes to something that encodes
 * back to the same bytes, or is refused with a reason. */
static void test_corrupted_bytes_never_crash(void **state)
{
    raft_msg_t m = sample(RAFT_MSG_APPEND);
    uint8_t *buf;
    size_t len;
    assert_int_equal(raft_msg_encode(&m, &buf, &len), 0);
    uint8_t *copy = malloc(len);
    int refused = 0;
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, buf, len);
            copy[i] ^= (uint8_t)(1u << bit);
            raft_msg_t out;
            raft_decode_error_t err;
            if (raft_msg_decode(copy, len, &out, &err) != 0) {
                assert_true(err.what[0] != '\0');
                refused++;
                continue;
            }
            uint8_t *again;
            size_t again_len;
            assert_int_equal(raft_msg_encode(&out, &again, &again_len), 0);
            raft_msg_t twice;
            assert_int_equal(raft_msg_decode(again, again_len, &twice, NULL), 0);
            assert_same(&out, &twice);
            raft_msg_release(&twice);
            raft_msg_release(&out);
            free(again);
        }
    }
    assert_true(refused > 0);
    free(copy);
    free(buf);
}

static void test_random_bytes_are_refused(void **state)
{
    rng_t rng;
    rng_seed(&rng, 1234);
    uint8_t buf[256];
    for (int round = 0; round < 20000; round++) {
        size_t len = rng_below(&rng, sizeof(buf));
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rng_next(&rng);
        if (round % 2)
            buf[0] = 0x9e;   /* a 14-element array, to get past the first check */
        raft_msg_t out;
        if (raft_msg_decode(buf, len, &out, NULL) == 0)
            raft_msg_release(&out);
    }
}

/* Hand-made hostile headers: huge counts and lengths with nothing behind
 * them must be refused before anything is allocated for them. */
static void test_hostile_lengths_are_bounded(void **state)
{
    static const uint8_t prefix[] = { 0x9e, 1, RAFT_MSG_APPEND, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0 };
    struct {
        uint8_t tail[16];
        size_t len;
        const char *want;
    } cases[] = {
        { { 0xdd, 0xff, 0xff, 0xff, 0xff }, 5, "limit" },                     /* 4G entries */
        { { 0xdc, 0x0f, 0xff }, 3, "bytes left" },                            /* 4095 entries, no bytes */
        { { 0x91, 0x94, 1, 1, 0, 0xc6, 0xff, 0xff, 0xff, 0xff }, 10, "limit" },  /* 4 GiB payload */
        { { 0x91, 0x94, 1, 1, 0, 0xc6, 0, 0, 1, 0 }, 10, "left" },           /* 256 B payload, none there */
        { { 0x91, 0x94, 1, 1, 9, 0xc4, 0 }, 7, "entry type" },
        { { 0x90, 0x95, 1, 1, 0xdc, 0, 0x21 }, 7, "limit" },                  /* 33 voters */
        { { 0x90, 0xc0, 0xc0 }, 3, "trailing" },
        { { 0x90, 0xa1, 'x' }, 3, "snapshot" },
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        uint8_t buf[64];
        memcpy(buf, prefix, sizeof(prefix));
        memcpy(buf + sizeof(prefix), cases[c].tail, cases[c].len);
        raft_msg_t out;
        raft_decode_error_t err;
        assert_int_equal(raft_msg_decode(buf, sizeof(prefix) + cases[c].len, &out, &err), RAFT_ERR_DECODE);
        if (!strstr(err.what, cases[c].want))
            fail_msg("case %zu: error '%s' does not mention '%s'", c, err.what, cases[c].want);
    }
    /* Version, type and flags are checked. */
    uint8_t bad[] = { 0x9e, 2, 1, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0x90, 0xc0 };
    raft_msg_t out;
    raft_decode_error_t err;
    assert_int_equal(raft_msg_decode(bad, sizeof(bad), &out, &err), RAFT_ERR_DECODE);
    assert_non_null(strstr(err.what, "version"));
    bad[1] = 1;
    bad[2] = RAFT_MSG_TYPE_MAX;
    assert_int_equal(raft_msg_decode(bad, sizeof(bad), &out, &err), RAFT_ERR_DECODE);
    assert_non_null(strstr(err.what, "type"));
    bad[2] = 1;
    bad[9] = 4;
    assert_int_equal(raft_msg_decode(bad, sizeof(bad), &out, &err), RAFT_ERR_DECODE);
    assert_non_null(strstr(err.what, "flags"));
    bad[9] = 3;
    assert_int_equal(raft_msg_decode(bad, sizeof(bad), &out, &err), 0);
    assert_true(out.reject && out.force);
    raft_msg_release(&out);
}

static void test_encoder_refuses_what_decoder_would(void **state)
{
    raft_msg_t m = sample(RAFT_MSG_APPEND);
    uint8_t *buf;
    size_t len;
    m.n_entries = RAFT_MAX_MSG_ENTRIES + 1;
    assert_int_equal(raft_msg_encode(&m, &buf, &len), RAFT_ERR_TOO_BIG);
    m = sample(RAFT_MSG_APPEND);
    raft_entry_t big = { .term = 1, .index = 1, .data = payload_a, .len = RAFT_MAX_ENTRY_BYTES + 1 };
    m.entries = &big;
    m.n_entries = 1;
    assert_int_equal(raft_msg_encode(&m, &buf, &len), RAFT_ERR_TOO_BIG);
    m.type = 0;
    assert_int_equal(raft_msg_encode(&m, &buf, &len), RAFT_ERR_INVALID);
    assert_null(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type_round_trips),
        cmocka_unit_test(test_truncated_input_is_refused),
        cmocka_unit_test(test_corrupted_bytes_never_crash),
        cmocka_unit_test(test_random_bytes_are_refused),
        cmocka_unit_test(test_hostile_lengths_are_bounded),
        cmocka_unit_test(test_encoder_refuses_what_decoder_would),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
