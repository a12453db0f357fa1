/* cluster.c - see cluster.h. */
#include "agent/cluster.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/wire.h"
#include "consensus/node.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#define MAX_MEMBERS 64
#define TRANSFER_POLL_MS 20
#define TRANSFER_POLLS 150

typedef struct {
    char name[64];
    uint64_t id;
    char public_z85[CRYPTO_Z85_LEN + 1];
    char endpoint[256];
} member_t;

struct cluster {
    char name[64];
    cluster_config_t cfg;
    raft_node_t *node;
    zloop_t *loop;
    control_t *control;
    member_t members[MAX_MEMBERS];
    size_t member_count;
    int lease_timer;
    int lease_check_timer;          /* fast retries while this host has no valid lease */
    bool register_in_flight;
    bool renew_in_flight;
};

typedef struct {
    cluster_t *cluster;
    control_ticket_t ticket;
    uint64_t target;          /* transfers: the node to become leader */
    int polls_left;
} waiter_t;

/* --- members ------------------------------------------------------------- */

static member_t *member_by_id(cluster_t *self, uint64_t id)
{
    for (size_t i = 0; i < self->member_count; i++)
        if (self->members[i].id == id)
            return &self->members[i];
    return NULL;
}

static member_t *member_by_name(cluster_t *self, const char *name)
{
    for (size_t i = 0; i < self->member_count; i++)
        if (strcmp(self->members[i].name, name) == 0)
            return &self->members[i];
    return NULL;
}

static const char *name_of(cluster_t *self, uint64_t id)
{
    member_t *m = member_by_id(self, id);
    return m ? m->name : "";
}

static member_t *remember(cluster_t *self, const char *name, const char *public_z85, const char *endpoint)
{
    uint64_t id = raft_node_id_from_key(public_z85);
    member_t *m = member_by_id(self, id);
    if (!m) {
        if (self->member_count == MAX_MEMBERS)
            return NULL;
        m = &self->members[self->member_count++];
        m->id = id;
    }
    snprintf(m->name, sizeof(m->name), "%s", name);
    snprintf(m->public_z85, sizeof(m->public_z85), "%s", public_z85);
    snprintf(m->endpoint, sizeof(m->endpoint), "%s", endpoint);
    return m;
}

void cluster_learn_peer(cluster_t *self, const char *name, const char *public_z85, const char *raft_endpoint)
{
    if (!crypto_z85_key_valid(public_z85) || strcmp(name, self->name) == 0)
        return;
    member_t *m = remember(self, name, public_z85, raft_endpoint);
    if (!m)
        return;
    raft_node_set_peer(self->node, m->id, m->endpoint, m->public_z85);
    if (raft_node_is_leader(self->node))
        raft_node_add_member(self->node, m->id);
}

/* --- internal proposals: registration and leases --------------------------- */

static void internal_done(void *ctx, int error, const fsm_result_t *result, uint64_t index)
{
    bool *in_flight = ctx;
    *in_flight = false;
    if (error)
        log_debug("cluster", "internal proposal failed: %s", error == -ETIMEDOUT ? "timeout" : raft_strerror(error));
    else if (result && result->status != FSM_OK)
        log_warn("cluster", "internal proposal refused: %s", result->message);
}

static void propose_internal(cluster_t *self, const msgpack_sbuffer *cmd, bool *in_flight)
{
    if (*in_flight || raft_node_leader(self->node) == RAFT_NONE)
        return;
    *in_flight = true;
    if (raft_node_propose(self->node, cmd, internal_done, in_flight) != 0)
        *in_flight = false;
}

/* Keeps this host registered, with its lease renewed at a third of its length;
 * the leader also admits every known member into the Raft configuration. */
static int on_lease_timer(zloop_t *loop, int timer_id, void *arg)
{
    cluster_t *self = arg;
    msgpack_sbuffer cmd;
    msgpack_sbuffer_init(&cmd);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &cmd, msgpack_sbuffer_write);
    const fsm_host_t *me = fsm_host_find(raft_node_fsm(self->node), self->name);
    if (!me || me->cpus != self->cfg.cpus || me->memory_bytes != self->cfg.memory_bytes) {
        fsm_cmd_host_register(&pk, self->name, self->cfg.cpus, self->cfg.memory_bytes, true);
        propose_internal(self, &cmd, &self->register_in_flight);
    } else {
        fsm_cmd_lease_renew(&pk, self->name, (uint64_t)zclock_time() + self->cfg.lease_ms);
        propose_internal(self, &cmd, &self->renew_in_flight);
    }
    msgpack_sbuffer_destroy(&cmd);
    if (raft_node_is_leader(self->node))
        for (size_t i = 0; i < self->member_count; i++)
            if (self->members[i].id != raft_node_id(self->node))
                raft_node_add_member(self->node, self->members[i].id);
    return 0;
}

