/* migration_plan.h - what a migration may do, and over which network.
 *
 * The preflight is pure: it reads the cluster state (the FSM) and answers
 * whether a VM may move from its owner to a destination, and if not, why,
 * in one sentence an operator can act on. It runs on the source before a
 * migration starts; the destination checks its own free memory again when
 * asked to receive.
 *
 *   - the VM exists and the source owns it; the destination is another
 *     registered host with a valid lease;
 *   - live needs the VM powered on, cold needs it off;
 *   - capacity: the destination's registered memory, less what its
 *     powered-on VMs take, holds the VM; its CPUs hold the VM's vCPUs;
 *   - devices: a VM holding a device allocation cannot move (a passthrough
 *     device stays with its host, as with vSphere's DirectPath I/O);
 *   - rules: an anti-affinity rule refuses a move next to a VM it keeps
 *     apart; an affinity rule the move breaks is a warning, not a refusal
 *     (members of a group move one at a time).
 *
 * The network choice reads this host's inventory: hot migration uses the
 * interface tagged `vmotion`, cold migration `provisioning`; either falls
 * back to the management address, and says so. */
#ifndef FERRY_AGENT_MIGRATION_PLAN_H
#define FERRY_AGENT_MIGRATION_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/inventory.h"
#include "consensus/fsm.h"

typedef struct {
    const fsm_t *fsm;
    const char *vm;
    const char *source;          /* the host asking: it must own the VM */
    const char *destination;
    bool live;
    uint64_t now_ms;             /* wall clock, for lease validity */
} migration_plan_input_t;

/* 0 if the move may start; otherwise -1 with the reason in why. warning
 * gets a sentence the operator should see even when the move may start
 * ("" if none). */
int migration_preflight(const migration_plan_input_t *in, char *why, size_t whylen, char *warning,
                        size_t warninglen);

typedef struct {
    char network[16];            /* "vmotion", "provisioning" or "management" */
    char interface[CONFIG_IFNAME_MAX];
    char address[64];            /* to bind the data plane on */
    bool fallback;               /* the wanted network is not configured here */
} migration_network_t;

/* Picks the data-plane network on this host. management_address is the
 * agent's own (its [agent] bind), used for the fallback when set. Returns 0,
 * or -1 with why when no interface has a usable address. */
int migration_network_pick(const inventory_t *inv, const char *management_address, bool live,
                           migration_network_t *out, char *why, size_t whylen);

#endif
