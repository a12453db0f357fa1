/* zap.h - ZeroMQ's authentication hook (ZAP, RFC 27) for ferry's CURVE sockets.
 *
 * Every CURVE server socket in the agent names a ZAP domain ("control",
 * "raft", ...). When a client completes the CURVE handshake, libzmq asks the
 * ZAP handler on inproc://zeromq.zap.01 whether that client's public key may
 * in. This handler admits a key only if it is on the domain's allow list,
 * and logs every refusal with the key and the peer address. */
#ifndef FERRY_ZAP_H
#define FERRY_ZAP_H

#include <czmq.h>
#include <stdint.h>

typedef struct zap zap_t;

/* Binds the handler in czmq's ZeroMQ context; NULL if one is bound already. */
zap_t *zap_new(void);
void zap_destroy(zap_t **self_p);

/* The socket to poll; call zap_handle() when it is readable. */
zsock_t *zap_socket(zap_t *self);
void zap_handle(zap_t *self);

/* Who a key is. The role becomes the connection's ZMQ User-Id, so a
 * server can tell an operator's command from a peer agent's request. */
#define ZAP_ROLE_ADMIN "admin"   /* an operator's credential (ferryctl) */
#define ZAP_ROLE_PEER  "peer"    /* another agent of the cluster */

/* Admits `public_z85` on `domain` as `role` (a ZAP_ROLE_*; a later call
 * for the same key replaces it). Returns 0, or -1 if the key is malformed. */
int zap_allow(zap_t *self, const char *domain, const char *public_z85, const char *role);
void zap_revoke(zap_t *self, const char *domain, const char *public_z85);

uint64_t zap_accepted(const zap_t *self);
uint64_t zap_rejected(const zap_t *self);

#endif
