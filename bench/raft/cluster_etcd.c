/* cluster_etcd.c - etcd members as a cluster under test: the anchor.
 *
 * Static bootstrap on 127.0.0.1 with a client and a peer port per member
 * and etcd's default timings (heartbeat 100 ms, election 1000 ms). Status
 * is POST /v3/maintenance/status and writes are POST /v3/kv/put on etcd's
 * JSON gateway, each over a kept-alive HTTP/1.1 connection. etcd's JSON
 * spells 64-bit numbers as strings: "leader":"1366803315117190170". */
#include "cluster_internal.h"
#include "http_client.h"
#include "proc.h"

#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STATUS_TIMEOUT_MS 1000
#define WRITE_TIMEOUT_MS 10000
#define MAX_ARGS 32

typedef struct {
    int size;
    int client_port[CLUSTER_MAX_MEMBERS];
    char log[CLUSTER_MAX_MEMBERS][PATH_MAX];
    char *argv[CLUSTER_MAX_MEMBERS][MAX_ARGS];
    http_conn_t *poll[CLUSTER_MAX_MEMBERS];
    char member_id[CLUSTER_MAX_MEMBERS][24];   /* learned from each member's status; "" until then */
} etcd_t;

typedef struct {
    http_conn_t *conn;
} etcd_writer_t;

static char *const *etcd_command(void *impl, int member)
{
    etcd_t *self = impl;
    return self->argv[member];
}

static const char *etcd_log(void *impl, int member)
{
    etcd_t *self = impl;
    return self->log[member];
}

static void etcd_forget(void *impl, int member)
{
    etcd_t *self = impl;
    http_conn_destroy(&self->poll[member]);
}

/* The number after "key": in `json`, quoted or not; 0 when found. */
static int json_u64(const char *json, const char *key, uint64_t *out)
{
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "\"%s\":", key);
    const char *p = strstr(json, pattern);
    if (!p)
        return -1;
    p += strlen(pattern);
    while (*p == ' ' || *p == '"')
        p++;
    char *end;
    *out = strtoull(p, &end, 10);
    return end == p ? -1 : 0;
}

static int etcd_status(void *impl, int member, member_status_t *st)
{
    etcd_t *self = impl;
    if (!self->poll[member])
        self->poll[member] = http_conn_new("127.0.0.1", self->client_port[member], STATUS_TIMEOUT_MS);
    char body[4096];
    int http_status = 0;
    if (!self->poll[member] ||
        http_post(self->poll[member], "/v3/maintenance/status", "{}", body, sizeof(body), &http_status) != 0 ||
        http_status != 200)
        return -1;
    memset(st, 0, sizeof(*st));
    uint64_t id = 0, leader = 0;
    if (json_u64(body, "member_id", &id) != 0 || json_u64(body, "raftTerm", &st->term) != 0 ||
        json_u64(body, "raftAppliedIndex", &st->applied) != 0)
        return -1;
    snprintf(self->member_id[member], sizeof(self->member_id[member]), "%" PRIu64, id);
    if (json_u64(body, "leader", &leader) == 0 && leader != 0)   /* absent or 0: no leader */
        snprintf(st->leader, sizeof(st->leader), "%" PRIu64, leader);
    st->voters = -1;
    return 0;
}

static int etcd_member_of(void *impl, const char *leader)
{
    etcd_t *self = impl;
    for (int i = 0; i < self->size; i++)
        if (self->member_id[i][0] && strcmp(self->member_id[i], leader) == 0)
            return i;
    return -1;
}

static void *etcd_writer_new(void *impl, int member)
{
    etcd_t *self = impl;
    etcd_writer_t *w = calloc(1, sizeof(*w));
    if (w && !(w->conn = http_conn_new("127.0.0.1", self->client_port[member], WRITE_TIMEOUT_MS))) {
        free(w);
        return NULL;
    }
    return w;
}

