/*
 * libFuzzer target for the Engine.IO codec: one text packet, a polling payload
 * and a handshake query, all from the same input. A payload that decodes is
 * encoded again and must decode to the same packets (the encoder and decoder
 * agree on separators and base64).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "switchboard/engineio.h"

#define MAX_PACKETS 64

struct collected {
    sb_buf_t payload; /* the packets written back with the encoder */
    size_t count;
    uint64_t sum; /* touches every byte, so ASan sees each read */
};

static int collect_cb(void *ctx, const sb_eio_packet_t *pkt)
{
    struct collected *c = ctx;
    for (size_t i = 0; i < pkt->len; i++)
        c->sum += (unsigned char)pkt->data[i];
    c->count++;
    if (pkt->binary)
        return sb_eio_payload_append_binary(&c->payload, pkt->data, pkt->len);
    return sb_eio_payload_append_text(&c->payload, pkt->type, pkt->data, pkt->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;

    sb_eio_packet_t pkt;
    if (sb_eio_parse_text(s, size, &pkt) == 0 && (pkt.data != s + 1 || pkt.len != size - 1 || pkt.type > 6))
        abort();

    sb_eio_query_t q;
    if (sb_eio_query_parse(s, size, &q) == 0) {
        if (strlen(q.eio) >= sizeof(q.eio) || strlen(q.transport) >= sizeof(q.transport) ||
            strlen(q.sid) >= sizeof(q.sid))
            abort();
    }

    struct collected first = {.count = 0};
    sb_buf_init(&first.payload, 0);
    int rc = sb_eio_payload_decode(s, size, MAX_PACKETS, collect_cb, &first);
    if (rc == 0) {
        struct collected second = {.count = 0};
        sb_buf_init(&second.payload, 0);
        if (sb_eio_payload_decode(first.payload.base, first.payload.len, MAX_PACKETS, collect_cb, &second) != 0)
            abort();
        /* Re-encoding is canonical (padded base64), so the second pass must be a fixed point. */
        if (second.count != first.count || second.sum != first.sum || second.payload.len != first.payload.len ||
            memcmp(second.payload.base, first.payload.base, first.payload.len) != 0)
            abort();
        sb_buf_free(&second.payload);
    } else if (first.count != 0) {
        abort(); /* a malformed payload must deliver nothing */
    }
    sb_buf_free(&first.payload);
    return 0;
}
