/* peers.c - see peers.h. */
#include "agent/peers.h"
#include "agent/membership/gossip.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define GOSSIP_TICK_MS 10
#define LEAVE_WAIT_MS 500

struct peers {
    peers_config_t cfg;      /* its strings point at the copies below */
    char name[64];
    char public_key[CRYPTO_Z85_LEN + 1];
    char raft_addr[300], control_addr[300], migration_addr[300];
    gossip_t *gossip;
    zloop_t *loop;
    int timer_id;
    int refresh_timer_id;
    int fds[4];
    int fd_count;
    swim_record_t record;
    bool known_dirty;        /* the member list changed since peers.known was written */
    int64_t known_written_ms;
};

/* <state_dir>/peers.known lists the gossip addresses of the members this
 * agent knew. A restarted agent joins them as well as its configured seeds,
 * so even the host that founded the cluster (and has no seeds) finds its
 * way back after a restart. */
static void known_path(const peers_t *self, char *out, size_t cap)
{
    snprintf(out, cap, "%s/peers.known", self->cfg.config->agent.state_dir);
}

static void write_known(peers_t *self)
{
    char text[8192];
    size_t used = 0;
    used += (size_t)snprintf(text, sizeof(text), "# gossip addresses of known members (rewritten by ferryd)\n");
    for (size_t i = 1; i < gossip_member_count(self->gossip) && used < sizeof(text) - 80; i++) {
        swim_member_t m;
        if (gossip_member_at(self->gossip, i, &m) == 0 && m.state != SWIM_LEFT)
            used += (size_t)snprintf(text + used, sizeof(text) - used, "%s\n", m.addr);
    }
    char path[1100];
    known_path(self, path, sizeof(path));
    int rc = fs_write_atomic(path, text, used, 0600);
    if (rc != 0)
        log_warn("peers", "cannot write %s: %s", path, strerror(-rc));
    self->known_dirty = false;
    self->known_written_ms = zclock_mono();
}

/* Appends the addresses in peers.known to `join` (comma separated). */
static void read_known(const peers_t *self, char *join, size_t cap)
{
    char path[1100], *text = NULL;
    known_path(self, path, sizeof(path));
    if (fs_read_small(path, 64 * 1024, &text, NULL) != 0)
        return;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#' || !line[0] || strlen(line) > 64 || strstr(join, line))
            continue;
        struct sockaddr_storage addr;
        unsigned addr_len;
        if (gossip_parse_addr(line, &addr, &addr_len) != 0)
            continue;   /* a damaged line is skipped, not fatal */
        size_t len = strlen(join);
        snprintf(join + len, cap - len, "%s%s", len ? "," : "", line);
    }
    free(text);
}

static void build_record(peers_t *self)
{
    const inventory_t *inv = self->cfg.inventory;
    swim_record_t *r = &self->record;
    memset(r, 0, sizeof(*r));
    r->cpus = inventory_capacity_cpus(inv);
    r->cpu_mhz = inventory_cpu_mhz(inv);
    r->mem_bytes = inventory_capacity_memory_bytes(inv);
    uint64_t total = inventory_memory_bytes(inv), available = inventory_memory_available_bytes(inv);
    r->used_mem_bytes = total > available ? total - available : 0;
    snprintf(r->agent_version, sizeof(r->agent_version), "%s", FERRY_VERSION);
    snprintf(r->raft_addr, sizeof(r->raft_addr), "%s", self->cfg.raft_addr);
    snprintf(r->control_addr, sizeof(r->control_addr), "%s", self->cfg.control_addr);
    snprintf(r->migration_addr, sizeof(r->migration_addr), "%s", self->cfg.migration_addr);
    snprintf(r->curve_public_key, sizeof(r->curve_public_key), "%s", self->cfg.public_key);
    for (size_t i = 0; i < inventory_interface_count(inv); i++) {
        const inventory_interface_t *iface = inventory_interface_at(inv, i);
        if (!iface->services || iface->address_count == 0)
            continue;   /* only interfaces that carry a service matter to placement and migration */
        char services[128] = "";
        for (uint32_t bit = 1; bit < (1u << SERVICE_COUNT); bit <<= 1) {
            const char *s = (iface->services & bit) ? config_service_name(bit) : NULL;
            if (s)
                snprintf(services + strlen(services), sizeof(services) - strlen(services), "%s%s",
                         services[0] ? "," : "", s);
        }
        if (swim_record_add_iface(r, iface->name, iface->addresses[0].text, services) != 0)
            break;
    }
}

