/* test_vmm_notice.c - migration notices (vm_notify, vm_notify_wait) with
 * the real workload kernel, on both backends: kvm and process.
 *
 *   ack             the guest prints a line and acknowledges; once per notice
 *   every profile   idle, web, db and stream answer too, not only test
 *   paused          a paused guest acknowledges only after resume
 *   test rounds     notices in the mailbox are not taken for rounds
 *   save/restore    the acknowledgement travels with the VM; the restored
 *                   guest does not answer the old notice again
 *   bad arguments   refused with -EINVAL
 *   stopped VM      the wait ends with -ESRCH (process backend: a killed guest)
 *
 * Without /dev/kvm the kvm cases print "SKIPPED: no /dev/kvm" and skip.
 * Waits are bounded polls on conditions, never fixed sleeps. */
#include <errno.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "guest/protocol.h"
#include "vmm/vm.h"
#include "vm_wait.h"

#define MIB (1ull << 20)

/* --- helpers ------------------------------------------------------------------ */

/* The backend a case runs on is its cmocka prestate: "kvm" or "process". */
static const char *backend_of(void **state)
{
    const char *backend = *state;
    if (strcmp(backend, "kvm") == 0 && access("/dev/kvm", R_OK | W_OK) != 0) {
        fprintf(stderr, "SKIPPED: no /dev/kvm\n");
        skip();
    }
    return backend;
}

static vm_t *make_vm(const char *backend, const char *name, const char *cmdline, bool incoming)
{
    vm_config_t cfg = {.name = name, .memory_bytes = 64 * MIB, .vcpus = 1, .cmdline = cmdline,
                       .backend = backend, .incoming = incoming};
    char err[256];
    vm_t *vm = vm_new(&cfg, err, sizeof err);
    if (!vm)
        fail_msg("vm_new(%s, %s): %s", backend, name, err);
    assert_string_equal(vm_backend_name(vm), backend);
    return vm;
}

static vm_t *boot_vm(const char *backend, const char *name, const char *cmdline)
{
    vm_t *vm = make_vm(backend, name, cmdline, false);
    assert_int_equal(vm_start(vm), 0);
    uint64_t three = 3;
    vmt_wait_for(vm, vmt_heartbeats_at_least, &three, "3 heartbeats", NULL);
    return vm;
}

typedef struct {
    vm_notice_t kind;
    uint32_t seq;
} notice_t;

static bool notice_acked(vm_t *vm, const vm_status_t *st, void *arg)
{
    (void)vm;
    const notice_t *n = arg;
    return st->notice_acked_kind == n->kind && st->notice_acked == n->seq;
}

/* Posts a notice and waits for the guest's acknowledgement. */
static void notify_and_wait(vm_t *vm, vm_notice_t kind, uint32_t seq)
{
    bool acked = false;
    assert_int_equal(vm_notify_wait(vm, kind, seq, VMT_WAIT_MS, &acked), 0);
    if (!acked)
        fail_msg("%s: notice %u/%u not acknowledged within %d ms", vm_name(vm), kind, seq,
                 VMT_WAIT_MS);
    vm_status_t st;
    vm_status(vm, &st);
    assert_int_equal(st.notice_acked_kind, kind);
    assert_int_equal(st.notice_acked, seq);
}

static bool round_done(vm_t *vm, const vm_status_t *st, void *arg)
{
    (void)vm;
    uint32_t round = *(uint32_t *)arg;
    return (st->info_valid & 1u << GUEST_INFO_TEST_ROUND) && st->info[GUEST_INFO_TEST_ROUND] == round;
}

/* --- cases ------------------------------------------------------------------------ */

