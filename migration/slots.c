/* slots.c - a fixed set of running tickets and a FIFO of waiting ones. */
#include "migration/slots.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS_BOUND 4096

struct slots {
    unsigned max_running, max_waiting;
    uint64_t *running;           /* [max_running], first `running_count` used */
    unsigned running_count;
    uint64_t *waiting;           /* ring of [max_waiting] */
    unsigned waiting_head, waiting_count;
};

slots_t *slots_new(unsigned max_running, unsigned max_waiting)
{
    if (max_running == 0 || max_running > SLOTS_BOUND || max_waiting > SLOTS_BOUND)
        return NULL;
    slots_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->max_running = max_running;
    self->max_waiting = max_waiting;
    self->running = calloc(max_running, sizeof *self->running);
    self->waiting = calloc(max_waiting ? max_waiting : 1, sizeof *self->waiting);
    if (!self->running || !self->waiting) {
        slots_destroy(&self);
        return NULL;
    }
    return self;
}

void slots_destroy(slots_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->running);
    free((*self_p)->waiting);
    free(*self_p);
    *self_p = NULL;
}

static int running_index(const slots_t *self, uint64_t ticket)
{
    for (unsigned i = 0; i < self->running_count; i++)
        if (self->running[i] == ticket)
            return (int)i;
    return -1;
}

/* Position in the queue, from 0 at the head; -1 if not there. */
static int waiting_index(const slots_t *self, uint64_t ticket)
{
    for (unsigned i = 0; i < self->waiting_count; i++)
        if (self->waiting[(self->waiting_head + i) % self->max_waiting] == ticket)
            return (int)i;
    return -1;
}

int slots_acquire(slots_t *self, uint64_t ticket)
{
    if (running_index(self, ticket) >= 0 || waiting_index(self, ticket) >= 0)
        return -EEXIST;
    /* Nobody jumps the queue: a free slot with tickets waiting cannot
     * happen, since a release hands its slot straight to the head. */
    if (self->running_count < self->max_running) {
        self->running[self->running_count++] = ticket;
        return SLOTS_RUNNING;
    }
    if (self->waiting_count == self->max_waiting)
        return -ENOSPC;
    self->waiting[(self->waiting_head + self->waiting_count) % self->max_waiting] = ticket;
    self->waiting_count++;
    return SLOTS_WAITING;
}

static void remove_waiting_at(slots_t *self, unsigned at)
{
    for (unsigned i = at; i + 1 < self->waiting_count; i++)
        self->waiting[(self->waiting_head + i) % self->max_waiting] =
            self->waiting[(self->waiting_head + i + 1) % self->max_waiting];
    self->waiting_count--;
}

int slots_release(slots_t *self, uint64_t ticket, uint64_t *started)
{
    int w = waiting_index(self, ticket);
    if (w >= 0) {
        remove_waiting_at(self, (unsigned)w);
        return 0;
    }
    int r = running_index(self, ticket);
    if (r < 0)
        return -ENOENT;
    self->running[r] = self->running[--self->running_count];
    if (self->waiting_count == 0)
        return 0;
    uint64_t next = self->waiting[self->waiting_head];
    self->waiting_head = (self->waiting_head + 1) % self->max_waiting;
    self->waiting_count--;
    self->running[self->running_count++] = next;
    if (started)
        *started = next;
    return 1;
}

int slots_position(const slots_t *self, uint64_t ticket)
{
    if (running_index(self, ticket) >= 0)
        return 0;
    int w = waiting_index(self, ticket);
    return w >= 0 ? w + 1 : -ENOENT;
}

unsigned slots_running(const slots_t *self)
{
    return self->running_count;
}

unsigned slots_waiting(const slots_t *self)
{
    return self->waiting_count;
}
