/* migrations.h - the agent's migrations: the control commands, the jobs,
 * and the threads that run the data plane (migration/migrate.h).
 *
 * Operators:
 *   vm.migrate    {name, to, downtime_ms?, streams?, verify?}: preflight
 *                 (migration_plan.h), then start (or queue) a job on this
 *                 host, the VM's owner; replies at once with the job id
 *   vm.migration  {id}: the job's progress, then its result; without id,
 *                 the jobs this agent remembers
 *   vm.migration.cancel {id}: stops a job before its commit
 *
 * Peers (the source asks the destination over the control API, with its
 * own agent key; zap.h admits members' keys as peers):
 *   migration.prepare {id, vm, kind, source, memory_bytes, vcpus}: checks
 *                 that this host can hold the VM, picks the network, binds
 *                 a receiver on it and starts it; replies with its endpoint
 *   migration.abort {id}: the source gave up before connecting
 *
 * A live migration, end to end:
 *   1 source: preflight; a slot (at most [migration] max_concurrent per
 *     host, more wait in a queue); the VM is lent to the job's thread
 *     (vms_migration_lend): reconciliation leaves it alone;
 *   2 thread: the guest is told a migration is coming; migration.prepare
 *     at the destination, which reserves the name (vms_incoming_expect)
 *     and starts a receiver thread on its vmotion address;
 *   3 thread: migration_send(): pre-copy passes, switchover; at the commit
 *     point it asks the loop to propose FSM_CMD_VM_SET_OWNER (a compare-
 *     and-set on the VM's generation) and waits for it to apply;
 *   4 the destination resumes the VM once it hears the commit and hands it
 *     to its runtime (vms_incoming_arrived); the source's VM is destroyed
 *     and its record forgotten (vms_migration_return with NULL).
 * Failure before the commit gives the VM back to the source's runtime,
 * running as before.
 *
 * Threads never touch the loop's state: they post to the job (under the
 * manager's lock) and wake the loop through an eventfd. */
#ifndef FERRY_AGENT_MIGRATIONS_H
#define FERRY_AGENT_MIGRATIONS_H

#include <czmq.h>

#include "agent/cluster.h"
#include "agent/control.h"
#include "agent/inventory.h"
#include "agent/peers.h"
#include "agent/vms.h"
#include "common/config.h"
#include "common/crypto.h"

typedef struct migrations migrations_t;

typedef struct {
    const char *name;                    /* this agent */
    const config_t *config;              /* [migration] and [ports], [agent] bind */
    const crypto_identity_t *identity;   /* this agent's key: streams and peer calls */
    const inventory_t *inventory;
    cluster_t *cluster;
    peers_t *peers;
    vms_t *vms;
} migrations_config_t;

migrations_t *migrations_new(const migrations_config_t *cfg, control_t *control, zloop_t *loop, char *err,
                             size_t errlen);
/* Cancels what runs (bounded by the data plane's timeouts), joins the
 * threads and hands every VM back to vms. Destroy before vms. */
void migrations_destroy(migrations_t **self_p);

#endif
