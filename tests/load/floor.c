/* floor: the frame-only server of the benchmarks. It does the least any
 * WebSocket Socket.IO server must do on this machine and nothing more, so its
 * CPU and latency are the floor the real servers are compared with:
 *   - accepts WebSocket upgrades on /socket.io/?EIO=4&transport=websocket
 *     (no long-polling: run it with --polling-pct 0), answers the Engine.IO
 *     open and the Socket.IO CONNECT minimally;
 *   - a CONNECT whose auth holds "ctl" marks the publisher; its event
 *     42["bcast",room,PAYLOAD] is framed once as 42["m",PAYLOAD] and written to
 *     every other client with one write() per socket (no coalescing);
 *   - 42<id>["e",ARGS...] is answered with 43<id>[ARGS...] (the acks scenario);
 *     42["e",ARGS...] without an id is counted (the events scenario), and the
 *     control client's 42<id>["count"] is answered with 43<id>[COUNT];
 *   - no heartbeats of its own (the generator still answers them elsewhere).
 * One thread, level-triggered epoll.
 *
 *   floor --listen 127.0.0.1:PORT        prints "listening PORT" when ready */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#define IN_CAP (1u << 20)
#define OUT_CAP (8u << 20)

typedef struct conn {
    int fd;
    int ws;     /* upgraded */
    int member; /* index in members[], -1 when not a broadcast target */
    int ctl;
    uint8_t *in;
    uint32_t in_len, in_cap;
    uint8_t *out;
    uint32_t out_len, out_cap;
    int want_out;
    int dead;          /* closed; freed after the current epoll batch */
    struct conn *next; /* graveyard */
} conn;

static int ep;
static conn **members;
static int nmembers, members_cap;
static unsigned long serial;
static unsigned long long events_seen; /* 42["e",...] without ack id received (events scenario) */
static volatile sig_atomic_t stop;
static uint8_t rbuf[65536];
static conn *graveyard;

static void on_stop(int sig)
{
    (void)sig;
    stop = 1;
}

static void member_add(conn *c)
{
    if (nmembers == members_cap) {
        int cap = members_cap ? members_cap * 2 : 1024;
        conn **nm = realloc(members, (size_t)cap * sizeof(*nm));
        if (nm == NULL)
            return;
        members = nm;
        members_cap = cap;
    }
    c->member = nmembers;
    members[nmembers++] = c;
}

static void member_del(conn *c)
{
    if (c->member < 0)
        return;
    members[c->member] = members[--nmembers];
    members[c->member]->member = c->member;
    c->member = -1;
}

/* A broadcast may close a connection whose event is still in the current epoll batch: free it only after it. */
static void conn_close(conn *c)
{
    if (c->dead)
        return;
    member_del(c);
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->dead = 1;
    c->next = graveyard;
    graveyard = c;
}

static void bury(void)
{
    while (graveyard) {
        conn *c = graveyard;
        graveyard = c->next;
        free(c->in);
        free(c->out);
        free(c);
    }
}

static int out_append(conn *c, const uint8_t *p, size_t n)
{
    if ((size_t)c->out_len + n > OUT_CAP)
        return -1;
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 1024;
        while (cap < c->out_len + n)
            cap *= 2;
        uint8_t *nb = realloc(c->out, cap);
        if (nb == NULL)
            return -1;
        c->out = nb;
        c->out_cap = (uint32_t)cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += (uint32_t)n;
    if (!c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = 1;
    }
    return 0;
}

/* One write() per call; what the kernel does not take waits for EPOLLOUT. Returns -1 when the connection died. */
static int send_bytes(conn *c, const uint8_t *p, size_t n)
{
    if (c->out_len)
        return out_append(c, p, n);
    ssize_t w = write(c->fd, p, n);
    if (w == (ssize_t)n)
        return 0;
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        w = 0;
    }
    return out_append(c, p + w, n - (size_t)w);
}

