/* The generator's clients: WebSocket (RFC 6455, masked client frames) or HTTP
 * long-polling, Engine.IO 4 (answers pings), Socket.IO 5 (CONNECT with an auth
 * payload, events, acks). WebSocket clients use raw non-blocking sockets and
 * one shared read buffer, so an idle client costs a few hundred bytes here and
 * the generator is not the bottleneck it measures; polling clients, a smaller
 * share, use libevent's HTTP client. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "lg.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

static uint8_t rbuf[256 * 1024];
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rng32(void)
{
    /* xorshift64*: masks need not be secret here, only varying. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 2685821657736338717ull) >> 32);
}

void lg_note_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(R.last_error, sizeof(R.last_error), fmt, ap);
    va_end(ap);
}

int lg_find_u64(const char *p, size_t n, const char *key, uint64_t *out)
{
    char pat[32];
    int pl = snprintf(pat, sizeof(pat), "\"%s\":", key);
    if (pl <= 0 || (size_t)pl >= sizeof(pat))
        return -1;
    const char *k = memmem(p, n, pat, (size_t)pl);
    if (k == NULL)
        return -1;
    const char *q = k + pl, *end = p + n;
    while (q < end && *q == ' ')
        q++;
    if (q >= end || *q < '0' || *q > '9')
        return -1;
    uint64_t v = 0;
    while (q < end && *q >= '0' && *q <= '9') {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*q - '0');
        q++;
    }
    *out = v;
    return 0;
}

/* Copies the string value of `"key":"..."` (no escapes expected: ids are base64url). */
static int find_str(const char *p, size_t n, const char *key, char *out, size_t cap)
{
    char pat[32];
    int pl = snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    const char *k = memmem(p, n, pat, (size_t)pl);
    if (k == NULL)
        return -1;
    const char *v = k + pl, *end = p + n;
    const char *q = memchr(v, '"', (size_t)(end - v));
    if (q == NULL || (size_t)(q - v) >= cap)
        return -1;
    memcpy(out, v, (size_t)(q - v));
    out[q - v] = '\0';
    return 0;
}

/* ---- output ---- */

static void on_write(evutil_socket_t fd, short what, void *arg);

static int out_append(lg_client *c, const uint8_t *p, size_t n)
{
    if ((size_t)c->out_len + n > LG_OUT_CAP) {
        lg_note_error("send queue over %u bytes", LG_OUT_CAP);
        return -1;
    }
    if (c->out_len + n > c->out_cap) {
        uint32_t cap = c->out_cap ? c->out_cap : 512;
        while (cap < c->out_len + n)
            cap *= 2;
        uint8_t *nb = realloc(c->out, cap);
        if (nb == NULL)
            return -1;
        c->out = nb;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += (uint32_t)n;
    return 0;
}

static void raw_write(lg_client *c, const uint8_t *p, size_t n)
{
    if (c->state == ST_CLOSED)
        return;
    if (c->out_len == 0) {
        ssize_t w = write(c->fd, p, n);
        if (w == (ssize_t)n)
            return;
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                lg_note_error("write: %s", strerror(errno));
                lg_client_close(c, 0);
                lg_on_lost(c);
                return;
            }
            w = 0;
        }
        p += w;
        n -= (size_t)w;
    }
    if (out_append(c, p, n) != 0) {
        lg_client_close(c, 0);
        lg_on_lost(c);
        return;
    }
    event_add(c->wev, NULL);
}

