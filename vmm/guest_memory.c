/* guest_memory.c - memfd-backed guest RAM. */
#include "vmm/guest_memory.h"
#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int guest_memory_create(guest_memory_t *m, const char *name, uint64_t size, char *err,
                        size_t errlen)
{
    m->fd = -1;
    m->base = NULL;
    m->size = 0;
    char label[80];
    snprintf(label, sizeof label, "ferry-vm:%s", name);
    int fd = memfd_create(label, MFD_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "memfd_create: %s", strerror(errno));
        return -errno;
    }
    if (ftruncate(fd, (off_t)size) < 0) {
        int e = errno;
        snprintf(err, errlen, "guest memory: ftruncate to %llu bytes: %s",
                 (unsigned long long)size, strerror(e));
        close(fd);
        return -e;
    }
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (base == MAP_FAILED) {
        int e = errno;
        snprintf(err, errlen, "guest memory: mmap of %llu bytes: %s", (unsigned long long)size,
                 strerror(e));
        close(fd);
        return -e;
    }
    m->fd = fd;
    m->base = base;
    m->size = size;
    return 0;
}

void guest_memory_release(guest_memory_t *m)
{
    if (m->base)
        munmap(m->base, m->size);
    if (m->fd >= 0)
        close(m->fd);
    m->base = NULL;
    m->fd = -1;
    m->size = 0;
}

int guest_memory_wipe(guest_memory_t *m)
{
    if (fallocate(m->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)m->size) < 0)
        return -errno;
    return 0;
}

int guest_memory_for_each_extent(const guest_memory_t *m, guest_memory_extent_fn fn, void *arg)
{
    off_t at = 0, size = (off_t)m->size;
    while (at < size) {
        off_t data = lseek(m->fd, at, SEEK_DATA);
        if (data < 0)
            return errno == ENXIO ? 0 : -errno;  /* ENXIO: only holes from here */
        off_t hole = lseek(m->fd, data, SEEK_HOLE);
        if (hole < 0)
            return -errno;
        if (hole > size)
            hole = size;
        int rc = fn((uint64_t)data, (uint64_t)(hole - data), arg);
        if (rc)
            return rc;
        at = hole;
    }
    return 0;
}

static bool page_is_zero(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)p;
    uint64_t acc = 0;
    for (size_t i = 0; i < VM_PAGE_SIZE / 8; i++)
        acc |= w[i];
    return acc == 0;
}

typedef struct {
    const guest_memory_t *mem;
    crypto_generichash_state hash;
} hash_walk_t;

static int hash_extent(uint64_t offset, uint64_t len, void *arg)
{
    hash_walk_t *walk = arg;
    for (uint64_t at = offset; at < offset + len; at += VM_PAGE_SIZE) {
        const uint8_t *page = walk->mem->base + at;
        if (page_is_zero(page))
            continue;
        uint8_t index[8];
        uint64_t i = at / VM_PAGE_SIZE;
        for (int b = 0; b < 8; b++)
            index[b] = (uint8_t)(i >> (8 * b));
        crypto_generichash_update(&walk->hash, index, sizeof index);
        crypto_generichash_update(&walk->hash, page, VM_PAGE_SIZE);
    }
    return 0;
}

int guest_memory_hash(const guest_memory_t *m, uint8_t out[32])
{
    hash_walk_t walk = {.mem = m};
    crypto_generichash_init(&walk.hash, NULL, 0, 32);
    int rc = guest_memory_for_each_extent(m, hash_extent, &walk);
    if (rc < 0)
        return rc;
    crypto_generichash_final(&walk.hash, out, 32);
    return 0;
}
