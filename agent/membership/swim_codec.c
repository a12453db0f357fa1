/* swim_codec.c - SWIM messages, packets and push-pull payloads; see swim_codec.h. */
#include "agent/membership/swim_codec.h"

#include <errno.h>
#include <string.h>

/* Messages may carry fields beyond those this version knows; at most this many. */
#define MSG_MAX_FIELDS 32

const char *swim_state_name(swim_state_t state)
{
    switch (state) {
    case SWIM_ALIVE: return "alive";
    case SWIM_SUSPECT: return "suspect";
    case SWIM_DEAD: return "dead";
    case SWIM_LEFT: return "left";
    }
    return "unknown";
}

static bool str_fits(const char *s, size_t cap)
{
    return strnlen(s, cap) < cap;
}

int swim_msg_encode(const swim_msg_t *msg, uint8_t *buf, size_t cap, size_t *len)
{
    if (!str_fits(msg->node, sizeof(msg->node)) || !str_fits(msg->addr, sizeof(msg->addr)) ||
        !str_fits(msg->from, sizeof(msg->from)))
        return -EINVAL;
    wire_writer_t w;
    wire_writer_init(&w, buf, cap);
    msgpack_packer *pk = &w.pk;
    switch (msg->type) {
    case SWIM_MSG_PING:
        msgpack_pack_array(pk, 3);
        msgpack_pack_uint8(pk, SWIM_MSG_PING);
        msgpack_pack_uint32(pk, msg->seq);
        wire_write_str(&w, msg->node);
        break;
    case SWIM_MSG_ACK:
    case SWIM_MSG_NACK:
        msgpack_pack_array(pk, 2);
        msgpack_pack_uint8(pk, (uint8_t)msg->type);
        msgpack_pack_uint32(pk, msg->seq);
        break;
    case SWIM_MSG_PING_REQ:
        msgpack_pack_array(pk, 4);
        msgpack_pack_uint8(pk, SWIM_MSG_PING_REQ);
        msgpack_pack_uint32(pk, msg->seq);
        wire_write_str(&w, msg->node);
        wire_write_str(&w, msg->addr);
        break;
    case SWIM_MSG_ALIVE:
        if (msg->record_len > SWIM_RECORD_MAX)
            return -EINVAL;
        msgpack_pack_array(pk, 5);
        msgpack_pack_uint8(pk, SWIM_MSG_ALIVE);
        wire_write_str(&w, msg->node);
        wire_write_str(&w, msg->addr);
        msgpack_pack_uint64(pk, msg->incarnation);
        wire_write_bin(&w, msg->record, msg->record_len);
        break;
    case SWIM_MSG_SUSPECT:
    case SWIM_MSG_DEAD:
        msgpack_pack_array(pk, 4);
        msgpack_pack_uint8(pk, (uint8_t)msg->type);
        wire_write_str(&w, msg->node);
        msgpack_pack_uint64(pk, msg->incarnation);
        wire_write_str(&w, msg->from);
        break;
    default:
        return -EINVAL;
    }
    if (w.overflow)
        return -EMSGSIZE;
    *len = w.len;
    return 0;
}

/* The number of fields each known type needs. */
static uint32_t fields_needed(uint64_t type)
{
    switch (type) {
    case SWIM_MSG_PING: return 3;
    case SWIM_MSG_ACK: case SWIM_MSG_NACK: return 2;
    case SWIM_MSG_PING_REQ: return 4;
    case SWIM_MSG_ALIVE: return 5;
    case SWIM_MSG_SUSPECT: case SWIM_MSG_DEAD: return 4;
    default: return 1;
    }
}

