/* migrate.c - defaults, names, the send-rate estimate, and the protocol
 * steps both senders share (migrate_internal.h). */
#include "migration/migrate_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

void migration_params_defaults(migration_params_t *p)
{
    *p = (migration_params_t){
        .streams = 1,
        .chunk_bytes = 2u << 20,
        .window = 4,
        .cipher = STREAM_CIPHER_AUTO,
        .io_timeout_ms = 10000,
        .switchover_timeout_ms = 60000,
        .checkpoint_bytes = 64ull << 20,
        .progress_interval_ms = 100,
    };
    policy_config_defaults(&p->policy);
    /* ferry's defaults, not the bare policy's: keep iterating while passes
     * still shrink the dirty set, towards a tenth of the limit (10 ms of the
     * default 100 ms); and a fixed stun cost as measured through real
     * agents (bench/migration_agent: vCPU state, Raft commit, resume
     * confirmation take 3-6 ms on loopback), not the policy's cautious 20 ms. */
    p->policy.stun_target_ratio = 0.1;
    p->policy.switchover_cost_us = 5000;
}

void migration_receiver_config_defaults(migration_receiver_config_t *cfg)
{
    stream_receiver_config_t stream;
    stream_receiver_config_defaults(&stream);
    *cfg = (migration_receiver_config_t){
        .accept_timeout_ms = 30000,
        .io_timeout_ms = 10000,
        .commit_timeout_ms = 60000,
        .progress_interval_ms = 100,
        .max_streams = stream.max_streams,
        .max_chunk_bytes = stream.max_chunk_bytes,
        .max_window = stream.max_window,
        .cipher = stream.cipher,
    };
}

const char *migration_error_name(int error)
{
    switch (error) {
    case MIGRATION_OK:                return "ok";
    case MIGRATION_ERR_INVALID:       return "invalid";
    case MIGRATION_ERR_STREAM:        return "stream failed";
    case MIGRATION_ERR_REFUSED:       return "refused by the receiver";
    case MIGRATION_ERR_NOT_CONVERGED: return "not converging";
    case MIGRATION_ERR_CANCELLED:     return "cancelled";
    case MIGRATION_ERR_VM:            return "VM operation failed";
    case MIGRATION_ERR_VERIFY:        return "memory verification failed";
    case MIGRATION_ERR_COMMIT:        return "commit failed";
    case MIGRATION_ERR_UNCONFIRMED:   return "committed, resume unconfirmed";
    case MIGRATION_ERR_ABORTED:       return "aborted by the sender";
    case MIGRATION_ERR_IN_DOUBT:      return "outcome in doubt";
    case MIGRATION_ERR_IO:            return "i/o error";
    case MIGRATION_ERR_NOMEM:         return "out of memory";
    }
    return "unknown error";
}

const char *migration_phase_name(migration_phase_t phase)
{
    switch (phase) {
    case MIGRATION_PHASE_CONNECT:    return "connect";
    case MIGRATION_PHASE_FULL:       return "full";
    case MIGRATION_PHASE_ITERATE:    return "iterate";
    case MIGRATION_PHASE_SWITCHOVER: return "switchover";
    case MIGRATION_PHASE_DONE:       return "done";
    }
    return "?";
}

/* --- rate estimate ------------------------------------------------------------ */

void rate_add(rate_estimate_t *rate, uint64_t bytes, uint64_t elapsed_us)
{
    if (bytes < RATE_MIN_SAMPLE_BYTES || elapsed_us == 0)
        return;
    uint64_t sample = (uint64_t)((double)bytes * 1e6 / (double)elapsed_us);
    rate->average_Bps = rate->average_Bps == 0 ? (double)sample
                                               : 0.7 * rate->average_Bps + 0.3 * (double)sample;
    rate->last_Bps = sample;
}

uint64_t rate_Bps(const rate_estimate_t *rate)
{
    uint64_t average = (uint64_t)rate->average_Bps;
    return average < rate->last_Bps ? average : rate->last_Bps;
}

/* --- send-rate cap ------------------------------------------------------------ */

void pace_start(pace_t *pace, uint64_t cap_Bps, int64_t now_ns, uint64_t sent)
{
    *pace = (pace_t){ .cap_Bps = cap_Bps, .from_ns = now_ns, .from_bytes = sent };
}

