/* statedir.c - see statedir.h. */
#include "agent/statedir.h"
#include "common/credential.h"
#include "common/fsutil.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int statedir_file(const char *dir, const char *file, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", dir, file);
    return (n > 0 && (size_t)n < cap) ? 0 : -1;
}

static int valid_name(const char *s)
{
    if (!s || !*s || strlen(s) > 63)
        return 0;
    for (const char *p = s; *p; p++)
        if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') || ('0' <= *p && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return 0;
    return 1;
}

int statedir_init(const statedir_init_t *opts, char *err, size_t errlen)
{
    char host[256] = "";
    const char *name = opts->name;
    if (!name) {
        gethostname(host, sizeof(host) - 1);
        name = host;
    }
    if (!valid_name(opts->cluster)) {
        snprintf(err, errlen, "cluster name '%s' must be 1-63 letters, digits, '-', '_' or '.'",
                 opts->cluster ? opts->cluster : "");
        return -EINVAL;
    }
    if (!valid_name(name)) {
        snprintf(err, errlen, "agent name '%s' must be 1-63 letters, digits, '-', '_' or '.'", name);
        return -EINVAL;
    }
    int rc = fs_mkdirs(opts->dir, 0700);
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot create: %s", opts->dir, strerror(-rc));
        return rc;
    }
    char info_path[PATH_MAX], key_path[PATH_MAX], id_path[PATH_MAX], admins_path[PATH_MAX], cred_path[PATH_MAX];
    if (statedir_file(opts->dir, "cluster.info", info_path, sizeof(info_path)) ||
        statedir_file(opts->dir, "cluster.key", key_path, sizeof(key_path)) ||
        statedir_file(opts->dir, "identity.key", id_path, sizeof(id_path)) ||
        statedir_file(opts->dir, "admins", admins_path, sizeof(admins_path)) ||
        statedir_file(opts->dir, "admin.cred", cred_path, sizeof(cred_path))) {
        snprintf(err, errlen, "%s: path too long", opts->dir);
        return -ENAMETOOLONG;
    }
    if (access(info_path, F_OK) == 0) {
        snprintf(err, errlen, "%s is already initialised (remove it first to start over)", opts->dir);
        return -EEXIST;
    }

    uint8_t cluster_key[CRYPTO_KEY_BYTES];
    if (opts->join_existing) {
        rc = crypto_cluster_key_load(cluster_key, key_path, err, errlen);
        if (rc != 0)
            return rc;   /* err says what: missing, unreadable or group-readable */
    } else {
        if (access(key_path, F_OK) == 0) {
            snprintf(err, errlen, "%s exists: use --join-existing to join the cluster it belongs to", key_path);
            return -EEXIST;
        }
        crypto_cluster_key_generate(cluster_key);
        rc = crypto_cluster_key_save(cluster_key, key_path, err, errlen);
        if (rc != 0)
            goto out;
    }

    crypto_identity_t identity;
    credential_t cred;
    memset(&cred, 0, sizeof(cred));
    if (crypto_identity_generate(&identity) != 0 || crypto_identity_generate(&cred.client) != 0) {
        snprintf(err, errlen, "cannot generate CURVE keys (libzmq built without CURVE?)");
        rc = -EINVAL;
        goto out;
    }
    rc = crypto_identity_save(&identity, id_path, err, errlen);
    if (rc != 0)
        goto out;

    snprintf(cred.cluster, sizeof(cred.cluster), "%s", opts->cluster);
    snprintf(cred.endpoint, sizeof(cred.endpoint), "tcp://127.0.0.1:7400");
    snprintf(cred.server_public, sizeof(cred.server_public), "%s", identity.public_z85);
    rc = credential_save(&cred, cred_path, err, errlen);
    if (rc != 0)
        goto out;

    char admins[256];
    int n = snprintf(admins, sizeof(admins), "# admin public keys admitted by the control API\nadmin = %s\n",
                     cred.client.public_z85);
    rc = fs_write_atomic(admins_path, admins, (size_t)n, 0600);
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot write: %s", admins_path, strerror(-rc));
        goto out;
    }
    /* cluster.info goes last: its presence marks a complete state dir. */
    char info[256];
    n = snprintf(info, sizeof(info), "# ferry agent state\ncluster = %s\nname = %s\nfounder = %s\n", opts->cluster,
                 name, opts->join_existing ? "no" : "yes");
    rc = fs_write_atomic(info_path, info, (size_t)n, 0644);
    if (rc != 0)
        snprintf(err, errlen, "%s: cannot write: %s", info_path, strerror(-rc));