static int etcd_put(void *writer, const char *key, const char *value, char *err, size_t errlen)
{
    etcd_writer_t *w = writer;
    char key64[256], value64[256], json[600], body[2048];
    if (strlen(key) > 150 || strlen(value) > 150) {
        snprintf(err, errlen, "key or value too long");
        return -1;
    }
    sodium_bin2base64(key64, sizeof(key64), (const unsigned char *)key, strlen(key),
                      sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(value64, sizeof(value64), (const unsigned char *)value, strlen(value),
                      sodium_base64_VARIANT_ORIGINAL);
    snprintf(json, sizeof(json), "{\"key\":\"%s\",\"value\":\"%s\"}", key64, value64);
    int http_status = 0;
    if (http_post(w->conn, "/v3/kv/put", json, body, sizeof(body), &http_status) != 0) {
        snprintf(err, errlen, "no answer to PUT /v3/kv/put");
        return -1;
    }
    if (http_status != 200 || !strstr(body, "\"revision\"")) {
        snprintf(err, errlen, "PUT /v3/kv/put: HTTP %d: %.200s", http_status, body);
        return -1;
    }
    return 0;
}

static void etcd_writer_destroy(void *writer)
{
    etcd_writer_t *w = writer;
    http_conn_destroy(&w->conn);
    free(w);
}

static void etcd_destroy(void *impl)
{
    etcd_t *self = impl;
    for (int i = 0; i < self->size; i++) {
        http_conn_destroy(&self->poll[i]);
        for (int a = 0; self->argv[i][a]; a++)
            free(self->argv[i][a]);
    }
    free(self);
}

static const cluster_ops_t etcd_ops = {
    .system = "etcd",
    .command = etcd_command,
    .log = etcd_log,
    .forget = etcd_forget,
    .status = etcd_status,
    .member_of = etcd_member_of,
    .writer_new = etcd_writer_new,
    .put = etcd_put,
    .writer_destroy = etcd_writer_destroy,
    .destroy = etcd_destroy,
};

cluster_t *cluster_etcd_new(const cluster_options_t *opts, char *err, size_t errlen)
{
    if (opts->size < 1 || opts->size > CLUSTER_MAX_MEMBERS) {
        snprintf(err, errlen, "etcd: cluster size %d out of range", opts->size);
        return NULL;
    }
    etcd_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->size = opts->size;
    int ports[2 * CLUSTER_MAX_MEMBERS];    /* client ports, then peer ports */
    for (int n = 0; n < 2 * self->size; n++)
        if (!(ports[n] = proc_free_port(ports, (size_t)n, opts->rng))) {
            snprintf(err, errlen, "etcd: no free port on 127.0.0.1");
            goto fail;
        }
    char initial[CLUSTER_MAX_MEMBERS * 48] = "";
    for (int i = 0; i < self->size; i++)
        snprintf(initial + strlen(initial), sizeof(initial) - strlen(initial), "%sm%d=http://127.0.0.1:%d",
                 i ? "," : "", i + 1, ports[self->size + i]);
    for (int i = 0; i < self->size; i++) {
        char dir[PATH_MAX], name[16], data[PATH_MAX + 8], client[64], peer[64];
        snprintf(dir, sizeof(dir), "%s/m%d", opts->workdir, i + 1);
        if (mkdir(dir, 0700) != 0) {
            snprintf(err, errlen, "cannot create %s", dir);
            goto fail;
        }
        self->client_port[i] = ports[i];
        snprintf(self->log[i], sizeof(self->log[i]), "%.4000s/etcd.log", dir);
        snprintf(name, sizeof(name), "m%d", i + 1);
        snprintf(data, sizeof(data), "%s/data", dir);
        snprintf(client, sizeof(client), "http://127.0.0.1:%d", ports[i]);
        snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", ports[self->size + i]);
        const char *args[] = { opts->binary, "--name", name, "--data-dir", data,
                               "--listen-client-urls", client, "--advertise-client-urls", client,
                               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                               "--initial-cluster", initial, "--initial-cluster-state", "new",
                               "--initial-cluster-token", "bench-raft",
                               "--logger", "zap", "--log-outputs", "stderr" };
        for (size_t a = 0; a < sizeof(args) / sizeof(args[0]); a++)
            self->argv[i][a] = strdup(args[a]);
    }
    return cluster_wrap(&etcd_ops, self, self->size);
fail:
    etcd_destroy(self);
    return NULL;
}
