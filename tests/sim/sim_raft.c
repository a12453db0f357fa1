/* sim_raft.c - the Raft core under the deterministic simulator.
 *
 * Each seed builds a cluster of 3 or 5 voters (plus spare nodes that may be
 * added later) on a virtual network, runs a key-value workload against it
 * while a "nemesis" crashes and restarts nodes (losing whatever they had not
 * persisted, sometimes in the middle of persisting), partitions the network,
 * changes loss and duplication, moves membership and leadership around; then
 * heals everything and demands liveness. The harness checks the Raft safety
 * properties after every simulated event; at the end the history of client
 * operations is checked for linearizability.
 *
 *   sim_raft                 the default run (several thousand seeds)
 *   sim_raft --seeds N       N seeds of the random-fault run
 *   sim_raft --seed N        replay one seed, saying what happens
 *   sim_raft --first N       start the seeds at N
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "consensus/raft.h"
#include "raft_harness.h"
#include "raft_lincheck.h"
#include "sim.h"

#define MAX_SLOTS 7
#define CLIENTS 4
#define KEYS 3
#define OP_TIMEOUT_US (1 * SIM_SECOND)

/* Set once by main from the command line. */
static struct {
    uint64_t seeds;
    uint64_t first;
    bool replay;
    bool verbose;
} options;

/* --- the world of one seed ----------------------------------------------- */

typedef enum { OP_PUT, OP_GET_LOG, OP_GET_READ } op_kind_t;

typedef struct {
    bool active;
    int leader_hint;         /* where this client last found the leader; -1 unknown */
    op_kind_t kind;
    int node;
    uint64_t op_id, key, value;
    uint64_t call;           /* logical time */
    uint64_t deadline_us;
    size_t hist;             /* puts: their history record */
    bool read_known;
    uint64_t read_index;
} client_t;

typedef struct {
    uint64_t seed;
    sim_t *sim;
    raft_cluster_t *c;
    int slots, voters;
    bool workload_on;
    bool nemesis_on;
    uint64_t next_nemesis_us;
    int seen_leader;             /* leader (slot, term) last seen by the nemesis */
    uint64_t seen_leader_term;
    int doomed_leader;           /* a leader to crash at doom_us, or -1 */
    uint64_t doom_us;
    uint64_t restart_at[MAX_SLOTS]; /* when a crashed node comes back */
    client_t clients[CLIENTS];
    uint64_t next_op_id;
    uint64_t clock;
    lin_op_t *hist;
    size_t n_hist, cap_hist;
    sim_faults_t faults;
    /* counters for the summary */
    uint64_t completed, crashes, conf_changes, transfers;
} world_t;

static struct {
    uint64_t seeds, events, completed, crashes, conf_changes, transfers, snapshots, lin_gave_up;
} totals;

