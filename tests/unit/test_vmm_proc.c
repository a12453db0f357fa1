/* test_vmm_proc.c - the process backend: guest processes running the
 * workload kernel's own profile code behind vm.h.
 *
 * The tests every backend passes (vm_backend_tests.h: boot, save/restore,
 * a lost page caught, an exact dirty log, bad configs, reset, throttle,
 * memory hash) run here on "process", with what is particular to it:
 *
 *   boot layout     RAM exactly as asked, a nanosecond clock
 *   pause/resume    a paused guest process is stopped and says nothing more
 *   saved states    the wrong size, backend or length, or empty memory:
 *                   refused, nothing left behind (no process, no fds)
 *   guest process   one that dies stops its VM; it holds only its own
 *                   memory; none outlives its VMM
 *   selection       no usable /dev/kvm -> the process backend, and it boots
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
#include "vm_backend_tests.h"
#include "vm_wait.h"

/* --- helpers ------------------------------------------------------------------ */

static bool is_stopped(vm_t *vm, const vm_status_t *st, void *arg)
{
    (void)vm;
    (void)arg;
    return st->state == VM_STOPPED;
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

/* --- the backend ------------------------------------------------------------- */

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

/* RAM exactly as asked, a nanosecond clock, and the state page in guest
 * memory (the guest's stack is the process's own, not guest memory). */
static void check_process_boot_layout(vm_t *vm, const vm_status_t *st)
{
    assert_true(st->info_valid & 1u << GUEST_INFO_PROFILE);
    assert_int_equal(st->info[GUEST_INFO_PROFILE], GUEST_PROFILE_IDLE);
    assert_int_equal(st->info[GUEST_INFO_MEMORY_BYTES], 64 * MIB);
    assert_int_equal(st->info[GUEST_INFO_TSC_KHZ], 1000000);  /* a nanosecond clock */
    assert_true(st->info[GUEST_INFO_ARENA_PAGES] * 4096 > 60 * MIB);
    uint64_t page;
    assert_int_equal(vm_gpa_to_page(vm, st->info[GUEST_INFO_STATE_GPA], &page), 0);
    assert_true(page < vm_page_count(vm));
}

static const vmt_backend_t proc = {
    .name = "process",
    .vcpus = 1,
    .guest_process = true,
    .boot_profile_line = "profile=idle memory=64MiB",
    .check_boot_layout = check_process_boot_layout,
    .dirty_log_unavailable = dirty_tracking_unavailable,
    .stack_in_guest_memory = false,
};

/* --- pause / resume --------------------------------------------------------------- */

static void test_pause_stops_the_guest_process(void **state)
{
    (void)state;
    vm_t *vm = vmt_boot_vm(&proc, "pause", 64 * MIB, 1, "profile=db wss=4M rate=1M print=0");
    pid_t guest = vmt_only_guest();
    assert_int_equal(vm_pause(vm), 0);
    assert_int_equal(vm_pause(vm), -EINVAL);
    vm_status_t st, later;
    vm_status(vm, &st);
    assert_int_equal(st.state, VM_PAUSED);
    assert_int_equal(process_state(guest), 'T');  /* stopped by the kernel */

    /* Paused, nothing moves: after a save (which reads the report) and a
     * full heartbeat period, the report is where pause left it. */
    size_t len;
    uint8_t *blob = vmt_save(vm, &len);
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

/* --- saved states ------------------------------------------------------------------------------ */

/* Beyond the shape and magic every backend checks: the wrong memory size,
 * length or backend, each refused before anything changes, and the VM still
 * boots afterwards; then memory that holds no guest. */
static void test_bad_saved_state_is_refused_cleanly(void **state)
{
    (void)state;
    int fds = vmt_count_fds(), threads = vmt_count_threads();
    char err[256];
    vm_t *one = vmt_make_vm(&proc, "one-vcpu", 64 * MIB, 1, "profile=idle", false);
    vm_t *two = vmt_make_vm(&proc, "two-vcpus", 64 * MIB, 2, "profile=idle", true);
    vm_t *big = vmt_make_vm(&proc, "bigger", 96 * MIB, 1, "profile=idle", true);
    size_t len;
    uint8_t *blob = vmt_save(one, &len);
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
    blob = vmt_save(one, &len);
    vm_t *empty = vmt_make_vm(&proc, "empty", 64 * MIB, 1, "profile=idle", true);
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
    assert_int_equal(vmt_count_children(), 0);
    assert_int_equal(vmt_count_fds(), fds);
    assert_int_equal(vmt_count_threads(), threads);
}

/* A process guest boots no kernel image: a missing one does not matter. */
static void test_missing_kernel_image_does_not_matter(void **state)
{
    (void)state;
    vm_config_t c = {.name = "no-kernel", .memory_bytes = 64 * MIB, .vcpus = 1,
                     .cmdline = "profile=idle", .backend = "process",
                     .kernel_path = "/nonexistent/ferry-guest.elf"};
    char err[256];
    vm_t *vm = vm_new(&c, err, sizeof err);
    assert_non_null(vm);
    vm_destroy(&vm);
}

/* --- a guest process that dies ---------------------------------------------------------------- */

static void test_guest_process_death_stops_the_vm(void **state)
{
    (void)state;
    vm_t *vm = vmt_boot_vm(&proc, "doomed", 64 * MIB, 1, "profile=idle print=0");
    kill(vmt_only_guest(), SIGKILL);
    vm_status_t st;
    vmt_wait_for(vm, is_stopped, NULL, "the VM to notice", &st);
    assert_non_null(strstr(st.stop_reason, "signal 9"));
    assert_int_equal(vm_pause(vm), -EINVAL);
    vm_destroy(&vm);
    assert_int_equal(vmt_count_children(), 0);
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
    vm_t *vm = vmt_boot_vm(&proc, "own", 64 * MIB, 1, "profile=idle print=0");

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        VMT_BACKEND_TEST(vmt_test_boot_console_and_heartbeats, &proc),
        cmocka_unit_test(test_pause_stops_the_guest_process),
        VMT_BACKEND_TEST(vmt_test_save_restore_into_fresh_vm, &proc),
        VMT_BACKEND_TEST(vmt_test_restore_with_lost_pages_is_caught, &proc),
        VMT_BACKEND_TEST(vmt_test_dirty_log_is_exact, &proc),
        VMT_BACKEND_TEST(vmt_test_bad_config_is_refused_cleanly, &proc),
        cmocka_unit_test(test_bad_saved_state_is_refused_cleanly),
        cmocka_unit_test(test_missing_kernel_image_does_not_matter),
        cmocka_unit_test(test_guest_process_death_stops_the_vm),
        cmocka_unit_test(test_guest_process_holds_only_its_own_memory),
        cmocka_unit_test(test_no_guest_outlives_its_vmm),
        cmocka_unit_test(test_default_backend_follows_dev_kvm),
        cmocka_unit_test(test_no_kvm_selects_process_backend),
        VMT_BACKEND_TEST(vmt_test_reset_reboots, &proc),
        VMT_BACKEND_TEST(vmt_test_throttle_keeps_guest_alive, &proc),
        VMT_BACKEND_TEST(vmt_test_memory_hash, &proc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
