/*
 * engine.c — the Engine.IO 4 server (see include/switchboard/engine.h).
 *
 * Threads and long-polling: a session lives on the worker that accepted its
 * handshake (the first character of its sid names that worker). Later polling
 * requests may arrive on any worker (SO_REUSEPORT hashes each TCP connection),
 * so every request that names a sid becomes a poll_op that is carried to the
 * owner with sb_worker_post; the owner answers by posting the op back to the
 * request's home thread, which writes the HTTP response. A WebSocket upgrade
 * arriving on another worker is checked the same way, then its raw socket is
 * exported from the home loop and imported into the owner's loop.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "switchboard/engine.h"
#include "switchboard/engineio.h"
#include "switchboard/log.h"
#include "switchboard/session.h"

struct sb_eio_conn {
    /* sb_eio_send_msg's fields first: a broadcast reads them for every recipient. */
    sb_ws_t *ws; /* websocket transport */
    sb_worker_t *w;
    sb_eio_transport_t transport;
    int closing;
    char sid[SB_SID_LEN + 1];
    int notified; /* session told about the close */
    int awaiting_pong;
    int upgrading; /* probe answered "3probe", waiting for "5" */
    const char *close_reason;
    char addr[INET6_ADDRSTRLEN]; /* in full, for per-address rate limits; "" when unknown (masked only when logged) */
    char *token;                 /* Authorization: Bearer of the handshake (never logged) */
    void *data;

    sb_buf_t out;        /* polling: queued payload (0x1e-joined packets) */
    struct poll_op *get; /* polling: the parked GET */
    sb_ws_t *probe;      /* websocket being upgraded to */
    int ws_pending;      /* a 101 is being written for this conn */
    int linger;          /* closed by the client with no GET parked: the racing GET still gets its noop */

    h2o_timeout_entry_t hb;
    h2o_timeout_entry_t upgrade_timer;
    h2o_timeout_entry_t flush_entry;
    h2o_timeout_entry_t fin_entry;
    h2o_timeout_entry_t linger_entry;
};

typedef enum { OP_GET, OP_POST, OP_WSCHECK } op_kind_t;

typedef struct poll_op {
    op_kind_t kind;
    sb_worker_t *home;
    sb_worker_t *owner;
    h2o_req_t *req; /* home thread only; NULL once the request is gone */
    int disposed;
    int responded;
    char sid[SB_SID_LEN + 1];
    char *body;
    size_t body_len;
    /* the answer, filled by the owner */
    int status;
    sb_buf_t resp;
    const char *ctype;
} poll_op_t;

typedef struct ws_attach {
    char sid[SB_SID_LEN + 1];
    sb_worker_t *owner;
    h2o_socket_export_t info;
} ws_attach_t;

static sb_worker_t *worker_of_req(h2o_req_t *req)
{
    return (sb_worker_t *)((char *)req->conn->ctx - offsetof(sb_worker_t, ctx));
}

#define CONN_OF(entry, field) ((sb_eio_conn_t *)((char *)(entry)-offsetof(sb_eio_conn_t, field)))

/* ---- HTTP helpers ---------------------------------------------------------------------------------------------- */

/* Adds the CORS headers for an allowed Origin. Returns 0 when the request may go on: no --cors-origin, no
 * Origin header (not a browser), or an allowed one; -1 for a browser page of another origin, which is refused
 * (a WebSocket is not subject to CORS, so the browser would otherwise let any site's page connect). */
static int add_cors(h2o_req_t *req, const sb_config_t *cfg)
{
    if (cfg->cors_origins.count == 0)
        return 0;
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);
    if (i < 0)
        return 0;
    h2o_iovec_t origin = req->headers.entries[i].value;
    int allowed = 0;
    for (size_t k = 0; k < cfg->cors_origins.count && !allowed; k++) {
        const char *o = cfg->cors_origins.items[k];
        if (strcmp(o, "*") == 0 || (strlen(o) == origin.len && memcmp(o, origin.base, origin.len) == 0))
            allowed = 1;
    }
    if (!allowed) {
        /* Same origin (the dashboard served by this node): the Origin's host is the request's Host. */
        const char *sep = memchr(origin.base, ':', origin.len);
        if (sep != NULL && (size_t)(origin.base + origin.len - sep) > 3 && memcmp(sep, "://", 3) == 0) {
            const char *host = sep + 3;
            size_t hl = (size_t)(origin.base + origin.len - host);
            allowed = req->authority.len == hl && memcmp(req->authority.base, host, hl) == 0;
        }
    }
    if (!allowed)
        return -1;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL, origin.base, origin.len);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-credentials"), 0, NULL,
                          H2O_STRLIT("true"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Origin"));
    return 0;
}

