/* swim.c - the SWIM + Lifeguard membership core; see swim.h for the
 * protocol and docs/membership.md for the reasoning behind the defaults.
 *
 * Layout of this file:
 *   configuration and construction
 *   outputs, events, updates        (what the core hands back)
 *   member state changes            (alive / suspect / dead rules)
 *   receiving packets and push-pull
 *   the timers: probes, suspicion, gossip, push-pull, reconnect, join
 *   queries */
#include "agent/membership/swim.h"
#include "agent/membership/swim_members.h"
#include "agent/membership/swim_queue.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"

#define MAX_SEEDS       16
#define MAX_RELAYS      32   /* ping-reqs being relayed for others at once */
#define MAX_CONFIRMERS  16   /* distinct accusers remembered per suspicion */
#define MAX_FOLLOW_UPS  3    /* probes of one suspect sent by each member */
#define MAX_OUTPUTS     4096 /* outputs an owner may leave undrained */
#define PUSHPULL_SCALE_THRESHOLD 32

/* A suspicion timer (Lifeguard): starts at max, shrinks toward min as
 * independent confirmations arrive. */
typedef struct {
    char name[SWIM_NAME_CAP];
    uint64_t start_us;
    uint64_t min_us, max_us;
    uint32_t follow_ups;                 /* probes of the suspect we sent ourselves */
    uint64_t next_follow_up_us;
    uint32_t k;                          /* confirmations wanted for min */
    uint32_t confirmations;
    uint32_t accuser_count;
    uint64_t accusers[MAX_CONFIRMERS];   /* name hashes; [0] started it */
} suspicion_t;

/* The probe in flight (one at a time, as in SWIM). */
typedef struct {
    bool active;
    bool indirect_sent;
    uint32_t seq;
    char target[SWIM_NAME_CAP];
    uint64_t indirect_at_us;             /* no ack by then: ask others */
    uint64_t deadline_us;                /* no ack by then: suspect */
    uint32_t nacks_expected, nacks;
} probe_t;

/* A ping we send on another member's behalf (ping-req). */
typedef struct {
    bool used;
    uint32_t seq;                        /* ours, on the ping we sent */
    uint32_t origin_seq;                 /* theirs, for the ack or nack */
    char origin_addr[SWIM_ADDR_CAP];
    uint64_t nack_at_us;
} relay_t;

typedef struct output {
    struct output *next;
    swim_out_kind_t kind;
    char dest[SWIM_ADDR_CAP];
    size_t len;
    uint8_t bytes[];
} output_t;

struct swim {
    swim_config_t cfg;
    rng_t rng;
    uint64_t now;
    member_table_t members;              /* [0] is this member */
    size_t live;                         /* members alive or suspect */
    bool left;
    uint32_t next_seq;
    uint32_t awareness;

    /* probing */
    probe_t probe;
    uint64_t next_probe_us;
    int32_t *probe_order;                /* shuffled member indices */
    size_t probe_len, probe_pos, probe_cap;
    relay_t relays[MAX_RELAYS];

    suspicion_t *suspicions;
    size_t suspicion_count, suspicion_cap;

    update_queue_t updates;
    uint64_t next_gossip_us;
    uint64_t last_pushpull_us;
    uint64_t pushpull_jitter_us;         /* spreads members' rounds apart */

    uint64_t next_stranger_sync_us;
    uint64_t settle_at_us;               /* 0, or when to swap state after joining */

    /* reconnecting to members believed dead */
    uint64_t next_reconnect_us;
    uint32_t reconnect_seq;
    char reconnect_name[SWIM_NAME_CAP];

    /* joining */
    char seeds[MAX_SEEDS][SWIM_ADDR_CAP];
    size_t seed_count;
    uint64_t next_join_us;
    uint64_t join_backoff_us;

    /* outputs and events */
    output_t *out_head, *out_tail, *out_last;
    size_t out_count;
    swim_event_t *events;
    size_t ev_head, ev_count, ev_cap;

    uint8_t *scratch;                    /* cfg.packet_max bytes */
    swim_packet_t packet;                /* decode buffer */
    swim_stats_t stats;
};

/* --- configuration and construction ------------------------------------- */

void swim_config_default(swim_config_t *cfg)
{
    *cfg = (swim_config_t){
        .probe_interval_us = 200000,
        .probe_timeout_us = 100000,
        .indirect_checks = 3,
        .suspicion_mult = 3,
        .suspicion_max_mult = 6,
        .retransmit_mult = 4,
        .retransmit_min = 8,
        .gossip_interval_us = 50000,
        .gossip_nodes = 3,
        .gossip_to_dead_us = 5000000,
        .pushpull_interval_us = 30000000,
        .reconnect_interval_us = 1000000,
        .reap_after_us = 3600ULL * 1000000,
        .join_retry_us = 1000000,
        .join_retry_max_us = 30000000,
        .awareness_max = 8,
        .follow_up_suspects = true,
        .retry_direct = true,
        .catch_up = true,
        .packet_max = 1360,
        .max_members = 8192,
        .max_broadcasts = 4096,
    };
}

void swim_config_memberlist_lan(swim_config_t *cfg)
{
    swim_config_default(cfg);
    cfg->probe_interval_us = 1000000;
    cfg->probe_timeout_us = 500000;
    cfg->suspicion_mult = 4;
    cfg->gossip_interval_us = 200000;
    cfg->gossip_to_dead_us = 30000000;
    cfg->reconnect_interval_us = 0;       /* memberlist has no reconnect */
    cfg->follow_up_suspects = false;      /* nor follow-up probes */
    cfg->retransmit_min = 0;
    cfg->retry_direct = true;             /* stands in for its TCP fallback ping */
    cfg->catch_up = false;
}

static bool valid_str(const char *s, size_t cap)
{
    return s && s[0] && strnlen(s, cap) < cap;
}

static uint64_t scaled(const swim_t *s, uint64_t us)
{
    return us * (s->awareness + 1);
}

static void shuffle_probe_order(swim_t *s);

