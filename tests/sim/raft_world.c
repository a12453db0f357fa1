/* raft_world.c - see raft_world.h. */
#include "raft_world.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "consensus/raft.h"

typedef enum { OP_PUT, OP_GET_LOG, OP_GET_READ } op_kind_t;
typedef struct world_client client_t;

/* The failure of the seed being run (one at a time, in this process). */
typedef struct {
    char why[1024];
} failure_t;

typedef struct {
    uint64_t seeds, delivered, completed, crashes, conf_changes, transfers, snapshots, lin_gave_up;
    double *samples;
    size_t n_samples, cap_samples;
} totals_t;

/* One world_run_seeds(): its tallies, and why the current seed failed. */
typedef struct {
    failure_t failure;
    totals_t totals;
} run_t;

void world_say(const world_t *w, const char *fmt, ...)
{
    if (!w->verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%8.3f s] ", (double)sim_now(w->sim) / SIM_SECOND);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void world_sample(world_t *w, double value)
{
    if (w->n_samples < sizeof(w->samples) / sizeof(w->samples[0]))
        w->samples[w->n_samples++] = value;
}

/* --- history -------------------------------------------------------------- */

static size_t push_hist(world_t *w, lin_op_t op)
{
    if (w->n_hist == w->cap_hist) {
        w->cap_hist = w->cap_hist ? 2 * w->cap_hist : 256;
        w->hist = realloc(w->hist, w->cap_hist * sizeof(lin_op_t));
        if (!w->hist)
            abort();
    }
    w->hist[w->n_hist] = op;
    return w->n_hist++;
}

static void complete_get(world_t *w, client_t *cl, uint64_t value)
{
    push_hist(w, (lin_op_t){ .key = cl->key, .put = false, .value = value, .call = cl->call, .ret = w->clock++ });
    cl->active = false;
    w->completed++;
}

/* The client stops waiting: a put may still happen (it stays open-ended in
 * the history), a get without an answer tells nothing and is dropped. */
static void give_up(client_t *cl)
{
    cl->active = false;
}

static void serve_read_if_applied(world_t *w, client_t *cl)
{
    if (!cl->read_known || rc_applied(w->c, cl->node) < cl->read_index)
        return;
    uint64_t value = 0;
    rc_kv_get(w->c, cl->node, cl->key, &value);
    complete_get(w, cl, value);
}

static void on_apply(void *ctx, int node, const raft_entry_t *e, uint64_t get_value, bool get_found)
{
    world_t *w = ctx;
    rc_cmd_t cmd;
    bool is_cmd = e->type == RAFT_ENTRY_NORMAL && rc_cmd_decode(e->data, e->len, &cmd);
    for (int i = 0; i < WORLD_CLIENTS; i++) {
        client_t *cl = &w->clients[i];
        if (!cl->active || cl->node != node)
            continue;
        if (is_cmd && cmd.op_id == cl->op_id) {
            if (cl->kind == OP_PUT) {
                w->hist[cl->hist].ret = w->clock++;
                cl->active = false;
                w->completed++;
            } else if (cl->kind == OP_GET_LOG) {
                complete_get(w, cl, get_found ? get_value : 0);
            }
        } else if (cl->kind == OP_GET_READ) {
            serve_read_if_applied(w, cl);
        }
    }
}

static void on_read(void *ctx, int node, uint64_t context, uint64_t index)
{
    world_t *w = ctx;
    for (int i = 0; i < WORLD_CLIENTS; i++) {
        client_t *cl = &w->clients[i];
        if (cl->active && cl->kind == OP_GET_READ && cl->node == node && cl->op_id == context) {
            cl->read_known = true;
            cl->read_index = index;
            serve_read_if_applied(w, cl);
        }
    }
}

static void fail_ops_on(world_t *w, int node)
{
    for (int i = 0; i < WORLD_CLIENTS; i++)
        if (w->clients[i].active && w->clients[i].node == node)
            give_up(&w->clients[i]);
}

static void schedule_restart(world_t *w, int node)
{
    w->restart_at[node] = sim_now(w->sim) + 20 * SIM_MS + rng_below(sim_rng(w->sim), 500 * SIM_MS);
}

static void on_crash(void *ctx, int node)
{
    world_t *w = ctx;
    world_say(w, "node %d crashes while persisting", node);
    schedule_restart(w, node);
    sim_crash(w->sim, node);
    fail_ops_on(w, node);
    w->crashes++;
}

static void net_send(void *ctx, int from, int to, const uint8_t *data, size_t len)
{
    world_t *w = ctx;
    sim_send(w->sim, from, to, data, len);
}

/* --- workload ------------------------------------------------------------- */

/* A client sends its operation where it last found the leader (a deposed
 * leader it keeps talking to is what tests stale reads), else to `node`. */
static void issue(world_t *w, client_t *cl, int node)
{
    rng_t *rng = sim_rng(w->sim);
    if (cl->leader_hint >= 0 && rc_is_up(w->c, cl->leader_hint) && rng_unit(rng) < 0.9)
        node = cl->leader_hint;
    raft_t *r = rc_raft(w->c, node);
    if (!r)
        return;
    double roll = rng_unit(rng);
    int hint = cl->leader_hint;
    *cl = (client_t){ .active = true, .leader_hint = hint, .node = node, .op_id = ++w->next_op_id,
                      .key = 1 + rng_below(rng, WORLD_KEYS),
                      .deadline_us = sim_now(w->sim) + WORLD_OP_TIMEOUT_US };
    cl->kind = roll < 0.5 ? OP_PUT : roll < 0.65 ? OP_GET_LOG : OP_GET_READ;
    cl->value = cl->op_id;
    int rc;
    if (cl->kind == OP_GET_READ) {
        rc = raft_read_index(r, cl->op_id);
    } else {
        uint8_t buf[RC_CMD_LEN];
        rc_cmd_encode(&(rc_cmd_t){ .op = cl->kind == OP_PUT ? RC_CMD_PUT : RC_CMD_GET, .key = cl->key,
                                   .value = cl->value, .op_id = cl->op_id }, buf);
        rc = raft_propose(r, buf, sizeof(buf), NULL, NULL);
    }
    if (rc != 0) {   /* refused: it never happened; ask where the leader is */
        cl->active = false;
        cl->leader_hint = rc_slot(w->c, raft_leader(r));
        return;
    }
    cl->leader_hint = node;
    cl->call = w->clock++;
    if (cl->kind == OP_PUT)
        cl->hist = push_hist(w, (lin_op_t){ .key = cl->key, .put = true, .value = cl->value,
                                            .call = cl->call, .ret = LIN_PENDING });
    rc_process(w->c, node);
}

static void run_workload(world_t *w, int node)
{
    uint64_t now = sim_now(w->sim);
    for (int i = 0; i < WORLD_CLIENTS; i++)
        if (w->clients[i].active && w->clients[i].deadline_us <= now)
            give_up(&w->clients[i]);
    if (!w->workload_on)
        return;
    client_t *cl = &w->clients[rng_below(sim_rng(w->sim), WORLD_CLIENTS)];
    if (!cl->active)
        issue(w, cl, node);
}

/* --- faults ---------------------------------------------------------------- */

static int count_up(const world_t *w)
{
    int up = 0;
    for (int i = 0; i < w->slots; i++)
        up += sim_is_up(w->sim, i);
    return up;
}

void world_crash(world_t *w, int node)
{
    world_say(w, "crash node %d", node);
    schedule_restart(w, node);
    sim_crash(w->sim, node);
    rc_crash(w->c, node);
    fail_ops_on(w, node);
    w->crashes++;
}

void world_restart(world_t *w, int node)
{
    world_say(w, "restart node %d", node);
    sim_restart(w->sim, node);
    rc_restart(w->c, node);
}

static void random_membership_change(world_t *w)
{
    int leader = rc_leader(w->c);
    if (leader < 0)
        return;
    raft_t *r = rc_raft(w->c, leader);
    raft_status_t st;
    raft_status(r, &st);
    int pick = (int)rng_below(sim_rng(w->sim), (uint64_t)w->slots);
    uint64_t id = rc_id(w->c, pick);
    const raft_conf_t *conf = raft_conf(r);
    raft_conf_op_t op;
    if (raft_conf_is_learner(conf, id)) {
        /* Promote once it has caught up with the commit index, as an agent would. */
        for (size_t i = 0; i < st.n_peers; i++)
            if (st.peers[i].id == id && st.peers[i].match < st.commit)
                return;
        op = RAFT_CONF_PROMOTE;
    } else if (raft_conf_is_voter(conf, id)) {
        if (conf->n_voters <= 3)
            return;
        op = RAFT_CONF_REMOVE;
    } else {
        op = RAFT_CONF_ADD_LEARNER;
    }
    int rc = raft_propose_conf_change(r, op, id, NULL);
    world_say(w, "leader %d: %s node %d: %s", leader,
              op == RAFT_CONF_PROMOTE ? "promote" : op == RAFT_CONF_REMOVE ? "remove" : "add learner", pick,
              raft_strerror(rc));
    if (rc == 0) {
        w->conf_changes++;
        rc_process(w->c, leader);
    }
}

static void random_transfer(world_t *w)
{
    int leader = rc_leader(w->c);
    if (leader < 0)
        return;
    raft_t *r = rc_raft(w->c, leader);
    const raft_conf_t *conf = raft_conf(r);
    uint64_t target = conf->voters[rng_below(sim_rng(w->sim), conf->n_voters)];
    int rc = raft_transfer_leadership(r, target);
    world_say(w, "leader %d: transfer to %d: %s", leader, rc_slot(w->c, target), raft_strerror(rc));
    if (rc == 0) {
        w->transfers++;
        rc_process(w->c, leader);
    }
}

/* Cuts the leader off, alone or (in five) with one companion. */
static void isolate_leader(world_t *w)
{
    int leader = rc_leader(w->c);
    if (leader < 0)
        return;
    sim_heal(w->sim);
    sim_partition(w->sim, leader, 1);
    if (w->voters == 5)
        sim_partition(w->sim, (int)rng_below(sim_rng(w->sim), (uint64_t)w->slots), 1);
    world_say(w, "isolate leader %d", leader);
}

static void nemesis(world_t *w)
{
    rng_t *rng = sim_rng(w->sim);
    w->next_nemesis_us = sim_now(w->sim) + 30 * SIM_MS + rng_below(rng, 300 * SIM_MS);
    double roll = rng_unit(rng);
    int node = (int)rng_below(rng, (uint64_t)w->slots);
    int leader = rc_leader(w->c);
    if (roll < 0.10) {
        if (sim_is_up(w->sim, node) && count_up(w) >= 2)
            world_crash(w, node);
    } else if (roll < 0.20) {
        if (leader >= 0 && count_up(w) >= 2)
            world_crash(w, leader);
    } else if (roll < 0.42) {
        for (int i = 0; i < w->slots; i++) {
            int n = (node + i) % w->slots;
            if (!sim_is_up(w->sim, n)) {
                world_restart(w, n);
                break;
            }
        }
    } else if (roll < 0.52) {
        world_say(w, "partition");
        for (int i = 0; i < w->slots; i++)
            sim_partition(w->sim, i, (int)rng_below(rng, 2));
    } else if (roll < 0.62) {
        isolate_leader(w);
    } else if (roll < 0.72) {
        world_say(w, "heal");
        sim_heal(w->sim);
    } else if (roll < 0.84) {
        random_membership_change(w);
    } else if (roll < 0.92) {
        random_transfer(w);
    } else {
        w->faults.loss = rng_unit(rng) * 0.2;
        w->faults.duplicate = rng_unit(rng) * 0.1;
        world_say(w, "loss %.2f duplicate %.2f", w->faults.loss, w->faults.duplicate);
        sim_set_faults(w->sim, &w->faults);
    }
}

/* Crashing a leader soon after its election, before its first entry is
 * everywhere, is what leaves logs diverging in the ways of the Raft paper's
 * figures 7 and 8. Crashed nodes come back after a while. */
static void doom_new_leaders(world_t *w, uint64_t now)
{
    int leader = rc_leader(w->c);
    if (leader >= 0 && (leader != w->seen_leader || raft_term(rc_raft(w->c, leader)) != w->seen_leader_term)) {
        w->seen_leader = leader;
        w->seen_leader_term = raft_term(rc_raft(w->c, leader));
        if (w->doomed_leader < 0 && rng_unit(sim_rng(w->sim)) < 0.4) {
            w->doomed_leader = leader;
            w->doom_us = now + rng_below(sim_rng(w->sim), 25 * SIM_MS);
        }
    }
    if (w->doomed_leader >= 0 && now >= w->doom_us) {
        if (sim_is_up(w->sim, w->doomed_leader) && count_up(w) >= 2)
            world_crash(w, w->doomed_leader);
        w->doomed_leader = -1;
    }
    for (int i = 0; i < w->slots; i++)
        if (!sim_is_up(w->sim, i) && now >= w->restart_at[i])
            world_restart(w, i);
}

/* --- simulator callbacks -------------------------------------------------- */

static void cb_deliver(void *harness, int to, int from, const uint8_t *data, size_t len)
{
    world_t *w = harness;
    rc_deliver(w->c, to, from, data, len);
}

static void cb_tick(void *harness, int node, uint64_t now_us)
{
    world_t *w = harness;
    rc_tick(w->c, node);
    run_workload(w, node);
    if (w->nemesis_on) {
        doom_new_leaders(w, now_us);
        if (now_us >= w->next_nemesis_us)
            nemesis(w);
    }
}

/* --- waiting ---------------------------------------------------------------- */

/* In replay mode, what each node believes, for the failure report. */
static void dump(const world_t *w)
{
    if (!w->verbose)
        return;
    for (int i = 0; i < w->slots; i++) {
        raft_t *r = rc_raft(w->c, i);
        if (!r) {
            fprintf(stderr, "  node %d: down\n", i);
            continue;
        }
        raft_status_t st;
        raft_status(r, &st);
        fprintf(stderr, "  node %d (id %" PRIu64 "): %s term %" PRIu64 " leader %" PRIu64 " commit %" PRIu64
                " applied %" PRIu64 " log %" PRIu64 "..%" PRIu64 " conf@%" PRIu64 ":", i, st.id,
                raft_role_name(st.role), st.term, st.leader, st.commit, rc_applied(w->c, i), st.first_index,
                st.last_index, st.conf_index);
        for (size_t k = 0; k < st.n_peers; k++)
            fprintf(stderr, " %s%" PRIu64 "[%s m%" PRIu64 " n%" PRIu64 "]", st.peers[k].voter ? "" : "learner ",
                    st.peers[k].id, st.peers[k].progress, st.peers[k].match, st.peers[k].next);
        fputc('\n', stderr);
    }
}

bool world_fail(world_t *w, const char *fmt, ...)
{
    failure_t *f = &((run_t *)w->run)->failure;
    if (f->why[0])
        return false;   /* keep the first reason */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->why, sizeof(f->why), fmt, ap);
    va_end(ap);
    world_say(w, "FAILED: %s", f->why);
    dump(w);
    return false;
}

