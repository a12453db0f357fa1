/* vms.h - the agent's VMs.
 *
 * What runs where is decided in the cluster state (the Raft FSM: spec,
 * desired power, owner); this module makes this host match it and serves the
 * vm.* control commands:
 *
 *   vm.create  vm.delete  vm.start  vm.stop   propose FSM commands; the reply
 *                                             comes once applied here
 *   vm.reset                                  power-cycles the local VM (owner only)
 *   vm.list  vm.show  vm.events  vm.console   read this agent's state
 *
 * Reconciliation is the ONLY code that starts or stops a local VM, which
 * keeps DESIGN.md's ownership invariant in one place: a VM runs here iff the
 * FSM names this host its owner, wants it on, and this host's lease is valid.
 * It runs after every applied batch (vms_on_apply) and once a second. A host
 * whose lease lapses powers its VMs off (self-fencing).
 *
 * Once a second each local VM is also measured (CPU from its vCPU threads,
 * dirty pages/s and an active set from the dirty log, heartbeats) and
 * monitored: a guest that heartbeated and then fell silent for the heartbeat
 * timeout is reset, at most VMS_MONITOR_MAX_RESETS times per power-on. Every
 * such action is an event in an in-memory ring (vm.events, vm show).
 *
 * Reads (vm.list, vm.show) serve this agent's applied state plus its local
 * runtime, so a host cut off from the quorum still says what it runs; pass
 * "linearizable": true to wait for the Raft read barrier first. */
#ifndef FERRY_AGENT_VMS_H
#define FERRY_AGENT_VMS_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/cluster.h"
#include "agent/control.h"
#include "common/config.h"
#include "vmm/vm.h"

#define VMS_MONITOR_MAX_RESETS 3
#define VMS_EVENTS_MAX 256

typedef struct vms vms_t;

typedef struct {
    const char *name;                  /* this agent */
    const char *state_dir;             /* console logs: <state_dir>/vms/NAME/console.log */
    const char *backend;               /* "kvm" or "process": see vms_pick_backend() */
    uint32_t downtime_ms;              /* stun limit recorded for new VMs */
    uint64_t heartbeat_timeout_ms;     /* VM monitoring; 0 = off */
} vms_config_t;

/* Registers the vm.* commands on control. The cluster must outlive it. */
vms_t *vms_new(const vms_config_t *cfg, cluster_t *cluster, control_t *control, zloop_t *loop, char *err,
               size_t errlen);
/* Powers off every local VM. */
void vms_destroy(vms_t **self_p);

/* For cluster_config_t.on_apply: reconciles soon (coalesced, from the loop). */
void vms_on_apply(void *self);
/* Makes the local VMs match the FSM now. */
void vms_reconcile(vms_t *self);

/* The backend VMs get here, and how many run now. */
const char *vms_backend(const vms_t *self);
size_t vms_running(const vms_t *self);

/* The backend for a config choice: kvm or process as asked, or for auto kvm
 * when /dev/kvm opens read-write, else process (why says why). */
const char *vms_pick_backend(config_backend_t choice, char *why, size_t whylen);

/* For migration (agent/migrations.c). A migration runs on a thread of its
 * own, which holds the VM while it runs; these hand the VM over and back.
 * While a migration holds a name, reconciliation neither starts nor stops
 * anything for it, and nothing measures or monitors it.
 *
 * Source: lend takes the running local VM out of the runtime. return gives
 * it back if the migration failed before the commit (vm: running here as
 * before), or says it is gone (vm NULL: released after the ownership
 * commit; reconciliation then forgets the name, whose owner is elsewhere).
 *
 * Destination: expect reserves the name before the receiver starts, so a
 * commit applied here mid-migration does not cold-boot a second copy.
 * arrived hands over the running VM once the receiver is done (vm NULL: the
 * migration failed, nothing arrived). An arrived VM stays local while the
 * FSM catches up to name this host its owner. */
int vms_migration_lend(vms_t *self, const char *name, vm_t **vm_out, char *err, size_t errlen);
/* Cold: holds a powered-off VM's name (nothing starts it) while its image
 * moves; vms_migration_return(NULL) lets go. */
int vms_migration_hold(vms_t *self, const char *name, char *err, size_t errlen);
/* Source, at the commit point: the lent VM is paused for good unless the
 * commit fails; from now on this host no longer reports it running. */
void vms_migration_paused(vms_t *self, const char *name);
void vms_migration_return(vms_t *self, const char *name, vm_t *vm);
int vms_incoming_expect(vms_t *self, const char *name, char *err, size_t errlen);
void vms_incoming_arrived(vms_t *self, const char *name, vm_t *vm);
/* True if the VM has a local instance here now. */
bool vms_local_running(vms_t *self, const char *name);
/* True while a migration holds the name (either way). */
bool vms_migrating(vms_t *self, const char *name);
/* <state_dir>/images/NAME: a suspended VM's image (vm stop --suspend), or
 * one a cold migration brings; a start resumes from it. -1 if too long. */
int vms_image_dir(const vms_t *self, const char *vm, char *out, size_t cap);
/* <state_dir>/vms/NAME/console.log, created if need be; -1 if it does not fit. */
int vms_console_path(vms_t *self, const char *name, char *out, size_t cap);

#endif
