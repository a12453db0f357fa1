/* raft_step.c - what a node does with each message, by role: elections
 * (PreVote, CheckQuorum, TimeoutNow), log replication and ReadIndex. */
#include "consensus/raft_internal.h"

#include "common/log.h"

#include <inttypes.h>
#include <stdlib.h>

static void reset_timers(raft_t *r)
{
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    r->randomized_timeout =
        r->cfg.election_tick + (int)rng_below(&r->rng, (uint64_t)r->cfg.election_tick);
}

static void reset_votes(raft_t *r)
{
    r->n_granted = r->n_rejected = 0;
}

void raft_become_follower(raft_t *r, uint64_t term, uint64_t leader)
{
    if (term != r->term) {
        r->term = term;
        r->vote = RAFT_NONE;
    }
    if (r->role == RAFT_LEADER)
        raft_drop_progress(r);
    r->role = RAFT_FOLLOWER;
    r->leader = leader;
    r->transferee = RAFT_NONE;
    r->n_reads = 0;   /* pending reads are lost; their callers time out */
    reset_timers(r);
    reset_votes(r);
}

void raft_become_leader(raft_t *r)
{
    r->role = RAFT_LEADER;
    r->leader = r->id;
    r->transferee = RAFT_NONE;
    r->n_reads = 0;
    reset_timers(r);
    reset_votes(r);
    raft_reset_progress(r);
    log_debug("raft", "%" PRIu64 " became leader at term %" PRIu64, r->id, r->term);
    /* The NOOP commits the entries of earlier terms (they cannot be committed
     * by counting replicas, Raft paper 5.4.2) and tells when reads are safe. */
    if (raft_append_local(r, RAFT_ENTRY_NOOP, NULL, 0, &r->term_start) != 0)
        raft_become_follower(r, r->term, RAFT_NONE);
}

bool raft_committed_in_term(const raft_t *r)
{
    uint64_t term;
    return memlog_term(&r->log, r->commit, &term) && term == r->term;
}

/* --- elections ----------------------------------------------------------- */

typedef enum { POLL_PENDING, POLL_WON, POLL_LOST } poll_result_t;

