/* raft_progress.c - the leader's view of one follower, as in etcd's tracker:
 *
 *   probe      we do not know where its log matches ours: send one append at
 *              a time and walk `next` back on each rejection;
 *   replicate  the logs match up to `match`: stream appends without waiting,
 *              up to `inflights` messages ahead (the pipeline window);
 *   snapshot   it needs entries we compacted: one snapshot is on its way.
 */
#include "consensus/raft_internal.h"

#include <stdlib.h>
#include <string.h>

int progress_init(progress_t *pr, uint64_t id, bool voter, uint64_t next, size_t window)
{
    memset(pr, 0, sizeof(*pr));
    pr->id = id;
    pr->voter = voter;
    pr->next = next;
    pr->state = PROGRESS_PROBE;
    if (window < 1)
        window = 1;
    if (window > RAFT_MAX_INFLIGHT)
        window = RAFT_MAX_INFLIGHT;
    pr->inflights.buf = calloc(window, sizeof(uint64_t));
    if (!pr->inflights.buf)
        return RAFT_ERR_NOMEM;
    pr->inflights.cap = window;
    return 0;
}

void progress_free(progress_t *pr)
{
    free(pr->inflights.buf);
    pr->inflights.buf = NULL;
}

const char *progress_state_name(progress_state_t state)
{
    switch (state) {
    case PROGRESS_PROBE: return "probe";
    case PROGRESS_REPLICATE: return "replicate";
    case PROGRESS_SNAPSHOT: return "snapshot";
    }
    return "?";
}

static void reset_state(progress_t *pr, progress_state_t state)
{
    pr->state = state;
    pr->probe_sent = false;
    pr->pending_snapshot = 0;
    pr->snapshot_ticks = 0;
    pr->inflights.start = pr->inflights.count = 0;
}

void progress_become_probe(progress_t *pr)
{
    /* After a snapshot, resume right after it (or after match if further). */
    uint64_t after = pr->state == PROGRESS_SNAPSHOT && pr->pending_snapshot > pr->match
                         ? pr->pending_snapshot : pr->match;
    reset_state(pr, PROGRESS_PROBE);
    pr->next = after + 1;
}

void progress_become_replicate(progress_t *pr)
{
    reset_state(pr, PROGRESS_REPLICATE);
    pr->next = pr->match + 1;
}

void progress_become_snapshot(progress_t *pr, uint64_t snap_index)
{
    reset_state(pr, PROGRESS_SNAPSHOT);
    pr->pending_snapshot = snap_index;
}

bool progress_is_paused(const progress_t *pr)
{
    switch (pr->state) {
    case PROGRESS_PROBE: return pr->probe_sent;
    case PROGRESS_REPLICATE: return inflights_full(&pr->inflights);
    case PROGRESS_SNAPSHOT: return true;
    }
    return true;
}

bool progress_maybe_update(progress_t *pr, uint64_t index)
{
    bool updated = false;
    if (pr->match < index) {
        pr->match = index;
        pr->probe_sent = false;
        updated = true;
    }
    if (pr->next < index + 1)
        pr->next = index + 1;
    return updated;
}

bool progress_maybe_decrease(progress_t *pr, uint64_t rejected, uint64_t hint)
{
    if (pr->state == PROGRESS_REPLICATE) {
        /* Only a rejection above what it already acknowledged is news. */
        if (rejected <= pr->match)
            return false;
        pr->next = pr->match + 1;
        return true;
    }
    if (pr->state == PROGRESS_SNAPSHOT)
        return false;
    /* Probing: only the answer to the probe we sent counts. */
    if (pr->next == 0 || pr->next - 1 != rejected)
        return false;
    uint64_t next = hint + 1 < rejected ? hint + 1 : rejected;
    if (next < pr->match + 1)
        next = pr->match + 1;
    if (next < 1)
        next = 1;
    pr->next = next;
    pr->probe_sent = false;
    return true;
}

void progress_sent_entries(progress_t *pr, uint64_t last)
{
    if (pr->state == PROGRESS_REPLICATE) {
        pr->next = last + 1;
        inflights_add(&pr->inflights, last);
    } else if (pr->state == PROGRESS_PROBE) {
        pr->probe_sent = true;
    }
}

void inflights_add(inflights_t *in, uint64_t last)
{
    if (in->count == in->cap)
        return;   /* callers check inflights_full() first */
    in->buf[(in->start + in->count) % in->cap] = last;
    in->count++;
}

void inflights_free_to(inflights_t *in, uint64_t index)
{
    while (in->count && in->buf[in->start] <= index) {
        in->start = (in->start + 1) % in->cap;
        in->count--;
    }
}

void inflights_free_first(inflights_t *in)
{
    if (in->count) {
        in->start = (in->start + 1) % in->cap;
        in->count--;
    }
}

bool inflights_full(const inflights_t *in)
{
    return in->count == in->cap;
}
