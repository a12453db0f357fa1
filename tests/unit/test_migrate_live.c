/* test_migrate_live.c - live migration between two real KVM VMs in one
 * process, over real ZeroMQ loopback: the sender on the test thread, the
 * receiver on a thread of its own, under each guest profile (idle, web,
 * db, stream). After the move the guest's own counters keep rising and its
 * self-check stays clean, the memory hashes matched at switchover, the
 * commit ran with the source paused, and the source VM is gone.
 * test_migrate_faults.c has the failures, test_migrate_cold.c cold moves.
 *
 *   test_migrate_live [PATTERN]     run the tests matching PATTERN
 *   FERRY_TEST_LOG=1 test_migrate_live    with the library's info logs
 *
 * Without /dev/kvm every test prints "SKIPPED: no /dev/kvm" and skips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/log.h"
#include "guest/protocol.h"
#include "migrate_fixture.h"

static void migrate_profile(mf_fixture_t *f, const char *name, const char *cmdline)
{
    vm_t *vm = mf_boot(f, name, 64 * MF_MIB, cmdline);
    vm_status_t before;
    vm_status(vm, &before);

    migration_receiver_config_t rcfg = mf_receiver_config(f);
    mf_progress_t rx_progress = { 0 };
    mf_rx_t *r = mf_rx_start(&rcfg, mf_progress_cb, &rx_progress);
    mf_commit_t commit = { .source = vm };
    migration_params_t p = mf_sender_params(f, migration_receiver_endpoint(r->rx), &commit);
    mf_progress_t progress = { 0 };
    migration_result_t res;
    int rc = migration_send(&vm, &p, mf_progress_cb, &progress, &res);
    mf_rx_join(r);
    if (rc)
        fail_msg("%s: migration failed: %s: %s (receiver: %s)", name, migration_error_name(rc),
                 res.error_text, r->result.error_text);

    /* The source is gone; the destination runs the VM. */
    assert_null(vm);
    assert_true(res.committed);
    assert_true(res.source_released);
    assert_int_equal(commit.calls, 1);
    assert_true(commit.source_paused);   /* the commit point is inside the stun */
    assert_int_equal(r->rc, 0);
    assert_true(r->result.committed);
    assert_non_null(r->vm);
    vm_status_t moved;
    vm_status(r->vm, &moved);
    assert_int_equal(moved.state, VM_RUNNING);

    /* Memory verified at switchover, with the same hash on both sides. */
    assert_true(res.hash_verified);
    assert_false(mf_all_zero(res.source_hash, MIGRATION_HASH_BYTES));
    assert_memory_equal(res.source_hash, res.dest_hash, MIGRATION_HASH_BYTES);
    assert_memory_equal(r->result.dest_hash, res.source_hash, MIGRATION_HASH_BYTES);

    /* The accounting adds up on both ends. */
    assert_true(res.passes >= 1);
    assert_int_equal(r->result.passes, res.passes);
    assert_true(res.pages_sent > 0);
    assert_int_equal(r->result.pages_sent, res.pages_sent);
    /* Elided: zero flags the receiver saw, plus holes never sent; most of a
     * freshly booted guest is holes. */
    assert_true(res.zero_pages >= r->result.zero_pages);
    assert_true(res.zero_pages > 64 * MF_MIB / VM_PAGE_SIZE / 2);
    assert_true(res.bytes_sent > 0);
    assert_true(res.bytes_sent < 64 * MF_MIB / 4);   /* holes and zero pages cost nothing */
    assert_true(res.downtime_ms > 0);
    assert_true(res.total_ms >= res.downtime_ms);
    assert_string_equal(res.cipher, r->result.cipher);
    assert_string_not_equal(res.cipher, "none");
    assert_int_equal(progress.pass_ends, (int)res.passes);
    assert_int_equal(rx_progress.pass_ends, (int)res.passes);
    assert_int_equal(progress.last_phase, MIGRATION_PHASE_DONE);
    assert_false(progress.percent_out_of_range);

    /* The guest carries on where it was: its own counters keep rising and
     * two full sweeps after the move find every page it wrote intact. */
    assert_true(moved.heartbeat >= before.heartbeat);
    assert_true(mf_wait(r->vm, (mf_goal_t){ .heartbeat = moved.heartbeat + 5,
                                            .sweeps = moved.sweeps + 2,
                                            .written = moved.pages_written },
                        MF_WAIT_MS, &moved));
    assert_int_equal(moved.check_errors, 0);
    assert_int_equal(moved.guest_status, GUEST_STATUS_RUNNING);
    if (before.pages_written)   /* sweeps verify written pages only */
        assert_true(moved.pages_verified > before.pages_verified);
    print_message("%s: %u passes, %llu pages (%llu elided), %llu bytes, downtime %.1f ms, "
                  "total %.0f ms, throttle max %u%%, %s\n", name, res.passes,
                  (unsigned long long)res.pages_sent, (unsigned long long)res.zero_pages,
                  (unsigned long long)res.bytes_sent, res.downtime_ms, res.total_ms,
                  res.throttle_max, res.cipher);
    mf_rx_free(&r);
}

