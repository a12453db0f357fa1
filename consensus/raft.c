/* raft.c - the Raft node: creation, requests, tick, Ready/advance, status.
 * Message handling lives in raft_step.c. */
#include "consensus/raft_internal.h"

#include "common/log.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

const char *raft_strerror(int err)
{
    switch (err) {
    case 0: return "ok";
    case RAFT_ERR_INVALID: return "invalid argument or state";
    case RAFT_ERR_NOT_LEADER: return "not the leader";
    case RAFT_ERR_BUSY: return "busy: membership change or leadership transfer pending";
    case RAFT_ERR_NO_LEADER: return "no known leader";
    case RAFT_ERR_TOO_BIG: return "payload too big";
    case RAFT_ERR_NOMEM: return "out of memory";
    case RAFT_ERR_DECODE: return "malformed message";
    case RAFT_ERR_COMPACTED: return "index compacted";
    }
    return "unknown error";
}

const char *raft_role_name(raft_role_t role)
{
    switch (role) {
    case RAFT_FOLLOWER: return "follower";
    case RAFT_PRE_CANDIDATE: return "pre-candidate";
    case RAFT_CANDIDATE: return "candidate";
    case RAFT_LEADER: return "leader";
    }
    return "?";
}

void raft_config_defaults(raft_config_t *cfg, uint64_t id, uint64_t seed)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->id = id;
    cfg->seed = seed;
    cfg->election_tick = 8;
    cfg->heartbeat_tick = 2;
    cfg->pre_vote = true;
    cfg->check_quorum = true;
    cfg->max_msg_entries = 256;
    cfg->max_msg_bytes = 1u << 20;
    cfg->max_inflight = 64;
}

/* --- creation ------------------------------------------------------------ */

static int check_boot(const raft_boot_t *boot)
{
    const raft_snapshot_t *snap = &boot->snapshot;
    if (snap->index > 0 && snap->term == 0) {
        log_error("raft", "boot: snapshot at index %" PRIu64 " has term 0", snap->index);
        return RAFT_ERR_INVALID;
    }
    uint64_t prev_term = snap->term;
    for (size_t i = 0; i < boot->n_entries; i++) {
        const raft_entry_t *e = &boot->entries[i];
        if (e->index != snap->index + 1 + i || e->term < prev_term || e->len > RAFT_MAX_ENTRY_BYTES) {
            log_error("raft", "boot: entry %zu (index %" PRIu64 ", term %" PRIu64
                      ") does not continue the log after snapshot %" PRIu64,
                      i, e->index, e->term, snap->index);
            return RAFT_ERR_INVALID;
        }
        prev_term = e->term;
    }
    return 0;
}

