/* crypto.c - see crypto.h. */
#include "common/crypto.h"
#include "common/fsutil.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define KEYFILE_MAX 4096

int crypto_init(void)
{
    return sodium_init() < 0 ? -1 : 0;
}

bool crypto_z85_key_valid(const char *z85)
{
    if (!z85 || strlen(z85) != CRYPTO_Z85_LEN)
        return false;
    uint8_t raw[CRYPTO_KEY_BYTES];
    return zmq_z85_decode(raw, z85) != NULL;
}

int crypto_keyfile_get(const char *text, const char *name, char *value, size_t cap)
{
    size_t name_len = strlen(name);
    const char *line = text;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t line_len = end ? (size_t)(end - line) : strlen(line);
        const char *p = line;
        while (p < line + line_len && (*p == ' ' || *p == '\t'))
            p++;
        if ((size_t)(line + line_len - p) > name_len && strncmp(p, name, name_len) == 0) {
            const char *q = p + name_len;
            while (q < line + line_len && (*q == ' ' || *q == '\t'))
                q++;
            if (q < line + line_len && *q == '=') {
                q++;
                while (q < line + line_len && (*q == ' ' || *q == '\t'))
                    q++;
                const char *v_end = line + line_len;
                while (v_end > q && (v_end[-1] == ' ' || v_end[-1] == '\t' || v_end[-1] == '\r'))
                    v_end--;
                size_t v_len = (size_t)(v_end - q);
                if (v_len + 1 > cap)
                    return -1;
                memcpy(value, q, v_len);
                value[v_len] = '\0';
                return 0;
            }
        }
        line = end ? end + 1 : NULL;
    }
    return -1;
}

/* Loads a private key file's text after checking its permissions. */
static int load_private_text(const char *path, char **text, char *err, size_t errlen)
{
    int rc = fs_check_private(path, err, errlen);
    if (rc != 0)
        return rc;
    rc = fs_read_small(path, KEYFILE_MAX, text, NULL);
    if (rc != 0)
        snprintf(err, errlen, "%s: %s", path, rc == -EFBIG ? "too large for a key file" : strerror(-rc));
    return rc;
}

int crypto_identity_generate(crypto_identity_t *id)
{
    return zmq_curve_keypair(id->public_z85, id->secret_z85) == 0 ? 0 : -1;
}

int crypto_identity_save(const crypto_identity_t *id, const char *path, char *err, size_t errlen)
{
    char text[256];
    int n = snprintf(text, sizeof(text),
                     "# ferry agent identity (CURVE keypair); keep secret\n"
                     "public = %s\nsecret = %s\n", id->public_z85, id->secret_z85);
    int rc = fs_write_atomic(path, text, (size_t)n, 0600);
    sodium_memzero(text, sizeof(text));
    if (rc != 0)
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(-rc));
    return rc;
}

int crypto_identity_load(crypto_identity_t *id, const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    int rc = load_private_text(path, &text, err, errlen);
    if (rc != 0)
        return rc;
    rc = -EINVAL;
    if (crypto_keyfile_get(text, "public", id->public_z85, sizeof(id->public_z85)) != 0 ||
        !crypto_z85_key_valid(id->public_z85))
        snprintf(err, errlen, "%s: 'public' is missing or not a 40-character z85 key", path);
    else if (crypto_keyfile_get(text, "secret", id->secret_z85, sizeof(id->secret_z85)) != 0 ||
             !crypto_z85_key_valid(id->secret_z85))
        snprintf(err, errlen, "%s: 'secret' is missing or not a 40-character z85 key", path);
    else
        rc = 0;
    sodium_memzero(text, strlen(text));
    free(text);
    return rc;
}

int crypto_identity_raw(const crypto_identity_t *id, uint8_t public_key[32], uint8_t secret_key[32])
{
    if (!zmq_z85_decode(public_key, id->public_z85) || !zmq_z85_decode(secret_key, id->secret_z85))
        return -1;
    return 0;
}

void crypto_cluster_key_generate(uint8_t key[CRYPTO_KEY_BYTES])
{
    randombytes_buf(key, CRYPTO_KEY_BYTES);
}

int crypto_cluster_key_save(const uint8_t key[CRYPTO_KEY_BYTES], const char *path, char *err, size_t errlen)
{
    char z85[CRYPTO_Z85_LEN + 1];
    char text[128];
    zmq_z85_encode(z85, key, CRYPTO_KEY_BYTES);
    int n = snprintf(text, sizeof(text), "# ferry cluster key; every agent of the cluster holds the same\n"
                                         "key = %s\n", z85);
    int rc = fs_write_atomic(path, text, (size_t)n, 0600);
    sodium_memzero(text, sizeof(text));
    sodium_memzero(z85, sizeof(z85));
    if (rc != 0)
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(-rc));
    return rc;
}

int crypto_cluster_key_load(uint8_t key[CRYPTO_KEY_BYTES], const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    int rc = load_private_text(path, &text, err, errlen);
    if (rc != 0)
        return rc;
    char z85[CRYPTO_Z85_LEN + 1];
    rc = 0;
    if (crypto_keyfile_get(text, "key", z85, sizeof(z85)) != 0 || !crypto_z85_key_valid(z85)) {
        snprintf(err, errlen, "%s: 'key' is missing or not a 40-character z85 key", path);
        rc = -EINVAL;
    } else {
        zmq_z85_decode(key, z85);
    }
    sodium_memzero(z85, sizeof(z85));
    sodium_memzero(text, strlen(text));
    free(text);
    return rc;
}

int crypto_seal(const uint8_t key[CRYPTO_KEY_BYTES], const uint8_t *plain, size_t len,
                const uint8_t *ad, size_t ad_len, uint8_t *out, size_t *out_len)
{
    uint8_t *nonce = out;
    randombytes_buf(nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    unsigned long long clen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_encrypt(out + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                                                   &clen, plain, len, ad, ad_len, NULL, nonce, key) != 0)
        return -1;
    *out_len = (size_t)clen + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
    return 0;
}

int crypto_open(const uint8_t key[CRYPTO_KEY_BYTES], const uint8_t *sealed, size_t len,
                const uint8_t *ad, size_t ad_len, uint8_t *out, size_t *out_len)
{
    if (len < CRYPTO_SEAL_OVERHEAD)
        return -1;
    unsigned long long mlen = 0;
    const uint8_t *nonce = sealed;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &mlen, NULL,
                                                   sealed + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                                                   len - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                                                   ad, ad_len, nonce, key) != 0)
        return -1;
    *out_len = (size_t)mlen;
    return 0;
}

bool crypto_equal(const void *a, const void *b, size_t len)
{
    return sodium_memcmp(a, b, len) == 0;
}
