/* test_vmm_kvm.c - real KVM VMs booting the real workload kernel.
 *
 *   boot            console output, heartbeats, the guest's published layout
 *   pause/resume    a paused VM's vCPUs do not move; resumed, it carries on
 *   save/restore    state + memory into a fresh VM: counters keep rising and
 *                   the guest's self-check stays clean; a lost page is caught
 *   dirty log       the log holds exactly the pages the guest wrote
 *   bad input       clear errors, nothing left behind
 *   reset, throttle, memory hash
 *
 * Without /dev/kvm every test prints "SKIPPED: no /dev/kvm" and skips.
 * Waits are bounded polls on conditions, never fixed sleeps. */
#include <dirent.h>
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
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "guest/protocol.h"
#include "vmm/kvm_state.h"
#include "vmm/vm.h"
#include "vm_wait.h"

#define MIB (1ull << 20)

/* --- helpers ------------------------------------------------------------------ */

static bool have_kvm(void)
{
    if (access("/dev/kvm", R_OK | W_OK) == 0)
        return true;
    fprintf(stderr, "SKIPPED: no /dev/kvm\n");
    return false;
}

#define REQUIRE_KVM()      \
    do {                   \
        if (!have_kvm())   \
            skip();        \
    } while (0)


typedef struct {
    uint64_t cursor;
    char text[16384];
    size_t len;
    const char *needle;
} console_t_;

static bool console_has(vm_t *vm, const vm_status_t *st, void *arg)
{
    (void)st;
    console_t_ *c = arg;
    size_t room = sizeof c->text - 1 - c->len;
    c->len += vm_console_read(vm, &c->cursor, c->text + c->len, room);
    c->text[c->len] = '\0';
    return strstr(c->text, c->needle) != NULL;
}

static vm_t *make_vm(const char *name, uint64_t mem, unsigned vcpus, const char *cmdline,
                     bool incoming)
{
    vm_config_t cfg = {.name = name, .memory_bytes = mem, .vcpus = vcpus, .cmdline = cmdline,
                       .incoming = incoming};
    char err[256];
    vm_t *vm = vm_new(&cfg, err, sizeof err);
    if (!vm)
        fail_msg("vm_new(%s): %s", name, err);
    return vm;
}

static vm_t *boot_vm(const char *name, uint64_t mem, unsigned vcpus, const char *cmdline)
{
    vm_t *vm = make_vm(name, mem, vcpus, cmdline, false);
    assert_int_equal(vm_start(vm), 0);
    uint64_t three = 3;
    vmt_wait_for(vm, vmt_heartbeats_at_least, &three, "3 heartbeats", NULL);
    return vm;
}

/* Copies every data extent of src's memory into dst's (holes stay holes). */
static void copy_memory(vm_t *src, vm_t *dst)
{
    vm_memory_t s, d;
    vm_memory(src, &s);
    vm_memory(dst, &d);
    assert_int_equal(s.size, d.size);
    off_t at = 0;
    while (at < (off_t)s.size) {
        off_t data = lseek(s.memfd, at, SEEK_DATA);
        if (data < 0)
            break;
        off_t hole = lseek(s.memfd, data, SEEK_HOLE);
        memcpy(d.base + data, s.base + data, (size_t)(hole - data));
        at = hole;
    }
}

static uint8_t *save(vm_t *vm, size_t *len)
{
    uint8_t *buf = malloc(VM_STATE_MAX_BYTES);
    assert_int_equal(vm_save_state(vm, buf, VM_STATE_MAX_BYTES, len), 0);
    return buf;
}

/* --- boot ---------------------------------------------------------------------- */

