/* fsm.c - see fsm.h.
 *
 * Each table is a sorted array of fixed-size records whose first field is
 * the record's name, so one set of helpers (find, insert, remove) serves
 * every table, and iteration order is the canonical (sorted) order. */
#include "consensus/fsm.h"
#include "common/wire.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SNAPSHOT_VERSION 1

/* --- sorted tables --------------------------------------------------------- */

typedef struct {
    uint8_t *items;
    size_t count, cap, item_size, limit;
} table_t;

static void *table_at(const table_t *t, size_t i) { return t->items + i * t->item_size; }

/* Binary search on the leading name; returns the index where `name` is or
 * would be inserted, and whether it was found. */
static size_t table_search(const table_t *t, const char *name, bool *found)
{
    size_t lo = 0, hi = t->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int cmp = strcmp((const char *)table_at(t, mid), name);
        if (cmp == 0) {
            *found = true;
            return mid;
        }
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static void *table_find(const table_t *t, const char *name)
{
    bool found;
    size_t i = table_search(t, name, &found);
    return found ? table_at(t, i) : NULL;
}

/* Inserts or replaces the record; returns FSM_ERR_LIMIT when full. */
static fsm_status_t table_put(table_t *t, const void *record)
{
    bool found;
    size_t i = table_search(t, (const char *)record, &found);
    if (found) {
        memcpy(table_at(t, i), record, t->item_size);
        return FSM_OK;
    }
    if (t->count == t->limit)
        return FSM_ERR_LIMIT;
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        uint8_t *grown = realloc(t->items, cap * t->item_size);
        if (!grown)
            return FSM_ERR_LIMIT;
        t->items = grown;
        t->cap = cap;
    }
    memmove(table_at(t, i + 1), table_at(t, i), (t->count - i) * t->item_size);
    memcpy(table_at(t, i), record, t->item_size);
    t->count++;
    return FSM_OK;
}

static bool table_remove(table_t *t, const char *name)
{
    bool found;
    size_t i = table_search(t, name, &found);
    if (!found)
        return false;
    memmove(table_at(t, i), table_at(t, i + 1), (t->count - i - 1) * t->item_size);
    t->count--;
    return true;
}

static void table_clear(table_t *t)
{
    free(t->items);
    t->items = NULL;
    t->count = t->cap = 0;
}

/* --- the state ------------------------------------------------------------- */

struct fsm {
    uint64_t applied_index;
    table_t hosts, vms, devices, rules, settings;
};

static void init_tables(fsm_t *self)
{
    self->hosts = (table_t){ .item_size = sizeof(fsm_host_t), .limit = 1024 };
    self->vms = (table_t){ .item_size = sizeof(fsm_vm_t), .limit = 16384 };  /* snapshot stays under WIRE_MAX_FRAME */
    self->devices = (table_t){ .item_size = sizeof(fsm_device_t), .limit = 4096 };
    self->rules = (table_t){ .item_size = sizeof(fsm_rule_t), .limit = 1024 };
    self->settings = (table_t){ .item_size = sizeof(fsm_setting_t), .limit = 256 };
}

static void clear_tables(fsm_t *self)
{
    table_clear(&self->hosts);
    table_clear(&self->vms);
    table_clear(&self->devices);
    table_clear(&self->rules);
    table_clear(&self->settings);
}

fsm_t *fsm_new(void)
{
    fsm_t *self = calloc(1, sizeof(*self));
    if (self)
        init_tables(self);
    return self;
}

void fsm_destroy(fsm_t **self_p)
{
    fsm_t *self = *self_p;
    if (!self)
        return;
    clear_tables(self);
    free(self);
    *self_p = NULL;
}

uint64_t fsm_applied_index(const fsm_t *self) { return self->applied_index; }
size_t fsm_host_count(const fsm_t *self) { return self->hosts.count; }
const fsm_host_t *fsm_host_at(const fsm_t *self, size_t i) { return i < self->hosts.count ? table_at(&self->hosts, i) : NULL; }
const fsm_host_t *fsm_host_find(const fsm_t *self, const char *name) { return table_find(&self->hosts, name); }
size_t fsm_vm_count(const fsm_t *self) { return self->vms.count; }
const fsm_vm_t *fsm_vm_at(const fsm_t *self, size_t i) { return i < self->vms.count ? table_at(&self->vms, i) : NULL; }
const fsm_vm_t *fsm_vm_find(const fsm_t *self, const char *name) { return table_find(&self->vms, name); }
size_t fsm_device_count(const fsm_t *self) { return self->devices.count; }
const fsm_device_t *fsm_device_at(const fsm_t *self, size_t i) { return i < self->devices.count ? table_at(&self->devices, i) : NULL; }
size_t fsm_rule_count(const fsm_t *self) { return self->rules.count; }
const fsm_rule_t *fsm_rule_at(const fsm_t *self, size_t i) { return i < self->rules.count ? table_at(&self->rules, i) : NULL; }

