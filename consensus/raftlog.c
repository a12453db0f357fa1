/* raftlog.c - see raftlog.h; the byte layout is in docs/consensus.md.
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
#include "consensus/raftlog.h"

#include "common/fsutil.h"
#include "common/log.h"
#include "consensus/crc32c.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG_MAGIC "FRYLOG01"
#define SEG_HEADER_LEN 24
#define REC_HEADER_LEN 8
#define REC_FIXED_LEN 17
#define REC_MAX_LEN (REC_FIXED_LEN + RAFT_MAX_ENTRY_BYTES)
#define HS_MAGIC "FRYHS001"
#define HS_SLOT_LEN 512
#define HS_BODY_LEN 40
#define SNAP_MAGIC "FRYSNAP1"
#define DEFAULT_SEGMENT_BYTES (8u << 20)

typedef struct {
    uint64_t first, last;   /* last == first - 1 while empty */
    uint64_t size;          /* bytes in the file */
    uint64_t *offsets;      /* offsets[i]: record of entry first + i */
    size_t cap;
} segment_t;

struct raftlog {
    char dir[PATH_MAX];
    int dir_fd;
    size_t segment_bytes;
    segment_t *segs;
    size_t n_segs, cap_segs;
    int fd;                     /* the last segment, open for writing; -1 if none */
    bool fd_dirty, dir_dirty;
    int hs_fd;
    uint64_t hs_seq;
    raft_hard_state_t hs, hs_disk;
    raft_snapshot_t snap;       /* data only until raftlog_release_boot() */
    uint8_t *snap_data;
    uint64_t last_index;
    raft_entry_t *boot;
    size_t n_boot, cap_boot;
    uint8_t *wbuf;
    size_t wlen, wcap;
};

/* --- little helpers --------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int read_file(int dir_fd, const char *name, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    *out = buf;
    *out_len = got;
    return 0;
}

static void seg_name(uint64_t first, char *out, size_t cap)
{
    snprintf(out, cap, "seg-%020" PRIu64 ".log", first);
}

static void snap_name(uint64_t index, char *out, size_t cap)
{
    snprintf(out, cap, "snap-%020" PRIu64 ".snap", index);
}

/* Parses "<prefix><20 digits><suffix>"; false for anything else. */
static bool parse_name(const char *name, const char *prefix, const char *suffix, uint64_t *value)
{
    size_t lp = strlen(prefix), ls = strlen(suffix), len = strlen(name);
    if (len != lp + 20 + ls || strncmp(name, prefix, lp) != 0 || strcmp(name + lp + 20, suffix) != 0)
        return false;
    uint64_t v = 0;
    for (size_t i = lp; i < lp + 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    *value = v;
    return true;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The numbers of the folder's files named prefix<number>suffix, ascending. */
static int list_files(const raftlog_t *self, const char *prefix, const char *suffix, uint64_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(self->dir);
    if (!d)
        return -errno;
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t v;
        if (!parse_name(de->d_name, prefix, suffix, &v))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            uint64_t *grown = realloc(*out, cap * sizeof(uint64_t));
            if (!grown) {
                closedir(d);
                return -ENOMEM;
            }
            *out = grown;
        }
        (*out)[(*n)++] = v;
    }
    closedir(d);
    if (*n)
        qsort(*out, *n, sizeof(uint64_t), compare_u64);
    return 0;
}

/* Leftovers of an interrupted atomic write (fs_write_atomic's temp files). */
static void remove_temp_files(raftlog_t *self)
{
    DIR *d = opendir(self->dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strncmp(de->d_name, "snap-", 5) == 0 && strstr(de->d_name, ".tmp."))
            unlinkat(self->dir_fd, de->d_name, 0);
    closedir(d);
}

/* --- hard state ----------------------------------------------------------- */

/* 1: valid, 0: never written (all zero), -1: torn or corrupt. */
static int parse_hs_slot(const uint8_t *slot, uint64_t *seq, raft_hard_state_t *hs)
{
    bool zero = true;
    for (size_t i = 0; i < HS_SLOT_LEN && zero; i++)
        zero = slot[i] == 0;
    if (zero)
        return 0;
    if (memcmp(slot, HS_MAGIC, 8) != 0 || get32(slot + HS_BODY_LEN) != crc32c(0, slot, HS_BODY_LEN))
        return -1;
    *seq = get64(slot + 8);
    hs->term = get64(slot + 16);
    hs->vote = get64(slot + 24);
    hs->commit = get64(slot + 32);
    return 1;
}

