/* raftlog_internal.h - what the files of the on-disk log share:
 *
 *   raftlog.c        segments: append, truncate, compact, load and repair
 *   raftlog_files.c  the hard state, snapshot files and small file helpers
 */
#ifndef FERRY_RAFTLOG_INTERNAL_H
#define FERRY_RAFTLOG_INTERNAL_H

#include "consensus/raftlog.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* Little-endian integers. */
static inline void raftlog_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void raftlog_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t raftlog_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t raftlog_get64(const uint8_t *p)
{
    return (uint64_t)raftlog_get32(p) | (uint64_t)raftlog_get32(p + 4) << 32;
}

/* raftlog_files.c */
int raftlog_write_all(int fd, const void *buf, size_t len, uint64_t off);
int raftlog_read_file(int dir_fd, const char *name, uint8_t **out, size_t *out_len);
/* The numbers of the folder's files named prefix<20 digits>suffix, ascending. */
int raftlog_list_files(const raftlog_t *self, const char *prefix, const char *suffix, uint64_t **out, size_t *n);
void raftlog_remove_temp_files(raftlog_t *self);
int raftlog_load_hard_state(raftlog_t *self);
int raftlog_write_hard_state(raftlog_t *self);
int raftlog_load_snapshot(raftlog_t *self);
/* Writes the snapshot file atomically, removes older ones, records the metadata. */
int raftlog_store_snapshot(raftlog_t *self, const raft_snapshot_t *snap);

#endif