const char *fsm_setting_get(const fsm_t *self, const char *key)
{
    const fsm_setting_t *s = table_find(&self->settings, key);
    return s ? s->value : NULL;
}

bool fsm_lease_valid(const fsm_t *self, const char *host, uint64_t now_ms)
{
    const fsm_host_t *h = fsm_host_find(self, host);
    return h && h->lease_expires_ms > now_ms;
}

const char *fsm_status_name(fsm_status_t status)
{
    switch (status) {
    case FSM_OK: return "ok";
    case FSM_ERR_MALFORMED: return "malformed";
    case FSM_ERR_EXISTS: return "exists";
    case FSM_ERR_NOT_FOUND: return "not found";
    case FSM_ERR_STALE: return "stale";
    case FSM_ERR_LIMIT: return "limit";
    case FSM_ERR_INVALID: return "invalid";
    }
    return "unknown";
}

/* --- command builders ------------------------------------------------------ */

static void begin_command(msgpack_packer *pk, fsm_command_type_t type, uint32_t fields)
{
    msgpack_pack_array(pk, 3);
    msgpack_pack_uint32(pk, FSM_COMMAND_VERSION);
    msgpack_pack_uint32(pk, (uint32_t)type);
    msgpack_pack_map(pk, fields);
}

void fsm_cmd_host_register(msgpack_packer *pk, const char *name, uint32_t cpus, uint64_t memory_bytes, bool voter)
{
    begin_command(pk, FSM_CMD_HOST_REGISTER, 4);
    wire_pack_kv_str(pk, "name", name);
    wire_pack_kv_u64(pk, "cpus", cpus);
    wire_pack_kv_u64(pk, "memory_bytes", memory_bytes);
    wire_pack_kv_bool(pk, "voter", voter);
}

void fsm_cmd_host_remove(msgpack_packer *pk, const char *name)
{
    begin_command(pk, FSM_CMD_HOST_REMOVE, 1);
    wire_pack_kv_str(pk, "name", name);
}

void fsm_cmd_lease_renew(msgpack_packer *pk, const char *host, uint64_t expires_ms)
{
    begin_command(pk, FSM_CMD_LEASE_RENEW, 2);
    wire_pack_kv_str(pk, "host", host);
    wire_pack_kv_u64(pk, "expires_ms", expires_ms);
}

void fsm_cmd_vm_create(msgpack_packer *pk, const fsm_vm_t *spec)
{
    begin_command(pk, FSM_CMD_VM_CREATE, 6);
    wire_pack_kv_str(pk, "name", spec->name);
    wire_pack_kv_u64(pk, "memory_bytes", spec->memory_bytes);
    wire_pack_kv_u64(pk, "vcpus", spec->vcpus);
    wire_pack_kv_str(pk, "profile", spec->profile);
    wire_pack_kv_str(pk, "owner", spec->owner);
    wire_pack_kv_u64(pk, "downtime_ms", spec->downtime_ms);
}

void fsm_cmd_vm_delete(msgpack_packer *pk, const char *name)
{
    begin_command(pk, FSM_CMD_VM_DELETE, 1);
    wire_pack_kv_str(pk, "name", name);
}

void fsm_cmd_vm_set_power(msgpack_packer *pk, const char *name, fsm_power_t power)
{
    begin_command(pk, FSM_CMD_VM_SET_POWER, 2);
    wire_pack_kv_str(pk, "name", name);
    wire_pack_kv_str(pk, "power", power == FSM_POWER_ON ? "on" : "off");
}

void fsm_cmd_vm_set_owner(msgpack_packer *pk, const char *name, const char *owner, uint64_t generation)
{
    begin_command(pk, FSM_CMD_VM_SET_OWNER, 3);
    wire_pack_kv_str(pk, "name", name);
    wire_pack_kv_str(pk, "owner", owner);
    wire_pack_kv_u64(pk, "generation", generation);
}

void fsm_cmd_device_allocate(msgpack_packer *pk, const char *device, const char *host, const char *vm)
{
    begin_command(pk, FSM_CMD_DEVICE_ALLOCATE, 3);
    wire_pack_kv_str(pk, "device", device);
    wire_pack_kv_str(pk, "host", host);
    wire_pack_kv_str(pk, "vm", vm);
}

void fsm_cmd_device_release(msgpack_packer *pk, const char *device)
{
    begin_command(pk, FSM_CMD_DEVICE_RELEASE, 1);
    wire_pack_kv_str(pk, "device", device);
}

void fsm_cmd_rule_set(msgpack_packer *pk, const fsm_rule_t *rule)
{
    begin_command(pk, FSM_CMD_RULE_SET, 3);
    wire_pack_kv_str(pk, "name", rule->name);
    wire_pack_kv_str(pk, "kind", rule->anti ? "anti-affinity" : "affinity");
    wire_pack_str(pk, "vms");
    msgpack_pack_array(pk, rule->vm_count);
    for (uint32_t i = 0; i < rule->vm_count; i++)
        wire_pack_str(pk, rule->vms[i]);
}