static int load_hard_state(raftlog_t *self)
{
    self->hs_fd = openat(self->dir_fd, "hardstate", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (self->hs_fd < 0)
        return -errno;
    uint8_t slots[2 * HS_SLOT_LEN] = { 0 };
    ssize_t n = pread(self->hs_fd, slots, sizeof(slots), 0);
    if (n < 0)
        return -errno;
    if (n < (ssize_t)sizeof(slots))
        self->dir_dirty = true;   /* new (or cut short): the next write completes it */
    raft_hard_state_t found[2] = { { 0 } };
    uint64_t seq[2] = { 0, 0 };
    int state[2];
    for (int i = 0; i < 2; i++)
        state[i] = parse_hs_slot(slots + i * HS_SLOT_LEN, &seq[i], &found[i]);
    if (state[0] < 0 && state[1] < 0) {
        log_error("raftlog", "%s/hardstate: both slots are corrupt; refusing to guess the term and vote",
                  self->dir);
        return -EIO;
    }
    for (int i = 0; i < 2; i++)
        if (state[i] < 0)   /* the write a crash interrupted; the other slot holds the one before */
            log_warn("raftlog", "%s/hardstate: slot %d torn, using the other", self->dir, i);
    int best = -1;
    for (int i = 0; i < 2; i++)
        if (state[i] > 0 && (best < 0 || seq[i] > seq[best]))
            best = i;
    if (best >= 0) {
        self->hs = self->hs_disk = found[best];
        self->hs_seq = seq[best];
    }
    return 0;
}

static int write_hard_state(raftlog_t *self)
{
    uint8_t slot[HS_SLOT_LEN] = { 0 };
    uint64_t seq = self->hs_seq + 1;
    memcpy(slot, HS_MAGIC, 8);
    put64(slot + 8, seq);
    put64(slot + 16, self->hs.term);
    put64(slot + 24, self->hs.vote);
    put64(slot + 32, self->hs.commit);
    put32(slot + HS_BODY_LEN, crc32c(0, slot, HS_BODY_LEN));
    int rc = pwrite_all(self->hs_fd, slot, sizeof(slot), (seq % 2) * HS_SLOT_LEN);
    if (rc == 0 && fdatasync(self->hs_fd) != 0)
        rc = -errno;
    if (rc == 0 && self->dir_dirty && fsync(self->dir_fd) != 0)
        rc = -errno;
    if (rc != 0)
        return rc;
    self->dir_dirty = false;
    self->hs_seq = seq;
    self->hs_disk = self->hs;
    return 0;
}

int raftlog_set_hard_state(raftlog_t *self, const raft_hard_state_t *hs)
{
    self->hs = *hs;
    if (hs->term == self->hs_disk.term && hs->vote == self->hs_disk.vote)
        return 0;   /* only the commit index moved: it rides along later */
    return write_hard_state(self);
}

/* --- snapshots ------------------------------------------------------------ */

static uint8_t *encode_snapshot(const raft_snapshot_t *s, size_t *len)
{
    size_t ids = s->conf.n_voters + s->conf.n_learners;
    *len = 8 + 8 + 8 + 4 + 4 + 8 * ids + 8 + s->len + 4;
    uint8_t *buf = malloc(*len);
    if (!buf)
        return NULL;
    uint8_t *p = buf;
    memcpy(p, SNAP_MAGIC, 8);
    put64(p + 8, s->index);
    put64(p + 16, s->term);
    put32(p + 24, (uint32_t)s->conf.n_voters);
    put32(p + 28, (uint32_t)s->conf.n_learners);
    p += 32;
    for (size_t i = 0; i < s->conf.n_voters; i++, p += 8)
        put64(p, s->conf.voters[i]);
    for (size_t i = 0; i < s->conf.n_learners; i++, p += 8)
        put64(p, s->conf.learners[i]);
    put64(p, s->len);
    p += 8;
    if (s->len)
        memcpy(p, s->data, s->len);
    p += s->len;
    put32(p, crc32c(0, buf, (size_t)(p - buf)));
    return buf;
}

/* Decodes a snapshot file; its data points into `buf`. */
static const char *decode_snapshot(const uint8_t *buf, size_t len, raft_snapshot_t *s)
{
    memset(s, 0, sizeof(*s));
    if (len < 32 + 8 + 4 || memcmp(buf, SNAP_MAGIC, 8) != 0)
        return "not a snapshot file";
    if (get32(buf + len - 4) != crc32c(0, buf, len - 4))
        return "checksum mismatch";
    s->index = get64(buf + 8);
    s->term = get64(buf + 16);
    uint32_t nv = get32(buf + 24), nl = get32(buf + 28);
    if (nv > RAFT_MAX_MEMBERS || nl > RAFT_MAX_MEMBERS || 32 + 8 * ((size_t)nv + nl) + 8 + 4 > len)
        return "bad member counts";
    const uint8_t *p = buf + 32;
    for (uint32_t i = 0; i < nv; i++, p += 8)
        s->conf.voters[s->conf.n_voters++] = get64(p);
    for (uint32_t i = 0; i < nl; i++, p += 8)
        s->conf.learners[s->conf.n_learners++] = get64(p);
    uint64_t data_len = get64(p);
    p += 8;
    if (data_len != (uint64_t)(len - 4 - (size_t)(p - buf)))
        return "bad data length";
    s->data = data_len ? p : NULL;
    s->len = (size_t)data_len;
    return NULL;
}

static int load_snapshot(raftlog_t *self)
{
    uint64_t *found;
    size_t n;
    int rc = list_files(self, "snap-", ".snap", &found, &n);
    if (rc != 0)
        return rc;
    for (size_t i = n; i-- > 0;) {
        char name[64];
        snap_name(found[i], name, sizeof(name));
        uint8_t *buf;
        size_t len;
        if (read_file(self->dir_fd, name, &buf, &len) != 0)
            continue;
        raft_snapshot_t s;
        const char *why = decode_snapshot(buf, len, &s);
        if (!why && s.index != found[i])
            why = "index differs from its name";
        if (why) {
            log_warn("raftlog", "%s/%s: %s; ignored", self->dir, name, why);
            free(buf);
            continue;
        }
        self->snap = s;
        if (s.len) {
            self->snap_data = malloc(s.len);
            if (!self->snap_data) {
                free(buf);
                free(found);
                return -ENOMEM;
            }
            memcpy(self->snap_data, s.data, s.len);
        }
        self->snap.data = self->snap_data;
        free(buf);
        break;
    }
    free(found);
    return 0;
}

static int store_snapshot(raftlog_t *self, const raft_snapshot_t *snap)
{
    size_t len;
    uint8_t *buf = encode_snapshot(snap, &len);
    if (!buf)
        return -ENOMEM;
    char name[64], path[PATH_MAX + 64];
    snap_name(snap->index, name, sizeof(name));
    snprintf(path, sizeof(path), "%s/%s", self->dir, name);
    int rc = fs_write_atomic(path, buf, len, 0600);
    free(buf);
    if (rc != 0) {
        log_error("raftlog", "%s: cannot write snapshot %" PRIu64 ": %s", self->dir, snap->index, strerror(-rc));
        return rc;
    }
    /* The new snapshot is durable: the older ones can go. */
    uint64_t *found;
    size_t n;
    if (list_files(self, "snap-", ".snap", &found, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            if (found[i] < snap->index) {
                snap_name(found[i], name, sizeof(name));
                unlinkat(self->dir_fd, name, 0);
            }
        }
        free(found);
    }
    self->snap = *snap;
    self->snap.data = NULL;
    self->snap.len = 0;
    return 0;
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
    put64(header + 8, first);
    put32(header + 16, crc32c(0, header, 16));
    rc = pwrite_all(self->fd, header, sizeof(header), 0);
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
    int rc = pwrite_all(self->fd, self->wbuf, self->wlen, seg->size);
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
        put32(p, len);
        put64(p + 8, e->term);
        put64(p + 16, e->index);
        p[24] = e->type;
        if (e->len)
            memcpy(p + 25, e->data, e->len);
        put32(p + 4, crc32c(crc32c(0, p, 4), p + 8, len));
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
    int rc = store_snapshot(self, snap);
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
    return store_snapshot(self, snap);
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
    if (len < SEG_HEADER_LEN || memcmp(buf, SEG_MAGIC, 8) != 0 || get64(buf + 8) != seg->first ||
        get32(buf + 16) != crc32c(0, buf, 16)) {
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
        uint32_t rec_len = get32(p);
        if (rec_len < REC_FIXED_LEN || rec_len > REC_MAX_LEN || rec_len > len - off - REC_HEADER_LEN) {
            *why = "record length out of bounds";
            return off;
        }
        if (get32(p + 4) != crc32c(crc32c(0, p, 4), p + 8, rec_len)) {
            *why = "checksum mismatch";
            return off;
        }
        raft_entry_t e = { .term = get64(p + 8), .index = get64(p + 16), .type = p[24],
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
    int rc = list_files(self, "seg-", ".log", &firsts, &n);
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
        } else if ((rc = read_file(self->dir_fd, name, &buf, &len)) != 0) {
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
        remove_temp_files(self);
        rc = load_hard_state(self);
    }
    if (rc == 0)
        rc = load_snapshot(self);
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
        write_hard_state(self);
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