static void test_boot_console_and_heartbeats(void **state)
{
    (void)state;
    REQUIRE_KVM();
    vm_t *vm = make_vm("boot", 64 * MIB, 2, "profile=idle print=200", false);
    assert_string_equal(vm_backend_name(vm), "kvm");
    vm_status_t st;
    vm_status(vm, &st);
    assert_int_equal(st.state, VM_CREATED);
    assert_int_equal(st.heartbeats_seen, 0);
    assert_int_equal(vm_start(vm), 0);

    console_t_ *con = calloc(1, sizeof *con);
    con->needle = "ferry-guest: booting";
    vmt_wait_for(vm, console_has, con, "the boot banner", NULL);
    con->needle = "profile=idle memory=";
    vmt_wait_for(vm, console_has, con, "the profile line", NULL);
    con->needle = "hb=";
    vmt_wait_for(vm, console_has, con, "a status line", NULL);

    uint64_t five = 5;
    vmt_wait_for(vm, vmt_heartbeats_at_least, &five, "5 heartbeats", &st);
    assert_int_equal(st.state, VM_RUNNING);
    assert_int_equal(st.guest_status, GUEST_STATUS_RUNNING);
    assert_true(st.last_heartbeat_ns > 0);
    assert_true(st.vcpu_cpu_ns > 0);
    assert_int_equal(st.check_errors, 0);
    /* The guest published its layout; RAM as the VMM gave it (64 MiB less
     * the 384 KiB legacy hole the memory map leaves out). */
    uint32_t need = 1u << GUEST_INFO_TSC_KHZ | 1u << GUEST_INFO_MEMORY_BYTES |
                    1u << GUEST_INFO_STATE_GPA | 1u << GUEST_INFO_STACK_GPA |
                    1u << GUEST_INFO_TABLE_GPA | 1u << GUEST_INFO_ARENA_PAGES;
    assert_int_equal(st.info_valid & need, need);
    assert_int_equal(st.info[GUEST_INFO_MEMORY_BYTES], 64 * MIB - (0x100000 - 0x9FC00));
    assert_true(st.info[GUEST_INFO_ARENA_PAGES] * 4096 > 48 * MIB);
    assert_true(st.info[GUEST_INFO_TSC_KHZ] > 100000);

    /* And the counter keeps going. */
    uint32_t h = st.heartbeat;
    vmt_wait_for(vm, vmt_counter_above, &h, "a later heartbeat", NULL);
    free(con);
    vm_destroy(&vm);
    assert_null(vm);
}

/* --- pause / resume --------------------------------------------------------------- */

static void test_pause_holds_vcpus_still(void **state)
{
    (void)state;
    REQUIRE_KVM();
    vm_t *vm = boot_vm("pause", 64 * MIB, 2, "profile=db wss=4M rate=1M print=0");
    assert_int_equal(vm_pause(vm), 0);
    assert_int_equal(vm_pause(vm), -EINVAL);  /* already paused */
    vm_status_t st;
    vm_status(vm, &st);
    assert_int_equal(st.state, VM_PAUSED);

    /* Two snapshots of a paused VM show the same registers: nothing ran. */
    size_t len1, len2;
    uint8_t *a = save(vm, &len1);
    vm_status_t mid;
    vm_status(vm, &mid);
    uint8_t *b = save(vm, &len2);
    kvm_state_t sa, sb;
    char err[200];
    assert_int_equal(kvm_state_decode(a, len1, &sa, err, sizeof err), 0);
    assert_int_equal(kvm_state_decode(b, len2, &sb, err, sizeof err), 0);
    for (unsigned i = 0; i < 2; i++) {
        assert_memory_equal(&sa.vcpus[i].regs, &sb.vcpus[i].regs, sizeof sa.vcpus[i].regs);
        assert_memory_equal(&sa.vcpus[i].sregs, &sb.vcpus[i].sregs, sizeof sa.vcpus[i].sregs);
    }
    assert_int_equal(mid.heartbeats_seen, st.heartbeats_seen);
    assert_int_equal(sa.report.heartbeat, st.heartbeat);
    /* The APs never got a SIPI: they wait, as documented. */
    assert_int_equal(sa.vcpus[1].mp_state.mp_state, KVM_MP_STATE_UNINITIALIZED);
    kvm_state_free(&sa);
    kvm_state_free(&sb);
    free(a);
    free(b);

    assert_int_equal(vm_resume(vm), 0);
    uint32_t h = st.heartbeat;
    vmt_wait_for(vm, vmt_counter_above, &h, "a heartbeat after resume", &st);
    assert_int_equal(st.state, VM_RUNNING);
    vm_destroy(&vm);
}

/* --- save / restore ------------------------------------------------------------------ */

