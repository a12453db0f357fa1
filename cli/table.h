/* table.h - aligned text tables for ferryctl's default output.
 *
 *   table_t *t = table_new(3, "NAME", "STATE", "ADDRESS");
 *   table_add(t, "h1", "alive", "127.0.0.1:7402");
 *   table_print(t, stdout);
 *   table_destroy(&t);
 */
#ifndef FERRY_CLI_TABLE_H
#define FERRY_CLI_TABLE_H

#include <msgpack.h>
#include <stdio.h>

typedef struct table table_t;

table_t *table_new(int columns, ...);
void table_destroy(table_t **self_p);
/* Adds a row of `columns` strings (NULL prints as "-"). */
void table_add(table_t *self, ...);
void table_add_row(table_t *self, const char *const *cells);
void table_print(const table_t *self, FILE *out);

/* Renders a scalar msgpack value as text into buf (strings as-is, numbers,
 * true/false, lists of scalars joined by ","). Returns buf. */
const char *table_cell(const msgpack_object *obj, char *buf, size_t cap);

/* table_cell() of map[key], or "-" when the key is absent. */
const char *table_cell_or(const msgpack_object *map, const char *key, char *buf, size_t cap);

/* Renders bytes with a binary unit: "1.5 GiB". */
const char *table_bytes(uint64_t bytes, char *buf, size_t cap);

#endif