raft_t *raft_new(const raft_config_t *cfg, const raft_boot_t *boot)
{
    if (!cfg || cfg->id == RAFT_NONE) {
        log_error("raft", "config: node id must be non-zero");
        return NULL;
    }
    raft_config_t c = *cfg;
    raft_config_t defaults;
    raft_config_defaults(&defaults, c.id, c.seed);
    if (c.election_tick <= 0)
        c.election_tick = defaults.election_tick;
    if (c.heartbeat_tick <= 0)
        c.heartbeat_tick = defaults.heartbeat_tick;
    if (c.heartbeat_tick >= c.election_tick) {
        log_error("raft", "config: heartbeat_tick (%d) must be below election_tick (%d)",
                  c.heartbeat_tick, c.election_tick);
        return NULL;
    }
    if (!c.max_msg_entries)
        c.max_msg_entries = defaults.max_msg_entries;
    if (c.max_msg_entries > RAFT_MAX_MSG_ENTRIES)
        c.max_msg_entries = RAFT_MAX_MSG_ENTRIES;
    if (!c.max_msg_bytes)
        c.max_msg_bytes = defaults.max_msg_bytes;
    if (!c.max_inflight)
        c.max_inflight = defaults.max_inflight;
    if (boot && check_boot(boot) != 0)
        return NULL;

    raft_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->cfg = c;
    r->id = c.id;
    r->prs = calloc(2 * RAFT_MAX_MEMBERS, sizeof(progress_t));
    if (!r->prs) {
        free(r);
        return NULL;
    }
    rng_seed(&r->rng, c.seed ^ (c.id * 0x9e3779b97f4a7c15ULL));
    memlog_init(&r->log);
    if (boot) {
        if ((boot->snapshot.index > 0 && memlog_set_snapshot(&r->log, &boot->snapshot) != 0) ||
            memlog_append(&r->log, boot->entries, boot->n_entries) != 0) {
            raft_destroy(&r);
            return NULL;
        }
        r->term = boot->hard_state.term;
        r->vote = boot->hard_state.vote;
        r->persisted_hs = boot->hard_state;
        uint64_t last_term = memlog_last_term(&r->log);
        if (last_term > r->term) {
            /* The entries reached the disk, the hard state of the same Ready
             * did not. Nothing of that Ready was sent, so taking up the term
             * of the log (without a vote) is as if it had been persisted. */
            log_warn("raft", "boot: log reaches term %" PRIu64 ", hard state only %" PRIu64 "; term raised",
                     last_term, r->term);
            r->term = last_term;
            r->vote = RAFT_NONE;
        }
        r->commit = boot->hard_state.commit;
        if (r->commit < r->log.snap.index)
            r->commit = r->log.snap.index;
        if (r->commit > memlog_last(&r->log)) {
            /* Only a shell that stored the hard state before the entries can
             * get here; the entries will come back from the leader. */
            log_warn("raft", "boot: commit %" PRIu64 " beyond last index %" PRIu64 "; lowered",
                     r->commit, memlog_last(&r->log));
            r->commit = memlog_last(&r->log);
        }
    }
    r->applied = r->log.snap.index;
    r->stabled = r->durable = memlog_last(&r->log);
    raft_reload_conf(r);
    raft_become_follower(r, r->term, RAFT_NONE);
    return r;
}


void raft_destroy(raft_t **self_p)
{
    raft_t *r = *self_p;
    if (!r)
        return;
    raft_drop_progress(r);
    free(r->prs);
    memlog_free(&r->log);
    free(r->reads);
    free(r->out);
    free(r->read_states);
    free(r->ready_msgs);
    free(r);
    *self_p = NULL;
}

int raft_bootstrap(raft_t *r, const uint64_t *voters, size_t n)
{
    if (r->in_ready || memlog_last(&r->log) != 0 || r->term != 0 || n == 0 || n > RAFT_MAX_MEMBERS)
        return RAFT_ERR_INVALID;
    raft_conf_t conf = { 0 };
    for (size_t i = 0; i < n; i++) {
        if (voters[i] == RAFT_NONE || raft_conf_is_voter(&conf, voters[i]))
            return RAFT_ERR_INVALID;
        conf.voters[conf.n_voters++] = voters[i];
    }
    uint8_t buf[8 + 8 * RAFT_MAX_MEMBERS];
    raft_conf_encode(&conf, buf);
    raft_entry_t first = { .term = 1, .index = 1, .type = RAFT_ENTRY_CONFIG,
                           .data = buf, .len = raft_conf_encoded_len(&conf) };
    int rc = memlog_append(&r->log, &first, 1);
    if (rc != 0)
        return rc;
    r->term = 1;
    r->commit = 1;   /* identical on every founder, so committed by construction */
    raft_apply_conf(r, &conf, 1);
    return 0;
}

/* --- membership ---------------------------------------------------------- */

bool raft_promotable(const raft_t *r)
{
    return raft_conf_is_voter(&r->conf, r->id) && !r->snap_unstable;
}

progress_t *raft_progress(raft_t *r, uint64_t id)
{
    for (size_t i = 0; i < r->n_prs; i++)
        if (r->prs[i].id == id)
            return &r->prs[i];
    return NULL;
}

