/* keyring.h - the cluster keys that seal every gossip packet.
 *
 * Every gossip datagram and push-pull payload is sealed with
 * XChaCha20-Poly1305 (libsodium's crypto_aead_xchacha20poly1305_ietf) under
 * the cluster key. A sealed packet is
 *
 *     nonce (24 random bytes) | ciphertext | tag (16 bytes)
 *
 * and the associated data names the channel ("ferry-gossip-udp-v1" or
 * "ferry-gossip-tcp-v1"), so a datagram cannot be replayed as a stream
 * payload or the other way round. There is no plaintext mode.
 *
 * Rotation: the keyring holds one primary key, which seals, and up to
 * KEYRING_MAX_KEYS - 1 older or newer keys, which are still accepted when
 * opening. To rotate a cluster: add the new key everywhere, make it
 * primary everywhere, then remove the old one.
 *
 * The random nonce is the only impure part (randombytes_buf); the simulator
 * uses the same code so that its packets are sealed exactly as real ones. */
#ifndef FERRY_KEYRING_H
#define FERRY_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYRING_KEY_BYTES   32
#define KEYRING_MAX_KEYS    4
#define KEYRING_NONCE_BYTES 24
#define KEYRING_TAG_BYTES   16
#define KEYRING_OVERHEAD    (KEYRING_NONCE_BYTES + KEYRING_TAG_BYTES)

typedef enum {
    KEYRING_UDP,     /* gossip datagrams */
    KEYRING_STREAM,  /* push-pull payloads */
} keyring_channel_t;

typedef struct keyring keyring_t;

/* Creates a keyring whose primary key is `primary`. Returns NULL if
 * libsodium cannot initialise or memory runs out. */
keyring_t *keyring_new(const uint8_t primary[KEYRING_KEY_BYTES]);
void keyring_destroy(keyring_t **self_p);   /* wipes the keys */

/* Adds a key accepted for opening. Returns 0 (also if already present) or
 * -ENOSPC when the ring is full. */
int keyring_add(keyring_t *self, const uint8_t key[KEYRING_KEY_BYTES]);
/* Makes a key the primary, adding it if needed. Returns 0 or -ENOSPC. */
int keyring_use(keyring_t *self, const uint8_t key[KEYRING_KEY_BYTES]);
/* Removes a key. Returns 0, -ENOENT, or -EBUSY for the primary key. */
int keyring_remove(keyring_t *self, const uint8_t key[KEYRING_KEY_BYTES]);
size_t keyring_count(const keyring_t *self);

/* Seals `len` bytes into out (cap >= len + KEYRING_OVERHEAD).
 * Returns 0 or -EMSGSIZE. */
int keyring_seal(const keyring_t *self, keyring_channel_t channel, const uint8_t *plain,
                 size_t len, uint8_t *out, size_t cap, size_t *out_len);
/* Opens a sealed packet with the primary key, then the others. Returns 0,
 * or -EBADMSG when it is too short or no key authenticates it. `out` needs
 * len - KEYRING_OVERHEAD bytes; it may not overlap the input. */
int keyring_open(const keyring_t *self, keyring_channel_t channel, const uint8_t *sealed,
                 size_t len, uint8_t *out, size_t cap, size_t *out_len);

/* Parses a key written as 64 hex digits or as base64 (standard or URL-safe,
 * padded or not). Returns 0 or -EINVAL. */
int keyring_parse_key(const char *text, uint8_t key[KEYRING_KEY_BYTES]);
/* Makes a fresh random key. */
void keyring_generate_key(uint8_t key[KEYRING_KEY_BYTES]);

#endif
