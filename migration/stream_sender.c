/* stream_sender.c - the source end of the migration stream.
 *
 * One ZeroMQ DEALER socket per parallel stream, all connected to the
 * receiver's ROUTER. Each stream fills one chunk buffer at a time; a full
 * chunk is sealed in place (header as associated data, tag after the body)
 * and handed to ZeroMQ without a copy: the buffer returns to the pool when
 * ZeroMQ's I/O thread has written it out. A stream may have `window` chunks
 * that the receiver has not acknowledged; memory is therefore bounded by
 * streams x (window + 1) chunk buffers.
 *
 * With AES-256-GCM a page is not copied into the chunk first: the chunk
 * notes where the page lies in guest memory, and sealing encrypts it from
 * there straight into the chunk (one pass over the page instead of a copy
 * and a pass). Pages still only noted when stream_send_pages() returns are
 * copied in then, so the caller's memory is never read after the call. */
#include "migration/stream.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/log.h"
#include "migration/stream_crypto.h"
#include "migration/stream_internal.h"
#include "migration/stream_wire.h"

/* Chunk buffers, shared with ZeroMQ's I/O thread which gives them back. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t returned;
    size_t buffer_bytes;
    size_t limit;            /* most buffers ever allocated */
    size_t allocated;
    uint8_t **all;           /* [limit], for freeing */
    uint8_t **spare;         /* [limit], a stack of free buffers */
    size_t spare_count;
} chunk_pool_t;

/* A page of the open chunk that is still in guest memory: its data goes at
 * body offset `at` (after its entry tag, which is in the chunk already). */
typedef struct {
    size_t at;
    const uint8_t *page;
} noted_page_t;

typedef struct {
    uint8_t *open;           /* the chunk being filled, or NULL */
    size_t fill;             /* body bytes in it */
    noted_page_t *noted;     /* [chunk_bytes / page entry], in body order */
    size_t noted_count;
    uint64_t next_seq;       /* next DATA seq; JOIN took 0 */
    uint64_t acked;          /* highest DATA seq the receiver consumed */
    uint64_t next_ack_seq;   /* seq the next ACK must carry */
} sender_stream_t;

typedef enum { SENDER_NEW, SENDER_READY, SENDER_FINISHED, SENDER_FAILED } sender_state_t;

/* Replies from the receiver that arrived while we waited for something else. */
#define REPLY_QUEUE 4

typedef struct {
    uint8_t type;
    uint8_t *data;           /* malloc'd copy of the payload */
    size_t len;
} queued_reply_t;

struct stream_sender {
    stream_sender_config_t cfg;
    char *endpoint;
    void *ctx;
    void *sockets[STREAM_MAX_STREAMS];
    sender_state_t state;
    uint32_t stream_count;   /* negotiated */
    uint32_t chunk_bytes;
    uint32_t window;
    stream_session_t session;
    sender_stream_t streams[STREAM_MAX_STREAMS];
    chunk_pool_t pool;
    queued_reply_t replies[REPLY_QUEUE];
    uint32_t reply_head, reply_count;
    uint8_t *reply_handed_out;   /* payload of the last reply handed out */
    stream_stats_t stats;
    stream_failure_t failure;
};

/* --- chunk pool ------------------------------------------------------------ */

static int pool_init(chunk_pool_t *pool, size_t limit, size_t buffer_bytes)
{
    memset(pool, 0, sizeof *pool);
    pool->all = calloc(limit, sizeof *pool->all);
    pool->spare = calloc(limit, sizeof *pool->spare);
    if (!pool->all || !pool->spare) {
        free(pool->all);
        free(pool->spare);
        return -1;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&pool->returned, &attr);
    pthread_condattr_destroy(&attr);
    pool->limit = limit;
    pool->buffer_bytes = buffer_bytes;
    return 0;
}

static void pool_destroy(chunk_pool_t *pool)
{
    if (!pool->all)
        return;
    for (size_t i = 0; i < pool->allocated; i++)
        free(pool->all[i]);
    free(pool->all);
    free(pool->spare);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->returned);
    pool->all = NULL;
}

/* ZeroMQ's free function: called from its I/O thread. */
static void pool_give_back(void *data, void *hint)
{
    chunk_pool_t *pool = hint;
    pthread_mutex_lock(&pool->lock);
    pool->spare[pool->spare_count++] = data;
    pthread_cond_signal(&pool->returned);
    pthread_mutex_unlock(&pool->lock);
}