__attribute__((format(printf, 2, 3)))
static void say(const world_t *w, const char *fmt, ...)
{
    if (!options.verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%8.3f s] ", (double)sim_now(w->sim) / SIM_SECOND);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

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
    for (int i = 0; i < CLIENTS; i++) {
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
    for (int i = 0; i < CLIENTS; i++) {
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
    for (int i = 0; i < CLIENTS; i++)
        if (w->clients[i].active && w->clients[i].node == node)
            give_up(&w->clients[i]);
}

static void on_crash(void *ctx, int node)
{
    world_t *w = ctx;
    say(w, "node %d crashes while persisting", node);
    w->restart_at[node] = sim_now(w->sim) + 20 * SIM_MS + rng_below(sim_rng(w->sim), 500 * SIM_MS);
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
                      .key = 1 + rng_below(rng, KEYS),
                      .deadline_us = sim_now(w->sim) + OP_TIMEOUT_US };
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
    for (int i = 0; i < CLIENTS; i++)
        if (w->clients[i].active && w->clients[i].deadline_us <= now)
            give_up(&w->clients[i]);
    if (!w->workload_on)
        return;
    rng_t *rng = sim_rng(w->sim);
    client_t *cl = &w->clients[rng_below(rng, CLIENTS)];
    if (!cl->active)
        issue(w, cl, node);
}

/* --- nemesis -------------------------------------------------------------- */

static int count_up(const world_t *w)
{
    int up = 0;
    for (int i = 0; i < w->slots; i++)
        up += sim_is_up(w->sim, i);
    return up;
}

static void crash(world_t *w, int node)
{
    say(w, "crash node %d", node);
    w->restart_at[node] = sim_now(w->sim) + 20 * SIM_MS + rng_below(sim_rng(w->sim), 500 * SIM_MS);
    sim_crash(w->sim, node);
    rc_crash(w->c, node);
    fail_ops_on(w, node);
    w->crashes++;
}

static void restart(world_t *w, int node)
{
    say(w, "restart node %d", node);
    sim_restart(w->sim, node);
    rc_restart(w->c, node);
}

static void change_membership(world_t *w)
{
    int leader = rc_leader(w->c);
    if (leader < 0)
        return;
    raft_t *r = rc_raft(w->c, leader);
    raft_status_t st;
    raft_status(r, &st);
    rng_t *rng = sim_rng(w->sim);
    int pick = (int)rng_below(rng, (uint64_t)w->slots);
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
    say(w, "leader %d: %s node %d: %s", leader,
        op == RAFT_CONF_PROMOTE ? "promote" : op == RAFT_CONF_REMOVE ? "remove" : "add learner", pick,
        raft_strerror(rc));
    if (rc == 0) {
        w->conf_changes++;
        rc_process(w->c, leader);
    }
}

static void transfer(world_t *w)
{
    int leader = rc_leader(w->c);
    if (leader < 0)
        return;
    raft_t *r = rc_raft(w->c, leader);
    const raft_conf_t *conf = raft_conf(r);
    uint64_t target = conf->voters[rng_below(sim_rng(w->sim), conf->n_voters)];
    int rc = raft_transfer_leadership(r, target);
    say(w, "leader %d: transfer to %d: %s", leader, rc_slot(w->c, target), raft_strerror(rc));
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
    say(w, "isolate leader %d", leader);
}

static void nemesis(world_t *w)
{
    rng_t *rng = sim_rng(w->sim);
    uint64_t now = sim_now(w->sim);
    w->next_nemesis_us = now + 30 * SIM_MS + rng_below(rng, 300 * SIM_MS);
    double roll = rng_unit(rng);
    int node = (int)rng_below(rng, (uint64_t)w->slots);
    int leader = rc_leader(w->c);
    if (roll < 0.10) {
        if (sim_is_up(w->sim, node) && count_up(w) >= 2)
            crash(w, node);
    } else if (roll < 0.20) {
        if (leader >= 0 && count_up(w) >= 2)
            crash(w, leader);
    } else if (roll < 0.42) {
        for (int i = 0; i < w->slots; i++) {
            int n = (node + i) % w->slots;
            if (!sim_is_up(w->sim, n)) {
                restart(w, n);
                break;
            }
        }
    } else if (roll < 0.52) {
        say(w, "partition");
        for (int i = 0; i < w->slots; i++)
            sim_partition(w->sim, i, (int)rng_below(rng, 2));
    } else if (roll < 0.62) {
        isolate_leader(w);
    } else if (roll < 0.72) {
        say(w, "heal");
        sim_heal(w->sim);
    } else if (roll < 0.84) {
        change_membership(w);
    } else if (roll < 0.92) {
        transfer(w);
    } else {
        w->faults.loss = rng_unit(rng) * 0.2;
        w->faults.duplicate = rng_unit(rng) * 0.1;
        say(w, "loss %.2f duplicate %.2f", w->faults.loss, w->faults.duplicate);
        sim_set_faults(w->sim, &w->faults);
    }
}

/* --- simulator callbacks -------------------------------------------------- */

static void cb_deliver(void *harness, int to, int from, const uint8_t *data, size_t len)
{
    world_t *w = harness;
    rc_deliver(w->c, to, from, data, len);
}

/* Crashing a leader soon after its election, before its first entry is
 * everywhere, is what leaves logs diverging in the ways of the Raft paper's
 * figures 7 and 8. */
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
            crash(w, w->doomed_leader);
        w->doomed_leader = -1;
    }
    for (int i = 0; i < w->slots; i++)
        if (!sim_is_up(w->sim, i) && now >= w->restart_at[i])
            restart(w, i);
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

