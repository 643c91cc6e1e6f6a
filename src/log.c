/*
 * log.c — pino-shaped JSON lines on stderr.
 *
 * Each line is built in a fixed stack buffer and written with one write(2), so
 * lines from several threads never interleave and logging never allocates.
 * A line that would exceed the buffer is cut at a field boundary (or inside a
 * long string value) and marked "truncated":true, so it always stays one valid
 * JSON object. Level and address masking are set once by sb_log_init before
 * threads start and only read afterwards.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "switchboard/common.h"
#include "switchboard/log.h"

#define LINE_MAX_BYTES 16384
/* Room kept at the end of the buffer for ,"truncated":true}\n */
#define TAIL_RESERVE 32

static int min_level = SB_LOG_INFO;
/* Lines below error level per second (0 = no limit): a flood of bad clients must not flood the log. */
static atomic_uint rate_per_sec = 200;
static atomic_ullong rate_window;  /* the second the counter belongs to */
static atomic_uint rate_count;     /* lines written in that second */
static atomic_ullong rate_dropped; /* lines suppressed since the last report */
static atomic_ullong rate_dropped_total;
static int show_ips = 0;

static pthread_once_t host_once = PTHREAD_ONCE_INIT;
static char host_json[600]; /* the hostname already escaped as a JSON string, with quotes */

typedef struct line {
    char buf[LINE_MAX_BYTES];
    size_t len;
    size_t limit; /* len may not pass this; the tail reserve lies beyond */
    int truncated;
} line_t;

static int put(line_t *l, const char *s, size_t n)
{
    if (l->len + n > l->limit)
        return -1;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    return 0;
}

static int puts_(line_t *l, const char *s)
{
    return put(l, s, strlen(s));
}

/* Appends s as a JSON string. When it does not fit, writes as much as fits
 * (never splitting an escape or a UTF-8 sequence), closes the quote, and
 * returns -1 so the caller stops adding fields. */
static int put_json_str(line_t *l, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    /* The closing quote must always fit: keep one byte for it. */
    size_t saved_limit = l->limit;
    if (l->limit <= l->len + 2)
        return -1;
    l->limit -= 1;
    int rc = put(l, "\"", 1);
    for (size_t i = 0; rc == 0 && i < n;) {
        char esc[8];
        size_t elen = 0;
        unsigned char c = p[i];
        size_t step = 1;
        switch (c) {
        case '"':
            memcpy(esc, "\\\"", 2);
            elen = 2;
            break;
        case '\\':
            memcpy(esc, "\\\\", 2);
            elen = 2;
            break;
        case '\n':
            memcpy(esc, "\\n", 2);
            elen = 2;
            break;
        case '\r':
            memcpy(esc, "\\r", 2);
            elen = 2;
            break;
        case '\t':
            memcpy(esc, "\\t", 2);
            elen = 2;
            break;
        case '\b':
            memcpy(esc, "\\b", 2);
            elen = 2;
            break;
        case '\f':
            memcpy(esc, "\\f", 2);
            elen = 2;
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                elen = 6;
            } else if (c >= 0x80) {
                step = sb_utf8_seq(p + i, n - i);
                if (step == 0) {
                    memcpy(esc, "\\ufffd", 6);
                    elen = 6;
                    step = 1;
                } else {
                    memcpy(esc, p + i, step);
                    elen = step;
                }
            } else {
                esc[0] = (char)c;
                elen = 1;
            }
        }
        rc = put(l, esc, elen);
        i += step;
    }
    l->limit = saved_limit;
    put(l, "\"", 1);
    return rc;
}

/* Raw JSON for '#' fields. A value with a control character could break the
 * one-line framing, and an empty one would be invalid JSON: write those as a
 * string and as null instead. */
static int put_raw(line_t *l, const char *v)
{
    if (v[0] == '\0')
        return puts_(l, "null");
    for (const char *p = v; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20)
            return put_json_str(l, v);
    return puts_(l, v);
}

static void init_host(void)
{
    char name[256];
    size_t len = 0;

    if (gethostname(name, sizeof(name)) != 0)
        memcpy(name, "unknown", 8);
    name[sizeof(name) - 1] = '\0';
    /* Host names are plain ASCII in practice; anything odd becomes '?' rather
     * than needing the full escaper (and its 16 KB line) here. */
    host_json[len++] = '"';
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0' && len + 4 < sizeof(host_json); p++) {
        if (*p == '"' || *p == '\\') {
            host_json[len++] = '\\';
            host_json[len++] = (char)*p;
        } else if (*p < 0x20 || *p >= 0x7f) {
            host_json[len++] = '?';
        } else {
            host_json[len++] = (char)*p;
        }
    }
    host_json[len++] = '"';
    host_json[len] = '\0';
}

void sb_log_init(int level, int show_client_ips)
{
    min_level = level;
    show_ips = show_client_ips;
    pthread_once(&host_once, init_host);
}

int sb_log_enabled(int level)
{
    return min_level < SB_LOG_SILENT && level >= min_level && level < SB_LOG_SILENT;
}