static bool listed(const uint64_t *ids, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

static poll_result_t poll(raft_t *r, uint64_t from, bool granted)
{
    if (raft_conf_is_voter(&r->conf, from) && !listed(r->granted, r->n_granted, from) &&
        !listed(r->rejected, r->n_rejected, from)) {
        if (granted)
            r->granted[r->n_granted++] = from;
        else
            r->rejected[r->n_rejected++] = from;
    }
    size_t quorum = raft_conf_quorum(&r->conf);
    if (r->n_granted >= quorum)
        return POLL_WON;
    if (r->n_rejected > r->conf.n_voters - quorum)
        return POLL_LOST;
    return POLL_PENDING;
}

void raft_start_campaign(raft_t *r, bool pre_vote, bool force)
{
    if (!raft_promotable(r))
        return;
    uint64_t vote_term;
    if (pre_vote) {
        /* Ask first, without touching our term: a node that cannot win (say,
         * it was partitioned away) then never disrupts a working leader. */
        r->role = RAFT_PRE_CANDIDATE;
        vote_term = r->term + 1;
    } else {
        raft_become_follower(r, r->term + 1, RAFT_NONE);
        r->role = RAFT_CANDIDATE;
        r->vote = r->id;
        vote_term = r->term;
    }
    r->leader = RAFT_NONE;
    reset_votes(r);
    if (poll(r, r->id, true) == POLL_WON) {   /* a single voter wins alone */
        if (pre_vote)
            raft_start_campaign(r, false, force);
        else
            raft_become_leader(r);
        return;
    }
    for (size_t i = 0; i < r->conf.n_voters; i++) {
        uint64_t to = r->conf.voters[i];
        if (to == r->id)
            continue;
        raft_send(r, &(raft_msg_t){ .type = pre_vote ? RAFT_MSG_PRE_VOTE : RAFT_MSG_VOTE, .to = to,
                                    .term = vote_term, .index = memlog_last(&r->log),
                                    .log_term = memlog_last_term(&r->log), .force = force });
    }
}

static void handle_vote_request(raft_t *r, const raft_msg_t *m)
{
    bool pre = m->type == RAFT_MSG_PRE_VOTE;
    bool can_vote = r->vote == m->from || (r->vote == RAFT_NONE && r->leader == RAFT_NONE) ||
                    (pre && m->term > r->term);
    uint64_t last_term = memlog_last_term(&r->log);
    bool up_to_date = m->log_term > last_term ||
                      (m->log_term == last_term && m->index >= memlog_last(&r->log));
    raft_msg_t resp = { .type = pre ? RAFT_MSG_PRE_VOTE_RESP : RAFT_MSG_VOTE_RESP, .to = m->from };
    if (can_vote && up_to_date) {
        resp.term = m->term;   /* for a PreVote, the term the candidate would use */
        if (!pre) {
            r->vote = m->from;
            r->election_elapsed = 0;
        }
    } else {
        resp.term = r->term;
        resp.reject = true;
    }
    raft_send(r, &resp);
}

/* --- replication --------------------------------------------------------- */

/* The largest index <= `index` whose term is <= `term`: where two logs may
 * match when one has `term` at `index`. Skips whole terms per round trip. */
static uint64_t find_conflict_by_term(const raft_t *r, uint64_t index, uint64_t term)
{
    if (index > memlog_last(&r->log))
        index = memlog_last(&r->log);
    for (;;) {
        uint64_t t;
        if (!memlog_term(&r->log, index, &t) || t <= term)
            return index;
        index--;
    }
}

static void commit_to(raft_t *r, uint64_t index)
{
    if (index > memlog_last(&r->log))
        index = memlog_last(&r->log);
    if (index > r->commit)
        r->commit = index;
}

bool raft_send_append(raft_t *r, progress_t *pr, bool send_if_empty)
{
    if (pr->id == r->id || progress_is_paused(pr))
        return false;
    uint64_t last = memlog_last(&r->log);
    if (pr->next > last + 1)
        pr->next = last + 1;
    uint64_t prev = pr->next - 1, prev_term;
    if (!memlog_term(&r->log, prev, &prev_term)) {
        /* The entries it needs are compacted: send the snapshot instead, but
         * not to a node that has not answered lately (it may be down). */
        if (!pr->recent_active)
            return false;
        raft_send(r, &(raft_msg_t){ .type = RAFT_MSG_SNAPSHOT, .to = pr->id, .term = r->term });
        progress_become_snapshot(pr, r->log.snap.index);
        return true;
    }
    size_t n = memlog_batch(&r->log, pr->next, r->cfg.max_msg_entries, r->cfg.max_msg_bytes);
    if (n == 0 && !send_if_empty)
        return false;
    raft_send_entries(r, &(raft_msg_t){ .type = RAFT_MSG_APPEND, .to = pr->id, .term = r->term,
                                        .index = prev, .log_term = prev_term, .commit = r->commit },
                      pr->next, n);
    if (n)
        progress_sent_entries(pr, pr->next + n - 1);
    else if (pr->state == PROGRESS_PROBE)
        pr->probe_sent = true;
    return true;
}

void raft_bcast_append(raft_t *r)
{
    for (size_t i = 0; i < r->n_prs; i++) {
        progress_t *pr = &r->prs[i];
        if (raft_send_append(r, pr, true))
            while (raft_send_append(r, pr, false)) {
            }
    }
}

void raft_bcast_heartbeat(raft_t *r)
{
    for (size_t i = 0; i < r->n_prs; i++) {
        const progress_t *pr = &r->prs[i];
        if (pr->id == r->id)
            continue;
        /* Never tell a follower to commit beyond what it is known to hold. */
        uint64_t commit = pr->match < r->commit ? pr->match : r->commit;
        raft_send(r, &(raft_msg_t){ .type = RAFT_MSG_HEARTBEAT, .to = pr->id, .term = r->term,
                                    .commit = commit, .context = r->read_round });
    }
}

static int compare_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The value that a quorum of voters has reached, given each voter's value. */
static uint64_t quorum_value(const raft_t *r, uint64_t self_value, bool use_read_ack)
{
    uint64_t values[RAFT_MAX_MEMBERS];
    size_t n = 0;
    for (size_t i = 0; i < r->n_prs; i++) {
        const progress_t *pr = &r->prs[i];
        if (!pr->voter)
            continue;
        values[n++] = pr->id == r->id ? self_value : use_read_ack ? pr->read_ack : pr->match;
    }
    if (n == 0)
        return 0;
    qsort(values, n, sizeof(uint64_t), compare_desc);
    return values[raft_conf_quorum(&r->conf) - 1];
}

uint64_t raft_self_match(const raft_t *r)
{
    uint64_t last = memlog_last(&r->log);
    return r->cfg.async_storage && r->durable < last ? r->durable : last;
}

bool raft_maybe_commit(raft_t *r)
{
    if (r->role != RAFT_LEADER)
        return false;
    uint64_t index = quorum_value(r, raft_self_match(r), false);
    uint64_t term;
    /* Only entries of the current term commit by counting (paper 5.4.2). */
    if (index <= r->commit || !memlog_term(&r->log, index, &term) || term != r->term)
        return false;
    r->commit = index;
    r->bcast_pending = true;   /* tell the followers */
    raft_process_reads(r);
    return true;
}

static void handle_append_resp(raft_t *r, progress_t *pr, const raft_msg_t *m)
{
    if (m->reject) {
        uint64_t hint = m->hint_index;
        if (m->hint_term > 0)
            hint = find_conflict_by_term(r, m->hint_index, m->hint_term);
        if (progress_maybe_decrease(pr, m->index, hint)) {
            if (pr->state == PROGRESS_REPLICATE)
                progress_become_probe(pr);
            raft_send_append(r, pr, true);
        }
        return;
    }
    bool probe_answered = pr->state == PROGRESS_PROBE && pr->match == m->index;
    if (!progress_maybe_update(pr, m->index) && !probe_answered)
        return;
    switch (pr->state) {
    case PROGRESS_PROBE:
        progress_become_replicate(pr);
        break;
    case PROGRESS_SNAPSHOT:
        if (pr->match >= pr->pending_snapshot)
            progress_become_replicate(pr);
        break;
    case PROGRESS_REPLICATE:
        inflights_free_to(&pr->inflights, m->index);
        break;
    }
    raft_maybe_commit(r);
    while (raft_send_append(r, pr, false)) {   /* keep its pipeline full */
    }
    if (pr->id == r->transferee && pr->match == memlog_last(&r->log))
        raft_send(r, &(raft_msg_t){ .type = RAFT_MSG_TIMEOUT_NOW, .to = pr->id, .term = r->term });
}

static void handle_heartbeat_resp(raft_t *r, progress_t *pr, const raft_msg_t *m)
{
    pr->probe_sent = false;
    /* A lost append may have left the window full: free a slot to retry. */
    if (pr->state == PROGRESS_REPLICATE && inflights_full(&pr->inflights))
        inflights_free_first(&pr->inflights);
    if (pr->match < memlog_last(&r->log) || pr->state == PROGRESS_PROBE)
        raft_send_append(r, pr, true);
    if (m->context > pr->read_ack) {
        pr->read_ack = m->context;
        raft_process_reads(r);
    }
}

static bool quorum_active(raft_t *r)
{
    size_t active = 0;
    for (size_t i = 0; i < r->n_prs; i++)
        if (r->prs[i].voter && (r->prs[i].recent_active || r->prs[i].id == r->id))
            active++;
    return active >= raft_conf_quorum(&r->conf);
}

void raft_tick_leader(raft_t *r)
{
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    if (r->election_elapsed >= r->cfg.election_tick) {
        r->election_elapsed = 0;
        if (r->cfg.check_quorum) {
            if (!quorum_active(r)) {
                log_debug("raft", "%" PRIu64 " steps down at term %" PRIu64 ": no active quorum",
                          r->id, r->term);
                raft_become_follower(r, r->term, RAFT_NONE);
                return;
            }
            for (size_t i = 0; i < r->n_prs; i++)
                r->prs[i].recent_active = r->prs[i].id == r->id;
        }
        r->transferee = RAFT_NONE;   /* a transfer that took this long has failed */
    }
    for (size_t i = 0; i < r->n_prs; i++) {
        progress_t *pr = &r->prs[i];
        if (pr->state == PROGRESS_SNAPSHOT && ++pr->snapshot_ticks >= 2 * r->cfg.election_tick)
            progress_become_probe(pr);   /* the snapshot was probably lost: try again */
    }
    if (r->heartbeat_elapsed >= r->cfg.heartbeat_tick) {
        r->heartbeat_elapsed = 0;
        raft_bcast_heartbeat(r);
    }
}

/* --- ReadIndex (thesis 6.4) ---------------------------------------------- */

void raft_leader_read(raft_t *r, uint64_t context, uint64_t from)
{
    if (r->n_reads >= RAFT_MAX_PENDING_READS)
        return;
    if (r->n_reads == r->cap_reads) {
        size_t cap = r->cap_reads ? 2 * r->cap_reads : 16;
        pending_read_t *grown = realloc(r->reads, cap * sizeof(*grown));
        if (!grown)
            return;
        r->reads = grown;
        r->cap_reads = cap;
    }
    r->reads[r->n_reads++] = (pending_read_t){ .context = context, .from = from };
    raft_process_reads(r);
}

/* Each waiting read joins a heartbeat round; a read completes once a quorum
 * has answered a round at least as recent as its own, which proves this node
 * was still the leader after the read arrived. Its index is the commit index
 * when the round started, taken only once an entry of this term committed. */
void raft_process_reads(raft_t *r)
{
    if (r->role != RAFT_LEADER || r->n_reads == 0 || !raft_committed_in_term(r))
        return;
    bool started = false;
    for (size_t i = 0; i < r->n_reads; i++) {
        pending_read_t *rd = &r->reads[i];
        if (rd->round)
            continue;
        if (!started) {
            r->read_round++;
            started = true;
        }
        rd->round = r->read_round;
        rd->index = r->commit;
    }
    if (started)
        r->heartbeat_pending = true;
    uint64_t confirmed = quorum_value(r, r->read_round, true);
    size_t done = 0;
    while (done < r->n_reads && r->reads[done].round <= confirmed) {
        const pending_read_t *rd = &r->reads[done++];
        if (rd->from == r->id)
            raft_push_read_state(r, rd->context, rd->index);
        else
            raft_send(r, &(raft_msg_t){ .type = RAFT_MSG_READ_INDEX_RESP, .to = rd->from,
                                        .term = r->term, .context = rd->context, .index = rd->index });
    }
    for (size_t i = done; i < r->n_reads; i++)
        r->reads[i - done] = r->reads[i];
    r->n_reads -= done;
}

/* --- followers ----------------------------------------------------------- */

static void handle_append(raft_t *r, const raft_msg_t *m)
{
    raft_msg_t resp = { .type = RAFT_MSG_APPEND_RESP, .to = m->from, .term = r->term };
    if (m->index < r->commit) {
        resp.index = r->commit;   /* old news: say how far we are */
        raft_send(r, &resp);
        return;
    }
    uint64_t term;
    if (!memlog_term(&r->log, m->index, &term) || term != m->log_term) {
        resp.reject = true;
        resp.index = m->index;
        resp.hint_index = find_conflict_by_term(r, m->index, m->log_term);
        memlog_term(&r->log, resp.hint_index, &resp.hint_term);
        raft_send(r, &resp);
        return;
    }
    /* Skip what we already hold; cut our log at the first conflict. A stale
     * (reordered) append that merely holds fewer entries must not cut. */
    size_t i = 0;
    bool conf_touched = false;
    for (; i < m->n_entries; i++) {
        const raft_entry_t *e = &m->entries[i];
        uint64_t have;
        if (!memlog_term(&r->log, e->index, &have))
            break;
        if (have != e->term) {
            if (e->index <= r->commit) {
                log_error("raft", "%" PRIu64 ": append from %" PRIu64 " conflicts with committed index %"
                          PRIu64 "; dropped", r->id, m->from, e->index);
                return;
            }
            memlog_truncate(&r->log, e->index);
            if (r->stabled >= e->index)
                r->stabled = e->index - 1;
            if (r->durable >= e->index)
                r->durable = e->index - 1;
            conf_touched |= r->conf_index >= e->index;
            break;
        }
    }
    for (size_t k = i; k < m->n_entries; k++)
        conf_touched |= m->entries[k].type == RAFT_ENTRY_CONFIG;
    if (i < m->n_entries && memlog_append(&r->log, m->entries + i, m->n_entries - i) != 0) {
        if (conf_touched)
            raft_reload_conf(r);
        return;   /* out of memory: no answer; the leader retries */
    }
    if (conf_touched)
        raft_reload_conf(r);
    uint64_t last_new = m->index + m->n_entries;
    commit_to(r, m->commit < last_new ? m->commit : last_new);
    resp.index = last_new;
    raft_send(r, &resp);
}

static void handle_heartbeat(raft_t *r, const raft_msg_t *m)
{
    commit_to(r, m->commit);
    raft_send(r, &(raft_msg_t){ .type = RAFT_MSG_HEARTBEAT_RESP, .to = m->from, .term = r->term,
                                .context = m->context });
}

static void handle_snapshot(raft_t *r, const raft_msg_t *m)
{
    const raft_snapshot_t *s = m->snapshot;
    raft_msg_t resp = { .type = RAFT_MSG_APPEND_RESP, .to = m->from, .term = r->term };
    uint64_t term;
    if (s->index > r->commit && memlog_term(&r->log, s->index, &term) && term == s->term) {
        commit_to(r, s->index);   /* we hold it already: just commit */
    } else if (s->index > r->commit) {
        if (memlog_set_snapshot(&r->log, s) != 0)
            return;
        log_debug("raft", "%" PRIu64 " restores snapshot %" PRIu64 "/%" PRIu64 " from %" PRIu64,
                  r->id, s->index, s->term, m->from);
        r->commit = r->applied = r->stabled = s->index;
        if (r->durable > s->index)
            r->durable = s->index;
        r->snap_unstable = true;
        raft_apply_conf(r, &s->conf, s->index);
    }
    resp.index = r->commit;
    raft_send(r, &resp);
}

/* --- dispatch ------------------------------------------------------------ */

static bool valid_conf(const raft_conf_t *c)
{
    if (c->n_voters > RAFT_MAX_MEMBERS || c->n_learners > RAFT_MAX_MEMBERS)
        return false;
    for (size_t i = 0; i < c->n_voters; i++)
        if (c->voters[i] == RAFT_NONE)
            return false;
    for (size_t i = 0; i < c->n_learners; i++)
        if (c->learners[i] == RAFT_NONE)
            return false;
    return true;
}

static const char *invalid_reason(const raft_t *r, const raft_msg_t *m)
{
    if (m->type == 0 || m->type >= RAFT_MSG_TYPE_MAX)
        return "unknown type";
    if (m->from == RAFT_NONE || m->from == r->id || m->to != r->id)
        return "bad sender or recipient";
    if (m->type == RAFT_MSG_SNAPSHOT) {
        const raft_snapshot_t *s = m->snapshot;
        if (!s || s->index == 0 || s->term == 0 || s->term > m->term || s->len > RAFT_MAX_SNAPSHOT_BYTES ||
            (s->len && !s->data) || !valid_conf(&s->conf))
            return "bad snapshot";
    }
    if (m->n_entries && m->type != RAFT_MSG_APPEND)
        return "entries on a message that carries none";
    if (m->n_entries > RAFT_MAX_MSG_ENTRIES || (m->n_entries && !m->entries) ||
        m->index > UINT64_MAX - RAFT_MAX_MSG_ENTRIES - 1)
        return "bad entry count or index";
    uint64_t prev_term = m->log_term;
    for (size_t i = 0; i < m->n_entries; i++) {
        const raft_entry_t *e = &m->entries[i];
        raft_conf_t conf;
        if (e->index != m->index + 1 + i || e->term < prev_term || e->term > m->term)
            return "entries out of sequence";
        if (e->len > RAFT_MAX_ENTRY_BYTES || (e->len && !e->data) || e->type > RAFT_ENTRY_CONFIG)
            return "bad entry";
        if (e->type == RAFT_ENTRY_CONFIG && raft_conf_decode(e->data, e->len, &conf) != 0)
            return "bad configuration entry";
        prev_term = e->term;
    }
    return NULL;
}

static void step_leader(raft_t *r, const raft_msg_t *m)
{
    progress_t *pr = raft_progress(r, m->from);
    switch (m->type) {
    case RAFT_MSG_APPEND_RESP:
        if (pr) {
            pr->recent_active = true;
            handle_append_resp(r, pr, m);
        }
        break;
    case RAFT_MSG_HEARTBEAT_RESP:
        if (pr) {
            pr->recent_active = true;
            handle_heartbeat_resp(r, pr, m);
        }
        break;
    case RAFT_MSG_READ_INDEX:
        raft_leader_read(r, m->context, m->from);
        break;
    default:
        break;
    }
}

static void step_candidate(raft_t *r, const raft_msg_t *m)
{
    uint8_t my_resp = r->role == RAFT_PRE_CANDIDATE ? RAFT_MSG_PRE_VOTE_RESP : RAFT_MSG_VOTE_RESP;
    switch (m->type) {
    case RAFT_MSG_APPEND:
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_SNAPSHOT:
        /* A leader exists in our term: it won. */
        raft_become_follower(r, m->term, m->from);
        if (m->type == RAFT_MSG_APPEND)
            handle_append(r, m);
        else if (m->type == RAFT_MSG_HEARTBEAT)
            handle_heartbeat(r, m);
        else
            handle_snapshot(r, m);
        break;
    case RAFT_MSG_READ_INDEX_RESP:
        raft_push_read_state(r, m->context, m->index);
        break;
    default:
        if (m->type != my_resp)
            break;
        switch (poll(r, m->from, !m->reject)) {
        case POLL_WON:
            if (r->role == RAFT_PRE_CANDIDATE)
                raft_start_campaign(r, false, false);
            else
                raft_become_leader(r);
            break;
        case POLL_LOST:
            raft_become_follower(r, r->term, RAFT_NONE);
            break;
        case POLL_PENDING:
            break;
        }
    }
}

static void step_follower(raft_t *r, const raft_msg_t *m)
{
    switch (m->type) {
    case RAFT_MSG_APPEND:
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_SNAPSHOT:
        r->election_elapsed = 0;
        r->leader = m->from;
        if (m->type == RAFT_MSG_APPEND)
            handle_append(r, m);
        else if (m->type == RAFT_MSG_HEARTBEAT)
            handle_heartbeat(r, m);
        else
            handle_snapshot(r, m);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        /* Leadership transfer: campaign at once, past PreVote and leases. */
        raft_start_campaign(r, false, true);
        break;
    case RAFT_MSG_READ_INDEX_RESP:
        raft_push_read_state(r, m->context, m->index);
        break;
    default:
        break;
    }
}

int raft_step(raft_t *r, const raft_msg_t *m)
{
    if (r->in_ready || !m)
        return RAFT_ERR_INVALID;
    const char *why = invalid_reason(r, m);
    if (why) {
        log_debug("raft", "%" PRIu64 ": dropped %s from %" PRIu64 ": %s", r->id,
                  raft_msg_type_name(m->type), m->from, why);
        return RAFT_ERR_INVALID;
    }
    bool vote_request = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PRE_VOTE;
    if (m->term > r->term) {
        if (vote_request && !m->force && r->cfg.check_quorum && r->leader != RAFT_NONE &&
            r->election_elapsed < r->cfg.election_tick)
            return 0;   /* we heard from a leader within the timeout: ignore */
        if (m->type == RAFT_MSG_PRE_VOTE || (m->type == RAFT_MSG_PRE_VOTE_RESP && !m->reject)) {
            /* PreVote traffic carries a future term and never changes ours. */
        } else if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
                   m->type == RAFT_MSG_SNAPSHOT) {
            raft_become_follower(r, m->term, m->from);
        } else {
            raft_become_follower(r, m->term, RAFT_NONE);
        }
    } else if (m->term < r->term) {
        if ((r->cfg.check_quorum || r->cfg.pre_vote) &&
            (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT)) {
            /* A deposed leader that does not know it yet: our term tells it.
             * (With PreVote it would otherwise never hear a higher term.) */
            raft_send(r, &(raft_msg_t){ .type = RAFT_MSG_APPEND_RESP, .to = m->from, .term = r->term });
        } else if (m->type == RAFT_MSG_PRE_VOTE) {
            raft_send(r, &(raft_msg_t){ .type = RAFT_MSG_PRE_VOTE_RESP, .to = m->from,
                                        .term = r->term, .reject = true });
        }
        return 0;
    }
    if (vote_request) {
        handle_vote_request(r, m);
        return 0;
    }
    switch (r->role) {
    case RAFT_LEADER:
        step_leader(r, m);
        break;
    case RAFT_CANDIDATE:
    case RAFT_PRE_CANDIDATE:
        step_candidate(r, m);
        break;
    case RAFT_FOLLOWER:
        step_follower(r, m);
        break;
    }
    return 0;
}

const char *raft_msg_type_name(int type)
{
    switch (type) {
    case RAFT_MSG_APPEND: return "append";
    case RAFT_MSG_APPEND_RESP: return "append-resp";
    case RAFT_MSG_VOTE: return "vote";
    case RAFT_MSG_VOTE_RESP: return "vote-resp";
    case RAFT_MSG_PRE_VOTE: return "pre-vote";
    case RAFT_MSG_PRE_VOTE_RESP: return "pre-vote-resp";
    case RAFT_MSG_HEARTBEAT: return "heartbeat";
    case RAFT_MSG_HEARTBEAT_RESP: return "heartbeat-resp";
    case RAFT_MSG_SNAPSHOT: return "snapshot";
    case RAFT_MSG_TIMEOUT_NOW: return "timeout-now";
    case RAFT_MSG_READ_INDEX: return "read-index";
    case RAFT_MSG_READ_INDEX_RESP: return "read-index-resp";
    }
    return "unknown";
}
