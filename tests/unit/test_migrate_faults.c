/* test_migrate_faults.c - live migrations that must fail safely: the
 * receiver killed (SIGKILL) mid pre-copy, a tampered chunk, an unknown
 * sender key, a failing commit, a VM too big for the receiver, a cancel,
 * and a guest that never converges (throttled, then aborted at the
 * policy's max time). Each time the VM keeps running on the source:
 * heartbeats rising, self-check clean, no throttle left, no dirty logging
 * left; and the receiver drops its copy. Bad parameters fail cleanly too.
 *
 *   test_migrate_faults [PATTERN]     run the tests matching PATTERN
 *
 * Without /dev/kvm every test prints "SKIPPED: no /dev/kvm" and skips. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/log.h"
#include "migrate_fixture.h"
#include "mitm_proxy.h"


static const char *const busy_cmdline = "profile=db wss=16M rate=2M print=0 verify=50000";

/* The receiver is a separate process, killed with SIGKILL when the first
 * pass ends: the sender notices the silence, rolls back, and the VM keeps
 * running here. */
typedef struct {
    pid_t child;
    bool killed;
} killer_t;

static int kill_at_first_pass_end(const migration_progress_t *pr, void *ctx)
{
    killer_t *k = ctx;
    if (pr->pass_done && !k->killed) {
        kill(k->child, SIGKILL);
        waitpid(k->child, NULL, 0);
        k->killed = true;
    }
    return 0;
}

static void test_receiver_killed_mid_precopy(void **state)
{
    MF_REQUIRE_KVM();
    mf_fixture_t *f = *state;
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    /* Fork first, while this process runs no threads. */
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(pipefd[0]);
        migration_receiver_config_t rcfg = mf_receiver_config(f);
        char err[256];
        migration_receiver_t *rx = migration_receiver_new(&rcfg, err, sizeof err);
        char endpoint[256] = "";
        if (rx)
            snprintf(endpoint, sizeof endpoint, "%s", migration_receiver_endpoint(rx));
        if (write(pipefd[1], endpoint, sizeof endpoint) != (ssize_t)sizeof endpoint)
            _exit(2);
        migration_result_t res;
        migration_receiver_run(rx, NULL, NULL, &res);
        _exit(3);   /* not reached before the kill, unless something went wrong */
    }
    close(pipefd[1]);
    char endpoint[256];
    assert_int_equal(read(pipefd[0], endpoint, sizeof endpoint), (ssize_t)sizeof endpoint);
    close(pipefd[0]);
    assert_true(endpoint[0] != '\0');

    vm_t *vm = mf_boot(f, "mig-killed", 64 * MF_MIB, busy_cmdline);
    mf_commit_t commit = { .source = vm };
    migration_params_t p = mf_sender_params(f, endpoint, &commit);
    p.io_timeout_ms = 2000;          /* how long silence takes to notice */
    p.switchover_timeout_ms = 2000;
    killer_t killer = { .child = child };
    migration_result_t res;
    int rc = migration_send(&vm, &p, kill_at_first_pass_end, &killer, &res);
    assert_true(killer.killed);
    assert_int_equal(rc, MIGRATION_ERR_STREAM);
    assert_false(res.committed);
    assert_int_equal(commit.calls, 0);
    print_message("receiver killed: %s\n", res.error_text);
    mf_assert_runs_here(vm);
    vm_destroy(&vm);
}

/* A chunk changed in transit: the receiver catches it, says so, and the
 * sender stops at once. */
static void test_tampered_chunk_aborts(void **state)
{
    MF_REQUIRE_KVM();
    mf_fixture_t *f = *state;
    vm_t *vm = mf_boot(f, "mig-tamper", 64 * MF_MIB, busy_cmdline);
    migration_receiver_config_t rcfg = mf_receiver_config(f);
    mf_rx_t *r = mf_rx_start(&rcfg, NULL, NULL);
    /* Messages: 0 HELLO, 1 JOIN, 2 the description, 3 the first pages. */
    proxy_t *proxy = proxy_start(migration_receiver_endpoint(r->rx), PROXY_TAMPER, 3);
    mf_commit_t commit = { .source = vm };
    migration_params_t p = mf_sender_params(f, proxy->endpoint, &commit);
    migration_result_t res;
    int rc = migration_send(&vm, &p, NULL, NULL, &res);
    mf_rx_join(r);
    proxy_stop(&proxy);
    assert_int_equal(rc, MIGRATION_ERR_STREAM);
    assert_int_equal(res.stream_error, STREAM_ERR_REJECTED);
    assert_non_null(strstr(res.error_text, "failed authentication"));
    assert_int_equal(r->rc, MIGRATION_ERR_STREAM);
    assert_int_equal(r->result.stream_error, STREAM_ERR_TAMPERED);
    assert_null(r->vm);                 /* the receiver dropped its copy */
    assert_int_equal(commit.calls, 0);
    mf_assert_runs_here(vm);
    mf_rx_free(&r);
    vm_destroy(&vm);
}