static void write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a logging failure */
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* Appends the (key, value) pairs up to the NULL key. */
static void put_fields(line_t *l, va_list *ap)
{
    while (!l->truncated) {
        const char *key = va_arg(*ap, const char *);
        if (key == NULL)
            break;
        const char *val = va_arg(*ap, const char *);
        if (val == NULL)
            continue;
        size_t mark = l->len;
        int raw = key[0] == '#';
        int rc = put(l, ",", 1);
        if (rc == 0)
            rc = put_json_str(l, raw ? key + 1 : key);
        if (rc == 0)
            rc = put(l, ":", 1);
        if (rc != 0) {
            l->len = mark;
            l->truncated = 1;
            break;
        }
        size_t value_at = l->len;
        rc = raw ? put_raw(l, val) : put_json_str(l, val);
        if (rc != 0) {
            /* A cut string value is still worth keeping (put_json_str closed
             * its quote); a cut raw value or no value at all is dropped whole
             * so the object stays valid. */
            if (raw || l->len == value_at)
                l->len = mark;
            l->truncated = 1;
        }
    }
}

/* The per-second budget of lines below error level. When a new second starts after lines were suppressed, one
 * warning says how many (it is itself exempt, so the report is never lost). */
static int rate_allows(unsigned long long sec)
{
    unsigned limit = atomic_load(&rate_per_sec);
    if (limit == 0)
        return 1;
    unsigned long long win = atomic_load(&rate_window);
    if (win != sec && atomic_compare_exchange_strong(&rate_window, &win, sec)) {
        atomic_store(&rate_count, 0);
        unsigned long long dropped = atomic_exchange(&rate_dropped, 0);
        if (dropped > 0) {
            char n[32];
            snprintf(n, sizeof(n), "%llu", dropped);
            sb_log(SB_LOG_ERROR, "log lines suppressed (over --log-rate)", "#suppressed", n, NULL);
        }
    }
    if (atomic_fetch_add(&rate_count, 1) < limit)
        return 1;
    atomic_fetch_add(&rate_dropped, 1);
    atomic_fetch_add(&rate_dropped_total, 1);
    return 0;
}

void sb_log_set_rate(unsigned lines_per_second)
{
    atomic_store(&rate_per_sec, lines_per_second);
}

unsigned long long sb_log_suppressed(void)
{
    return atomic_load(&rate_dropped_total);
}

void sb_log(int level, const char *msg, ...)
{
    line_t l;
    char num[64];
    struct timespec ts;
    va_list ap;

    if (!sb_log_enabled(level))
        return;
    pthread_once(&host_once, init_host);
    clock_gettime(CLOCK_REALTIME, &ts);
    if (level < SB_LOG_ERROR && !rate_allows((unsigned long long)ts.tv_sec))
        return;
    l.len = 0;
    l.limit = sizeof(l.buf) - TAIL_RESERVE;
    l.truncated = 0;

    unsigned long long ms = (unsigned long long)ts.tv_sec * 1000ULL + (unsigned long long)(ts.tv_nsec / 1000000);
    int n = snprintf(num, sizeof(num), "{\"level\":%d,\"time\":%llu,\"pid\":%ld,\"hostname\":", level, ms,
                     (long)getpid());
    put(&l, num, (size_t)n);
    puts_(&l, host_json);
    puts_(&l, ",\"msg\":");
    if (put_json_str(&l, msg != NULL ? msg : "") != 0)
        l.truncated = 1;

    va_start(ap, msg);
    if (!l.truncated)
        put_fields(&l, &ap);
    va_end(ap);

    /* The tail reserve guarantees these fit. */
    l.limit = sizeof(l.buf);
    if (l.truncated)
        puts_(&l, ",\"truncated\":true");
    put(&l, "}\n", 2);
    write_all(l.buf, l.len);
}

static void copy_out(const char *s, char *out, unsigned long outlen)
{
    size_t n = strlen(s);
    if (outlen == 0)
        return;
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, s, n);
    out[n] = '\0';
}

void sb_log_mask_addr(const char *addr, char *out, unsigned long outlen)
{
    char tmp[INET6_ADDRSTRLEN + 8];
    char text[INET6_ADDRSTRLEN + 8];
    unsigned char a[16];
    size_t n;

    if (addr == NULL) {
        copy_out("unknown", out, outlen);
        return;
    }
    if (show_ips) {
        copy_out(addr, out, outlen);
        return;
    }
    /* Accept "[v6]" and drop a zone id ("fe80::1%eth0"): the zone names a
     * local interface and is not needed to identify a network. */
    if (addr[0] == '[')
        addr++;
    n = strcspn(addr, "]%");
    if (n >= sizeof(tmp)) {
        copy_out("unknown", out, outlen);
        return;
    }
    memcpy(tmp, addr, n);
    tmp[n] = '\0';

    if (inet_pton(AF_INET, tmp, a) == 1) {
        a[3] = 0;
        sb_ipv4_text(a, text);
    } else if (inet_pton(AF_INET6, tmp, a) == 1) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, sizeof(mapped)) == 0) {
            /* Dual-stack sockets report IPv4 clients as ::ffff:a.b.c.d; mask them as IPv4. */
            a[15] = 0;
        } else {
            memset(a + 6, 0, 10); /* keep the first 3 groups (48 bits): the site prefix */
        }
        inet_ntop(AF_INET6, a, text, sizeof(text));
    } else {
        copy_out("unknown", out, outlen);
        return;
    }
    copy_out(text, out, outlen);
}
