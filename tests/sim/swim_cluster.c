/* swim_cluster.c - SWIM cores on the simulated network; see swim_cluster.h. */
#include "swim_cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first byte of every simulated message says which channel it is on. */
enum { CHANNEL_UDP = 'U', CHANNEL_STREAM = 'P' };

typedef struct {
    swim_t *swim;
    keyring_t *keys;
    char name[16];
    uint64_t auth_failures;
} node_t;

struct swim_cluster {
    sim_t *sim;
    swim_config_t swim_cfg;
    swim_cluster_event_fn on_event;
    void *event_ctx;
    int count;
    node_t *nodes;
    uint8_t cluster_key[KEYRING_KEY_BYTES];
    uint8_t *buf;            /* seal/open scratch, large enough for push-pull */
    size_t buf_cap;
    uint64_t udp_bytes, stream_bytes;   /* sealed bytes handed to the network */
};

static void drain(swim_cluster_t *c, int i);

static uint8_t *scratch(swim_cluster_t *c, size_t need)
{
    if (need > c->buf_cap) {
        c->buf = realloc(c->buf, need);
        if (!c->buf)
            abort();   /* test harness: out of memory is fatal */
        c->buf_cap = need;
    }
    return c->buf;
}

static void on_deliver(void *harness, int to, int from, const uint8_t *data, size_t len)
{
    swim_cluster_t *c = harness;
    node_t *n = &c->nodes[to];
    if (len < 1)
        return;
    keyring_channel_t channel = data[0] == CHANNEL_STREAM ? KEYRING_STREAM : KEYRING_UDP;
    uint8_t *plain = scratch(c, len);
    size_t plain_len;
    if (keyring_open(n->keys, channel, data + 1, len - 1, plain, len, &plain_len) < 0) {
        n->auth_failures++;
        return;
    }
    uint64_t now = sim_now(c->sim);
    if (channel == KEYRING_STREAM)
        swim_receive_pushpull(n->swim, now, c->nodes[from].name, plain, plain_len);
    else
        swim_receive(n->swim, now, c->nodes[from].name, plain, plain_len);
    drain(c, to);
}

static void on_tick(void *harness, int node, uint64_t now_us)
{
    swim_cluster_t *c = harness;
    swim_tick(c->nodes[node].swim, now_us);
    drain(c, node);
}

static void send_sealed(swim_cluster_t *c, int from, int to, keyring_channel_t channel,
                        const uint8_t *bytes, size_t len)
{
    uint8_t *out = scratch(c, len + KEYRING_OVERHEAD + 1);
    size_t sealed_len;
    out[0] = channel == KEYRING_STREAM ? CHANNEL_STREAM : CHANNEL_UDP;
    if (keyring_seal(c->nodes[from].keys, channel, bytes, len, out + 1, c->buf_cap - 1,
                     &sealed_len) < 0)
        return;
    if (channel == KEYRING_STREAM)
        c->stream_bytes += sealed_len;
    else
        c->udp_bytes += sealed_len;
    sim_send(c->sim, from, to, out, sealed_len + 1);
}

/* Hands a node's outputs to the network and its events to the hook. */
static void drain(swim_cluster_t *c, int i)
{
    node_t *n = &c->nodes[i];
    swim_output_t out;
    while (swim_next_output(n->swim, &out)) {
        int to = swim_cluster_index(out.dest);
        if (to < 0 || to >= c->count)
            continue;
        send_sealed(c, i, to, out.kind == SWIM_OUT_PUSHPULL ? KEYRING_STREAM : KEYRING_UDP,
                    out.bytes, out.len);
    }
    swim_event_t ev;
    while (swim_next_event(n->swim, &ev))
        if (c->on_event)
            c->on_event(c->event_ctx, i, &ev);
}

static swim_t *make_core(swim_cluster_t *c, int i)
{
    swim_record_t rec = { .cpus = 8, .cpu_mhz = 2400, .mem_bytes = 32ULL << 30 };
    snprintf(rec.agent_version, sizeof(rec.agent_version), "sim");
    snprintf(rec.raft_addr, sizeof(rec.raft_addr), "node-%d:7401", i);
    swim_record_add_iface(&rec, "eth0", c->nodes[i].name, "management,vmotion");
    /* Each incarnation of a node gets its own PRNG stream from the run's PRNG. */
    return swim_new(&c->swim_cfg, c->nodes[i].name, c->nodes[i].name, &rec, sim_now(c->sim),
                    rng_next(sim_rng(c->sim)));
}

swim_cluster_t *swim_cluster_new(const swim_cluster_config_t *cfg)
{
    swim_cluster_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    if (cfg->swim)
        c->swim_cfg = *cfg->swim;
    else
        swim_config_default(&c->swim_cfg);
    c->on_event = cfg->on_event;
    c->event_ctx = cfg->event_ctx;
    c->count = cfg->nodes;
    c->nodes = calloc((size_t)cfg->nodes, sizeof(node_t));
    c->sim = sim_new(cfg->seed, cfg->nodes, &(sim_callbacks_t){ on_deliver, on_tick }, c);
    if (!c->nodes || !c->sim) {
        swim_cluster_destroy(&c);
        return NULL;
    }
    /* The cluster key comes from the seed too, so runs stay reproducible. */
    for (int i = 0; i < KEYRING_KEY_BYTES; i++)
        c->cluster_key[i] = (uint8_t)rng_next(sim_rng(c->sim));
    for (int i = 0; i < cfg->nodes; i++) {
        node_t *n = &c->nodes[i];
        snprintf(n->name, sizeof(n->name), "node-%d", i);
        n->keys = keyring_new(c->cluster_key);
        n->swim = make_core(c, i);
        if (!n->keys || !n->swim) {
            swim_cluster_destroy(&c);
            return NULL;
        }
    }
    return c;
}

