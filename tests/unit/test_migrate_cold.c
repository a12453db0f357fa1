/* test_migrate_cold.c - powered-off VMs: the image format on disk, and
 * cold migration of an image over the encrypted stream, interrupted and
 * resumed where the receiver's journal says it stopped.
 *
 *   image        save a paused VM, verify, load it into a new VM that runs
 *                on (counters continue, self-check clean); corrupted
 *                memory, manifest or state are caught with a reason
 *   cold copy    a copy cancelled half-way leaves a partial file and a
 *                journal; the next copy resumes there, sends only the rest,
 *                and the result verifies and boots; a partial copy of
 *                another image is thrown away; kinds must match
 *
 *   test_migrate_cold [PATTERN]
 *
 * Without /dev/kvm every test prints "SKIPPED: no /dev/kvm" and skips. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/fsutil.h"
#include "common/log.h"
#include "guest/protocol.h"
#include "migrate_fixture.h"
#include "migration/image.h"

typedef struct {
    mf_fixture_t *f;
    char root[256];
    char source[300], destination[300];
} cold_t;

static int cold_setup(void **state)
{
    mf_setup(state);
    cold_t *c = calloc(1, sizeof *c);
    c->f = *state;
    snprintf(c->root, sizeof c->root, "/tmp/ferry-test-cold-XXXXXX");
    assert_non_null(mkdtemp(c->root));
    snprintf(c->source, sizeof c->source, "%s/source", c->root);
    snprintf(c->destination, sizeof c->destination, "%s/destination", c->root);
    *state = c;
    return 0;
}

static int cold_teardown(void **state)
{
    cold_t *c = *state;
    fs_remove_tree(c->root);
    void *f = c->f;
    free(c);
    return mf_teardown(&f);
}

static bool exists(const char *dir, const char *file)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return access(path, F_OK) == 0;
}

/* Boots a guest that writes, lets it write, pauses it and saves its image. */
static vm_status_t make_image(cold_t *c, const char *name, const char *dir)
{
    vm_t *vm = mf_boot(c->f, name, 64 * MF_MIB, "profile=db wss=24M rate=4M print=0 verify=50000");
    vm_status_t st;
    assert_true(mf_wait(vm, (mf_goal_t){ .written = 2000 }, MF_WAIT_MS, &st));
    assert_int_equal(vm_pause(vm), 0);
    vm_status(vm, &st);
    char err[256] = "";
    assert_int_equal(image_save(vm, &c->f->config, dir, err, sizeof err), 0);
    vm_destroy(&vm);
    return st;
}

/* Loads the image, powers it on, and checks the guest carries on intact. */
static void assert_image_boots(const char *dir, const vm_status_t *saved)
{
    char err[256] = "";
    vm_t *vm = image_load(dir, NULL, NULL, err, sizeof err);
    if (!vm)
        fail_msg("image_load: %s", err);
    vm_status_t st;
    vm_status(vm, &st);
    assert_int_equal(st.heartbeat, saved->heartbeat);        /* the guest's counters came along */
    assert_int_equal(st.pages_written, saved->pages_written);
    assert_int_equal(vm_start(vm), 0);
    assert_true(mf_wait(vm, (mf_goal_t){ .heartbeat = saved->heartbeat + 5,
                                         .sweeps = saved->sweeps + 2,
                                         .written = saved->pages_written + 50 },
                        MF_WAIT_MS, &st));
    assert_int_equal(st.check_errors, 0);
    assert_int_equal(st.guest_status, GUEST_STATUS_RUNNING);
    vm_destroy(&vm);
}

/* --- the image format --------------------------------------------------------------- */

static void flip_byte(const char *dir, const char *file, off_t at)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

static void test_image_round_trip(void **state)
{
    MF_REQUIRE_KVM();
    cold_t *c = *state;
    vm_status_t saved = make_image(c, "img", c->source);
    assert_true(exists(c->source, IMAGE_MEMORY_FILE));
    assert_true(exists(c->source, IMAGE_STATE_FILE));
    assert_true(exists(c->source, IMAGE_MANIFEST_FILE));
    char err[256] = "";
    image_manifest_t m;
    assert_int_equal(image_read_manifest(c->source, &m, err, sizeof err), 0);
    assert_string_equal(m.name, "img");
    assert_int_equal(m.memory_bytes, 64 * MF_MIB);
    assert_int_equal(m.vcpus, 1);
    assert_string_equal(m.cmdline, "profile=db wss=24M rate=4M print=0 verify=50000");
    assert_int_equal(image_verify(c->source, err, sizeof err), 0);
    /* Sparse: the file holds about what the guest wrote, not 64 MiB. */
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", c->source, IMAGE_MEMORY_FILE);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 64 * MF_MIB);
    assert_true((uint64_t)st.st_blocks * 512 < 48 * MF_MIB);
    assert_image_boots(c->source, &saved);
}

