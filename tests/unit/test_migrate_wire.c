/* test_migrate_wire.c - the migration protocol's codec: round trips, then
 * truncated, corrupted and random input (never a crash, always a reason). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/rng.h"
#include "migration/migrate_wire.h"

static migration_describe_t sample_live(void)
{
    migration_describe_t d = { .kind = MIGRATION_KIND_LIVE, .flags = MIGRATION_FLAG_VERIFY,
                               .memory_bytes = 256ull << 20, .vcpus = 2 };
    strcpy(d.name, "web-01");
    strcpy(d.cmdline, "profile=web hot=8M rate=4M");
    return d;
}

static migration_describe_t sample_cold(void)
{
    migration_describe_t d = sample_live();
    d.kind = MIGRATION_KIND_COLD;
    d.state_bytes = 12345;
    for (int i = 0; i < MIGRATION_HASH_BYTES; i++)
        d.image_id[i] = (uint8_t)(i * 7 + 1);
    return d;
}

static void test_describe_round_trip(void **state)
{
    (void)state;
    migration_describe_t in[2] = { sample_live(), sample_cold() };
    for (int k = 0; k < 2; k++) {
        uint8_t buf[MIGRATION_DESCRIBE_MAX];
        size_t len = migration_describe_encode(&in[k], buf, sizeof buf);
        assert_int_equal(len, MIGRATION_DESCRIBE_FIXED + strlen(in[k].name) + strlen(in[k].cmdline));
        migration_describe_t out;
        const char *why = NULL;
        assert_int_equal(migration_describe_decode(buf, len, &out, &why), 0);
        assert_int_equal(out.kind, in[k].kind);
        assert_int_equal(out.flags, in[k].flags);
        assert_int_equal(out.memory_bytes, in[k].memory_bytes);
        assert_int_equal(out.vcpus, in[k].vcpus);
        assert_string_equal(out.name, in[k].name);
        assert_string_equal(out.cmdline, in[k].cmdline);
        assert_int_equal(out.state_bytes, in[k].state_bytes);
        assert_memory_equal(out.image_id, in[k].image_id, MIGRATION_HASH_BYTES);
        /* Every truncation fails with a reason. */
        for (size_t cut = 0; cut < len; cut++) {
            why = NULL;
            assert_int_equal(migration_describe_decode(buf, cut, &out, &why), -EINVAL);
            assert_non_null(why);
        }
    }
}

/* Each field out of range is refused, with a reason that names it. */
typedef struct {
    size_t at;          /* byte offset to overwrite */
    size_t len;         /* 1, 2, 4 or 8 */
    uint64_t value;
    const char *why;    /* a word the reason must contain */
} patch_t;

static void put_le(uint8_t *p, size_t len, uint64_t v)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void test_describe_rejects_bad_fields(void **state)
{
    (void)state;
    const patch_t live[] = {
        { 0, 1, 'X', "magic" },
        { 4, 1, 9, "version" },
        { 5, 1, 3, "kind" },
        { 6, 2, 0x8000, "flags" },
        { 8, 8, 16ull << 20, "memory" },            /* below the VM minimum */
        { 8, 8, (256ull << 20) + 4096, "memory" },  /* not a whole MiB */
        { 8, 8, 128ull << 30, "memory" },           /* above the maximum */
        { 16, 4, 0, "vCPU" },
        { 16, 4, 65, "vCPU" },
        { 20, 2, 0, "length" },                      /* name length no longer matches */
        { 24, 8, 5, "live" },                        /* a live migration with a state size */
        { 40, 1, 1, "live" },                        /* ... or an image id */
        { 64, 1, ' ', "name" },                      /* a space in the name */
        { 65, 1, 0, "name" },                        /* a NUL in the name (found by fuzzing) */
        { 70, 1, '\n', "command line" },             /* a control byte in the cmdline */
    };
    migration_describe_t d = sample_live();
    uint8_t good[MIGRATION_DESCRIBE_MAX];
    size_t len = migration_describe_encode(&d, good, sizeof good);
    for (size_t i = 0; i < sizeof live / sizeof live[0]; i++) {
        uint8_t buf[MIGRATION_DESCRIBE_MAX];
        memcpy(buf, good, len);
        put_le(buf + live[i].at, live[i].len, live[i].value);
        migration_describe_t out;
        const char *why = NULL;
        assert_int_equal(migration_describe_decode(buf, len, &out, &why), -EINVAL);
        if (!why || !strstr(why, live[i].why))
            fail_msg("case %zu: reason '%s' does not mention '%s'", i, why ? why : "(none)",
                     live[i].why);
    }
    /* Cold: the state size must be there and bounded. */
    d = sample_cold();
    len = migration_describe_encode(&d, good, sizeof good);
    const patch_t cold[] = {
        { 24, 8, 0, "state" },
        { 24, 8, VM_STATE_MAX_BYTES + 1, "state" },
    };
    for (size_t i = 0; i < 2; i++) {
        uint8_t buf[MIGRATION_DESCRIBE_MAX];
        memcpy(buf, good, len);
        put_le(buf + cold[i].at, cold[i].len, cold[i].value);
        migration_describe_t out;
        const char *why = NULL;
        assert_int_equal(migration_describe_decode(buf, len, &out, &why), -EINVAL);
        assert_non_null(strstr(why, cold[i].why));
    }
    /* The encoder refuses what the decoder would. */
    d = sample_live();
    d.vcpus = 0;
    assert_int_equal(migration_describe_encode(&d, good, sizeof good), 0);
    d = sample_live();
    assert_int_equal(migration_describe_encode(&d, good, 10), 0);
}