/* The leader tracks exactly the members of the configuration in force. */
static void sync_progress(raft_t *r)
{
    size_t keep = 0;
    for (size_t i = 0; i < r->n_prs; i++) {
        progress_t *pr = &r->prs[i];
        bool voter = raft_conf_is_voter(&r->conf, pr->id);
        if (voter || raft_conf_is_learner(&r->conf, pr->id)) {
            pr->voter = voter;
            r->prs[keep++] = *pr;
        } else {
            progress_free(pr);
        }
    }
    r->n_prs = keep;
    const uint64_t *lists[2] = { r->conf.voters, r->conf.learners };
    size_t counts[2] = { r->conf.n_voters, r->conf.n_learners };
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < counts[l]; i++) {
            uint64_t id = lists[l][i];
            if (raft_progress(r, id))
                continue;
            progress_t *pr = &r->prs[r->n_prs];
            if (progress_init(pr, id, l == 0, memlog_last(&r->log) + 1, r->cfg.max_inflight) != 0)
                continue;   /* out of memory: it is retried at the next change */
            if (id == r->id)
                pr->match = memlog_last(&r->log);
            r->n_prs++;
        }
    }
}

void raft_drop_progress(raft_t *r)
{
    for (size_t i = 0; i < r->n_prs; i++)
        progress_free(&r->prs[i]);
    r->n_prs = 0;
}

void raft_reset_progress(raft_t *r)
{
    raft_drop_progress(r);
    sync_progress(r);
}

void raft_apply_conf(raft_t *r, const raft_conf_t *conf, uint64_t index)
{
    r->conf = *conf;
    r->conf_index = index;
    if (r->role != RAFT_LEADER)
        return;
    sync_progress(r);
    if (r->transferee && !raft_conf_is_voter(&r->conf, r->transferee))
        r->transferee = RAFT_NONE;
    raft_maybe_commit(r);   /* the quorum may have shrunk */
}

void raft_reload_conf(raft_t *r)
{
    for (uint64_t i = memlog_last(&r->log); i > r->log.snap.index; i--) {
        const raft_entry_t *e = memlog_at(&r->log, i);
        raft_conf_t conf;
        if (e->type == RAFT_ENTRY_CONFIG && raft_conf_decode(e->data, e->len, &conf) == 0) {
            raft_apply_conf(r, &conf, i);
            return;
        }
    }
    raft_apply_conf(r, &r->log.snap.conf, r->log.snap.index);
}

/* --- requests ------------------------------------------------------------ */

int raft_append_local(raft_t *r, raft_entry_type_t type, const void *data, size_t len, uint64_t *index)
{
    raft_entry_t e = { .term = r->term, .index = memlog_last(&r->log) + 1, .type = (uint8_t)type,
                       .data = data, .len = len };
    int rc = memlog_append(&r->log, &e, 1);
    if (rc != 0)
        return rc;
    progress_t *self = raft_progress(r, r->id);
    if (self)
        progress_maybe_update(self, e.index);
    if (type == RAFT_ENTRY_CONFIG) {
        raft_conf_t conf;
        if (raft_conf_decode(data, len, &conf) == 0)
            raft_apply_conf(r, &conf, e.index);
    }
    if (index)
        *index = e.index;
    r->bcast_pending = true;
    raft_maybe_commit(r);
    return 0;
}

int raft_propose(raft_t *r, const void *data, size_t len, uint64_t *index, uint64_t *term)
{
    if (r->in_ready || (len && !data))
        return RAFT_ERR_INVALID;
    if (r->role != RAFT_LEADER)
        return RAFT_ERR_NOT_LEADER;
    if (r->transferee)
        return RAFT_ERR_BUSY;
    if (len > RAFT_MAX_ENTRY_BYTES)
        return RAFT_ERR_TOO_BIG;
    int rc = raft_append_local(r, RAFT_ENTRY_NORMAL, data, len, index);
    if (rc == 0 && term)
        *term = r->term;
    return rc;
}