int64_t pace_wait_ns(pace_t *pace, uint64_t sent, int64_t now_ns)
{
    if (!pace->cap_Bps)
        return 0;
    double due_s = (double)(sent - pace->from_bytes) / (double)pace->cap_Bps;
    int64_t due_ns = pace->from_ns + (int64_t)(due_s * 1e9);
    if (due_ns < now_ns - PACE_BURST_NS) {   /* idle that long: keep a burst's credit only */
        pace_start(pace, pace->cap_Bps, now_ns - PACE_BURST_NS, sent);
        return 0;
    }
    return due_ns > now_ns ? due_ns - now_ns : 0;
}

/* --- time ------------------------------------------------------------------------ */

int64_t migration_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double migration_ms_between(int64_t from_ns, int64_t to_ns)
{
    return (double)(to_ns - from_ns) / 1e6;
}

/* --- session ------------------------------------------------------------------------ */

int session_init(migration_session_t *s, const migration_params_t *p, migration_progress_fn cb,
                 void *ctx, migration_result_t *out, migration_kind_t kind)
{
    memset(out, 0, sizeof *out);
    *s = (migration_session_t){ .p = p, .out = out, .cb = cb, .ctx = ctx,
                                .start_ns = migration_now_ns() };
    s->progress.predicted_stun_us = UINT64_MAX;
    pace_start(&s->pace, p->max_bandwidth_Bps, s->start_ns, 0);
    out->kind = kind;
    snprintf(out->cipher, sizeof out->cipher, "none");
    if (!p->endpoint)
        return session_fail(s, MIGRATION_ERR_INVALID, "no receiver endpoint");
    if (!p->commit)
        return session_fail(s, MIGRATION_ERR_INVALID, "no commit callback: the ownership "
                            "change has to be committed somewhere");
    if (p->io_timeout_ms <= 0 || p->switchover_timeout_ms <= 0 || p->progress_interval_ms < 0)
        return session_fail(s, MIGRATION_ERR_INVALID, "timeouts must be positive");
    return 0;
}

int session_fail(migration_session_t *s, int code, const char *fmt, ...)
{
    char text[sizeof s->out->error_text];
    va_list args;
    va_start(args, fmt);
    vsnprintf(text, sizeof text, fmt, args);
    va_end(args);
    if (s->out->error == 0) {
        s->out->error = code;
        snprintf(s->out->error_text, sizeof s->out->error_text, "%s", text);
        log_warn("migration", "%s: %s", migration_error_name(code), text);
    } else {
        log_info("migration", "also: %s", text);
    }
    return s->out->error;
}

int session_stream_fail(migration_session_t *s, int stream_rc, const char *doing, bool refusal)
{
    const char *why = s->stream ? stream_sender_error(s->stream) : "";
    if (s->out->error == 0)
        s->out->stream_error = stream_rc;
    int code = refusal && stream_rc == STREAM_ERR_REJECTED ? MIGRATION_ERR_REFUSED
                                                           : MIGRATION_ERR_STREAM;
    return session_fail(s, code, "%s: %s", doing, *why ? why : stream_error_name(stream_rc));
}

/* The next reply, which must be of type `want`. */
static int expect_reply(migration_session_t *s, uint8_t want, int timeout_ms, const char *waiting,
                        bool refusal, stream_reply_t *reply)
{
    int rc = stream_sender_next_reply(s->stream, timeout_ms, reply);
    if (rc == STREAM_ERR_TIMEOUT)
        return session_fail(s, MIGRATION_ERR_STREAM, "%s: no answer within %d ms", waiting,
                            timeout_ms);
    if (rc)
        return session_stream_fail(s, rc, waiting, refusal);
    if (reply->type != want)
        return session_fail(s, MIGRATION_ERR_STREAM, "%s: the receiver answered with reply "
                            "type %u", waiting, reply->type);
    return 0;
}

