/* statedir.h - an agent's state dir: who it is and which cluster it is in.
 *
 *   cluster.info   cluster name and this agent's name          (0644)
 *   cluster.key    the cluster key, same on every agent        (0600)
 *   identity.key   this agent's CURVE keypair                  (0600)
 *   admins         admin public keys the control API admits    (0600)
 *   admin.cred     an admin credential for ferryctl            (0600)
 *
 * `ferryd init` creates them; `ferryd run` loads them and refuses to start
 * when one is missing, malformed or readable by others. */
#ifndef FERRY_STATEDIR_H
#define FERRY_STATEDIR_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "common/crypto.h"

#define STATEDIR_MAX_ADMINS 64

typedef struct {
    char path[PATH_MAX];
    char cluster[64];
    char name[64];
    int founder;             /* made by `ferryd init` without --join-existing: may found the cluster */
    uint8_t cluster_key[CRYPTO_KEY_BYTES];
    crypto_identity_t identity;
    int admin_count;
    char admins[STATEDIR_MAX_ADMINS][CRYPTO_Z85_LEN + 1];
} statedir_t;

typedef struct {
    const char *dir;
    const char *cluster;     /* cluster name */
    const char *name;        /* agent name; NULL: the host name */
    /* Join an existing cluster: cluster.key must already be in `dir`
     * (copied from a member); a new identity and admin credential are made. */
    int join_existing;
} statedir_init_t;

/* Creates a new state dir. Refuses to overwrite an initialised one. */
int statedir_init(const statedir_init_t *opts, char *err, size_t errlen);
int statedir_load(statedir_t *sd, const char *dir, char *err, size_t errlen);
/* Wipes the keys from memory. */
void statedir_clear(statedir_t *sd);

/* Builds "<dir>/<file>" into out; returns 0 or -1 if it does not fit. */
int statedir_file(const char *dir, const char *file, char *out, size_t cap);

/* Points the state dir's admin.cred at `endpoint` (the agent's control API). */
int statedir_publish_endpoint(const statedir_t *sd, const char *endpoint, char *err, size_t errlen);

#endif
