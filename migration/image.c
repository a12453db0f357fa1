/* image.c - VM images on disk (image.h): save, open, verify, load, remove,
 * and the writer that receives a cold copy with a resumable journal. */
#include "migration/image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>

#include "common/fsutil.h"
#include "common/log.h"
#include "vmm/guest_memory.h"

#define PATH_BYTES 4096

static int say(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int say(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list args;
        va_start(args, fmt);
        vsnprintf(err, errlen, fmt, args);
        va_end(args);
    }
    return code;
}

static int path_in(char out[PATH_BYTES], const char *dir, const char *file)
{
    if ((size_t)snprintf(out, PATH_BYTES, "%s/%s", dir, file) >= PATH_BYTES)
        return -ENAMETOOLONG;
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

static bool page_is_zero(const uint8_t *page)
{
    const uint64_t *w = (const uint64_t *)page;
    uint64_t acc = 0;
    for (size_t i = 0; i < VM_PAGE_SIZE / 8; i++)
        acc |= w[i];
    return acc == 0;
}

/* --- saving ------------------------------------------------------------------------ */

typedef struct {
    const uint8_t *base;
    int fd;
    int error;
} copy_out_t;

/* Writes the non-zero pages of one data extent at their offsets: the file
 * stays sparse where the guest has zeros. */
static int write_extent(uint64_t offset, uint64_t len, void *arg)
{
    copy_out_t *c = arg;
    for (uint64_t at = offset; at < offset + len; at += VM_PAGE_SIZE) {
        if (page_is_zero(c->base + at))
            continue;
        const uint8_t *p = c->base + at;
        size_t left = VM_PAGE_SIZE;
        off_t to = (off_t)at;
        while (left) {
            ssize_t n = pwrite(c->fd, p, left, to);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                c->error = n < 0 ? -errno : -EIO;
                return 1;
            }
            p += n;
            to += n;
            left -= (size_t)n;
        }
    }
    return 0;
}

static int save_memory(vm_t *vm, const char *path, char *err, size_t errlen)
{
    vm_memory_t mem;
    vm_memory(vm, &mem);
    char tmp[PATH_BYTES];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return say(err, errlen, -errno, "cannot create %s: %s", tmp, strerror(errno));
    int rc = ftruncate(fd, (off_t)mem.size) == 0 ? 0 : -errno;
    copy_out_t copy = { .base = mem.base, .fd = fd };
    guest_memory_t view = { .fd = mem.memfd, .base = mem.base, .size = mem.size };
    if (!rc) {
        rc = guest_memory_for_each_extent(&view, write_extent, &copy);
        if (rc > 0)
            rc = copy.error;
    }
    if (!rc && fsync(fd) != 0)
        rc = -errno;
    close(fd);
    if (!rc && rename(tmp, path) != 0)
        rc = -errno;
    if (rc) {
        unlink(tmp);
        return say(err, errlen, rc, "cannot write %s: %s", path, strerror(-rc));
    }
    return 0;
}

