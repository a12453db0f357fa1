/* test_raft.c - scenarios for the Raft core, on a hand-driven network.
 *
 * The cluster harness (tests/sim/raft_harness.h) gives each node storage, a
 * key-value state machine and the safety checker; here the network is a FIFO
 * queue that the test flushes, with links the test can cut. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "consensus/raft.h"
#include "consensus/raft_codec.h"
#include "raft_harness.h"

#define MAX_NODES 5

typedef struct {
    int from, to;
    uint8_t *data;
    size_t len;
} queued_t;

typedef struct {
    raft_cluster_t *c;
    queued_t *q;
    size_t head, n, cap;
    bool cut[MAX_NODES][MAX_NODES];
    /* reads answered: context -> index */
    uint64_t read_ctx[64], read_index[64];
    int read_node[64];
    size_t n_reads;
} net_t;

static void net_send(void *ctx, int from, int to, const uint8_t *data, size_t len)
{
    net_t *net = ctx;
    if (net->cut[from][to])
        return;
    if (net->n == net->cap) {
        net->cap = net->cap ? 2 * net->cap : 256;
        net->q = realloc(net->q, net->cap * sizeof(queued_t));
        assert_non_null(net->q);
    }
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, data, len);
    net->q[net->n++] = (queued_t){ from, to, copy, len };
}

static void net_on_read(void *ctx, int node, uint64_t context, uint64_t index)
{
    net_t *net = ctx;
    if (net->n_reads < 64) {
        net->read_ctx[net->n_reads] = context;
        net->read_index[net->n_reads] = index;
        net->read_node[net->n_reads] = node;
        net->n_reads++;
    }
}

/* Delivers until the network is quiet (bounded: a livelock fails the test). */
static void flush(net_t *net)
{
    for (int rounds = 0; net->head < net->n; rounds++) {
        assert_true(rounds < 100000);
        queued_t m = net->q[net->head++];
        if (!net->cut[m.from][m.to])
            rc_deliver(net->c, m.to, m.from, m.data, m.len);
        free(m.data);
        if (net->head == net->n)
            net->head = net->n = 0;
    }
}

static void tick_all(net_t *net, int ticks)
{
    for (int t = 0; t < ticks; t++) {
        for (int i = 0; i < rc_nodes(net->c); i++)
            rc_tick(net->c, i);
        flush(net);
    }
}

static void isolate(net_t *net, int node, bool isolated)
{
    for (int i = 0; i < MAX_NODES; i++) {
        if (i == node)
            continue;
        net->cut[node][i] = net->cut[i][node] = isolated;
    }
}

static net_t *net_new(int nodes, int voters, const raft_config_t *base)
{
    net_t *net = calloc(1, sizeof(*net));
    assert_non_null(net);
    rc_options_t opt = { .nodes = nodes, .seed = 42, .send = net_send, .on_read = net_on_read, .ctx = net };
    if (base)
        opt.raft = *base;
    else
        raft_config_defaults(&opt.raft, 0, 0);
    net->c = rc_new(&opt);
    assert_non_null(net->c);
    int slots[MAX_NODES] = { 0, 1, 2, 3, 4 };
    assert_int_equal(rc_bootstrap(net->c, slots, voters), 0);
    flush(net);
    return net;
}

static void net_destroy(net_t **net_p)
{
    net_t *net = *net_p;
    assert_null(rc_violation(net->c));
    rc_check_full(net->c);
    assert_null(rc_violation(net->c));
    for (size_t i = net->head; i < net->n; i++)
        free(net->q[i].data);
    free(net->q);
    rc_destroy(&net->c);
    free(net);
    *net_p = NULL;
}

/* Ticks until some node leads; returns its slot. */
static int elect(net_t *net)
{
    for (int t = 0; t < 200; t++) {
        int leader = rc_leader(net->c);
        if (leader >= 0 && raft_commit_index(rc_raft(net->c, leader)) >= 2)
            return leader;
        tick_all(net, 1);
    }
    fail_msg("no leader elected within 200 ticks");
    return -1;
}

