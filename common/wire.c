/* wire.c - see wire.h. */
#include "common/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void wire_envelope_begin(msgpack_packer *pk, wire_type_t type, const char *sender)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint32(pk, WIRE_PROTOCOL_VERSION);
    msgpack_pack_uint32(pk, (uint32_t)type);
    wire_pack_str(pk, sender ? sender : "");
}

static int check_depth(const msgpack_object *obj, int depth, char *err, size_t errlen)
{
    if (depth > WIRE_MAX_DEPTH) {
        snprintf(err, errlen, "nesting deeper than %d levels", WIRE_MAX_DEPTH);
        return -1;
    }
    switch (obj->type) {
    case MSGPACK_OBJECT_ARRAY:
        if (obj->via.array.size > WIRE_MAX_ITEMS) {
            snprintf(err, errlen, "array of %u elements (limit %u)", obj->via.array.size, WIRE_MAX_ITEMS);
            return -1;
        }
        for (uint32_t i = 0; i < obj->via.array.size; i++)
            if (check_depth(&obj->via.array.ptr[i], depth + 1, err, errlen) != 0)
                return -1;
        return 0;
    case MSGPACK_OBJECT_MAP:
        if (obj->via.map.size > WIRE_MAX_ITEMS) {
            snprintf(err, errlen, "map of %u entries (limit %u)", obj->via.map.size, WIRE_MAX_ITEMS);
            return -1;
        }
        for (uint32_t i = 0; i < obj->via.map.size; i++) {
            if (check_depth(&obj->via.map.ptr[i].key, depth + 1, err, errlen) != 0 ||
                check_depth(&obj->via.map.ptr[i].val, depth + 1, err, errlen) != 0)
                return -1;
        }
        return 0;
    case MSGPACK_OBJECT_EXT:
        snprintf(err, errlen, "extension types are not accepted");
        return -1;
    default:
        return 0;
    }
}

/* Big-endian reads of the length fields that follow a msgpack type byte. */
static uint64_t read_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

int wire_validate(const void *buf, size_t len, char *err, size_t errlen)
{
    const uint8_t *p = buf;
    size_t pos = 0;
    /* pending[d]: values still to read at open container level d. */
    uint64_t pending[WIRE_MAX_DEPTH + 2];
    int depth = 0;
    pending[0] = 1;
    if (len == 0 || len > WIRE_MAX_FRAME) {
        snprintf(err, errlen, "message of %zu bytes (must be 1..%u)", len, WIRE_MAX_FRAME);
        return -1;
    }
    while (depth >= 0) {
        if (pending[depth] == 0) {
            depth--;
            continue;
        }
        pending[depth]--;
        if (pos >= len) {
            snprintf(err, errlen, "truncated message");
            return -1;
        }
        uint8_t type = p[pos++];
        size_t len_bytes = 0;    /* size of a length field that follows */
        uint64_t skip = 0;       /* payload bytes to skip */
        uint64_t elements = 0;   /* values inside a container */
        bool container = false;
        if (type <= 0x7f || type >= 0xe0 || type == 0xc0 || type == 0xc2 || type == 0xc3) {
            /* fixint, nil, false, true: the type byte is the whole value */
        } else if (type <= 0x8f) {
            container = true;
            elements = (uint64_t)(type & 0x0f) * 2;
        } else if (type <= 0x9f) {
            container = true;
            elements = type & 0x0f;
        } else if (type <= 0xbf) {
            skip = type & 0x1f;
        } else {
            switch (type) {
            case 0xcc: case 0xd0: skip = 1; break;
            case 0xcd: case 0xd1: skip = 2; break;
            case 0xce: case 0xd2: case 0xca: skip = 4; break;
            case 0xcf: case 0xd3: case 0xcb: skip = 8; break;
            case 0xc4: case 0xd9: len_bytes = 1; break;   /* bin8, str8 */
            case 0xc5: case 0xda: len_bytes = 2; break;   /* bin16, str16 */
            case 0xc6: case 0xdb: len_bytes = 4; break;   /* bin32, str32 */
            case 0xdc: case 0xde: len_bytes = 2; container = true; break;
            case 0xdd: case 0xdf: len_bytes = 4; container = true; break;
            default:
                snprintf(err, errlen, "%s at byte %zu",
                         type == 0xc1 ? "invalid type byte 0xc1" : "extension types are not accepted", pos - 1);
                return -1;
            }
        }
        if (len_bytes) {
            if (len - pos < len_bytes) {
                snprintf(err, errlen, "truncated message");
                return -1;
            }
            uint64_t n = read_be(p + pos, len_bytes);
            pos += len_bytes;
            if (!container)
                skip = n;
            else
                elements = (type == 0xde || type == 0xdf) ? n * 2 : n;
        }
        if (skip > len - pos) {
            snprintf(err, errlen, "a length of %llu bytes runs past the end of the message", (unsigned long long)skip);
            return -1;
        }
        pos += skip;
        if (!container || elements == 0)
            continue;
        if (elements > 2ULL * WIRE_MAX_ITEMS || elements > len - pos) {
            snprintf(err, errlen, "a container of %llu values does not fit (limit %u, %zu bytes left)",
                     (unsigned long long)elements, WIRE_MAX_ITEMS, len - pos);
            return -1;
        }
        if (depth + 1 > WIRE_MAX_DEPTH) {
            snprintf(err, errlen, "nesting deeper than %d levels", WIRE_MAX_DEPTH);
            return -1;
        }
        pending[++depth] = elements;
    }
    if (pos != len) {
        snprintf(err, errlen, "%zu trailing bytes after the message", len - pos);
        return -1;
    }
    return 0;
}