void fsm_cmd_rule_delete(msgpack_packer *pk, const char *name)
{
    begin_command(pk, FSM_CMD_RULE_DELETE, 1);
    wire_pack_kv_str(pk, "name", name);
}

void fsm_cmd_setting_set(msgpack_packer *pk, const char *key, const char *value)
{
    begin_command(pk, FSM_CMD_SETTING_SET, 2);
    wire_pack_kv_str(pk, "key", key);
    wire_pack_kv_str(pk, "value", value);
}

void fsm_cmd_noop(msgpack_packer *pk)
{
    begin_command(pk, FSM_CMD_NOOP, 0);
}

/* --- apply ----------------------------------------------------------------- */

static fsm_status_t result_set(fsm_result_t *r, fsm_status_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static fsm_status_t result_set(fsm_result_t *r, fsm_status_t status, const char *fmt, ...)
{
    r->status = status;
    va_list args;
    va_start(args, fmt);
    vsnprintf(r->message, sizeof(r->message), fmt, args);
    va_end(args);
    return status;
}

static bool valid_name(const char *s)
{
    if (!s[0])
        return false;
    for (const char *p = s; *p; p++)
        if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') || ('0' <= *p && *p <= '9') || *p == '-' ||
              *p == '_' || *p == '.' || *p == '/' || *p == ':'))
            return false;
    return true;
}

/* Reads a required name-like string field. */
static int need_name(const msgpack_object *body, const char *key, char out[FSM_NAME_MAX], fsm_result_t *r)
{
    char err[128];
    int rc = wire_get_str(body, key, out, FSM_NAME_MAX, err, sizeof(err));
    if (rc != 0 || !valid_name(out)) {
        result_set(r, FSM_ERR_MALFORMED, "'%s' must be a name of 1-%d letters, digits or -_.:/", key,
                   FSM_NAME_MAX - 1);
        return -1;
    }
    return 0;
}

static int need_u64(const msgpack_object *body, const char *key, uint64_t *out, fsm_result_t *r)
{
    char err[128];
    if (wire_get_u64(body, key, out, err, sizeof(err)) != 0) {
        result_set(r, FSM_ERR_MALFORMED, "'%s' must be a non-negative integer", key);
        return -1;
    }
    return 0;
}

static fsm_status_t apply_host_register(fsm_t *self, const msgpack_object *body, fsm_result_t *r)
{
    fsm_host_t host = { 0 };
    uint64_t cpus, memory;
    bool voter = false;
    char err[128];
    if (need_name(body, "name", host.name, r) || need_u64(body, "cpus", &cpus, r) ||
        need_u64(body, "memory_bytes", &memory, r))
        return r->status;
    if (wire_get_bool(body, "voter", &voter, err, sizeof(err)) < 0)
        return result_set(r, FSM_ERR_MALFORMED, "'voter' must be a boolean");
    if (cpus == 0 || cpus > 4096)
        return result_set(r, FSM_ERR_INVALID, "host %s: cpus %llu out of range 1..4096", host.name,
                          (unsigned long long)cpus);
    const fsm_host_t *existing = fsm_host_find(self, host.name);
    host.lease_expires_ms = existing ? existing->lease_expires_ms : 0;
    host.cpus = (uint32_t)cpus;
    host.memory_bytes = memory;
    host.voter = voter;
    if (table_put(&self->hosts, &host) != FSM_OK)
        return result_set(r, FSM_ERR_LIMIT, "host table is full");
    return result_set(r, FSM_OK, "host %s registered", host.name);
}

static size_t vms_owned_by(const fsm_t *self, const char *host)
{
    size_t n = 0;
    for (size_t i = 0; i < self->vms.count; i++)
        if (strcmp(((const fsm_vm_t *)table_at(&self->vms, i))->owner, host) == 0)
            n++;
    return n;
}

static fsm_status_t apply_host_remove(fsm_t *self, const msgpack_object *body, fsm_result_t *r)
{
    char name[FSM_NAME_MAX];
    if (need_name(body, "name", name, r))
        return r->status;
    if (!fsm_host_find(self, name))
        return result_set(r, FSM_ERR_NOT_FOUND, "no host %s", name);
    size_t owned = vms_owned_by(self, name);
    if (owned)
        return result_set(r, FSM_ERR_INVALID, "host %s still owns %zu VMs", name, owned);
    table_remove(&self->hosts, name);
    return result_set(r, FSM_OK, "host %s removed", name);
}

