/* zap.c - see zap.h. */
#include "agent/zap.h"
#include "common/log.h"

#include <string.h>

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"

struct zap {
    zsock_t *socket;
    zhash_t *allowed;     /* "domain/z85key" -> its role (a static ZAP_ROLE_* string) */
    uint64_t accepted;
    uint64_t rejected;
};

zap_t *zap_new(void)
{
    zap_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->socket = zsock_new(ZMQ_REP);
    self->allowed = zhash_new();
    if (!self->socket || !self->allowed || zsock_bind(self->socket, ZAP_ENDPOINT) != 0) {
        log_error("zap", "cannot bind the ZAP handler at %s", ZAP_ENDPOINT);
        zap_destroy(&self);
        return NULL;
    }
    return self;
}

void zap_destroy(zap_t **self_p)
{
    zap_t *self = *self_p;
    if (!self)
        return;
    zsock_destroy(&self->socket);
    zhash_destroy(&self->allowed);
    free(self);
    *self_p = NULL;
}

zsock_t *zap_socket(zap_t *self) { return self->socket; }
uint64_t zap_accepted(const zap_t *self) { return self->accepted; }
uint64_t zap_rejected(const zap_t *self) { return self->rejected; }

static int allow_key(const char *domain, const char *public_z85, char *out, size_t cap)
{
    if (!public_z85 || strlen(public_z85) != 40)
        return -1;
    int n = snprintf(out, cap, "%s/%s", domain, public_z85);
    return (n > 0 && (size_t)n < cap) ? 0 : -1;
}

int zap_allow(zap_t *self, const char *domain, const char *public_z85, const char *role)
{
    char key[128];
    if (allow_key(domain, public_z85, key, sizeof(key)) != 0)
        return -1;
    zhash_update(self->allowed, key, (void *)role);
    return 0;
}

void zap_revoke(zap_t *self, const char *domain, const char *public_z85)
{
    char key[128];
    if (allow_key(domain, public_z85, key, sizeof(key)) == 0)
        zhash_delete(self->allowed, key);
}

/* Copies a frame's bytes as a C string into out (truncating if needed). */
static void frame_text(zframe_t *frame, char *out, size_t cap)
{
    size_t n = frame ? zframe_size(frame) : 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(out, zframe_data(frame), n);
    out[n] = '\0';
}

void zap_handle(zap_t *self)
{
    zmsg_t *request = zmsg_recv(self->socket);
    if (!request)
        return;
    /* version, request id, domain, address, routing id, mechanism, credentials... */
    zframe_t *version = zmsg_pop(request);
    zframe_t *request_id = zmsg_pop(request);
    zframe_t *domain = zmsg_pop(request);
    zframe_t *address = zmsg_pop(request);
    zframe_t *routing_id = zmsg_pop(request);
    zframe_t *mechanism = zmsg_pop(request);
    zframe_t *credentials = zmsg_pop(request);

    char domain_text[64], address_text[128], mechanism_text[16], key_z85[41] = "";
    frame_text(domain, domain_text, sizeof(domain_text));
    frame_text(address, address_text, sizeof(address_text));
    frame_text(mechanism, mechanism_text, sizeof(mechanism_text));

    const char *status = "400", *reason = "unknown key", *role = "";
    if (!version || !zframe_streq(version, "1.0")) {
        reason = "bad ZAP version";
    } else if (strcmp(mechanism_text, "CURVE") != 0) {
        reason = "CURVE required";
    } else if (credentials && zframe_size(credentials) == 32) {
        zmq_z85_encode(key_z85, zframe_data(credentials), 32);
        char key[128];
        if (allow_key(domain_text, key_z85, key, sizeof(key)) == 0 && (role = zhash_lookup(self->allowed, key))) {
            status = "200";
            reason = "OK";
        }
    }
    if (strcmp(status, "200") == 0) {
        self->accepted++;
        log_debug("zap", "admitted %s %s key %s from %s", domain_text, role, key_z85, address_text);
    } else {
        self->rejected++;
        log_warn("zap", "rejected %s client from %s: %s%s%s", domain_text, address_text, reason,
                 key_z85[0] ? " " : "", key_z85);
    }

    zmsg_t *reply = zmsg_new();
    zmsg_addstr(reply, "1.0");
    if (request_id)
        zmsg_append(reply, &request_id);
    else
        zmsg_addstr(reply, "");
    zmsg_addstr(reply, status);
    zmsg_addstr(reply, reason);
    zmsg_addstr(reply, strcmp(status, "200") == 0 ? role : "");   /* User-Id */
    zmsg_addmem(reply, NULL, 0);   /* no metadata */
    zmsg_send(&reply, self->socket);

    zframe_destroy(&version);
    zframe_destroy(&request_id);
    zframe_destroy(&domain);
    zframe_destroy(&address);
    zframe_destroy(&routing_id);
    zframe_destroy(&mechanism);
    zframe_destroy(&credentials);
    zmsg_destroy(&request);
}