static void test_save_restore_into_fresh_vm(void **state)
{
    (void)state;
    REQUIRE_KVM();
    const char *cmdline = "profile=db wss=4M rate=2M verify=50000 print=0";
    vm_t *a = boot_vm("saved", 64 * MIB, 2, cmdline);
    vm_status_t st;
    uint64_t some = 200, none = 0;
    vmt_wait_for(a, vmt_written_above, &some, "200 pages written", NULL);
    vmt_wait_for(a, vmt_sweeps_above, &none, "a first sweep", &st);
    assert_int_equal(vm_pause(a), 0);
    vm_status(a, &st);
    size_t len;
    uint8_t *blob = save(a, &len);

    vm_t *b = make_vm("restored", 64 * MIB, 2, cmdline, true);
    assert_int_equal(vm_start(b), -EINVAL);  /* nothing to run yet */
    copy_memory(a, b);
    uint8_t ha[32], hb[32];
    assert_int_equal(vm_memory_hash(a, ha), 0);
    assert_int_equal(vm_memory_hash(b, hb), 0);
    assert_memory_equal(ha, hb, 32);
    char err[256];
    assert_int_equal(vm_load_state(b, blob, len, err, sizeof err), 0);
    vm_destroy(&a);  /* the copy stands on its own */

    vm_status_t rs;
    vm_status(b, &rs);
    assert_int_equal(rs.heartbeat, st.heartbeat);          /* the guest's counters came along */
    assert_int_equal(rs.pages_written, st.pages_written);
    assert_int_equal(rs.heartbeats_seen, 0);                /* this VM has seen none yet */
    assert_int_equal(vm_start(b), 0);

    /* Counters keep rising, and full sweeps after the restore find every
     * written page intact. */
    uint32_t h = st.heartbeat + 5;
    uint64_t w = st.pages_written + 50, sw = st.sweeps + 2;
    vmt_wait_for(b, vmt_counter_above, &h, "heartbeats after restore", NULL);
    vmt_wait_for(b, vmt_written_above, &w, "writes after restore", NULL);
    vmt_wait_for(b, vmt_sweeps_above, &sw, "two sweeps after restore", &rs);
    assert_true(rs.pages_verified > st.pages_verified);
    assert_int_equal(rs.check_errors, 0);
    assert_int_equal(rs.guest_status, GUEST_STATUS_RUNNING);
    free(blob);
    vm_destroy(&b);
}

/* The self-check is not blind: a restore that loses written pages is
 * reported by the guest itself. (Several pages, spread over a working set
 * the guest rewrites slowly, so that a rewrite cannot heal them all before a
 * sweep gets there.) */
static void test_restore_with_lost_pages_is_caught(void **state)
{
    (void)state;
    REQUIRE_KVM();
    const char *cmdline = "profile=db wss=16M rate=512K verify=50000 print=0";
    vm_t *a = boot_vm("lossy", 64 * MIB, 1, cmdline);
    uint64_t some = 100;
    vm_status_t st;
    vmt_wait_for(a, vmt_written_above, &some, "100 pages written", &st);
    assert_int_equal(vm_pause(a), 0);
    vm_status(a, &st);
    size_t len;
    uint8_t *blob = save(a, &len);
    vm_t *b = make_vm("lossy-copy", 64 * MIB, 1, cmdline, true);
    copy_memory(a, b);

    /* Find written pages through the guest's table and "lose" their writes. */
    vm_memory_t mem;
    vm_memory(b, &mem);
    uint64_t table_page;
    assert_int_equal(vm_gpa_to_page(b, st.info[GUEST_INFO_TABLE_GPA], &table_page), 0);
    const uint64_t *table = (const uint64_t *)(mem.base + table_page * VM_PAGE_SIZE);
    unsigned lost = 0;
    for (uint64_t gfn = 0; gfn < vm_page_count(b) && lost < 32; gfn++) {
        if ((uint32_t)table[gfn] == 0)
            continue;
        uint64_t page;
        assert_int_equal(vm_gpa_to_page(b, gfn * VM_PAGE_SIZE, &page), 0);
        memset(mem.base + page * VM_PAGE_SIZE, 0, VM_PAGE_SIZE);
        lost++;
    }
    assert_int_equal(lost, 32);

    char err[256];
    assert_int_equal(vm_load_state(b, blob, len, err, sizeof err), 0);
    vm_destroy(&a);
    assert_int_equal(vm_start(b), 0);
    vmt_wait_for(b, vmt_errors_above_zero, NULL, "the guest to report the lost pages", &st);
    assert_int_equal(st.guest_status, GUEST_STATUS_CHECK_FAILED);
    free(blob);
    vm_destroy(&b);
}

