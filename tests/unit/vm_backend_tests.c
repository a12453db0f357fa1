/* vm_backend_tests.c - the tests every VM backend must pass; see
 * vm_backend_tests.h. Waits are bounded polls on conditions (vm_wait.h),
 * never fixed sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "vm_backend_tests.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "guest/protocol.h"
#include "vm_wait.h"

/* --- helpers ------------------------------------------------------------------ */

void vmt_require(const vmt_backend_t *b)
{
    if (b->available && !b->available())
        skip();
}

vm_t *vmt_make_vm(const vmt_backend_t *b, const char *name, uint64_t mem, unsigned vcpus,
                  const char *cmdline, bool incoming)
{
    vm_config_t cfg = {.name = name, .memory_bytes = mem, .vcpus = vcpus, .cmdline = cmdline,
                       .incoming = incoming, .backend = b->name};
    char err[256];
    vm_t *vm = vm_new(&cfg, err, sizeof err);
    if (!vm)
        fail_msg("vm_new(%s): %s", name, err);
    assert_string_equal(vm_backend_name(vm), b->name);
    return vm;
}

vm_t *vmt_boot_vm(const vmt_backend_t *b, const char *name, uint64_t mem, unsigned vcpus,
                  const char *cmdline)
{
    vm_t *vm = vmt_make_vm(b, name, mem, vcpus, cmdline, false);
    assert_int_equal(vm_start(vm), 0);
    uint64_t three = 3;
    vmt_wait_for(vm, vmt_heartbeats_at_least, &three, "3 heartbeats", NULL);
    return vm;
}

uint8_t *vmt_save(vm_t *vm, size_t *len)
{
    uint8_t *buf = malloc(VM_STATE_MAX_BYTES);
    assert_int_equal(vm_save_state(vm, buf, VM_STATE_MAX_BYTES, len), 0);
    return buf;
}

int vmt_count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

int vmt_count_threads(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[128];
    int n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    fclose(f);
    return n;
}

int vmt_count_children(void)
{
    pid_t pids[64];
    return vmt_list_children(pids, 64);
}

pid_t vmt_only_guest(void)
{
    pid_t pids[8];
    assert_int_equal(vmt_list_children(pids, 8), 1);
    return pids[0];
}

/* How many guest processes n live VMs of backend b make. */
static int guests_of(const vmt_backend_t *b, int n) { return b->guest_process ? n : 0; }

const char *vmt_console_log_path(void)
{
    static char path[64];
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/ferry-test-console-%d.log", (int)getpid());
    return path;
}

void vmt_expect_vm_new_fails(vm_config_t cfg, const char *needle)
{
    int fds = vmt_count_fds(), threads = vmt_count_threads();
    cfg.console_log_path = vmt_console_log_path();
    unlink(cfg.console_log_path);
    char err[256] = "";
    vm_t *vm = vm_new(&cfg, err, sizeof err);
    if (vm || !strstr(err, needle))
        fail_msg("vm_new(%s) -> %p, err '%s', expected '%s'", cfg.name, (void *)vm, err, needle);
    assert_int_equal(vmt_count_fds(), fds);
    assert_int_equal(vmt_count_threads(), threads);
    assert_int_equal(vmt_count_children(), 0);
    assert_int_equal(access(cfg.console_log_path, F_OK), -1);  /* no log file made */
}

/* --- boot ---------------------------------------------------------------------- */