int raft_propose_conf_change(raft_t *r, raft_conf_op_t op, uint64_t node, uint64_t *index)
{
    if (r->in_ready)
        return RAFT_ERR_INVALID;
    if (r->role != RAFT_LEADER)
        return RAFT_ERR_NOT_LEADER;
    /* One change at a time, and only once this leader has committed an entry
     * of its own term: the fix to single-server changes from Ongaro's 2015
     * raft-dev note, without which two leaders' changes can overlap. */
    if (r->transferee || r->conf_index > r->commit || !raft_committed_in_term(r))
        return RAFT_ERR_BUSY;
    raft_conf_t conf = r->conf;
    int rc = raft_conf_apply_op(&conf, op, node);
    if (rc != 0)
        return rc;
    uint8_t buf[8 + 16 * RAFT_MAX_MEMBERS];
    raft_conf_encode(&conf, buf);
    return raft_append_local(r, RAFT_ENTRY_CONFIG, buf, raft_conf_encoded_len(&conf), index);
}

int raft_transfer_leadership(raft_t *r, uint64_t target)
{
    if (r->in_ready)
        return RAFT_ERR_INVALID;
    if (r->role != RAFT_LEADER)
        return RAFT_ERR_NOT_LEADER;
    if (target == r->id || !raft_conf_is_voter(&r->conf, target))
        return RAFT_ERR_INVALID;
    if (r->transferee == target)
        return 0;
    progress_t *pr = raft_progress(r, target);
    if (!pr)
        return RAFT_ERR_INVALID;
    r->transferee = target;
    r->election_elapsed = 0;   /* the transfer is abandoned after one election timeout */
    if (pr->match == memlog_last(&r->log))
        raft_send(r, &(raft_msg_t){ .type = RAFT_MSG_TIMEOUT_NOW, .to = target, .term = r->term });
    else
        raft_send_append(r, pr, true);
    return 0;
}

int raft_read_index(raft_t *r, uint64_t context)
{
    if (r->in_ready)
        return RAFT_ERR_INVALID;
    if (r->role == RAFT_LEADER) {
        raft_leader_read(r, context, r->id);
        return 0;
    }
    if (r->leader == RAFT_NONE)
        return RAFT_ERR_NO_LEADER;
    raft_send(r, &(raft_msg_t){ .type = RAFT_MSG_READ_INDEX, .to = r->leader, .term = r->term,
                                .context = context });
    return 0;
}

int raft_campaign(raft_t *r)
{
    if (r->in_ready || r->role == RAFT_LEADER || !raft_promotable(r))
        return RAFT_ERR_INVALID;
    raft_start_campaign(r, r->cfg.pre_vote, false);
    return 0;
}

int raft_compact(raft_t *r, uint64_t index, const void *data, size_t len)
{
    if (r->in_ready || index <= r->log.snap.index || index > r->applied || (len && !data))
        return RAFT_ERR_INVALID;
    if (len > RAFT_MAX_SNAPSHOT_BYTES)
        return RAFT_ERR_TOO_BIG;
    raft_snapshot_t snap = { .index = index, .data = data, .len = len };
    memlog_term(&r->log, index, &snap.term);
    snap.conf = r->log.snap.conf;
    for (uint64_t i = index; i > r->log.snap.index; i--) {
        const raft_entry_t *e = memlog_at(&r->log, i);
        if (e->type == RAFT_ENTRY_CONFIG && raft_conf_decode(e->data, e->len, &snap.conf) == 0)
            break;
    }
    int rc = memlog_set_snapshot(&r->log, &snap);
    if (rc == 0 && r->stabled < index)
        r->stabled = index;
    return rc;
}

/* --- tick ---------------------------------------------------------------- */

void raft_tick(raft_t *r)
{
    if (r->in_ready)
        return;
    if (r->role == RAFT_LEADER) {
        raft_tick_leader(r);
        return;
    }
    r->election_elapsed++;
    if (raft_promotable(r) && r->election_elapsed >= r->randomized_timeout) {
        r->election_elapsed = 0;
        raft_start_campaign(r, r->cfg.pre_vote, false);
    }
}

/* --- output -------------------------------------------------------------- */

