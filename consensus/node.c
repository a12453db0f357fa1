/* node.c - see node.h. The Ready loop here follows the contract in raft.h,
 * with step 1 (persist) on the storage thread (storage_thread.h): each Ready
 * is copied to it and advanced at once; what depends on the write (its held
 * messages, the entries to apply, reads to answer) waits in a "held" record
 * until the thread reports the write durable. send_policy.h says which
 * messages may leave before that; docs/consensus.md explains why it is safe. */
#include "consensus/node.h"
#include "common/log.h"
#include "consensus/raft_codec.h"
#include "consensus/raftlog.h"
#include "consensus/send_policy.h"
#include "consensus/storage_thread.h"
#include "consensus/transport.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#define MAX_PENDING 4096
#define PROMOTE_CHECK_TICKS 20
#define CATCH_UP_SLACK 16      /* a learner this close to the commit index counts as caught up */
#define STARVED_TICKS 3        /* a tick this many periods late: the loop was stalled (logged) */

typedef struct {
    raft_node_done_fn *done;
    void *ctx;
    int64_t deadline_ms;
    bool is_read;
    uint64_t id;               /* forward request id, or read context */
    uint64_t index, term;      /* 0 until known */
} pending_t;

typedef struct {
    uint64_t to;
    uint8_t *bytes;            /* raft_msg_encode()d */
    size_t len;
} held_msg_t;

/* What one Ready left to do once its write (and every earlier one) is durable. */
typedef struct held {
    struct held *next;
    uint64_t seq;              /* the storage write it waits for */
    uint64_t log_tail;         /* the log's last index once that write is durable */
    uint64_t rewrite_from;     /* first index that write replaces (UINT64_MAX: none) */
    held_msg_t *msgs;
    size_t n_msgs;
    raft_entry_t *committed;   /* to apply; data in `payload` */
    size_t n_committed;
    bool has_snapshot;         /* a snapshot from the leader, to restore */
    raft_snapshot_t snapshot;  /* data in `payload` */
    raft_read_state_t *reads;
    size_t n_reads;
    uint8_t *payload;
} held_t;

struct raft_node {
    raft_node_config_t cfg;
    raft_t *raft;
    raftlog_t *log;
    storage_thread_t *storage;
    zmq_pollitem_t storage_item;
    uint64_t submitted_seq;    /* newest write handed to the storage thread */
    uint64_t durable_seq;      /* newest write on disk (with all before it) */
    uint64_t term_vote_seq;    /* newest write that changes the term or the vote */
    raft_hard_state_t submitted_hs;
    uint64_t submitted_tail;   /* the log's last index once every submitted write lands */
    uint64_t durable_index;    /* the in-memory log matches the disk up to here */
    held_t *held_head, *held_tail;
    int64_t last_tick_ms;
    uint64_t catch_up_ticks;   /* zloop firings not counted (see tick_counts) */
    raft_transport_t *transport;
    fsm_t *fsm;
    zloop_t *loop;
    int timer_id;
    uint64_t applied;
    uint64_t last_snapshot_index;
    uint64_t next_request_id;
    uint64_t ticks;
    bool failed;               /* storage failed: stop serving */
    pending_t pending[MAX_PENDING];
    size_t pending_count;
};

uint64_t raft_node_id_from_key(const char *public_z85)
{
    uint8_t hash[8];
    crypto_generichash(hash, sizeof(hash), (const unsigned char *)public_z85, strlen(public_z85), NULL, 0);
    uint64_t id = 0;
    for (int i = 7; i >= 0; i--)
        id = (id << 8) | hash[i];
    return id ? id : 1;
}

/* --- pending requests ---------------------------------------------------- */

static pending_t *add_pending(raft_node_t *self, raft_node_done_fn *done, void *ctx)
{
    if (self->pending_count == MAX_PENDING)
        return NULL;
    pending_t *p = &self->pending[self->pending_count++];
    memset(p, 0, sizeof(*p));
    p->done = done;
    p->ctx = ctx;
    p->deadline_ms = zclock_mono() + self->cfg.request_timeout_ms;
    return p;
}

