/* keyring.c - sealing gossip packets with the cluster keys; see keyring.h. */
#include "agent/membership/keyring.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

struct keyring {
    size_t count;                                      /* [0] is the primary */
    uint8_t keys[KEYRING_MAX_KEYS][KEYRING_KEY_BYTES];
};

static const char *channel_label(keyring_channel_t channel)
{
    return channel == KEYRING_STREAM ? "ferry-gossip-tcp-v1" : "ferry-gossip-udp-v1";
}

keyring_t *keyring_new(const uint8_t primary[KEYRING_KEY_BYTES])
{
    if (sodium_init() < 0)
        return NULL;
    keyring_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    memcpy(self->keys[0], primary, KEYRING_KEY_BYTES);
    self->count = 1;
    return self;
}

void keyring_destroy(keyring_t **self_p)
{
    keyring_t *self = *self_p;
    if (!self)
        return;
    sodium_memzero(self, sizeof(*self));
    free(self);
    *self_p = NULL;
}

static int find_key(const keyring_t *self, const uint8_t key[KEYRING_KEY_BYTES])
{
    for (size_t i = 0; i < self->count; i++)
        if (sodium_memcmp(self->keys[i], key, KEYRING_KEY_BYTES) == 0)
            return (int)i;
    return -1;
}

int keyring_add(keyring_t *self, const uint8_t key[KEYRING_KEY_BYTES])
{
    if (find_key(self, key) >= 0)
        return 0;
    if (self->count == KEYRING_MAX_KEYS)
        return -ENOSPC;
    memcpy(self->keys[self->count++], key, KEYRING_KEY_BYTES);
    return 0;
}

int keyring_use(keyring_t *self, const uint8_t key[KEYRING_KEY_BYTES])
{
    int i = find_key(self, key);
    if (i < 0) {
        if (keyring_add(self, key) < 0)
            return -ENOSPC;
        i = (int)self->count - 1;
    }
    uint8_t tmp[KEYRING_KEY_BYTES];
    memcpy(tmp, self->keys[0], KEYRING_KEY_BYTES);
    memcpy(self->keys[0], self->keys[i], KEYRING_KEY_BYTES);
    memcpy(self->keys[i], tmp, KEYRING_KEY_BYTES);
    sodium_memzero(tmp, sizeof(tmp));
    return 0;
}

int keyring_remove(keyring_t *self, const uint8_t key[KEYRING_KEY_BYTES])
{
    int i = find_key(self, key);
    if (i < 0)
        return -ENOENT;
    if (i == 0)
        return -EBUSY;
    memmove(self->keys[i], self->keys[i + 1], (self->count - (size_t)i - 1) * KEYRING_KEY_BYTES);
    self->count--;
    sodium_memzero(self->keys[self->count], KEYRING_KEY_BYTES);
    return 0;
}

size_t keyring_count(const keyring_t *self)
{
    return self->count;
}

int keyring_seal(const keyring_t *self, keyring_channel_t channel, const uint8_t *plain,
                 size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    if (cap < KEYRING_OVERHEAD || len > cap - KEYRING_OVERHEAD)
        return -EMSGSIZE;
    const char *ad = channel_label(channel);
    randombytes_buf(out, KEYRING_NONCE_BYTES);
    unsigned long long clen;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + KEYRING_NONCE_BYTES, &clen, plain, len,
                                               (const uint8_t *)ad, strlen(ad), NULL, out,
                                               self->keys[0]);
    *out_len = KEYRING_NONCE_BYTES + (size_t)clen;
    return 0;
}

int keyring_open(const keyring_t *self, keyring_channel_t channel, const uint8_t *sealed,
                 size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    if (len < KEYRING_OVERHEAD || cap < len - KEYRING_OVERHEAD)
        return -EBADMSG;
    const char *ad = channel_label(channel);
    for (size_t i = 0; i < self->count; i++) {
        unsigned long long plen;
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(
                out, &plen, NULL, sealed + KEYRING_NONCE_BYTES, len - KEYRING_NONCE_BYTES,
                (const uint8_t *)ad, strlen(ad), sealed, self->keys[i]) == 0) {
            *out_len = (size_t)plen;
            return 0;
        }
    }
    return -EBADMSG;
}

int keyring_parse_key(const char *text, uint8_t key[KEYRING_KEY_BYTES])
{
    if (!text)
        return -EINVAL;
    size_t len = strlen(text), got = 0;
    const char *end = NULL;
    if (len == 2 * KEYRING_KEY_BYTES &&
        sodium_hex2bin(key, KEYRING_KEY_BYTES, text, len, NULL, &got, &end) == 0 &&
        got == KEYRING_KEY_BYTES && end == text + len)
        return 0;
    static const int variants[] = {
        sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
        sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING,
    };
    for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
        uint8_t tmp[KEYRING_KEY_BYTES + 3];
        if (sodium_base642bin(tmp, sizeof(tmp), text, len, NULL, &got, &end, variants[v]) == 0 &&
            got == KEYRING_KEY_BYTES && end == text + len) {
            memcpy(key, tmp, KEYRING_KEY_BYTES);
            sodium_memzero(tmp, sizeof(tmp));
            return 0;
        }
    }
    return -EINVAL;
}

void keyring_generate_key(uint8_t key[KEYRING_KEY_BYTES])
{
    if (sodium_init() < 0)
        abort();   /* libsodium cannot run here at all: nothing is safe */
    crypto_aead_xchacha20poly1305_ietf_keygen(key);
}