typedef struct {
    world_t *w;
    bool (*pred)(world_t *w, void *ctx);
    void *ctx;
} wait_t;

static bool wait_pred(void *ctx)
{
    wait_t *wt = ctx;
    return rc_violation(wt->w->c) || wt->pred(wt->w, wt->ctx);
}

bool world_wait(world_t *w, bool (*pred)(world_t *w, void *ctx), void *ctx, uint64_t bound_us, const char *what)
{
    wait_t wt = { w, pred, ctx };
    bool held = sim_run_until(w->sim, wait_pred, &wt, sim_now(w->sim) + bound_us);
    if (rc_violation(w->c))
        return world_fail(w, "safety: %s", rc_violation(w->c));
    if (!held)
        return world_fail(w, "%s: not within %.1f s", what, (double)bound_us / SIM_SECOND);
    return true;
}

int world_serving_leader(world_t *w)
{
    int leader = rc_leader(w->c);
    if (leader < 0)
        return -1;
    raft_t *r = rc_raft(w->c, leader);
    uint64_t t;
    return raft_term_at(r, raft_commit_index(r), &t) == 0 && t == raft_term(r) ? leader : -1;
}

static bool serving_leader_exists(world_t *w, void *ctx)
{
    return world_serving_leader(w) >= 0;
}