static int grow(void **buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap * 2 : 16;
    while (cap2 < need)
        cap2 *= 2;
    void *p = realloc(*buf, cap2 * elem);
    if (!p)
        return RAFT_ERR_NOMEM;
    *buf = p;
    *cap = cap2;
    return 0;
}

void raft_send_entries(raft_t *r, const raft_msg_t *msg, uint64_t lo, size_t n)
{
    if (grow((void **)&r->out, &r->cap_out, r->n_out + 1, sizeof(outmsg_t)) != 0)
        return;   /* a message lost to memory pressure is a message lost on the network */
    outmsg_t *o = &r->out[r->n_out++];
    o->msg = *msg;
    o->msg.from = r->id;
    o->msg.entries = NULL;
    o->msg.n_entries = 0;
    o->ents_lo = lo;
    o->ents_n = n;
    o->ents_last_term = 0;
    if (n)
        memlog_term(&r->log, lo + n - 1, &o->ents_last_term);
}

void raft_send(raft_t *r, const raft_msg_t *msg)
{
    raft_send_entries(r, msg, 0, 0);
}

void raft_push_read_state(raft_t *r, uint64_t context, uint64_t index)
{
    if (grow((void **)&r->read_states, &r->cap_read_states, r->n_read_states + 1,
             sizeof(raft_read_state_t)) != 0)
        return;
    r->read_states[r->n_read_states++] = (raft_read_state_t){ .context = context, .index = index };
}

static raft_hard_state_t hard_state(const raft_t *r)
{
    return (raft_hard_state_t){ .term = r->term, .vote = r->vote, .commit = r->commit };
}

static bool hs_equal(raft_hard_state_t a, raft_hard_state_t b)
{
    return a.term == b.term && a.vote == b.vote && a.commit == b.commit;
}

bool raft_has_ready(const raft_t *r)
{
    if (r->in_ready)
        return false;
    return !hs_equal(hard_state(r), r->persisted_hs) || r->stabled < memlog_last(&r->log) ||
           r->snap_unstable || r->n_out > 0 || r->applied < r->commit || r->n_read_states > 0 ||
           (r->role == RAFT_LEADER && (r->bcast_pending || r->heartbeat_pending));
}

int raft_ready(raft_t *r, raft_ready_t *rd)
{
    memset(rd, 0, sizeof(*rd));
    if (r->in_ready)
        return RAFT_ERR_INVALID;
    if (r->role == RAFT_LEADER) {
        if (r->bcast_pending)
            raft_bcast_append(r);
        if (r->heartbeat_pending)
            raft_bcast_heartbeat(r);
    }
    r->bcast_pending = r->heartbeat_pending = false;
    /* A leader that removed itself leads until the removal commits (thesis
     * 4.2.2); the broadcast above has told the others. */
    if (r->role == RAFT_LEADER && !raft_conf_is_voter(&r->conf, r->id) && r->conf_index <= r->commit)
        raft_become_follower(r, r->term, RAFT_NONE);

    r->ready_hs = hard_state(r);
    rd->has_hard_state = !hs_equal(r->ready_hs, r->persisted_hs);
    rd->hard_state = r->ready_hs;
    if (r->snap_unstable)
        rd->snapshot = &r->log.snap;

    uint64_t last = memlog_last(&r->log);
    if (r->stabled < last) {
        rd->entries = memlog_at(&r->log, r->stabled + 1);
        rd->n_entries = (size_t)(last - r->stabled);
    }
    r->ready_stabled = last;
    if (r->applied < r->commit) {
        rd->committed = memlog_at(&r->log, r->applied + 1);
        rd->n_committed = (size_t)(r->commit - r->applied);
    }
    r->ready_applied = r->commit;

    /* Messages: resolve entry ranges to pointers; drop those whose entries
     * are gone (compacted, or replaced after this node stopped leading). */
    if (grow((void **)&r->ready_msgs, &r->cap_ready_msgs, r->n_out, sizeof(raft_msg_t)) != 0)
        r->n_out = 0;
    size_t n_msgs = 0;
    for (size_t i = 0; i < r->n_out; i++) {
        outmsg_t *o = &r->out[i];
        raft_msg_t m = o->msg;
        if (o->ents_n) {
            uint64_t t;
            if (o->ents_lo <= r->log.snap.index || !memlog_term(&r->log, o->ents_lo + o->ents_n - 1, &t) ||
                t != o->ents_last_term)
                continue;
            m.entries = memlog_at(&r->log, o->ents_lo);
            m.n_entries = o->ents_n;
        }
        if (m.type == RAFT_MSG_SNAPSHOT)
            m.snapshot = &r->log.snap;
        r->ready_msgs[n_msgs++] = m;
    }
    rd->messages = r->ready_msgs;
    rd->n_messages = n_msgs;
    rd->reads = r->read_states;
    rd->n_reads = r->n_read_states;
    rd->role = r->role;
    rd->leader = r->leader;
    r->in_ready = true;
    return 0;
}