swim_t *swim_new(const swim_config_t *cfg, const char *name, const char *addr,
                 const swim_record_t *record, uint64_t now_us, uint64_t seed)
{
    if (!valid_str(name, SWIM_NAME_CAP) || !valid_str(addr, SWIM_ADDR_CAP))
        return NULL;
    swim_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (cfg)
        s->cfg = *cfg;
    else
        swim_config_default(&s->cfg);
    if (s->cfg.awareness_max == 0)
        s->cfg.awareness_max = 1;
    if (s->cfg.packet_max < 128)
        s->cfg.packet_max = 128;
    rng_seed(&s->rng, seed);
    s->now = now_us;
    members_init(&s->members);
    uq_init(&s->updates, s->cfg.max_broadcasts);
    s->scratch = malloc(s->cfg.packet_max);

    swim_record_t empty = { 0 };
    uint8_t rec[SWIM_RECORD_MAX];
    size_t rec_len;
    if (!s->scratch || members_add(&s->members, name, addr) != 0 ||
        swim_record_encode(record ? record : &empty, rec, sizeof(rec), &rec_len) < 0 ||
        members_set_record(&s->members.v[0], rec, rec_len) < 0) {
        swim_destroy(&s);
        return NULL;
    }
    s->members.v[0].state_since_us = now_us;
    s->live = 1;
    /* Stagger the periodic work so members started together do not act in step. */
    s->next_probe_us = now_us + rng_below(&s->rng, s->cfg.probe_interval_us + 1);
    s->next_gossip_us = now_us + rng_below(&s->rng, s->cfg.gossip_interval_us + 1);
    s->last_pushpull_us = now_us;
    s->pushpull_jitter_us = rng_below(&s->rng, s->cfg.pushpull_interval_us / 2 + 1);
    s->next_reconnect_us = now_us + s->cfg.reconnect_interval_us;
    return s;
}

void swim_destroy(swim_t **self_p)
{
    swim_t *s = *self_p;
    if (!s)
        return;
    while (s->out_head) {
        output_t *next = s->out_head->next;
        free(s->out_head);
        s->out_head = next;
    }
    free(s->out_last);
    free(s->events);
    free(s->suspicions);
    free(s->probe_order);
    free(s->scratch);
    uq_free(&s->updates);
    members_free(&s->members);
    free(s);
    *self_p = NULL;
}

/* --- outputs, events, updates ------------------------------------------- */

static output_t *queue_output(swim_t *s, swim_out_kind_t kind, const char *dest, size_t len)
{
    if (s->out_count >= MAX_OUTPUTS) {
        s->stats.outputs_dropped++;
        return NULL;
    }
    output_t *o = malloc(sizeof(*o) + len);
    if (!o) {
        s->stats.outputs_dropped++;
        return NULL;
    }
    o->next = NULL;
    o->kind = kind;
    o->len = len;
    snprintf(o->dest, sizeof(o->dest), "%s", dest);
    if (s->out_tail)
        s->out_tail->next = o;
    else
        s->out_head = o;
    s->out_tail = o;
    s->out_count++;
    return o;
}

bool swim_ready(const swim_t *s)
{
    return s->out_head != NULL;
}

bool swim_next_output(swim_t *s, swim_output_t *out)
{
    free(s->out_last);   /* the previous output's bytes were valid until now */
    s->out_last = s->out_head;
    if (!s->out_head)
        return false;
    s->out_head = s->out_head->next;
    if (!s->out_head)
        s->out_tail = NULL;
    s->out_count--;
    output_t *o = s->out_last;
    out->kind = o->kind;
    memcpy(out->dest, o->dest, sizeof(out->dest));
    out->bytes = o->bytes;
    out->len = o->len;
    return true;
}

static void emit(swim_t *s, swim_event_type_t type, const member_t *m)
{
    if (s->ev_count == s->ev_cap) {
        if (s->ev_cap < SWIM_EVENT_QUEUE_MAX) {
            size_t cap = s->ev_cap ? s->ev_cap * 2 : 16;
            swim_event_t *ev = malloc(cap * sizeof(*ev));
            if (ev) {   /* unroll the ring into the new array */
                for (size_t i = 0; i < s->ev_count; i++)
                    ev[i] = s->events[(s->ev_head + i) % s->ev_cap];
                free(s->events);
                s->events = ev;
                s->ev_cap = cap;
                s->ev_head = 0;
            }
        }
        if (s->ev_count == s->ev_cap) {   /* full: the oldest event goes */
            if (!s->ev_cap) {
                s->stats.events_dropped++;
                return;
            }
            s->ev_head = (s->ev_head + 1) % s->ev_cap;
            s->ev_count--;
            s->stats.events_dropped++;
        }
    }
    swim_event_t *ev = &s->events[(s->ev_head + s->ev_count) % s->ev_cap];
    ev->type = type;
    memcpy(ev->name, m->name, sizeof(ev->name));
    memcpy(ev->addr, m->addr, sizeof(ev->addr));
    ev->incarnation = m->incarnation;
    ev->at_us = s->now;
    s->ev_count++;
}

bool swim_next_event(swim_t *s, swim_event_t *ev)
{
    if (!s->ev_count)
        return false;
    *ev = s->events[s->ev_head];
    s->ev_head = (s->ev_head + 1) % s->ev_cap;
    s->ev_count--;
    return true;
}

const char *swim_event_name(swim_event_type_t type)
{
    switch (type) {
    case SWIM_EVENT_JOINED: return "joined";
    case SWIM_EVENT_SUSPECT: return "suspect";
    case SWIM_EVENT_ALIVE: return "alive";
    case SWIM_EVENT_DEAD: return "dead";
    case SWIM_EVENT_LEFT: return "left";
    case SWIM_EVENT_UPDATED: return "updated";
    }
    return "unknown";
}

/* How many times each update is retransmitted: lambda * ceil(log10(n + 1)),
 * with a floor: in small clusters the formula gives so few copies that a
 * member misses a death now and then and has to find it out alone. */
static uint32_t retransmit_limit(const swim_t *s)
{
    double scale = ceil(log10((double)s->live + 1.0));
    uint32_t limit = s->cfg.retransmit_mult * (uint32_t)(scale < 1 ? 1 : scale);
    return limit > s->cfg.retransmit_min ? limit : s->cfg.retransmit_min;
}

/* Queues a membership update for dissemination. */
static void disseminate(swim_t *s, const swim_msg_t *msg)
{
    uint8_t buf[SWIM_RECORD_MAX + 2 * SWIM_NAME_CAP + SWIM_ADDR_CAP + 32];
    size_t len;
    if (swim_msg_encode(msg, buf, sizeof(buf), &len) == 0)
        uq_push(&s->updates, msg->node, buf, len);
    s->stats.broadcasts_dropped = s->updates.dropped;
}

/* Sends one packet to `dest`: the given messages first, then as many queued
 * updates as fit. With no messages of its own (a gossip round) nothing is
 * sent unless an update went in. Returns the number of updates added. */
