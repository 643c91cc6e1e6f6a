/*
 * libFuzzer target for the Socket.IO codec: parse a client packet; for an
 * EVENT, attach fake binaries and re-encode it through sb_sio_encode_event; the
 * encoded packet must parse again with the same type, namespace and ack id.
 * Also: whenever sb_sio_json_plain accepts the input (after the packet type
 * digit, as the JSON part), jansson must parse it and dump it back to the very
 * same bytes, as the bus forwards such text without parsing it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "switchboard/socketio.h"

#define MAX_ATT 10

static void reencode(const sb_sio_packet_t *p)
{
    const char *why = NULL;
    json_t *data = json_deep_copy(p->data);
    if (data == NULL)
        abort();
    int was_binary = p->type == SB_SIO_BINARY_EVENT;
    if (was_binary) {
        static const unsigned char bytes[MAX_ATT] = {0, 1, 2, 0xfd, 0xfe, 0xff, 'a', 'b', 'c', 'd'};
        const void *bins[MAX_ATT];
        size_t lens[MAX_ATT];
        for (size_t i = 0; i < MAX_ATT; i++) {
            bins[i] = bytes;
            lens[i] = i; /* 0..9 bytes: every base64 padding shape */
        }
        /* The parser already checked every placeholder, so this cannot fail. */
        if (sb_sio_attach_binary(data, bins, lens, p->attachments, &why) != 0)
            abort();
    }

    const char *name = json_string_value(json_array_get(data, 0));
    json_t *args = json_array();
    for (size_t i = 1; i < json_array_size(data); i++)
        json_array_append(args, json_array_get(data, i));

    sb_sio_encoded_t enc;
    int rc = sb_sio_encode_event(&enc, p->nsp, name, args, p->ack_id);
    if (rc == 0) {
        sb_sio_packet_t q;
        rc = sb_sio_parse(enc.text.base, enc.text.len, (unsigned)enc.nbins, &q, &why);
        /* A text EVENT may carry objects that merely look like placeholders;
         * once a $binary in it turns the packet binary those count too, as in
         * socket.io itself. Every other re-encoded packet must parse back. */
        if (rc != 0 && (was_binary || enc.nbins == 0))
            abort();
        if (rc == 0) {
            sb_sio_type_t want = enc.nbins ? SB_SIO_BINARY_EVENT : SB_SIO_EVENT;
            if (q.type != want || strcmp(q.nsp, p->nsp) != 0 || q.ack_id != p->ack_id || q.attachments != enc.nbins)
                abort();
            sb_sio_packet_clear(&q);
        }
        sb_sio_encoded_clear(&enc);
    } else if (rc != SB_EPROTO) {
        abort(); /* only a client-written {"$binary":"<not base64>"} may fail */
    }
    json_decref(args);
    json_decref(data);
}

/* 1 when some object in v has the key "$binary" itself (a key like "h\"$binary" only looks like it in the text). */
static int has_binary_key(const json_t *v, int depth)
{
    if (depth > 64)
        return 0;
    const char *k;
    const json_t *item;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, item)
        {
            if (strcmp(k, "$binary") == 0 || has_binary_key(item, depth + 1))
                return 1;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, item)
        {
            if (has_binary_key(item, depth + 1))
                return 1;
        }
    }
    return 0;
}

static void check_plain(const char *s, size_t n)
{
    if (!sb_sio_json_plain(s, n))
        return;
    json_error_t err;
    json_t *v = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (v == NULL)
        abort();
    char *d = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (d == NULL || strlen(d) != n || memcmp(d, s, n) != 0 || has_binary_key(v, 0))
        abort();
    free(d);
    json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1)
        check_plain((const char *)data + 1, size - 1);
    sb_sio_packet_t p;
    const char *why = NULL;
    int rc = sb_sio_parse((const char *)data, size, MAX_ATT, &p, &why);
    if (rc != 0) {
        if (why == NULL || p.data != NULL)
            abort();
        return 0;
    }
    if (p.nsp[0] != '/' || strlen(p.nsp) != p.nsp_len || p.nsp_len > SB_SIO_MAX_NSP_LEN || p.attachments > MAX_ATT)
        abort();
    if (p.type == SB_SIO_EVENT || p.type == SB_SIO_BINARY_EVENT)
        reencode(&p);
    sb_sio_packet_clear(&p);
    return 0;
}
