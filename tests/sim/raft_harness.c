/* raft_harness.c - see raft_harness.h. */
#include "raft_harness.h"

#include "consensus/raft_codec.h"
#include "consensus/send_policy.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        abort();   /* test code: running out of memory is fatal */
    return p;
}

static void *xmemdup(const void *src, size_t len)
{
    if (len == 0)
        return NULL;
    void *p = xrealloc(NULL, len);
    memcpy(p, src, len);
    return p;
}

static uint64_t entry_hash(const raft_entry_t *e)
{
    uint64_t h = 1469598103934665603ULL ^ e->type;
    for (size_t i = 0; i < e->len; i++)
        h = (h ^ e->data[i]) * 1099511628211ULL;
    return (h ^ e->len) * 1099511628211ULL;
}

/* --- commands ------------------------------------------------------------ */

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

void rc_cmd_encode(const rc_cmd_t *cmd, uint8_t out[RC_CMD_LEN])
{
    out[0] = cmd->op;
    put_u64(out + 1, cmd->key);
    put_u64(out + 9, cmd->value);
    put_u64(out + 17, cmd->op_id);
}

bool rc_cmd_decode(const uint8_t *data, size_t len, rc_cmd_t *cmd)
{
    if (len != RC_CMD_LEN || (data[0] != RC_CMD_PUT && data[0] != RC_CMD_GET))
        return false;
    cmd->op = data[0];
    cmd->key = get_u64(data + 1);
    cmd->value = get_u64(data + 9);
    cmd->op_id = get_u64(data + 17);
    return true;
}

/* --- per-node state ------------------------------------------------------- */

typedef struct {
    uint64_t key, value;
} kv_pair_t;

typedef struct {
    kv_pair_t *pairs;
    size_t n, cap;
} kv_t;

/* What survives a crash. */
typedef struct {
    raft_hard_state_t hs;
    raft_snapshot_t snap;    /* data owned */
    raft_entry_t *ents;      /* data owned; ents[0].index == snap.index + 1 */
    size_t n, cap;
} disk_t;

/* Asynchronous storage: one Ready's write and what waits for it. */
typedef struct pending {
    struct pending *next;
    bool is_write;
    raft_snapshot_t snap;    /* snap.index 0: none; data owned */
    raft_entry_t *ents;      /* data owned */
    size_t n_ents;
    bool has_hs;
    raft_hard_state_t hs;
    bool term_vote;          /* changes term or vote */
    uint64_t log_tail, rewrite_from;
    uint8_t **msgs;          /* encoded, held until durable */
    size_t *msg_lens;
    int *msg_to;
    size_t n_msgs;
    raft_entry_t *committed; /* data owned */
    size_t n_committed;
    raft_read_state_t *reads;
    size_t n_reads;
} pending_t;

typedef struct {
    uint64_t id;
    raft_t *raft;            /* NULL while down */
    pending_t *pending, *pending_tail;
    raft_hard_state_t submitted_hs;
    uint64_t submitted_tail, durable_index;
    disk_t disk;
    kv_t kv;
    uint64_t applied;
    uint64_t seen_commit;    /* commit index already registered with the checker */
    uint64_t leader_term;    /* last term in which the checker saw it lead */
    uint64_t boots;
} node_t;

/* The checker's registries. */
typedef struct {
    uint64_t index, term, hash, prev_term;
    bool used;
} logged_t;

typedef struct {
    uint64_t term, hash, observed_term;
    bool set;
} committed_t;

typedef struct {
    uint64_t term, hash;
    bool set;
} applied_t;

struct raft_cluster {
    rc_options_t opt;
    node_t *nodes;
    char violation[512];
    bool violated;
    uint64_t *leader_of_term;
    size_t n_terms;
    logged_t *logged;        /* open addressing on (index, term) */
    size_t logged_cap, logged_n;
    committed_t *committed;
    applied_t *applied;
    size_t reg_cap;          /* committed[] and applied[] by index */
    uint64_t snapshots_installed;
};

__attribute__((format(printf, 2, 3)))
static void violation(raft_cluster_t *c, const char *fmt, ...)
{
    if (c->violated)
        return;
    c->violated = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->violation, sizeof(c->violation), fmt, ap);
    va_end(ap);
}

const char *rc_violation(const raft_cluster_t *c) { return c->violated ? c->violation : NULL; }

static void kv_put(kv_t *kv, uint64_t key, uint64_t value)
{
    for (size_t i = 0; i < kv->n; i++) {
        if (kv->pairs[i].key == key) {
            kv->pairs[i].value = value;
            return;
        }
    }
    if (kv->n == kv->cap) {
        kv->cap = kv->cap ? 2 * kv->cap : 16;
        kv->pairs = xrealloc(kv->pairs, kv->cap * sizeof(kv_pair_t));
    }
    kv->pairs[kv->n++] = (kv_pair_t){ key, value };
}

