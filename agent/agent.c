/* agent.c - see agent.h. */
#include "agent/agent.h"
#include "agent/cluster.h"
#include "agent/control.h"
#include "agent/inventory.h"
#include "agent/migrations.h"
#include "agent/peers.h"
#include "agent/statedir.h"
#include "agent/vms.h"
#include "agent/zap.h"
#include "common/log.h"
#include "common/wire.h"

#include <czmq.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

struct agent {
    config_t config;
    agent_options_t options;
    statedir_t state;
    zloop_t *loop;
    zap_t *zap;
    control_t *control;
    cluster_t *cluster;
    peers_t *peers;
    inventory_t *inventory;
    vms_t *vms;
    migrations_t *migrations;
    uint64_t started_ms;
    int signal_fd;           /* SIGINT and SIGTERM, read in the loop */
    int stop_signal;
};

/* --- control handlers -------------------------------------------------- */

static int handle_version(void *ctx, control_call_t *call)
{
    agent_t *self = ctx;
    msgpack_pack_map(call->result, 4);
    wire_pack_kv_str(call->result, "version", FERRY_VERSION);
    wire_pack_kv_u64(call->result, "protocol", WIRE_PROTOCOL_VERSION);
    wire_pack_kv_str(call->result, "name", self->state.name);
    wire_pack_kv_str(call->result, "cluster", self->state.cluster);
    return 0;
}

static int handle_host_show(void *ctx, control_call_t *call)
{
    agent_t *self = ctx;
    inventory_refresh(self->inventory);
    msgpack_pack_map(call->result, 9);
    wire_pack_kv_str(call->result, "name", self->state.name);
    wire_pack_kv_str(call->result, "vm_backend", vms_backend(self->vms));
    wire_pack_kv_str(call->result, "cluster", self->state.cluster);
    wire_pack_kv_str(call->result, "version", FERRY_VERSION);
    wire_pack_kv_bool(call->result, "dev", self->options.dev);
    wire_pack_kv_str(call->result, "control_endpoint", control_endpoint(self->control));
    wire_pack_kv_str(call->result, "public_key", self->state.identity.public_z85);
    wire_pack_kv_u64(call->result, "uptime_ms", (uint64_t)zclock_mono() - self->started_ms);
    wire_pack_str(call->result, "inventory");
    inventory_pack(self->inventory, call->result);
    return 0;
}

/* After each batch of Raft entries applied: the VMs follow the state. */
static void on_cluster_apply(void *ctx)
{
    agent_t *self = ctx;
    if (self->vms)
        vms_on_apply(self->vms);
}

/* --- loop handlers ----------------------------------------------------- */

static int on_control(zloop_t *loop, zsock_t *socket, void *arg)
{
    control_handle(((agent_t *)arg)->control);
    return 0;
}

static int on_zap(zloop_t *loop, zsock_t *socket, void *arg)
{
    zap_handle(((agent_t *)arg)->zap);
    return 0;
}

/* Signals arrive through a signalfd polled by the loop, not through a
 * handler: whichever thread the kernel would pick, the loop sees them, and
 * nothing runs in signal context. main() blocks them before any thread exists. */
static int on_signal(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    agent_t *self = arg;
    struct signalfd_siginfo info;
    if (read(self->signal_fd, &info, sizeof(info)) == (ssize_t)sizeof(info))
        self->stop_signal = (int)info.ssi_signo;
    return -1;   /* ends zloop_start() */
}

void agent_block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    /* czmq must not install its own handlers over ours. */
    zsys_handler_set(NULL);
}

/* --- lifecycle ------------------------------------------------------------ */

