/* raft_harness.h - a cluster of Raft cores for tests: each node has a model
 * of durable storage (what survives a crash), a small key-value state machine
 * on top of the log, and the whole cluster is watched by a checker of the
 * Raft safety properties (Raft paper, figure 3):
 *
 *   election safety      at most one leader per term;
 *   log matching         same index and term => same entry and same prefix;
 *   leader completeness  an entry committed by term T is in every later
 *                        leader's log;
 *   state machine safety no two nodes apply different entries at one index.
 *
 * The harness moves bytes, not structs: every outgoing message is encoded
 * with raft_codec and handed to a send callback; the test's network (the
 * simulator, or a plain queue in unit tests) calls rc_deliver() later.
 *
 * Storage model. A node persists each Ready before sending its messages. A
 * crash loses everything that is not on the "disk"; with crash_in_ready > 0
 * the harness also crashes nodes in the middle of persisting a Ready: a
 * prefix of its entries reaches the disk, the hard state only if all did (the
 * order raftlog.c uses), and no message leaves.
 *
 * Asynchronous storage (async_flush > 0) models consensus/node.c: the cores
 * run with async_storage, each Ready is queued as a pending write and
 * advanced at once; its messages leave now or when the write is durable as
 * consensus/send_policy.h says, and its committed entries and reads wait for
 * the write. After each input a node makes a random prefix of its queue
 * durable with probability async_flush, then reports raft_log_durable(). A
 * crash keeps a random prefix of the queue (whole writes, then part of the
 * next one's entries) and loses the rest, messages included.
 */
#ifndef FERRY_RAFT_HARNESS_H
#define FERRY_RAFT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/rng.h"
#include "consensus/raft.h"

typedef struct raft_cluster raft_cluster_t;

/* State machine commands (entry payloads): 25 bytes, little-endian. */
enum { RC_CMD_PUT = 1, RC_CMD_GET = 2 };
typedef struct {
    uint8_t op;
    uint64_t key, value;    /* value: PUT only */
    uint64_t op_id;         /* the client's id for the operation */
} rc_cmd_t;
#define RC_CMD_LEN 25
void rc_cmd_encode(const rc_cmd_t *cmd, uint8_t out[RC_CMD_LEN]);
bool rc_cmd_decode(const uint8_t *data, size_t len, rc_cmd_t *cmd);

typedef struct {
    int nodes;
    const uint64_t *ids;          /* node ids by slot; NULL: slot + 1 */
    raft_config_t raft;           /* id and seed are filled per node */
    uint64_t seed;
    /* Network: called for every message a node sends. */
    void (*send)(void *ctx, int from, int to, const uint8_t *data, size_t len);
    void *ctx;
    /* Workload hooks (may be NULL): an entry applied on `node`; a ReadIndex
     * answer; the node crashed (by crash_in_ready) and must be cut off. */
    void (*on_apply)(void *ctx, int node, const raft_entry_t *entry, uint64_t get_value, bool get_found);
    void (*on_read)(void *ctx, int node, uint64_t context, uint64_t index);
    void (*on_crash)(void *ctx, int node);
    size_t compact_every;         /* snapshot after this many applied entries; 0 never */
    double crash_in_ready;        /* probability of a crash while persisting a Ready */
    rng_t *rng;                   /* for crash_in_ready and async_flush */
    double async_flush;           /* > 0: asynchronous storage (see above) */
} rc_options_t;

raft_cluster_t *rc_new(const rc_options_t *opts);
void rc_destroy(raft_cluster_t **self_p);

/* Founds a cluster: every slot in `slots` is bootstrapped with all of them
 * as voters. The other slots start empty, to be added later. */
int rc_bootstrap(raft_cluster_t *c, const int *slots, int n);

/* Inputs (each processes the node's Ready afterwards and runs the checks). */
void rc_deliver(raft_cluster_t *c, int to, int from, const uint8_t *data, size_t len);
void rc_tick(raft_cluster_t *c, int node);
/* Processes the node's pending Ready, if any (after direct calls on its raft_t). */
void rc_process(raft_cluster_t *c, int node);

/* Changes crash_in_ready (0 stops the crashes, e.g. to check liveness). */
void rc_set_crash_in_ready(raft_cluster_t *c, double probability);

void rc_crash(raft_cluster_t *c, int node);
int rc_restart(raft_cluster_t *c, int node);
bool rc_is_up(const raft_cluster_t *c, int node);

raft_t *rc_raft(raft_cluster_t *c, int node);  /* NULL while down */
uint64_t rc_id(const raft_cluster_t *c, int node);
int rc_slot(const raft_cluster_t *c, uint64_t id);   /* -1 if unknown */
int rc_nodes(const raft_cluster_t *c);
/* A live leader, the one with the highest term; -1 if none. */
int rc_leader(const raft_cluster_t *c);
uint64_t rc_applied(const raft_cluster_t *c, int node);
bool rc_kv_get(const raft_cluster_t *c, int node, uint64_t key, uint64_t *value);
uint64_t rc_snapshots_installed(const raft_cluster_t *c);  /* from a leader, all nodes */

/* The first safety violation seen, or NULL. Checks run after every input;
 * rc_check_full() adds a pairwise comparison of all live logs. */
const char *rc_violation(const raft_cluster_t *c);
void rc_check_full(raft_cluster_t *c);

#endif
