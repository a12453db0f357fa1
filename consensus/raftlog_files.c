/* raftlog_files.c - the hard state, the snapshot files and the small file
 * helpers of the on-disk log; see raftlog.h and docs/consensus.md. */
#include "consensus/raftlog_internal.h"

#include "common/fsutil.h"
#include "common/log.h"
#include "consensus/crc32c.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int raftlog_write_all(int fd, const void *buf, size_t len, uint64_t off)
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

int raftlog_read_file(int dir_fd, const char *name, uint8_t **out, size_t *out_len)
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
int raftlog_list_files(const raftlog_t *self, const char *prefix, const char *suffix, uint64_t **out, size_t *n)
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
void raftlog_remove_temp_files(raftlog_t *self)
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
    if (memcmp(slot, HS_MAGIC, 8) != 0 || raftlog_get32(slot + HS_BODY_LEN) != crc32c(0, slot, HS_BODY_LEN))
        return -1;
    *seq = raftlog_get64(slot + 8);
    hs->term = raftlog_get64(slot + 16);
    hs->vote = raftlog_get64(slot + 24);
    hs->commit = raftlog_get64(slot + 32);
    return 1;
}

int raftlog_load_hard_state(raftlog_t *self)
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

int raftlog_write_hard_state(raftlog_t *self)
{
    uint8_t slot[HS_SLOT_LEN] = { 0 };
    uint64_t seq = self->hs_seq + 1;
    memcpy(slot, HS_MAGIC, 8);
    raftlog_put64(slot + 8, seq);
    raftlog_put64(slot + 16, self->hs.term);
    raftlog_put64(slot + 24, self->hs.vote);
    raftlog_put64(slot + 32, self->hs.commit);
    raftlog_put32(slot + HS_BODY_LEN, crc32c(0, slot, HS_BODY_LEN));
    int rc = raftlog_write_all(self->hs_fd, slot, sizeof(slot), (seq % 2) * HS_SLOT_LEN);
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
    return raftlog_write_hard_state(self);
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
    raftlog_put64(p + 8, s->index);
    raftlog_put64(p + 16, s->term);
    raftlog_put32(p + 24, (uint32_t)s->conf.n_voters);
    raftlog_put32(p + 28, (uint32_t)s->conf.n_learners);
    p += 32;
    for (size_t i = 0; i < s->conf.n_voters; i++, p += 8)
        raftlog_put64(p, s->conf.voters[i]);
    for (size_t i = 0; i < s->conf.n_learners; i++, p += 8)
        raftlog_put64(p, s->conf.learners[i]);
    raftlog_put64(p, s->len);
    p += 8;
    if (s->len)
        memcpy(p, s->data, s->len);
    p += s->len;
    raftlog_put32(p, crc32c(0, buf, (size_t)(p - buf)));
    return buf;
}

/* Decodes a snapshot file; its data points into `buf`. */
static const char *decode_snapshot(const uint8_t *buf, size_t len, raft_snapshot_t *s)
{
    memset(s, 0, sizeof(*s));
    if (len < 32 + 8 + 4 || memcmp(buf, SNAP_MAGIC, 8) != 0)
        return "not a snapshot file";
    if (raftlog_get32(buf + len - 4) != crc32c(0, buf, len - 4))
        return "checksum mismatch";
    s->index = raftlog_get64(buf + 8);
    s->term = raftlog_get64(buf + 16);
    uint32_t nv = raftlog_get32(buf + 24), nl = raftlog_get32(buf + 28);
    if (nv > RAFT_MAX_MEMBERS || nl > RAFT_MAX_MEMBERS || 32 + 8 * ((size_t)nv + nl) + 8 + 4 > len)
        return "bad member counts";
    const uint8_t *p = buf + 32;
    for (uint32_t i = 0; i < nv; i++, p += 8)
        s->conf.voters[s->conf.n_voters++] = raftlog_get64(p);
    for (uint32_t i = 0; i < nl; i++, p += 8)
        s->conf.learners[s->conf.n_learners++] = raftlog_get64(p);
    uint64_t data_len = raftlog_get64(p);
    p += 8;
    if (data_len != (uint64_t)(len - 4 - (size_t)(p - buf)))
        return "bad data length";
    s->data = data_len ? p : NULL;
    s->len = (size_t)data_len;
    return NULL;
}

int raftlog_load_snapshot(raftlog_t *self)
{
    uint64_t *found;
    size_t n;
    int rc = raftlog_list_files(self, "snap-", ".snap", &found, &n);
    if (rc != 0)
        return rc;
    for (size_t i = n; i-- > 0;) {
        char name[64];
        snap_name(found[i], name, sizeof(name));
        uint8_t *buf;
        size_t len;
        if (raftlog_read_file(self->dir_fd, name, &buf, &len) != 0)
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

int raftlog_store_snapshot(raftlog_t *self, const raft_snapshot_t *snap)
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
    if (raftlog_list_files(self, "snap-", ".snap", &found, &n) == 0) {
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
