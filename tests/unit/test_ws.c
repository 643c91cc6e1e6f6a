/*
 * test_ws.c — unit tests for the RFC 6455 layer (src/ws.c): the pure
 * parsers and encoder, then whole connections on an in-process h2o evloop
 * with the peer played by the test over a socketpair, and one real HTTP
 * upgrade through an in-process h2o server.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <h2o.h>

#include "switchboard/common.h"
#include "switchboard/ws.h"

#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

/* ---- pure parsers ---------------------------------------------------------------------------------------------- */

static void test_parse_header_lengths(void **state)
{
    (void)state;
    sb_ws_header_t h;
    /* 7-bit length, masked text, FIN */
    static const uint8_t f7[] = {0x81, 0x85, 1, 2, 3, 4};
    for (size_t i = 0; i < sizeof(f7); i++)
        assert_int_equal(sb_ws_parse_header(f7, i, &h), 0);
    assert_int_equal(sb_ws_parse_header(f7, sizeof(f7), &h), 6);
    assert_int_equal(h.fin, 1);
    assert_int_equal(h.opcode, 1);
    assert_int_equal(h.masked, 1);
    assert_int_equal(h.payload_len, 5);
    assert_memory_equal(h.mask, "\x01\x02\x03\x04", 4);

    /* 16-bit length, binary, no FIN */
    static const uint8_t f16[] = {0x02, 0xfe, 0x01, 0x00, 9, 8, 7, 6};
    for (size_t i = 0; i < sizeof(f16); i++)
        assert_int_equal(sb_ws_parse_header(f16, i, &h), 0);
    assert_int_equal(sb_ws_parse_header(f16, sizeof(f16), &h), 8);
    assert_int_equal(h.fin, 0);
    assert_int_equal(h.opcode, 2);
    assert_int_equal(h.payload_len, 256);
    assert_memory_equal(h.mask, "\x09\x08\x07\x06", 4);
    static const uint8_t f16max[] = {0x82, 0xfe, 0xff, 0xff, 0, 0, 0, 0};
    assert_int_equal(sb_ws_parse_header(f16max, sizeof(f16max), &h), 8);
    assert_int_equal(h.payload_len, 65535);
    static const uint8_t f16min[] = {0x82, 0xfe, 0x00, 126, 0, 0, 0, 0};
    assert_int_equal(sb_ws_parse_header(f16min, sizeof(f16min), &h), 8);
    assert_int_equal(h.payload_len, 126);

    /* 64-bit length */
    static const uint8_t f64[] = {0x80, 0xff, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05, 0xa, 0xb, 0xc, 0xd};
    for (size_t i = 0; i < sizeof(f64); i++)
        assert_int_equal(sb_ws_parse_header(f64, i, &h), 0);
    assert_int_equal(sb_ws_parse_header(f64, sizeof(f64), &h), 14);
    assert_int_equal(h.opcode, 0);
    assert_int_equal(h.payload_len, 0x0102030405ULL);
    static const uint8_t f64min[] = {0x82, 0xff, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, 0, 0, 0, 0};
    assert_int_equal(sb_ws_parse_header(f64min, sizeof(f64min), &h), 14);
    assert_int_equal(h.payload_len, 65536);
    static const uint8_t f64top[] = {0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
    assert_int_equal(sb_ws_parse_header(f64top, sizeof(f64top), &h), 14);
    assert_int_equal(h.payload_len, 0x7fffffffffffffffULL);

    /* Control frames up to 125 bytes, empty payloads. */
    static const uint8_t ping[] = {0x89, 0xfd, 0, 0, 0, 0};
    assert_int_equal(sb_ws_parse_header(ping, sizeof(ping), &h), 6);
    assert_int_equal(h.opcode, 9);
    assert_int_equal(h.payload_len, 125);
    static const uint8_t close0[] = {0x88, 0x80, 0, 0, 0, 0};
    assert_int_equal(sb_ws_parse_header(close0, sizeof(close0), &h), 6);
    assert_int_equal(h.opcode, 8);
    assert_int_equal(h.payload_len, 0);
}

static void test_parse_header_invalid(void **state)
{
    (void)state;
    sb_ws_header_t h;
    /* Non-minimal length encodings. */
    static const uint8_t nm16[] = {0x81, 0xfe, 0x00, 125, 0, 0, 0, 0};
    assert_int_equal(sb_ws_parse_header(nm16, sizeof(nm16), &h), SB_EPROTO);
    static const uint8_t nm16z[] = {0x81, 0xfe, 0x00, 0x00, 0, 0, 0, 0};
    assert_int_equal(sb_ws_parse_header(nm16z, sizeof(nm16z), &h), SB_EPROTO);
    static const uint8_t nm64[] = {0x82, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};
    assert_int_equal(sb_ws_parse_header(nm64, sizeof(nm64), &h), SB_EPROTO);
    static const uint8_t nm64s[] = {0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0};
    assert_int_equal(sb_ws_parse_header(nm64s, sizeof(nm64s), &h), SB_EPROTO);
    /* 64-bit length with the top bit set. */
    static const uint8_t top[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(sb_ws_parse_header(top, sizeof(top), &h), SB_EPROTO);
    /* RSV1..3: rejected from the first byte on. */
    for (uint8_t rsv = 0x10; rsv <= 0x40; rsv <<= 1) {
        uint8_t b[6] = {(uint8_t)(0x81 | rsv), 0x80, 0, 0, 0, 0};
        assert_int_equal(sb_ws_parse_header(b, 1, &h), SB_EPROTO);
        assert_int_equal(sb_ws_parse_header(b, sizeof(b), &h), SB_EPROTO);
    }
    /* Unknown opcodes 3-7 and 0xb-0xf. */
    for (int op = 0; op < 16; op++) {
        uint8_t b[6] = {(uint8_t)(0x80 | op), 0x80, 0, 0, 0, 0};
        int known = op <= 2 || (op >= 8 && op <= 10);
        assert_int_equal(sb_ws_parse_header(b, sizeof(b), &h), known ? 6 : SB_EPROTO);
    }
    /* Unmasked client frame. */
    static const uint8_t unmasked[] = {0x81, 0x05, 'h', 'e', 'l', 'l', 'o'};
    assert_int_equal(sb_ws_parse_header(unmasked, sizeof(unmasked), &h), SB_EPROTO);
    assert_int_equal(sb_ws_parse_header(unmasked, 2, &h), SB_EPROTO);
    /* Fragmented control frames. */
    static const uint8_t fping[] = {0x09, 0x80, 0, 0, 0, 0};
    assert_int_equal(sb_ws_parse_header(fping, sizeof(fping), &h), SB_EPROTO);
    static const uint8_t fclose[] = {0x08, 0x80, 0, 0, 0, 0};
    assert_int_equal(sb_ws_parse_header(fclose, 1, &h), SB_EPROTO);
    /* Control frames > 125 bytes (any length encoding). */
    static const uint8_t big7[] = {0x89, 0xfe, 0x00, 0x7e, 0, 0, 0, 0};
    assert_int_equal(sb_ws_parse_header(big7, sizeof(big7), &h), SB_EPROTO);
    static const uint8_t big64[] = {0x8a, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0};
    assert_int_equal(sb_ws_parse_header(big64, sizeof(big64), &h), SB_EPROTO);
}

static void test_utf8(void **state)
{
    (void)state;
#define V(s) sb_ws_utf8_valid((s), sizeof(s) - 1)
    assert_true(V(""));
    assert_true(V("hello, world — plain ASCII run longer than eight bytes"));
    assert_true(V("\xc2\x80"));         /* U+0080 */
    assert_true(V("\xdf\xbf"));         /* U+07FF */
    assert_true(V("\xe0\xa0\x80"));     /* U+0800 */
    assert_true(V("\xed\x9f\xbf"));     /* U+D7FF */
    assert_true(V("\xee\x80\x80"));     /* U+E000 */
    assert_true(V("\xef\xbf\xbf"));     /* U+FFFF */
    assert_true(V("\xf0\x90\x80\x80")); /* U+10000 */
    assert_true(V("\xf4\x8f\xbf\xbf")); /* U+10FFFF */
    assert_true(V("κόσμε — 日本語 — 😀 ok"));
    assert_true(V("abcdefg\xc3\xa9hijklmnop")); /* multibyte inside the 8-byte fast path */
    /* overlongs */
    assert_false(V("\xc0\x80"));
    assert_false(V("\xc1\xbf"));
    assert_false(V("\xe0\x9f\xbf"));
    assert_false(V("\xf0\x8f\xbf\xbf"));
    /* surrogates */
    assert_false(V("\xed\xa0\x80")); /* U+D800 */
    assert_false(V("\xed\xbf\xbf")); /* U+DFFF */
    /* beyond U+10FFFF */
    assert_false(V("\xf4\x90\x80\x80"));
    assert_false(V("\xf5\x80\x80\x80"));
    assert_false(V("\xff"));
    /* truncated sequences, at the end and in the middle */
    assert_false(V("\xc3"));
    assert_false(V("\xe2\x82"));
    assert_false(V("\xf0\x9f\x98"));
    assert_false(V("abc\xe2\x82xyz"));
    assert_false(V("abcdefgh\xf0\x9f\x98"));
    /* stray continuation bytes */
    assert_false(V("\x80"));
    assert_false(V("a\xbf"));
    /* a NUL is valid UTF-8 */
    assert_true(sb_ws_utf8_valid("a\0b", 3));
#undef V
}

static void check_frame(size_t len, const uint8_t *hdr, size_t hlen)
{
    uint8_t *payload = malloc(len ? len : 1);
    assert_non_null(payload);
    for (size_t i = 0; i < len; i++)
        payload[i] = (uint8_t)(i * 7 + 1);
    sb_ws_frame_t *f = sb_ws_frame_new(1, payload, len);
    assert_non_null(f);
    assert_int_equal(f->refcnt, 1);
    assert_int_equal(f->len, hlen + len);
    assert_memory_equal(f->data, hdr, hlen);
    if (len)
        assert_memory_equal(f->data + hlen, payload, len);
    sb_ws_frame_addref(f);
    assert_int_equal(f->refcnt, 2);
    sb_ws_frame_release(f);
    assert_int_equal(f->refcnt, 1);
    sb_ws_frame_release(f);
    free(payload);
}

static void test_frame_new_exact(void **state)
{
    (void)state;
    /* Binary flag 1 → opcode 2; check_frame builds binary frames. */
    static const uint8_t h0[] = {0x82, 0x00};
    static const uint8_t h125[] = {0x82, 0x7d};
    static const uint8_t h126[] = {0x82, 0x7e, 0x00, 0x7e};
    static const uint8_t h65535[] = {0x82, 0x7e, 0xff, 0xff};
    static const uint8_t h65536[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00};
    check_frame(0, h0, sizeof(h0));
    check_frame(125, h125, sizeof(h125));
    check_frame(126, h126, sizeof(h126));
    check_frame(65535, h65535, sizeof(h65535));
    check_frame(65536, h65536, sizeof(h65536));
    /* Text frames carry opcode 1. */
    sb_ws_frame_t *t = sb_ws_frame_new(0, "hi", 2);
    assert_non_null(t);
    assert_int_equal(t->len, 4);
    assert_memory_equal(t->data, "\x81\x02hi", 4);
    sb_ws_frame_release(t);
}

/* ---- connection harness ---------------------------------------------------------------------------------------- */

typedef struct conn {
    sb_ws_t *ws;
    int peer; /* the test's end of the socketpair (blocking writes, polled reads) */
    int closes;
    const char *reason;
    int messages;
    int last_binary;
    char *last;
    size_t last_len;
    int echo;
    int close_in_cb; /* sb_ws_close from on_message; records close_ret and on_close count at that time */
    int closes_after_close_call;
    int send_after_close_ret;
    uint8_t rbuf[1 << 20];
    size_t rlen;
} conn_t;

typedef struct env {
    h2o_evloop_t *loop;
    sb_ws_ctx_t *ctx;
} env_t;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static env_t *g_env; /* the loop to run while a write would block */

static void on_message(sb_ws_t *ws, void *ud, int binary, const char *data, size_t len)
{
    conn_t *c = ud;
    assert_ptr_equal(ws, c->ws);
    c->messages++;
    c->last_binary = binary;
    free(c->last);
    c->last = malloc(len + 1);
    assert_non_null(c->last);
    memcpy(c->last, data, len);
    c->last[len] = '\0';
    c->last_len = len;
    if (len == 5 && memcmp(data, "burst", 5) == 0) {
        /* 100 frames queued in one callback must leave in one write. */
        for (int i = 0; i < 100; i++) {
            char m[16];
            int n = snprintf(m, sizeof(m), "m%03d", i);
            assert_int_equal(sb_ws_send(ws, 0, m, (size_t)n), 0);
        }
        return;
    }
    if (c->close_in_cb) {
        sb_ws_close(ws, 4000);
        c->closes_after_close_call = c->closes;
        c->send_after_close_ret = sb_ws_send(ws, 0, "x", 1);
        return;
    }
    if (c->echo)
        assert_int_equal(sb_ws_send(ws, binary, data, len), 0);
}

static void on_close(sb_ws_t *ws, void *ud, const char *reason)
{
    conn_t *c = ud;
    assert_ptr_equal(ws, c->ws);
    c->closes++;
    c->reason = reason;
}

static const sb_ws_callbacks_t callbacks = {on_message, on_close};

static int env_setup(void **state)
{
    env_t *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    e->loop = h2o_evloop_create();
    e->ctx = sb_ws_ctx_create(e->loop);
    assert_non_null(e->ctx);
    *state = e;
    g_env = e;
    return 0;
}

static void run_once(env_t *e)
{
    h2o_evloop_run(e->loop, 5);
}

static int env_teardown(void **state)
{
    env_t *e = *state;
    for (int i = 0; i < 5; i++)
        run_once(e);
    sb_ws_ctx_destroy(e->ctx);
    h2o_evloop_destroy(e->loop);
    free(e);
    return 0;
}

static conn_t *conn_open(env_t *e, size_t max_message, size_t max_queue)
{
    conn_t *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    c->peer = fds[1];
    h2o_socket_t *sock = h2o_evloop_socket_create(e->loop, fds[0], 0);
    assert_non_null(sock);
    c->ws = sb_ws_create(e->ctx, sock, &callbacks, c, max_message, max_queue);
    assert_non_null(c->ws);
    c->echo = 1;
    return c;
}

/* Closes the test's end and waits for the connection to report it: the
 * conn_t is the connection's user data and must outlive on_close. */
static void conn_free(conn_t *c)
{
    if (c->peer >= 0)
        close(c->peer);
    uint64_t deadline = mono_ms() + 8000; /* a lingering close ends within 5 s */
    while (c->closes == 0) {
        assert_true(mono_ms() < deadline);
        run_once(g_env);
    }
    assert_int_equal(c->closes, 1);
    free(c->last);
    free(c);
}

#define RUN_UNTIL(e, cond)                                                                                             \
    do {                                                                                                               \
        uint64_t deadline_ = mono_ms() + 3000;                                                                         \
        while (!(cond)) {                                                                                              \
            assert_true(mono_ms() < deadline_);                                                                        \
            run_once(e);                                                                                               \
        }                                                                                                              \
    } while (0)

static int pump_peer(conn_t *c);

/* Writes everything without ever blocking the (single-threaded) test: when
 * the socket is full, run the server loop and drain what it sent back. */
static void write_all(conn_t *c, const void *p, size_t n)
{
    const char *s = p;
    uint64_t deadline = mono_ms() + 5000;
    while (n > 0) {
        assert_true(mono_ms() < deadline);
        ssize_t w = send(c->peer, s, n, MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            run_once(g_env);
            if (c->rlen < sizeof(c->rbuf))
                (void)pump_peer(c);
            continue;
        }
        assert_true(w > 0);
        s += w;
        n -= (size_t)w;
    }
}

/* Builds a masked client frame into out (capacity >= len + 14). */
static size_t client_frame(uint8_t *out, int fin, int opcode, const void *payload, size_t len)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t o = 0;
    out[o++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        out[o++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        out[o++] = 0x80 | 126;
        out[o++] = (uint8_t)(len >> 8);
        out[o++] = (uint8_t)len;
    } else {
        out[o++] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            out[o++] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    }
    memcpy(out + o, mask, 4);
    o += 4;
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++)
        out[o + i] = p[i] ^ mask[i & 3];
    return o + len;
}

static void send_frame(conn_t *c, int fin, int opcode, const void *payload, size_t len)
{
    uint8_t *buf = malloc(len + 14);
    assert_non_null(buf);
    size_t n = client_frame(buf, fin, opcode, payload, len);
    write_all(c, buf, n);
    free(buf);
}

typedef struct sframe {
    int fin, opcode;
    uint8_t *payload;
    size_t len;
} sframe_t;

/* Parses one unmasked server frame from c->rbuf; 1 when complete. */
static int take_frame(conn_t *c, sframe_t *f)
{
    if (c->rlen < 2)
        return 0;
    uint8_t *b = c->rbuf;
    assert_int_equal(b[1] & 0x80, 0); /* servers never mask */
    size_t hl = 2;
    uint64_t len = b[1] & 0x7f;
    if (len == 126) {
        if (c->rlen < 4)
            return 0;
        len = ((uint64_t)b[2] << 8) | b[3];
        hl = 4;
    } else if (len == 127) {
        if (c->rlen < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | b[2 + i];
        hl = 10;
    }
    if (c->rlen < hl + len)
        return 0;
    f->fin = (b[0] & 0x80) != 0;
    f->opcode = b[0] & 0x0f;
    assert_int_equal(b[0] & 0x70, 0);
    f->len = (size_t)len;
    f->payload = malloc(f->len + 1);
    assert_non_null(f->payload);
    memcpy(f->payload, b + hl, f->len);
    f->payload[f->len] = 0;
    memmove(b, b + hl + len, c->rlen - hl - (size_t)len);
    c->rlen -= hl + (size_t)len;
    return 1;
}

/* Returns 1 on data, 0 on EOF, -1 when nothing is available. */
static int pump_peer(conn_t *c)
{
    assert_true(c->rlen < sizeof(c->rbuf));
    ssize_t r = recv(c->peer, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, MSG_DONTWAIT);
    if (r > 0) {
        c->rlen += (size_t)r;
        return 1;
    }
    if (r == 0)
        return 0;
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    return -1;
}

static void read_frame(env_t *e, conn_t *c, sframe_t *f)
{
    uint64_t deadline = mono_ms() + 3000;
    while (!take_frame(c, f)) {
        assert_true(mono_ms() < deadline);
        if (pump_peer(c) < 0)
            run_once(e);
    }
}

static void expect_frame(env_t *e, conn_t *c, int opcode, const void *payload, size_t len)
{
    sframe_t f;
    read_frame(e, c, &f);
    assert_int_equal(f.fin, 1);
    assert_int_equal(f.opcode, opcode);
    assert_int_equal(f.len, len);
    if (len)
        assert_memory_equal(f.payload, payload, len);
    free(f.payload);
}

static void expect_close(env_t *e, conn_t *c, uint16_t code)
{
    sframe_t f;
    read_frame(e, c, &f);
    assert_int_equal(f.opcode, 8);
    assert_true(f.len >= 2);
    assert_int_equal((f.payload[0] << 8) | f.payload[1], code);
    free(f.payload);
}

static void expect_eof(env_t *e, conn_t *c)
{
    uint64_t deadline = mono_ms() + 3000;
    for (;;) {
        assert_true(mono_ms() < deadline);
        int r = pump_peer(c);
        if (r == 0)
            break;
        assert_int_equal(c->rlen, 0); /* nothing but EOF expected */
        if (r < 0)
            run_once(e);
    }
}

/* ---- connection tests ------------------------------------------------------------------------------------------ */

static void test_echo(void **state)
{
    env_t *e = *state;
    conn_t *c = conn_open(e, 1 << 20, 1 << 20);
    send_frame(c, 1, 1, "hello", 5);
    expect_frame(e, c, 1, "hello", 5);
    assert_int_equal(c->messages, 1);
    assert_int_equal(c->last_binary, 0);
    send_frame(c, 1, 2, "\x00\xff\x01", 3);
    expect_frame(e, c, 2, "\x00\xff\x01", 3);
    assert_int_equal(c->last_binary, 1);
    send_frame(c, 1, 1, "", 0);
    expect_frame(e, c, 1, "", 0);
    /* 16- and 64-bit lengths, larger than one read. */
    size_t sizes[] = {126, 65535, 65536, 300000};
    for (size_t k = 0; k < SB_ARRAY_SIZE(sizes); k++) {
        size_t n = sizes[k];
        uint8_t *p = malloc(n);
        for (size_t i = 0; i < n; i++)
            p[i] = (uint8_t)(i % 251);
        send_frame(c, 1, 2, p, n);
        expect_frame(e, c, 2, p, n);
        assert_int_equal(c->last_len, n);
        free(p);
    }
    /* A frame trickled in byte by byte is parsed incrementally. */
    uint8_t buf[64];
    size_t n = client_frame(buf, 1, 1, "trickle", 7);
    for (size_t i = 0; i < n; i++) {
        write_all(c, buf + i, 1);
        run_once(e);
    }
    expect_frame(e, c, 1, "trickle", 7);
    assert_int_equal(sb_ws_queued(c->ws), 0);
    assert_int_equal(c->closes, 0);
    /* Peer EOF ends the connection: on_close once, "peer closed". */
    close(c->peer);
    c->peer = -1;
    RUN_UNTIL(e, c->closes == 1);
    assert_string_equal(c->reason, "peer closed");
    for (int i = 0; i < 5; i++)
        run_once(e);
    assert_int_equal(c->closes, 1);
    conn_free(c);
}

static void test_fragmented(void **state)
{
    env_t *e = *state;
    conn_t *c = conn_open(e, 1 << 20, 1 << 20);
    /* text in three fragments with a ping and a pong interleaved */
    send_frame(c, 0, 1, "Hel", 3);
    send_frame(c, 1, 9, "p1", 2);
    send_frame(c, 0, 0, "lo, ", 4);
    send_frame(c, 1, 10, "unsolicited", 11);
    send_frame(c, 1, 0, "w\xc3\xb6rld", 6);
    expect_frame(e, c, 10, "p1", 2);
    expect_frame(e, c, 1, "Hello, w\xc3\xb6rld", 13);
    assert_int_equal(c->messages, 1);
    /* A multibyte character split across fragments is valid. */
    send_frame(c, 0, 1, "\xe2\x82", 2);
    send_frame(c, 1, 0, "\xac", 1);
    expect_frame(e, c, 1, "\xe2\x82\xac", 3);
    /* Empty fragments. */
    send_frame(c, 0, 2, "", 0);
    send_frame(c, 0, 0, "", 0);
    send_frame(c, 1, 0, "", 0);
    expect_frame(e, c, 2, "", 0);
    assert_int_equal(c->messages, 3);
    conn_free(c);
}

static void test_ping_pong(void **state)
{
    env_t *e = *state;
    conn_t *c = conn_open(e, 1 << 20, 1 << 20);
    send_frame(c, 1, 9, "hello", 5);
    expect_frame(e, c, 10, "hello", 5);
    send_frame(c, 1, 9, "", 0);
    expect_frame(e, c, 10, "", 0);
    char p125[125];
    memset(p125, 'z', sizeof(p125));
    send_frame(c, 1, 9, p125, sizeof(p125));
    expect_frame(e, c, 10, p125, sizeof(p125));
    assert_int_equal(c->messages, 0);
    conn_free(c);
}

static void test_too_big(void **state)
{
    env_t *e = *state;
    conn_t *c = conn_open(e, 100, 1 << 20);
    char p[101];
    memset(p, 'a', sizeof(p));
    send_frame(c, 1, 1, p, 100); /* exactly the bound: fine */
    expect_frame(e, c, 1, p, 100);
    /* Reassembled size counts: 60 + 41 > 100. */
    send_frame(c, 0, 1, p, 60);
    send_frame(c, 1, 0, p, 41);
    expect_close(e, c, 1009);
    RUN_UNTIL(e, c->closes == 1);
    assert_string_equal(c->reason, "message too big");
    expect_eof(e, c);
    assert_int_equal(c->messages, 1);
    conn_free(c);
}

static void test_invalid_utf8(void **state)
{
    env_t *e = *state;
    conn_t *c = conn_open(e, 1 << 20, 1 << 20);
    send_frame(c, 1, 2, "\xff\xfe", 2); /* binary: any bytes */
    expect_frame(e, c, 2, "\xff\xfe", 2);
    send_frame(c, 1, 1, "ok\xed\xa0\x80", 5);
    expect_close(e, c, 1007);
    RUN_UNTIL(e, c->closes == 1);
    assert_string_equal(c->reason, "invalid utf-8");
    expect_eof(e, c);
    assert_int_equal(c->messages, 1);
    conn_free(c);

    /* Also when the bad bytes come in a later fragment. */
    c = conn_open(e, 1 << 20, 1 << 20);
    send_frame(c, 0, 1, "fine", 4);
    send_frame(c, 1, 0, "\xc0\xaf", 2);
    expect_close(e, c, 1007);
    RUN_UNTIL(e, c->closes == 1);
    assert_int_equal(c->messages, 0);
    conn_free(c);
}

static void test_peer_close(void **state)
{
    env_t *e = *state;
    conn_t *c = conn_open(e, 1 << 20, 1 << 20);
    send_frame(c, 1, 1, "before", 6);
    send_frame(c, 1, 8,
               "\x0f\xa0"
               "bye",
               5);                   /* 4000 */
    send_frame(c, 1, 1, "after", 5); /* ignored: the peer closed */
    expect_frame(e, c, 1, "before", 6);
    expect_close(e, c, 4000);
    expect_eof(e, c);
    RUN_UNTIL(e, c->closes == 1);
    assert_string_equal(c->reason, "peer closed");
    for (int i = 0; i < 5; i++)
        run_once(e);
    assert_int_equal(c->closes, 1);
    assert_int_equal(c->messages, 1);
    conn_free(c);

    /* A close without a code is answered with an empty close. */
    c = conn_open(e, 1 << 20, 1 << 20);
    send_frame(c, 1, 8, "", 0);
    expect_frame(e, c, 8, "", 0);
    expect_eof(e, c);
    RUN_UNTIL(e, c->closes == 1);
    conn_free(c);
}

static void check_protocol_error(env_t *e, const uint8_t *bytes, size_t n, uint16_t code)
{
    conn_t *c = conn_open(e, 1 << 20, 1 << 20);
    write_all(c, bytes, n);
    expect_close(e, c, code);
    RUN_UNTIL(e, c->closes == 1);
    assert_string_equal(c->reason, code == 1002 ? "protocol error" : "invalid utf-8");
    expect_eof(e, c);
    assert_int_equal(c->messages, 0);
    conn_free(c);
}

static void test_protocol_errors(void **state)
{
    env_t *e = *state;
    uint8_t b[64];
    check_protocol_error(e, LIT("\x81\x05hello"), 1002);                    /* unmasked */
    check_protocol_error(e, LIT("\xc1\x80\x00\x00\x00\x00"), 1002);         /* RSV1 */
    check_protocol_error(e, LIT("\x83\x80\x00\x00\x00\x00"), 1002);         /* opcode 3 */
    check_protocol_error(e, LIT("\x09\x80\x00\x00\x00\x00"), 1002);         /* fragmented ping */
    check_protocol_error(e, LIT("\x81\xfe\x00\x05\x00\x00\x00\x00"), 1002); /* non-minimal */
    size_t n = client_frame(b, 1, 0, "x", 1);                               /* continuation without start */
    check_protocol_error(e, b, n, 1002);
    n = client_frame(b, 0, 1, "a", 1); /* new message inside a fragmented one */
    n += client_frame(b + n, 1, 1, "b", 1);
    check_protocol_error(e, b, n, 1002);
    n = client_frame(b, 1, 8, "\x03", 1); /* close payload of 1 byte */
    check_protocol_error(e, b, n, 1002);
    n = client_frame(b, 1, 8, "\x03\xed", 2); /* close code 1005 may not be sent */
    check_protocol_error(e, b, n, 1002);
    n = client_frame(b, 1, 8, "\x03\xe8\xff", 3); /* close reason not UTF-8 */
    check_protocol_error(e, b, n, 1007);
}

static void test_server_close(void **state)
{
    env_t *e = *state;
    conn_t *c = conn_open(e, 1 << 20, 1 << 20);
    c->close_in_cb = 1;
    sb_ws_t *ws = c->ws;
    assert_int_equal(sb_ws_send(ws, 0, "queued", 6), 0);
    send_frame(c, 1, 1, "close me", 8);
    expect_frame(e, c, 1, "queued", 6);
    /* close from inside on_message: not reported synchronously, sends refused */
    expect_close(e, c, 4000);
    assert_int_equal(c->closes_after_close_call, 0);
    assert_int_equal(c->send_after_close_ret, SB_EIO);
    RUN_UNTIL(e, c->closes == 1);
    assert_string_equal(c->reason, "closed by server");
    /* Data still arriving is discarded; our close is answered, then EOF. */
    send_frame(c, 1, 1, "late", 4);
    send_frame(c, 1, 8, "\x0f\xa0", 2);
    expect_eof(e, c);
    assert_int_equal(c->messages, 1);
    assert_int_equal(c->closes, 1);
    conn_free(c);

    /* sb_ws_close outside any callback, twice (idempotent). */
    c = conn_open(e, 1 << 20, 1 << 20);
    sb_ws_close(c->ws, 1000);
    sb_ws_close(c->ws, 1001);
    assert_int_equal(c->closes, 0);
    expect_close(e, c, 1000);
    RUN_UNTIL(e, c->closes == 1);
    send_frame(c, 1, 8, "\x03\xe8", 2);
    expect_eof(e, c);
    assert_int_equal(c->closes, 1);
    conn_free(c);
}

static void test_batching(void **state)
{
    env_t *e = *state;
    conn_t *c = conn_open(e, 1 << 20, 1 << 20);
    send_frame(c, 1, 1, "warmup", 6);
    expect_frame(e, c, 1, "warmup", 6);
    size_t before = sb_ws_writes(c->ws);
    send_frame(c, 1, 1, "burst", 5);
    for (int i = 0; i < 100; i++) {
        char m[16];
        int n = snprintf(m, sizeof(m), "m%03d", i);
        expect_frame(e, c, 1, m, (size_t)n);
    }
    assert_int_equal(sb_ws_writes(c->ws) - before, 1);
    /* 600 frames queued outside the loop leave in ceil(600/255) writes. */
    before = sb_ws_writes(c->ws);
    for (int i = 0; i < 600; i++)
        assert_int_equal(sb_ws_send(c->ws, 1, &i, sizeof(i)), 0);
    for (int i = 0; i < 600; i++)
        expect_frame(e, c, 2, &i, sizeof(i));
    assert_int_equal(sb_ws_writes(c->ws) - before, 3);
    assert_int_equal(sb_ws_queued(c->ws), 0);
    conn_free(c);
}

static void test_queue_cap(void **state)
{
    env_t *e = *state;
    const size_t maxq = 256 * 1024;
    conn_t *c = conn_open(e, 1 << 20, maxq);
    static char chunk[16 * 1024];
    memset(chunk, 'q', sizeof(chunk));
    const size_t flen = sizeof(chunk) + 4;
    /* Fill the socket buffers while the peer does not read: eventually
     * bytes stay queued. */
    size_t sent = 0;
    for (int i = 0; i < 10000 && sb_ws_queued(c->ws) == 0; i++) {
        assert_int_equal(sb_ws_send(c->ws, 1, chunk, sizeof(chunk)), 0);
        sent++;
        for (int k = 0; k < 3; k++)
            run_once(e);
    }
    assert_true(sb_ws_queued(c->ws) > 0);
    int r;
    while ((r = sb_ws_send(c->ws, 1, chunk, sizeof(chunk))) == 0) {
        sent++;
        assert_true(sb_ws_queued(c->ws) <= maxq);
    }
    assert_int_equal(r, SB_ETOOBIG);
    assert_true(sb_ws_queued(c->ws) + flen > maxq);
    /* The peer reads everything: all frames arrive intact and the queue drains. */
    for (size_t i = 0; i < sent; i++)
        expect_frame(e, c, 2, chunk, sizeof(chunk));
    RUN_UNTIL(e, sb_ws_queued(c->ws) == 0);
    assert_int_equal(c->closes, 0);
    assert_int_equal(sb_ws_send(c->ws, 1, chunk, sizeof(chunk)), 0);
    conn_free(c);
}

/* A write the kernel takes only in part goes on where it stopped once the
 * socket drains: every data frame arrives whole and in order, a pong queued
 * meanwhile arrives whole, and the close frame comes last. */
static void test_partial_writes(void **state)
{
    env_t *e = *state;
    conn_t *c = conn_open(e, 1 << 20, 8 << 20);
    static uint8_t chunk[40001]; /* odd-sized, so writes end inside frames */
    int n = 0;
    for (; n < 2000 && sb_ws_queued(c->ws) == 0; n++) {
        memset(chunk, 'a' + n % 26, sizeof(chunk));
        assert_int_equal(sb_ws_send(c->ws, 1, chunk, sizeof(chunk)), 0);
        run_once(e);
    }
    assert_true(sb_ws_queued(c->ws) > 0); /* the peer does not read: a write is unfinished */
    size_t writes = sb_ws_writes(c->ws);
    send_frame(c, 1, 9, "ping!", 5);
    for (int i = 0; i < 5; i++)
        run_once(e);
    assert_int_equal(sb_ws_writes(c->ws), writes); /* the pong waits for the unfinished write */
    sb_ws_close(c->ws, 1000);
    int data = 0, pongs = 0;
    for (;;) {
        sframe_t f;
        read_frame(e, c, &f);
        if (f.opcode == 8) {
            assert_int_equal((f.payload[0] << 8) | f.payload[1], 1000);
            free(f.payload);
            break;
        }
        if (f.opcode == 10) {
            assert_int_equal(f.len, 5);
            assert_memory_equal(f.payload, "ping!", 5);
            pongs++;
        } else {
            assert_int_equal(f.opcode, 2);
            assert_int_equal(f.len, sizeof(chunk));
            memset(chunk, 'a' + data % 26, sizeof(chunk));
            assert_memory_equal(f.payload, chunk, sizeof(chunk));
            data++;
        }
        free(f.payload);
    }
    assert_int_equal(data, n);
    assert_int_equal(pongs, 1);
    assert_int_equal(sb_ws_queued(c->ws), 0);
    send_frame(c, 1, 8, "\x03\xe8", 2);
    expect_eof(e, c);
    conn_free(c);
}

/* A peer that stopped reading for good (EPIPE on our write, while reads see
 * no EOF) ends the connection with "write error"; its frames are released. */
static void test_write_error(void **state)
{
    env_t *e = *state;
    conn_t *c = conn_open(e, 1 << 20, 1 << 20);
    assert_int_equal(shutdown(c->peer, SHUT_RD), 0);
    sb_ws_frame_t *f = sb_ws_frame_new(0, "lost", 4);
    assert_non_null(f);
    assert_int_equal(sb_ws_send_frame(c->ws, f), 0);
    RUN_UNTIL(e, c->closes == 1);
    assert_string_equal(c->reason, "write error");
    assert_int_equal(f->refcnt, 1);
    sb_ws_frame_release(f);
    conn_free(c);
}

static void test_shared_frame(void **state)
{
    env_t *e = *state;
    conn_t *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = conn_open(e, 1 << 20, 1 << 20);
    sb_ws_frame_t *f = sb_ws_frame_new(0, "broadcast", 9);
    assert_non_null(f);
    for (int i = 0; i < 3; i++)
        assert_int_equal(sb_ws_send_frame(c[i]->ws, f), 0);
    assert_int_equal(f->refcnt, 4);
    assert_int_equal(sb_ws_queued(c[0]->ws), f->len);
    for (int i = 0; i < 3; i++)
        expect_frame(e, c[i], 1, "broadcast", 9);
    RUN_UNTIL(e, f->refcnt == 1);
    /* A frame queued on a connection that then dies is released too. */
    assert_int_equal(sb_ws_send_frame(c[0]->ws, f), 0);
    assert_int_equal(f->refcnt, 2);
    close(c[0]->peer);
    c[0]->peer = -1;
    RUN_UNTIL(e, c[0]->closes == 1 && f->refcnt == 1);
    sb_ws_frame_release(f);
    for (int i = 0; i < 3; i++)
        conn_free(c[i]);
}

static void test_ctx_destroy_closes(void **state)
{
    (void)state;
    env_t *e;
    env_setup((void **)&e);
    conn_t *c = conn_open(e, 0, 0);
    assert_int_equal(sb_ws_send(c->ws, 0, "pending", 7), 0);
    sb_ws_ctx_destroy(e->ctx);
    assert_int_equal(c->closes, 1);
    assert_string_equal(c->reason, "closed by server");
    e->ctx = sb_ws_ctx_create(e->loop);
    env_teardown((void **)&e);
    conn_free(c);
}

/* ---- the HTTP upgrade through an in-process h2o server ---------------------------------------------------------- */

static struct {
    env_t *env;
    conn_t *conn;
    int handshake;
    int upgrade_ret;
} up;

static void on_upgraded(void *data, h2o_socket_t *sock)
{
    assert_ptr_equal(data, &up);
    assert_non_null(sock);
    up.conn->ws = sb_ws_create(up.env->ctx, sock, &callbacks, up.conn, 1 << 20, 1 << 20);
    assert_non_null(up.conn->ws);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    up.handshake = sb_ws_is_handshake(req);
    /* The first frame rides with the 101, before the WebSocket exists. */
    up.upgrade_ret = sb_ws_upgrade(req, "first", 5, on_upgraded, &up);
    if (up.upgrade_ret != 0) {
        req->res.status = 400;
        req->res.reason = "Bad Request";
        h2o_send_inline(req, H2O_STRLIT("no"));
    }
    return 0;
}

static h2o_accept_ctx_t accept_ctx;

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock != NULL)
        h2o_accept(&accept_ctx, sock);
}