static void ws_send(lg_client *c, int opcode, const char *p, size_t n)
{
    uint8_t stackbuf[2048];
    uint8_t *buf = stackbuf;
    size_t need = n + 14;
    if (need > sizeof(stackbuf)) {
        buf = malloc(need);
        if (buf == NULL)
            return;
    }
    size_t h = 0;
    buf[h++] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        buf[h++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        buf[h++] = 0x80 | 126;
        buf[h++] = (uint8_t)(n >> 8);
        buf[h++] = (uint8_t)n;
    } else {
        buf[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            buf[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    uint32_t m = rng32();
    uint8_t mask[4];
    memcpy(mask, &m, 4);
    memcpy(buf + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        buf[h + i] = (uint8_t)p[i] ^ mask[i & 3];
    raw_write(c, buf, h + n);
    if (buf != stackbuf)
        free(buf);
}

static void poll_post(lg_client *c);

void lg_client_send(lg_client *c, const char *txt, size_t n)
{
    if (c->state == ST_CLOSED)
        return;
    if (!c->polling) {
        ws_send(c, 1, txt, n);
        return;
    }
    size_t add = n + (c->pq_len ? 1 : 0);
    if (c->pq_len + add > LG_OUT_CAP) {
        lg_note_error("polling queue full");
        return;
    }
    char *nq = realloc(c->pq, c->pq_len + add);
    if (nq == NULL)
        return;
    c->pq = nq;
    if (c->pq_len)
        c->pq[c->pq_len++] = 0x1e; /* Engine.IO 4 payload separator */
    memcpy(c->pq + c->pq_len, txt, n);
    c->pq_len += (uint32_t)n;
    if (!c->post_busy)
        poll_post(c);
}

/* ---- Engine.IO / Socket.IO ---- */

static void send_connect(lg_client *c)
{
    char buf[1024];
    int n;
    const char *tok = R.cfg.ntokens ? R.cfg.tokens[c->idx % (uint32_t)R.cfg.ntokens] : R.cfg.token;
    if (c->role == ROLE_CTL)
        n = snprintf(buf, sizeof(buf), "40{\"ctl\":1%s%s%s}", tok ? ",\"token\":\"" : "", tok ? tok : "",
                     tok ? "\"" : "");
    else
        n = snprintf(buf, sizeof(buf), "40{\"room\":\"%s\"%s%s%s}", R.cfg.room, tok ? ",\"token\":\"" : "",
                     tok ? tok : "", tok ? "\"" : "");
    if (n <= 0 || (size_t)n >= sizeof(buf)) {
        lg_note_error("auth payload too long");
        lg_client_close(c, 0);
        lg_on_failed(c);
        return;
    }
    c->state = ST_SIO_WAIT;
    lg_client_send(c, buf, (size_t)n);
}

static void handle_sio(lg_client *c, const char *p, size_t n)
{
    if (n == 0) {
        R.proto_errors++;
        return;
    }
    switch (p[0]) {
    case '0': /* CONNECT reply: 0{"sid":"..."} */
        if (c->state != ST_SIO_WAIT) {
            R.proto_errors++;
            return;
        }
        if (find_str(p, n, "sid", c->sid, sizeof(c->sid)) != 0) {
            R.proto_errors++;
            c->sid[0] = '\0';
        }
        c->state = ST_READY;
        lg_on_ready(c);
        return;
    case '4': /* CONNECT_ERROR */
        lg_note_error("CONNECT_ERROR %.*s", (int)(n > 100 ? 100 : n), p);
        lg_client_close(c, 0);
        lg_on_failed(c);
        return;
    case '1': /* server-side namespace disconnect */
        lg_client_close(c, 0);
        lg_on_lost(c);
        return;
    case '2':
        lg_on_event(c, p + 1, n - 1);
        return;
    case '3':
        lg_on_ack(c, p + 1, n - 1);
        return;
    default:
        R.proto_errors++;
    }
}

static void handle_eio(lg_client *c, const char *p, size_t n)
{
    if (n == 0) {
        R.proto_errors++;
        return;
    }
    switch (p[0]) {
    case '0': /* open */
        if (c->state != ST_EIO_OPEN) {
            R.proto_errors++;
            return;
        }
        if (c->polling && find_str(p, n, "sid", c->eio_sid, sizeof(c->eio_sid)) != 0) {
            lg_note_error("open packet without sid");
            lg_client_close(c, 0);
            lg_on_failed(c);
            return;
        }
        send_connect(c);
        return;
    case '2':
        R.pings++;
        lg_client_send(c, "3", 1);
        return;
    case '1':
        lg_client_close(c, 0);
        lg_on_lost(c);
        return;
    case '4':
        handle_sio(c, p + 1, n - 1);
        return;
    case '6':
        return;
    default:
        R.proto_errors++;
    }
}

/* ---- WebSocket input ---- */

static int check_upgrade(lg_client *c, const char *h, size_t n)
{
    if (n < 12 || memcmp(h, "HTTP/1.1 101", 12) != 0) {
        lg_note_error("upgrade refused: %.*s", (int)(n > 60 ? 60 : n), h);
        return -1;
    }
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char cat[64];
    memcpy(cat, c->key, 24);
    memcpy(cat + 24, guid, 36);
    unsigned char dig[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)cat, 60, dig);
    char want[32];
    EVP_EncodeBlock((unsigned char *)want, dig, SHA_DIGEST_LENGTH);
    const char *a = memmem(h, n, want, 28);
    if (a == NULL) {
        lg_note_error("bad Sec-WebSocket-Accept");
        return -1;
    }
    return 0;
}

/* Consumes what it can of p[0..n); returns bytes consumed or -1 when the client got closed. */
static long process(lg_client *c, uint8_t *p, size_t n)
{
    size_t off = 0;
    if (c->state == ST_HTTP) {
        const uint8_t *e = memmem(p, n, "\r\n\r\n", 4);
        if (e == NULL)
            return n > 8192 ? -1 : 0;
        size_t hl = (size_t)(e - p) + 4;
        if (check_upgrade(c, (const char *)p, hl) != 0) {
            lg_client_close(c, 0);
            lg_on_failed(c);
            return -1;
        }
        c->state = ST_EIO_OPEN;
        off = hl;
    }
    while (n - off >= 2) {
        uint8_t b0 = p[off], b1 = p[off + 1];
        size_t h = 2;
        uint64_t len = b1 & 0x7f;
        if (len == 126) {
            if (n - off < 4)
                break;
            len = ((uint64_t)p[off + 2] << 8) | p[off + 3];
            h = 4;
        } else if (len == 127) {
            if (n - off < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | p[off + 2 + i];
            h = 10;
        }
        if (b1 & 0x80) { /* servers must not mask */
            R.proto_errors++;
            lg_client_close(c, 0);
            lg_on_lost(c);
            return -1;
        }
        if (len > LG_IN_CAP) {
            lg_note_error("frame of %llu bytes", (unsigned long long)len);
            lg_client_close(c, 0);
            lg_on_lost(c);
            return -1;
        }
        if (n - off - h < len)
            break;
        const char *pl = (const char *)p + off + h;
        int op = b0 & 0x0f;
        off += h + (size_t)len;
        if (!(b0 & 0x80)) {
            /* Fragmented messages are legal but no server here sends them for small packets. */
            R.proto_errors++;
            continue;
        }
        switch (op) {
        case 1:
            handle_eio(c, pl, (size_t)len);
            break;
        case 2:
            R.proto_errors++; /* binary attachments are not part of any scenario */
            break;
        case 8:
            lg_client_close(c, 0);
            lg_on_lost(c);
            return -1;
        case 9:
            ws_send(c, 10, pl, (size_t)len);
            break;
        default:
            break;
        }
        if (c->state == ST_CLOSED)
            return -1;
    }
    return (long)off;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    lg_client *c = arg;
    for (int loop = 0; loop < 8; loop++) {
        ssize_t r = read(fd, rbuf, sizeof(rbuf));
        if (r == 0) {
            if (c->state == ST_READY)
                lg_note_error("server closed a ready connection");
            int was_ready = c->state >= ST_READY;
            lg_client_close(c, 0);
            if (was_ready)
                lg_on_lost(c);
            else
                lg_on_failed(c);
            return;
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            lg_note_error("read: %s", strerror(errno));
            int was_ready = c->state >= ST_READY;
            lg_client_close(c, 0);
            if (was_ready)
                lg_on_lost(c);
            else
                lg_on_failed(c);
            return;
        }
        if (c->in_len == 0) {
            long used = process(c, rbuf, (size_t)r);
            if (used < 0)
                return;
            if ((size_t)used < (size_t)r) {
                size_t rest = (size_t)r - (size_t)used;
                if (rest > c->in_cap) {
                    uint8_t *nb = realloc(c->in, rest < 4096 ? 4096 : rest);
                    if (nb == NULL)
                        return;
                    c->in = nb;
                    c->in_cap = (uint32_t)(rest < 4096 ? 4096 : rest);
                }
                memcpy(c->in, rbuf + used, rest);
                c->in_len = (uint32_t)rest;
            }
        } else {
            if ((size_t)c->in_len + (size_t)r > LG_IN_CAP) {
                lg_note_error("input over %u bytes", LG_IN_CAP);
                lg_client_close(c, 0);
                lg_on_lost(c);
                return;
            }
            if (c->in_len + (size_t)r > c->in_cap) {
                size_t cap = c->in_cap * 2;
                while (cap < c->in_len + (size_t)r)
                    cap *= 2;
                uint8_t *nb = realloc(c->in, cap);
                if (nb == NULL)
                    return;
                c->in = nb;
                c->in_cap = (uint32_t)cap;
            }
            memcpy(c->in + c->in_len, rbuf, (size_t)r);
            c->in_len += (uint32_t)r;
            long used = process(c, c->in, c->in_len);
            if (used < 0)
                return;
            memmove(c->in, c->in + used, c->in_len - (size_t)used);
            c->in_len -= (uint32_t)used;
            if (c->in_len == 0 && c->in_cap > 65536) {
                /* A burst grew it; an idle client goes back to holding nothing. */
                free(c->in);
                c->in = NULL;
                c->in_cap = 0;
            }
        }
        if ((size_t)r < sizeof(rbuf))
            return;
    }
}

static void send_upgrade(lg_client *c)
{
    uint8_t raw[16];
    for (int i = 0; i < 4; i++) {
        uint32_t v = rng32();
        memcpy(raw + 4 * i, &v, 4);
    }
    EVP_EncodeBlock((unsigned char *)c->key, raw, 16);
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                     "Host: %s:%d\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     R.cfg.host, R.cfg.port, c->key);
    c->state = ST_HTTP;
    raw_write(c, (const uint8_t *)req, (size_t)n);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    lg_client *c = arg;
    if (c->state == ST_TCP) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            lg_note_error("connect: %s", strerror(err ? err : errno));
            R.connect_errors++;
            lg_client_close(c, 0);
            lg_on_failed(c);
            return;
        }
        event_add(c->rev, NULL);
        send_upgrade(c);
        return;
    }
    if (c->out_len == 0)
        return;
    ssize_t w = write(fd, c->out, c->out_len);
    if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            event_add(c->wev, NULL);
            return;
        }
        lg_note_error("write: %s", strerror(errno));
        lg_client_close(c, 0);
        lg_on_lost(c);
        return;
    }
    memmove(c->out, c->out + w, c->out_len - (size_t)w);
    c->out_len -= (uint32_t)w;
    if (c->out_len)
        event_add(c->wev, NULL);
}

