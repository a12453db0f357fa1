/* vm_backend_tests.h - the tests every VM backend must pass, written once
 * against vm.h and run by test_vmm_kvm.c and test_vmm_proc.c, each with a
 * description of its backend. What differs between backends (the layout a
 * guest publishes, whether a guest is a child process, what the dirty log
 * needs) is in that description; tests that only make sense for one backend
 * stay in that backend's file.
 *
 * Each test takes its backend as cmocka state: register it with
 * VMT_BACKEND_TEST(test, &backend). */
#ifndef FERRY_TEST_VM_BACKEND_TESTS_H
#define FERRY_TEST_VM_BACKEND_TESTS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmm/vm.h"

#define MIB (1ull << 20)

typedef struct {
    const char *name;  /* vm_config_t.backend, and what vm_backend_name says */
    /* NULL if always usable; else whether it is, printing "SKIPPED: why"
     * when not (the tests then skip). */
    bool (*available)(void);
    unsigned vcpus;       /* of the VMs booted and saved in the shared tests */
    bool guest_process;   /* each started VM is one child process of the VMM */
    const char *boot_profile_line;  /* what the idle guest prints first on 64 MiB */
    /* The checks on the layout a booted 64 MiB idle guest published in
     * st->info that depend on the backend (RAM size, clock, fields). */
    void (*check_boot_layout)(vm_t *vm, const vm_status_t *st);
    /* NULL if the dirty log always works; else why it cannot here, or NULL. */
    const char *(*dirty_log_unavailable)(void);
    bool stack_in_guest_memory;  /* the guest kernel's stack page is guest memory */
} vmt_backend_t;

#define VMT_BACKEND_TEST(test, backend) cmocka_unit_test_prestate(test, (void *)(backend))

/* --- helpers for the backend files ---------------------------------------- */

/* Skips the test (after the backend said why) when the backend is unusable. */
void vmt_require(const vmt_backend_t *b);
/* A VM on backend b; fails the test if vm_new refuses. */
vm_t *vmt_make_vm(const vmt_backend_t *b, const char *name, uint64_t mem, unsigned vcpus,
                  const char *cmdline, bool incoming);
/* Made, started, and three heartbeats seen. */
vm_t *vmt_boot_vm(const vmt_backend_t *b, const char *name, uint64_t mem, unsigned vcpus,
                  const char *cmdline);
/* The saved state of a paused or created VM, malloc'd; *len its size. */
uint8_t *vmt_save(vm_t *vm, size_t *len);
int vmt_count_fds(void);
int vmt_count_threads(void);
int vmt_count_children(void);
/* The one guest process of the one live VM (process backend). */
pid_t vmt_only_guest(void);
/* vm_new(cfg) fails with needle in its reason and leaves nothing behind:
 * no fd, thread, child process or console log file. */
void vmt_expect_vm_new_fails(vm_config_t cfg, const char *needle);
/* The console log path vmt_expect_vm_new_fails passes, for this process. */
const char *vmt_console_log_path(void);

/* --- the shared tests (state: const vmt_backend_t *) ------------------------ */

void vmt_test_boot_console_and_heartbeats(void **state);
void vmt_test_save_restore_into_fresh_vm(void **state);
void vmt_test_restore_with_lost_pages_is_caught(void **state);
void vmt_test_dirty_log_is_exact(void **state);
/* The configurations vm.c refuses whatever the backend, and bad saved
 * states of the wrong shape or with a bad magic. */
void vmt_test_bad_config_is_refused_cleanly(void **state);
void vmt_test_reset_reboots(void **state);
void vmt_test_throttle_keeps_guest_alive(void **state);
void vmt_test_memory_hash(void **state);

#endif