static fsm_status_t apply_lease_renew(fsm_t *self, const msgpack_object *body, fsm_result_t *r)
{
    char name[FSM_NAME_MAX];
    uint64_t expires;
    if (need_name(body, "host", name, r) || need_u64(body, "expires_ms", &expires, r))
        return r->status;
    fsm_host_t *host = table_find(&self->hosts, name);
    if (!host)
        return result_set(r, FSM_ERR_NOT_FOUND, "no host %s", name);
    /* Leases only grow: a renewal that arrives late must not shorten one. */
    if (expires > host->lease_expires_ms)
        host->lease_expires_ms = expires;
    return result_set(r, FSM_OK, "lease of %s until %llu", name, (unsigned long long)host->lease_expires_ms);
}

static fsm_status_t apply_vm_create(fsm_t *self, uint64_t index, const msgpack_object *body, fsm_result_t *r)
{
    fsm_vm_t vm = { 0 };
    uint64_t memory, vcpus, downtime = 100;
    char err[128];
    if (need_name(body, "name", vm.name, r) || need_u64(body, "memory_bytes", &memory, r) ||
        need_u64(body, "vcpus", &vcpus, r))
        return r->status;
    if (wire_get_str(body, "profile", vm.profile, sizeof(vm.profile), err, sizeof(err)) < 0 ||
        wire_get_str(body, "owner", vm.owner, sizeof(vm.owner), err, sizeof(err)) < 0 ||
        wire_get_u64(body, "downtime_ms", &downtime, err, sizeof(err)) < 0)
        return result_set(r, FSM_ERR_MALFORMED, "%s", err);
    if (fsm_vm_find(self, vm.name))
        return result_set(r, FSM_ERR_EXISTS, "a VM named %s exists", vm.name);
    if (memory < (1u << 20) || memory > (1ULL << 40) || vcpus < 1 || vcpus > 256 || downtime > 60000)
        return result_set(r, FSM_ERR_INVALID, "VM %s: memory must be 1 MiB..1 TiB, vcpus 1..256", vm.name);
    if (vm.owner[0] && !fsm_host_find(self, vm.owner))
        return result_set(r, FSM_ERR_NOT_FOUND, "no host %s to own VM %s", vm.owner, vm.name);
    vm.memory_bytes = memory;
    vm.vcpus = (uint32_t)vcpus;
    vm.downtime_ms = (uint32_t)downtime;
    vm.power = FSM_POWER_OFF;
    vm.generation = 1;
    vm.created_index = index;
    if (table_put(&self->vms, &vm) != FSM_OK)
        return result_set(r, FSM_ERR_LIMIT, "VM table is full");
    return result_set(r, FSM_OK, "VM %s created", vm.name);
}

static void release_devices_of(fsm_t *self, const char *vm)
{
    for (size_t i = self->devices.count; i-- > 0;) {
        const fsm_device_t *d = table_at(&self->devices, i);
        if (strcmp(d->vm, vm) == 0)
            table_remove(&self->devices, d->device);
    }
}

static void drop_from_rules(fsm_t *self, const char *vm)
{
    for (size_t i = 0; i < self->rules.count; i++) {
        fsm_rule_t *rule = table_at(&self->rules, i);
        uint32_t kept = 0;
        for (uint32_t j = 0; j < rule->vm_count; j++)
            if (strcmp(rule->vms[j], vm) != 0)
                memcpy(rule->vms[kept++], rule->vms[j], FSM_NAME_MAX);
        for (uint32_t j = kept; j < rule->vm_count; j++)
            memset(rule->vms[j], 0, FSM_NAME_MAX);
        rule->vm_count = kept;
    }
}

static fsm_status_t apply_vm_delete(fsm_t *self, const msgpack_object *body, fsm_result_t *r)
{
    char name[FSM_NAME_MAX];
    if (need_name(body, "name", name, r))
        return r->status;
    const fsm_vm_t *vm = fsm_vm_find(self, name);
    if (!vm)
        return result_set(r, FSM_ERR_NOT_FOUND, "no VM %s", name);
    if (vm->power == FSM_POWER_ON)
        return result_set(r, FSM_ERR_INVALID, "VM %s is powered on: stop it first", name);
    release_devices_of(self, name);
    drop_from_rules(self, name);
    table_remove(&self->vms, name);
    return result_set(r, FSM_OK, "VM %s deleted", name);
}

static fsm_status_t apply_vm_set_power(fsm_t *self, const msgpack_object *body, fsm_result_t *r)
{
    char name[FSM_NAME_MAX], power[8];
    char err[128];
    if (need_name(body, "name", name, r))
        return r->status;
    if (wire_get_str(body, "power", power, sizeof(power), err, sizeof(err)) != 0 ||
        (strcmp(power, "on") != 0 && strcmp(power, "off") != 0))
        return result_set(r, FSM_ERR_MALFORMED, "'power' must be \"on\" or \"off\"");
    fsm_vm_t *vm = table_find(&self->vms, name);
    if (!vm)
        return result_set(r, FSM_ERR_NOT_FOUND, "no VM %s", name);
    if (strcmp(power, "on") == 0 && !vm->owner[0])
        return result_set(r, FSM_ERR_INVALID, "VM %s has no host: place it first", name);
    vm->power = strcmp(power, "on") == 0 ? FSM_POWER_ON : FSM_POWER_OFF;
    return result_set(r, FSM_OK, "VM %s desired power %s", name, power);
}