static size_t frame_header(uint8_t *h, size_t n)
{
    h[0] = 0x81; /* FIN, text */
    if (n < 126) {
        h[1] = (uint8_t)n;
        return 2;
    }
    if (n < 65536) {
        h[1] = 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    return 10;
}

static int send_text(conn *c, const char *p, size_t n)
{
    uint8_t stackbuf[4096];
    uint8_t *buf = n + 10 <= sizeof(stackbuf) ? stackbuf : malloc(n + 10);
    if (buf == NULL)
        return -1;
    size_t h = frame_header(buf, n);
    memcpy(buf + h, p, n);
    int rc = send_bytes(c, buf, h + n);
    if (buf != stackbuf)
        free(buf);
    return rc;
}

static void broadcast(const char *payload, size_t n)
{
    static const char pre[] = "42[\"m\",";
    size_t len = sizeof(pre) - 1 + n + 1;
    uint8_t *frame = malloc(len + 10);
    if (frame == NULL)
        return;
    size_t h = frame_header(frame, len);
    memcpy(frame + h, pre, sizeof(pre) - 1);
    memcpy(frame + h + sizeof(pre) - 1, payload, n);
    frame[h + len - 1] = ']';
    /* Iterate backwards: a failed connection is swapped out of the array behind us. */
    for (int i = nmembers - 1; i >= 0; i--) {
        if (i >= nmembers)
            continue;
        conn *m = members[i];
        if (send_bytes(m, frame, h + len) != 0)
            conn_close(m);
    }
    free(frame);
}

/* Handles one Engine.IO packet; -1 closes the connection. */
static int on_packet(conn *c, char *p, size_t n)
{
    if (n == 0)
        return 0;
    if (p[0] == '3' || p[0] == '2')
        return p[0] == '2' ? send_text(c, "3", 1) : 0; /* pong / client ping */
    if (p[0] == '1')
        return -1;
    if (p[0] != '4' || n < 2)
        return 0;
    if (p[1] == '0') { /* CONNECT */
        char reply[64];
        int rn = snprintf(reply, sizeof(reply), "40{\"sid\":\"s%lu\"}", ++serial);
        if (memmem(p, n, "\"ctl\"", 5) != NULL)
            c->ctl = 1;
        else if (c->member < 0)
            member_add(c);
        return send_text(c, reply, (size_t)rn);
    }
    if (p[1] == '1')
        return -1;
    if (p[1] != '2')
        return 0;
    /* EVENT: 42[... or 42<id>[... */
    size_t i = 2;
    while (i < n && p[i] >= '0' && p[i] <= '9')
        i++;
    static const char bc[] = "[\"bcast\",\"";
    if (i == 2 && c->ctl && n > i + sizeof(bc) && memcmp(p + i, bc, sizeof(bc) - 1) == 0) {
        /* skip the room name, then the payload runs to the closing bracket */
        char *q = memchr(p + i + sizeof(bc) - 1, '"', n - i - (sizeof(bc) - 1));
        if (q == NULL || q + 2 >= p + n || q[1] != ',' || p[n - 1] != ']')
            return 0;
        broadcast(q + 2, (size_t)(p + n - 1 - (q + 2)));
        return 0;
    }
    static const char ev[] = "[\"e\",";
    if (i == 2 && n >= i + sizeof(ev) - 1 && memcmp(p + i, ev, sizeof(ev) - 1) == 0) {
        events_seen++; /* the events scenario: received, nothing to answer */
        return 0;
    }
    static const char cnt[] = "[\"count\"]";
    if (i > 2 && c->ctl && n == i + sizeof(cnt) - 1 && memcmp(p + i, cnt, sizeof(cnt) - 1) == 0) {
        char reply[64];
        int rn = snprintf(reply, sizeof(reply), "43%.*s[%llu]", (int)(i - 2), p + 2, events_seen);
        return rn > 0 && (size_t)rn < sizeof(reply) ? send_text(c, reply, (size_t)rn) : 0;
    }
    if (i > 2 && n >= i + sizeof(ev) - 1 && memcmp(p + i, ev, sizeof(ev) - 1) == 0) {
        /* 42<id>["e",ARGS] -> 43<id>[ARGS] */
        size_t idlen = i - 2, rest = n - i - (sizeof(ev) - 1);
        char stackbuf[4096];
        size_t rn = 2 + idlen + 1 + rest;
        char *r = rn <= sizeof(stackbuf) ? stackbuf : malloc(rn);
        if (r == NULL)
            return 0;
        r[0] = '4';
        r[1] = '3';
        memcpy(r + 2, p + 2, idlen);
        r[2 + idlen] = '[';
        memcpy(r + 3 + idlen, p + i + sizeof(ev) - 1, rest);
        int rc = send_text(c, r, rn);
        if (r != stackbuf)
            free(r);
        return rc;
    }
    return 0;
}

static int do_upgrade(conn *c, const char *req, size_t n)
{
    const char *k = memmem(req, n, "Sec-WebSocket-Key:", 18);
    if (k == NULL || memmem(req, n, "transport=websocket", 19) == NULL) {
        static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        send_bytes(c, (const uint8_t *)bad, sizeof(bad) - 1);
        return -1;
    }
    k += 18;
    while (*k == ' ')
        k++;
    const char *e = k;
    while (e < req + n && *e != '\r')
        e++;
    if (e - k != 24)
        return -1;
    char cat[64];
    memcpy(cat, k, 24);
    memcpy(cat + 24, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    unsigned char dig[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)cat, 60, dig);
    char acc[32];
    EVP_EncodeBlock((unsigned char *)acc, dig, SHA_DIGEST_LENGTH);
    char resp[256];
    int rn = snprintf(resp, sizeof(resp),
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: %s\r\n\r\n",
                      acc);
    if (send_bytes(c, (const uint8_t *)resp, (size_t)rn) != 0)
        return -1;
    c->ws = 1;
    char open[160];
    int on = snprintf(open, sizeof(open),
                      "0{\"sid\":\"e%lu\",\"upgrades\":[],\"pingInterval\":25000,\"pingTimeout\":20000,"
                      "\"maxPayload\":1000000}",
                      ++serial);
    return send_text(c, open, (size_t)on);
}

/* Consumes complete requests/frames from p[0..n); returns bytes used or -1 to close. */
static long process(conn *c, uint8_t *p, size_t n)
{
    size_t off = 0;
    if (!c->ws) {
        uint8_t *e = memmem(p, n, "\r\n\r\n", 4);
        if (e == NULL)
            return n > 8192 ? -1 : 0;
        off = (size_t)(e - p) + 4;
        if (do_upgrade(c, (const char *)p, off) != 0)
            return -1;
    }
    while (n - off >= 6) {
        uint8_t b0 = p[off], b1 = p[off + 1];
        uint64_t len = b1 & 0x7f;
        size_t h = 2;
        if (!(b1 & 0x80))
            return -1; /* clients must mask */
        if (len == 126) {
            if (n - off < 8)
                break;
            len = ((uint64_t)p[off + 2] << 8) | p[off + 3];
            h = 4;
        } else if (len == 127) {
            if (n - off < 14)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | p[off + 2 + i];
            h = 10;
        }
        if (len > IN_CAP)
            return -1;
        if (n - off < h + 4 + len)
            break;
        uint8_t *mask = p + off + h;
        uint8_t *pl = mask + 4;
        for (uint64_t i = 0; i < len; i++)
            pl[i] ^= mask[i & 3];
        off += h + 4 + (size_t)len;
        int op = b0 & 0x0f;
        if (op == 8)
            return -1;
        if (op == 9) {
            continue; /* not sent by the generator */
        }
        if (op == 1 && on_packet(c, (char *)pl, (size_t)len) != 0)
            return -1;
    }
    return (long)off;
}

static void on_readable(conn *c)
{
    ssize_t r = read(c->fd, rbuf, sizeof(rbuf));
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        conn_close(c);
        return;
    }
    if (r < 0)
        return;
    if (c->in_len + (size_t)r > IN_CAP) {
        conn_close(c);
        return;
    }
    long used;
    if (c->in_len == 0) {
        used = process(c, rbuf, (size_t)r);
        if (used < 0) {
            conn_close(c);
            return;
        }
        size_t rest = (size_t)r - (size_t)used;
        if (rest) {
            if (rest > c->in_cap) {
                uint8_t *nb = realloc(c->in, rest);
                if (nb == NULL) {
                    conn_close(c);
                    return;
                }
                c->in = nb;
                c->in_cap = (uint32_t)rest;
            }
            memcpy(c->in, rbuf + used, rest);
            c->in_len = (uint32_t)rest;
        }
        return;
    }
    if (c->in_len + (size_t)r > c->in_cap) {
        uint8_t *nb = realloc(c->in, c->in_len + (size_t)r);
        if (nb == NULL) {
            conn_close(c);
            return;
        }
        c->in = nb;
        c->in_cap = c->in_len + (uint32_t)r;
    }
    memcpy(c->in + c->in_len, rbuf, (size_t)r);
    c->in_len += (uint32_t)r;
    used = process(c, c->in, c->in_len);
    if (used < 0) {
        conn_close(c);
        return;
    }
    memmove(c->in, c->in + used, c->in_len - (size_t)used);
    c->in_len -= (uint32_t)used;
}