static uint8_t *pool_take(chunk_pool_t *pool, int64_t deadline_ms)
{
    uint8_t *buffer = NULL;
    struct timespec until = { .tv_sec = deadline_ms / 1000,
                              .tv_nsec = (deadline_ms % 1000) * 1000000 };
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        if (pool->spare_count) {
            buffer = pool->spare[--pool->spare_count];
            break;
        }
        if (pool->allocated < pool->limit) {
            size_t size = (pool->buffer_bytes + 63) & ~(size_t)63;
            buffer = aligned_alloc(64, size);
            if (buffer)
                pool->all[pool->allocated++] = buffer;
            break;
        }
        if (pthread_cond_timedwait(&pool->returned, &pool->lock, &until) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&pool->lock);
    return buffer;
}

/* --- helpers ----------------------------------------------------------------- */

static int sender_fail(stream_sender_t *self, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int sender_fail(stream_sender_t *self, int code, const char *fmt, ...)
{
    char text[sizeof self->failure.text];
    va_list args;
    va_start(args, fmt);
    vsnprintf(text, sizeof text, fmt, args);
    va_end(args);
    self->state = SENDER_FAILED;
    return stream_fail(&self->failure, "stream sender", code, "%s", text);
}

static void *open_socket(stream_sender_t *self)
{
    void *socket = zmq_socket(self->ctx, ZMQ_DEALER);
    if (!socket)
        return NULL;
    int hwm = (int)self->cfg.window + 2;
    int linger = 0;
    int timeout = self->cfg.timeout_ms;
    zmq_setsockopt(socket, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(socket, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
    if (zmq_connect(socket, self->endpoint) != 0) {
        log_error("migration", "stream sender: cannot connect to %s: %s", self->endpoint,
                  zmq_strerror(zmq_errno()));
        zmq_close(socket);
        return NULL;
    }
    return socket;
}

static bool config_valid(const stream_sender_config_t *cfg, const char **why)
{
    if (!cfg->endpoint || strncmp(cfg->endpoint, "tcp://", 6) != 0)
        *why = "endpoint must be tcp://ADDRESS:PORT";
    else if (cfg->streams < 1 || cfg->streams > STREAM_MAX_STREAMS)
        *why = "streams out of range 1..8";
    else if (cfg->chunk_bytes < STREAM_MIN_CHUNK_BYTES || cfg->chunk_bytes > STREAM_MAX_CHUNK_BYTES)
        *why = "chunk_bytes out of range 64 KiB..64 MiB";
    else if (cfg->window < 1 || cfg->window > STREAM_MAX_WINDOW)
        *why = "window out of range 1..64";
    else if (cfg->timeout_ms <= 0)
        *why = "timeout_ms must be positive";
    else if (cfg->cipher != STREAM_CIPHER_AUTO && !stream_cipher_available(cfg->cipher))
        *why = "the forced cipher is not available on this CPU";
    else if (!stream_identity_valid(&cfg->identity))
        *why = "identity secret key does not match its public key";
    else
        return true;
    return false;
}

stream_sender_t *stream_sender_new(const stream_sender_config_t *cfg)
{
    const char *why = NULL;
    if (!stream_crypto_init()) {
        log_error("migration", "stream sender: libsodium failed to initialise");
        return NULL;
    }
    if (!cfg || !config_valid(cfg, &why)) {
        log_error("migration", "stream sender: invalid config: %s", cfg ? why : "none given");
        return NULL;
    }
    stream_sender_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = *cfg;
    self->endpoint = strdup(cfg->endpoint);
    self->cfg.endpoint = self->endpoint;
    self->ctx = zmq_ctx_new();
    if (!self->endpoint || !self->ctx
        || pool_init(&self->pool, (size_t)cfg->streams * (cfg->window + 1),
                     STREAM_HEADER_SIZE + (size_t)cfg->chunk_bytes + STREAM_TAG_SIZE) != 0
        || !(self->sockets[0] = open_socket(self))) {
        stream_sender_destroy(&self);
        return NULL;
    }
    for (uint32_t j = 0; j < cfg->streams; j++) {
        self->streams[j].noted = calloc(cfg->chunk_bytes / STREAM_PAGE_ENTRY_SIZE,
                                        sizeof *self->streams[j].noted);
        if (!self->streams[j].noted) {
            stream_sender_destroy(&self);
            return NULL;
        }
    }
    return self;
}

void stream_sender_destroy(stream_sender_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    stream_sender_t *self = *self_p;
    for (int j = 0; j < STREAM_MAX_STREAMS; j++) {
        if (self->sockets[j])
            zmq_close(self->sockets[j]);
    }
    /* Terminating the context makes ZeroMQ release every message it still
     * holds, which returns their buffers to the pool before it goes. */
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    pool_destroy(&self->pool);
    for (int j = 0; j < STREAM_MAX_STREAMS; j++)
        free(self->streams[j].noted);
    for (uint32_t i = 0; i < self->reply_count; i++)
        free(self->replies[(self->reply_head + i) % REPLY_QUEUE].data);
    free(self->reply_handed_out);
    stream_session_wipe(&self->session);
    sodium_memzero(&self->cfg.identity, sizeof self->cfg.identity);
    free(self->endpoint);
    free(self);
    *self_p = NULL;
}

/* --- handshake ---------------------------------------------------------------- */

static uint8_t offered_ciphers(const stream_sender_config_t *cfg)
{
    if (cfg->cipher != STREAM_CIPHER_AUTO)
        return (uint8_t)(1 << cfg->cipher);
    uint8_t offered = 1 << STREAM_CIPHER_XCHACHA20POLY1305;
    if (stream_cipher_available(STREAM_CIPHER_AES256GCM))
        offered |= 1 << STREAM_CIPHER_AES256GCM;
    return offered;
}

/* Waits for one message on socket `j`; 1 if one arrived, 0 on timeout. */
static int wait_readable(void *socket, int64_t deadline_ms)
{
    zmq_pollitem_t item = { .socket = socket, .events = ZMQ_POLLIN };
    int rc = zmq_poll(&item, 1, stream_ms_until(deadline_ms));
    return rc > 0 ? 1 : rc;
}

static int send_join(stream_sender_t *self, uint32_t j)
{
    uint8_t message[STREAM_HEADER_SIZE + STREAM_TAG_SIZE];
    stream_header_encode(&(stream_header_t){ .type = STREAM_MSG_JOIN, .stream = (uint16_t)j },
                         message);
    if (stream_seal(&self->session.send[j], 0, message, STREAM_HEADER_SIZE,
                    message + STREAM_HEADER_SIZE, 0, message + STREAM_HEADER_SIZE) != 0)
        return sender_fail(self, STREAM_ERR_NOMEM, "cannot seal JOIN on stream %u", j);
    if (zmq_send(self->sockets[j], message, sizeof message, 0) != (int)sizeof message)
        return sender_fail(self, STREAM_ERR_IO, "cannot send JOIN on stream %u: %s", j,
                           zmq_strerror(zmq_errno()));
    self->stats.wire_bytes += sizeof message;
    self->streams[j].next_seq = 1;
    return 0;
}

/* Checks WELCOME against what we offered; 0 or a failure. */
static int check_welcome(stream_sender_t *self, const stream_hello_t *hello,
                         const stream_welcome_t *welcome, const uint8_t *hello_bytes,
                         const uint8_t *welcome_bytes, const uint8_t static_key[32])
{
    if (sodium_memcmp(welcome->identity, self->cfg.peer_public_key, STREAM_KEY_BYTES) != 0)
        return sender_fail(self, STREAM_ERR_AUTH,
                           "WELCOME from %s names another identity key than the receiver's",
                           self->endpoint);
    if (!stream_mac_verify(welcome->mac, static_key, STREAM_LABEL_WELCOME, hello_bytes,
                           STREAM_HELLO_SIZE, welcome_bytes, STREAM_WELCOME_MAC_AT))
        return sender_fail(self, STREAM_ERR_AUTH,
                           "WELCOME from %s failed authentication: the peer does not hold "
                           "the receiver's identity key (man in the middle?)", self->endpoint);
    if (welcome->streams > hello->streams || welcome->chunk_bytes > hello->chunk_bytes
        || welcome->window > hello->window || !(hello->ciphers & (1 << welcome->cipher)))
        return sender_fail(self, STREAM_ERR_PROTOCOL,
                           "WELCOME from %s chose parameters we did not offer", self->endpoint);
    return 0;
}

int stream_sender_handshake(stream_sender_t *self, int timeout_ms)
{
    if (self->state == SENDER_FAILED)
        return self->failure.code;
    if (self->state != SENDER_NEW)
        return STREAM_ERR_INVALID;
    int64_t deadline = stream_now_ms() + timeout_ms;

    uint8_t static_key[32], ephemeral_secret[crypto_kx_SECRETKEYBYTES];
    if (stream_static_key(static_key, &self->cfg.identity, self->cfg.peer_public_key) != 0)
        return sender_fail(self, STREAM_ERR_INVALID, "the receiver's public key is unusable");
    stream_hello_t hello = {
        .streams = (uint16_t)self->cfg.streams,
        .chunk_bytes = self->cfg.chunk_bytes,
        .window = self->cfg.window,
        .ciphers = offered_ciphers(&self->cfg),
    };
    memcpy(hello.migration_id, self->cfg.migration_id, STREAM_MIGRATION_ID_BYTES);
    memcpy(hello.identity, self->cfg.identity.public_key, STREAM_KEY_BYTES);
    crypto_kx_keypair(hello.ephemeral, ephemeral_secret);
    uint8_t hello_bytes[STREAM_HELLO_SIZE];
    stream_hello_encode(&hello, hello_bytes);
    stream_mac(hello_bytes + STREAM_HELLO_MAC_AT, static_key, STREAM_LABEL_HELLO, hello_bytes,
               STREAM_HELLO_MAC_AT, NULL, 0);

    int rc = 0;
    zmq_msg_t reply;
    zmq_msg_init(&reply);
    if (zmq_send(self->sockets[0], hello_bytes, sizeof hello_bytes, 0) != (int)sizeof hello_bytes) {
        rc = sender_fail(self, STREAM_ERR_IO, "cannot send HELLO to %s: %s", self->endpoint,
                         zmq_strerror(zmq_errno()));
        goto out;
    }
    self->stats.wire_bytes += sizeof hello_bytes;
    if (wait_readable(self->sockets[0], deadline) <= 0
        || zmq_msg_recv(&reply, self->sockets[0], ZMQ_DONTWAIT) < 0) {
        rc = sender_fail(self, STREAM_ERR_TIMEOUT, "no answer to HELLO from %s within %d ms",
                         self->endpoint, timeout_ms);
        goto out;
    }
    const uint8_t *reply_bytes = zmq_msg_data(&reply);
    size_t reply_len = zmq_msg_size(&reply);
    uint8_t reason;
    if (stream_reject_decode(reply_bytes, reply_len, &reason) == 0) {
        rc = sender_fail(self, STREAM_ERR_REJECTED, "receiver at %s rejected the handshake: %s",
                         self->endpoint, stream_reject_reason_name(reason));
        goto out;
    }
    stream_welcome_t welcome;
    const char *why = NULL;
    if (stream_welcome_decode(reply_bytes, reply_len, &welcome, &why) != 0) {
        rc = sender_fail(self, STREAM_ERR_PROTOCOL, "malformed WELCOME from %s: %s",
                         self->endpoint, why);
        goto out;
    }
    if ((rc = check_welcome(self, &hello, &welcome, hello_bytes, reply_bytes, static_key)))
        goto out;
    int derived = stream_session_derive(&self->session, true, welcome.cipher, welcome.streams,
                                        hello.ephemeral, ephemeral_secret, welcome.ephemeral,
                                        static_key, hello_bytes, sizeof hello_bytes,
                                        reply_bytes, reply_len);
    if (derived != 0) {
        rc = derived == -2
                 ? sender_fail(self, STREAM_ERR_NOMEM, "no memory for the session keys")
                 : sender_fail(self, STREAM_ERR_AUTH, "the receiver's ephemeral key is unusable");
        goto out;
    }
    self->stats.wire_bytes += reply_len;
    self->stream_count = welcome.streams;
    self->chunk_bytes = welcome.chunk_bytes;
    self->window = welcome.window;
    for (uint32_t j = 0; j < self->stream_count && rc == 0; j++) {
        if (j > 0 && !(self->sockets[j] = open_socket(self)))
            rc = sender_fail(self, STREAM_ERR_IO, "cannot open stream %u to %s", j, self->endpoint);
        else
            rc = send_join(self, j);
    }
    if (rc == 0) {
        self->state = SENDER_READY;
        log_info("migration", "stream sender: session with %s up: %u stream(s), %s, "
                 "%u-byte chunks, window %u", self->endpoint, self->stream_count,
                 stream_cipher_name(self->session.cipher), self->chunk_bytes, self->window);
    }
out:
    zmq_msg_close(&reply);
    sodium_memzero(static_key, sizeof static_key);
    sodium_memzero(ephemeral_secret, sizeof ephemeral_secret);
    return rc;
}

/* --- acknowledgements and replies ------------------------------------------ */

static int handle_ack(stream_sender_t *self, uint32_t j, const stream_header_t *header,
                      const uint8_t *body)
{
    sender_stream_t *st = &self->streams[j];
    if (header->body_len != STREAM_ACK_BODY_SIZE)
        return sender_fail(self, STREAM_ERR_PROTOCOL, "stream %u: acknowledgement with a "
                           "%u-byte body", j, header->body_len);
    uint64_t consumed = stream_get_u64(body);
    if (consumed <= st->acked || consumed >= st->next_seq)
        return sender_fail(self, STREAM_ERR_PROTOCOL, "stream %u: acknowledges chunk %llu, "
                           "which is not outstanding", j, (unsigned long long)consumed);
    st->acked = consumed;
    return 0;
}

static int handle_reply(stream_sender_t *self, const stream_header_t *header, const uint8_t *body)
{
    if (header->body_len < 1)
        return sender_fail(self, STREAM_ERR_PROTOCOL, "reply without a type");
    uint8_t type = body[0];
    size_t len = header->body_len - 1;
    if (type == STREAM_REPLY_ABORT) {
        char reason[200];
        size_t n = len < sizeof reason - 1 ? len : sizeof reason - 1;
        for (size_t i = 0; i < n; i++)   /* text from the peer: printable only */
            reason[i] = body[1 + i] >= 0x20 && body[1 + i] < 0x7f ? (char)body[1 + i] : '?';
        reason[n] = '\0';
        return sender_fail(self, STREAM_ERR_REJECTED, "the receiver at %s gave up: %s",
                           self->endpoint, n ? reason : "no reason given");
    }
    if (self->reply_count == REPLY_QUEUE)
        return sender_fail(self, STREAM_ERR_PROTOCOL, "more than %d replies unread",
                           REPLY_QUEUE);
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return sender_fail(self, STREAM_ERR_NOMEM, "no memory for a reply");
    memcpy(copy, body + 1, len);
    self->replies[(self->reply_head + self->reply_count) % REPLY_QUEUE] =
        (queued_reply_t){ .type = type, .data = copy, .len = len };
    self->reply_count++;
    return 0;
}

/* One message from the receiver on stream j: an ACK, or (stream 0) a REPLY.
 * Both share the stream's seq space, so each nonce is used once. */
static int handle_message(stream_sender_t *self, uint32_t j, zmq_msg_t *message)
{
    uint8_t *data = zmq_msg_data(message);
    size_t len = zmq_msg_size(message);
    sender_stream_t *st = &self->streams[j];
    stream_header_t header;
    const char *why = NULL;
    if (stream_header_decode(data, len, STREAM_REPLY_MAX_BODY, &header, &why) != 0)
        return sender_fail(self, STREAM_ERR_PROTOCOL, "stream %u: malformed message from the "
                           "receiver: %s", j, why);
    bool reply = header.type == STREAM_MSG_REPLY && j == 0;
    if ((header.type != STREAM_MSG_ACK && !reply) || header.stream != j)
        return sender_fail(self, STREAM_ERR_PROTOCOL, "stream %u: unexpected message type %u "
                           "from the receiver", j, header.type);
    if (header.seq != st->next_ack_seq)
        return sender_fail(self, STREAM_ERR_SEQUENCE, "stream %u: receiver message seq %llu "
                           "where %llu was expected (replayed or reordered)", j,
                           (unsigned long long)header.seq, (unsigned long long)st->next_ack_seq);
    uint8_t *body = data + STREAM_HEADER_SIZE;
    if (stream_open(&self->session.recv[j], header.seq, data, STREAM_HEADER_SIZE, body,
                    header.body_len, body + header.body_len) != 0)
        return sender_fail(self, STREAM_ERR_TAMPERED, "stream %u: receiver message seq %llu "
                           "failed authentication", j, (unsigned long long)header.seq);
    st->next_ack_seq++;
    self->stats.wire_bytes += len;
    return reply ? handle_reply(self, &header, body) : handle_ack(self, j, &header, body);
}

/* Reads every acknowledgement that arrives before the deadline; returns
 * after the first batch. 0, STREAM_ERR_TIMEOUT or a failure. */
static int pump_acks(stream_sender_t *self, int64_t deadline_ms)
{
    zmq_pollitem_t items[STREAM_MAX_STREAMS];
    for (uint32_t j = 0; j < self->stream_count; j++)
        items[j] = (zmq_pollitem_t){ .socket = self->sockets[j], .events = ZMQ_POLLIN };
    int ready = zmq_poll(items, (int)self->stream_count, stream_ms_until(deadline_ms));
    if (ready < 0)
        return sender_fail(self, STREAM_ERR_IO, "poll failed: %s", zmq_strerror(zmq_errno()));
    if (ready == 0)
        return STREAM_ERR_TIMEOUT;
    for (uint32_t j = 0; j < self->stream_count; j++) {
        if (!(items[j].revents & ZMQ_POLLIN))
            continue;
        zmq_msg_t message;
        zmq_msg_init(&message);
        while (zmq_msg_recv(&message, self->sockets[j], ZMQ_DONTWAIT) >= 0) {
            int rc = handle_message(self, j, &message);
            if (rc) {
                zmq_msg_close(&message);
                return rc;
            }
        }
        zmq_msg_close(&message);
    }
    return 0;
}

static uint64_t unacknowledged(const sender_stream_t *st)
{
    return st->next_seq - 1 - st->acked;
}

/* --- chunks ------------------------------------------------------------------ */

/* Seals the open chunk in place, its header (already written) as the
 * associated data; noted pages are encrypted from guest memory into it. */
static int seal_chunk(const stream_key_t *key, sender_stream_t *st, uint64_t seq)
{
    uint8_t *header = st->open, *body = st->open + STREAM_HEADER_SIZE, *tag = body + st->fill;
    if (st->noted_count == 0)
        return stream_seal(key, seq, header, STREAM_HEADER_SIZE, body, st->fill, tag);
    if (stream_seal_begin(key, seq, header, STREAM_HEADER_SIZE) != 0)
        return -1;
    size_t done = 0;   /* body bytes sealed so far */
    for (size_t i = 0; i < st->noted_count; i++) {
        const noted_page_t *noted = &st->noted[i];
        if (stream_seal_piece(key, body + done, body + done, noted->at - done) != 0
            || stream_seal_piece(key, body + noted->at, noted->page, STREAM_PAGE_SIZE) != 0)
            return -1;
        done = noted->at + STREAM_PAGE_SIZE;
    }
    st->noted_count = 0;
    if (stream_seal_piece(key, body + done, body + done, st->fill - done) != 0)
        return -1;
    return stream_seal_end(key, tag);
}

/* Copies the noted pages of every open chunk into it: the caller may
 * change its memory once stream_send_pages() returns. */
static void copy_noted_pages(stream_sender_t *self)
{
    for (uint32_t j = 0; j < self->stream_count; j++) {
        sender_stream_t *st = &self->streams[j];
        for (size_t i = 0; i < st->noted_count; i++)
            memcpy(st->open + STREAM_HEADER_SIZE + st->noted[i].at, st->noted[i].page,
                   STREAM_PAGE_SIZE);
        st->noted_count = 0;
    }
}

static int seal_and_send(stream_sender_t *self, uint32_t j)
{
    sender_stream_t *st = &self->streams[j];
    if (!st->open || st->fill == 0)
        return 0;
    int64_t deadline = stream_now_ms() + self->cfg.timeout_ms;
    while (unacknowledged(st) >= self->window) {
        int rc = pump_acks(self, deadline);
        if (rc == STREAM_ERR_TIMEOUT)
            return sender_fail(self, rc, "stream %u: receiver consumed nothing for %d ms",
                               j, self->cfg.timeout_ms);
        if (rc)
            return rc;
    }
    uint8_t *buffer = st->open;
    uint64_t seq = st->next_seq;
    stream_header_encode(&(stream_header_t){ .type = STREAM_MSG_DATA, .stream = (uint16_t)j,
                                             .body_len = (uint32_t)st->fill, .seq = seq },
                         buffer);
    if (seal_chunk(&self->session.send[j], st, seq) != 0)
        return sender_fail(self, STREAM_ERR_NOMEM, "stream %u: cannot seal chunk %llu", j,
                           (unsigned long long)seq);
    size_t size = STREAM_HEADER_SIZE + st->fill + STREAM_TAG_SIZE;
    st->open = NULL;
    st->fill = 0;

    zmq_msg_t message;
    if (zmq_msg_init_data(&message, buffer, size, pool_give_back, &self->pool) != 0) {
        pool_give_back(buffer, &self->pool);
        return sender_fail(self, STREAM_ERR_NOMEM, "cannot wrap a chunk in a message");
    }
    if (zmq_msg_send(&message, self->sockets[j], 0) < 0) {
        int err = zmq_errno();
        zmq_msg_close(&message);   /* gives the buffer back */
        return sender_fail(self, err == EAGAIN ? STREAM_ERR_TIMEOUT : STREAM_ERR_IO,
                           "stream %u: cannot send chunk %llu: %s", j,
                           (unsigned long long)seq, zmq_strerror(err));
    }
    st->next_seq++;
    self->stats.chunks++;
    self->stats.wire_bytes += size;
    return 0;
}

/* Makes sure stream j has an open chunk with `need` free body bytes. */
static int make_room(stream_sender_t *self, uint32_t j, size_t need)
{
    sender_stream_t *st = &self->streams[j];
    if (st->open && self->chunk_bytes - st->fill < need) {
        int rc = seal_and_send(self, j);
        if (rc)
            return rc;
    }
    if (!st->open) {
        st->open = pool_take(&self->pool, stream_now_ms() + self->cfg.timeout_ms);
        if (!st->open)
            return sender_fail(self, STREAM_ERR_NOMEM,
                               "no chunk buffer came free within %d ms", self->cfg.timeout_ms);
        st->fill = 0;
    }
    return 0;
}

static inline uint8_t *cursor(const sender_stream_t *st)
{
    return st->open + STREAM_HEADER_SIZE + st->fill;
}

static int check_ready(const stream_sender_t *self)
{
    switch (self->state) {
    case SENDER_READY:    return 0;
    case SENDER_FAILED:   return self->failure.code;
    case SENDER_FINISHED: return STREAM_ERR_CLOSED;
    default:              return STREAM_ERR_INVALID;
    }
}

static int add_pages(stream_sender_t *self, const uint8_t *memory_base,
                     const uint64_t *page_indices, size_t count)
{
    bool gather = stream_key_can_gather(&self->session.send[0]);
    int rc;
    for (size_t i = 0; i < count; i++) {
        uint64_t index = page_indices[i];
        uint32_t j = stream_for_page(index, self->stream_count);
        if ((rc = make_room(self, j, STREAM_PAGE_ENTRY_SIZE)))
            return rc;
        sender_stream_t *st = &self->streams[j];
        const uint8_t *page = memory_base + index * STREAM_PAGE_SIZE;
        if (stream_page_is_zero(page)) {
            st->fill += stream_put_zero(cursor(st), index);
            self->stats.zero_pages++;
        } else if (gather) {
            st->fill += stream_put_page_tag(cursor(st), index);
            st->noted[st->noted_count++] = (noted_page_t){ .at = st->fill, .page = page };
            st->fill += STREAM_PAGE_SIZE;
        } else {
            st->fill += stream_put_page(cursor(st), index, page);
        }
        self->stats.pages++;
        self->stats.page_bytes += STREAM_PAGE_SIZE;
    }
    return 0;
}

int stream_send_pages(stream_sender_t *self, const uint8_t *memory_base,
                      const uint64_t *page_indices, size_t count)
{
    int rc = check_ready(self);
    if (rc)
        return rc;
    for (size_t i = 0; i < count; i++)
        if (page_indices[i] > STREAM_PAGE_INDEX_MAX)
            return STREAM_ERR_INVALID;
    rc = add_pages(self, memory_base, page_indices, count);
    copy_noted_pages(self);
    return rc;
}

int stream_flush(stream_sender_t *self)
{
    int rc = check_ready(self);
    for (uint32_t j = 0; j < self->stream_count && rc == 0; j++)
        rc = seal_and_send(self, j);
    return rc;
}

/* A record rides on stream 0; the other streams carry a barrier at the same
 * point, and the receiver hands the record out only when every stream has
 * reached it. Flushing all streams right away guarantees the receiver can
 * always get there (no stream waits on an unsent barrier). */
static int send_record(stream_sender_t *self, uint8_t type, const void *data, size_t len)
{
    int rc = make_room(self, 0, stream_record_entry_size((uint32_t)len));
    if (rc)
        return rc;
    sender_stream_t *st = &self->streams[0];
    st->fill += stream_put_record(cursor(st), type, data, (uint32_t)len);
    for (uint32_t j = 1; j < self->stream_count; j++) {
        if ((rc = make_room(self, j, STREAM_ENTRY_TAG_SIZE)))
            return rc;
        self->streams[j].fill += stream_put_barrier(cursor(&self->streams[j]));
    }
    self->stats.records++;
    return stream_flush(self);
}

int stream_send_record(stream_sender_t *self, uint8_t type, const void *data, size_t len)
{
    int rc = check_ready(self);
    if (rc)
        return rc;
    if (type == 0 || type == STREAM_RECORD_DONE || (len && !data)
        || len > self->chunk_bytes - 2 * STREAM_ENTRY_TAG_SIZE)
        return STREAM_ERR_INVALID;
    return send_record(self, type, data, len);
}

/* Waits until every chunk sent so far has been acknowledged. */
static int wait_consumed(stream_sender_t *self, int timeout_ms, const char *what)
{
    int64_t deadline = stream_now_ms() + timeout_ms;
    for (uint32_t j = 0; j < self->stream_count; j++) {
        while (unacknowledged(&self->streams[j]) > 0) {
            int rc = pump_acks(self, deadline);
            if (rc == STREAM_ERR_TIMEOUT)
                return sender_fail(self, rc, "the receiver did not confirm %s within %d ms",
                                   what, timeout_ms);
            if (rc)
                return rc;
        }
    }
    return 0;
}

int stream_sender_drain(stream_sender_t *self, int timeout_ms)
{
    int rc = stream_flush(self);
    return rc ? rc : wait_consumed(self, timeout_ms, "the chunks in flight");
}

int stream_sender_finish(stream_sender_t *self, int timeout_ms)
{
    int rc = check_ready(self);
    if (rc)
        return rc;
    if ((rc = send_record(self, STREAM_RECORD_DONE, NULL, 0))
        || (rc = wait_consumed(self, timeout_ms, "the end of the stream")))
        return rc;
    self->state = SENDER_FINISHED;
    return 0;
}

int stream_sender_next_reply(stream_sender_t *self, int timeout_ms, stream_reply_t *reply)
{
    if (self->state == SENDER_FAILED)
        return self->failure.code;
    if (self->state == SENDER_NEW || !reply)
        return STREAM_ERR_INVALID;
    free(self->reply_handed_out);
    self->reply_handed_out = NULL;
    int64_t deadline = stream_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    while (self->reply_count == 0) {
        int rc = pump_acks(self, deadline);
        if (rc == STREAM_ERR_TIMEOUT && self->reply_count == 0)
            return rc;
        if (rc && rc != STREAM_ERR_TIMEOUT)
            return rc;
    }
    queued_reply_t *next = &self->replies[self->reply_head];
    self->reply_head = (self->reply_head + 1) % REPLY_QUEUE;
    self->reply_count--;
    self->reply_handed_out = next->data;
    *reply = (stream_reply_t){ .type = next->type, .data = next->data, .len = next->len };
    return 0;
}

stream_stats_t stream_sender_stats(const stream_sender_t *self)
{
    return self->stats;
}

const char *stream_sender_cipher(const stream_sender_t *self)
{
    return self->state == SENDER_NEW ? "none" : stream_cipher_name(self->session.cipher);
}

uint32_t stream_sender_streams(const stream_sender_t *self)
{
    return self->stream_count;
}

const char *stream_sender_error(const stream_sender_t *self)
{
    return self->failure.text;
}
