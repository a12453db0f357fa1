/* stream_receiver.c - the destination end of the migration stream.
 *
 * One ZeroMQ ROUTER socket bound on the chosen address. The first message
 * must be the expected sender's HELLO; then every parallel stream's
 * connection announces itself with a JOIN sealed under that stream's key.
 * A DATA chunk is checked as soon as it arrives (its seq must be the next
 * one of its stream, its tag must verify) and queued; at most `window`
 * chunks per stream are held. Chunks are consumed entry by entry: pages go
 * straight into destination memory, a record waits until every stream has
 * reached the matching barrier. A consumed chunk is acknowledged, which
 * opens the sender's window.
 *
 * Scratch memory (a live migration's new VM, thrown away if the stream
 * fails) saves a pass over every byte with AES-256-GCM: a chunk is then
 * queued still sealed and opened as it is consumed, each page decrypted
 * from the chunk straight into its place in memory instead of decrypted in
 * place and copied. Its tag is checked at the end of the chunk, or as soon
 * as a record, a barrier or anything malformed turns up: nothing but pages
 * is ever used before its chunk has verified. */
#include "migration/stream.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/log.h"
#include "migration/stream_crypto.h"
#include "migration/stream_internal.h"
#include "migration/stream_wire.h"

#define ROUTING_ID_MAX 256

typedef struct {
    uint8_t routing_id[ROUTING_ID_MAX];
    size_t routing_id_len;
    bool joined;
    uint64_t expected_seq;           /* next DATA seq */
    uint64_t next_ack_seq;
    zmq_msg_t queue[STREAM_MAX_WINDOW];   /* checked chunks, in seq order */
    bool queue_sealed[STREAM_MAX_WINDOW]; /* still sealed (scratch memory) */
    uint32_t queue_head, queue_count;
    zmq_msg_t current;               /* the chunk being consumed */
    bool has_current;
    uint64_t current_seq;
    stream_body_reader_t reader;
    bool sealed;                     /* current is being opened as it is read */
    size_t opened;                   /* body bytes of current opened so far */
    bool parked;                     /* at a RECORD (stream 0) or BARRIER */
    stream_entry_t record;           /* stream 0's parked record */
} receiver_stream_t;

typedef enum {
    RECEIVER_WAIT_HELLO,
    RECEIVER_JOINING,
    RECEIVER_READY,
    RECEIVER_DONE,
    RECEIVER_FAILED,
} receiver_state_t;

struct stream_receiver {
    stream_receiver_config_t cfg;
    char *bind_endpoint;
    char endpoint[256];
    char peer_address[64];
    void *ctx;
    void *router;
    receiver_state_t state;
    uint32_t stream_count;
    uint32_t chunk_bytes;
    uint32_t window;
    uint32_t joined;
    stream_session_t session;
    receiver_stream_t streams[STREAM_MAX_STREAMS];
    uint8_t *record_copy;            /* the record handed out last */
    uint64_t page_limit;
    bool memory_scratch;             /* see the top of this file */
    stream_stats_t stats;
    stream_failure_t failure;
};