int image_save(vm_t *vm, const vm_config_t *cfg, const char *dir, char *err, size_t errlen)
{
    image_manifest_t m = { .memory_bytes = vm_page_count(vm) * VM_PAGE_SIZE,
                           .vcpus = cfg->vcpus };
    snprintf(m.name, sizeof m.name, "%s", vm_name(vm));
    snprintf(m.cmdline, sizeof m.cmdline, "%s", cfg->cmdline ? cfg->cmdline : "");
    if (cfg->memory_bytes != m.memory_bytes)
        return say(err, errlen, -EINVAL, "the config's memory size is not the VM's");
    int rc = vm_memory_hash(vm, m.memory_hash);
    if (rc)
        return say(err, errlen, rc, "%s is running: pause it or power it off first", m.name);
    uint8_t *state = malloc(VM_STATE_MAX_BYTES);
    size_t state_len = 0;
    if (!state)
        return say(err, errlen, -ENOMEM, "out of memory");
    char path[PATH_BYTES];
    rc = vm_save_state(vm, state, VM_STATE_MAX_BYTES, &state_len);
    if (rc) {
        say(err, errlen, rc, "cannot save the state of %s", m.name);
        goto out;
    }
    m.state_bytes = (uint32_t)state_len;
    crypto_generichash(m.state_hash, sizeof m.state_hash, state, state_len, NULL, 0);
    uint8_t manifest[IMAGE_MANIFEST_MAX];
    size_t manifest_len = image_manifest_encode(&m, manifest, sizeof manifest);
    if (manifest_len == 0) {
        rc = say(err, errlen, -EINVAL, "the VM's config does not fit an image manifest");
        goto out;
    }
    if ((rc = fs_mkdirs(dir, 0700))) {
        say(err, errlen, rc, "cannot create %s: %s", dir, strerror(-rc));
        goto out;
    }
    /* Whatever image was here stops being one before its files change. */
    if ((rc = path_in(path, dir, IMAGE_MANIFEST_FILE)) || (unlink(path) != 0 && errno != ENOENT)
        || (rc = fsync_dir(dir))) {
        rc = rc ? rc : -errno;
        say(err, errlen, rc, "cannot replace the image in %s: %s", dir, strerror(-rc));
        goto out;
    }
    if ((rc = path_in(path, dir, IMAGE_MEMORY_FILE)) || (rc = save_memory(vm, path, err, errlen)))
        goto out;
    if ((rc = path_in(path, dir, IMAGE_STATE_FILE))
        || (rc = fs_write_atomic(path, state, state_len, 0600))) {
        say(err, errlen, rc, "cannot write %s: %s", path, strerror(-rc));
        goto out;
    }
    if ((rc = path_in(path, dir, IMAGE_MANIFEST_FILE))
        || (rc = fs_write_atomic(path, manifest, manifest_len, 0600)))
        say(err, errlen, rc, "cannot write %s: %s", path, strerror(-rc));
out:
    free(state);
    return rc;
}

/* --- reading ------------------------------------------------------------------------ */

int image_read_manifest(const char *dir, image_manifest_t *m, char *err, size_t errlen)
{
    char path[PATH_BYTES];
    char *data = NULL;
    size_t len = 0;
    int rc = path_in(path, dir, IMAGE_MANIFEST_FILE);
    if (!rc)
        rc = fs_read_small(path, IMAGE_MANIFEST_MAX, &data, &len);
    if (rc)
        return say(err, errlen, rc, "%s: no complete image (%s)", dir, strerror(-rc));
    const char *why = NULL;
    rc = image_manifest_decode((const uint8_t *)data, len, m, &why);
    free(data);
    return rc ? say(err, errlen, rc, "%s: %s", path, why) : 0;
}

