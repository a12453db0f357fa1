/* proc_guest.c - the workload kernel's own profile code, built for the
 * process backend's guest process.
 *
 * guest/profile.c, selfcheck.c, report.c and lib.c are compiled here
 * unchanged, so a process guest writes, stamps, verifies and reports exactly
 * like the kernel. A few macros turn them into host code:
 *
 *   - port I/O (inb, outb, inl, outl) goes to proc_child_in/out, which carry
 *     it to the VMM over a socket (the COM1 console, the report registers);
 *   - rdtsc() reads the guest clock, in nanoseconds, which carries on across
 *     save and restore the way a KVM guest's TSC does;
 *   - cfg and state are the boot and state pages in guest memory, where the
 *     kernel keeps them too (so they migrate with memory);
 *   - the kernel's global names get a proc_guest_ prefix, so that nothing in
 *     libferry can clash with them.
 *
 * Guest memory sits at a fixed address in the guest process (see
 * proc_protocol.h), so frame numbers are addresses, as the kernel assumes.
 * What the kernel works out at boot from the Multiboot memory map (kernel.c,
 * memory.c) is done here from the VM's size. None of this runs in the VMM;
 * these globals are the guest process's, like the kernel's own. */

/* Renames first, so that kernel.h declares the new names. cfg and state
 * become pointers into guest memory: "extern guest_config_t cfg;" reads
 * "extern guest_config_t (*proc_guest_cfg);". */
#define cfg (*proc_guest_cfg)
#define state (*proc_guest_state)
#define kprintf proc_guest_kprintf
#define kvprintf proc_guest_kvprintf
#define serial_init proc_guest_serial_init
#define serial_putc proc_guest_serial_putc
#define halt_forever proc_guest_halt_forever
#define panic_status proc_guest_panic_status
#define report_info proc_guest_report_info
#define report_status proc_guest_report_status
#define report_heartbeat proc_guest_report_heartbeat
#define memory_layout proc_guest_memory_layout
#define arena_gfn proc_guest_arena_gfn
#define page_write proc_guest_page_write
#define page_verify proc_guest_page_verify
#define tsc_calibrate_khz proc_guest_tsc_calibrate_khz
#define timer_init proc_guest_timer_init
#define idle_until proc_guest_idle_until
#define idt_init proc_guest_idt_init
#define profile_start proc_guest_profile_start
#define profile_loop proc_guest_profile_loop
#define profile_run proc_guest_profile_run
#define memset proc_guest_memset
#define memcpy proc_guest_memcpy
#define strlen proc_guest_strlen

#include "guest/kernel.h"
#include "guest/protocol.h"
#include "vmm/proc_guest.h"
#include "vmm/proc_protocol.h"

/* The instructions a user process cannot run, after kernel.h defined them. */
#define outb(port, value) proc_child_out((port), (value), 1)
#define outl(port, value) proc_child_out((port), (value), 4)
#define inb(port) ((uint8_t)proc_child_in((port), 1))
#define inl(port) proc_child_in((port), 4)
#define rdtsc() proc_child_clock()

/* The guest process runs on its own (host) stack, which is not guest memory:
 * the kernel's check that its stack stays on one page has nothing to check. */
static uint64_t no_stack[1];
#define _stack_bottom ((char *)no_stack)
#define _stack_top_page ((char *)no_stack)

guest_config_t *proc_guest_cfg;
guest_state_t *proc_guest_state;

#include "guest/lib.c"
#include "guest/report.c"
#include "guest/selfcheck.c"
#include "guest/profile.c"

/* --- what the kernel does at boot ------------------------------------------------ */

#define BOOT_MAGIC 0x5453475250595246ull  /* "FRYPRGST" */

/* The boot page: the kernel's config, and what it was laid out for. */
typedef struct {
    guest_config_t config;
    uint64_t magic;
    uint64_t base;
    uint64_t memory_bytes;
} boot_page_t;

_Static_assert(sizeof(boot_page_t) <= PAGE_SIZE, "the boot page must fit its page");
_Static_assert(sizeof(guest_state_t) <= PAGE_SIZE, "the state must fit its page");
_Static_assert(PROC_PAGE_SIZE == PAGE_SIZE, "one page size");

static boot_page_t *boot_page(uint64_t base)
{
    return (boot_page_t *)(uintptr_t)(base + PROC_BOOT_PAGE * PAGE_SIZE);
}

static guest_state_t *state_page(uint64_t base)
{
    return (guest_state_t *)(uintptr_t)(base + PROC_STATE_PAGE * PAGE_SIZE);
}

/* One arena region after the table. The table has an entry per frame number
 * of guest memory; frames start at base >> 12, so the table pointer is where
 * frame 0's entry would be (the kernel's table starts at frame 0 too). */
static void layout_for(uint64_t base, uint64_t memory_bytes, layout_t *l)
{
    uint64_t first = base >> PAGE_SHIFT, frames = memory_bytes >> PAGE_SHIFT;
    uint64_t table_pages = (frames * GUEST_TABLE_ENTRY_BYTES + PAGE_SIZE - 1) / PAGE_SIZE;
    uint64_t arena = PROC_TABLE_PAGE + table_pages;
    memset(l, 0, sizeof *l);
    l->memory_bytes = memory_bytes;
    l->arena[0] = (region_t){first + arena, frames - arena};
    l->arena_regions = 1;
    l->arena_pages = frames - arena;
    l->table = (uint64_t *)(uintptr_t)(base + PROC_TABLE_PAGE * PAGE_SIZE -
                                       first * GUEST_TABLE_ENTRY_BYTES);
    l->table_gfns = first + frames;
}