/* --- dirty log -------------------------------------------------------------------------- */

static bool round_done(vm_t *vm, const vm_status_t *st, void *arg)
{
    (void)vm;
    return (st->info_valid & (1u << GUEST_INFO_TEST_ROUND)) &&
           st->info[GUEST_INFO_TEST_ROUND] == *(uint32_t *)arg;
}

static void set_bit(uint64_t *bm, uint64_t i) { bm[i / 64] |= 1ull << (i % 64); }

static void set_gpa(vm_t *vm, uint64_t *bm, uint64_t gpa)
{
    uint64_t page;
    assert_int_equal(vm_gpa_to_page(vm, gpa, &page), 0);
    set_bit(bm, page);
}

static void test_dirty_log_is_exact(void **state)
{
    (void)state;
    REQUIRE_KVM();
    vm_t *vm = boot_vm("dirty", 128 * MIB, 1, "profile=test pages=48 seed=11 print=0");
    size_t words = vm_dirty_bitmap_words(vm);
    assert_int_equal(words, 128 * MIB / VM_PAGE_SIZE / 64);
    uint64_t *got = calloc(words, 8), *want = calloc(words, 8);
    assert_int_equal(vm_dirty_log_collect(vm, got), -EINVAL);  /* not enabled yet */
    assert_int_equal(vm_dirty_log_enable(vm), 0);

    vm_status_t st;
    vm_status(vm, &st);
    uint64_t state_gpa = st.info[GUEST_INFO_STATE_GPA], stack_gpa = st.info[GUEST_INFO_STACK_GPA];
    uint64_t table_gpa = st.info[GUEST_INFO_TABLE_GPA];
    vm_memory_t mem;
    vm_memory(vm, &mem);

    for (uint32_t round = 1; round <= 4; round++) {
        /* Start the window clean. */
        assert_int_equal(vm_dirty_log_collect(vm, got), 0);
        assert_int_equal(vm_dirty_log_clear(vm, got), 0);
        assert_int_equal(vm_mailbox_post(vm, round), 0);
        vmt_wait_for(vm, round_done, &round, "the test round", &st);
        assert_int_equal(vm_dirty_log_collect(vm, got), 0);

        /* Expected: the round's pages, their self-check table entries, the
         * kernel's state page and its stack page - nothing else. */
        memset(want, 0, words * 8);
        uint64_t first = st.info[GUEST_INFO_TEST_FIRST_GFN], stride = st.info[GUEST_INFO_TEST_STRIDE];
        uint64_t count = st.info[GUEST_INFO_TEST_COUNT];
        assert_int_equal(count, 48);
        for (uint64_t i = 0; i < count; i++) {
            uint64_t gfn = first + i * stride;
            set_gpa(vm, want, gfn * VM_PAGE_SIZE);
            set_gpa(vm, want, table_gpa + gfn * GUEST_TABLE_ENTRY_BYTES);
            /* ...and the write really happened: the first stamp is there. */
            uint64_t page;
            assert_int_equal(vm_gpa_to_page(vm, gfn * VM_PAGE_SIZE, &page), 0);
            assert_true(*(uint64_t *)(mem.base + page * VM_PAGE_SIZE) != 0);
        }
        set_gpa(vm, want, state_gpa);
        set_gpa(vm, want, stack_gpa);

        for (size_t w = 0; w < words; w++) {
            if (got[w] == want[w])
                continue;
            for (int b = 0; b < 64; b++) {
                uint64_t bit = 1ull << b;
                if ((got[w] ^ want[w]) & bit)
                    fprintf(stderr, "round %u: page %zu %s\n", round, w * 64 + b,
                            (got[w] & bit) ? "dirty but not written" : "written but not dirty");
            }
            fail_msg("round %u: the dirty log differs from the pages the guest wrote", round);
        }
    }
    /* Bits stay set until cleared. */
    uint64_t *again = calloc(words, 8);
    assert_int_equal(vm_dirty_log_collect(vm, again), 0);
    for (size_t w = 0; w < words; w++)
        assert_int_equal(again[w] & got[w], got[w]);
    assert_int_equal(vm_dirty_log_disable(vm), 0);
    free(again);
    free(got);
    free(want);
    vm_destroy(&vm);
}

