/* node.h - the Raft shell inside ferryd: it wires the pure core (raft.h) to
 * real storage (raftlog.h), the network (transport.h), the clock (a zloop
 * timer) and the cluster state machine (fsm.h).
 *
 *   raft_node_t *node = raft_node_new(&cfg, loop, err, sizeof err);
 *   raft_node_propose(node, &command, done, ctx);   // any agent: forwarded to the leader
 *   raft_node_read(node, done, ctx);                // linearizable read barrier
 *   const fsm_t *state = raft_node_fsm(node);
 *
 * Writes from any agent reach the leader: a follower forwards the command
 * over the transport, the leader proposes it and answers with the entry's
 * (index, term), and the follower completes the request once it has applied
 * that entry itself - so the caller always sees its own write. A proposal
 * whose entry is replaced by another (a leader change) fails with
 * RAFT_ERR_NOT_LEADER, and one with no answer in time with -ETIMEDOUT.
 *
 * The log is written on a storage thread (storage_thread.h), never on the
 * loop: a slow fsync does not delay ticks, heartbeats or the transport.
 * Messages that promise what is being written, and the applying of entries,
 * wait until it is durable (docs/consensus.md, "The node"). */
#ifndef FERRY_RAFT_NODE_H
#define FERRY_RAFT_NODE_H

#include <czmq.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/zap.h"
#include "common/crypto.h"
#include "consensus/fsm.h"
#include "consensus/raft.h"

typedef struct raft_node raft_node_t;

typedef struct {
    uint64_t id;                      /* raft_node_id_from_key() of the identity */
    const char *dir;                  /* log, hard state, snapshots */
    const char *bind_endpoint;        /* tcp://ADDRESS:PORT for the transport */
    const crypto_identity_t *identity;
    zap_t *zap;
    int tick_ms;                      /* default 10 */
    int election_tick;                /* default 10 (100 ms at 10 ms ticks) */
    int heartbeat_tick;               /* default 2 */
    bool bootstrap;                   /* found a new cluster with this node as its only voter */
    uint32_t max_voters;              /* learners are promoted up to this many voters; default 3 */
    uint64_t snapshot_every;          /* entries between snapshots; default 1024 */
    int request_timeout_ms;           /* default 5000 */
    uint64_t seed;                    /* election timing randomness */
    /* Called after every batch of applied entries (e.g. to reconcile VMs). */
    void (*on_apply)(void *ctx);
    void *on_apply_ctx;
} raft_node_config_t;

/* error: 0, a RAFT_ERR_* code, or -ETIMEDOUT. result: the FSM's verdict on
 * the command (proposals only; NULL for reads and failures). */
typedef void (raft_node_done_fn)(void *ctx, int error, const fsm_result_t *result, uint64_t index);

/* A stable node id from an agent's CURVE public key (never 0). */
uint64_t raft_node_id_from_key(const char *public_z85);

raft_node_t *raft_node_new(const raft_node_config_t *cfg, zloop_t *loop, char *err, size_t errlen);
void raft_node_destroy(raft_node_t **self_p);

int raft_node_propose(raft_node_t *self, const msgpack_sbuffer *command, raft_node_done_fn *done, void *ctx);
int raft_node_read(raft_node_t *self, raft_node_done_fn *done, void *ctx);

/* Peers come from membership: address and key of each agent's transport. */
void raft_node_set_peer(raft_node_t *self, uint64_t id, const char *endpoint, const char *public_z85);
/* Leader only: admits a member as a learner (promoted automatically once
 * caught up, while there are fewer than max_voters voters). */
int raft_node_add_member(raft_node_t *self, uint64_t id);
int raft_node_transfer_leadership(raft_node_t *self, uint64_t id);

const fsm_t *raft_node_fsm(const raft_node_t *self);
bool raft_node_is_leader(const raft_node_t *self);
uint64_t raft_node_leader(const raft_node_t *self);
uint64_t raft_node_id(const raft_node_t *self);
uint64_t raft_node_applied(const raft_node_t *self);
const char *raft_node_endpoint(const raft_node_t *self);
void raft_node_status(const raft_node_t *self, raft_status_t *out);

#endif
