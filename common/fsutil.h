/* fsutil.h - small file helpers where durability or secrecy matters. */
#ifndef FERRY_FSUTIL_H
#define FERRY_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Writes `len` bytes to `path` so that a crash leaves either the old file or
 * the new one, never a torn mix: temp file in the same folder, fsync, rename,
 * fsync of the folder. `mode` applies to the new file (0600 for secrets).
 * Returns 0 or -errno. */
int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* Reads a whole small file (at most `max` bytes) into a NUL-terminated heap
 * buffer. Returns 0, -EFBIG if larger than `max`, or -errno. */
int fs_read_small(const char *path, size_t max, char **out, size_t *out_len);

/* Refuses a secret file whose mode lets the group or others read it.
 * Returns 0, -EPERM (with `err` filled) or -errno. */
int fs_check_private(const char *path, char *err, size_t errlen);

/* mkdir -p with `mode` for each missing level. Returns 0 or -errno. */
int fs_mkdirs(const char *path, mode_t mode);

/* rm -rf of a folder that this process created (a dev state dir, a test dir). */
int fs_remove_tree(const char *path);

#endif
