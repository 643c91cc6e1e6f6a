/*
 * common.c — error names, capped growable buffers, base64, clocks and random
 * ids (see include/switchboard/common.h).
 */
#include "switchboard/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

const char *sb_strerror(int err)
{
    switch (err) {
    case SB_OK:
        return "ok";
    case SB_ENOMEM:
        return "out of memory";
    case SB_ETOOBIG:
        return "too big";
    case SB_EPROTO:
        return "protocol error";
    case SB_EINVAL:
        return "invalid argument";
    case SB_ENOTFOUND:
        return "not found";
    case SB_EIO:
        return "i/o error";
    case SB_EAGAIN:
        return "try again";
    default:
        return "unknown error";
    }
}

void sb_buf_init(sb_buf_t *b, size_t max)
{
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void sb_buf_free(sb_buf_t *b)
{
    free(b->base);
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
}

int sb_buf_reserve(sb_buf_t *b, size_t extra)
{
    size_t max = b->max ? b->max : SIZE_MAX;
    if (extra > max || b->len > max - extra)
        return SB_ETOOBIG;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    /* Grow geometrically to keep appends amortised O(1), but never allocate
     * beyond the cap: a capped buffer must not hold more memory than it may use. */
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) {
            ncap = need;
            break;
        }
        ncap *= 2;
    }
    if (ncap > max)
        ncap = max;
    char *p = realloc(b->base, ncap);
    if (p == NULL)
        return SB_ENOMEM;
    b->base = p;
    b->cap = ncap;
    return 0;
}

int sb_buf_append(sb_buf_t *b, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    int rc = sb_buf_reserve(b, len);
    if (rc != 0)
        return rc;
    memcpy(b->base + b->len, data, len);
    b->len += len;
    return 0;
}

int sb_buf_append_str(sb_buf_t *b, const char *s)
{
    return sb_buf_append(b, s, strlen(s));
}

int sb_buf_append_char(sb_buf_t *b, char c)
{
    return sb_buf_append(b, &c, 1);
}

int sb_buf_append_u64(sb_buf_t *b, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return sb_buf_append(b, tmp + i, sizeof(tmp) - i);
}

int sb_buf_append_i64(sb_buf_t *b, int64_t v)
{
    char tmp[21];
    size_t i = sizeof(tmp);
    /* Negate in unsigned arithmetic so INT64_MIN does not overflow. */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        tmp[--i] = '-';
    return sb_buf_append(b, tmp + i, sizeof(tmp) - i);
}

int sb_buf_append_json_str(sb_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = b->len;
    int rc = sb_buf_append_char(b, '"');
    size_t run = 0; /* bytes of s[i - run .. i) still to copy verbatim */
    for (size_t i = 0; rc == 0 && i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t esclen = 0;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            esclen = 2;
        } else if (c < 0x20) {
            esc[0] = '\\';
            esclen = 2;
            switch (c) {
            case '\b':
                esc[1] = 'b';
                break;
            case '\f':
                esc[1] = 'f';
                break;
            case '\n':
                esc[1] = 'n';
                break;
            case '\r':
                esc[1] = 'r';
                break;
            case '\t':
                esc[1] = 't';
                break;
            default:
                esc[1] = 'u';
                esc[2] = '0';
                esc[3] = '0';
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 0xf];
                esclen = 6;
            }
        } else {
            /* Bytes >= 0x80 pass through: the input is UTF-8 and JSON allows it raw. */
            run++;
            continue;
        }
        rc = sb_buf_append(b, s + i - run, run);
        run = 0;
        if (rc == 0)
            rc = sb_buf_append(b, esc, esclen);
    }
    if (rc == 0)
        rc = sb_buf_append(b, s + len - run, run);
    if (rc == 0)
        rc = sb_buf_append_char(b, '"');
    if (rc != 0)
        b->len = start; /* all or nothing, as every other append */
    return rc;
}