static void send_body(h2o_req_t *req, int status, const char *ctype, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = status == 200   ? "OK"
                      : status == 204 ? "No Content"
                      : status == 403 ? "Forbidden"
                      : status == 503 ? "Service Unavailable"
                      : status == 413 ? "Payload Too Large"
                                      : "Bad Request";
    if (ctype != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    h2o_send_inline(req, body, len);
}

static void eio_error_body(sb_buf_t *b, sb_eio_error_t code)
{
    sb_buf_append_str(b, "{\"code\":");
    sb_buf_append_u64(b, (uint64_t)code);
    sb_buf_append_str(b, ",\"message\":");
    const char *m = sb_eio_error_message(code);
    sb_buf_append_json_str(b, m, strlen(m));
    sb_buf_append_char(b, '}');
}

static void send_eio_error(h2o_req_t *req, sb_eio_error_t code)
{
    sb_buf_t b;
    sb_buf_init(&b, 256);
    eio_error_body(&b, code);
    send_body(req, code == SB_EIO_ERR_FORBIDDEN ? 403 : 400, "application/json", b.base, b.len);
    sb_buf_free(&b);
}

/* ---- poll ops: carried between the request's thread and the session's -------------------------------------------- */

static void op_free(poll_op_t *op)
{
    free(op->body);
    sb_buf_free(&op->resp);
    free(op);
}

static void owner_get_aborted(sb_worker_t *w, void *arg);

static void on_req_dispose(void *p)
{
    poll_op_t *op = *(poll_op_t **)p;
    op->req = NULL;
    op->disposed = 1;
    if (op->responded) {
        op_free(op);
    } else if (op->kind == OP_GET) {
        /* The client went away while its GET was parked. The op stays alive until the owner answers it (it always
         * does, exactly once), so the pointer the owner compares against cannot have been reused. */
        sb_worker_post(op->owner, owner_get_aborted, op);
    }
}

static void ws_upgraded_remote(void *data, h2o_socket_t *sock);

/* Runs on the home thread. */
static void op_respond_home(sb_worker_t *w, void *arg)
{
    (void)w;
    poll_op_t *op = arg;
    h2o_req_t *req = op->req;
    if (req != NULL) {
        if (op->kind == OP_WSCHECK && op->status == 101) {
            /* The owner accepts the probe: upgrade here, then hand the socket over. */
            ws_attach_t *a = calloc(1, sizeof(*a));
            if (a == NULL)
                abort();
            memcpy(a->sid, op->sid, sizeof(a->sid));
            a->owner = op->owner;
            op->responded = 1;
            if (sb_ws_upgrade(req, NULL, 0, ws_upgraded_remote, a) != 0) {
                free(a);
                send_eio_error(req, SB_EIO_ERR_BAD_REQUEST);
            }
            if (op->disposed)
                op_free(op);
            return;
        }
        send_body(req, op->status, op->ctype, op->resp.base != NULL ? op->resp.base : "", op->resp.len);
    }
    op->responded = 1;
    if (op->disposed)
        op_free(op);
}

/* Runs on the owner: fill in the answer and send the op home. */
static void op_answer(poll_op_t *op, int status, const char *ctype, const char *body, size_t len)
{
    op->status = status;
    op->ctype = ctype;
    sb_buf_free(&op->resp);
    if (len > 0 && sb_buf_append(&op->resp, body, len) != 0) {
        op->status = 503;
        sb_buf_free(&op->resp);
    }
    sb_worker_post(op->home, op_respond_home, op);
}

static void op_answer_error(poll_op_t *op, sb_eio_error_t code)
{
    sb_buf_t b;
    sb_buf_init(&b, 256);
    eio_error_body(&b, code);
    op_answer(op, code == SB_EIO_ERR_FORBIDDEN ? 403 : 400, "application/json", b.base, b.len);
    sb_buf_free(&b);
}

/* ---- connections ------------------------------------------------------------------------------------------------- */

static void conn_finalize_cb(h2o_timeout_entry_t *e);
static void hb_cb(h2o_timeout_entry_t *e);
static void flush_cb(h2o_timeout_entry_t *e);
static void upgrade_timeout_cb(h2o_timeout_entry_t *e);
static void linger_cb(h2o_timeout_entry_t *e);

/* Open connections by transport (the switchboard_connections gauge of this worker). */
static void transport_count(sb_worker_t *w, sb_eio_transport_t t, int delta)
{
    w->conns_by_transport[t] += delta;
    sb_metric_set(SB_M(w)->connections[t], w->idx, (double)w->conns_by_transport[t]);
}

static sb_eio_conn_t *conn_new(sb_worker_t *w, sb_eio_transport_t transport, h2o_req_t *req)
{
    sb_eio_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->w = w;
    c->transport = transport;
    sb_buf_init(&c->out, w->cfg->max_send_queue);
    c->hb.cb = hb_cb;
    c->upgrade_timer.cb = upgrade_timeout_cb;
    c->flush_entry.cb = flush_cb;
    c->fin_entry.cb = conn_finalize_cb;
    c->linger_entry.cb = linger_cb;
    sb_worker_new_sid(w, c->sid);

    struct sockaddr_storage ss;
    socklen_t sl = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    char host[INET6_ADDRSTRLEN > 64 ? INET6_ADDRSTRLEN : 64];
    /* Our own formatting, not getnameinfo (h2o_socket_getnumerichost): the same numeric text at a fraction of the
     * cost */
    const char *ok = NULL;
    if (sl > 0 && ss.ss_family == AF_INET) {
        sb_ipv4_text((const unsigned char *)&((struct sockaddr_in *)&ss)->sin_addr, host);
        ok = host;
    } else if (sl > 0 && ss.ss_family == AF_INET6)
        ok = inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
    if (ok != NULL)
        sb_strcopy(c->addr, sizeof(c->addr), host);
    ssize_t ai = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (ai >= 0) {
        h2o_iovec_t v = req->headers.entries[ai].value;
        if (v.len > 7 && v.len <= 7 + 8192 && strncasecmp(v.base, "Bearer ", 7) == 0)
            c->token = strndup(v.base + 7, v.len - 7);
    }
    if (sb_map_set(&w->conns, c->sid, SB_SID_LEN, c) != 0) {
        sb_buf_free(&c->out);
        free(c->token);
        free(c);
        return NULL;
    }
    atomic_fetch_add(&w->stats.connections, 1);
    transport_count(w, transport, 1);
    return c;
}

static void hb_start(sb_eio_conn_t *c)
{
    if (h2o_timeout_is_linked(&c->hb))
        h2o_timeout_unlink(&c->hb);
    c->awaiting_pong = 0;
    h2o_timeout_link(c->w->ctx.loop, &c->w->ping_interval_to, &c->hb);
}

static int queue_raw_text(sb_eio_conn_t *c, const char *text, size_t len);

static void hb_cb(h2o_timeout_entry_t *e)
{
    sb_eio_conn_t *c = CONN_OF(e, hb);
    if (c->awaiting_pong) {
        sb_eio_close(c, "ping timeout");
        return;
    }
    if (queue_raw_text(c, "2", 1) != 0)
        return;
    c->awaiting_pong = 1;
    h2o_timeout_link(c->w->ctx.loop, &c->w->ping_timeout_to, &c->hb);
}

static void schedule_flush(sb_eio_conn_t *c)
{
    if (!h2o_timeout_is_linked(&c->flush_entry))
        h2o_timeout_link(c->w->ctx.loop, &c->w->ctx.zero_timeout, &c->flush_entry);
}

/* Answers the parked GET with what is queued (polling). */
static void flush_poll(sb_eio_conn_t *c)
{
    if (c->get == NULL || c->upgrading || c->out.len == 0)
        return;
    poll_op_t *op = c->get;
    c->get = NULL;
    op->status = 200;
    op->ctype = "text/plain; charset=UTF-8";
    sb_buf_free(&op->resp);
    op->resp = c->out; /* hand the storage over, no copy */
    sb_buf_init(&c->out, c->w->cfg->max_send_queue);
    sb_worker_post(op->home, op_respond_home, op);
}

static void flush_cb(h2o_timeout_entry_t *e)
{
    flush_poll(CONN_OF(e, flush_entry));
}

static void answer_get_with(sb_eio_conn_t *c, const char *payload)
{
    if (c->get == NULL)
        return;
    poll_op_t *op = c->get;
    c->get = NULL;
    op_answer(op, 200, "text/plain; charset=UTF-8", payload, strlen(payload));
}

/* Queues an Engine.IO text packet (type digit included). */
static int queue_raw_text(sb_eio_conn_t *c, const char *text, size_t len)
{
    if (c->closing)
        return SB_EIO;
    int rv;
    if (c->transport == SB_EIO_WEBSOCKET && c->ws != NULL) {
        rv = sb_ws_send(c->ws, 0, text, len);
    } else {
        sb_eio_packet_t p;
        if ((rv = sb_eio_parse_text(text, len, &p)) == 0)
            rv = sb_eio_payload_append_text(&c->out, p.type, p.data, p.len);
        if (rv == 0)
            schedule_flush(c);
    }
    if (rv == SB_ETOOBIG) {
        sb_count_drop(c->w, SB_DROP_QUEUE_FULL);
        sb_log(SB_LOG_WARN, "send queue full, closing connection", "sid", c->sid, NULL);
        sb_eio_close(c, "transport error");
    }
    return rv;
}

static int queue_binary(sb_eio_conn_t *c, const void *data, size_t len)
{
    int rv;
    if (c->transport == SB_EIO_WEBSOCKET && c->ws != NULL) {
        rv = sb_ws_send(c->ws, 1, data, len);
    } else {
        rv = sb_eio_payload_append_binary(&c->out, data, len);
        if (rv == 0)
            schedule_flush(c);
    }
    if (rv == SB_ETOOBIG) {
        sb_count_drop(c->w, SB_DROP_QUEUE_FULL);
        sb_eio_close(c, "transport error");
    }
    return rv;
}

int sb_eio_send_text(sb_eio_conn_t *c, const char *text, size_t len, size_t nbins, const sb_buf_t *bins)
{
    if (c->closing)
        return SB_EIO;
    int rv = queue_raw_text(c, text, len);
    for (size_t i = 0; rv == 0 && i < nbins; i++)
        rv = queue_binary(c, bins[i].base, bins[i].len);
    return rv;
}

void sb_eio_msg_release(sb_eio_msg_t *m)
{
    if (m->frames != NULL) {
        for (size_t i = 0; i < 1 + m->nbins; i++)
            if (m->frames[i] != NULL)
                sb_ws_frame_release(m->frames[i]);
        free(m->frames);
        m->frames = NULL;
    }
}

void sb_eio_prefetch(const sb_eio_conn_t *c, int stage)
{
    if (c->ws != NULL)
        sb_ws_prefetch(c->ws, stage);
}

int sb_eio_send_msg(sb_eio_conn_t *c, sb_eio_msg_t *m)
{
    if (c->closing)
        return SB_EIO;
    if (c->transport != SB_EIO_WEBSOCKET || c->ws == NULL)
        return sb_eio_send_text(c, m->text, m->len, m->nbins, m->bins);
    if (m->volatile_ && sb_ws_queued(c->ws) > c->w->cfg->max_send_queue / 2) {
        sb_count_drop(c->w, SB_DROP_VOLATILE);
        return 0; /* volatile: dropped under backpressure, counted */
    }
    if (m->frames == NULL) {
        /* Encode once; every later WebSocket recipient shares these bytes. */
        if ((m->frames = calloc(1 + m->nbins, sizeof(*m->frames))) == NULL)
            return SB_ENOMEM;
        m->frames[0] = sb_ws_frame_new(0, m->text, m->len);
        for (size_t i = 0; i < m->nbins; i++)
            m->frames[1 + i] = sb_ws_frame_new(1, m->bins[i].base, m->bins[i].len);
        for (size_t i = 0; i < 1 + m->nbins; i++)
            if (m->frames[i] == NULL) {
                sb_eio_msg_release(m);
                return SB_ENOMEM;
            }
    }
    int rv = 0;
    for (size_t i = 0; rv == 0 && i < 1 + m->nbins; i++)
        rv = sb_ws_send_frame(c->ws, m->frames[i]);
    if (rv == SB_ETOOBIG) {
        sb_count_drop(c->w, SB_DROP_QUEUE_FULL);
        sb_log(SB_LOG_WARN, "send queue full, closing connection", "sid", c->sid, NULL);
        sb_eio_close(c, "transport error");
    }
    return rv;
}

void sb_eio_close(sb_eio_conn_t *c, const char *reason)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->close_reason = reason;
    if (h2o_timeout_is_linked(&c->hb))
        h2o_timeout_unlink(&c->hb);
    if (h2o_timeout_is_linked(&c->upgrade_timer))
        h2o_timeout_unlink(&c->upgrade_timer);
    if (h2o_timeout_is_linked(&c->flush_entry))
        h2o_timeout_unlink(&c->flush_entry);
    answer_get_with(c, "1");
    if (c->ws != NULL)
        sb_ws_close(c->ws, 1000);
    if (c->probe != NULL)
        sb_ws_close(c->probe, 1000);
    if (c->linger)
        h2o_timeout_link(c->w->ctx.loop, &c->w->linger_to, &c->linger_entry);
    else
        sb_map_del(&c->w->conns, c->sid, SB_SID_LEN);
    h2o_timeout_link(c->w->ctx.loop, &c->w->ctx.zero_timeout, &c->fin_entry);
}