static bool kv_get(const kv_t *kv, uint64_t key, uint64_t *value)
{
    for (size_t i = 0; i < kv->n; i++) {
        if (kv->pairs[i].key == key) {
            *value = kv->pairs[i].value;
            return true;
        }
    }
    return false;
}

static void kv_restore(kv_t *kv, const uint8_t *data, size_t len)
{
    kv->n = 0;
    for (size_t off = 0; off + 16 <= len; off += 16)
        kv_put(kv, get_u64(data + off), get_u64(data + off + 8));
}

static uint8_t *kv_serialize(const kv_t *kv, size_t *len)
{
    *len = kv->n * 16;
    uint8_t *out = xrealloc(NULL, *len);
    for (size_t i = 0; i < kv->n; i++) {
        put_u64(out + 16 * i, kv->pairs[i].key);
        put_u64(out + 16 * i + 8, kv->pairs[i].value);
    }
    return out;
}

/* --- disk model ----------------------------------------------------------- */

static void disk_drop_from(disk_t *d, uint64_t index)
{
    while (d->n && d->ents[d->n - 1].index >= index) {
        free((void *)d->ents[d->n - 1].data);
        d->n--;
    }
}

static void disk_drop_through(disk_t *d, uint64_t index)
{
    size_t k = 0;
    while (k < d->n && d->ents[k].index <= index)
        free((void *)d->ents[k++].data);
    if (k)
        memmove(d->ents, d->ents + k, (d->n - k) * sizeof(raft_entry_t));
    d->n -= k;
}

static void disk_set_snapshot(disk_t *d, const raft_snapshot_t *s, bool keep_suffix)
{
    free((void *)d->snap.data);
    d->snap = *s;
    d->snap.data = xmemdup(s->data, s->len);
    if (keep_suffix)
        disk_drop_through(d, s->index);
    else
        disk_drop_from(d, 0);
}

static bool disk_append(raft_cluster_t *c, node_t *nd, const raft_entry_t *e)
{
    disk_t *d = &nd->disk;
    uint64_t last = d->n ? d->ents[d->n - 1].index : d->snap.index;
    if (e->index <= d->snap.index || e->index > last + 1) {
        violation(c, "node %" PRIu64 ": Ready entry %" PRIu64 " does not continue its disk (snapshot %"
                  PRIu64 ", last %" PRIu64 ")", nd->id, e->index, d->snap.index, last);
        return false;
    }
    disk_drop_from(d, e->index);
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 64;
        d->ents = xrealloc(d->ents, d->cap * sizeof(raft_entry_t));
    }
    raft_entry_t copy = *e;
    copy.data = xmemdup(e->data, e->len);
    d->ents[d->n++] = copy;
    return true;
}

static void disk_free(disk_t *d)
{
    disk_drop_from(d, 0);
    free(d->ents);
    free((void *)d->snap.data);
    memset(d, 0, sizeof(*d));
}

/* --- checker registries --------------------------------------------------- */

static void grow_registries(raft_cluster_t *c, uint64_t index)
{
    if (index < c->reg_cap)
        return;
    size_t cap = c->reg_cap ? c->reg_cap : 1024;
    while (cap <= index)
        cap *= 2;
    c->committed = xrealloc(c->committed, cap * sizeof(committed_t));
    c->applied = xrealloc(c->applied, cap * sizeof(applied_t));
    memset(c->committed + c->reg_cap, 0, (cap - c->reg_cap) * sizeof(committed_t));
    memset(c->applied + c->reg_cap, 0, (cap - c->reg_cap) * sizeof(applied_t));
    c->reg_cap = cap;
}

static size_t logged_slot(const raft_cluster_t *c, uint64_t index, uint64_t term)
{
    uint64_t h = (index * 0x9e3779b97f4a7c15ULL) ^ (term * 0xc2b2ae3d27d4eb4fULL);
    size_t i = (size_t)(h & (c->logged_cap - 1));
    while (c->logged[i].used && (c->logged[i].index != index || c->logged[i].term != term))
        i = (i + 1) & (c->logged_cap - 1);
    return i;
}

