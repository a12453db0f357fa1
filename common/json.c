/* json.c - see json.h. */
#include "common/json.h"

#include <math.h>
#include <inttypes.h>

void json_write_string(FILE *out, const char *s, size_t len)
{
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':  fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (c < 0x20 || c == 0x7f)
                fprintf(out, "\\u%04x", c);
            else
                fputc(c, out);
        }
    }
    fputc('"', out);
}

static void newline(FILE *out, int indent, int depth)
{
    if (indent < 0)
        return;
    fputc('\n', out);
    for (int i = 0; i < indent * depth; i++)
        fputc(' ', out);
}

static void write_value(FILE *out, const msgpack_object *obj, int indent, int depth);

static void write_key(FILE *out, const msgpack_object *key)
{
    if (key->type == MSGPACK_OBJECT_STR) {
        json_write_string(out, key->via.str.ptr, key->via.str.size);
        return;
    }
    /* JSON keys are strings: render the value, then quote it. */
    char buf[64];
    if (key->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        snprintf(buf, sizeof(buf), "%" PRIu64, key->via.u64);
    else if (key->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        snprintf(buf, sizeof(buf), "%" PRId64, key->via.i64);
    else
        snprintf(buf, sizeof(buf), "?");
    fprintf(out, "\"%s\"", buf);
}

static void write_value(FILE *out, const msgpack_object *obj, int indent, int depth)
{
    switch (obj->type) {
    case MSGPACK_OBJECT_NIL:
        fputs("null", out);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        fputs(obj->via.boolean ? "true" : "false", out);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        fprintf(out, "%" PRIu64, obj->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        fprintf(out, "%" PRId64, obj->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (isfinite(obj->via.f64))
            fprintf(out, "%.10g", obj->via.f64);
        else
            fputs("null", out);
        break;
    case MSGPACK_OBJECT_STR:
        json_write_string(out, obj->via.str.ptr, obj->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN:
        fputc('"', out);
        for (uint32_t i = 0; i < obj->via.bin.size; i++)
            fprintf(out, "%02x", (unsigned char)obj->via.bin.ptr[i]);
        fputc('"', out);
        break;
    case MSGPACK_OBJECT_ARRAY:
        fputc('[', out);
        for (uint32_t i = 0; i < obj->via.array.size; i++) {
            if (i)
                fputc(',', out);
            newline(out, indent, depth + 1);
            write_value(out, &obj->via.array.ptr[i], indent, depth + 1);
        }
        if (obj->via.array.size)
            newline(out, indent, depth);
        fputc(']', out);
        break;
    case MSGPACK_OBJECT_MAP:
        fputc('{', out);
        for (uint32_t i = 0; i < obj->via.map.size; i++) {
            if (i)
                fputc(',', out);
            newline(out, indent, depth + 1);
            write_key(out, &obj->via.map.ptr[i].key);
            fputs(indent < 0 ? ":" : ": ", out);
            write_value(out, &obj->via.map.ptr[i].val, indent, depth + 1);
        }
        if (obj->via.map.size)
            newline(out, indent, depth);
        fputc('}', out);
        break;
    default:
        fputs("null", out);
        break;
    }
}

void json_write(FILE *out, const msgpack_object *obj, int indent)
{
    write_value(out, obj, indent, 0);
}