static void test_state_pieces_assemble_in_order(void **state)
{
    (void)state;
    uint8_t *blob = malloc(100000), *buf = malloc(VM_STATE_MAX_BYTES);
    rng_t rng;
    rng_seed(&rng, 5);
    for (int i = 0; i < 100000; i++)
        blob[i] = (uint8_t)rng_next(&rng);
    migration_state_assembly_t a = { .buf = buf };
    uint8_t piece[MIGRATION_STATE_PIECE_HEADER + MIGRATION_STATE_PIECE_MAX];
    const char *why = NULL;
    for (uint32_t at = 0; at < 100000; at += MIGRATION_STATE_PIECE_MAX) {
        size_t n = 100000 - at < MIGRATION_STATE_PIECE_MAX ? 100000 - at : MIGRATION_STATE_PIECE_MAX;
        size_t len = migration_state_piece_encode(100000, at, blob + at, n, piece, sizeof piece);
        assert_int_equal(len, MIGRATION_STATE_PIECE_HEADER + n);
        assert_false(migration_state_complete(&a));
        assert_int_equal(migration_state_piece_apply(&a, piece, len, &why), 0);
    }
    assert_true(migration_state_complete(&a));
    assert_memory_equal(buf, blob, 100000);

    /* Out of order, inconsistent totals, overruns, empty pieces. */
    migration_state_assembly_t b = { .buf = buf };
    size_t len = migration_state_piece_encode(100000, 10, blob, 10, piece, sizeof piece);
    assert_int_equal(migration_state_piece_apply(&b, piece, len, &why), -EINVAL);
    assert_non_null(strstr(why, "order"));
    len = migration_state_piece_encode(100000, 0, blob, 10, piece, sizeof piece);
    assert_int_equal(migration_state_piece_apply(&b, piece, len, &why), 0);
    len = migration_state_piece_encode(99999, 10, blob, 10, piece, sizeof piece);
    assert_int_equal(migration_state_piece_apply(&b, piece, len, &why), -EINVAL);
    assert_non_null(strstr(why, "disagree"));
    put_le(piece, 4, 100000);
    put_le(piece + 4, 4, 10);
    assert_int_equal(migration_state_piece_apply(&b, piece, 8, &why), -EINVAL);
    put_le(piece, 4, 15);   /* total 15, offset 10, 10 bytes: runs past */
    assert_int_equal(migration_state_piece_apply(&b, piece, 18, &why), -EINVAL);
    put_le(piece, 4, VM_STATE_MAX_BYTES + 1);
    assert_int_equal(migration_state_piece_apply(&b, piece, 18, &why), -EINVAL);
    assert_int_equal(migration_state_piece_encode(10, 5, blob, 10, piece, sizeof piece), 0);
    free(blob);
    free(buf);
}

