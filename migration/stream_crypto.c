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

int stream_key_init(stream_key_t *key, stream_cipher_t cipher, const uint8_t raw[STREAM_KEY_BYTES])
{
    *key = (stream_key_t){ .cipher = cipher };
    memcpy(key->key, raw, STREAM_KEY_BYTES);
    if (cipher != STREAM_CIPHER_AES256GCM)
        return 0;
    /* Expand the key once; each message then only sets its nonce. */
    key->aes = EVP_CIPHER_CTX_new();
    if (!key->aes || EVP_EncryptInit_ex(key->aes, EVP_aes_256_gcm(), NULL, raw, NULL) != 1) {
        stream_key_wipe(key);
        return -1;
    }
    return 0;
}

void stream_key_wipe(stream_key_t *key)
{
    EVP_CIPHER_CTX_free(key->aes);   /* cleanses the expanded key */
    sodium_memzero(key, sizeof *key);
}

/* 24 bytes covers both ciphers' nonce sizes (12 and 24). */
static void nonce_of(uint64_t seq, uint8_t nonce[24])
{
    memset(nonce, 0, 24);
    stream_put_u64(nonce, seq);
}

/* EVP lengths are ints: feed longer spans in pieces. */
#define EVP_PIECE_MAX (1 << 30)

static int aes_update(EVP_CIPHER_CTX *ctx, bool encrypt, uint8_t *out, const uint8_t *in,
                      size_t len)
{
    while (len > 0) {
        int piece = len > EVP_PIECE_MAX ? EVP_PIECE_MAX : (int)len, written = 0;
        int ok = encrypt ? EVP_EncryptUpdate(ctx, out, &written, in, piece)
                         : EVP_DecryptUpdate(ctx, out, &written, in, piece);
        if (ok != 1 || written != piece)   /* GCM is a stream: all of it, at once */
            return -1;
        out += piece;
        in += piece;
        len -= (size_t)piece;
    }
    return 0;
}

/* Sets the nonce (keeping the expanded key) and feeds the associated data. */
static int aes_begin(EVP_CIPHER_CTX *ctx, bool encrypt, uint64_t seq, const uint8_t *ad,
                     size_t ad_len)
{
    uint8_t nonce[24];
    nonce_of(seq, nonce);
    if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, encrypt ? 1 : 0) != 1)
        return -1;
    while (ad_len > 0) {
        int piece = ad_len > EVP_PIECE_MAX ? EVP_PIECE_MAX : (int)ad_len, written = 0;
        if (EVP_CipherUpdate(ctx, NULL, &written, ad, piece) != 1)
            return -1;
        ad += piece;
        ad_len -= (size_t)piece;
    }
    return 0;
}

bool stream_key_can_gather(const stream_key_t *key)
{
    return key->cipher == STREAM_CIPHER_AES256GCM;
}

int stream_seal_begin(const stream_key_t *key, uint64_t seq, const uint8_t *ad, size_t ad_len)
{
    return stream_key_can_gather(key) ? aes_begin(key->aes, true, seq, ad, ad_len) : -1;
}

int stream_seal_piece(const stream_key_t *key, uint8_t *out, const uint8_t *in, size_t len)
{
    return aes_update(key->aes, true, out, in, len);
}

int stream_seal_end(const stream_key_t *key, uint8_t tag[16])
{
    int written = 0;
    uint8_t none[16];
    if (EVP_EncryptFinal_ex(key->aes, none, &written) != 1
        || EVP_CIPHER_CTX_ctrl(key->aes, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
        return -1;
    return 0;
}

int stream_seal(const stream_key_t *key, uint64_t seq, const uint8_t *ad, size_t ad_len,
                uint8_t *data, size_t len, uint8_t tag[16])
{
    if (key->cipher == STREAM_CIPHER_AES256GCM) {
        if (stream_seal_begin(key, seq, ad, ad_len) != 0
            || stream_seal_piece(key, data, data, len) != 0)
            return -1;
        return stream_seal_end(key, tag);
    }
    uint8_t nonce[24];
    nonce_of(seq, nonce);
    return crypto_aead_xchacha20poly1305_ietf_encrypt_detached(data, tag, NULL, data, len, ad,
                                                                ad_len, NULL, nonce, key->key)
               ? -1 : 0;
}

int stream_open_begin(const stream_key_t *key, uint64_t seq, const uint8_t *ad, size_t ad_len)
{
    return stream_key_can_gather(key) ? aes_begin(key->aes, false, seq, ad, ad_len) : -1;
}

int stream_open_piece(const stream_key_t *key, uint8_t *out, const uint8_t *in, size_t len)
{
    return aes_update(key->aes, false, out, in, len);
}

int stream_open_end(const stream_key_t *key, const uint8_t tag[16])
{
    int written = 0;
    uint8_t none[16];
    if (EVP_CIPHER_CTX_ctrl(key->aes, EVP_CTRL_GCM_SET_TAG, 16, (void *)tag) != 1)
        return -1;
    return EVP_DecryptFinal_ex(key->aes, none, &written) == 1 ? 0 : -1;
}

int stream_open(const stream_key_t *key, uint64_t seq, const uint8_t *ad, size_t ad_len,
                uint8_t *data, size_t len, const uint8_t tag[16])
{
    if (key->cipher == STREAM_CIPHER_AES256GCM) {
        if (stream_open_begin(key, seq, ad, ad_len) != 0
            || stream_open_piece(key, data, data, len) != 0)
            return -1;
        return stream_open_end(key, tag);
    }
    uint8_t nonce[24];
    nonce_of(seq, nonce);
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

static int stream_key_derive(stream_key_t *out, stream_cipher_t cipher, const uint8_t base[32],
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
    int rc = stream_key_init(out, cipher, raw);
    sodium_memzero(raw, sizeof raw);
    sodium_memzero(&state, sizeof state);
    return rc;
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
    rc = 0;
    for (uint32_t j = 0; j < streams && rc == 0; j++) {
        stream_key_t *out_s2r = client ? &session->send[j] : &session->recv[j];
        stream_key_t *out_r2s = client ? &session->recv[j] : &session->send[j];
        if (stream_key_derive(out_s2r, cipher, s2r, STREAM_SENDER_TO_RECEIVER, j, transcript,
                              static_key) != 0
            || stream_key_derive(out_r2s, cipher, r2s, STREAM_RECEIVER_TO_SENDER, j, transcript,
                                 static_key) != 0)
            rc = -2;
    }
    sodium_memzero(rx, sizeof rx);
    sodium_memzero(tx, sizeof tx);
    return rc;
}

void stream_session_wipe(stream_session_t *session)
{
    for (uint32_t j = 0; j < STREAM_MAX_STREAMS; j++) {
        stream_key_wipe(&session->send[j]);
        stream_key_wipe(&session->recv[j]);
    }
    sodium_memzero(session, sizeof *session);
}
