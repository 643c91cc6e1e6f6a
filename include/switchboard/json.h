/*
 * json.h — a fast path for the small, simple JSON texts of the hot paths.
 *
 * The CONNECT payload ({"token":"…"}), a JWT's header and claims, and a client
 * event's array are parsed for every handshake or event; jansson's lexer spent
 * about 19k instructions on each handshake text, more than the rest of the
 * handshake's own work. sb_json_load_simple builds the same json_t that
 * json_loadb would, straight from a single pass, for the plain shapes those
 * texts have, and declines everything else so the caller falls back to
 * jansson: the result is never different, only cheaper.
 */
#ifndef SWITCHBOARD_JSON_H
#define SWITCHBOARD_JSON_H

#include <jansson.h>
#include <stddef.h>

/* With this flag a duplicate key makes sb_json_load_simple decline (jansson's
 * JSON_REJECT_DUPLICATES then reports the error). */
#define SB_JSON_SIMPLE_REJECT_DUPLICATES 0x1

/* Returns a new object equal (json_equal, key order included) to what
 * json_loadb(buf, len, …) returns, or NULL when the text is not of the shape
 * handled here (or memory ran out): the caller then calls json_loadb, which
 * also reports errors. The shape: an object or an array, nested at most 8
 * deep, JSON whitespace around tokens; keys and strings of printable ASCII
 * without escapes; numbers are integers of at most 18 digits (no fraction or
 * exponent). Reads at most len bytes; the recursion is bounded by the depth. */
json_t *sb_json_load_simple(const char *buf, size_t len, int flags);

#endif
