/*
 * ws.c — RFC 6455 server connections on raw h2o sockets, with batched writes
 * and bounded queues (see include/switchboard/ws.h).
 *
 * Life of a connection:
 *   open ──(sb_ws_close | protocol error | peer close)──▶ closing ──▶ socket closed ──▶ freed
 * "closing" means a close frame is queued and sends are refused. Once it is
 * written the socket is closed at once when the peer already closed (or we
 * stopped reading after an error); after a server-initiated close we keep
 * reading (discarding data) until the peer answers with its close frame or
 * EOF, so the kernel does not reset a connection holding unread bytes and
 * lose our close frame. A linger timer bounds the whole closing phase, so a
 * peer that never reads cannot pin the connection.
 *
 * on_close and free() both happen from the context's zero-delay timer
 * ("tick"), never from inside a socket callback or an API call: the user may
 * call sb_ws_close/sb_ws_send from on_message, and h2o may still be inside
 * its own callback chain for the socket. h2o 2.2.5 never calls the write
 * callback of a socket closed while a write is in flight (evloop run_socket
 * skips disposed sockets; shutdown_ssl clears _cb.write), so releasing the
 * in-flight frames right after h2o_socket_close is safe.
 */
#include "switchboard/ws.h"
#include "switchboard/common.h"

#include <h2o/http1.h>
#include <openssl/evp.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* flush() hands h2o's iovecs straight to writev, as h2o itself does. */
_Static_assert(sizeof(h2o_iovec_t) == sizeof(struct iovec) &&
                   offsetof(h2o_iovec_t, len) == offsetof(struct iovec, iov_len),
               "h2o_iovec_t is laid out as struct iovec");

/* At most this many iovecs per write; the rest waits for the completion. */
#define MAX_IOV 256
/* How long a closing connection may take to flush and hear the peer's close. */
#define LINGER_MS 5000
/* Defaults when sb_ws_create gets 0 for a bound. */
#define DEFAULT_MAX_MESSAGE ((size_t)1000 * 1000)
#define DEFAULT_MAX_QUEUE ((size_t)16 * 1024 * 1024)

#define OP_CONT 0x0
#define OP_TEXT 0x1
#define OP_BINARY 0x2
#define OP_CLOSE 0x8
#define OP_PING 0x9
#define OP_PONG 0xa

struct sb_ws_ctx {
    h2o_loop_t *loop;
    h2o_timeout_t zero;   /* 0 ms: runs in the same loop iteration */
    h2o_timeout_t linger; /* LINGER_MS */
    h2o_timeout_entry_t tick;
    /* Connections with frames to write or input to parse, in the order they asked: an array rather than a list so
     * that the tick can ask for connections' memory a few entries ahead. A connection takes at most one slot per
     * tick, and sb_ws_create keeps room for every live connection twice over, so adding one does not allocate in
     * practice. A slot is NULL once its connection closed. */
    sb_ws_t **pend;
    size_t npend, pcap;
    size_t nws;              /* live connections */
    h2o_linklist_t deferred; /* connections owing an on_close or a free */
    h2o_linklist_t all;
};

struct sb_ws {
    /* What a delivery reads and writes comes first, so that a broadcast touches two cache lines of each recipient's
     * connection rather than four (most of a delivery's user time is cache misses across 5k connections). */
    h2o_socket_t *sock; /* NULL once closed */
    sb_ws_ctx_t *ctx;
    /* Outgoing data frames q[qhead .. qhead+qlen); the first `inflight` are
     * in the current write. q is NULL, qinl (two frames, enough for a
     * connection that gets a message now and then), or malloc'd once more
     * were queued at a time. */
    sb_ws_frame_t **q;
    uint32_t qhead, qlen, qcap, inflight;
    size_t queued; /* bytes of queued + in-flight data frames */
    size_t max_queue;
    int fd; /* the socket's fd for direct writes; -1 for TLS */
    unsigned writing : 1;
    unsigned in_frame : 1;
    unsigned msg_active : 1;
    unsigned msg_binary : 1;
    unsigned closing : 1;
    unsigned close_inflight : 1;
    unsigned close_sent : 1;
    unsigned read_done : 1;
    unsigned discard : 1;
    unsigned need_read : 1;
    unsigned notified : 1;
    unsigned pending : 1; /* in ctx->pend, at pend_idx */
    uint32_t pend_idx;
    size_t sent; /* bytes of the in-flight set written so far (plain sockets) */
    sb_ws_frame_t *qinl[2];
    sb_ws_frame_t *pong;          /* latest pong, not yet written */
    sb_ws_frame_t *pong_inflight; /* pong of the current write */
    sb_ws_frame_t *closef;        /* close frame, pending or in flight */
    size_t writes;

    sb_ws_callbacks_t cb;
    void *ud;
    size_t max_message;
    h2o_linklist_t all_link;
    h2o_linklist_t deferred_link;
    h2o_timeout_entry_t linger;

    /* Incoming: header of the frame being read, bytes of its payload still
     * to come, and the message being reassembled (malloc'd only while a
     * fragmented or partially received message is in progress). */
    sb_ws_header_t hdr;
    uint64_t remaining;
    char *msg;
    size_t msg_len, msg_cap;

    const char *reason; /* why it ended; set once, reported by on_close */
};

/* ---- frames ---------------------------------------------------------------------------------------------------- */

static size_t header_len(size_t len)
{
    return len < 126 ? 2 : len <= 0xffff ? 4 : 10;
}