/* Reads one message. Returns 1 if it was of a known type, 0 if it was skipped. */
static int decode_msg(wire_reader_t *r, swim_msg_t *m)
{
    uint32_t fields;
    uint64_t type;
    if (wire_read_array(r, &fields, 1, MSG_MAX_FIELDS, "message") < 0 ||
        wire_read_uint(r, &type, "message.type") < 0)
        return -EBADMSG;
    uint32_t need = fields_needed(type);
    if (need == 1)   /* unknown type: step over the rest */
        return wire_skip_n(r, fields - 1, "message.unknown") < 0 ? -EBADMSG : 0;
    if (fields < need)
        return wire_fail(r, "message: too few fields");
    memset(m, 0, sizeof(*m));
    m->type = (swim_msg_type_t)type;
    bool bad = false;
    switch (m->type) {
    case SWIM_MSG_PING:
        bad = wire_read_u32(r, &m->seq, "ping.seq") < 0 ||
              wire_read_str(r, m->node, sizeof(m->node), "ping.node") < 0;
        break;
    case SWIM_MSG_ACK:
        bad = wire_read_u32(r, &m->seq, "ack.seq") < 0;
        break;
    case SWIM_MSG_NACK:
        bad = wire_read_u32(r, &m->seq, "nack.seq") < 0;
        break;
    case SWIM_MSG_PING_REQ:
        bad = wire_read_u32(r, &m->seq, "ping_req.seq") < 0 ||
              wire_read_str(r, m->node, sizeof(m->node), "ping_req.node") < 0 ||
              wire_read_str(r, m->addr, sizeof(m->addr), "ping_req.addr") < 0;
        break;
    case SWIM_MSG_ALIVE:
        bad = wire_read_str(r, m->node, sizeof(m->node), "alive.node") < 0 ||
              wire_read_str(r, m->addr, sizeof(m->addr), "alive.addr") < 0 ||
              wire_read_uint(r, &m->incarnation, "alive.incarnation") < 0 ||
              wire_read_bin(r, &m->record, &m->record_len, SWIM_RECORD_MAX, "alive.record") < 0;
        break;
    case SWIM_MSG_SUSPECT:
        bad = wire_read_str(r, m->node, sizeof(m->node), "suspect.node") < 0 ||
              wire_read_uint(r, &m->incarnation, "suspect.incarnation") < 0 ||
              wire_read_str(r, m->from, sizeof(m->from), "suspect.from") < 0;
        break;
    case SWIM_MSG_DEAD:
        bad = wire_read_str(r, m->node, sizeof(m->node), "dead.node") < 0 ||
              wire_read_uint(r, &m->incarnation, "dead.incarnation") < 0 ||
              wire_read_str(r, m->from, sizeof(m->from), "dead.from") < 0;
        break;
    }
    if (bad)
        return -EBADMSG;
    /* Names identify members: an empty one is never valid. */
    if (m->type != SWIM_MSG_ACK && m->type != SWIM_MSG_NACK && m->node[0] == '\0')
        return wire_fail(r, "message: empty node name");
    if (wire_skip_n(r, fields - need, "message.extra") < 0)
        return -EBADMSG;
    return 1;
}

static void set_error(swim_decode_error_t *err, const wire_reader_t *r, const char *fallback)
{
    if (err) {
        err->what = r->error ? r->error : fallback;
        err->at = r->error ? r->error_at : r->pos;
    }
}

int swim_packet_decode(const uint8_t *buf, size_t len, swim_packet_t *packet,
                       swim_decode_error_t *err)
{
    wire_reader_t r;
    wire_reader_init(&r, buf, len);
    packet->count = 0;
    uint64_t version;
    if (wire_read_uint(&r, &version, "packet.version") < 0)
        goto bad;
    if (version != SWIM_PROTOCOL_VERSION) {
        wire_fail(&r, "packet.version: unsupported");
        goto bad;
    }
    if (wire_read_str(&r, packet->sender, sizeof(packet->sender), "packet.sender") < 0)
        goto bad;
    if (packet->sender[0] == '\0') {
        wire_fail(&r, "packet.sender: empty");
        goto bad;
    }
    while (wire_reader_left(&r) > 0) {
        if (packet->count == SWIM_PACKET_MAX_MSGS) {
            wire_fail(&r, "packet: too many messages");
            goto bad;
        }
        int rc = decode_msg(&r, &packet->msgs[packet->count]);
        if (rc < 0)
            goto bad;
        packet->count += (size_t)rc;
    }
    return 0;
bad:
    set_error(err, &r, "packet");
    packet->count = 0;
    return -EBADMSG;
}

int swim_packet_begin(swim_packet_builder_t *b, uint8_t *buf, size_t cap, const char *sender)
{
    wire_writer_init(&b->w, buf, cap);
    b->count = 0;
    msgpack_pack_uint8(&b->w.pk, SWIM_PROTOCOL_VERSION);
    wire_write_str(&b->w, sender);
    return b->w.overflow ? -EMSGSIZE : 0;
}

bool swim_packet_add(swim_packet_builder_t *b, const uint8_t *msg, size_t len)
{
    if (b->count >= SWIM_PACKET_MAX_MSGS || len > swim_packet_room(b))
        return false;
    wire_write_raw(&b->w, msg, len);
    b->count++;
    return true;
}

size_t swim_packet_room(const swim_packet_builder_t *b)
{
    return b->w.overflow ? 0 : b->w.cap - b->w.len;
}