static fsm_status_t apply_vm_set_owner(fsm_t *self, const msgpack_object *body, fsm_result_t *r)
{
    char name[FSM_NAME_MAX], owner[FSM_NAME_MAX];
    uint64_t generation;
    if (need_name(body, "name", name, r) || need_name(body, "owner", owner, r) ||
        need_u64(body, "generation", &generation, r))
        return r->status;
    fsm_vm_t *vm = table_find(&self->vms, name);
    if (!vm)
        return result_set(r, FSM_ERR_NOT_FOUND, "no VM %s", name);
    if (!fsm_host_find(self, owner))
        return result_set(r, FSM_ERR_NOT_FOUND, "no host %s", owner);
    /* Compare-and-set: a migration commits only against the generation it
     * started from, so two racing moves cannot both win. */
    if (vm->generation != generation)
        return result_set(r, FSM_ERR_STALE, "VM %s is at generation %llu, not %llu", name,
                          (unsigned long long)vm->generation, (unsigned long long)generation);
    snprintf(vm->owner, sizeof(vm->owner), "%s", owner);
    vm->generation++;
    return result_set(r, FSM_OK, "VM %s now owned by %s (generation %llu)", name, owner,
                      (unsigned long long)vm->generation);
}

static fsm_status_t apply_device_allocate(fsm_t *self, const msgpack_object *body, fsm_result_t *r)
{
    fsm_device_t dev = { 0 };
    if (need_name(body, "device", dev.device, r) || need_name(body, "host", dev.host, r) ||
        need_name(body, "vm", dev.vm, r))
        return r->status;
    const fsm_device_t *existing = table_find(&self->devices, dev.device);
    if (existing)
        return result_set(r, FSM_ERR_EXISTS, "device %s is allocated to %s", dev.device, existing->vm);
    if (!fsm_host_find(self, dev.host) || !fsm_vm_find(self, dev.vm))
        return result_set(r, FSM_ERR_NOT_FOUND, "no host %s or no VM %s", dev.host, dev.vm);
    if (table_put(&self->devices, &dev) != FSM_OK)
        return result_set(r, FSM_ERR_LIMIT, "device table is full");
    return result_set(r, FSM_OK, "device %s allocated to %s", dev.device, dev.vm);
}

static fsm_status_t apply_device_release(fsm_t *self, const msgpack_object *body, fsm_result_t *r)
{
    char device[FSM_NAME_MAX];
    if (need_name(body, "device", device, r))
        return r->status;
    if (!table_remove(&self->devices, device))
        return result_set(r, FSM_ERR_NOT_FOUND, "device %s is not allocated", device);
    return result_set(r, FSM_OK, "device %s released", device);
}

static fsm_status_t apply_rule_set(fsm_t *self, const msgpack_object *body, fsm_result_t *r)
{
    fsm_rule_t rule = { 0 };
    char kind[16], err[128];
    const msgpack_object *vms = NULL;
    if (need_name(body, "name", rule.name, r))
        return r->status;
    if (wire_get_str(body, "kind", kind, sizeof(kind), err, sizeof(err)) != 0 ||
        (strcmp(kind, "affinity") != 0 && strcmp(kind, "anti-affinity") != 0))
        return result_set(r, FSM_ERR_MALFORMED, "'kind' must be \"affinity\" or \"anti-affinity\"");
    if (wire_get_array(body, "vms", &vms, err, sizeof(err)) != 0 || vms->via.array.size > FSM_RULE_MEMBERS_MAX)
        return result_set(r, FSM_ERR_MALFORMED, "'vms' must be an array of at most %d names", FSM_RULE_MEMBERS_MAX);
    rule.anti = strcmp(kind, "anti-affinity") == 0;
    for (uint32_t i = 0; i < vms->via.array.size; i++) {
        const msgpack_object *v = &vms->via.array.ptr[i];
        if (v->type != MSGPACK_OBJECT_STR || v->via.str.size == 0 || v->via.str.size >= FSM_NAME_MAX)
            return result_set(r, FSM_ERR_MALFORMED, "'vms' holds something that is not a name");
        memcpy(rule.vms[i], v->via.str.ptr, v->via.str.size);
        if (!fsm_vm_find(self, rule.vms[i]))
            return result_set(r, FSM_ERR_NOT_FOUND, "rule %s names unknown VM %s", rule.name, rule.vms[i]);
    }
    rule.vm_count = vms->via.array.size;
    if (table_put(&self->rules, &rule) != FSM_OK)
        return result_set(r, FSM_ERR_LIMIT, "rule table is full");
    return result_set(r, FSM_OK, "rule %s set", rule.name);
}

