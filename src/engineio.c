/*
 * engineio.c — the Engine.IO protocol 4 codec (see include/switchboard/engineio.h).
 * No I/O here: the transports feed bytes in and write what comes out.
 */
#include "switchboard/engineio.h"

#include <stdlib.h>
#include <string.h>

int sb_eio_parse_text(const char *s, size_t len, sb_eio_packet_t *out)
{
    if (len == 0 || s[0] < '0' || s[0] > '6')
        return SB_EPROTO;
    out->type = (sb_eio_type_t)(s[0] - '0');
    out->binary = 0;
    out->data = s + 1;
    out->len = len - 1;
    return 0;
}

/* Parses one payload segment. Binary segments are decoded into `scratch`
 * (capacity >= seglen), so pkt->data is only valid until the next call. */
static int parse_segment(const char *seg, size_t seglen, unsigned char *scratch, sb_eio_packet_t *pkt)
{
    if (seglen == 0)
        return SB_EPROTO;
    if (seg[0] == 'b') {
        size_t n = 0;
        if (sb_base64_decode(seg + 1, seglen - 1, scratch, &n) != 0)
            return SB_EPROTO;
        pkt->type = SB_EIO_MESSAGE;
        pkt->binary = 1;
        pkt->data = (const char *)scratch;
        pkt->len = n;
        return 0;
    }
    return sb_eio_parse_text(seg, seglen, pkt);
}

int sb_eio_payload_decode(const char *s, size_t len, size_t max_packets, sb_eio_packet_cb cb, void *ctx)
{
    if (len == 0)
        return SB_EPROTO;

    size_t count = 1;
    for (const char *p = s; (p = memchr(p, SB_EIO_SEPARATOR, (size_t)(s + len - p))) != NULL; p++)
        count++;
    if (max_packets != 0 && count > max_packets)
        return SB_ETOOBIG;

    /* Decoded base64 is always shorter than its text, so one buffer of the body's
     * size holds any segment. The body itself is bounded by maxPayload. */
    unsigned char *scratch = malloc(len + 3);
    if (scratch == NULL)
        return SB_ENOMEM;

    /* Pass 1 validates everything so that a malformed body delivers nothing;
     * pass 2 decodes again and delivers. Decoding twice is cheaper than keeping
     * every decoded packet around. */
    int rc = 0;
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        const char *seg = s, *end = s + len;
        while (rc == 0) {
            const char *sep = memchr(seg, SB_EIO_SEPARATOR, (size_t)(end - seg));
            size_t seglen = (size_t)((sep ? sep : end) - seg);
            sb_eio_packet_t pkt;
            rc = parse_segment(seg, seglen, scratch, &pkt);
            if (rc == 0 && pass == 1)
                rc = cb(ctx, &pkt);
            if (sep == NULL)
                break;
            seg = sep + 1;
        }
    }
    free(scratch);
    return rc;
}

int sb_eio_payload_append_text(sb_buf_t *out, sb_eio_type_t type, const char *data, size_t len)
{
    if ((int)type < SB_EIO_OPEN || type > SB_EIO_NOOP)
        return SB_EINVAL;
    size_t start = out->len;
    int rc = 0;
    if (out->len > 0)
        rc = sb_buf_append_char(out, SB_EIO_SEPARATOR);
    if (rc == 0)
        rc = sb_buf_append_char(out, (char)('0' + type));
    if (rc == 0)
        rc = sb_buf_append(out, data, len);
    if (rc != 0)
        out->len = start;
    return rc;
}

int sb_eio_payload_append_binary(sb_buf_t *out, const void *data, size_t len)
{
    size_t start = out->len;
    size_t enclen = sb_base64_encoded_len(len);
    int rc = 0;
    if (out->len > 0)
        rc = sb_buf_append_char(out, SB_EIO_SEPARATOR);
    if (rc == 0)
        rc = sb_buf_append_char(out, 'b');
    if (rc == 0)
        rc = sb_buf_reserve(out, enclen);
    if (rc != 0) {
        out->len = start;
        return rc;
    }
    sb_base64_encode(data, len, out->base + out->len);
    out->len += enclen;
    return 0;
}

