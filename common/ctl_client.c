/* ctl_client.c - see ctl_client.h. */
#include "common/ctl_client.h"

#include <stdatomic.h>

#include <czmq.h>
#include <stdio.h>
#include <string.h>

struct ctl_client {
    zsock_t *dealer;
    zsock_t *monitor;      /* PAIR receiving the dealer's socket events */
    char endpoint[256];
    int timeout_ms;
    bool handshake_done;
};

ctl_client_t *ctl_client_new(const char *endpoint, const char *server_public, const crypto_identity_t *client,
                             int timeout_ms)
{
    ctl_client_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    snprintf(self->endpoint, sizeof(self->endpoint), "%s", endpoint);
    self->timeout_ms = timeout_ms;
    self->dealer = zsock_new(ZMQ_DEALER);
    if (!self->dealer)
        goto fail;
    zsock_set_curve_serverkey(self->dealer, server_public);
    zsock_set_curve_publickey(self->dealer, client->public_z85);
    zsock_set_curve_secretkey(self->dealer, client->secret_z85);
    zsock_set_linger(self->dealer, 0);
    zsock_set_maxmsgsize(self->dealer, WIRE_MAX_FRAME);

    char monitor_endpoint[64];
    /* Unique for the process's life: a client made right after another was
     * destroyed may get the same address, while its monitor endpoint is
     * still being unbound. */
    static atomic_uint_fast64_t next_monitor;
    snprintf(monitor_endpoint, sizeof(monitor_endpoint), "inproc://ctl-monitor-%llu",
             (unsigned long long)atomic_fetch_add(&next_monitor, 1));
    if (zmq_socket_monitor(zsock_resolve(self->dealer), monitor_endpoint,
                           ZMQ_EVENT_CONNECT_RETRIED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0)
        goto fail;
    self->monitor = zsock_new_pair(monitor_endpoint);
    if (!self->monitor)
        goto fail;
    zsock_set_linger(self->monitor, 0);
    if (zsock_connect(self->dealer, "%s", endpoint) != 0)
        goto fail;
    return self;
fail:
    ctl_client_destroy(&self);
    return NULL;
}

void ctl_client_destroy(ctl_client_t **self_p)
{
    ctl_client_t *self = *self_p;
    if (!self)
        return;
    if (self->dealer)
        zmq_socket_monitor(zsock_resolve(self->dealer), NULL, 0);
    zsock_destroy(&self->monitor);
    zsock_destroy(&self->dealer);
    free(self);
    *self_p = NULL;
}

/* Reads one monitor event; returns its event id, or 0 if unreadable. */
static uint16_t read_event(ctl_client_t *self)
{
    zmsg_t *msg = zmsg_recv(self->monitor);
    if (!msg)
        return 0;
    uint16_t event = 0;
    zframe_t *first = zmsg_first(msg);
    if (first && zframe_size(first) >= 2)
        memcpy(&event, zframe_data(first), 2);
    zmsg_destroy(&msg);
    return event;
}

static ctl_status_t await_reply(ctl_client_t *self, ctl_response_t *response, char *err, size_t errlen)
{
    zpoller_t *poller = zpoller_new(self->dealer, self->monitor, NULL);
    int64_t deadline = zclock_mono() + self->timeout_ms;
    ctl_status_t status = CTL_ERR_TIMEOUT;
    bool refused = false;
    for (;;) {
        int64_t left = deadline - zclock_mono();
        if (left <= 0) {
            if (refused)
                snprintf(err, errlen, "cannot reach an agent at %s (connection refused or no route)",
                         self->endpoint);
            else
                snprintf(err, errlen, "no reply from the agent at %s within %d ms", self->endpoint,
                         self->timeout_ms);
            status = refused ? CTL_ERR_UNREACHABLE : CTL_ERR_TIMEOUT;
            break;
        }
        void *which = zpoller_wait(poller, (int)(left > 100 ? 100 : left));
        if (which == self->monitor) {
            uint16_t event = read_event(self);
            if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
                self->handshake_done = true;
            } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH || event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ||
                       event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
                snprintf(err, errlen,
                         "the agent at %s rejected this client's key (wrong credential, or the agent's "
                         "server key differs)", self->endpoint);
                status = CTL_ERR_REJECTED;
                break;
            } else if (event == ZMQ_EVENT_CONNECT_RETRIED && !self->handshake_done) {
                /* Give a starting agent a moment, but do not wait out the whole timeout. */
                refused = true;
                if (deadline - zclock_mono() > 1000)
                    deadline = zclock_mono() + 1000;
            }
            continue;
        }
        if (which != self->dealer) {
            if (zpoller_terminated(poller)) {
                snprintf(err, errlen, "interrupted");
                break;
            }
            continue;
        }
        zmsg_t *msg = zmsg_recv(self->dealer);
        zframe_t *frame = msg ? zmsg_first(msg) : NULL;
        char why[256];
        if (!frame || zmsg_size(msg) != 1 ||
            wire_envelope_decode(&response->envelope, zframe_data(frame), zframe_size(frame), why, sizeof(why)) != 0) {
            snprintf(err, errlen, "the agent at %s sent an invalid reply", self->endpoint);
            zmsg_destroy(&msg);
            status = CTL_ERR_PROTOCOL;
            break;
        }
        zmsg_destroy(&msg);
        if (wire_control_reply_decode(&response->envelope, &response->reply, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "the agent at %s sent an invalid reply: %s", self->endpoint, why);
            wire_envelope_release(&response->envelope);
            status = CTL_ERR_PROTOCOL;
            break;
        }
        if (response->reply.ok) {
            status = CTL_OK;
        } else {
            snprintf(err, errlen, "%s", response->reply.error);
            status = CTL_ERR_AGENT;
        }
        break;
    }
    zpoller_destroy(&poller);
    return status;
}

ctl_status_t ctl_send_raw(ctl_client_t *self, const void *bytes, size_t len, ctl_response_t *response,
                          char *err, size_t errlen)
{
    memset(response, 0, sizeof(*response));
    /* A connect()ed DEALER queues the request at once (ZMQ_IMMEDIATE is off),
     * so this does not block even while the handshake is still running. */
    zframe_t *frame = zframe_new(bytes, len);
    if (zframe_send(&frame, self->dealer, ZFRAME_DONTWAIT) != 0) {
        zframe_destroy(&frame);
        snprintf(err, errlen, "cannot queue a request to %s: %s", self->endpoint, zmq_strerror(zmq_errno()));
        return CTL_ERR_UNREACHABLE;
    }
    return await_reply(self, response, err, errlen);
}

ctl_status_t ctl_call(ctl_client_t *self, const char *command, const msgpack_sbuffer *args,
                      ctl_response_t *response, char *err, size_t errlen)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    char sender[64];
    snprintf(sender, sizeof(sender), "ferryctl/%d", (int)getpid());
    wire_envelope_begin(&pk, WIRE_CONTROL_REQUEST, sender);
    msgpack_pack_map(&pk, 2);
    wire_pack_kv_str(&pk, "command", command);
    wire_pack_str(&pk, "args");
    if (args && args->size)
        msgpack_sbuffer_write(&buf, args->data, args->size);
    else
        msgpack_pack_map(&pk, 0);
    ctl_status_t status = ctl_send_raw(self, buf.data, buf.size, response, err, errlen);
    msgpack_sbuffer_destroy(&buf);
    return status;
}

void ctl_response_release(ctl_response_t *response)
{
    wire_envelope_release(&response->envelope);
}
