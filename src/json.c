/*
 * json.c — sb_json_load_flat: one pass over a small flat object, building the
 * json_t jansson would build; anything unusual is declined (NULL) and left to
 * json_loadb. tests/fuzz/fuzz_json.c checks the equality against jansson.
 */
#include "switchboard/json.h"

#include <stdint.h>
#include <string.h>

typedef struct {
    const char *p, *end;
} cur_t;

static void skip_ws(cur_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* A string of printable ASCII without escapes: sets *s and *n to its contents. */
static int scan_string(cur_t *c, const char **s, size_t *n)
{
    if (c->p >= c->end || *c->p != '"')
        return -1;
    const char *start = ++c->p;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') {
            *s = start;
            *n = (size_t)(c->p - start);
            c->p++;
            return 0;
        }
        /* escapes, control characters and non-ASCII (UTF-8 to validate) go to jansson */
        if (ch == '\\' || ch < 0x20 || ch > 0x7e)
            return -1;
        c->p++;
    }
    return -1;
}

static int is_delim(cur_t *c)
{
    if (c->p >= c->end)
        return 1;
    char ch = *c->p;
    return ch == ',' || ch == '}' || ch == ']' || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static int scan_word(cur_t *c, const char *w, size_t n)
{
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0)
        return -1;
    c->p += n;
    return is_delim(c) ? 0 : -1;
}

/* A scalar: string, integer (at most 18 digits, so no overflow), true, false, null. */
static json_t *scan_scalar(cur_t *c)
{
    if (c->p >= c->end)
        return NULL;
    char ch = *c->p;
    if (ch == '"') {
        const char *s;
        size_t n;
        return scan_string(c, &s, &n) == 0 ? json_stringn_nocheck(s, n) : NULL;
    }
    if (ch == '-' || (ch >= '0' && ch <= '9')) {
        int neg = ch == '-';
        if (neg)
            c->p++;
        const char *d = c->p;
        int64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (c->p - d >= 18)
                return NULL;
            v = v * 10 + (*c->p - '0');
            c->p++;
        }
        size_t nd = (size_t)(c->p - d);
        /* no digits, a leading zero, a fraction or an exponent: jansson's */
        if (nd == 0 || (nd > 1 && *d == '0') || !is_delim(c))
            return NULL;
        return json_integer(neg ? -v : v);
    }
    if (ch == 't')
        return scan_word(c, "true", 4) == 0 ? json_true() : NULL;
    if (ch == 'f')
        return scan_word(c, "false", 5) == 0 ? json_false() : NULL;
    if (ch == 'n')
        return scan_word(c, "null", 4) == 0 ? json_null() : NULL;
    return NULL;
}

static json_t *scan_value(cur_t *c)
{
    if (c->p >= c->end || *c->p != '[')
        return scan_scalar(c);
    c->p++;
    json_t *a = json_array();
    if (a == NULL)
        return NULL;
    skip_ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        return a;
    }
    for (;;) {
        skip_ws(c);
        json_t *v = scan_scalar(c);
        if (v == NULL || json_array_append_new(a, v) != 0)
            break;
        skip_ws(c);
        if (c->p >= c->end)
            break;
        if (*c->p == ']') {
            c->p++;
            return a;
        }
        if (*c->p++ != ',')
            break;
    }
    json_decref(a);
    return NULL;
}

json_t *sb_json_load_flat(const char *buf, size_t len, int flags)
{
    if (buf == NULL)
        return NULL;
    cur_t c = {buf, buf + len};
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '{')
        return NULL;
    c.p++;
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    skip_ws(&c);
    if (c.p < c.end && *c.p == '}') {
        c.p++;
        goto done;
    }
    for (;;) {
        const char *k;
        size_t kn;
        skip_ws(&c);
        if (scan_string(&c, &k, &kn) != 0)
            goto decline;
        skip_ws(&c);
        if (c.p >= c.end || *c.p++ != ':')
            goto decline;
        skip_ws(&c);
        if ((flags & SB_JSON_FLAT_REJECT_DUPLICATES) && json_object_getn(o, k, kn) != NULL)
            goto decline;
        json_t *v = scan_value(&c);
        /* a later duplicate replaces the value in place, as jansson's parser does */
        if (v == NULL || json_object_setn_new_nocheck(o, k, kn, v) != 0)
            goto decline;
        skip_ws(&c);
        if (c.p >= c.end)
            goto decline;
        if (*c.p == '}') {
            c.p++;
            break;
        }
        if (*c.p++ != ',')
            goto decline;
    }
done:
    skip_ws(&c);
    if (c.p != c.end) /* trailing bytes: jansson's error */
        goto decline;
    return o;
decline:
    json_decref(o);
    return NULL;
}
