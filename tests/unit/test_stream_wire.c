/* test_stream_wire.c - the migration stream's codec: round trips, and
 * truncated, corrupted and random input that must be refused cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/rng.h"
#include "migration/stream_wire.h"

static stream_hello_t sample_hello(void)
{
    stream_hello_t hello = { .streams = 2, .chunk_bytes = 4 << 20, .window = 4,
                             .ciphers = 1 << STREAM_CIPHER_AES256GCM };
    for (int i = 0; i < 32; i++) {
        hello.identity[i] = (uint8_t)i;
        hello.ephemeral[i] = (uint8_t)(100 + i);
        hello.mac[i] = (uint8_t)(200 + i);
    }
    memset(hello.migration_id, 0x5a, sizeof hello.migration_id);
    return hello;
}

/* Field by field: struct padding is not part of the comparison. */
static void assert_hello_equal(const stream_hello_t *a, const stream_hello_t *b)
{
    assert_int_equal(a->streams, b->streams);
    assert_int_equal(a->chunk_bytes, b->chunk_bytes);
    assert_int_equal(a->window, b->window);
    assert_int_equal(a->ciphers, b->ciphers);
    assert_memory_equal(a->migration_id, b->migration_id, sizeof a->migration_id);
    assert_memory_equal(a->identity, b->identity, sizeof a->identity);
    assert_memory_equal(a->ephemeral, b->ephemeral, sizeof a->ephemeral);
    assert_memory_equal(a->mac, b->mac, sizeof a->mac);
}

static void test_hello_round_trip(void **state)
{
    stream_hello_t in = sample_hello(), out;
    uint8_t bytes[STREAM_HELLO_SIZE];
    stream_hello_encode(&in, bytes);
    const char *why = NULL;
    assert_int_equal(stream_hello_decode(bytes, sizeof bytes, &out, &why), 0);
    assert_hello_equal(&in, &out);
}

static void test_hello_refuses_bad_input(void **state)
{
    stream_hello_t in = sample_hello(), out;
    uint8_t bytes[STREAM_HELLO_SIZE];
    stream_hello_encode(&in, bytes);
    const char *why = NULL;

    for (size_t len = 0; len < sizeof bytes; len++)   /* every truncation */
        assert_int_equal(stream_hello_decode(bytes, len, &out, &why), STREAM_ERR_PROTOCOL);
    assert_non_null(why);

    struct { size_t at; uint8_t value; } corruptions[] = {
        { 0, 'X' },    /* magic */
        { 4, 2 },      /* version */
        { 5, STREAM_MSG_WELCOME },
        { 6, 0 },      /* streams 0 (low byte; high byte already 0) */
        { 6, 9 },      /* streams 9 */
        { 11, 0x10 },  /* chunk 256 MiB + 4 MiB */
        { 12, 0 },     /* window 0 */
        { 16, 0 },     /* no ciphers */
        { 16, 0x80 },  /* unknown cipher bit */
        { 20, 1 },     /* reserved */
    };
    for (size_t i = 0; i < sizeof corruptions / sizeof corruptions[0]; i++) {
        uint8_t bad[STREAM_HELLO_SIZE];
        memcpy(bad, bytes, sizeof bad);
        bad[corruptions[i].at] = corruptions[i].value;
        why = NULL;
        assert_int_equal(stream_hello_decode(bad, sizeof bad, &out, &why), STREAM_ERR_PROTOCOL);
        assert_non_null(why);
    }
    /* One byte too many is refused too. */
    uint8_t longer[STREAM_HELLO_SIZE + 1] = { 0 };
    memcpy(longer, bytes, sizeof bytes);
    assert_int_equal(stream_hello_decode(longer, sizeof longer, &out, &why), STREAM_ERR_PROTOCOL);
}

static void test_welcome_and_reject(void **state)
{
    stream_welcome_t in = { .streams = 1, .chunk_bytes = 1 << 20, .window = 2,
                            .cipher = STREAM_CIPHER_XCHACHA20POLY1305 }, out;
    memset(in.identity, 1, 32);
    memset(in.ephemeral, 2, 32);
    memset(in.mac, 3, 32);
    uint8_t bytes[STREAM_WELCOME_SIZE];
    stream_welcome_encode(&in, bytes);
    const char *why = NULL;
    assert_int_equal(stream_welcome_decode(bytes, sizeof bytes, &out, &why), 0);
    assert_int_equal(out.streams, in.streams);
    assert_int_equal(out.chunk_bytes, in.chunk_bytes);
    assert_int_equal(out.window, in.window);
    assert_int_equal(out.cipher, in.cipher);
    assert_memory_equal(out.identity, in.identity, 32);
    assert_memory_equal(out.ephemeral, in.ephemeral, 32);
    assert_memory_equal(out.mac, in.mac, 32);
    bytes[16] = 7;   /* unknown cipher */
    assert_int_equal(stream_welcome_decode(bytes, sizeof bytes, &out, &why), STREAM_ERR_PROTOCOL);
    for (size_t len = 0; len < sizeof bytes; len++)
        assert_int_equal(stream_welcome_decode(bytes, len, &out, &why), STREAM_ERR_PROTOCOL);

    uint8_t reject[STREAM_REJECT_SIZE], reason = 0;
    stream_reject_encode(STREAM_REJECT_AUTH, reject);
    assert_int_equal(stream_reject_decode(reject, sizeof reject, &reason), 0);
    assert_int_equal(reason, STREAM_REJECT_AUTH);
    assert_int_equal(stream_reject_decode(reject, sizeof reject - 1, &reason), STREAM_ERR_PROTOCOL);
    /* A HELLO is not a REJECT. */
    stream_hello_t hello = sample_hello();
    uint8_t hello_bytes[STREAM_HELLO_SIZE];
    stream_hello_encode(&hello, hello_bytes);
    assert_int_equal(stream_reject_decode(hello_bytes, sizeof hello_bytes, &reason),
                     STREAM_ERR_PROTOCOL);
}