/* The receiver expects another sender: the handshake fails on both sides
 * before a page moves. */
static void test_wrong_identity_key_fails(void **state)
{
    MF_REQUIRE_KVM();
    mf_fixture_t *f = *state;
    vm_t *vm = mf_boot(f, "mig-stranger", 64 * MF_MIB, busy_cmdline);
    migration_receiver_config_t rcfg = mf_receiver_config(f);
    memcpy(rcfg.peer_public_key, f->stranger.public_key, STREAM_KEY_BYTES);
    mf_rx_t *r = mf_rx_start(&rcfg, NULL, NULL);
    mf_commit_t commit = { .source = vm };
    migration_params_t p = mf_sender_params(f, migration_receiver_endpoint(r->rx), &commit);
    migration_result_t res;
    int rc = migration_send(&vm, &p, NULL, NULL, &res);
    mf_rx_join(r);
    assert_int_equal(rc, MIGRATION_ERR_STREAM);
    assert_int_equal(res.stream_error, STREAM_ERR_REJECTED);
    assert_int_equal(res.pages_sent, 0);
    assert_int_equal(r->rc, MIGRATION_ERR_STREAM);
    assert_int_equal(r->result.stream_error, STREAM_ERR_AUTH);
    assert_null(r->vm);
    mf_assert_runs_here(vm);
    mf_rx_free(&r);

    /* And a sender presenting another identity is turned away the same way. */
    rcfg = mf_receiver_config(f);
    r = mf_rx_start(&rcfg, NULL, NULL);
    p = mf_sender_params(f, migration_receiver_endpoint(r->rx), &commit);
    p.identity = f->stranger;
    rc = migration_send(&vm, &p, NULL, NULL, &res);
    mf_rx_join(r);
    assert_int_equal(rc, MIGRATION_ERR_STREAM);
    assert_int_equal(r->rc, MIGRATION_ERR_STREAM);
    mf_assert_runs_here(vm);
    mf_rx_free(&r);
    vm_destroy(&vm);
}

/* The commit point fails (no Raft quorum, say): everything was copied and
 * verified, yet the VM stays here and runs. */
static void test_failed_commit_rolls_back(void **state)
{
    MF_REQUIRE_KVM();
    mf_fixture_t *f = *state;
    vm_t *vm = mf_boot(f, "mig-nocommit", 64 * MF_MIB, busy_cmdline);
    migration_receiver_config_t rcfg = mf_receiver_config(f);
    mf_rx_t *r = mf_rx_start(&rcfg, NULL, NULL);
    mf_commit_t commit = { .source = vm, .answer = -1 };
    migration_params_t p = mf_sender_params(f, migration_receiver_endpoint(r->rx), &commit);
    migration_result_t res;
    int rc = migration_send(&vm, &p, NULL, NULL, &res);
    mf_rx_join(r);
    assert_int_equal(rc, MIGRATION_ERR_COMMIT);
    assert_non_null(strstr(res.error_text, "no quorum"));
    assert_int_equal(commit.calls, 1);
    assert_true(commit.source_paused);
    assert_true(res.hash_verified);      /* it got that far */
    assert_false(res.committed);
    assert_false(res.source_released);
    assert_int_equal(r->rc, MIGRATION_ERR_ABORTED);
    assert_non_null(strstr(r->result.error_text, "no quorum"));
    assert_null(r->vm);
    mf_assert_runs_here(vm);
    vm_destroy(&vm);
    mf_rx_free(&r);
}

