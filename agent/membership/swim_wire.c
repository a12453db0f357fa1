/* swim_wire.c - bounded msgpack reader and fixed-buffer writer; see swim_wire.h.
 *
 * Format reference: https://github.com/msgpack/msgpack/blob/master/spec.md */
#include "agent/membership/swim_wire.h"

#include <errno.h>
#include <string.h>

/* How deep wire_skip follows nested arrays and maps. SWIM messages nest two
 * levels; a little slack lets newer peers add structured fields. */
#define WIRE_SKIP_DEPTH 8

void wire_reader_init(wire_reader_t *r, const uint8_t *data, size_t len)
{
    *r = (wire_reader_t){ .data = data, .len = len };
}

bool wire_reader_done(const wire_reader_t *r)
{
    return !r->error && r->pos == r->len;
}

size_t wire_reader_left(const wire_reader_t *r)
{
    return r->len - r->pos;
}

int wire_fail(wire_reader_t *r, const char *what)
{
    if (!r->error) {
        r->error = what;
        r->error_at = r->pos;
    }
    return -EBADMSG;
}

/* Reads n big-endian bytes into *out. */
static int take_be(wire_reader_t *r, size_t n, uint64_t *out, const char *what)
{
    if (r->error || wire_reader_left(r) < n)
        return wire_fail(r, what);
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | r->data[r->pos + i];
    r->pos += n;
    *out = v;
    return 0;
}

static int take_byte(wire_reader_t *r, uint8_t *out, const char *what)
{
    uint64_t v;
    if (take_be(r, 1, &v, what) < 0)
        return -EBADMSG;
    *out = (uint8_t)v;
    return 0;
}

int wire_read_uint(wire_reader_t *r, uint64_t *value, const char *what)
{
    uint8_t tag;
    if (take_byte(r, &tag, what) < 0)
        return -EBADMSG;
    if (tag <= 0x7f) {
        *value = tag;
        return 0;
    }
    switch (tag) {
    case 0xcc: return take_be(r, 1, value, what);
    case 0xcd: return take_be(r, 2, value, what);
    case 0xce: return take_be(r, 4, value, what);
    case 0xcf: return take_be(r, 8, value, what);
    default:
        r->pos--;   /* point the error at the offending tag */
        return wire_fail(r, what);
    }
}

int wire_read_u32(wire_reader_t *r, uint32_t *value, const char *what)
{
    uint64_t v;
    if (wire_read_uint(r, &v, what) < 0)
        return -EBADMSG;
    if (v > UINT32_MAX)
        return wire_fail(r, what);
    *value = (uint32_t)v;
    return 0;
}

int wire_read_bool(wire_reader_t *r, bool *value, const char *what)
{
    uint8_t tag;
    if (take_byte(r, &tag, what) < 0)
        return -EBADMSG;
    if (tag != 0xc2 && tag != 0xc3) {
        r->pos--;
        return wire_fail(r, what);
    }
    *value = tag == 0xc3;
    return 0;
}

static int read_array_header(wire_reader_t *r, uint64_t *count, const char *what)
{
    uint8_t tag;
    if (take_byte(r, &tag, what) < 0)
        return -EBADMSG;
    if ((tag & 0xf0) == 0x90) {
        *count = tag & 0x0f;
        return 0;
    }
    if (tag == 0xdc)
        return take_be(r, 2, count, what);
    if (tag == 0xdd)
        return take_be(r, 4, count, what);
    r->pos--;
    return wire_fail(r, what);
}

int wire_read_array(wire_reader_t *r, uint32_t *count, uint32_t min, uint32_t max,
                    const char *what)
{
    size_t start = r->pos;
    uint64_t n;
    if (read_array_header(r, &n, what) < 0)
        return -EBADMSG;
    if (n < min || n > max || n > wire_reader_left(r)) {
        r->pos = start;   /* point the error at the header */
        return wire_fail(r, what);
    }
    *count = (uint32_t)n;
    return 0;
}

/* Reads a str or bin header (which one is `want_bin`) and returns its length. */
static int read_bytes_header(wire_reader_t *r, bool want_bin, uint64_t *len, const char *what)
{
    size_t start = r->pos;
    uint8_t tag;
    if (take_byte(r, &tag, what) < 0)
        return -EBADMSG;
    int rc = -EBADMSG;
    if (!want_bin && (tag & 0xe0) == 0xa0) {
        *len = tag & 0x1f;
        rc = 0;
    } else if (!want_bin && tag >= 0xd9 && tag <= 0xdb) {
        rc = take_be(r, (size_t)1 << (tag - 0xd9), len, what);
    } else if (want_bin && tag >= 0xc4 && tag <= 0xc6) {
        rc = take_be(r, (size_t)1 << (tag - 0xc4), len, what);
    } else {
        r->pos--;
        return wire_fail(r, what);
    }
    if (rc == 0 && *len > wire_reader_left(r)) {
        r->pos = start;
        return wire_fail(r, what);
    }
    return rc;
}

int wire_read_str(wire_reader_t *r, char *out, size_t cap, const char *what)
{
    uint64_t len;
    if (read_bytes_header(r, false, &len, what) < 0)
        return -EBADMSG;
    if (len >= cap)
        return wire_fail(r, what);
    const uint8_t *src = r->data + r->pos;
    if (memchr(src, '\0', (size_t)len))
        return wire_fail(r, what);
    memcpy(out, src, (size_t)len);
    out[len] = '\0';
    r->pos += (size_t)len;
    return 0;
}

