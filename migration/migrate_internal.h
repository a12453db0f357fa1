/* migrate_internal.h - what the live sender (sender.c), the cold sender
 * (sender_cold.c) and the receiver (receiver.c) share; not part of the
 * face (migrate.h).
 *
 * A sender session wraps the stream with the protocol's steps (describe,
 * state, verify, outcome) and keeps the result, the progress report and the
 * send-rate estimate. Every failure goes through session_fail, which keeps
 * the first error and its words. */
#ifndef FERRY_MIGRATION_MIGRATE_INTERNAL_H
#define FERRY_MIGRATION_MIGRATE_INTERNAL_H

#include "migration/migrate.h"

/* Send rate estimate from pass measurements. Passes that moved less than
 * RATE_MIN_SAMPLE_BYTES are dominated by latency and ignored. The estimate
 * is the lower of a moving average and the last sample: conservative, as
 * the policy wants it (docs/migration.md). Pure. */
#define RATE_MIN_SAMPLE_BYTES (1u << 20)

typedef struct {
    double average_Bps;      /* exponentially weighted, 0 before the first sample */
    uint64_t last_Bps;
} rate_estimate_t;

void rate_add(rate_estimate_t *rate, uint64_t bytes, uint64_t elapsed_us);
uint64_t rate_Bps(const rate_estimate_t *rate);   /* 0 when unknown */

/* The send-rate cap (migration_params_t.max_bandwidth_Bps): wire bytes may
 * not run ahead of cap x time. Time the stream spends not sending (a pass end
 * waiting for the receiver, the dirty log, the policy) banks at most
 * PACE_BURST_NS of credit: unbounded credit would let the stream catch up on
 * all of it at full speed, far above the cap (QEMU's budget is per 100 ms
 * window). Pure: time comes in. */
#define PACE_BURST_NS 100000000LL   /* 100 ms */

typedef struct {
    uint64_t cap_Bps;        /* 0: no cap */
    int64_t from_ns;         /* the account runs from here, */
    uint64_t from_bytes;     /* with this many bytes sent by then */
} pace_t;

void pace_start(pace_t *pace, uint64_t cap_Bps, int64_t now_ns, uint64_t sent);
/* How long to wait before sending on, with `sent` wire bytes sent in all at now_ns. */
int64_t pace_wait_ns(pace_t *pace, uint64_t sent, int64_t now_ns);

typedef struct {
    const migration_params_t *p;
    migration_result_t *out;
    migration_progress_fn cb;
    void *ctx;
    stream_sender_t *stream;
    int64_t start_ns;
    int64_t last_report_ns;
    migration_progress_t progress;
    rate_estimate_t rate;
    pace_t pace;
} migration_session_t;

int64_t migration_now_ns(void);
double migration_ms_between(int64_t from_ns, int64_t to_ns);

/* Resets *out, checks the parameters common to both senders. */
int session_init(migration_session_t *s, const migration_params_t *p, migration_progress_fn cb,
                 void *ctx, migration_result_t *out, migration_kind_t kind);

/* Records the first failure (error code and text) and returns its code. */
int session_fail(migration_session_t *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A failed stream call: the stream's words, as MIGRATION_ERR_STREAM (or
 * MIGRATION_ERR_REFUSED when the receiver gave up while deciding). */
int session_stream_fail(migration_session_t *s, int stream_rc, const char *doing, bool refusal);

/* Handshake, DESCRIBE (and for a cold copy the image manifest), wait for
 * ACCEPT. *first_page: where to start (cold). */
int session_open(migration_session_t *s, const migration_describe_t *d, const uint8_t *manifest,
                 size_t manifest_len, uint64_t *first_page);
int session_send_pages(migration_session_t *s, const uint8_t *base, const uint64_t *pages,
                       size_t count);
int session_send_record(migration_session_t *s, uint8_t type, const void *data, size_t len,
                        const char *what);
int session_send_state(migration_session_t *s, const uint8_t *state, size_t len);
/* READY: all memory and state are sent. The receiver then loads and, if
 * asked, hashes, while the sender hashes its side. */
int session_send_ready(migration_session_t *s);
/* The receiver's VERIFIED (its hash, if it hashed). */
int session_wait_verified(migration_session_t *s, bool *hashed,
                          uint8_t hash[MIGRATION_HASH_BYTES]);
/* Compares the hashes into the result; MIGRATION_ERR_VERIFY on a mismatch. */
int session_compare_hashes(migration_session_t *s, const uint8_t mine[MIGRATION_HASH_BYTES],
                           bool theirs_hashed, const uint8_t theirs[MIGRATION_HASH_BYTES]);
/* The commit callback, timed. */
int session_commit(migration_session_t *s);
/* OUTCOME committed, then RESUMED; then DONE. */
int session_confirm(migration_session_t *s);
/* Best effort: tell the receiver to drop its copy. */
void session_call_off(migration_session_t *s, const char *reason);

/* Progress: fills the common fields and calls back. Returns true if the
 * callback asked to cancel. `force` reports even within 100 ms of the last. */
bool session_report(migration_session_t *s, bool force);

/* Stream statistics into the result, total time, destroy the stream. */
void session_close(migration_session_t *s);

/* Pages per batch handed to the stream. */
#define MIGRATION_BATCH_PAGES 1024

#endif