static void conn_try_free(sb_eio_conn_t *c);

static void linger_end(sb_eio_conn_t *c)
{
    if (!c->linger)
        return;
    c->linger = 0;
    if (h2o_timeout_is_linked(&c->linger_entry))
        h2o_timeout_unlink(&c->linger_entry);
    sb_map_del(&c->w->conns, c->sid, SB_SID_LEN);
    conn_try_free(c);
}

static void linger_cb(h2o_timeout_entry_t *e)
{
    linger_end(CONN_OF(e, linger_entry));
}

static void conn_try_free(sb_eio_conn_t *c)
{
    if (!c->notified || c->ws != NULL || c->probe != NULL || c->ws_pending || c->linger ||
        h2o_timeout_is_linked(&c->fin_entry))
        return;
    sb_buf_free(&c->out);
    free(c->token);
    atomic_fetch_sub(&c->w->stats.connections, 1);
    transport_count(c->w, c->transport, -1);
    free(c);
}

static void conn_finalize_cb(h2o_timeout_entry_t *e)
{
    sb_eio_conn_t *c = CONN_OF(e, fin_entry);
    if (!c->notified) {
        c->notified = 1;
        sb_log(SB_LOG_DEBUG, "engine.io connection closed", "sid", c->sid, "reason", c->close_reason, NULL);
        sb_session_on_close(c, c->close_reason);
    }
    conn_try_free(c);
}