static size_t send_packet(swim_t *s, const char *dest, const swim_msg_t *msgs, size_t n)
{
    swim_packet_builder_t b;
    if (swim_packet_begin(&b, s->scratch, s->cfg.packet_max, s->members.v[0].name) < 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t buf[SWIM_RECORD_MAX + 2 * SWIM_NAME_CAP + SWIM_ADDR_CAP + 32];
        size_t len;
        if (swim_msg_encode(&msgs[i], buf, sizeof(buf), &len) == 0)
            swim_packet_add(&b, buf, len);
    }
    size_t added = uq_fill(&s->updates, &b, retransmit_limit(s));
    if (n == 0 && added == 0)
        return 0;
    size_t len = swim_packet_len(&b);
    output_t *o = queue_output(s, SWIM_OUT_UDP, dest, len);
    if (o) {
        memcpy(o->bytes, s->scratch, len);
        s->stats.packets_out++;
        s->stats.bytes_out += len;
    }
    return added;
}

static swim_msg_t alive_msg(const member_t *m)
{
    swim_msg_t msg = { .type = SWIM_MSG_ALIVE, .incarnation = m->incarnation,
                       .record = m->record, .record_len = m->record_len };
    memcpy(msg.node, m->name, sizeof(msg.node));
    memcpy(msg.addr, m->addr, sizeof(msg.addr));
    return msg;
}

static swim_msg_t accusation(swim_msg_type_t type, const char *node, uint64_t inc,
                             const char *from)
{
    swim_msg_t msg = { .type = type, .incarnation = inc };
    snprintf(msg.node, sizeof(msg.node), "%s", node);
    snprintf(msg.from, sizeof(msg.from), "%s", from);
    return msg;
}

/* Sends the full state to `dest` as a push-pull payload. */
static void send_pushpull(swim_t *s, const char *dest, bool wants_reply)
{
    const member_table_t *t = &s->members;
    size_t budget = 256, count = 0;
    for (; count < t->count && count < SWIM_PUSHPULL_MAX_MEMBERS; count++) {
        const member_t *m = &t->v[count];
        swim_pp_member_t pm = { .record_len = m->record_len };
        memcpy(pm.name, m->name, sizeof(pm.name));
        memcpy(pm.addr, m->addr, sizeof(pm.addr));
        size_t size = swim_pushpull_member_size(&pm);
        if (budget + size > SWIM_PUSHPULL_MAX_BYTES)
            break;
        budget += size;
    }
    output_t *o = queue_output(s, SWIM_OUT_PUSHPULL, dest, budget);
    if (!o)
        return;
    wire_writer_t w;
    wire_writer_init(&w, o->bytes, budget);
    swim_pushpull_write_header(&w, t->v[0].name, t->v[0].addr, wants_reply, (uint32_t)count);
    for (size_t i = 0; i < count; i++) {
        const member_t *m = &t->v[i];
        swim_pp_member_t pm = { .state = m->state, .incarnation = m->incarnation,
                                .record = m->record, .record_len = m->record_len };
        memcpy(pm.name, m->name, sizeof(pm.name));
        memcpy(pm.addr, m->addr, sizeof(pm.addr));
        swim_pushpull_write_member(&w, &pm);
    }
    o->len = w.len;   /* the budget was an upper bound */
    s->stats.pushpulls_out++;
}

/* --- member state changes ----------------------------------------------- */

static bool is_live(swim_state_t state)
{
    return state == SWIM_ALIVE || state == SWIM_SUSPECT;
}

static void set_state(swim_t *s, member_t *m, swim_state_t state)
{
    if (is_live(m->state) && !is_live(state))
        s->live--;
    else if (!is_live(m->state) && is_live(state))
        s->live++;
    if (m->state != state)
        m->state_since_us = s->now;
    m->state = state;
}

static void awareness_delta(swim_t *s, int delta)
{
    int64_t a = (int64_t)s->awareness + delta;
    if (a < 0)
        a = 0;
    if (a > (int64_t)s->cfg.awareness_max - 1)
        a = s->cfg.awareness_max - 1;
    s->awareness = (uint32_t)a;
}

static suspicion_t *find_suspicion(swim_t *s, const char *name)
{
    for (size_t i = 0; i < s->suspicion_count; i++)
        if (strcmp(s->suspicions[i].name, name) == 0)
            return &s->suspicions[i];
    return NULL;
}

static void clear_suspicion(swim_t *s, const char *name)
{
    suspicion_t *sp = find_suspicion(s, name);
    if (sp)
        *sp = s->suspicions[--s->suspicion_count];
}

uint64_t swim_suspicion_timeout(uint64_t min_us, uint64_t max_us, uint32_t k, uint32_t c)
{
    if (k == 0 || max_us <= min_us)
        return min_us;
    double frac = log((double)c + 1.0) / log((double)k + 1.0);
    double t = (double)max_us - frac * (double)(max_us - min_us);
    return t < (double)min_us ? min_us : (uint64_t)t;
}

static void start_suspicion(swim_t *s, const member_t *m, const char *accuser)
{
    if (s->suspicion_count == s->suspicion_cap) {
        size_t cap = s->suspicion_cap ? s->suspicion_cap * 2 : 8;
        suspicion_t *v = realloc(s->suspicions, cap * sizeof(*v));
        if (!v)
            return;   /* no timer: the member stays suspect until refuted */
        s->suspicions = v;
        s->suspicion_cap = cap;
    }
    /* Confirmations we can hope for: Lifeguard's K = mult - 2, unless the
     * cluster is too small to provide them (minus us and the suspect). */
    uint32_t k = s->cfg.suspicion_mult > 2 ? s->cfg.suspicion_mult - 2 : 0;
    if (s->live < (size_t)k + 2)
        k = 0;
    double scale = log10(s->live > 1 ? (double)s->live : 1.0);
    if (scale < 1.0)
        scale = 1.0;
    uint64_t min = (uint64_t)(s->cfg.suspicion_mult * scale * (double)s->cfg.probe_interval_us);
    suspicion_t *sp = &s->suspicions[s->suspicion_count++];
    memset(sp, 0, sizeof(*sp));
    memcpy(sp->name, m->name, sizeof(sp->name));
    sp->start_us = s->now;
    sp->min_us = min;
    sp->max_us = min * s->cfg.suspicion_max_mult;
    sp->k = k;
    sp->accusers[0] = members_hash(accuser);
    sp->accuser_count = 1;
    if (strcmp(accuser, s->members.v[0].name) == 0) {   /* our own probe just failed */
        sp->follow_ups = 1;
        sp->next_follow_up_us = s->now + 2 * s->cfg.probe_interval_us;
    }
}