/* Completes pending[i] and removes it (swap with the last). */
static void finish(raft_node_t *self, size_t i, int error, const fsm_result_t *result, uint64_t index)
{
    pending_t p = self->pending[i];
    self->pending[i] = self->pending[--self->pending_count];
    if (p.done)
        p.done(p.ctx, error, result, index);
}

static void complete_entry(raft_node_t *self, uint64_t index, uint64_t term, const fsm_result_t *result)
{
    for (size_t i = self->pending_count; i-- > 0;) {
        pending_t *p = &self->pending[i];
        if (p->is_read || p->index == 0)
            continue;
        if (p->index == index)
            finish(self, i, p->term == term ? 0 : RAFT_ERR_NOT_LEADER, p->term == term ? result : NULL, index);
        else if (p->index < index)
            finish(self, i, RAFT_ERR_NOT_LEADER, NULL, p->index);   /* replaced, never applied here */
    }
}

static void complete_reads(raft_node_t *self)
{
    for (size_t i = self->pending_count; i-- > 0;) {
        pending_t *p = &self->pending[i];
        if (p->is_read && p->index && p->index <= self->applied)
            finish(self, i, 0, NULL, p->index);
    }
}

static void expire_pending(raft_node_t *self)
{
    int64_t now = zclock_mono();
    for (size_t i = self->pending_count; i-- > 0;)
        if (self->pending[i].deadline_ms <= now)
            finish(self, i, -ETIMEDOUT, NULL, 0);
}

/* --- the Ready loop ------------------------------------------------------- */

static void take_snapshot(raft_node_t *self)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    fsm_snapshot(self->fsm, &buf);
    /* applied <= durable_index: the snapshot never runs ahead of the disk log. */
    int rc = raft_compact(self->raft, self->applied, buf.data, buf.size);
    const raft_snapshot_t *snap = raft_snapshot(self->raft);
    if (rc == 0 && snap && storage_thread_submit_snapshot(self->storage, snap, &self->submitted_seq) == 0) {
        self->last_snapshot_index = snap->index;
        log_debug("raft", "snapshot at %llu (%zu bytes)", (unsigned long long)snap->index, buf.size);
    } else if (rc != 0) {
        log_warn("raft", "cannot compact at %llu: %s", (unsigned long long)self->applied, raft_strerror(rc));
    }
    msgpack_sbuffer_destroy(&buf);
}

static void apply_committed(raft_node_t *self, const held_t *h)
{
    for (size_t i = 0; i < h->n_committed; i++) {
        const raft_entry_t *e = &h->committed[i];
        if (e->index <= self->applied)
            continue;
        fsm_result_t result = { 0 };
        if (e->type == RAFT_ENTRY_NORMAL) {
            fsm_apply(self->fsm, e->index, e->data, e->len, &result);
            if (result.status != FSM_OK)
                log_debug("raft", "entry %llu refused by the state machine: %s", (unsigned long long)e->index,
                          result.message);
        } else {
            result.status = FSM_OK;
        }
        self->applied = e->index;
        complete_entry(self, e->index, e->term, &result);
    }
}

/* --- held work ------------------------------------------------------------- */

static void held_free(held_t *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n_msgs; i++)
        free(h->msgs[i].bytes);
    free(h->msgs);
    free(h->committed);
    free(h->reads);
    free(h->payload);
    free(h);
}

/* Keeps `msg`, encoded, until h's write is durable. One that cannot be
 * encoded is logged and dropped, as raft_transport_send() would. */
static void hold_message(held_t *h, const raft_msg_t *msg)
{
    held_msg_t *m = &h->msgs[h->n_msgs];
    int rc = raft_msg_encode(msg, &m->bytes, &m->len);
    if (rc != 0) {
        log_warn("raft", "cannot encode %s: %s", raft_msg_type_name(msg->type), raft_strerror(rc));
        return;
    }
    m->to = msg->to;
    h->n_msgs++;
}

/* Copies what of `rd` must wait for the disk: committed entries, a snapshot
 * to restore, read states (messages are added by the caller). */