typedef struct {
    uint64_t index, term;
    bool lost;
} marker_t;

/* The marker entry is applied on every live member of the configuration, or
 * was lost (its proposer had been deposed): either ends the wait. */
static bool marker_settled(world_t *w, void *ctx)
{
    marker_t *m = ctx;
    int leader = rc_leader(w->c);
    if (leader < 0)
        return false;
    raft_t *r = rc_raft(w->c, leader);
    uint64_t t;
    m->lost = raft_term_at(r, m->index, &t) == 0 && t != m->term;
    if (m->lost)
        return true;
    const raft_conf_t *conf = raft_conf(r);
    for (size_t i = 0; i < conf->n_voters + conf->n_learners; i++) {
        uint64_t id = i < conf->n_voters ? conf->voters[i] : conf->learners[i - conf->n_voters];
        int s = rc_slot(w->c, id);
        if (!rc_is_up(w->c, s) || rc_applied(w->c, s) < m->index)
            return false;
    }
    return true;
}

bool world_check_liveness(world_t *w)
{
    w->nemesis_on = false;
    rc_set_crash_in_ready(w->c, 0);
    sim_heal(w->sim);
    w->faults = (sim_faults_t){ .delay_min_us = 100, .delay_max_us = 2000 };
    sim_set_faults(w->sim, &w->faults);
    for (int i = 0; i < w->slots; i++)
        if (!sim_is_up(w->sim, i))
            world_restart(w, i);
    uint64_t healed = sim_now(w->sim), deadline = healed + 5 * SIM_SECOND;
    uint8_t buf[RC_CMD_LEN];
    rc_cmd_encode(&(rc_cmd_t){ .op = RC_CMD_PUT, .key = 1000, .value = 1, .op_id = 0 }, buf);
    /* A write can be lost if its leader was already deposed: then retry, as
     * a client would. */
    for (int attempt = 1;; attempt++) {
        uint64_t now = sim_now(w->sim);
        if (now >= deadline)
            return world_fail(w, "no write applied everywhere within 5 s of healing");
        if (!world_wait(w, serving_leader_exists, NULL, deadline - now, "a leader after healing"))
            return false;
        int leader = world_serving_leader(w);
        marker_t m = { 0 };
        int rc = raft_propose(rc_raft(w->c, leader), buf, sizeof(buf), &m.index, &m.term);
        world_say(w, "healed: leader %d, write attempt %d: %s", leader, attempt, raft_strerror(rc));
        if (rc == RAFT_ERR_BUSY) {   /* a leadership transfer is under way */
            sim_run_for(w->sim, 50 * SIM_MS);
            continue;
        }
        if (rc != 0)
            return world_fail(w, "leader %d refuses a write after healing: %s", leader, raft_strerror(rc));
        rc_process(w->c, leader);
        if (!world_wait(w, marker_settled, &m, deadline - sim_now(w->sim), "a write applied everywhere after healing"))
            return false;
        if (!m.lost)
            break;
    }
    world_say(w, "healed: write applied everywhere %.3f s after healing",
              (double)(sim_now(w->sim) - healed) / SIM_SECOND);
    return true;
}