/* Counts an independent confirmation; true if it was new. */
static bool confirm_suspicion(suspicion_t *sp, const char *accuser)
{
    if (sp->confirmations >= sp->k)
        return false;
    uint64_t h = members_hash(accuser);
    for (uint32_t i = 0; i < sp->accuser_count; i++)
        if (sp->accusers[i] == h)
            return false;
    if (sp->accuser_count < MAX_CONFIRMERS)
        sp->accusers[sp->accuser_count++] = h;
    sp->confirmations++;
    return true;
}

static void refute(swim_t *s, uint64_t accused_incarnation)
{
    member_t *me = &s->members.v[0];
    uint64_t inc = me->incarnation + 1;
    if (accused_incarnation >= inc)
        inc = accused_incarnation + 1;
    me->incarnation = inc;
    awareness_delta(s, +1);   /* Lifeguard: being suspected hints we are slow */
    s->stats.refutations++;
    swim_msg_t msg = alive_msg(me);
    disseminate(s, &msg);
}

/* Someone accuses us at an incarnation we already outbid: they missed our
 * refutation. Gossip our current alive again (without a new incarnation) so
 * it reaches them, first of all on the ack to their probe. */
static void reannounce(swim_t *s)
{
    if (!s->cfg.follow_up_suspects || s->left)
        return;
    swim_msg_t msg = alive_msg(&s->members.v[0]);
    disseminate(s, &msg);
}

/* Someone accuses a member we know has left: they missed the leave. Tell
 * it again rather than let them bury the member as failed. */
static void repeat_leave(swim_t *s, const member_t *m)
{
    if (!s->cfg.follow_up_suspects)
        return;
    swim_msg_t msg = accusation(SWIM_MSG_DEAD, m->name, m->incarnation, m->name);
    disseminate(s, &msg);
}

/* Inserts a new member into the remaining part of the probe round at a
 * random place, so it is probed soon but not by everyone at once. */
static void add_to_probe_order(swim_t *s, int32_t index)
{
    if (s->probe_len == s->probe_cap) {
        size_t cap = s->probe_cap ? s->probe_cap * 2 : 16;
        int32_t *v = realloc(s->probe_order, cap * sizeof(*v));
        if (!v)
            return;   /* it joins the order at the next shuffle */
        s->probe_order = v;
        s->probe_cap = cap;
    }
    size_t at = s->probe_pos + rng_below(&s->rng, s->probe_len - s->probe_pos + 1);
    memmove(&s->probe_order[at + 1], &s->probe_order[at],
            (s->probe_len - at) * sizeof(int32_t));
    s->probe_order[at] = index;
    s->probe_len++;
}

static bool record_valid(const uint8_t *record, size_t len)
{
    swim_record_t r;
    return swim_record_decode(record, len, &r, NULL, NULL) == 0;
}

static bool same_record(const member_t *m, const uint8_t *record, size_t len)
{
    return m->record_len == len && (len == 0 || memcmp(m->record, record, len) == 0);
}

/* `quiet`: the news came in a push-pull from someone else's full state.
 * A member new to us there is old news to the cluster (a joiner downloading
 * the member list learns everyone at once), so it is not gossiped again. */
static void on_alive(swim_t *s, const swim_msg_t *msg, bool quiet)
{
    int32_t i = members_find(&s->members, msg->node);
    if (i == 0) {
        member_t *me = &s->members.v[0];
        if (s->left || msg->incarnation < me->incarnation)
            return;
        if (msg->incarnation == me->incarnation && strcmp(msg->addr, me->addr) == 0 &&
            same_record(me, msg->record, msg->record_len))
            return;   /* our own news coming back */
        /* Someone speaks for us with a newer or different story (a previous
         * life of ours, or a name clash): outbid it. */
        refute(s, msg->incarnation);
        return;
    }
    if (!record_valid(msg->record, msg->record_len)) {
        s->stats.packets_bad++;
        return;
    }
    if (i < 0) {
        if (s->members.count >= s->cfg.max_members) {
            s->stats.members_rejected++;
            return;
        }
        i = members_add(&s->members, msg->node, msg->addr);
        if (i < 0)
            return;
        member_t *m = &s->members.v[i];
        m->incarnation = msg->incarnation;
        m->state_since_us = s->now;
        s->live++;
        if (members_set_record(m, msg->record, msg->record_len) < 0) {
            members_remove(&s->members, (size_t)i);
            s->live--;
            return;
        }
        add_to_probe_order(s, i);
        if (!quiet)
            disseminate(s, msg);
        emit(s, SWIM_EVENT_JOINED, m);
        return;
    }
    member_t *m = &s->members.v[i];
    bool new_addr = strcmp(m->addr, msg->addr) != 0;
    if (new_addr && is_live(m->state)) {
        /* Two live members claim one name: keep the one we know. */
        s->stats.address_conflicts++;
        return;
    }
    /* A dead or departed member may come back at a new address, even with
     * a fresh (lower) incarnation after a restart. */
    if (!new_addr && msg->incarnation <= m->incarnation)
        return;
    swim_state_t old = m->state;
    bool record_changed = !same_record(m, msg->record, msg->record_len);
    if (record_changed && members_set_record(m, msg->record, msg->record_len) < 0)
        return;
    m->incarnation = msg->incarnation;
    snprintf(m->addr, sizeof(m->addr), "%s", msg->addr);
    clear_suspicion(s, m->name);
    set_state(s, m, SWIM_ALIVE);
    disseminate(s, msg);
    if (old == SWIM_DEAD || old == SWIM_LEFT)
        emit(s, SWIM_EVENT_JOINED, m);
    else if (old == SWIM_SUSPECT)
        emit(s, SWIM_EVENT_ALIVE, m);
    if (is_live(old) && (record_changed || new_addr))
        emit(s, SWIM_EVENT_UPDATED, m);
}

static void on_suspect(swim_t *s, const swim_msg_t *msg)
{
    int32_t i = members_find(&s->members, msg->node);
    if (i < 0)
        return;
    member_t *m = &s->members.v[i];
    if (msg->incarnation < m->incarnation) {
        if (i == 0)
            reannounce(s);
        return;
    }
    suspicion_t *sp = find_suspicion(s, m->name);
    if (sp) {
        /* Already suspect: a new accuser is an independent confirmation,
         * worth passing on so others can count it too. */
        if (confirm_suspicion(sp, msg->from))
            disseminate(s, msg);
        return;
    }
    if (m->state == SWIM_LEFT) {
        repeat_leave(s, m);
        return;
    }
    if (m->state != SWIM_ALIVE)
        return;
    if (i == 0) {
        if (!s->left)
            refute(s, msg->incarnation);
        return;
    }
    disseminate(s, msg);
    m->incarnation = msg->incarnation;
    set_state(s, m, SWIM_SUSPECT);
    start_suspicion(s, m, msg->from);
    emit(s, SWIM_EVENT_SUSPECT, m);
}