/* ---- long-polling ---- */

static void poll_get(lg_client *c);

static void poll_fail(lg_client *c, const char *what)
{
    lg_note_error("polling %s failed", what);
    int was_ready = c->state >= ST_READY;
    lg_client_close(c, 0);
    if (was_ready)
        lg_on_lost(c);
    else
        lg_on_failed(c);
}

static void poll_get_done(struct evhttp_request *req, void *arg)
{
    lg_client *c = arg;
    if (c->state == ST_CLOSED)
        return;
    if (req == NULL || evhttp_request_get_response_code(req) != 200) {
        poll_fail(c, "GET");
        return;
    }
    struct evbuffer *b = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(b);
    const char *p = (const char *)evbuffer_pullup(b, (ssize_t)n);
    size_t start = 0;
    for (size_t i = 0; i <= n && p != NULL; i++) {
        if (i == n || p[i] == 0x1e) {
            if (i > start)
                handle_eio(c, p + start, i - start);
            if (c->state == ST_CLOSED)
                return;
            start = i + 1;
        }
    }
    poll_get(c);
}

static void poll_get(lg_client *c)
{
    struct evhttp_request *req = evhttp_request_new(poll_get_done, c);
    if (req == NULL) {
        poll_fail(c, "GET alloc");
        return;
    }
    char hostport[96], uri[160];
    snprintf(hostport, sizeof(hostport), "%s:%d", R.cfg.host, R.cfg.port);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", hostport);
    if (c->eio_sid[0])
        snprintf(uri, sizeof(uri), "/socket.io/?EIO=4&transport=polling&sid=%s", c->eio_sid);
    else
        snprintf(uri, sizeof(uri), "/socket.io/?EIO=4&transport=polling");
    if (evhttp_make_request(c->pget, req, EVHTTP_REQ_GET, uri) != 0)
        poll_fail(c, "GET request");
}