int wire_unpack(msgpack_unpacked *out, const void *buf, size_t len, char *err, size_t errlen)
{
    msgpack_unpacked_init(out);
    if (wire_validate(buf, len, err, errlen) != 0)
        return -1;
    size_t offset = 0;
    if (msgpack_unpack_next(out, buf, len, &offset) != MSGPACK_UNPACK_SUCCESS || offset != len) {
        snprintf(err, errlen, "not valid msgpack");
        msgpack_unpacked_destroy(out);
        msgpack_unpacked_init(out);
        return -1;
    }
    return wire_check_bounds(&out->data, err, errlen);
}

int wire_check_bounds(const msgpack_object *obj, char *err, size_t errlen)
{
    return check_depth(obj, 0, err, errlen);
}

int wire_envelope_decode(wire_envelope_t *env, const void *buf, size_t len, char *err, size_t errlen)
{
    memset(env, 0, sizeof(*env));
    msgpack_unpacked_init(&env->unpacked);
    /* msgpack-c's strings point into the input: keep the input alive with them. */
    env->bytes = len && len <= WIRE_MAX_FRAME ? malloc(len) : NULL;
    if (!env->bytes) {
        snprintf(err, errlen, "frame of %zu bytes (must be 1..%u)", len, WIRE_MAX_FRAME);
        goto fail;
    }
    memcpy(env->bytes, buf, len);
    if (wire_unpack(&env->unpacked, env->bytes, len, err, errlen) != 0)
        goto fail;
    const msgpack_object *root = &env->unpacked.data;
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size != 4) {
        snprintf(err, errlen, "envelope is not a 4-element array");
        goto fail;
    }
    const msgpack_object *f = root->via.array.ptr;
    if (f[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || f[0].via.u64 != WIRE_PROTOCOL_VERSION) {
        snprintf(err, errlen, "unsupported protocol version (this agent speaks %d)", WIRE_PROTOCOL_VERSION);
        goto fail;
    }
    if (f[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || f[1].via.u64 == 0 || f[1].via.u64 >= WIRE_TYPE_MAX) {
        snprintf(err, errlen, "unknown message type");
        goto fail;
    }
    if (f[2].type != MSGPACK_OBJECT_STR || f[2].via.str.size > WIRE_MAX_SENDER) {
        snprintf(err, errlen, "sender id is not a string of at most %d bytes", WIRE_MAX_SENDER);
        goto fail;
    }
    env->version = (uint32_t)f[0].via.u64;
    env->type = (uint32_t)f[1].via.u64;
    memcpy(env->sender, f[2].via.str.ptr, f[2].via.str.size);
    env->sender[f[2].via.str.size] = '\0';
    env->body = f[3];
    return 0;
fail:
    msgpack_unpacked_destroy(&env->unpacked);
    free(env->bytes);
    memset(env, 0, sizeof(*env));
    return -1;
}

void wire_envelope_release(wire_envelope_t *env)
{
    msgpack_unpacked_destroy(&env->unpacked);
    free(env->bytes);
    memset(env, 0, sizeof(*env));
}

/* --- map access ------------------------------------------------------- */

const msgpack_object *wire_map_find(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t key_len = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == key_len &&
            memcmp(k->via.str.ptr, key, key_len) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static int wrong_type(const char *key, const char *want, char *err, size_t errlen)
{
    snprintf(err, errlen, "field '%s' must be %s", key, want);
    return -1;
}

int wire_get_str(const msgpack_object *map, const char *key, char *out, size_t cap, char *err, size_t errlen)
{
    const msgpack_object *v = wire_map_find(map, key);
    if (!v)
        return 1;
    if (v->type != MSGPACK_OBJECT_STR)
        return wrong_type(key, "a string", err, errlen);
    if (v->via.str.size + 1 > cap) {
        snprintf(err, errlen, "field '%s' is longer than %zu bytes", key, cap - 1);
        return -1;
    }
    if (memchr(v->via.str.ptr, '\0', v->via.str.size)) {
        snprintf(err, errlen, "field '%s' holds a NUL byte", key);
        return -1;
    }
    memcpy(out, v->via.str.ptr, v->via.str.size);
    out[v->via.str.size] = '\0';
    return 0;
}

int wire_get_u64(const msgpack_object *map, const char *key, uint64_t *out, char *err, size_t errlen)
{
    const msgpack_object *v = wire_map_find(map, key);
    if (!v)
        return 1;
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return wrong_type(key, "a non-negative integer", err, errlen);
    *out = v->via.u64;
    return 0;
}

int wire_get_i64(const msgpack_object *map, const char *key, int64_t *out, char *err, size_t errlen)
{
    const msgpack_object *v = wire_map_find(map, key);
    if (!v)
        return 1;
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = v->via.i64;
    else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= INT64_MAX)
        *out = (int64_t)v->via.u64;
    else
        return wrong_type(key, "an integer", err, errlen);
    return 0;
}

int wire_get_bool(const msgpack_object *map, const char *key, bool *out, char *err, size_t errlen)
{
    const msgpack_object *v = wire_map_find(map, key);
    if (!v)
        return 1;
    if (v->type != MSGPACK_OBJECT_BOOLEAN)
        return wrong_type(key, "a boolean", err, errlen);
    *out = v->via.boolean;
    return 0;
}

int wire_get_f64(const msgpack_object *map, const char *key, double *out, char *err, size_t errlen)
{
    const msgpack_object *v = wire_map_find(map, key);
    if (!v)
        return 1;
    if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64)
        *out = v->via.f64;
    else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        *out = (double)v->via.u64;
    else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = (double)v->via.i64;
    else
        return wrong_type(key, "a number", err, errlen);
    return 0;
}

