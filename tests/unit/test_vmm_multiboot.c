/* test_vmm_multiboot.c - the Multiboot loader: the real workload image, an
 * ELF image without address fields, the info block it writes, and garbage,
 * truncated and tampered images, which must be refused with a reason. */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/rng.h"
#include "guest/multiboot.h"
#include "vmm/multiboot_loader.h"
#include "vmm/vm.h"

#define RAM (64u << 20)

static uint8_t *read_image(size_t *len)
{
    FILE *f = fopen(vm_default_kernel_path(), "rb");
    if (!f)
        fail_msg("cannot open the guest image %s", vm_default_kernel_path());
    uint8_t *buf = malloc(1 << 20);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static void test_guest_image_loads(void **state)
{
    (void)state;
    size_t len;
    uint8_t *file = read_image(&len);
    mb_image_t img;
    char err[200];
    assert_int_equal(mb_image_parse(file, len, RAM, &img, err, sizeof err), 0);
    assert_int_equal(img.segment_count, 1);
    assert_int_equal(img.segments[0].gpa, 0x100000);
    assert_true(img.segments[0].mem_bytes > img.segments[0].file_bytes);  /* has a .bss */
    assert_true(img.entry >= 0x100000 && img.entry < 0x100000 + img.segments[0].file_bytes);

    uint8_t *ram = malloc(RAM);
    memset(ram, 0xAA, RAM);
    mb_image_load(&img, file, ram);
    const mb_segment_t *seg = &img.segments[0];
    assert_memory_equal(ram + seg->gpa, file + seg->file_offset, seg->file_bytes);
    for (uint64_t i = seg->file_bytes; i < seg->mem_bytes; i += 4093)
        assert_int_equal(ram[seg->gpa + i], 0);  /* bss zeroed */
    assert_int_equal(ram[seg->gpa + seg->mem_bytes], 0xAA);  /* nothing past it */

    /* RAM too small for the image. */
    assert_int_equal(mb_image_parse(file, len, 0x100000 + 4096, &img, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "outside guest RAM"));
    free(ram);
    free(file);
}

static void test_info_block(void **state)
{
    (void)state;
    uint8_t *ram = calloc(1, RAM);
    mb_ram_range_t ranges[2] = {{0, 3ull << 30}, {4ull << 30, 1ull << 30}};
    uint32_t info_gpa;
    char err[200];
    assert_int_equal(mb_write_info(ram, ranges, 2, "profile=db wss=8M", &info_gpa, err, sizeof err), 0);
    multiboot_info_t info;
    memcpy(&info, ram + info_gpa, sizeof info);
    assert_true(info.flags & MULTIBOOT_INFO_MEMORY);
    assert_true(info.flags & MULTIBOOT_INFO_MEM_MAP);
    assert_int_equal(info.mem_lower, 639);
    assert_int_equal(info.mem_upper, ((3ull << 30) - (1 << 20)) / 1024);
    assert_string_equal((char *)ram + info.cmdline, "profile=db wss=8M");
    assert_int_equal(info.mmap_length, 3 * sizeof(multiboot_mmap_entry_t));
    multiboot_mmap_entry_t e[3];
    memcpy(e, ram + info.mmap_addr, sizeof e);
    assert_int_equal(e[0].addr, 0);
    assert_int_equal(e[0].len, 0x9FC00);
    assert_int_equal(e[1].addr, 1 << 20);
    assert_int_equal(e[1].len, (3ull << 30) - (1 << 20));
    assert_int_equal(e[2].addr, 4ull << 30);
    assert_int_equal(e[2].len, 1ull << 30);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(e[i].size, 20);
        assert_int_equal(e[i].type, MULTIBOOT_MEMORY_AVAILABLE);
    }
    char huge[4000];
    memset(huge, 'a', sizeof huge - 1);
    huge[sizeof huge - 1] = 0;
    assert_int_equal(mb_write_info(ram, ranges, 2, huge, &info_gpa, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "does not fit"));
    free(ram);
}

/* An ELF32 image with a plain Multiboot header (no address fields). */
static size_t make_elf32(uint8_t *buf, size_t cap, uint32_t paddr, uint32_t entry)
{
    memset(buf, 0, cap);
    Elf32_Ehdr eh = {0};
    memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS32;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_386;
    eh.e_entry = entry;
    eh.e_phoff = sizeof eh;
    eh.e_phentsize = sizeof(Elf32_Phdr);
    eh.e_phnum = 1;
    memcpy(buf, &eh, sizeof eh);
    Elf32_Phdr ph = {.p_type = PT_LOAD, .p_offset = 0x1000, .p_vaddr = paddr, .p_paddr = paddr,
                     .p_filesz = 0x1000, .p_memsz = 0x3000};
    memcpy(buf + sizeof eh, &ph, sizeof ph);
    uint32_t mb[3] = {MULTIBOOT_HEADER_MAGIC, MULTIBOOT_FLAG_MEMORY_INFO,
                      -(MULTIBOOT_HEADER_MAGIC + MULTIBOOT_FLAG_MEMORY_INFO)};
    memcpy(buf + 0x1000, mb, sizeof mb);
    return 0x2000;
}