image_t *image_open(const char *dir, char *err, size_t errlen)
{
    image_t *img = calloc(1, sizeof *img);
    if (!img) {
        say(err, errlen, -ENOMEM, "out of memory");
        return NULL;
    }
    img->memory_fd = -1;
    char path[PATH_BYTES];
    char *state = NULL;
    size_t state_len = 0;
    struct stat st;
    if (image_read_manifest(dir, &img->manifest, err, errlen) != 0)
        goto fail;
    const image_manifest_t *m = &img->manifest;
    image_manifest_id(m, img->id);
    if (path_in(path, dir, IMAGE_MEMORY_FILE) != 0
        || (img->memory_fd = open(path, O_RDONLY | O_CLOEXEC)) < 0
        || fstat(img->memory_fd, &st) != 0) {
        say(err, errlen, -errno, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    if ((uint64_t)st.st_size != m->memory_bytes) {
        say(err, errlen, -EINVAL, "%s holds %lld bytes, the manifest says %llu", path,
            (long long)st.st_size, (unsigned long long)m->memory_bytes);
        goto fail;
    }
    void *map = mmap(NULL, m->memory_bytes, PROT_READ, MAP_SHARED, img->memory_fd, 0);
    if (map == MAP_FAILED) {
        say(err, errlen, -errno, "cannot map %s: %s", path, strerror(errno));
        goto fail;
    }
    img->memory = map;
    int rc = path_in(path, dir, IMAGE_STATE_FILE);
    if (!rc)
        rc = fs_read_small(path, VM_STATE_MAX_BYTES, &state, &state_len);
    if (rc) {
        say(err, errlen, rc, "cannot read %s: %s", path, strerror(-rc));
        goto fail;
    }
    uint8_t hash[IMAGE_HASH_BYTES];
    crypto_generichash(hash, sizeof hash, (const uint8_t *)state, state_len, NULL, 0);
    if (state_len != m->state_bytes || sodium_memcmp(hash, m->state_hash, sizeof hash) != 0) {
        say(err, errlen, -EINVAL, "%s does not match the manifest", path);
        goto fail;
    }
    img->state = (uint8_t *)state;
    return img;
fail:
    free(state);
    image_close(&img);
    return NULL;
}

void image_close(image_t **self_p)
{
    image_t *img = *self_p;
    if (!img)
        return;
    if (img->memory)
        munmap((void *)img->memory, img->manifest.memory_bytes);
    if (img->memory_fd >= 0)
        close(img->memory_fd);
    free(img->state);
    free(img);
    *self_p = NULL;
}

static guest_memory_t image_view(const image_t *img)
{
    return (guest_memory_t){ .fd = img->memory_fd, .base = (uint8_t *)img->memory,
                             .size = img->manifest.memory_bytes };
}

int image_verify(const char *dir, char *err, size_t errlen)
{
    image_t *img = image_open(dir, err, errlen);   /* checks the state hash */
    if (!img)
        return -EINVAL;
    uint8_t hash[IMAGE_HASH_BYTES];
    guest_memory_t view = image_view(img);
    int rc = guest_memory_hash(&view, hash);
    if (!rc && sodium_memcmp(hash, img->manifest.memory_hash, sizeof hash) != 0)
        rc = say(err, errlen, -EINVAL, "%s: memory does not match the manifest", dir);
    else if (rc)
        say(err, errlen, rc, "%s: cannot hash the memory", dir);
    image_close(&img);
    return rc;
}

typedef struct {
    const uint8_t *from;
    uint8_t *to;
} copy_in_t;

static int copy_extent(uint64_t offset, uint64_t len, void *arg)
{
    copy_in_t *c = arg;
    for (uint64_t at = offset; at < offset + len; at += VM_PAGE_SIZE)
        if (!page_is_zero(c->from + at))   /* zeros stay holes in the VM */
            memcpy(c->to + at, c->from + at, VM_PAGE_SIZE);
    return 0;
}

vm_t *image_load(const char *dir, const char *kernel_path, const char *console_log_path,
                 char *err, size_t errlen)
{
    char scratch[256];
    if (!err || !errlen) {
        err = scratch;
        errlen = sizeof scratch;
    }
    err[0] = '\0';
    image_t *img = image_open(dir, err, errlen);
    if (!img)
        return NULL;
    const image_manifest_t *m = &img->manifest;
    vm_config_t cfg = { .name = m->name, .memory_bytes = m->memory_bytes, .vcpus = m->vcpus,
                        .kernel_path = kernel_path, .cmdline = m->cmdline,
                        .console_log_path = console_log_path, .incoming = true };
    vm_t *vm = vm_new(&cfg, err, errlen);
    if (vm) {
        vm_memory_t mem;
        vm_memory(vm, &mem);
        copy_in_t copy = { .from = img->memory, .to = mem.base };
        guest_memory_t view = image_view(img);
        if (guest_memory_for_each_extent(&view, copy_extent, &copy) != 0
            || vm_load_state(vm, img->state, m->state_bytes, err, errlen) != 0) {
            if (!err[0])
                say(err, errlen, -EIO, "%s: cannot read the memory image", dir);
            vm_destroy(&vm);
        }
    }
    image_close(&img);
    return vm;
}

int image_remove(const char *dir)
{
    static const char *const files[] = { IMAGE_MANIFEST_FILE, IMAGE_MEMORY_FILE,
                                         IMAGE_STATE_FILE, IMAGE_PARTIAL_FILE,
                                         IMAGE_JOURNAL_FILE };
    char path[PATH_BYTES];
    int rc = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {   /* manifest first */
        if (path_in(path, dir, files[i]) == 0 && unlink(path) != 0 && errno != ENOENT && !rc)
            rc = -errno;
    }
    if (rmdir(dir) != 0 && errno != ENOENT && errno != ENOTEMPTY && !rc)
        rc = -errno;
    return rc;
}

/* --- the receiving end of a cold copy ------------------------------------------------- */

struct image_writer {
    char *dir;
    image_manifest_t manifest;
    uint8_t id[IMAGE_HASH_BYTES];
    int fd;
    uint8_t *memory;
    uint64_t size;
    uint64_t pages_done;
};

static int write_journal(image_writer_t *w, uint64_t pages_done)
{
    image_journal_t j = { .pages_done = pages_done };
    memcpy(j.image_id, w->id, IMAGE_HASH_BYTES);
    uint8_t bytes[IMAGE_JOURNAL_SIZE];
    image_journal_encode(&j, bytes);
    char path[PATH_BYTES];
    int rc = path_in(path, w->dir, IMAGE_JOURNAL_FILE);
    return rc ? rc : fs_write_atomic(path, bytes, sizeof bytes, 0600);
}

/* Where an earlier copy of the same image stopped, or 0. */
static uint64_t journal_resume_point(image_writer_t *w)
{
    char path[PATH_BYTES];
    char *data = NULL;
    size_t len = 0;
    if (path_in(path, w->dir, IMAGE_JOURNAL_FILE) != 0
        || fs_read_small(path, IMAGE_JOURNAL_SIZE + 1, &data, &len) != 0)
        return 0;
    image_journal_t j;
    const char *why = NULL;
    uint64_t resume = 0;
    if (image_journal_decode((const uint8_t *)data, len, &j, &why) != 0)
        log_warn("migration", "%s: ignoring the journal: %s", path, why);
    else if (sodium_memcmp(j.image_id, w->id, IMAGE_HASH_BYTES) != 0)
        log_info("migration", "%s: the partial copy is of another image; starting over", path);
    else if (j.pages_done <= w->size / VM_PAGE_SIZE)
        resume = j.pages_done;
    free(data);
    return resume;
}

image_writer_t *image_writer_open(const char *dir, const image_manifest_t *m,
                                  uint64_t *first_page, char *err, size_t errlen)
{
    image_writer_t *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(dir))) {
        free(w);
        say(err, errlen, -ENOMEM, "out of memory");
        return NULL;
    }
    w->fd = -1;
    w->manifest = *m;
    w->size = m->memory_bytes;
    char path[PATH_BYTES];
    struct stat st;
    int rc = image_manifest_id(m, w->id);
    if (rc) {
        say(err, errlen, rc, "the manifest is out of bounds");
        goto fail;
    }
    if ((rc = fs_mkdirs(dir, 0700))) {
        say(err, errlen, rc, "cannot create %s: %s", dir, strerror(-rc));
        goto fail;
    }
    if (path_in(path, dir, IMAGE_MANIFEST_FILE) == 0 && access(path, F_OK) == 0) {
        say(err, errlen, -EEXIST, "%s already holds a complete image", dir);
        goto fail;
    }
    if ((rc = path_in(path, dir, IMAGE_PARTIAL_FILE))
        || (w->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0
        || fstat(w->fd, &st) != 0) {
        say(err, errlen, -errno, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    uint64_t resume = (uint64_t)st.st_size == w->size ? journal_resume_point(w) : 0;
    if (resume == 0) {
        /* Start over from an empty, sparse file: stale pages of another
         * image must not survive where this one has holes. */
        if (ftruncate(w->fd, 0) != 0 || ftruncate(w->fd, (off_t)w->size) != 0
            || (rc = write_journal(w, 0)) != 0) {
            say(err, errlen, rc ? rc : -errno, "cannot prepare %s: %s", path,
                strerror(rc ? -rc : errno));
            goto fail;
        }
    }
    void *map = mmap(NULL, w->size, PROT_READ | PROT_WRITE, MAP_SHARED, w->fd, 0);
    if (map == MAP_FAILED) {
        say(err, errlen, -errno, "cannot map %s: %s", path, strerror(errno));
        goto fail;
    }
    w->memory = map;
    w->pages_done = resume;
    *first_page = resume;
    return w;
fail:
    image_writer_destroy(&w);
    return NULL;
}

uint8_t *image_writer_memory(image_writer_t *w)
{
    return w->memory;
}

int image_writer_checkpoint(image_writer_t *w, uint64_t pages_done, char *err, size_t errlen)
{
    if (pages_done < w->pages_done || pages_done > w->size / VM_PAGE_SIZE)
        return say(err, errlen, -EINVAL, "checkpoint at page %llu after %llu",
                   (unsigned long long)pages_done, (unsigned long long)w->pages_done);
    /* fdatasync writes back the pages dirtied through the mapping too. */
    if (fdatasync(w->fd) != 0)
        return say(err, errlen, -errno, "cannot flush the memory image: %s", strerror(errno));
    int rc = write_journal(w, pages_done);
    if (rc)
        return say(err, errlen, rc, "cannot write the journal: %s", strerror(-rc));
    w->pages_done = pages_done;
    return 0;
}

int image_writer_hash(image_writer_t *w, uint8_t out[IMAGE_HASH_BYTES])
{
    guest_memory_t view = { .fd = w->fd, .base = w->memory, .size = w->size };
    return guest_memory_hash(&view, out);
}

int image_writer_commit(image_writer_t *w, const uint8_t *state, size_t len, char *err,
                        size_t errlen)
{
    uint8_t hash[IMAGE_HASH_BYTES];
    crypto_generichash(hash, sizeof hash, state, len, NULL, 0);
    if (len != w->manifest.state_bytes || sodium_memcmp(hash, w->manifest.state_hash,
                                                        sizeof hash) != 0)
        return say(err, errlen, -EINVAL, "the state does not match the manifest");
    uint8_t manifest[IMAGE_MANIFEST_MAX];
    size_t manifest_len = image_manifest_encode(&w->manifest, manifest, sizeof manifest);
    char path[PATH_BYTES], partial[PATH_BYTES];
    int rc = 0;
    if ((rc = path_in(path, w->dir, IMAGE_STATE_FILE))
        || (rc = fs_write_atomic(path, state, len, 0600)))
        return say(err, errlen, rc, "cannot write the state: %s", strerror(-rc));
    if (fdatasync(w->fd) != 0)
        return say(err, errlen, -errno, "cannot flush the memory image: %s", strerror(errno));
    if ((rc = path_in(partial, w->dir, IMAGE_PARTIAL_FILE))
        || (rc = path_in(path, w->dir, IMAGE_MEMORY_FILE)) || rename(partial, path) != 0
        || (rc = fsync_dir(w->dir)))
        return say(err, errlen, rc ? rc : -errno, "cannot put the memory image in place: %s",
                   strerror(rc ? -rc : errno));
    if ((rc = path_in(path, w->dir, IMAGE_MANIFEST_FILE))
        || (rc = fs_write_atomic(path, manifest, manifest_len, 0600)))
        return say(err, errlen, rc, "cannot write the manifest: %s", strerror(-rc));
    if (path_in(path, w->dir, IMAGE_JOURNAL_FILE) == 0 && unlink(path) == 0)
        fsync_dir(w->dir);
    return 0;
}

void image_writer_destroy(image_writer_t **self_p)
{
    image_writer_t *w = *self_p;
    if (!w)
        return;
    if (w->memory)
        munmap(w->memory, w->size);
    if (w->fd >= 0)
        close(w->fd);
    free(w->dir);
    free(w);
    *self_p = NULL;
}