static int receiver_fail(stream_receiver_t *self, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int receiver_fail(stream_receiver_t *self, int code, const char *fmt, ...)
{
    char text[sizeof self->failure.text];
    va_list args;
    va_start(args, fmt);
    vsnprintf(text, sizeof text, fmt, args);
    va_end(args);
    self->state = RECEIVER_FAILED;
    return stream_fail(&self->failure, "stream receiver", code, "%s", text);
}

static bool config_valid(const stream_receiver_config_t *cfg, const char **why)
{
    if (!cfg->bind_endpoint || strncmp(cfg->bind_endpoint, "tcp://", 6) != 0)
        *why = "bind_endpoint must be tcp://ADDRESS:PORT";
    else if (cfg->memory_bytes % STREAM_PAGE_SIZE != 0 || (cfg->memory_bytes && !cfg->memory))
        *why = "memory must be a whole number of pages";
    else if (cfg->max_streams < 1 || cfg->max_streams > STREAM_MAX_STREAMS)
        *why = "max_streams out of range 1..8";
    else if (cfg->max_chunk_bytes < STREAM_MIN_CHUNK_BYTES
             || cfg->max_chunk_bytes > STREAM_MAX_CHUNK_BYTES)
        *why = "max_chunk_bytes out of range 64 KiB..64 MiB";
    else if (cfg->max_window < 1 || cfg->max_window > STREAM_MAX_WINDOW)
        *why = "max_window out of range 1..64";
    else if (cfg->cipher != STREAM_CIPHER_AUTO && !stream_cipher_available(cfg->cipher))
        *why = "the forced cipher is not available on this CPU";
    else if (!stream_identity_valid(&cfg->identity))
        *why = "identity secret key does not match its public key";
    else
        return true;
    return false;
}

stream_receiver_t *stream_receiver_new(const stream_receiver_config_t *cfg)
{
    const char *why = NULL;
    if (!stream_crypto_init()) {
        log_error("migration", "stream receiver: libsodium failed to initialise");
        return NULL;
    }
    if (!cfg || !config_valid(cfg, &why)) {
        log_error("migration", "stream receiver: invalid config: %s", cfg ? why : "none given");
        return NULL;
    }
    stream_receiver_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = *cfg;
    self->bind_endpoint = strdup(cfg->bind_endpoint);
    self->cfg.bind_endpoint = self->bind_endpoint;
    self->page_limit = cfg->memory_bytes / STREAM_PAGE_SIZE;
    self->memory_scratch = cfg->memory_scratch;
    self->ctx = zmq_ctx_new();
    self->router = self->ctx ? zmq_socket(self->ctx, ZMQ_ROUTER) : NULL;
    if (!self->bind_endpoint || !self->router) {
        stream_receiver_destroy(&self);
        return NULL;
    }
    /* ZeroMQ drops any connection that sends a message above this size
     * before it is ever buffered in full. */
    int64_t max_message = STREAM_HEADER_SIZE + (int64_t)cfg->max_chunk_bytes + STREAM_TAG_SIZE;
    int hwm = (int)cfg->max_window + 4;
    int mandatory = 1;
    int linger = 1000;   /* let the last acknowledgements leave */
    zmq_setsockopt(self->router, ZMQ_MAXMSGSIZE, &max_message, sizeof max_message);
    zmq_setsockopt(self->router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->router, ZMQ_ROUTER_MANDATORY, &mandatory, sizeof mandatory);
    zmq_setsockopt(self->router, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(self->router, self->bind_endpoint) != 0) {
        log_error("migration", "stream receiver: cannot bind %s: %s", self->bind_endpoint,
                  zmq_strerror(zmq_errno()));
        stream_receiver_destroy(&self);
        return NULL;
    }
    size_t size = sizeof self->endpoint;
    if (zmq_getsockopt(self->router, ZMQ_LAST_ENDPOINT, self->endpoint, &size) != 0)
        snprintf(self->endpoint, sizeof self->endpoint, "%s", self->bind_endpoint);
    for (int j = 0; j < STREAM_MAX_STREAMS; j++) {
        for (int q = 0; q < STREAM_MAX_WINDOW; q++)
            zmq_msg_init(&self->streams[j].queue[q]);
        zmq_msg_init(&self->streams[j].current);
    }
    return self;
}

void stream_receiver_destroy(stream_receiver_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    stream_receiver_t *self = *self_p;
    if (self->router) {
        for (int j = 0; j < STREAM_MAX_STREAMS; j++) {
            for (int q = 0; q < STREAM_MAX_WINDOW; q++)
                zmq_msg_close(&self->streams[j].queue[q]);
            zmq_msg_close(&self->streams[j].current);
        }
        zmq_close(self->router);
    }
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    stream_session_wipe(&self->session);
    sodium_memzero(&self->cfg.identity, sizeof self->cfg.identity);
    free(self->record_copy);
    free(self->bind_endpoint);
    free(self);
    *self_p = NULL;
}

const char *stream_receiver_endpoint(const stream_receiver_t *self)
{
    return self->endpoint;
}

/* --- sending ------------------------------------------------------------------ */

/* 0, or -1 if ZeroMQ could not take the message (peer gone, queue full). */
static int send_to(stream_receiver_t *self, const uint8_t *routing_id, size_t routing_id_len,
                   const void *data, size_t len)
{
    if (zmq_send(self->router, routing_id, routing_id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0
        || zmq_send(self->router, data, len, ZMQ_DONTWAIT) < 0) {
        log_debug("migration", "stream receiver: message not sent: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    self->stats.wire_bytes += len;
    return 0;
}

static void send_ack(stream_receiver_t *self, uint32_t j, uint64_t consumed)
{
    receiver_stream_t *st = &self->streams[j];
    uint8_t message[STREAM_HEADER_SIZE + STREAM_ACK_BODY_SIZE + STREAM_TAG_SIZE];
    uint64_t seq = st->next_ack_seq++;
    stream_header_encode(&(stream_header_t){ .type = STREAM_MSG_ACK, .stream = (uint16_t)j,
                                             .body_len = STREAM_ACK_BODY_SIZE, .seq = seq },
                         message);
    uint8_t *body = message + STREAM_HEADER_SIZE;
    stream_put_u64(body, consumed);
    if (stream_seal(&self->session.send[j], seq, message, STREAM_HEADER_SIZE, body,
                    STREAM_ACK_BODY_SIZE, body + STREAM_ACK_BODY_SIZE) != 0) {
        receiver_fail(self, STREAM_ERR_NOMEM, "stream %u: cannot seal an acknowledgement", j);
        return;
    }
    send_to(self, st->routing_id, st->routing_id_len, message, sizeof message);
}

/* A REPLY on stream 0, in the seq space of its ACKs. */
static int send_reply(stream_receiver_t *self, uint8_t type, const void *data, size_t len)
{
    receiver_stream_t *st = &self->streams[0];
    size_t body_len = 1 + len;
    size_t size = STREAM_HEADER_SIZE + body_len + STREAM_TAG_SIZE;
    uint8_t *message = malloc(size);
    if (!message)
        return STREAM_ERR_NOMEM;
    uint64_t seq = st->next_ack_seq++;
    stream_header_encode(&(stream_header_t){ .type = STREAM_MSG_REPLY, .stream = 0,
                                             .body_len = (uint32_t)body_len, .seq = seq },
                         message);
    uint8_t *body = message + STREAM_HEADER_SIZE;
    body[0] = type;
    if (len)
        memcpy(body + 1, data, len);
    if (stream_seal(&self->session.send[0], seq, message, STREAM_HEADER_SIZE, body, body_len,
                    body + body_len) != 0) {
        free(message);
        return STREAM_ERR_NOMEM;
    }
    int rc = send_to(self, st->routing_id, st->routing_id_len, message, size);
    free(message);
    return rc == 0 ? 0 : STREAM_ERR_IO;
}

/* --- handshake ---------------------------------------------------------------- */

static void reject(stream_receiver_t *self, zmq_msg_t *routing_id, uint8_t reason)
{
    uint8_t message[STREAM_REJECT_SIZE];
    stream_reject_encode(reason, message);
    send_to(self, zmq_msg_data(routing_id), zmq_msg_size(routing_id), message, sizeof message);
}

static int choose_cipher(const stream_receiver_t *self, uint8_t offered)
{
    stream_cipher_t wanted = self->cfg.cipher;
    if (wanted != STREAM_CIPHER_AUTO)
        return (offered & (1 << wanted)) ? (int)wanted : -1;
    if ((offered & (1 << STREAM_CIPHER_AES256GCM)) && stream_cipher_available(STREAM_CIPHER_AES256GCM))
        return STREAM_CIPHER_AES256GCM;
    if (offered & (1 << STREAM_CIPHER_XCHACHA20POLY1305))
        return STREAM_CIPHER_XCHACHA20POLY1305;
    return -1;
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

static int on_hello(stream_receiver_t *self, zmq_msg_t *routing_id, zmq_msg_t *payload)
{
    const char *address = zmq_msg_gets(payload, "Peer-Address");
    if (!address)
        address = zmq_msg_gets(routing_id, "Peer-Address");
    snprintf(self->peer_address, sizeof self->peer_address, "%s", address ? address : "");
    const char *from = address ? address : "an unknown address";
    const uint8_t *hello_bytes = zmq_msg_data(payload);
    size_t hello_len = zmq_msg_size(payload);
    stream_hello_t hello;
    const char *why = NULL;

    if (stream_hello_decode(hello_bytes, hello_len, &hello, &why) != 0) {
        reject(self, routing_id, STREAM_REJECT_MALFORMED);
        return receiver_fail(self, STREAM_ERR_PROTOCOL, "malformed HELLO from %s: %s", from, why);
    }
    if (sodium_memcmp(hello.identity, self->cfg.peer_public_key, STREAM_KEY_BYTES) != 0) {
        char got[41] = "?", want[41] = "?";
        zmq_z85_encode(got, hello.identity, STREAM_KEY_BYTES);
        zmq_z85_encode(want, self->cfg.peer_public_key, STREAM_KEY_BYTES);
        reject(self, routing_id, STREAM_REJECT_IDENTITY);
        return receiver_fail(self, STREAM_ERR_AUTH, "HELLO from %s names identity key %s, "
                             "but the expected sender is %s", from, got, want);
    }
    uint8_t static_key[32];
    if (stream_static_key(static_key, &self->cfg.identity, self->cfg.peer_public_key) != 0) {
        reject(self, routing_id, STREAM_REJECT_AUTH);
        return receiver_fail(self, STREAM_ERR_AUTH, "the expected sender's key is unusable");
    }
    int rc = 0;
    uint8_t ephemeral_secret[crypto_kx_SECRETKEYBYTES];
    if (!stream_mac_verify(hello.mac, static_key, STREAM_LABEL_HELLO, hello_bytes,
                           STREAM_HELLO_MAC_AT, NULL, 0)) {
        reject(self, routing_id, STREAM_REJECT_AUTH);
        rc = receiver_fail(self, STREAM_ERR_AUTH, "HELLO from %s failed authentication: the "
                           "sender does not hold the expected identity key, or expects "
                           "another receiver key", from);
        goto out;
    }
    if (sodium_memcmp(hello.migration_id, self->cfg.migration_id, STREAM_MIGRATION_ID_BYTES) != 0) {
        reject(self, routing_id, STREAM_REJECT_MIGRATION);
        rc = receiver_fail(self, STREAM_ERR_AUTH, "HELLO from %s is for another migration", from);
        goto out;
    }
    int cipher = choose_cipher(self, hello.ciphers);
    if (cipher < 0) {
        reject(self, routing_id, STREAM_REJECT_PARAMETERS);
        rc = receiver_fail(self, STREAM_ERR_PROTOCOL, "HELLO from %s offers no cipher we "
                           "accept", from);
        goto out;
    }
    stream_welcome_t welcome = {
        .streams = (uint16_t)min_u32(hello.streams, self->cfg.max_streams),
        .chunk_bytes = min_u32(hello.chunk_bytes, self->cfg.max_chunk_bytes),
        .window = min_u32(hello.window, self->cfg.max_window),
        .cipher = (uint8_t)cipher,
    };
    memcpy(welcome.identity, self->cfg.identity.public_key, STREAM_KEY_BYTES);
    crypto_kx_keypair(welcome.ephemeral, ephemeral_secret);
    uint8_t welcome_bytes[STREAM_WELCOME_SIZE];
    stream_welcome_encode(&welcome, welcome_bytes);
    stream_mac(welcome_bytes + STREAM_WELCOME_MAC_AT, static_key, STREAM_LABEL_WELCOME,
               hello_bytes, STREAM_HELLO_SIZE, welcome_bytes, STREAM_WELCOME_MAC_AT);
    int derived = stream_session_derive(&self->session, false, (stream_cipher_t)cipher,
                                        welcome.streams, welcome.ephemeral, ephemeral_secret,
                                        hello.ephemeral, static_key, hello_bytes, hello_len,
                                        welcome_bytes, sizeof welcome_bytes);
    if (derived == -2) {
        rc = receiver_fail(self, STREAM_ERR_NOMEM, "no memory for the session keys");
        goto out;
    }
    if (derived != 0) {
        reject(self, routing_id, STREAM_REJECT_AUTH);
        rc = receiver_fail(self, STREAM_ERR_AUTH, "HELLO from %s carries an unusable "
                           "ephemeral key", from);
        goto out;
    }
    self->record_copy = malloc(welcome.chunk_bytes);
    if (!self->record_copy) {
        rc = receiver_fail(self, STREAM_ERR_NOMEM, "no memory for the record buffer");
        goto out;
    }
    self->stream_count = welcome.streams;
    self->chunk_bytes = welcome.chunk_bytes;
    self->window = welcome.window;
    self->stats.wire_bytes += hello_len;
    send_to(self, zmq_msg_data(routing_id), zmq_msg_size(routing_id), welcome_bytes,
            sizeof welcome_bytes);
    self->state = RECEIVER_JOINING;
    log_info("migration", "stream receiver: session with %s: %u stream(s), %s, %u-byte chunks, "
             "window %u", from, self->stream_count, stream_cipher_name(self->session.cipher),
             self->chunk_bytes, self->window);
out:
    sodium_memzero(static_key, sizeof static_key);
    sodium_memzero(ephemeral_secret, sizeof ephemeral_secret);
    return rc;
}

/* A JOIN binds a new connection to stream j. Anything else from a
 * connection we do not know is ignored: it cannot be part of this session,
 * and a stray peer must not be able to end it. */
static void on_unknown(stream_receiver_t *self, zmq_msg_t *routing_id, zmq_msg_t *payload)
{
    uint8_t *data = zmq_msg_data(payload);
    size_t len = zmq_msg_size(payload);
    stream_header_t header;
    const char *why = "not a JOIN";
    if (self->state == RECEIVER_JOINING || self->state == RECEIVER_READY) {
        if (stream_header_decode(data, len, 0, &header, &why) == 0) {
            receiver_stream_t *st = header.stream < self->stream_count
                                        ? &self->streams[header.stream] : NULL;
            if (header.type != STREAM_MSG_JOIN || header.seq != 0 || !st)
                why = "not a JOIN for a stream of this session";
            else if (st->joined)
                why = "a second JOIN for the same stream (replayed?)";
            else if (zmq_msg_size(routing_id) > ROUTING_ID_MAX)
                why = "routing id too long";
            else if (stream_open(&self->session.recv[header.stream], 0, data, STREAM_HEADER_SIZE,
                                 data + STREAM_HEADER_SIZE, 0, data + STREAM_HEADER_SIZE) != 0)
                why = "JOIN failed authentication";
            else {
                st->joined = true;
                st->expected_seq = 1;
                st->routing_id_len = zmq_msg_size(routing_id);
                memcpy(st->routing_id, zmq_msg_data(routing_id), st->routing_id_len);
                self->stats.wire_bytes += len;
                if (++self->joined == self->stream_count)
                    self->state = RECEIVER_READY;
                return;
            }
        }
    }
    const char *address = zmq_msg_gets(payload, "Peer-Address");
    log_warn("migration", "stream receiver: ignoring a %zu-byte message from %s: %s", len,
             address ? address : "an unknown connection", why);
    self->stats.dropped++;
}

/* --- data ----------------------------------------------------------------------- */

static int tampered(stream_receiver_t *self, uint32_t j, uint64_t seq)
{
    return receiver_fail(self, STREAM_ERR_TAMPERED, "stream %u: chunk seq %llu failed "
                         "authentication (tampered in transit, or not from the sender)", j,
                         (unsigned long long)seq);
}

/* Opens a whole DATA message (header, body, tag) in place. */
static int open_in_place(stream_receiver_t *self, uint32_t j, uint64_t seq, uint8_t *message)
{
    uint32_t body_len = stream_get_u32(message + 4);
    uint8_t *body = message + STREAM_HEADER_SIZE;
    if (stream_open(&self->session.recv[j], seq, message, STREAM_HEADER_SIZE, body, body_len,
                    body + body_len) != 0)
        return tampered(self, j, seq);
    return 0;
}

static int on_data(stream_receiver_t *self, uint32_t j, zmq_msg_t *payload)
{
    receiver_stream_t *st = &self->streams[j];
    uint8_t *data = zmq_msg_data(payload);
    size_t len = zmq_msg_size(payload);
    stream_header_t header;
    const char *why = NULL;
    if (self->state == RECEIVER_DONE)
        return receiver_fail(self, STREAM_ERR_PROTOCOL, "stream %u: data after DONE", j);
    if (stream_header_decode(data, len, self->chunk_bytes, &header, &why) != 0)
        return receiver_fail(self, STREAM_ERR_PROTOCOL, "stream %u: malformed chunk after seq "
                             "%llu: %s", j, (unsigned long long)st->expected_seq - 1, why);
    if (header.type != STREAM_MSG_DATA || header.stream != j)
        return receiver_fail(self, STREAM_ERR_PROTOCOL, "stream %u: unexpected message type %u "
                             "for stream %u", j, header.type, header.stream);
    if (header.seq != st->expected_seq)
        return receiver_fail(self, STREAM_ERR_SEQUENCE, "stream %u: chunk seq %llu where %llu "
                             "was expected (replayed, reordered or lost chunk)", j,
                             (unsigned long long)header.seq, (unsigned long long)st->expected_seq);
    bool sealed = self->memory_scratch && stream_key_can_gather(&self->session.recv[j]);
    if (!sealed && open_in_place(self, j, header.seq, data) != 0)
        return self->failure.code;
    if (st->queue_count + st->has_current >= self->window)
        return receiver_fail(self, STREAM_ERR_PROTOCOL, "stream %u: more than %u chunks "
                             "unacknowledged", j, self->window);
    st->expected_seq++;
    uint32_t slot = (st->queue_head + st->queue_count) % STREAM_MAX_WINDOW;
    zmq_msg_move(&st->queue[slot], payload);
    st->queue_sealed[slot] = sealed;
    st->queue_count++;
    self->stats.chunks++;
    self->stats.wire_bytes += len;
    return 0;
}

static int find_stream(const stream_receiver_t *self, zmq_msg_t *routing_id)
{
    size_t len = zmq_msg_size(routing_id);
    for (uint32_t j = 0; j < self->stream_count; j++) {
        const receiver_stream_t *st = &self->streams[j];
        if (st->joined && st->routing_id_len == len
            && memcmp(st->routing_id, zmq_msg_data(routing_id), len) == 0)
            return (int)j;
    }
    return -1;
}

/* Takes one message off the socket: 1 if there was one, 0 if not, or a
 * failure. */
static int receive_one(stream_receiver_t *self)
{
    zmq_msg_t routing_id, payload;
    zmq_msg_init(&routing_id);
    zmq_msg_init(&payload);
    if (zmq_msg_recv(&routing_id, self->router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&routing_id);
        zmq_msg_close(&payload);
        return 0;
    }
    int rc = 1;
    if (!zmq_msg_more(&routing_id) || zmq_msg_recv(&payload, self->router, 0) < 0) {
        self->stats.dropped++;
        goto out;
    }
    if (zmq_msg_more(&payload)) {   /* we never send multipart: drop it all */
        while (zmq_msg_more(&payload) && zmq_msg_recv(&payload, self->router, 0) >= 0)
            ;
        self->stats.dropped++;
        goto out;
    }
    int j = find_stream(self, &routing_id);
    if (j >= 0)
        rc = on_data(self, (uint32_t)j, &payload);
    else if (self->state == RECEIVER_WAIT_HELLO)
        rc = on_hello(self, &routing_id, &payload);
    else
        on_unknown(self, &routing_id, &payload);
    if (rc == 0)
        rc = 1;
out:
    zmq_msg_close(&routing_id);
    zmq_msg_close(&payload);
    return rc;
}

/* Waits up to the deadline for a message and takes one. One at a time, so
 * that each chunk is consumed and acknowledged before the next is opened:
 * the sender's window reopens while it seals the next chunks, instead of
 * after a whole batch (which would make the two ends take turns). */
static int pump(stream_receiver_t *self, int64_t deadline_ms)
{
    int rc = receive_one(self);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    zmq_pollitem_t item = { .socket = self->router, .events = ZMQ_POLLIN };
    int ready = zmq_poll(&item, 1, stream_ms_until(deadline_ms));
    if (ready < 0)
        return receiver_fail(self, STREAM_ERR_IO, "poll failed: %s", zmq_strerror(zmq_errno()));
    rc = ready > 0 ? receive_one(self) : 0;
    return rc < 0 ? rc : 0;
}

int stream_receiver_accept(stream_receiver_t *self, int timeout_ms)
{
    int64_t deadline = stream_now_ms() + timeout_ms;
    while (self->state == RECEIVER_WAIT_HELLO || self->state == RECEIVER_JOINING) {
        bool last_round = stream_ms_until(deadline) == 0;
        int rc = pump(self, deadline);
        if (rc)
            return rc;
        if (last_round && (self->state == RECEIVER_WAIT_HELLO || self->state == RECEIVER_JOINING))
            return STREAM_ERR_TIMEOUT;
    }
    return self->state == RECEIVER_FAILED ? self->failure.code : 0;
}

/* --- consuming chunks ------------------------------------------------------------ */

static void release_current(stream_receiver_t *self, uint32_t j)
{
    receiver_stream_t *st = &self->streams[j];
    send_ack(self, j, st->current_seq);
    zmq_msg_close(&st->current);
    zmq_msg_init(&st->current);
    st->has_current = false;
}

/* 1 if stream j has a chunk to read now, 0 if none is queued, or a failure. */
static int take_next_chunk(stream_receiver_t *self, uint32_t j)
{
    receiver_stream_t *st = &self->streams[j];
    if (st->queue_count == 0)
        return 0;
    st->sealed = st->queue_sealed[st->queue_head];
    zmq_msg_move(&st->current, &st->queue[st->queue_head]);
    st->queue_head = (st->queue_head + 1) % STREAM_MAX_WINDOW;
    st->queue_count--;
    st->has_current = true;
    st->current_seq++;   /* chunks are queued in seq order, from 1 */
    st->opened = 0;
    const uint8_t *data = zmq_msg_data(&st->current);
    uint32_t body_len = stream_get_u32(data + 4);
    stream_body_reader_init(&st->reader, data + STREAM_HEADER_SIZE, body_len, self->page_limit);
    if (st->sealed && stream_open_begin(&self->session.recv[j], st->current_seq, data,
                                        STREAM_HEADER_SIZE) != 0)
        return receiver_fail(self, STREAM_ERR_NOMEM, "stream %u: cannot start opening chunk "
                             "seq %llu", j, (unsigned long long)st->current_seq);
    return 1;
}

/* The current chunk's body from `opened` on, writable (ZeroMQ's buffer). */
static uint8_t *unopened(receiver_stream_t *st)
{
    return (uint8_t *)zmq_msg_data(&st->current) + STREAM_HEADER_SIZE + st->opened;
}

/* Opens the rest of a sealed chunk in place and checks its tag; from then on
 * it is read like any opened chunk. */
static int finish_sealed(stream_receiver_t *self, uint32_t j)
{
    receiver_stream_t *st = &self->streams[j];
    const stream_key_t *key = &self->session.recv[j];
    uint8_t *rest = unopened(st);
    size_t left = st->reader.len - st->opened;
    st->sealed = false;
    if (stream_open_piece(key, rest, rest, left) != 0 || stream_open_end(key, rest + left) != 0)
        return tampered(self, j, st->current_seq);
    st->opened = st->reader.len;
    return 0;
}

/* Before the reader looks at the next entry of a sealed chunk: opens its
 * tag word. A page's data is left for apply_page(); anything but a page
 * (a record, a barrier, the end of the chunk, garbage) first has the whole
 * chunk verified. */
static int open_next_entry(stream_receiver_t *self, uint32_t j)
{
    receiver_stream_t *st = &self->streams[j];
    if (st->reader.len - st->opened >= STREAM_ENTRY_TAG_SIZE) {
        uint8_t *tag_word = unopened(st);
        if (stream_open_piece(&self->session.recv[j], tag_word, tag_word,
                              STREAM_ENTRY_TAG_SIZE) != 0)
            return tampered(self, j, st->current_seq);
        st->opened += STREAM_ENTRY_TAG_SIZE;
        if (tag_word[0] == STREAM_ENTRY_PAGE || tag_word[0] == STREAM_ENTRY_ZERO)
            return 0;
    }
    return finish_sealed(self, j);
}

static int apply_page(stream_receiver_t *self, uint32_t j, const stream_entry_t *entry)
{
    receiver_stream_t *st = &self->streams[j];
    uint8_t *page = self->cfg.memory + entry->page * STREAM_PAGE_SIZE;
    if (entry->kind == STREAM_ENTRY_PAGE && st->sealed) {
        if (stream_open_piece(&self->session.recv[j], page, entry->data, STREAM_PAGE_SIZE) != 0)
            return tampered(self, j, st->current_seq);
        st->opened += STREAM_PAGE_SIZE;
    } else if (entry->kind == STREAM_ENTRY_PAGE) {
        memcpy(page, entry->data, STREAM_PAGE_SIZE);
    } else if (!stream_page_is_zero(page)) {   /* reading spares untouched memory */
        memset(page, 0, STREAM_PAGE_SIZE);
    }
    return 0;
}

/* Consumes stream j up to its next record or barrier, or until it runs dry. */
static int consume_stream(stream_receiver_t *self, uint32_t j, stream_event_t *pages)
{
    receiver_stream_t *st = &self->streams[j];
    while (!st->parked) {
        int rc = st->has_current ? 1 : take_next_chunk(self, j);
        if (rc <= 0)
            return rc;
        if (st->sealed && (rc = open_next_entry(self, j)) != 0)
            return rc;
        stream_entry_t entry;
        const char *why = NULL;
        rc = stream_body_next(&st->reader, &entry, &why);
        if (rc < 0 && st->sealed && finish_sealed(self, j) != 0)
            return self->failure.code;   /* garbage because tampered: say so */
        if (rc < 0)
            return receiver_fail(self, STREAM_ERR_PROTOCOL, "stream %u: chunk seq %llu, offset "
                                 "%zu: %s", j, (unsigned long long)st->current_seq,
                                 st->reader.offset, why);
        if (rc == 0) {
            release_current(self, j);
            continue;
        }
        switch (entry.kind) {
        case STREAM_ENTRY_PAGE:
        case STREAM_ENTRY_ZERO:
            if ((rc = apply_page(self, j, &entry)) != 0)
                return rc;
            pages->pages++;
            pages->zero_pages += entry.kind == STREAM_ENTRY_ZERO;
            break;
        case STREAM_ENTRY_RECORD:
        case STREAM_ENTRY_BARRIER:
            if ((entry.kind == STREAM_ENTRY_RECORD) != (j == 0))
                return receiver_fail(self, STREAM_ERR_PROTOCOL, "stream %u: chunk seq %llu "
                                     "carries a %s, which belongs on stream %s", j,
                                     (unsigned long long)st->current_seq,
                                     j == 0 ? "barrier" : "record", j == 0 ? "1 and up" : "0");
            st->parked = true;
            st->record = entry;
            break;
        }
    }
    return 0;
}

/* Every stream stands at the same barrier: hand out stream 0's record. */
static void pass_barrier(stream_receiver_t *self, stream_event_t *event)
{
    const stream_entry_t *record = &self->streams[0].record;
    memcpy(self->record_copy, record->data, record->len);
    *event = (stream_event_t){ .type = STREAM_EVENT_RECORD, .record_type = record->record_type,
                               .data = self->record_copy, .len = record->len };
    self->stats.records++;
    for (uint32_t j = 0; j < self->stream_count; j++) {
        receiver_stream_t *st = &self->streams[j];
        st->parked = false;
        /* Acknowledge a finished chunk now: after DONE nobody calls again. */
        if (st->has_current && st->reader.offset == st->reader.len)
            release_current(self, j);
    }
    if (record->record_type == STREAM_RECORD_DONE)
        self->state = RECEIVER_DONE;
}

/* 1 if *event was produced, 0 if more input is needed, or a failure. */
static int produce(stream_receiver_t *self, stream_event_t *event)
{
    stream_event_t pages = { .type = STREAM_EVENT_PAGES };
    uint32_t parked = 0;
    for (uint32_t j = 0; j < self->stream_count; j++) {
        int rc = consume_stream(self, j, &pages);
        if (rc)
            return rc;
        parked += self->streams[j].parked;
    }
    if (pages.pages) {
        self->stats.pages += pages.pages;
        self->stats.zero_pages += pages.zero_pages;
        self->stats.page_bytes += pages.pages * STREAM_PAGE_SIZE;
        *event = pages;
        return 1;
    }
    if (parked == self->stream_count) {
        pass_barrier(self, event);
        return 1;
    }
    return 0;
}

int stream_receiver_next(stream_receiver_t *self, int timeout_ms, stream_event_t *event)
{
    switch (self->state) {
    case RECEIVER_READY:  break;
    case RECEIVER_DONE:   return STREAM_ERR_CLOSED;
    case RECEIVER_FAILED: return self->failure.code;
    default:              return STREAM_ERR_INVALID;   /* accept first */
    }
    int64_t deadline = stream_now_ms() + timeout_ms;
    for (;;) {
        int rc = produce(self, event);
        if (rc)
            return rc == 1 ? 0 : rc;
        /* Past the deadline, still take what already arrived, once. */
        bool last_round = stream_ms_until(deadline) == 0;
        if ((rc = pump(self, deadline)))
            return rc;
        if (last_round) {
            rc = produce(self, event);
            return rc == 1 ? 0 : rc < 0 ? rc : STREAM_ERR_TIMEOUT;
        }
    }
}

/* Memory that must not see unverified pages: open what is still sealed. */
static int open_all_sealed(stream_receiver_t *self)
{
    for (uint32_t j = 0; j < self->stream_count; j++) {
        receiver_stream_t *st = &self->streams[j];
        if (st->has_current && st->sealed && finish_sealed(self, j) != 0)
            return self->failure.code;
        for (uint32_t q = 0; q < st->queue_count; q++) {
            uint32_t slot = (st->queue_head + q) % STREAM_MAX_WINDOW;
            if (st->queue_sealed[slot]
                && open_in_place(self, j, st->current_seq + 1 + q, zmq_msg_data(&st->queue[slot])))
                return self->failure.code;
            st->queue_sealed[slot] = false;
        }
    }
    return 0;
}

int stream_receiver_set_memory(stream_receiver_t *self, uint8_t *memory, size_t memory_bytes,
                               bool scratch)
{
    if (self->state == RECEIVER_FAILED)
        return self->failure.code;
    if (memory_bytes % STREAM_PAGE_SIZE != 0 || (memory_bytes && !memory))
        return STREAM_ERR_INVALID;
    self->memory_scratch = scratch;
    if (!scratch && open_all_sealed(self) != 0)
        return self->failure.code;
    self->cfg.memory = memory;
    self->cfg.memory_bytes = memory_bytes;
    self->page_limit = memory_bytes / STREAM_PAGE_SIZE;
    for (uint32_t j = 0; j < STREAM_MAX_STREAMS; j++)   /* a chunk already being read */
        self->streams[j].reader.page_limit = self->page_limit;
    return 0;
}

int stream_receiver_reply(stream_receiver_t *self, uint8_t type, const void *data, size_t len)
{
    if (self->state == RECEIVER_FAILED)
        return self->failure.code;
    if (self->state != RECEIVER_READY && self->state != RECEIVER_DONE)
        return STREAM_ERR_INVALID;
    if (type == STREAM_REPLY_ABORT || len > STREAM_REPLY_MAX_BYTES || (len && !data))
        return STREAM_ERR_INVALID;
    int rc = send_reply(self, type, data, len);
    if (rc)
        return receiver_fail(self, rc, "cannot send a reply to the sender (gone?)");
    return 0;
}

int stream_receiver_abort(stream_receiver_t *self, const char *reason)
{
    if (!reason)
        reason = "";
    size_t len = strnlen(reason, 200);
    /* The sender can be told once stream 0 is joined: its key and route are known. */
    int rc = self->stream_count && self->streams[0].joined
                 ? send_reply(self, STREAM_REPLY_ABORT, reason, len) : STREAM_ERR_INVALID;
    if (self->state != RECEIVER_FAILED)
        receiver_fail(self, STREAM_ERR_CLOSED, "gave up: %.*s", (int)len, reason);
    return rc;
}

stream_stats_t stream_receiver_stats(const stream_receiver_t *self)
{
    return self->stats;
}

const char *stream_receiver_cipher(const stream_receiver_t *self)
{
    return self->stream_count ? stream_cipher_name(self->session.cipher) : "none";
}

const char *stream_receiver_peer_address(const stream_receiver_t *self)
{
    return self->peer_address;
}

const char *stream_receiver_error(const stream_receiver_t *self)
{
    return self->failure.text;
}
