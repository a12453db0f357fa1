/* raft_codec.c - see raft_codec.h. Encoding uses msgpack-c's packer; decoding
 * is a small bounded reader over the bytes. */
#include "consensus/raft_codec.h"

#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIELD_COUNT 14
#define FLAG_REJECT 1u
#define FLAG_FORCE 2u

/* --- encoding ------------------------------------------------------------ */

static int check_encodable(const raft_msg_t *m)
{
    if (m->type == 0 || m->type >= RAFT_MSG_TYPE_MAX || (m->n_entries && !m->entries))
        return RAFT_ERR_INVALID;
    if (m->n_entries > RAFT_MAX_MSG_ENTRIES)
        return RAFT_ERR_TOO_BIG;
    for (size_t i = 0; i < m->n_entries; i++) {
        if (m->entries[i].len > RAFT_MAX_ENTRY_BYTES)
            return RAFT_ERR_TOO_BIG;
        if (m->entries[i].type > RAFT_ENTRY_CONFIG)
            return RAFT_ERR_INVALID;
    }
    const raft_snapshot_t *s = m->snapshot;
    if (s && (s->len > RAFT_MAX_SNAPSHOT_BYTES || s->conf.n_voters > RAFT_MAX_MEMBERS ||
              s->conf.n_learners > RAFT_MAX_MEMBERS))
        return RAFT_ERR_TOO_BIG;
    return 0;
}

static void pack_bin(msgpack_packer *pk, const uint8_t *data, size_t len)
{
    msgpack_pack_bin(pk, len);
    if (len)
        msgpack_pack_bin_body(pk, data, len);
}

static void pack_ids(msgpack_packer *pk, const uint64_t *ids, size_t n)
{
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++)
        msgpack_pack_uint64(pk, ids[i]);
}

int raft_msg_encode(const raft_msg_t *m, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    int rc = check_encodable(m);
    if (rc != 0)
        return rc;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, FIELD_COUNT);
    msgpack_pack_uint64(&pk, RAFT_CODEC_VERSION);
    msgpack_pack_uint64(&pk, m->type);
    msgpack_pack_uint64(&pk, m->from);
    msgpack_pack_uint64(&pk, m->to);
    msgpack_pack_uint64(&pk, m->term);
    msgpack_pack_uint64(&pk, m->log_term);
    msgpack_pack_uint64(&pk, m->index);
    msgpack_pack_uint64(&pk, m->commit);
    msgpack_pack_uint64(&pk, (m->reject ? FLAG_REJECT : 0) | (m->force ? FLAG_FORCE : 0));
    msgpack_pack_uint64(&pk, m->hint_index);
    msgpack_pack_uint64(&pk, m->hint_term);
    msgpack_pack_uint64(&pk, m->context);
    msgpack_pack_array(&pk, m->n_entries);
    for (size_t i = 0; i < m->n_entries; i++) {
        const raft_entry_t *e = &m->entries[i];
        msgpack_pack_array(&pk, 4);
        msgpack_pack_uint64(&pk, e->term);
        msgpack_pack_uint64(&pk, e->index);
        msgpack_pack_uint64(&pk, e->type);
        pack_bin(&pk, e->data, e->len);
    }
    const raft_snapshot_t *s = m->snapshot;
    if (s) {
        msgpack_pack_array(&pk, 5);
        msgpack_pack_uint64(&pk, s->index);
        msgpack_pack_uint64(&pk, s->term);
        pack_ids(&pk, s->conf.voters, s->conf.n_voters);
        pack_ids(&pk, s->conf.learners, s->conf.n_learners);
        pack_bin(&pk, s->data, s->len);
    } else {
        msgpack_pack_nil(&pk);
    }
    if (!sb.data) {   /* msgpack-c reports no allocation failure; an empty buffer is one */
        msgpack_sbuffer_destroy(&sb);
        return RAFT_ERR_NOMEM;
    }
    *out_len = sb.size;
    *out = (uint8_t *)msgpack_sbuffer_release(&sb);
    return 0;
}

/* --- decoding ------------------------------------------------------------ */

typedef struct {
    const uint8_t *p;
    size_t len, off;
    raft_decode_error_t *err;
    bool failed;
} reader_t;

