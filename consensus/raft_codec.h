/* raft_codec.h - Raft messages on the wire, as msgpack.
 *
 * One message is one msgpack array of 14 elements:
 *
 *   [version=1, type, from, to, term, log_term, index, commit, flags,
 *    hint_index, hint_term, context, entries, snapshot]
 *
 *   flags     bit 0 reject, bit 1 force (no other bit may be set)
 *   entries   array (at most RAFT_MAX_MSG_ENTRIES) of [term, index, type, bin payload]
 *   snapshot  nil, or [index, term, [voter ids], [learner ids], bin payload]
 *
 * Every integer is an unsigned msgpack integer. Decoding trusts nothing: each
 * count and length is checked against its limit (raft.h) and against the
 * bytes actually left before anything is allocated, and an error names the
 * field and the byte offset. The decoder reads the bytes itself rather than
 * through msgpack_unpack(), which would allocate for a claimed array size
 * before checking that the input can hold it.
 *
 *   uint8_t *buf; size_t len;
 *   raft_msg_encode(&msg, &buf, &len);  ... send ...  free(buf);
 *
 *   raft_msg_t msg; raft_decode_error_t err;
 *   if (raft_msg_decode(bytes, n, &msg, &err) == 0) { raft_step(r, &msg); raft_msg_release(&msg); }
 *   else log_warn("raft", "bad message from %s: %s at byte %zu", peer, err.what, err.offset);
 */
#ifndef FERRY_RAFT_CODEC_H
#define FERRY_RAFT_CODEC_H

#include "consensus/raft.h"

#define RAFT_CODEC_VERSION 1

typedef struct {
    char what[128];     /* e.g. "entries[3].payload: 9000000 bytes, limit 8388608" */
    size_t offset;      /* byte offset in the input where it went wrong */
} raft_decode_error_t;

/* Encodes `msg` into a new heap buffer (free() it). Refuses, with
 * RAFT_ERR_TOO_BIG or RAFT_ERR_INVALID, anything the decoder would refuse. */
int raft_msg_encode(const raft_msg_t *msg, uint8_t **out, size_t *out_len);

/* Decodes `buf`. On success `out` points into `buf` for payloads (keep `buf`
 * alive while using it) and owns arrays released by raft_msg_release(). On
 * failure returns RAFT_ERR_DECODE, fills `err` (may be NULL) and `out` holds
 * nothing to release. */
int raft_msg_decode(const uint8_t *buf, size_t len, raft_msg_t *out, raft_decode_error_t *err);
void raft_msg_release(raft_msg_t *msg);

#endif