static void put(net_t *net, int node, uint64_t key, uint64_t value)
{
    uint8_t buf[RC_CMD_LEN];
    rc_cmd_encode(&(rc_cmd_t){ .op = RC_CMD_PUT, .key = key, .value = value, .op_id = value }, buf);
    assert_int_equal(raft_propose(rc_raft(net->c, node), buf, sizeof(buf), NULL, NULL), 0);
    rc_process(net->c, node);
    flush(net);
}

static uint64_t kv(net_t *net, int node, uint64_t key)
{
    uint64_t value = 0;
    assert_true(rc_kv_get(net->c, node, key, &value));
    return value;
}

/* --- elections ------------------------------------------------------------ */

static void test_three_nodes_elect_one_leader(void **state)
{
    net_t *net = net_new(3, 3, NULL);
    int leader = elect(net);
    tick_all(net, 5);
    int leaders = 0;
    for (int i = 0; i < 3; i++) {
        raft_t *r = rc_raft(net->c, i);
        leaders += raft_role(r) == RAFT_LEADER;
        assert_int_equal(raft_leader(r), rc_id(net->c, leader));
    }
    assert_int_equal(leaders, 1);
    net_destroy(&net);
}

static void test_single_node_commits_alone(void **state)
{
    net_t *net = net_new(1, 1, NULL);
    int leader = elect(net);
    assert_int_equal(leader, 0);
    put(net, 0, 7, 70);
    assert_int_equal(kv(net, 0, 7), 70);
    assert_int_equal(raft_read_index(rc_raft(net->c, 0), 99), 0);
    rc_process(net->c, 0);
    assert_int_equal(net->n_reads, 1);
    assert_int_equal(net->read_ctx[0], 99);
    assert_int_equal(net->read_index[0], raft_commit_index(rc_raft(net->c, 0)));
    net_destroy(&net);
}

static void test_proposals_replicate_and_apply_everywhere(void **state)
{
    net_t *net = net_new(3, 3, NULL);
    int leader = elect(net);
    for (uint64_t k = 1; k <= 20; k++)
        put(net, leader, k, k * 10);
    tick_all(net, 5);   /* heartbeats carry the final commit index */
    for (int i = 0; i < 3; i++)
        for (uint64_t k = 1; k <= 20; k++)
            assert_int_equal(kv(net, i, k), k * 10);
    /* A follower refuses proposals and names the leader. */
    int follower = (leader + 1) % 3;
    assert_int_equal(raft_propose(rc_raft(net->c, follower), "x", 1, NULL, NULL), RAFT_ERR_NOT_LEADER);
    assert_int_equal(raft_leader(rc_raft(net->c, follower)), rc_id(net->c, leader));
    net_destroy(&net);
}

/* Runs the partitioned-follower scenario; returns how much the leader's
 * term moved after the partition healed. */
static uint64_t partitioned_follower_term_growth(bool pre_vote, uint64_t *isolated_term_growth)
{
    raft_config_t cfg;
    raft_config_defaults(&cfg, 0, 0);
    cfg.pre_vote = pre_vote;
    cfg.check_quorum = pre_vote;
    net_t *net = net_new(3, 3, &cfg);
    int leader = elect(net);
    int victim = (leader + 1) % 3;
    uint64_t term = raft_term(rc_raft(net->c, leader));
    isolate(net, victim, true);
    tick_all(net, 100);
    *isolated_term_growth = raft_term(rc_raft(net->c, victim)) - term;
    isolate(net, victim, false);
    tick_all(net, 50);
    int now = rc_leader(net->c);
    assert_true(now >= 0);
    uint64_t growth = raft_term(rc_raft(net->c, now)) - term;
    net_destroy(&net);
    return growth;
}

static void test_prevote_keeps_partitioned_node_from_disrupting(void **state)
{
    uint64_t isolated_growth;
    /* With PreVote the isolated node never wins a pre-vote, so never bumps
     * its term, and the leader keeps its term after the partition heals. */
    assert_int_equal(partitioned_follower_term_growth(true, &isolated_growth), 0);
    assert_int_equal(isolated_growth, 0);
    /* Without it the isolated node's term climbs and it deposes the leader:
     * the scenario does detect disruption. */
    assert_true(partitioned_follower_term_growth(false, &isolated_growth) > 0);
    assert_true(isolated_growth > 0);
}

