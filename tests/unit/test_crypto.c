/* test_crypto.c - key files (mode 0600, refused when group/world readable),
 * the cluster key, sealing, credentials and the state dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/statedir.h"
#include "common/credential.h"
#include "common/crypto.h"
#include "common/fsutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char dir[64];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-test-crypto.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    *state = f;
    return crypto_init();
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    fs_remove_tree(f->dir);
    free(f);
    return 0;
}

static void path_in(const fixture_t *f, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", f->dir, name);
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static void identity_file_is_private(void **state)
{
    fixture_t *f = *state;
    char path[128], err[512];
    path_in(f, "identity.key", path, sizeof(path));
    crypto_identity_t id, loaded;
    assert_int_equal(crypto_identity_generate(&id), 0);
    assert_int_equal(crypto_identity_save(&id, path, err, sizeof(err)), 0);
    assert_int_equal(mode_of(path), 0600);
    assert_int_equal(crypto_identity_load(&loaded, path, err, sizeof(err)), 0);
    assert_string_equal(loaded.public_z85, id.public_z85);
    assert_string_equal(loaded.secret_z85, id.secret_z85);

    /* Group- or world-readable: refused, and the message says how to fix it. */
    const mode_t open_modes[] = { 0640, 0604, 0660, 0644 };
    for (size_t i = 0; i < sizeof(open_modes) / sizeof(open_modes[0]); i++) {
        assert_int_equal(chmod(path, open_modes[i]), 0);
        assert_int_not_equal(crypto_identity_load(&loaded, path, err, sizeof(err)), 0);
        assert_non_null(strstr(err, "chmod 600"));
        assert_non_null(strstr(err, path));
    }
}

static void malformed_key_files_are_named(void **state)
{
    fixture_t *f = *state;
    char path[128], err[512];
    path_in(f, "bad.key", path, sizeof(path));
    const char *bodies[] = {
        "public = short\nsecret = short\n",
        "",
        "secret = 0000000000000000000000000000000000000000\n",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        assert_int_equal(fs_write_atomic(path, bodies[i], strlen(bodies[i]), 0600), 0);
        crypto_identity_t id;
        assert_int_not_equal(crypto_identity_load(&id, path, err, sizeof(err)), 0);
        assert_non_null(strstr(err, "'public'"));
    }
    uint8_t key[32];
    path_in(f, "missing.key", path, sizeof(path));
    assert_int_not_equal(crypto_cluster_key_load(key, path, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "missing.key"));
}

static void cluster_key_round_trip_and_sealing(void **state)
{
    fixture_t *f = *state;
    char path[128], err[512];
    path_in(f, "cluster.key", path, sizeof(path));
    uint8_t key[32], loaded[32], other[32];
    crypto_cluster_key_generate(key);
    crypto_cluster_key_generate(other);
    assert_false(crypto_equal(key, other, 32));
    assert_int_equal(crypto_cluster_key_save(key, path, err, sizeof(err)), 0);
    assert_int_equal(mode_of(path), 0600);
    assert_int_equal(crypto_cluster_key_load(loaded, path, err, sizeof(err)), 0);
    assert_true(crypto_equal(key, loaded, 32));

    const char *msg = "probe from node-3";
    uint8_t sealed[128], opened[128];
    size_t sealed_len = 0, opened_len = 0;
    assert_int_equal(crypto_seal(key, (const uint8_t *)msg, strlen(msg), (const uint8_t *)"ad", 2, sealed,
                                 &sealed_len), 0);
    assert_int_equal(sealed_len, strlen(msg) + CRYPTO_SEAL_OVERHEAD);
    assert_int_equal(crypto_open(key, sealed, sealed_len, (const uint8_t *)"ad", 2, opened, &opened_len), 0);
    assert_int_equal(opened_len, strlen(msg));
    assert_memory_equal(opened, msg, opened_len);
    /* Wrong key, wrong associated data, any flipped bit, or truncation: refused. */
    assert_int_equal(crypto_open(other, sealed, sealed_len, (const uint8_t *)"ad", 2, opened, &opened_len), -1);
    assert_int_equal(crypto_open(key, sealed, sealed_len, (const uint8_t *)"xx", 2, opened, &opened_len), -1);
    for (size_t i = 0; i < sealed_len; i++) {
        sealed[i] ^= 0x01;
        assert_int_equal(crypto_open(key, sealed, sealed_len, (const uint8_t *)"ad", 2, opened, &opened_len), -1);
        sealed[i] ^= 0x01;
    }
    for (size_t len = 0; len < sealed_len; len++)
        assert_int_equal(crypto_open(key, sealed, len, (const uint8_t *)"ad", 2, opened, &opened_len), -1);
}

