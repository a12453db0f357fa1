/* test_stream_crypto.c - the stream's AEAD: AES-256-GCM on libcrypto must
 * produce exactly what libsodium's AES-256-GCM (the stream's cipher before,
 * and the standard) produces for the same key, nonce and data; sealing a
 * body gathered in pieces must equal sealing it whole; any change to the
 * data, tag, associated data or seq must fail to open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/rng.h"
#include "migration/stream_crypto.h"
#include "migration/stream_wire.h"

#define MAX_LEN (3 * STREAM_PAGE_ENTRY_SIZE + 77)

static const size_t lengths[] = { 0, 1, 15, 16, 17, 255, STREAM_PAGE_ENTRY_SIZE, MAX_LEN };

static void random_bytes(rng_t *rng, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)rng_next(rng);
}

static int setup(void **state)
{
    return stream_crypto_init() ? 0 : -1;
}

static void test_aes_matches_libsodium(void **state)
{
    if (!stream_cipher_available(STREAM_CIPHER_AES256GCM))
        skip();
    rng_t rng;
    rng_seed(&rng, 7);
    uint8_t raw[32], ad[STREAM_HEADER_SIZE], ours[MAX_LEN], theirs[MAX_LEN];
    uint8_t tag[16], their_tag[16], nonce[crypto_aead_aes256gcm_NPUBBYTES] = { 0 };
    random_bytes(&rng, raw, sizeof raw);
    random_bytes(&rng, ad, sizeof ad);
    stream_key_t key;
    assert_int_equal(stream_key_init(&key, STREAM_CIPHER_AES256GCM, raw), 0);
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        size_t len = lengths[i];
        uint64_t seq = 0x0102030405060708ULL + i;
        random_bytes(&rng, ours, len);
        memcpy(theirs, ours, len);
        stream_put_u64(nonce, seq);   /* the stream's nonce: seq, then zeros */
        assert_int_equal(stream_seal(&key, seq, ad, sizeof ad, ours, len, tag), 0);
        crypto_aead_aes256gcm_encrypt_detached(theirs, their_tag, NULL, theirs, len, ad,
                                               sizeof ad, NULL, nonce, raw);
        assert_memory_equal(tag, their_tag, 16);
        if (len)
            assert_memory_equal(ours, theirs, len);
    }
    stream_key_wipe(&key);
    assert_null(key.aes);
}

static void test_gathered_seal_equals_whole(void **state)
{
    if (!stream_cipher_available(STREAM_CIPHER_AES256GCM))
        skip();
    rng_t rng;
    rng_seed(&rng, 11);
    uint8_t raw[32], ad[STREAM_HEADER_SIZE], plain[MAX_LEN], whole[MAX_LEN], gathered[MAX_LEN];
    uint8_t tag[16], gathered_tag[16];
    random_bytes(&rng, raw, sizeof raw);
    random_bytes(&rng, ad, sizeof ad);
    random_bytes(&rng, plain, sizeof plain);
    stream_key_t key;
    assert_int_equal(stream_key_init(&key, STREAM_CIPHER_AES256GCM, raw), 0);
    assert_true(stream_key_can_gather(&key));
    memcpy(whole, plain, sizeof whole);
    assert_int_equal(stream_seal(&key, 3, ad, sizeof ad, whole, sizeof whole, tag), 0);

    for (int round = 0; round < 20; round++) {
        /* Random cuts; odd pieces in place, even pieces from `plain`. */
        memcpy(gathered, plain, sizeof gathered);
        assert_int_equal(stream_seal_begin(&key, 3, ad, sizeof ad), 0);
        size_t at = 0;
        for (int piece = 0; at < sizeof gathered; piece++) {
            size_t len = 1 + rng_below(&rng, 5000);
            if (len > sizeof gathered - at)
                len = sizeof gathered - at;
            const uint8_t *from = piece % 2 ? gathered + at : plain + at;
            if (piece % 2 == 0)
                memset(gathered + at, 0xee, len);   /* prove it reads `plain` */
            assert_int_equal(stream_seal_piece(&key, gathered + at, from, len), 0);
            at += len;
        }
        assert_int_equal(stream_seal_end(&key, gathered_tag), 0);
        assert_memory_equal(gathered, whole, sizeof whole);
        assert_memory_equal(gathered_tag, tag, 16);
    }
    stream_key_wipe(&key);
}

static void check_tamper_detection(stream_cipher_t cipher)
{
    rng_t rng;
    rng_seed(&rng, 13 + cipher);
    uint8_t raw[32], ad[STREAM_HEADER_SIZE], plain[MAX_LEN], sealed[MAX_LEN], work[MAX_LEN];
    uint8_t tag[16], bad_tag[16], bad_ad[STREAM_HEADER_SIZE];
    random_bytes(&rng, raw, sizeof raw);
    random_bytes(&rng, ad, sizeof ad);
    random_bytes(&rng, plain, sizeof plain);
    stream_key_t key;
    assert_int_equal(stream_key_init(&key, cipher, raw), 0);
    memcpy(sealed, plain, sizeof sealed);
    assert_int_equal(stream_seal(&key, 9, ad, sizeof ad, sealed, sizeof sealed, tag), 0);
    assert_memory_not_equal(sealed, plain, sizeof plain);

    memcpy(work, sealed, sizeof work);
    assert_int_equal(stream_open(&key, 9, ad, sizeof ad, work, sizeof work, tag), 0);
    assert_memory_equal(work, plain, sizeof plain);

    assert_int_equal(stream_open(&key, 10, ad, sizeof ad, memcpy(work, sealed, sizeof work),
                                 sizeof work, tag), -1);
    memcpy(bad_ad, ad, sizeof ad);
    bad_ad[4] ^= 1;
    assert_int_equal(stream_open(&key, 9, bad_ad, sizeof ad, memcpy(work, sealed, sizeof work),
                                 sizeof work, tag), -1);
    memcpy(bad_tag, tag, 16);
    bad_tag[15] ^= 0x80;
    assert_int_equal(stream_open(&key, 9, ad, sizeof ad, memcpy(work, sealed, sizeof work),
                                 sizeof work, bad_tag), -1);
    for (int i = 0; i < 16; i++) {
        memcpy(work, sealed, sizeof work);
        work[rng_below(&rng, sizeof work)] ^= (uint8_t)(1 + rng_below(&rng, 255));
        assert_int_equal(stream_open(&key, 9, ad, sizeof ad, work, sizeof work, tag), -1);
    }
    /* The key still works after failures. */
    memcpy(work, sealed, sizeof work);
    assert_int_equal(stream_open(&key, 9, ad, sizeof ad, work, sizeof work, tag), 0);
    stream_key_wipe(&key);
}

static void test_aes_detects_tampering(void **state)
{
    if (!stream_cipher_available(STREAM_CIPHER_AES256GCM))
        skip();
    check_tamper_detection(STREAM_CIPHER_AES256GCM);
}

static void test_xchacha_detects_tampering(void **state)
{
    check_tamper_detection(STREAM_CIPHER_XCHACHA20POLY1305);
    stream_key_t key;
    uint8_t raw[32] = { 1 };
    assert_int_equal(stream_key_init(&key, STREAM_CIPHER_XCHACHA20POLY1305, raw), 0);
    assert_false(stream_key_can_gather(&key));
    assert_int_equal(stream_seal_begin(&key, 1, raw, 16), -1);
    stream_key_wipe(&key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aes_matches_libsodium),
        cmocka_unit_test(test_gathered_seal_equals_whole),
        cmocka_unit_test(test_aes_detects_tampering),
        cmocka_unit_test(test_xchacha_detects_tampering),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
