/* transport.h - Raft's messages between agents, over ZeroMQ with CURVE.
 *
 * Each agent binds one ROUTER (CURVE server, ZAP domain "raft": only the
 * keys of known members get in) and keeps one DEALER per peer (CURVE
 * client, pinned to that peer's public key). Peer addresses and keys come
 * from membership. Frames on the wire:
 *
 *   DEALER -> ROUTER:  [kind][payload]
 *     kind 1  a Raft message (consensus/raft_codec.h)
 *     kind 2  a forwarded proposal: u64 request id, u64 sender id (LE), entry payload
 *     kind 3  the answer to one: u64 request id, u64 index, u64 term, i32 error (LE)
 *
 * Answers travel like requests, from the answering node's DEALER to the
 * asker's ROUTER, so each agent polls only its ROUTER.
 * Sends never block: a peer that is down or slow drops messages at its
 * high-water mark, which Raft tolerates by design. */
#ifndef FERRY_RAFT_TRANSPORT_H
#define FERRY_RAFT_TRANSPORT_H

#include <czmq.h>
#include <stdint.h>

#include "agent/zap.h"
#include "common/crypto.h"
#include "consensus/raft.h"

typedef struct raft_transport raft_transport_t;

typedef enum {
    TRANSPORT_RAFT = 1,
    TRANSPORT_FORWARD = 2,
    TRANSPORT_FORWARD_RESULT = 3,
} transport_kind_t;

/* One received frame, decoded. Release with raft_transport_release(). */
typedef struct {
    transport_kind_t kind;
    raft_msg_t msg;               /* TRANSPORT_RAFT */
    uint64_t request_id;          /* FORWARD and FORWARD_RESULT */
    const uint8_t *payload;       /* FORWARD: the entry to propose */
    size_t payload_len;
    uint64_t index, term;         /* FORWARD_RESULT */
    int32_t error;                /* FORWARD_RESULT: 0 or a RAFT_ERR_* code */
    uint64_t sender;              /* FORWARD: the node to answer */
    zframe_t *frame_;             /* owns the bytes */
} transport_in_t;

raft_transport_t *raft_transport_new(uint64_t self_id, const char *bind_endpoint, const crypto_identity_t *identity,
                                     zap_t *zap, char *err, size_t errlen);
void raft_transport_destroy(raft_transport_t **self_p);

zsock_t *raft_transport_socket(raft_transport_t *self);
const char *raft_transport_endpoint(const raft_transport_t *self);

/* Adds or updates a peer; admits its key on the "raft" ZAP domain. */
int raft_transport_set_peer(raft_transport_t *self, uint64_t id, const char *endpoint, const char *public_z85);
void raft_transport_remove_peer(raft_transport_t *self, uint64_t id);
bool raft_transport_has_peer(const raft_transport_t *self, uint64_t id);
/* Dials again every peer whose handshake was refused (it did not know our
 * key yet); call it a few times a second. */
void raft_transport_maintain(raft_transport_t *self);

/* Encodes and sends to msg->to. Returns 0, or -1 if the peer is unknown or
 * its queue is full (the message is dropped). */
int raft_transport_send(raft_transport_t *self, const raft_msg_t *msg);
/* Sends a message raft_msg_encode() made earlier (held until the log was
 * durable); same result as raft_transport_send(). */
int raft_transport_send_encoded(raft_transport_t *self, uint64_t to, const uint8_t *bytes, size_t len);
int raft_transport_forward(raft_transport_t *self, uint64_t leader, uint64_t request_id, const void *payload,
                           size_t len);
/* Answers a FORWARD that arrived as `in`. */
int raft_transport_answer(raft_transport_t *self, const transport_in_t *in, uint64_t index, uint64_t term,
                          int32_t error);

/* Reads one frame from the ROUTER. Returns 0 with `in` filled, or -1 for a
 * malformed frame (logged, counted, dropped). */
int raft_transport_recv(raft_transport_t *self, transport_in_t *in);
void raft_transport_release(transport_in_t *in);

uint64_t raft_transport_dropped(const raft_transport_t *self);
uint64_t raft_transport_malformed(const raft_transport_t *self);

#endif