/* Writes a final frame's header for a payload of len bytes at p (header_len(len) bytes). */
static void put_header(uint8_t *p, int opcode, size_t len)
{
    size_t hl = header_len(len);
    p[0] = (uint8_t)(0x80 | opcode);
    if (hl == 2) {
        p[1] = (uint8_t)len;
    } else if (hl == 4) {
        p[1] = 126;
        p[2] = (uint8_t)(len >> 8);
        p[3] = (uint8_t)len;
    } else {
        p[1] = 127;
        uint64_t l = len;
        for (int i = 0; i < 8; i++)
            p[2 + i] = (uint8_t)(l >> (56 - 8 * i));
    }
}

static sb_ws_frame_t *frame_build(int opcode, const void *payload, size_t len)
{
    size_t hl = header_len(len);
    if (len > SIZE_MAX - sizeof(sb_ws_frame_t) - hl)
        return NULL;
    sb_ws_frame_t *f = malloc(sizeof(*f) + hl + len);
    if (f == NULL)
        return NULL;
    f->refcnt = 1;
    f->len = hl + len;
    uint8_t *p = (uint8_t *)f->data;
    put_header(p, opcode, len);
    if (len != 0)
        memcpy(p + hl, payload, len);
    return f;
}

sb_ws_frame_t *sb_ws_frame_new(int binary, const void *payload, size_t len)
{
    return frame_build(binary ? OP_BINARY : OP_TEXT, payload, len);
}

void sb_ws_frame_addref(sb_ws_frame_t *f)
{
    f->refcnt++;
}

void sb_ws_frame_release(sb_ws_frame_t *f)
{
    if (f != NULL && --f->refcnt == 0)
        free(f);
}

/* ---- pure parsers ---------------------------------------------------------------------------------------------- */

int sb_ws_parse_header(const uint8_t *buf, size_t len, sb_ws_header_t *out)
{
    if (len < 1)
        return 0;
    /* Reject as soon as the bytes at hand prove the frame invalid, so a bad
     * peer is dropped without waiting for more input. */
    uint8_t b0 = buf[0];
    int opcode = b0 & 0x0f;
    int fin = (b0 & 0x80) != 0;
    if (b0 & 0x70)
        return SB_EPROTO; /* no extension was negotiated */
    if (!(opcode <= OP_BINARY || (opcode >= OP_CLOSE && opcode <= OP_PONG)))
        return SB_EPROTO;
    int control = (opcode & 0x8) != 0;
    if (control && !fin)
        return SB_EPROTO;
    if (len < 2)
        return 0;
    uint8_t b1 = buf[1];
    if (!(b1 & 0x80))
        return SB_EPROTO; /* clients must mask (RFC 6455 5.1) */
    uint64_t plen = b1 & 0x7f;
    if (control && plen > 125)
        return SB_EPROTO;
    size_t ext = plen == 126 ? 2 : plen == 127 ? 8 : 0;
    size_t need = 2 + ext + 4;
    if (len < 2 + ext)
        return 0;
    if (plen == 126) {
        plen = ((uint64_t)buf[2] << 8) | buf[3];
        if (plen < 126)
            return SB_EPROTO;
    } else if (plen == 127) {
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = (plen << 8) | buf[2 + i];
        if (plen >> 63)
            return SB_EPROTO;
        if (plen <= 0xffff)
            return SB_EPROTO;
    }
    if (len < need)
        return 0;
    out->fin = fin;
    out->opcode = opcode;
    out->masked = 1;
    memcpy(out->mask, buf + 2 + ext, 4);
    out->payload_len = plen;
    return (int)need;
}

int sb_ws_utf8_valid(const char *str, size_t len)
{
    const uint8_t *s = (const uint8_t *)str;
    size_t i = 0;
    while (i < len) {
        /* ASCII runs are the common case: check 8 bytes at a time. */
        if (len - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if ((w & 0x8080808080808080ULL) == 0) {
                i += 8;
                continue;
            }
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates U+D800..DFFF */
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* > U+10FFFF */
        } else {
            return 0; /* continuation byte, C0/C1 overlongs, F5..FF */
        }
        if (len - i <= n)
            return 0; /* truncated */
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k <= n; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
        i += n + 1;
    }
    return 1;
}

/* ---- handshake ------------------------------------------------------------------------------------------------- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* common.c is written in parallel; this 20-byte case needs no dependency. */
static void base64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64chars[(v >> 18) & 63];
        out[o++] = b64chars[(v >> 12) & 63];
        out[o++] = (char)(i + 1 < n ? b64chars[(v >> 6) & 63] : '=');
        out[o++] = (char)(i + 2 < n ? b64chars[v & 63] : '=');
    }
}

static int is_b64char(char c)
{
    return c != '\0' && memchr(b64chars, c, sizeof(b64chars) - 1) != NULL;
}

/* The key must be base64 of 16 bytes: 22 characters and "==" (RFC 6455 4.2.1). */
static int valid_key(h2o_iovec_t v)
{
    if (v.len != 24 || v.base[22] != '=' || v.base[23] != '=')
        return 0;
    for (size_t i = 0; i < 22; i++)
        if (!is_b64char(v.base[i]))
            return 0;
    return 1;
}

static ssize_t find_header(h2o_req_t *req, const char *name, size_t len)
{
    return h2o_find_header_by_str(&req->headers, name, len, -1);
}

