/* test_vmm_proc.c - the process backend: guest processes running the
 * workload kernel's own profile code behind vm.h.
 *
 *   boot            console output, heartbeats, the guest's published layout
 *   pause/resume    a paused guest process is stopped and says nothing more
 *   save/restore    state + memory into a fresh VM: counters keep rising and
 *                   the guest's self-check stays clean; a lost page is caught
 *   dirty log       the log holds exactly the pages the guest wrote
 *   bad input       clear errors, nothing left behind (no process, no fds)
 *   selection       no usable /dev/kvm -> the process backend, and it boots
 *   reset, throttle, memory hash, a guest process that dies
 *
 * The dirty log needs userfaultfd async write-protect and PAGEMAP_SCAN
 * (Linux 6.7); without them that test prints "SKIPPED: <reason>". Waits are
 * bounded polls on conditions, never fixed sleeps. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "guest/protocol.h"
#include "vmm/proc_uapi.h"
#include "vmm/vm.h"
#include "vm_wait.h"

#define MIB (1ull << 20)

/* --- helpers ------------------------------------------------------------------ */


static bool is_stopped(vm_t *vm, const vm_status_t *st, void *arg)
{
    (void)vm;
    (void)arg;
    return st->state == VM_STOPPED;
}

typedef struct {
    uint64_t cursor;
    char text[16384];
    size_t len;
    const char *needle;
} console_buf_t;

static bool console_has(vm_t *vm, const vm_status_t *st, void *arg)
{
    (void)st;
    console_buf_t *c = arg;
    size_t room = sizeof c->text - 1 - c->len;
    c->len += vm_console_read(vm, &c->cursor, c->text + c->len, room);
    c->text[c->len] = '\0';
    return strstr(c->text, c->needle) != NULL;
}

static vm_t *make_vm(const char *name, uint64_t mem, unsigned vcpus, const char *cmdline,
                     bool incoming)
{
    vm_config_t cfg = {.name = name, .memory_bytes = mem, .vcpus = vcpus, .cmdline = cmdline,
                       .incoming = incoming, .backend = "process"};
    char err[256];
    vm_t *vm = vm_new(&cfg, err, sizeof err);
    if (!vm)
        fail_msg("vm_new(%s): %s", name, err);
    assert_string_equal(vm_backend_name(vm), "process");
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

static int count_children(void)
{
    pid_t pids[64];
    return vmt_list_children(pids, 64);
}

/* The one guest process of the one VM alive. */
static pid_t only_guest(void)
{
    pid_t pids[8];
    assert_int_equal(vmt_list_children(pids, 8), 1);
    return pids[0];
}

/* The state letter in /proc/PID/stat (R, S, T, ...). */
static char process_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *paren = strrchr(buf, ')');
    assert_non_null(paren);
    return paren[2];
}

/* --- boot ---------------------------------------------------------------------- */

static void test_boot_console_and_heartbeats(void **state)
{
    (void)state;
    vm_t *vm = make_vm("boot", 64 * MIB, 1, "profile=idle print=200", false);
    vm_status_t st;
    vm_status(vm, &st);
    assert_int_equal(st.state, VM_CREATED);
    assert_int_equal(st.heartbeats_seen, 0);
    assert_int_equal(vm_start(vm), 0);
    assert_int_equal(vm_start(vm), -EINVAL);

    console_buf_t *con = calloc(1, sizeof *con);
    con->needle = "ferry-guest: booting";
    vmt_wait_for(vm, console_has, con, "the boot banner", NULL);
    con->needle = "profile=idle memory=64MiB";
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
    uint32_t need = 1u << GUEST_INFO_PROFILE | 1u << GUEST_INFO_TSC_KHZ |
                    1u << GUEST_INFO_MEMORY_BYTES | 1u << GUEST_INFO_STATE_GPA |
                    1u << GUEST_INFO_TABLE_GPA | 1u << GUEST_INFO_ARENA_PAGES;
    assert_int_equal(st.info_valid & need, need);
    assert_int_equal(st.info[GUEST_INFO_PROFILE], GUEST_PROFILE_IDLE);
    assert_int_equal(st.info[GUEST_INFO_MEMORY_BYTES], 64 * MIB);
    assert_int_equal(st.info[GUEST_INFO_TSC_KHZ], 1000000);  /* a nanosecond clock */
    assert_true(st.info[GUEST_INFO_ARENA_PAGES] * 4096 > 60 * MIB);
    /* The state page is guest memory. */
    uint64_t page;
    assert_int_equal(vm_gpa_to_page(vm, st.info[GUEST_INFO_STATE_GPA], &page), 0);
    assert_true(page < vm_page_count(vm));

    uint32_t h = st.heartbeat;
    vmt_wait_for(vm, vmt_counter_above, &h, "a later heartbeat", NULL);
    free(con);
    vm_destroy(&vm);
    assert_null(vm);
    assert_int_equal(count_children(), 0);
}