size_t swim_packet_len(const swim_packet_builder_t *b)
{
    return b->w.len;
}

/* --- push-pull ---------------------------------------------------------- */

void swim_pushpull_write_header(wire_writer_t *w, const char *sender, const char *sender_addr,
                                bool wants_reply, uint32_t count)
{
    msgpack_pack_uint8(&w->pk, SWIM_PROTOCOL_VERSION);
    wire_write_str(w, sender);
    wire_write_str(w, sender_addr);
    if (wants_reply)
        msgpack_pack_true(&w->pk);
    else
        msgpack_pack_false(&w->pk);
    msgpack_pack_array(&w->pk, count);
}

void swim_pushpull_write_member(wire_writer_t *w, const swim_pp_member_t *m)
{
    msgpack_pack_array(&w->pk, 5);
    wire_write_str(w, m->name);
    wire_write_str(w, m->addr);
    msgpack_pack_uint8(&w->pk, (uint8_t)m->state);
    msgpack_pack_uint64(&w->pk, m->incarnation);
    wire_write_bin(w, m->record, m->record_len);
}

size_t swim_pushpull_member_size(const swim_pp_member_t *m)
{
    /* array + 2 str headers + state + uint64 + bin header, generously */
    return 1 + 5 + strlen(m->name) + 5 + strlen(m->addr) + 1 + 9 + 5 + m->record_len;
}

int swim_pushpull_open(swim_pushpull_reader_t *pr, const uint8_t *buf, size_t len,
                       swim_decode_error_t *err)
{
    memset(pr, 0, sizeof(*pr));
    wire_reader_init(&pr->r, buf, len);
    wire_reader_t *r = &pr->r;
    uint64_t version;
    if (len > SWIM_PUSHPULL_MAX_BYTES) {
        wire_fail(r, "pushpull: too large");
        goto bad;
    }
    if (wire_read_uint(r, &version, "pushpull.version") < 0)
        goto bad;
    if (version != SWIM_PROTOCOL_VERSION) {
        wire_fail(r, "pushpull.version: unsupported");
        goto bad;
    }
    if (wire_read_str(r, pr->sender, sizeof(pr->sender), "pushpull.sender") < 0 ||
        wire_read_str(r, pr->sender_addr, sizeof(pr->sender_addr), "pushpull.sender_addr") < 0 ||
        wire_read_bool(r, &pr->wants_reply, "pushpull.wants_reply") < 0 ||
        wire_read_array(r, &pr->count, 0, SWIM_PUSHPULL_MAX_MEMBERS, "pushpull.members") < 0)
        goto bad;
    if (pr->sender[0] == '\0' || pr->sender_addr[0] == '\0') {
        wire_fail(r, "pushpull.sender: empty");
        goto bad;
    }
    return 0;
bad:
    set_error(err, r, "pushpull");
    return -EBADMSG;
}

int swim_pushpull_next(swim_pushpull_reader_t *pr, swim_pp_member_t *m, swim_decode_error_t *err)
{
    wire_reader_t *r = &pr->r;
    if (r->error)
        goto bad;
    if (pr->read == pr->count) {
        if (wire_reader_left(r) == 0)
            return 0;
        wire_fail(r, "pushpull: trailing bytes");
        goto bad;
    }
    uint32_t fields, state;
    memset(m, 0, sizeof(*m));
    if (wire_read_array(r, &fields, 5, MSG_MAX_FIELDS, "pushpull.member") < 0 ||
        wire_read_str(r, m->name, sizeof(m->name), "pushpull.member.name") < 0 ||
        wire_read_str(r, m->addr, sizeof(m->addr), "pushpull.member.addr") < 0 ||
        wire_read_u32(r, &state, "pushpull.member.state") < 0)
        goto bad;
    if (state > SWIM_LEFT) {
        wire_fail(r, "pushpull.member.state: unknown");
        goto bad;
    }
    m->state = (swim_state_t)state;
    if (wire_read_uint(r, &m->incarnation, "pushpull.member.incarnation") < 0 ||
        wire_read_bin(r, &m->record, &m->record_len, SWIM_RECORD_MAX, "pushpull.member.record") < 0 ||
        wire_skip_n(r, fields - 5, "pushpull.member.extra") < 0)
        goto bad;
    if (m->name[0] == '\0' || m->addr[0] == '\0') {
        wire_fail(r, "pushpull.member: empty name or address");
        goto bad;
    }
    pr->read++;
    return 1;
bad:
    set_error(err, r, "pushpull");
    return -EBADMSG;
}