/* Log matching: every (index, term) names one entry with one predecessor term. */
static void register_logged(raft_cluster_t *c, const node_t *nd, const raft_entry_t *e, uint64_t prev_term)
{
    if (2 * (c->logged_n + 1) > c->logged_cap) {
        logged_t *old = c->logged;
        size_t old_cap = c->logged_cap;
        c->logged_cap = old_cap ? 2 * old_cap : 4096;
        c->logged = xrealloc(NULL, c->logged_cap * sizeof(logged_t));
        memset(c->logged, 0, c->logged_cap * sizeof(logged_t));
        for (size_t i = 0; i < old_cap; i++)
            if (old[i].used)
                c->logged[logged_slot(c, old[i].index, old[i].term)] = old[i];
        free(old);
    }
    uint64_t hash = entry_hash(e);
    logged_t *l = &c->logged[logged_slot(c, e->index, e->term)];
    if (!l->used) {
        *l = (logged_t){ .index = e->index, .term = e->term, .hash = hash, .prev_term = prev_term, .used = true };
        c->logged_n++;
    } else if (l->hash != hash || l->prev_term != prev_term) {
        violation(c, "log matching: node %" PRIu64 " holds a different entry (or predecessor term %" PRIu64
                  " vs %" PRIu64 ") at index %" PRIu64 " term %" PRIu64,
                  nd->id, prev_term, l->prev_term, e->index, e->term);
    }
}

static bool log_has(const raft_t *r, uint64_t index, uint64_t term, uint64_t hash)
{
    const raft_entry_t *e = raft_entry_at(r, index);
    return e && e->term == term && entry_hash(e) == hash;
}

/* Leader completeness for one leader against every registered commitment. */
static void check_leader_complete(raft_cluster_t *c, const node_t *nd)
{
    const raft_t *r = nd->raft;
    uint64_t term = raft_term(r), first = raft_first_index(r);
    for (uint64_t i = first; i < c->reg_cap; i++) {
        const committed_t *k = &c->committed[i];
        if (k->set && k->observed_term < term && !log_has(r, i, k->term, k->hash))
            violation(c, "leader completeness: leader %" PRIu64 " of term %" PRIu64 " lacks index %" PRIu64
                      " (term %" PRIu64 ") committed by term %" PRIu64,
                      nd->id, term, i, k->term, k->observed_term);
    }
}

static void register_committed(raft_cluster_t *c, const node_t *nd, const raft_entry_t *e, uint64_t observer_term)
{
    grow_registries(c, e->index);
    uint64_t hash = entry_hash(e);
    committed_t *k = &c->committed[e->index];
    if (!k->set) {
        *k = (committed_t){ .term = e->term, .hash = hash, .observed_term = observer_term, .set = true };
        const applied_t *a = &c->applied[e->index];
        if (a->set && (a->term != e->term || a->hash != hash))
            violation(c, "state machine safety: index %" PRIu64 " applied as term %" PRIu64
                      " but committed as term %" PRIu64, e->index, a->term, e->term);
        for (int s = 0; s < c->opt.nodes; s++) {   /* every later leader must hold it */
            const node_t *other = &c->nodes[s];
            if (other->raft && raft_role(other->raft) == RAFT_LEADER && raft_term(other->raft) > observer_term &&
                e->index >= raft_first_index(other->raft) && !log_has(other->raft, e->index, e->term, hash))
                violation(c, "leader completeness: leader %" PRIu64 " lacks newly committed index %" PRIu64,
                          other->id, e->index);
        }
        return;
    }
    if (k->term != e->term || k->hash != hash)
        violation(c, "commit safety: node %" PRIu64 " commits term %" PRIu64 " at index %" PRIu64
                  ", already committed with term %" PRIu64, nd->id, e->term, e->index, k->term);
    if (observer_term < k->observed_term)
        k->observed_term = observer_term;
}

static void register_applied(raft_cluster_t *c, const node_t *nd, const raft_entry_t *e)
{
    grow_registries(c, e->index);
    uint64_t hash = entry_hash(e);
    applied_t *a = &c->applied[e->index];
    if (!a->set)
        *a = (applied_t){ .term = e->term, .hash = hash, .set = true };
    else if (a->term != e->term || a->hash != hash)
        violation(c, "state machine safety: node %" PRIu64 " applies term %" PRIu64 " at index %" PRIu64
                  ", another node applied term %" PRIu64, nd->id, e->term, e->index, a->term);
    const committed_t *k = &c->committed[e->index];
    if (k->set && (k->term != e->term || k->hash != hash))
        violation(c, "state machine safety: node %" PRIu64 " applies an uncommitted entry at %" PRIu64,
                  nd->id, e->index);
}

static void note_leader(raft_cluster_t *c, uint64_t term, uint64_t id)
{
    if (term >= c->n_terms) {
        size_t n = c->n_terms ? c->n_terms : 64;
        while (n <= term)
            n *= 2;
        c->leader_of_term = xrealloc(c->leader_of_term, n * sizeof(uint64_t));
        memset(c->leader_of_term + c->n_terms, 0, (n - c->n_terms) * sizeof(uint64_t));
        c->n_terms = n;
    }
    if (c->leader_of_term[term] == RAFT_NONE)
        c->leader_of_term[term] = id;
    else if (c->leader_of_term[term] != id)
        violation(c, "election safety: nodes %" PRIu64 " and %" PRIu64 " both lead term %" PRIu64,
                  c->leader_of_term[term], id, term);
}