static void test_header_checks_lengths(void **state)
{
    uint8_t message[STREAM_HEADER_SIZE + 100 + STREAM_TAG_SIZE] = { 0 };
    stream_header_t in = { .type = STREAM_MSG_DATA, .stream = 3, .body_len = 100, .seq = 1ULL << 40 };
    stream_header_encode(&in, message);
    stream_header_t out;
    const char *why = NULL;
    assert_int_equal(stream_header_decode(message, sizeof message, 1000, &out, &why), 0);
    assert_int_equal(out.type, in.type);
    assert_int_equal(out.stream, in.stream);
    assert_int_equal(out.body_len, in.body_len);
    assert_true(out.seq == in.seq);

    /* Length must match exactly; body must fit the negotiated chunk. */
    assert_int_equal(stream_header_decode(message, sizeof message - 1, 1000, &out, &why),
                     STREAM_ERR_PROTOCOL);
    assert_int_equal(stream_header_decode(message, sizeof message, 99, &out, &why),
                     STREAM_ERR_PROTOCOL);
    for (size_t len = 0; len < STREAM_HEADER_SIZE + STREAM_TAG_SIZE; len++)
        assert_int_equal(stream_header_decode(message, len, 1000, &out, &why), STREAM_ERR_PROTOCOL);
    /* A body length near 4 GiB cannot overflow the check. */
    stream_put_u32(message + 4, UINT32_MAX);
    assert_int_equal(stream_header_decode(message, sizeof message, UINT32_MAX, &out, &why),
                     STREAM_ERR_PROTOCOL);
    stream_put_u32(message + 4, 100);
    message[1] = 99;
    assert_int_equal(stream_header_decode(message, sizeof message, 1000, &out, &why),
                     STREAM_ERR_PROTOCOL);
    assert_string_equal(why, "unknown message type");
}

/* A body with every entry kind, read back in order. */
static void test_body_round_trip(void **state)
{
    static uint8_t body[3 * STREAM_PAGE_ENTRY_SIZE];
    static uint8_t page[STREAM_PAGE_SIZE];
    for (size_t i = 0; i < sizeof page; i++)
        page[i] = (uint8_t)(i * 7 + 1);
    size_t len = 0;
    len += stream_put_page(body + len, 41, page);
    len += stream_put_zero(body + len, 42);
    len += stream_put_record(body + len, STREAM_RECORD_VCPU_STATE, "hello", 5);
    len += stream_put_barrier(body + len);
    len += stream_put_record(body + len, STREAM_RECORD_DONE, NULL, 0);

    stream_body_reader_t reader;
    stream_body_reader_init(&reader, body, len, 100);
    stream_entry_t entry;
    const char *why = NULL;
    assert_int_equal(stream_body_next(&reader, &entry, &why), 1);
    assert_int_equal(entry.kind, STREAM_ENTRY_PAGE);
    assert_int_equal(entry.page, 41);
    assert_memory_equal(entry.data, page, sizeof page);
    assert_int_equal(stream_body_next(&reader, &entry, &why), 1);
    assert_int_equal(entry.kind, STREAM_ENTRY_ZERO);
    assert_int_equal(entry.page, 42);
    assert_int_equal(stream_body_next(&reader, &entry, &why), 1);
    assert_int_equal(entry.kind, STREAM_ENTRY_RECORD);
    assert_int_equal(entry.record_type, STREAM_RECORD_VCPU_STATE);
    assert_int_equal(entry.len, 5);
    assert_memory_equal(entry.data, "hello", 5);
    assert_int_equal(stream_body_next(&reader, &entry, &why), 1);
    assert_int_equal(entry.kind, STREAM_ENTRY_BARRIER);
    assert_int_equal(stream_body_next(&reader, &entry, &why), 1);
    assert_int_equal(entry.kind, STREAM_ENTRY_RECORD);
    assert_int_equal(entry.len, 0);
    assert_int_equal(stream_body_next(&reader, &entry, &why), 0);

    /* Page index at the limit is refused. */
    stream_body_reader_init(&reader, body, len, 41);
    assert_int_equal(stream_body_next(&reader, &entry, &why), STREAM_ERR_PROTOCOL);
    assert_string_equal(why, "page index beyond destination memory");
}