static fsm_status_t apply_rule_delete(fsm_t *self, const msgpack_object *body, fsm_result_t *r)
{
    char name[FSM_NAME_MAX];
    if (need_name(body, "name", name, r))
        return r->status;
    if (!table_remove(&self->rules, name))
        return result_set(r, FSM_ERR_NOT_FOUND, "no rule %s", name);
    return result_set(r, FSM_OK, "rule %s deleted", name);
}

static fsm_status_t apply_setting_set(fsm_t *self, const msgpack_object *body, fsm_result_t *r)
{
    fsm_setting_t setting = { 0 };
    char err[128];
    if (need_name(body, "key", setting.key, r))
        return r->status;
    if (wire_get_str(body, "value", setting.value, sizeof(setting.value), err, sizeof(err)) != 0)
        return result_set(r, FSM_ERR_MALFORMED, "'value' must be a string of at most %d bytes", FSM_PROFILE_MAX - 1);
    if (setting.value[0] == '\0') {
        table_remove(&self->settings, setting.key);
        return result_set(r, FSM_OK, "setting %s cleared", setting.key);
    }
    if (table_put(&self->settings, &setting) != FSM_OK)
        return result_set(r, FSM_ERR_LIMIT, "settings table is full");
    return result_set(r, FSM_OK, "setting %s = %s", setting.key, setting.value);
}

fsm_status_t fsm_apply(fsm_t *self, uint64_t index, const uint8_t *command, size_t len, fsm_result_t *result)
{
    fsm_result_t scratch;
    fsm_result_t *r = result ? result : &scratch;
    memset(r, 0, sizeof(*r));
    /* The index advances even for a refused command: it was committed. */
    if (index > self->applied_index)
        self->applied_index = index;

    msgpack_unpacked unpacked;
    char err[128];
    fsm_status_t status;
    if (wire_unpack(&unpacked, command, len, err, sizeof(err)) != 0) {
        status = result_set(r, FSM_ERR_MALFORMED, "command is not valid: %s", err);
        goto out;
    }
    const msgpack_object *root = &unpacked.data;
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size != 3 ||
        root->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        root->via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        root->via.array.ptr[2].type != MSGPACK_OBJECT_MAP) {
        status = result_set(r, FSM_ERR_MALFORMED, "command is not [version, type, map]");
        goto out;
    }
    if (root->via.array.ptr[0].via.u64 != FSM_COMMAND_VERSION) {
        status = result_set(r, FSM_ERR_MALFORMED, "command version %llu (this agent applies %d)",
                            (unsigned long long)root->via.array.ptr[0].via.u64, FSM_COMMAND_VERSION);
        goto out;
    }
    const msgpack_object *body = &root->via.array.ptr[2];
    switch (root->via.array.ptr[1].via.u64) {
    case FSM_CMD_HOST_REGISTER: status = apply_host_register(self, body, r); break;
    case FSM_CMD_HOST_REMOVE: status = apply_host_remove(self, body, r); break;
    case FSM_CMD_LEASE_RENEW: status = apply_lease_renew(self, body, r); break;
    case FSM_CMD_VM_CREATE: status = apply_vm_create(self, index, body, r); break;
    case FSM_CMD_VM_DELETE: status = apply_vm_delete(self, body, r); break;
    case FSM_CMD_VM_SET_POWER: status = apply_vm_set_power(self, body, r); break;
    case FSM_CMD_VM_SET_OWNER: status = apply_vm_set_owner(self, body, r); break;
    case FSM_CMD_DEVICE_ALLOCATE: status = apply_device_allocate(self, body, r); break;
    case FSM_CMD_DEVICE_RELEASE: status = apply_device_release(self, body, r); break;
    case FSM_CMD_RULE_SET: status = apply_rule_set(self, body, r); break;
    case FSM_CMD_RULE_DELETE: status = apply_rule_delete(self, body, r); break;
    case FSM_CMD_SETTING_SET: status = apply_setting_set(self, body, r); break;
    case FSM_CMD_NOOP: status = result_set(r, FSM_OK, "no-op"); break;
    default:
        status = result_set(r, FSM_ERR_MALFORMED, "unknown command type %llu",
                            (unsigned long long)root->via.array.ptr[1].via.u64);
    }
out:
    msgpack_unpacked_destroy(&unpacked);
    return status;
}

/* --- snapshot ------------------------------------------------------------------
 * [ version, applied_index, hosts, vms, devices, rules, settings ], each table
 * an array of records, each record an array of its fields in a fixed order. */

static void pack_name(msgpack_packer *pk, const char *s) { wire_pack_str(pk, s); }