static void test_notice_is_acked_once_with_a_console_line(void **state)
{
    const char *backend = backend_of(state);
    vm_t *vm = boot_vm(backend, "notice", "profile=idle print=0");
    vm_status_t st;
    vm_status(vm, &st);
    assert_int_equal(st.notice_acked_kind, VM_NOTICE_NONE);
    assert_int_equal(st.notice_acked, 0);

    vmt_console_t *con = calloc(1, sizeof *con);
    notify_and_wait(vm, VM_NOTICE_MIGRATING, 3);
    /* The guest prints before it acknowledges: the line is already there. */
    const char *before = "ferry-guest: migration notice 3: host is about to migrate this VM";
    assert_int_equal(vmt_console_count(vm, con, before), 1);

    notify_and_wait(vm, VM_NOTICE_MIGRATED, 3);
    const char *after = "ferry-guest: migration 3 finished";
    assert_int_equal(vmt_console_count(vm, con, after), 1);

    /* The same notice again is not a new one: no second line. Heartbeats
     * prove the guest went round its loop (and read the mailbox) since. */
    assert_int_equal(vm_notify(vm, VM_NOTICE_MIGRATED, 3), 0);
    vm_status(vm, &st);
    uint32_t h = st.heartbeat + 5;
    vmt_wait_for(vm, vmt_counter_above, &h, "5 more heartbeats", &st);
    assert_int_equal(vmt_console_count(vm, con, after), 1);
    assert_int_equal(vmt_console_count(vm, con, "ferry-guest: migration"), 2);
    assert_int_equal(st.notice_acked_kind, VM_NOTICE_MIGRATED);
    assert_int_equal(st.guest_status, GUEST_STATUS_RUNNING);

    /* The next migration's notice is. */
    notify_and_wait(vm, VM_NOTICE_MIGRATING, 4);
    assert_int_equal(vmt_console_count(vm, con, "migration notice 4: "), 1);
    free(con);
    vm_destroy(&vm);
}

static void test_every_profile_answers(void **state)
{
    const char *backend = backend_of(state);
    static const char *const cmdlines[] = {
        "profile=web hot=4M rate=1M print=0",
        "profile=db wss=4M rate=1M print=0",
        "profile=stream wss=4M rate=1M print=0",
        "profile=test pages=8 print=0",
    };
    for (size_t i = 0; i < sizeof cmdlines / sizeof cmdlines[0]; i++) {
        vm_t *vm = boot_vm(backend, "profile", cmdlines[i]);
        uint32_t seq = 100 + (uint32_t)i;
        notify_and_wait(vm, VM_NOTICE_MIGRATING, seq);
        notify_and_wait(vm, VM_NOTICE_MIGRATED, seq);
        vmt_console_t *con = calloc(1, sizeof *con);
        char line[96];
        snprintf(line, sizeof line, "ferry-guest: migration %u finished", seq);
        if (vmt_console_count(vm, con, line) != 1)
            fail_msg("%s: no '%s' on the console:\n%s", cmdlines[i], line, con->text);
        vm_status_t st;
        vm_status(vm, &st);
        assert_int_equal(st.check_errors, 0);
        free(con);
        vm_destroy(&vm);
    }
}

static void test_paused_guest_acks_after_resume(void **state)
{
    const char *backend = backend_of(state);
    vm_t *vm = boot_vm(backend, "paused", "profile=idle print=0");
    assert_int_equal(vm_pause(vm), 0);

    /* No vCPU runs while paused, so no acknowledgement can come; the short
     * wait only shows vm_notify_wait gives up and says so. */
    bool acked = true;
    assert_int_equal(vm_notify_wait(vm, VM_NOTICE_MIGRATING, 7, 50, &acked), 0);
    assert_false(acked);
    vm_status_t st;
    vm_status(vm, &st);
    assert_int_equal(st.state, VM_PAUSED);
    assert_int_equal(st.notice_acked, 0);

    assert_int_equal(vm_resume(vm), 0);
    notice_t n = {VM_NOTICE_MIGRATING, 7};
    vmt_wait_for(vm, notice_acked, &n, "the acknowledgement after resume", NULL);
    vmt_console_t *con = calloc(1, sizeof *con);
    assert_int_equal(vmt_console_count(vm, con, "migration notice 7: "), 1);
    free(con);
    vm_destroy(&vm);
}

/* The test profile shares the mailbox: a notice is never a round, and
 * rounds go on as posted around notices. */
static void test_rounds_are_counted_around_notices(void **state)
{
    const char *backend = backend_of(state);
    vm_t *vm = boot_vm(backend, "rounds", "profile=test pages=8 seed=5 print=0");
    vmt_console_t *con = calloc(1, sizeof *con);
    for (uint32_t round = 1; round <= 3; round++) {
        assert_int_equal(vm_mailbox_post(vm, round), 0);
        vmt_wait_for(vm, round_done, &round, "the test round", NULL);
        notify_and_wait(vm, round % 2 ? VM_NOTICE_MIGRATING : VM_NOTICE_MIGRATED, round);
        vm_status_t st;
        vm_status(vm, &st);
        assert_int_equal(st.info[GUEST_INFO_TEST_ROUND], round);
        assert_int_equal(st.info[GUEST_INFO_TEST_COUNT], 8);
    }
    assert_int_equal(vmt_console_count(vm, con, "ferry-guest: test round "), 3);
    assert_int_equal(vmt_console_count(vm, con, "test round 3: "), 1);
    free(con);
    vm_destroy(&vm);
}

