/* kernel.c - kmain: from the Multiboot hand-over to the profile loop. */
#include "kernel.h"
#include "multiboot.h"
#include "protocol.h"

guest_config_t cfg;
guest_state_t state __attribute__((section(".state"), aligned(4096)));
static boot_info_t boot;

_Static_assert(sizeof(guest_state_t) <= PAGE_SIZE, "the state must fit its one page");

/* Copies what we need from the info block: it may lie in the future arena. */
static void copy_boot_info(const multiboot_info_t *mbi)
{
    boot.flags = mbi->flags;
    if (mbi->flags & MULTIBOOT_INFO_MEMORY) {
        boot.mem_lower = mbi->mem_lower;
        boot.mem_upper = mbi->mem_upper;
    }
    if (mbi->flags & MULTIBOOT_INFO_CMDLINE) {
        const char *s = (const char *)(uint64_t)mbi->cmdline;
        size_t n = 0;
        while (n < GUEST_CMDLINE_MAX && s[n])
            n++;
        boot.cmdline_truncated = s[n] != '\0';
        memcpy(boot.cmdline, s, n);
        boot.cmdline[n] = '\0';
        boot.cmdline_len = n;
    }
    if (mbi->flags & MULTIBOOT_INFO_MEM_MAP) {
        uint64_t at = mbi->mmap_addr, end = at + mbi->mmap_length;
        while (at + sizeof(multiboot_mmap_entry_t) <= end && boot.mmap_count < MAX_MMAP_ENTRIES) {
            const multiboot_mmap_entry_t *e = (const multiboot_mmap_entry_t *)at;
            if (e->size < 20)
                break;
            boot.mmap[boot.mmap_count].addr = e->addr;
            boot.mmap[boot.mmap_count].len = e->len;
            boot.mmap[boot.mmap_count].type = e->type;
            boot.mmap_count++;
            at += (uint64_t)e->size + 4;
        }
    }
}

static void publish_layout(const char *tsc_source)
{
    const layout_t *l = &cfg.layout;
    report_info(GUEST_INFO_PROFILE, cfg.args.profile);
    report_info(GUEST_INFO_TSC_KHZ, cfg.tsc_hz / 1000);
    report_info(GUEST_INFO_MEMORY_BYTES, l->memory_bytes);
    report_info(GUEST_INFO_ARENA_PAGES, l->arena_pages);
    report_info(GUEST_INFO_STATE_GPA, (uint64_t)_state_start);
    report_info(GUEST_INFO_STACK_GPA, (uint64_t)_stack_top_page);
    report_info(GUEST_INFO_TABLE_GPA, (uint64_t)l->table);
    kprintf("ferry-guest: profile=%s memory=%luMiB arena=%luMiB tsc=%lukHz (%s)\n",
            guest_profile_name(cfg.args.profile), l->memory_bytes >> 20,
            (l->arena_pages * PAGE_SIZE) >> 20, cfg.tsc_hz / 1000, tsc_source);
    kprintf("ferry-guest: layout state=0x%lx stack=0x%lx table=0x%lx (%lu frames)\n",
            (uint64_t)_state_start, (uint64_t)_stack_top_page, (uint64_t)l->table,
            l->table_gfns);
}

void kmain(uint32_t magic, uint32_t info);
void kmain(uint32_t magic, uint32_t info)
{
    serial_init();
    idt_init();
    kprintf("\nferry-guest: booting\n");
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC)
        panic_status(GUEST_STATUS_FAULT, "not started by a Multiboot loader (eax 0x%x)", magic);
    copy_boot_info((const multiboot_info_t *)(uint64_t)info);

    char err[160];
    if (boot.cmdline_truncated)
        panic_status(GUEST_STATUS_BAD_CMDLINE, "command line longer than %u bytes", GUEST_CMDLINE_MAX);
    if (guest_args_parse(boot.cmdline, boot.cmdline_len, &cfg.args, err, sizeof err) < 0)
        panic_status(GUEST_STATUS_BAD_CMDLINE, "%s", err);

    const char *tsc_source;
    cfg.tsc_hz = (uint64_t)tsc_calibrate_khz(cfg.args.tsc_khz, &tsc_source) * 1000;

    if (memory_layout(&boot, &cfg.layout) < 0)
        panic_status(GUEST_STATUS_NO_MEMORY, "cannot lay out memory");
    uint64_t largest = 0;
    for (unsigned i = 0; i < cfg.layout.arena_regions; i++)
        if (cfg.layout.arena[i].pages > largest)
            largest = cfg.layout.arena[i].pages;
    uint64_t usable = (cfg.args.profile == GUEST_PROFILE_TEST ? largest : cfg.layout.arena_pages);
    if (guest_args_check_arena(&cfg.args, usable * PAGE_SIZE, err, sizeof err) < 0)
        panic_status(GUEST_STATUS_BAD_CMDLINE, "%s", err);

    timer_init();
    publish_layout(tsc_source);
    report_status(GUEST_STATUS_RUNNING);
    profile_run();
}