void vmt_test_boot_console_and_heartbeats(void **state)
{
    const vmt_backend_t *b = *state;
    vmt_require(b);
    vm_t *vm = vmt_make_vm(b, "boot", 64 * MIB, b->vcpus, "profile=idle print=200", false);
    vm_status_t st;
    vm_status(vm, &st);
    assert_int_equal(st.state, VM_CREATED);
    assert_int_equal(st.heartbeats_seen, 0);
    assert_int_equal(vm_start(vm), 0);
    assert_int_equal(vm_start(vm), -EINVAL);

    vmt_console_t *con = calloc(1, sizeof *con);
    con->needle = "ferry-guest: booting";
    vmt_wait_for(vm, vmt_console_has, con, "the boot banner", NULL);
    con->needle = b->boot_profile_line;
    vmt_wait_for(vm, vmt_console_has, con, "the profile line", NULL);
    con->needle = "hb=";
    vmt_wait_for(vm, vmt_console_has, con, "a status line", NULL);

    uint64_t five = 5;
    vmt_wait_for(vm, vmt_heartbeats_at_least, &five, "5 heartbeats", &st);
    assert_int_equal(st.state, VM_RUNNING);
    assert_int_equal(st.guest_status, GUEST_STATUS_RUNNING);
    assert_true(st.last_heartbeat_ns > 0);
    assert_true(st.vcpu_cpu_ns > 0);
    assert_int_equal(st.check_errors, 0);
    uint32_t need = 1u << GUEST_INFO_TSC_KHZ | 1u << GUEST_INFO_MEMORY_BYTES |
                    1u << GUEST_INFO_STATE_GPA | 1u << GUEST_INFO_TABLE_GPA |
                    1u << GUEST_INFO_ARENA_PAGES;
    assert_int_equal(st.info_valid & need, need);
    b->check_boot_layout(vm, &st);

    /* And the counter keeps going. */
    uint32_t h = st.heartbeat;
    vmt_wait_for(vm, vmt_counter_above, &h, "a later heartbeat", NULL);
    free(con);
    vm_destroy(&vm);
    assert_null(vm);
    assert_int_equal(vmt_count_children(), 0);
}

/* --- save / restore ------------------------------------------------------------------ */

void vmt_test_save_restore_into_fresh_vm(void **state)
{
    const vmt_backend_t *b = *state;
    vmt_require(b);
    const char *cmdline = "profile=db wss=4M rate=2M verify=50000 print=0";
    vm_t *first = vmt_boot_vm(b, "saved", 64 * MIB, b->vcpus, cmdline);
    vm_status_t st;
    uint64_t some = 200, none = 0;
    vmt_wait_for(first, vmt_written_above, &some, "200 pages written", NULL);
    vmt_wait_for(first, vmt_sweeps_above, &none, "a first sweep", &st);
    assert_int_equal(vm_pause(first), 0);
    vm_status(first, &st);
    size_t len;
    uint8_t *blob = vmt_save(first, &len);

    vm_t *copy = vmt_make_vm(b, "restored", 64 * MIB, b->vcpus, cmdline, true);
    assert_int_equal(vm_start(copy), -EINVAL);  /* incoming: nothing to run yet */
    vmt_copy_memory(first, copy);
    uint8_t h_first[32], h_copy[32];
    assert_int_equal(vm_memory_hash(first, h_first), 0);
    assert_int_equal(vm_memory_hash(copy, h_copy), 0);
    assert_memory_equal(h_first, h_copy, 32);
    char err[256];
    assert_int_equal(vm_load_state(copy, blob, len, err, sizeof err), 0);
    vm_destroy(&first);  /* the copy stands on its own */
    assert_int_equal(vmt_count_children(), guests_of(b, 1));

    vm_status_t rs;
    vm_status(copy, &rs);
    assert_int_equal(rs.heartbeat, st.heartbeat);  /* the guest's counters came along */
    assert_int_equal(rs.pages_written, st.pages_written);
    assert_int_equal(rs.heartbeats_seen, 0);  /* this VM has seen none yet */
    assert_int_equal(vm_start(copy), 0);

    /* Counters keep rising, and full sweeps after the restore find every
     * written page intact. */
    uint32_t h = st.heartbeat + 5;
    uint64_t w = st.pages_written + 50, sw = st.sweeps + 2;
    vmt_wait_for(copy, vmt_counter_above, &h, "heartbeats after restore", NULL);
    vmt_wait_for(copy, vmt_written_above, &w, "writes after restore", NULL);
    vmt_wait_for(copy, vmt_sweeps_above, &sw, "two sweeps after restore", &rs);
    assert_true(rs.pages_verified > st.pages_verified);
    assert_int_equal(rs.check_errors, 0);
    assert_int_equal(rs.guest_status, GUEST_STATUS_RUNNING);

    /* And again, from the restored one: a restore is a VM like any other. */
    assert_int_equal(vm_pause(copy), 0);
    vm_status(copy, &st);
    free(blob);
    blob = vmt_save(copy, &len);
    vm_t *again = vmt_make_vm(b, "restored-again", 64 * MIB, b->vcpus, cmdline, true);
    vmt_copy_memory(copy, again);
    assert_int_equal(vm_load_state(again, blob, len, err, sizeof err), 0);
    vm_destroy(&copy);
    assert_int_equal(vm_start(again), 0);
    sw = st.sweeps + 1;
    vmt_wait_for(again, vmt_sweeps_above, &sw, "a sweep after the second restore", &rs);
    assert_true(rs.pages_written > st.pages_written);
    assert_int_equal(rs.check_errors, 0);
    free(blob);
    vm_destroy(&again);
}