static held_t *held_new(const raft_ready_t *rd)
{
    held_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    size_t bytes = rd->snapshot ? rd->snapshot->len : 0;
    for (size_t i = 0; i < rd->n_committed; i++)
        bytes += rd->committed[i].len;
    h->payload = malloc(bytes ? bytes : 1);
    h->msgs = calloc(rd->n_messages ? rd->n_messages : 1, sizeof(held_msg_t));
    h->committed = calloc(rd->n_committed ? rd->n_committed : 1, sizeof(raft_entry_t));
    h->reads = calloc(rd->n_reads ? rd->n_reads : 1, sizeof(raft_read_state_t));
    if (!h->payload || !h->msgs || !h->committed || !h->reads) {
        held_free(h);
        return NULL;
    }
    uint8_t *cursor = h->payload;
    if (rd->snapshot) {
        h->has_snapshot = true;
        h->snapshot = *rd->snapshot;
        h->snapshot.data = cursor;
        if (rd->snapshot->len)
            memcpy(cursor, rd->snapshot->data, rd->snapshot->len);
        cursor += rd->snapshot->len;
    }
    for (size_t i = 0; i < rd->n_committed; i++) {
        h->committed[i] = rd->committed[i];
        h->committed[i].data = cursor;
        if (rd->committed[i].len)
            memcpy(cursor, rd->committed[i].data, rd->committed[i].len);
        cursor += rd->committed[i].len;
    }
    h->n_committed = rd->n_committed;
    if (rd->n_reads)
        memcpy(h->reads, rd->reads, rd->n_reads * sizeof(raft_read_state_t));
    h->n_reads = rd->n_reads;
    return h;
}

/* Runs one held record whose write is durable: send, restore, apply, reads.
 * Returns -1 if the state machine cannot restore the leader's snapshot. */
static int release(raft_node_t *self, held_t *h, bool *applied_any)
{
    for (size_t i = 0; i < h->n_msgs; i++)
        raft_transport_send_encoded(self->transport, h->msgs[i].to, h->msgs[i].bytes, h->msgs[i].len);
    if (h->has_snapshot) {
        char err[256];
        if (fsm_restore(self->fsm, h->snapshot.data, h->snapshot.len, err, sizeof(err)) != 0) {
            log_error("raft", "snapshot at %llu does not restore: %s; stopping",
                      (unsigned long long)h->snapshot.index, err);
            return -1;
        }
        self->applied = h->snapshot.index;
        self->last_snapshot_index = h->snapshot.index;
        complete_entry(self, h->snapshot.index + 1, 0, NULL);   /* anything older: outcome unknown here */
        *applied_any = true;
    }
    if (h->n_committed) {
        apply_committed(self, h);
        *applied_any = true;
    }
    for (size_t i = 0; i < h->n_reads; i++)
        for (size_t j = 0; j < self->pending_count; j++)
            if (self->pending[j].is_read && self->pending[j].id == h->reads[i].context)
                self->pending[j].index = h->reads[i].index ? h->reads[i].index : 1;
    complete_reads(self);
    return 0;
}

/* The durable prefix once the write of `done` landed: its log tail, but not
 * past where a later write (still in flight) replaces entries. */
static void advance_durable_index(raft_node_t *self, const held_t *done)
{
    uint64_t index = done->log_tail;
    for (const held_t *h = self->held_head; h; h = h->next)
        if (h->rewrite_from != UINT64_MAX && h->rewrite_from - 1 < index)
            index = h->rewrite_from - 1;
    self->durable_index = index;
}

/* Releases, in order, every held record whose write is durable, and tells
 * the core how far its log is on disk (which may commit entries). */
static int release_durable(raft_node_t *self)
{
    bool applied_any = false, released = false;
    while (!self->failed && self->held_head && self->held_head->seq <= self->durable_seq) {
        released = true;
        held_t *h = self->held_head;
        self->held_head = h->next;
        if (!self->held_head)
            self->held_tail = NULL;
        advance_durable_index(self, h);
        int rc = release(self, h, &applied_any);
        held_free(h);
        if (rc != 0) {
            self->failed = true;
            return -1;
        }
    }
    if (released)
        raft_log_durable(self->raft, self->durable_index);
    if (applied_any) {
        if (self->applied - self->last_snapshot_index >= self->cfg.snapshot_every)
            take_snapshot(self);
        if (self->cfg.on_apply)
            self->cfg.on_apply(self->cfg.on_apply_ctx);
    }
    return 0;
}

