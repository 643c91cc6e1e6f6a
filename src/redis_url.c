/*
 * redis_url.c — parses the --redis URL into an sb_redis_addr_t.
 *
 * Accepted forms (see redis.h):
 *   redis://host[:port][/db]
 *   redis://[user:]pass@host[:port][/db]     (as redis-cli -u: no ':' means a password alone)
 *   redis://[::1]:6379
 *   unix:///path/to/sock[?db=N]              (unix://[user:]pass@/path also works)
 * Only called at start-up, so clarity beats speed; every field is bounded by
 * the fixed arrays of sb_redis_addr_t and an overlong part is an error, never
 * a silent truncation (a cut password would fail AUTH with a confusing reply).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "switchboard/common.h"
#include "switchboard/redis.h"

#define DEFAULT_PORT 6379
#define MAX_DB 1023 /* Redis' own ceiling is configurable; no sane deployment has more */

static int fail(const char **why, const char *reason)
{
    if (why != NULL)
        *why = reason;
    return SB_EINVAL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes %XX escapes of s[0..len) into out (capacity cap, NUL-terminated).
 * A decoded NUL is refused: it would silently shorten the credential. */
static int percent_decode(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            if (c == '\0')
                return -1;
            i += 2;
        }
        if (o + 1 >= cap)
            return -2;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

/* Parses an unsigned decimal made only of digits, up to max. */
static int parse_uint(const char *s, size_t len, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    if (len == 0 || len > 10)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_userinfo(const char *s, size_t len, sb_redis_addr_t *out, const char **why)
{
    const char *colon = memchr(s, ':', len);
    const char *pass = s;
    size_t passlen = len;
    if (colon != NULL) {
        int rc = percent_decode(s, (size_t)(colon - s), out->user, sizeof(out->user));
        if (rc == -2)
            return fail(why, "user name too long (max 127 bytes)");
        if (rc != 0)
            return fail(why, "bad percent-escape in user name");
        pass = colon + 1;
        passlen = len - (size_t)(pass - s);
    }
    int rc = percent_decode(pass, passlen, out->pass, sizeof(out->pass));
    if (rc == -2)
        return fail(why, "password too long (max 255 bytes)");
    if (rc != 0)
        return fail(why, "bad percent-escape in password");
    return 0;
}

static int valid_hostname(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
              c == '_'))
            return 0;
    }
    return 1;
}

/* host[:port] or [v6][:port] */
static int parse_hostport(const char *s, size_t len, sb_redis_addr_t *out, const char **why)
{
    const char *host = s, *port = NULL;
    size_t hostlen, portlen = 0;

    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL)
            return fail(why, "missing ']' after IPv6 address");
        host = s + 1;
        hostlen = (size_t)(close - host);
        const char *after = close + 1;
        size_t rest = len - (size_t)(after - s);
        if (rest > 0) {
            if (*after != ':')
                return fail(why, "unexpected text after ']' (expected :port)");
            port = after + 1;
            portlen = rest - 1;
        }
        char tmp[INET6_ADDRSTRLEN + 1];
        struct in6_addr a6;
        if (hostlen == 0 || hostlen >= sizeof(tmp))
            return fail(why, "invalid IPv6 address");
        memcpy(tmp, host, hostlen);
        tmp[hostlen] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return fail(why, "invalid IPv6 address");
    } else {
        const char *colon = memchr(s, ':', len);
        hostlen = colon != NULL ? (size_t)(colon - s) : len;
        if (colon != NULL) {
            port = colon + 1;
            portlen = len - hostlen - 1;
            if (memchr(port, ':', portlen) != NULL)
                return fail(why, "IPv6 addresses must be written in brackets: redis://[::1]:6379");
        }
        if (hostlen == 0)
            return fail(why, "missing host");
        if (!valid_hostname(host, hostlen))
            return fail(why, "invalid character in host name");
    }
    if (hostlen >= sizeof(out->host))
        return fail(why, "host name too long");
    memcpy(out->host, host, hostlen);
    out->host[hostlen] = '\0';

    out->port = DEFAULT_PORT;
    if (port != NULL) {
        unsigned long p;
        if (parse_uint(port, portlen, 65535, &p) != 0 || p == 0)
            return fail(why, "port must be a number from 1 to 65535");
        out->port = (uint16_t)p;
    }
    return 0;
}

