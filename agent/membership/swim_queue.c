/* swim_queue.c - the transmit-limited update queue; see swim_queue.h. */
#include "agent/membership/swim_queue.h"
#include "agent/membership/swim_members.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* The smallest message (an ack) takes three bytes; below that nothing fits. */
#define SMALLEST_MSG 3
/* After this many updates in a row that did not fit, the packet is full
 * enough: scanning a long queue for a small one costs more than it gains. */
#define MAX_MISSES 16

void uq_init(update_queue_t *q, size_t max)
{
    memset(q, 0, sizeof(*q));
    q->max = max ? max : 1;
}

void uq_free(update_queue_t *q)
{
    for (size_t i = 0; i < q->count; i++)
        free(q->v[i].msg);
    free(q->v);
    memset(q, 0, sizeof(*q));
}

static void remove_at(update_queue_t *q, size_t i)
{
    free(q->v[i].msg);
    memmove(&q->v[i], &q->v[i + 1], (q->count - i - 1) * sizeof(update_t));
    q->count--;
}

static ssize_t find(const update_queue_t *q, const char *subject, uint64_t hash)
{
    for (size_t i = 0; i < q->count; i++)
        if (q->v[i].subject_hash == hash && strcmp(q->v[i].subject, subject) == 0)
            return (ssize_t)i;
    return -1;
}

int uq_push(update_queue_t *q, const char *subject, const uint8_t *msg, size_t len)
{
    uint64_t hash = members_hash(subject);
    ssize_t old = find(q, subject, hash);
    if (old >= 0)
        remove_at(q, (size_t)old);
    if (q->count == q->max) {      /* drop the most-sent, at the back */
        remove_at(q, q->count - 1);
        q->dropped++;
    }
    if (q->count == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 32;
        update_t *v = realloc(q->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        q->v = v;
        q->cap = cap;
    }
    update_t u = { .subject_hash = hash, .len = len, .msg = malloc(len ? len : 1) };
    if (!u.msg)
        return -ENOMEM;
    memcpy(u.msg, msg, len);
    snprintf(u.subject, sizeof(u.subject), "%s", subject);
    /* New news goes first: it has been sent zero times, and is the newest. */
    memmove(&q->v[1], &q->v[0], q->count * sizeof(update_t));
    q->v[0] = u;
    q->count++;
    return 0;
}

size_t uq_fill(update_queue_t *q, swim_packet_builder_t *b, uint32_t limit)
{
    size_t added = 0, misses = 0;
    for (size_t i = 0; i < q->count && swim_packet_room(b) >= SMALLEST_MSG && misses < MAX_MISSES;
         i++) {
        if (!swim_packet_add(b, q->v[i].msg, q->v[i].len)) {
            misses++;   /* too big for what is left; a smaller one may fit */
            continue;
        }
        misses = 0;
        q->v[i].transmits++;
        added++;
    }
    if (!added)
        return 0;
    /* Drop what has been told enough, then restore the order with an
     * insertion sort: only the entries just sent moved, by one step each. */
    size_t kept = 0;
    for (size_t i = 0; i < q->count; i++) {
        if (q->v[i].transmits >= limit) {
            free(q->v[i].msg);
            continue;
        }
        q->v[kept++] = q->v[i];
    }
    q->count = kept;
    for (size_t i = 1; i < q->count; i++) {
        update_t u = q->v[i];
        size_t j = i;
        while (j > 0 && q->v[j - 1].transmits > u.transmits) {
            q->v[j] = q->v[j - 1];
            j--;
        }
        q->v[j] = u;
    }
    return added;
}

int64_t uq_transmits(const update_queue_t *q, const char *subject)
{
    ssize_t i = find(q, subject, members_hash(subject));
    return i < 0 ? -1 : (int64_t)q->v[i].transmits;
}

size_t uq_count(const update_queue_t *q)
{
    return q->count;
}
