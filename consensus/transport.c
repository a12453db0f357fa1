/* transport.c - see transport.h. */
#include "consensus/transport.h"
#include "common/log.h"
#include "consensus/raft_codec.h"

#include <string.h>

#define MAX_PEERS (2 * RAFT_MAX_MEMBERS)
#define PEER_HWM 1024
#define MAX_FRAME (RAFT_MAX_SNAPSHOT_BYTES + (1u << 20))

typedef struct {
    uint64_t id;
    char endpoint[256];
    char public_z85[CRYPTO_Z85_LEN + 1];
    zsock_t *dealer;
    zsock_t *monitor;       /* the dealer's handshake events */
    bool redial;            /* its handshake was refused: dial again */
    unsigned dials;
} peer_t;

struct raft_transport {
    uint64_t self_id;
    crypto_identity_t identity;
    zap_t *zap;
    zsock_t *router;
    char endpoint[256];
    peer_t peers[MAX_PEERS];
    size_t peer_count;
    uint64_t dropped, malformed;
};

/* A peer that did not know our key yet refuses the handshake, and libzmq
 * does not dial again after a refusal. Membership makes the keys known
 * within a gossip round, so a refused dealer is simply dialled again by
 * raft_transport_maintain(). The monitor is how we learn of the refusal. */
static void close_dealer(peer_t *peer)
{
    if (peer->dealer)
        zmq_socket_monitor(zsock_resolve(peer->dealer), NULL, 0);
    zsock_destroy(&peer->monitor);
    zsock_destroy(&peer->dealer);
}

static void watch_dealer(peer_t *peer)
{
    /* A fresh name each time: libzmq unbinds an old monitor endpoint
     * asynchronously, and a reused name could fail to bind. */
    char endpoint[96];
    snprintf(endpoint, sizeof(endpoint), "inproc://raft-peer-%016llx-%u", (unsigned long long)peer->id,
             ++peer->dials);
    if (zmq_socket_monitor(zsock_resolve(peer->dealer), endpoint,
                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) == 0)
        peer->monitor = zsock_new_pair(endpoint);
}

raft_transport_t *raft_transport_new(uint64_t self_id, const char *bind_endpoint, const crypto_identity_t *identity,
                                     zap_t *zap, char *err, size_t errlen)
{
    raft_transport_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->self_id = self_id;
    self->identity = *identity;
    self->zap = zap;
    self->router = zsock_new(ZMQ_ROUTER);
    if (!self->router)
        goto fail;
    zsock_set_curve_server(self->router, 1);
    zsock_set_curve_secretkey(self->router, identity->secret_z85);
    zsock_set_zap_domain(self->router, "raft");
    zsock_set_maxmsgsize(self->router, MAX_FRAME);
    zsock_set_rcvhwm(self->router, 10000);
    zsock_set_linger(self->router, 0);
    if (zsock_bind(self->router, "%s", bind_endpoint) < 0) {
        snprintf(err, errlen, "cannot bind Raft transport at %s: %s", bind_endpoint, zmq_strerror(zmq_errno()));
        goto fail;
    }
    char *bound = zsock_last_endpoint(self->router);
    snprintf(self->endpoint, sizeof(self->endpoint), "%s", bound ? bound : bind_endpoint);
    zstr_free(&bound);
    return self;
fail:
    raft_transport_destroy(&self);
    return NULL;
}

void raft_transport_destroy(raft_transport_t **self_p)
{
    raft_transport_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->peer_count; i++)
        close_dealer(&self->peers[i]);
    zsock_destroy(&self->router);
    free(self);
    *self_p = NULL;
}

zsock_t *raft_transport_socket(raft_transport_t *self) { return self->router; }
const char *raft_transport_endpoint(const raft_transport_t *self) { return self->endpoint; }
uint64_t raft_transport_dropped(const raft_transport_t *self) { return self->dropped; }
uint64_t raft_transport_malformed(const raft_transport_t *self) { return self->malformed; }

static peer_t *find_peer(const raft_transport_t *self, uint64_t id)
{
    for (size_t i = 0; i < self->peer_count; i++)
        if (self->peers[i].id == id)
            return (peer_t *)&self->peers[i];
    return NULL;
}

