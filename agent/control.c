/* control.c - see control.h. */
#include "agent/control.h"
#include "agent/zap.h"
#include "common/log.h"
#include "common/wire.h"

#include <stdarg.h>
#include <string.h>

#define CONTROL_MAX_COMMANDS 128

typedef struct {
    char name[64];
    control_handler_fn *handler;
    void *ctx;
    bool peers_may_call;
} command_t;

typedef struct {
    control_ticket_t ticket;
    zframe_t *routing_id;
} pending_t;

#define CONTROL_MAX_PENDING 1024

struct control {
    zsock_t *socket;
    pending_t pending[CONTROL_MAX_PENDING];
    size_t pending_count;
    control_ticket_t next_ticket;
    char endpoint[256];
    char agent_name[64];
    command_t commands[CONTROL_MAX_COMMANDS];
    int command_count;
    uint64_t requests;
    uint64_t malformed;
};

int control_fail(control_call_t *call, control_code_t code, const char *fmt, ...)
{
    call->code = code;
    va_list args;
    va_start(args, fmt);
    vsnprintf(call->error, sizeof(call->error), fmt, args);
    va_end(args);
    return -1;
}

control_t *control_new(const char *endpoint, const crypto_identity_t *server, const char *agent_name,
                       char *err, size_t errlen)
{
    control_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    snprintf(self->agent_name, sizeof(self->agent_name), "%s", agent_name);
    self->socket = zsock_new(ZMQ_ROUTER);
    if (!self->socket)
        goto fail;
    zsock_set_curve_server(self->socket, 1);
    zsock_set_curve_secretkey(self->socket, server->secret_z85);
    zsock_set_zap_domain(self->socket, "control");
    /* A client that vanished must not pin replies in memory forever. */
    zsock_set_sndhwm(self->socket, 1000);
    zsock_set_router_mandatory(self->socket, 0);
    zsock_set_maxmsgsize(self->socket, WIRE_MAX_FRAME);
    zsock_set_linger(self->socket, 0);
    if (zsock_bind(self->socket, "%s", endpoint) < 0) {
        snprintf(err, errlen, "cannot bind control API at %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto fail;
    }
    char *bound = zsock_last_endpoint(self->socket);
    snprintf(self->endpoint, sizeof(self->endpoint), "%s", bound ? bound : endpoint);
    zstr_free(&bound);
    return self;
fail:
    control_destroy(&self);
    return NULL;
}

static void reply_error(control_t *self, zframe_t *routing_id, control_code_t code, const char *error);

void control_destroy(control_t **self_p)
{
    control_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->pending_count; i++)
        reply_error(self, self->pending[i].routing_id, CONTROL_UNAVAILABLE, "the agent is shutting down");
    zsock_destroy(&self->socket);
    free(self);
    *self_p = NULL;
}

zsock_t *control_socket(control_t *self) { return self->socket; }
const char *control_endpoint(const control_t *self) { return self->endpoint; }
uint64_t control_requests(const control_t *self) { return self->requests; }
uint64_t control_malformed(const control_t *self) { return self->malformed; }

static int add_command(control_t *self, const char *command, control_handler_fn *handler, void *ctx,
                       bool peers_may_call)
{
    if (self->command_count == CONTROL_MAX_COMMANDS || strlen(command) >= sizeof(self->commands[0].name))
        return -1;
    command_t *c = &self->commands[self->command_count++];
    snprintf(c->name, sizeof(c->name), "%s", command);
    c->handler = handler;
    c->ctx = ctx;
    c->peers_may_call = peers_may_call;
    return 0;
}

int control_register(control_t *self, const char *command, control_handler_fn *handler, void *ctx)
{
    return add_command(self, command, handler, ctx, false);
}

int control_register_for_peers(control_t *self, const char *command, control_handler_fn *handler, void *ctx)
{
    return add_command(self, command, handler, ctx, true);
}

static const command_t *find_command(const control_t *self, const char *name)
{
    for (int i = 0; i < self->command_count; i++)
        if (strcmp(self->commands[i].name, name) == 0)
            return &self->commands[i];
    return NULL;
}

/* Sends [routing id][reply envelope]. */
static void send_reply(control_t *self, zframe_t *routing_id, const msgpack_sbuffer *body)
{
    zmsg_t *reply = zmsg_new();
    zmsg_append(reply, &routing_id);
    zmsg_addmem(reply, body->data, body->size);
    zmsg_send(&reply, self->socket);
}

static void reply_error(control_t *self, zframe_t *routing_id, control_code_t code, const char *error)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    wire_envelope_begin(&pk, WIRE_CONTROL_REPLY, self->agent_name);
    msgpack_pack_map(&pk, 3);
    wire_pack_kv_bool(&pk, "ok", false);
    wire_pack_kv_i64(&pk, "code", code);
    wire_pack_kv_str(&pk, "error", error);
    send_reply(self, routing_id, &buf);
    msgpack_sbuffer_destroy(&buf);
}

static void reply_ok(control_t *self, zframe_t *routing_id, const msgpack_sbuffer *result)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    wire_envelope_begin(&pk, WIRE_CONTROL_REPLY, self->agent_name);
    msgpack_pack_map(&pk, 2);
    wire_pack_kv_bool(&pk, "ok", true);
    wire_pack_str(&pk, "result");
    msgpack_sbuffer_write(&buf, result->data, result->size);
    send_reply(self, routing_id, &buf);
    msgpack_sbuffer_destroy(&buf);
}

