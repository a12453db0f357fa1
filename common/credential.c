/* credential.c - see credential.h. */
#include "common/credential.h"
#include "common/fsutil.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int credential_save(const credential_t *cred, const char *path, char *err, size_t errlen)
{
    char text[1024];
    int n = snprintf(text, sizeof(text),
                     "# ferry admin credential for ferryctl; keep secret\n"
                     "cluster = %s\nendpoint = %s\nserver_public = %s\n"
                     "client_public = %s\nclient_secret = %s\n",
                     cred->cluster, cred->endpoint, cred->server_public,
                     cred->client.public_z85, cred->client.secret_z85);
    int rc = (n > 0 && (size_t)n < sizeof(text)) ? fs_write_atomic(path, text, (size_t)n, 0600) : -ENAMETOOLONG;
    sodium_memzero(text, sizeof(text));
    if (rc != 0)
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(-rc));
    return rc;
}

int credential_load(credential_t *cred, const char *path, char *err, size_t errlen)
{
    memset(cred, 0, sizeof(*cred));
    int rc = fs_check_private(path, err, errlen);
    if (rc != 0)
        return rc;
    char *text = NULL;
    rc = fs_read_small(path, 4096, &text, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", path, rc == -EFBIG ? "too large for a credential" : strerror(-rc));
        return rc;
    }
    struct { const char *name; char *out; size_t cap; int is_key; } fields[] = {
        { "cluster", cred->cluster, sizeof(cred->cluster), 0 },
        { "endpoint", cred->endpoint, sizeof(cred->endpoint), 0 },
        { "server_public", cred->server_public, sizeof(cred->server_public), 1 },
        { "client_public", cred->client.public_z85, sizeof(cred->client.public_z85), 1 },
        { "client_secret", cred->client.secret_z85, sizeof(cred->client.secret_z85), 1 },
    };
    rc = 0;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]) && rc == 0; i++) {
        if (crypto_keyfile_get(text, fields[i].name, fields[i].out, fields[i].cap) != 0 ||
            fields[i].out[0] == '\0') {
            snprintf(err, errlen, "%s: '%s' is missing or too long", path, fields[i].name);
            rc = -EINVAL;
        } else if (fields[i].is_key && !crypto_z85_key_valid(fields[i].out)) {
            snprintf(err, errlen, "%s: '%s' is not a 40-character z85 key", path, fields[i].name);
            rc = -EINVAL;
        }
    }
    sodium_memzero(text, strlen(text));
    free(text);
    return rc;
}