/* A host without a valid lease (just started, just joined, back from a
 * partition) registers and renews at once rather than a third of a lease
 * later: until then it may run no VM and no migration may target it. */
static int on_lease_check(zloop_t *loop, int timer_id, void *arg)
{
    cluster_t *self = arg;
    if (!cluster_lease_valid(self))
        on_lease_timer(loop, timer_id, arg);
    return 0;
}

/* --- control: writes ---------------------------------------------------------- */

control_code_t cluster_control_code(fsm_status_t status)
{
    switch (status) {
    case FSM_OK: return CONTROL_OK;
    case FSM_ERR_NOT_FOUND: return CONTROL_NOT_FOUND;
    case FSM_ERR_EXISTS:
    case FSM_ERR_STALE: return CONTROL_CONFLICT;
    case FSM_ERR_LIMIT: return CONTROL_UNAVAILABLE;
    default: return CONTROL_BAD_REQUEST;
    }
}

const char *cluster_error_text(int error)
{
    switch (error) {
    case -ETIMEDOUT: return "the cluster did not commit the change in time (is a quorum up?)";
    case RAFT_ERR_NO_LEADER: return "no leader is elected right now; retry in a moment";
    case RAFT_ERR_NOT_LEADER: return "leadership changed before the change committed; retry";
    case RAFT_ERR_BUSY: return "the cluster is busy (a leadership transfer or too many requests); retry";
    default: return raft_strerror(error);
    }
}

static void submit_done(void *ctx, int error, const fsm_result_t *result, uint64_t index)
{
    waiter_t *w = ctx;
    if (error) {
        control_complete(w->cluster->control, w->ticket, NULL, CONTROL_UNAVAILABLE, cluster_error_text(error));
    } else if (!result || result->status != FSM_OK) {
        control_complete(w->cluster->control, w->ticket, NULL, result ? cluster_control_code(result->status) : CONTROL_INTERNAL,
                         result ? result->message : "no result");
    } else {
        msgpack_sbuffer out;
        msgpack_sbuffer_init(&out);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        wire_pack_kv_u64(&pk, "index", index);
        wire_pack_kv_str(&pk, "message", result->message);
        control_complete(w->cluster->control, w->ticket, &out, CONTROL_OK, NULL);
        msgpack_sbuffer_destroy(&out);
    }
    free(w);
}

int cluster_submit(cluster_t *self, control_call_t *call, const msgpack_sbuffer *command)
{
    waiter_t *w = calloc(1, sizeof(*w));
    if (!w)
        return control_fail(call, CONTROL_INTERNAL, "out of memory");
    w->cluster = self;
    w->ticket = control_defer(call);
    int rc = raft_node_propose(self->node, command, submit_done, w);
    if (rc != 0) {
        free(w);
        call->deferred = false;
        return control_fail(call, CONTROL_UNAVAILABLE, "%s", cluster_error_text(rc));
    }
    return CONTROL_DEFERRED;
}

int cluster_propose(cluster_t *self, const msgpack_sbuffer *command, raft_node_done_fn *done, void *ctx)
{
    return raft_node_propose(self->node, command, done, ctx);
}

int cluster_read(cluster_t *self, raft_node_done_fn *done, void *ctx)
{
    return raft_node_read(self->node, done, ctx);
}

/* --- control: cluster.status and cluster.transfer-leader ------------------- */

