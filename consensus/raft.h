/* raft.h - the Raft consensus core: a pure state machine, no I/O.
 *
 * Modelled on etcd's raft package. The core never touches a socket, a clock,
 * a file or a thread. The caller (the "shell") feeds it three kinds of input:
 *
 *   raft_tick(r)          once per tick period (the shell owns the clock);
 *   raft_step(r, &msg)    for every message that arrives from a peer;
 *   raft_propose(...)     and the other requests below, from the application;
 *
 * and collects its output as data with raft_ready() / raft_advance().
 *
 * THE READY CONTRACT (read this before writing a shell)
 * -----------------------------------------------------
 *
 *   while (running) {
 *       wait for a message, a request or the next tick; feed it to the core;
 *       if (!raft_has_ready(r)) continue;
 *       raft_ready_t rd;
 *       raft_ready(r, &rd);
 *       1. persist, durably (fsync), in this order:
 *            rd.snapshot     if not NULL: store it and discard the whole log;
 *            rd.entries      append; if rd.entries[0].index is at or below the
 *                            last stored index, first drop the stored entries
 *                            from that index on (a conflicting suffix);
 *            rd.hard_state   if rd.has_hard_state (term, vote, commit).
 *          (raftlog_persist_ready() in consensus/raftlog.h does exactly this.)
 *       2. send rd.messages (to msg.to); a lost message is harmless.
 *       3. if rd.snapshot: restore the state machine from rd.snapshot->data;
 *          then apply rd.committed in order (skipping NOOP, reading CONFIG);
 *          then answer rd.reads (ReadIndex) once applied >= read.index.
 *       4. raft_advance(r);
 *   }
 *
 * Messages may be sent only after step 1 has completed, because they can
 * promise what was persisted in it (a vote, an appended entry). Between
 * raft_ready() and raft_advance() the caller must make no other call on `r`:
 * every pointer in the raft_ready_t points into the core and stays valid
 * exactly until raft_advance().
 *
 * Time is measured in ticks. With a 10 ms tick and the defaults
 * (election_tick 8, heartbeat_tick 2) a crashed leader is replaced in about
 * 70..160 ms, under 250 ms in every simulated case, and heartbeats every
 * 20 ms keep followers quiet; docs/consensus.md gives the measurements.
 *
 * Membership: the configuration in force on a node is the latest CONFIG entry
 * in its log, committed or not (Raft thesis, section 4.1). Changes go one
 * server at a time: add a learner (non-voting), let it catch up (raft_status()
 * reports its match index), promote it, or remove a server.
 */
#ifndef FERRY_RAFT_H
#define FERRY_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_NONE 0                   /* "no node": node ids are non-zero */
#define RAFT_MAX_MEMBERS 32           /* voters, and separately learners */
#define RAFT_MAX_ENTRY_BYTES (8u << 20)      /* largest entry payload */
#define RAFT_MAX_SNAPSHOT_BYTES (512u << 20) /* largest snapshot payload */
#define RAFT_MAX_MSG_ENTRIES 4096            /* most entries in one message */

/* Error codes (all negative; 0 is success). raft_strerror() names them. */
enum {
    RAFT_ERR_INVALID = -2001,    /* bad argument or state */
    RAFT_ERR_NOT_LEADER = -2002, /* only the leader can do this; see raft_leader() */
    RAFT_ERR_BUSY = -2003,       /* a membership change or transfer is pending */
    RAFT_ERR_NO_LEADER = -2004,  /* no known leader to forward to */
    RAFT_ERR_TOO_BIG = -2005,    /* payload above its limit */
    RAFT_ERR_NOMEM = -2006,
    RAFT_ERR_DECODE = -2007,     /* malformed message bytes */
    RAFT_ERR_COMPACTED = -2008,  /* index below the snapshot */
};
const char *raft_strerror(int err);