static bool violated(void *ctx)
{
    world_t *w = ctx;
    return rc_violation(w->c) != NULL;
}

/* --- one seed ------------------------------------------------------------- */

typedef struct {
    bool faults;           /* the nemesis runs */
    bool workload;
    uint64_t chaos_us;
} scenario_t;

static world_t *world_new(uint64_t seed, const scenario_t *sc)
{
    world_t *w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    w->seed = seed;
    rng_t pick;
    rng_seed(&pick, seed ^ 0x5151);
    w->voters = rng_below(&pick, 2) ? 5 : 3;
    w->slots = w->voters + (sc->faults ? 1 + (int)rng_below(&pick, 2) : 0);
    static const sim_callbacks_t callbacks = { .deliver = cb_deliver, .tick = cb_tick };
    w->sim = sim_new(seed, w->slots, &callbacks, w);
    rc_options_t opt = { .nodes = w->slots, .seed = seed, .send = net_send, .ctx = w, .on_apply = on_apply,
                         .on_read = on_read, .on_crash = on_crash, .rng = sim_rng(w->sim) };
    raft_config_defaults(&opt.raft, 0, 0);
    if (sc->faults) {
        static const size_t compact[] = { 0, 5, 20, 60 };
        opt.compact_every = compact[rng_below(&pick, 4)];
        opt.crash_in_ready = rng_below(&pick, 2) ? 0.0 : 0.002 + rng_unit(&pick) * 0.01;
        opt.raft.max_inflight = 1 + rng_below(&pick, 16);
        opt.raft.max_msg_entries = 1 + rng_below(&pick, 8);
        /* Mostly the recommended setting, sometimes without PreVote or
         * CheckQuorum: a leader that does not step down when cut off is the
         * case that ReadIndex must get right. */
        opt.raft.pre_vote = rng_unit(&pick) < 0.7;
        opt.raft.check_quorum = rng_unit(&pick) < 0.7;
        w->faults = (sim_faults_t){ .loss = rng_unit(&pick) * 0.1, .duplicate = rng_unit(&pick) * 0.05,
                                    .delay_min_us = 100, .delay_max_us = 500 + rng_below(&pick, 20 * SIM_MS) };
    } else {
        w->faults = (sim_faults_t){ .delay_min_us = 100, .delay_max_us = 1000 };
    }
    sim_set_faults(w->sim, &w->faults);
    w->c = rc_new(&opt);
    int slots[MAX_SLOTS] = { 0, 1, 2, 3, 4, 5, 6 };
    rc_bootstrap(w->c, slots, w->voters);
    w->workload_on = sc->workload;
    w->nemesis_on = sc->faults;
    w->next_nemesis_us = 200 * SIM_MS;
    for (int i = 0; i < CLIENTS; i++)
        w->clients[i].leader_hint = -1;
    w->seen_leader = w->doomed_leader = -1;
    return w;
}

static void world_destroy(world_t **w_p)
{
    world_t *w = *w_p;
    totals.completed += w->completed;
    totals.crashes += w->crashes;
    totals.conf_changes += w->conf_changes;
    totals.transfers += w->transfers;
    totals.snapshots += rc_snapshots_installed(w->c);
    totals.events += sim_stats(w->sim).delivered;
    rc_destroy(&w->c);
    sim_destroy(&w->sim);
    free(w->hist);
    free(w);
    *w_p = NULL;
}

