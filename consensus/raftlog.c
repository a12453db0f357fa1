/* raftlog.c - the segments of the on-disk log (append, cut, compact, load
 * and repair); see raftlog.h. Byte layout, also in docs/consensus.md:
 *
 *   segment   "FRYLOG01" | first index u64 | crc32c(previous 16 bytes) u32 | 0 u32
 *             then records: length u32 | crc32c(length, payload) u32 | payload
 *             payload: term u64 | index u64 | entry type u8 | data
 *   hardstate two 512-byte slots, written alternately:
 *             "FRYHS001" | seq u64 | term u64 | vote u64 | commit u64 | crc32c u32
 *   snapshot  "FRYSNAP1" | index u64 | term u64 | voters u32 | learners u32 |
 *             ids u64... | data length u64 | data | crc32c(everything before) u32
 *
 * All integers little-endian.
 */
#include "consensus/raftlog_internal.h"

#include "common/fsutil.h"
#include "common/log.h"
#include "consensus/crc32c.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void seg_name(uint64_t first, char *out, size_t cap)
{
    snprintf(out, cap, "seg-%020" PRIu64 ".log", first);
}

/* --- segments --------------------------------------------------------------- */

static int seg_push_offset(segment_t *seg, uint64_t offset)
{
    size_t n = (size_t)(seg->last + 1 - seg->first);
    if (n == seg->cap) {
        size_t cap = seg->cap ? 2 * seg->cap : 256;
        uint64_t *grown = realloc(seg->offsets, cap * sizeof(uint64_t));
        if (!grown)
            return -ENOMEM;
        seg->offsets = grown;
        seg->cap = cap;
    }
    seg->offsets[n] = offset;
    seg->last++;
    return 0;
}

static void close_active(raftlog_t *self)
{
    if (self->fd >= 0)
        close(self->fd);
    self->fd = -1;
    self->fd_dirty = false;
}

static int open_active(raftlog_t *self)
{
    if (self->fd >= 0 || self->n_segs == 0)
        return 0;
    char name[64];
    seg_name(self->segs[self->n_segs - 1].first, name, sizeof(name));
    self->fd = openat(self->dir_fd, name, O_WRONLY | O_CLOEXEC);
    return self->fd < 0 ? -errno : 0;
}

/* Removes the last segment file. */
static int drop_last_segment(raftlog_t *self)
{
    segment_t *seg = &self->segs[--self->n_segs];
    close_active(self);
    char name[64];
    seg_name(seg->first, name, sizeof(name));
    int rc = unlinkat(self->dir_fd, name, 0) == 0 || errno == ENOENT ? 0 : -errno;
    free(seg->offsets);
    self->dir_dirty = true;
    return rc;
}