/* --- bad input ------------------------------------------------------------------------------ */

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static int count_threads(void)
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

static uint64_t mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    unsigned long long kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
            break;
    fclose(f);
    return (uint64_t)kib * 1024;
}

static char log_path[64];

static void expect_vm_new_fails(vm_config_t cfg, const char *needle)
{
    int fds = count_fds(), threads = count_threads();
    cfg.console_log_path = log_path;
    unlink(log_path);
    char err[256] = "";
    vm_t *vm = vm_new(&cfg, err, sizeof err);
    if (vm || !strstr(err, needle))
        fail_msg("vm_new(%s) -> %p, err '%s', expected '%s'", cfg.name, (void *)vm, err, needle);
    assert_int_equal(count_fds(), fds);
    assert_int_equal(count_threads(), threads);
    assert_int_equal(access(log_path, F_OK), -1);  /* no log file made */
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void test_bad_input_is_refused_cleanly(void **state)
{
    (void)state;
    REQUIRE_KVM();
    snprintf(log_path, sizeof log_path, "/tmp/ferry-test-console-%d.log", (int)getpid());
    vm_config_t good = {.name = "bad", .memory_bytes = 64 * MIB, .vcpus = 1,
                        .cmdline = "profile=idle"};
    vm_config_t c;

    c = good; c.memory_bytes = 0;                 expect_vm_new_fails(c, "not a multiple of 1 MiB");
    c = good; c.memory_bytes = 64 * MIB + 4096;   expect_vm_new_fails(c, "not a multiple of 1 MiB");
    c = good; c.memory_bytes = 1ull << 40;        expect_vm_new_fails(c, "not a multiple of 1 MiB");
    c = good; c.memory_bytes = UINT64_MAX;        expect_vm_new_fails(c, "not a multiple of 1 MiB");
    c = good; c.vcpus = 0;                        expect_vm_new_fails(c, "0 vCPUs");
    c = good; c.vcpus = 100000;                   expect_vm_new_fails(c, "100000 vCPUs");
    c = good; c.name = "no spaces please";        expect_vm_new_fails(c, "only letters");
    c = good; c.backend = "xen";                  expect_vm_new_fails(c, "unknown backend 'xen'");
    c = good; c.cmdline = "profile=bogus";        expect_vm_new_fails(c, "unknown profile 'bogus'");
    c = good; c.cmdline = "profile=web hot=1G";   expect_vm_new_fails(c, "hot set larger");
    c = good; c.cmdline = "profile=db wss=1M rate=x"; expect_vm_new_fails(c, "not a number");

    uint64_t avail = mem_available();
    uint64_t too_much = ((avail >> 20) + 1024) << 20;
    if (too_much <= VM_MAX_MEMORY) {
        c = good;
        c.memory_bytes = too_much;
        expect_vm_new_fails(c, "the host has only");
    } else {
        fprintf(stderr, "SKIPPED: host memory case (MemAvailable above the VM maximum)\n");
    }

    c = good; c.kernel_path = "/nonexistent/ferry-guest.elf";
    expect_vm_new_fails(c, "No such file or directory");
    c = good; c.kernel_path = "/tmp";
    expect_vm_new_fails(c, "not a regular file");

    char path[64];
    snprintf(path, sizeof path, "/tmp/ferry-test-garbage-%d.elf", (int)getpid());
    uint8_t junk[20000];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 131 + 7);
    write_file(path, junk, sizeof junk);
    c = good; c.kernel_path = path;
    expect_vm_new_fails(c, "no Multiboot header");

    /* The real image cut short inside its loadable part. */
    FILE *f = fopen(vm_default_kernel_path(), "rb");
    assert_non_null(f);
    size_t n = fread(junk, 1, 9000, f);
    fclose(f);
    write_file(path, junk, n);
    expect_vm_new_fails(c, "past the end of the file");
    unlink(path);

    /* And the good config still works, so the checks are not just refusing. */
    c = good;
    c.console_log_path = log_path;
    char err[256];
    vm_t *vm = vm_new(&c, err, sizeof err);
    assert_non_null(vm);
    assert_int_equal(access(log_path, F_OK), 0);
    vm_destroy(&vm);
    unlink(log_path);

    /* A saved state for another machine shape is refused before it is applied. */
    vm_t *one = make_vm("one-vcpu", 64 * MIB, 1, "profile=idle", false);
    vm_t *two = make_vm("two-vcpus", 64 * MIB, 2, "profile=idle", true);
    size_t len;
    uint8_t *blob = save(one, &len);
    assert_int_equal(vm_load_state(two, blob, len, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "1 vCPUs"));
    blob[0] ^= 0xff;
    assert_int_equal(vm_load_state(one, blob, len, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "bad magic"));
    free(blob);
    vm_destroy(&one);
    vm_destroy(&two);
}