static void poll_post_done(struct evhttp_request *req, void *arg)
{
    lg_client *c = arg;
    if (c->state == ST_CLOSED)
        return;
    c->post_busy = 0;
    if (req == NULL || evhttp_request_get_response_code(req) != 200) {
        poll_fail(c, "POST");
        return;
    }
    if (c->pq_len)
        poll_post(c);
}

static void poll_post(lg_client *c)
{
    struct evhttp_request *req = evhttp_request_new(poll_post_done, c);
    if (req == NULL) {
        poll_fail(c, "POST alloc");
        return;
    }
    char hostport[96], uri[160];
    snprintf(hostport, sizeof(hostport), "%s:%d", R.cfg.host, R.cfg.port);
    struct evkeyvalq *hd = evhttp_request_get_output_headers(req);
    evhttp_add_header(hd, "Host", hostport);
    evhttp_add_header(hd, "Content-Type", "text/plain;charset=UTF-8");
    evbuffer_add(evhttp_request_get_output_buffer(req), c->pq, c->pq_len);
    c->pq_len = 0;
    snprintf(uri, sizeof(uri), "/socket.io/?EIO=4&transport=polling&sid=%s", c->eio_sid);
    c->post_busy = 1;
    if (evhttp_make_request(c->ppost, req, EVHTTP_REQ_POST, uri) != 0)
        poll_fail(c, "POST request");
}