int sb_ws_is_handshake(h2o_req_t *req)
{
    /* h2o_http1_upgrade only exists for HTTP/1.1 connections. */
    if (req->version < 0x101 || req->version >= 0x200)
        return 0;
    if (!h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("GET")))
        return 0;
    /* h2o sets req->upgrade only when Connection lists "upgrade"; check both
     * anyway, since that is the contract here. */
    if (req->upgrade.base == NULL ||
        !h2o_contains_token(req->upgrade.base, req->upgrade.len, H2O_STRLIT("websocket"), ','))
        return 0;
    int conn_upgrade = 0;
    for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_CONNECTION, i)) != -1;) {
        h2o_iovec_t v = req->headers.entries[i].value;
        if (h2o_contains_token(v.base, v.len, H2O_STRLIT("upgrade"), ','))
            conn_upgrade = 1;
    }
    if (!conn_upgrade)
        return 0;
    ssize_t vi = find_header(req, H2O_STRLIT("sec-websocket-version"));
    if (vi == -1 ||
        !h2o_memis(req->headers.entries[vi].value.base, req->headers.entries[vi].value.len, H2O_STRLIT("13")))
        return 0;
    ssize_t ki = find_header(req, H2O_STRLIT("sec-websocket-key"));
    if (ki == -1 || !valid_key(req->headers.entries[ki].value))
        return 0;
    return 1;
}

struct upgrade_req {
    sb_ws_upgrade_cb cb;
    void *data;
};

static void on_upgrade_complete(void *data, h2o_socket_t *sock, size_t reqsize)
{
    struct upgrade_req u = *(struct upgrade_req *)data;
    free(data);
    if (sock != NULL) {
        /* The request bytes are still at the head of the input; what follows
         * them is already WebSocket data. The socket's data pointer and read
         * callback still belong to the freed HTTP/1 connection: stop reading
         * until sb_ws_create installs ours. */
        h2o_buffer_consume(&sock->input, reqsize);
        h2o_socket_read_stop(sock);
        sock->data = NULL;
    }
    u.cb(u.data, sock);
}

/* SHA-1 for Sec-WebSocket-Accept from a context initialised once: EVP_sha1() in EVP_Digest makes OpenSSL 3
 * fetch the implementation again on every handshake. The template is only read (copied), so workers share it. */
static pthread_once_t sha1_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha1_md;
static EVP_MD_CTX *sha1_init;

static void sha1_fetch(void)
{
    /* kept for the process's lifetime */
    if ((sha1_md = EVP_MD_fetch(NULL, "SHA1", NULL)) != NULL && (sha1_init = EVP_MD_CTX_new()) != NULL &&
        EVP_DigestInit_ex(sha1_init, sha1_md, NULL) != 1) {
        EVP_MD_CTX_free(sha1_init);
        sha1_init = NULL;
    }
}

static int accept_digest(const void *src, size_t len, uint8_t *digest, unsigned *dlen)
{
    pthread_once(&sha1_once, sha1_fetch);
    if (sha1_init == NULL)
        return EVP_Digest(src, len, digest, dlen, EVP_sha1(), NULL) == 1 ? 0 : SB_EIO;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c != NULL && EVP_MD_CTX_copy_ex(c, sha1_init) == 1 && EVP_DigestUpdate(c, src, len) == 1 &&
             EVP_DigestFinal_ex(c, digest, dlen) == 1;
    EVP_MD_CTX_free(c);
    return ok ? 0 : SB_EIO;
}

int sb_ws_upgrade(h2o_req_t *req, const void *first, size_t first_len, sb_ws_upgrade_cb cb, void *data)
{
    if (!sb_ws_is_handshake(req))
        return SB_EPROTO;
    if (first != NULL && first_len > SIZE_MAX - 16)
        return SB_ETOOBIG;
    h2o_iovec_t key = req->headers.entries[find_header(req, H2O_STRLIT("sec-websocket-key"))].value;
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char src[24 + sizeof(guid) - 1];
    memcpy(src, key.base, 24);
    memcpy(src + 24, guid, sizeof(guid) - 1);
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    if (accept_digest(src, sizeof(src), digest, &dlen) != 0 || dlen != 20)
        return SB_EIO;
    struct upgrade_req *u = malloc(sizeof(*u));
    if (u == NULL)
        return SB_ENOMEM;
    u->cb = cb;
    u->data = data;
    /* h2o keeps pointers to header values: the accept key lives in the pool. */
    char *accept = h2o_mem_alloc_pool(&req->pool, 28);
    base64_encode(digest, 20, accept);
    req->res.status = 101;
    req->res.reason = "Switching Protocols";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_UPGRADE, NULL, H2O_STRLIT("websocket"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-accept"), 0, NULL, accept, 28);
    /* The first text frame goes out in the same write as the 101: one TCP segment fewer per handshake, which on
     * loopback is kernel time charged to us. h2o writes the buffers after the headers and keeps pointing at them
     * until the write completes, so they live in the request's pool (freed only after on_upgrade_complete). */
    h2o_iovec_t frame = {NULL, 0};
    if (first != NULL) {
        size_t hl = header_len(first_len);
        frame.base = h2o_mem_alloc_pool(&req->pool, hl + first_len);
        frame.len = hl + first_len;
        uint8_t *p = (uint8_t *)frame.base;
        put_header(p, OP_TEXT, first_len);
        memcpy(p + hl, first, first_len);
    }
    h2o_http1_upgrade(req, &frame, frame.base != NULL ? 1 : 0, on_upgrade_complete, u);
    return 0;
}

/* ---- scheduling ------------------------------------------------------------------------------------------------ */

static void arm_tick(sb_ws_ctx_t *ctx)
{
    if (!h2o_timeout_is_linked(&ctx->tick))
        h2o_timeout_link(ctx->loop, &ctx->zero, &ctx->tick);
}

static void flush(sb_ws_t *ws);

static int grow_pend(sb_ws_ctx_t *ctx, size_t cap)
{
    sb_ws_t **n = realloc(ctx->pend, cap * sizeof(*n));
    if (n == NULL)
        return SB_ENOMEM;
    ctx->pend = n;
    ctx->pcap = cap;
    return 0;
}

static void schedule_pending(sb_ws_t *ws)
{
    if (ws->sock == NULL)
        return;
    if (!ws->pending) {
        sb_ws_ctx_t *ctx = ws->ctx;
        if (ctx->npend == ctx->pcap && grow_pend(ctx, ctx->pcap != 0 ? ctx->pcap * 2 : 64) != 0) {
            /* Not reached in practice: sb_ws_create keeps room for every live connection twice over, and a
             * connection takes one slot per tick. Without memory for more, it is written now rather than later. */
            flush(ws);
            return;
        }
        ws->pending = 1;
        ws->pend_idx = (uint32_t)ctx->npend;
        ctx->pend[ctx->npend++] = ws;
    }
    arm_tick(ws->ctx);
}

static void unschedule_pending(sb_ws_t *ws)
{
    if (ws->pending) {
        ws->ctx->pend[ws->pend_idx] = NULL;
        ws->pending = 0;
    }
}

static void schedule_deferred(sb_ws_t *ws)
{
    if (!h2o_linklist_is_linked(&ws->deferred_link))
        h2o_linklist_insert(&ws->ctx->deferred, &ws->deferred_link);
    arm_tick(ws->ctx);
}

/* Records why the connection ended (first cause wins) and schedules on_close. */
static void set_reason(sb_ws_t *ws, const char *reason)
{
    /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): the analyzer loses h2o list invariants after an unlink */
    if (ws->reason == NULL) {
        ws->reason = reason;
        schedule_deferred(ws);
    }
}