int sb_eio_handshake_json(sb_buf_t *out, const char *sid, int allow_upgrade, uint64_t ping_interval_ms,
                          uint64_t ping_timeout_ms, uint64_t max_payload)
{
    size_t start = out->len;
    int rc = sb_buf_append_str(out, "{\"sid\":");
    if (rc == 0)
        rc = sb_buf_append_json_str(out, sid, strlen(sid));
    if (rc == 0)
        rc = sb_buf_append_str(out, allow_upgrade ? ",\"upgrades\":[\"websocket\"],\"pingInterval\":"
                                                  : ",\"upgrades\":[],\"pingInterval\":");
    if (rc == 0)
        rc = sb_buf_append_u64(out, ping_interval_ms);
    if (rc == 0)
        rc = sb_buf_append_str(out, ",\"pingTimeout\":");
    if (rc == 0)
        rc = sb_buf_append_u64(out, ping_timeout_ms);
    if (rc == 0)
        rc = sb_buf_append_str(out, ",\"maxPayload\":");
    if (rc == 0)
        rc = sb_buf_append_u64(out, max_payload);
    if (rc == 0)
        rc = sb_buf_append_char(out, '}');
    if (rc != 0)
        out->len = start;
    return rc;
}

const char *sb_eio_error_message(sb_eio_error_t code)
{
    switch (code) {
    case SB_EIO_ERR_UNKNOWN_TRANSPORT:
        return "Transport unknown";
    case SB_EIO_ERR_UNKNOWN_SID:
        return "Session ID unknown";
    case SB_EIO_ERR_BAD_HANDSHAKE_METHOD:
        return "Bad handshake method";
    case SB_EIO_ERR_BAD_REQUEST:
        return "Bad request";
    case SB_EIO_ERR_FORBIDDEN:
        return "Forbidden";
    case SB_EIO_ERR_UNSUPPORTED_PROTOCOL_VERSION:
        return "Unsupported protocol version";
    }
    return "Bad request";
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes v into dst (capacity cap, including the NUL). '+' is a space,
 * as in application/x-www-form-urlencoded. A decoded NUL would silently cut the
 * C string short, so it is rejected like a bad escape. */
static int query_decode(const char *v, size_t vlen, char *dst, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '%') {
            if (i + 2 >= vlen)
                return SB_EPROTO;
            int hi = hex_value((unsigned char)v[i + 1]), lo = hex_value((unsigned char)v[i + 2]);
            if (hi < 0 || lo < 0)
                return SB_EPROTO;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c == '\0' || n + 1 >= cap)
            return SB_EPROTO;
        dst[n++] = (char)c;
    }
    dst[n] = '\0';
    return 0;
}

int sb_eio_query_parse(const char *q, size_t len, sb_eio_query_t *out)
{
    memset(out, 0, sizeof(*out));
    if (q == NULL)
        return 0;
    const char *p = q, *end = q + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pend = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pend - p));
        size_t klen = (size_t)((eq ? eq : pend) - p);
        const char *v = eq ? eq + 1 : pend;
        size_t vlen = (size_t)(pend - v);
        int rc = 0;
        /* Only the keys we route on are decoded: a client's own query parameters
         * are none of our business and must not fail the handshake. */
        if (klen == 3 && memcmp(p, "EIO", 3) == 0) {
            rc = query_decode(v, vlen, out->eio, sizeof(out->eio));
        } else if (klen == 9 && memcmp(p, "transport", 9) == 0) {
            rc = query_decode(v, vlen, out->transport, sizeof(out->transport));
        } else if (klen == 3 && memcmp(p, "sid", 3) == 0) {
            rc = query_decode(v, vlen, out->sid, sizeof(out->sid));
        } else if (klen == 3 && memcmp(p, "b64", 3) == 0) {
            char tmp[16];
            rc = query_decode(v, vlen, tmp, sizeof(tmp));
            /* engine.io treats any non-empty value as true, so does this. */
            if (rc == 0)
                out->b64 = tmp[0] != '\0';
        }
        if (rc != 0)
            return rc;
        p = pend + 1;
    }
    return 0;
}
