/* ctl_client.h - a connection to an agent's control API: ferryctl's, and
 * an agent's own when it asks a peer (a migration's destination).
 *
 * One DEALER socket with CURVE, plus a socket monitor so that a refused key
 * and an unreachable agent are told apart from a slow one:
 *
 *   CTL_ERR_UNREACHABLE  nothing accepted the TCP connection
 *   CTL_ERR_REJECTED     the agent refused our key (CURVE/ZAP)
 *   CTL_ERR_TIMEOUT      connected, but no reply in time
 *   CTL_ERR_PROTOCOL     the reply was not a valid control reply
 *   CTL_ERR_AGENT        the agent answered with an error (see reply.code)
 */
#ifndef FERRY_COMMON_CTL_CLIENT_H
#define FERRY_COMMON_CTL_CLIENT_H

#include <msgpack.h>
#include <stdbool.h>

#include "common/credential.h"
#include "common/wire.h"

typedef enum {
    CTL_OK = 0,
    CTL_ERR_UNREACHABLE = -1,
    CTL_ERR_REJECTED = -2,
    CTL_ERR_TIMEOUT = -3,
    CTL_ERR_PROTOCOL = -4,
    CTL_ERR_AGENT = -5,
} ctl_status_t;

typedef struct ctl_client ctl_client_t;

typedef struct {
    wire_envelope_t envelope;     /* owns the memory of everything below */
    wire_control_reply_t reply;
} ctl_response_t;

ctl_client_t *ctl_client_new(const char *endpoint, const char *server_public, const crypto_identity_t *client,
                             int timeout_ms);
void ctl_client_destroy(ctl_client_t **self_p);

/* Sends `command` with `args` (a packed msgpack map, or NULL for none) and
 * waits for the reply. On CTL_OK or CTL_ERR_AGENT the caller must release
 * the response with ctl_response_release(). `err` says what went wrong. */
ctl_status_t ctl_call(ctl_client_t *self, const char *command, const msgpack_sbuffer *args,
                      ctl_response_t *response, char *err, size_t errlen);
void ctl_response_release(ctl_response_t *response);

/* Sends raw bytes as one request frame and waits for any reply; for tests
 * that check the agent survives garbage. */
ctl_status_t ctl_send_raw(ctl_client_t *self, const void *bytes, size_t len, ctl_response_t *response,
                          char *err, size_t errlen);

#endif