/* The table entry (8 bytes) for frame gfn, through the guest's own layout;
 * NULL where that entry is not guest memory. */
static uint64_t *table_entry(vm_t *vm, const vm_status_t *st, uint64_t gfn)
{
    vm_memory_t mem;
    vm_memory(vm, &mem);
    uint64_t gpa = st->info[GUEST_INFO_TABLE_GPA] + gfn * GUEST_TABLE_ENTRY_BYTES, page;
    if (vm_gpa_to_page(vm, gpa, &page) < 0)
        return NULL;
    return (uint64_t *)(mem.base + page * VM_PAGE_SIZE + gpa % VM_PAGE_SIZE);
}

/* The self-check is not blind: a restore that loses written pages is
 * reported by the guest itself. (Several pages, spread over a working set
 * the guest rewrites slowly, so that a rewrite cannot heal them all before a
 * sweep gets there.) */
void vmt_test_restore_with_lost_pages_is_caught(void **state)
{
    const vmt_backend_t *b = *state;
    vmt_require(b);
    const char *cmdline = "profile=db wss=16M rate=512K verify=50000 print=0";
    vm_t *first = vmt_boot_vm(b, "lossy", 64 * MIB, 1, cmdline);
    uint64_t some = 100;
    vm_status_t st;
    vmt_wait_for(first, vmt_written_above, &some, "100 pages written", &st);
    assert_int_equal(vm_pause(first), 0);
    vm_status(first, &st);
    size_t len;
    uint8_t *blob = vmt_save(first, &len);
    vm_t *copy = vmt_make_vm(b, "lossy-copy", 64 * MIB, 1, cmdline, true);
    vmt_copy_memory(first, copy);
    char err[256];
    assert_int_equal(vm_load_state(copy, blob, len, err, sizeof err), 0);

    /* Walk the frames of guest memory (from the state page's frame on) and
     * "lose" the writes to 32 written ones, found through the guest's table. */
    vm_memory_t mem;
    vm_memory(copy, &mem);
    unsigned lost = 0;
    uint64_t from = st.info[GUEST_INFO_STATE_GPA] / VM_PAGE_SIZE;
    for (uint64_t gfn = from; gfn < from + vm_page_count(copy) && lost < 32; gfn++) {
        uint64_t *entry = table_entry(copy, &st, gfn), page;
        if (!entry || (uint32_t)*entry == 0)
            continue;
        assert_int_equal(vm_gpa_to_page(copy, gfn * VM_PAGE_SIZE, &page), 0);
        memset(mem.base + page * VM_PAGE_SIZE, 0, VM_PAGE_SIZE);
        lost++;
    }
    assert_int_equal(lost, 32);

    vm_destroy(&first);
    assert_int_equal(vm_start(copy), 0);
    vmt_wait_for(copy, vmt_errors_above_zero, NULL, "the guest to report the lost pages", &st);
    assert_int_equal(st.guest_status, GUEST_STATUS_CHECK_FAILED);
    free(blob);
    vm_destroy(&copy);
}

/* --- dirty log -------------------------------------------------------------------------- */

static bool round_done(vm_t *vm, const vm_status_t *st, void *arg)
{
    (void)vm;
    return (st->info_valid & (1u << GUEST_INFO_TEST_ROUND)) &&
           st->info[GUEST_INFO_TEST_ROUND] == *(uint32_t *)arg;
}

static void set_gpa(vm_t *vm, uint64_t *bm, uint64_t gpa)
{
    uint64_t page;
    assert_int_equal(vm_gpa_to_page(vm, gpa, &page), 0);
    bm[page / 64] |= 1ull << (page % 64);
}

/* What the guest writes outside test rounds (heartbeats): its state page
 * and, where that is guest memory, its kernel stack. */
static void set_background_pages(const vmt_backend_t *b, vm_t *vm, const vm_status_t *st,
                                 uint64_t *bm)
{
    set_gpa(vm, bm, st->info[GUEST_INFO_STATE_GPA]);
    if (b->stack_in_guest_memory)
        set_gpa(vm, bm, st->info[GUEST_INFO_STACK_GPA]);
}

