/* crypto.h - keys and sealing for ferry, on libsodium and ZeroMQ's CURVE.
 *
 * Three kinds of secret live in an agent's state dir, each in a text file
 * of `name = value` lines with mode 0600 (a file that the group or others
 * can read is refused):
 *   cluster.key   the 32-byte cluster key; seals every gossip packet
 *   identity.key  this agent's CURVE keypair (z85), for Raft, control, migration
 *   admin.cred    an admin client's CURVE keypair plus the agent it talks to
 */
#ifndef FERRY_CRYPTO_H
#define FERRY_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRYPTO_KEY_BYTES   32
#define CRYPTO_Z85_LEN     40          /* z85 text of a 32-byte key */
#define CRYPTO_SEAL_OVERHEAD (24 + 16) /* nonce + tag added by crypto_seal */

typedef struct {
    char public_z85[CRYPTO_Z85_LEN + 1];
    char secret_z85[CRYPTO_Z85_LEN + 1];
} crypto_identity_t;

/* sodium_init(); call once from main. Returns 0 or -1. */
int crypto_init(void);

int crypto_identity_generate(crypto_identity_t *id);
int crypto_identity_save(const crypto_identity_t *id, const char *path, char *err, size_t errlen);
int crypto_identity_load(crypto_identity_t *id, const char *path, char *err, size_t errlen);
/* The raw 32-byte keys behind an identity (for libsodium's box/kx). */
int crypto_identity_raw(const crypto_identity_t *id, uint8_t public_key[32], uint8_t secret_key[32]);
/* True if `z85` is a well-formed 40-character z85 key. */
bool crypto_z85_key_valid(const char *z85);

void crypto_cluster_key_generate(uint8_t key[CRYPTO_KEY_BYTES]);
int crypto_cluster_key_save(const uint8_t key[CRYPTO_KEY_BYTES], const char *path, char *err, size_t errlen);
int crypto_cluster_key_load(uint8_t key[CRYPTO_KEY_BYTES], const char *path, char *err, size_t errlen);

/* AEAD (XChaCha20-Poly1305) with a random nonce carried in front of the
 * ciphertext: out = nonce(24) || ciphertext || tag(16). `out` must hold
 * len + CRYPTO_SEAL_OVERHEAD bytes. `ad` is authenticated, not encrypted. */
int crypto_seal(const uint8_t key[CRYPTO_KEY_BYTES], const uint8_t *plain, size_t len,
                const uint8_t *ad, size_t ad_len, uint8_t *out, size_t *out_len);
/* Inverse of crypto_seal. Returns 0, or -1 if the input is short or fails
 * authentication (wrong key, tampered, truncated). `out` holds len - overhead. */
int crypto_open(const uint8_t key[CRYPTO_KEY_BYTES], const uint8_t *sealed, size_t len,
                const uint8_t *ad, size_t ad_len, uint8_t *out, size_t *out_len);

/* Constant-time equality, for keys and tags. */
bool crypto_equal(const void *a, const void *b, size_t len);

/* Reads `name = value` from a key file's text; value is copied (at most
 * cap-1 bytes). Returns 0 or -1 if absent or too long. Shared by the key
 * and credential files. */
int crypto_keyfile_get(const char *text, const char *name, char *value, size_t cap);

#endif