__attribute__((format(printf, 2, 3)))
static bool fail(reader_t *rd, const char *fmt, ...)
{
    if (!rd->failed && rd->err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(rd->err->what, sizeof(rd->err->what), fmt, ap);
        va_end(ap);
        rd->err->offset = rd->off;
    }
    rd->failed = true;
    return false;
}

static size_t left(const reader_t *rd) { return rd->len - rd->off; }

static bool read_be(reader_t *rd, const char *field, int nbytes, uint64_t *v)
{
    if (left(rd) < (size_t)nbytes)
        return fail(rd, "%s: truncated", field);
    *v = 0;
    for (int i = 0; i < nbytes; i++)
        *v = (*v << 8) | rd->p[rd->off++];
    return true;
}

static bool read_tag(reader_t *rd, const char *field, uint8_t *tag)
{
    if (left(rd) < 1)
        return fail(rd, "%s: truncated", field);
    *tag = rd->p[rd->off++];
    return true;
}

static bool read_uint(reader_t *rd, const char *field, uint64_t *v)
{
    uint8_t tag = 0;
    if (!read_tag(rd, field, &tag))
        return false;
    if (tag <= 0x7f) {
        *v = tag;
        return true;
    }
    switch (tag) {
    case 0xcc: return read_be(rd, field, 1, v);
    case 0xcd: return read_be(rd, field, 2, v);
    case 0xce: return read_be(rd, field, 4, v);
    case 0xcf: return read_be(rd, field, 8, v);
    }
    rd->off--;
    return fail(rd, "%s: not an unsigned integer (tag 0x%02x)", field, tag);
}

/* An array header of at most `max` elements, each needing at least one byte. */
static bool read_array(reader_t *rd, const char *field, size_t max, size_t *n)
{
    uint8_t tag = 0;
    uint64_t count = 0;
    if (!read_tag(rd, field, &tag))
        return false;
    if ((tag & 0xf0) == 0x90)
        count = tag & 0x0f;
    else if (tag == 0xdc) {
        if (!read_be(rd, field, 2, &count))
            return false;
    } else if (tag == 0xdd) {
        if (!read_be(rd, field, 4, &count))
            return false;
    } else {
        rd->off--;
        return fail(rd, "%s: not an array (tag 0x%02x)", field, tag);
    }
    if (count > max)
        return fail(rd, "%s: %llu elements, limit %zu", field, (unsigned long long)count, max);
    if (count > left(rd))
        return fail(rd, "%s: %llu elements but %zu bytes left", field, (unsigned long long)count, left(rd));
    *n = (size_t)count;
    return true;
}

static bool read_bin(reader_t *rd, const char *field, size_t max, const uint8_t **data, size_t *len)
{
    uint8_t tag = 0;
    uint64_t n = 0;
    if (!read_tag(rd, field, &tag))
        return false;
    int width = tag == 0xc4 ? 1 : tag == 0xc5 ? 2 : tag == 0xc6 ? 4 : 0;
    if (!width) {
        rd->off--;
        return fail(rd, "%s: not a byte string (tag 0x%02x)", field, tag);
    }
    if (!read_be(rd, field, width, &n))
        return false;
    if (n > max)
        return fail(rd, "%s: %llu bytes, limit %zu", field, (unsigned long long)n, max);
    if (n > left(rd))
        return fail(rd, "%s: %llu bytes but %zu left", field, (unsigned long long)n, left(rd));
    *data = n ? rd->p + rd->off : NULL;
    *len = (size_t)n;
    rd->off += (size_t)n;
    return true;
}

static bool read_ids(reader_t *rd, const char *field, uint64_t *ids, size_t *n)
{
    if (!read_array(rd, field, RAFT_MAX_MEMBERS, n))
        return false;
    for (size_t i = 0; i < *n; i++)
        if (!read_uint(rd, field, &ids[i]))
            return false;
    return true;
}

