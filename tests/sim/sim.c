/* sim.c - the deterministic simulator; see sim.h.
 *
 * Events (deliveries and ticks) sit in a binary min-heap ordered by
 * (time, sequence number). The sequence number breaks ties in insertion
 * order, so the run never depends on heap internals or on memory addresses. */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { EVENT_DELIVER, EVENT_TICK } event_kind_t;

typedef struct {
    uint64_t at;
    uint64_t seq;
    event_kind_t kind;
    int from, to;
    uint32_t epoch;    /* ticks: the node's epoch when scheduled (stale after a crash) */
    uint8_t *data;
    size_t len;
} event_t;

typedef struct {
    bool up;
    int group;
    uint32_t epoch;    /* bumped on crash so old tick events die */
} node_t;

struct sim {
    rng_t rng;
    uint64_t now;
    uint64_t next_seq;
    uint64_t tick_period;
    sim_callbacks_t callbacks;
    void *harness;
    sim_faults_t faults;
    sim_filter_fn filter;
    void *filter_ctx;
    sim_stats_t stats;
    int node_count;
    node_t *nodes;
    event_t *heap;
    size_t heap_len, heap_cap;
};

static bool event_before(const event_t *a, const event_t *b)
{
    return a->at != b->at ? a->at < b->at : a->seq < b->seq;
}

static void heap_push(sim_t *self, event_t ev)
{
    if (self->heap_len == self->heap_cap) {
        self->heap_cap = self->heap_cap ? self->heap_cap * 2 : 256;
        self->heap = realloc(self->heap, self->heap_cap * sizeof(event_t));
        if (!self->heap)
            abort();   /* the simulator is test code; running out of memory is fatal */
    }
    ev.seq = self->next_seq++;
    size_t i = self->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!event_before(&ev, &self->heap[parent]))
            break;
        self->heap[i] = self->heap[parent];
        i = parent;
    }
    self->heap[i] = ev;
}

static event_t heap_pop(sim_t *self)
{
    event_t top = self->heap[0];
    event_t last = self->heap[--self->heap_len];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= self->heap_len)
            break;
        if (child + 1 < self->heap_len && event_before(&self->heap[child + 1], &self->heap[child]))
            child++;
        if (!event_before(&self->heap[child], &last))
            break;
        self->heap[i] = self->heap[child];
        i = child;
    }
    if (self->heap_len)
        self->heap[i] = last;
    return top;
}

static void schedule_tick(sim_t *self, int node, uint64_t at)
{
    heap_push(self, (event_t){ .at = at, .kind = EVENT_TICK, .to = node,
                               .epoch = self->nodes[node].epoch });
}

sim_t *sim_new(uint64_t seed, int nodes, const sim_callbacks_t *callbacks, void *harness)
{
    sim_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    rng_seed(&self->rng, seed);
    self->tick_period = 10 * SIM_MS;
    self->callbacks = *callbacks;
    self->harness = harness;
    self->node_count = nodes;
    self->nodes = calloc((size_t)nodes, sizeof(node_t));
    if (!self->nodes) {
        free(self);
        return NULL;
    }
    /* Stagger the first ticks so nodes do not act in lock-step. */
    for (int i = 0; i < nodes; i++) {
        self->nodes[i].up = true;
        schedule_tick(self, i, rng_below(&self->rng, self->tick_period));
    }
    return self;
}

void sim_destroy(sim_t **self_p)
{
    sim_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->heap_len; i++)
        free(self->heap[i].data);
    free(self->heap);
    free(self->nodes);
    free(self);
    *self_p = NULL;
}

int sim_nodes(const sim_t *self) { return self->node_count; }
uint64_t sim_now(const sim_t *self) { return self->now; }
rng_t *sim_rng(sim_t *self) { return &self->rng; }
sim_stats_t sim_stats(const sim_t *self) { return self->stats; }

void sim_set_tick(sim_t *self, uint64_t period_us) { self->tick_period = period_us ? period_us : 1; }
void sim_set_faults(sim_t *self, const sim_faults_t *faults) { self->faults = *faults; }

void sim_set_filter(sim_t *self, sim_filter_fn filter, void *ctx)
{
    self->filter = filter;
    self->filter_ctx = ctx;
}

static bool can_reach(const sim_t *self, int from, int to)
{
    return self->nodes[from].up && self->nodes[to].up &&
           self->nodes[from].group == self->nodes[to].group;
}

