/* test_swim_keyring.c - sealing gossip packets: authentication, tampering,
 * truncation, channel separation, key rotation and key parsing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "agent/membership/keyring.h"

static void fill_key(uint8_t key[KEYRING_KEY_BYTES], uint8_t v)
{
    for (int i = 0; i < KEYRING_KEY_BYTES; i++)
        key[i] = (uint8_t)(v + i);
}

static const uint8_t msg[] = "\x01\xa6node-1\x93\x01\x07\xa6node-2";

static void test_seal_open_round_trip(void **state)
{
    uint8_t key[KEYRING_KEY_BYTES];
    fill_key(key, 1);
    keyring_t *ring = keyring_new(key);
    assert_non_null(ring);
    uint8_t sealed[256], plain[256];
    size_t sealed_len, plain_len;
    assert_int_equal(keyring_seal(ring, KEYRING_UDP, msg, sizeof(msg), sealed, sizeof(sealed),
                                  &sealed_len), 0);
    assert_int_equal(sealed_len, sizeof(msg) + KEYRING_OVERHEAD);
    assert_int_equal(keyring_open(ring, KEYRING_UDP, sealed, sealed_len, plain, sizeof(plain),
                                  &plain_len), 0);
    assert_int_equal(plain_len, sizeof(msg));
    assert_memory_equal(plain, msg, sizeof(msg));
    /* Two seals of one message differ: the nonce is random. */
    uint8_t again[256];
    size_t again_len;
    keyring_seal(ring, KEYRING_UDP, msg, sizeof(msg), again, sizeof(again), &again_len);
    assert_memory_not_equal(sealed, again, sealed_len);
    /* No room: refused, not truncated. */
    assert_int_equal(keyring_seal(ring, KEYRING_UDP, msg, sizeof(msg), sealed,
                                  sizeof(msg) + KEYRING_OVERHEAD - 1, &sealed_len), -EMSGSIZE);
    keyring_destroy(&ring);
    assert_null(ring);
}

static void test_wrong_key_tamper_truncate(void **state)
{
    uint8_t key[KEYRING_KEY_BYTES], other[KEYRING_KEY_BYTES];
    fill_key(key, 1);
    fill_key(other, 2);
    keyring_t *ring = keyring_new(key), *stranger = keyring_new(other);
    uint8_t sealed[256], plain[256];
    size_t sealed_len, plain_len;
    keyring_seal(ring, KEYRING_UDP, msg, sizeof(msg), sealed, sizeof(sealed), &sealed_len);
    assert_int_equal(keyring_open(stranger, KEYRING_UDP, sealed, sealed_len, plain, sizeof(plain),
                                  &plain_len), -EBADMSG);
    /* Any flipped bit anywhere (nonce, ciphertext, tag) fails. */
    for (size_t i = 0; i < sealed_len; i++) {
        sealed[i] ^= 0x10;
        assert_int_equal(keyring_open(ring, KEYRING_UDP, sealed, sealed_len, plain,
                                      sizeof(plain), &plain_len), -EBADMSG);
        sealed[i] ^= 0x10;
    }
    for (size_t cut = 0; cut < sealed_len; cut++)
        assert_int_equal(keyring_open(ring, KEYRING_UDP, sealed, cut, plain, sizeof(plain),
                                      &plain_len), -EBADMSG);
    /* A datagram is not a valid stream payload. */
    assert_int_equal(keyring_open(ring, KEYRING_STREAM, sealed, sealed_len, plain, sizeof(plain),
                                  &plain_len), -EBADMSG);
    assert_int_equal(keyring_open(ring, KEYRING_UDP, sealed, sealed_len, plain, sizeof(plain),
                                  &plain_len), 0);
    keyring_destroy(&ring);
    keyring_destroy(&stranger);
}