typedef struct {
    raft_conf_op_t op;
    uint64_t id;
} conf_goal_t;

static bool conf_goal_met(const raft_conf_t *conf, const conf_goal_t *g)
{
    switch (g->op) {
    case RAFT_CONF_ADD_LEARNER: return raft_conf_is_learner(conf, g->id) || raft_conf_is_voter(conf, g->id);
    case RAFT_CONF_PROMOTE: return raft_conf_is_voter(conf, g->id);
    case RAFT_CONF_REMOVE: return !raft_conf_is_learner(conf, g->id) && !raft_conf_is_voter(conf, g->id);
    }
    return false;
}

/* Met, in the configuration a serving leader has committed. */
static bool conf_goal_committed(world_t *w, void *ctx)
{
    int leader = world_serving_leader(w);
    if (leader < 0)
        return false;
    raft_t *r = rc_raft(w->c, leader);
    raft_status_t st;
    raft_status(r, &st);
    return st.conf_index <= st.commit && conf_goal_met(raft_conf(r), ctx);
}

bool world_change_membership(world_t *w, raft_conf_op_t op, int node, uint64_t bound_us)
{
    conf_goal_t goal = { op, rc_id(w->c, node) };
    uint64_t deadline = sim_now(w->sim) + bound_us;
    while (!conf_goal_committed(w, &goal)) {
        if (sim_now(w->sim) >= deadline)
            return world_fail(w, "membership change (op %d, node %d) not committed within %.1f s", op, node,
                              (double)bound_us / SIM_SECOND);
        int leader = world_serving_leader(w);
        if (leader >= 0 && !conf_goal_met(raft_conf(rc_raft(w->c, leader)), &goal)) {
            int rc = raft_propose_conf_change(rc_raft(w->c, leader), op, goal.id, NULL);
            world_say(w, "leader %d: membership op %d node %d: %s", leader, op, node, raft_strerror(rc));
            if (rc == 0)
                w->conf_changes++;
            rc_process(w->c, leader);
        }
        sim_run_for(w->sim, 20 * SIM_MS);
        if (rc_violation(w->c))
            return world_fail(w, "safety: %s", rc_violation(w->c));
    }
    return true;
}

