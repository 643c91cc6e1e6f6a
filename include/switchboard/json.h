/*
 * json.h — a fast path for the small, flat JSON objects of a handshake.
 *
 * The CONNECT payload ({"token":"…"}) and a JWT's header and claims are parsed
 * once per handshake; jansson's lexer spends about 19k instructions on each of
 * them, more than the rest of the handshake's own work. sb_json_load_flat
 * builds the same json_t that json_loadb would, straight from a single pass,
 * for the plain shapes those texts have, and declines everything else so the
 * caller falls back to jansson: the result is never different, only cheaper.
 */
#ifndef SWITCHBOARD_JSON_H
#define SWITCHBOARD_JSON_H

#include <jansson.h>
#include <stddef.h>

/* With this flag a duplicate key makes sb_json_load_flat decline (jansson's
 * JSON_REJECT_DUPLICATES then reports the error). */
#define SB_JSON_FLAT_REJECT_DUPLICATES 0x1

/* Returns a new object equal (json_equal, key order included) to what
 * json_loadb(buf, len, …) returns, or NULL when the text is not of the shape
 * handled here (or memory ran out): the caller then calls json_loadb, which
 * also reports errors. The shape: one object, JSON whitespace around tokens;
 * keys and string values of printable ASCII without escapes; values are such
 * strings, integers of at most 18 digits (no fraction or exponent), true,
 * false, null, or arrays of those scalars. Reads at most len bytes. */
json_t *sb_json_load_flat(const char *buf, size_t len, int flags);

#endif