static int start_segment(raftlog_t *self, uint64_t first)
{
    int rc = 0;
    if (self->fd >= 0 && self->fd_dirty && fdatasync(self->fd) != 0)
        rc = -errno;
    close_active(self);
    if (rc != 0)
        return rc;
    if (self->n_segs == self->cap_segs) {
        size_t cap = self->cap_segs ? 2 * self->cap_segs : 16;
        segment_t *grown = realloc(self->segs, cap * sizeof(segment_t));
        if (!grown)
            return -ENOMEM;
        self->segs = grown;
        self->cap_segs = cap;
    }
    char name[64];
    seg_name(first, name, sizeof(name));
    unlinkat(self->dir_fd, name, 0);   /* a leftover of a log that was cut */
    self->fd = openat(self->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (self->fd < 0)
        return -errno;
    uint8_t header[SEG_HEADER_LEN] = { 0 };
    memcpy(header, SEG_MAGIC, 8);
    raftlog_put64(header + 8, first);
    raftlog_put32(header + 16, crc32c(0, header, 16));
    rc = raftlog_write_all(self->fd, header, sizeof(header), 0);
    if (rc != 0)
        return rc;
    self->segs[self->n_segs++] = (segment_t){ .first = first, .last = first - 1, .size = SEG_HEADER_LEN };
    self->fd_dirty = self->dir_dirty = true;
    return 0;
}

static int flush(raftlog_t *self)
{
    if (self->wlen == 0)
        return 0;
    segment_t *seg = &self->segs[self->n_segs - 1];
    int rc = raftlog_write_all(self->fd, self->wbuf, self->wlen, seg->size);
    if (rc != 0)
        return rc;
    seg->size += self->wlen;
    self->wlen = 0;
    self->fd_dirty = true;
    return 0;
}

/* Cuts the log so that `index` is the next entry. */
static int truncate_from(raftlog_t *self, uint64_t index)
{
    int rc = 0;
    while (rc == 0 && self->n_segs > 0 && self->segs[self->n_segs - 1].first >= index)
        rc = drop_last_segment(self);
    if (rc == 0 && self->n_segs > 0) {
        segment_t *seg = &self->segs[self->n_segs - 1];
        if (seg->last >= index) {
            uint64_t off = seg->offsets[index - seg->first];
            rc = open_active(self);
            if (rc == 0 && ftruncate(self->fd, (off_t)off) != 0)
                rc = -errno;
            if (rc == 0) {
                seg->size = off;
                seg->last = index - 1;
                self->fd_dirty = true;
            }
        }
    }
    if (rc == 0)
        self->last_index = index - 1;
    return rc;
}

int raftlog_append(raftlog_t *self, const raft_entry_t *ents, size_t n)
{
    if (n == 0)
        return 0;
    if (ents[0].index <= self->snap.index)
        return -EINVAL;
    if (ents[0].index > self->last_index + 1)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (ents[i].len > RAFT_MAX_ENTRY_BYTES || ents[i].index != ents[0].index + i || (ents[i].len && !ents[i].data))
            return -EINVAL;
    int rc = 0;
    if (ents[0].index <= self->last_index)
        rc = truncate_from(self, ents[0].index);
    if (rc == 0)
        rc = open_active(self);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const raft_entry_t *e = &ents[i];
        segment_t *seg = self->n_segs ? &self->segs[self->n_segs - 1] : NULL;
        if (!seg || (seg->size + self->wlen >= self->segment_bytes && seg->last >= seg->first)) {
            rc = flush(self);
            if (rc == 0)
                rc = start_segment(self, e->index);
            if (rc != 0)
                break;
            seg = &self->segs[self->n_segs - 1];
        }
        size_t rec = REC_HEADER_LEN + REC_FIXED_LEN + e->len;
        if (self->wlen + rec > self->wcap) {
            size_t cap = self->wcap ? self->wcap : 64 * 1024;
            while (cap < self->wlen + rec)
                cap *= 2;
            uint8_t *grown = realloc(self->wbuf, cap);
            if (!grown)
                return -ENOMEM;
            self->wbuf = grown;
            self->wcap = cap;
        }
        uint8_t *p = self->wbuf + self->wlen;
        uint32_t len = (uint32_t)(REC_FIXED_LEN + e->len);
        raftlog_put32(p, len);
        raftlog_put64(p + 8, e->term);
        raftlog_put64(p + 16, e->index);
        p[24] = e->type;
        if (e->len)
            memcpy(p + 25, e->data, e->len);
        raftlog_put32(p + 4, crc32c(crc32c(0, p, 4), p + 8, len));
        rc = seg_push_offset(seg, seg->size + self->wlen);
        if (rc == 0) {
            self->wlen += rec;
            self->last_index = e->index;
        }
        if (self->wlen > (1u << 20) && rc == 0)
            rc = flush(self);
    }
    if (rc == 0)
        rc = flush(self);
    return rc;
}

int raftlog_sync(raftlog_t *self)
{
    int rc = flush(self);
    if (rc == 0 && self->fd >= 0 && self->fd_dirty) {
        if (fdatasync(self->fd) != 0)
            rc = -errno;
        else
            self->fd_dirty = false;
    }
    if (rc == 0 && self->dir_dirty) {
        if (fsync(self->dir_fd) != 0)
            rc = -errno;
        else
            self->dir_dirty = false;
    }
    return rc;
}