/* --- pause / resume --------------------------------------------------------------- */

static void test_pause_stops_the_guest_process(void **state)
{
    (void)state;
    vm_t *vm = boot_vm("pause", 64 * MIB, 1, "profile=db wss=4M rate=1M print=0");
    pid_t guest = only_guest();
    assert_int_equal(vm_pause(vm), 0);
    assert_int_equal(vm_pause(vm), -EINVAL);
    vm_status_t st, later;
    vm_status(vm, &st);
    assert_int_equal(st.state, VM_PAUSED);
    assert_int_equal(process_state(guest), 'T');  /* stopped by the kernel */

    /* Paused, nothing moves: after a save (which reads the report) and a
     * full heartbeat period, the report is where pause left it. */
    size_t len;
    uint8_t *blob = save(vm, &len);
    vmt_nap_ms(50);
    vm_status(vm, &later);
    assert_int_equal(later.heartbeats_seen, st.heartbeats_seen);
    assert_int_equal(later.heartbeat, st.heartbeat);
    assert_int_equal(later.pages_written, st.pages_written);
    free(blob);

    assert_int_equal(vm_resume(vm), 0);
    uint32_t h = st.heartbeat;
    vmt_wait_for(vm, vmt_counter_above, &h, "a heartbeat after resume", &st);
    assert_int_equal(st.state, VM_RUNNING);
    assert_true(process_state(guest) != 'T');
    vm_destroy(&vm);
}

/* --- save / restore ------------------------------------------------------------------ */