/* Every truncation of a valid body either reads cleanly to a shorter end
 * or fails; never reads past the end (ASan watches the heap copy). */
static void test_body_truncations(void **state)
{
    uint8_t body[STREAM_PAGE_ENTRY_SIZE + 64];
    static uint8_t page[STREAM_PAGE_SIZE];
    memset(page, 0xab, sizeof page);
    size_t len = stream_put_record(body, 7, "0123456789", 10);
    len += stream_put_page(body + len, 1, page);
    for (size_t cut = 0; cut <= len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, body, cut);
        stream_body_reader_t reader;
        stream_body_reader_init(&reader, copy, cut, 1000);
        stream_entry_t entry;
        const char *why = NULL;
        int rc, entries = 0;
        while ((rc = stream_body_next(&reader, &entry, &why)) == 1)
            entries++;
        if (cut == 0)
            assert_int_equal(rc, 0);
        else if (cut == 24 || cut == len)   /* entry boundaries */
            assert_int_equal(rc, 0);
        else
            assert_int_equal(rc, STREAM_ERR_PROTOCOL);
        assert_true(entries <= 2);
        free(copy);
    }
}

static void test_body_rejects_bad_tags(void **state)
{
    uint8_t body[64] = { 0 };
    const char *why = NULL;
    stream_body_reader_t reader;
    stream_entry_t entry;
    uint64_t bad_tags[] = {
        0,                                           /* kind 0 */
        99,                                          /* unknown kind */
        STREAM_ENTRY_BARRIER | 1 << 8,               /* barrier with bits */
        STREAM_ENTRY_RECORD,                         /* record type 0 */
        STREAM_ENTRY_RECORD | 1 << 8 | 1 << 16,      /* reserved bits */
        STREAM_ENTRY_RECORD | 1 << 8 | 57ULL << 32,  /* longer than the rest */
        STREAM_ENTRY_RECORD | 1 << 8 | 0xffffffffULL << 32,
        STREAM_ENTRY_PAGE | 5 << 8,                  /* page data missing */
    };
    for (size_t i = 0; i < sizeof bad_tags / sizeof bad_tags[0]; i++) {
        stream_put_u64(body, bad_tags[i]);
        stream_body_reader_init(&reader, body, sizeof body, 1000);
        assert_int_equal(stream_body_next(&reader, &entry, &why), STREAM_ERR_PROTOCOL);
    }
    /* A record that exactly fills the rest is fine. */
    stream_put_u64(body, STREAM_ENTRY_RECORD | 1 << 8 | 56ULL << 32);
    stream_body_reader_init(&reader, body, sizeof body, 1000);
    assert_int_equal(stream_body_next(&reader, &entry, &why), 1);
    assert_int_equal(stream_body_next(&reader, &entry, &why), 0);
}

/* Random bytes: the decoders answer, never crash, and a body walk always
 * ends within the buffer. */
static void test_random_bytes(void **state)
{
    rng_t rng;
    rng_seed(&rng, 7);
    for (int run = 0; run < 20000; run++) {
        size_t len = rng_below(&rng, 300);
        uint8_t *bytes = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++)
            bytes[i] = (uint8_t)rng_next(&rng);
        if (len > 0 && rng_below(&rng, 2))   /* a plausible first tag byte */
            bytes[0] = (uint8_t)(1 + rng_below(&rng, 4));
        const char *why = NULL;
        stream_hello_t hello;
        stream_welcome_t welcome;
        stream_header_t header;
        uint8_t reason;
        stream_hello_decode(bytes, len, &hello, &why);
        stream_welcome_decode(bytes, len, &welcome, &why);
        stream_reject_decode(bytes, len, &reason);
        stream_header_decode(bytes, len, 1 << 20, &header, &why);
        stream_body_reader_t reader;
        stream_body_reader_init(&reader, bytes, len, rng_below(&rng, 1ULL << 40));
        stream_entry_t entry;
        int rc, steps = 0;
        while ((rc = stream_body_next(&reader, &entry, &why)) == 1) {
            assert_true(reader.offset <= len);
            steps++;
        }
        assert_true(rc == 0 || rc == STREAM_ERR_PROTOCOL);
        assert_true(steps <= (int)(len / 8));
        free(bytes);
    }
}

static void test_zero_page_detection(void **state)
{
    static uint8_t page[STREAM_PAGE_SIZE];
    memset(page, 0, sizeof page);
    assert_true(stream_page_is_zero(page));
    for (size_t at = 0; at < sizeof page; at += 509) {
        page[at] = 1;
        assert_false(stream_page_is_zero(page));
        page[at] = 0;
    }
    page[sizeof page - 1] = 0x80;
    assert_false(stream_page_is_zero(page));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_round_trip),
        cmocka_unit_test(test_hello_refuses_bad_input),
        cmocka_unit_test(test_welcome_and_reject),
        cmocka_unit_test(test_header_checks_lengths),
        cmocka_unit_test(test_body_round_trip),
        cmocka_unit_test(test_body_truncations),
        cmocka_unit_test(test_body_rejects_bad_tags),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_zero_page_detection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