static void state_dir_init_and_load(void **state)
{
    fixture_t *f = *state;
    char dir[128], err[512], path[256];
    path_in(f, "state", dir, sizeof(dir));
    statedir_init_t opts = { .dir = dir, .cluster = "lab", .name = "host-1" };
    assert_int_equal(statedir_init(&opts, err, sizeof(err)), 0);
    /* A second init must not overwrite keys. */
    assert_int_not_equal(statedir_init(&opts, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "already initialised"));

    statedir_t sd;
    assert_int_equal(statedir_load(&sd, dir, err, sizeof(err)), 0);
    assert_string_equal(sd.cluster, "lab");
    assert_string_equal(sd.name, "host-1");
    assert_int_equal(sd.admin_count, 1);

    credential_t cred;
    snprintf(path, sizeof(path), "%s/admin.cred", dir);
    assert_int_equal(credential_load(&cred, path, err, sizeof(err)), 0);
    assert_string_equal(cred.server_public, sd.identity.public_z85);
    assert_string_equal(cred.client.public_z85, sd.admins[0]);
    assert_int_equal(statedir_publish_endpoint(&sd, "tcp://127.0.0.1:7999", err, sizeof(err)), 0);
    assert_int_equal(credential_load(&cred, path, err, sizeof(err)), 0);
    assert_string_equal(cred.endpoint, "tcp://127.0.0.1:7999");
    statedir_clear(&sd);

    /* Joining needs the cluster key copied in first. */
    char joiner[128];
    path_in(f, "joiner", joiner, sizeof(joiner));
    statedir_init_t join = { .dir = joiner, .cluster = "lab", .name = "host-2", .join_existing = 1 };
    assert_int_not_equal(statedir_init(&join, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "cluster.key"));

    /* Bad names are refused before anything is written. */
    statedir_init_t bad = { .dir = joiner, .cluster = "no spaces", .name = "h" };
    assert_int_equal(statedir_init(&bad, err, sizeof(err)), -22);
    assert_non_null(strstr(err, "cluster name"));

    /* A world-readable identity stops the load with the file named. */
    snprintf(path, sizeof(path), "%s/identity.key", dir);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_not_equal(statedir_load(&sd, dir, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "identity.key"));
}

static void credential_errors_name_the_field(void **state)
{
    fixture_t *f = *state;
    char path[128], err[512];
    path_in(f, "admin.cred", path, sizeof(path));
    const char *text = "cluster = x\nendpoint = tcp://127.0.0.1:1\nserver_public = nope\n";
    assert_int_equal(fs_write_atomic(path, text, strlen(text), 0600), 0);
    credential_t cred;
    assert_int_not_equal(credential_load(&cred, path, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "server_public"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(identity_file_is_private, setup, teardown),
        cmocka_unit_test_setup_teardown(malformed_key_files_are_named, setup, teardown),
        cmocka_unit_test_setup_teardown(cluster_key_round_trip_and_sealing, setup, teardown),
        cmocka_unit_test_setup_teardown(state_dir_init_and_load, setup, teardown),
        cmocka_unit_test_setup_teardown(credential_errors_name_the_field, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