static void drop_output(sb_ws_t *ws)
{
    for (size_t i = 0; i < ws->qlen; i++)
        sb_ws_frame_release(ws->q[ws->qhead + i]);
    if (ws->q != ws->qinl)
        free(ws->q);
    ws->q = NULL;
    ws->qhead = ws->qlen = ws->qcap = ws->inflight = ws->sent = 0;
    ws->queued = 0;
    sb_ws_frame_release(ws->pong);
    sb_ws_frame_release(ws->pong_inflight);
    sb_ws_frame_release(ws->closef);
    ws->pong = ws->pong_inflight = ws->closef = NULL;
}

static void drop_message(sb_ws_t *ws)
{
    free(ws->msg);
    ws->msg = NULL;
    ws->msg_len = ws->msg_cap = 0;
    ws->msg_active = 0;
}

/* Closes the socket now; the struct is released later from the tick. */
static void close_socket(sb_ws_t *ws)
{
    if (ws->sock == NULL)
        return;
    set_reason(ws, "peer closed");
    ws->closing = 1;
    h2o_socket_t *sock = ws->sock;
    ws->sock = NULL;
    sock->data = NULL;
    h2o_socket_close(sock);
    ws->writing = 0;
    h2o_timeout_unlink(&ws->linger);
    unschedule_pending(ws);
    drop_output(ws);
    drop_message(ws);
    schedule_deferred(ws);
}

static void destroy(sb_ws_t *ws)
{
    h2o_timeout_unlink(&ws->linger);
    unschedule_pending(ws);
    ws->ctx->nws--;
    if (h2o_linklist_is_linked(&ws->deferred_link))
        h2o_linklist_unlink(&ws->deferred_link);
    if (h2o_linklist_is_linked(&ws->all_link))
        h2o_linklist_unlink(&ws->all_link);
    drop_output(ws);
    drop_message(ws);
    free(ws);
}

/* ---- writing --------------------------------------------------------------------------------------------------- */

/* Releases the frames of the write that just ended (done or failed). */
static void release_written(sb_ws_t *ws)
{
    for (size_t i = 0; i < ws->inflight; i++) {
        sb_ws_frame_t *f = ws->q[ws->qhead + i];
        ws->queued -= f->len;
        sb_ws_frame_release(f);
    }
    ws->qhead += ws->inflight;
    ws->qlen -= ws->inflight;
    ws->inflight = 0;
    if (ws->qlen == 0) {
        ws->qhead = 0;
        /* Give back the array after a burst; idle connections stay small. */
        if (ws->qcap > 64) { /* never the inline pair */
            free(ws->q);
            ws->q = NULL;
            ws->qcap = 0;
        }
    }
    sb_ws_frame_release(ws->pong_inflight);
    ws->pong_inflight = NULL;
}

/* After the whole in-flight set is written: returns nonzero when nothing
 * more may be written (the close frame went out). */
static int after_write(sb_ws_t *ws)
{
    release_written(ws);
    ws->sent = 0;
    if (!ws->close_inflight)
        return 0;
    sb_ws_frame_release(ws->closef);
    ws->closef = NULL;
    ws->close_inflight = 0;
    ws->close_sent = 1;
    if (ws->read_done)
        close_socket(ws);
    return 1;
}

static void write_failed(sb_ws_t *ws)
{
    release_written(ws);
    set_reason(ws, "write error");
    close_socket(ws);
}