/* --- one seed ----------------------------------------------------------- */

static world_t *world_new(uint64_t seed, const scenario_t *sc, const world_options_t *opts, run_t *run)
{
    world_t *w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    w->run = run;
    w->seed = seed;
    w->sc = sc;
    w->verbose = opts->replay;
    rng_seed(&w->pick, seed ^ 0x5151);
    rng_t *pick = &w->pick;
    w->voters = sc->voters ? sc->voters : rng_below(pick, 2) ? 5 : 3;
    int spares = sc->spares >= 0 ? sc->spares : 1 + (int)rng_below(pick, 2);
    w->slots = w->voters + spares;
    if (w->slots > WORLD_MAX_SLOTS)
        w->slots = WORLD_MAX_SLOTS;
    static const sim_callbacks_t callbacks = { .deliver = cb_deliver, .tick = cb_tick };
    w->sim = sim_new(seed, w->slots, &callbacks, w);
    rc_options_t opt = { .nodes = w->slots, .seed = seed, .send = net_send, .ctx = w, .on_apply = on_apply,
                         .on_read = on_read, .on_crash = on_crash, .rng = sim_rng(w->sim),
                         .compact_every = sc->compact_every };
    raft_config_defaults(&opt.raft, 0, 0);
    if (opts->election_tick || sc->election_tick)
        opt.raft.election_tick = opts->election_tick ? opts->election_tick : sc->election_tick;
    if (opts->heartbeat_tick || sc->heartbeat_tick)
        opt.raft.heartbeat_tick = opts->heartbeat_tick ? opts->heartbeat_tick : sc->heartbeat_tick;
    w->faults = sc->faults;
    if (sc->nemesis) {
        static const size_t compact[] = { 0, 5, 20, 60 };
        opt.compact_every = compact[rng_below(pick, 4)];
        opt.crash_in_ready = rng_below(pick, 2) ? 0.0 : 0.002 + rng_unit(pick) * 0.01;
        opt.raft.max_inflight = 1 + rng_below(pick, 16);
        opt.raft.max_msg_entries = 1 + rng_below(pick, 8);
        /* Mostly the recommended setting, sometimes without PreVote or
         * CheckQuorum: a leader that does not step down when cut off is the
         * case that ReadIndex must get right. */
        opt.raft.pre_vote = rng_unit(pick) < 0.7;
        opt.raft.check_quorum = rng_unit(pick) < 0.7;
        w->faults = (sim_faults_t){ .loss = rng_unit(pick) * 0.1, .duplicate = rng_unit(pick) * 0.05,
                                    .delay_min_us = 100, .delay_max_us = 500 + rng_below(pick, 20 * SIM_MS) };
    }
    /* Half the seeds store asynchronously, as ferryd does (storage thread);
     * drawn from their own generator so the other choices per seed stay.
     * Under the nemesis the "disk" is sometimes slow (a write waits for ten
     * inputs on average); without it, fast: a slow disk makes candidates
     * duel while their votes are being written, which the no-election
     * check of the stable scenario does not allow for. */
    rng_t storage_pick;
    rng_seed(&storage_pick, seed ^ 0xa51c);
    if (opts->async == 1 || (opts->async == 2 && rng_below(&storage_pick, 2)))
        opt.async_flush = sc->nemesis ? 0.1 + 0.8 * rng_unit(&storage_pick) : 0.5 + 0.5 * rng_unit(&storage_pick);
    sim_set_faults(w->sim, &w->faults);
    w->c = rc_new(&opt);
    int slots[WORLD_MAX_SLOTS] = { 0, 1, 2, 3, 4, 5, 6 };
    rc_bootstrap(w->c, slots, w->voters);
    w->workload_on = sc->workload;
    w->nemesis_on = sc->nemesis;
    w->next_nemesis_us = 200 * SIM_MS;
    for (int i = 0; i < WORLD_CLIENTS; i++)
        w->clients[i].leader_hint = -1;
    w->seen_leader = w->doomed_leader = -1;
    return w;
}

