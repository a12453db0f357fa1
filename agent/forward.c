/* forward.c - see forward.h. */
#include "agent/forward.h"
#include "common/ctl_client.h"
#include "common/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct request {
    struct request *next;
    forward_t *owner;
    control_ticket_t ticket;
    char command[64];
    char peer[64];
    char endpoint[300];
    char server_key[CRYPTO_Z85_LEN + 1];
    msgpack_sbuffer args;
    pthread_t thread;
    atomic_bool done;
    /* the answer, written by the thread before done */
    control_code_t code;
    char error[600];
    msgpack_sbuffer result;
} request_t;

struct forward {
    control_t *control;
    zloop_t *loop;
    crypto_identity_t identity;
    int wake_fd;
    request_t *requests;
    size_t in_flight;
};

static void *forward_thread(void *arg)
{
    request_t *req = arg;
    char why[600];
    ctl_client_t *client = ctl_client_new(req->endpoint, req->server_key, &req->owner->identity, FORWARD_TIMEOUT_MS);
    if (!client) {
        req->code = CONTROL_INTERNAL;
        snprintf(req->error, sizeof(req->error), "%s's control address '%s' is not valid", req->peer, req->endpoint);
    } else {
        ctl_response_t response;
        ctl_status_t status = ctl_call(client, req->command, req->args.size ? &req->args : NULL, &response, why,
                                       sizeof(why));
        if (status == CTL_OK) {
            msgpack_packer pk;
            msgpack_packer_init(&pk, &req->result, msgpack_sbuffer_write);
            if (response.reply.result)
                msgpack_pack_object(&pk, *response.reply.result);
            else
                msgpack_pack_map(&pk, 0);
            req->code = CONTROL_OK;
            ctl_response_release(&response);
        } else if (status == CTL_ERR_AGENT) {
            /* The peer's own error, as it said it (it names what it can). */
            req->code = (control_code_t)response.reply.code;
            snprintf(req->error, sizeof(req->error), "%s", response.reply.error);
            ctl_response_release(&response);
        } else {
            req->code = CONTROL_UNAVAILABLE;
            snprintf(req->error, sizeof(req->error), "cannot reach %s, which should answer this: %s", req->peer, why);
        }
        ctl_client_destroy(&client);
    }
    atomic_store(&req->done, true);
    uint64_t one = 1;
    ssize_t n = write(req->owner->wake_fd, &one, sizeof(one));
    (void)n;
    return NULL;
}

static void request_free(request_t *req)
{
    msgpack_sbuffer_destroy(&req->args);
    msgpack_sbuffer_destroy(&req->result);
    free(req);
}

/* Answers and frees every finished request. */
static void collect(forward_t *self, bool wait)
{
    request_t **link = &self->requests;
    while (*link) {
        request_t *req = *link;
        if (!wait && !atomic_load(&req->done)) {
            link = &req->next;
            continue;
        }
        pthread_join(req->thread, NULL);
        *link = req->next;
        self->in_flight--;
        control_complete(self->control, req->ticket, req->code == CONTROL_OK ? &req->result : NULL, req->code,
                         req->error);
        request_free(req);
    }
}

static int on_wake(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    forward_t *self = arg;
    uint64_t count;
    ssize_t n = read(self->wake_fd, &count, sizeof(count));
    (void)n;
    collect(self, false);
    return 0;
}

int forward_call(forward_t *self, control_call_t *call, const char *command, const char *peer, const char *endpoint,
                 const char *server_key)
{
    if (self->in_flight >= FORWARD_MAX_IN_FLIGHT)
        return control_fail(call, CONTROL_UNAVAILABLE, "too many requests forwarded to other agents; retry");
    request_t *req = calloc(1, sizeof(*req));
    if (!req)
        return control_fail(call, CONTROL_INTERNAL, "out of memory");
    req->owner = self;
    msgpack_sbuffer_init(&req->args);
    msgpack_sbuffer_init(&req->result);
    snprintf(req->command, sizeof(req->command), "%s", command);
    snprintf(req->peer, sizeof(req->peer), "%s", peer);
    snprintf(req->endpoint, sizeof(req->endpoint), "%s", endpoint);
    snprintf(req->server_key, sizeof(req->server_key), "%s", server_key);
    if (call->args) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, &req->args, msgpack_sbuffer_write);
        msgpack_pack_object(&pk, *call->args);
    }
    if (pthread_create(&req->thread, NULL, forward_thread, req) != 0) {
        request_free(req);
        return control_fail(call, CONTROL_INTERNAL, "cannot start a thread to ask %s", peer);
    }
    req->ticket = control_defer(call);
    req->next = self->requests;
    self->requests = req;
    self->in_flight++;
    log_debug("forward", "%s forwarded to %s", command, peer);
    return CONTROL_DEFERRED;
}

forward_t *forward_new(control_t *control, zloop_t *loop, const crypto_identity_t *identity, char *err, size_t errlen)
{
    forward_t *self = calloc(1, sizeof(*self));
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->control = control;
    self->loop = loop;
    self->identity = *identity;
    self->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->wake_fd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        free(self);
        return NULL;
    }
    zmq_pollitem_t item = { .fd = self->wake_fd, .events = ZMQ_POLLIN };
    zloop_poller(loop, &item, on_wake, self);
    return self;
}

void forward_destroy(forward_t **self_p)
{
    forward_t *self = *self_p;
    if (!self)
        return;
    collect(self, true);
    zmq_pollitem_t item = { .fd = self->wake_fd, .events = ZMQ_POLLIN };
    zloop_poller_end(self->loop, &item);
    close(self->wake_fd);
    free(self);
    *self_p = NULL;
}