int session_open(migration_session_t *s, const migration_describe_t *d, const uint8_t *manifest,
                 size_t manifest_len, uint64_t *first_page)
{
    const migration_params_t *p = s->p;
    stream_sender_config_t cfg;
    stream_sender_config_defaults(&cfg);
    cfg.endpoint = p->endpoint;
    cfg.identity = p->identity;
    memcpy(cfg.peer_public_key, p->peer_public_key, STREAM_KEY_BYTES);
    memcpy(cfg.migration_id, p->migration_id, STREAM_MIGRATION_ID_BYTES);
    cfg.streams = p->streams;
    cfg.chunk_bytes = p->chunk_bytes;
    cfg.window = p->window;
    cfg.cipher = p->cipher;
    cfg.timeout_ms = p->io_timeout_ms;
    s->progress.phase = MIGRATION_PHASE_CONNECT;
    s->stream = stream_sender_new(&cfg);
    if (!s->stream)
        return session_fail(s, MIGRATION_ERR_INVALID, "cannot set up the stream to %s "
                            "(stream parameters or keys refused; see the log)", p->endpoint);
    int rc = stream_sender_handshake(s->stream, p->io_timeout_ms);
    if (rc)
        return session_stream_fail(s, rc, "handshake", false);
    snprintf(s->out->cipher, sizeof s->out->cipher, "%s", stream_sender_cipher(s->stream));

    uint8_t describe[MIGRATION_DESCRIBE_MAX];
    size_t len = migration_describe_encode(d, describe, sizeof describe);
    if (len == 0)
        return session_fail(s, MIGRATION_ERR_INVALID, "the VM's description is out of bounds "
                            "(name, memory size, vCPUs or command line)");
    if ((rc = session_send_record(s, MIGRATION_RECORD_DESCRIBE, describe, len, "description")))
        return rc;
    if (manifest && (rc = session_send_record(s, MIGRATION_RECORD_MANIFEST, manifest,
                                              manifest_len, "image manifest")))
        return rc;
    stream_reply_t reply;
    if ((rc = expect_reply(s, MIGRATION_REPLY_ACCEPT, p->io_timeout_ms,
                           "waiting for the receiver to accept the VM", true, &reply)))
        return rc;
    const char *why = NULL;
    if (migration_u64_decode(reply.data, reply.len, first_page, &why) != 0)
        return session_fail(s, MIGRATION_ERR_STREAM, "malformed ACCEPT: %s", why);
    return 0;
}

/* Sleeps while the stream is ahead of the bandwidth cap (pace_wait_ns). */
static void pace(migration_session_t *s)
{
    if (s->progress.phase == MIGRATION_PHASE_SWITCHOVER)
        return;
    int64_t wait_ns = pace_wait_ns(&s->pace, stream_sender_stats(s->stream).wire_bytes,
                                   migration_now_ns());
    if (wait_ns > 0) {
        struct timespec ts = { .tv_sec = wait_ns / 1000000000, .tv_nsec = wait_ns % 1000000000 };
        nanosleep(&ts, NULL);
    }
}

int session_send_pages(migration_session_t *s, const uint8_t *base, const uint64_t *pages,
                       size_t count)
{
    int rc = stream_send_pages(s->stream, base, pages, count);
    if (rc)
        return session_stream_fail(s, rc, "sending pages", false);
    pace(s);
    return 0;
}

int session_send_record(migration_session_t *s, uint8_t type, const void *data, size_t len,
                        const char *what)
{
    int rc = stream_send_record(s->stream, type, data, len);
    if (rc) {
        char doing[64];
        snprintf(doing, sizeof doing, "sending the %s", what);
        return session_stream_fail(s, rc, doing, false);
    }
    return 0;
}

int session_send_state(migration_session_t *s, const uint8_t *state, size_t len)
{
    uint8_t *buffer = malloc(MIGRATION_STATE_PIECE_HEADER + MIGRATION_STATE_PIECE_MAX);
    if (!buffer)
        return session_fail(s, MIGRATION_ERR_NOMEM, "no memory for the state pieces");
    int rc = 0;
    for (size_t at = 0; at < len && rc == 0; at += MIGRATION_STATE_PIECE_MAX) {
        size_t n = len - at < MIGRATION_STATE_PIECE_MAX ? len - at : MIGRATION_STATE_PIECE_MAX;
        size_t size = migration_state_piece_encode((uint32_t)len, (uint32_t)at, state + at, n,
                                                   buffer, MIGRATION_STATE_PIECE_HEADER
                                                               + MIGRATION_STATE_PIECE_MAX);
        rc = size ? session_send_record(s, MIGRATION_RECORD_STATE, buffer, size, "vCPU state")
                  : session_fail(s, MIGRATION_ERR_VM, "a saved state of %zu bytes is out of "
                                 "bounds", len);
    }
    free(buffer);
    return rc;
}

int session_send_ready(migration_session_t *s)
{
    return session_send_record(s, MIGRATION_RECORD_READY, NULL, 0, "end of memory and state");
}

int session_wait_verified(migration_session_t *s, bool *hashed,
                          uint8_t hash[MIGRATION_HASH_BYTES])
{
    stream_reply_t reply;
    int rc = expect_reply(s, MIGRATION_REPLY_VERIFIED, s->p->switchover_timeout_ms,
                          "waiting for the receiver to load the state", false, &reply);
    if (rc)
        return rc;
    const char *why = NULL;
    if (migration_verified_decode(reply.data, reply.len, hashed, hash, &why) != 0)
        return session_fail(s, MIGRATION_ERR_STREAM, "malformed VERIFIED: %s", why);
    return 0;
}

