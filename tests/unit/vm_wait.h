/* vm_wait.h - polling a VM's status until a condition holds, with a
 * deadline, for the VM backend tests (no fixed sleeps as assertions). */
#ifndef FERRY_TEST_VM_WAIT_H
#define FERRY_TEST_VM_WAIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmm/vm.h"

/* Generous: this host may run guests in an instruction emulator. */
#define VMT_WAIT_MS 30000

typedef bool (*cond_fn)(vm_t *vm, const vm_status_t *st, void *arg);

int64_t vmt_now_ms(void);
void vmt_nap_ms(int ms);
/* Polls vm_status until cond holds; fails the test after VMT_WAIT_MS or
 * when the VM stops. `out` (may be NULL) gets the last status. */
void vmt_wait_for(vm_t *vm, cond_fn cond, void *arg, const char *what, vm_status_t *out);

bool vmt_heartbeats_at_least(vm_t *vm, const vm_status_t *st, void *arg);  /* arg: uint64_t */
bool vmt_counter_above(vm_t *vm, const vm_status_t *st, void *arg);        /* arg: uint32_t */
bool vmt_sweeps_above(vm_t *vm, const vm_status_t *st, void *arg);         /* arg: uint64_t */
bool vmt_written_above(vm_t *vm, const vm_status_t *st, void *arg);        /* arg: uint64_t */
bool vmt_errors_above_zero(vm_t *vm, const vm_status_t *st, void *arg);

/* The console as a condition: text accumulates everything read so far. */
typedef struct {
    uint64_t cursor;
    char text[16384];
    size_t len;
    const char *needle;
} vmt_console_t;
bool vmt_console_has(vm_t *vm, const vm_status_t *st, void *arg);  /* arg: vmt_console_t */
/* Reads what is new on the console; returns how often needle occurs in all of it. */
unsigned vmt_console_count(vm_t *vm, vmt_console_t *c, const char *needle);

/* The pids of this process's children (process-backend guests), at most cap. */
int vmt_list_children(pid_t *out, int cap);

/* Copies every data extent of src's guest memory into dst's (holes stay holes). */
void vmt_copy_memory(vm_t *src, vm_t *dst);

#endif
