/* swim_wire.h - bounded msgpack reading and fixed-buffer msgpack writing,
 * the two halves the SWIM codec is built from.
 *
 * Why not msgpack_unpack()? msgpack-c allocates an array's element table
 * from the count in its header before reading a single element, so five
 * bytes can ask for gigabytes. The reader below walks the bytes in place,
 * checks every declared length and count against what is left of the
 * input, and never allocates. It reads only the types SWIM uses: unsigned
 * integers, booleans, strings, binary blobs and arrays; `wire_skip` steps
 * over any other value so that newer peers may append fields.
 *
 * Writing uses msgpack-c's packer over a fixed buffer: a write that would
 * overflow marks the writer as full instead of growing anything, so a packet
 * can never exceed the size it was given.
 *
 * Every reader failure records a static string saying what was wrong and
 * the byte offset where it happened; callers log both. */
#ifndef FERRY_SWIM_WIRE_H
#define FERRY_SWIM_WIRE_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- reading ------------------------------------------------------------ */

typedef struct {
    const uint8_t *data;
    size_t len;
    size_t pos;
    const char *error;   /* NULL until the first failure; later reads fail too */
    size_t error_at;     /* byte offset of the failure */
} wire_reader_t;

void wire_reader_init(wire_reader_t *r, const uint8_t *data, size_t len);
/* True when every byte was consumed without error. */
bool wire_reader_done(const wire_reader_t *r);
size_t wire_reader_left(const wire_reader_t *r);

/* Each returns 0, or -EBADMSG after recording `what` (the caller's name for
 * the field, e.g. "alive.name") in r->error. */
int wire_read_uint(wire_reader_t *r, uint64_t *value, const char *what);
int wire_read_u32(wire_reader_t *r, uint32_t *value, const char *what);
int wire_read_bool(wire_reader_t *r, bool *value, const char *what);
/* An array header whose count must lie in [min, max]; the count is also
 * checked against the bytes left (every element takes at least one byte). */
int wire_read_array(wire_reader_t *r, uint32_t *count, uint32_t min, uint32_t max,
                    const char *what);
/* A string of at most cap-1 bytes, copied with a terminating NUL. Strings
 * holding a NUL byte are rejected: names and addresses are C strings. */
int wire_read_str(wire_reader_t *r, char *out, size_t cap, const char *what);
/* A binary blob of at most max bytes; *data points into the input. */
int wire_read_bin(wire_reader_t *r, const uint8_t **data, size_t *len, size_t max,
                  const char *what);
/* Skips one value of any type, nesting at most a few levels deep. */
int wire_skip(wire_reader_t *r, const char *what);
/* Skips the `extra` trailing elements of an array read with a larger count
 * than this version knows: how newer peers add fields. */
int wire_skip_n(wire_reader_t *r, uint32_t extra, const char *what);
/* Records a failure found by the caller (a value out of range); returns -EBADMSG. */
int wire_fail(wire_reader_t *r, const char *what);

/* --- writing ------------------------------------------------------------ */

typedef struct {
    msgpack_packer pk;
    uint8_t *buf;
    size_t cap;
    size_t len;
    bool overflow;       /* a write did not fit; the content is incomplete */
} wire_writer_t;

void wire_writer_init(wire_writer_t *w, uint8_t *buf, size_t cap);
/* Convenience packers for the shapes the codec uses. A NULL string packs as
 * the empty string. */
void wire_write_str(wire_writer_t *w, const char *s);
void wire_write_bin(wire_writer_t *w, const uint8_t *data, size_t len);
/* Appends bytes that are already msgpack-encoded. */
void wire_write_raw(wire_writer_t *w, const uint8_t *data, size_t len);

#endif
