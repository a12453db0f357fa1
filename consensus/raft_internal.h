/* raft_internal.h - the Raft core's private structures, shared by its files:
 *
 *   raft.c           node lifecycle, requests, tick, Ready/advance, status
 *   raft_step.c      message handling: elections, replication, reads
 *   raft_progress.c  the leader's view of each follower (flow control, quorum)
 *   raft_memlog.c    the in-memory log: snapshot + entries after it
 *   raft_conf.c      membership configurations
 */
#ifndef FERRY_RAFT_INTERNAL_H
#define FERRY_RAFT_INTERNAL_H

#include "consensus/raft.h"
#include "common/rng.h"

#define RAFT_MAX_INFLIGHT 1024
#define RAFT_MAX_PENDING_READS 4096

/* --- in-memory log (raft_memlog.c) -------------------------------------- */

/* The log as the core holds it: a snapshot (index/term/conf + its bytes) and
 * the entries after it, ents[0].index == snap.index + 1. Every payload is a
 * heap copy owned by the log. */
typedef struct {
    raft_snapshot_t snap;
    uint8_t *snap_data;        /* owned copy behind snap.data */
    raft_entry_t *ents;
    size_t n, cap;
} memlog_t;

void memlog_init(memlog_t *log);
void memlog_free(memlog_t *log);
uint64_t memlog_first(const memlog_t *log);   /* snap.index + 1 */
uint64_t memlog_last(const memlog_t *log);
uint64_t memlog_last_term(const memlog_t *log);
/* Term at `index`; 0 with false if unknown (compacted or beyond the end). */
bool memlog_term(const memlog_t *log, uint64_t index, uint64_t *term);
const raft_entry_t *memlog_at(const memlog_t *log, uint64_t index);
/* Appends copies of entries that must continue the log exactly. */
int memlog_append(memlog_t *log, const raft_entry_t *ents, size_t n);
/* Drops entries with index >= `from`. */
void memlog_truncate(memlog_t *log, uint64_t from);
/* Replaces the snapshot; keeps entries after `snap->index` only if the log
 * holds `snap->index` with `snap->term` (else the whole log goes). */
int memlog_set_snapshot(memlog_t *log, const raft_snapshot_t *snap);
/* Of entries (index lo..), how many fit in max_n entries / max_bytes (>= 1). */
size_t memlog_batch(const memlog_t *log, uint64_t lo, size_t max_n, size_t max_bytes);

/* --- membership (raft_conf.c) ------------------------------------------- */

size_t raft_conf_quorum(const raft_conf_t *conf);  /* majority of voters */
int raft_conf_apply_op(raft_conf_t *conf, raft_conf_op_t op, uint64_t node);

/* --- leader's per-follower progress (raft_progress.c) --------------------- */

typedef enum { PROGRESS_PROBE, PROGRESS_REPLICATE, PROGRESS_SNAPSHOT } progress_state_t;

/* A ring of the last indexes of AppendEntries in flight: the pipeline window. */
typedef struct {
    uint64_t *buf;
    size_t cap, start, count;
} inflights_t;

typedef struct {
    uint64_t id;
    bool voter;
    uint64_t match;            /* highest index known to be in its log */
    uint64_t next;             /* next index to send */
    progress_state_t state;
    bool probe_sent;           /* probe: one message out, wait for its answer */
    uint64_t pending_snapshot; /* snapshot: index of the snapshot sent */
    int snapshot_ticks;        /* snapshot: ticks since sent, to retry */
    bool recent_active;        /* heard from since the last CheckQuorum round */
    uint64_t read_ack;         /* highest ReadIndex round it has answered */
    inflights_t inflights;
} progress_t;

int progress_init(progress_t *pr, uint64_t id, bool voter, uint64_t next, size_t window);
void progress_free(progress_t *pr);
void progress_become_probe(progress_t *pr);
void progress_become_replicate(progress_t *pr);
void progress_become_snapshot(progress_t *pr, uint64_t snap_index);
bool progress_is_paused(const progress_t *pr);
/* An acknowledgement up to `index`; true if match advanced. */
bool progress_maybe_update(progress_t *pr, uint64_t index);
/* A rejection of the append after `rejected`; `hint` is the highest index
 * that may match. False if the rejection is stale. */
bool progress_maybe_decrease(progress_t *pr, uint64_t rejected, uint64_t hint);
/* An append ending at `last` went out (replicate: next moves on optimistically). */
void progress_sent_entries(progress_t *pr, uint64_t last);
const char *progress_state_name(progress_state_t state);