/* --- the Ready loop ------------------------------------------------------- */

/* Step 1 of the contract, handed to the storage thread: queues rd's write
 * if it has one, and records in `h` which write its effects wait for. */
static int submit_write(raft_node_t *self, const raft_ready_t *rd, held_t *h)
{
    bool term_or_vote = rd->has_hard_state && (rd->hard_state.term != self->submitted_hs.term ||
                                               rd->hard_state.vote != self->submitted_hs.vote);
    h->rewrite_from = UINT64_MAX;
    if (rd->snapshot || rd->n_entries || term_or_vote) {
        int rc = storage_thread_submit_ready(self->storage, rd, &self->submitted_seq);
        if (rc != 0)
            return rc;
        if (rd->has_hard_state)
            self->submitted_hs = rd->hard_state;
        if (term_or_vote)
            self->term_vote_seq = self->submitted_seq;
        if (rd->snapshot) {
            h->rewrite_from = rd->snapshot->index + 1;
            self->submitted_tail = rd->snapshot->index;
        }
        if (rd->n_entries) {
            if (rd->entries[0].index < h->rewrite_from)
                h->rewrite_from = rd->entries[0].index;
            self->submitted_tail = rd->entries[rd->n_entries - 1].index;
        }
        if (h->rewrite_from != UINT64_MAX && h->rewrite_from - 1 < self->durable_index)
            self->durable_index = h->rewrite_from - 1;
    }
    /* A commit-only change is not written: it rides along with the next
     * write and with raftlog_destroy() (raftlog.h). */
    h->seq = self->submitted_seq;
    h->log_tail = self->submitted_tail;
    return 0;
}

static int drain_ready(raft_node_t *self);

/* Returns -1 if storage failed: the node must stop, as Raft's guarantees
 * rest on what it promised being on disk. */
static int process_ready(raft_node_t *self)
{
    do {
        if (drain_ready(self) != 0 || release_durable(self) != 0)
            return -1;
    } while (!self->failed && raft_has_ready(self->raft));   /* a durable report may commit */
    return 0;
}

/* Hands every pending Ready to the storage thread and sends what may go now. */
static int drain_ready(raft_node_t *self)
{
    while (!self->failed && raft_has_ready(self->raft)) {
        raft_ready_t rd;
        raft_ready(self->raft, &rd);
        held_t *h = held_new(&rd);
        int rc = h ? submit_write(self, &rd, h) : -ENOMEM;
        if (rc != 0) {
            log_error("raft", "cannot persist to %s: %s; stopping", self->cfg.dir, strerror(-rc));
            held_free(h);
            self->failed = true;
            return -1;
        }
        bool in_flight = h->seq > self->durable_seq;
        bool term_or_vote_in_flight = self->term_vote_seq > self->durable_seq;
        for (size_t i = 0; i < rd.n_messages; i++) {
            const raft_msg_t *msg = &rd.messages[i];
            if (!in_flight || send_policy_may_precede_sync(msg, term_or_vote_in_flight))
                raft_transport_send(self->transport, msg);
            else
                hold_message(h, msg);
        }
        if (self->held_tail)
            self->held_tail->next = h;
        else
            self->held_head = h;
        self->held_tail = h;
        raft_advance(self->raft);
    }
    return 0;
}

static int on_storage(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    raft_node_t *self = arg;
    int rc = storage_thread_collect(self->storage, &self->durable_seq);
    if (rc != 0) {
        log_error("raft", "cannot persist to %s: %s; stopping", self->cfg.dir, strerror(-rc));
        self->failed = true;
        return -1;
    }
    if (release_durable(self) != 0)
        return -1;
    return process_ready(self);
}