typedef enum {
    RAFT_FOLLOWER,
    RAFT_PRE_CANDIDATE,
    RAFT_CANDIDATE,
    RAFT_LEADER,
} raft_role_t;
const char *raft_role_name(raft_role_t role);

/* --- log entries ------------------------------------------------------- */

typedef enum {
    RAFT_ENTRY_NORMAL = 0,   /* application payload */
    RAFT_ENTRY_NOOP = 1,     /* appended by a new leader; no payload */
    RAFT_ENTRY_CONFIG = 2,   /* a complete membership; raft_conf_decode() */
} raft_entry_type_t;

typedef struct {
    uint64_t term;
    uint64_t index;
    uint8_t type;            /* raft_entry_type_t */
    const uint8_t *data;     /* opaque payload, `len` bytes */
    size_t len;
} raft_entry_t;

/* --- membership -------------------------------------------------------- */

typedef struct {
    size_t n_voters, n_learners;
    uint64_t voters[RAFT_MAX_MEMBERS];
    uint64_t learners[RAFT_MAX_MEMBERS];
} raft_conf_t;

typedef enum {
    RAFT_CONF_ADD_LEARNER = 1,  /* a new server joins without a vote */
    RAFT_CONF_PROMOTE = 2,      /* a learner becomes a voter */
    RAFT_CONF_REMOVE = 3,       /* a voter or learner leaves */
} raft_conf_op_t;

bool raft_conf_is_voter(const raft_conf_t *conf, uint64_t id);
bool raft_conf_is_learner(const raft_conf_t *conf, uint64_t id);
/* The payload of a CONFIG entry: its encoding is little-endian
 * u32 n_voters, u32 n_learners, then the u64 ids. Decoding checks every
 * count and that no id is 0 or listed twice. */
int raft_conf_decode(const uint8_t *data, size_t len, raft_conf_t *out);
size_t raft_conf_encoded_len(const raft_conf_t *conf);
void raft_conf_encode(const raft_conf_t *conf, uint8_t *out);

/* --- persistent state -------------------------------------------------- */

typedef struct {
    uint64_t term;
    uint64_t vote;     /* RAFT_NONE if no vote in `term` */
    uint64_t commit;
} raft_hard_state_t;

typedef struct {
    uint64_t index;    /* last log index the snapshot covers (0: none) */
    uint64_t term;     /* term of that entry */
    raft_conf_t conf;  /* membership as of `index` */
    const uint8_t *data;
    size_t len;
} raft_snapshot_t;

/* What a node restarts from (consensus/raftlog.h loads it from disk).
 * entries[] must follow the snapshot: entries[0].index == snapshot.index + 1. */
typedef struct {
    raft_hard_state_t hard_state;
    raft_snapshot_t snapshot;
    const raft_entry_t *entries;
    size_t n_entries;
} raft_boot_t;

/* --- messages ---------------------------------------------------------- */

typedef enum {
    RAFT_MSG_APPEND = 1,          /* AppendEntries: index/log_term = previous entry */
    RAFT_MSG_APPEND_RESP,         /* index = last matching index, or the rejected one */
    RAFT_MSG_VOTE,                /* index/log_term = candidate's last entry */
    RAFT_MSG_VOTE_RESP,
    RAFT_MSG_PRE_VOTE,            /* term = the term the sender would campaign in */
    RAFT_MSG_PRE_VOTE_RESP,
    RAFT_MSG_HEARTBEAT,           /* commit; context = ReadIndex round */
    RAFT_MSG_HEARTBEAT_RESP,      /* context echoed */
    RAFT_MSG_SNAPSHOT,            /* InstallSnapshot: snapshot */
    RAFT_MSG_TIMEOUT_NOW,         /* leadership transfer: campaign now */
    RAFT_MSG_READ_INDEX,          /* follower -> leader: context = request id */
    RAFT_MSG_READ_INDEX_RESP,     /* leader -> follower: context, index */
    RAFT_MSG_TYPE_MAX
} raft_msg_type_t;
const char *raft_msg_type_name(int type);

