/* stream.h - the encrypted memory stream of live migration.
 *
 * A sender streams guest pages and control records to a receiver over
 * plain-TCP ZeroMQ, in chunks sealed with an AEAD (AES-256-GCM where the CPU
 * has AES-NI, XChaCha20-Poly1305 otherwise) under a per-migration session
 * key. The key comes from an ephemeral X25519 key exchange (crypto_kx) that
 * both agents authenticate with their long-term identity keys (the CURVE
 * keypairs the agents already own), so a man in the middle fails the
 * handshake. Chunk nonces are counters: a replayed, reordered, missing or
 * tampered chunk aborts the stream. docs/migration.md has the protocol.
 *
 * Sender (source host):
 *
 *   stream_sender_config_t cfg;
 *   stream_sender_config_defaults(&cfg);
 *   cfg.endpoint = "tcp://198.18.0.8:7403";
 *   cfg.identity = my_keys;  memcpy(cfg.peer_public_key, dest_key, 32);
 *   memcpy(cfg.migration_id, id, 16);  cfg.streams = 2;
 *   stream_sender_t *s = stream_sender_new(&cfg);
 *   rc = stream_sender_handshake(s, 5000);
 *   rc = stream_send_pages(s, guest_memory, dirty_pages, count);
 *   rc = stream_send_record(s, STREAM_RECORD_END_OF_PASS, &pass, sizeof pass);
 *   rc = stream_sender_finish(s, 5000);       // DONE, and wait until consumed
 *   stream_sender_destroy(&s);
 *
 * Receiver (destination host):
 *
 *   stream_receiver_t *r = stream_receiver_new(&rcfg);   // binds
 *   rc = stream_receiver_accept(r, 5000);               // handshake
 *   while ((rc = stream_receiver_next(r, 1000, &event)) == 0) {
 *       if (event.type == STREAM_EVENT_RECORD && event.record_type == STREAM_RECORD_DONE)
 *           break;
 *   }
 *
 * Pages land straight in the receiver's destination memory. Control
 * records are barriers: the receiver hands a record out only after every
 * page sent before it, on every parallel stream, is in memory.
 *
 * The receiver can answer: stream_receiver_reply() sends a small sealed
 * message back (the migration protocol's accept, verify and resume
 * answers), which the sender reads with stream_sender_next_reply().
 * stream_receiver_abort() tells the sender that the receiver gives up, and
 * why: the sender's next call fails at once with STREAM_ERR_REJECTED
 * instead of waiting for a timeout.
 *
 * Every call returns 0 or a negative stream_error_t. Errors other than
 * STREAM_ERR_TIMEOUT from stream_receiver_next() are final: the object then
 * answers every call with the same error, and *_error() says what happened.
 * Neither object is thread-safe; each belongs to one thread. */
#ifndef FERRY_MIGRATION_STREAM_H
#define FERRY_MIGRATION_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STREAM_KEY_BYTES          32
#define STREAM_MIGRATION_ID_BYTES 16
#define STREAM_PAGE_SIZE          4096
#define STREAM_MAX_STREAMS        8
#define STREAM_MIN_CHUNK_BYTES    (64 * 1024)
#define STREAM_MAX_CHUNK_BYTES    (64 * 1024 * 1024)
#define STREAM_MAX_WINDOW         64
#define STREAM_REPLY_MAX_BYTES    (64 * 1024)   /* payload of one reply */
#define STREAM_REPLY_ABORT        0             /* reply type reserved for abort */

typedef enum {
    STREAM_OK = 0,
    STREAM_ERR_TIMEOUT = -1,    /* nothing happened within the timeout */
    STREAM_ERR_AUTH = -2,       /* the peer failed authentication */
    STREAM_ERR_REJECTED = -3,   /* the peer rejected our handshake */
    STREAM_ERR_TAMPERED = -4,   /* a chunk failed its authentication tag */
    STREAM_ERR_SEQUENCE = -5,   /* a chunk was replayed, reordered or lost */
    STREAM_ERR_PROTOCOL = -6,   /* a malformed or unexpected message */
    STREAM_ERR_IO = -7,         /* ZeroMQ failed */
    STREAM_ERR_INVALID = -8,    /* bad argument, config or call order */
    STREAM_ERR_CLOSED = -9,     /* the stream is finished */
    STREAM_ERR_NOMEM = -10,
} stream_error_t;

typedef enum {
    STREAM_CIPHER_AUTO = 0,               /* AES-256-GCM if available */
    STREAM_CIPHER_AES256GCM = 1,
    STREAM_CIPHER_XCHACHA20POLY1305 = 2,
} stream_cipher_t;