int wire_get_map(const msgpack_object *map, const char *key, const msgpack_object **out, char *err, size_t errlen)
{
    const msgpack_object *v = wire_map_find(map, key);
    if (!v)
        return 1;
    if (v->type != MSGPACK_OBJECT_MAP)
        return wrong_type(key, "a map", err, errlen);
    *out = v;
    return 0;
}

int wire_get_array(const msgpack_object *map, const char *key, const msgpack_object **out, char *err, size_t errlen)
{
    const msgpack_object *v = wire_map_find(map, key);
    if (!v)
        return 1;
    if (v->type != MSGPACK_OBJECT_ARRAY)
        return wrong_type(key, "an array", err, errlen);
    *out = v;
    return 0;
}

/* --- packing ------------------------------------------------------------ */

void wire_pack_str(msgpack_packer *pk, const char *s)
{
    size_t len = strlen(s);
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

void wire_pack_kv_str(msgpack_packer *pk, const char *key, const char *value)
{
    wire_pack_str(pk, key);
    wire_pack_str(pk, value ? value : "");
}

void wire_pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t value)
{
    wire_pack_str(pk, key);
    msgpack_pack_uint64(pk, value);
}

void wire_pack_kv_i64(msgpack_packer *pk, const char *key, int64_t value)
{
    wire_pack_str(pk, key);
    msgpack_pack_int64(pk, value);
}

void wire_pack_kv_bool(msgpack_packer *pk, const char *key, bool value)
{
    wire_pack_str(pk, key);
    if (value)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

void wire_pack_kv_f64(msgpack_packer *pk, const char *key, double value)
{
    wire_pack_str(pk, key);
    msgpack_pack_double(pk, value);
}

/* --- control messages -------------------------------------------------- */

int wire_control_request_decode(const wire_envelope_t *env, wire_control_request_t *req, char *err, size_t errlen)
{
    memset(req, 0, sizeof(*req));
    if (env->type != WIRE_CONTROL_REQUEST) {
        snprintf(err, errlen, "expected a control request, got message type %u", env->type);
        return -1;
    }
    if (env->body.type != MSGPACK_OBJECT_MAP) {
        snprintf(err, errlen, "control request body must be a map");
        return -1;
    }
    int rc = wire_get_str(&env->body, "command", req->command, sizeof(req->command), err, errlen);
    if (rc != 0) {
        if (rc > 0)
            snprintf(err, errlen, "control request has no 'command'");
        return -1;
    }
    rc = wire_get_map(&env->body, "args", &req->args, err, errlen);
    if (rc < 0)
        return -1;
    return 0;
}

int wire_control_reply_decode(const wire_envelope_t *env, wire_control_reply_t *rep, char *err, size_t errlen)
{
    memset(rep, 0, sizeof(*rep));
    if (env->type != WIRE_CONTROL_REPLY) {
        snprintf(err, errlen, "expected a control reply, got message type %u", env->type);
        return -1;
    }
    if (env->body.type != MSGPACK_OBJECT_MAP) {
        snprintf(err, errlen, "control reply body must be a map");
        return -1;
    }
    int rc = wire_get_bool(&env->body, "ok", &rep->ok, err, errlen);
    if (rc != 0) {
        if (rc > 0)
            snprintf(err, errlen, "control reply has no 'ok'");
        return -1;
    }
    if (wire_get_i64(&env->body, "code", &rep->code, err, errlen) < 0)
        return -1;
    if (wire_get_str(&env->body, "error", rep->error, sizeof(rep->error), err, errlen) < 0)
        return -1;
    rep->result = wire_map_find(&env->body, "result");
    if (!rep->ok && rep->error[0] == '\0')
        snprintf(rep->error, sizeof(rep->error), "agent reported an error without a message");
    return 0;
}