static void test_rotation(void **state)
{
    uint8_t old_key[KEYRING_KEY_BYTES], new_key[KEYRING_KEY_BYTES];
    fill_key(old_key, 10);
    fill_key(new_key, 20);
    keyring_t *a = keyring_new(old_key), *b = keyring_new(old_key);
    uint8_t sealed[256], plain[256];
    size_t sealed_len, plain_len;

    /* Step 1: everyone learns the new key; the old one still seals. */
    assert_int_equal(keyring_add(a, new_key), 0);
    assert_int_equal(keyring_add(a, new_key), 0);   /* idempotent */
    assert_int_equal(keyring_count(a), 2);
    assert_int_equal(keyring_add(b, new_key), 0);
    /* Step 2: a switches first; b, still sealing with the old key, is understood. */
    assert_int_equal(keyring_use(a, new_key), 0);
    keyring_seal(b, KEYRING_UDP, msg, sizeof(msg), sealed, sizeof(sealed), &sealed_len);
    assert_int_equal(keyring_open(a, KEYRING_UDP, sealed, sealed_len, plain, sizeof(plain),
                                  &plain_len), 0);
    keyring_seal(a, KEYRING_UDP, msg, sizeof(msg), sealed, sizeof(sealed), &sealed_len);
    assert_int_equal(keyring_open(b, KEYRING_UDP, sealed, sealed_len, plain, sizeof(plain),
                                  &plain_len), 0);
    /* Step 3: the old key is dropped; packets sealed with it are refused. */
    assert_int_equal(keyring_remove(a, new_key), -EBUSY);   /* the primary stays */
    assert_int_equal(keyring_remove(a, old_key), 0);
    assert_int_equal(keyring_remove(a, old_key), -ENOENT);
    uint8_t old_sealed[256];
    size_t old_len;
    keyring_t *legacy = keyring_new(old_key);
    keyring_seal(legacy, KEYRING_UDP, msg, sizeof(msg), old_sealed, sizeof(old_sealed), &old_len);
    assert_int_equal(keyring_open(a, KEYRING_UDP, old_sealed, old_len, plain, sizeof(plain),
                                  &plain_len), -EBADMSG);
    keyring_destroy(&a);
    keyring_destroy(&b);
    keyring_destroy(&legacy);
}

static void test_ring_full(void **state)
{
    uint8_t key[KEYRING_KEY_BYTES];
    fill_key(key, 0);
    keyring_t *ring = keyring_new(key);
    for (int i = 1; i < KEYRING_MAX_KEYS; i++) {
        fill_key(key, (uint8_t)(i * 3));
        assert_int_equal(keyring_add(ring, key), 0);
    }
    fill_key(key, 200);
    assert_int_equal(keyring_add(ring, key), -ENOSPC);
    assert_int_equal(keyring_use(ring, key), -ENOSPC);
    keyring_destroy(&ring);
}

static void test_parse_key(void **state)
{
    uint8_t key[KEYRING_KEY_BYTES], expect[KEYRING_KEY_BYTES];
    for (int i = 0; i < KEYRING_KEY_BYTES; i++)
        expect[i] = (uint8_t)i;
    assert_int_equal(keyring_parse_key(
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", key), 0);
    assert_memory_equal(key, expect, KEYRING_KEY_BYTES);
    assert_int_equal(keyring_parse_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", key), 0);
    assert_memory_equal(key, expect, KEYRING_KEY_BYTES);
    assert_int_equal(keyring_parse_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", key), 0);
    assert_memory_equal(key, expect, KEYRING_KEY_BYTES);
    /* Wrong lengths and alphabets. */
    assert_int_equal(keyring_parse_key("", key), -EINVAL);
    assert_int_equal(keyring_parse_key(NULL, key), -EINVAL);
    assert_int_equal(keyring_parse_key("00010203", key), -EINVAL);
    assert_int_equal(keyring_parse_key(
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g", key), -EINVAL);
    assert_int_equal(keyring_parse_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8fIA==", key),
                     -EINVAL);   /* 33 bytes */
    /* A generated key parses back from its hex form. */
    uint8_t fresh[KEYRING_KEY_BYTES];
    keyring_generate_key(fresh);
    char hex[2 * KEYRING_KEY_BYTES + 1];
    for (int i = 0; i < KEYRING_KEY_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", fresh[i]);
    assert_int_equal(keyring_parse_key(hex, key), 0);
    assert_memory_equal(key, fresh, KEYRING_KEY_BYTES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_open_round_trip),
        cmocka_unit_test(test_wrong_key_tamper_truncate),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_ring_full),
        cmocka_unit_test(test_parse_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