static void queue_delivery(sim_t *self, int from, int to, const void *data, size_t len)
{
    uint64_t span = self->faults.delay_max_us > self->faults.delay_min_us
                        ? self->faults.delay_max_us - self->faults.delay_min_us : 0;
    uint64_t delay = self->faults.delay_min_us + rng_below(&self->rng, span + 1);
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        abort();
    memcpy(copy, data, len);
    heap_push(self, (event_t){ .at = self->now + delay, .kind = EVENT_DELIVER,
                               .from = from, .to = to, .data = copy, .len = len });
}

void sim_send(sim_t *self, int from, int to, const void *data, size_t len)
{
    if (from < 0 || from >= self->node_count || to < 0 || to >= self->node_count)
        return;
    self->stats.sent++;
    self->stats.bytes_sent += len;
    /* Roll the dice in a fixed order whatever the outcome, so that a change
     * of fault settings does not shift every later random choice. */
    double loss_roll = rng_unit(&self->rng);
    double dup_roll = rng_unit(&self->rng);
    if (!can_reach(self, from, to) || loss_roll < self->faults.loss) {
        self->stats.dropped++;
        return;
    }
    if (self->filter) {
        uint8_t *scratch = malloc(len ? len : 1);
        if (!scratch)
            abort();
        memcpy(scratch, data, len);
        bool keep = self->filter(self->filter_ctx, from, to, scratch, len);
        if (keep)
            queue_delivery(self, from, to, scratch, len);
        else
            self->stats.dropped++;
        if (keep && dup_roll < self->faults.duplicate) {
            self->stats.duplicated++;
            queue_delivery(self, from, to, scratch, len);
        }
        free(scratch);
        return;
    }
    queue_delivery(self, from, to, data, len);
    if (dup_roll < self->faults.duplicate) {
        self->stats.duplicated++;
        queue_delivery(self, from, to, data, len);
    }
}

void sim_partition(sim_t *self, int node, int group)
{
    if (node >= 0 && node < self->node_count)
        self->nodes[node].group = group;
}

void sim_heal(sim_t *self)
{
    for (int i = 0; i < self->node_count; i++)
        self->nodes[i].group = 0;
}

void sim_crash(sim_t *self, int node)
{
    if (node < 0 || node >= self->node_count || !self->nodes[node].up)
        return;
    self->nodes[node].up = false;
    self->nodes[node].epoch++;
}

void sim_restart(sim_t *self, int node)
{
    if (node < 0 || node >= self->node_count || self->nodes[node].up)
        return;
    self->nodes[node].up = true;
    self->nodes[node].epoch++;
    schedule_tick(self, node, self->now + rng_below(&self->rng, self->tick_period));
}

bool sim_is_up(const sim_t *self, int node)
{
    return node >= 0 && node < self->node_count && self->nodes[node].up;
}

bool sim_step(sim_t *self)
{
    if (self->heap_len == 0)
        return false;
    event_t ev = heap_pop(self);
    self->now = ev.at;
    if (ev.kind == EVENT_TICK) {
        node_t *node = &self->nodes[ev.to];
        if (node->up && ev.epoch == node->epoch) {
            schedule_tick(self, ev.to, self->now + self->tick_period);
            if (self->callbacks.tick)
                self->callbacks.tick(self->harness, ev.to, self->now);
        }
        return true;
    }
    /* Partitions and crashes that happened in flight still cut the message. */
    if (can_reach(self, ev.from, ev.to)) {
        self->stats.delivered++;
        if (self->callbacks.deliver)
            self->callbacks.deliver(self->harness, ev.to, ev.from, ev.data, ev.len);
    } else {
        self->stats.dropped++;
    }
    free(ev.data);
    return true;
}

void sim_run_for(sim_t *self, uint64_t duration_us)
{
    uint64_t end = self->now + duration_us;
    while (self->heap_len && self->heap[0].at <= end)
        sim_step(self);
    if (self->now < end)
        self->now = end;
}

bool sim_run_until(sim_t *self, bool (*pred)(void *ctx), void *ctx, uint64_t deadline_us)
{
    if (pred(ctx))
        return true;
    while (self->heap_len && self->heap[0].at <= deadline_us) {
        sim_step(self);
        if (pred(ctx))
            return true;
    }
    return false;
}

uint64_t sim_arg_u64(int argc, char **argv, const char *flag, uint64_t fallback)
{
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], flag) == 0) {
            char *end = NULL;
            unsigned long long v = strtoull(argv[i + 1], &end, 10);
            if (end && *end == '\0')
                return v;
            fprintf(stderr, "sim: %s wants a number, got '%s'\n", flag, argv[i + 1]);
            exit(2);
        }
    }
    return fallback;
}