static void test_image_corruption_is_caught(void **state)
{
    MF_REQUIRE_KVM();
    cold_t *c = *state;
    make_image(c, "img-bad", c->source);
    char err[256] = "";
    image_manifest_t m;

    /* A flipped bit in memory: the hash says so. Find a page with data. */
    char path[512];
    snprintf(path, sizeof path, "%s/%s", c->source, IMAGE_MEMORY_FILE);
    int fd = open(path, O_RDONLY);
    off_t data = lseek(fd, 0, SEEK_DATA);
    close(fd);
    assert_true(data >= 0);
    flip_byte(c->source, IMAGE_MEMORY_FILE, data + 100);
    assert_int_equal(image_verify(c->source, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "memory does not match"));
    flip_byte(c->source, IMAGE_MEMORY_FILE, data + 100);
    assert_int_equal(image_verify(c->source, err, sizeof err), 0);

    /* The state: refused before anything loads it. */
    flip_byte(c->source, IMAGE_STATE_FILE, 40);
    assert_null(image_open(c->source, err, sizeof err));
    assert_non_null(strstr(err, "does not match the manifest"));
    assert_null(image_load(c->source, NULL, NULL, err, sizeof err));
    flip_byte(c->source, IMAGE_STATE_FILE, 40);

    /* The manifest: its checksum catches any change. */
    flip_byte(c->source, IMAGE_MANIFEST_FILE, 9);
    assert_int_equal(image_read_manifest(c->source, &m, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "checksum"));
    flip_byte(c->source, IMAGE_MANIFEST_FILE, 9);
    assert_int_equal(image_verify(c->source, err, sizeof err), 0);

    /* No manifest, no image. */
    assert_int_equal(image_remove(c->source), 0);
    assert_int_equal(image_read_manifest(c->source, &m, err, sizeof err), -ENOENT);
    assert_false(exists(c->source, IMAGE_MEMORY_FILE));
}

/* The formats' decoders with truncated and random input. */
static void test_manifest_and_journal_decoders(void **state)
{
    (void)state;
    image_manifest_t m = { .memory_bytes = 64 * MF_MIB, .vcpus = 2, .state_bytes = 9000 };
    strcpy(m.name, "decoder");
    strcpy(m.cmdline, "profile=idle");
    memset(m.memory_hash, 1, sizeof m.memory_hash);
    memset(m.state_hash, 2, sizeof m.state_hash);
    uint8_t buf[IMAGE_MANIFEST_MAX];
    size_t len = image_manifest_encode(&m, buf, sizeof buf);
    assert_true(len > IMAGE_MANIFEST_FIXED);
    image_manifest_t out;
    const char *why = NULL;
    assert_int_equal(image_manifest_decode(buf, len, &out, &why), 0);
    assert_string_equal(out.name, "decoder");
    assert_int_equal(out.state_bytes, 9000);
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(image_manifest_decode(buf, cut, &out, &why), -EINVAL);
    for (size_t i = 0; i < len; i++) {   /* every single-byte change is caught */
        buf[i] ^= 0x10;
        assert_int_equal(image_manifest_decode(buf, len, &out, &why), -EINVAL);
        buf[i] ^= 0x10;
    }
    uint8_t id1[IMAGE_HASH_BYTES], id2[IMAGE_HASH_BYTES];
    assert_int_equal(image_manifest_id(&m, id1), 0);
    m.state_hash[0] ^= 1;
    assert_int_equal(image_manifest_id(&m, id2), 0);
    assert_memory_not_equal(id1, id2, IMAGE_HASH_BYTES);   /* the id covers everything */
    m.vcpus = 0;
    assert_int_equal(image_manifest_encode(&m, buf, sizeof buf), 0);

    image_journal_t j = { .pages_done = 12345 };
    memcpy(j.image_id, id1, IMAGE_HASH_BYTES);
    uint8_t jb[IMAGE_JOURNAL_SIZE];
    image_journal_encode(&j, jb);
    image_journal_t jo;
    assert_int_equal(image_journal_decode(jb, sizeof jb, &jo, &why), 0);
    assert_int_equal(jo.pages_done, 12345);
    assert_memory_equal(jo.image_id, id1, IMAGE_HASH_BYTES);
    assert_int_equal(image_journal_decode(jb, sizeof jb - 1, &jo, &why), -EINVAL);
    jb[41] ^= 1;   /* a torn or edited journal */
    assert_int_equal(image_journal_decode(jb, sizeof jb, &jo, &why), -EINVAL);
    assert_non_null(strstr(why, "checksum"));
}

