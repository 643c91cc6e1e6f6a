/*
 * json.c — sb_json_load_simple: one pass over a small simple text, building the
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

#define MAX_DEPTH 8 /* deeper texts go to jansson; keeps the recursion bounded */

static json_t *scan_value(cur_t *c, int flags, int depth);

static json_t *scan_array(cur_t *c, int flags, int depth)
{
    c->p++; /* '[' */
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
        json_t *v = scan_value(c, flags, depth + 1);
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

static json_t *scan_object(cur_t *c, int flags, int depth)
{
    c->p++; /* '{' */
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return o;
    }
    for (;;) {
        const char *k;
        size_t kn;
        skip_ws(c);
        if (scan_string(c, &k, &kn) != 0)
            break;
        skip_ws(c);
        if (c->p >= c->end || *c->p++ != ':')
            break;
        skip_ws(c);
        if ((flags & SB_JSON_SIMPLE_REJECT_DUPLICATES) && json_object_getn(o, k, kn) != NULL)
            break;
        json_t *v = scan_value(c, flags, depth + 1);
        /* a later duplicate replaces the value in place, as jansson's parser does */
        if (v == NULL || json_object_setn_new_nocheck(o, k, kn, v) != 0)
            break;
        skip_ws(c);
        if (c->p >= c->end)
            break;
        if (*c->p == '}') {
            c->p++;
            return o;
        }
        if (*c->p++ != ',')
            break;
    }
    json_decref(o);
    return NULL;
}

static json_t *scan_value(cur_t *c, int flags, int depth)
{
    if (c->p >= c->end)
        return NULL;
    if (*c->p == '{' || *c->p == '[') {
        if (depth >= MAX_DEPTH)
            return NULL;
        return *c->p == '{' ? scan_object(c, flags, depth) : scan_array(c, flags, depth);
    }
    return scan_scalar(c);
}

json_t *sb_json_load_simple(const char *buf, size_t len, int flags)
{
    if (buf == NULL)
        return NULL;
    cur_t c = {buf, buf + len};
    skip_ws(&c);
    /* an object or an array, as json_loadb without JSON_DECODE_ANY takes */
    if (c.p >= c.end || (*c.p != '{' && *c.p != '['))
        return NULL;
    json_t *v = scan_value(&c, flags, 0);
    if (v == NULL)
        return NULL;
    skip_ws(&c);
    if (c.p != c.end) { /* trailing bytes: jansson's error */
        json_decref(v);
        return NULL;
    }
    return v;
}
