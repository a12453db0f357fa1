/* test_vmm_kvm.c - real KVM VMs booting the real workload kernel.
 *
 * The tests every backend passes (vm_backend_tests.h: boot, save/restore,
 * a lost page caught, an exact dirty log, bad configs, reset, throttle,
 * memory hash) run here on "kvm", with what is particular to it:
 *
 *   boot layout     the guest's RAM is the VMM's less the legacy hole
 *   pause/resume    a paused VM's vCPUs do not move; resumed, it carries on
 *   kernel image    a missing, garbage or truncated image is refused
 *
 * Without /dev/kvm every test prints "SKIPPED: no /dev/kvm" and skips.
 * Waits are bounded polls on conditions, never fixed sleeps. */
#include <errno.h>
#include <fcntl.h>
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
#include "vmm/kvm_state.h"
#include "vmm/vm.h"
#include "vm_backend_tests.h"
#include "vm_wait.h"

/* --- the backend ------------------------------------------------------------- */

static bool have_kvm(void)
{
    if (access("/dev/kvm", R_OK | W_OK) == 0)
        return true;
    fprintf(stderr, "SKIPPED: no /dev/kvm\n");
    return false;
}

/* RAM as the VMM gave it (64 MiB less the 384 KiB legacy hole the memory
 * map leaves out), a real TSC, and a kernel stack in guest memory. */
static void check_kvm_boot_layout(vm_t *vm, const vm_status_t *st)
{
    assert_true(st->info_valid & 1u << GUEST_INFO_STACK_GPA);
    assert_int_equal(st->info[GUEST_INFO_MEMORY_BYTES], 64 * MIB - (0x100000 - 0x9FC00));
    assert_true(st->info[GUEST_INFO_ARENA_PAGES] * 4096 > 48 * MIB);
    assert_true(st->info[GUEST_INFO_TSC_KHZ] > 100000);
}

static const vmt_backend_t kvm = {
    .name = "kvm",
    .available = have_kvm,
    .vcpus = 2,
    .guest_process = false,
    .boot_profile_line = "profile=idle memory=",
    .check_boot_layout = check_kvm_boot_layout,
    .stack_in_guest_memory = true,
};

/* --- pause / resume --------------------------------------------------------------- */

static void test_pause_holds_vcpus_still(void **state)
{
    (void)state;
    vmt_require(&kvm);
    vm_t *vm = vmt_boot_vm(&kvm, "pause", 64 * MIB, 2, "profile=db wss=4M rate=1M print=0");
    assert_int_equal(vm_pause(vm), 0);
    assert_int_equal(vm_pause(vm), -EINVAL);  /* already paused */
    vm_status_t st;
    vm_status(vm, &st);
    assert_int_equal(st.state, VM_PAUSED);

    /* Two snapshots of a paused VM show the same registers: nothing ran. */
    size_t len1, len2;
    uint8_t *a = vmt_save(vm, &len1);
    vm_status_t mid;
    vm_status(vm, &mid);
    uint8_t *b = vmt_save(vm, &len2);
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

/* --- kernel image ---------------------------------------------------------------- */

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void test_bad_kernel_image_is_refused_cleanly(void **state)
{
    (void)state;
    vmt_require(&kvm);
    vm_config_t good = {.name = "bad", .memory_bytes = 64 * MIB, .vcpus = 1,
                        .cmdline = "profile=idle", .backend = "kvm"};
    vm_config_t c;
    c = good; c.kernel_path = "/nonexistent/ferry-guest.elf";
    vmt_expect_vm_new_fails(c, "No such file or directory");
    c = good; c.kernel_path = "/tmp";
    vmt_expect_vm_new_fails(c, "not a regular file");

    char path[64];
    snprintf(path, sizeof path, "/tmp/ferry-test-garbage-%d.elf", (int)getpid());
    uint8_t junk[20000];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 131 + 7);
    write_file(path, junk, sizeof junk);
    c = good; c.kernel_path = path;
    vmt_expect_vm_new_fails(c, "no Multiboot header");

    /* The real image cut short inside its loadable part. */
    FILE *f = fopen(vm_default_kernel_path(), "rb");
    assert_non_null(f);
    size_t n = fread(junk, 1, 9000, f);
    fclose(f);
    write_file(path, junk, n);
    vmt_expect_vm_new_fails(c, "past the end of the file");
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        VMT_BACKEND_TEST(vmt_test_boot_console_and_heartbeats, &kvm),
        cmocka_unit_test(test_pause_holds_vcpus_still),
        VMT_BACKEND_TEST(vmt_test_save_restore_into_fresh_vm, &kvm),
        VMT_BACKEND_TEST(vmt_test_restore_with_lost_pages_is_caught, &kvm),
        VMT_BACKEND_TEST(vmt_test_dirty_log_is_exact, &kvm),
        VMT_BACKEND_TEST(vmt_test_bad_config_is_refused_cleanly, &kvm),
        cmocka_unit_test(test_bad_kernel_image_is_refused_cleanly),
        VMT_BACKEND_TEST(vmt_test_reset_reboots, &kvm),
        VMT_BACKEND_TEST(vmt_test_throttle_keeps_guest_alive, &kvm),
        VMT_BACKEND_TEST(vmt_test_memory_hash, &kvm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