out:
    sodium_memzero(cluster_key, sizeof(cluster_key));
    sodium_memzero(&identity, sizeof(identity));
    sodium_memzero(&cred, sizeof(cred));
    return rc;
}

static int load_admins(statedir_t *sd, const char *path, char *err, size_t errlen)
{
    int rc = fs_check_private(path, err, errlen);
    if (rc != 0)
        return rc;
    char *text = NULL;
    rc = fs_read_small(path, 64 * 1024, &text, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    int line_no = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        while (*line == ' ' || *line == '\t')
            line++;
        if (*line == '#' || *line == '\0')
            continue;
        char key[CRYPTO_Z85_LEN + 1];
        if (crypto_keyfile_get(line, "admin", key, sizeof(key)) != 0 || !crypto_z85_key_valid(key)) {
            snprintf(err, errlen, "%s:%d: expected 'admin = <40-character z85 key>'", path, line_no);
            rc = -EINVAL;
            break;
        }
        if (sd->admin_count == STATEDIR_MAX_ADMINS) {
            snprintf(err, errlen, "%s:%d: more than %d admin keys", path, line_no, STATEDIR_MAX_ADMINS);
            rc = -E2BIG;
            break;
        }
        memcpy(sd->admins[sd->admin_count++], key, sizeof(key));
    }
    free(text);
    return rc;
}

int statedir_load(statedir_t *sd, const char *dir, char *err, size_t errlen)
{
    memset(sd, 0, sizeof(*sd));
    snprintf(sd->path, sizeof(sd->path), "%s", dir);
    char path[PATH_MAX];
    char *text = NULL;
    if (statedir_file(dir, "cluster.info", path, sizeof(path)) != 0) {
        snprintf(err, errlen, "%s: path too long", dir);
        return -ENAMETOOLONG;
    }
    int rc = fs_read_small(path, 4096, &text, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s (run 'ferryd init --cluster NAME --state-dir %s' first)", path,
                 strerror(-rc), dir);
        return rc;
    }
    if (crypto_keyfile_get(text, "cluster", sd->cluster, sizeof(sd->cluster)) != 0 ||
        crypto_keyfile_get(text, "name", sd->name, sizeof(sd->name)) != 0 ||
        !valid_name(sd->cluster) || !valid_name(sd->name)) {
        snprintf(err, errlen, "%s: 'cluster' and 'name' must both be set to valid names", path);
        free(text);
        return -EINVAL;
    }
    char founder[8] = "no";
    crypto_keyfile_get(text, "founder", founder, sizeof(founder));
    sd->founder = strcmp(founder, "yes") == 0;
    free(text);

    statedir_file(dir, "cluster.key", path, sizeof(path));
    if ((rc = crypto_cluster_key_load(sd->cluster_key, path, err, errlen)) != 0)
        goto fail;
    statedir_file(dir, "identity.key", path, sizeof(path));
    if ((rc = crypto_identity_load(&sd->identity, path, err, errlen)) != 0)
        goto fail;
    statedir_file(dir, "admins", path, sizeof(path));
    if ((rc = load_admins(sd, path, err, errlen)) != 0)
        goto fail;
    return 0;
fail:
    statedir_clear(sd);
    return rc;
}

void statedir_clear(statedir_t *sd)
{
    sodium_memzero(sd, sizeof(*sd));
}

int statedir_publish_endpoint(const statedir_t *sd, const char *endpoint, char *err, size_t errlen)
{
    char path[PATH_MAX];
    statedir_file(sd->path, "admin.cred", path, sizeof(path));
    credential_t cred;
    int rc = credential_load(&cred, path, err, errlen);
    if (rc == 0 && strcmp(cred.endpoint, endpoint) != 0) {
        snprintf(cred.endpoint, sizeof(cred.endpoint), "%s", endpoint);
        rc = credential_save(&cred, path, err, errlen);
    }
    sodium_memzero(&cred, sizeof(cred));
    return rc;
}
