/* guest_memory.h - guest RAM as a memfd mapped shared into this process.
 * Untouched pages are holes: a 16 GiB guest that wrote 100 MiB costs 100 MiB. */
#ifndef FERRY_VMM_GUEST_MEMORY_H
#define FERRY_VMM_GUEST_MEMORY_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int fd;          /* -1 when released */
    uint8_t *base;
    uint64_t size;
} guest_memory_t;

int guest_memory_create(guest_memory_t *m, const char *name, uint64_t size, char *err,
                        size_t errlen);
void guest_memory_release(guest_memory_t *m);

/* Zeroes all of it by punching out every page (the host gets the memory back). */
int guest_memory_wipe(guest_memory_t *m);

/* Calls fn for each range of the file that holds data (not a hole), in
 * order; offsets and lengths are page-aligned. Stops early if fn returns
 * non-zero and returns that value. */
typedef int (*guest_memory_extent_fn)(uint64_t offset, uint64_t len, void *arg);
int guest_memory_for_each_extent(const guest_memory_t *m, guest_memory_extent_fn fn, void *arg);

/* See vm_memory_hash in vm.h. */
int guest_memory_hash(const guest_memory_t *m, uint8_t out[32]);

#endif
