/* control.h - the agent's control API: a ZeroMQ ROUTER socket with CURVE.
 *
 * ferryctl connects with a DEALER socket and its admin keypair; the ZAP
 * handler (zap.h) admits only admin keys on the "control" domain. Each
 * request is one frame holding a wire envelope (wire.h) of type
 * WIRE_CONTROL_REQUEST; each reply is one WIRE_CONTROL_REPLY frame.
 *
 * Modules register handlers by command name ("host.show", "vm.list", ...).
 * A handler packs exactly one value, the result, or fails with a code and a
 * message. A malformed or unknown request gets an error reply; the agent
 * keeps serving whatever arrives. */
#ifndef FERRY_CONTROL_H
#define FERRY_CONTROL_H

#include <czmq.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/crypto.h"

/* Error codes carried in replies; ferryctl maps them to exit codes and text.
 * They are part of the protocol (docs/protocol.md): never renumber. */
typedef enum {
    CONTROL_OK = 0,
    CONTROL_BAD_REQUEST = 1,
    CONTROL_UNKNOWN_COMMAND = 2,
    CONTROL_NOT_FOUND = 3,
    CONTROL_CONFLICT = 4,
    CONTROL_UNAVAILABLE = 5,
    CONTROL_INTERNAL = 6,
    CONTROL_FORBIDDEN = 7,        /* a peer agent asked for an operator's command */
} control_code_t;

typedef struct control control_t;
typedef uint64_t control_ticket_t;

typedef struct {
    const msgpack_object *args;   /* a map, or NULL when the request had none */
    control_ticket_t ticket;      /* set by control_defer() */
    bool from_peer;               /* the caller is another agent, not an operator */
    bool deferred;
    msgpack_packer *result;       /* pack exactly one value on success */
    control_code_t code;          /* set with control_fail() */
    char error[512];
} control_call_t;

/* Returns 0 on success (result packed), -1 after control_fail(), or
 * CONTROL_DEFERRED after control_defer(): the reply comes later. */
typedef int (control_handler_fn)(void *ctx, control_call_t *call);
#define CONTROL_DEFERRED 1

/* A request whose reply waits for something (a Raft commit, a migration).
 * Handlers call control_defer() and return CONTROL_DEFERRED; later the owner
 * calls control_complete() exactly once. Deferred requests that are never
 * completed are failed with CONTROL_UNAVAILABLE when the control API closes. */
control_ticket_t control_defer(control_call_t *call);
/* `result` is a packed msgpack value (NULL on failure). Returns -1 if the
 * ticket is unknown (completed already). */
int control_complete(control_t *self, control_ticket_t ticket, const msgpack_sbuffer *result,
                     control_code_t code, const char *error);

int control_fail(control_call_t *call, control_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Binds `endpoint` as a CURVE server with `server` keys, ZAP domain "control". */
control_t *control_new(const char *endpoint, const crypto_identity_t *server, const char *agent_name,
                       char *err, size_t errlen);
void control_destroy(control_t **self_p);

zsock_t *control_socket(control_t *self);
/* The endpoint actually bound (resolves port 0 to the chosen port). */
const char *control_endpoint(const control_t *self);

int control_register(control_t *self, const char *command, control_handler_fn *handler, void *ctx);
/* The same for a command that peer agents may call as well as operators. */
int control_register_for_peers(control_t *self, const char *command, control_handler_fn *handler, void *ctx);

/* Reads one request from the socket, dispatches it and sends the reply. */
void control_handle(control_t *self);

uint64_t control_requests(const control_t *self);
uint64_t control_malformed(const control_t *self);

#endif
