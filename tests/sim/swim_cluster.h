/* swim_cluster.h - a cluster of SWIM cores on the simulator's virtual
 * network: the harness that sim_swim.c and bench/membership share.
 *
 * Node i is named and addressed "node-<i>". Every packet a core emits is
 * sealed with the node's keyring exactly as the real shell seals it, tagged
 * as a datagram or a push-pull stream, and handed to sim_send; on delivery
 * it is opened (a failure is counted and dropped, as in the shell) and fed
 * to the receiving core. Membership events are reported through a hook so
 * tests and benchmarks can timestamp them without scanning every node.
 *
 *   swim_cluster_t *c = swim_cluster_new(&(swim_cluster_config_t){
 *       .nodes = 5, .seed = seed });
 *   swim_cluster_join_all(c, 0);
 *   swim_cluster_run_until(c, swim_cluster_converged, c, 30 * SIM_SECOND);
 */
#ifndef FERRY_SWIM_CLUSTER_H
#define FERRY_SWIM_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/membership/keyring.h"
#include "agent/membership/swim.h"
#include "sim.h"

typedef struct swim_cluster swim_cluster_t;

typedef void (*swim_cluster_event_fn)(void *ctx, int node, const swim_event_t *ev);

typedef struct {
    int nodes;
    uint64_t seed;
    const swim_config_t *swim;      /* NULL: swim_config_default */
    swim_cluster_event_fn on_event; /* optional */
    void *event_ctx;
} swim_cluster_config_t;

swim_cluster_t *swim_cluster_new(const swim_cluster_config_t *cfg);
void swim_cluster_destroy(swim_cluster_t **self_p);

sim_t *swim_cluster_sim(swim_cluster_t *self);
int swim_cluster_size(const swim_cluster_t *self);
swim_t *swim_cluster_node(swim_cluster_t *self, int node);
/* "node-<i>" */
const char *swim_cluster_name(const swim_cluster_t *self, int node);
/* Parses "node-<i>"; returns -1 for anything else. */
int swim_cluster_index(const char *name);

/* Every node but `seed_node` joins through it. */
void swim_cluster_join_all(swim_cluster_t *self, int seed_node);
/* Gives a node a different cluster key (fresh keyring). */
void swim_cluster_set_key(swim_cluster_t *self, int node, const uint8_t key[KEYRING_KEY_BYTES]);
/* Crash (no leave) and restart with a fresh core that joins via `seed_node`. */
void swim_cluster_crash(swim_cluster_t *self, int node);
void swim_cluster_restart(swim_cluster_t *self, int node, int seed_node);
void swim_cluster_leave(swim_cluster_t *self, int node);
/* Sends a forged but correctly sealed packet holding `msg` from one node to
 * another, as if `from` had said it (used to plant false suspicions). */
void swim_cluster_inject(swim_cluster_t *self, int from, int to, const swim_msg_t *msg);

uint64_t swim_cluster_auth_failures(const swim_cluster_t *self, int node);
uint64_t swim_cluster_bytes_sent(const swim_cluster_t *self);
/* Sealed bytes sent as datagrams and as push-pull streams (what the shell
 * would put on the wire, less UDP/TCP headers). */
uint64_t swim_cluster_udp_bytes(const swim_cluster_t *self);
uint64_t swim_cluster_stream_bytes(const swim_cluster_t *self);

/* Runs until pred(ctx) holds, checking every `check_every_us` of virtual
 * time (10 ms if 0), or until `deadline_us` (absolute). */
bool swim_cluster_run_until(swim_cluster_t *self, bool (*pred)(void *ctx), void *ctx,
                            uint64_t deadline_us, uint64_t check_every_us);

/* True if node `observer` holds `subject` in `state`. */
bool swim_cluster_sees(swim_cluster_t *self, int observer, int subject, swim_state_t state);
/* Predicate: every up node sees every up node alive and every down node
 * not alive (ctx is the cluster). */
bool swim_cluster_converged(void *cluster);

#endif