/* Control record types (one byte on the wire). The stream layer moves
 * payloads untouched; DONE is sent by stream_sender_finish() alone. */
typedef enum {
    STREAM_RECORD_END_OF_PASS = 1,
    STREAM_RECORD_VCPU_STATE = 2,
    STREAM_RECORD_DEVICE_STATE = 3,
    STREAM_RECORD_MEMORY_HASH = 4,
    STREAM_RECORD_DONE = 5,
    STREAM_RECORD_USER = 16,              /* first type free for callers */
} stream_record_type_t;

/* A CURVE (X25519) keypair in raw form; zmq_z85_decode() gives raw from the
 * z85 text the agent stores. */
typedef struct {
    uint8_t public_key[STREAM_KEY_BYTES];
    uint8_t secret_key[STREAM_KEY_BYTES];
} stream_identity_t;

typedef struct {
    const char *endpoint;          /* "tcp://ADDRESS:PORT" of the receiver; ZeroMQ's
                                      "tcp://SRC:0;DST:PORT" picks the source */
    stream_identity_t identity;    /* ours */
    uint8_t peer_public_key[STREAM_KEY_BYTES];          /* the receiver's */
    uint8_t migration_id[STREAM_MIGRATION_ID_BYTES];    /* agreed beforehand */
    uint32_t streams;              /* parallel connections K (default 1) */
    uint32_t chunk_bytes;          /* chunk size (default 2 MiB) */
    uint32_t window;               /* unacknowledged chunks per stream (default 4) */
    stream_cipher_t cipher;        /* default AUTO */
    int timeout_ms;                /* longest a call blocks (default 10000) */
} stream_sender_config_t;

typedef struct {
    const char *bind_endpoint;     /* "tcp://ADDRESS:PORT" on the chosen network;
                                      port * picks one (see stream_receiver_endpoint) */
    stream_identity_t identity;
    uint8_t peer_public_key[STREAM_KEY_BYTES];          /* the sender's */
    uint8_t migration_id[STREAM_MIGRATION_ID_BYTES];
    uint8_t *memory;               /* destination guest memory */
    size_t memory_bytes;           /* a multiple of STREAM_PAGE_SIZE */
    bool memory_scratch;           /* memory is thrown away if the stream fails (a
                                      live migration's new VM): pages may then be
                                      decrypted into it before their chunk's tag is
                                      checked, saving a copy of every byte. Leave
                                      false where memory outlives a failure (a
                                      resumable image). Records are always checked. */
    uint32_t max_streams;          /* limits the sender may ask for */
    uint32_t max_chunk_bytes;      /* (defaults 8, 16 MiB, 8) */
    uint32_t max_window;
    stream_cipher_t cipher;        /* default AUTO; a forced cipher must be offered */
} stream_receiver_config_t;

typedef enum {
    STREAM_EVENT_PAGES = 1,        /* pages were written to memory */
    STREAM_EVENT_RECORD = 2,       /* a control record arrived */
} stream_event_type_t;

typedef struct {
    stream_event_type_t type;
    uint64_t pages;                /* PAGES: pages written, zero pages included */
    uint64_t zero_pages;           /* PAGES: of which zero pages */
    uint8_t record_type;           /* RECORD */
    const uint8_t *data;           /* RECORD payload, valid until the next call */
    size_t len;
} stream_event_t;

typedef struct {
    uint64_t pages;                /* pages carried, zero pages included */
    uint64_t zero_pages;           /* pages elided as zero */
    uint64_t page_bytes;           /* guest bytes covered: pages * 4096 */
    uint64_t wire_bytes;           /* all message bytes, headers and tags included */
    uint64_t chunks;               /* data chunks */
    uint64_t records;              /* control records */
    uint64_t dropped;              /* receiver: stray messages ignored */
} stream_stats_t;

/* A reply from the receiver, handed out by stream_sender_next_reply(). */
typedef struct {
    uint8_t type;                  /* 1..255, the caller's own meaning */
    const uint8_t *data;           /* valid until the next call on the sender */
    size_t len;
} stream_reply_t;

typedef struct stream_sender stream_sender_t;
typedef struct stream_receiver stream_receiver_t;

void stream_sender_config_defaults(stream_sender_config_t *cfg);
void stream_receiver_config_defaults(stream_receiver_config_t *cfg);

/* Creates the sockets and starts connecting. NULL on an invalid config
 * (logged) or when out of memory. */
stream_sender_t *stream_sender_new(const stream_sender_config_t *cfg);
void stream_sender_destroy(stream_sender_t **self_p);

