/* wire.h - ferry's versioned msgpack envelope and bounded decoding.
 *
 * Every ferry message on the wire is one msgpack array:
 *
 *     [ protocol_version, message_type, sender_id, body ]
 *
 * `body` is a value whose shape depends on the message type (for the control
 * API, a map). Decoding never trusts its input: the frame size, nesting
 * depth, element counts, string lengths and the types of known fields are
 * all checked, and any violation is an error with a message saying what and
 * where - never a crash. Extension types are refused outright.
 *
 *   wire_envelope_t env;
 *   char err[128];
 *   if (wire_envelope_decode(&env, buf, len, err, sizeof err) != 0) { reply error; }
 *   ... use env.type, env.sender, env.body ...
 *   wire_envelope_release(&env);
 */
#ifndef FERRY_WIRE_H
#define FERRY_WIRE_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_PROTOCOL_VERSION 1
#define WIRE_MAX_FRAME   (4u << 20)   /* largest message accepted, bytes */
#define WIRE_MAX_DEPTH   16           /* deepest nesting of arrays and maps */
#define WIRE_MAX_ITEMS   65536        /* most elements in one array or map */
#define WIRE_MAX_SENDER  64           /* longest sender id */

typedef enum {
    WIRE_CONTROL_REQUEST = 1,   /* body: { "command": str, "args": map } */
    WIRE_CONTROL_REPLY = 2,     /* body: { "ok": bool, "error"?: str, "code"?: int, "result"?: any } */
    WIRE_TYPE_MAX
} wire_type_t;

typedef struct {
    uint32_t version;
    uint32_t type;
    char sender[WIRE_MAX_SENDER + 1];
    msgpack_object body;          /* valid until wire_envelope_release() */
    msgpack_unpacked unpacked;    /* owns the decoded memory */
    uint8_t *bytes;               /* a copy of the input: decoded strings point into it */
} wire_envelope_t;

/* Checks raw msgpack bytes before anything is allocated for them: exactly
 * one value, every length within the buffer, every array/map count within
 * WIRE_MAX_ITEMS and within the bytes left (each element needs one), nesting
 * within WIRE_MAX_DEPTH, no extension types, no trailing bytes.
 * msgpack-c's unpacker sizes its allocations from the counts in the headers,
 * so without this check a 5-byte message could ask for gigabytes. */
int wire_validate(const void *buf, size_t len, char *err, size_t errlen);

/* wire_validate(), then msgpack_unpack_next(): the only way ferry decodes
 * untrusted msgpack. On success the caller destroys `out`. */
int wire_unpack(msgpack_unpacked *out, const void *buf, size_t len, char *err, size_t errlen);

/* Starts an envelope on `pk`; the caller then packs exactly one body value. */
void wire_envelope_begin(msgpack_packer *pk, wire_type_t type, const char *sender);

/* Decodes one envelope from `buf`. Returns 0, or -1 with `err` saying what is
 * wrong. On success the caller must wire_envelope_release(). The envelope
 * keeps its own copy of the bytes, so `buf` may be freed at once. */
int wire_envelope_decode(wire_envelope_t *env, const void *buf, size_t len, char *err, size_t errlen);
void wire_envelope_release(wire_envelope_t *env);

/* Checks depth, counts and types of an already decoded object tree. */
int wire_check_bounds(const msgpack_object *obj, char *err, size_t errlen);

/* --- typed access to map fields ---------------------------------------
 * Each getter looks `key` up in `map`. It returns 0 when found with the right
 * type, 1 when absent (the caller decides whether that is an error), and -1
 * with `err` naming the key when present with the wrong type or too long. */
const msgpack_object *wire_map_find(const msgpack_object *map, const char *key);
int wire_get_str(const msgpack_object *map, const char *key, char *out, size_t cap, char *err, size_t errlen);
int wire_get_u64(const msgpack_object *map, const char *key, uint64_t *out, char *err, size_t errlen);
int wire_get_i64(const msgpack_object *map, const char *key, int64_t *out, char *err, size_t errlen);
int wire_get_bool(const msgpack_object *map, const char *key, bool *out, char *err, size_t errlen);
int wire_get_f64(const msgpack_object *map, const char *key, double *out, char *err, size_t errlen);
int wire_get_map(const msgpack_object *map, const char *key, const msgpack_object **out, char *err, size_t errlen);
int wire_get_array(const msgpack_object *map, const char *key, const msgpack_object **out, char *err, size_t errlen);

/* Packing helpers for the common "key": value pairs of a map. */
void wire_pack_str(msgpack_packer *pk, const char *s);
void wire_pack_kv_str(msgpack_packer *pk, const char *key, const char *value);
void wire_pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t value);
void wire_pack_kv_i64(msgpack_packer *pk, const char *key, int64_t value);
void wire_pack_kv_bool(msgpack_packer *pk, const char *key, bool value);
void wire_pack_kv_f64(msgpack_packer *pk, const char *key, double value);

/* Control messages (request from ferryctl, reply from the agent). */
typedef struct {
    char command[64];
    const msgpack_object *args;   /* a map; points into the envelope */
} wire_control_request_t;

typedef struct {
    bool ok;
    int64_t code;                 /* 0 when ok; see docs/protocol.md */
    char error[512];
    const msgpack_object *result; /* NULL if absent; points into the envelope */
} wire_control_reply_t;

int wire_control_request_decode(const wire_envelope_t *env, wire_control_request_t *req, char *err, size_t errlen);
int wire_control_reply_decode(const wire_envelope_t *env, wire_control_reply_t *rep, char *err, size_t errlen);

#endif