static void test_check_quorum_makes_isolated_leader_step_down(void **state)
{
    net_t *net = net_new(3, 3, NULL);
    int leader = elect(net);
    isolate(net, leader, true);
    tick_all(net, 2 * 8 + 1);   /* two election timeouts: one CheckQuorum round at least */
    assert_int_not_equal(raft_role(rc_raft(net->c, leader)), RAFT_LEADER);
    /* The majority side elected a new leader meanwhile. */
    tick_all(net, 30);
    int next = rc_leader(net->c);
    assert_true(next >= 0 && next != leader);
    net_destroy(&net);
}

static void test_without_check_quorum_isolated_leader_stays(void **state)
{
    raft_config_t cfg;
    raft_config_defaults(&cfg, 0, 0);
    cfg.check_quorum = false;
    net_t *net = net_new(3, 3, &cfg);
    int leader = elect(net);
    isolate(net, leader, true);
    tick_all(net, 2 * 8 + 1);
    assert_int_equal(raft_role(rc_raft(net->c, leader)), RAFT_LEADER);
    net_destroy(&net);
}

/* --- replication ---------------------------------------------------------- */

static void test_conflicting_uncommitted_suffix_is_replaced(void **state)
{
    net_t *net = net_new(3, 3, NULL);
    int old = elect(net);
    put(net, old, 1, 100);
    /* The old leader, cut off, takes proposals it can never commit. */
    isolate(net, old, true);
    uint8_t buf[RC_CMD_LEN];
    for (uint64_t v = 0; v < 5; v++) {
        rc_cmd_encode(&(rc_cmd_t){ .op = RC_CMD_PUT, .key = 2, .value = 900 + v }, buf);
        assert_int_equal(raft_propose(rc_raft(net->c, old), buf, sizeof(buf), NULL, NULL), 0);
        rc_process(net->c, old);
    }
    uint64_t stale_last = raft_last_index(rc_raft(net->c, old));
    int a = (old + 1) % 3;
    /* The other two elect a leader and commit different entries. */
    tick_all(net, 40);
    int fresh = rc_leader(net->c);
    if (fresh == old) {   /* the old one may not have stepped down yet */
        tick_all(net, 20);
        fresh = rc_leader(net->c);
    }
    assert_true(fresh >= 0 && fresh != old);
    for (uint64_t v = 0; v < 3; v++)
        put(net, fresh, 2, 200 + v);
    /* Healing: the old leader's uncommitted entries are overwritten. */
    isolate(net, old, false);
    tick_all(net, 30);
    raft_t *ro = rc_raft(net->c, old), *ra = rc_raft(net->c, a);
    assert_int_equal(raft_last_index(ro), raft_last_index(ra));
    for (uint64_t i = raft_first_index(ro); i <= stale_last && i <= raft_last_index(ro); i++)
        assert_int_equal(raft_entry_at(ro, i)->term, raft_entry_at(ra, i)->term);
    assert_int_equal(kv(net, old, 2), 202);
    assert_int_equal(kv(net, old, 1), 100);
    net_destroy(&net);
}

/* A fresh core driven by hand-made messages, for rules that need exact control. */
static raft_t *handmade_leader(uint64_t log_terms[], size_t n, uint64_t term)
{
    raft_conf_t conf = { .n_voters = 3, .voters = { 1, 2, 3 } };
    uint8_t conf_buf[64];
    raft_conf_encode(&conf, conf_buf);
    raft_entry_t ents[8];
    for (size_t i = 0; i < n; i++) {
        ents[i] = (raft_entry_t){ .term = log_terms[i], .index = i + 1 };
        if (i == 0) {
            ents[i].type = RAFT_ENTRY_CONFIG;
            ents[i].data = conf_buf;
            ents[i].len = raft_conf_encoded_len(&conf);
        }
    }
    raft_boot_t boot = { .hard_state = { .term = term, .commit = 1 }, .entries = ents, .n_entries = n };
    raft_config_t cfg;
    raft_config_defaults(&cfg, 1, 7);
    cfg.pre_vote = false;
    raft_t *r = raft_new(&cfg, &boot);
    assert_non_null(r);
    assert_int_equal(raft_campaign(r), 0);
    assert_int_equal(raft_step(r, &(raft_msg_t){ .type = RAFT_MSG_VOTE_RESP, .from = 2, .to = 1,
                                                 .term = term + 1 }), 0);
    assert_int_equal(raft_role(r), RAFT_LEADER);
    return r;
}