/* The leader promotes caught-up learners while voters are fewer than wanted. */
static void promote_learners(raft_node_t *self)
{
    if (raft_role(self->raft) != RAFT_LEADER)
        return;
    raft_status_t st;
    raft_status(self->raft, &st);
    const raft_conf_t *conf = raft_conf(self->raft);
    if (conf->n_voters >= self->cfg.max_voters || conf->n_learners == 0)
        return;
    for (size_t i = 0; i < st.n_peers; i++) {
        const raft_peer_status_t *peer = &st.peers[i];
        /* Caught up is enough: recent_active is cleared at every CheckQuorum
         * round, so sampling it here would miss live learners. */
        if (peer->voter || peer->match + CATCH_UP_SLACK < st.commit)
            continue;
        uint64_t index;
        int rc = raft_propose_conf_change(self->raft, RAFT_CONF_PROMOTE, peer->id, &index);
        if (rc == 0)
            log_info("raft", "promoting %016llx to voter", (unsigned long long)peer->id);
        else
            log_debug("raft", "cannot promote %016llx yet: %s", (unsigned long long)peer->id, raft_strerror(rc));
        return;   /* one change at a time */
    }
}

/* --- loop handlers -------------------------------------------------------- */

/* A stall of this process (CPU starvation, a page-in, SIGSTOP, a slow
 * handler) counts as ONE tick. zloop catches up on missed timer periods by
 * firing them back to back once the loop runs again (tried with Debian's
 * czmq: after a 150 ms stall in a 10 ms timer's handler, the next firings
 * came all in the same millisecond); counted, they would age a follower's election timer by the
 * whole stall in an instant, before the loop has read the heartbeats that
 * queued up meanwhile - and when every process on a busy machine stalls at
 * once, that is an election nobody needed. So a firing that comes less than
 * half a period after the last counted tick is not counted.
 *
 * Sound: Raft's safety never rests on timing here (no lease reads; ReadIndex
 * confirms leadership with a heartbeat round), ticks only decide when a node
 * campaigns, a leader heartbeats or steps down. A stalled node merely does
 * those later, by about the length of its stall. PreVote and CheckQuorum are
 * unchanged; a stalled leader still looks silent to followers that ran. */
static bool tick_counts(raft_node_t *self)
{
    int64_t now = zclock_mono();
    int64_t gap = now - self->last_tick_ms;
    if (2 * gap < self->cfg.tick_ms) {
        self->catch_up_ticks++;
        return false;
    }
    if (gap >= (int64_t)STARVED_TICKS * self->cfg.tick_ms)
        log_debug("raft", "tick %lld ms late: the loop was stalled; it counts once", (long long)(gap - self->cfg.tick_ms));
    self->last_tick_ms = now;
    return true;
}

static int on_tick(zloop_t *loop, int timer_id, void *arg)
{
    raft_node_t *self = arg;
    if (!tick_counts(self))
        return 0;
    raft_tick(self->raft);
    if (++self->ticks % PROMOTE_CHECK_TICKS == 0) {
        promote_learners(self);
        raft_transport_maintain(self->transport);
    }
    expire_pending(self);
    return process_ready(self);
}

static void handle_forward(raft_node_t *self, const transport_in_t *in)
{
    uint64_t index = 0, term = 0;
    int rc = raft_propose(self->raft, in->payload, in->payload_len, &index, &term);
    raft_transport_answer(self->transport, in, index, term, rc);
}

static void handle_forward_result(raft_node_t *self, const transport_in_t *in)
{
    for (size_t i = 0; i < self->pending_count; i++) {
        pending_t *p = &self->pending[i];
        if (p->is_read || p->id != in->request_id || p->index != 0)
            continue;
        if (in->error != 0) {
            finish(self, i, in->error, NULL, 0);
        } else if (in->index <= self->applied) {
            /* Applied already before the answer came: check the term it had. */
            uint64_t term = 0;
            bool same = raft_term_at(self->raft, in->index, &term) == 0 && term == in->term;
            finish(self, i, same ? 0 : RAFT_ERR_NOT_LEADER, NULL, in->index);
        } else {
            p->index = in->index;
            p->term = in->term;
        }
        return;
    }
}

static int on_transport(zloop_t *loop, zsock_t *socket, void *arg)
{
    raft_node_t *self = arg;
    transport_in_t in;
    if (raft_transport_recv(self->transport, &in) != 0)
        return 0;
    switch (in.kind) {
    case TRANSPORT_RAFT:
        raft_step(self->raft, &in.msg);
        break;
    case TRANSPORT_FORWARD:
        handle_forward(self, &in);
        break;
    case TRANSPORT_FORWARD_RESULT:
        handle_forward_result(self, &in);
        break;
    }
    raft_transport_release(&in);
    return process_ready(self);
}