void swim_cluster_destroy(swim_cluster_t **self_p)
{
    swim_cluster_t *c = *self_p;
    if (!c)
        return;
    for (int i = 0; c->nodes && i < c->count; i++) {
        swim_destroy(&c->nodes[i].swim);
        keyring_destroy(&c->nodes[i].keys);
    }
    free(c->nodes);
    sim_destroy(&c->sim);
    free(c->buf);
    free(c);
    *self_p = NULL;
}

sim_t *swim_cluster_sim(swim_cluster_t *c) { return c->sim; }
int swim_cluster_size(const swim_cluster_t *c) { return c->count; }
swim_t *swim_cluster_node(swim_cluster_t *c, int i) { return c->nodes[i].swim; }
const char *swim_cluster_name(const swim_cluster_t *c, int i) { return c->nodes[i].name; }
uint64_t swim_cluster_auth_failures(const swim_cluster_t *c, int i) { return c->nodes[i].auth_failures; }
uint64_t swim_cluster_bytes_sent(const swim_cluster_t *c) { return sim_stats(c->sim).bytes_sent; }
uint64_t swim_cluster_udp_bytes(const swim_cluster_t *c) { return c->udp_bytes; }
uint64_t swim_cluster_stream_bytes(const swim_cluster_t *c) { return c->stream_bytes; }

int swim_cluster_index(const char *name)
{
    int i;
    char extra;
    if (sscanf(name, "node-%d%c", &i, &extra) != 1 || i < 0)
        return -1;
    return i;
}

static void join(swim_cluster_t *c, int i, int seed_node)
{
    const char *seed = c->nodes[seed_node].name;
    swim_join(c->nodes[i].swim, sim_now(c->sim), &seed, 1);
    drain(c, i);
}

void swim_cluster_join_all(swim_cluster_t *c, int seed_node)
{
    for (int i = 0; i < c->count; i++)
        if (i != seed_node && sim_is_up(c->sim, i))
            join(c, i, seed_node);
}

void swim_cluster_set_key(swim_cluster_t *c, int i, const uint8_t key[KEYRING_KEY_BYTES])
{
    keyring_destroy(&c->nodes[i].keys);
    c->nodes[i].keys = keyring_new(key);
    if (!c->nodes[i].keys)
        abort();
}

void swim_cluster_crash(swim_cluster_t *c, int i)
{
    sim_crash(c->sim, i);
}

void swim_cluster_restart(swim_cluster_t *c, int i, int seed_node)
{
    swim_destroy(&c->nodes[i].swim);
    c->nodes[i].swim = make_core(c, i);
    if (!c->nodes[i].swim)
        abort();
    sim_restart(c->sim, i);
    join(c, i, seed_node);
}

void swim_cluster_leave(swim_cluster_t *c, int i)
{
    swim_leave(c->nodes[i].swim, sim_now(c->sim));
    drain(c, i);
}

void swim_cluster_inject(swim_cluster_t *c, int from, int to, const swim_msg_t *msg)
{
    uint8_t pkt[1400], buf[1400];
    size_t len;
    swim_packet_builder_t b;
    if (swim_msg_encode(msg, buf, sizeof(buf), &len) < 0 ||
        swim_packet_begin(&b, pkt, sizeof(pkt), c->nodes[from].name) < 0 ||
        !swim_packet_add(&b, buf, len))
        return;
    send_sealed(c, from, to, KEYRING_UDP, pkt, swim_packet_len(&b));
}

bool swim_cluster_run_until(swim_cluster_t *c, bool (*pred)(void *ctx), void *ctx,
                            uint64_t deadline_us, uint64_t check_every_us)
{
    uint64_t step = check_every_us ? check_every_us : 10 * SIM_MS;
    while (!pred(ctx)) {
        uint64_t now = sim_now(c->sim);
        if (now >= deadline_us)
            return false;
        sim_run_for(c->sim, deadline_us - now < step ? deadline_us - now : step);
    }
    return true;
}

bool swim_cluster_sees(swim_cluster_t *c, int observer, int subject, swim_state_t state)
{
    swim_member_t m;
    return swim_member_find(c->nodes[observer].swim, c->nodes[subject].name, &m) == 0 &&
           m.state == state;
}

bool swim_cluster_converged(void *cluster)
{
    swim_cluster_t *c = cluster;
    size_t up = 0;
    for (int i = 0; i < c->count; i++)
        up += sim_is_up(c->sim, i);
    for (int i = 0; i < c->count; i++) {
        if (!sim_is_up(c->sim, i))
            continue;
        /* Cheap check first: the live count must match the number of up nodes. */
        if (swim_live_count(c->nodes[i].swim) != up)
            return false;
        for (int j = 0; j < c->count; j++) {
            if (j == i)
                continue;
            bool alive = swim_cluster_sees(c, i, j, SWIM_ALIVE);
            if (alive != sim_is_up(c->sim, j))
                return false;
        }
    }
    return true;
}