static bool read_entries(reader_t *rd, raft_msg_t *out)
{
    size_t n;
    if (!read_array(rd, "entries", RAFT_MAX_MSG_ENTRIES, &n))
        return false;
    if (n == 0)
        return true;
    raft_entry_t *ents = calloc(n, sizeof(*ents));
    if (!ents)
        return fail(rd, "entries: out of memory for %zu", n);
    out->entries = ents;
    out->n_entries = n;
    char field[48];
    for (size_t i = 0; i < n; i++) {
        raft_entry_t *e = &ents[i];
        uint64_t type;
        size_t fields;
        snprintf(field, sizeof(field), "entries[%zu]", i);
        if (!read_array(rd, field, 4, &fields))
            return false;
        if (fields != 4)
            return fail(rd, "%s: %zu fields, want 4", field, fields);
        if (!read_uint(rd, field, &e->term) || !read_uint(rd, field, &e->index) ||
            !read_uint(rd, field, &type) || !read_bin(rd, field, RAFT_MAX_ENTRY_BYTES, &e->data, &e->len))
            return false;
        if (type > RAFT_ENTRY_CONFIG)
            return fail(rd, "%s: unknown entry type %llu", field, (unsigned long long)type);
        e->type = (uint8_t)type;
    }
    return true;
}

static bool read_snapshot(reader_t *rd, raft_msg_t *out)
{
    if (left(rd) >= 1 && rd->p[rd->off] == 0xc0) {   /* nil: no snapshot */
        rd->off++;
        return true;
    }
    size_t fields = 0;   /* set by read_array; gcc -O3 cannot tell */
    if (!read_array(rd, "snapshot", 5, &fields))
        return false;
    if (fields != 5)
        return fail(rd, "snapshot: %zu fields, want 5", fields);
    raft_snapshot_t *s = calloc(1, sizeof(*s));
    if (!s)
        return fail(rd, "snapshot: out of memory");
    out->snapshot = s;
    return read_uint(rd, "snapshot.index", &s->index) && read_uint(rd, "snapshot.term", &s->term) &&
           read_ids(rd, "snapshot.voters", s->conf.voters, &s->conf.n_voters) &&
           read_ids(rd, "snapshot.learners", s->conf.learners, &s->conf.n_learners) &&
           read_bin(rd, "snapshot.data", RAFT_MAX_SNAPSHOT_BYTES, &s->data, &s->len);
}

void raft_msg_release(raft_msg_t *m)
{
    free((void *)m->entries);
    free((void *)m->snapshot);
    m->entries = NULL;
    m->n_entries = 0;
    m->snapshot = NULL;
}

int raft_msg_decode(const uint8_t *buf, size_t len, raft_msg_t *out, raft_decode_error_t *err)
{
    memset(out, 0, sizeof(*out));
    if (err) {
        err->what[0] = '\0';
        err->offset = 0;
    }
    reader_t rd = { .p = buf, .len = buf ? len : 0, .err = err };
    size_t fields = 0;
    uint64_t version, type, flags;
    bool ok = read_array(&rd, "message", FIELD_COUNT, &fields) &&
              (fields == FIELD_COUNT || fail(&rd, "message: %zu fields, want %d", fields, FIELD_COUNT)) &&
              read_uint(&rd, "version", &version) &&
              (version == RAFT_CODEC_VERSION ||
               fail(&rd, "version: %llu, want %d", (unsigned long long)version, RAFT_CODEC_VERSION)) &&
              read_uint(&rd, "type", &type) &&
              ((type > 0 && type < RAFT_MSG_TYPE_MAX) ||
               fail(&rd, "type: unknown message type %llu", (unsigned long long)type)) &&
              read_uint(&rd, "from", &out->from) && read_uint(&rd, "to", &out->to) &&
              read_uint(&rd, "term", &out->term) && read_uint(&rd, "log_term", &out->log_term) &&
              read_uint(&rd, "index", &out->index) && read_uint(&rd, "commit", &out->commit) &&
              read_uint(&rd, "flags", &flags) &&
              ((flags & ~(uint64_t)(FLAG_REJECT | FLAG_FORCE)) == 0 ||
               fail(&rd, "flags: unknown bits 0x%llx", (unsigned long long)flags)) &&
              read_uint(&rd, "hint_index", &out->hint_index) &&
              read_uint(&rd, "hint_term", &out->hint_term) &&
              read_uint(&rd, "context", &out->context) && read_entries(&rd, out) &&
              read_snapshot(&rd, out) &&
              (rd.off == rd.len || fail(&rd, "message: %zu trailing bytes", rd.len - rd.off));
    if (!ok) {
        raft_msg_release(out);
        memset(out, 0, sizeof(*out));
        return RAFT_ERR_DECODE;
    }
    out->type = (uint8_t)type;
    out->reject = flags & FLAG_REJECT;
    out->force = flags & FLAG_FORCE;
    return 0;
}
