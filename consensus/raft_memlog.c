/* raft_memlog.c - the core's in-memory log: a snapshot plus the entries after
 * it. The application bounds its size by compacting (raft_compact). */
#include "consensus/raft_internal.h"

#include <stdlib.h>
#include <string.h>

void memlog_init(memlog_t *log)
{
    memset(log, 0, sizeof(*log));
}

static void free_entries(memlog_t *log, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        free((void *)log->ents[i].data);
}

void memlog_free(memlog_t *log)
{
    free_entries(log, 0, log->n);
    free(log->ents);
    free(log->snap_data);
    memset(log, 0, sizeof(*log));
}

uint64_t memlog_first(const memlog_t *log) { return log->snap.index + 1; }
uint64_t memlog_last(const memlog_t *log) { return log->snap.index + log->n; }

uint64_t memlog_last_term(const memlog_t *log)
{
    return log->n ? log->ents[log->n - 1].term : log->snap.term;
}

bool memlog_term(const memlog_t *log, uint64_t index, uint64_t *term)
{
    *term = 0;
    if (index == log->snap.index) {
        *term = log->snap.term;
        return true;
    }
    if (index < log->snap.index || index > memlog_last(log))
        return false;
    *term = log->ents[index - log->snap.index - 1].term;
    return true;
}

const raft_entry_t *memlog_at(const memlog_t *log, uint64_t index)
{
    if (index <= log->snap.index || index > memlog_last(log))
        return NULL;
    return &log->ents[index - log->snap.index - 1];
}

int memlog_append(memlog_t *log, const raft_entry_t *ents, size_t n)
{
    if (n == 0)
        return 0;
    if (ents[0].index != memlog_last(log) + 1)
        return RAFT_ERR_INVALID;
    if (log->n + n > log->cap) {
        size_t cap = log->cap ? log->cap : 64;
        while (cap < log->n + n)
            cap *= 2;
        raft_entry_t *grown = realloc(log->ents, cap * sizeof(*grown));
        if (!grown)
            return RAFT_ERR_NOMEM;
        log->ents = grown;
        log->cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        raft_entry_t copy = ents[i];
        copy.data = NULL;
        if (ents[i].len) {
            uint8_t *data = malloc(ents[i].len);
            if (!data)
                return RAFT_ERR_NOMEM;   /* the entries copied so far stay: still a valid log */
            memcpy(data, ents[i].data, ents[i].len);
            copy.data = data;
        }
        log->ents[log->n++] = copy;
    }
    return 0;
}

void memlog_truncate(memlog_t *log, uint64_t from)
{
    if (from <= log->snap.index)
        from = log->snap.index + 1;
    if (from > memlog_last(log))
        return;
    size_t keep = (size_t)(from - log->snap.index - 1);
    free_entries(log, keep, log->n);
    log->n = keep;
}

int memlog_set_snapshot(memlog_t *log, const raft_snapshot_t *snap)
{
    uint8_t *copy = NULL;
    if (snap->len) {
        copy = malloc(snap->len);
        if (!copy)
            return RAFT_ERR_NOMEM;
        memcpy(copy, snap->data, snap->len);
    }
    uint64_t term;
    bool keep_suffix = memlog_term(log, snap->index, &term) && term == snap->term &&
                       snap->index >= log->snap.index;
    if (keep_suffix) {
        size_t drop = (size_t)(snap->index - log->snap.index);
        free_entries(log, 0, drop);
        if (drop)
            memmove(log->ents, log->ents + drop, (log->n - drop) * sizeof(raft_entry_t));
        log->n -= drop;
    } else {
        free_entries(log, 0, log->n);
        log->n = 0;
    }
    free(log->snap_data);
    log->snap_data = copy;
    log->snap = *snap;
    log->snap.data = copy;
    return 0;
}

size_t memlog_batch(const memlog_t *log, uint64_t lo, size_t max_n, size_t max_bytes)
{
    uint64_t last = memlog_last(log);
    if (lo > last || lo <= log->snap.index)
        return 0;
    size_t n = 0, bytes = 0;
    for (uint64_t i = lo; i <= last && n < max_n; i++) {
        size_t len = memlog_at(log, i)->len;
        if (n > 0 && bytes + len > max_bytes)
            break;
        bytes += len;
        n++;
    }
    return n;
}
