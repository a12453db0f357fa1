/* wire_map.c - see wire_map.h. */
#include "common/wire_map.h"
#include "common/wire.h"

void wire_map_init(wire_map_t *m)
{
    msgpack_sbuffer_init(&m->buf);
    msgpack_packer_init(&m->pk, &m->buf, msgpack_sbuffer_write);
    m->n = 0;
}

msgpack_packer *wire_map_key(wire_map_t *m, const char *key)
{
    m->n++;
    wire_pack_str(&m->pk, key);
    return &m->pk;
}

void wire_map_str(wire_map_t *m, const char *key, const char *value) { wire_pack_str(wire_map_key(m, key), value); }
void wire_map_u64(wire_map_t *m, const char *key, uint64_t value) { msgpack_pack_uint64(wire_map_key(m, key), value); }
void wire_map_i64(wire_map_t *m, const char *key, int64_t value) { msgpack_pack_int64(wire_map_key(m, key), value); }
void wire_map_f64(wire_map_t *m, const char *key, double value) { msgpack_pack_double(wire_map_key(m, key), value); }

void wire_map_bool(wire_map_t *m, const char *key, bool value)
{
    msgpack_packer *pk = wire_map_key(m, key);
    value ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
}

void wire_map_end(wire_map_t *m, msgpack_packer *out)
{
    msgpack_pack_map(out, m->n);
    out->callback(out->data, m->buf.data, m->buf.size);
    msgpack_sbuffer_destroy(&m->buf);
}
