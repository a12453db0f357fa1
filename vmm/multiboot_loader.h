/* multiboot_loader.h - loads a Multiboot v1 kernel image into guest RAM and
 * writes the information block it boots with.
 *
 * Pure: works on byte buffers, trusts nothing in the image. Understands the
 * header's address fields (the "a.out kludge", flag bit 16) and, without
 * them, ELF32/ELF64 program headers (by physical address). */
#ifndef FERRY_VMM_MULTIBOOT_LOADER_H
#define FERRY_VMM_MULTIBOOT_LOADER_H

#include <stddef.h>
#include <stdint.h>

#define MB_MAX_SEGMENTS 16
#define MB_LOAD_MIN (1ull << 20)      /* images load at 1 MiB or above */
#define MB_INFO_GPA 0x8000u           /* the info block, memory map and command line */
#define MB_INFO_END 0x9000u

typedef struct {
    uint64_t file_offset, file_bytes;  /* copied from the file */
    uint64_t gpa, mem_bytes;           /* mem_bytes >= file_bytes; the rest is zeroed */
} mb_segment_t;

typedef struct {
    uint32_t entry;                    /* 32-bit protected-mode entry point */
    mb_segment_t segments[MB_MAX_SEGMENTS];
    unsigned segment_count;
    uint64_t load_end;                 /* highest byte loaded, exclusive */
} mb_image_t;

/* Checks the image and plans its loading into RAM that spans [0, ram_end)
 * (the low RAM region, contiguous from 0). Returns 0 or -EINVAL with the
 * reason in err. */
int mb_image_parse(const uint8_t *file, size_t len, uint64_t ram_end, mb_image_t *out, char *err,
                   size_t errlen);

/* Copies the planned segments into ram (ram[gpa] is guest-physical gpa). */
void mb_image_load(const mb_image_t *img, const uint8_t *file, uint8_t *ram);

typedef struct {
    uint64_t gpa, bytes;
} mb_ram_range_t;

/* Writes the info block with the memory map (RAM ranges, sorted, the first
 * starting at 0) and the command line into ram at MB_INFO_GPA. Returns 0, or
 * -EINVAL if the command line or map does not fit. */
int mb_write_info(uint8_t *ram, const mb_ram_range_t *ranges, unsigned n, const char *cmdline,
                  uint32_t *info_gpa, char *err, size_t errlen);

#endif