int session_compare_hashes(migration_session_t *s, const uint8_t mine[MIGRATION_HASH_BYTES],
                           bool theirs_hashed, const uint8_t theirs[MIGRATION_HASH_BYTES])
{
    memcpy(s->out->source_hash, mine, MIGRATION_HASH_BYTES);
    if (!theirs_hashed)
        return session_fail(s, MIGRATION_ERR_VERIFY, "verification was asked for, but the "
                            "receiver did not hash its memory");
    memcpy(s->out->dest_hash, theirs, MIGRATION_HASH_BYTES);
    if (memcmp(mine, theirs, MIGRATION_HASH_BYTES) != 0) {
        char a[17], b[17];
        for (int i = 0; i < 8; i++) {
            snprintf(a + 2 * i, 3, "%02x", mine[i]);
            snprintf(b + 2 * i, 3, "%02x", theirs[i]);
        }
        return session_fail(s, MIGRATION_ERR_VERIFY, "memory hash differs: source %s..., "
                            "destination %s...", a, b);
    }
    s->out->hash_verified = true;
    return 0;
}

int session_commit(migration_session_t *s)
{
    char why[200] = "";
    int64_t t0 = migration_now_ns();
    int rc = s->p->commit(s->p->commit_ctx, why, sizeof why);
    s->out->commit_ms = migration_ms_between(t0, migration_now_ns());
    if (rc != 0)
        return session_fail(s, MIGRATION_ERR_COMMIT, "the commit callback failed (%d): %s", rc,
                            why[0] ? why : "no reason given");
    s->out->committed = true;
    return 0;
}

int session_confirm(migration_session_t *s)
{
    uint8_t outcome[MIGRATION_OUTCOME_MAX];
    size_t len = migration_outcome_encode(true, NULL, outcome, sizeof outcome);
    int rc = session_send_record(s, MIGRATION_RECORD_OUTCOME, outcome, len, "commit outcome");
    stream_reply_t reply;
    if (!rc)
        rc = expect_reply(s, MIGRATION_REPLY_RESUMED, s->p->switchover_timeout_ms,
                          "waiting for the destination to resume", false, &reply);
    if (rc)
        return rc;
    /* The receiver has all it needs; DONE only closes the stream tidily. */
    int done = stream_sender_finish(s->stream, s->p->io_timeout_ms);
    if (done)
        log_info("migration", "stream end not confirmed (%s); the migration is complete anyway",
                 stream_sender_error(s->stream));
    return 0;
}

void session_call_off(migration_session_t *s, const char *reason)
{
    if (!s->stream || *stream_sender_error(s->stream))
        return;   /* no session, or a broken one: the receiver times out by itself */
    uint8_t outcome[MIGRATION_OUTCOME_MAX];
    size_t len = migration_outcome_encode(false, reason, outcome, sizeof outcome);
    if (stream_send_record(s->stream, MIGRATION_RECORD_OUTCOME, outcome, len) != 0)
        log_info("migration", "could not tell the receiver to drop its copy: %s",
                 stream_sender_error(s->stream));
}

bool session_report(migration_session_t *s, bool force)
{
    int64_t now = migration_now_ns();
    if (!force && now - s->last_report_ns < (int64_t)s->p->progress_interval_ms * 1000000)
        return false;
    s->last_report_ns = now;
    migration_progress_t *pr = &s->progress;
    pr->bytes_sent = s->stream ? stream_sender_stats(s->stream).wire_bytes : 0;
    pr->rate_Bps = rate_Bps(&s->rate);
    pr->elapsed_ms = migration_ms_between(s->start_ns, now);
    /* Pages the guest wrote into holes after the count make a pass longer
     * than announced: the bar stops at 100. */
    if (pr->pass_pages_sent > pr->pass_pages)
        pr->pass_pages = pr->pass_pages_sent;
    pr->percent = pr->pass_pages ? 100.0 * (double)pr->pass_pages_sent / (double)pr->pass_pages
                                 : 100.0;
    if (!s->cb)
        return false;
    return s->cb(pr, s->ctx) != 0;
}

void session_close(migration_session_t *s)
{
    if (s->stream) {
        stream_stats_t stats = stream_sender_stats(s->stream);
        s->out->bytes_sent = stats.wire_bytes;
        s->out->pages_sent = stats.pages;
        s->out->zero_pages += stats.zero_pages;
        stream_sender_destroy(&s->stream);
    }
    s->out->total_ms = migration_ms_between(s->start_ns, migration_now_ns());
}
