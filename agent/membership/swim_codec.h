/* swim_codec.h - the wire format of SWIM messages, packets and push-pull
 * state exchanges (msgpack; see docs/membership.md for the layout).
 *
 * A UDP packet is a msgpack sequence: the protocol version, the sender's
 * name, then one or more messages, each an array whose first element is the
 * message type. A packet carries one primary message (a ping, an ack...) and
 * whatever membership updates fit beside it: that is how SWIM piggybacks
 * dissemination on failure detection. Packets stay under the size the
 * caller gives (the shell keeps sealed packets under 1400 bytes).
 *
 * A push-pull payload is a full state dump sent over a stream (TCP in the
 * shell): version, sender name, sender address, whether a reply is wanted,
 * then the member list.
 *
 * Decoding is bounded: every count and length is checked against fixed
 * limits and against the bytes present, nothing is allocated, and a failure
 * names the field and byte offset (swim_decode_error_t). */
#ifndef FERRY_SWIM_CODEC_H
#define FERRY_SWIM_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/membership/swim_record.h"
#include "agent/membership/swim_wire.h"

#define SWIM_PROTOCOL_VERSION 1
#define SWIM_NAME_CAP         65        /* member names: up to 64 bytes */
#define SWIM_ADDR_CAP         SWIM_HOSTPORT_CAP
#define SWIM_PACKET_MAX_MSGS  96        /* messages in one UDP packet */
/* The largest push-pull payload accepted, and its member count. */
#define SWIM_PUSHPULL_MAX_BYTES   (8u << 20)
#define SWIM_PUSHPULL_MAX_MEMBERS 8192

typedef enum {
    SWIM_ALIVE = 0,
    SWIM_SUSPECT = 1,
    SWIM_DEAD = 2,
    SWIM_LEFT = 3,
} swim_state_t;

const char *swim_state_name(swim_state_t state);   /* "alive", "suspect"... */

typedef enum {
    SWIM_MSG_PING = 1,       /* are you alive?              [1, seq, node]            */
    SWIM_MSG_ACK = 2,        /* yes                         [2, seq]                  */
    SWIM_MSG_NACK = 3,       /* I asked, no answer          [3, seq]                  */
    SWIM_MSG_PING_REQ = 4,   /* please ping node for me     [4, seq, node, addr]      */
    SWIM_MSG_ALIVE = 5,      /* node is alive at inc        [5, node, addr, inc, rec] */
    SWIM_MSG_SUSPECT = 6,    /* `from` suspects node        [6, node, inc, from]      */
    SWIM_MSG_DEAD = 7,       /* `from` declares node dead   [7, node, inc, from]      */
} swim_msg_type_t;           /* dead with from == node means the node left */

typedef struct {
    swim_msg_type_t type;
    uint32_t seq;                    /* ping, ack, nack, ping-req */
    char node[SWIM_NAME_CAP];        /* ping: its intended receiver; ping-req: the
                                        target; alive/suspect/dead: the subject */
    char addr[SWIM_ADDR_CAP];        /* ping-req: target address; alive: subject address */
    uint64_t incarnation;            /* alive, suspect, dead */
    char from[SWIM_NAME_CAP];        /* suspect, dead: the accuser */
    const uint8_t *record;           /* alive: encoded record, points into the input */
    size_t record_len;
} swim_msg_t;

typedef struct {
    const char *what;                /* static string naming the bad field */
    size_t at;                       /* byte offset in the input */
} swim_decode_error_t;

/* --- messages and packets ----------------------------------------------- */

/* Encodes one message. Returns 0, -EINVAL (bad type or field), -EMSGSIZE. */
int swim_msg_encode(const swim_msg_t *msg, uint8_t *buf, size_t cap, size_t *len);

typedef struct {
    char sender[SWIM_NAME_CAP];
    size_t count;
    swim_msg_t msgs[SWIM_PACKET_MAX_MSGS];
} swim_packet_t;

/* Decodes a whole packet; nothing of a packet with any error is returned.
 * Messages of unknown type are skipped (a newer peer may send them). */
int swim_packet_decode(const uint8_t *buf, size_t len, swim_packet_t *packet,
                       swim_decode_error_t *err);

/* Builds a packet in a caller's buffer: the header, then messages that are
 * already encoded, for as long as they fit. */
typedef struct {
    wire_writer_t w;
    size_t count;
} swim_packet_builder_t;

int swim_packet_begin(swim_packet_builder_t *b, uint8_t *buf, size_t cap, const char *sender);
/* Appends an encoded message; false (and nothing appended) if it does not fit. */
bool swim_packet_add(swim_packet_builder_t *b, const uint8_t *msg, size_t len);
size_t swim_packet_room(const swim_packet_builder_t *b);
size_t swim_packet_len(const swim_packet_builder_t *b);

/* --- push-pull ---------------------------------------------------------- */

typedef struct {
    char name[SWIM_NAME_CAP];
    char addr[SWIM_ADDR_CAP];
    swim_state_t state;
    uint64_t incarnation;
    const uint8_t *record;
    size_t record_len;
} swim_pp_member_t;

/* Writing: the header, then exactly `count` members. */
void swim_pushpull_write_header(wire_writer_t *w, const char *sender, const char *sender_addr,
                                bool wants_reply, uint32_t count);
void swim_pushpull_write_member(wire_writer_t *w, const swim_pp_member_t *m);
/* An upper bound on the encoded size of one member. */
size_t swim_pushpull_member_size(const swim_pp_member_t *m);

/* Reading: open checks the header, next yields members one by one. */
typedef struct {
    wire_reader_t r;
    char sender[SWIM_NAME_CAP];
    char sender_addr[SWIM_ADDR_CAP];
    bool wants_reply;
    uint32_t count;
    uint32_t read;
} swim_pushpull_reader_t;

int swim_pushpull_open(swim_pushpull_reader_t *pr, const uint8_t *buf, size_t len,
                       swim_decode_error_t *err);
/* Returns 1 with a member, 0 at the (checked) end, -EBADMSG on error. */
int swim_pushpull_next(swim_pushpull_reader_t *pr, swim_pp_member_t *m, swim_decode_error_t *err);

#endif
