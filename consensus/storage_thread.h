/* storage_thread.h - the Raft log's writes on their own thread, so that an
 * fsync never stalls the agent's event loop (its timers, its transport).
 *
 * The node's loop copies what a Ready asks to persist and queues it; the
 * thread writes queued work in order and reports, through an eventfd the
 * loop polls, the sequence number up to which everything is durable.
 *
 *   storage_thread_t *st = storage_thread_new(log, NULL);
 *   zmq_pollitem_t item = { .fd = storage_thread_fd(st), .events = ZMQ_POLLIN };
 *   zloop_poller(loop, &item, on_storage, node);
 *   uint64_t seq;
 *   storage_thread_submit_ready(st, &rd, &seq);   // copies; rd may go at once
 *   ...
 *   // on_storage:
 *   uint64_t durable;
 *   if (storage_thread_collect(st, &durable) != 0) stop;  // the disk failed
 *   // every write with seq <= durable is on disk: send what waited on it
 *
 * Group commit: the thread takes everything queued at once, writes it all,
 * then syncs once; the writes that arrive during that sync form the next
 * group. Within a group only the newest hard state is written: an older
 * term or vote it supersedes needs no durability of its own, because nothing
 * that depends on it is released before the whole group is durable.
 *
 * The thread owns the log between new() and destroy(): the caller makes no
 * other raftlog_* call meanwhile. */
#ifndef FERRY_STORAGE_THREAD_H
#define FERRY_STORAGE_THREAD_H

#include "consensus/raft.h"
#include "consensus/raftlog.h"

#include <stddef.h>
#include <stdint.h>

typedef struct storage_thread storage_thread_t;

/* For tests: called on the thread after a group's writes and before its
 * sync, with the number of queued items in the group (e.g. to simulate a
 * slow fsync by blocking). NULL for none. */
typedef struct {
    void (*before_sync)(void *ctx, size_t group_size);
    void *ctx;
} storage_thread_hooks_t;

/* Starts the thread on an open log (raftlog_release_boot() already called).
 * NULL on failure (errno set). */
storage_thread_t *storage_thread_new(raftlog_t *log, const storage_thread_hooks_t *hooks);
/* Finishes every queued write, stops the thread. The log stays open. */
void storage_thread_destroy(storage_thread_t **self_p);

/* Queues what `rd` asks to persist: its snapshot (stored, the log dropped),
 * its entries (a conflicting suffix cut), its hard state. Everything is
 * copied. *seq names the write (sequence numbers rise by one per call).
 * Returns 0 or -ENOMEM. */
int storage_thread_submit_ready(storage_thread_t *self, const raft_ready_t *rd, uint64_t *seq);
/* Queues a snapshot the application took (at or below what is durable):
 * saved atomically, then the segments it covers deleted. */
int storage_thread_submit_snapshot(storage_thread_t *self, const raft_snapshot_t *snap, uint64_t *seq);

/* Readable (an eventfd) whenever a group became durable or the disk failed. */
int storage_thread_fd(const storage_thread_t *self);
/* Clears the fd and sets *durable to the newest sequence number whose write
 * (and every earlier one) is on disk. Returns 0, or the negative errno of a
 * failed write: nothing after it will be written. */
int storage_thread_collect(storage_thread_t *self, uint64_t *durable);

#endif
