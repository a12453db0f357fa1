/* gossip.h - the membership shell: SWIM's core on real sockets.
 *
 * One gossip_t owns a UDP socket (probes and gossip) and a TCP listener
 * (push-pull state exchanges) bound to the same address and port, a
 * keyring, and the SWIM core. Every datagram and every push-pull payload is
 * sealed with the cluster key (keyring.h); what fails to open is dropped and
 * counted. It runs on the caller's event loop, without threads:
 *
 *   gossip_t *g = gossip_new(&(gossip_config_t){
 *       .name = "host-a", .bind = "127.0.0.1:7402", .key = key,
 *       .join = "127.0.0.1:7412,127.0.0.1:7422", .record = &record });
 *   poll on gossip_udp_fd(g) and gossip_tcp_fd(g) for reading:
 *       readable  -> gossip_on_readable(g, fd)
 *       every gossip_timeout_ms(g) (at most 10 ms while a transfer is open)
 *                 -> gossip_tick(g)
 *   gossip_next_event(g, &ev) to learn of joins and deaths.
 *
 * Push-pull connections are non-blocking and advance on each tick; they are
 * length-prefixed (4 bytes, big endian), bounded in size, count and time.
 * The shell reads the monotonic clock itself; the core never does. */
#ifndef FERRY_GOSSIP_H
#define FERRY_GOSSIP_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/membership/keyring.h"
#include "agent/membership/swim.h"

typedef struct gossip gossip_t;

typedef struct {
    const char *name;               /* member name, unique in the cluster */
    const char *bind;               /* "127.0.0.1:7402"; port 0 picks a free one */
    const char *advertise;          /* address others use; NULL: the bound one */
    const uint8_t *key;             /* KEYRING_KEY_BYTES, the primary cluster key */
    const uint8_t (*extra_keys)[KEYRING_KEY_BYTES]; /* also accepted (rotation) */
    size_t extra_key_count;
    const char *join;               /* seeds "host:port,host:port"; NULL or "" for none */
    const swim_record_t *record;    /* this host's record; NULL for an empty one */
    const swim_config_t *swim;      /* NULL: swim_config_default() */
} gossip_config_t;

/* Binds the sockets and starts joining. Returns NULL (and logs why) on a
 * bad name, address, seed or key, or when the port is taken. */
gossip_t *gossip_new(const gossip_config_t *cfg);
/* Closes everything at once, without leaving: to others this is a crash.
 * Call gossip_leave() first and tick until gossip_leave_done() to leave. */
void gossip_destroy(gossip_t **self_p);

int gossip_udp_fd(const gossip_t *self);
int gossip_tcp_fd(const gossip_t *self);
/* Fills fds with the descriptors to watch for reading; returns the count. */
int gossip_fds(const gossip_t *self, int *fds, int max);
/* Handles readability of one of those descriptors. Returns 0 or -EINVAL. */
int gossip_on_readable(gossip_t *self, int fd);
/* Runs timers, sends what the core produced, advances transfers. */
void gossip_tick(gossip_t *self);
/* Milliseconds until gossip_tick next has work (0..1000). */
int gossip_timeout_ms(const gossip_t *self);

/* The address others reach this member at ("127.0.0.1:40123"). */
const char *gossip_address(const gossip_t *self);
const char *gossip_name(const gossip_t *self);

int gossip_set_record(gossip_t *self, const swim_record_t *record);
int gossip_leave(gossip_t *self);
bool gossip_leave_done(const gossip_t *self);
bool gossip_next_event(gossip_t *self, swim_event_t *ev);

/* Members, index 0 being this one; see swim_member_t. */
size_t gossip_member_count(const gossip_t *self);
int gossip_member_at(const gossip_t *self, size_t index, swim_member_t *out);
int gossip_member_find(const gossip_t *self, const char *name, swim_member_t *out);
/* The core, for read-only queries (stats, health). */
const swim_t *gossip_swim(const gossip_t *self);

/* Packets and payloads that failed authentication (wrong key or tampered). */
uint64_t gossip_auth_failures(const gossip_t *self);
/* The keyring, for rotation at run time (keyring_add / keyring_use). */
keyring_t *gossip_keyring(gossip_t *self);

/* Packs the member list for the control API: an array with one map per
 * member: name, address, state, incarnation, cpus, cpu_mhz, mem_bytes,
 * used_cpu_mhz, used_mem_bytes, agent_version, raft_addr, control_addr,
 * migration_addr, interfaces [{name, address, services [..]}] and
 * devices [{id, class, attrs}]. Returns 0 or a negative errno. */
int gossip_pack_members(const gossip_t *self, msgpack_packer *pk);

/* Parses "a.b.c.d:port" or "[v6]:port" (numeric only). Returns 0 or -EINVAL. */
struct sockaddr_storage;
int gossip_parse_addr(const char *text, struct sockaddr_storage *out, unsigned *out_len);

#endif
