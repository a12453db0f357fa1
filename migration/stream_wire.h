/* stream_wire.h - byte layouts of the migration stream (pure codec).
 *
 * Every integer is little-endian. Decoders take untrusted bytes, check every
 * length and field, never read out of bounds, and on failure return
 * STREAM_ERR_PROTOCOL with *why naming the problem (a static string).
 *
 * Handshake messages (clear text, authenticated by a MAC at their end):
 *
 *   HELLO   sender -> receiver, 136 bytes
 *     0  "FMIG"  4  version 1  5  type 1  6  u16 streams  8  u32 chunk_bytes
 *     12 u32 window  16 u8 offered ciphers (bit 1 << cipher)  17 7 zero bytes
 *     24 migration id [16]  40 sender identity key [32]
 *     72 ephemeral kx key [32]  104 MAC [32]
 *   WELCOME receiver -> sender, 120 bytes
 *     0  "FMIG"  4  version 1  5  type 2  6  u16 streams  8  u32 chunk_bytes
 *     12 u32 window  16 u8 chosen cipher  17 7 zero bytes
 *     24 receiver identity key [32]  56 ephemeral kx key [32]  88 MAC [32]
 *   REJECT  receiver -> sender, 8 bytes, unauthenticated (a hint only)
 *     0  "FMIG"  4  version 1  5  type 3  6  u8 reason  7  zero
 *
 * Session messages: a 16-byte header (the AEAD's associated data), the
 * sealed body, a 16-byte tag:
 *     0 u8 version 1  1 u8 type  2 u16 stream  4 u32 body length  8 u64 seq
 *
 *   JOIN  sender -> receiver, seq 0, empty body: binds a connection to a stream
 *   DATA  sender -> receiver, seq 1, 2, ...: a chunk of body entries
 *   ACK   receiver -> sender, seq 0, 1, ...: body u64 = last DATA seq consumed
 *   REPLY receiver -> sender, stream 0 only, in the same seq space as that
 *         stream's ACKs: body u8 reply type, then up to STREAM_REPLY_MAX_BYTES
 *         of payload. Type 0 (STREAM_REPLY_ABORT) carries the receiver's
 *         reason for giving up, as text.
 *
 * A DATA body is a run of entries, each starting with a u64 tag word whose
 * low byte is the kind:
 *   PAGE     tag = kind | index << 8, then 4096 bytes of page data
 *   ZERO     tag = kind | index << 8 (an all-zero page: no data)
 *   RECORD   tag = kind | type << 8 | length << 32, then the payload,
 *            zero-padded to a multiple of 8
 *   BARRIER  tag = kind (stands for a RECORD carried by stream 0)
 */
#ifndef FERRY_MIGRATION_STREAM_WIRE_H
#define FERRY_MIGRATION_STREAM_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration/stream.h"

#define STREAM_WIRE_VERSION     1
#define STREAM_HELLO_SIZE       136
#define STREAM_HELLO_MAC_AT     104
#define STREAM_WELCOME_SIZE     120
#define STREAM_WELCOME_MAC_AT   88
#define STREAM_REJECT_SIZE      8
#define STREAM_MAC_BYTES        32
#define STREAM_HEADER_SIZE      16
#define STREAM_TAG_SIZE         16
#define STREAM_ACK_BODY_SIZE    8
#define STREAM_ENTRY_TAG_SIZE   8
#define STREAM_PAGE_ENTRY_SIZE  (STREAM_ENTRY_TAG_SIZE + STREAM_PAGE_SIZE)
#define STREAM_PAGE_INDEX_MAX   ((1ULL << 56) - 1)

typedef enum {
    STREAM_MSG_HELLO = 1,
    STREAM_MSG_WELCOME = 2,
    STREAM_MSG_REJECT = 3,
    STREAM_MSG_JOIN = 16,
    STREAM_MSG_DATA = 17,
    STREAM_MSG_ACK = 18,
    STREAM_MSG_REPLY = 19,
} stream_msg_type_t;

/* The largest body a receiver -> sender message can have (a REPLY). */
#define STREAM_REPLY_MAX_BODY   (1 + STREAM_REPLY_MAX_BYTES)

typedef enum {
    STREAM_REJECT_MALFORMED = 1,
    STREAM_REJECT_IDENTITY = 2,      /* not the sender this receiver expects */
    STREAM_REJECT_AUTH = 3,          /* MAC check failed */
    STREAM_REJECT_MIGRATION = 4,     /* unexpected migration id */
    STREAM_REJECT_PARAMETERS = 5,    /* no common cipher */
} stream_reject_reason_t;