static void test_elf_without_kludge(void **state)
{
    (void)state;
    uint8_t buf[0x2000];
    char err[200];
    mb_image_t img;
    size_t len = make_elf32(buf, sizeof buf, 0x200000, 0x200010);
    assert_int_equal(mb_image_parse(buf, len, RAM, &img, err, sizeof err), 0);
    assert_int_equal(img.entry, 0x200010);
    assert_int_equal(img.segments[0].gpa, 0x200000);
    assert_int_equal(img.segments[0].mem_bytes, 0x3000);

    make_elf32(buf, sizeof buf, 0x200000, 0x900000);
    assert_int_equal(mb_image_parse(buf, len, RAM, &img, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "entry point"));

    make_elf32(buf, sizeof buf, 0x1000, 0x1010);  /* over the info block and low memory */
    assert_int_equal(mb_image_parse(buf, len, RAM, &img, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "outside guest RAM"));

    make_elf32(buf, sizeof buf, 0xfffff000u, 0xfffff010u);  /* would wrap in 32 bits */
    assert_int_equal(mb_image_parse(buf, len, RAM, &img, err, sizeof err), -EINVAL);
}

static void expect_refused(const uint8_t *file, size_t len, const char *needle)
{
    mb_image_t img;
    char err[200];
    int rc = mb_image_parse(file, len, RAM, &img, err, sizeof err);
    if (rc != -EINVAL || !strstr(err, needle))
        fail_msg("rc %d, err '%s', expected '%s'", rc, err, needle);
}

static void test_bad_images(void **state)
{
    (void)state;
    size_t len;
    uint8_t *file = read_image(&len);
    uint8_t *copy = malloc(len);

    expect_refused(file, 0, "no Multiboot header");
    memset(copy, 0, len);
    expect_refused(copy, len, "no Multiboot header");

    /* Find our header, then tamper with it. */
    size_t off = 0;
    while (off < 8192 && !(file[off] == 0x02 && file[off + 1] == 0xB0 && file[off + 2] == 0xAD &&
                           file[off + 3] == 0x1B))
        off += 4;
    assert_true(off < 8192);
    multiboot_header_t h;

    memcpy(copy, file, len);
    copy[off + 8] ^= 1;  /* checksum */
    expect_refused(copy, len, "no Multiboot header");

    memcpy(copy, file, len);
    memcpy(&h, copy + off, sizeof h);
    h.flags |= MULTIBOOT_FLAG_VIDEO_MODE;
    h.checksum = -(h.magic + h.flags);
    memcpy(copy + off, &h, sizeof h);
    expect_refused(copy, len, "unsupported features");

    memcpy(copy, file, len);
    memcpy(&h, copy + off, sizeof h);
    h.load_end_addr = h.load_addr + 0x10000000;  /* beyond the file */
    h.bss_end_addr = 0;
    memcpy(copy + off, &h, sizeof h);
    expect_refused(copy, len, "past the end of the file");

    memcpy(copy, file, len);
    memcpy(&h, copy + off, sizeof h);
    h.header_addr = h.load_addr + 0x100000;  /* header "before" the file start */
    memcpy(copy + off, &h, sizeof h);
    expect_refused(copy, len, "do not match");

    memcpy(copy, file, len);
    memcpy(&h, copy + off, sizeof h);
    h.bss_end_addr = h.load_addr + 16;
    memcpy(copy + off, &h, sizeof h);
    expect_refused(copy, len, "bss_end_addr");

    memcpy(copy, file, len);
    memcpy(&h, copy + off, sizeof h);
    h.entry_addr = 0x10;
    memcpy(copy + off, &h, sizeof h);
    expect_refused(copy, len, "entry point");

    /* Truncated anywhere before the end of what loads (one byte at a time
     * around the header, then in steps): refused. Past it only debug
     * sections go missing, which is fine. */
    mb_image_t img;
    char err[200];
    assert_int_equal(mb_image_parse(file, len, RAM, &img, err, sizeof err), 0);
    size_t load_end = img.segments[0].file_offset + img.segments[0].file_bytes;
    assert_int_equal(mb_image_parse(file, load_end, RAM, &img, err, sizeof err), 0);
    for (size_t n = 0; n < load_end; n += (n < off + 64 || n > load_end - 64 ? 1 : 97)) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, file, n);
        int rc = mb_image_parse(cut, n, RAM, &img, err, sizeof err);
        if (rc != -EINVAL)
            fail_msg("image truncated to %zu of %zu bytes was accepted", n, len);
        free(cut);
    }

    /* Random bytes, sometimes behind a valid header: refused or planned
     * within bounds, never a crash. */
    rng_t rng;
    rng_seed(&rng, 3);
    for (int iter = 0; iter < 2000; iter++) {
        memcpy(copy, file, len);
        for (int f = 0; f < 8; f++)
            copy[off + rng_below(&rng, 32)] = (uint8_t)rng_next(&rng);
        if (iter % 2) {
            memcpy(&h, copy + off, sizeof h);
            h.magic = MULTIBOOT_HEADER_MAGIC;
            h.checksum = -(h.magic + h.flags);
            memcpy(copy + off, &h, sizeof h);
        }
        if (mb_image_parse(copy, len, RAM, &img, err, sizeof err) == 0) {
            for (unsigned i = 0; i < img.segment_count; i++) {
                assert_true(img.segments[i].gpa >= MB_LOAD_MIN);
                assert_true(img.segments[i].gpa + img.segments[i].mem_bytes <= RAM);
                assert_true(img.segments[i].file_offset + img.segments[i].file_bytes <= len);
            }
        }
    }
    free(copy);
    free(file);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_guest_image_loads),
        cmocka_unit_test(test_info_block),
        cmocka_unit_test(test_elf_without_kludge),
        cmocka_unit_test(test_bad_images),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
