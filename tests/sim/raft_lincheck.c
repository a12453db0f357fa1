/* raft_lincheck.c - see raft_lincheck.h.
 *
 * The search walks a doubly linked list of call and return events in time
 * order. At a call it tries to linearize that operation now: if the register
 * allows it and the pair (set of operations linearized, register value) has
 * not been seen, it commits to the choice, removes the operation's call and
 * return from the list and starts again from the front. Reaching a return
 * means the operation it closes had to be linearized already: undo the last
 * choice and try the next call instead. The history is linearizable when the
 * list empties, and is not when there is nothing left to undo. */
#include "raft_lincheck.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t time;
    size_t op;          /* index into the key's operations */
    bool call;
    size_t match;       /* call: its return event */
    size_t prev, next;  /* list links; event 0 is the head sentinel */
} event_t;

typedef struct {
    uint64_t hash;
    uint64_t state;
    uint64_t *bits;
} seen_t;

typedef struct {
    seen_t *slots;
    size_t cap, n, words;
} seen_set_t;

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        abort();
    return p;
}

static uint64_t bits_hash(const uint64_t *bits, size_t words, uint64_t state)
{
    uint64_t h = state * 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < words; i++)
        h = (h ^ bits[i]) * 0x100000001b3ULL + (h >> 29);
    return h;
}

static bool seen_insert(seen_set_t *set, const uint64_t *bits, uint64_t state);

static void seen_grow(seen_set_t *set)
{
    seen_set_t bigger = { .cap = set->cap ? 2 * set->cap : 1024, .words = set->words };
    bigger.slots = xcalloc(bigger.cap, sizeof(seen_t));
    for (size_t i = 0; i < set->cap; i++) {
        seen_t *s = &set->slots[i];
        if (!s->bits)
            continue;
        size_t j = (size_t)(s->hash & (bigger.cap - 1));
        while (bigger.slots[j].bits)
            j = (j + 1) & (bigger.cap - 1);
        bigger.slots[j] = *s;
        bigger.n++;
    }
    free(set->slots);
    *set = bigger;
}

/* Adds (bits, state); false if it was already there. */
static bool seen_insert(seen_set_t *set, const uint64_t *bits, uint64_t state)
{
    if (2 * (set->n + 1) > set->cap)
        seen_grow(set);
    uint64_t h = bits_hash(bits, set->words, state);
    size_t i = (size_t)(h & (set->cap - 1));
    for (; set->slots[i].bits; i = (i + 1) & (set->cap - 1)) {
        seen_t *s = &set->slots[i];
        if (s->hash == h && s->state == state && memcmp(s->bits, bits, set->words * 8) == 0)
            return false;
    }
    seen_t *s = &set->slots[i];
    s->hash = h;
    s->state = state;
    s->bits = xcalloc(set->words, 8);
    memcpy(s->bits, bits, set->words * 8);
    set->n++;
    return true;
}

static void seen_free(seen_set_t *set)
{
    for (size_t i = 0; i < set->cap; i++)
        free(set->slots[i].bits);
    free(set->slots);
}

static int compare_events(const void *a, const void *b)
{
    const event_t *x = a, *y = b;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    /* Same time (only LIN_PENDING returns share one): keep a stable order. */
    return x->op < y->op ? -1 : x->op > y->op;
}

static void lift(event_t *ev, size_t call)
{
    size_t ret = ev[call].match;
    ev[ev[call].prev].next = ev[call].next;
    ev[ev[call].next].prev = ev[call].prev;
    ev[ev[ret].prev].next = ev[ret].next;
    if (ev[ret].next)
        ev[ev[ret].next].prev = ev[ret].prev;
}

static void unlift(event_t *ev, size_t call)
{
    size_t ret = ev[call].match;
    ev[ev[ret].prev].next = ret;
    if (ev[ret].next)
        ev[ev[ret].next].prev = ret;
    ev[ev[call].prev].next = call;
    ev[ev[call].next].prev = call;
}

typedef enum { KEY_OK, KEY_FAIL, KEY_GAVE_UP } key_result_t;