int fsm_snapshot(const fsm_t *self, msgpack_sbuffer *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 7);
    msgpack_pack_uint32(&pk, SNAPSHOT_VERSION);
    msgpack_pack_uint64(&pk, self->applied_index);

    msgpack_pack_array(&pk, (uint32_t)self->hosts.count);
    for (size_t i = 0; i < self->hosts.count; i++) {
        const fsm_host_t *h = table_at(&self->hosts, i);
        msgpack_pack_array(&pk, 5);
        pack_name(&pk, h->name);
        msgpack_pack_uint32(&pk, h->cpus);
        msgpack_pack_uint64(&pk, h->memory_bytes);
        if (h->voter) msgpack_pack_true(&pk); else msgpack_pack_false(&pk);
        msgpack_pack_uint64(&pk, h->lease_expires_ms);
    }
    msgpack_pack_array(&pk, (uint32_t)self->vms.count);
    for (size_t i = 0; i < self->vms.count; i++) {
        const fsm_vm_t *v = table_at(&self->vms, i);
        msgpack_pack_array(&pk, 9);
        pack_name(&pk, v->name);
        msgpack_pack_uint64(&pk, v->memory_bytes);
        msgpack_pack_uint32(&pk, v->vcpus);
        pack_name(&pk, v->profile);
        pack_name(&pk, v->owner);
        msgpack_pack_uint32(&pk, (uint32_t)v->power);
        msgpack_pack_uint32(&pk, v->downtime_ms);
        msgpack_pack_uint64(&pk, v->generation);
        msgpack_pack_uint64(&pk, v->created_index);
    }
    msgpack_pack_array(&pk, (uint32_t)self->devices.count);
    for (size_t i = 0; i < self->devices.count; i++) {
        const fsm_device_t *d = table_at(&self->devices, i);
        msgpack_pack_array(&pk, 3);
        pack_name(&pk, d->device);
        pack_name(&pk, d->host);
        pack_name(&pk, d->vm);
    }
    msgpack_pack_array(&pk, (uint32_t)self->rules.count);
    for (size_t i = 0; i < self->rules.count; i++) {
        const fsm_rule_t *rule = table_at(&self->rules, i);
        msgpack_pack_array(&pk, 3);
        pack_name(&pk, rule->name);
        if (rule->anti) msgpack_pack_true(&pk); else msgpack_pack_false(&pk);
        msgpack_pack_array(&pk, rule->vm_count);
        for (uint32_t j = 0; j < rule->vm_count; j++)
            pack_name(&pk, rule->vms[j]);
    }
    msgpack_pack_array(&pk, (uint32_t)self->settings.count);
    for (size_t i = 0; i < self->settings.count; i++) {
        const fsm_setting_t *s = table_at(&self->settings, i);
        msgpack_pack_array(&pk, 2);
        pack_name(&pk, s->key);
        pack_name(&pk, s->value);
    }
    return 0;
}

/* Field readers for restore: each checks type and size. */
static bool read_str(const msgpack_object *o, char *out, size_t cap)
{
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap || memchr(o->via.str.ptr, '\0', o->via.str.size))
        return false;
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return true;
}

static bool read_u64(const msgpack_object *o, uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *out = o->via.u64;
    return true;
}

