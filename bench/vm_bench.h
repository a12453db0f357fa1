/* vm_bench.h - what the VM benches (bench/vmm, bench/vmm_proc) share:
 * clocks, medians, booting a VM to its first heartbeat, the measuring loops
 * run the same way on either backend, and the JSON rows they print
 * (docs/benchmarks.md). Linked into each of those benches. */
#ifndef FERRY_BENCH_VM_BENCH_H
#define FERRY_BENCH_VM_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/vm.h"

#define MIB (1ull << 20)
#define GIB (1ull << 30)

double vmb_now_s(void);
void vmb_nap_us(long us);
/* Sorts v and returns its median. */
double vmb_median(double *v, int n);
/* MemAvailable from /proc/meminfo, in bytes; 0 if unknown. */
uint64_t vmb_mem_available(void);

/* Makes and starts a VM (backend NULL: the default one) and waits, up to
 * 60 s, for its first heartbeat, whose CLOCK_MONOTONIC ns go to
 * *heartbeat_ns (may be NULL). NULL, with why, if it did not get there. */
vm_t *vmb_started_vm(const char *backend, const char *name, uint64_t mem, unsigned vcpus,
                     const char *cmdline, int64_t *heartbeat_ns, char *why, size_t whylen);

/* Median µs of vm_pause and of vm_resume over 50 rounds, 20 ms apart. */
void vmb_pause_resume_us(vm_t *vm, double *pause_us, double *resume_us);
/* Enables the dirty log and gives the median µs of collect and of clear
 * over 20 rounds, 10 ms apart; 0, or the first error. */
int vmb_dirty_log_us(vm_t *vm, double *collect_us, double *clear_us);
/* Percent of wall time the guest's vCPUs ran, over 2 s unthrottled (*full)
 * and 2 s throttled to 50% (*half). */
void vmb_throttle_share(vm_t *vm, double *full, double *half);

/* --- JSON rows: the array's elements, commas between them ------------------- */

void vmb_row_skipped(const char *name, const char *why);
/* Opens a measured row; add an anchor (or why none) and close with vmb_row_end. */
void vmb_row_measured(const char *name, const char *unit, const char *better, double ferry);
void vmb_row_anchor(double anchor, const char *anchor_name);
void vmb_row_anchor_skipped(const char *why);
void vmb_row_end(const char *note);  /* note NULL: none */

#endif