/* The checks that run after every input. */
static void check_node(raft_cluster_t *c, node_t *nd)
{
    raft_t *r = nd->raft;
    if (!r)
        return;
    uint64_t commit = raft_commit_index(r);
    if (commit > raft_last_index(r))
        violation(c, "node %" PRIu64 ": commit %" PRIu64 " beyond last index %" PRIu64, nd->id, commit,
                  raft_last_index(r));
    for (uint64_t i = nd->seen_commit + 1; i <= commit; i++) {
        const raft_entry_t *e = raft_entry_at(r, i);
        if (e)
            register_committed(c, nd, e, raft_term(r));
    }
    if (commit > nd->seen_commit)
        nd->seen_commit = commit;
    if (raft_role(r) == RAFT_LEADER) {
        note_leader(c, raft_term(r), nd->id);
        if (nd->leader_term != raft_term(r)) {
            nd->leader_term = raft_term(r);
            check_leader_complete(c, nd);
        }
    }
}

/* --- Ready processing ----------------------------------------------------- */

/* --- asynchronous storage ------------------------------------------------ */

static raft_entry_t *copy_entries(const raft_entry_t *src, size_t n)
{
    raft_entry_t *out = xrealloc(NULL, n * sizeof(raft_entry_t));
    for (size_t i = 0; i < n; i++) {
        out[i] = src[i];
        out[i].data = xmemdup(src[i].data, src[i].len);
    }
    return out;
}

static void free_entries(raft_entry_t *ents, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free((void *)ents[i].data);
    free(ents);
}

static void pending_free(pending_t *p)
{
    free((void *)p->snap.data);
    free_entries(p->ents, p->n_ents);
    for (size_t i = 0; i < p->n_msgs; i++)
        free(p->msgs[i]);
    free(p->msgs);
    free(p->msg_lens);
    free(p->msg_to);
    free_entries(p->committed, p->n_committed);
    free(p->reads);
    free(p);
}

/* Writes p's snapshot, entries and hard state to the disk model. */
static void pending_persist(raft_cluster_t *c, node_t *nd, const pending_t *p)
{
    if (p->snap.index)
        disk_set_snapshot(&nd->disk, &p->snap, false);
    for (size_t i = 0; i < p->n_ents; i++)
        disk_append(c, nd, &p->ents[i]);
    if (p->has_hs)
        nd->disk.hs = p->hs;
}

static void send_one(raft_cluster_t *c, int from, int to, const uint8_t *buf, size_t len)
{
    if (to >= 0 && c->opt.send)
        c->opt.send(c->opt.ctx, from, to, buf, len);
}

static void apply_entry(raft_cluster_t *c, int slot, const raft_entry_t *e);

/* The effects of a durable write: held messages, restore, apply, reads. */
static void pending_release(raft_cluster_t *c, int slot, const pending_t *p)
{
    node_t *nd = &c->nodes[slot];
    for (size_t i = 0; i < p->n_msgs; i++)
        send_one(c, slot, p->msg_to[i], p->msgs[i], p->msg_lens[i]);
    if (p->snap.index) {
        kv_restore(&nd->kv, p->snap.data, p->snap.len);
        nd->applied = p->snap.index;
        c->snapshots_installed++;
    }
    for (size_t i = 0; i < p->n_committed; i++)
        apply_entry(c, slot, &p->committed[i]);
    for (size_t i = 0; i < p->n_reads; i++)
        if (c->opt.on_read)
            c->opt.on_read(c->opt.ctx, slot, p->reads[i].context, p->reads[i].index);
}

/* Makes the first `n` pending writes durable and releases what waited. */
static void flush_pending(raft_cluster_t *c, int slot, size_t n)
{
    node_t *nd = &c->nodes[slot];
    bool any = false;
    while (n-- > 0 && nd->pending) {
        pending_t *p = nd->pending;
        nd->pending = p->next;
        if (!nd->pending)
            nd->pending_tail = NULL;
        pending_persist(c, nd, p);
        uint64_t durable = p->log_tail;   /* not past a later write's cut */
        for (const pending_t *q = nd->pending; q; q = q->next)
            if (q->rewrite_from && q->rewrite_from - 1 < durable)
                durable = q->rewrite_from - 1;
        nd->durable_index = durable;
        pending_release(c, slot, p);
        pending_free(p);
        any = true;
    }
    if (any && nd->raft)
        raft_log_durable(nd->raft, nd->durable_index);
}

