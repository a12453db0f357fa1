/* stream_crypto.h - the migration stream's keys, AEAD and handshake crypto.
 *
 * Handshake (docs/migration.md has the reasoning):
 *   static = crypto_box_beforenm(peer identity public, own identity secret)
 *            -- both ends compute the same 32 bytes, nobody else can;
 *   HELLO   carries the sender's ephemeral kx key, MAC'd (HMAC-SHA-512/256)
 *           under `static` with the label "ferry-mig/1 hello";
 *   WELCOME carries the receiver's ephemeral kx key, MAC'd under `static`
 *           over HELLO || WELCOME with the label "ferry-mig/1 welcome";
 *   crypto_kx session keys from the two ephemeral keys give one base key
 *   per direction; each stream's key for each direction is
 *     BLAKE2b-256(key = base, "ferry-mig/1 stream" || direction || stream
 *                 || BLAKE2b-256(HELLO || WELCOME) || static).
 *
 * AEAD: nonce = the message's seq (little-endian) in the first 8 bytes, the
 * rest zero. Each (direction, stream) has its own key, so a nonce never
 * repeats under a key.
 *
 * AES-256-GCM runs on OpenSSL's libcrypto (EVP), which is about twice as fast
 * as libsodium 1.0.18's on the same AES-NI CPU (bench/stream measures both);
 * libsodium does the rest: XChaCha20-Poly1305, key exchange, hashing, MACs.
 * A key may be used by one thread at a time (the OpenSSL context holds the
 * state of the message being sealed). */
#ifndef FERRY_MIGRATION_STREAM_CRYPTO_H
#define FERRY_MIGRATION_STREAM_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "migration/stream.h"

typedef struct {
    stream_cipher_t cipher;
    uint8_t key[STREAM_KEY_BYTES];
    EVP_CIPHER_CTX *aes;               /* AES-GCM only: holds the expanded key */
} stream_key_t;

typedef enum { STREAM_SENDER_TO_RECEIVER = 0, STREAM_RECEIVER_TO_SENDER = 1 } stream_direction_t;

/* The keys of one session, as one end sees them. */
typedef struct {
    stream_cipher_t cipher;
    uint32_t streams;
    stream_key_t send[STREAM_MAX_STREAMS];
    stream_key_t recv[STREAM_MAX_STREAMS];
} stream_session_t;

/* sodium_init() once; false if libsodium cannot start. Thread-safe. */
bool stream_crypto_init(void);
bool stream_cipher_available(stream_cipher_t cipher);
/* AUTO resolved: AES-256-GCM when the CPU has it, else XChaCha20-Poly1305. */
stream_cipher_t stream_cipher_preferred(void);

/* 0, or -1 when out of memory. A key that was initialised must be wiped. */
int stream_key_init(stream_key_t *key, stream_cipher_t cipher, const uint8_t raw[STREAM_KEY_BYTES]);
void stream_key_wipe(stream_key_t *key);

/* Seal `data` in place; 0, or -1 if the crypto library failed. */
int stream_seal(const stream_key_t *key, uint64_t seq, const uint8_t *ad, size_t ad_len,
                uint8_t *data, size_t len, uint8_t tag[16]);
/* 0, or -1 if the tag does not verify (data is then garbage). */
int stream_open(const stream_key_t *key, uint64_t seq, const uint8_t *ad, size_t ad_len,
                uint8_t *data, size_t len, const uint8_t tag[16]);

/* Sealing a message whose body is gathered from several places, encrypting
 * each piece from where it lies into the message (no copy first): begin,
 * then pieces in body order (out and in may be the same), then end. The
 * result is the same as stream_seal() on the assembled body. Only where
 * stream_key_can_gather() (AES-256-GCM); each call 0 or -1. */
bool stream_key_can_gather(const stream_key_t *key);
int stream_seal_begin(const stream_key_t *key, uint64_t seq, const uint8_t *ad, size_t ad_len);
int stream_seal_piece(const stream_key_t *key, uint8_t *out, const uint8_t *in, size_t len);
int stream_seal_end(const stream_key_t *key, uint8_t tag[16]);

/* The other way: opening a message piece by piece, each piece decrypted to
 * wherever it belongs (the receiver's pages, straight into guest memory).
 * What the pieces yield is unauthenticated until stream_open_end() returns
 * 0: only use it where memory is thrown away when that fails. Same
 * condition as gathering; each call 0 or -1 (end: -1 if the tag fails). */
int stream_open_begin(const stream_key_t *key, uint64_t seq, const uint8_t *ad, size_t ad_len);
int stream_open_piece(const stream_key_t *key, uint8_t *out, const uint8_t *in, size_t len);
int stream_open_end(const stream_key_t *key, const uint8_t tag[16]);

/* True if `secret` is the X25519 secret of `public_key`. */
bool stream_identity_valid(const stream_identity_t *identity);
/* 0, or -1 if the peer key is a low-order point. */
int stream_static_key(uint8_t out[32], const stream_identity_t *own,
                      const uint8_t peer_public[STREAM_KEY_BYTES]);

/* MAC over label || a || b. */
void stream_mac(uint8_t mac[32], const uint8_t static_key[32], const char *label,
                const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len);
bool stream_mac_verify(const uint8_t mac[32], const uint8_t static_key[32], const char *label,
                       const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len);

/* Derive all stream keys. `client` is the sender. 0, -1 if the peer's
 * ephemeral key is unusable, -2 when out of memory. The session must be
 * wiped afterwards either way. */
int stream_session_derive(stream_session_t *session, bool client, stream_cipher_t cipher,
                          uint32_t streams, const uint8_t own_public[crypto_kx_PUBLICKEYBYTES],
                          const uint8_t own_secret[crypto_kx_SECRETKEYBYTES],
                          const uint8_t peer_public[crypto_kx_PUBLICKEYBYTES],
                          const uint8_t static_key[32], const uint8_t *hello, size_t hello_len,
                          const uint8_t *welcome, size_t welcome_len);
void stream_session_wipe(stream_session_t *session);

#define STREAM_LABEL_HELLO   "ferry-mig/1 hello"
#define STREAM_LABEL_WELCOME "ferry-mig/1 welcome"

#endif