static bool has_working_leader(void *ctx)
{
    world_t *w = ctx;
    if (rc_violation(w->c))
        return true;
    int leader = rc_leader(w->c);
    if (leader < 0)
        return false;
    raft_t *r = rc_raft(w->c, leader);
    uint64_t t;
    return raft_term_at(r, raft_commit_index(r), &t) == 0 && t == raft_term(r);
}

typedef struct {
    world_t *w;
    uint64_t index, term;
} marker_t;

/* The marker entry is applied on every live member of the configuration, or
 * it was lost (its proposer was a deposed leader): either ends the wait. */
static bool marker_settled(void *ctx)
{
    marker_t *m = ctx;
    if (rc_violation(m->w->c))
        return true;
    int leader = rc_leader(m->w->c);
    if (leader < 0)
        return false;
    raft_t *r = rc_raft(m->w->c, leader);
    uint64_t t;
    if (raft_term_at(r, m->index, &t) == 0 && t != m->term)
        return true;   /* lost */
    const raft_conf_t *conf = raft_conf(r);
    for (size_t i = 0; i < conf->n_voters + conf->n_learners; i++) {
        uint64_t id = i < conf->n_voters ? conf->voters[i] : conf->learners[i - conf->n_voters];
        if (rc_applied(m->w->c, rc_slot(m->w->c, id)) < m->index)
            return false;
    }
    return true;
}

static bool marker_lost(marker_t *m)
{
    int leader = rc_leader(m->w->c);
    uint64_t t;
    return leader >= 0 && raft_term_at(rc_raft(m->w->c, leader), m->index, &t) == 0 && t != m->term;
}