static void read_http_head(env_t *e, conn_t *c, char *out, size_t cap)
{
    uint64_t deadline = mono_ms() + 3000;
    for (;;) {
        assert_true(mono_ms() < deadline);
        char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
        if (end != NULL) {
            size_t hl = (size_t)(end - (char *)c->rbuf) + 4;
            assert_true(hl < cap);
            memcpy(out, c->rbuf, hl);
            out[hl] = '\0';
            memmove(c->rbuf, c->rbuf + hl, c->rlen - hl);
            c->rlen -= hl;
            return;
        }
        int r = pump_peer(c);
        assert_int_not_equal(r, 0);
        if (r < 0)
            run_once(e);
    }
}

static int connect_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(0x7f000001);
    a.sin_port = htons(port);
    /* The loop is not running yet; the kernel completes the handshake. */
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void test_upgrade_http(void **state)
{
    env_t *e = *state;
    h2o_globalconf_t config;
    h2o_context_t hctx;
    h2o_config_init(&config);
    config.http1.upgrade_to_http2 = 0;
    h2o_hostconf_t *host = h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/ws", 0);
    h2o_handler_t *handler = h2o_create_handler(path, sizeof(*handler));
    handler->on_req = on_req;
    h2o_context_init(&hctx, e->loop, &config);
    accept_ctx.ctx = &hctx;
    accept_ctx.hosts = config.hosts;

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(0x7f000001);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 16), 0);
    socklen_t alen = sizeof(a);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
    uint16_t port = ntohs(a.sin_port);
    h2o_socket_t *listener = h2o_evloop_socket_create(e->loop, lfd, H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(listener, on_accept);

    conn_t *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->echo = 1;
    up.env = e;
    up.conn = c;

    /* A bad handshake (no key) gets 400 and no upgrade. */
    c->peer = connect_to(port);
    static const char bad[] = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                              "Sec-WebSocket-Version: 13\r\n\r\n";
    write_all(c, bad, sizeof(bad) - 1);
    char head[2048];
    read_http_head(e, c, head, sizeof(head));
    assert_non_null(strstr(head, "HTTP/1.1 400"));
    assert_int_equal(up.handshake, 0);
    assert_int_equal(up.upgrade_ret, SB_EPROTO);
    close(c->peer);
    c->rlen = 0;

    /* The RFC 6455 example key; a frame rides in the same packet as the
     * request, so it is already in h2o's input buffer at the upgrade. */
    c->peer = connect_to(port);
    static const char req[] = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n"
                              "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    uint8_t buf[sizeof(req) + 64];
    memcpy(buf, req, sizeof(req) - 1);
    size_t n = sizeof(req) - 1 + client_frame(buf + sizeof(req) - 1, 1, 1, "early", 5);
    write_all(c, buf, n);
    read_http_head(e, c, head, sizeof(head));
    assert_int_equal(up.handshake, 1);
    assert_int_equal(up.upgrade_ret, 0);
    assert_non_null(strstr(head, "HTTP/1.1 101"));
    assert_non_null(strcasestr(head, "\r\nupgrade: websocket\r\n"));
    assert_non_null(strcasestr(head, "\r\nconnection: upgrade\r\n"));
    assert_non_null(strcasestr(head, "\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    expect_frame(e, c, 1, "first", 5);
    expect_frame(e, c, 1, "early", 5);
    send_frame(c, 1, 1, "later", 5);
    expect_frame(e, c, 1, "later", 5);
    send_frame(c, 1, 8, "\x03\xe8", 2);
    expect_close(e, c, 1000);
    expect_eof(e, c);
    RUN_UNTIL(e, c->closes == 1);
    assert_int_equal(c->messages, 2);
    conn_free(c);

    h2o_socket_close(listener);
    for (int i = 0; i < 5; i++)
        run_once(e);
    h2o_multithread_queue_t *queue = hctx.queue;
    h2o_context_dispose(&hctx);
    /* h2o 2.2.5 (evloop) closes the queue's sockets but never frees it. */
    free(queue);
    h2o_config_dispose(&config);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_header_lengths),
        cmocka_unit_test(test_parse_header_invalid),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_frame_new_exact),
        cmocka_unit_test_setup_teardown(test_echo, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_fragmented, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_ping_pong, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_too_big, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_utf8, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_peer_close, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_protocol_errors, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_server_close, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_batching, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_queue_cap, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_partial_writes, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_write_error, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_shared_frame, env_setup, env_teardown),
        cmocka_unit_test(test_ctx_destroy_closes),
        cmocka_unit_test_setup_teardown(test_upgrade_http, env_setup, env_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