/* Tells the cluster module about a live member's Raft endpoint and key. */
static void learn(peers_t *self, const char *name)
{
    swim_member_t m;
    if (gossip_member_find(self->gossip, name, &m) != 0 || !m.record)
        return;
    swim_record_t record;
    const char *why = NULL;
    size_t at = 0;
    if (swim_record_decode(m.record, m.record_len, &record, &why, &at) != 0) {
        log_warn("peers", "member %s has a malformed record (%s at byte %zu)", name, why ? why : "?", at);
        return;
    }
    if (!record.raft_addr[0] || !record.curve_public_key[0])
        return;
    char endpoint[300];
    snprintf(endpoint, sizeof(endpoint), "tcp://%s", record.raft_addr);
    cluster_learn_peer(self->cfg.cluster, name, record.curve_public_key, endpoint);
    /* Its record arrived sealed with the cluster key: it may ask this agent
     * for the peer commands (a migration's destination half). */
    if (self->cfg.zap)
        zap_allow(self->cfg.zap, "control", record.curve_public_key, ZAP_ROLE_PEER);
}

int peers_member_record(peers_t *self, const char *name, swim_record_t *out)
{
    swim_member_t m;
    if (gossip_member_find(self->gossip, name, &m) != 0)
        return -ENOENT;
    if (m.state != SWIM_ALIVE && m.state != SWIM_SUSPECT)
        return -EHOSTDOWN;
    if (!m.record || swim_record_decode(m.record, m.record_len, out, NULL, NULL) != 0)
        return -EBADMSG;
    return 0;
}

static void drain_events(peers_t *self)
{
    swim_event_t ev;
    while (gossip_next_event(self->gossip, &ev)) {
        if (strcmp(ev.name, self->name) == 0)
            continue;
        if (ev.type != SWIM_EVENT_SUSPECT)
            self->known_dirty = true;
        switch (ev.type) {
        case SWIM_EVENT_JOINED:
        case SWIM_EVENT_UPDATED:
        case SWIM_EVENT_ALIVE:
            if (ev.type == SWIM_EVENT_JOINED)
                log_info("peers", "%s joined from %s", ev.name, ev.addr);
            learn(self, ev.name);
            break;
        case SWIM_EVENT_SUSPECT:
            log_info("peers", "%s is suspect", ev.name);
            break;
        case SWIM_EVENT_DEAD:
            log_warn("peers", "%s is dead", ev.name);
            break;
        case SWIM_EVENT_LEFT:
            log_info("peers", "%s left", ev.name);
            break;
        }
    }
}

static int on_tick(zloop_t *loop, int timer_id, void *arg)
{
    peers_t *self = arg;
    gossip_tick(self->gossip);
    drain_events(self);
    if (self->known_dirty && zclock_mono() - self->known_written_ms >= 1000)
        write_known(self);
    return 0;
}

static int on_readable(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    peers_t *self = arg;
    gossip_on_readable(self->gossip, item->fd);
    drain_events(self);
    return 0;
}

void peers_refresh_record(peers_t *self)
{
    build_record(self);
    gossip_set_record(self->gossip, &self->record);
}

static int on_refresh(zloop_t *loop, int timer_id, void *arg)
{
    peers_refresh_record(arg);
    return 0;
}

static int handle_host_list(void *ctx, control_call_t *call)
{
    peers_t *self = ctx;
    msgpack_pack_map(call->result, 3);
    wire_pack_kv_str(call->result, "self", self->name);
    wire_pack_kv_u64(call->result, "auth_failures", gossip_auth_failures(self->gossip));
    wire_pack_str(call->result, "members");
    if (gossip_pack_members(self->gossip, call->result) != 0)
        return control_fail(call, CONTROL_INTERNAL, "cannot list members");
    return 0;
}