/* Fails naming every page where got and want differ. */
static void expect_dirty_pages(const uint64_t *got, const uint64_t *want, size_t words,
                               const char *when)
{
    for (size_t w = 0; w < words; w++) {
        if (got[w] == want[w])
            continue;
        for (int b = 0; b < 64; b++) {
            uint64_t bit = 1ull << b;
            if ((got[w] ^ want[w]) & bit)
                fprintf(stderr, "%s: page %zu %s\n", when, w * 64 + b,
                        (got[w] & bit) ? "dirty but not written" : "written but not dirty");
        }
        fail_msg("%s: the dirty log differs from the pages the guest wrote", when);
    }
}

void vmt_test_dirty_log_is_exact(void **state)
{
    const vmt_backend_t *b = *state;
    vmt_require(b);
    const char *why = b->dirty_log_unavailable ? b->dirty_log_unavailable() : NULL;
    if (why) {
        fprintf(stderr, "SKIPPED: %s backend dirty log: %s\n", b->name, why);
        skip();
    }
    vm_t *vm = vmt_boot_vm(b, "dirty", 128 * MIB, 1, "profile=test pages=48 seed=11 print=0");
    size_t words = vm_dirty_bitmap_words(vm);
    assert_int_equal(words, 128 * MIB / VM_PAGE_SIZE / 64);
    uint64_t *got = calloc(words, 8), *want = calloc(words, 8);
    assert_int_equal(vm_dirty_log_collect(vm, got), -EINVAL);  /* not enabled yet */
    assert_int_equal(vm_dirty_log_enable(vm), 0);

    vm_status_t st;
    vm_status(vm, &st);
    uint64_t table_gpa = st.info[GUEST_INFO_TABLE_GPA];
    vm_memory_t mem;
    vm_memory(vm, &mem);

    /* Between rounds the guest writes only its background pages: the first
     * window after enabling holds those and nothing it touched before. */
    uint32_t h = st.heartbeat + 2;
    vmt_wait_for(vm, vmt_counter_above, &h, "heartbeats with the log on", NULL);
    assert_int_equal(vm_dirty_log_collect(vm, got), 0);
    memset(want, 0, words * 8);
    set_background_pages(b, vm, &st, want);
    expect_dirty_pages(got, want, words, "the first window");

    for (uint32_t round = 1; round <= 6; round++) {
        /* Start the window clean. */
        assert_int_equal(vm_dirty_log_collect(vm, got), 0);
        assert_int_equal(vm_dirty_log_clear(vm, got), 0);
        assert_int_equal(vm_mailbox_post(vm, round), 0);
        vmt_wait_for(vm, round_done, &round, "the test round", &st);
        assert_int_equal(vm_dirty_log_collect(vm, got), 0);

        /* Expected: the round's pages, their self-check table entries and
         * the background pages - nothing else. */
        memset(want, 0, words * 8);
        uint64_t first = st.info[GUEST_INFO_TEST_FIRST_GFN], stride = st.info[GUEST_INFO_TEST_STRIDE];
        uint64_t count = st.info[GUEST_INFO_TEST_COUNT];
        assert_int_equal(count, 48);
        for (uint64_t i = 0; i < count; i++) {
            uint64_t gfn = first + i * stride, page;
            set_gpa(vm, want, gfn * VM_PAGE_SIZE);
            set_gpa(vm, want, table_gpa + gfn * GUEST_TABLE_ENTRY_BYTES);
            /* ...and the write really happened: the first stamp is there. */
            assert_int_equal(vm_gpa_to_page(vm, gfn * VM_PAGE_SIZE, &page), 0);
            assert_true(*(uint64_t *)(mem.base + page * VM_PAGE_SIZE) != 0);
        }
        set_background_pages(b, vm, &st, want);
        char when[32];
        snprintf(when, sizeof when, "round %u", round);
        expect_dirty_pages(got, want, words, when);
    }
    /* Bits stay set until cleared. */
    uint64_t *again = calloc(words, 8);
    assert_int_equal(vm_dirty_log_collect(vm, again), 0);
    for (size_t w = 0; w < words; w++)
        assert_int_equal(again[w] & got[w], got[w]);
    assert_int_equal(vm_dirty_log_disable(vm), 0);
    assert_int_equal(vm_dirty_log_collect(vm, again), -EINVAL);
    free(again);
    free(got);
    free(want);
    vm_destroy(&vm);
}

