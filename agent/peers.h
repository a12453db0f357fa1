/* peers.h - the agent's membership: runs the gossip shell on the agent's
 * loop, publishes this host's record (capacity, usage, interfaces and their
 * services, endpoints, CURVE key), hands every live member's Raft endpoint
 * to the cluster module, admits members' keys as peers on the control API
 * (zap.h), and serves `host.list`. */
#ifndef FERRY_AGENT_PEERS_H
#define FERRY_AGENT_PEERS_H

#include <czmq.h>

#include "agent/cluster.h"
#include "agent/control.h"
#include "agent/inventory.h"
#include "agent/membership/swim_record.h"
#include "agent/zap.h"
#include "common/config.h"
#include "common/crypto.h"

typedef struct peers peers_t;

typedef struct {
    const char *name;
    const config_t *config;          /* bind address, ports, join seeds, timings */
    const inventory_t *inventory;
    const uint8_t *cluster_key;
    const char *public_key;          /* this agent's CURVE key (z85) */
    const char *raft_addr;           /* host:port of each endpoint, for the record */
    const char *control_addr;
    const char *migration_addr;
    cluster_t *cluster;
    zap_t *zap;                      /* members' keys are admitted as peers on "control" */
} peers_config_t;

peers_t *peers_new(const peers_config_t *cfg, zloop_t *loop, control_t *control, char *err, size_t errlen);
/* Leaves gracefully (bounded wait) and closes. */
void peers_destroy(peers_t **self_p);

/* Re-reads usage from the inventory into this host's record. */
void peers_refresh_record(peers_t *self);

/* Another member's record, decoded. Returns 0, -ENOENT if no member has
 * that name, -EHOSTDOWN if it is known but dead or gone, -EBADMSG if its
 * record does not decode. */
int peers_member_record(peers_t *self, const char *name, swim_record_t *out);

#endif