static void on_writable(conn *c)
{
    ssize_t w = write(c->fd, c->out, c->out_len);
    if (w < 0) {
        if (errno != EAGAIN)
            conn_close(c);
        return;
    }
    memmove(c->out, c->out + w, c->out_len - (size_t)w);
    c->out_len -= (uint32_t)w;
    if (c->out_len == 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = 0;
    }
}

int main(int argc, char **argv)
{
    const char *listen_at = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--listen") == 0)
            listen_at = argv[i + 1];
    char host[64];
    const char *colon = listen_at ? strrchr(listen_at, ':') : NULL;
    if (colon == NULL || (size_t)(colon - listen_at) >= sizeof(host)) {
        fprintf(stderr, "usage: floor --listen 127.0.0.1:PORT\n");
        return 2;
    }
    memcpy(host, listen_at, (size_t)(colon - listen_at));
    host[colon - listen_at] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (*end != '\0' || port <= 0 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
        (ntohl(sa.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "floor: --listen needs a 127.0.0.0/8 address and a port\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction st = {.sa_handler = on_stop};
    sigaction(SIGTERM, &st, NULL);
    sigaction(SIGINT, &st, NULL);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, 65535) != 0) {
        perror("floor: listen");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
    printf("listening %ld\n", port);
    fflush(stdout);
    struct epoll_event evs[256];
    while (!stop) {
        int n = epoll_wait(ep, evs, 256, 500);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c == NULL) {
                for (int k = 0; k < 256; k++) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0)
                        break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    conn *nc = calloc(1, sizeof(*nc));
                    if (nc == NULL) {
                        close(fd);
                        continue;
                    }
                    nc->fd = fd;
                    nc->member = -1;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (c->dead)
                continue;
            if (evs[i].events & (EPOLLOUT))
                on_writable(c);
            else if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_readable(c);
        }
        bury();
    }
    close(ls);
    close(ep);
    return 0;
}
