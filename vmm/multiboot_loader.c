/* multiboot_loader.c - Multiboot v1 image parsing and loading. Every offset
 * and size from the file is checked against the file and the RAM before use;
 * arithmetic is done in 64 bits on 32-bit fields, so nothing wraps. */
#include "vmm/multiboot_loader.h"
#include "guest/multiboot.h"

#include <elf.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define FAIL(...)                                 \
    do {                                          \
        snprintf(err, errlen, __VA_ARGS__);       \
        return -EINVAL;                           \
    } while (0)

/* Segments must lie in [1 MiB, ram_end) and end where the file has bytes. */
static int add_segment(mb_image_t *img, uint64_t file_offset, uint64_t file_bytes, uint64_t gpa,
                       uint64_t mem_bytes, size_t len, uint64_t ram_end, char *err, size_t errlen)
{
    if (img->segment_count >= MB_MAX_SEGMENTS)
        FAIL("kernel image: more than %d loadable segments", MB_MAX_SEGMENTS);
    if (file_bytes > mem_bytes)
        FAIL("kernel image: segment at 0x%llx has more file bytes than memory bytes",
             (unsigned long long)gpa);
    if (file_offset > len || file_bytes > len - file_offset)
        FAIL("kernel image: segment at 0x%llx reads past the end of the file (%zu bytes)",
             (unsigned long long)gpa, len);
    if (gpa < MB_LOAD_MIN || mem_bytes > ram_end || gpa > ram_end - mem_bytes)
        FAIL("kernel image: segment [0x%llx, +0x%llx) is outside guest RAM [1 MiB, 0x%llx)",
             (unsigned long long)gpa, (unsigned long long)mem_bytes, (unsigned long long)ram_end);
    img->segments[img->segment_count++] = (mb_segment_t){file_offset, file_bytes, gpa, mem_bytes};
    if (gpa + mem_bytes > img->load_end)
        img->load_end = gpa + mem_bytes;
    return 0;
}

static bool entry_is_loaded(const mb_image_t *img, uint64_t entry)
{
    for (unsigned i = 0; i < img->segment_count; i++) {
        const mb_segment_t *s = &img->segments[i];
        if (entry >= s->gpa && entry < s->gpa + s->file_bytes)
            return true;
    }
    return false;
}

static int parse_kludge(const multiboot_header_t *h, size_t header_offset, size_t len,
                        uint64_t ram_end, mb_image_t *img, char *err, size_t errlen)
{
    uint64_t header_addr = h->header_addr, load_addr = h->load_addr;
    if (header_addr < load_addr || header_addr - load_addr > header_offset)
        FAIL("kernel image: Multiboot header_addr 0x%llx / load_addr 0x%llx do not match the "
             "header's place in the file", (unsigned long long)header_addr,
             (unsigned long long)load_addr);
    uint64_t file_offset = header_offset - (header_addr - load_addr);
    uint64_t file_bytes;
    if (h->load_end_addr == 0)
        file_bytes = len - file_offset;
    else if (h->load_end_addr <= load_addr)
        FAIL("kernel image: Multiboot load_end_addr 0x%x is not above load_addr 0x%x",
             h->load_end_addr, h->load_addr);
    else
        file_bytes = (uint64_t)h->load_end_addr - load_addr;
    uint64_t mem_bytes = file_bytes;
    if (h->bss_end_addr) {
        if ((uint64_t)h->bss_end_addr < load_addr + file_bytes)
            FAIL("kernel image: Multiboot bss_end_addr 0x%x is below the loaded image",
                 h->bss_end_addr);
        mem_bytes = (uint64_t)h->bss_end_addr - load_addr;
    }
    if (add_segment(img, file_offset, file_bytes, load_addr, mem_bytes, len, ram_end, err, errlen))
        return -EINVAL;
    img->entry = h->entry_addr;
    return 0;
}

