/* migrate_fixture.c - see migrate_fixture.h. */
#include "migrate_fixture.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <zmq.h>

#include "guest/protocol.h"

bool mf_have_kvm(void)
{
    if (access("/dev/kvm", R_OK | W_OK) == 0)
        return true;
    fprintf(stderr, "SKIPPED: no /dev/kvm\n");
    return false;
}

int64_t mf_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(int ms)
{
    struct timespec ts = { 0, ms * 1000000L };
    nanosleep(&ts, NULL);
}

static bool reached(const vm_status_t *st, const mf_goal_t *g)
{
    return st->heartbeat > g->heartbeat && st->sweeps > g->sweeps && st->pages_written >= g->written
           && (!g->round || ((st->info_valid & 1u << GUEST_INFO_TEST_ROUND)
                             && st->info[GUEST_INFO_TEST_ROUND] == g->round));
}

bool mf_wait(vm_t *vm, mf_goal_t goal, int timeout_ms, vm_status_t *out)
{
    int64_t deadline = mf_now_ms() + timeout_ms;
    vm_status_t st;
    for (;;) {
        vm_status(vm, &st);
        if (reached(&st, &goal))
            break;
        if (st.state == VM_STOPPED || mf_now_ms() > deadline) {
            print_error("%s: goal not reached (state %d %s, heartbeat %u, sweeps %llu, written "
                        "%llu, errors %llu)\n", vm_name(vm), st.state, st.stop_reason,
                        st.heartbeat, (unsigned long long)st.sweeps,
                        (unsigned long long)st.pages_written, (unsigned long long)st.check_errors);
            return false;
        }
        nap_ms(5);
    }
    if (out)
        *out = st;
    return true;
}

static void curve_identity(stream_identity_t *identity)
{
    char public_z85[41], secret_z85[41];
    assert_int_equal(zmq_curve_keypair(public_z85, secret_z85), 0);
    assert_non_null(zmq_z85_decode(identity->public_key, public_z85));
    assert_non_null(zmq_z85_decode(identity->secret_key, secret_z85));
}

int mf_setup(void **state)
{
    mf_fixture_t *f = calloc(1, sizeof *f);
    curve_identity(&f->source);
    curve_identity(&f->destination);
    curve_identity(&f->stranger);
    for (int i = 0; i < STREAM_MIGRATION_ID_BYTES; i++)
        f->migration_id[i] = (uint8_t)(i * 13 + 5);
    *state = f;
    return 0;
}

int mf_teardown(void **state)
{
    free(*state);
    return 0;
}

vm_t *mf_boot(mf_fixture_t *f, const char *name, uint64_t memory, const char *cmdline)
{
    snprintf(f->name, sizeof f->name, "%s", name);
    snprintf(f->cmdline, sizeof f->cmdline, "%s", cmdline);
    f->config = (vm_config_t){ .name = f->name, .memory_bytes = memory, .vcpus = 1,
                               .cmdline = f->cmdline };
    char err[256];
    vm_t *vm = vm_new(&f->config, err, sizeof err);
    if (!vm)
        fail_msg("vm_new: %s", err);
    assert_int_equal(vm_start(vm), 0);
    /* A guest with some history: heartbeats, a first sweep done. */
    assert_true(mf_wait(vm, (mf_goal_t){ .heartbeat = 3, .sweeps = 0 }, MF_WAIT_MS, NULL));
    return vm;
}

migration_receiver_config_t mf_receiver_config(mf_fixture_t *f)
{
    migration_receiver_config_t cfg;
    migration_receiver_config_defaults(&cfg);
    cfg.bind_endpoint = "tcp://127.0.0.1:*";
    cfg.identity = f->destination;
    memcpy(cfg.peer_public_key, f->source.public_key, STREAM_KEY_BYTES);
    memcpy(cfg.migration_id, f->migration_id, STREAM_MIGRATION_ID_BYTES);
    cfg.accept_timeout_ms = 20000;
    cfg.io_timeout_ms = 20000;
    cfg.commit_timeout_ms = 20000;
    return cfg;
}

int mf_commit_cb(void *ctx, char *why, size_t whylen)
{
    mf_commit_t *c = ctx;
    c->calls++;
    if (c->source) {
        vm_status_t st;
        vm_status(c->source, &st);
        c->source_paused = st.state == VM_PAUSED;
    }
    if (c->answer)
        snprintf(why, whylen, "raft: no quorum for the ownership change");
    return c->answer;
}

migration_params_t mf_sender_params(mf_fixture_t *f, const char *endpoint, mf_commit_t *c)
{
    migration_params_t p;
    migration_params_defaults(&p);
    p.endpoint = endpoint;
    p.identity = f->source;
    memcpy(p.peer_public_key, f->destination.public_key, STREAM_KEY_BYTES);
    memcpy(p.migration_id, f->migration_id, STREAM_MIGRATION_ID_BYTES);
    p.vm_config = &f->config;
    p.chunk_bytes = 256 * 1024;
    p.verify_memory_hash = true;
    p.io_timeout_ms = 20000;
    p.switchover_timeout_ms = 20000;
    p.commit = mf_commit_cb;
    p.commit_ctx = c;
    return p;
}

static void *rx_main(void *arg)
{
    mf_rx_t *r = arg;
    r->rc = migration_receiver_run(r->rx, r->progress, r->progress_ctx, &r->result);
    r->vm = migration_receiver_take_vm(r->rx);
    return NULL;
}

mf_rx_t *mf_rx_start(const migration_receiver_config_t *cfg, migration_progress_fn progress,
                     void *progress_ctx)
{
    mf_rx_t *r = calloc(1, sizeof *r);
    char err[256];
    r->rx = migration_receiver_new(cfg, err, sizeof err);
    if (!r->rx)
        fail_msg("migration_receiver_new: %s", err);
    r->progress = progress;
    r->progress_ctx = progress_ctx;
    pthread_create(&r->thread, NULL, rx_main, r);
    return r;
}

void mf_rx_join(mf_rx_t *r)
{
    pthread_join(r->thread, NULL);
    migration_receiver_destroy(&r->rx);
}

void mf_rx_free(mf_rx_t **r_p)
{
    mf_rx_t *r = *r_p;
    if (r->vm)
        vm_destroy(&r->vm);
    free(r);
    *r_p = NULL;
}

int mf_progress_cb(const migration_progress_t *pr, void *ctx)
{
    mf_progress_t *log = ctx;
    log->calls++;
    log->last_phase = pr->phase;
    if (pr->percent < 0 || pr->percent > 100)
        log->percent_out_of_range = true;
    if (pr->pass_done) {
        log->pass_ends++;
        log->last_pass = pr->pass;
        if (log->cancel_at_pass && (int)pr->pass >= log->cancel_at_pass)
            return 1;
    }
    return 0;
}

void mf_assert_runs_here(vm_t *vm)
{
    assert_non_null(vm);
    vm_status_t st;
    vm_status(vm, &st);
    assert_int_equal(st.state, VM_RUNNING);
    assert_int_equal(st.throttle_percent, 0);
    uint64_t *bitmap = calloc(vm_dirty_bitmap_words(vm), sizeof *bitmap);
    assert_int_equal(vm_dirty_log_collect(vm, bitmap), -EINVAL);   /* logging is off */
    free(bitmap);
    assert_true(mf_wait(vm, (mf_goal_t){ .heartbeat = st.heartbeat + 5 }, MF_WAIT_MS, &st));
    assert_int_equal(st.check_errors, 0);
    assert_int_equal(st.guest_status, GUEST_STATUS_RUNNING);
}

bool mf_all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}