typedef struct {
    uint8_t type;                 /* raft_msg_type_t */
    uint64_t from, to;
    uint64_t term;
    uint64_t log_term;
    uint64_t index;
    uint64_t commit;
    bool reject;
    bool force;                   /* VOTE caused by a leadership transfer */
    uint64_t hint_index;          /* rejections: where the follower's log may match */
    uint64_t hint_term;           /* ... and the term it has there */
    uint64_t context;
    const raft_entry_t *entries;
    size_t n_entries;
    const raft_snapshot_t *snapshot;  /* RAFT_MSG_SNAPSHOT only */
} raft_msg_t;

/* --- the node ---------------------------------------------------------- */

typedef struct {
    uint64_t id;              /* this node, non-zero */
    uint64_t seed;            /* seeds the election-timeout randomness */
    int election_tick;        /* follower timeout: random in [e, 2e) ticks; default 8 */
    int heartbeat_tick;       /* leader heartbeat period; default 2 */
    bool pre_vote;            /* ask before disrupting (thesis 9.6) */
    bool check_quorum;        /* a leader without a live quorum steps down */
    bool async_storage;       /* the shell persists off its loop: see raft_log_durable() */
    size_t max_msg_entries;   /* batching: entries per AppendEntries; default 256 */
    size_t max_msg_bytes;     /* ... payload bytes per AppendEntries; default 1 MiB */
    size_t max_inflight;      /* pipelining: unacknowledged appends per follower; default 64 */
} raft_config_t;

/* Defaults for everything but id and seed; PreVote and CheckQuorum on. */
void raft_config_defaults(raft_config_t *cfg, uint64_t id, uint64_t seed);

typedef struct raft raft_t;

/* A node from its durable state (NULL boot: a brand-new, empty node that
 * waits to be added to a cluster, or is bootstrapped). Returns NULL on a bad
 * configuration or boot state, saying why in the log. */
raft_t *raft_new(const raft_config_t *cfg, const raft_boot_t *boot);
void raft_destroy(raft_t **self_p);

/* Founds a cluster on an empty node: writes entry 1, a CONFIG entry naming
 * `voters`, committed at term 1. Every founding member must be bootstrapped
 * with the same list; the simplest is one founder that adds the others. */
int raft_bootstrap(raft_t *r, const uint64_t *voters, size_t n);

/* --- input --------------------------------------------------------------- */

void raft_tick(raft_t *r);
/* A message from the network; the core copies what it keeps. Invalid or
 * stale messages are dropped (RAFT_ERR_INVALID for malformed ones). */
int raft_step(raft_t *r, const raft_msg_t *msg);

/* Appends an application entry (leader only). On success *index and *term (either
 * may be NULL) name the entry: it took effect once it is applied at that index
 * with that term; a different entry applied there means it was lost. */
int raft_propose(raft_t *r, const void *data, size_t len, uint64_t *index, uint64_t *term);
/* One membership change (leader only). RAFT_ERR_BUSY while an earlier change
 * is uncommitted or the leader has not committed an entry of its term yet. */
int raft_propose_conf_change(raft_t *r, raft_conf_op_t op, uint64_t node, uint64_t *index);
/* Leadership transfer to a voter: catch it up, then send it TimeoutNow.
 * Gives up after an election timeout. Proposals get RAFT_ERR_BUSY meanwhile. */
int raft_transfer_leadership(raft_t *r, uint64_t target);
/* Linearizable read: the answer arrives in a later Ready as {context, index};
 * serve the read once the state machine has applied `index`. A follower
 * forwards the request to its leader. Requests can be lost (leader change,
 * message loss): the caller times them out and retries. */
int raft_read_index(raft_t *r, uint64_t context);
/* Starts an election now (operations, tests). Only for voters. */
int raft_campaign(raft_t *r);
/* The application has a snapshot of its state machine as of `index` (which it
 * has applied): the core keeps a copy (to send to lagging followers) and drops
 * its log up to `index`. Store the same snapshot durably first
 * (raftlog_save_snapshot), then raftlog_compact(). */
