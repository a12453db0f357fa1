/* wire.c - see wire.h. */
#include "common/wire.h"

#include <stdio.h>
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

int wire_check_bounds(const msgpack_object *obj, char *err, size_t errlen)
{
    return check_depth(obj, 0, err, errlen);
}

int wire_envelope_decode(wire_envelope_t *env, const void *buf, size_t len, char *err, size_t errlen)
{
    memset(env, 0, sizeof(*env));
    msgpack_unpacked_init(&env->unpacked);
    if (len == 0 || len > WIRE_MAX_FRAME) {
        snprintf(err, errlen, "frame of %zu bytes (must be 1..%u)", len, WIRE_MAX_FRAME);
        goto fail;
    }
    size_t offset = 0;
    msgpack_unpack_return ret = msgpack_unpack_next(&env->unpacked, buf, len, &offset);
    if (ret != MSGPACK_UNPACK_SUCCESS) {
        snprintf(err, errlen, "%s", ret == MSGPACK_UNPACK_CONTINUE ? "truncated message" : "not valid msgpack");
        goto fail;
    }
    if (offset != len) {
        snprintf(err, errlen, "%zu trailing bytes after the message", len - offset);
        goto fail;
    }
    const msgpack_object *root = &env->unpacked.data;
    if (wire_check_bounds(root, err, errlen) != 0)
        goto fail;
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
    memset(env, 0, sizeof(*env));
    return -1;
}

void wire_envelope_release(wire_envelope_t *env)
{
    msgpack_unpacked_destroy(&env->unpacked);
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