static void on_dead(swim_t *s, const swim_msg_t *msg)
{
    int32_t i = members_find(&s->members, msg->node);
    if (i < 0)
        return;
    member_t *m = &s->members.v[i];
    if (msg->incarnation < m->incarnation) {
        if (i == 0)
            reannounce(s);
        return;
    }
    if (i == 0 && !s->left) {
        refute(s, msg->incarnation);
        return;
    }
    clear_suspicion(s, m->name);
    if (m->state == SWIM_LEFT && strcmp(msg->from, msg->node) != 0)
        repeat_leave(s, m);
    if (m->state == SWIM_DEAD || m->state == SWIM_LEFT)
        return;
    disseminate(s, msg);
    m->incarnation = msg->incarnation;
    bool left = strcmp(msg->from, msg->node) == 0;
    set_state(s, m, left ? SWIM_LEFT : SWIM_DEAD);
    emit(s, left ? SWIM_EVENT_LEFT : SWIM_EVENT_DEAD, m);
}

/* --- receiving ---------------------------------------------------------- */

static void finish_probe(swim_t *s, bool acked);

static void on_ping(swim_t *s, const char *from_addr, const swim_msg_t *msg)
{
    /* A ping for another name reached us: an address was reused. Stay quiet
     * so the sender does not take us for the member it meant. */
    if (strcmp(msg->node, s->members.v[0].name) != 0)
        return;
    swim_msg_t ack = { .type = SWIM_MSG_ACK, .seq = msg->seq };
    send_packet(s, from_addr, &ack, 1);
}

static void on_ping_req(swim_t *s, const char *from_addr, const swim_msg_t *msg)
{
    if (strcmp(msg->node, s->members.v[0].name) == 0)
        return;
    relay_t *slot = &s->relays[0];
    for (size_t i = 0; i < MAX_RELAYS; i++) {
        if (!s->relays[i].used) {
            slot = &s->relays[i];
            break;
        }
        if (s->relays[i].nack_at_us < slot->nack_at_us)
            slot = &s->relays[i];   /* all busy: reuse the oldest */
    }
    *slot = (relay_t){ .used = true, .seq = s->next_seq++, .origin_seq = msg->seq,
                       /* answer well before the origin gives up (it waits
                        * probe_interval, at least twice the timeout) */
                       .nack_at_us = s->now + s->cfg.probe_timeout_us * 4 / 5 };
    snprintf(slot->origin_addr, sizeof(slot->origin_addr), "%s", from_addr);
    swim_msg_t ping = { .type = SWIM_MSG_PING, .seq = slot->seq };
    memcpy(ping.node, msg->node, sizeof(ping.node));
    send_packet(s, msg->addr, &ping, 1);
}

static void on_ack(swim_t *s, const swim_msg_t *msg)
{
    if (s->probe.active && msg->seq == s->probe.seq) {
        finish_probe(s, true);
        return;
    }
    for (size_t i = 0; i < MAX_RELAYS; i++) {
        relay_t *r = &s->relays[i];
        if (r->used && r->seq == msg->seq) {
            swim_msg_t ack = { .type = SWIM_MSG_ACK, .seq = r->origin_seq };
            r->used = false;
            send_packet(s, r->origin_addr, &ack, 1);
            return;
        }
    }
    if (s->reconnect_name[0] && msg->seq == s->reconnect_seq) {
        /* A member we thought dead answers: swap state so it can refute. */
        int32_t i = members_find(&s->members, s->reconnect_name);
        if (i > 0)
            send_pushpull(s, s->members.v[i].addr, true);
        s->reconnect_name[0] = '\0';
    }
}

static void on_nack(swim_t *s, const swim_msg_t *msg)
{
    if (s->probe.active && msg->seq == s->probe.seq)
        s->probe.nacks++;
}

/* A packet from someone we do not know, or believe dead: one of us missed
 * news. Swap state with it (rate-limited) rather than wait for anti-entropy. */
static void sync_stranger(swim_t *s, const char *sender, const char *from_addr)
{
    if (!s->cfg.catch_up || s->left || s->now < s->next_stranger_sync_us)
        return;
    int32_t i = members_find(&s->members, sender);
    if (i >= 0 && s->members.v[i].state != SWIM_DEAD)
        return;
    s->next_stranger_sync_us = s->now + s->cfg.probe_interval_us;
    send_pushpull(s, from_addr, true);
}

int swim_receive(swim_t *s, uint64_t now_us, const char *from_addr,
                 const uint8_t *bytes, size_t len)
{
    if (now_us > s->now)
        s->now = now_us;
    s->stats.packets_in++;
    swim_decode_error_t err;
    if (!from_addr || !from_addr[0] || len > s->cfg.packet_max ||
        swim_packet_decode(bytes, len, &s->packet, &err) < 0) {
        s->stats.packets_bad++;
        return -EBADMSG;
    }
    if (strcmp(s->packet.sender, s->members.v[0].name) == 0)
        return 0;   /* our own packet, echoed */
    sync_stranger(s, s->packet.sender, from_addr);
    /* Membership updates first, so that an ack we send back already
     * carries what they taught us (above all, our refutation of an
     * accusation that came with the ping). */
    for (size_t i = 0; i < s->packet.count; i++) {
        const swim_msg_t *msg = &s->packet.msgs[i];
        switch (msg->type) {
        case SWIM_MSG_ALIVE: on_alive(s, msg, false); break;
        case SWIM_MSG_SUSPECT: on_suspect(s, msg); break;
        case SWIM_MSG_DEAD: on_dead(s, msg); break;
        default: break;
        }
    }
    for (size_t i = 0; i < s->packet.count; i++) {
        const swim_msg_t *msg = &s->packet.msgs[i];
        switch (msg->type) {
        case SWIM_MSG_PING: on_ping(s, from_addr, msg); break;
        case SWIM_MSG_PING_REQ: on_ping_req(s, from_addr, msg); break;
        case SWIM_MSG_ACK: on_ack(s, msg); break;
        case SWIM_MSG_NACK: on_nack(s, msg); break;
        default: break;
        }
    }
    return 0;
}

