/*
 * socketio.h — the Socket.IO protocol 5 packet codec: parsing and strict
 * validation of client packets, encoding of server packets, and the binary
 * attachment conversion between Socket.IO placeholders and the
 * {"$binary":"<base64>"} JSON form used on the Redis side (CONTRACT §2).
 *
 * Pure functions over jansson values; no I/O. Called by src/session.c,
 * src/fanout.c and the unit tests / fuzz targets.
 *
 * Wire form: <type>[<attachments>-][<nsp>,][<ack id>][<JSON data>]
 * The namespace is present only when not "/" and always starts with '/'.
 */
#ifndef SWITCHBOARD_SOCKETIO_H
#define SWITCHBOARD_SOCKETIO_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "switchboard/common.h"

typedef enum sb_sio_type {
    SB_SIO_CONNECT = 0,
    SB_SIO_DISCONNECT = 1,
    SB_SIO_EVENT = 2,
    SB_SIO_ACK = 3,
    SB_SIO_CONNECT_ERROR = 4,
    SB_SIO_BINARY_EVENT = 5,
    SB_SIO_BINARY_ACK = 6,
} sb_sio_type_t;

#define SB_SIO_MAX_NSP_LEN 256

typedef struct sb_sio_packet {
    sb_sio_type_t type;
    char nsp[SB_SIO_MAX_NSP_LEN + 1]; /* NUL-terminated, "/" when absent */
    size_t nsp_len;
    int64_t ack_id;       /* -1 when absent */
    unsigned attachments; /* binary types only, else 0 */
    json_t *data;         /* parsed data, NULL when absent; owned by the packet */
    /* The data's JSON text as received: points into the buffer given to
     * sb_sio_parse, so valid only while that is; NULL for the binary types
     * (their data changes when the attachments arrive). */
    const char *text;
    size_t text_len;
} sb_sio_packet_t;

/* Parses and validates one packet sent by a client (the Engine.IO MESSAGE data).
 * Rules (each violation returns SB_EPROTO and sets *why to a static reason):
 *  - type is a digit 0-6 and not CONNECT_ERROR (server-only);
 *  - attachments (binary types only) is a decimal integer followed by '-',
 *    at most max_attachments;
 *  - a namespace starts with '/', ends at ',', contains no other ',' and is at
 *    most SB_SIO_MAX_NSP_LEN bytes; without ',' the packet's namespace is "/";
 *  - the ack id is digits only (at most 15 of them) and is not allowed on
 *    CONNECT/DISCONNECT;
 *  - data is valid JSON (jansson, NUL allowed in strings) and, per type:
 *    CONNECT: absent or an object; DISCONNECT: absent;
 *    EVENT/BINARY_EVENT: a non-empty array whose first item is a string that is
 *    not a reserved name (see sb_sio_is_reserved_event);
 *    ACK/BINARY_ACK: an array, and an ack id present;
 *  - binary types: every {"_placeholder":true,"num":n} has an integer n in
 *    [0, attachments) and the count of placeholders matches attachments.
 * On success returns 0 and the caller must call sb_sio_packet_clear. On failure
 * nothing needs freeing. */
int sb_sio_parse(const char *s, size_t len, unsigned max_attachments, sb_sio_packet_t *out, const char **why);

/* An EVENT's arguments as the JSON array text json_dumps(JSON_COMPACT |
 * JSON_PRESERVE_ORDER) would make of items 1.. of its data, taken from the
 * received text instead of dumping: "[" followed by *rest (rest_len bytes,
 * ending with "]"). Returns 1 when the received text is byte for byte what
 * jansson would write (no whitespace, integers only, no \u or \/ escapes, no
 * duplicate keys), 0 when the caller must dump p->data instead. */
int sb_sio_event_args_raw(const sb_sio_packet_t *p, const char **rest, size_t *rest_len);

/* 1 when s[0..len) is exactly one JSON value that jansson would parse (JSON_DECODE_ANY) and dump
 * (JSON_COMPACT | JSON_PRESERVE_ORDER) back to the same bytes, and that holds no "$binary" key: no whitespace,
 * integers of at most 18 digits (no reals, no "-0"), escapes only \" \\ \b \f \n \r \t, valid UTF-8, no
 * duplicate keys, nesting at most 32 deep, at most 32 keys per object. 0 when it is not, or not certainly so:
 * the caller then parses with jansson as before. The text can then be forwarded as it is. */
int sb_sio_json_plain(const char *s, size_t len);

/* Releases out->data. Safe on a cleared packet. */
void sb_sio_packet_clear(sb_sio_packet_t *pkt);

/* 1 for connect, connect_error, disconnect, disconnecting, newListener,
 * removeListener. */
int sb_sio_is_reserved_event(const char *name);

/* Replaces, in place, every placeholder in `data` by {"$binary":"<base64>"} of
 * the matching attachment. Returns 0 or SB_EPROTO (*why set) when a placeholder
 * is invalid or out of range. */
int sb_sio_attach_binary(json_t *data, const void *const *bins, const size_t *lens, size_t count, const char **why);

/* A server packet ready for a transport: the Socket.IO text (without the
 * Engine.IO '4' prefix) and the binary attachments that follow it. */
typedef struct sb_sio_encoded {
    sb_buf_t text;
    size_t nbins;
    sb_buf_t *bins; /* nbins buffers, malloc'd array */
} sb_sio_encoded_t;

/* Frees everything in `enc` and zeroes it. */
void sb_sio_encoded_clear(sb_sio_encoded_t *enc);

/* Encodes EVENT/ACK (switched to BINARY_EVENT/BINARY_ACK when `data` holds
 * {"$binary":"…"} objects, which become placeholders + attachments).
 * For EVENT: `event` is the name and `args` the JSON array of arguments (may be
 * NULL for none); for ACK: event is NULL and args is the array. ack_id -1 when
 * none. `args` is not modified. Returns 0, SB_EPROTO for invalid base64 in a
 * $binary, SB_EINVAL for args that is not an array, SB_ENOMEM.
 * On failure enc is left cleared. */
int sb_sio_encode_event(sb_sio_encoded_t *enc, const char *nsp, const char *event, const json_t *args, int64_t ack_id);
int sb_sio_encode_ack(sb_sio_encoded_t *enc, const char *nsp, int64_t ack_id, const json_t *args);

/* CONNECT answer: 0[nsp,]{"sid":"…"[,"pid":"…","offset":"…"]} (pid/offset may be NULL). */
int sb_sio_encode_connect(sb_buf_t *out, const char *nsp, const char *sid, const char *pid, const char *offset);
/* CONNECT_ERROR: 4[nsp,]{"message":"…"[,"data":<data>]} (data may be NULL). */
int sb_sio_encode_connect_error(sb_buf_t *out, const char *nsp, const char *message, const json_t *data);
/* DISCONNECT: 1[nsp,] */
int sb_sio_encode_disconnect(sb_buf_t *out, const char *nsp);

/* Appends the namespace prefix "<nsp>," (nothing for "/"). */
int sb_sio_append_nsp(sb_buf_t *out, const char *nsp);

#endif
