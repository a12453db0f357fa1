/* cluster_ferry.c - ferry agents (ferryd) as a cluster under test.
 *
 * Set up as tests/integration/lib.sh does: agent h1 founds the cluster
 * (ferryd init), the others copy its cluster key and init with
 * --join-existing; each gets a config with ports of its own, [agent] voters
 * equal to the cluster size, and every other agent as a gossip seed, so
 * that any of them can restart and find the rest. Raft timings stay at
 * their defaults. Status and writes go through the control API (CURVE
 * DEALER, common/ctl_client.h) with each agent's own admin credential. */
#include "cluster_internal.h"
#include "proc.h"

#include "common/ctl_client.h"
#include "common/credential.h"
#include "common/wire.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STATUS_TIMEOUT_MS 1000
#define WRITE_TIMEOUT_MS 10000   /* above the agent's own 5 s commit timeout */
#define PORTS_PER_AGENT 5

typedef struct {
    int size;
    char ferryd[PATH_MAX];
    char state[CLUSTER_MAX_MEMBERS][PATH_MAX];
    char config[CLUSTER_MAX_MEMBERS][PATH_MAX];
    char log[CLUSTER_MAX_MEMBERS][PATH_MAX];
    char *argv[CLUSTER_MAX_MEMBERS][5];
    credential_t cred[CLUSTER_MAX_MEMBERS];     /* endpoint set to the agent's control port */
    ctl_client_t *poll[CLUSTER_MAX_MEMBERS];    /* status connection; NULL until first use */
} ferry_t;

typedef struct {
    ctl_client_t *client;
    const credential_t *cred;
} ferry_writer_t;

static char *const *ferry_command(void *impl, int member)
{
    ferry_t *self = impl;
    return self->argv[member];
}

static const char *ferry_log(void *impl, int member)
{
    ferry_t *self = impl;
    return self->log[member];
}

static void ferry_forget(void *impl, int member)
{
    ferry_t *self = impl;
    ctl_client_destroy(&self->poll[member]);
}

/* One call over `*client`, opened on demand. A client whose call failed
 * (not an error reply) is closed: a late reply must not answer the next. */
static ctl_status_t call(ctl_client_t **client, const credential_t *cred, int timeout_ms, const char *command,
                         const msgpack_sbuffer *args, ctl_response_t *response, char *err, size_t errlen)
{
    if (!*client)
        *client = ctl_client_new(cred->endpoint, cred->server_public, &cred->client, timeout_ms);
    if (!*client) {
        snprintf(err, errlen, "cannot open a control connection to %s", cred->endpoint);
        return CTL_ERR_UNREACHABLE;
    }
    ctl_status_t status = ctl_call(*client, command, args, response, err, errlen);
    if (status != CTL_OK && status != CTL_ERR_AGENT)
        ctl_client_destroy(client);
    return status;
}

static int ferry_status(void *impl, int member, member_status_t *st)
{
    ferry_t *self = impl;
    char err[512];
    ctl_response_t response;
    ctl_status_t status = call(&self->poll[member], &self->cred[member], STATUS_TIMEOUT_MS, "cluster.status",
                               NULL, &response, err, sizeof(err));
    if (status != CTL_OK) {
        if (status == CTL_ERR_AGENT)
            ctl_response_release(&response);
        return -1;
    }
    const msgpack_object *r = response.reply.result, *voters = NULL;
    int rc = -1;
    memset(st, 0, sizeof(*st));
    if (r && wire_get_str(r, "leader", st->leader, sizeof(st->leader), err, sizeof(err)) == 0 &&
        wire_get_u64(r, "term", &st->term, err, sizeof(err)) == 0 &&
        wire_get_u64(r, "applied_index", &st->applied, err, sizeof(err)) == 0 &&
        wire_get_array(r, "voters", &voters, err, sizeof(err)) == 0) {
        st->voters = (int)voters->via.array.size;
        rc = 0;
    }
    ctl_response_release(&response);
    return rc;
}

static int ferry_member_of(void *impl, const char *leader)
{
    ferry_t *self = impl;
    int n;
    char rest;
    if (sscanf(leader, "h%d%c", &n, &rest) != 1 || n < 1 || n > self->size)
        return -1;
    return n - 1;
}

static void *ferry_writer_new(void *impl, int member)
{
    ferry_t *self = impl;
    ferry_writer_t *w = calloc(1, sizeof(*w));
    if (w)
        w->cred = &self->cred[member];
    return w;
}

static int ferry_put(void *writer, const char *key, const char *value, char *err, size_t errlen)
{
    ferry_writer_t *w = writer;
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    wire_pack_kv_str(&pk, "key", key);
    wire_pack_kv_str(&pk, "value", value);
    ctl_response_t response;
    ctl_status_t status = call(&w->client, w->cred, WRITE_TIMEOUT_MS, "cluster.set", &args, &response, err, errlen);
    msgpack_sbuffer_destroy(&args);
    if (status == CTL_OK || status == CTL_ERR_AGENT)
        ctl_response_release(&response);
    return status == CTL_OK ? 0 : -1;
}

static void ferry_writer_destroy(void *writer)
{
    ferry_writer_t *w = writer;
    ctl_client_destroy(&w->client);
    free(w);
}