int swim_receive_pushpull(swim_t *s, uint64_t now_us, const char *from_addr,
                          const uint8_t *bytes, size_t len)
{
    if (now_us > s->now)
        s->now = now_us;
    swim_pushpull_reader_t pr;
    swim_pp_member_t pm;
    swim_decode_error_t err;
    int rc;
    /* Validate the whole payload before applying any of it. */
    if (swim_pushpull_open(&pr, bytes, len, &err) < 0)
        goto bad;
    while ((rc = swim_pushpull_next(&pr, &pm, &err)) == 1)
        ;
    if (rc < 0)
        goto bad;
    if (strcmp(pr.sender, s->members.v[0].name) == 0)
        return 0;
    s->stats.pushpulls_in++;
    /* The answer to our join: others are joining too; ask again shortly. */
    if (s->cfg.catch_up && !pr.wants_reply && s->live <= 1)
        s->settle_at_us = s->now + 1000000;

    swim_pushpull_open(&pr, bytes, len, &err);
    while (swim_pushpull_next(&pr, &pm, &err) == 1) {
        swim_msg_t msg = { .incarnation = pm.incarnation, .record = pm.record,
                           .record_len = pm.record_len };
        memcpy(msg.node, pm.name, sizeof(msg.node));
        memcpy(msg.addr, pm.addr, sizeof(msg.addr));
        switch (pm.state) {
        case SWIM_ALIVE:
            msg.type = SWIM_MSG_ALIVE;
            on_alive(s, &msg, strcmp(pm.name, pr.sender) != 0);
            break;
        case SWIM_SUSPECT:
        case SWIM_DEAD:
            /* Someone else's verdict of death is only a suspicion here:
             * that gives a wrongly buried member time to refute. */
            msg.type = SWIM_MSG_SUSPECT;
            memcpy(msg.from, pr.sender, sizeof(msg.from));
            on_suspect(s, &msg);
            break;
        case SWIM_LEFT:
            msg.type = SWIM_MSG_DEAD;
            memcpy(msg.from, pm.name, sizeof(msg.from));
            on_dead(s, &msg);
            break;
        }
    }
    if (pr.wants_reply)
        send_pushpull(s, pr.sender_addr, false);
    return 0;
bad:
    s->stats.packets_bad++;
    return -EBADMSG;
}

/* --- timers ------------------------------------------------------------- */

typedef bool (*member_filter_t)(const swim_t *s, const member_t *m, const void *ctx);

/* Picks up to k distinct random members that pass the filter. Small
 * clusters are sampled exactly; large ones by random draws, at most 3n. */
static size_t pick_members(swim_t *s, size_t k, member_filter_t ok, const void *ctx,
                           int32_t *out)
{
    const member_table_t *t = &s->members;
    size_t found = 0;
    if (t->count <= 64) {
        size_t seen = 0;   /* reservoir sampling */
        for (size_t i = 0; i < t->count; i++) {
            if (!ok(s, &t->v[i], ctx))
                continue;
            if (found < k) {
                out[found++] = (int32_t)i;
            } else {
                uint64_t j = rng_below(&s->rng, seen + 1);
                if (j < k)
                    out[j] = (int32_t)i;
            }
            seen++;
        }
        return found;
    }
    for (size_t tries = 0; tries < 3 * t->count && found < k; tries++) {
        int32_t i = (int32_t)rng_below(&s->rng, t->count);
        if (!ok(s, &t->v[i], ctx))
            continue;
        bool dup = false;
        for (size_t j = 0; j < found; j++)
            dup |= out[j] == i;
        if (!dup)
            out[found++] = i;
    }
    return found;
}

static bool relay_candidate(const swim_t *s, const member_t *m, const void *target)
{
    return m != &s->members.v[0] && m->state == SWIM_ALIVE && strcmp(m->name, target) != 0;
}

static bool gossip_candidate(const swim_t *s, const member_t *m, const void *ctx)
{
    if (m == &s->members.v[0])
        return false;
    if (is_live(m->state))
        return true;
    return m->state == SWIM_DEAD && s->now - m->state_since_us < s->cfg.gossip_to_dead_us;
}

static bool pushpull_candidate(const swim_t *s, const member_t *m, const void *ctx)
{
    return m != &s->members.v[0] && m->state == SWIM_ALIVE;
}

static bool reconnect_candidate(const swim_t *s, const member_t *m, const void *ctx)
{
    return m != &s->members.v[0] && m->state == SWIM_DEAD;
}

static void shuffle_probe_order(swim_t *s)
{
    /* Reap the long dead first: they are never probed again. */
    for (size_t i = 1; i < s->members.count;) {
        const member_t *m = &s->members.v[i];
        if (!is_live(m->state) && s->now - m->state_since_us >= s->cfg.reap_after_us)
            members_remove(&s->members, i);
        else
            i++;
    }
    size_t n = s->members.count;
    if (n > s->probe_cap) {
        int32_t *v = realloc(s->probe_order, n * sizeof(*v));
        if (!v)
            return;
        s->probe_order = v;
        s->probe_cap = n;
    }
    s->probe_len = 0;
    for (size_t i = 1; i < n; i++)
        s->probe_order[s->probe_len++] = (int32_t)i;
    for (size_t i = s->probe_len; i > 1; i--) {   /* Fisher-Yates */
        size_t j = rng_below(&s->rng, i);
        int32_t tmp = s->probe_order[i - 1];
        s->probe_order[i - 1] = s->probe_order[j];
        s->probe_order[j] = tmp;
    }
    s->probe_pos = 0;
}

/* The next live member in the probe round, or -1 if there is none. */
static int32_t next_probe_target(swim_t *s)
{
    for (size_t checked = 0; checked <= s->members.count; checked++) {
        if (s->probe_pos >= s->probe_len)
            shuffle_probe_order(s);
        if (s->probe_pos >= s->probe_len)
            return -1;
        int32_t i = s->probe_order[s->probe_pos++];
        if (i > 0 && (size_t)i < s->members.count && is_live(s->members.v[i].state))
            return i;
    }
    return -1;
}

/* A suspect due for a probe of our own, or -1. Each member probes each
 * suspect up to MAX_FOLLOW_UPS times, two probe intervals apart. */
static int32_t follow_up_target(swim_t *s)
{
    if (!s->cfg.follow_up_suspects)
        return -1;
    for (size_t j = 0; j < s->suspicion_count; j++) {
        suspicion_t *sp = &s->suspicions[j];
        if (sp->follow_ups >= MAX_FOLLOW_UPS || s->now < sp->next_follow_up_us)
            continue;
        sp->follow_ups++;
        sp->next_follow_up_us = s->now + 2 * s->cfg.probe_interval_us;
        int32_t i = members_find(&s->members, sp->name);
        if (i > 0 && s->members.v[i].state == SWIM_SUSPECT)
            return i;
    }
    return -1;
}

/* Pings a member; a suspect also gets the accusation, so that it can
 * refute at once and its refutation rides back on the ack. */