char *sb_buf_steal(sb_buf_t *b)
{
    char *p = b->base;
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t sb_base64_encoded_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

void sb_base64_encode(const void *in, size_t n, char *out)
{
    const unsigned char *p = in;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
}

/* Digit values of both alphabets, -1 for anything else: a JWT's three segments are decoded (and checked
 * character by character) on every handshake, and a table costs a third of the comparisons it replaces. */
#define B64_COMMON(X)                                                                                                  \
    X('A', 0), X('B', 1), X('C', 2), X('D', 3), X('E', 4), X('F', 5), X('G', 6), X('H', 7), X('I', 8), X('J', 9),      \
        X('K', 10), X('L', 11), X('M', 12), X('N', 13), X('O', 14), X('P', 15), X('Q', 16), X('R', 17), X('S', 18),    \
        X('T', 19), X('U', 20), X('V', 21), X('W', 22), X('X', 23), X('Y', 24), X('Z', 25), X('a', 26), X('b', 27),    \
        X('c', 28), X('d', 29), X('e', 30), X('f', 31), X('g', 32), X('h', 33), X('i', 34), X('j', 35), X('k', 36),    \
        X('l', 37), X('m', 38), X('n', 39), X('o', 40), X('p', 41), X('q', 42), X('r', 43), X('s', 44), X('t', 45),    \
        X('u', 46), X('v', 47), X('w', 48), X('x', 49), X('y', 50), X('z', 51), X('0', 52), X('1', 53), X('2', 54),    \
        X('3', 55), X('4', 56), X('5', 57), X('6', 58), X('7', 59), X('8', 60), X('9', 61)
/* Stored as value + 1 so that the zero-filled rest of the table means "not a digit". */
/* NOLINTNEXTLINE(bugprone-macro-parentheses): a designated initializer cannot be parenthesised */
#define B64_ENTRY(c, v) [(unsigned char)(c)] = (v) + 1
static const unsigned char b64_std[256] = {B64_COMMON(B64_ENTRY), B64_ENTRY('+', 62), B64_ENTRY('/', 63)};
static const unsigned char b64_url[256] = {B64_COMMON(B64_ENTRY), B64_ENTRY('-', 62), B64_ENTRY('_', 63)};

/* Value of a character in the standard (url = 0) or URL-safe (url = 1) alphabet, or -1. */
static int b64_value(unsigned char c, int url)
{
    return (int)(url ? b64_url : b64_std)[c] - 1;
}

/* Decodes unpadded quanta of either alphabet. */
static int decode_quanta(const char *in, size_t len, int url, unsigned char *o, size_t *outlen)
{
    if (len % 4 == 1)
        return SB_EPROTO;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)in[i], url);
        if (v < 0)
            return SB_EPROTO;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *outlen = n;
    return 0;
}

int sb_base64_decode(const char *in, size_t len, void *out, size_t *outlen)
{
    /* Padding is only meaningful on a whole number of quanta; partial padding
     * ("AQ=") is as malformed as padding in the middle. */
    if (len % 4 == 0 && len > 0 && in[len - 1] == '=') {
        len--;
        if (in[len - 1] == '=')
            len--;
    }
    return decode_quanta(in, len, 0, out, outlen);
}

int sb_base64url_decode(const char *in, size_t len, void *out, size_t *outlen)
{
    return decode_quanta(in, len, 1, out, outlen);
}

int sb_base64url_char(unsigned char c)
{
    return b64_value(c, 1) >= 0;
}

uint64_t sb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t sb_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Random bytes come from getrandom in blocks of RANDOM_POOL per thread: a handshake takes three ids (engine sid,
 * socket id, recovery secret) and one syscall each was measurable in the server's CPU per handshake. Bytes are
 * used once and wiped as they are taken, so the pool holds only what is still to be handed out. */
#define RANDOM_POOL 512
static _Thread_local unsigned char random_pool[RANDOM_POOL];
static _Thread_local size_t random_left;

static void random_refill(void)
{
    size_t got = 0;
    while (got < sizeof(random_pool)) {
        ssize_t r = getrandom(random_pool + got, sizeof(random_pool) - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* A session id from a broken CSPRNG would be guessable; there is
             * no safe way to go on. */
            abort();
        }
        got += (size_t)r;
    }
    random_left = sizeof(random_pool);
}

size_t sb_strcopy(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    size_t k = n < cap ? n : cap - 1;
    memcpy(dst, src, k);
    dst[k] = '\0';
    return n;
}

size_t sb_utf8_seq(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1fu;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0fu;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07u;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

size_t sb_ipv4_text(const unsigned char a[4], char *out)
{
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        unsigned v = a[i];
        if (v >= 100)
            out[n++] = (char)('0' + v / 100);
        if (v >= 10)
            out[n++] = (char)('0' + v / 10 % 10);
        out[n++] = (char)('0' + v % 10);
        if (i < 3)
            out[n++] = '.';
    }
    out[n] = '\0';
    return n;
}

void sb_random_id(char *out, size_t n)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (size_t done = 0; done < n; done++) {
        if (random_left == 0)
            random_refill();
        unsigned char *b = &random_pool[sizeof(random_pool) - random_left--];
        /* 64 divides 256, so masking keeps the distribution uniform. */
        out[done] = alphabet[*b & 63];
        *b = 0;
    }
}