/* One key's operations (ops[idx[0..n)]). */
static key_result_t check_key(const lin_op_t *ops, const size_t *idx, size_t n, size_t max_states)
{
    size_t n_ev = 2 * n + 1;
    event_t *ev = xcalloc(n_ev, sizeof(event_t));
    for (size_t i = 0; i < n; i++) {
        const lin_op_t *op = &ops[idx[i]];
        ev[1 + 2 * i] = (event_t){ .time = op->call, .op = i, .call = true };
        ev[2 + 2 * i] = (event_t){ .time = op->ret, .op = i, .call = false };
    }
    qsort(ev + 1, n_ev - 1, sizeof(event_t), compare_events);
    size_t *ret_of = xcalloc(n, sizeof(size_t));
    for (size_t i = 1; i < n_ev; i++)
        if (!ev[i].call)
            ret_of[ev[i].op] = i;
    for (size_t i = 0; i < n_ev; i++) {
        ev[i].prev = i ? i - 1 : 0;
        ev[i].next = i + 1 < n_ev ? i + 1 : 0;   /* 0 ends the list */
        if (i && ev[i].call)
            ev[i].match = ret_of[ev[i].op];
    }
    free(ret_of);

    seen_set_t seen = { .words = (n + 63) / 64 };
    uint64_t *bits = xcalloc(seen.words, 8);
    size_t *stack_call = xcalloc(n, sizeof(size_t));
    uint64_t *stack_state = xcalloc(n, sizeof(uint64_t));
    size_t depth = 0;
    uint64_t state = 0;
    key_result_t result = KEY_OK;
    size_t entry = ev[0].next;
    while (ev[0].next != 0) {
        if (max_states && seen.n > max_states) {
            result = KEY_GAVE_UP;
            break;
        }
        if (entry != 0 && ev[entry].call) {
            const lin_op_t *op = &ops[idx[ev[entry].op]];
            bool allowed = op->put || op->value == state;
            uint64_t next_state = op->put ? op->value : state;
            if (allowed) {
                bits[ev[entry].op / 64] |= 1ULL << (ev[entry].op % 64);
                if (seen_insert(&seen, bits, next_state)) {
                    stack_call[depth] = entry;
                    stack_state[depth++] = state;
                    state = next_state;
                    lift(ev, entry);
                    entry = ev[0].next;
                    continue;
                }
                bits[ev[entry].op / 64] &= ~(1ULL << (ev[entry].op % 64));
            }
            entry = ev[entry].next;
            continue;
        }
        /* A return (or the end): undo the most recent choice. */
        if (depth == 0) {
            result = KEY_FAIL;
            break;
        }
        size_t call = stack_call[--depth];
        state = stack_state[depth];
        bits[ev[call].op / 64] &= ~(1ULL << (ev[call].op % 64));
        unlift(ev, call);
        entry = ev[call].next;
    }
    free(bits);
    free(stack_call);
    free(stack_state);
    seen_free(&seen);
    free(ev);
    return result;
}

static int compare_by_key(const void *a, const void *b, void *ctx)
{
    const lin_op_t *ops = ctx;
    uint64_t x = ops[*(const size_t *)a].key, y = ops[*(const size_t *)b].key;
    return x < y ? -1 : x > y;
}

bool lin_check(const lin_op_t *ops, size_t n, size_t max_states, bool *gave_up, char *why, size_t whylen)
{
    if (gave_up)
        *gave_up = false;
    size_t *idx = xcalloc(n, sizeof(size_t));
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    qsort_r(idx, n, sizeof(size_t), compare_by_key, (void *)ops);
    bool ok = true;
    for (size_t lo = 0; lo < n && ok;) {
        size_t hi = lo;
        while (hi < n && ops[idx[hi]].key == ops[idx[lo]].key)
            hi++;
        key_result_t r = check_key(ops, idx + lo, hi - lo, max_states);
        if (r == KEY_GAVE_UP && gave_up)
            *gave_up = true;
        if (r == KEY_FAIL) {
            ok = false;
            if (why)
                snprintf(why, whylen, "key %llu: no linearization of its %zu operations",
                         (unsigned long long)ops[idx[lo]].key, hi - lo);
        }
        lo = hi;
    }
    free(idx);
    return ok;
}