static bool pending_term_vote(const node_t *nd)
{
    for (const pending_t *p = nd->pending; p; p = p->next)
        if (p->term_vote)
            return true;
    return false;
}

static void hold_message(raft_cluster_t *c, const node_t *nd, pending_t *p, const raft_msg_t *m)
{
    uint8_t *buf;
    size_t len;
    int rc = raft_msg_encode(m, &buf, &len);
    if (rc != 0) {
        violation(c, "node %" PRIu64 ": cannot encode its %s: %s", nd->id, raft_msg_type_name(m->type),
                  raft_strerror(rc));
        return;
    }
    p->msgs[p->n_msgs] = buf;
    p->msg_lens[p->n_msgs] = len;
    p->msg_to[p->n_msgs] = rc_slot(c, m->to);
    p->n_msgs++;
}

/* Queues rd as a pending write (or runs it at once if nothing waits). */
static void process_async(raft_cluster_t *c, int slot, const raft_ready_t *rd)
{
    node_t *nd = &c->nodes[slot];
    pending_t *p = calloc(1, sizeof(*p));
    if (!p)
        abort();
    p->term_vote = rd->has_hard_state && (rd->hard_state.term != nd->submitted_hs.term ||
                                          rd->hard_state.vote != nd->submitted_hs.vote);
    p->is_write = rd->snapshot || rd->n_entries || p->term_vote;
    if (p->is_write) {
        if (rd->snapshot) {
            p->snap = *rd->snapshot;
            p->snap.data = xmemdup(rd->snapshot->data, rd->snapshot->len);
            p->rewrite_from = rd->snapshot->index + 1;
            nd->submitted_tail = rd->snapshot->index;
        }
        if (rd->n_entries) {
            p->ents = copy_entries(rd->entries, rd->n_entries);
            p->n_ents = rd->n_entries;
            if (!p->rewrite_from || rd->entries[0].index < p->rewrite_from)
                p->rewrite_from = rd->entries[0].index;
            nd->submitted_tail = rd->entries[rd->n_entries - 1].index;
        }
        p->has_hs = rd->has_hard_state;
        p->hs = rd->hard_state;
        if (rd->has_hard_state)
            nd->submitted_hs = rd->hard_state;
        if (p->rewrite_from && p->rewrite_from - 1 < nd->durable_index)
            nd->durable_index = p->rewrite_from - 1;
    }
    p->log_tail = nd->submitted_tail;
    bool waits = p->is_write || nd->pending;
    bool term_vote = p->term_vote || pending_term_vote(nd);
    p->msgs = xrealloc(NULL, rd->n_messages * sizeof(uint8_t *));
    p->msg_lens = xrealloc(NULL, rd->n_messages * sizeof(size_t));
    p->msg_to = xrealloc(NULL, rd->n_messages * sizeof(int));
    for (size_t i = 0; i < rd->n_messages; i++) {
        const raft_msg_t *m = &rd->messages[i];
        if (!waits || send_policy_may_precede_sync(m, term_vote)) {
            uint8_t *buf;
            size_t len;
            if (raft_msg_encode(m, &buf, &len) != 0) {
                violation(c, "node %" PRIu64 ": cannot encode its %s", nd->id, raft_msg_type_name(m->type));
                continue;
            }
            send_one(c, slot, rc_slot(c, m->to), buf, len);
            free(buf);
        } else {
            hold_message(c, nd, p, m);
        }
    }
    p->committed = copy_entries(rd->committed, rd->n_committed);
    p->n_committed = rd->n_committed;
    p->reads = xrealloc(NULL, rd->n_reads * sizeof(raft_read_state_t));
    if (rd->n_reads)
        memcpy(p->reads, rd->reads, rd->n_reads * sizeof(raft_read_state_t));
    p->n_reads = rd->n_reads;
    if (nd->pending_tail)
        nd->pending_tail->next = p;
    else
        nd->pending = p;
    nd->pending_tail = p;
    if (!waits)
        flush_pending(c, slot, 1);   /* nothing to write: its effects go now */
}

/* A crash with writes in flight: a prefix of them reached the disk (whole
 * writes, then some entries of the next), the rest is lost unsent. */
static void crash_pending(raft_cluster_t *c, node_t *nd)
{
    size_t n = 0;
    for (const pending_t *p = nd->pending; p; p = p->next)
        n++;
    size_t keep = c->opt.rng && n ? (size_t)rng_below(c->opt.rng, n + 1) : 0;
    size_t k = 0;
    for (const pending_t *p = nd->pending; p; p = p->next, k++) {
        if (k < keep) {
            pending_persist(c, nd, p);
        } else if (p->n_ents && !p->snap.index && c->opt.rng) {   /* torn: some entries, no hard state */
            size_t part = (size_t)rng_below(c->opt.rng, p->n_ents + 1);
            for (size_t i = 0; i < part; i++)
                disk_append(c, nd, &p->ents[i]);
            break;
        } else {
            break;
        }
    }
    while (nd->pending) {
        pending_t *p = nd->pending;
        nd->pending = p->next;
        pending_free(p);
    }
    nd->pending_tail = NULL;
}