/* A receiver that cannot hold the VM refuses it before any page moves. */
static void test_too_big_for_the_receiver(void **state)
{
    MF_REQUIRE_KVM();
    mf_fixture_t *f = *state;
    vm_t *vm = mf_boot(f, "mig-big", 64 * MF_MIB, busy_cmdline);
    migration_receiver_config_t rcfg = mf_receiver_config(f);
    rcfg.max_memory_bytes = 32 * MF_MIB;
    mf_rx_t *r = mf_rx_start(&rcfg, NULL, NULL);
    mf_commit_t commit = { .source = vm };
    migration_params_t p = mf_sender_params(f, migration_receiver_endpoint(r->rx), &commit);
    migration_result_t res;
    int rc = migration_send(&vm, &p, NULL, NULL, &res);
    mf_rx_join(r);
    assert_int_equal(rc, MIGRATION_ERR_REFUSED);
    assert_non_null(strstr(res.error_text, "accepts at most 32 MiB"));
    assert_int_equal(res.pages_sent, 0);
    assert_int_equal(r->rc, MIGRATION_ERR_REFUSED);
    assert_null(r->vm);
    mf_assert_runs_here(vm);
    mf_rx_free(&r);
    vm_destroy(&vm);
}

static void test_cancel_from_progress(void **state)
{
    MF_REQUIRE_KVM();
    mf_fixture_t *f = *state;
    vm_t *vm = mf_boot(f, "mig-cancel", 64 * MF_MIB, busy_cmdline);
    migration_receiver_config_t rcfg = mf_receiver_config(f);
    mf_rx_t *r = mf_rx_start(&rcfg, NULL, NULL);
    mf_commit_t commit = { .source = vm };
    migration_params_t p = mf_sender_params(f, migration_receiver_endpoint(r->rx), &commit);
    mf_progress_t progress = { .cancel_at_pass = 1 };
    migration_result_t res;
    int rc = migration_send(&vm, &p, mf_progress_cb, &progress, &res);
    mf_rx_join(r);
    assert_int_equal(rc, MIGRATION_ERR_CANCELLED);
    assert_int_equal(commit.calls, 0);
    assert_int_equal(r->rc, MIGRATION_ERR_ABORTED);   /* the sender told it */
    assert_null(r->vm);
    mf_assert_runs_here(vm);
    mf_rx_free(&r);
    vm_destroy(&vm);
}

/* A guest whose dirty set never shrinks: the test profile writes a round
 * of 48 pages during the full pass and whenever a pass ends (the progress
 * callback posts the round and waits for it, so the pages are in the next
 * collect), and the downtime limit leaves no room for even one page. The
 * policy throttles, then gives up at its max time. */
typedef struct {
    vm_t *vm;
    uint32_t round;
    unsigned throttle_seen;  /* highest level vm_status showed */
    bool round_missed;
} dirtier_t;

static int dirty_a_round(const migration_progress_t *pr, void *ctx)
{
    dirtier_t *d = ctx;
    bool first = d->round == 0 && pr->phase == MIGRATION_PHASE_FULL;
    if (!pr->pass_done && !first)
        return 0;
    vm_status_t st;
    vm_status(d->vm, &st);
    if (st.throttle_percent > d->throttle_seen)
        d->throttle_seen = st.throttle_percent;
    if (!first && pr->decision != POLICY_CONTINUE && pr->decision != POLICY_THROTTLE)
        return 0;
    vm_mailbox_post(d->vm, ++d->round);
    if (!mf_wait(d->vm, (mf_goal_t){ .round = d->round }, MF_WAIT_MS, NULL))
        d->round_missed = true;
    return 0;
}

static void test_not_converging_throttles_then_aborts(void **state)
{
    MF_REQUIRE_KVM();
    mf_fixture_t *f = *state;
    vm_t *vm = mf_boot(f, "mig-hot", 64 * MF_MIB, "profile=test pages=48 seed=3 print=0 verify=50000");
    migration_receiver_config_t rcfg = mf_receiver_config(f);
    mf_rx_t *r = mf_rx_start(&rcfg, NULL, NULL);
    mf_commit_t commit = { .source = vm };
    migration_params_t p = mf_sender_params(f, migration_receiver_endpoint(r->rx), &commit);
    p.policy.downtime_limit_us = 1000;
    p.policy.switchover_cost_us = 999;     /* 1 us for memory: not even one page fits */
    p.policy.max_time_us = 3000000;
    p.policy.throttle_max = 50;
    p.progress_interval_ms = 0;            /* a call after every batch of the full pass */
    dirtier_t dirtier = { .vm = vm };
    migration_result_t res;
    int rc = migration_send(&vm, &p, dirty_a_round, &dirtier, &res);
    mf_rx_join(r);
    assert_false(dirtier.round_missed);
    assert_int_equal(rc, MIGRATION_ERR_NOT_CONVERGED);
    assert_int_equal(res.abort_reason, POLICY_ABORT_TIMEOUT);
    assert_true(res.passes >= 3);
    assert_true(res.throttle_max >= p.policy.throttle_initial);
    assert_true(res.throttle_max <= 50);
    assert_int_equal(dirtier.throttle_seen, res.throttle_max);   /* applied to the vCPUs */
    assert_int_equal(commit.calls, 0);
    assert_int_equal(r->rc, MIGRATION_ERR_ABORTED);
    assert_null(r->vm);
    print_message("not converging: %s\n", res.error_text);
    mf_assert_runs_here(vm);   /* throttle back to 0 */
    mf_rx_free(&r);
    vm_destroy(&vm);
}