/* memory.c's arena_gfn walks many regions; a process guest has one. */
uint64_t arena_gfn(const layout_t *l, uint64_t index) { return l->arena[0].start_gfn + index; }

void idle_until(uint64_t tsc) { proc_child_idle_until(tsc); }

void proc_guest_layout(uint64_t base, uint64_t memory_bytes, const guest_args_t *args)
{
    boot_page_t *b = boot_page(base);
    layout_for(base, memory_bytes, &b->config.layout);
    b->config.args = *args;
    b->config.tsc_hz = PROC_TSC_HZ;
    b->config.have_deadline_timer = false;
    b->config.lapic_base = 0;
    b->magic = BOOT_MAGIC;
    b->base = base;
    b->memory_bytes = memory_bytes;
}

static int fail(char *err, size_t errlen, const char *what)
{
    size_t n = 0;
    for (; what[n] && n + 1 < errlen; n++)
        err[n] = what[n];
    if (errlen)
        err[n] = '\0';
    return -1;
}

static bool same_layout(const layout_t *a, const layout_t *b)
{
    return a->memory_bytes == b->memory_bytes && a->arena_regions == b->arena_regions &&
           a->arena[0].start_gfn == b->arena[0].start_gfn && a->arena[0].pages == b->arena[0].pages &&
           a->arena_pages == b->arena_pages && a->table == b->table && a->table_gfns == b->table_gfns;
}

/* The kernel's parser bounds every value it stores; memory from elsewhere
 * gets the same bounds before the profile trusts it. */
static int check_args(const guest_args_t *a, const layout_t *l, char *err, size_t errlen)
{
    if (a->profile > GUEST_PROFILE_TEST)
        return fail(err, errlen, "boot page: unknown profile");
    if (a->heartbeat_ms < 1 || a->heartbeat_ms > 60000 || a->print_ms > 3600000 ||
        a->verify_rate > (1u << 30))
        return fail(err, errlen, "boot page: heartbeat, print or verify rate out of range");
    if (a->profile == GUEST_PROFILE_TEST && (a->test_pages < 1 || a->test_pages > 65536))
        return fail(err, errlen, "boot page: test pages out of range");
    return guest_args_check_arena(a, l->arena_pages * PAGE_SIZE, err, errlen);
}

int proc_guest_check(uint64_t base, uint64_t memory_bytes, bool resume, char *err, size_t errlen)
{
    const boot_page_t *b = boot_page(base);
    if (b->magic != BOOT_MAGIC || b->base != base || b->memory_bytes != memory_bytes)
        return fail(err, errlen, "guest memory holds no process guest laid out for this VM");
    layout_t want;
    layout_for(base, memory_bytes, &want);
    if (!same_layout(&b->config.layout, &want) || b->config.tsc_hz != PROC_TSC_HZ)
        return fail(err, errlen, "boot page: layout does not match this VM's memory");
    if (check_args(&b->config.args, &want, err, errlen) < 0)
        return -1;
    if (!resume)
        return 0;
    /* The loop indexes memory with these. */
    const guest_state_t *s = state_page(base);
    proc_guest_cfg = (guest_config_t *)&b->config;
    uint64_t pages = profile_pages();
    if (s->sweep_region >= want.arena_regions || s->sweep_offset >= want.arena[0].pages ||
        (pages && s->stream_next >= pages))
        return fail(err, errlen, "state page: sweep or stream position outside the arena");
    return 0;
}

/* kernel.c's publish_layout, for a machine without a stack page in RAM. */
static void publish_layout(uint64_t base)
{
    const layout_t *l = &cfg.layout;
    uint64_t state_gpa = base + PROC_STATE_PAGE * PAGE_SIZE;
    report_info(GUEST_INFO_PROFILE, cfg.args.profile);
    report_info(GUEST_INFO_TSC_KHZ, cfg.tsc_hz / 1000);
    report_info(GUEST_INFO_MEMORY_BYTES, l->memory_bytes);
    report_info(GUEST_INFO_ARENA_PAGES, l->arena_pages);
    report_info(GUEST_INFO_STATE_GPA, state_gpa);
    report_info(GUEST_INFO_TABLE_GPA, (uint64_t)l->table);
    kprintf("ferry-guest: profile=%s memory=%luMiB arena=%luMiB tsc=%lukHz (%s)\n",
            guest_profile_name(cfg.args.profile), l->memory_bytes >> 20,
            (l->arena_pages * PAGE_SIZE) >> 20, cfg.tsc_hz / 1000, "process clock");
    kprintf("ferry-guest: layout base=0x%lx state=0x%lx table=0x%lx (%lu frames)\n", base,
            state_gpa, (uint64_t)l->table, l->table_gfns);
}

void proc_guest_run(uint64_t base, bool resume)
{
    proc_guest_cfg = &boot_page(base)->config;
    proc_guest_state = state_page(base);
    if (resume)
        profile_loop();
    kprintf("\nferry-guest: booting (process guest)\n");
    publish_layout(base);
    report_status(GUEST_STATUS_RUNNING);
    profile_run();
}