const char *sb_eio_sid(const sb_eio_conn_t *c)
{
    return c->sid;
}
sb_eio_transport_t sb_eio_transport(const sb_eio_conn_t *c)
{
    return c->transport;
}
sb_worker_t *sb_eio_worker(const sb_eio_conn_t *c)
{
    return c->w;
}
const char *sb_eio_remote(const sb_eio_conn_t *c)
{
    /* Masked when a log line asks for it, not for every connection: the text lives until the next call on this
     * thread, long enough for the sb_log call it is an argument of. */
    static _Thread_local char masked[64];
    sb_log_mask_addr(c->addr[0] != '\0' ? c->addr : NULL, masked, sizeof(masked));
    return masked;
}
const char *sb_eio_token(const sb_eio_conn_t *c)
{
    return c->token;
}
const char *sb_eio_addr(const sb_eio_conn_t *c)
{
    return c->addr[0] != '\0' ? c->addr : NULL;
}
void *sb_eio_data(const sb_eio_conn_t *c)
{
    return c->data;
}
void sb_eio_set_data(sb_eio_conn_t *c, void *data)
{
    c->data = data;
}

/* ---- packets (both transports) ---------------------------------------------------------------------------------- */

static int on_packet(sb_eio_conn_t *c, const sb_eio_packet_t *p)
{
    if (c->closing)
        return 0;
    if (p->binary) {
        sb_session_on_message(c, 1, p->data, p->len);
        return 0;
    }
    switch (p->type) {
    case SB_EIO_PONG:
        if (c->awaiting_pong)
            hb_start(c);
        break;
    case SB_EIO_MESSAGE:
        sb_session_on_message(c, 0, p->data, p->len);
        break;
    case SB_EIO_CLOSE:
        /* Client-initiated close: a parked GET ends with a noop (Engine.IO answers "1" only when the server closes).
         * A GET sent together with the close may still be on its way from another worker: it gets the noop too. */
        if (c->transport == SB_EIO_POLLING && c->get == NULL)
            c->linger = 1;
        answer_get_with(c, "6");
        sb_eio_close(c, "transport close");
        break;
    case SB_EIO_NOOP:
        break;
    default:
        /* OPEN, PING and UPGRADE are never sent by a v4 client on an established transport. */
        sb_log(SB_LOG_WARN, "unexpected engine.io packet, closing", "sid", c->sid, "remote", sb_eio_remote(c), NULL);
        sb_eio_close(c, "parse error");
        return SB_EPROTO;
    }
    return 0;
}