/* Key exchange with the receiver and joining of all streams. */
int stream_sender_handshake(stream_sender_t *self, int timeout_ms);

/* Queue pages memory_base + index * 4096 for sending; zero pages travel as
 * a flag. Chunks go out as they fill; this blocks only when the receiver
 * has a full window unacknowledged (for at most the configured timeout). */
int stream_send_pages(stream_sender_t *self, const uint8_t *memory_base,
                      const uint64_t *page_indices, size_t count);

/* Send a control record (1..255 except DONE) of up to chunk size minus 16
 * bytes. A record is a barrier across all streams and flushes them. */
int stream_send_record(stream_sender_t *self, uint8_t type, const void *data, size_t len);

/* Seal and send every partly filled chunk. */
int stream_flush(stream_sender_t *self);

/* Flush, then wait until the receiver has consumed every chunk sent so far
 * (the pipeline is empty: what is sent is in destination memory). */
int stream_sender_drain(stream_sender_t *self, int timeout_ms);

/* Send DONE and wait until the receiver has consumed every chunk. */
int stream_sender_finish(stream_sender_t *self, int timeout_ms);

/* The next reply from the receiver: 0 with *reply filled, STREAM_ERR_TIMEOUT
 * when none came within timeout_ms (not final; 0 only looks at what already
 * arrived), or a final error. Replies that arrive while the sender waits for
 * acknowledgements are kept (up to 4) until asked for. Works after
 * stream_sender_finish() too. */
int stream_sender_next_reply(stream_sender_t *self, int timeout_ms, stream_reply_t *reply);

stream_stats_t stream_sender_stats(const stream_sender_t *self);
const char *stream_sender_cipher(const stream_sender_t *self);   /* "none" before the handshake */
uint32_t stream_sender_streams(const stream_sender_t *self);     /* negotiated K */
const char *stream_sender_error(const stream_sender_t *self);    /* "" when none */

/* Binds at once; NULL if the config is invalid or the bind fails (logged). */
stream_receiver_t *stream_receiver_new(const stream_receiver_config_t *cfg);
void stream_receiver_destroy(stream_receiver_t **self_p);

/* The endpoint actually bound, e.g. "tcp://127.0.0.1:40211". */
const char *stream_receiver_endpoint(const stream_receiver_t *self);

/* Wait for the sender's handshake and for all its streams to join. */
int stream_receiver_accept(stream_receiver_t *self, int timeout_ms);

/* Apply incoming pages to memory and hand out the next event. 0 with
 * *event filled; STREAM_ERR_TIMEOUT when nothing arrived in time (not
 * final); STREAM_ERR_CLOSED after DONE was handed out. */
int stream_receiver_next(stream_receiver_t *self, int timeout_ms, stream_event_t *event);

/* Attach (or replace) the destination memory, for a receiver created
 * without one that learns the size from the sender's first record. Pages
 * consumed from then on land there; indices beyond it are a protocol error.
 * `scratch` as memory_scratch in the config. */
int stream_receiver_set_memory(stream_receiver_t *self, uint8_t *memory, size_t memory_bytes,
                               bool scratch);

/* Send a reply (type 1..255, up to STREAM_REPLY_MAX_BYTES) to the sender.
 * Needs the handshake done; works after DONE too. */
int stream_receiver_reply(stream_receiver_t *self, uint8_t type, const void *data, size_t len);

/* Give up: tell the sender why (best effort) and fail this receiver with
 * STREAM_ERR_CLOSED unless it failed already. Returns 0 if the sender could
 * be told. */
int stream_receiver_abort(stream_receiver_t *self, const char *reason);

stream_stats_t stream_receiver_stats(const stream_receiver_t *self);
const char *stream_receiver_cipher(const stream_receiver_t *self);
const char *stream_receiver_peer_address(const stream_receiver_t *self);  /* "" if unknown */
const char *stream_receiver_error(const stream_receiver_t *self);

/* Call once, early, in a program that receives migration streams (ferryd,
 * the benchmarks). ZeroMQ receives each chunk into a fresh malloc'd buffer
 * of the chunk's size; glibc's defaults serve that from a new mapping, or
 * trim it off the heap once freed, so every 2 MiB chunk cost 512 page
 * faults and the zeroing of its pages: a third of the receiving end's CPU
 * (bench/stream). This keeps blocks below 32 MiB in the heap and trims the
 * heap only past 64 MiB of free memory at its top. Process-wide, hence a
 * call of the program's own rather than a side effect of the library. */
void stream_tune_malloc(void);

const char *stream_error_name(int error);
const char *stream_cipher_name(stream_cipher_t cipher);

#endif