int raftlog_install_snapshot(raftlog_t *self, const raft_snapshot_t *snap)
{
    int rc = raftlog_store_snapshot(self, snap);
    while (rc == 0 && self->n_segs > 0)   /* newest first: a crash leaves a prefix */
        rc = drop_last_segment(self);
    if (rc == 0)
        self->last_index = snap->index;
    return rc == 0 ? raftlog_sync(self) : rc;
}

int raftlog_save_snapshot(raftlog_t *self, const raft_snapshot_t *snap)
{
    if (snap->index > self->last_index || snap->index < self->snap.index)
        return -EINVAL;
    return raftlog_store_snapshot(self, snap);
}

int raftlog_compact(raftlog_t *self, uint64_t index)
{
    if (index > self->snap.index)
        return -EINVAL;
    size_t drop = 0;
    while (drop + 1 < self->n_segs && self->segs[drop + 1].first <= index + 1)
        drop++;
    for (size_t i = 0; i < drop; i++) {
        char name[64];
        seg_name(self->segs[i].first, name, sizeof(name));
        if (unlinkat(self->dir_fd, name, 0) != 0 && errno != ENOENT)
            return -errno;
        free(self->segs[i].offsets);
    }
    if (drop)
        memmove(self->segs, self->segs + drop, (self->n_segs - drop) * sizeof(segment_t));
    self->n_segs -= drop;
    if (drop)
        self->dir_dirty = true;
    return raftlog_sync(self);
}

int raftlog_persist_ready(raftlog_t *self, const raft_ready_t *rd)
{
    int rc = 0;
    if (rd->snapshot)
        rc = raftlog_install_snapshot(self, rd->snapshot);
    if (rc == 0)
        rc = raftlog_append(self, rd->entries, rd->n_entries);
    if (rc == 0)
        rc = raftlog_sync(self);
    if (rc == 0 && rd->has_hard_state)
        rc = raftlog_set_hard_state(self, &rd->hard_state);
    return rc;
}

/* --- loading ------------------------------------------------------------- */

static int push_boot(raftlog_t *self, const raft_entry_t *e)
{
    if (self->n_boot == self->cap_boot) {
        size_t cap = self->cap_boot ? 2 * self->cap_boot : 256;
        raft_entry_t *grown = realloc(self->boot, cap * sizeof(raft_entry_t));
        if (!grown)
            return -ENOMEM;
        self->boot = grown;
        self->cap_boot = cap;
    }
    raft_entry_t copy = *e;
    copy.data = NULL;
    if (e->len) {
        uint8_t *data = malloc(e->len);
        if (!data)
            return -ENOMEM;
        memcpy(data, e->data, e->len);
        copy.data = data;
    }
    self->boot[self->n_boot++] = copy;
    return 0;
}

static void drop_boot_through(raftlog_t *self, uint64_t index)
{
    size_t k = 0;
    while (k < self->n_boot && self->boot[k].index <= index)
        free((void *)self->boot[k++].data);
    if (k)
        memmove(self->boot, self->boot + k, (self->n_boot - k) * sizeof(raft_entry_t));
    self->n_boot -= k;
}

void raftlog_release_boot(raftlog_t *self)
{
    drop_boot_through(self, UINT64_MAX);
    free(self->boot);
    self->boot = NULL;
    self->cap_boot = 0;
    free(self->snap_data);
    self->snap_data = NULL;
    self->snap.data = NULL;
    self->snap.len = 0;
}

/* Reads one segment into the boot entries. Returns the byte offset of the
 * first bad record (or of a bad header, 0), or the file size if all is well. */
