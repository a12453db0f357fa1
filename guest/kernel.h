/* kernel.h - the workload kernel's internal face: CPU helpers, console,
 * memory layout, self-check, timer and the profile loop.
 *
 * Memory discipline (docs/guest.md): after boot, the kernel writes only
 *   - the pages its profile writes (and their self-check table entries),
 *   - the one state page (struct guest_state, section .state),
 *   - the top page of its stack.
 * Everything else (config, layout, IDT, page tables) is written once at boot.
 * The dirty-log test relies on this to the page. */
#ifndef FERRY_GUEST_KERNEL_H
#define FERRY_GUEST_KERNEL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "args.h"

#define PAGE_SIZE   ((uint64_t)4096)
#define PAGE_SHIFT  12
#define MAX_REGIONS 16
#define MAPPED_LIMIT ((uint64_t)64 << 30)  /* boot.S identity-maps the first 64 GiB */

/* --- CPU ------------------------------------------------------------------- */

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint32_t inl(uint16_t port)
{
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}
static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}
static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return (uint64_t)hi << 32 | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}
static inline void cpu_relax(void) { __asm__ volatile("pause"); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

/* --- lib.c ----------------------------------------------------------------- */

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
size_t strlen(const char *s);
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kvprintf(const char *fmt, va_list ap);
void serial_init(void);
void serial_putc(char c);
__attribute__((noreturn)) void halt_forever(void);
__attribute__((noreturn)) void panic_status(uint32_t status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* --- report.c: the port protocol (guest/protocol.h) ------------------------ */

void report_info(uint32_t key, uint64_t value);
void report_status(uint32_t status);
void report_heartbeat(void);  /* heartbeat + all counters */

/* --- memory.c: regions, arena, self-check table ---------------------------- */

typedef struct {
    uint64_t start_gfn;
    uint64_t pages;
} region_t;

typedef struct {
    uint64_t memory_bytes;        /* RAM in the memory map */
    region_t arena[MAX_REGIONS];  /* pages the profile may write, in address order */
    unsigned arena_regions;
    uint64_t arena_pages;
    uint64_t *table;              /* self-check entries, indexed by gfn */
    uint64_t table_gfns;
} layout_t;

/* What the kernel keeps of the boot loader's information block: copied at
 * boot, because the block itself may lie where the arena will be. */
#define MAX_MMAP_ENTRIES 32
typedef struct {
    uint32_t flags, mem_lower, mem_upper;
    char cmdline[GUEST_CMDLINE_MAX + 1];
    size_t cmdline_len;
    bool cmdline_truncated;
    struct { uint64_t addr, len; uint32_t type; } mmap[MAX_MMAP_ENTRIES];
    unsigned mmap_count;
} boot_info_t;

/* Builds the layout from the memory map; 0, or -1 with the reason printed. */
int memory_layout(const boot_info_t *boot, layout_t *out);
uint64_t arena_gfn(const layout_t *l, uint64_t index);  /* index < arena_pages */

/* --- selfcheck.c ----------------------------------------------------------- */

void page_write(uint64_t gfn);
/* Returns true if the page matches its table entry (or was never written). */
bool page_verify(uint64_t gfn, bool *was_written);

/* --- timer.c --------------------------------------------------------------- */

uint32_t tsc_calibrate_khz(uint32_t from_cmdline, const char **how);
void timer_init(void);                /* LAPIC TSC-deadline timer if the CPU has one */
void idle_until(uint64_t tsc);        /* hlt until the TSC reaches tsc (or spin) */

/* --- idt.c ----------------------------------------------------------------- */

void idt_init(void);

/* --- profile.c ------------------------------------------------------------- */

void profile_start(void);                        /* fresh pacing, rng from the seed */
__attribute__((noreturn)) void profile_loop(void);  /* runs on from state */
__attribute__((noreturn)) void profile_run(void);   /* start, then loop */

/* --- global state ---------------------------------------------------------- */

/* Written once at boot. */
typedef struct {
    guest_args_t args;
    layout_t layout;
    uint64_t tsc_hz;
    bool have_deadline_timer;
    uint64_t lapic_base;
} guest_config_t;
extern guest_config_t cfg;

/* Everything that changes after boot lives in this one page. */
typedef struct {
    uint32_t status;
    uint32_t heartbeat;
    uint64_t pages_written;
    uint64_t pages_verified;
    uint64_t errors;
    uint64_t sweeps;
    uint64_t rng;
    uint64_t sink;               /* keeps reads from being optimized out */
    /* pacing */
    uint64_t t0, writes_done, stream_next;
    uint64_t next_heartbeat, next_print, next_poll, next_sweep;
    uint64_t verify_t0, verify_units;
    uint64_t sweep_region, sweep_offset;
    uint32_t test_last_round;
    uint32_t notice_last;        /* the last notice acknowledged (mailbox value) */
    uint32_t errors_printed;
} guest_state_t;
extern guest_state_t state;

/* Linker symbols (linker.ld). */
extern char _kernel_start[], _bss_end[], _state_start[], _stack_bottom[], _stack_top[], _stack_top_page[];

#endif