static void pack_peers(cluster_t *self, msgpack_packer *pk, const raft_status_t *st, bool voters)
{
    uint32_t n = 0;
    for (size_t i = 0; i < st->n_peers; i++)
        n += st->peers[i].voter == voters;
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < st->n_peers; i++) {
        const raft_peer_status_t *p = &st->peers[i];
        if (p->voter != voters)
            continue;
        char id[17];
        snprintf(id, sizeof(id), "%016llx", (unsigned long long)p->id);
        bool leader = st->role == RAFT_LEADER;
        msgpack_pack_map(pk, leader ? 4 : 2);
        wire_pack_kv_str(pk, "name", name_of(self, p->id));
        wire_pack_kv_str(pk, "id", id);
        if (leader) {
            wire_pack_kv_u64(pk, "match_index", p->id == st->id ? st->commit : p->match);
            wire_pack_kv_bool(pk, "active", p->id == st->id || p->recent_active);
        }
    }
}

static int handle_status(void *ctx, control_call_t *call)
{
    cluster_t *self = ctx;
    raft_status_t st;
    raft_node_status(self->node, &st);
    char hash[FSM_HASH_BYTES * 2 + 1];
    const fsm_t *fsm = raft_node_fsm(self->node);
    fsm_hash_hex(fsm, hash);
    msgpack_packer *pk = call->result;
    msgpack_pack_map(pk, 12);
    wire_pack_kv_str(pk, "self", self->name);
    wire_pack_kv_str(pk, "role", raft_role_name(st.role));
    wire_pack_kv_str(pk, "leader", st.leader ? name_of(self, st.leader) : "");
    wire_pack_kv_u64(pk, "term", st.term);
    wire_pack_kv_u64(pk, "commit_index", st.commit);
    wire_pack_kv_u64(pk, "applied_index", fsm_applied_index(fsm));
    wire_pack_kv_str(pk, "state_hash", hash);
    wire_pack_kv_u64(pk, "hosts", fsm_host_count(fsm));
    wire_pack_kv_u64(pk, "vms", fsm_vm_count(fsm));
    wire_pack_str(pk, "settings");
    size_t n_settings = 0;
    while (fsm_setting_at(fsm, n_settings))
        n_settings++;
    msgpack_pack_map(pk, (uint32_t)n_settings);
    for (size_t i = 0; i < n_settings; i++)
        wire_pack_kv_str(pk, fsm_setting_at(fsm, i)->key, fsm_setting_at(fsm, i)->value);
    wire_pack_str(pk, "voters");
    pack_peers(self, pk, &st, true);
    wire_pack_str(pk, "learners");
    pack_peers(self, pk, &st, false);
    return 0;
}

static int handle_set(void *ctx, control_call_t *call)
{
    cluster_t *self = ctx;
    char key[FSM_NAME_MAX], value[FSM_PROFILE_MAX], err[160];
    if (wire_get_str(call->args, "key", key, sizeof(key), err, sizeof(err)) != 0 ||
        wire_get_str(call->args, "value", value, sizeof(value), err, sizeof(err)) != 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "cluster set needs a 'key' (at most %d bytes) and a "
                            "'value' (at most %d bytes)", FSM_NAME_MAX - 1, FSM_PROFILE_MAX - 1);
    msgpack_sbuffer cmd;
    msgpack_sbuffer_init(&cmd);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &cmd, msgpack_sbuffer_write);
    fsm_cmd_setting_set(&pk, key, value);
    int rc = cluster_submit(self, call, &cmd);
    msgpack_sbuffer_destroy(&cmd);
    return rc;
}

static int on_transfer_poll(zloop_t *loop, int timer_id, void *arg)
{
    waiter_t *w = arg;
    cluster_t *self = w->cluster;
    uint64_t leader = raft_node_leader(self->node);
    if (leader == w->target || --w->polls_left <= 0) {
        if (leader == w->target) {
            msgpack_sbuffer out;
            msgpack_sbuffer_init(&out);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
            msgpack_pack_map(&pk, 1);
            wire_pack_kv_str(&pk, "leader", name_of(self, leader));
            control_complete(self->control, w->ticket, &out, CONTROL_OK, NULL);
            msgpack_sbuffer_destroy(&out);
        } else {
            control_complete(self->control, w->ticket, NULL, CONTROL_UNAVAILABLE,
                             "the leadership transfer did not finish in time; see cluster status");
        }
        zloop_timer_end(loop, timer_id);
        free(w);
    }
    return 0;
}

