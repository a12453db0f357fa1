/* stream_crypto.c - AEAD with counter nonces and the handshake's key work. */
#include "migration/stream_crypto.h"

#include <string.h>

#include "migration/stream_wire.h"

bool stream_crypto_init(void)
{
    return sodium_init() >= 0;   /* 1 = already initialised; safe to repeat */
}

bool stream_cipher_available(stream_cipher_t cipher)
{
    switch (cipher) {
    case STREAM_CIPHER_AES256GCM:          return crypto_aead_aes256gcm_is_available();
    case STREAM_CIPHER_XCHACHA20POLY1305:  return true;
    default:                               return false;
    }
}

stream_cipher_t stream_cipher_preferred(void)
{
    return crypto_aead_aes256gcm_is_available() ? STREAM_CIPHER_AES256GCM
                                                : STREAM_CIPHER_XCHACHA20POLY1305;
}

void stream_key_init(stream_key_t *key, stream_cipher_t cipher, const uint8_t raw[STREAM_KEY_BYTES])
{
    key->cipher = cipher;
    memcpy(key->key, raw, STREAM_KEY_BYTES);
    if (cipher == STREAM_CIPHER_AES256GCM)
        crypto_aead_aes256gcm_beforenm(&key->aes, raw);
}

/* 24 bytes covers both ciphers' nonce sizes (12 and 24). */
static void nonce_of(uint64_t seq, uint8_t nonce[24])
{
    memset(nonce, 0, 24);
    stream_put_u64(nonce, seq);
}

void stream_seal(const stream_key_t *key, uint64_t seq, const uint8_t *ad, size_t ad_len,
                 uint8_t *data, size_t len, uint8_t tag[16])
{
    uint8_t nonce[24];
    nonce_of(seq, nonce);
    if (key->cipher == STREAM_CIPHER_AES256GCM)
        crypto_aead_aes256gcm_encrypt_detached_afternm(data, tag, NULL, data, len, ad, ad_len,
                                                       NULL, nonce, &key->aes);
    else
        crypto_aead_xchacha20poly1305_ietf_encrypt_detached(data, tag, NULL, data, len, ad,
                                                            ad_len, NULL, nonce, key->key);
}

int stream_open(const stream_key_t *key, uint64_t seq, const uint8_t *ad, size_t ad_len,
                uint8_t *data, size_t len, const uint8_t tag[16])
{
    uint8_t nonce[24];
    nonce_of(seq, nonce);
    if (key->cipher == STREAM_CIPHER_AES256GCM)
        return crypto_aead_aes256gcm_decrypt_detached_afternm(data, NULL, data, len, tag, ad,
                                                              ad_len, nonce, &key->aes)
                   ? -1 : 0;
    return crypto_aead_xchacha20poly1305_ietf_decrypt_detached(data, NULL, data, len, tag, ad,
                                                               ad_len, nonce, key->key)
               ? -1 : 0;
}

bool stream_identity_valid(const stream_identity_t *identity)
{
    uint8_t derived[crypto_scalarmult_BYTES];
    if (crypto_scalarmult_base(derived, identity->secret_key) != 0)
        return false;
    bool same = sodium_memcmp(derived, identity->public_key, sizeof derived) == 0;
    sodium_memzero(derived, sizeof derived);
    return same;
}

int stream_static_key(uint8_t out[32], const stream_identity_t *own,
                      const uint8_t peer_public[STREAM_KEY_BYTES])
{
    return crypto_box_beforenm(out, peer_public, own->secret_key) == 0 ? 0 : -1;
}

void stream_mac(uint8_t mac[32], const uint8_t static_key[32], const char *label,
                const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    crypto_auth_hmacsha512256_state state;
    crypto_auth_hmacsha512256_init(&state, static_key, 32);
    crypto_auth_hmacsha512256_update(&state, (const uint8_t *)label, strlen(label) + 1);
    crypto_auth_hmacsha512256_update(&state, a, a_len);
    if (b_len)
        crypto_auth_hmacsha512256_update(&state, b, b_len);
    crypto_auth_hmacsha512256_final(&state, mac);
    sodium_memzero(&state, sizeof state);
}

bool stream_mac_verify(const uint8_t mac[32], const uint8_t static_key[32], const char *label,
                       const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    uint8_t expected[32];
    stream_mac(expected, static_key, label, a, a_len, b, b_len);
    bool same = crypto_verify_32(expected, mac) == 0;
    sodium_memzero(expected, sizeof expected);
    return same;
}

static void stream_key_derive(stream_key_t *out, stream_cipher_t cipher, const uint8_t base[32],
                              stream_direction_t direction, uint32_t stream,
                              const uint8_t transcript[32], const uint8_t static_key[32])
{
    static const char label[] = "ferry-mig/1 stream";
    uint8_t info[3];
    info[0] = (uint8_t)direction;
    stream_put_u16(info + 1, (uint16_t)stream);
    crypto_generichash_state state;
    uint8_t raw[STREAM_KEY_BYTES];
    crypto_generichash_init(&state, base, 32, sizeof raw);
    crypto_generichash_update(&state, (const uint8_t *)label, sizeof label);
    crypto_generichash_update(&state, info, sizeof info);
    crypto_generichash_update(&state, transcript, 32);
    crypto_generichash_update(&state, static_key, 32);
    crypto_generichash_final(&state, raw, sizeof raw);
    stream_key_init(out, cipher, raw);
    sodium_memzero(raw, sizeof raw);
    sodium_memzero(&state, sizeof state);
}

int stream_session_derive(stream_session_t *session, bool client, stream_cipher_t cipher,
                          uint32_t streams, const uint8_t own_public[crypto_kx_PUBLICKEYBYTES],
                          const uint8_t own_secret[crypto_kx_SECRETKEYBYTES],
                          const uint8_t peer_public[crypto_kx_PUBLICKEYBYTES],
                          const uint8_t static_key[32], const uint8_t *hello, size_t hello_len,
                          const uint8_t *welcome, size_t welcome_len)
{
    uint8_t rx[crypto_kx_SESSIONKEYBYTES], tx[crypto_kx_SESSIONKEYBYTES];
    int rc = client ? crypto_kx_client_session_keys(rx, tx, own_public, own_secret, peer_public)
                    : crypto_kx_server_session_keys(rx, tx, own_public, own_secret, peer_public);
    if (rc != 0)
        return -1;

    uint8_t transcript[32];
    crypto_generichash_state state;
    crypto_generichash_init(&state, NULL, 0, sizeof transcript);
    crypto_generichash_update(&state, hello, hello_len);
    crypto_generichash_update(&state, welcome, welcome_len);
    crypto_generichash_final(&state, transcript, sizeof transcript);

    /* The client's tx is the server's rx: sender-to-receiver traffic. */
    const uint8_t *s2r = client ? tx : rx;
    const uint8_t *r2s = client ? rx : tx;
    session->cipher = cipher;
    session->streams = streams;
    for (uint32_t j = 0; j < streams; j++) {
        stream_key_t *out_s2r = client ? &session->send[j] : &session->recv[j];
        stream_key_t *out_r2s = client ? &session->recv[j] : &session->send[j];
        stream_key_derive(out_s2r, cipher, s2r, STREAM_SENDER_TO_RECEIVER, j, transcript, static_key);
        stream_key_derive(out_r2s, cipher, r2s, STREAM_RECEIVER_TO_SENDER, j, transcript, static_key);
    }
    sodium_memzero(rx, sizeof rx);
    sodium_memzero(tx, sizeof tx);
    return 0;
}

void stream_session_wipe(stream_session_t *session)
{
    sodium_memzero(session, sizeof *session);
}