/* In replay mode, what each node believes, for the failure report. */
static void dump(const world_t *w)
{
    if (!options.verbose)
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

static char failure[1024];

__attribute__((format(printf, 2, 3)))
static bool seed_failed(const world_t *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(failure, sizeof(failure), fmt, ap);
    va_end(ap);
    dump(w);
    return false;
}

/* Heals everything and checks that, within a bound of virtual time, the
 * cluster elects a leader and a write commits and is applied on every member.
 * (A write can be lost if the leader it went to was already deposed; then
 * the client retries, as a real one would.) */
static bool check_liveness(world_t *w)
{
    w->nemesis_on = false;
    rc_set_crash_in_ready(w->c, 0);
    sim_heal(w->sim);
    w->faults = (sim_faults_t){ .delay_min_us = 100, .delay_max_us = 2000 };
    sim_set_faults(w->sim, &w->faults);
    for (int i = 0; i < w->slots; i++)
        if (!sim_is_up(w->sim, i))
            restart(w, i);
    uint64_t healed = sim_now(w->sim), deadline = healed + 5 * SIM_SECOND;
    marker_t m = { .w = w };
    uint8_t buf[RC_CMD_LEN];
    rc_cmd_encode(&(rc_cmd_t){ .op = RC_CMD_PUT, .key = 1000, .value = 1, .op_id = 0 }, buf);
    for (int attempt = 1;; attempt++) {
        if (!sim_run_until(w->sim, has_working_leader, w, deadline))
            return seed_failed(w, "no leader with a committed entry of its term within 5 s of healing");
        if (rc_violation(w->c))
            return false;
        int leader = rc_leader(w->c);
        say(w, "healed: leader %d, write attempt %d", leader, attempt);
        int rc = raft_propose(rc_raft(w->c, leader), buf, sizeof(buf), &m.index, &m.term);
        if (rc == RAFT_ERR_BUSY) {   /* a leadership transfer is under way */
            sim_run_for(w->sim, 50 * SIM_MS);
            continue;
        }
        if (rc != 0)
            return seed_failed(w, "leader %d refuses a write after healing: %s", leader, raft_strerror(rc));
        rc_process(w->c, leader);
        if (!sim_run_until(w->sim, marker_settled, &m, deadline))
            return seed_failed(w, "write at index %" PRIu64 " not applied everywhere within 5 s of healing",
                               m.index);
        if (rc_violation(w->c))
            return false;
        if (!marker_lost(&m))
            break;
    }
    say(w, "healed: write applied everywhere %.3f s after healing", (double)(sim_now(w->sim) - healed) / SIM_SECOND);
    return true;
}

static bool run_seed(uint64_t seed, const scenario_t *sc)
{
    failure[0] = '\0';
    world_t *w = world_new(seed, sc);
    say(w, "seed %" PRIu64 ": %d voters, %d slots", seed, w->voters, w->slots);
    bool ok = true;
    sim_run_until(w->sim, violated, w, sc->chaos_us);
    if (!rc_violation(w->c))
        ok = check_liveness(w);
    /* Let the last operations finish or time out, then check the history. */
    w->workload_on = false;
    if (ok && !rc_violation(w->c))
        sim_run_until(w->sim, violated, w, sim_now(w->sim) + OP_TIMEOUT_US + 100 * SIM_MS);
    if (!rc_violation(w->c))
        rc_check_full(w->c);
    if (rc_violation(w->c)) {
        snprintf(failure, sizeof(failure), "safety: %s", rc_violation(w->c));
        ok = false;
    }
    if (ok) {
        char why[256];
        bool gave_up = false;
        if (!lin_check(w->hist, w->n_hist, 200000, &gave_up, why, sizeof(why))) {
            snprintf(failure, sizeof(failure), "linearizability: %s", why);
            ok = false;
        }
        totals.lin_gave_up += gave_up;
    }
    say(w, "seed %" PRIu64 ": %zu operations in history, %" PRIu64 " completed, %s", seed, w->n_hist,
        w->completed, ok ? "ok" : failure);
    world_destroy(&w);
    totals.seeds++;
    return ok;
}

static void run_seeds(const char *name, const scenario_t *sc, uint64_t default_seeds)
{
    uint64_t n = options.replay ? 1 : options.seeds ? options.seeds : default_seeds;
    uint64_t failed = 0;
    memset(&totals, 0, sizeof(totals));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t s = options.first; s < options.first + n; s++) {
        if (!run_seed(s, sc)) {
            fprintf(stderr, "sim_raft: %s: seed %" PRIu64 " FAILED: %s\n  replay: sim_raft --seed %" PRIu64 "\n",
                    name, s, failure, s);
            if (++failed >= 3)
                break;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr,
            "sim_raft: %s: %" PRIu64 " seeds in %.1f s (%.0f seeds/s); %" PRIu64 " messages delivered, %" PRIu64
            " client ops completed, %" PRIu64 " crashes, %" PRIu64 " membership changes, %" PRIu64
            " transfers, %" PRIu64 " snapshots installed, %" PRIu64 " lin searches cut short\n",
            name, totals.seeds, secs, secs > 0 ? (double)totals.seeds / secs : 0.0, totals.events,
            totals.completed, totals.crashes, totals.conf_changes, totals.transfers, totals.snapshots,
            totals.lin_gave_up);
    assert_int_equal(failed, 0);
}

/* --- tests ---------------------------------------------------------------- */

static void test_random_faults(void **state)
{
    scenario_t sc = { .faults = true, .workload = true, .chaos_us = 3 * SIM_SECOND };
    run_seeds("random faults", &sc, 1500);
}

/* No faults at all: a leader within a bound, writes commit, and the history
 * is linearizable. */
static void test_stable_cluster_is_live(void **state)
{
    scenario_t sc = { .faults = false, .workload = true, .chaos_us = 1 * SIM_SECOND };
    run_seeds("stable", &sc, options.replay ? 1 : 200);
}

int main(int argc, char **argv)
{
    options.seeds = sim_arg_u64(argc, argv, "--seeds", 0);
    options.first = sim_arg_u64(argc, argv, "--first", 1);
    uint64_t replay = sim_arg_u64(argc, argv, "--seed", 0);
    if (replay) {
        options.replay = true;
        options.verbose = true;
        options.first = replay;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stable_cluster_is_live),
        cmocka_unit_test(test_random_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