static int handle_transfer(void *ctx, control_call_t *call)
{
    cluster_t *self = ctx;
    char host[64], err[128];
    if (wire_get_str(call->args, "host", host, sizeof(host), err, sizeof(err)) != 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "transfer-leader needs a 'host'");
    member_t *m = member_by_name(self, host);
    if (!m)
        return control_fail(call, CONTROL_NOT_FOUND, "no member named '%s'", host);
    if (!raft_node_is_leader(self->node))
        return control_fail(call, CONTROL_UNAVAILABLE, "only the leader (%s) can transfer leadership; ask it",
                            name_of(self, raft_node_leader(self->node)));
    if (raft_node_leader(self->node) != m->id) {
        int rc = raft_node_transfer_leadership(self->node, m->id);
        if (rc != 0)
            return control_fail(call, CONTROL_CONFLICT, "cannot transfer to %s: %s", host, raft_strerror(rc));
    }
    waiter_t *w = calloc(1, sizeof(*w));
    if (!w)
        return control_fail(call, CONTROL_INTERNAL, "out of memory");
    w->cluster = self;
    w->ticket = control_defer(call);
    w->target = m->id;
    w->polls_left = TRANSFER_POLLS;
    zloop_timer(self->loop, TRANSFER_POLL_MS, 0, on_transfer_poll, w);
    return CONTROL_DEFERRED;
}

/* --- lifecycle ---------------------------------------------------------------- */

cluster_t *cluster_new(const cluster_config_t *cfg, zloop_t *loop, control_t *control, char *err, size_t errlen)
{
    cluster_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->cfg = *cfg;
    snprintf(self->name, sizeof(self->name), "%s", cfg->name);
    self->cfg.name = self->name;
    self->loop = loop;
    self->control = control;

    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/raft", cfg->state_dir);
    int rc = fs_mkdirs(dir, 0700);
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot create: %s", dir, strerror(-rc));
        goto fail;
    }
    uint64_t tick_ms = 10;
    raft_node_config_t ncfg = {
        .id = raft_node_id_from_key(cfg->identity->public_z85),
        .dir = dir,
        .bind_endpoint = cfg->raft_endpoint,
        .identity = cfg->identity,
        .zap = cfg->zap,
        .tick_ms = (int)tick_ms,
        .election_tick = (int)(cfg->election_timeout_ms / tick_ms),
        .heartbeat_tick = (int)(cfg->heartbeat_ms / tick_ms),
        .snapshot_every = 1024,
        .bootstrap = cfg->bootstrap,
        .max_voters = cfg->voters,
        .on_apply = cfg->on_apply,
        .on_apply_ctx = cfg->on_apply_ctx,
    };
    /* Whole ticks, and a heartbeat well inside the election timeout. */
    if (ncfg.election_tick < 3)
        ncfg.election_tick = 3;
    if (ncfg.heartbeat_tick < 1)
        ncfg.heartbeat_tick = 1;
    if (ncfg.heartbeat_tick * 2 > ncfg.election_tick)
        ncfg.heartbeat_tick = ncfg.election_tick / 2;
    self->node = raft_node_new(&ncfg, loop, err, errlen);
    if (!self->node)
        goto fail;
    remember(self, self->name, cfg->identity->public_z85, raft_node_endpoint(self->node));
    uint64_t period = cfg->lease_ms / 3 ? cfg->lease_ms / 3 : 1000;
    self->lease_timer = zloop_timer(loop, period, 0, on_lease_timer, self);
    self->lease_check_timer = zloop_timer(loop, 200, 0, on_lease_check, self);
    control_register(control, "cluster.status", handle_status, self);
    control_register(control, "cluster.transfer-leader", handle_transfer, self);
    control_register(control, "cluster.set", handle_set, self);
    log_info("cluster", "raft node %016llx on %s", (unsigned long long)raft_node_id(self->node),
             raft_node_endpoint(self->node));
    return self;
fail:
    cluster_destroy(&self);
    return NULL;
}

void cluster_destroy(cluster_t **self_p)
{
    cluster_t *self = *self_p;
    if (!self)
        return;
    raft_node_destroy(&self->node);
    free(self);
    *self_p = NULL;
}

const fsm_t *cluster_state(const cluster_t *self) { return raft_node_fsm(self->node); }

const char *cluster_leader_name(const cluster_t *self)
{
    return name_of((cluster_t *)self, raft_node_leader(self->node));
}

bool cluster_lease_valid(const cluster_t *self)
{
    return fsm_lease_valid(raft_node_fsm(self->node), self->name, (uint64_t)zclock_time());
}