static void ferry_destroy(void *impl)
{
    ferry_t *self = impl;
    for (int i = 0; i < self->size; i++) {
        ctl_client_destroy(&self->poll[i]);
        for (int a = 0; self->argv[i][a]; a++)
            free(self->argv[i][a]);
    }
    free(self);
}

static const cluster_ops_t ferry_ops = {
    .system = "ferry",
    .command = ferry_command,
    .log = ferry_log,
    .forget = ferry_forget,
    .status = ferry_status,
    .member_of = ferry_member_of,
    .writer_new = ferry_writer_new,
    .put = ferry_put,
    .writer_destroy = ferry_writer_destroy,
    .destroy = ferry_destroy,
};

/* ferryd init for member i: h1 founds, the others join with h1's key. */
static int init_state(ferry_t *self, int i, char *err, size_t errlen)
{
    char name[16];
    snprintf(name, sizeof(name), "h%d", i + 1);
    if (i > 0) {
        char from[PATH_MAX + 16], to[PATH_MAX + 16];
        snprintf(from, sizeof(from), "%s/cluster.key", self->state[0]);
        snprintf(to, sizeof(to), "%s/cluster.key", self->state[i]);
        if (mkdir(self->state[i], 0700) != 0 || proc_copy_file(from, to) != 0) {
            snprintf(err, errlen, "cannot copy the cluster key into %s", self->state[i]);
            return -1;
        }
    }
    char *argv[] = { self->ferryd, "init", "--cluster", "bench", "--state-dir", self->state[i], "--name", name,
                     i > 0 ? "--join-existing" : NULL, NULL };
    if (proc_run(argv, self->log[i], 30) != 0) {
        proc_log_tail(self->log[i], 10);
        snprintf(err, errlen, "ferryd init for %s failed (its output is on stderr)", name);
        return -1;
    }
    return 0;
}

static int write_config(ferry_t *self, int i, const int ports[][PORTS_PER_AGENT], const char *log_level,
                        char *err, size_t errlen)
{
    FILE *f = fopen(self->config[i], "w");
    if (!f) {
        snprintf(err, errlen, "cannot write %s", self->config[i]);
        return -1;
    }
    fprintf(f, "[agent]\nname = h%d\ncluster = bench\nstate_dir = %s\nbind = 127.0.0.1\nvoters = %d\njoin = ",
            i + 1, self->state[i], self->size);
    const char *sep = "";
    for (int j = 0; j < self->size; j++)
        if (j != i) {
            fprintf(f, "%s127.0.0.1:%d", sep, ports[j][2]);
            sep = ",";
        }
    if (log_level)
        fprintf(f, "\nlog_level = %s", log_level);
    fprintf(f, "\n[ports]\ncontrol = %d\nraft = %d\ngossip = %d\nmigration = %d\nhttp = %d\n", ports[i][0],
            ports[i][1], ports[i][2], ports[i][3], ports[i][4]);
    return fclose(f) == 0 ? 0 : -1;
}

cluster_t *cluster_ferry_new(const cluster_options_t *opts, char *err, size_t errlen)
{
    if (opts->size < 1 || opts->size > CLUSTER_MAX_MEMBERS) {
        snprintf(err, errlen, "ferry: cluster size %d out of range", opts->size);
        return NULL;
    }
    ferry_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->size = opts->size;
    snprintf(self->ferryd, sizeof(self->ferryd), "%s", opts->binary);
    int ports[CLUSTER_MAX_MEMBERS][PORTS_PER_AGENT];
    int *all = &ports[0][0];
    for (int n = 0; n < self->size * PORTS_PER_AGENT; n++)
        if (!(all[n] = proc_free_port(all, (size_t)n, opts->rng))) {
            snprintf(err, errlen, "ferry: no free port on 127.0.0.1");
            goto fail;
        }
    for (int i = 0; i < self->size; i++) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s/h%d", opts->workdir, i + 1);
        snprintf(self->state[i], sizeof(self->state[i]), "%.4000s/state", dir);
        snprintf(self->config[i], sizeof(self->config[i]), "%.4000s/ferry.conf", dir);
        snprintf(self->log[i], sizeof(self->log[i]), "%.4000s/ferryd.log", dir);
        if (mkdir(dir, 0700) != 0) {
            snprintf(err, errlen, "cannot create %s", dir);
            goto fail;
        }
        if (init_state(self, i, err, errlen) != 0 || write_config(self, i, ports, opts->log_level, err, errlen) != 0)
            goto fail;
        char cred_path[PATH_MAX + 16];
        snprintf(cred_path, sizeof(cred_path), "%s/admin.cred", self->state[i]);
        if (credential_load(&self->cred[i], cred_path, err, errlen) != 0)
            goto fail;
        snprintf(self->cred[i].endpoint, sizeof(self->cred[i].endpoint), "tcp://127.0.0.1:%d", ports[i][0]);
        const char *args[] = { self->ferryd, "run", "--config", self->config[i] };
        for (int a = 0; a < 4; a++)
            self->argv[i][a] = strdup(args[a]);
    }
    return cluster_wrap(&ferry_ops, self, self->size);
fail:
    ferry_destroy(self);
    return NULL;
}
