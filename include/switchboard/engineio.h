/*
 * engineio.h — the Engine.IO protocol 4 codec: packets, polling payloads and
 * the handshake (OPEN) body. Pure functions with no I/O and no event loop; the
 * transports (src/engine.c) call them, the unit tests and fuzz targets drive
 * them directly.
 *
 * Packet text form: one ASCII digit type followed by the data. Over WebSocket a
 * text frame is one packet and a binary frame is one binary MESSAGE packet
 * (no type byte). Over long-polling a payload is packets joined by the record
 * separator 0x1e; a binary message is written as 'b' + base64(data).
 */
#ifndef SWITCHBOARD_ENGINEIO_H
#define SWITCHBOARD_ENGINEIO_H

#include <stddef.h>
#include <stdint.h>
#include "switchboard/common.h"

typedef enum sb_eio_type {
    SB_EIO_OPEN = 0,
    SB_EIO_CLOSE = 1,
    SB_EIO_PING = 2,
    SB_EIO_PONG = 3,
    SB_EIO_MESSAGE = 4,
    SB_EIO_UPGRADE = 5,
    SB_EIO_NOOP = 6,
} sb_eio_type_t;

#define SB_EIO_SEPARATOR '\x1e'

typedef struct sb_eio_packet {
    sb_eio_type_t type;
    int binary;       /* 1 for a binary MESSAGE (data is raw bytes) */
    const char *data; /* payload after the type digit; not NUL-terminated */
    size_t len;
} sb_eio_packet_t;

/* Parses one text packet ("4hello", "2probe", "6"). `out->data` points into s.
 * Returns 0, or SB_EPROTO for an empty packet or a type that is not 0-6. */
int sb_eio_parse_text(const char *s, size_t len, sb_eio_packet_t *out);

/* Called once per packet of a polling payload. `pkt->data` is valid only during
 * the call (binary packets are decoded into a temporary buffer). A non-zero
 * return stops decoding and is returned by sb_eio_payload_decode. */
typedef int (*sb_eio_packet_cb)(void *ctx, const sb_eio_packet_t *pkt);

/* Splits a polling POST body on 0x1e and calls cb for each packet, in order.
 * Segments starting with 'b' are base64 binary messages. Returns 0, SB_EPROTO
 * for an empty body, empty segment, bad type or bad base64, SB_ETOOBIG when
 * more than max_packets packets are present (0 = no limit), SB_ENOMEM, or the
 * callback's non-zero value. The whole body is validated before the first
 * callback, so a malformed payload delivers nothing. */
int sb_eio_payload_decode(const char *s, size_t len, size_t max_packets, sb_eio_packet_cb cb, void *ctx);

/* Appends one text packet (type digit + data) to a polling payload in `out`,
 * preceded by 0x1e when out is not empty. */
int sb_eio_payload_append_text(sb_buf_t *out, sb_eio_type_t type, const char *data, size_t len);
/* Appends one binary message as 'b' + base64(data), with the separator rule above. */
int sb_eio_payload_append_binary(sb_buf_t *out, const void *data, size_t len);

/* Appends the OPEN packet data (JSON, without the leading '0'):
 * {"sid":"…","upgrades":["websocket"],"pingInterval":N,"pingTimeout":N,"maxPayload":N}
 * `upgrades` lists "websocket" when allow_upgrade is non-zero, else is []. */
int sb_eio_handshake_json(sb_buf_t *out, const char *sid, int allow_upgrade, uint64_t ping_interval_ms,
                          uint64_t ping_timeout_ms, uint64_t max_payload);

/* Engine.IO HTTP error codes (the JSON body {"code":N,"message":"…"} with 400). */
typedef enum sb_eio_error {
    SB_EIO_ERR_UNKNOWN_TRANSPORT = 0,
    SB_EIO_ERR_UNKNOWN_SID = 1,
    SB_EIO_ERR_BAD_HANDSHAKE_METHOD = 2,
    SB_EIO_ERR_BAD_REQUEST = 3,
    SB_EIO_ERR_FORBIDDEN = 4,
    SB_EIO_ERR_UNSUPPORTED_PROTOCOL_VERSION = 5,
} sb_eio_error_t;

/* Static message text for an error code ("Transport unknown", "Session ID unknown",
 * "Bad handshake method", "Bad request", "Forbidden", "Unsupported protocol version"). */
const char *sb_eio_error_message(sb_eio_error_t code);

/* The query parameters Engine.IO routes on, percent-decoded. */
typedef struct sb_eio_query {
    char eio[8];        /* "4" expected; empty when absent */
    char transport[16]; /* "polling" / "websocket"; empty when absent */
    char sid[64];       /* empty when absent */
    int b64;            /* b64=1 present (unsupported but parsed) */
} sb_eio_query_t;

/* Parses a raw query string (the part after '?', may be NULL/empty) for EIO,
 * transport, sid and b64. Unknown keys are ignored. A value longer than its
 * field, or a bad percent escape, is SB_EPROTO. */
int sb_eio_query_parse(const char *q, size_t len, sb_eio_query_t *out);

#endif
