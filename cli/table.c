/* table.c - see table.h. */
#include "cli/table.h"
#include "common/wire.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define TABLE_MAX_COLUMNS 16

struct table {
    int columns;
    size_t rows, cap;
    char **cells;          /* (rows + 1) * columns; row 0 is the header */
};

static void append_row(table_t *self, const char *const *cells)
{
    if (self->rows + 1 >= self->cap) {
        self->cap = self->cap ? self->cap * 2 : 16;
        char **grown = realloc(self->cells, self->cap * (size_t)self->columns * sizeof(char *));
        if (!grown)
            return;
        self->cells = grown;
    }
    for (int c = 0; c < self->columns; c++)
        self->cells[(self->rows) * (size_t)self->columns + (size_t)c] = strdup(cells[c] ? cells[c] : "-");
    self->rows++;
}

table_t *table_new(int columns, ...)
{
    if (columns < 1 || columns > TABLE_MAX_COLUMNS)
        return NULL;
    table_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->columns = columns;
    const char *header[TABLE_MAX_COLUMNS];
    va_list args;
    va_start(args, columns);
    for (int c = 0; c < columns; c++)
        header[c] = va_arg(args, const char *);
    va_end(args);
    append_row(self, header);
    return self;
}

void table_destroy(table_t **self_p)
{
    table_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->rows * (size_t)self->columns; i++)
        free(self->cells[i]);
    free(self->cells);
    free(self);
    *self_p = NULL;
}

void table_add_row(table_t *self, const char *const *cells)
{
    append_row(self, cells);
}

void table_add(table_t *self, ...)
{
    const char *row[TABLE_MAX_COLUMNS];
    va_list args;
    va_start(args, self);
    for (int c = 0; c < self->columns; c++)
        row[c] = va_arg(args, const char *);
    va_end(args);
    append_row(self, row);
}

void table_print(const table_t *self, FILE *out)
{
    size_t width[TABLE_MAX_COLUMNS] = { 0 };
    for (size_t r = 0; r < self->rows; r++)
        for (int c = 0; c < self->columns; c++) {
            size_t len = strlen(self->cells[r * (size_t)self->columns + (size_t)c]);
            if (len > width[c])
                width[c] = len;
        }
    for (size_t r = 0; r < self->rows; r++) {
        for (int c = 0; c < self->columns; c++) {
            const char *cell = self->cells[r * (size_t)self->columns + (size_t)c];
            if (c == self->columns - 1)
                fprintf(out, "%s", cell);
            else
                fprintf(out, "%-*s  ", (int)width[c], cell);
        }
        fputc('\n', out);
    }
}

const char *table_cell(const msgpack_object *obj, char *buf, size_t cap)
{
    if (!obj) {
        snprintf(buf, cap, "-");
        return buf;
    }
    switch (obj->type) {
    case MSGPACK_OBJECT_STR:
        snprintf(buf, cap, "%.*s", (int)obj->via.str.size, obj->via.str.ptr);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        snprintf(buf, cap, "%" PRIu64, obj->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        snprintf(buf, cap, "%" PRId64, obj->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        snprintf(buf, cap, "%.1f", obj->via.f64);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        snprintf(buf, cap, "%s", obj->via.boolean ? "yes" : "no");
        break;
    case MSGPACK_OBJECT_ARRAY: {
        size_t used = 0;
        buf[0] = '\0';
        for (uint32_t i = 0; i < obj->via.array.size && used + 1 < cap; i++) {
            char item[128];
            table_cell(&obj->via.array.ptr[i], item, sizeof(item));
            int n = snprintf(buf + used, cap - used, "%s%s", i ? "," : "", item);
            if (n < 0)
                break;
            used += (size_t)n;
        }
        if (obj->via.array.size == 0)
            snprintf(buf, cap, "-");
        break;
    }
    default:
        snprintf(buf, cap, "-");
    }
    return buf;
}

const char *table_bytes(uint64_t bytes, char *buf, size_t cap)
{
    static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    double value = (double)bytes;
    int unit = 0;
    while (value >= 1024.0 && unit < 4) {
        value /= 1024.0;
        unit++;
    }
    if (unit == 0)
        snprintf(buf, cap, "%" PRIu64 " B", bytes);
    else
        snprintf(buf, cap, "%.1f %s", value, units[unit]);
    return buf;
}

const char *table_cell_or(const msgpack_object *map, const char *key, char *buf, size_t cap)
{
    return table_cell(wire_map_find(map, key), buf, cap);
}