static void send_all(raft_cluster_t *c, int from, const raft_ready_t *rd)
{
    for (size_t i = 0; i < rd->n_messages; i++) {
        const raft_msg_t *m = &rd->messages[i];
        int to = rc_slot(c, m->to);
        uint8_t *buf;
        size_t len;
        int rc = raft_msg_encode(m, &buf, &len);
        if (rc != 0) {
            violation(c, "node %" PRIu64 ": cannot encode its %s: %s", c->nodes[from].id,
                      raft_msg_type_name(m->type), raft_strerror(rc));
            continue;
        }
        if (to >= 0 && c->opt.send)
            c->opt.send(c->opt.ctx, from, to, buf, len);
        free(buf);
    }
}

static void apply_entry(raft_cluster_t *c, int slot, const raft_entry_t *e)
{
    node_t *nd = &c->nodes[slot];
    if (e->index != nd->applied + 1)
        violation(c, "node %" PRIu64 ": applies index %" PRIu64 " after %" PRIu64, nd->id, e->index, nd->applied);
    nd->applied = e->index;
    register_applied(c, nd, e);
    rc_cmd_t cmd;
    uint64_t value = 0;
    bool found = false;
    if (e->type == RAFT_ENTRY_NORMAL && rc_cmd_decode(e->data, e->len, &cmd)) {
        if (cmd.op == RC_CMD_PUT)
            kv_put(&nd->kv, cmd.key, cmd.value);
        else
            found = kv_get(&nd->kv, cmd.key, &value);
    }
    if (c->opt.on_apply)
        c->opt.on_apply(c->opt.ctx, slot, e, value, found);
}

static void maybe_compact(raft_cluster_t *c, node_t *nd)
{
    const raft_snapshot_t *cur = raft_snapshot(nd->raft);
    if (!c->opt.compact_every || nd->applied < cur->index + c->opt.compact_every)
        return;
    size_t len;
    uint8_t *data = kv_serialize(&nd->kv, &len);
    if (raft_compact(nd->raft, nd->applied, data, len) == 0)
        disk_set_snapshot(&nd->disk, raft_snapshot(nd->raft), true);   /* durable first, then drop */
    free(data);
}

/* Persists what a crash in the middle of persisting would keep, then crashes. */
static void crash_while_persisting(raft_cluster_t *c, int slot, const raft_ready_t *rd)
{
    node_t *nd = &c->nodes[slot];
    rng_t *rng = c->opt.rng;
    bool all = true;
    if (rd->snapshot) {
        if (rng_below(rng, 2))
            disk_set_snapshot(&nd->disk, rd->snapshot, false);
        else
            all = false;
    }
    size_t keep = all ? (size_t)rng_below(rng, rd->n_entries + 1) : 0;
    for (size_t i = 0; i < keep; i++)
        disk_append(c, nd, &rd->entries[i]);
    if (all && keep == rd->n_entries && rd->has_hard_state && rng_below(rng, 2))
        nd->disk.hs = rd->hard_state;
    rc_crash(c, slot);
    if (c->opt.on_crash)
        c->opt.on_crash(c->opt.ctx, slot);
}