static void send_ping(swim_t *s, const member_t *m, uint32_t seq)
{
    swim_msg_t msgs[2] = { { .type = SWIM_MSG_PING, .seq = seq } };
    memcpy(msgs[0].node, m->name, sizeof(msgs[0].node));
    size_t n = 1;
    if (m->state == SWIM_SUSPECT)
        msgs[n++] = accusation(SWIM_MSG_SUSPECT, m->name, m->incarnation, s->members.v[0].name);
    send_packet(s, m->addr, msgs, n);
}

static void start_probe(swim_t *s)
{
    s->next_probe_us = s->now + scaled(s, s->cfg.probe_interval_us);
    int32_t i = follow_up_target(s);
    if (i < 0)
        i = next_probe_target(s);
    if (i < 0)
        return;
    const member_t *m = &s->members.v[i];
    s->probe = (probe_t){ .active = true, .seq = s->next_seq++,
                          .indirect_at_us = s->now + scaled(s, s->cfg.probe_timeout_us),
                          .deadline_us = s->next_probe_us };
    memcpy(s->probe.target, m->name, sizeof(s->probe.target));
    s->stats.probes++;
    send_ping(s, m, s->probe.seq);
}

static void send_indirect_probes(swim_t *s)
{
    s->probe.indirect_sent = true;
    int32_t target = members_find(&s->members, s->probe.target);
    if (target < 0)
        return;
    int32_t relays[16];
    size_t k = s->cfg.indirect_checks < 16 ? s->cfg.indirect_checks : 16;
    size_t n = pick_members(s, k, relay_candidate, s->probe.target, relays);
    swim_msg_t req = { .type = SWIM_MSG_PING_REQ, .seq = s->probe.seq };
    memcpy(req.node, s->probe.target, sizeof(req.node));
    memcpy(req.addr, s->members.v[target].addr, sizeof(req.addr));
    for (size_t i = 0; i < n; i++)
        send_packet(s, s->members.v[relays[i]].addr, &req, 1);
    s->probe.nacks_expected = (uint32_t)n;
    if (!s->cfg.retry_direct)
        return;
    /* Also retry the target directly: one lost datagram should not be
     * enough to make a healthy member suspect when the relays are unlucky. */
    send_ping(s, &s->members.v[target], s->probe.seq);
}

static void finish_probe(swim_t *s, bool acked)
{
    probe_t p = s->probe;
    s->probe.active = false;
    if (acked) {
        awareness_delta(s, -1);
        return;
    }
    s->stats.probes_failed++;
    /* Lifeguard: relays that failed to nack suggest the problem is ours. */
    if (p.nacks_expected == 0)
        awareness_delta(s, +1);
    else if (p.nacks < p.nacks_expected)
        awareness_delta(s, (int)(p.nacks_expected - p.nacks));
    int32_t i = members_find(&s->members, p.target);
    if (i <= 0 || !is_live(s->members.v[i].state))
        return;
    s->stats.suspicions++;
    swim_msg_t msg = accusation(SWIM_MSG_SUSPECT, p.target, s->members.v[i].incarnation,
                                s->members.v[0].name);
    on_suspect(s, &msg);
}

static void check_suspicions(swim_t *s)
{
    for (size_t i = 0; i < s->suspicion_count;) {
        suspicion_t *sp = &s->suspicions[i];
        uint64_t timeout = swim_suspicion_timeout(sp->min_us, sp->max_us, sp->k,
                                                  sp->confirmations);
        if (s->now - sp->start_us < timeout) {
            i++;
            continue;
        }
        int32_t m = members_find(&s->members, sp->name);
        if (m <= 0 || s->members.v[m].state != SWIM_SUSPECT) {
            clear_suspicion(s, sp->name);
            continue;
        }
        s->stats.deaths_declared++;
        swim_msg_t msg = accusation(SWIM_MSG_DEAD, sp->name, s->members.v[m].incarnation,
                                    s->members.v[0].name);
        on_dead(s, &msg);   /* clears this suspicion; the same slot is re-examined */
    }
}

static void check_relays(swim_t *s)
{
    for (size_t i = 0; i < MAX_RELAYS; i++) {
        relay_t *r = &s->relays[i];
        if (r->used && s->now >= r->nack_at_us) {
            r->used = false;
            swim_msg_t nack = { .type = SWIM_MSG_NACK, .seq = r->origin_seq };
            send_packet(s, r->origin_addr, &nack, 1);
        }
    }
}

static void gossip_round(swim_t *s)
{
    s->next_gossip_us = s->now + s->cfg.gossip_interval_us;
    if (uq_count(&s->updates) == 0)
        return;
    int32_t targets[16];
    size_t k = s->cfg.gossip_nodes < 16 ? s->cfg.gossip_nodes : 16;
    size_t n = pick_members(s, k, gossip_candidate, NULL, targets);
    for (size_t i = 0; i < n; i++)
        if (send_packet(s, s->members.v[targets[i]].addr, NULL, 0) == 0)
            break;   /* nothing left to tell */
}

static uint64_t pushpull_interval(const swim_t *s)
{
    uint64_t interval = s->cfg.pushpull_interval_us;
    if (s->live <= PUSHPULL_SCALE_THRESHOLD)
        return interval;
    double mult = ceil(log2((double)s->live) - log2(PUSHPULL_SCALE_THRESHOLD)) + 1.0;
    return interval * (uint64_t)mult;
}

/* Rounds follow the previous one by the interval for the current size of
 * the cluster, less a fixed per-member jitter. */
static uint64_t next_pushpull(const swim_t *s)
{
    uint64_t interval = pushpull_interval(s);
    uint64_t jitter = s->pushpull_jitter_us < interval / 2 ? s->pushpull_jitter_us : interval / 2;
    return s->last_pushpull_us + interval - jitter;
}

static void pushpull_round(swim_t *s)
{
    s->last_pushpull_us = s->now;
    int32_t peer;
    if (pick_members(s, 1, pushpull_candidate, NULL, &peer) == 1)
        send_pushpull(s, s->members.v[peer].addr, true);
}

static void reconnect_round(swim_t *s)
{
    s->next_reconnect_us = s->now + s->cfg.reconnect_interval_us;
    int32_t peer;
    if (pick_members(s, 1, reconnect_candidate, NULL, &peer) != 1)
        return;
    const member_t *m = &s->members.v[peer];
    s->reconnect_seq = s->next_seq++;
    memcpy(s->reconnect_name, m->name, sizeof(s->reconnect_name));
    swim_msg_t ping = { .type = SWIM_MSG_PING, .seq = s->reconnect_seq };
    memcpy(ping.node, m->name, sizeof(ping.node));
    send_packet(s, m->addr, &ping, 1);
}

