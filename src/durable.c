/*
 * durable.c — stream id helpers for durable emits (see include/switchboard/durable.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "switchboard/common.h"
#include "switchboard/durable.h"

/* Parses an unsigned decimal of at most 20 digits without overflow; returns bytes used, 0 on failure. */
static size_t parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *out = v;
    return i;
}

int sb_durable_id_parse(const char *s, size_t len, sb_stream_id_t *out)
{
    if (s == NULL || len == 0 || len > SB_DURABLE_ID_MAX)
        return SB_EINVAL;
    sb_stream_id_t id;
    size_t n = parse_u64(s, len, &id.ms);
    if (n == 0 || n >= len || s[n] != '-')
        return SB_EINVAL;
    size_t m = parse_u64(s + n + 1, len - n - 1, &id.seq);
    if (m == 0 || n + 1 + m != len)
        return SB_EINVAL;
    *out = id;
    return 0;
}

int sb_durable_id_cmp(const sb_stream_id_t *a, const sb_stream_id_t *b)
{
    if (a->ms != b->ms)
        return a->ms < b->ms ? -1 : 1;
    if (a->seq != b->seq)
        return a->seq < b->seq ? -1 : 1;
    return 0;
}

size_t sb_durable_id_format(const sb_stream_id_t *id, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%" PRIu64 "-%" PRIu64, id->ms, id->seq);
    return n < 0 || (size_t)n >= outlen ? 0 : (size_t)n;
}

int sb_durable_inbox_id(json_t *inbox, const char *user, sb_stream_id_t *out)
{
    json_t *v = json_is_object(inbox) ? json_object_get(inbox, user) : NULL;
    if (v == NULL)
        return SB_ENOTFOUND;
    if (!json_is_string(v))
        return SB_EINVAL;
    return sb_durable_id_parse(json_string_value(v), json_string_length(v), out);
}
