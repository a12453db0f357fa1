/* multiboot.h - the Multiboot v1 structures both sides use: the header the
 * guest image carries and the information block a loader hands it.
 * Spec: https://www.gnu.org/software/grub/manual/multiboot/multiboot.html */
#ifndef FERRY_GUEST_MULTIBOOT_H
#define FERRY_GUEST_MULTIBOOT_H

#include <stdint.h>

#define MULTIBOOT_HEADER_MAGIC     0x1BADB002u
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u  /* in EAX at entry */
#define MULTIBOOT_SEARCH_BYTES     8192u         /* header lies in the file's first 8 KiB */

/* Header flags. */
#define MULTIBOOT_FLAG_PAGE_ALIGN  (1u << 0)
#define MULTIBOOT_FLAG_MEMORY_INFO (1u << 1)
#define MULTIBOOT_FLAG_VIDEO_MODE  (1u << 2)
#define MULTIBOOT_FLAG_AOUT_KLUDGE (1u << 16)   /* the address fields below are valid */

typedef struct __attribute__((packed)) {
    uint32_t magic, flags, checksum;
    /* valid with MULTIBOOT_FLAG_AOUT_KLUDGE */
    uint32_t header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr;
} multiboot_header_t;

/* Info block flags. */
#define MULTIBOOT_INFO_MEMORY      (1u << 0)
#define MULTIBOOT_INFO_CMDLINE     (1u << 2)
#define MULTIBOOT_INFO_MEM_MAP     (1u << 6)

typedef struct __attribute__((packed)) {
    uint32_t flags;
    uint32_t mem_lower, mem_upper;       /* KiB below 640K / above 1M */
    uint32_t boot_device;
    uint32_t cmdline;
    uint32_t mods_count, mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr;
    uint32_t drives_length, drives_addr;
    uint32_t config_table;
    uint32_t boot_loader_name;
    uint32_t apm_table;
} multiboot_info_t;

#define MULTIBOOT_MEMORY_AVAILABLE 1u

typedef struct __attribute__((packed)) {
    uint32_t size;  /* of the rest of this entry: 20 */
    uint64_t addr, len;
    uint32_t type;
} multiboot_mmap_entry_t;

#endif