static void test_save_restore_into_fresh_vm(void **state)
{
    (void)state;
    const char *cmdline = "profile=db wss=4M rate=2M verify=50000 print=0";
    vm_t *a = boot_vm("saved", 64 * MIB, 1, cmdline);
    vm_status_t st;
    uint64_t some = 200, none = 0;
    vmt_wait_for(a, vmt_written_above, &some, "200 pages written", NULL);
    vmt_wait_for(a, vmt_sweeps_above, &none, "a first sweep", &st);
    assert_int_equal(vm_pause(a), 0);
    vm_status(a, &st);
    size_t len;
    uint8_t *blob = save(a, &len);

    vm_t *b = make_vm("restored", 64 * MIB, 1, cmdline, true);
    assert_int_equal(vm_start(b), -EINVAL);  /* incoming: no state yet */
    copy_memory(a, b);
    uint8_t ha[32], hb[32];
    assert_int_equal(vm_memory_hash(a, ha), 0);
    assert_int_equal(vm_memory_hash(b, hb), 0);
    assert_memory_equal(ha, hb, 32);
    char err[256];
    assert_int_equal(vm_load_state(b, blob, len, err, sizeof err), 0);
    vm_destroy(&a);  /* the copy stands on its own */
    assert_int_equal(count_children(), 1);

    vm_status_t rs;
    vm_status(b, &rs);
    assert_int_equal(rs.heartbeat, st.heartbeat);
    assert_int_equal(rs.pages_written, st.pages_written);
    assert_int_equal(rs.heartbeats_seen, 0);
    assert_int_equal(vm_start(b), 0);

    uint32_t h = st.heartbeat + 5;
    uint64_t w = st.pages_written + 50, sw = st.sweeps + 2;
    vmt_wait_for(b, vmt_counter_above, &h, "heartbeats after restore", NULL);
    vmt_wait_for(b, vmt_written_above, &w, "writes after restore", NULL);
    vmt_wait_for(b, vmt_sweeps_above, &sw, "two sweeps after restore", &rs);
    assert_true(rs.pages_verified > st.pages_verified);
    assert_int_equal(rs.check_errors, 0);
    assert_int_equal(rs.guest_status, GUEST_STATUS_RUNNING);

    /* And again, from the restored one: a restore is a VM like any other. */
    assert_int_equal(vm_pause(b), 0);
    vm_status(b, &st);
    free(blob);
    blob = save(b, &len);
    vm_t *c = make_vm("restored-again", 64 * MIB, 1, cmdline, true);
    copy_memory(b, c);
    assert_int_equal(vm_load_state(c, blob, len, err, sizeof err), 0);
    vm_destroy(&b);
    assert_int_equal(vm_start(c), 0);
    sw = st.sweeps + 1;
    vmt_wait_for(c, vmt_sweeps_above, &sw, "a sweep after the second restore", &rs);
    assert_true(rs.pages_written > st.pages_written);
    assert_int_equal(rs.check_errors, 0);
    free(blob);
    vm_destroy(&c);
}

/* The table entry (8 bytes) for frame gfn, through the guest's own layout. */
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
 * reported by the guest itself. */
static void test_restore_with_lost_pages_is_caught(void **state)
{
    (void)state;
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
    char err[256];
    assert_int_equal(vm_load_state(b, blob, len, err, sizeof err), 0);

    /* Walk the frames of guest memory (from the state page's frame on) and
     * "lose" the writes to 32 written ones. */
    vm_memory_t mem;
    vm_memory(b, &mem);
    unsigned lost = 0;
    uint64_t first = st.info[GUEST_INFO_STATE_GPA] / VM_PAGE_SIZE;
    for (uint64_t gfn = first; gfn < first + vm_page_count(b) && lost < 32; gfn++) {
        uint64_t *entry = table_entry(b, &st, gfn), page;
        if (!entry || (uint32_t)*entry == 0)
            continue;
        assert_int_equal(vm_gpa_to_page(b, gfn * VM_PAGE_SIZE, &page), 0);
        memset(mem.base + page * VM_PAGE_SIZE, 0, VM_PAGE_SIZE);
        lost++;
    }
    assert_int_equal(lost, 32);

    vm_destroy(&a);
    assert_int_equal(vm_start(b), 0);
    vmt_wait_for(b, vmt_errors_above_zero, NULL, "the guest to report the lost pages", &st);
    assert_int_equal(st.guest_status, GUEST_STATUS_CHECK_FAILED);
    free(blob);
    vm_destroy(&b);
}

/* --- dirty log -------------------------------------------------------------------------- */

/* Whether this kernel can do what the dirty log needs, asked independently
 * of the code under test; NULL if it can, else why not. */
static const char *dirty_tracking_unavailable(void)
{
    static char why[160];
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
    if (fd < 0) {
        snprintf(why, sizeof why, "userfaultfd: %s", strerror(errno));
        return why;
    }
    struct uffdio_api api = {.api = UFFD_API};
    int rc = ioctl(fd, UFFDIO_API, &api);
    close(fd);
    if (rc < 0 || !(api.features & UFFD_FEATURE_WP_ASYNC))
        return "no userfaultfd async write-protect (UFFD_FEATURE_WP_ASYNC, Linux 6.7)";
    int pm = open("/proc/self/pagemap", O_RDONLY);
    struct pm_scan_arg a = {.size = sizeof a};
    uint8_t page[2 * 4096];
    a.start = ((uint64_t)(uintptr_t)page + 4095) & ~4095ull;
    a.end = a.start;
    rc = ioctl(pm, PAGEMAP_SCAN, &a);
    close(pm);
    if (rc < 0)
        return "no PAGEMAP_SCAN ioctl (Linux 6.7)";
    return NULL;
}

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