static void test_small_messages(void **state)
{
    (void)state;
    const char *why = NULL;
    uint8_t buf[MIGRATION_OUTCOME_MAX + 8];
    uint32_t pass;
    uint64_t pages, value;
    migration_pass_end_encode(3, 777, buf);
    assert_int_equal(migration_pass_end_decode(buf, MIGRATION_PASS_END_SIZE, &pass, &pages, &why), 0);
    assert_int_equal(pass, 3);
    assert_int_equal(pages, 777);
    assert_int_equal(migration_pass_end_decode(buf, 15, &pass, &pages, &why), -EINVAL);
    buf[5] = 1;
    assert_int_equal(migration_pass_end_decode(buf, 16, &pass, &pages, &why), -EINVAL);
    migration_pass_end_encode(0, 1, buf);
    assert_int_equal(migration_pass_end_decode(buf, 16, &pass, &pages, &why), -EINVAL);

    bool committed;
    char reason[MIGRATION_REASON_MAX + 1];
    size_t len = migration_outcome_encode(false, "commit failed: no quorum", buf, sizeof buf);
    assert_int_equal(migration_outcome_decode(buf, len, &committed, reason, &why), 0);
    assert_false(committed);
    assert_string_equal(reason, "commit failed: no quorum");
    len = migration_outcome_encode(true, NULL, buf, sizeof buf);
    assert_int_equal(len, 8);
    assert_int_equal(migration_outcome_decode(buf, len, &committed, reason, &why), 0);
    assert_true(committed);
    assert_string_equal(reason, "");
    buf[0] = 2;
    assert_int_equal(migration_outcome_decode(buf, len, &committed, reason, &why), -EINVAL);
    assert_int_equal(migration_outcome_decode(buf, 7, &committed, reason, &why), -EINVAL);
    assert_int_equal(migration_outcome_decode(buf, MIGRATION_OUTCOME_MAX + 1, &committed, reason,
                                              &why), -EINVAL);
    /* A hostile reason comes out printable. */
    len = migration_outcome_encode(false, "a\x1b[2Jb", buf, sizeof buf);
    assert_int_equal(migration_outcome_decode(buf, len, &committed, reason, &why), 0);
    assert_string_equal(reason, "a?[2Jb");

    migration_u64_encode(42, buf);
    assert_int_equal(migration_u64_decode(buf, 8, &value, &why), 0);
    assert_int_equal(value, 42);
    assert_int_equal(migration_u64_decode(buf, 9, &value, &why), -EINVAL);

    uint8_t hash[MIGRATION_HASH_BYTES], got[MIGRATION_HASH_BYTES];
    memset(hash, 0xab, sizeof hash);
    bool hashed;
    migration_verified_encode(true, hash, buf);
    assert_int_equal(migration_verified_decode(buf, MIGRATION_VERIFIED_SIZE, &hashed, got, &why), 0);
    assert_true(hashed);
    assert_memory_equal(got, hash, sizeof hash);
    migration_verified_encode(false, hash, buf);
    assert_int_equal(migration_verified_decode(buf, MIGRATION_VERIFIED_SIZE, &hashed, got, &why), 0);
    assert_false(hashed);
    buf[8] = 1;   /* a hash where none was computed */
    assert_int_equal(migration_verified_decode(buf, MIGRATION_VERIFIED_SIZE, &hashed, got, &why),
                     -EINVAL);
    assert_int_equal(migration_verified_decode(buf, 39, &hashed, got, &why), -EINVAL);
}

/* Random and bit-flipped input: every decoder answers 0 or -EINVAL with a
 * reason, and never reads out of bounds (ASan watches). */
static void test_random_input_never_crashes(void **state)
{
    (void)state;
    rng_t rng;
    rng_seed(&rng, 77);
    uint8_t *buf = malloc(MIGRATION_DESCRIBE_MAX + 64), *sbuf = malloc(VM_STATE_MAX_BYTES);
    migration_describe_t good = sample_cold(), d;
    uint8_t encoded[MIGRATION_DESCRIBE_MAX];
    size_t good_len = migration_describe_encode(&good, encoded, sizeof encoded);
    int accepted = 0;
    for (int i = 0; i < 20000; i++) {
        size_t len;
        if (i % 2) {   /* a valid message with a few flipped bits */
            len = good_len;
            memcpy(buf, encoded, len);
            for (int f = 0; f < 1 + (int)rng_below(&rng, 3); f++)
                buf[rng_below(&rng, len)] ^= (uint8_t)(1u << rng_below(&rng, 8));
        } else {
            len = rng_below(&rng, MIGRATION_DESCRIBE_MAX + 64);
            for (size_t b = 0; b < len; b++)
                buf[b] = (uint8_t)rng_next(&rng);
        }
        const char *why = NULL;
        int rc = migration_describe_decode(buf, len, &d, &why);
        assert_true(rc == 0 || (rc == -EINVAL && why));
        if (rc == 0) {   /* what decodes re-encodes to the same bytes */
            uint8_t again[MIGRATION_DESCRIBE_MAX];
            assert_int_equal(migration_describe_encode(&d, again, sizeof again), len);
            assert_memory_equal(again, buf, len);
            accepted++;
        }
        migration_state_assembly_t a = { .buf = sbuf };
        rc = migration_state_piece_apply(&a, buf, len < 60000 ? len : 60000, &why);
        assert_true(rc == 0 || rc == -EINVAL);
        bool committed, hashed;
        char reason[MIGRATION_REASON_MAX + 1];
        uint8_t hash[MIGRATION_HASH_BYTES];
        uint32_t pass;
        uint64_t pages;
        migration_outcome_decode(buf, len, &committed, reason, &why);
        migration_verified_decode(buf, len, &hashed, hash, &why);
        migration_pass_end_decode(buf, len, &pass, &pages, &why);
    }
    assert_true(accepted > 0);   /* some flips land in harmless places (the cmdline) */
    free(buf);
    free(sbuf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_describe_round_trip),
        cmocka_unit_test(test_describe_rejects_bad_fields),
        cmocka_unit_test(test_state_pieces_assemble_in_order),
        cmocka_unit_test(test_small_messages),
        cmocka_unit_test(test_random_input_never_crashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