/* --- lifecycle ------------------------------------------------------------ */

raft_node_t *raft_node_new(const raft_node_config_t *cfg, zloop_t *loop, char *err, size_t errlen)
{
    raft_node_t *self = calloc(1, sizeof(*self));
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->cfg = *cfg;
    if (!self->cfg.tick_ms) self->cfg.tick_ms = 10;
    if (!self->cfg.election_tick) self->cfg.election_tick = 10;
    if (!self->cfg.heartbeat_tick) self->cfg.heartbeat_tick = 2;
    if (!self->cfg.max_voters) self->cfg.max_voters = 3;
    if (!self->cfg.snapshot_every) self->cfg.snapshot_every = 1024;
    if (!self->cfg.request_timeout_ms) self->cfg.request_timeout_ms = 5000;
    self->loop = loop;
    self->fsm = fsm_new();

    int rc = raftlog_open(cfg->dir, NULL, &self->log);
    if (rc != 0) {
        snprintf(err, errlen, "cannot open the Raft log in %s: %s", cfg->dir, strerror(-rc));
        goto fail;
    }
    raft_boot_t boot;
    raftlog_boot(self->log, &boot);
    bool empty = boot.n_entries == 0 && boot.snapshot.index == 0 && boot.hard_state.term == 0;
    if (boot.snapshot.index) {
        if (fsm_restore(self->fsm, boot.snapshot.data, boot.snapshot.len, err, errlen) != 0) {
            raftlog_release_boot(self->log);
            goto fail;
        }
        self->applied = self->last_snapshot_index = boot.snapshot.index;
    }
    raft_config_t rcfg;
    raft_config_defaults(&rcfg, cfg->id, cfg->seed ? cfg->seed : cfg->id);
    rcfg.election_tick = self->cfg.election_tick;
    rcfg.heartbeat_tick = self->cfg.heartbeat_tick;
    rcfg.async_storage = true;   /* the log is written on the storage thread */
    self->raft = raft_new(&rcfg, &boot);
    raftlog_release_boot(self->log);
    self->submitted_hs = boot.hard_state;
    self->submitted_tail = self->durable_index = raftlog_last_index(self->log);
    if (!self->raft) {
        snprintf(err, errlen, "the Raft state in %s does not load (see the log above)", cfg->dir);
        goto fail;
    }
    self->storage = storage_thread_new(self->log, NULL);
    if (!self->storage) {
        snprintf(err, errlen, "cannot start the storage thread: %s", strerror(errno));
        goto fail;
    }
    if (cfg->bootstrap && empty) {
        uint64_t voters[1] = { cfg->id };
        rc = raft_bootstrap(self->raft, voters, 1);
        if (rc != 0) {
            snprintf(err, errlen, "cannot bootstrap the cluster: %s", raft_strerror(rc));
            goto fail;
        }
        log_info("raft", "founded a new cluster with %016llx as its first voter", (unsigned long long)cfg->id);
    }
    self->transport = raft_transport_new(cfg->id, cfg->bind_endpoint, cfg->identity, cfg->zap, err, errlen);
    if (!self->transport)
        goto fail;
    self->timer_id = zloop_timer(loop, (size_t)self->cfg.tick_ms, 0, on_tick, self);
    self->last_tick_ms = zclock_mono();
    self->storage_item = (zmq_pollitem_t){ .fd = storage_thread_fd(self->storage), .events = ZMQ_POLLIN };
    zloop_poller(loop, &self->storage_item, on_storage, self);
    zloop_reader(loop, raft_transport_socket(self->transport), on_transport, self);
    zloop_reader_set_tolerant(loop, raft_transport_socket(self->transport));
    if (process_ready(self) != 0) {
        snprintf(err, errlen, "cannot persist the Raft state in %s", cfg->dir);
        goto fail;
    }
    return self;
fail:
    raft_node_destroy(&self);
    return NULL;
}