void raft_advance(raft_t *r)
{
    if (!r->in_ready)
        return;
    r->in_ready = false;
    r->stabled = r->ready_stabled;
    r->persisted_hs = r->ready_hs;
    r->snap_unstable = false;
    if (r->applied < r->ready_applied)
        r->applied = r->ready_applied;
    r->n_out = 0;
    r->n_read_states = 0;
}

void raft_log_durable(raft_t *r, uint64_t index)
{
    if (r->in_ready)
        return;   /* not allowed now (raft.h); the shell reports again later */
    uint64_t last = memlog_last(&r->log);
    r->durable = index < last ? index : last;
    raft_maybe_commit(r);
}

/* --- inspection ---------------------------------------------------------- */

void raft_status(const raft_t *r, raft_status_t *out)
{
    memset(out, 0, sizeof(*out));
    out->id = r->id;
    out->leader = r->leader;
    out->term = r->term;
    out->vote = r->vote;
    out->role = r->role;
    out->commit = r->commit;
    out->applied = r->applied;
    out->first_index = memlog_first(&r->log);
    out->last_index = memlog_last(&r->log);
    out->snapshot_index = r->log.snap.index;
    out->conf_index = r->conf_index;
    out->transferee = r->transferee;
    const uint64_t *lists[2] = { r->conf.voters, r->conf.learners };
    size_t counts[2] = { r->conf.n_voters, r->conf.n_learners };
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < counts[l]; i++) {
            raft_peer_status_t *p = &out->peers[out->n_peers++];
            p->id = lists[l][i];
            p->voter = l == 0;
            p->progress = "";
            if (r->role != RAFT_LEADER)
                continue;
            for (size_t k = 0; k < r->n_prs; k++) {
                const progress_t *pr = &r->prs[k];
                if (pr->id != p->id)
                    continue;
                p->match = pr->match;
                p->next = pr->next;
                p->progress = pr->id == r->id ? "self" : progress_state_name(pr->state);
                p->recent_active = pr->recent_active || pr->id == r->id;
            }
        }
    }
}

uint64_t raft_id(const raft_t *r) { return r->id; }
uint64_t raft_term(const raft_t *r) { return r->term; }
uint64_t raft_leader(const raft_t *r) { return r->leader; }
raft_role_t raft_role(const raft_t *r) { return r->role; }
uint64_t raft_commit_index(const raft_t *r) { return r->commit; }
uint64_t raft_first_index(const raft_t *r) { return memlog_first(&r->log); }
uint64_t raft_last_index(const raft_t *r) { return memlog_last(&r->log); }
const raft_conf_t *raft_conf(const raft_t *r) { return &r->conf; }
const raft_snapshot_t *raft_snapshot(const raft_t *r) { return &r->log.snap; }
const raft_entry_t *raft_entry_at(const raft_t *r, uint64_t index) { return memlog_at(&r->log, index); }

int raft_term_at(const raft_t *r, uint64_t index, uint64_t *term)
{
    if (memlog_term(&r->log, index, term))
        return 0;
    return index < r->log.snap.index ? RAFT_ERR_COMPACTED : RAFT_ERR_INVALID;
}