typedef enum {
    STREAM_ENTRY_PAGE = 1,
    STREAM_ENTRY_ZERO = 2,
    STREAM_ENTRY_RECORD = 3,
    STREAM_ENTRY_BARRIER = 4,
} stream_entry_kind_t;

typedef struct {
    uint16_t streams;
    uint32_t chunk_bytes;
    uint32_t window;
    uint8_t ciphers;                 /* bitmask: 1 << stream_cipher_t */
    uint8_t migration_id[STREAM_MIGRATION_ID_BYTES];
    uint8_t identity[STREAM_KEY_BYTES];
    uint8_t ephemeral[STREAM_KEY_BYTES];
    uint8_t mac[STREAM_MAC_BYTES];
} stream_hello_t;

typedef struct {
    uint16_t streams;
    uint32_t chunk_bytes;
    uint32_t window;
    uint8_t cipher;
    uint8_t identity[STREAM_KEY_BYTES];
    uint8_t ephemeral[STREAM_KEY_BYTES];
    uint8_t mac[STREAM_MAC_BYTES];
} stream_welcome_t;

typedef struct {
    uint8_t type;
    uint16_t stream;
    uint32_t body_len;
    uint64_t seq;
} stream_header_t;

typedef struct {
    stream_entry_kind_t kind;
    uint64_t page;                   /* PAGE, ZERO */
    uint8_t record_type;             /* RECORD */
    const uint8_t *data;             /* PAGE: 4096 bytes; RECORD: payload */
    uint32_t len;                    /* RECORD payload length */
} stream_entry_t;

/* Walks a decrypted DATA body. */
typedef struct {
    const uint8_t *body;
    size_t len;
    size_t offset;
    uint64_t page_limit;             /* page indices must be below this */
} stream_body_reader_t;

void stream_hello_encode(const stream_hello_t *hello, uint8_t out[STREAM_HELLO_SIZE]);
int stream_hello_decode(const uint8_t *data, size_t len, stream_hello_t *hello, const char **why);
void stream_welcome_encode(const stream_welcome_t *welcome, uint8_t out[STREAM_WELCOME_SIZE]);
int stream_welcome_decode(const uint8_t *data, size_t len, stream_welcome_t *welcome, const char **why);
void stream_reject_encode(uint8_t reason, uint8_t out[STREAM_REJECT_SIZE]);
/* 0 and *reason if `data` is a REJECT, else STREAM_ERR_PROTOCOL. */
int stream_reject_decode(const uint8_t *data, size_t len, uint8_t *reason);
const char *stream_reject_reason_name(uint8_t reason);

void stream_header_encode(const stream_header_t *header, uint8_t out[STREAM_HEADER_SIZE]);
/* Checks the header and that `len` is exactly header + body + tag, with the
 * body no longer than max_body. */
int stream_header_decode(const uint8_t *data, size_t len, uint32_t max_body,
                         stream_header_t *header, const char **why);

void stream_body_reader_init(stream_body_reader_t *reader, const uint8_t *body, size_t len,
                             uint64_t page_limit);
/* 1 with *entry filled, 0 at the end of the body, STREAM_ERR_PROTOCOL. */
int stream_body_next(stream_body_reader_t *reader, stream_entry_t *entry, const char **why);

/* Body writers: each returns the bytes written at `at`, which must have room
 * (see the sizes above; a record takes stream_record_entry_size()). */
size_t stream_put_page(uint8_t *at, uint64_t index, const uint8_t *page);
/* A PAGE entry's tag alone; its 4096 bytes of data follow, put by the caller. */
size_t stream_put_page_tag(uint8_t *at, uint64_t index);
size_t stream_put_zero(uint8_t *at, uint64_t index);
size_t stream_put_record(uint8_t *at, uint8_t type, const void *data, uint32_t len);
size_t stream_put_barrier(uint8_t *at);
size_t stream_record_entry_size(uint32_t len);

/* True if all 4096 bytes are zero. */
bool stream_page_is_zero(const uint8_t *page);

void stream_put_u16(uint8_t *p, uint16_t v);
void stream_put_u32(uint8_t *p, uint32_t v);
void stream_put_u64(uint8_t *p, uint64_t v);
uint16_t stream_get_u16(const uint8_t *p);
uint32_t stream_get_u32(const uint8_t *p);
uint64_t stream_get_u64(const uint8_t *p);

#endif