bool raft_transport_has_peer(const raft_transport_t *self, uint64_t id)
{
    return find_peer(self, id) != NULL;
}

static zsock_t *connect_dealer(const raft_transport_t *self, const peer_t *peer)
{
    zsock_t *dealer = zsock_new(ZMQ_DEALER);
    if (!dealer)
        return NULL;
    zsock_set_curve_serverkey(dealer, peer->public_z85);
    zsock_set_curve_publickey(dealer, self->identity.public_z85);
    zsock_set_curve_secretkey(dealer, self->identity.secret_z85);
    zsock_set_sndhwm(dealer, PEER_HWM);
    zsock_set_linger(dealer, 0);
    /* Reconnect fast: failover time is bounded by how soon peers find each other again. */
    zsock_set_reconnect_ivl(dealer, 50);
    zsock_set_reconnect_ivl_max(dealer, 500);
    if (zsock_connect(dealer, "%s", peer->endpoint) != 0) {
        zsock_destroy(&dealer);
        return NULL;
    }
    return dealer;
}

int raft_transport_set_peer(raft_transport_t *self, uint64_t id, const char *endpoint, const char *public_z85)
{
    if (id == RAFT_NONE || id == self->self_id || !crypto_z85_key_valid(public_z85) || strlen(endpoint) >= 256)
        return -1;
    peer_t *peer = find_peer(self, id);
    if (peer && strcmp(peer->endpoint, endpoint) == 0 && strcmp(peer->public_z85, public_z85) == 0)
        return 0;
    if (!peer) {
        if (self->peer_count == MAX_PEERS)
            return -1;
        peer = &self->peers[self->peer_count++];
        memset(peer, 0, sizeof(*peer));
        peer->id = id;
    } else {
        zap_revoke(self->zap, "raft", peer->public_z85);
        close_dealer(peer);
    }
    snprintf(peer->endpoint, sizeof(peer->endpoint), "%s", endpoint);
    snprintf(peer->public_z85, sizeof(peer->public_z85), "%s", public_z85);
    zap_allow(self->zap, "raft", public_z85, ZAP_ROLE_PEER);
    peer->dealer = connect_dealer(self, peer);
    if (peer->dealer)
        watch_dealer(peer);
    if (!peer->dealer)
        log_warn("raft", "cannot connect to peer %016llx at %s", (unsigned long long)id, endpoint);
    else
        log_info("raft", "peer %016llx at %s", (unsigned long long)id, endpoint);
    return peer->dealer ? 0 : -1;
}

void raft_transport_remove_peer(raft_transport_t *self, uint64_t id)
{
    peer_t *peer = find_peer(self, id);
    if (!peer)
        return;
    zap_revoke(self->zap, "raft", peer->public_z85);
    close_dealer(peer);
    *peer = self->peers[--self->peer_count];
}

void raft_transport_maintain(raft_transport_t *self)
{
    for (size_t i = 0; i < self->peer_count; i++) {
        peer_t *peer = &self->peers[i];
        while (peer->monitor && zsock_events(peer->monitor) & ZMQ_POLLIN) {
            zmsg_t *event = zmsg_recv(peer->monitor);
            zmsg_destroy(&event);
            peer->redial = true;
        }
        if (!peer->redial && peer->dealer)
            continue;
        close_dealer(peer);
        peer->redial = false;
        peer->dealer = connect_dealer(self, peer);
        if (peer->dealer) {
            watch_dealer(peer);
            log_debug("raft", "dialling %016llx at %s again", (unsigned long long)peer->id, peer->endpoint);
        }
    }
}

/* Sends [kind][payload] to a peer without blocking. */
static int send_frames(raft_transport_t *self, uint64_t to, transport_kind_t kind, const void *payload, size_t len)
{
    peer_t *peer = find_peer(self, to);
    if (!peer || !peer->dealer) {
        self->dropped++;
        return -1;
    }
    uint8_t k = (uint8_t)kind;
    void *handle = zsock_resolve(peer->dealer);
    if (zmq_send(handle, &k, 1, ZMQ_SNDMORE | ZMQ_DONTWAIT) != 1) {
        self->dropped++;
        return -1;
    }
    /* The first frame is queued, so the second is accepted atomically with it. */
    zmq_send(handle, payload, len, ZMQ_DONTWAIT);
    return 0;
}