static int payload_cb(void *ctx, const sb_eio_packet_t *p)
{
    return on_packet(ctx, p);
}

/* ---- WebSocket transport -------------------------------------------------------------------------------------- */

static void ws_on_message(sb_ws_t *ws, void *ud, int binary, const char *data, size_t len)
{
    sb_eio_conn_t *c = ud;
    (void)ws;
    sb_eio_packet_t p;
    if (binary) {
        p.type = SB_EIO_MESSAGE;
        p.binary = 1;
        p.data = data;
        p.len = len;
    } else if (sb_eio_parse_text(data, len, &p) != 0) {
        sb_log(SB_LOG_WARN, "malformed engine.io packet, closing", "sid", c->sid, "remote", sb_eio_remote(c), NULL);
        sb_eio_close(c, "parse error");
        return;
    }
    on_packet(c, &p);
}

/* cppcheck-suppress constParameter ; the signature is sb_ws_t's close callback type */
static void ws_on_close(sb_ws_t *ws, void *ud, const char *reason)
{
    sb_eio_conn_t *c = ud;
    if (ws == c->ws) {
        c->ws = NULL;
        if (!c->closing) {
            sb_log(SB_LOG_DEBUG, "websocket closed", "sid", c->sid, "why", reason, NULL);
            sb_eio_close(c, strcmp(reason, "message too big") == 0 || strcmp(reason, "protocol error") == 0 ||
                                    strcmp(reason, "invalid utf-8") == 0
                                ? "parse error"
                            : strcmp(reason, "peer closed") == 0 ? "transport close"
                                                                 : "transport error");
        }
    } else if (ws == c->probe) {
        c->probe = NULL;
        c->upgrading = 0;
        if (h2o_timeout_is_linked(&c->upgrade_timer))
            h2o_timeout_unlink(&c->upgrade_timer);
        flush_poll(c);
    }
    if (c->closing)
        conn_try_free(c);
}

static const sb_ws_callbacks_t ws_cbs = {ws_on_message, ws_on_close};

/* Moves what was queued for polling onto the WebSocket, packet by packet. */
static void transfer_to_ws(sb_eio_conn_t *c)
{
    const char *s = c->out.base, *end = s + c->out.len;
    while (s != NULL && s < end) {
        const char *sep = memchr(s, SB_EIO_SEPARATOR, (size_t)(end - s));
        const char *stop = sep != NULL ? sep : end;
        size_t n = (size_t)(stop - s);
        if (n > 0 && s[0] == 'b') {
            char *bin = malloc(n);
            size_t bl = 0;
            if (bin != NULL && sb_base64_decode(s + 1, n - 1, bin, &bl) == 0)
                sb_ws_send(c->ws, 1, bin, bl);
            free(bin);
        } else if (n > 0) {
            sb_ws_send(c->ws, 0, s, n);
        }
        s = stop + 1;
    }
    sb_buf_free(&c->out);
}