/* --- cold migration ----------------------------------------------------------------------- */

static migration_receiver_config_t cold_receiver(cold_t *c)
{
    migration_receiver_config_t cfg = mf_receiver_config(c->f);
    cfg.image_dir = c->destination;
    return cfg;
}

static migration_params_t cold_params(cold_t *c, const char *endpoint, mf_commit_t *commit)
{
    migration_params_t p = mf_sender_params(c->f, endpoint, commit);
    p.vm_config = NULL;                  /* the image's manifest describes the VM */
    p.checkpoint_bytes = 1 * MF_MIB;
    p.progress_interval_ms = 0;          /* every batch: the cancel lands mid-copy */
    return p;
}

/* Cancels the copy once half of its pages are on their way. */
typedef struct {
    uint64_t pass_pages;
    uint64_t sent_at_cancel;
} cutter_t;

static int cut_midway(const migration_progress_t *pr, void *ctx)
{
    cutter_t *cut = ctx;
    if (pr->phase != MIGRATION_PHASE_FULL)
        return 0;
    cut->pass_pages = pr->pass_pages;
    if (pr->pass_pages_sent * 2 < pr->pass_pages)
        return 0;
    cut->sent_at_cancel = pr->pass_pages_sent;
    return 1;
}

static uint64_t journal_pages(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, IMAGE_JOURNAL_FILE);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(fs_read_small(path, 256, &data, &len), 0);
    image_journal_t j;
    const char *why = NULL;
    assert_int_equal(image_journal_decode((uint8_t *)data, len, &j, &why), 0);
    free(data);
    return j.pages_done;
}

static void test_cold_copy_resumes_after_interruption(void **state)
{
    MF_REQUIRE_KVM();
    cold_t *c = *state;
    vm_status_t saved = make_image(c, "cold", c->source);

    /* First attempt: cancelled once half the data is on its way. */
    migration_receiver_config_t rcfg = cold_receiver(c);
    mf_rx_t *r = mf_rx_start(&rcfg, NULL, NULL);
    mf_commit_t commit = { 0 };
    migration_params_t p = cold_params(c, migration_receiver_endpoint(r->rx), &commit);
    cutter_t cut = { 0 };
    migration_result_t first;
    int rc = migration_send_image(c->source, &p, cut_midway, &cut, &first);
    mf_rx_join(r);
    assert_int_equal(rc, MIGRATION_ERR_CANCELLED);
    assert_int_equal(r->rc, MIGRATION_ERR_ABORTED);
    assert_int_equal(commit.calls, 0);
    assert_true(cut.sent_at_cancel < cut.pass_pages);   /* there was more to send */
    mf_rx_free(&r);
    /* What the receiver kept: a partial file, a journal, no image. */
    assert_true(exists(c->destination, IMAGE_PARTIAL_FILE));
    assert_false(exists(c->destination, IMAGE_MANIFEST_FILE));
    uint64_t done = journal_pages(c->destination);
    assert_true(done > 0);
    char err[256] = "";
    image_manifest_t m;
    assert_int_equal(image_read_manifest(c->destination, &m, err, sizeof err), -ENOENT);

    /* Second attempt, a new receiver on the same directory: resumes. */
    rcfg = cold_receiver(c);
    r = mf_rx_start(&rcfg, NULL, NULL);
    p = cold_params(c, migration_receiver_endpoint(r->rx), &commit);
    migration_result_t second;
    rc = migration_send_image(c->source, &p, NULL, NULL, &second);
    mf_rx_join(r);
    if (rc)
        fail_msg("resumed copy failed: %s (receiver: %s)", second.error_text, r->result.error_text);
    assert_int_equal(r->rc, 0);
    assert_int_equal(second.resume_from_page, done);
    assert_int_equal(r->result.resume_from_page, done);
    assert_true(second.pages_sent < cut.pass_pages);   /* only the rest travelled */
    assert_true(second.committed);
    assert_int_equal(commit.calls, 1);
    assert_true(second.hash_verified);
    assert_null(r->vm);                 /* cold: an image, not a VM */
    mf_rx_free(&r);

    /* A complete image, the same one, and nothing partial left. */
    assert_true(exists(c->destination, IMAGE_MANIFEST_FILE));
    assert_false(exists(c->destination, IMAGE_PARTIAL_FILE));
    assert_false(exists(c->destination, IMAGE_JOURNAL_FILE));
    image_manifest_t a, b;
    assert_int_equal(image_read_manifest(c->source, &a, err, sizeof err), 0);
    assert_int_equal(image_read_manifest(c->destination, &b, err, sizeof err), 0);
    assert_memory_equal(&a, &b, sizeof a);
    assert_int_equal(image_verify(c->destination, err, sizeof err), 0);
    print_message("cold copy: first attempt %llu pages, then resumed at page %llu: %llu pages, "
                  "%llu bytes\n", (unsigned long long)first.pages_sent, (unsigned long long)done,
                  (unsigned long long)second.pages_sent, (unsigned long long)second.bytes_sent);
    assert_image_boots(c->destination, &saved);
}

