/* stream_internal.h - what the stream's sender and receiver share; not
 * part of the stream's face (stream.h). */
#ifndef FERRY_MIGRATION_STREAM_INTERNAL_H
#define FERRY_MIGRATION_STREAM_INTERNAL_H

#include <stdint.h>

#include "migration/stream.h"

/* A final error: its code and what happened, for *_error(). */
typedef struct {
    int code;
    char text[320];
} stream_failure_t;

/* Records the first failure (later ones are only logged) and returns `code`. */
int stream_fail(stream_failure_t *failure, const char *who, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Monotonic milliseconds, and what is left until a deadline (>= 0). */
int64_t stream_now_ms(void);
int stream_ms_until(int64_t deadline_ms);

/* Pages are striped over the parallel streams in runs of this many, so that
 * one page always travels on the same stream: its versions from successive
 * passes then arrive in order. */
#define STREAM_STRIPE_PAGES 512

static inline uint32_t stream_for_page(uint64_t page, uint32_t streams)
{
    return (uint32_t)((page / STREAM_STRIPE_PAGES) % streams);
}

#endif