static void test_leader_commits_old_term_entries_only_with_its_own(void **state)
{
    /* Log: 1 (config, term 1), 2 (term 2). The leader of term 4 appends its
     * NOOP at 3. Raft paper figure 8: index 2 replicated on a majority must
     * not commit by counting; it commits with the NOOP. */
    uint64_t terms[] = { 1, 2 };
    raft_t *r = handmade_leader(terms, 2, 3);
    assert_int_equal(raft_term(r), 4);
    assert_int_equal(raft_last_index(r), 3);
    raft_msg_t ack = { .type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = 4, .index = 2 };
    assert_int_equal(raft_step(r, &ack), 0);
    assert_int_equal(raft_commit_index(r), 1);
    ack.index = 3;
    assert_int_equal(raft_step(r, &ack), 0);
    assert_int_equal(raft_commit_index(r), 3);
    raft_destroy(&r);
}

static void test_stale_and_duplicate_appends_do_not_truncate(void **state)
{
    /* A follower holding 1..3 gets a reordered, shorter append (prev 1,
     * entry 2 only): it must keep entry 3 and answer 2. */
    raft_config_t cfg;
    raft_config_defaults(&cfg, 2, 1);
    raft_conf_t conf = { .n_voters = 3, .voters = { 1, 2, 3 } };
    uint8_t conf_buf[64];
    raft_conf_encode(&conf, conf_buf);
    raft_entry_t ents[3] = {
        { .term = 1, .index = 1, .type = RAFT_ENTRY_CONFIG, .data = conf_buf, .len = raft_conf_encoded_len(&conf) },
        { .term = 2, .index = 2 },
        { .term = 2, .index = 3 },
    };
    raft_boot_t boot = { .hard_state = { .term = 2, .commit = 1 }, .entries = ents, .n_entries = 3 };
    raft_t *r = raft_new(&cfg, &boot);
    assert_non_null(r);
    raft_msg_t app = { .type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 2, .index = 1, .log_term = 1,
                       .commit = 1, .entries = &ents[1], .n_entries = 1 };
    assert_int_equal(raft_step(r, &app), 0);
    assert_int_equal(raft_last_index(r), 3);
    raft_ready_t rd;
    raft_ready(r, &rd);
    assert_int_equal(rd.n_entries, 0);
    assert_int_equal(rd.n_messages, 1);
    assert_int_equal(rd.messages[0].type, RAFT_MSG_APPEND_RESP);
    assert_false(rd.messages[0].reject);
    assert_int_equal(rd.messages[0].index, 2);
    raft_advance(r);
    /* A conflicting entry at 3 (term 3) does replace it. */
    raft_entry_t other = { .term = 3, .index = 3 };
    app = (raft_msg_t){ .type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 3, .index = 2, .log_term = 2,
                        .commit = 1, .entries = &other, .n_entries = 1 };
    assert_int_equal(raft_step(r, &app), 0);
    uint64_t t;
    assert_int_equal(raft_term_at(r, 3, &t), 0);
    assert_int_equal(t, 3);
    raft_ready(r, &rd);
    assert_int_equal(rd.n_entries, 1);   /* the replacement must be persisted over the old 3 */
    assert_int_equal(rd.entries[0].index, 3);
    raft_advance(r);
    raft_destroy(&r);
}

static void test_lagging_follower_catches_up_through_probing(void **state)
{
    net_t *net = net_new(3, 3, NULL);
    int leader = elect(net);
    int lag = (leader + 1) % 3;
    isolate(net, lag, true);
    for (uint64_t k = 0; k < 600; k++)   /* more than one batch and one window */
        put(net, leader, k % 7, k);
    isolate(net, lag, false);
    tick_all(net, 20);
    assert_int_equal(raft_last_index(rc_raft(net->c, lag)), raft_last_index(rc_raft(net->c, leader)));
    assert_int_equal(kv(net, lag, 599 % 7), 599);
    net_destroy(&net);
}

/* --- leadership transfer -------------------------------------------------- */