static int parse_elf(const uint8_t *file, size_t len, uint64_t ram_end, mb_image_t *img,
                     char *err, size_t errlen)
{
    if (len < EI_NIDENT || memcmp(file, ELFMAG, SELFMAG) != 0)
        FAIL("kernel image: Multiboot header has no address fields and the file is not ELF");
    if (file[EI_DATA] != ELFDATA2LSB)
        FAIL("kernel image: ELF is not little-endian");
    bool is64 = file[EI_CLASS] == ELFCLASS64;
    if (!is64 && file[EI_CLASS] != ELFCLASS32)
        FAIL("kernel image: unknown ELF class %u", file[EI_CLASS]);

    uint64_t entry, phoff, phentsize, phnum, machine;
    if (is64) {
        Elf64_Ehdr eh;
        if (len < sizeof eh)
            FAIL("kernel image: truncated ELF header");
        memcpy(&eh, file, sizeof eh);
        entry = eh.e_entry;
        phoff = eh.e_phoff;
        phentsize = eh.e_phentsize;
        phnum = eh.e_phnum;
        machine = eh.e_machine;
    } else {
        Elf32_Ehdr eh;
        if (len < sizeof eh)
            FAIL("kernel image: truncated ELF header");
        memcpy(&eh, file, sizeof eh);
        entry = eh.e_entry;
        phoff = eh.e_phoff;
        phentsize = eh.e_phentsize;
        phnum = eh.e_phnum;
        machine = eh.e_machine;
    }
    if (machine != EM_386 && machine != EM_X86_64)
        FAIL("kernel image: ELF machine %llu is not x86", (unsigned long long)machine);
    uint64_t want = is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
    if (phentsize != want)
        FAIL("kernel image: ELF program header size %llu, expected %llu",
             (unsigned long long)phentsize, (unsigned long long)want);
    if (phnum == 0 || phnum > 64 || phoff > len || phnum * want > len - phoff)
        FAIL("kernel image: ELF program headers out of the file");

    for (uint64_t i = 0; i < phnum; i++) {
        uint64_t type, offset, paddr, filesz, memsz;
        const uint8_t *at = file + phoff + i * want;
        if (is64) {
            Elf64_Phdr ph;
            memcpy(&ph, at, sizeof ph);
            type = ph.p_type, offset = ph.p_offset, paddr = ph.p_paddr;
            filesz = ph.p_filesz, memsz = ph.p_memsz;
        } else {
            Elf32_Phdr ph;
            memcpy(&ph, at, sizeof ph);
            type = ph.p_type, offset = ph.p_offset, paddr = ph.p_paddr;
            filesz = ph.p_filesz, memsz = ph.p_memsz;
        }
        if (type != PT_LOAD || memsz == 0)
            continue;
        if (add_segment(img, offset, filesz, paddr, memsz, len, ram_end, err, errlen))
            return -EINVAL;
    }
    if (img->segment_count == 0)
        FAIL("kernel image: ELF has no loadable segment");
    if (entry > UINT32_MAX)
        FAIL("kernel image: ELF entry 0x%llx is above 4 GiB (Multiboot enters in 32-bit mode)",
             (unsigned long long)entry);
    img->entry = (uint32_t)entry;
    return 0;
}

int mb_image_parse(const uint8_t *file, size_t len, uint64_t ram_end, mb_image_t *img, char *err,
                   size_t errlen)
{
    memset(img, 0, sizeof *img);
    size_t limit = len < MULTIBOOT_SEARCH_BYTES ? len : MULTIBOOT_SEARCH_BYTES;
    size_t found = SIZE_MAX;
    multiboot_header_t h;
    for (size_t off = 0; off + 12 <= limit; off += 4) {
        memcpy(&h, file + off, 12);
        if (h.magic == MULTIBOOT_HEADER_MAGIC && h.magic + h.flags + h.checksum == 0) {
            found = off;
            break;
        }
    }
    if (found == SIZE_MAX)
        FAIL("kernel image: no Multiboot header in the first %u bytes (%zu-byte file)",
             MULTIBOOT_SEARCH_BYTES, len);
    /* Bits 0-15 are requirements; we meet "page-align modules" (there are
     * none) and "memory info". */
    uint32_t unmet = h.flags & 0xffffu & ~(MULTIBOOT_FLAG_PAGE_ALIGN | MULTIBOOT_FLAG_MEMORY_INFO);
    if (unmet)
        FAIL("kernel image: Multiboot header asks for unsupported features (flags 0x%x)", unmet);

    int rc;
    if (h.flags & MULTIBOOT_FLAG_AOUT_KLUDGE) {
        if (found + sizeof h > len)
            FAIL("kernel image: truncated Multiboot header");
        memcpy(&h, file + found, sizeof h);
        rc = parse_kludge(&h, found, len, ram_end, img, err, errlen);
    } else {
        rc = parse_elf(file, len, ram_end, img, err, errlen);
    }
    if (rc)
        return rc;
    if (!entry_is_loaded(img, img->entry))
        FAIL("kernel image: entry point 0x%x is not inside the loaded image", img->entry);
    return 0;
}