static void dispatch(control_t *self, zframe_t *routing_id, const wire_control_request_t *req, bool from_peer)
{
    const command_t *command = find_command(self, req->command);
    if (!command) {
        char error[160];
        snprintf(error, sizeof(error), "unknown command '%s'", req->command);
        reply_error(self, routing_id, CONTROL_UNKNOWN_COMMAND, error);
        return;
    }
    if (from_peer && !command->peers_may_call) {
        char error[160];
        snprintf(error, sizeof(error), "command '%s' is for operators; a peer agent may not call it", req->command);
        log_warn("control", "%s", error);
        reply_error(self, routing_id, CONTROL_FORBIDDEN, error);
        return;
    }
    /* The result is packed into its own buffer first, so a failing handler
     * leaves no half-packed value behind. */
    msgpack_sbuffer result_buf;
    msgpack_sbuffer_init(&result_buf);
    msgpack_packer result_pk;
    msgpack_packer_init(&result_pk, &result_buf, msgpack_sbuffer_write);
    control_call_t call = { .args = req->args, .result = &result_pk, .ticket = ++self->next_ticket,
                            .from_peer = from_peer };
    int rc = command->handler(command->ctx, &call);
    if (rc == CONTROL_DEFERRED && call.deferred) {
        if (self->pending_count == CONTROL_MAX_PENDING) {
            reply_error(self, routing_id, CONTROL_UNAVAILABLE, "too many requests in flight; retry");
        } else {
            self->pending[self->pending_count++] = (pending_t){ .ticket = call.ticket, .routing_id = routing_id };
        }
        msgpack_sbuffer_destroy(&result_buf);
        return;
    }
    if (rc != 0 || result_buf.size == 0) {
        if (call.code == CONTROL_OK)
            control_fail(&call, CONTROL_INTERNAL, "command '%s' produced no result", req->command);
        reply_error(self, routing_id, call.code, call.error);
        msgpack_sbuffer_destroy(&result_buf);
        return;
    }
    reply_ok(self, routing_id, &result_buf);
    msgpack_sbuffer_destroy(&result_buf);
}

control_ticket_t control_defer(control_call_t *call)
{
    call->deferred = true;
    return call->ticket;
}

int control_complete(control_t *self, control_ticket_t ticket, const msgpack_sbuffer *result,
                     control_code_t code, const char *error)
{
    for (size_t i = 0; i < self->pending_count; i++) {
        if (self->pending[i].ticket != ticket)
            continue;
        zframe_t *routing_id = self->pending[i].routing_id;
        self->pending[i] = self->pending[--self->pending_count];
        if (code == CONTROL_OK && result && result->size)
            reply_ok(self, routing_id, result);
        else
            reply_error(self, routing_id, code == CONTROL_OK ? CONTROL_INTERNAL : code,
                        error ? error : "no result");
        return 0;
    }
    return -1;
}

void control_handle(control_t *self)
{
    zmsg_t *msg = zmsg_recv(self->socket);
    if (!msg)
        return;
    self->requests++;
    zframe_t *routing_id = zmsg_pop(msg);
    zframe_t *payload = zmsg_pop(msg);
    /* An empty delimiter frame (REQ-style clients) is tolerated. */
    if (payload && zframe_size(payload) == 0 && zmsg_size(msg) > 0) {
        zframe_destroy(&payload);
        payload = zmsg_pop(msg);
    }
    char err[256];
    if (!routing_id) {
        self->malformed++;
    } else if (!payload || zmsg_size(msg) != 0) {
        self->malformed++;
        log_warn("control", "malformed request: expected one payload frame");
        reply_error(self, routing_id, CONTROL_BAD_REQUEST, "malformed request: expected one payload frame");
        routing_id = NULL;
    } else {
        wire_envelope_t env;
        wire_control_request_t req;
        if (wire_envelope_decode(&env, zframe_data(payload), zframe_size(payload), err, sizeof(err)) != 0) {
            self->malformed++;
            log_warn("control", "malformed request (%zu bytes): %s", zframe_size(payload), err);
            char error[300];
            snprintf(error, sizeof(error), "malformed request: %s", err);
            reply_error(self, routing_id, CONTROL_BAD_REQUEST, error);
        } else {
            if (wire_control_request_decode(&env, &req, err, sizeof(err)) != 0) {
                self->malformed++;
                log_warn("control", "malformed request from '%s': %s", env.sender, err);
                char error[300];
                snprintf(error, sizeof(error), "malformed request: %s", err);
                reply_error(self, routing_id, CONTROL_BAD_REQUEST, error);
            } else {
                /* The ZAP handler named the key's role in the User-Id. */
                const char *role = zframe_meta(payload, "User-Id");
                bool from_peer = role && strcmp(role, ZAP_ROLE_PEER) == 0;
                log_debug("control", "%s from '%s'%s", req.command, env.sender, from_peer ? " (peer)" : "");
                dispatch(self, routing_id, &req, from_peer);
            }
            wire_envelope_release(&env);
        }
        routing_id = NULL;   /* send_reply took it */
    }
    zframe_destroy(&routing_id);
    zframe_destroy(&payload);
    zmsg_destroy(&msg);
}