static void test_idle(void **state)
{
    MF_REQUIRE_KVM();
    migrate_profile(*state, "mig-idle", "profile=idle print=0 verify=50000");
}

static void test_web(void **state)
{
    MF_REQUIRE_KVM();
    migrate_profile(*state, "mig-web", "profile=web hot=8M rate=2M print=0 verify=50000");
}

static void test_db(void **state)
{
    MF_REQUIRE_KVM();
    migrate_profile(*state, "mig-db", "profile=db wss=16M rate=2M print=0 verify=50000");
}

static void test_stream(void **state)
{
    MF_REQUIRE_KVM();
    migrate_profile(*state, "mig-stream", "profile=stream wss=16M rate=4M print=0 verify=50000");
}

/* Two parallel streams and XChaCha20-Poly1305, forced. */
static void test_two_streams_xchacha(void **state)
{
    MF_REQUIRE_KVM();
    mf_fixture_t *f = *state;
    vm_t *vm = mf_boot(f, "mig-two", 64 * MF_MIB, "profile=db wss=16M rate=2M print=0");
    migration_receiver_config_t rcfg = mf_receiver_config(f);
    mf_rx_t *r = mf_rx_start(&rcfg, NULL, NULL);
    mf_commit_t commit = { .source = vm };
    migration_params_t p = mf_sender_params(f, migration_receiver_endpoint(r->rx), &commit);
    p.streams = 2;
    p.cipher = STREAM_CIPHER_XCHACHA20POLY1305;
    migration_result_t res;
    int rc = migration_send(&vm, &p, NULL, NULL, &res);
    mf_rx_join(r);
    assert_int_equal(rc, 0);
    assert_null(vm);
    assert_true(res.hash_verified);
    assert_string_equal(res.cipher, "xchacha20poly1305");
    vm_status_t st;
    vm_status(r->vm, &st);
    assert_true(mf_wait(r->vm, (mf_goal_t){ .heartbeat = st.heartbeat + 5, .sweeps = st.sweeps },
                        MF_WAIT_MS, &st));
    assert_int_equal(st.check_errors, 0);
    mf_rx_free(&r);
}

int main(int argc, char **argv)
{
    log_set_level(getenv("FERRY_TEST_LOG") ? LOG_LEVEL_INFO : LOG_LEVEL_WARN);
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_idle, mf_setup, mf_teardown),
        cmocka_unit_test_setup_teardown(test_web, mf_setup, mf_teardown),
        cmocka_unit_test_setup_teardown(test_db, mf_setup, mf_teardown),
        cmocka_unit_test_setup_teardown(test_stream, mf_setup, mf_teardown),
        cmocka_unit_test_setup_teardown(test_two_streams_xchacha, mf_setup, mf_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