/* A partial copy of another image is not resumed from, and a receiver of
 * one kind refuses the other kind. */
static void test_stale_partial_and_wrong_kind(void **state)
{
    MF_REQUIRE_KVM();
    cold_t *c = *state;
    make_image(c, "stale", c->source);
    /* A partial copy of "stale"... */
    migration_receiver_config_t rcfg = cold_receiver(c);
    mf_rx_t *r = mf_rx_start(&rcfg, NULL, NULL);
    mf_commit_t commit = { 0 };
    migration_params_t p = cold_params(c, migration_receiver_endpoint(r->rx), &commit);
    cutter_t cut = { 0 };
    migration_result_t res;
    assert_int_equal(migration_send_image(c->source, &p, cut_midway, &cut, &res),
                     MIGRATION_ERR_CANCELLED);
    mf_rx_join(r);
    mf_rx_free(&r);
    assert_true(journal_pages(c->destination) > 0);

    /* ...then another image goes to the same place: from the start. */
    image_remove(c->source);
    make_image(c, "fresh", c->source);
    rcfg = cold_receiver(c);
    r = mf_rx_start(&rcfg, NULL, NULL);
    p = cold_params(c, migration_receiver_endpoint(r->rx), &commit);
    assert_int_equal(migration_send_image(c->source, &p, NULL, NULL, &res), 0);
    mf_rx_join(r);
    assert_int_equal(r->rc, 0);
    assert_int_equal(res.resume_from_page, 0);
    assert_true(res.hash_verified);
    mf_rx_free(&r);
    char err[256] = "";
    assert_int_equal(image_verify(c->destination, err, sizeof err), 0);
    image_manifest_t m;
    assert_int_equal(image_read_manifest(c->destination, &m, err, sizeof err), 0);
    assert_string_equal(m.name, "fresh");

    /* A complete image is not overwritten by a second copy. */
    rcfg = cold_receiver(c);
    r = mf_rx_start(&rcfg, NULL, NULL);
    p = cold_params(c, migration_receiver_endpoint(r->rx), &commit);
    assert_int_equal(migration_send_image(c->source, &p, NULL, NULL, &res), MIGRATION_ERR_REFUSED);
    assert_non_null(strstr(res.error_text, "already holds a complete image"));
    mf_rx_join(r);
    mf_rx_free(&r);

    /* A cold receiver refuses a live migration. */
    vm_t *vm = mf_boot(c->f, "live-to-cold", 64 * MF_MIB, "profile=idle print=0");
    rcfg = cold_receiver(c);
    r = mf_rx_start(&rcfg, NULL, NULL);
    mf_commit_t live_commit = { .source = vm };
    p = mf_sender_params(c->f, migration_receiver_endpoint(r->rx), &live_commit);
    assert_int_equal(migration_send(&vm, &p, NULL, NULL, &res), MIGRATION_ERR_REFUSED);
    assert_non_null(strstr(res.error_text, "expects a cold migration"));
    mf_rx_join(r);
    mf_rx_free(&r);
    mf_assert_runs_here(vm);
    vm_destroy(&vm);
}

int main(int argc, char **argv)
{
    log_set_level(getenv("FERRY_TEST_LOG") ? LOG_LEVEL_INFO : LOG_LEVEL_OFF);
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest_and_journal_decoders),
        cmocka_unit_test_setup_teardown(test_image_round_trip, cold_setup, cold_teardown),
        cmocka_unit_test_setup_teardown(test_image_corruption_is_caught, cold_setup, cold_teardown),
        cmocka_unit_test_setup_teardown(test_cold_copy_resumes_after_interruption, cold_setup,
                                        cold_teardown),
        cmocka_unit_test_setup_teardown(test_stale_partial_and_wrong_kind, cold_setup,
                                        cold_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