static struct evhttp_connection *poll_conn(int src_index)
{
    struct evhttp_connection *ec = evhttp_connection_base_new(R.base, NULL, R.cfg.host, (unsigned short)R.cfg.port);
    if (ec == NULL)
        return NULL;
    char src[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &R.cfg.src[src_index], src, sizeof(src));
    evhttp_connection_set_local_address(ec, src);
    /* Longer than the ping interval: a long-poll GET legitimately waits that long. */
    evhttp_connection_set_timeout(ec, 60);
    evhttp_connection_set_retries(ec, 0);
    return ec;
}

/* ---- lifecycle ---- */

int lg_client_start(lg_client *c, int src_index)
{
    c->t_start = lg_now();
    c->fd = -1;
    if (c->polling) {
        c->pget = poll_conn(src_index);
        c->ppost = poll_conn(src_index);
        if (c->pget == NULL || c->ppost == NULL) {
            lg_note_error("evhttp_connection_base_new failed");
            return -1;
        }
        c->state = ST_EIO_OPEN;
        poll_get(c);
        return c->state == ST_CLOSED ? -1 : 0;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        lg_note_error("socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* Pick the port at connect() time from the full 4-tuple: many more connections per source address. */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0, .sin_addr = R.cfg.src[src_index]};
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        lg_note_error("bind: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&R.cfg.dst, sizeof(R.cfg.dst)) != 0 && errno != EINPROGRESS) {
        lg_note_error("connect: %s", strerror(errno));
        R.connect_errors++;
        close(fd);
        return -1;
    }
    c->fd = fd;
    c->rev = event_new(R.base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->wev = event_new(R.base, fd, EV_WRITE, on_write, c);
    if (c->rev == NULL || c->wev == NULL) {
        lg_client_close(c, 0);
        return -1;
    }
    c->state = ST_TCP;
    event_add(c->wev, NULL);
    return 0;
}

static void free_conns(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct evhttp_connection **pair = arg;
    if (pair[0])
        evhttp_connection_free(pair[0]);
    if (pair[1])
        evhttp_connection_free(pair[1]);
    free(pair);
}

void lg_client_close(lg_client *c, int on_purpose)
{
    if (c->state == ST_CLOSED)
        return;
    if (on_purpose && c->state == ST_READY && !c->polling) {
        /* A clean Socket.IO leave, as a browser tab closing its socket does. */
        ws_send(c, 1, "41", 2);
    }
    c->state = ST_CLOSED;
    c->closing = (uint8_t)on_purpose;
    if (c->rev) {
        event_free(c->rev);
        c->rev = NULL;
    }
    if (c->wev) {
        event_free(c->wev);
        c->wev = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    if (c->pget || c->ppost) {
        /* We may be inside one of their request callbacks: free them from the loop instead. */
        struct evhttp_connection **pair = malloc(2 * sizeof(*pair));
        if (pair != NULL) {
            pair[0] = c->pget;
            pair[1] = c->ppost;
            struct timeval zero = {0, 0};
            if (event_base_once(R.base, -1, EV_TIMEOUT, free_conns, pair, &zero) != 0)
                free(pair);
        }
        c->pget = NULL;
        c->ppost = NULL;
    }
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_cap = 0;
    free(c->pq);
    c->pq = NULL;
    c->pq_len = 0;
}