/* --- bad input ------------------------------------------------------------------------------ */

/* More than the host could have available: all its RAM and a GiB. */
static uint64_t more_than_the_host_has(void)
{
    struct sysinfo si;
    assert_int_equal(sysinfo(&si), 0);
    uint64_t total = (uint64_t)si.totalram * si.mem_unit;
    return ((total >> 20) + 1024) << 20;
}

void vmt_test_bad_config_is_refused_cleanly(void **state)
{
    const vmt_backend_t *b = *state;
    vmt_require(b);
    int fds = vmt_count_fds(), threads = vmt_count_threads();
    vm_config_t good = {.name = "bad", .memory_bytes = 64 * MIB, .vcpus = 1,
                        .cmdline = "profile=idle", .backend = b->name};
    vm_config_t c;

    c = good; c.memory_bytes = 0;                 vmt_expect_vm_new_fails(c, "not a multiple of 1 MiB");
    c = good; c.memory_bytes = 64 * MIB + 4096;   vmt_expect_vm_new_fails(c, "not a multiple of 1 MiB");
    c = good; c.memory_bytes = 1ull << 40;        vmt_expect_vm_new_fails(c, "not a multiple of 1 MiB");
    c = good; c.memory_bytes = UINT64_MAX;        vmt_expect_vm_new_fails(c, "not a multiple of 1 MiB");
    c = good; c.vcpus = 0;                        vmt_expect_vm_new_fails(c, "0 vCPUs");
    c = good; c.vcpus = 100000;                   vmt_expect_vm_new_fails(c, "100000 vCPUs");
    c = good; c.name = "no spaces please";        vmt_expect_vm_new_fails(c, "only letters");
    c = good; c.backend = "xen";                  vmt_expect_vm_new_fails(c, "unknown backend 'xen'");
    c = good; c.backend = "proces";               vmt_expect_vm_new_fails(c, "unknown backend 'proces'");
    c = good; c.cmdline = "profile=bogus";        vmt_expect_vm_new_fails(c, "unknown profile 'bogus'");
    c = good; c.cmdline = "profile=web hot=1G";   vmt_expect_vm_new_fails(c, "hot set larger");
    c = good; c.cmdline = "profile=db wss=1M rate=x"; vmt_expect_vm_new_fails(c, "not a number");

    uint64_t too_much = more_than_the_host_has();
    if (too_much <= VM_MAX_MEMORY) {
        c = good;
        c.memory_bytes = too_much;
        vmt_expect_vm_new_fails(c, "the host has only");
    } else {
        fprintf(stderr, "SKIPPED: host memory case (host RAM above the VM maximum)\n");
    }

    /* The console log is made last: a bad path leaves nothing behind. */
    c = good; c.console_log_path = "/nonexistent/dir/console.log";
    char err[256] = "";
    assert_null(vm_new(&c, err, sizeof err));
    assert_non_null(strstr(err, "console log"));
    assert_int_equal(vmt_count_children(), 0);
    assert_int_equal(vmt_count_fds(), fds);

    /* And the good config still works, so the checks are not just refusing. */
    c = good;
    c.console_log_path = vmt_console_log_path();
    vm_t *vm = vm_new(&c, err, sizeof err);
    assert_non_null(vm);
    assert_int_equal(access(c.console_log_path, F_OK), 0);
    vm_destroy(&vm);
    unlink(c.console_log_path);

    /* A saved state for another machine shape, or not a saved state at all,
     * is refused before it is applied. */
    vm_t *one = vmt_make_vm(b, "one-vcpu", 64 * MIB, 1, "profile=idle", false);
    vm_t *two = vmt_make_vm(b, "two-vcpus", 64 * MIB, 2, "profile=idle", true);
    size_t len;
    uint8_t *blob = vmt_save(one, &len);
    assert_int_equal(vm_load_state(two, blob, len, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "1 vCPUs"));
    blob[0] ^= 0xff;
    assert_int_equal(vm_load_state(one, blob, len, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "bad magic"));
    free(blob);
    vm_destroy(&one);
    vm_destroy(&two);
    assert_int_equal(vmt_count_children(), 0);
    assert_int_equal(vmt_count_fds(), fds);
    assert_int_equal(vmt_count_threads(), threads);
}

/* --- reset, throttle, hash ------------------------------------------------------------------------- */

