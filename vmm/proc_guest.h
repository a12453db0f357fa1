/* proc_guest.h - inside the guest process: the workload kernel's code built
 * for a host process (vmm/proc_guest.c), and the host services that code
 * runs on (vmm/proc_child.c). Internal to vmm/; nothing here runs in the VMM.
 *
 * Plain C types only: proc_guest.c compiles the kernel's sources and cannot
 * share a translation unit with libc's headers. */
#ifndef FERRY_VMM_PROC_GUEST_H
#define FERRY_VMM_PROC_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest/args.h"

/* --- vmm/proc_guest.c --------------------------------------------------------- */

/* Lays out a fresh guest in memory mapped at base (the boot page), as the
 * kernel does from its memory map at boot. */
void proc_guest_layout(uint64_t base, uint64_t memory_bytes, const guest_args_t *args);

/* Checks that the memory mapped at base holds a guest laid out for a VM of
 * memory_bytes and, with resume, a profile state the loop can run on from.
 * Memory may come from another host: 0, or -1 with the reason in err. */
int proc_guest_check(uint64_t base, uint64_t memory_bytes, bool resume, char *err, size_t errlen);

/* Boots the guest (banner, layout report, fresh profile) or, with resume,
 * enters the profile loop with the state in memory. Never returns. */
__attribute__((noreturn)) void proc_guest_run(uint64_t base, bool resume);

/* --- vmm/proc_child.c: what the kernel's code calls for port I/O and time ----- */

uint64_t proc_child_clock(void);                       /* the guest's rdtsc: ns */
void proc_child_idle_until(uint64_t deadline);         /* the guest's hlt */
void proc_child_out(uint16_t port, uint32_t value, unsigned size);
uint32_t proc_child_in(uint16_t port, unsigned size);

#endif