static void test_leadership_transfer(void **state)
{
    net_t *net = net_new(3, 3, NULL);
    int leader = elect(net);
    int target = (leader + 1) % 3;
    /* Let the target lag so the leader must catch it up first. */
    isolate(net, target, true);
    put(net, leader, 1, 11);
    isolate(net, target, false);
    uint64_t term = raft_term(rc_raft(net->c, leader));
    assert_int_equal(raft_transfer_leadership(rc_raft(net->c, leader), rc_id(net->c, target)), 0);
    /* While transferring, proposals are refused. */
    assert_int_equal(raft_propose(rc_raft(net->c, leader), "x", 1, NULL, NULL), RAFT_ERR_BUSY);
    rc_process(net->c, leader);
    flush(net);
    tick_all(net, 3);
    assert_int_equal(rc_leader(net->c), target);
    assert_true(raft_term(rc_raft(net->c, target)) > term);
    put(net, target, 2, 22);
    tick_all(net, 3);
    assert_int_equal(kv(net, leader, 2), 22);
    assert_int_equal(raft_transfer_leadership(rc_raft(net->c, leader), rc_id(net->c, target)),
                     RAFT_ERR_NOT_LEADER);
    net_destroy(&net);
}

/* --- ReadIndex ----------------------------------------------------------- */

static void test_read_index_on_leader_and_follower(void **state)
{
    net_t *net = net_new(3, 3, NULL);
    int leader = elect(net);
    put(net, leader, 5, 55);
    int follower = (leader + 1) % 3;
    assert_int_equal(raft_read_index(rc_raft(net->c, leader), 1), 0);
    assert_int_equal(raft_read_index(rc_raft(net->c, follower), 2), 0);
    rc_process(net->c, leader);
    rc_process(net->c, follower);
    flush(net);
    assert_int_equal(net->n_reads, 2);
    uint64_t commit = raft_commit_index(rc_raft(net->c, leader));
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(net->read_index[i], commit);
        assert_int_equal(net->read_node[i], net->read_ctx[i] == 1 ? leader : follower);
    }
    /* An isolated leader cannot confirm its leadership: no answer. */
    isolate(net, leader, true);
    assert_int_equal(raft_read_index(rc_raft(net->c, leader), 3), 0);
    rc_process(net->c, leader);
    tick_all(net, 5);
    assert_int_equal(net->n_reads, 2);
    net_destroy(&net);
}

/* --- membership ---------------------------------------------------------- */

static const raft_peer_status_t *peer(const raft_status_t *st, uint64_t id)
{
    for (size_t i = 0; i < st->n_peers; i++)
        if (st->peers[i].id == id)
            return &st->peers[i];
    return NULL;
}

static void test_add_learner_promote_and_remove(void **state)
{
    net_t *net = net_new(4, 3, NULL);
    int leader = elect(net);
    for (uint64_t k = 0; k < 30; k++)
        put(net, leader, k, k);
    raft_t *lr = rc_raft(net->c, leader);
    uint64_t newcomer = rc_id(net->c, 3);
    assert_int_equal(raft_propose_conf_change(lr, RAFT_CONF_PROMOTE, newcomer, NULL), RAFT_ERR_INVALID);
    assert_int_equal(raft_propose_conf_change(lr, RAFT_CONF_ADD_LEARNER, newcomer, NULL), 0);
    /* Only one change at a time. */
    assert_int_equal(raft_propose_conf_change(lr, RAFT_CONF_REMOVE, rc_id(net->c, (leader + 1) % 3), NULL),
                     RAFT_ERR_BUSY);
    rc_process(net->c, leader);
    flush(net);
    tick_all(net, 10);
    raft_status_t st;
    raft_status(lr, &st);
    const raft_peer_status_t *p = peer(&st, newcomer);
    assert_non_null(p);
    assert_false(p->voter);
    assert_int_equal(p->match, st.last_index);   /* caught up: the agent may promote */
    assert_false(raft_conf_is_voter(raft_conf(rc_raft(net->c, 3)), newcomer));
    assert_int_equal(kv(net, 3, 29), 29);
    /* A learner never campaigns. */
    assert_int_equal(raft_campaign(rc_raft(net->c, 3)), RAFT_ERR_INVALID);

    assert_int_equal(raft_propose_conf_change(lr, RAFT_CONF_PROMOTE, newcomer, NULL), 0);
    rc_process(net->c, leader);
    flush(net);
    tick_all(net, 5);
    raft_status(lr, &st);
    assert_int_equal(raft_conf(lr)->n_voters, 4);
    assert_true(peer(&st, newcomer)->voter);

    /* Remove a follower; the three left go on committing. */
    int gone = (leader + 1) % 3;
    assert_int_equal(raft_propose_conf_change(lr, RAFT_CONF_REMOVE, rc_id(net->c, gone), NULL), 0);
    rc_process(net->c, leader);
    flush(net);
    tick_all(net, 5);
    assert_int_equal(raft_conf(lr)->n_voters, 3);
    isolate(net, gone, true);
    put(net, leader, 100, 1);
    tick_all(net, 5);
    assert_int_equal(kv(net, 3, 100), 1);
    net_destroy(&net);
}