peers_t *peers_new(const peers_config_t *cfg, zloop_t *loop, control_t *control, char *err, size_t errlen)
{
    peers_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->cfg = *cfg;
    /* The record is rebuilt for the agent's whole life: own the strings. */
    snprintf(self->name, sizeof(self->name), "%s", cfg->name);
    snprintf(self->public_key, sizeof(self->public_key), "%s", cfg->public_key);
    snprintf(self->raft_addr, sizeof(self->raft_addr), "%s", cfg->raft_addr);
    snprintf(self->control_addr, sizeof(self->control_addr), "%s", cfg->control_addr);
    snprintf(self->migration_addr, sizeof(self->migration_addr), "%s", cfg->migration_addr);
    self->cfg.name = self->name;
    self->cfg.public_key = self->public_key;
    self->cfg.raft_addr = self->raft_addr;
    self->cfg.control_addr = self->control_addr;
    self->cfg.migration_addr = self->migration_addr;
    self->loop = loop;
    build_record(self);

    const config_t *c = cfg->config;
    char bind[300], join[CONFIG_JOIN_MAX * (CONFIG_HOST_MAX + 8)] = "";
    snprintf(bind, sizeof(bind), "%s:%u", c->agent.bind, c->ports.gossip);
    for (size_t i = 0; i < c->agent.join_count; i++)
        snprintf(join + strlen(join), sizeof(join) - strlen(join), "%s%s:%u", i ? "," : "", c->agent.join[i].host,
                 c->agent.join[i].port);
    read_known(self, join, sizeof(join));
    swim_config_t swim;
    swim_config_default(&swim);
    swim.probe_interval_us = c->cluster.probe_interval_ms * 1000;
    swim.probe_timeout_us = c->cluster.probe_timeout_ms * 1000;
    swim.suspicion_mult = c->cluster.suspicion_mult;
    gossip_config_t gcfg = {
        .name = self->name, .bind = bind, .key = cfg->cluster_key, .join = join,
        .record = &self->record, .swim = &swim,
    };
    self->gossip = gossip_new(&gcfg);
    if (!self->gossip) {
        snprintf(err, errlen, "cannot start gossip on %s (see the log line above)", bind);
        free(self);
        return NULL;
    }
    self->fd_count = gossip_fds(self->gossip, self->fds, 4);
    for (int i = 0; i < self->fd_count; i++) {
        zmq_pollitem_t item = { .fd = self->fds[i], .events = ZMQ_POLLIN };
        zloop_poller(loop, &item, on_readable, self);
    }
    self->timer_id = zloop_timer(loop, GOSSIP_TICK_MS, 0, on_tick, self);
    self->refresh_timer_id = zloop_timer(loop, 5000, 0, on_refresh, self);
    control_register(control, "host.list", handle_host_list, self);
    log_info("peers", "gossip on %s%s%s", gossip_address(self->gossip), join[0] ? ", joining " : "", join);
    return self;
}

void peers_destroy(peers_t **self_p)
{
    peers_t *self = *self_p;
    if (!self)
        return;
    /* Leave gracefully so others see "left", not "dead"; bounded. */
    if (gossip_leave(self->gossip) == 0) {
        int64_t deadline = zclock_mono() + LEAVE_WAIT_MS;
        while (!gossip_leave_done(self->gossip) && zclock_mono() < deadline) {
            gossip_tick(self->gossip);
            zclock_sleep(5);
        }
        gossip_tick(self->gossip);
    }
    for (int i = 0; i < self->fd_count; i++) {
        zmq_pollitem_t item = { .fd = self->fds[i], .events = ZMQ_POLLIN };
        zloop_poller_end(self->loop, &item);
    }
    zloop_timer_end(self->loop, self->timer_id);
    zloop_timer_end(self->loop, self->refresh_timer_id);
    gossip_destroy(&self->gossip);
    free(self);
    *self_p = NULL;
}
