/* forward.h - answering a control request by asking another agent.
 *
 * Some commands only make sense on one host (a migration runs on the VM's
 * owner), but an operator may ask any agent. The agent that got the request
 * forwards it, as a peer, to the agent that can answer, and relays the reply
 * as if it were its own (an error names the other host).
 *
 * The call to the peer blocks, so it runs on a short-lived thread; the
 * reply goes back to the loop through an eventfd and is sent from there
 * (the control socket belongs to the loop). At most FORWARD_MAX_IN_FLIGHT
 * requests are forwarded at once; beyond that the caller gets "busy". */
#ifndef FERRY_AGENT_FORWARD_H
#define FERRY_AGENT_FORWARD_H

#include <czmq.h>

#include "agent/control.h"
#include "common/crypto.h"

#define FORWARD_MAX_IN_FLIGHT 64
#define FORWARD_TIMEOUT_MS 10000

typedef struct forward forward_t;

/* identity: this agent's key, presented to the peer. */
forward_t *forward_new(control_t *control, zloop_t *loop, const crypto_identity_t *identity, char *err,
                       size_t errlen);
/* Waits for the calls in flight (each bounded by FORWARD_TIMEOUT_MS). */
void forward_destroy(forward_t **self_p);

/* From a handler: sends `command` with the call's own args to the agent at
 * endpoint ("tcp://HOST:PORT", its CURVE key server_key) and defers the
 * call until the answer. Returns what the handler should return. `peer`
 * names the other agent in errors. */
int forward_call(forward_t *self, control_call_t *call, const char *command, const char *peer,
                 const char *endpoint, const char *server_key);

#endif