static void join_round(swim_t *s)
{
    for (size_t i = 0; i < s->seed_count; i++)
        send_pushpull(s, s->seeds[i], true);
    s->next_join_us = s->now + s->join_backoff_us;
    s->join_backoff_us *= 2;
    if (s->join_backoff_us > s->cfg.join_retry_max_us)
        s->join_backoff_us = s->cfg.join_retry_max_us;
}

void swim_tick(swim_t *s, uint64_t now_us)
{
    if (now_us > s->now)
        s->now = now_us;
    check_relays(s);
    if (!s->left) {
        if (s->probe.active && !s->probe.indirect_sent && s->now >= s->probe.indirect_at_us)
            send_indirect_probes(s);
        if (s->probe.active && s->now >= s->probe.deadline_us)
            finish_probe(s, false);
        if (!s->probe.active && s->now >= s->next_probe_us)
            start_probe(s);
    }
    check_suspicions(s);
    if (s->cfg.gossip_interval_us && s->now >= s->next_gossip_us)
        gossip_round(s);
    if (s->left)
        return;
    if (s->cfg.pushpull_interval_us && s->now >= next_pushpull(s))
        pushpull_round(s);
    if (s->cfg.reconnect_interval_us && s->now >= s->next_reconnect_us)
        reconnect_round(s);
    if (s->settle_at_us && s->now >= s->settle_at_us) {
        s->settle_at_us = 0;
        int32_t peer;
        if (pick_members(s, 1, pushpull_candidate, NULL, &peer) == 1)
            send_pushpull(s, s->members.v[peer].addr, true);
    }
    if (s->seed_count && s->live <= 1 && s->now >= s->next_join_us)
        join_round(s);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

uint64_t swim_next_deadline(const swim_t *s)
{
    uint64_t t = UINT64_MAX;
    for (size_t i = 0; i < MAX_RELAYS; i++)
        if (s->relays[i].used)
            t = min_u64(t, s->relays[i].nack_at_us);
    for (size_t i = 0; i < s->suspicion_count; i++) {
        const suspicion_t *sp = &s->suspicions[i];
        t = min_u64(t, sp->start_us + swim_suspicion_timeout(sp->min_us, sp->max_us, sp->k,
                                                             sp->confirmations));
    }
    if (s->cfg.gossip_interval_us && uq_count(&s->updates))
        t = min_u64(t, s->next_gossip_us);
    if (s->left)
        return t;
    if (s->probe.active)
        t = min_u64(t, s->probe.indirect_sent ? s->probe.deadline_us : s->probe.indirect_at_us);
    else
        t = min_u64(t, s->next_probe_us);
    if (s->cfg.pushpull_interval_us)
        t = min_u64(t, next_pushpull(s));
    if (s->cfg.reconnect_interval_us)
        t = min_u64(t, s->next_reconnect_us);
    if (s->settle_at_us)
        t = min_u64(t, s->settle_at_us);
    if (s->seed_count && s->live <= 1)
        t = min_u64(t, s->next_join_us);
    return t;
}

/* --- commands ----------------------------------------------------------- */

int swim_join(swim_t *s, uint64_t now_us, const char *const *seeds, size_t count)
{
    if (now_us > s->now)
        s->now = now_us;
    if (count > MAX_SEEDS)
        return -EINVAL;
    for (size_t i = 0; i < count; i++)
        if (!valid_str(seeds[i], SWIM_ADDR_CAP))
            return -EINVAL;
    s->seed_count = 0;
    for (size_t i = 0; i < count; i++)
        if (strcmp(seeds[i], s->members.v[0].addr) != 0)
            snprintf(s->seeds[s->seed_count++], SWIM_ADDR_CAP, "%s", seeds[i]);
    s->join_backoff_us = s->cfg.join_retry_us ? s->cfg.join_retry_us : 1000000;
    join_round(s);
    return 0;
}

int swim_leave(swim_t *s, uint64_t now_us)
{
    if (now_us > s->now)
        s->now = now_us;
    if (s->left)
        return 0;
    s->left = true;
    s->probe.active = false;
    member_t *me = &s->members.v[0];
    swim_msg_t msg = accusation(SWIM_MSG_DEAD, me->name, me->incarnation, me->name);
    on_dead(s, &msg);
    return 0;
}

bool swim_leave_sent(const swim_t *s)
{
    if (!s->left)
        return false;
    int64_t sent = uq_transmits(&s->updates, s->members.v[0].name);
    /* Gone from the queue means it was sent the full retransmit limit. */
    return s->live == 0 || sent < 0 || sent >= (int64_t)s->cfg.gossip_nodes;
}

int swim_update_record(swim_t *s, uint64_t now_us, const swim_record_t *record)
{
    if (now_us > s->now)
        s->now = now_us;
    uint8_t buf[SWIM_RECORD_MAX];
    size_t len;
    int rc = swim_record_encode(record, buf, sizeof(buf), &len);
    if (rc < 0)
        return rc;
    member_t *me = &s->members.v[0];
    if (same_record(me, buf, len))
        return 0;
    if (members_set_record(me, buf, len) < 0)
        return -ENOMEM;
    me->incarnation++;
    if (!s->left) {
        swim_msg_t msg = alive_msg(me);
        disseminate(s, &msg);
    }
    return 0;
}

/* --- queries ------------------------------------------------------------ */

static void fill_member(const member_t *m, swim_member_t *out)
{
    *out = (swim_member_t){ .name = m->name, .addr = m->addr, .state = m->state,
                            .incarnation = m->incarnation,
                            .state_since_us = m->state_since_us,
                            .record = m->record, .record_len = m->record_len };
}

size_t swim_member_count(const swim_t *s) { return s->members.count; }
size_t swim_pending_updates(const swim_t *s) { return uq_count(&s->updates); }
size_t swim_live_count(const swim_t *s) { return s->live; }
const char *swim_name(const swim_t *s) { return s->members.v[0].name; }
uint64_t swim_incarnation(const swim_t *s) { return s->members.v[0].incarnation; }
uint32_t swim_health(const swim_t *s) { return s->awareness; }
swim_stats_t swim_stats(const swim_t *s) { return s->stats; }

int swim_member_at(const swim_t *s, size_t index, swim_member_t *out)
{
    if (index >= s->members.count)
        return -ENOENT;
    fill_member(&s->members.v[index], out);
    return 0;
}

int swim_member_find(const swim_t *s, const char *name, swim_member_t *out)
{
    int32_t i = name ? members_find(&s->members, name) : -1;
    if (i < 0)
        return -ENOENT;
    fill_member(&s->members.v[i], out);
    return 0;
}