void inflights_add(inflights_t *in, uint64_t last);
void inflights_free_to(inflights_t *in, uint64_t index);
void inflights_free_first(inflights_t *in);
bool inflights_full(const inflights_t *in);

/* --- the node ------------------------------------------------------------ */

/* A message waiting in the outbox. Its entries are a range of the log, turned
 * into pointers at raft_ready() so later log growth cannot leave them dangling. */
typedef struct {
    raft_msg_t msg;
    uint64_t ents_lo;
    size_t ents_n;
    uint64_t ents_last_term;   /* to check the range still holds the same entries */
} outmsg_t;

typedef struct {
    uint64_t context;
    uint64_t from;        /* this node, or the follower that forwarded it */
    uint64_t index;       /* commit index when the round started */
    uint64_t round;       /* heartbeat round that confirms it; 0 = not started */
} pending_read_t;

struct raft {
    raft_config_t cfg;
    uint64_t id;
    rng_t rng;

    /* persistent */
    uint64_t term;
    uint64_t vote;
    memlog_t log;

    /* volatile */
    raft_role_t role;
    uint64_t leader;
    uint64_t commit;
    uint64_t applied;          /* last index handed out to apply */
    uint64_t stabled;          /* last index handed out to persist */
    uint64_t durable;          /* async_storage: the log is on disk up to here */
    bool snap_unstable;        /* a received snapshot awaits persisting */
    raft_hard_state_t persisted_hs;

    int election_elapsed;
    int heartbeat_elapsed;
    int randomized_timeout;

    raft_conf_t conf;          /* in force: latest CONFIG in the log */
    uint64_t conf_index;

    /* elections */
    uint64_t granted[RAFT_MAX_MEMBERS];
    uint64_t rejected[RAFT_MAX_MEMBERS];
    size_t n_granted, n_rejected;

    /* leader */
    progress_t *prs;           /* one per voter and learner, self included */
    size_t n_prs;
    uint64_t term_start;       /* index of this leader's NOOP */
    uint64_t transferee;
    bool bcast_pending;        /* new entries or commit to send at Ready */
    bool heartbeat_pending;    /* a ReadIndex round to start at Ready */
    uint64_t read_round;
    pending_read_t *reads;
    size_t n_reads, cap_reads;

    /* output */
    outmsg_t *out;
    size_t n_out, cap_out;
    raft_read_state_t *read_states;
    size_t n_read_states, cap_read_states;

    /* the Ready being processed */
    bool in_ready;
    raft_msg_t *ready_msgs;
    size_t cap_ready_msgs;
    uint64_t ready_stabled, ready_applied;
    raft_hard_state_t ready_hs;
    size_t ready_n_out, ready_n_reads;
};

/* raft.c */
void raft_send(raft_t *r, const raft_msg_t *msg);
void raft_send_entries(raft_t *r, const raft_msg_t *msg, uint64_t lo, size_t n);
void raft_push_read_state(raft_t *r, uint64_t context, uint64_t index);
bool raft_promotable(const raft_t *r);
void raft_apply_conf(raft_t *r, const raft_conf_t *conf, uint64_t index);
void raft_reload_conf(raft_t *r);
progress_t *raft_progress(raft_t *r, uint64_t id);
void raft_reset_progress(raft_t *r);   /* fresh progress for every member */
void raft_drop_progress(raft_t *r);
int raft_append_local(raft_t *r, raft_entry_type_t type, const void *data, size_t len,
                      uint64_t *index);

/* raft_step.c */
void raft_become_follower(raft_t *r, uint64_t term, uint64_t leader);
void raft_become_leader(raft_t *r);
void raft_start_campaign(raft_t *r, bool pre_vote, bool force);
/* How far the leader's own log counts towards a quorum. */
uint64_t raft_self_match(const raft_t *r);
bool raft_maybe_commit(raft_t *r);
bool raft_send_append(raft_t *r, progress_t *pr, bool send_if_empty);
void raft_bcast_append(raft_t *r);
void raft_bcast_heartbeat(raft_t *r);
void raft_tick_leader(raft_t *r);
bool raft_committed_in_term(const raft_t *r);
void raft_leader_read(raft_t *r, uint64_t context, uint64_t from);
void raft_process_reads(raft_t *r);

#endif