static void test_leader_removing_itself_steps_down(void **state)
{
    net_t *net = net_new(3, 3, NULL);
    int leader = elect(net);
    raft_t *lr = rc_raft(net->c, leader);
    assert_int_equal(raft_propose_conf_change(lr, RAFT_CONF_REMOVE, rc_id(net->c, leader), NULL), 0);
    rc_process(net->c, leader);
    flush(net);
    tick_all(net, 3);
    assert_int_not_equal(raft_role(lr), RAFT_LEADER);
    tick_all(net, 40);
    int next = rc_leader(net->c);
    assert_true(next >= 0 && next != leader);
    assert_int_equal(raft_conf(rc_raft(net->c, next))->n_voters, 2);
    /* The removed node never campaigns again. */
    assert_int_equal(raft_campaign(lr), RAFT_ERR_INVALID);
    net_destroy(&net);
}

/* --- snapshots and restarts ------------------------------------------------ */

static void test_snapshot_installs_on_lagging_follower(void **state)
{
    net_t *net = calloc(1, sizeof(*net));
    rc_options_t opt = { .nodes = 3, .seed = 3, .send = net_send, .ctx = net, .compact_every = 20 };
    raft_config_defaults(&opt.raft, 0, 0);
    net->c = rc_new(&opt);
    int slots[] = { 0, 1, 2 };
    assert_int_equal(rc_bootstrap(net->c, slots, 3), 0);
    int leader = elect(net);
    int lag = (leader + 1) % 3;
    isolate(net, lag, true);
    for (uint64_t k = 0; k < 100; k++)
        put(net, leader, k % 5, k);
    assert_true(raft_first_index(rc_raft(net->c, leader)) > raft_last_index(rc_raft(net->c, lag)));
    isolate(net, lag, false);
    tick_all(net, 20);
    assert_true(rc_snapshots_installed(net->c) >= 1);
    assert_int_equal(kv(net, lag, 99 % 5), 99);
    assert_int_equal(raft_last_index(rc_raft(net->c, lag)), raft_last_index(rc_raft(net->c, leader)));
    /* And it restarts from its own snapshot and log. */
    rc_crash(net->c, lag);
    assert_int_equal(rc_restart(net->c, lag), 0);
    tick_all(net, 10);
    assert_int_equal(kv(net, lag, 99 % 5), 99);
    net_destroy(&net);
}

static void test_restarted_cluster_keeps_its_state(void **state)
{
    net_t *net = net_new(3, 3, NULL);
    int leader = elect(net);
    for (uint64_t k = 0; k < 10; k++)
        put(net, leader, k, k + 1);
    uint64_t term = raft_term(rc_raft(net->c, leader));
    for (int i = 0; i < 3; i++)
        rc_crash(net->c, i);
    for (int i = 0; i < 3; i++)
        assert_int_equal(rc_restart(net->c, i), 0);
    leader = elect(net);
    assert_true(raft_term(rc_raft(net->c, leader)) > term);
    tick_all(net, 5);
    for (int i = 0; i < 3; i++)
        assert_int_equal(kv(net, i, 9), 10);
    net_destroy(&net);
}

/* --- robustness ------------------------------------------------------------ */