static void probe_on_message(sb_ws_t *ws, void *ud, int binary, const char *data, size_t len)
{
    sb_eio_conn_t *c = ud;
    if (ws == c->ws) {
        /* The probe became the transport; its callbacks stay these. */
        ws_on_message(ws, ud, binary, data, len);
        return;
    }
    if (c->closing || ws != c->probe)
        return;
    if (!binary && len == 6 && memcmp(data, "2probe", 6) == 0) {
        int rv = sb_ws_send(ws, 0, "3probe", 6);
        sb_log(SB_LOG_DEBUG, "probe answered", "sid", c->sid, "rv", sb_strerror(rv), NULL);
        c->upgrading = 1;
        /* Let the client's pending GET return so its polling transport can pause. */
        answer_get_with(c, "6");
        return;
    }
    if (!binary && len == 1 && data[0] == '5' && c->upgrading) {
        if (h2o_timeout_is_linked(&c->upgrade_timer))
            h2o_timeout_unlink(&c->upgrade_timer);
        answer_get_with(c, "6");
        c->ws = ws;
        c->probe = NULL;
        c->upgrading = 0;
        transport_count(c->w, SB_EIO_POLLING, -1);
        transport_count(c->w, SB_EIO_WEBSOCKET, 1);
        c->transport = SB_EIO_WEBSOCKET;
        transfer_to_ws(c);
        sb_log(SB_LOG_DEBUG, "upgraded to websocket", "sid", c->sid, NULL);
        return;
    }
    sb_log(SB_LOG_WARN, "invalid upgrade probe, closing it", "sid", c->sid, NULL);
    sb_ws_close(ws, 1002);
}

static void probe_on_close(sb_ws_t *ws, void *ud, const char *reason)
{
    ws_on_close(ws, ud, reason);
}

static const sb_ws_callbacks_t probe_cbs = {probe_on_message, probe_on_close};

static void upgrade_timeout_cb(h2o_timeout_entry_t *e)
{
    sb_eio_conn_t *c = CONN_OF(e, upgrade_timer);
    if (c->probe != NULL)
        sb_ws_close(c->probe, 1000);
}

static void reject_on_message(sb_ws_t *ws, void *ud, int binary, const char *data, size_t len)
{
    (void)ws, (void)ud, (void)binary, (void)data, (void)len;
}
static void reject_on_close(sb_ws_t *ws, void *ud, const char *reason)
{
    (void)ws, (void)ud, (void)reason;
}
static const sb_ws_callbacks_t reject_cbs = {reject_on_message, reject_on_close};

/* Owner side: a probe socket arrives (imported from the home loop, or local). */
static void attach_probe(sb_worker_t *w, const char *sid, h2o_socket_t *sock)
{
    sb_eio_conn_t *c = sb_map_get(&w->conns, sid, SB_SID_LEN);
    if (c == NULL || c->closing || c->probe != NULL || c->transport != SB_EIO_POLLING) {
        /* Already upgraded, upgrading, or gone meanwhile: complete the WebSocket, then close it, as Engine.IO does. */
        sb_ws_t *ws = sb_ws_create(w->ws, sock, &reject_cbs, NULL, 1024, 1024);
        if (ws != NULL)
            sb_ws_close(ws, 1000);
        return;
    }
    c->probe = sb_ws_create(w->ws, sock, &probe_cbs, c, w->cfg->max_payload, w->cfg->max_send_queue);
    sb_log(SB_LOG_DEBUG, "upgrade probe attached", "sid", c->sid, NULL);
    if (c->probe != NULL)
        h2o_timeout_link(w->ctx.loop, &w->upgrade_to, &c->upgrade_timer);
}

static void attach_remote_cb(sb_worker_t *w, void *arg)
{
    ws_attach_t *a = arg;
    h2o_socket_t *sock = h2o_socket_import(w->ctx.loop, &a->info);
    if (sock != NULL)
        attach_probe(w, a->sid, sock);
    free(a);
}

static void ws_upgraded_remote(void *data, h2o_socket_t *sock)
{
    ws_attach_t *a = data;
    if (sock == NULL) {
        free(a);
        return;
    }
    if (h2o_socket_export(sock, &a->info) != 0) {
        free(a);
        return;
    }
    sb_worker_post(a->owner, attach_remote_cb, a);
}

/* A WebSocket handshake without sid: a fresh connection on this worker. */
static void ws_upgraded_new(void *data, h2o_socket_t *sock)
{
    sb_eio_conn_t *c = data;
    c->ws_pending = 0;
    if (sock == NULL) {
        sb_eio_close(c, "transport error");
        return;
    }
    if (c->closing) {
        h2o_socket_close(sock);
        conn_try_free(c);
        return;
    }
    c->ws = sb_ws_create(c->w->ws, sock, &ws_cbs, c, c->w->cfg->max_payload, c->w->cfg->max_send_queue);
    if (c->ws == NULL) {
        sb_eio_close(c, "transport error");
        return;
    }
    /* The open packet went out with the 101 (sb_ws_upgrade). */
    hb_start(c);
    sb_session_on_open(c);
}

/* ---- owner-side handling of requests that name a sid ----------------------------------------------------------- */