void raft_node_destroy(raft_node_t **self_p)
{
    raft_node_t *self = *self_p;
    if (!self)
        return;
    while (self->pending_count)
        finish(self, self->pending_count - 1, RAFT_ERR_NO_LEADER, NULL, 0);
    if (self->loop && self->transport) {
        zloop_timer_end(self->loop, self->timer_id);
        zloop_reader_end(self->loop, raft_transport_socket(self->transport));
        zloop_poller_end(self->loop, &self->storage_item);
    }
    storage_thread_destroy(&self->storage);   /* finishes queued writes */
    while (self->held_head) {                 /* never sent: as if lost */
        held_t *h = self->held_head;
        self->held_head = h->next;
        held_free(h);
    }
    raft_transport_destroy(&self->transport);
    raft_destroy(&self->raft);
    raftlog_destroy(&self->log);
    fsm_destroy(&self->fsm);
    free(self);
    *self_p = NULL;
}

/* --- requests ------------------------------------------------------------- */

int raft_node_propose(raft_node_t *self, const msgpack_sbuffer *command, raft_node_done_fn *done, void *ctx)
{
    if (self->failed)
        return RAFT_ERR_INVALID;
    pending_t *p = add_pending(self, done, ctx);
    if (!p)
        return RAFT_ERR_BUSY;
    if (raft_role(self->raft) == RAFT_LEADER) {
        int rc = raft_propose(self->raft, command->data, command->size, &p->index, &p->term);
        if (rc != 0) {
            self->pending_count--;
            return rc;
        }
        return process_ready(self) == 0 ? 0 : RAFT_ERR_INVALID;
    }
    uint64_t leader = raft_leader(self->raft);
    if (leader == RAFT_NONE) {
        self->pending_count--;
        return RAFT_ERR_NO_LEADER;
    }
    p->id = ++self->next_request_id;
    if (raft_transport_forward(self->transport, leader, p->id, command->data, command->size) != 0) {
        self->pending_count--;
        return RAFT_ERR_NO_LEADER;
    }
    return 0;
}

int raft_node_read(raft_node_t *self, raft_node_done_fn *done, void *ctx)
{
    pending_t *p = add_pending(self, done, ctx);
    if (!p)
        return RAFT_ERR_BUSY;
    p->is_read = true;
    p->id = ++self->next_request_id;
    int rc = raft_read_index(self->raft, p->id);
    if (rc != 0) {
        self->pending_count--;
        return rc;
    }
    return process_ready(self) == 0 ? 0 : RAFT_ERR_INVALID;
}

void raft_node_set_peer(raft_node_t *self, uint64_t id, const char *endpoint, const char *public_z85)
{
    raft_transport_set_peer(self->transport, id, endpoint, public_z85);
}

int raft_node_add_member(raft_node_t *self, uint64_t id)
{
    const raft_conf_t *conf = raft_conf(self->raft);
    if (raft_conf_is_voter(conf, id) || raft_conf_is_learner(conf, id))
        return 0;
    uint64_t index;
    int rc = raft_propose_conf_change(self->raft, RAFT_CONF_ADD_LEARNER, id, &index);
    if (rc == 0) {
        log_info("raft", "adding %016llx as a learner", (unsigned long long)id);
        rc = process_ready(self);
    }
    return rc;
}

int raft_node_transfer_leadership(raft_node_t *self, uint64_t id)
{
    int rc = raft_transfer_leadership(self->raft, id);
    return rc == 0 ? process_ready(self) : rc;
}

const fsm_t *raft_node_fsm(const raft_node_t *self) { return self->fsm; }
bool raft_node_is_leader(const raft_node_t *self) { return raft_role(self->raft) == RAFT_LEADER; }
uint64_t raft_node_leader(const raft_node_t *self) { return raft_leader(self->raft); }
uint64_t raft_node_id(const raft_node_t *self) { return self->cfg.id; }
uint64_t raft_node_applied(const raft_node_t *self) { return self->applied; }
const char *raft_node_endpoint(const raft_node_t *self) { return raft_transport_endpoint(self->transport); }
void raft_node_status(const raft_node_t *self, raft_status_t *out) { raft_status(self->raft, out); }
