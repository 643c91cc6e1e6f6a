/*
 * fuzz_ws.c — libFuzzer target for the WebSocket layer (src/ws.c).
 *
 * Each input is used three ways:
 *   1. sb_ws_parse_header on the raw bytes, checking the result's invariants;
 *   2. sb_ws_utf8_valid, compared with a naive reference decoder;
 *   3. a whole connection: the bytes (raw, or turned into correctly masked
 *      frames so the fuzzer reaches fragmentation and close handling) are
 *      written by a peer over a socketpair to an sb_ws_t on an h2o evloop,
 *      then the peer half-closes. The connection must report on_close
 *      exactly once, and everything the server wrote must be well-formed
 *      unmasked frames with nothing after a close frame.
 *
 * Build:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -DH2O_USE_LIBUV=0 -Iinclude \
 *     tests/fuzz/fuzz_ws.c src/ws.c -o fuzz_ws $(pkg-config --libs libh2o-evloop openssl)
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <h2o.h>

#include "switchboard/common.h"
#include "switchboard/ws.h"

static h2o_evloop_t *loop;
static sb_ws_ctx_t *ctx;

struct peer {
    int fd;
    int closes;
    int mode;
    uint8_t out[1 << 16]; /* server output not yet checked */
    size_t outlen;
    int saw_close;
};

static void check_header(const uint8_t *data, size_t size)
{
    sb_ws_header_t h;
    int r = sb_ws_parse_header(data, size, &h);
    if (r == SB_EPROTO || r == 0)
        return;
    if (r != 6 && r != 8 && r != 14)
        abort();
    if ((size_t)r > size || !h.masked || (h.opcode & 8 && (!h.fin || h.payload_len > 125)))
        abort();
    if ((r == 6 && h.payload_len > 125) || (r == 8 && (h.payload_len < 126 || h.payload_len > 0xffff)) ||
        (r == 14 && (h.payload_len <= 0xffff || h.payload_len >> 63)))
        abort();
    /* Deterministic and prefix-stable: more bytes never change the verdict. */
    sb_ws_header_t h2;
    if (sb_ws_parse_header(data, (size_t)r, &h2) != r || h2.payload_len != h.payload_len)
        abort();
    for (size_t i = 0; i < (size_t)r; i++)
        if (sb_ws_parse_header(data, i, &h2) != 0)
            abort();
}

