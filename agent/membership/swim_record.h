/* swim_record.h - the host-state record each member gossips about itself.
 *
 * The record says what a host has and offers: capacity and usage, its
 * network interfaces with the services tagged on them (management, vmotion,
 * provisioning), its assignable devices, its agent version, the endpoints of
 * its Raft, control and migration services, and the agent's CURVE public
 * key. Placement, HA and migration read it; Raft's transport takes the key.
 *
 * The record rides inside SWIM's alive message, and the alive message's
 * incarnation is the record's version: a member that changes its record
 * bumps its incarnation (swim_update_record), so the newest record always
 * wins by the same rule that settles liveness. The SWIM core carries records
 * as encoded bytes and never looks inside; this header encodes and decodes
 * them.
 *
 * An encoded record must fit in SWIM_RECORD_MAX bytes so that an alive
 * message carrying it still fits in one UDP packet. swim_record_encode
 * refuses a record that does not fit (-EMSGSIZE) rather than truncating it. */
#ifndef FERRY_SWIM_RECORD_H
#define FERRY_SWIM_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SWIM_RECORD_MAX          1024  /* encoded bytes */
#define SWIM_RECORD_MAX_IFACES      8
#define SWIM_RECORD_MAX_SERVICES    6  /* per interface: management, vmotion, provisioning, raft, gossip */
#define SWIM_RECORD_MAX_DEVICES    16

/* String capacities include the terminating NUL. */
#define SWIM_IFACE_NAME_CAP   16  /* like IFNAMSIZ */
#define SWIM_HOSTPORT_CAP     64  /* "host:port", IPv6 in brackets fits */
#define SWIM_SERVICE_CAP      16  /* "management", "vmotion", "provisioning" */
#define SWIM_DEVICE_ID_CAP    32
#define SWIM_DEVICE_CLASS_CAP 16
#define SWIM_DEVICE_ATTRS_CAP 96  /* "vendor=10de,model=a100,vram=40G" */
#define SWIM_VERSION_CAP      32
#define SWIM_CURVE_KEY_CAP    41  /* a z85-encoded 32-byte key is 40 chars */

typedef struct {
    char name[SWIM_IFACE_NAME_CAP];            /* "eth0" */
    char address[SWIM_HOSTPORT_CAP];           /* "10.0.0.5" or with a port */
    uint8_t service_count;
    char services[SWIM_RECORD_MAX_SERVICES][SWIM_SERVICE_CAP];
} swim_iface_t;

typedef struct {
    char id[SWIM_DEVICE_ID_CAP];               /* "gpu0" */
    char class_name[SWIM_DEVICE_CLASS_CAP];    /* "gpu", "nic", "nvme" */
    char attrs[SWIM_DEVICE_ATTRS_CAP];         /* comma-separated key=value */
} swim_device_t;

typedef struct {
    /* capacity */
    uint32_t cpus;
    uint32_t cpu_mhz;                          /* per core */
    uint64_t mem_bytes;
    /* usage */
    uint64_t used_cpu_mhz;
    uint64_t used_mem_bytes;

    char agent_version[SWIM_VERSION_CAP];
    char raft_addr[SWIM_HOSTPORT_CAP];         /* "127.0.0.1:7401" */
    char control_addr[SWIM_HOSTPORT_CAP];      /* "127.0.0.1:7400" */
    char migration_addr[SWIM_HOSTPORT_CAP];    /* "127.0.0.1:7403" */
    char curve_public_key[SWIM_CURVE_KEY_CAP]; /* z85, 40 chars */

    uint8_t iface_count;
    swim_iface_t ifaces[SWIM_RECORD_MAX_IFACES];
    uint8_t device_count;
    swim_device_t devices[SWIM_RECORD_MAX_DEVICES];
} swim_record_t;

/* Encodes into buf (at most cap bytes); *len gets the encoded size.
 * Returns 0, -EINVAL for counts out of range, -EMSGSIZE if it does not fit. */
int swim_record_encode(const swim_record_t *record, uint8_t *buf, size_t cap, size_t *len);

/* Decodes an encoded record. Returns 0 or -EBADMSG; on failure *why (if not
 * NULL) names the field that was wrong and *at its byte offset. */
int swim_record_decode(const uint8_t *buf, size_t len, swim_record_t *record,
                       const char **why, size_t *at);

/* Helpers for building records. Each returns 0, -ENOSPC when the list is
 * full, or -EINVAL when a string does not fit its field. */
int swim_record_add_iface(swim_record_t *record, const char *name, const char *address,
                          const char *services /* comma-separated, may be NULL */);
int swim_record_add_device(swim_record_t *record, const char *id, const char *class_name,
                           const char *attrs);
/* True if the interface at index i carries `service`. */
bool swim_iface_has_service(const swim_iface_t *iface, const char *service);

#endif
