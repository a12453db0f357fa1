/* slots.h - how many migrations a host runs at once (pure).
 *
 * A host runs at most `max_running` migrations at a time (default 4, as
 * vSphere allows per host on a 10 GbE vMotion network); more wait in a FIFO
 * queue of at most `max_waiting`. The agent asks for a slot before it starts
 * a migration (as sender or receiver) and gives it back when that one ends;
 * the answer to a release names the waiting migration that may start now.
 *
 * Pure bookkeeping: no clock, no threads, no I/O. Tickets are the caller's
 * identifiers (e.g. the first 8 bytes of the migration id); one ticket is
 * either running, waiting or unknown.
 *
 *   slots_t *s = slots_new(SLOTS_DEFAULT_MAX, SLOTS_DEFAULT_WAITING);
 *   if (slots_acquire(s, ticket) == SLOTS_RUNNING) start(ticket);
 *   ...
 *   uint64_t next;
 *   if (slots_release(s, ticket, &next) == 1) start(next);
 */
#ifndef FERRY_MIGRATION_SLOTS_H
#define FERRY_MIGRATION_SLOTS_H

#include <stddef.h>
#include <stdint.h>

#define SLOTS_DEFAULT_MAX 4
#define SLOTS_DEFAULT_WAITING 64

typedef enum {
    SLOTS_RUNNING = 1,   /* the ticket holds a slot: start now */
    SLOTS_WAITING = 2,   /* queued: slots_release() will name it when its turn comes */
} slots_answer_t;

typedef struct slots slots_t;

/* NULL if max_running is 0 or either bound is above 4096. */
slots_t *slots_new(unsigned max_running, unsigned max_waiting);
void slots_destroy(slots_t **self_p);

/* SLOTS_RUNNING, SLOTS_WAITING, -EEXIST (ticket already known) or -ENOSPC
 * (queue full: refuse the migration). */
int slots_acquire(slots_t *self, uint64_t ticket);

/* Ends a running ticket or cancels a waiting one. Returns 1 with *started
 * set when the freed slot went to the longest-waiting ticket, 0 when nobody
 * was waiting (or a waiting ticket was cancelled), -ENOENT for an unknown
 * ticket. */
int slots_release(slots_t *self, uint64_t ticket, uint64_t *started);

/* 0 running, n >= 1 the place in the queue, -ENOENT unknown. */
int slots_position(const slots_t *self, uint64_t ticket);

unsigned slots_running(const slots_t *self);
unsigned slots_waiting(const slots_t *self);

#endif
