/* fuzz_multiboot.c - libFuzzer target for the Multiboot image parser
 * (vmm/multiboot_loader.c): a kernel image is a file the operator names. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "vmm/multiboot_loader.h"

#define RAM (64u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mb_image_t img;
    char err[256];
    if (mb_image_parse(data, size, RAM, &img, err, sizeof err) != 0)
        return 0;
    /* A plan that parsed must stay inside the file and the RAM. */
    for (unsigned i = 0; i < img.segment_count; i++) {
        const mb_segment_t *s = &img.segments[i];
        if (s->file_offset + s->file_bytes > size || s->gpa + s->mem_bytes > RAM ||
            s->file_bytes > s->mem_bytes)
            abort();
    }
    return 0;
}
