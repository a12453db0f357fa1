/* json.h - renders a decoded msgpack value as JSON.
 *
 * ferryctl's --json output and the agent's HTTP endpoint both come from
 * here, so a field has one name everywhere. Map keys that are not strings
 * are rendered as strings; binary values as lowercase hex; NaN and infinity
 * as null (JSON has no spelling for them). */
#ifndef FERRY_JSON_H
#define FERRY_JSON_H

#include <msgpack.h>
#include <stdio.h>

/* indent < 0: compact one-line output; otherwise spaces per level. */
void json_write(FILE *out, const msgpack_object *obj, int indent);
/* Writes s as a JSON string literal, quotes included. */
void json_write_string(FILE *out, const char *s, size_t len);

#endif