static void owner_handle(sb_worker_t *w, void *arg)
{
    poll_op_t *op = arg;
    sb_eio_conn_t *c = sb_map_get(&w->conns, op->sid, SB_SID_LEN);
    if (c != NULL && c->linger && op->kind == OP_GET) {
        op_answer(op, 200, "text/plain; charset=UTF-8", "6", 1);
        linger_end(c);
        return;
    }
    if (c == NULL || c->closing) {
        sb_log(SB_LOG_DEBUG, "request for an unknown session", "sid", op->sid, "closing", c != NULL ? "yes" : "no",
               NULL);
        op_answer_error(op, SB_EIO_ERR_UNKNOWN_SID);
        return;
    }
    switch (op->kind) {
    case OP_GET:
        if (c->transport != SB_EIO_POLLING) {
            op_answer_error(op, SB_EIO_ERR_BAD_REQUEST);
            return;
        }
        if (c->get != NULL) {
            /* Two concurrent GETs: refuse the new one and close the session, as Engine.IO does. */
            op_answer_error(op, SB_EIO_ERR_BAD_REQUEST);
            sb_log(SB_LOG_WARN, "overlapping polling GET, closing", "sid", c->sid, NULL);
            sb_eio_close(c, "transport error");
            return;
        }
        c->get = op;
        if (c->upgrading)
            answer_get_with(c, "6"); /* as Engine.IO's upgrade check does: let the client pause its polling */
        else
            flush_poll(c);
        return;
    case OP_POST: {
        if (c->transport != SB_EIO_POLLING) {
            op_answer_error(op, SB_EIO_ERR_BAD_REQUEST);
            return;
        }
        int rv = sb_eio_payload_decode(op->body, op->body_len, 0, payload_cb, c);
        if (rv == SB_EPROTO && !c->closing) {
            op_answer_error(op, SB_EIO_ERR_BAD_REQUEST);
            sb_log(SB_LOG_WARN, "malformed polling payload, closing", "sid", c->sid, "remote", sb_eio_remote(c), NULL);
            sb_eio_close(c, "parse error");
            return;
        }
        op_answer(op, 200, "text/html", "ok", 2);
        return;
    }
    case OP_WSCHECK:
        /* An already upgraded (or upgrading) session gets its WebSocket completed and closed by attach_probe. */
        if (!w->cfg->allow_upgrades) {
            op_answer_error(op, SB_EIO_ERR_BAD_REQUEST);
            return;
        }
        op_answer(op, 101, NULL, NULL, 0);
        return;
    }
}

/* A parked GET's connection closed: Engine.IO treats that as the end of the session. */
static void owner_get_aborted(sb_worker_t *w, void *arg)
{
    poll_op_t *op = arg;
    sb_eio_conn_t *c = sb_map_get(&w->conns, op->sid, SB_SID_LEN);
    if (c == NULL || c->get != op)
        return; /* already answered: the answer is on its way home and frees the op there */
    c->get = NULL;
    op_answer(op, 200, NULL, NULL, 0);
    sb_log(SB_LOG_DEBUG, "polling request closed prematurely", "sid", c->sid, NULL);
    sb_eio_close(c, "transport close");
}