static bool read_u32(const msgpack_object *o, uint32_t *out)
{
    uint64_t v;
    if (!read_u64(o, &v) || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

static bool read_bool(const msgpack_object *o, bool *out)
{
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return false;
    *out = o->via.boolean;
    return true;
}

/* Returns the record's fields if `o` is an array of exactly n. */
static const msgpack_object *record(const msgpack_object *o, uint32_t n)
{
    return (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == n) ? o->via.array.ptr : NULL;
}

/* Appends in order; a name not strictly after the previous one means the
 * snapshot is not canonical (or is forged), and is refused. */
static bool append_sorted(table_t *t, const void *item)
{
    if (t->count && strcmp((const char *)table_at(t, t->count - 1), (const char *)item) >= 0)
        return false;
    return table_put(t, item) == FSM_OK;
}

static bool restore_tables(fsm_t *fresh, const msgpack_object *f, char *err, size_t errlen)
{
    for (int t = 2; t <= 6; t++)
        if (f[t].type != MSGPACK_OBJECT_ARRAY) {
            snprintf(err, errlen, "snapshot table %d is not an array", t - 2);
            return false;
        }
    for (uint32_t i = 0; i < f[2].via.array.size; i++) {
        const msgpack_object *r = record(&f[2].via.array.ptr[i], 5);
        fsm_host_t h = { 0 };
        if (!r || !read_str(&r[0], h.name, sizeof(h.name)) || !read_u32(&r[1], &h.cpus) ||
            !read_u64(&r[2], &h.memory_bytes) || !read_bool(&r[3], &h.voter) ||
            !read_u64(&r[4], &h.lease_expires_ms) || !append_sorted(&fresh->hosts, &h)) {
            snprintf(err, errlen, "snapshot host %u is malformed or out of order", i);
            return false;
        }
    }
    for (uint32_t i = 0; i < f[3].via.array.size; i++) {
        const msgpack_object *r = record(&f[3].via.array.ptr[i], 9);
        fsm_vm_t v = { 0 };
        uint32_t power = 0;
        if (!r || !read_str(&r[0], v.name, sizeof(v.name)) || !read_u64(&r[1], &v.memory_bytes) ||
            !read_u32(&r[2], &v.vcpus) || !read_str(&r[3], v.profile, sizeof(v.profile)) ||
            !read_str(&r[4], v.owner, sizeof(v.owner)) || !read_u32(&r[5], &power) || power > 1 ||
            !read_u32(&r[6], &v.downtime_ms) || !read_u64(&r[7], &v.generation) ||
            !read_u64(&r[8], &v.created_index) || !append_sorted(&fresh->vms, &v)) {
            snprintf(err, errlen, "snapshot VM %u is malformed or out of order", i);
            return false;
        }
        ((fsm_vm_t *)table_at(&fresh->vms, fresh->vms.count - 1))->power = (fsm_power_t)power;
    }
    for (uint32_t i = 0; i < f[4].via.array.size; i++) {
        const msgpack_object *r = record(&f[4].via.array.ptr[i], 3);
        fsm_device_t d = { 0 };
        if (!r || !read_str(&r[0], d.device, sizeof(d.device)) || !read_str(&r[1], d.host, sizeof(d.host)) ||
            !read_str(&r[2], d.vm, sizeof(d.vm)) || !append_sorted(&fresh->devices, &d)) {
            snprintf(err, errlen, "snapshot device %u is malformed or out of order", i);
            return false;
        }
    }
    for (uint32_t i = 0; i < f[5].via.array.size; i++) {
        const msgpack_object *r = record(&f[5].via.array.ptr[i], 3);
        fsm_rule_t rule = { 0 };
        if (!r || !read_str(&r[0], rule.name, sizeof(rule.name)) || !read_bool(&r[1], &rule.anti) ||
            r[2].type != MSGPACK_OBJECT_ARRAY || r[2].via.array.size > FSM_RULE_MEMBERS_MAX) {
            snprintf(err, errlen, "snapshot rule %u is malformed", i);
            return false;
        }
        rule.vm_count = r[2].via.array.size;
        for (uint32_t j = 0; j < rule.vm_count; j++)
            if (!read_str(&r[2].via.array.ptr[j], rule.vms[j], FSM_NAME_MAX)) {
                snprintf(err, errlen, "snapshot rule %u member %u is malformed", i, j);
                return false;
            }
        if (!append_sorted(&fresh->rules, &rule)) {
            snprintf(err, errlen, "snapshot rule %u is out of order", i);
            return false;
        }
    }
    for (uint32_t i = 0; i < f[6].via.array.size; i++) {
        const msgpack_object *r = record(&f[6].via.array.ptr[i], 2);
        fsm_setting_t s = { 0 };
        if (!r || !read_str(&r[0], s.key, sizeof(s.key)) || !read_str(&r[1], s.value, sizeof(s.value)) ||
            !append_sorted(&fresh->settings, &s)) {
            snprintf(err, errlen, "snapshot setting %u is malformed or out of order", i);
            return false;
        }
    }
    return true;
}

int fsm_restore(fsm_t *self, const uint8_t *data, size_t len, char *err, size_t errlen)
{
    msgpack_unpacked unpacked;
    int rc = -1;
    fsm_t fresh;
    memset(&fresh, 0, sizeof(fresh));
    init_tables(&fresh);
    if (wire_unpack(&unpacked, data, len, err, errlen) != 0)
        goto out;
    const msgpack_object *f = record(&unpacked.data, 7);
    uint64_t version = 0;
    if (!f || !read_u64(&f[0], &version) || version != SNAPSHOT_VERSION || !read_u64(&f[1], &fresh.applied_index)) {
        snprintf(err, errlen, "snapshot header is not [version %d, applied_index, ...]", SNAPSHOT_VERSION);
        goto out;
    }
    if (!restore_tables(&fresh, f, err, errlen))
        goto out;
    clear_tables(self);
    *self = fresh;
    init_tables(&fresh);   /* ownership moved to self */
    rc = 0;
out:
    if (rc != 0)
        clear_tables(&fresh);
    msgpack_unpacked_destroy(&unpacked);
    return rc;
}

void fsm_hash(const fsm_t *self, uint8_t out[FSM_HASH_BYTES])
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    fsm_snapshot(self, &buf);
    crypto_generichash(out, FSM_HASH_BYTES, (const unsigned char *)buf.data, buf.size, NULL, 0);
    msgpack_sbuffer_destroy(&buf);
}

void fsm_hash_hex(const fsm_t *self, char out[FSM_HASH_BYTES * 2 + 1])
{
    uint8_t hash[FSM_HASH_BYTES];
    fsm_hash(self, hash);
    sodium_bin2hex(out, FSM_HASH_BYTES * 2 + 1, hash, FSM_HASH_BYTES);
}