void rc_process(raft_cluster_t *c, int slot)
{
    node_t *nd = &c->nodes[slot];
    bool async = c->opt.async_flush > 0;
    if (async && nd->pending && rng_unit(c->opt.rng) < c->opt.async_flush) {
        size_t n = 0;
        for (const pending_t *p = nd->pending; p; p = p->next)
            n++;
        flush_pending(c, slot, 1 + (size_t)rng_below(c->opt.rng, n));
    }
    while (nd->raft && raft_has_ready(nd->raft)) {
        raft_t *r = nd->raft;
        raft_ready_t rd;
        raft_ready(r, &rd);
        if (async) {
            for (size_t i = 0; i < rd.n_entries; i++) {
                uint64_t prev_term = 0;
                if (i > 0)
                    prev_term = rd.entries[i - 1].term;
                else if (raft_term_at(r, rd.entries[i].index - 1, &prev_term) != 0)
                    violation(c, "node %" PRIu64 ": no term for index %" PRIu64 " before its Ready entries",
                              nd->id, rd.entries[i].index - 1);
                register_logged(c, nd, &rd.entries[i], prev_term);
            }
            process_async(c, slot, &rd);
            raft_advance(r);
            bool crash = c->opt.crash_in_ready > 0 && rng_unit(c->opt.rng) < c->opt.crash_in_ready;
            if (crash) {
                rc_crash(c, slot);
                if (c->opt.on_crash)
                    c->opt.on_crash(c->opt.ctx, slot);
                return;
            }
            maybe_compact(c, nd);
            continue;
        }
        if (c->opt.crash_in_ready > 0 && (rd.n_entries || rd.has_hard_state || rd.snapshot) &&
            rng_unit(c->opt.rng) < c->opt.crash_in_ready) {
            crash_while_persisting(c, slot, &rd);
            return;
        }
        /* 1. persist */
        if (rd.snapshot)
            disk_set_snapshot(&nd->disk, rd.snapshot, false);
        for (size_t i = 0; i < rd.n_entries; i++) {
            const raft_entry_t *e = &rd.entries[i];
            uint64_t prev_term = 0;
            if (i > 0)
                prev_term = rd.entries[i - 1].term;
            else if (raft_term_at(r, e->index - 1, &prev_term) != 0)
                violation(c, "node %" PRIu64 ": no term for index %" PRIu64 " before its Ready entries",
                          nd->id, e->index - 1);
            register_logged(c, nd, e, prev_term);
            disk_append(c, nd, e);
        }
        if (rd.has_hard_state)
            nd->disk.hs = rd.hard_state;
        /* 2. send */
        send_all(c, slot, &rd);
        /* 3. apply */
        if (rd.snapshot) {
            kv_restore(&nd->kv, rd.snapshot->data, rd.snapshot->len);
            nd->applied = rd.snapshot->index;
            c->snapshots_installed++;
        }
        for (size_t i = 0; i < rd.n_committed; i++)
            apply_entry(c, slot, &rd.committed[i]);
        for (size_t i = 0; i < rd.n_reads; i++)
            if (c->opt.on_read)
                c->opt.on_read(c->opt.ctx, slot, rd.reads[i].context, rd.reads[i].index);
        raft_advance(r);
        maybe_compact(c, nd);
    }
    check_node(c, nd);
}

/* --- cluster ------------------------------------------------------------- */

static raft_t *start_node(raft_cluster_t *c, node_t *nd, bool from_disk)
{
    raft_config_t cfg = c->opt.raft;
    cfg.id = nd->id;
    cfg.seed = c->opt.seed * 1000003ULL + nd->id * 7919ULL + nd->boots++;
    cfg.async_storage = c->opt.async_flush > 0;
    if (!from_disk)
        return raft_new(&cfg, NULL);
    raft_boot_t boot = { .hard_state = nd->disk.hs, .snapshot = nd->disk.snap,
                         .entries = nd->disk.ents, .n_entries = nd->disk.n };
    return raft_new(&cfg, &boot);
}

raft_cluster_t *rc_new(const rc_options_t *opts)
{
    raft_cluster_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->opt = *opts;
    c->nodes = calloc((size_t)opts->nodes, sizeof(node_t));
    for (int i = 0; i < opts->nodes; i++) {
        node_t *nd = &c->nodes[i];
        nd->id = opts->ids ? opts->ids[i] : (uint64_t)i + 1;
        nd->raft = start_node(c, nd, false);
        if (!nd->raft)
            violation(c, "node %" PRIu64 ": raft_new failed", nd->id);
    }
    return c;
}

void rc_destroy(raft_cluster_t **self_p)
{
    raft_cluster_t *c = *self_p;
    if (!c)
        return;
    for (int i = 0; i < c->opt.nodes; i++) {
        while (c->nodes[i].pending) {
            pending_t *p = c->nodes[i].pending;
            c->nodes[i].pending = p->next;
            pending_free(p);
        }
        raft_destroy(&c->nodes[i].raft);
        disk_free(&c->nodes[i].disk);
        free(c->nodes[i].kv.pairs);
    }
    free(c->nodes);
    free(c->leader_of_term);
    free(c->logged);
    free(c->committed);
    free(c->applied);
    free(c);
    *self_p = NULL;
}

int rc_bootstrap(raft_cluster_t *c, const int *slots, int n)
{
    uint64_t ids[RAFT_MAX_MEMBERS];
    if (n <= 0 || n > RAFT_MAX_MEMBERS)
        return RAFT_ERR_INVALID;
    for (int i = 0; i < n; i++)
        ids[i] = c->nodes[slots[i]].id;
    for (int i = 0; i < n; i++) {
        int rc = raft_bootstrap(c->nodes[slots[i]].raft, ids, (size_t)n);
        if (rc != 0)
            return rc;
        rc_process(c, slots[i]);
    }
    return 0;
}