/* h2o finished a write (TLS) or the socket became writable again (plain). */
static void on_write_complete(h2o_socket_t *sock, const char *err)
{
    sb_ws_t *ws = sock->data;
    ws->writing = 0;
    if (err != NULL) {
        write_failed(ws);
        return;
    }
    /* A plain socket resumes its in-flight set in flush(); after an h2o
     * write, whatever accumulated meanwhile leaves in the next one. */
    if (ws->fd >= 0 || !after_write(ws))
        flush(ws);
}

/* Starts a new in-flight set from what is due: the latest pong, data frames
 * in order (at most MAX_IOV in all), then the close frame once all data is
 * in. Returns 0 when nothing is due. */
static int collect(sb_ws_t *ws)
{
    size_t room = MAX_IOV - 1; /* one slot kept for the close frame, which must follow all data */
    if (ws->pong != NULL) {
        ws->pong_inflight = ws->pong;
        ws->pong = NULL;
        room--;
    }
    if (ws->qlen <= room) {
        ws->inflight = ws->qlen;
        if (ws->closef != NULL)
            ws->close_inflight = 1;
    } else {
        ws->inflight = room;
    }
    if (ws->pong_inflight == NULL && ws->inflight == 0 && !ws->close_inflight)
        return 0;
    ws->writes++;
    return 1;
}

/* Appends what of frame f is not written yet (the first *skip bytes of the
 * set are) to iov. */
static void add_unwritten(const sb_ws_frame_t *f, h2o_iovec_t *iov, size_t *n, size_t *bytes, size_t *skip)
{
    if (*skip >= f->len) {
        *skip -= f->len;
        return;
    }
    iov[(*n)++] = h2o_iovec_init(f->data + *skip, f->len - *skip);
    *bytes += f->len - *skip;
    *skip = 0;
}

/* The unwritten part of the in-flight set as iovecs; returns their count. */
static size_t inflight_iov(sb_ws_t *ws, h2o_iovec_t *iov, size_t *total)
{
    size_t n = 0, bytes = 0, skip = ws->sent;
    if (ws->pong_inflight != NULL)
        add_unwritten(ws->pong_inflight, iov, &n, &bytes, &skip);
    for (size_t k = 0; k < ws->inflight; k++)
        add_unwritten(ws->q[ws->qhead + k], iov, &n, &bytes, &skip);
    if (ws->close_inflight)
        add_unwritten(ws->closef, iov, &n, &bytes, &skip);
    *total = bytes;
    return n;
}

/* Writes what is due, one in-flight set at a time. A plain TCP socket is
 * written with writev here: when the kernel takes it all, as it nearly
 * always does, the frames are released at once, without h2o's write
 * request, its pending list and its completion callback (about 30 % of the
 * user-space instructions of a delivery). When the kernel takes only part, the offset is
 * kept and h2o_socket_notify_write says when to go on; frames queued
 * meanwhile leave together after the set. TLS sockets write through
 * h2o_socket_write. */
static void flush(sb_ws_t *ws)
{
    while (ws->sock != NULL && !ws->writing && !ws->close_sent) {
        int resume = ws->pong_inflight != NULL || ws->inflight != 0 || ws->close_inflight;
        if (!resume && !collect(ws))
            return;
        h2o_iovec_t iov[MAX_IOV];
        size_t total, n = inflight_iov(ws, iov, &total);
        ws->writing = 1;
        if (ws->fd < 0) {
            h2o_socket_write(ws->sock, iov, n, on_write_complete);
            return;
        }
        ssize_t w;
        do {
            w = writev(ws->fd, (struct iovec *)iov, (int)n);
        } while (w < 0 && errno == EINTR);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            ws->writing = 0;
            write_failed(ws);
            return;
        }
        if (w >= 0 && (size_t)w == total) {
            ws->writing = 0;
            if (after_write(ws))
                return;
            continue;
        }
        if (w > 0)
            ws->sent += (size_t)w;
        h2o_socket_notify_write(ws->sock, on_write_complete);
        return;
    }
}

static int enqueue(sb_ws_t *ws, sb_ws_frame_t *f)
{
    if (ws->q == NULL) {
        ws->q = ws->qinl;
        ws->qcap = 2;
    } else if (ws->qhead + ws->qlen == ws->qcap) {
        if (ws->qhead > 0) {
            /* Only pointers move; in-flight iovecs point at frame data. */
            memmove(ws->q, ws->q + ws->qhead, ws->qlen * sizeof(*ws->q));
            ws->qhead = 0;
        } else {
            if (ws->qcap > UINT32_MAX / 4)
                return SB_ETOOBIG;
            uint32_t ncap = ws->qcap < 8 ? 8 : ws->qcap * 2;
            sb_ws_frame_t **nq = ws->q == ws->qinl ? malloc(ncap * sizeof(*nq)) : realloc(ws->q, ncap * sizeof(*nq));
            if (nq == NULL)
                return SB_ENOMEM;
            if (ws->q == ws->qinl)
                memcpy(nq, ws->qinl, sizeof(ws->qinl));
            ws->q = nq;
            ws->qcap = ncap;
        }
    }
    ws->q[ws->qhead + ws->qlen++] = f;
    ws->queued += f->len;
    schedule_pending(ws);
    return 0;
}

static int check_send(sb_ws_t *ws, size_t flen)
{
    if (ws == NULL || ws->closing || ws->sock == NULL)
        return SB_EIO;
    if (flen > ws->max_queue - ws->queued)
        return SB_ETOOBIG;
    return 0;
}