static uint64_t scan_segment(raftlog_t *self, segment_t *seg, const uint8_t *buf, size_t len,
                             const char **why)
{
    *why = NULL;
    if (len < SEG_HEADER_LEN || memcmp(buf, SEG_MAGIC, 8) != 0 || raftlog_get64(buf + 8) != seg->first ||
        raftlog_get32(buf + 16) != crc32c(0, buf, 16)) {
        *why = "bad segment header";
        return 0;
    }
    uint64_t off = SEG_HEADER_LEN, prev_term = self->n_boot ? self->boot[self->n_boot - 1].term : 0;
    while (off < len) {
        if (len - off < REC_HEADER_LEN) {
            *why = "record header cut short";
            return off;
        }
        const uint8_t *p = buf + off;
        uint32_t rec_len = raftlog_get32(p);
        if (rec_len < REC_FIXED_LEN || rec_len > REC_MAX_LEN || rec_len > len - off - REC_HEADER_LEN) {
            *why = "record length out of bounds";
            return off;
        }
        if (raftlog_get32(p + 4) != crc32c(crc32c(0, p, 4), p + 8, rec_len)) {
            *why = "checksum mismatch";
            return off;
        }
        raft_entry_t e = { .term = raftlog_get64(p + 8), .index = raftlog_get64(p + 16), .type = p[24],
                           .data = rec_len > REC_FIXED_LEN ? p + 25 : NULL, .len = rec_len - REC_FIXED_LEN };
        if (e.index != seg->last + 1 || e.term < prev_term || e.type > RAFT_ENTRY_CONFIG) {
            *why = "entry out of sequence";
            return off;
        }
        if (seg_push_offset(seg, off) != 0 || push_boot(self, &e) != 0) {
            *why = "out of memory";
            return off;
        }
        prev_term = e.term;
        off += REC_HEADER_LEN + rec_len;
    }
    seg->size = len;
    return len;
}

static int load_segments(raftlog_t *self)
{
    uint64_t *firsts;
    size_t n;
    int rc = raftlog_list_files(self, "seg-", ".log", &firsts, &n);
    if (rc != 0)
        return rc;
    self->segs = calloc(n ? n : 1, sizeof(segment_t));
    if (!self->segs) {
        free(firsts);
        return -ENOMEM;
    }
    self->cap_segs = n ? n : 1;
    for (size_t i = 0; i < n; i++) {
        char name[64];
        seg_name(firsts[i], name, sizeof(name));
        segment_t *seg = &self->segs[self->n_segs++];
        *seg = (segment_t){ .first = firsts[i], .last = firsts[i] - 1 };
        uint8_t *buf = NULL;
        size_t len = 0;
        const char *why = NULL;
        uint64_t good;
        if (i > 0 && firsts[i] != self->segs[i - 1].last + 1) {
            why = "gap after the previous segment";
            good = 0;
        } else if ((rc = raftlog_read_file(self->dir_fd, name, &buf, &len)) != 0) {
            free(firsts);
            return rc;
        } else {
            good = scan_segment(self, seg, buf, len, &why);
        }
        free(buf);
        if (!why)
            continue;
        /* Keep what is valid; drop the rest of this segment and all later ones. */
        bool tail = i + 1 == n;
        uint64_t kept = good ? seg->last : firsts[i] - 1;
        if (tail)
            log_warn("raftlog", "%s/%s: %s at byte %" PRIu64 "; log truncated after index %" PRIu64
                     " (an interrupted write)", self->dir, name, why, good, kept);
        else
            log_error("raftlog", "%s/%s: %s at byte %" PRIu64 "; log truncated after index %" PRIu64
                      ", dropping %zu later segments: the log was damaged before its tail",
                      self->dir, name, why, good, kept, n - i - 1);
        for (size_t k = n; k-- > i + 1;) {
            seg_name(firsts[k], name, sizeof(name));
            unlinkat(self->dir_fd, name, 0);
        }
        seg_name(firsts[i], name, sizeof(name));
        if (good == 0) {
            self->n_segs--;
            unlinkat(self->dir_fd, name, 0);
            free(seg->offsets);
        } else {
            int fd = openat(self->dir_fd, name, O_WRONLY | O_CLOEXEC);
            if (fd < 0 || ftruncate(fd, (off_t)good) != 0 || fdatasync(fd) != 0) {
                rc = -errno;
                if (fd >= 0)
                    close(fd);
                free(firsts);
                return rc;
            }
            close(fd);
            seg->size = good;
        }
        self->dir_dirty = true;
        break;
    }
    free(firsts);
    return 0;
}