/* Bad calls fail cleanly and touch nothing. */
static void test_bad_parameters(void **state)
{
    MF_REQUIRE_KVM();
    mf_fixture_t *f = *state;
    migration_result_t res;
    mf_commit_t commit = { 0 };
    migration_params_t p = mf_sender_params(f, "tcp://127.0.0.1:1", &commit);
    vm_t *none = NULL;
    assert_int_equal(migration_send(&none, &p, NULL, NULL, &res), MIGRATION_ERR_INVALID);
    vm_t *vm = mf_boot(f, "mig-bad", 64 * MF_MIB, "profile=idle print=0");
    p.commit = NULL;
    assert_int_equal(migration_send(&vm, &p, NULL, NULL, &res), MIGRATION_ERR_INVALID);
    assert_non_null(strstr(res.error_text, "commit"));
    p = mf_sender_params(f, "tcp://127.0.0.1:1", &commit);
    vm_config_t wrong = f->config;
    wrong.memory_bytes = 128 * MF_MIB;
    p.vm_config = &wrong;
    assert_int_equal(migration_send(&vm, &p, NULL, NULL, &res), MIGRATION_ERR_INVALID);
    p = mf_sender_params(f, "tcp://127.0.0.1:1", &commit);
    p.policy.page_size = 0;
    assert_int_equal(migration_send(&vm, &p, NULL, NULL, &res), MIGRATION_ERR_INVALID);
    assert_non_null(vm);
    mf_assert_runs_here(vm);
    vm_destroy(&vm);

    char err[256];
    migration_receiver_config_t rcfg = mf_receiver_config(f);
    rcfg.bind_endpoint = "tcp://256.1.1.1:1";
    assert_null(migration_receiver_new(&rcfg, err, sizeof err));
    assert_non_null(strstr(err, "cannot listen"));
    rcfg = mf_receiver_config(f);
    rcfg.io_timeout_ms = 0;
    assert_null(migration_receiver_new(&rcfg, err, sizeof err));

    /* A receiver nobody talks to gives up at its accept timeout, takes one
     * run only; one that is cancelled stops at once. */
    rcfg = mf_receiver_config(f);
    rcfg.accept_timeout_ms = 200;
    migration_receiver_t *rx = migration_receiver_new(&rcfg, err, sizeof err);
    assert_int_equal(migration_receiver_run(rx, NULL, NULL, &res), MIGRATION_ERR_STREAM);
    assert_non_null(strstr(res.error_text, "no sender"));
    assert_int_equal(migration_receiver_run(rx, NULL, NULL, &res), MIGRATION_ERR_INVALID);
    assert_null(migration_receiver_description(rx));
    assert_null(migration_receiver_take_vm(rx));
    migration_receiver_destroy(&rx);
    rcfg = mf_receiver_config(f);
    rx = migration_receiver_new(&rcfg, err, sizeof err);
    migration_receiver_cancel(rx);
    assert_int_equal(migration_receiver_run(rx, NULL, NULL, &res), MIGRATION_ERR_CANCELLED);
    migration_receiver_destroy(&rx);
    assert_null(rx);
}

int main(int argc, char **argv)
{
    log_set_level(getenv("FERRY_TEST_LOG") ? LOG_LEVEL_INFO : LOG_LEVEL_OFF);
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_receiver_killed_mid_precopy, mf_setup, mf_teardown),
        cmocka_unit_test_setup_teardown(test_tampered_chunk_aborts, mf_setup, mf_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_identity_key_fails, mf_setup, mf_teardown),
        cmocka_unit_test_setup_teardown(test_failed_commit_rolls_back, mf_setup, mf_teardown),
        cmocka_unit_test_setup_teardown(test_too_big_for_the_receiver, mf_setup, mf_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_from_progress, mf_setup, mf_teardown),
        cmocka_unit_test_setup_teardown(test_not_converging_throttles_then_aborts, mf_setup,
                                        mf_teardown),
        cmocka_unit_test_setup_teardown(test_bad_parameters, mf_setup, mf_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