int sb_ws_send(sb_ws_t *ws, int binary, const void *payload, size_t len)
{
    size_t hl = header_len(len);
    if (len > SIZE_MAX - hl - sizeof(sb_ws_frame_t))
        return SB_ETOOBIG;
    int r = check_send(ws, hl + len);
    if (r != 0)
        return r;
    sb_ws_frame_t *f = sb_ws_frame_new(binary, payload, len);
    if (f == NULL)
        return SB_ENOMEM;
    if ((r = enqueue(ws, f)) != 0)
        sb_ws_frame_release(f);
    return r;
}

int sb_ws_send_frame(sb_ws_t *ws, sb_ws_frame_t *f)
{
    int r = check_send(ws, f->len);
    if (r != 0)
        return r;
    sb_ws_frame_addref(f);
    if ((r = enqueue(ws, f)) != 0)
        sb_ws_frame_release(f);
    return r;
}

void sb_ws_prefetch(const sb_ws_t *ws, int stage)
{
    if (stage == 0) {
        __builtin_prefetch(ws, 1);
        __builtin_prefetch((const char *)ws + 64, 1);
    } else if (ws->q != NULL && ws->qhead + ws->qlen < ws->qcap) {
        __builtin_prefetch(&ws->q[ws->qhead + ws->qlen], 1);
    }
}

size_t sb_ws_queued(const sb_ws_t *ws)
{
    return ws->queued;
}

size_t sb_ws_writes(const sb_ws_t *ws)
{
    return ws->writes;
}

/* ---- closing --------------------------------------------------------------------------------------------------- */

static void stop_reading(sb_ws_t *ws)
{
    ws->read_done = 1;
    if (ws->sock != NULL)
        h2o_socket_read_stop(ws->sock);
}

/* Queues a close frame (code 0: no payload) and enters the closing state.
 * keep_reading: wait for the peer's close frame after ours is written. */
static void start_close(sb_ws_t *ws, uint16_t code, const char *text, const char *reason, int keep_reading)
{
    if (ws->closing)
        return;
    ws->closing = 1;
    set_reason(ws, reason);
    drop_message(ws);
    if (ws->sock == NULL)
        return;
    uint8_t payload[125];
    size_t n = 0;
    if (code != 0) {
        payload[0] = (uint8_t)(code >> 8);
        payload[1] = (uint8_t)code;
        n = 2;
        if (text != NULL) {
            size_t tl = strlen(text);
            if (tl > sizeof(payload) - 2)
                tl = sizeof(payload) - 2;
            memcpy(payload + 2, text, tl);
            n += tl;
        }
    }
    ws->closef = frame_build(OP_CLOSE, payload, n);
    if (ws->closef == NULL) {
        close_socket(ws);
        return;
    }
    if (keep_reading)
        ws->discard = 1;
    else
        stop_reading(ws);
    h2o_timeout_link(ws->ctx->loop, &ws->ctx->linger, &ws->linger);
    schedule_pending(ws);
}

/* A fatal error on input: close with code, or finish an ongoing close. */
static void fail(sb_ws_t *ws, uint16_t code, const char *reason)
{
    if (ws->closing) {
        stop_reading(ws);
        if (ws->close_sent)
            close_socket(ws);
        return;
    }
    start_close(ws, code, reason, reason, 0);
}

void sb_ws_close(sb_ws_t *ws, uint16_t code)
{
    if (ws == NULL || ws->closing)
        return;
    /* 1005/1006/1015 are reserved for reporting and must not be sent. */
    if (code == 1005 || code == 1006 || code == 1015 || code < 1000)
        code = 0;
    start_close(ws, code, NULL, "closed by server", 1);
}

static void on_linger_timeout(h2o_timeout_entry_t *entry)
{
    sb_ws_t *ws = H2O_STRUCT_FROM_MEMBER(sb_ws_t, linger, entry);
    close_socket(ws);
}

/* ---- reading --------------------------------------------------------------------------------------------------- */

static int valid_close_code(unsigned code)
{
    if (code >= 3000 && code <= 4999)
        return 1;
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014);
}

static void unmask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4], uint64_t offset)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i] ^ mask[(offset + i) & 3];
}

static void handle_control(sb_ws_t *ws, int opcode, const uint8_t *p, size_t n)
{
    if (opcode == OP_PING) {
        if (ws->closing)
            return;
        /* RFC 6455 5.5.3 allows answering only the latest ping: a peer that
         * floods pings without reading costs one pending pong at most. */
        sb_ws_frame_t *pong = frame_build(OP_PONG, p, n);
        if (pong == NULL) {
            fail(ws, 1011, "protocol error");
            return;
        }
        sb_ws_frame_release(ws->pong);
        ws->pong = pong;
        schedule_pending(ws);
        return;
    }
    if (opcode == OP_PONG)
        return;
    /* close */
    uint16_t code = 0;
    if (n == 1) {
        fail(ws, 1002, "protocol error");
        return;
    }
    if (n >= 2) {
        code = (uint16_t)((p[0] << 8) | p[1]);
        if (!valid_close_code(code)) {
            fail(ws, 1002, "protocol error");
            return;
        }
        if (!sb_ws_utf8_valid((const char *)p + 2, n - 2)) {
            fail(ws, 1007, "invalid utf-8");
            return;
        }
    }
    if (ws->closing) {
        /* The answer to our close: done once ours is out. */
        stop_reading(ws);
        if (ws->close_sent)
            close_socket(ws);
        return;
    }
    start_close(ws, code, NULL, "peer closed", 0);
}