/* Reference: decode code points one by one, then judge them. */
static int utf8_ref(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i];
        size_t len;
        uint32_t min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, min = 0x10000, c &= 0x07;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            c = (c << 6) | (s[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

static void on_message(sb_ws_t *ws, void *ud, int binary, const char *data, size_t len)
{
    struct peer *p = ud;
    if (!binary && !utf8_ref((const uint8_t *)data, len))
        abort(); /* invalid text must never reach the application */
    switch (p->mode) {
    case 0:
        (void)sb_ws_send(ws, binary, data, len);
        break;
    case 1:
        sb_ws_close(ws, 1000);
        (void)sb_ws_send(ws, binary, data, len);
        break;
    default:
        for (int i = 0; i < 3; i++)
            (void)sb_ws_send(ws, 1, "x", 1);
        break;
    }
}

static void on_close(sb_ws_t *ws, void *ud, const char *reason)
{
    (void)ws;
    (void)reason;
    struct peer *p = ud;
    p->closes++;
}

static const sb_ws_callbacks_t callbacks = {on_message, on_close};

/* Validates and drops complete server frames from p->out. */
static void check_output(struct peer *p)
{
    for (;;) {
        if (p->outlen < 2)
            return;
        const uint8_t *b = p->out;
        if (p->saw_close)
            abort(); /* nothing may follow a close frame */
        if ((b[0] & 0x70) || (b[1] & 0x80) || !(b[0] & 0x80))
            abort();
        int op = b[0] & 0x0f;
        if (!(op == 1 || op == 2 || op == 8 || op == 10))
            abort();
        size_t hl = 2;
        uint64_t len = b[1] & 0x7f;
        if (len == 126) {
            if (p->outlen < 4)
                return;
            len = ((uint64_t)b[2] << 8) | b[3];
            hl = 4;
        } else if (len == 127) {
            if (p->outlen < 10)
                return;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | b[2 + i];
            hl = 10;
        }
        if (len > sizeof(p->out) - 10)
            abort();
        if (p->outlen < hl + len)
            return;
        if (op == 8) {
            p->saw_close = 1;
            if (len == 1)
                abort();
        }
        memmove(p->out, p->out + hl + len, p->outlen - hl - (size_t)len);
        p->outlen -= hl + (size_t)len;
    }
}

static void drain(struct peer *p)
{
    for (;;) {
        ssize_t r = recv(p->fd, p->out + p->outlen, sizeof(p->out) - p->outlen, MSG_DONTWAIT);
        if (r <= 0)
            return;
        p->outlen += (size_t)r;
        check_output(p);
    }
}

/* Turns fuzz bytes into masked frames: [b0][len][payload...] per frame. */
static size_t structure(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    size_t i = 0, o = 0;
    while (i + 2 <= n && o + 14 + 255 <= cap) {
        uint8_t b0 = in[i++];
        size_t len = in[i++];
        if (len > n - i)
            len = n - i;
        /* Mostly valid first bytes: FIN + opcode from the low bits. */
        if (!(b0 & 0x40)) {
            static const uint8_t ops[8] = {0, 1, 2, 8, 9, 10, 0, 1};
            uint8_t op = ops[b0 & 7];
            int fin = (op & 8) ? 1 : (b0 & 0x80) != 0;
            b0 = (uint8_t)((fin ? 0x80 : 0) | op);
            if ((op & 8) && len > 125)
                len = 125;
        }
        uint8_t mask[4] = {(uint8_t)(b0 * 31 + 7), (uint8_t)len, 0x5a, (uint8_t)i};
        out[o++] = b0;
        if (len < 126) {
            out[o++] = (uint8_t)(0x80 | len);
        } else {
            out[o++] = 0x80 | 126;
            out[o++] = 0;
            out[o++] = (uint8_t)len;
        }
        memcpy(out + o, mask, 4);
        o += 4;
        for (size_t k = 0; k < len; k++)
            out[o + k] = in[i + k] ^ mask[k & 3];
        o += len;
        i += len;
    }
    return o;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    loop = h2o_evloop_create();
    ctx = sb_ws_ctx_create(loop);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_header(data, size);
    if (sb_ws_utf8_valid((const char *)data, size) != utf8_ref(data, size))
        abort();
    if (size < 1)
        return 0;

    uint8_t ctl = data[0];
    data++;
    size--;
    static uint8_t framed[1 << 18];
    const uint8_t *stream = data;
    size_t slen = size;
    if (ctl & 1) {
        slen = structure(data, size, framed, sizeof(framed));
        stream = framed;
    }

    static struct peer p;
    memset(&p, 0, sizeof(p));
    p.mode = (ctl >> 1) % 3;
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
        abort();
    p.fd = fds[1];
    size_t max_message = (ctl & 0x20) ? 64 : 4096;
    size_t max_queue = (ctl & 0x40) ? 32 : 1 << 20;
    sb_ws_t *ws = sb_ws_create(ctx, h2o_evloop_socket_create(loop, fds[0], 0), &callbacks, &p, max_message, max_queue);
    if (ws == NULL)
        abort();
    if (ctl & 0x80)
        sb_ws_close(ws, 1001);

    size_t off = 0;
    int iter = 0;
    while (off < slen) {
        ssize_t w = send(p.fd, stream + off, slen - off, MSG_DONTWAIT);
        if (w > 0) {
            off += (size_t)w;
        } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            break; /* the server closed: the rest is moot */
        }
        h2o_evloop_run(loop, 0);
        drain(&p);
        if (++iter > 100000)
            abort();
    }
    shutdown(p.fd, SHUT_WR);
    /* After EOF the connection must end promptly (no linger: the peer is gone). */
    for (iter = 0; p.closes == 0; iter++) {
        if (iter > 100000)
            abort();
        h2o_evloop_run(loop, 0);
        drain(&p);
    }
    for (int i = 0; i < 3; i++)
        h2o_evloop_run(loop, 0);
    drain(&p);
    if (p.closes != 1)
        abort();
    close(p.fd);
    return 0;
}