/* Lines the log up with the snapshot: entries it covers go; a log that does
 * not reach the snapshot, or disagrees with it, was superseded by it. */
static int reconcile(raftlog_t *self)
{
    uint64_t s = self->snap.index;
    uint64_t first = self->n_boot ? self->boot[0].index : 0;
    uint64_t last = self->n_boot ? self->boot[self->n_boot - 1].index : 0;
    if (s == 0) {
        if (self->n_boot && first != 1) {
            log_error("raftlog", "%s: the log starts at index %" PRIu64 " and there is no snapshot", self->dir,
                      first);
            return -EIO;
        }
        self->last_index = last;
        return 0;
    }
    if (self->n_boot && first > s + 1) {
        log_error("raftlog", "%s: the log starts at index %" PRIu64 ", after snapshot %" PRIu64, self->dir,
                  first, s);
        return -EIO;
    }
    bool superseded = self->n_boot && (last < s || (first <= s && self->boot[s - first].term != self->snap.term));
    if (superseded) {
        log_info("raftlog", "%s: log up to %" PRIu64 " superseded by snapshot %" PRIu64 "; dropped", self->dir,
                 last, s);
        int rc = 0;
        while (rc == 0 && self->n_segs > 0)
            rc = drop_last_segment(self);
        if (rc != 0)
            return rc;
    }
    drop_boot_through(self, superseded ? UINT64_MAX : s);
    self->last_index = self->n_boot ? self->boot[self->n_boot - 1].index : s;
    return raftlog_sync(self);
}

int raftlog_open(const char *dir, const raftlog_options_t *opts, raftlog_t **out)
{
    *out = NULL;
    if (strlen(dir) >= PATH_MAX)
        return -ENAMETOOLONG;
    int rc = fs_mkdirs(dir, 0700);
    if (rc != 0)
        return rc;
    raftlog_t *self = calloc(1, sizeof(*self));
    if (!self)
        return -ENOMEM;
    snprintf(self->dir, sizeof(self->dir), "%s", dir);
    self->segment_bytes = opts && opts->segment_bytes ? opts->segment_bytes : DEFAULT_SEGMENT_BYTES;
    self->fd = self->hs_fd = -1;
    self->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (self->dir_fd < 0)
        rc = -errno;
    if (rc == 0) {
        raftlog_remove_temp_files(self);
        rc = raftlog_load_hard_state(self);
    }
    if (rc == 0)
        rc = raftlog_load_snapshot(self);
    if (rc == 0)
        rc = load_segments(self);
    if (rc == 0)
        rc = reconcile(self);
    if (rc != 0) {
        raftlog_destroy(&self);
        return rc;
    }
    *out = self;
    return 0;
}

void raftlog_destroy(raftlog_t **self_p)
{
    raftlog_t *self = *self_p;
    if (!self)
        return;
    if (self->hs_fd >= 0 && self->hs.commit != self->hs_disk.commit)
        raftlog_write_hard_state(self);
    raftlog_sync(self);
    close_active(self);
    if (self->hs_fd >= 0)
        close(self->hs_fd);
    if (self->dir_fd >= 0)
        close(self->dir_fd);
    for (size_t i = 0; i < self->n_segs; i++)
        free(self->segs[i].offsets);
    free(self->segs);
    raftlog_release_boot(self);
    free(self->wbuf);
    free(self);
    *self_p = NULL;
}

void raftlog_boot(const raftlog_t *self, raft_boot_t *boot)
{
    memset(boot, 0, sizeof(*boot));
    boot->hard_state = self->hs;
    boot->snapshot = self->snap;
    boot->entries = self->boot;
    boot->n_entries = self->n_boot;
}

uint64_t raftlog_first_index(const raftlog_t *self) { return self->snap.index + 1; }
uint64_t raftlog_last_index(const raftlog_t *self) { return self->last_index; }
size_t raftlog_segment_count(const raftlog_t *self) { return self->n_segs; }
