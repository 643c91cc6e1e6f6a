/*
 * socketio.c — the Socket.IO protocol 5 packet codec (see include/switchboard/socketio.h).
 *
 * Parsing is strict on purpose: whatever passes here is routed to backends and
 * Redis, so every shape rule is checked once, at the edge.
 */
#include "switchboard/socketio.h"
#include "switchboard/json.h"

#include <stdlib.h>
#include <string.h>

/* jansson refuses to load JSON nested deeper than 2048; our own walkers stop a
 * little further so that anything jansson produced can be walked, while a
 * hand-built value cannot exhaust the stack. */
#define MAX_WALK_DEPTH 2100

/* Up to 15 digits keeps every ack id exactly representable in a JS number. */
#define MAX_ACK_DIGITS 15

/* Enough digits for any attachment count a sane max_attachments allows, and
 * few enough that the accumulator cannot overflow. */
#define MAX_ATTACHMENT_DIGITS 9

#define DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY)

static const char *const reserved_events[] = {
    "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
};

int sb_sio_is_reserved_event(const char *name)
{
    if (name == NULL)
        return 0;
    for (size_t i = 0; i < SB_ARRAY_SIZE(reserved_events); i++)
        if (strcmp(name, reserved_events[i]) == 0)
            return 1;
    return 0;
}

