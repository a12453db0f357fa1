/* memory.c - from the boot loader's memory map to the arena the profile
 * writes and the self-check table that describes it. */
#include "kernel.h"
#include "multiboot.h"
#include "protocol.h"

#define LOW_LIMIT (1ull << 20)  /* nothing below 1 MiB is used */

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }
static uint64_t align_down(uint64_t v, uint64_t a) { return v & ~(a - 1); }

/* Available RAM from the memory map, or from mem_upper if there is no map. */
static unsigned available_ram(const boot_info_t *b, region_t *out, uint64_t *total)
{
    unsigned n = 0;
    *total = 0;
    if (b->mmap_count) {
        for (unsigned i = 0; i < b->mmap_count && n < MAX_REGIONS; i++) {
            if (b->mmap[i].type != MULTIBOOT_MEMORY_AVAILABLE)
                continue;
            uint64_t start = b->mmap[i].addr, end = start + b->mmap[i].len;
            if (end < start)
                continue;  /* wraps: ignore */
            *total += end - start;
            if (start < LOW_LIMIT)
                start = LOW_LIMIT;
            if (end > MAPPED_LIMIT)
                end = MAPPED_LIMIT;
            start = align_up(start, PAGE_SIZE);
            end = align_down(end, PAGE_SIZE);
            if (end > start)
                out[n++] = (region_t){start >> PAGE_SHIFT, (end - start) >> PAGE_SHIFT};
        }
    } else if (b->flags & MULTIBOOT_INFO_MEMORY) {
        uint64_t end = LOW_LIMIT + (uint64_t)b->mem_upper * 1024;
        *total = end - LOW_LIMIT + (uint64_t)b->mem_lower * 1024;
        out[n++] = (region_t){LOW_LIMIT >> PAGE_SHIFT, (end - LOW_LIMIT) >> PAGE_SHIFT};
    }
    /* Sort by address (insertion sort; a handful of entries). */
    for (unsigned i = 1; i < n; i++)
        for (unsigned j = i; j > 0 && out[j].start_gfn < out[j - 1].start_gfn; j--) {
            region_t t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return n;
}

/* Cuts [start, end) pages out of the regions, keeping both sides. */
static unsigned carve(region_t *r, unsigned n, uint64_t start, uint64_t end)
{
    region_t out[MAX_REGIONS];
    unsigned m = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t s = r[i].start_gfn, e = s + r[i].pages;
        if (e <= start || s >= end) {
            out[m++] = r[i];
            continue;
        }
        if (s < start && m < MAX_REGIONS)
            out[m++] = (region_t){s, start - s};
        if (e > end && m < MAX_REGIONS)
            out[m++] = (region_t){end, e - end};
    }
    for (unsigned i = 0; i < m; i++)
        r[i] = out[i];
    return m;
}

/* boot.S maps the first 4 GiB; RAM above gets its page directories here. */
extern uint64_t pdpt[512], page_dirs[64][512];
#define BOOT_GIBS 4
#define PTE_FLAGS_TABLE 0x23ull  /* present, writable, accessed */
#define PTE_FLAGS_2M 0xE3ull     /* ... dirty, 2 MiB page */

static void map_up_to(uint64_t top_gfn)
{
    uint64_t gibs = (top_gfn + (1u << 18) - 1) >> 18;  /* 2^18 frames per GiB */
    if (gibs > MAPPED_LIMIT >> 30)
        gibs = MAPPED_LIMIT >> 30;
    for (uint64_t g = BOOT_GIBS; g < gibs; g++) {
        for (uint64_t i = 0; i < 512; i++)
            page_dirs[g][i] = ((g << 30) + (i << 21)) | PTE_FLAGS_2M;
        pdpt[g] = (uint64_t)page_dirs[g] | PTE_FLAGS_TABLE;
    }
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3)::"memory");
}

int memory_layout(const boot_info_t *boot, layout_t *l)
{
    region_t ram[MAX_REGIONS];
    unsigned n = available_ram(boot, ram, &l->memory_bytes);
    if (n == 0) {
        kprintf("ferry-guest: error: no usable memory in the boot loader's memory map\n");
        return -1;
    }

    map_up_to(ram[n - 1].start_gfn + ram[n - 1].pages);

    /* The kernel image (text through stack). */
    uint64_t kernel_start = (uint64_t)_kernel_start >> PAGE_SHIFT;
    uint64_t kernel_end = align_up((uint64_t)_bss_end, PAGE_SIZE) >> PAGE_SHIFT;
    n = carve(ram, n, kernel_start, kernel_end);

    /* The self-check table: one entry per frame up to the highest RAM frame,
     * in the first region after the kernel that holds it. */
    uint64_t top_gfn = ram[n - 1].start_gfn + ram[n - 1].pages;
    uint64_t table_pages = align_up(top_gfn * GUEST_TABLE_ENTRY_BYTES, PAGE_SIZE) >> PAGE_SHIFT;
    uint64_t table_gfn = 0;
    for (unsigned i = 0; i < n && !table_gfn; i++)
        if (ram[i].pages >= table_pages)
            table_gfn = ram[i].start_gfn;
    if (!table_gfn) {
        kprintf("ferry-guest: error: no room for the self-check table (%lu pages)\n", table_pages);
        return -1;
    }
    n = carve(ram, n, table_gfn, table_gfn + table_pages);
    l->table = (uint64_t *)(table_gfn << PAGE_SHIFT);
    l->table_gfns = top_gfn;

    l->arena_regions = n;
    l->arena_pages = 0;
    for (unsigned i = 0; i < n; i++) {
        l->arena[i] = ram[i];
        l->arena_pages += ram[i].pages;
    }
    if (l->arena_pages == 0) {
        kprintf("ferry-guest: error: no memory left for the workload\n");
        return -1;
    }
    return 0;
}

uint64_t arena_gfn(const layout_t *l, uint64_t index)
{
    for (unsigned i = 0; i < l->arena_regions; i++) {
        if (index < l->arena[i].pages)
            return l->arena[i].start_gfn + index;
        index -= l->arena[i].pages;
    }
    return l->arena[0].start_gfn;  /* unreachable for index < arena_pages */
}