/* --- reset, throttle, hash ------------------------------------------------------------------------- */

static void test_reset_reboots(void **state)
{
    (void)state;
    REQUIRE_KVM();
    vm_t *vm = boot_vm("reset", 64 * MIB, 1, "profile=db wss=2M rate=1M print=0");
    uint64_t some = 30;
    vm_status_t st;
    vmt_wait_for(vm, vmt_written_above, &some, "some writes", &st);
    char err[256];
    assert_int_equal(vm_reset(vm, err, sizeof err), 0);
    vm_status(vm, &st);
    assert_int_equal(st.state, VM_RUNNING);
    assert_int_equal(st.pages_written, 0);
    uint64_t three = 3;
    vmt_wait_for(vm, vmt_heartbeats_at_least, &three, "heartbeats after reset", &st);
    /* A fresh boot: the guest's own counter started over. */
    assert_true(st.heartbeat < 1000);
    console_t_ *con = calloc(1, sizeof *con);
    con->needle = "booting";
    vmt_wait_for(vm, console_has, con, "a boot banner", NULL);
    /* The second banner is after the first. */
    assert_non_null(strstr(strstr(con->text, "booting") + 1, "booting"));
    free(con);
    vm_destroy(&vm);
}

static void test_throttle_keeps_guest_alive(void **state)
{
    (void)state;
    REQUIRE_KVM();
    vm_t *vm = boot_vm("throttle", 64 * MIB, 1, "profile=idle print=0");
    assert_int_equal(vm_throttle(vm, 100), -EINVAL);
    assert_int_equal(vm_throttle(vm, 80), 0);
    vm_status_t st;
    vm_status(vm, &st);
    assert_int_equal(st.throttle_percent, 80);
    uint32_t h = st.heartbeat + 3;
    vmt_wait_for(vm, vmt_counter_above, &h, "heartbeats while throttled", &st);
    /* Pausing is not held up by a nap. */
    assert_int_equal(vm_pause(vm), 0);
    assert_int_equal(vm_resume(vm), 0);
    assert_int_equal(vm_throttle(vm, 0), 0);
    h = st.heartbeat + 3;
    vmt_wait_for(vm, vmt_counter_above, &h, "heartbeats after throttling", NULL);
    vm_destroy(&vm);
}

static void test_memory_hash(void **state)
{
    (void)state;
    REQUIRE_KVM();
    vm_t *vm = make_vm("hash", 64 * MIB, 1, "profile=idle", false);
    vm_t *twin = make_vm("hash-twin", 64 * MIB, 1, "profile=idle", false);
    uint8_t h1[32], h2[32];
    assert_int_equal(vm_memory_hash(vm, h1), 0);
    assert_int_equal(vm_memory_hash(twin, h2), 0);
    assert_memory_equal(h1, h2, 32);  /* same kernel, same command line */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boot_console_and_heartbeats),
        cmocka_unit_test(test_pause_holds_vcpus_still),
        cmocka_unit_test(test_save_restore_into_fresh_vm),
        cmocka_unit_test(test_restore_with_lost_pages_is_caught),
        cmocka_unit_test(test_dirty_log_is_exact),
        cmocka_unit_test(test_bad_input_is_refused_cleanly),
        cmocka_unit_test(test_reset_reboots),
        cmocka_unit_test(test_throttle_keeps_guest_alive),
        cmocka_unit_test(test_memory_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