int raft_compact(raft_t *r, uint64_t index, const void *data, size_t len);

/* --- output ------------------------------------------------------------- */

typedef struct {
    uint64_t context;   /* as passed to raft_read_index() */
    uint64_t index;     /* serve the read once applied >= index */
} raft_read_state_t;

typedef struct {
    bool has_hard_state;
    raft_hard_state_t hard_state;
    const raft_snapshot_t *snapshot;  /* received from the leader; NULL if none */
    const raft_entry_t *entries;      /* to persist */
    size_t n_entries;
    const raft_msg_t *messages;       /* to send after persisting */
    size_t n_messages;
    const raft_entry_t *committed;    /* to apply, in order */
    size_t n_committed;
    const raft_read_state_t *reads;
    size_t n_reads;
    raft_role_t role;                 /* soft state, informational */
    uint64_t leader;
} raft_ready_t;

bool raft_has_ready(const raft_t *r);
/* Fills `rd`; returns 0, or RAFT_ERR_INVALID if a Ready is already out. */
int raft_ready(raft_t *r, raft_ready_t *rd);
/* Everything in the last Ready was persisted, sent and applied. */
void raft_advance(raft_t *r);

/* Asynchronous storage (cfg.async_storage). A shell may instead copy a
 * Ready, call raft_advance() at once and persist on another thread, holding
 * back the messages that promise what it persists (consensus/send_policy.h)
 * and applying committed entries once their Ready is durable. Then the core
 * must not count the leader's own log towards the commit index before it is
 * on disk: the shell reports the durable prefix of the log with
 * raft_log_durable() (never between raft_ready() and raft_advance()), and
 * the leader counts its own log only up to there - as etcd raft does with
 * asynchronous storage writes. Without async_storage the leader counts its
 * whole log, which the synchronous contract above has made durable. */
void raft_log_durable(raft_t *r, uint64_t index);

/* --- inspection --------------------------------------------------------- */

typedef struct {
    uint64_t id;
    bool voter;                       /* false: learner */
    uint64_t match;                   /* leader only: highest index known replicated */
    uint64_t next;                    /* leader only: next index to send */
    const char *progress;             /* leader only: "probe", "replicate", "snapshot" */
    bool recent_active;               /* leader only: heard from in this election timeout */
} raft_peer_status_t;

typedef struct {
    uint64_t id, leader, term, vote;
    raft_role_t role;
    uint64_t commit, applied;
    uint64_t first_index, last_index, snapshot_index;
    uint64_t conf_index;              /* index of the CONFIG entry in force */
    uint64_t transferee;              /* leadership transfer in progress to */
    size_t n_peers;
    raft_peer_status_t peers[2 * RAFT_MAX_MEMBERS];  /* voters first, then learners */
} raft_status_t;

/* For `ferryctl cluster status`. Match indexes are known on the leader only. */
void raft_status(const raft_t *r, raft_status_t *out);

uint64_t raft_id(const raft_t *r);
uint64_t raft_term(const raft_t *r);
uint64_t raft_leader(const raft_t *r);
raft_role_t raft_role(const raft_t *r);
uint64_t raft_commit_index(const raft_t *r);
uint64_t raft_first_index(const raft_t *r);   /* first entry held in memory */
uint64_t raft_last_index(const raft_t *r);
const raft_conf_t *raft_conf(const raft_t *r);
const raft_snapshot_t *raft_snapshot(const raft_t *r);
/* The entry at `index`, or NULL if compacted or beyond the log. */
const raft_entry_t *raft_entry_at(const raft_t *r, uint64_t index);
/* The term at `index` (the snapshot's term at its index); RAFT_ERR_COMPACTED
 * or RAFT_ERR_INVALID if unknown. */
int raft_term_at(const raft_t *r, uint64_t index, uint64_t *term);

#endif
