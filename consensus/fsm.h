/* fsm.h - the cluster state machine that Raft replicates (DESIGN.md, "Two
 * kinds of cluster state"): every strongly consistent decision lives here.
 *
 *   hosts     registered members: name, capacity, whether they may vote
 *   vms       spec, desired power state, owner host, generation
 *   leases    per host, an expiry on the leader's clock (see below)
 *   devices   allocations of a host's device to a VM
 *   rules     affinity / anti-affinity between VMs
 *   settings  string key/value pairs (DRS and HA settings, ...)
 *
 * The FSM is pure and deterministic: fsm_apply() reads only the command
 * bytes and the log index, so every replica that applies the same log
 * reaches the same state, byte for byte. Time enters only inside commands
 * (the leader stamps lease renewals with its clock).
 *
 * Commands are typed and versioned msgpack arrays:
 *     [ FSM_COMMAND_VERSION, type, body-map ]
 * built with the fsm_cmd_* functions. A command that is well formed but not
 * allowed (a VM that exists already, a stale generation) is applied as a
 * no-op with a result code and message, identically on every replica.
 *
 * fsm_snapshot() writes a canonical encoding (everything sorted by name), so
 * snapshot → restore → snapshot is byte-identical and fsm_hash() compares
 * replicas. */
#ifndef FERRY_FSM_H
#define FERRY_FSM_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FSM_COMMAND_VERSION 1
#define FSM_NAME_MAX 64
#define FSM_PROFILE_MAX 128
#define FSM_RULE_MEMBERS_MAX 32
#define FSM_HASH_BYTES 32

typedef enum {
    FSM_CMD_HOST_REGISTER = 1,   /* {name, cpus, memory_bytes, voter} */
    FSM_CMD_HOST_REMOVE = 2,     /* {name} */
    FSM_CMD_LEASE_RENEW = 3,     /* {host, expires_ms} */
    FSM_CMD_VM_CREATE = 4,       /* {name, memory_bytes, vcpus, profile, owner, downtime_ms} */
    FSM_CMD_VM_DELETE = 5,       /* {name} */
    FSM_CMD_VM_SET_POWER = 6,    /* {name, power: "on"|"off"} */
    FSM_CMD_VM_SET_OWNER = 7,    /* {name, owner, generation}: compare-and-set on generation */
    FSM_CMD_DEVICE_ALLOCATE = 8, /* {device, host, vm} */
    FSM_CMD_DEVICE_RELEASE = 9,  /* {device} */
    FSM_CMD_RULE_SET = 10,       /* {name, kind: "affinity"|"anti-affinity", vms: [..]} */
    FSM_CMD_RULE_DELETE = 11,    /* {name} */
    FSM_CMD_SETTING_SET = 12,    /* {key, value} */
    FSM_CMD_NOOP = 13,           /* {}: a new leader's first entry */
    FSM_CMD_MAX
} fsm_command_type_t;

typedef enum {
    FSM_OK = 0,
    FSM_ERR_MALFORMED = -1,      /* not a valid command: nothing changed */
    FSM_ERR_EXISTS = -2,
    FSM_ERR_NOT_FOUND = -3,
    FSM_ERR_STALE = -4,          /* a generation did not match */
    FSM_ERR_LIMIT = -5,          /* a table is full */
    FSM_ERR_INVALID = -6,        /* well formed but not allowed */
} fsm_status_t;

typedef enum { FSM_POWER_OFF = 0, FSM_POWER_ON = 1 } fsm_power_t;

typedef struct {
    char name[FSM_NAME_MAX];
    uint32_t cpus;
    uint64_t memory_bytes;
    bool voter;
    uint64_t lease_expires_ms;   /* 0: never held a lease */
} fsm_host_t;

typedef struct {
    char name[FSM_NAME_MAX];
    uint64_t memory_bytes;
    uint32_t vcpus;
    char profile[FSM_PROFILE_MAX];
    char owner[FSM_NAME_MAX];    /* the host that may run it; "" = unplaced */
    fsm_power_t power;           /* desired power state */
    uint32_t downtime_ms;        /* live-migration stun limit */
    uint64_t generation;         /* bumped by every change of owner */
    uint64_t created_index;      /* log index of the create */
} fsm_vm_t;