void rc_deliver(raft_cluster_t *c, int to, int from, const uint8_t *data, size_t len)
{
    node_t *nd = &c->nodes[to];
    if (!nd->raft)
        return;
    raft_msg_t m;
    raft_decode_error_t err;
    if (raft_msg_decode(data, len, &m, &err) != 0) {
        violation(c, "node %" PRIu64 ": undecodable message from %d: %s at byte %zu", nd->id, from, err.what,
                  err.offset);
        return;
    }
    raft_step(nd->raft, &m);
    raft_msg_release(&m);
    rc_process(c, to);
}

void rc_tick(raft_cluster_t *c, int node)
{
    if (!c->nodes[node].raft)
        return;
    raft_tick(c->nodes[node].raft);
    rc_process(c, node);
}

void rc_crash(raft_cluster_t *c, int node)
{
    node_t *nd = &c->nodes[node];
    crash_pending(c, nd);
    raft_destroy(&nd->raft);
    nd->kv.n = 0;
    nd->applied = 0;
}

int rc_restart(raft_cluster_t *c, int node)
{
    node_t *nd = &c->nodes[node];
    if (nd->raft)
        return 0;
    nd->raft = start_node(c, nd, true);
    if (!nd->raft) {
        violation(c, "node %" PRIu64 ": cannot restart from its disk", nd->id);
        return RAFT_ERR_INVALID;
    }
    kv_restore(&nd->kv, nd->disk.snap.data, nd->disk.snap.len);
    nd->applied = nd->disk.snap.index;
    nd->submitted_hs = nd->disk.hs;
    nd->submitted_tail = nd->durable_index = raft_last_index(nd->raft);
    nd->seen_commit = raft_commit_index(nd->raft);
    nd->leader_term = 0;
    check_node(c, nd);
    return 0;
}

void rc_set_crash_in_ready(raft_cluster_t *c, double probability) { c->opt.crash_in_ready = probability; }
bool rc_is_up(const raft_cluster_t *c, int node) { return c->nodes[node].raft != NULL; }
raft_t *rc_raft(raft_cluster_t *c, int node) { return c->nodes[node].raft; }
uint64_t rc_id(const raft_cluster_t *c, int node) { return c->nodes[node].id; }
int rc_nodes(const raft_cluster_t *c) { return c->opt.nodes; }
uint64_t rc_applied(const raft_cluster_t *c, int node) { return c->nodes[node].applied; }
uint64_t rc_snapshots_installed(const raft_cluster_t *c) { return c->snapshots_installed; }

int rc_slot(const raft_cluster_t *c, uint64_t id)
{
    for (int i = 0; i < c->opt.nodes; i++)
        if (c->nodes[i].id == id)
            return i;
    return -1;
}

int rc_leader(const raft_cluster_t *c)
{
    int best = -1;
    for (int i = 0; i < c->opt.nodes; i++) {
        const raft_t *r = c->nodes[i].raft;
        if (r && raft_role(r) == RAFT_LEADER &&
            (best < 0 || raft_term(r) > raft_term(c->nodes[best].raft)))
            best = i;
    }
    return best;
}

bool rc_kv_get(const raft_cluster_t *c, int node, uint64_t key, uint64_t *value)
{
    return kv_get(&c->nodes[node].kv, key, value);
}

void rc_check_full(raft_cluster_t *c)
{
    for (int a = 0; a < c->opt.nodes; a++) {
        const raft_t *ra = c->nodes[a].raft;
        for (int b = a + 1; ra && b < c->opt.nodes; b++) {
            const raft_t *rb = c->nodes[b].raft;
            if (!rb)
                continue;
            uint64_t lo = raft_first_index(ra) > raft_first_index(rb) ? raft_first_index(ra) : raft_first_index(rb);
            uint64_t hi = raft_last_index(ra) < raft_last_index(rb) ? raft_last_index(ra) : raft_last_index(rb);
            /* Find the last index where both agree on the term; everything
             * before it must be identical. */
            uint64_t agree = 0;
            for (uint64_t i = hi; i >= lo && i > 0; i--) {
                if (raft_entry_at(ra, i)->term == raft_entry_at(rb, i)->term) {
                    agree = i;
                    break;
                }
            }
            for (uint64_t i = lo; agree && i <= agree; i++) {
                const raft_entry_t *x = raft_entry_at(ra, i), *y = raft_entry_at(rb, i);
                if (x->term != y->term || entry_hash(x) != entry_hash(y))
                    violation(c, "log matching: nodes %" PRIu64 " and %" PRIu64 " agree at %" PRIu64
                              " but differ at %" PRIu64, c->nodes[a].id, c->nodes[b].id, agree, i);
            }
        }
    }
}