static int parse_db(const char *s, size_t len, sb_redis_addr_t *out, const char **why)
{
    unsigned long db;
    if (parse_uint(s, len, MAX_DB, &db) != 0)
        return fail(why, "database must be a number from 0 to 1023");
    out->db = (int)db;
    return 0;
}

/* Splits "[userinfo@]rest" at the last '@': an unescaped '@' may only be part
 * of the password, never of a host, a path or a db number. */
static int split_userinfo(const char *s, size_t len, const char **rest, size_t *restlen, sb_redis_addr_t *out,
                          const char **why)
{
    const char *at = NULL;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '@')
            at = s + i;
    *rest = s;
    *restlen = len;
    if (at == NULL)
        return 0;
    if (parse_userinfo(s, (size_t)(at - s), out, why) != 0)
        return SB_EINVAL;
    *rest = at + 1;
    *restlen = len - (size_t)(*rest - s);
    return 0;
}

static int parse_tcp(const char *s, sb_redis_addr_t *out, const char **why)
{
    size_t len = strlen(s);
    const char *rest;
    size_t restlen;
    if (strpbrk(s, "?#") != NULL)
        return fail(why, "query strings and fragments are not supported in redis:// URLs (use redis://host:port/db)");
    if (split_userinfo(s, len, &rest, &restlen, out, why) != 0)
        return SB_EINVAL;

    const char *slash = memchr(rest, '/', restlen);
    size_t hplen = slash != NULL ? (size_t)(slash - rest) : restlen;
    if (parse_hostport(rest, hplen, out, why) != 0)
        return SB_EINVAL;
    if (slash != NULL) {
        const char *db = slash + 1;
        size_t dblen = restlen - hplen - 1;
        if (dblen > 0 && parse_db(db, dblen, out, why) != 0) /* "redis://h/" means db 0 */
            return SB_EINVAL;
    }
    return 0;
}

static int parse_unix(const char *s, sb_redis_addr_t *out, const char **why)
{
    size_t len = strlen(s);
    const char *rest;
    size_t restlen;
    if (memchr(s, '#', len) != NULL)
        return fail(why, "fragments are not supported in unix:// URLs");
    const char *q = memchr(s, '?', len);
    size_t mainlen = q != NULL ? (size_t)(q - s) : len;
    if (split_userinfo(s, mainlen, &rest, &restlen, out, why) != 0)
        return SB_EINVAL;
    if (restlen == 0 || rest[0] != '/')
        return fail(why, "unix socket path must be absolute: unix:///path/to/redis.sock");
    /* sun_path is the real limit, smaller than our buffer. */
    if (restlen >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return fail(why, "unix socket path too long (max 107 bytes)");
    memcpy(out->path, rest, restlen);
    out->path[restlen] = '\0';
    out->is_unix = 1;

    if (q != NULL) {
        const char *qs = q + 1;
        size_t qlen = len - mainlen - 1;
        if (qlen < 3 || memcmp(qs, "db=", 3) != 0)
            return fail(why, "the only query parameter of unix:// URLs is db=N");
        if (parse_db(qs + 3, qlen - 3, out, why) != 0)
            return SB_EINVAL;
    }
    return 0;
}

int sb_redis_url_parse(const char *url, sb_redis_addr_t *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    out->port = DEFAULT_PORT;
    if (why != NULL)
        *why = NULL;
    if (url == NULL || url[0] == '\0')
        return fail(why, "empty URL");
    for (const char *p = url; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f)
            return fail(why, "URL contains a space or control character (percent-encode it)");

    int rc;
    if (strncasecmp(url, "redis://", 8) == 0) {
        rc = parse_tcp(url + 8, out, why);
    } else if (strncasecmp(url, "unix://", 7) == 0) {
        rc = parse_unix(url + 7, out, why);
    } else if (strncasecmp(url, "rediss://", 9) == 0) {
        rc = fail(why, "rediss:// (TLS) is not supported: hiredis 0.14 has no TLS; use redis:// or unix:// "
                       "(or a TLS tunnel such as stunnel)");
    } else {
        rc = fail(why, "URL must start with redis:// or unix://");
    }
    if (rc != 0) {
        memset(out, 0, sizeof(*out)); /* never leave half a credential behind */
        out->port = DEFAULT_PORT;
    }
    return rc;
}