agent_t *agent_new(const config_t *config, const agent_options_t *options, char *err, size_t errlen)
{
    agent_t *self = calloc(1, sizeof(*self));
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->signal_fd = -1;
    self->config = *config;
    self->options = *options;
    self->started_ms = (uint64_t)zclock_mono();

    if (statedir_load(&self->state, config->agent.state_dir, err, errlen) != 0)
        goto fail;
    self->inventory = inventory_new(&self->config, err, errlen);
    if (!self->inventory)
        goto fail;

    /* The ZAP handler must be bound before any CURVE server socket. */
    self->zap = zap_new();
    if (!self->zap) {
        snprintf(err, errlen, "cannot start the ZAP authentication handler");
        goto fail;
    }
    for (int i = 0; i < self->state.admin_count; i++)
        zap_allow(self->zap, "control", self->state.admins[i], ZAP_ROLE_ADMIN);

    /* No bind address configured: serve on the management interface. */
    if (self->config.agent.bind[0] == '\0') {
        const char *address = inventory_service_address(self->inventory, SERVICE_MANAGEMENT);
        if (!address) {
            snprintf(err, errlen, "no [agent] bind given and no management interface has an address");
            goto fail;
        }
        snprintf(self->config.agent.bind, sizeof(self->config.agent.bind), "%s", address);
    }
    char endpoint[300];
    snprintf(endpoint, sizeof(endpoint), "tcp://%s:%u", self->config.agent.bind, self->config.ports.control);
    self->control = control_new(endpoint, &self->state.identity, self->state.name, err, errlen);
    if (!self->control)
        goto fail;
    control_register(self->control, "version", handle_version, self);
    control_register(self->control, "host.show", handle_host_show, self);

    if (statedir_publish_endpoint(&self->state, control_endpoint(self->control), err, errlen) != 0)
        goto fail;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    self->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (self->signal_fd < 0) {
        snprintf(err, errlen, "cannot create a signalfd: %s", strerror(errno));
        goto fail;
    }
    self->loop = zloop_new();
    zmq_pollitem_t signal_item = { .fd = self->signal_fd, .events = ZMQ_POLLIN };
    zloop_poller(self->loop, &signal_item, on_signal, self);

    char raft_endpoint[300];
    snprintf(raft_endpoint, sizeof(raft_endpoint), "tcp://%s:%u", self->config.agent.bind, self->config.ports.raft);
    cluster_config_t cluster_cfg = {
        .name = self->state.name,
        .state_dir = self->state.path,
        .raft_endpoint = raft_endpoint,
        .identity = &self->state.identity,
        .zap = self->zap,
        .bootstrap = options->dev || self->state.founder,
        .voters = self->config.agent.voters,
        .lease_ms = self->config.cluster.lease_duration_ms,
        .cpus = inventory_capacity_cpus(self->inventory),
        .memory_bytes = inventory_capacity_memory_bytes(self->inventory),
        .election_timeout_ms = self->config.cluster.election_timeout_ms,
        .heartbeat_ms = self->config.cluster.heartbeat_interval_ms,
        .on_apply = on_cluster_apply,
        .on_apply_ctx = self,
    };
    self->cluster = cluster_new(&cluster_cfg, self->loop, self->control, err, errlen);
    if (!self->cluster)
        goto fail;

    char raft_addr[300], control_addr[300], migration_addr[300];
    snprintf(raft_addr, sizeof(raft_addr), "%s:%u", self->config.agent.bind, self->config.ports.raft);
    snprintf(control_addr, sizeof(control_addr), "%s:%u", self->config.agent.bind, self->config.ports.control);
    snprintf(migration_addr, sizeof(migration_addr), "%s:%u", self->config.agent.bind, self->config.ports.migration);
    peers_config_t peers_cfg = {
        .name = self->state.name,
        .config = &self->config,
        .inventory = self->inventory,
        .cluster_key = self->state.cluster_key,
        .public_key = self->state.identity.public_z85,
        .raft_addr = raft_addr,
        .control_addr = control_addr,
        .migration_addr = migration_addr,
        .cluster = self->cluster,
        .zap = self->zap,
    };
    self->peers = peers_new(&peers_cfg, self->loop, self->control, err, errlen);
    if (!self->peers)
        goto fail;

    char why[128];
    vms_config_t vms_cfg = {
        .name = self->state.name,
        .state_dir = self->state.path,
        .backend = vms_pick_backend(self->config.agent.backend, why, sizeof(why)),
        .downtime_ms = self->config.migration.downtime_ms,
        .heartbeat_timeout_ms = self->config.agent.vm_heartbeat_timeout_ms,
    };
    log_info("agent", "VM backend: %s (%s)", vms_cfg.backend, why);
    self->vms = vms_new(&vms_cfg, self->cluster, self->control, self->loop, err, errlen);
    if (!self->vms)
        goto fail;
    migrations_config_t migrations_cfg = {
        .name = self->state.name,
        .config = &self->config,
        .identity = &self->state.identity,
        .inventory = self->inventory,
        .cluster = self->cluster,
        .peers = self->peers,
        .vms = self->vms,
    };
    self->migrations = migrations_new(&migrations_cfg, self->control, self->loop, err, errlen);
    if (!self->migrations)
        goto fail;
    zloop_reader(self->loop, zap_socket(self->zap), on_zap, self);
    zloop_reader(self->loop, control_socket(self->control), on_control, self);
    /* Keep serving after a handler error; only a signal stops the loop. */
    zloop_reader_set_tolerant(self->loop, control_socket(self->control));
    return self;
fail:
    agent_destroy(&self);
    return NULL;
}

void agent_destroy(agent_t **self_p)
{
    agent_t *self = *self_p;
    if (!self)
        return;
    migrations_destroy(&self->migrations);   /* hands its VMs back to vms */
    vms_destroy(&self->vms);
    peers_destroy(&self->peers);
    cluster_destroy(&self->cluster);
    zloop_destroy(&self->loop);
    if (self->signal_fd >= 0)
        close(self->signal_fd);
    control_destroy(&self->control);
    zap_destroy(&self->zap);
    inventory_destroy(&self->inventory);
    statedir_clear(&self->state);
    free(self);
    *self_p = NULL;
}

int agent_run(agent_t *self)
{
    log_info("agent", "'%s' of cluster '%s' serving control API on %s", self->state.name,
             self->state.cluster, control_endpoint(self->control));
    zloop_start(self->loop);
    if (self->stop_signal) {
        log_info("agent", "stopping: %s received", strsignal(self->stop_signal));
        return 0;
    }
    log_error("agent", "stopping: the event loop ended without a signal (a subsystem failed)");
    return -1;
}

const char *agent_control_endpoint(const agent_t *self) { return control_endpoint(self->control); }
const char *agent_name(const agent_t *self) { return self->state.name; }