static void deliver(sb_ws_t *ws, const char *data, size_t len)
{
    ws->msg_active = 0;
    if (!ws->msg_binary && !sb_ws_utf8_valid(data, len)) {
        fail(ws, 1007, "invalid utf-8");
        return;
    }
    if (ws->cb.on_message != NULL)
        ws->cb.on_message(ws, ws->ud, ws->msg_binary, data, len);
}

/* Appends n unmasked payload bytes to the message being reassembled; its
 * final size was checked against max_message when the header arrived. */
static int append_payload(sb_ws_t *ws, const uint8_t *src, size_t n)
{
    if (ws->msg_len + n > ws->msg_cap) {
        size_t ncap = ws->msg_cap ? ws->msg_cap : 256;
        while (ncap < ws->msg_len + n)
            ncap *= 2;
        /* Grow as bytes arrive, not as declared: a peer announcing a huge
         * frame and sending it slowly does not get max_message at once. */
        if (ncap > ws->max_message)
            ncap = ws->max_message;
        char *nm = realloc(ws->msg, ncap);
        if (nm == NULL)
            return SB_ENOMEM;
        ws->msg = nm;
        ws->msg_cap = ncap;
    }
    unmask((uint8_t *)ws->msg + ws->msg_len, src, n, ws->hdr.mask, ws->hdr.payload_len - ws->remaining);
    ws->msg_len += n;
    return 0;
}

static void process_input(sb_ws_t *ws)
{
    while (ws->sock != NULL && !ws->read_done) {
        h2o_buffer_t *in = ws->sock->input;
        if (!ws->in_frame) {
            if (in->size == 0)
                break;
            sb_ws_header_t h;
            int r = sb_ws_parse_header((const uint8_t *)in->bytes, in->size, &h);
            if (r == 0)
                break;
            if (r < 0) {
                fail(ws, 1002, "protocol error");
                break;
            }
            if (!(h.opcode & 0x8) && !ws->discard) {
                /* Data frames: a continuation needs an open message and a
                 * new message needs none (control frames may interleave). */
                if ((h.opcode == OP_CONT) != (ws->msg_active != 0)) {
                    fail(ws, 1002, "protocol error");
                    break;
                }
                if (h.payload_len > ws->max_message - ws->msg_len) {
                    fail(ws, 1009, "message too big");
                    break;
                }
                if (h.opcode != OP_CONT) {
                    ws->msg_active = 1;
                    ws->msg_binary = h.opcode == OP_BINARY;
                }
            }
            h2o_buffer_consume(&ws->sock->input, (size_t)r);
            in = ws->sock->input;
            ws->hdr = h;
            ws->in_frame = 1;
            ws->remaining = h.payload_len;
        }
        if (ws->hdr.opcode & 0x8) {
            /* Control payloads are <= 125 bytes: wait until all are here. */
            if (in->size < ws->remaining)
                break;
            uint8_t payload[125];
            size_t n = (size_t)ws->remaining;
            unmask(payload, (const uint8_t *)in->bytes, n, ws->hdr.mask, 0);
            h2o_buffer_consume(&ws->sock->input, n);
            ws->in_frame = 0;
            ws->remaining = 0;
            handle_control(ws, ws->hdr.opcode, payload, n);
            continue;
        }
        if (ws->discard) {
            size_t n = in->size < ws->remaining ? in->size : (size_t)ws->remaining;
            h2o_buffer_consume(&ws->sock->input, n);
            ws->remaining -= n;
            if (ws->remaining != 0)
                break;
            ws->in_frame = 0;
            continue;
        }
        if (ws->hdr.fin && ws->msg_len == 0 && ws->remaining == ws->hdr.payload_len && in->size >= ws->remaining) {
            /* The whole message is one frame already in the input buffer:
             * unmask in place and deliver without a copy. */
            size_t n = (size_t)ws->remaining;
            unmask((uint8_t *)in->bytes, (const uint8_t *)in->bytes, n, ws->hdr.mask, 0);
            ws->in_frame = 0;
            ws->remaining = 0;
            /* An empty payload may leave h2o's buffer unallocated (bytes NULL). */
            deliver(ws, n != 0 ? in->bytes : "", n);
            if (ws->sock != NULL)
                h2o_buffer_consume(&ws->sock->input, n);
            continue;
        }
        size_t n = in->size < ws->remaining ? in->size : (size_t)ws->remaining;
        if (n != 0) {
            if (append_payload(ws, (const uint8_t *)in->bytes, n) != 0) {
                fail(ws, 1011, "message too big");
                break;
            }
            h2o_buffer_consume(&ws->sock->input, n);
            ws->remaining -= n;
        }
        if (ws->remaining != 0)
            break;
        ws->in_frame = 0;
        if (ws->hdr.fin) {
            /* Take the buffer first: on_message may close the connection. */
            char *msg = ws->msg;
            size_t len = ws->msg_len;
            ws->msg = NULL;
            ws->msg_len = ws->msg_cap = 0;
            deliver(ws, msg != NULL ? msg : "", len);
            free(msg);
        }
    }
    /* h2o may leave an allocated, empty input buffer after a read that got
     * nothing; hand it back so an idle connection holds no input memory. */
    if (ws->sock != NULL && ws->sock->input->size == 0 && ws->sock->input->bytes != NULL) {
        h2o_buffer_prototype_t *proto = ws->sock->input->_prototype;
        h2o_buffer_dispose(&ws->sock->input);
        h2o_buffer_init(&ws->sock->input, proto);
    }
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    sb_ws_t *ws = sock->data;
    if (err != NULL) {
        /* EOF or read error: nothing more can be said to this peer. */
        close_socket(ws);
        return;
    }
    process_input(ws);
}