typedef struct {
    char device[FSM_NAME_MAX];   /* "host/pci-0000:3b:00.0" style id */
    char host[FSM_NAME_MAX];
    char vm[FSM_NAME_MAX];
} fsm_device_t;

typedef struct {
    char name[FSM_NAME_MAX];
    bool anti;                   /* anti-affinity (keep apart) or affinity (keep together) */
    uint32_t vm_count;
    char vms[FSM_RULE_MEMBERS_MAX][FSM_NAME_MAX];
} fsm_rule_t;

typedef struct {
    char key[FSM_NAME_MAX];
    char value[FSM_PROFILE_MAX];
} fsm_setting_t;

typedef struct {
    fsm_status_t status;
    char message[160];
} fsm_result_t;

typedef struct fsm fsm_t;

fsm_t *fsm_new(void);
void fsm_destroy(fsm_t **self_p);

/* Applies the command committed at `index` (indexes must increase). */
fsm_status_t fsm_apply(fsm_t *self, uint64_t index, const uint8_t *command, size_t len, fsm_result_t *result);
uint64_t fsm_applied_index(const fsm_t *self);

/* Canonical snapshot of the whole state, and its inverse. restore replaces
 * the state only if the whole snapshot decodes. */
int fsm_snapshot(const fsm_t *self, msgpack_sbuffer *out);
int fsm_restore(fsm_t *self, const uint8_t *data, size_t len, char *err, size_t errlen);
/* BLAKE2b-256 of the snapshot. */
void fsm_hash(const fsm_t *self, uint8_t out[FSM_HASH_BYTES]);
void fsm_hash_hex(const fsm_t *self, char out[FSM_HASH_BYTES * 2 + 1]);

/* Read access; pointers are valid until the next apply or restore. */
size_t fsm_host_count(const fsm_t *self);
const fsm_host_t *fsm_host_at(const fsm_t *self, size_t i);
const fsm_host_t *fsm_host_find(const fsm_t *self, const char *name);
size_t fsm_vm_count(const fsm_t *self);
const fsm_vm_t *fsm_vm_at(const fsm_t *self, size_t i);
const fsm_vm_t *fsm_vm_find(const fsm_t *self, const char *name);
size_t fsm_device_count(const fsm_t *self);
const fsm_device_t *fsm_device_at(const fsm_t *self, size_t i);
size_t fsm_rule_count(const fsm_t *self);
const fsm_rule_t *fsm_rule_at(const fsm_t *self, size_t i);
const char *fsm_setting_get(const fsm_t *self, const char *key);
/* True if `host` holds a lease valid at `now_ms` (the caller's clock). */
bool fsm_lease_valid(const fsm_t *self, const char *host, uint64_t now_ms);

/* --- command builders: each packs one complete command ------------------ */
void fsm_cmd_host_register(msgpack_packer *pk, const char *name, uint32_t cpus, uint64_t memory_bytes, bool voter);
void fsm_cmd_host_remove(msgpack_packer *pk, const char *name);
void fsm_cmd_lease_renew(msgpack_packer *pk, const char *host, uint64_t expires_ms);
void fsm_cmd_vm_create(msgpack_packer *pk, const fsm_vm_t *spec);
void fsm_cmd_vm_delete(msgpack_packer *pk, const char *name);
void fsm_cmd_vm_set_power(msgpack_packer *pk, const char *name, fsm_power_t power);
void fsm_cmd_vm_set_owner(msgpack_packer *pk, const char *name, const char *owner, uint64_t generation);
void fsm_cmd_device_allocate(msgpack_packer *pk, const char *device, const char *host, const char *vm);
void fsm_cmd_device_release(msgpack_packer *pk, const char *device);
void fsm_cmd_rule_set(msgpack_packer *pk, const fsm_rule_t *rule);
void fsm_cmd_rule_delete(msgpack_packer *pk, const char *name);
void fsm_cmd_setting_set(msgpack_packer *pk, const char *key, const char *value);
void fsm_cmd_noop(msgpack_packer *pk);

const char *fsm_status_name(fsm_status_t status);

#endif