static void test_ack_survives_save_restore(void **state)
{
    const char *backend = backend_of(state);
    const char *cmdline = "profile=db wss=4M rate=1M print=0";
    vm_t *a = boot_vm(backend, "source", cmdline);
    notify_and_wait(a, VM_NOTICE_MIGRATING, 9);
    assert_int_equal(vm_pause(a), 0);
    uint8_t *blob = malloc(VM_STATE_MAX_BYTES);
    size_t len;
    assert_int_equal(vm_save_state(a, blob, VM_STATE_MAX_BYTES, &len), 0);

    vm_t *b = make_vm(backend, "destination", cmdline, true);
    vmt_copy_memory(a, b);
    char err[256];
    if (vm_load_state(b, blob, len, err, sizeof err) != 0)
        fail_msg("load state: %s", err);
    vm_destroy(&a);
    vm_status_t st;
    vm_status(b, &st);
    assert_int_equal(st.notice_acked_kind, VM_NOTICE_MIGRATING);
    assert_int_equal(st.notice_acked, 9);

    assert_int_equal(vm_start(b), 0);
    notify_and_wait(b, VM_NOTICE_MIGRATED, 9);
    vmt_console_t *con = calloc(1, sizeof *con);
    assert_int_equal(vmt_console_count(b, con, "ferry-guest: migration 9 finished"), 1);
    /* The notice still in the restored mailbox was answered before the move. */
    assert_int_equal(vmt_console_count(b, con, "migration notice 9"), 0);
    vm_status(b, &st);
    assert_int_equal(st.check_errors, 0);
    free(con);
    free(blob);
    vm_destroy(&b);
}

static void test_bad_arguments_are_refused(void **state)
{
    const char *backend = backend_of(state);
    vm_t *vm = make_vm(backend, "args", "profile=idle", false);
    bool acked = true;
    assert_int_equal(vm_notify(vm, VM_NOTICE_MIGRATING, 0), -EINVAL);
    assert_int_equal(vm_notify(vm, VM_NOTICE_MIGRATING, VM_NOTICE_SEQ_MAX + 1), -EINVAL);
    assert_int_equal(vm_notify(vm, VM_NOTICE_NONE, 1), -EINVAL);
    assert_int_equal(vm_notify(vm, (vm_notice_t)77, 1), -EINVAL);
    assert_int_equal(vm_notify_wait(vm, VM_NOTICE_MIGRATED, 0, 10, &acked), -EINVAL);
    assert_false(acked);
    assert_int_equal(vm_notify_wait(vm, VM_NOTICE_MIGRATED, 1, -1, &acked), -EINVAL);
    /* The largest sequence is a valid one. */
    assert_int_equal(vm_notify(vm, VM_NOTICE_MIGRATED, VM_NOTICE_SEQ_MAX), 0);
    vm_destroy(&vm);
}

/* A guest that is gone cannot answer: the wait ends with -ESRCH, not at
 * its timeout. The process backend's guest can be killed from outside. */
static void test_wait_ends_when_the_vm_stops(void **state)
{
    (void)state;
    vm_t *vm = boot_vm("process", "doomed", "profile=idle print=0");
    pid_t pids[4];
    assert_int_equal(vmt_list_children(pids, 4), 1);
    assert_int_equal(vm_pause(vm), 0);  /* no answer before the kill */
    kill(pids[0], SIGKILL);
    bool acked = true;
    assert_int_equal(vm_notify_wait(vm, VM_NOTICE_MIGRATING, 1, VMT_WAIT_MS, &acked), -ESRCH);
    assert_false(acked);
    vm_status_t st;
    vm_status(vm, &st);
    assert_int_equal(st.state, VM_STOPPED);
    vm_destroy(&vm);
}

#define BOTH(fn) cmocka_unit_test_prestate(fn, "kvm"), cmocka_unit_test_prestate(fn, "process")

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_notice_is_acked_once_with_a_console_line),
        BOTH(test_every_profile_answers),
        BOTH(test_paused_guest_acks_after_resume),
        BOTH(test_rounds_are_counted_around_notices),
        BOTH(test_ack_survives_save_restore),
        BOTH(test_bad_arguments_are_refused),
        cmocka_unit_test(test_wait_ends_when_the_vm_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