static void test_dirty_log_is_exact(void **state)
{
    (void)state;
    const char *why = dirty_tracking_unavailable();
    if (why) {
        fprintf(stderr, "SKIPPED: process backend dirty log: %s\n", why);
        skip();
    }
    vm_t *vm = boot_vm("dirty", 128 * MIB, 1, "profile=test pages=48 seed=11 print=0");
    size_t words = vm_dirty_bitmap_words(vm);
    assert_int_equal(words, 128 * MIB / VM_PAGE_SIZE / 64);
    uint64_t *got = calloc(words, 8), *want = calloc(words, 8);
    assert_int_equal(vm_dirty_log_collect(vm, got), -EINVAL);  /* not enabled yet */
    assert_int_equal(vm_dirty_log_enable(vm), 0);

    vm_status_t st;
    vm_status(vm, &st);
    uint64_t state_gpa = st.info[GUEST_INFO_STATE_GPA], table_gpa = st.info[GUEST_INFO_TABLE_GPA];
    vm_memory_t mem;
    vm_memory(vm, &mem);

    /* Between rounds the guest writes only its state page (heartbeats): the
     * first window after enabling holds that page and nothing the guest
     * touched before. */
    uint32_t h = st.heartbeat + 2;
    vmt_wait_for(vm, vmt_counter_above, &h, "heartbeats with the log on", NULL);
    assert_int_equal(vm_dirty_log_collect(vm, got), 0);
    memset(want, 0, words * 8);
    set_gpa(vm, want, state_gpa);
    assert_memory_equal(got, want, words * 8);

    for (uint32_t round = 1; round <= 6; round++) {
        assert_int_equal(vm_dirty_log_collect(vm, got), 0);
        assert_int_equal(vm_dirty_log_clear(vm, got), 0);
        assert_int_equal(vm_mailbox_post(vm, round), 0);
        vmt_wait_for(vm, round_done, &round, "the test round", &st);
        assert_int_equal(vm_dirty_log_collect(vm, got), 0);

        /* Expected: the round's pages, their self-check table entries and
         * the state page - nothing else (the guest process's stack is not
         * guest memory). */
        memset(want, 0, words * 8);
        uint64_t first = st.info[GUEST_INFO_TEST_FIRST_GFN], stride = st.info[GUEST_INFO_TEST_STRIDE];
        uint64_t count = st.info[GUEST_INFO_TEST_COUNT];
        assert_int_equal(count, 48);
        for (uint64_t i = 0; i < count; i++) {
            uint64_t gfn = first + i * stride, page;
            set_gpa(vm, want, gfn * VM_PAGE_SIZE);
            set_gpa(vm, want, table_gpa + gfn * GUEST_TABLE_ENTRY_BYTES);
            assert_int_equal(vm_gpa_to_page(vm, gfn * VM_PAGE_SIZE, &page), 0);
            assert_true(*(uint64_t *)(mem.base + page * VM_PAGE_SIZE) != 0);
        }
        set_gpa(vm, want, state_gpa);

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
    assert_int_equal(vm_dirty_log_collect(vm, again), -EINVAL);
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
    assert_int_equal(count_children(), 0);
    assert_int_equal(access(log_path, F_OK), -1);
}

static void test_bad_input_is_refused_cleanly(void **state)
{
    (void)state;
    snprintf(log_path, sizeof log_path, "/tmp/ferry-test-proc-console-%d.log", (int)getpid());
    int fds = count_fds(), threads = count_threads();
    vm_config_t good = {.name = "bad", .memory_bytes = 64 * MIB, .vcpus = 1,
                        .cmdline = "profile=idle", .backend = "process"};
    vm_config_t c;
    c = good; c.memory_bytes = 64 * MIB + 4096;   expect_vm_new_fails(c, "not a multiple of 1 MiB");
    c = good; c.memory_bytes = UINT64_MAX;        expect_vm_new_fails(c, "not a multiple of 1 MiB");
    c = good; c.vcpus = 0;                        expect_vm_new_fails(c, "0 vCPUs");
    c = good; c.name = "no spaces please";        expect_vm_new_fails(c, "only letters");
    c = good; c.backend = "proces";               expect_vm_new_fails(c, "unknown backend 'proces'");
    c = good; c.cmdline = "profile=bogus";        expect_vm_new_fails(c, "unknown profile 'bogus'");
    c = good; c.cmdline = "profile=web hot=1G";   expect_vm_new_fails(c, "hot set larger");
    c = good; c.cmdline = "profile=db wss=1M rate=x"; expect_vm_new_fails(c, "not a number");
    /* The console log is made last: a bad path leaves no guest process. */
    c = good; c.console_log_path = "/nonexistent/dir/console.log";
    {
        char err[256] = "";
        assert_null(vm_new(&c, err, sizeof err));
        assert_non_null(strstr(err, "console log"));
        assert_int_equal(count_children(), 0);
        assert_int_equal(count_fds(), fds);
    }
    /* A process guest boots no kernel image: a missing one does not matter. */
    c = good; c.kernel_path = "/nonexistent/ferry-guest.elf";
    char err[256];
    vm_t *vm = vm_new(&c, err, sizeof err);
    assert_non_null(vm);
    vm_destroy(&vm);

    /* Saved states: the wrong shape, the wrong backend, garbage; each refused
     * before anything changes, and the VM still boots afterwards. */
    vm_t *one = make_vm("one-vcpu", 64 * MIB, 1, "profile=idle", false);
    vm_t *two = make_vm("two-vcpus", 64 * MIB, 2, "profile=idle", true);
    vm_t *big = make_vm("bigger", 96 * MIB, 1, "profile=idle", true);
    size_t len;
    uint8_t *blob = save(one, &len);
    assert_int_equal(vm_load_state(two, blob, len, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "1 vCPUs"));
    assert_int_equal(vm_load_state(big, blob, len, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "64 MiB"));
    assert_int_equal(vm_load_state(two, blob, len - 1, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "bytes"));
    blob[0] ^= 0xff;
    assert_int_equal(vm_load_state(two, blob, len, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "bad magic"));
    blob[0] ^= 0xff;
    assert_int_equal(vm_load_state(two, blob, 3, err, sizeof err), -EINVAL);
    assert_int_equal(vm_start(two), -EINVAL);  /* still nothing loaded */
    /* A KVM state (magic "FVMS") is not a process state. */
    uint8_t kvm_magic[64] = {'F', 'V', 'M', 'S', 1, 0};
    assert_int_equal(vm_load_state(one, kvm_magic, sizeof kvm_magic, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "bad magic"));
    /* Loading into a running VM is refused. */
    assert_int_equal(vm_start(one), 0);
    assert_int_equal(vm_pause(one), 0);
    assert_int_equal(vm_load_state(one, blob, len, err, sizeof err), -EBUSY);
    assert_int_equal(vm_resume(one), 0);
    uint64_t three = 3;
    vmt_wait_for(one, vmt_heartbeats_at_least, &three, "heartbeats after refused loads", NULL);
    free(blob);

    /* Memory that holds no guest: the restored guest refuses to run it and
     * the VM stops with the reason, instead of running garbage. */
    blob = NULL;
    assert_int_equal(vm_pause(one), 0);
    blob = save(one, &len);
    vm_t *empty = make_vm("empty", 64 * MIB, 1, "profile=idle", true);
    assert_int_equal(vm_load_state(empty, blob, len, err, sizeof err), 0);
    assert_int_equal(vm_start(empty), 0);
    vm_status_t st;
    vmt_wait_for(empty, is_stopped, NULL, "the guest to refuse empty memory", &st);
    assert_non_null(strstr(st.stop_reason, "holds no process guest"));
    free(blob);

    vm_destroy(&one);
    vm_destroy(&two);
    vm_destroy(&big);
    vm_destroy(&empty);
    assert_int_equal(count_children(), 0);
    assert_int_equal(count_fds(), fds);
    assert_int_equal(count_threads(), threads);
}

/* --- a guest process that dies ---------------------------------------------------------------- */

static void test_guest_process_death_stops_the_vm(void **state)
{
    (void)state;
    vm_t *vm = boot_vm("doomed", 64 * MIB, 1, "profile=idle print=0");
    kill(only_guest(), SIGKILL);
    vm_status_t st;
    vmt_wait_for(vm, is_stopped, NULL, "the VM to notice", &st);
    assert_non_null(strstr(st.stop_reason, "signal 9"));
    assert_int_equal(vm_pause(vm), -EINVAL);
    vm_destroy(&vm);
    assert_int_equal(count_children(), 0);
}

/* --- what a guest process holds ------------------------------------------------------------------- */

static int count_lines_with(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static bool kvm_opens(void);

/* Forked from a VMM that runs other VMs, a guest process keeps none of
 * their memory (or KVM's vCPU areas) mapped, nor their descriptors: else
 * destroying them would not free them while this guest lives. */
static void test_guest_process_holds_only_its_own_memory(void **state)
{
    (void)state;
    vm_config_t cfg = {.name = "neighbour", .memory_bytes = 64 * MIB, .vcpus = 1,
                       .cmdline = "profile=idle", .backend = kvm_opens() ? "kvm" : "process"};
    char err[256];
    vm_t *neighbour = vm_new(&cfg, err, sizeof err);
    if (!neighbour)
        fail_msg("vm_new: %s", err);
    assert_int_equal(vm_start(neighbour), 0);
    vm_t *vm = boot_vm("own", 64 * MIB, 1, "profile=idle print=0");

    pid_t pids[8], guest = 0;
    int n = vmt_list_children(pids, 8);
    for (int i = 0; i < n; i++) {
        char path[64], comm[32] = "";
        snprintf(path, sizeof path, "/proc/%d/comm", (int)pids[i]);
        FILE *f = fopen(path, "r");
        if (f && fgets(comm, sizeof comm, f) && strncmp(comm, "vm:own", 6) == 0)
            guest = pids[i];
        if (f)
            fclose(f);
    }
    assert_true(guest > 0);
    char maps[64], fds[64];
    snprintf(maps, sizeof maps, "/proc/%d/maps", (int)guest);
    assert_int_equal(count_lines_with(maps, "ferry-vm:own"), 1);  /* mapped once, at base */
    assert_int_equal(count_lines_with(maps, "ferry-vm:neighbour"), 0);
    assert_int_equal(count_lines_with(maps, "kvm"), 0);
    /* Descriptors: its socket, and nothing of KVM's or any VM's memory
     * (not even its own memfd: the mapping holds that). */
    snprintf(fds, sizeof fds, "/proc/%d/fd", (int)guest);
    DIR *d = opendir(fds);
    assert_non_null(d);
    int sockets = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char link[96], target[256] = "";
        snprintf(link, sizeof link, "%s/%.16s", fds, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        target[n > 0 ? n : 0] = '\0';
        if (strstr(target, "kvm") || strstr(target, "memfd:"))
            fail_msg("guest process holds fd %s -> %s", e->d_name, target);
        sockets += strncmp(target, "socket:", 7) == 0;
    }
    closedir(d);
    assert_int_equal(sockets, 1);
    vm_destroy(&vm);
    vm_destroy(&neighbour);
}

/* A VMM process that dies without destroying its VM: its guest process
 * follows (a running one sees the socket hang up, a paused one gets the
 * kernel's SIGHUP for an orphaned, stopped process group). */
static void vmm_that_dies(int report_fd, bool paused)
{
    vm_config_t cfg = {.name = "orphan", .memory_bytes = 64 * MIB, .vcpus = 1,
                       .cmdline = "profile=db wss=2M rate=1M print=0", .backend = "process"};
    char err[256];
    vm_t *vm = vm_new(&cfg, err, sizeof err);
    if (!vm || vm_start(vm) < 0)
        _exit(1);
    int64_t deadline = vmt_now_ms() + VMT_WAIT_MS;
    vm_status_t st;
    do {
        vmt_nap_ms(5);
        vm_status(vm, &st);
    } while (st.heartbeats_seen < 3 && vmt_now_ms() < deadline);
    if (paused && vm_pause(vm) < 0)
        _exit(2);
    pid_t pids[4];
    if (vmt_list_children(pids, 4) != 1)
        _exit(3);
    if (write(report_fd, &pids[0], sizeof pids[0]) != sizeof pids[0])
        _exit(4);
    _exit(0);  /* no vm_destroy: the VMM just goes */
}

static bool gone_or_zombie(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *paren = strrchr(buf, ')');
    return !paren || paren[2] == 'Z' || paren[2] == 'X';
}

static void test_no_guest_outlives_its_vmm(void **state)
{
    (void)state;
    for (int paused = 0; paused <= 1; paused++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t vmm = fork();
        if (vmm == 0) {
            close(fds[0]);
            vmm_that_dies(fds[1], paused);
        }
        close(fds[1]);
        pid_t guest = 0;
        assert_int_equal(read(fds[0], &guest, sizeof guest), sizeof guest);
        close(fds[0]);
        int status;
        assert_int_equal(waitpid(vmm, &status, 0), vmm);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        int64_t deadline = vmt_now_ms() + VMT_WAIT_MS;
        while (!gone_or_zombie(guest)) {
            if (vmt_now_ms() > deadline)
                fail_msg("%s guest process %d outlived its VMM", paused ? "paused" : "running",
                         (int)guest);
            vmt_nap_ms(5);
        }
    }
}

/* --- backend selection ---------------------------------------------------------------------------- */

static bool kvm_opens(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

static void test_default_backend_follows_dev_kvm(void **state)
{
    (void)state;
    const char *def = vm_default_backend();
    assert_string_equal(def, kvm_opens() ? "kvm" : "process");
    vm_config_t cfg = {.name = "auto", .memory_bytes = 64 * MIB, .vcpus = 1,
                       .cmdline = "profile=idle"};
    char err[256];
    vm_t *vm = vm_new(&cfg, err, sizeof err);
    if (!vm)
        fail_msg("vm_new: %s", err);
    assert_string_equal(vm_backend_name(vm), def);
    vm_destroy(&vm);
}

/* In a mount namespace where /dev/kvm is /dev/null, the default is the
 * process backend, and a VM with no backend named boots there. Runs in a
 * child process so that the namespace goes away with it. */
static int hidden_kvm_child(void)
{
    if (unshare(CLONE_NEWNS) < 0)
        return 77;
    if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0)
        return 77;
    if (access("/dev/kvm", F_OK) == 0 && mount("/dev/null", "/dev/kvm", "none", MS_BIND, NULL) < 0)
        return 77;
    if (strcmp(vm_default_backend(), "process") != 0)
        return 1;
    vm_config_t cfg = {.name = "no-kvm", .memory_bytes = 64 * MIB, .vcpus = 1,
                       .cmdline = "profile=idle"};
    char err[256];
    vm_t *vm = vm_new(&cfg, err, sizeof err);
    if (!vm || strcmp(vm_backend_name(vm), "process") != 0)
        return 2;
    if (vm_start(vm) < 0)
        return 3;
    int64_t deadline = vmt_now_ms() + VMT_WAIT_MS;
    vm_status_t st;
    do {
        vmt_nap_ms(5);
        vm_status(vm, &st);
    } while (st.heartbeats_seen < 3 && vmt_now_ms() < deadline);
    vm_destroy(&vm);
    return st.heartbeats_seen >= 3 ? 0 : 4;
}

static void test_no_kvm_selects_process_backend(void **state)
{
    (void)state;
    pid_t pid = fork();
    if (pid == 0)
        _exit(hidden_kvm_child());
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) {
        fprintf(stderr, "SKIPPED: cannot hide /dev/kvm (needs a private mount namespace)\n");
        skip();
    }
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* --- reset, throttle, hash ------------------------------------------------------------------------- */

static void test_reset_reboots(void **state)
{
    (void)state;
    vm_t *vm = boot_vm("reset", 64 * MIB, 1, "profile=db wss=2M rate=1M print=0");
    pid_t before = only_guest();
    uint64_t some = 30;
    vm_status_t st;
    vmt_wait_for(vm, vmt_written_above, &some, "some writes", &st);
    char err[256];
    assert_int_equal(vm_reset(vm, err, sizeof err), 0);
    vm_status(vm, &st);
    assert_int_equal(st.state, VM_RUNNING);
    assert_int_equal(st.pages_written, 0);
    assert_true(only_guest() != before);  /* a new guest process */
    uint64_t three = 3;
    vmt_wait_for(vm, vmt_heartbeats_at_least, &three, "heartbeats after reset", &st);
    assert_true(st.heartbeat < 1000);
    console_buf_t *con = calloc(1, sizeof *con);
    con->needle = "booting";
    vmt_wait_for(vm, console_has, con, "a boot banner", NULL);
    assert_non_null(strstr(strstr(con->text, "booting") + 1, "booting"));
    free(con);
    vm_destroy(&vm);
}

static void test_throttle_keeps_guest_alive(void **state)
{
    (void)state;
    vm_t *vm = boot_vm("throttle", 64 * MIB, 1, "profile=db wss=2M rate=0 print=0");
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
    vm_t *vm = make_vm("hash", 64 * MIB, 1, "profile=idle", false);
    vm_t *twin = make_vm("hash-twin", 64 * MIB, 1, "profile=idle", false);
    uint8_t h1[32], h2[32];
    assert_int_equal(vm_memory_hash(vm, h1), 0);
    assert_int_equal(vm_memory_hash(twin, h2), 0);
    assert_memory_equal(h1, h2, 32);  /* same layout, same command line */
    vm_memory_t mem;
    vm_memory(vm, &mem);
    mem.base[40 * MIB + 5] ^= 1;
    assert_int_equal(vm_memory_hash(vm, h1), 0);
    assert_memory_not_equal(h1, h2, 32);
    mem.base[40 * MIB + 5] ^= 1;
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
        cmocka_unit_test(test_pause_stops_the_guest_process),
        cmocka_unit_test(test_save_restore_into_fresh_vm),
        cmocka_unit_test(test_restore_with_lost_pages_is_caught),
        cmocka_unit_test(test_dirty_log_is_exact),
        cmocka_unit_test(test_bad_input_is_refused_cleanly),
        cmocka_unit_test(test_guest_process_death_stops_the_vm),
        cmocka_unit_test(test_guest_process_holds_only_its_own_memory),
        cmocka_unit_test(test_no_guest_outlives_its_vmm),
        cmocka_unit_test(test_default_backend_follows_dev_kvm),
        cmocka_unit_test(test_no_kvm_selects_process_backend),
        cmocka_unit_test(test_reset_reboots),
        cmocka_unit_test(test_throttle_keeps_guest_alive),
        cmocka_unit_test(test_memory_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