void mb_image_load(const mb_image_t *img, const uint8_t *file, uint8_t *ram)
{
    for (unsigned i = 0; i < img->segment_count; i++) {
        const mb_segment_t *s = &img->segments[i];
        memcpy(ram + s->gpa, file + s->file_offset, s->file_bytes);
        memset(ram + s->gpa + s->file_bytes, 0, s->mem_bytes - s->file_bytes);
    }
}

/* Info block layout in [MB_INFO_GPA, MB_INFO_END): the block, the memory
 * map, the loader name, then the command line. */
#define MMAP_OFFSET    0x100u
#define MMAP_MAX       16u
#define NAME_OFFSET    0x300u
#define CMDLINE_OFFSET 0x400u

int mb_write_info(uint8_t *ram, const mb_ram_range_t *ranges, unsigned n, const char *cmdline,
                  uint32_t *info_gpa, char *err, size_t errlen)
{
    if (n == 0 || n > MMAP_MAX || ranges[0].gpa != 0)
        FAIL("multiboot: memory map needs 1..%u ranges starting at 0", MMAP_MAX);
    size_t cmd_len = strlen(cmdline);
    if (cmd_len + 1 > MB_INFO_END - MB_INFO_GPA - CMDLINE_OFFSET)
        FAIL("multiboot: command line of %zu bytes does not fit", cmd_len);

    uint8_t *base = ram + MB_INFO_GPA;
    memset(base, 0, MB_INFO_END - MB_INFO_GPA);

    multiboot_info_t info = {0};
    info.flags = MULTIBOOT_INFO_MEMORY | MULTIBOOT_INFO_CMDLINE | MULTIBOOT_INFO_MEM_MAP |
                 (1u << 9) /* boot loader name */;
    uint64_t low = ranges[0].bytes < 0xA0000 ? ranges[0].bytes : 0x9FC00;
    info.mem_lower = (uint32_t)(low / 1024);
    /* mem_upper: RAM contiguous from 1 MiB, in KiB. */
    for (unsigned i = 0; i < n; i++)
        if (ranges[i].gpa <= MB_LOAD_MIN && ranges[i].gpa + ranges[i].bytes > MB_LOAD_MIN)
            info.mem_upper = (uint32_t)((ranges[i].gpa + ranges[i].bytes - MB_LOAD_MIN) / 1024);

    /* The map: RAM below 640 KiB, the legacy hole, the rest as given. */
    multiboot_mmap_entry_t entries[MMAP_MAX + 1];
    unsigned count = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t gpa = ranges[i].gpa, bytes = ranges[i].bytes;
        if (gpa == 0) {
            entries[count++] = (multiboot_mmap_entry_t){20, 0, low, MULTIBOOT_MEMORY_AVAILABLE};
            if (bytes <= MB_LOAD_MIN)
                continue;
            gpa = MB_LOAD_MIN;
            bytes -= MB_LOAD_MIN;
        }
        if (count > MMAP_MAX)
            FAIL("multiboot: memory map too long");
        entries[count++] = (multiboot_mmap_entry_t){20, gpa, bytes, MULTIBOOT_MEMORY_AVAILABLE};
    }
    if (count > MMAP_MAX)
        FAIL("multiboot: memory map too long");
    memcpy(base + MMAP_OFFSET, entries, count * sizeof entries[0]);
    info.mmap_addr = MB_INFO_GPA + MMAP_OFFSET;
    info.mmap_length = count * (uint32_t)sizeof entries[0];

    memcpy(base + NAME_OFFSET, "ferry", 6);
    info.boot_loader_name = MB_INFO_GPA + NAME_OFFSET;
    memcpy(base + CMDLINE_OFFSET, cmdline, cmd_len + 1);
    info.cmdline = MB_INFO_GPA + CMDLINE_OFFSET;

    memcpy(base, &info, sizeof info);
    *info_gpa = MB_INFO_GPA;
    return 0;
}
