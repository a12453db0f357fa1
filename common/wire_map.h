/* wire_map.h - a msgpack map built key by key, its size counted as it goes.
 *
 * msgpack wants a map's size before its pairs; a reply whose fields depend
 * on the state is easier to write without counting them by hand:
 *
 *   wire_map_t m;
 *   wire_map_init(&m);
 *   wire_map_str(&m, "name", vm);
 *   if (running) wire_map_u64(&m, "pid", pid);
 *   wire_map_end(&m, call->result);     // packs the map, releases m
 */
#ifndef FERRY_COMMON_WIRE_MAP_H
#define FERRY_COMMON_WIRE_MAP_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    msgpack_sbuffer buf;
    msgpack_packer pk;
    uint32_t n;
} wire_map_t;

void wire_map_init(wire_map_t *m);
/* Packs key; the caller packs exactly one value on the returned packer. */
msgpack_packer *wire_map_key(wire_map_t *m, const char *key);
void wire_map_str(wire_map_t *m, const char *key, const char *value);
void wire_map_u64(wire_map_t *m, const char *key, uint64_t value);
void wire_map_i64(wire_map_t *m, const char *key, int64_t value);
void wire_map_f64(wire_map_t *m, const char *key, double value);
void wire_map_bool(wire_map_t *m, const char *key, bool value);
/* Writes the map to out and releases m. */
void wire_map_end(wire_map_t *m, msgpack_packer *out);

#endif