void vmt_test_reset_reboots(void **state)
{
    const vmt_backend_t *b = *state;
    vmt_require(b);
    vm_t *vm = vmt_boot_vm(b, "reset", 64 * MIB, 1, "profile=db wss=2M rate=1M print=0");
    pid_t before = b->guest_process ? vmt_only_guest() : 0;
    uint64_t some = 30;
    vm_status_t st;
    vmt_wait_for(vm, vmt_written_above, &some, "some writes", &st);
    char err[256];
    assert_int_equal(vm_reset(vm, err, sizeof err), 0);
    vm_status(vm, &st);
    assert_int_equal(st.state, VM_RUNNING);
    assert_int_equal(st.pages_written, 0);
    if (b->guest_process)
        assert_true(vmt_only_guest() != before);  /* a new guest process */
    uint64_t three = 3;
    vmt_wait_for(vm, vmt_heartbeats_at_least, &three, "heartbeats after reset", &st);
    /* A fresh boot: the guest's own counter started over. */
    assert_true(st.heartbeat < 1000);
    vmt_console_t *con = calloc(1, sizeof *con);
    con->needle = "booting";
    vmt_wait_for(vm, vmt_console_has, con, "a boot banner", NULL);
    /* The second banner is after the first. */
    assert_non_null(strstr(strstr(con->text, "booting") + 1, "booting"));
    free(con);
    vm_destroy(&vm);
}

void vmt_test_throttle_keeps_guest_alive(void **state)
{
    const vmt_backend_t *b = *state;
    vmt_require(b);
    vm_t *vm = vmt_boot_vm(b, "throttle", 64 * MIB, 1, "profile=db wss=2M rate=0 print=0");
    assert_int_equal(vm_throttle(vm, 100), -EINVAL);
    assert_int_equal(vm_throttle(vm, 80), 0);
    vm_status_t st;
    vm_status(vm, &st);
    assert_int_equal(st.throttle_percent, 80);
    uint32_t h = st.heartbeat + 3;
    vmt_wait_for(vm, vmt_counter_above, &h, "heartbeats while throttled", &st);
    /* A guest writing as fast as it can is held to about a fifth of a CPU:
     * its CPU time grows slower than the wall clock (a loose bound, not a
     * measurement). */
    uint64_t cpu0 = st.vcpu_cpu_ns;
    int64_t t0 = vmt_now_ms();
    uint64_t w = st.pages_written + 1000;
    vmt_wait_for(vm, vmt_written_above, &w, "writes while throttled", &st);
    vmt_nap_ms(200);
    vm_status(vm, &st);
    uint64_t wall_ns = (uint64_t)(vmt_now_ms() - t0) * 1000000u;
    assert_true(st.vcpu_cpu_ns - cpu0 < wall_ns * 6 / 10);
    /* Pausing is not held up by a nap. */
    assert_int_equal(vm_pause(vm), 0);
    assert_int_equal(vm_resume(vm), 0);
    assert_int_equal(vm_throttle(vm, 0), 0);
    h = st.heartbeat + 3;
    vmt_wait_for(vm, vmt_counter_above, &h, "heartbeats after throttling", NULL);
    vm_destroy(&vm);
}

void vmt_test_memory_hash(void **state)
{
    const vmt_backend_t *b = *state;
    vmt_require(b);
    vm_t *vm = vmt_make_vm(b, "hash", 64 * MIB, 1, "profile=idle", false);
    vm_t *twin = vmt_make_vm(b, "hash-twin", 64 * MIB, 1, "profile=idle", false);
    uint8_t h1[32], h2[32];
    assert_int_equal(vm_memory_hash(vm, h1), 0);
    assert_int_equal(vm_memory_hash(twin, h2), 0);
    assert_memory_equal(h1, h2, 32);  /* same layout, same command line */
    vm_memory_t mem;
    vm_memory(vm, &mem);
    mem.base[40 * MIB + 5] ^= 1;
    assert_int_equal(vm_memory_hash(vm, h1), 0);
    assert_memory_not_equal(h1, h2, 32);
    mem.base[40 * MIB + 5] ^= 1;  /* a page of zeros hashes like a hole */
    assert_int_equal(vm_memory_hash(vm, h1), 0);
    assert_memory_equal(h1, h2, 32);
    assert_int_equal(vm_start(vm), 0);
    assert_int_equal(vm_memory_hash(vm, h1), -EBUSY);
    vm_destroy(&vm);
    vm_destroy(&twin);
}