/* ---- the HTTP handler ------------------------------------------------------------------------------------------- */

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    sb_worker_t *w = worker_of_req(req);
    const sb_config_t *cfg = w->cfg;

    if (add_cors(req, cfg) != 0) {
        send_eio_error(req, SB_EIO_ERR_FORBIDDEN);
        return 0;
    }
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("OPTIONS"))) {
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-methods"), 0, NULL,
                              H2O_STRLIT("GET, POST, OPTIONS"));
        ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("access-control-request-headers"), -1);
        if (i >= 0)
            h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-headers"), 0, NULL,
                                  req->headers.entries[i].value.base, req->headers.entries[i].value.len);
        send_body(req, 204, NULL, "", 0);
        return 0;
    }

    sb_eio_query_t q;
    const char *qs = NULL;
    size_t qlen = 0;
    if (req->query_at != SIZE_MAX) {
        qs = req->path.base + req->query_at + 1;
        qlen = req->path.len - req->query_at - 1;
    }
    if (sb_eio_query_parse(qs, qlen, &q) != 0) {
        send_eio_error(req, SB_EIO_ERR_BAD_REQUEST);
        return 0;
    }
    int is_ws = strcmp(q.transport, "websocket") == 0;
    int is_polling = strcmp(q.transport, "polling") == 0;
    if ((!is_ws && !is_polling) || (is_polling && !cfg->allow_polling)) {
        send_eio_error(req, SB_EIO_ERR_UNKNOWN_TRANSPORT);
        return 0;
    }
    if (strcmp(q.eio, "4") != 0) {
        send_eio_error(req, SB_EIO_ERR_UNSUPPORTED_PROTOCOL_VERSION);
        return 0;
    }
    int is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"));
    int is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));

    if (q.sid[0] == '\0') {
        /* Handshake. */
        if (!is_get) {
            send_eio_error(req, SB_EIO_ERR_BAD_HANDSHAKE_METHOD);
            return 0;
        }
        if (atomic_load(&w->server->draining) || !sb_worker_ready(w)) {
            send_body(req, 503, "application/json", H2O_STRLIT("{\"code\":3,\"message\":\"Service unavailable\"}"));
            return 0;
        }
        if (is_ws) {
            if (!sb_ws_is_handshake(req)) {
                send_eio_error(req, SB_EIO_ERR_BAD_REQUEST);
                return 0;
            }
            sb_eio_conn_t *c = conn_new(w, SB_EIO_WEBSOCKET, req);
            if (c == NULL) {
                send_body(req, 503, "text/plain", H2O_STRLIT("out of memory"));
                return 0;
            }
            c->ws_pending = 1;
            sb_buf_t open;
            sb_buf_init(&open, 4096);
            sb_buf_append_char(&open, '0');
            sb_eio_handshake_json(&open, c->sid, 0, cfg->ping_interval_ms, cfg->ping_timeout_ms, cfg->max_payload);
            int up = open.base != NULL ? sb_ws_upgrade(req, open.base, open.len, ws_upgraded_new, c) : SB_ENOMEM;
            sb_buf_free(&open);
            if (up != 0) {
                c->ws_pending = 0;
                sb_map_del(&w->conns, c->sid, SB_SID_LEN);
                atomic_fetch_sub(&w->stats.connections, 1);
                transport_count(w, SB_EIO_WEBSOCKET, -1);
                sb_buf_free(&c->out);
                free(c->token);
                free(c);
                send_eio_error(req, SB_EIO_ERR_BAD_REQUEST);
            }
            return 0;
        }
        sb_eio_conn_t *c = conn_new(w, SB_EIO_POLLING, req);
        if (c == NULL) {
            send_body(req, 503, "text/plain", H2O_STRLIT("out of memory"));
            return 0;
        }
        sb_buf_t open;
        sb_buf_init(&open, 4096);
        sb_buf_append_char(&open, '0');
        sb_eio_handshake_json(&open, c->sid, cfg->allow_upgrades, cfg->ping_interval_ms, cfg->ping_timeout_ms,
                              cfg->max_payload);
        send_body(req, 200, "text/plain; charset=UTF-8", open.base, open.len);
        sb_buf_free(&open);
        hb_start(c);
        sb_session_on_open(c);
        return 0;
    }

    sb_worker_t *owner = sb_server_worker_for_sid(w->server, q.sid, strlen(q.sid));
    if (owner == NULL || strlen(q.sid) != SB_SID_LEN) {
        send_eio_error(req, SB_EIO_ERR_UNKNOWN_SID);
        return 0;
    }
    poll_op_t *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        send_body(req, 503, "text/plain", H2O_STRLIT("out of memory"));
        return 0;
    }
    op->home = w;
    op->owner = owner;
    op->req = req;
    memcpy(op->sid, q.sid, SB_SID_LEN + 1);
    sb_buf_init(&op->resp, 0);
    if (is_ws) {
        if (!sb_ws_is_handshake(req)) {
            free(op);
            send_eio_error(req, SB_EIO_ERR_BAD_REQUEST);
            return 0;
        }
        op->kind = OP_WSCHECK;
    } else if (is_get) {
        op->kind = OP_GET;
    } else if (is_post) {
        op->kind = OP_POST;
        if (req->entity.base == NULL || req->entity.len == 0) {
            free(op);
            send_eio_error(req, SB_EIO_ERR_BAD_REQUEST);
            return 0;
        }
        if (req->entity.len > cfg->max_payload) {
            free(op);
            send_body(req, 413, "application/json", H2O_STRLIT("{\"code\":3,\"message\":\"Payload too large\"}"));
            return 0;
        }
        if ((op->body = malloc(req->entity.len)) == NULL) {
            free(op);
            send_body(req, 503, "text/plain", H2O_STRLIT("out of memory"));
            return 0;
        }
        memcpy(op->body, req->entity.base, req->entity.len);
        op->body_len = req->entity.len;
    } else {
        free(op);
        send_eio_error(req, SB_EIO_ERR_BAD_REQUEST);
        return 0;
    }
    poll_op_t **slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), on_req_dispose);
    *slot = op;
    sb_worker_post(owner, owner_handle, op);
    return 0;
}

void sb_engine_register(h2o_pathconf_t *pathconf, sb_server_t *server)
{
    (void)server;
    h2o_handler_t *h = h2o_create_handler(pathconf, sizeof(*h));
    h->on_req = on_req;
}

void sb_engine_worker_init(sb_worker_t *w)
{
    const sb_config_t *cfg = w->cfg;
    h2o_timeout_init(w->ctx.loop, &w->ping_interval_to, cfg->ping_interval_ms);
    h2o_timeout_init(w->ctx.loop, &w->ping_timeout_to, cfg->ping_timeout_ms);
    h2o_timeout_init(w->ctx.loop, &w->upgrade_to, cfg->upgrade_timeout_ms);
    h2o_timeout_init(w->ctx.loop, &w->linger_to, 1000);
}

size_t sb_engine_worker_close_some(sb_worker_t *w, size_t max, const char *reason)
{
    size_t n = 0;
    const sb_map_entry_t *e;
    for (size_t i = 0; n < max && sb_map_next(&w->conns, &i, &e);) {
        sb_eio_conn_t *c = e->value;
        if (c->closing)
            continue;
        sb_eio_close(c, reason); /* removes it from the map: iteration may continue (deleting is allowed) */
        n++;
    }
    return n;
}

void sb_engine_worker_close_all(sb_worker_t *w)
{
    const sb_map_entry_t *e;
    for (size_t i = 0; sb_map_next(&w->conns, &i, &e);)
        sb_eio_close(e->value, "server shutting down");
}