static void test_step_refuses_malformed_messages(void **state)
{
    uint64_t terms[] = { 1 };
    raft_t *r = handmade_leader(terms, 1, 1);
    raft_entry_t bad[2] = { { .term = 9, .index = 5 }, { .term = 1, .index = 7 } };
    raft_msg_t cases[] = {
        { .type = 0, .from = 2, .to = 1, .term = 2 },
        { .type = RAFT_MSG_TYPE_MAX, .from = 2, .to = 1, .term = 2 },
        { .type = RAFT_MSG_APPEND, .from = 0, .to = 1, .term = 2 },
        { .type = RAFT_MSG_APPEND, .from = 2, .to = 9, .term = 2 },
        { .type = RAFT_MSG_APPEND, .from = 1, .to = 1, .term = 2 },
        { .type = RAFT_MSG_APPEND, .from = 2, .to = 1, .term = 9, .index = 4, .entries = bad, .n_entries = 2 },
        { .type = RAFT_MSG_APPEND, .from = 2, .to = 1, .term = 2, .index = 4, .entries = bad, .n_entries = 1 },
        { .type = RAFT_MSG_APPEND, .from = 2, .to = 1, .term = 2, .index = UINT64_MAX, .entries = bad, .n_entries = 1 },
        { .type = RAFT_MSG_SNAPSHOT, .from = 2, .to = 1, .term = 2 },
        { .type = RAFT_MSG_HEARTBEAT, .from = 2, .to = 1, .term = 2, .entries = bad, .n_entries = 1 },
    };
    uint64_t term = raft_term(r);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(raft_step(r, &cases[i]), RAFT_ERR_INVALID);
    assert_int_equal(raft_term(r), term);
    assert_int_equal(raft_role(r), RAFT_LEADER);
    raft_destroy(&r);
}

static void test_bad_boot_state_is_refused(void **state)
{
    raft_config_t cfg;
    raft_config_defaults(&cfg, 1, 1);
    raft_entry_t ents[2] = { { .term = 1, .index = 1 }, { .term = 1, .index = 3 } };
    raft_boot_t boot = { .hard_state = { .term = 1 }, .entries = ents, .n_entries = 2 };
    assert_null(raft_new(&cfg, &boot));
    ents[1].index = 2;
    ents[1].term = 0;   /* terms go down */
    assert_null(raft_new(&cfg, &boot));
    /* Entries of a term the hard state never reached (a crash between the
     * two writes): the node takes up that term, with no vote. */
    ents[1].term = 5;
    boot.hard_state.vote = 3;
    raft_t *r = raft_new(&cfg, &boot);
    assert_non_null(r);
    assert_int_equal(raft_term(r), 5);
    raft_status_t st;
    raft_status(r, &st);
    assert_int_equal(st.vote, RAFT_NONE);
    raft_destroy(&r);
    cfg.id = 0;
    assert_null(raft_new(&cfg, NULL));
    raft_config_defaults(&cfg, 1, 1);
    cfg.heartbeat_tick = cfg.election_tick;
    assert_null(raft_new(&cfg, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_nodes_elect_one_leader),
        cmocka_unit_test(test_single_node_commits_alone),
        cmocka_unit_test(test_proposals_replicate_and_apply_everywhere),
        cmocka_unit_test(test_prevote_keeps_partitioned_node_from_disrupting),
        cmocka_unit_test(test_check_quorum_makes_isolated_leader_step_down),
        cmocka_unit_test(test_without_check_quorum_isolated_leader_stays),
        cmocka_unit_test(test_conflicting_uncommitted_suffix_is_replaced),
        cmocka_unit_test(test_leader_commits_old_term_entries_only_with_its_own),
        cmocka_unit_test(test_stale_and_duplicate_appends_do_not_truncate),
        cmocka_unit_test(test_lagging_follower_catches_up_through_probing),
        cmocka_unit_test(test_leadership_transfer),
        cmocka_unit_test(test_read_index_on_leader_and_follower),
        cmocka_unit_test(test_add_learner_promote_and_remove),
        cmocka_unit_test(test_leader_removing_itself_steps_down),
        cmocka_unit_test(test_snapshot_installs_on_lagging_follower),
        cmocka_unit_test(test_restarted_cluster_keeps_its_state),
        cmocka_unit_test(test_step_refuses_malformed_messages),
        cmocka_unit_test(test_bad_boot_state_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
