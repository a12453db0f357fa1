/* raftlog.h - durable storage for the Raft core: the log, the hard state and
 * snapshots, in one folder.
 *
 *   seg-<first index, 20 digits>.log   log segments: a header, then records
 *   hardstate                          term and vote (and commit), two slots
 *   snap-<index, 20 digits>.snap       the latest snapshot
 *
 * Every record and every hard-state slot carries a CRC-32C. At open, a torn or
 * corrupt tail (a crash in the middle of a write) is found, logged, and the
 * log truncated to the last valid entry; what was fsynced survives. See
 * docs/consensus.md for the byte layout.
 *
 * Durability. raftlog_persist_ready() returns once the Ready is on disk
 * (fdatasync). The hard state is written, with its own fdatasync, when the
 * term or the vote changes - the part Raft needs durable; the commit index
 * rides along with those writes and with raftlog_destroy(), so after a crash
 * it may be older than it was, which is safe: the leader tells it again.
 *
 *   raftlog_t *log;
 *   raftlog_open(dir, NULL, &log);
 *   raft_boot_t boot;
 *   raftlog_boot(log, &boot);
 *   raft_t *r = raft_new(&cfg, &boot);
 *   raftlog_release_boot(log);
 *   ...
 *   raftlog_persist_ready(log, &rd);   // step 1 of the Ready contract (raft.h)
 */
#ifndef FERRY_RAFTLOG_H
#define FERRY_RAFTLOG_H

#include "consensus/raft.h"

typedef struct raftlog raftlog_t;

typedef struct {
    size_t segment_bytes;   /* start a new segment beyond this size; default 8 MiB */
} raftlog_options_t;

/* Opens the log in `dir` (created if missing), repairing a torn tail.
 * Returns 0 or a negative errno (-EIO: corruption it cannot repair safely,
 * e.g. a log that starts after 1 with no snapshot; the log says why). */
int raftlog_open(const char *dir, const raftlog_options_t *opts, raftlog_t **out);
/* Writes the latest commit index and closes. */
void raftlog_destroy(raftlog_t **self_p);

/* What was on disk at open, for raft_new(). Valid until raftlog_release_boot()
 * (which frees it) or any call that writes. */
void raftlog_boot(const raftlog_t *self, raft_boot_t *boot);
void raftlog_release_boot(raftlog_t *self);

/* Step 1 of the Ready contract: snapshot, entries, hard state, fsync. */
int raftlog_persist_ready(raftlog_t *self, const raft_ready_t *rd);

/* The pieces, for callers that need them separately. */
int raftlog_append(raftlog_t *self, const raft_entry_t *ents, size_t n);  /* cuts a conflicting suffix */
int raftlog_set_hard_state(raftlog_t *self, const raft_hard_state_t *hs);
int raftlog_sync(raftlog_t *self);
/* A snapshot from the leader: stored atomically, then the whole log dropped. */
int raftlog_install_snapshot(raftlog_t *self, const raft_snapshot_t *snap);
/* The application's own snapshot: stored atomically (temp file, fsync,
 * rename, fsync of the folder); older snapshot files are removed. */
int raftlog_save_snapshot(raftlog_t *self, const raft_snapshot_t *snap);
/* Drops whole segments whose entries are all at or below `index`, which a
 * saved snapshot must cover. */
int raftlog_compact(raftlog_t *self, uint64_t index);

uint64_t raftlog_first_index(const raftlog_t *self);  /* first entry on disk after the snapshot */
uint64_t raftlog_last_index(const raftlog_t *self);
size_t raftlog_segment_count(const raftlog_t *self);

#endif