int raft_transport_send(raft_transport_t *self, const raft_msg_t *msg)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = raft_msg_encode(msg, &buf, &len);
    if (rc != 0) {
        log_warn("raft", "cannot encode %s: %s", raft_msg_type_name(msg->type), raft_strerror(rc));
        return -1;
    }
    rc = send_frames(self, msg->to, TRANSPORT_RAFT, buf, len);
    free(buf);
    return rc;
}

int raft_transport_send_encoded(raft_transport_t *self, uint64_t to, const uint8_t *bytes, size_t len)
{
    return send_frames(self, to, TRANSPORT_RAFT, bytes, len);
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

int raft_transport_forward(raft_transport_t *self, uint64_t leader, uint64_t request_id, const void *payload,
                           size_t len)
{
    if (len > RAFT_MAX_ENTRY_BYTES)
        return -1;
    uint8_t *buf = malloc(16 + len);
    if (!buf)
        return -1;
    put_u64(buf, request_id);
    put_u64(buf + 8, self->self_id);
    memcpy(buf + 16, payload, len);
    int rc = send_frames(self, leader, TRANSPORT_FORWARD, buf, 16 + len);
    free(buf);
    return rc;
}

int raft_transport_answer(raft_transport_t *self, const transport_in_t *in, uint64_t index, uint64_t term,
                          int32_t error)
{
    uint8_t buf[28];
    put_u64(buf, in->request_id);
    put_u64(buf + 8, index);
    put_u64(buf + 16, term);
    uint32_t e = (uint32_t)error;
    for (int i = 0; i < 4; i++)
        buf[24 + i] = (uint8_t)(e >> (8 * i));
    return send_frames(self, in->sender, TRANSPORT_FORWARD_RESULT, buf, sizeof(buf));
}

int raft_transport_recv(raft_transport_t *self, transport_in_t *in)
{
    memset(in, 0, sizeof(*in));
    zmsg_t *msg = zmsg_recv(self->router);
    if (!msg)
        return -1;
    zframe_t *route = zmsg_pop(msg);
    zframe_t *kind = zmsg_pop(msg);
    zframe_t *payload = zmsg_pop(msg);
    int rc = -1;
    const char *why = "expected [kind][payload]";
    raft_decode_error_t derr;
    if (route && kind && payload && zframe_size(kind) == 1 && zmsg_size(msg) == 0) {
        const uint8_t *p = zframe_data(payload);
        size_t n = zframe_size(payload);
        in->kind = (transport_kind_t)zframe_data(kind)[0];
        switch (in->kind) {
        case TRANSPORT_RAFT:
            if (raft_msg_decode(p, n, &in->msg, &derr) == 0)
                rc = 0;
            else
                why = derr.what;
            break;
        case TRANSPORT_FORWARD:
            if (n >= 16 && n - 16 <= RAFT_MAX_ENTRY_BYTES) {
                in->request_id = get_u64(p);
                in->sender = get_u64(p + 8);
                in->payload = p + 16;
                in->payload_len = n - 16;
                rc = 0;
            } else {
                why = "forwarded proposal of a bad size";
            }
            break;
        case TRANSPORT_FORWARD_RESULT:
            if (n == 28) {
                in->request_id = get_u64(p);
                in->index = get_u64(p + 8);
                in->term = get_u64(p + 16);
                in->error = (int32_t)(p[24] | p[25] << 8 | p[26] << 16 | (uint32_t)p[27] << 24);
                rc = 0;
            } else {
                why = "forward result of a bad size";
            }
            break;
        default:
            why = "unknown frame kind";
        }
    }
    if (rc == 0) {
        in->frame_ = payload;
        payload = NULL;
    } else {
        self->malformed++;
        log_warn("raft", "dropped a malformed frame: %s", why);
    }
    zframe_destroy(&route);
    zframe_destroy(&kind);
    zframe_destroy(&payload);
    zmsg_destroy(&msg);
    return rc;
}

void raft_transport_release(transport_in_t *in)
{
    if (in->kind == TRANSPORT_RAFT && in->frame_)
        raft_msg_release(&in->msg);
    zframe_destroy(&in->frame_);
}
