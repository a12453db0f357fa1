/* swim_queue.h - the transmit-limited queue of membership updates (internal).
 *
 * Each update (an encoded alive, suspect or dead message) waits here until
 * it has been piggybacked `limit` times. Newer news about a member replaces
 * older news about the same member. Updates sent the fewest times go first,
 * and among those the newest: fresh news spreads fastest, and an update
 * that has already been told often gives way. The array stays sorted by
 * transmit count, so filling a packet is a walk from the front. */
#ifndef FERRY_SWIM_QUEUE_H
#define FERRY_SWIM_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/membership/swim_codec.h"

typedef struct {
    char subject[SWIM_NAME_CAP];
    uint64_t subject_hash;
    uint32_t transmits;
    uint8_t *msg;
    size_t len;
} update_t;

typedef struct {
    update_t *v;
    size_t count, cap;
    size_t max;            /* beyond this the most-sent updates are dropped */
    uint64_t dropped;
} update_queue_t;

void uq_init(update_queue_t *q, size_t max);
void uq_free(update_queue_t *q);
/* Queues a copy of `msg` about `subject`, replacing older news about it. */
int uq_push(update_queue_t *q, const char *subject, const uint8_t *msg, size_t len);
/* Appends as many queued updates as fit to the packet, counts a transmit
 * for each, and drops those sent `limit` times. Returns how many went in. */
size_t uq_fill(update_queue_t *q, swim_packet_builder_t *b, uint32_t limit);
/* Times the update about `subject` was sent, or -1 if none is queued. */
int64_t uq_transmits(const update_queue_t *q, const char *subject);
size_t uq_count(const update_queue_t *q);

#endif
