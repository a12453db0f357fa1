/* cluster.h - the agent's side of consensus: it runs the Raft node, keeps
 * this host registered with a live lease in the cluster state, learns peers
 * from membership, and serves the cluster.* control commands.
 *
 * Writes from control handlers go through cluster_submit(): the command is
 * proposed (forwarded to the leader if need be) and the control request is
 * answered once this agent has applied it. */
#ifndef FERRY_AGENT_CLUSTER_H
#define FERRY_AGENT_CLUSTER_H

#include <czmq.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/control.h"
#include "agent/zap.h"
#include "common/config.h"
#include "consensus/fsm.h"
#include "consensus/node.h"

typedef struct cluster cluster_t;

typedef struct {
    const char *name;                 /* this agent */
    const char *state_dir;            /* the Raft log goes in <state_dir>/raft */
    const char *raft_endpoint;        /* tcp://ADDRESS:PORT to bind */
    const crypto_identity_t *identity;
    zap_t *zap;
    bool bootstrap;                   /* found a new cluster if the log is empty */
    uint32_t voters;                  /* voters to keep (learners promoted up to it) */
    uint64_t lease_ms;                /* host lease duration */
    uint32_t cpus;                    /* capacity registered for this host */
    uint64_t memory_bytes;
    uint64_t election_timeout_ms;
    uint64_t heartbeat_ms;
    void (*on_apply)(void *ctx);      /* after each batch of applied entries */
    void *on_apply_ctx;
} cluster_config_t;

cluster_t *cluster_new(const cluster_config_t *cfg, zloop_t *loop, control_t *control, char *err, size_t errlen);
void cluster_destroy(cluster_t **self_p);

/* A member that membership reports: its Raft endpoint and key. The leader
 * admits it as a learner. */
void cluster_learn_peer(cluster_t *self, const char *name, const char *public_z85, const char *raft_endpoint);

/* Proposes `command` (an fsm_cmd_* encoding) on behalf of a control request:
 * defers the call and completes it with {index, status, message} once
 * applied here, or with an error. Returns what the handler should return. */
int cluster_submit(cluster_t *self, control_call_t *call, const msgpack_sbuffer *command);

/* The same without a control call: done(ctx, ...) runs once the command is
 * applied here, or failed (raft_node_propose). Not from inside a done. */
int cluster_propose(cluster_t *self, const msgpack_sbuffer *command, raft_node_done_fn *done, void *ctx);
/* Linearizable read barrier (raft_node_read): done runs once this agent's
 * state holds everything committed before the call; fails without a quorum.
 * A lone voter passes at once: done may run before cluster_read returns. */
int cluster_read(cluster_t *self, raft_node_done_fn *done, void *ctx);
/* A user-facing sentence for a proposal or read error, and the control code
 * for an FSM verdict. */
const char *cluster_error_text(int error);
control_code_t cluster_control_code(fsm_status_t status);

const fsm_t *cluster_state(const cluster_t *self);
const char *cluster_leader_name(const cluster_t *self);
/* True if this host holds a valid lease now: the condition to run VMs. */
bool cluster_lease_valid(const cluster_t *self);

#endif