int wire_read_bin(wire_reader_t *r, const uint8_t **data, size_t *len, size_t max,
                  const char *what)
{
    uint64_t n;
    if (read_bytes_header(r, true, &n, what) < 0)
        return -EBADMSG;
    if (n > max)
        return wire_fail(r, what);
    *data = r->data + r->pos;
    *len = (size_t)n;
    r->pos += (size_t)n;
    return 0;
}

/* Skips `len` payload bytes after a header. */
static int skip_bytes(wire_reader_t *r, uint64_t len, const char *what)
{
    if (r->error || len > wire_reader_left(r))
        return wire_fail(r, what);
    r->pos += (size_t)len;
    return 0;
}

static int skip_value(wire_reader_t *r, int depth, const char *what)
{
    if (depth > WIRE_SKIP_DEPTH)
        return wire_fail(r, what);
    uint8_t tag;
    if (take_byte(r, &tag, what) < 0)
        return -EBADMSG;
    uint64_t n = 0;
    if (tag <= 0x7f || tag >= 0xe0 || tag == 0xc0 || tag == 0xc2 || tag == 0xc3)
        return 0;                                   /* fixints, nil, booleans */
    if ((tag & 0xe0) == 0xa0)
        return skip_bytes(r, tag & 0x1f, what);     /* fixstr */
    if ((tag & 0xf0) == 0x90 || (tag & 0xf0) == 0x80) {
        n = tag & 0x0f;                             /* fixarray, fixmap */
        if ((tag & 0xf0) == 0x80)
            n *= 2;
    } else {
        switch (tag) {
        case 0xcc: case 0xd0: return skip_bytes(r, 1, what);
        case 0xcd: case 0xd1: return skip_bytes(r, 2, what);
        case 0xce: case 0xd2: case 0xca: return skip_bytes(r, 4, what);
        case 0xcf: case 0xd3: case 0xcb: return skip_bytes(r, 8, what);
        case 0xd4: return skip_bytes(r, 2, what);   /* fixext 1..16: type + data */
        case 0xd5: return skip_bytes(r, 3, what);
        case 0xd6: return skip_bytes(r, 5, what);
        case 0xd7: return skip_bytes(r, 9, what);
        case 0xd8: return skip_bytes(r, 17, what);
        case 0xc4: case 0xd9:
            return take_be(r, 1, &n, what) < 0 ? -EBADMSG : skip_bytes(r, n, what);
        case 0xc5: case 0xda:
            return take_be(r, 2, &n, what) < 0 ? -EBADMSG : skip_bytes(r, n, what);
        case 0xc6: case 0xdb:
            return take_be(r, 4, &n, what) < 0 ? -EBADMSG : skip_bytes(r, n, what);
        case 0xc7: case 0xc8: case 0xc9: {          /* ext 8/16/32: len, type, data */
            if (take_be(r, (size_t)1 << (tag - 0xc7), &n, what) < 0)
                return -EBADMSG;
            return skip_bytes(r, n + 1, what);
        }
        case 0xdc: case 0xde:
            if (take_be(r, 2, &n, what) < 0)
                return -EBADMSG;
            if (tag == 0xde)
                n *= 2;
            break;
        case 0xdd: case 0xdf:
            if (take_be(r, 4, &n, what) < 0)
                return -EBADMSG;
            if (tag == 0xdf)
                n *= 2;
            break;
        default:                                    /* 0xc1 is never used */
            r->pos--;
            return wire_fail(r, what);
        }
    }
    if (n > wire_reader_left(r))
        return wire_fail(r, what);
    for (uint64_t i = 0; i < n; i++)
        if (skip_value(r, depth + 1, what) < 0)
            return -EBADMSG;
    return 0;
}

int wire_skip(wire_reader_t *r, const char *what)
{
    return skip_value(r, 0, what);
}

int wire_skip_n(wire_reader_t *r, uint32_t extra, const char *what)
{
    for (uint32_t i = 0; i < extra; i++)
        if (wire_skip(r, what) < 0)
            return -EBADMSG;
    return 0;
}

/* --- writing ------------------------------------------------------------ */

static int writer_append(void *data, const char *bytes, size_t len)
{
    wire_writer_t *w = data;
    if (w->overflow || len > w->cap - w->len) {
        w->overflow = true;
        return -1;
    }
    memcpy(w->buf + w->len, bytes, len);
    w->len += len;
    return 0;
}

void wire_writer_init(wire_writer_t *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->overflow = false;
    msgpack_packer_init(&w->pk, w, writer_append);
}

void wire_write_str(wire_writer_t *w, const char *s)
{
    size_t len = s ? strlen(s) : 0;
    msgpack_pack_str(&w->pk, len);
    if (len)
        msgpack_pack_str_body(&w->pk, s, len);
}

void wire_write_bin(wire_writer_t *w, const uint8_t *data, size_t len)
{
    msgpack_pack_bin(&w->pk, len);
    if (len)
        msgpack_pack_bin_body(&w->pk, data, len);
}

void wire_write_raw(wire_writer_t *w, const uint8_t *data, size_t len)
{
    if (len)
        writer_append(w, (const char *)data, len);
}