/* ---- context and tick ------------------------------------------------------------------------------------------ */

static void on_tick(h2o_timeout_entry_t *entry)
{
    sb_ws_ctx_t *ctx = H2O_STRUCT_FROM_MEMBER(sb_ws_ctx_t, tick, entry);
    /* Input left over from the upgrade, then one write per connection with
     * everything it queued during this iteration. Both may schedule more connections: they are appended, and
     * taken in this same pass. */
    for (size_t i = 0; i < ctx->npend; i++) {
        /* One write per connection touches two or three cache lines of it and its queue's head; with thousands
         * pending, each is a miss. Asked for a few connections ahead, the misses overlap. (In the loop itself: GCC
         * drops a call to a static function made only of prefetches as a pure function without a result.) */
        const sb_ws_t *ahead;
        if (i + 8 < ctx->npend && (ahead = ctx->pend[i + 8]) != NULL) {
            __builtin_prefetch(ahead);
            __builtin_prefetch((const char *)ahead + 64);
        }
        if (i + 4 < ctx->npend && (ahead = ctx->pend[i + 4]) != NULL && ahead->q != NULL)
            __builtin_prefetch(&ahead->q[ahead->qhead]);
        sb_ws_t *ws = ctx->pend[i];
        if (ws == NULL)
            continue;
        ctx->pend[i] = NULL;
        ws->pending = 0;
        if (ws->need_read) {
            ws->need_read = 0;
            process_input(ws);
        }
        flush(ws);
    }
    ctx->npend = 0;
    while (!h2o_linklist_is_empty(&ctx->deferred)) {
        sb_ws_t *ws = H2O_STRUCT_FROM_MEMBER(sb_ws_t, deferred_link, ctx->deferred.next);
        h2o_linklist_unlink(&ws->deferred_link);
        if (ws->reason != NULL && !ws->notified) {
            ws->notified = 1;
            if (ws->cb.on_close != NULL)
                ws->cb.on_close(ws, ws->ud, ws->reason);
        }
        /* A closing connection still flushing or lingering stays alive
         * (invisible to the user) until its socket is closed. */
        if (ws->sock == NULL && ws->notified)
            destroy(ws);
    }
}

sb_ws_ctx_t *sb_ws_ctx_create(h2o_loop_t *loop)
{
    sb_ws_ctx_t *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return NULL;
    ctx->loop = loop;
    h2o_timeout_init(loop, &ctx->zero, 0);
    h2o_timeout_init(loop, &ctx->linger, LINGER_MS);
    ctx->tick.cb = on_tick;
    h2o_linklist_init_anchor(&ctx->deferred);
    h2o_linklist_init_anchor(&ctx->all);
    return ctx;
}

void sb_ws_ctx_destroy(sb_ws_ctx_t *ctx)
{
    if (ctx == NULL)
        return;
    /* Connections still alive are closed now; each gets its on_close. */
    while (!h2o_linklist_is_empty(&ctx->all)) {
        sb_ws_t *ws = H2O_STRUCT_FROM_MEMBER(sb_ws_t, all_link, ctx->all.next);
        set_reason(ws, "closed by server");
        close_socket(ws);
        if (!ws->notified) {
            ws->notified = 1;
            if (ws->cb.on_close != NULL)
                ws->cb.on_close(ws, ws->ud, ws->reason);
        }
        destroy(ws);
    }
    h2o_timeout_unlink(&ctx->tick);
    h2o_timeout_dispose(ctx->loop, &ctx->zero);
    h2o_timeout_dispose(ctx->loop, &ctx->linger);
    free(ctx->pend);
    free(ctx);
}

sb_ws_t *sb_ws_create(sb_ws_ctx_t *ctx, h2o_socket_t *sock, const sb_ws_callbacks_t *cb, void *ud, size_t max_message,
                      size_t max_queue)
{
    sb_ws_t *ws = calloc(1, sizeof(*ws));
    size_t need = (ctx->nws + 1) * 2 + 64;
    if (ws == NULL || (ctx->pcap < need && grow_pend(ctx, need > ctx->pcap * 2 ? need : ctx->pcap * 2) != 0)) {
        free(ws);
        h2o_socket_close(sock);
        return NULL;
    }
    ctx->nws++;
    ws->ctx = ctx;
    ws->sock = sock;
    ws->cb = *cb;
    ws->ud = ud;
    ws->max_message = max_message ? max_message : DEFAULT_MAX_MESSAGE;
    ws->max_queue = max_queue ? max_queue : DEFAULT_MAX_QUEUE;
    /* TLS sockets are written through h2o only. */
    ws->fd = sock->ssl == NULL ? h2o_socket_get_fd(sock) : -1;
    ws->linger.cb = on_linger_timeout;
    h2o_linklist_insert(&ctx->all, &ws->all_link);
    sock->data = ws;
    h2o_socket_read_start(sock, on_read);
    if (sock->input->size != 0) {
        /* Bytes that arrived with the upgrade request: parse them from the
         * loop, once the caller holds the returned pointer. */
        ws->need_read = 1;
        schedule_pending(ws);
    }
    return ws;
}