static void world_destroy(world_t **w_p)
{
    world_t *w = *w_p;
    totals_t *t = &((run_t *)w->run)->totals;
    t->delivered += sim_stats(w->sim).delivered;
    t->completed += w->completed;
    t->crashes += w->crashes;
    t->conf_changes += w->conf_changes;
    t->transfers += w->transfers;
    t->snapshots += rc_snapshots_installed(w->c);
    for (size_t i = 0; i < w->n_samples; i++) {
        if (t->n_samples == t->cap_samples) {
            t->cap_samples = t->cap_samples ? 2 * t->cap_samples : 256;
            t->samples = realloc(t->samples, t->cap_samples * sizeof(double));
            if (!t->samples)
                abort();
        }
        t->samples[t->n_samples++] = w->samples[i];
    }
    rc_destroy(&w->c);
    sim_destroy(&w->sim);
    free(w->hist);
    free(w);
    *w_p = NULL;
}

static bool violated(void *ctx)
{
    world_t *w = ctx;
    return rc_violation(w->c) != NULL;
}

static bool run_seed(uint64_t seed, const scenario_t *sc, const world_options_t *opts, run_t *run)
{
    failure_t *f = &run->failure;
    f->why[0] = '\0';
    world_t *w = world_new(seed, sc, opts, run);
    world_say(w, "%s, seed %" PRIu64 ": %d voters, %d nodes", sc->name, seed, w->voters, w->slots);
    bool ok;
    if (sc->script) {
        ok = sc->script(w);
    } else {
        sim_run_until(w->sim, violated, w, sc->chaos_us);
        ok = !rc_violation(w->c) && world_check_liveness(w);
    }
    /* Let the last operations finish or time out, then check everything. */
    w->workload_on = false;
    w->nemesis_on = false;
    if (ok)
        sim_run_until(w->sim, violated, w, sim_now(w->sim) + WORLD_OP_TIMEOUT_US + 100 * SIM_MS);
    if (!rc_violation(w->c))
        rc_check_full(w->c);
    if (rc_violation(w->c))
        ok = world_fail(w, "safety: %s", rc_violation(w->c));
    if (ok) {
        char why[256];
        bool gave_up = false;
        if (!lin_check(w->hist, w->n_hist, 200000, &gave_up, why, sizeof(why)))
            ok = world_fail(w, "linearizability: %s", why);
        run->totals.lin_gave_up += gave_up;
    }
    world_say(w, "seed %" PRIu64 ": %zu operations in the history, %" PRIu64 " completed: %s", seed, w->n_hist,
              w->completed, ok ? "ok" : f->why);
    world_destroy(&w);
    run->totals.seeds++;
    return ok;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

world_options_t world_options(int argc, char **argv)
{
    world_options_t o = { .seeds = sim_arg_u64(argc, argv, "--seeds", 0),
                          .first = sim_arg_u64(argc, argv, "--first", 1),
                          .election_tick = (int)sim_arg_u64(argc, argv, "--election-tick", 0),
                          .heartbeat_tick = (int)sim_arg_u64(argc, argv, "--heartbeat-tick", 0),
                          .async = (int)sim_arg_u64(argc, argv, "--async", 2) };
    uint64_t replay = sim_arg_u64(argc, argv, "--seed", 0);
    if (replay) {
        o.replay = true;
        o.first = replay;
        o.seeds = 1;
    }
    return o;
}

uint64_t world_run_seeds(const scenario_t *sc, const world_options_t *opts, uint64_t default_seeds)
{
    run_t *run = calloc(1, sizeof(*run));
    if (!run)
        abort();
    uint64_t n = opts->seeds ? opts->seeds : default_seeds, failed = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t s = opts->first; s < opts->first + n; s++) {
        if (!run_seed(s, sc, opts, run)) {
            fprintf(stderr, "%s: seed %" PRIu64 " FAILED: %s\n  replay: %s --seed %" PRIu64 "\n", sc->name, s,
                    run->failure.why, program_invocation_short_name, s);
            if (++failed >= 3)
                break;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    totals_t *t = &run->totals;
    fprintf(stderr,
            "%s: %" PRIu64 " seeds in %.1f s (%.0f seeds/s); %" PRIu64 " messages delivered, %" PRIu64
            " client operations, %" PRIu64 " crashes, %" PRIu64 " membership changes, %" PRIu64
            " transfers, %" PRIu64 " snapshots installed, %" PRIu64 " linearizability searches cut short\n",
            sc->name, t->seeds, secs, secs > 0 ? (double)t->seeds / secs : 0.0, t->delivered, t->completed,
            t->crashes, t->conf_changes, t->transfers, t->snapshots, t->lin_gave_up);
    if (t->n_samples) {
        qsort(t->samples, t->n_samples, sizeof(double), compare_double);
        fprintf(stderr, "%s: %zu samples: min %.1f, median %.1f, p99 %.1f, max %.1f\n", sc->name, t->n_samples,
                t->samples[0], t->samples[t->n_samples / 2], t->samples[t->n_samples * 99 / 100],
                t->samples[t->n_samples - 1]);
    }
    free(t->samples);
    free(run);
    return failed;
}
