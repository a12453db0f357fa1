/* credential.h - the admin credential file that lets ferryctl reach an agent.
 *
 *   # ferry admin credential; keep secret
 *   cluster = prod
 *   endpoint = tcp://127.0.0.1:7400
 *   server_public = <z85: the agent's CURVE public key>
 *   client_public = <z85>
 *   client_secret = <z85>
 *
 * `ferryd init` writes it into the state dir with mode 0600; the agent
 * admits client_public through its ZAP handler. */
#ifndef FERRY_CREDENTIAL_H
#define FERRY_CREDENTIAL_H

#include <stddef.h>

#include "common/crypto.h"

typedef struct {
    char cluster[64];
    char endpoint[256];
    char server_public[CRYPTO_Z85_LEN + 1];
    crypto_identity_t client;
} credential_t;

int credential_save(const credential_t *cred, const char *path, char *err, size_t errlen);
/* Checks the file's mode (0600) and every field; `err` names file and field. */
int credential_load(credential_t *cred, const char *path, char *err, size_t errlen);

#endif
