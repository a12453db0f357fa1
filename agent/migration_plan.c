/* migration_plan.c - see migration_plan.h. */
#include "agent/migration_plan.h"

#include <stdio.h>
#include <string.h>

static bool rule_has(const fsm_rule_t *rule, const char *vm)
{
    for (uint32_t i = 0; i < rule->vm_count; i++)
        if (strcmp(rule->vms[i], vm) == 0)
            return true;
    return false;
}

/* Memory and vCPUs the destination's powered-on VMs take (the moving VM
 * excluded: a retried move must not count it twice). */
static void destination_load(const fsm_t *fsm, const char *host, const char *moving, uint64_t *memory,
                             uint64_t *vcpus)
{
    *memory = *vcpus = 0;
    for (size_t i = 0; i < fsm_vm_count(fsm); i++) {
        const fsm_vm_t *v = fsm_vm_at(fsm, i);
        if (strcmp(v->owner, host) == 0 && v->power == FSM_POWER_ON && strcmp(v->name, moving) != 0) {
            *memory += v->memory_bytes;
            *vcpus += v->vcpus;
        }
    }
}

static int check_rules(const migration_plan_input_t *in, char *why, size_t whylen, char *warning,
                       size_t warninglen)
{
    for (size_t i = 0; i < fsm_rule_count(in->fsm); i++) {
        const fsm_rule_t *rule = fsm_rule_at(in->fsm, i);
        if (!rule_has(rule, in->vm))
            continue;
        for (uint32_t m = 0; m < rule->vm_count; m++) {
            const fsm_vm_t *other = fsm_vm_find(in->fsm, rule->vms[m]);
            if (!other || strcmp(other->name, in->vm) == 0 || !other->owner[0])
                continue;
            bool there = strcmp(other->owner, in->destination) == 0;
            if (rule->anti && there) {
                snprintf(why, whylen, "anti-affinity rule '%s' keeps %s apart from %s, which is on %s", rule->name,
                         in->vm, other->name, in->destination);
                return -1;
            }
            if (!rule->anti && !there && !warning[0])
                snprintf(warning, warninglen, "affinity rule '%s' keeps %s with %s, which stays on %s", rule->name,
                         in->vm, other->name, other->owner);
        }
    }
    return 0;
}

int migration_preflight(const migration_plan_input_t *in, char *why, size_t whylen, char *warning,
                        size_t warninglen)
{
    warning[0] = '\0';
    const fsm_vm_t *v = fsm_vm_find(in->fsm, in->vm);
    if (!v) {
        snprintf(why, whylen, "no VM named '%s'", in->vm);
        return -1;
    }
    if (strcmp(v->owner, in->source) != 0) {
        snprintf(why, whylen, "VM %s is owned by %s, not %s: run the migration on its owner", in->vm,
                 v->owner[0] ? v->owner : "no host", in->source);
        return -1;
    }
    if (strcmp(in->destination, in->source) == 0) {
        snprintf(why, whylen, "VM %s is on %s already", in->vm, in->source);
        return -1;
    }
    const fsm_host_t *dest = fsm_host_find(in->fsm, in->destination);
    if (!dest) {
        snprintf(why, whylen, "no host named '%s' in the cluster", in->destination);
        return -1;
    }
    if (!fsm_lease_valid(in->fsm, in->destination, in->now_ms)) {
        snprintf(why, whylen, "host %s has no valid lease (down, or cut off from the quorum)", in->destination);
        return -1;
    }
    if (in->live && v->power != FSM_POWER_ON) {
        snprintf(why, whylen, "VM %s is powered off: a live migration needs it running (migrate it cold)", in->vm);
        return -1;
    }
    if (!in->live && v->power == FSM_POWER_ON) {
        snprintf(why, whylen, "VM %s is powered on: a cold migration needs it off (stop it, or migrate it live)",
                 in->vm);
        return -1;
    }
    uint64_t used_memory, used_vcpus;
    destination_load(in->fsm, in->destination, in->vm, &used_memory, &used_vcpus);
    uint64_t free_memory = dest->memory_bytes > used_memory ? dest->memory_bytes - used_memory : 0;
    if (v->memory_bytes > free_memory) {
        snprintf(why, whylen, "host %s has %llu MiB of memory free, VM %s needs %llu MiB", in->destination,
                 (unsigned long long)(free_memory >> 20), in->vm, (unsigned long long)(v->memory_bytes >> 20));
        return -1;
    }
    if (v->vcpus > dest->cpus) {
        snprintf(why, whylen, "host %s has %u CPUs, VM %s has %u vCPUs", in->destination, dest->cpus, in->vm,
                 v->vcpus);
        return -1;
    }
    for (size_t i = 0; i < fsm_device_count(in->fsm); i++) {
        const fsm_device_t *d = fsm_device_at(in->fsm, i);
        if (strcmp(d->vm, in->vm) == 0) {
            snprintf(why, whylen, "VM %s holds device %s of host %s: a passthrough device cannot move with it "
                     "(release it first)", in->vm, d->device, d->host);
            return -1;
        }
    }
    return check_rules(in, why, whylen, warning, warninglen);
}

int migration_network_pick(const inventory_t *inv, const char *management_address, bool live,
                           migration_network_t *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    uint32_t wanted = live ? SERVICE_VMOTION : SERVICE_PROVISIONING;
    const inventory_interface_t *ifc = inventory_service_interface(inv, wanted);
    const char *address = inventory_service_address(inv, wanted);
    if (ifc && address) {
        snprintf(out->network, sizeof(out->network), "%s", config_service_name(wanted));
        snprintf(out->interface, sizeof(out->interface), "%s", ifc->name);
        snprintf(out->address, sizeof(out->address), "%s", address);
        return 0;
    }
    out->fallback = true;
    snprintf(out->network, sizeof(out->network), "%s", config_service_name(SERVICE_MANAGEMENT));
    ifc = inventory_service_interface(inv, SERVICE_MANAGEMENT);
    address = management_address && management_address[0] ? management_address
                                                           : inventory_service_address(inv, SERVICE_MANAGEMENT);
    if (!address) {
        snprintf(why, whylen, "no interface here carries %s or management with an address",
                 config_service_name(wanted));
        return -1;
    }
    /* The bind address may sit on another interface than the tagged one. */
    for (size_t i = 0; i < inventory_interface_count(inv); i++) {
        const inventory_interface_t *candidate = inventory_interface_at(inv, i);
        for (size_t a = 0; a < candidate->address_count; a++)
            if (strcmp(candidate->addresses[a].text, address) == 0)
                ifc = candidate;
    }
    snprintf(out->interface, sizeof(out->interface), "%s", ifc ? ifc->name : "?");
    snprintf(out->address, sizeof(out->address), "%s", address);
    return 0;
}