void sb_sio_packet_clear(sb_sio_packet_t *pkt)
{
    json_decref(pkt->data);
    pkt->data = NULL;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Socket.IO's own decoder treats any object with "_placeholder": true as a
 * placeholder, whatever else it holds; so do we. */
static int is_placeholder(const json_t *v)
{
    return json_is_object(v) && json_is_true(json_object_get(v, "_placeholder"));
}

/* Counts placeholders in v, checking each num is an integer in [0, attachments)
 * and not seen before (`seen` has `attachments` bytes). */
static int check_placeholders(const json_t *v, unsigned attachments, unsigned char *seen, size_t *count, int depth,
                              const char **why)
{
    if (depth > MAX_WALK_DEPTH) {
        *why = "data nested too deeply";
        return SB_EPROTO;
    }
    if (is_placeholder(v)) {
        const json_t *num = json_object_get(v, "num");
        if (!json_is_integer(num)) {
            *why = "placeholder num is not an integer";
            return SB_EPROTO;
        }
        json_int_t n = json_integer_value(num);
        if (n < 0 || (uint64_t)n >= attachments) {
            *why = "placeholder num out of range";
            return SB_EPROTO;
        }
        if (seen[n]) {
            *why = "placeholder num used twice";
            return SB_EPROTO;
        }
        seen[n] = 1;
        (*count)++;
        return 0;
    }
    if (json_is_array(v)) {
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item)
        {
            int rc = check_placeholders(item, attachments, seen, count, depth + 1, why);
            if (rc != 0)
                return rc;
        }
    } else if (json_is_object(v)) {
        const char *key;
        const json_t *item;
        /* json_object_foreach takes a non-const object but does not modify it. */
        json_object_foreach((json_t *)v, key, item)
        {
            int rc = check_placeholders(item, attachments, seen, count, depth + 1, why);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static int validate_data(const sb_sio_packet_t *p, const char **why)
{
    switch (p->type) {
    case SB_SIO_CONNECT:
        if (p->data != NULL && !json_is_object(p->data)) {
            *why = "CONNECT data is not an object";
            return SB_EPROTO;
        }
        return 0;
    case SB_SIO_DISCONNECT:
        if (p->data != NULL) {
            *why = "DISCONNECT carries data";
            return SB_EPROTO;
        }
        return 0;
    case SB_SIO_EVENT:
    case SB_SIO_BINARY_EVENT: {
        if (!json_is_array(p->data) || json_array_size(p->data) == 0) {
            *why = "EVENT data is not a non-empty array";
            return SB_EPROTO;
        }
        const json_t *name = json_array_get(p->data, 0);
        if (!json_is_string(name)) {
            *why = "event name is not a string";
            return SB_EPROTO;
        }
        /* Other modules hold the name as a C string: an embedded NUL would make
         * it a different name there than here. */
        if (strlen(json_string_value(name)) != json_string_length(name)) {
            *why = "event name contains NUL";
            return SB_EPROTO;
        }
        if (sb_sio_is_reserved_event(json_string_value(name))) {
            *why = "reserved event name";
            return SB_EPROTO;
        }
        return 0;
    }
    case SB_SIO_ACK:
    case SB_SIO_BINARY_ACK:
        if (p->ack_id < 0) {
            *why = "ACK without ack id";
            return SB_EPROTO;
        }
        if (!json_is_array(p->data)) {
            *why = "ACK data is not an array";
            return SB_EPROTO;
        }
        return 0;
    case SB_SIO_CONNECT_ERROR:
        break;
    }
    *why = "unknown packet type";
    return SB_EPROTO;
}

static int parse_packet(const char *s, size_t len, unsigned max_attachments, sb_sio_packet_t *out, const char **why)
{
    size_t i = 0;
    if (len == 0) {
        *why = "empty packet";
        return SB_EPROTO;
    }
    if (s[0] < '0' || s[0] > '6') {
        *why = "unknown packet type";
        return SB_EPROTO;
    }
    out->type = (sb_sio_type_t)(s[0] - '0');
    if (out->type == SB_SIO_CONNECT_ERROR) {
        *why = "CONNECT_ERROR is server-only";
        return SB_EPROTO;
    }
    i = 1;

    int binary = out->type == SB_SIO_BINARY_EVENT || out->type == SB_SIO_BINARY_ACK;
    if (binary) {
        size_t start = i;
        unsigned long n = 0;
        while (i < len && is_digit(s[i]) && i - start < MAX_ATTACHMENT_DIGITS)
            n = n * 10 + (unsigned long)(s[i++] - '0');
        if (i == start || i >= len || s[i] != '-') {
            *why = "malformed attachment count";
            return SB_EPROTO;
        }
        if (n > max_attachments) {
            *why = "too many attachments";
            return SB_EPROTO;
        }
        out->attachments = (unsigned)n;
        i++;
    }

    if (i < len && s[i] == '/') {
        /* The namespace ends at the first ','; whatever follows is ack id and
         * data, so a second ',' makes the rest invalid. Without any ',' the
         * namespace runs to the end, as in the reference parser ("1/chat"). */
        const char *comma = memchr(s + i, ',', len - i);
        size_t nsp_len = (size_t)((comma ? comma : s + len) - (s + i));
        if (nsp_len > SB_SIO_MAX_NSP_LEN) {
            *why = "namespace too long";
            return SB_EPROTO;
        }
        for (size_t k = 0; k < nsp_len; k++) {
            /* Control bytes (NUL above all) have no business in a namespace that
             * ends up in logs, Redis keys and C strings. */
            if ((unsigned char)s[i + k] < 0x20 || s[i + k] == 0x7f) {
                *why = "invalid character in namespace";
                return SB_EPROTO;
            }
        }
        memcpy(out->nsp, s + i, nsp_len);
        out->nsp[nsp_len] = '\0';
        out->nsp_len = nsp_len;
        i += nsp_len + (comma ? 1 : 0);
    }

    size_t start = i;
    int64_t ack = 0;
    while (i < len && is_digit(s[i])) {
        if (i - start >= MAX_ACK_DIGITS) {
            *why = "ack id too long";
            return SB_EPROTO;
        }
        ack = ack * 10 + (s[i++] - '0');
    }
    if (i > start) {
        if (out->type == SB_SIO_CONNECT || out->type == SB_SIO_DISCONNECT) {
            *why = "ack id not allowed on this packet type";
            return SB_EPROTO;
        }
        out->ack_id = ack;
    }

    if (i < len) {
        json_error_t err;
        if (!binary) {
            out->text = s + i;
            out->text_len = len - i;
        }
        /* CONNECT payloads and event arrays are mostly simple: built without jansson's lexer when they are */
        out->data = sb_json_load_simple(s + i, len - i, 0);
        if (out->data == NULL)
            out->data = json_loadb(s + i, len - i, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (out->data == NULL) {
            if (json_error_code(&err) == json_error_out_of_memory) {
                *why = "out of memory";
                return SB_ENOMEM;
            }
            *why = "invalid JSON";
            return SB_EPROTO;
        }
    }

    int rc = validate_data(out, why);
    if (rc != 0 || !binary)
        return rc;

    unsigned char *seen = calloc(out->attachments ? out->attachments : 1, 1);
    if (seen == NULL) {
        *why = "out of memory";
        return SB_ENOMEM;
    }
    size_t count = 0;
    rc = check_placeholders(out->data, out->attachments, seen, &count, 0, why);
    free(seen);
    if (rc == 0 && count != out->attachments) {
        *why = "placeholder count does not match attachments";
        rc = SB_EPROTO;
    }
    return rc;
}

#define RAW_MAX_KEYS 64 /* keys of the open objects tracked for the duplicate check; more: dump instead */
#define RAW_MAX_DEPTH 32

/* Walks valid JSON text (jansson parsed it already) and tells whether jansson's
 * compact, order-preserving dump of it would be the same bytes. */
static int raw_is_canonical(const char *s, size_t len)
{
    const char *kstart[RAW_MAX_KEYS];
    size_t klen[RAW_MAX_KEYS], nkeys = 0, level_first[RAW_MAX_DEPTH + 1];
    int is_obj[RAW_MAX_DEPTH + 1], depth = 0;
    size_t i = 0;
    is_obj[0] = 0;
    level_first[0] = 0;
    while (i < len) {
        char c = s[i];
        if (c == '"') {
            size_t start = ++i;
            while (i < len && s[i] != '"') {
                if (s[i] == '\\') {
                    /* jansson writes these as they are; \u and \/ come out differently */
                    if (i + 1 >= len || strchr("\"\\bfnrt", s[i + 1]) == NULL || s[i + 1] == '\0')
                        return 0;
                    i++;
                }
                i++;
            }
            if (i >= len)
                return 0;
            size_t n = i - start;
            i++;
            if (i < len && s[i] == ':') {
                /* a key: jansson keeps one of equal keys, so duplicates change the output */
                if (!is_obj[depth] || nkeys == RAW_MAX_KEYS)
                    return 0;
                for (size_t k = level_first[depth]; k < nkeys; k++)
                    if (klen[k] == n && memcmp(kstart[k], s + start, n) == 0)
                        return 0;
                kstart[nkeys] = s + start;
                klen[nkeys++] = n;
            }
            continue;
        }
        if (c == '-' || is_digit(c)) {
            /* integers only, in jansson's form: no "-0", no fraction or exponent */
            size_t start = i;
            if (c == '-')
                i++;
            if (i >= len || !is_digit(s[i]) || (s[i] == '0' && c == '-'))
                return 0;
            while (i < len && is_digit(s[i]))
                i++;
            if (i < len && (s[i] == '.' || s[i] == 'e' || s[i] == 'E'))
                return 0;
            if (i - start > 20)
                return 0;
            continue;
        }
        switch (c) {
        case '{':
        case '[':
            if (depth == RAW_MAX_DEPTH)
                return 0;
            depth++;
            is_obj[depth] = c == '{';
            level_first[depth] = nkeys;
            break;
        case '}':
        case ']':
            if (depth == 0)
                return 0;
            nkeys = level_first[depth];
            depth--;
            break;
        case ',':
        case ':':
            break;
        case 't': /* true, false, null: one way to write each */
        case 'f':
        case 'n':
            while (i + 1 < len && s[i + 1] >= 'a' && s[i + 1] <= 'z')
                i++;
            break;
        default:
            return 0; /* whitespace and anything else */
        }
        i++;
    }
    return depth == 0;
}

#define PLAIN_MAX_KEYS 32 /* keys of one object checked for duplicates; more: not plain */

/* A string starting at s[*i] == '"' in the plain form: printable or valid UTF-8, escapes only those jansson writes
 * back the same (\" \\ \b \f \n \r \t). Moves *i past the closing quote. */
static int plain_string(const char *s, size_t len, size_t *i)
{
    size_t k = *i + 1;
    while (k < len && s[k] != '"') {
        unsigned char c = (unsigned char)s[k];
        if (c < 0x20)
            return 0;
        if (c == '\\') {
            if (k + 1 >= len || strchr("\"\\bfnrt", s[k + 1]) == NULL || s[k + 1] == '\0')
                return 0;
            k += 2;
            continue;
        }
        size_t n = sb_utf8_seq((const unsigned char *)s + k, len - k);
        if (n == 0)
            return 0;
        k += n;
    }
    if (k >= len)
        return 0;
    *i = k + 1;
    return 1;
}

/* One value at s[*i] in the plain form (see sb_sio_json_plain); moves *i past it. Recursion is bounded by
 * RAW_MAX_DEPTH. */
static int plain_value(const char *s, size_t len, size_t *i, int depth)
{
    if (*i >= len)
        return 0;
    char c = s[*i];
    if (c == '"')
        return plain_string(s, len, i);
    if (c == '-' || is_digit(c)) {
        size_t k = *i, start;
        if (c == '-')
            k++;
        start = k;
        if (k >= len || !is_digit(s[k]))
            return 0;
        if (s[k] == '0' && (c == '-' || (k + 1 < len && is_digit(s[k + 1]))))
            return 0; /* "-0" is dumped as 0; a leading zero is invalid */
        while (k < len && is_digit(s[k]))
            k++;
        if (k - start > 18 || (k < len && (s[k] == '.' || s[k] == 'e' || s[k] == 'E')))
            return 0; /* could overflow json_int_t; reals are not written back the same */
        *i = k;
        return 1;
    }
    static const char *const lits[] = {"true", "false", "null"};
    for (size_t l = 0; l < 3; l++) {
        size_t n = strlen(lits[l]);
        if (len - *i >= n && memcmp(s + *i, lits[l], n) == 0) {
            *i += n;
            return 1;
        }
    }
    if ((c != '[' && c != '{') || depth >= RAW_MAX_DEPTH)
        return 0;
    char close = c == '[' ? ']' : '}';
    const char *kstart[PLAIN_MAX_KEYS];
    size_t klen[PLAIN_MAX_KEYS], nkeys = 0;
    (*i)++;
    if (*i < len && s[*i] == close) {
        (*i)++;
        return 1;
    }
    for (;;) {
        if (c == '{') {
            size_t ks = *i;
            if (ks >= len || s[ks] != '"' || !plain_string(s, len, i) || *i >= len || s[*i] != ':')
                return 0;
            size_t kl = *i - ks - 2;
            if (nkeys == PLAIN_MAX_KEYS)
                return 0;
            if (kl == 7 && memcmp(s + ks + 1, "$binary", 7) == 0)
                return 0; /* becomes an attachment: the encoder must see it */
            for (size_t k = 0; k < nkeys; k++)
                if (klen[k] == kl && memcmp(kstart[k], s + ks + 1, kl) == 0)
                    return 0; /* jansson keeps one of equal keys */
            kstart[nkeys] = s + ks + 1;
            klen[nkeys++] = kl;
            (*i)++;
        }
        if (!plain_value(s, len, i, depth + 1) || *i >= len)
            return 0;
        if (s[*i] == close) {
            (*i)++;
            return 1;
        }
        if (s[*i] != ',')
            return 0;
        (*i)++;
    }
}

int sb_sio_json_plain(const char *s, size_t len)
{
    size_t i = 0;
    return s != NULL && len > 0 && plain_value(s, len, &i, 0) && i == len;
}

int sb_sio_event_args_raw(const sb_sio_packet_t *p, const char **rest, size_t *rest_len)
{
    const char *s = p->text;
    size_t len = p->text_len, i = 1;
    if (s == NULL || p->type != SB_SIO_EVENT || len < 4 || s[0] != '[' || s[1] != '"' || s[len - 1] != ']')
        return 0;
    /* skip the event name, a string jansson has checked */
    for (i = 2; i < len && s[i] != '"'; i++)
        if (s[i] == '\\')
            i++;
    i++;
    if (i >= len || (s[i] != ',' && s[i] != ']'))
        return 0;
    if (s[i] == ',')
        i++;
    /* "[" + s[i..] is the arguments' array: check it as one value */
    if (!raw_is_canonical(s + i, len - i - 1))
        return 0;
    *rest = s + i;
    *rest_len = len - i;
    return 1;
}

int sb_sio_parse(const char *s, size_t len, unsigned max_attachments, sb_sio_packet_t *out, const char **why)
{
    const char *ignored;
    if (why == NULL)
        why = &ignored;
    *why = NULL;
    memset(out, 0, sizeof(*out));
    out->nsp[0] = '/';
    out->nsp_len = 1;
    out->ack_id = -1;
    int rc = parse_packet(s, len, max_attachments, out, why);
    if (rc != 0)
        sb_sio_packet_clear(out);
    return rc;
}

/* Checks every placeholder's num against count, without changing anything. */
static int check_attach(const json_t *v, size_t count, int depth, const char **why)
{
    if (depth > MAX_WALK_DEPTH) {
        *why = "data nested too deeply";
        return SB_EPROTO;
    }
    if (is_placeholder(v)) {
        const json_t *num = json_object_get(v, "num");
        if (!json_is_integer(num)) {
            *why = "placeholder num is not an integer";
            return SB_EPROTO;
        }
        json_int_t n = json_integer_value(num);
        if (n < 0 || (uint64_t)n >= count) {
            *why = "placeholder num out of range";
            return SB_EPROTO;
        }
        return 0;
    }
    if (json_is_array(v)) {
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item)
        {
            int rc = check_attach(item, count, depth + 1, why);
            if (rc != 0)
                return rc;
        }
    } else if (json_is_object(v)) {
        const char *key;
        const json_t *item;
        json_object_foreach((json_t *)v, key, item)
        {
            int rc = check_attach(item, count, depth + 1, why);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

/* Turns each placeholder object, in place, into {"$binary": "<base64>"}. Reusing
 * the object keeps its parent untouched, so the root can be converted too. */
static int do_attach(json_t *v, const void *const *bins, const size_t *lens)
{
    if (is_placeholder(v)) {
        size_t n = (size_t)json_integer_value(json_object_get(v, "num"));
        size_t enclen = sb_base64_encoded_len(lens[n]);
        char *b64 = malloc(enclen + 1);
        if (b64 == NULL)
            return SB_ENOMEM;
        sb_base64_encode(bins[n], lens[n], b64);
        json_t *str = json_stringn_nocheck(b64, enclen);
        free(b64);
        if (str == NULL)
            return SB_ENOMEM;
        if (json_object_clear(v) != 0 || json_object_set_new_nocheck(v, "$binary", str) != 0)
            return SB_ENOMEM;
        return 0;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            int rc = do_attach(item, bins, lens);
            if (rc != 0)
                return rc;
        }
    } else if (json_is_object(v)) {
        const char *key;
        json_t *item;
        json_object_foreach(v, key, item)
        {
            int rc = do_attach(item, bins, lens);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

int sb_sio_attach_binary(json_t *data, const void *const *bins, const size_t *lens, size_t count, const char **why)
{
    const char *ignored;
    if (why == NULL)
        why = &ignored;
    *why = NULL;
    if (data == NULL)
        return 0;
    /* Validate first so that a bad packet leaves data as it was. */
    int rc = check_attach(data, count, 0, why);
    if (rc != 0)
        return rc;
    rc = do_attach(data, bins, lens);
    if (rc != 0)
        *why = "out of memory";
    return rc;
}

void sb_sio_encoded_clear(sb_sio_encoded_t *enc)
{
    sb_buf_free(&enc->text);
    for (size_t i = 0; i < enc->nbins; i++)
        sb_buf_free(&enc->bins[i]);
    free(enc->bins);
    memset(enc, 0, sizeof(*enc));
}

/* CONTRACT §2: {"$binary": "<base64>"} and nothing else is an attachment. */
static int is_binary_obj(const json_t *v)
{
    return json_is_object(v) && json_object_size(v) == 1 && json_is_string(json_object_get(v, "$binary"));
}

/* 1 when v holds a $binary object, 0 when not, SB_EINVAL when too deep to tell. */
static int has_binary(const json_t *v, int depth)
{
    if (depth > MAX_WALK_DEPTH)
        return SB_EINVAL;
    if (is_binary_obj(v))
        return 1;
    if (json_is_array(v)) {
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item)
        {
            int rc = has_binary(item, depth + 1);
            if (rc != 0)
                return rc;
        }
    } else if (json_is_object(v)) {
        const char *key;
        const json_t *item;
        json_object_foreach((json_t *)v, key, item)
        {
            int rc = has_binary(item, depth + 1);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

/* Converts, in place (v is our private deep copy), each $binary object into a
 * placeholder numbered in depth-first order, as socket.io-parser numbers them,
 * and appends the decoded bytes to enc->bins. */
static int to_placeholders(json_t *v, sb_sio_encoded_t *enc, size_t *bins_cap)
{
    if (is_binary_obj(v)) {
        const json_t *str = json_object_get(v, "$binary");
        const char *b64 = json_string_value(str);
        size_t b64len = json_string_length(str);
        if (enc->nbins == *bins_cap) {
            size_t ncap = *bins_cap ? *bins_cap * 2 : 4;
            sb_buf_t *nb = realloc(enc->bins, ncap * sizeof(*nb));
            if (nb == NULL)
                return SB_ENOMEM;
            enc->bins = nb;
            *bins_cap = ncap;
        }
        sb_buf_t *bin = &enc->bins[enc->nbins];
        sb_buf_init(bin, 0);
        int rc = sb_buf_reserve(bin, b64len / 4 * 3 + 3);
        if (rc != 0)
            return rc;
        enc->nbins++; /* counted now so that clear frees it on any later failure */
        if (sb_base64_decode(b64, b64len, bin->base, &bin->len) != 0)
            return SB_EPROTO;
        json_t *num = json_integer((json_int_t)(enc->nbins - 1));
        if (num == NULL || json_object_clear(v) != 0) {
            json_decref(num);
            return SB_ENOMEM;
        }
        if (json_object_set_new_nocheck(v, "_placeholder", json_true()) != 0 ||
            json_object_set_new_nocheck(v, "num", num) != 0)
            return SB_ENOMEM;
        return 0;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            int rc = to_placeholders(item, enc, bins_cap);
            if (rc != 0)
                return rc;
        }
    } else if (json_is_object(v)) {
        const char *key;
        json_t *item;
        json_object_foreach(v, key, item)
        {
            int rc = to_placeholders(item, enc, bins_cap);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static int dump_to_buf(const char *buffer, size_t size, void *data)
{
    return sb_buf_append(data, buffer, size) == 0 ? 0 : -1;
}

static int append_json(sb_buf_t *out, const json_t *v)
{
    return json_dump_callback(v, dump_to_buf, out, DUMP_FLAGS) == 0 ? 0 : SB_ENOMEM;
}

static int encode_packet(sb_sio_encoded_t *enc, const char *nsp, const char *event, const json_t *args, int64_t ack_id)
{
    json_t *copy = NULL;
    size_t bins_cap = 0;
    if (args != NULL) {
        int hb = has_binary(args, 0);
        if (hb < 0)
            return hb;
        if (hb) {
            /* args belongs to the caller (often shared by a broadcast); the
             * placeholders are put into a private copy. */
            copy = json_deep_copy(args);
            if (copy == NULL)
                return SB_ENOMEM;
            int rc = to_placeholders(copy, enc, &bins_cap);
            if (rc != 0) {
                json_decref(copy);
                return rc;
            }
            args = copy;
        }
    }

    sb_buf_t *t = &enc->text;
    int binary = copy != NULL;
    sb_sio_type_t type = event != NULL ? SB_SIO_EVENT : SB_SIO_ACK;
    if (binary)
        type = type == SB_SIO_EVENT ? SB_SIO_BINARY_EVENT : SB_SIO_BINARY_ACK;
    int rc = sb_buf_append_char(t, (char)('0' + type));
    if (rc == 0 && binary) {
        rc = sb_buf_append_u64(t, enc->nbins);
        if (rc == 0)
            rc = sb_buf_append_char(t, '-');
    }
    if (rc == 0)
        rc = sb_sio_append_nsp(t, nsp);
    if (rc == 0 && ack_id >= 0)
        rc = sb_buf_append_i64(t, ack_id);
    if (rc == 0)
        rc = sb_buf_append_char(t, '[');
    int first = 1;
    if (rc == 0 && event != NULL) {
        rc = sb_buf_append_json_str(t, event, strlen(event));
        first = 0;
    }
    if (args != NULL) {
        size_t i;
        const json_t *item;
        json_array_foreach(args, i, item)
        {
            if (rc == 0 && !first)
                rc = sb_buf_append_char(t, ',');
            if (rc == 0)
                rc = append_json(t, item);
            first = 0;
        }
    }
    if (rc == 0)
        rc = sb_buf_append_char(t, ']');
    json_decref(copy);
    return rc;
}

int sb_sio_encode_event(sb_sio_encoded_t *enc, const char *nsp, const char *event, const json_t *args, int64_t ack_id)
{
    memset(enc, 0, sizeof(*enc));
    if (args != NULL && !json_is_array(args))
        return SB_EINVAL;
    if (event == NULL && ack_id < 0)
        return SB_EINVAL; /* an ACK answers something */
    int rc = encode_packet(enc, nsp, event, args, ack_id);
    if (rc != 0)
        sb_sio_encoded_clear(enc);
    return rc;
}

int sb_sio_encode_ack(sb_sio_encoded_t *enc, const char *nsp, int64_t ack_id, const json_t *args)
{
    return sb_sio_encode_event(enc, nsp, NULL, args, ack_id);
}

int sb_sio_append_nsp(sb_buf_t *out, const char *nsp)
{
    if (nsp == NULL || strcmp(nsp, "/") == 0 || nsp[0] == '\0')
        return 0;
    size_t start = out->len;
    int rc = sb_buf_append_str(out, nsp);
    if (rc == 0)
        rc = sb_buf_append_char(out, ',');
    if (rc != 0)
        out->len = start;
    return rc;
}

/* Appends ,"key":"value" (or without the comma when first). */
static int append_str_member(sb_buf_t *out, const char *key, const char *value, int first)
{
    int rc = first ? 0 : sb_buf_append_char(out, ',');
    if (rc == 0)
        rc = sb_buf_append_json_str(out, key, strlen(key));
    if (rc == 0)
        rc = sb_buf_append_char(out, ':');
    if (rc == 0)
        rc = sb_buf_append_json_str(out, value, strlen(value));
    return rc;
}

int sb_sio_encode_connect(sb_buf_t *out, const char *nsp, const char *sid, const char *pid, const char *offset)
{
    if (sid == NULL)
        return SB_EINVAL;
    size_t start = out->len;
    int rc = sb_buf_append_char(out, '0');
    if (rc == 0)
        rc = sb_sio_append_nsp(out, nsp);
    if (rc == 0)
        rc = sb_buf_append_char(out, '{');
    if (rc == 0)
        rc = append_str_member(out, "sid", sid, 1);
    if (rc == 0 && pid != NULL)
        rc = append_str_member(out, "pid", pid, 0);
    if (rc == 0 && offset != NULL)
        rc = append_str_member(out, "offset", offset, 0);
    if (rc == 0)
        rc = sb_buf_append_char(out, '}');
    if (rc != 0)
        out->len = start;
    return rc;
}

int sb_sio_encode_connect_error(sb_buf_t *out, const char *nsp, const char *message, const json_t *data)
{
    if (message == NULL)
        return SB_EINVAL;
    size_t start = out->len;
    int rc = sb_buf_append_char(out, '4');
    if (rc == 0)
        rc = sb_sio_append_nsp(out, nsp);
    if (rc == 0)
        rc = sb_buf_append_char(out, '{');
    if (rc == 0)
        rc = append_str_member(out, "message", message, 1);
    if (rc == 0 && data != NULL) {
        rc = sb_buf_append_str(out, ",\"data\":");
        if (rc == 0)
            rc = append_json(out, data);
    }
    if (rc == 0)
        rc = sb_buf_append_char(out, '}');
    if (rc != 0)
        out->len = start;
    return rc;
}

int sb_sio_encode_disconnect(sb_buf_t *out, const char *nsp)
{
    size_t start = out->len;
    int rc = sb_buf_append_char(out, '1');
    if (rc == 0)
        rc = sb_sio_append_nsp(out, nsp);
    if (rc != 0)
        out->len = start;
    return rc;
}
