/*
 * server.c — the process, its workers, listeners and the small HTTP endpoints
 * (see include/switchboard/server.h).
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "switchboard/api.h"
#include "switchboard/auth.h"
#include "switchboard/bus.h"
#include "switchboard/engine.h"
#include "switchboard/functions.h"
#include "switchboard/log.h"
#include "switchboard/rebalance.h"
#include "switchboard/server.h"
#include "switchboard/session.h"
#include "switchboard/webhook.h"
#include <time.h>

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static __thread sb_worker_t *current_worker;

/* ---- cross-thread calls ---------------------------------------------------------------------------------------- */

typedef struct post_msg {
    h2o_multithread_message_t super;
    void (*fn)(sb_worker_t *w, void *arg);
    void *arg;
} post_msg_t;

void sb_worker_post(sb_worker_t *target, void (*fn)(sb_worker_t *w, void *arg), void *arg)
{
    if (current_worker == target) {
        fn(target, arg);
        return;
    }
    post_msg_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        abort();
    m->fn = fn;
    m->arg = arg;
    h2o_multithread_send_message(&target->receiver, &m->super);
}

static void on_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    sb_worker_t *w = (sb_worker_t *)((char *)receiver - offsetof(sb_worker_t, receiver));
    while (!h2o_linklist_is_empty(messages)) {
        post_msg_t *m = H2O_STRUCT_FROM_MEMBER(post_msg_t, super.link, messages->next);
        h2o_linklist_unlink(&m->super.link);
        m->fn(w, m->arg);
        free(m);
    }
}

sb_worker_t *sb_server_worker_for_sid(sb_server_t *s, const char *sid, size_t len)
{
    if (len == 0)
        return NULL;
    const char *p = memchr(B64URL, sid[0], 64);
    if (p == NULL || sid[0] == '\0')
        return NULL;
    size_t idx = (size_t)(p - B64URL);
    return idx < s->nworkers ? s->workers[idx] : NULL;
}

void sb_worker_new_sid(sb_worker_t *w, char out[SB_SID_LEN + 1])
{
    sb_random_id(out, SB_SID_LEN);
    out[0] = B64URL[w->idx & 63];
    out[SB_SID_LEN] = '\0';
}

int sb_worker_ready(sb_worker_t *w)
{
    return !atomic_load(&w->server->draining) && w->cmd != NULL && sb_redis_connected(w->cmd) &&
           atomic_load(&w->functions_ok);
}

double sb_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- metrics ----------------------------------------------------------------------------------------------------- */

static int register_metrics(sb_server_t *s)
{
    sb_server_metrics_t *m = &s->metrics;
    sb_metrics_t *r = m->registry = sb_metrics_create();
    if (r == NULL)
        return SB_ENOMEM;
    const double *lat = SB_METRICS_LATENCY_BUCKETS;
    size_t nlat = SB_METRICS_LATENCY_NBUCKETS;
    static const char *transports[] = {"polling", "websocket"};
    char labels[256];
    for (int t = 0; t < 2; t++) {
        snprintf(labels, sizeof(labels), "transport=\"%s\"", transports[t]);
        m->connections[t] = sb_metrics_series(r, SB_GAUGE, "switchboard_connections", "Open Engine.IO connections.",
                                              labels, NULL, 0);
        m->connects[t] = sb_metrics_series(r, SB_COUNTER, "switchboard_connects_total", "Socket.IO sockets connected.",
                                           labels, NULL, 0);
    }
    m->sockets = sb_metrics_series(r, SB_GAUGE, "switchboard_sockets", "Connected Socket.IO sockets.", NULL, NULL, 0);
    static const char *outcomes[] = {"recovered", "refused", "failed"};
    for (int o = 0; o < 3; o++) {
        snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcomes[o]);
        m->recoveries[o] = sb_metrics_series(r, SB_COUNTER, "switchboard_recoveries_total",
                                             "Connection state recovery attempts (a CONNECT with a pid), by outcome: "
                                             "recovered; refused (unknown, expired, other user, bus trimmed: "
                                             "connected as new); failed (Redis unavailable).",
                                             labels, NULL, 0);
    }
    m->replayed = sb_metrics_series(r, SB_COUNTER, "switchboard_recovery_replayed_total",
                                    "Bus entries replayed to recovering sockets.", NULL, NULL, 0);
    for (unsigned i = 0; i < SB_REASONS; i++) {
        sb_buf_t b;
        sb_buf_init(&b, sizeof(labels));
        sb_buf_append_str(&b, "reason=\"");
        sb_metrics_append_label_value(&b, sb_session_reasons[i]);
        sb_buf_append_char(&b, '"');
        sb_buf_append_char(&b, '\0');
        m->disconnects[i] = sb_metrics_series(r, SB_COUNTER, "switchboard_disconnects_total",
                                              "Socket.IO sockets disconnected, by Socket.IO's reason.", b.base, NULL,
                                              0);
        sb_buf_free(&b);
    }
    m->events_in = sb_metrics_series(r, SB_COUNTER, "switchboard_events_in_total", "Events received from clients.",
                                     NULL, NULL, 0);
    m->deliveries = sb_metrics_series(r, SB_COUNTER, "switchboard_deliveries_total",
                                      "Messages written to client sockets.", NULL, NULL, 0);
    m->bus_entries = sb_metrics_series(r, SB_COUNTER, "switchboard_bus_entries_total",
                                       "Bus entries read and applied (by every worker).", NULL, NULL, 0);
    m->bus_delivery = sb_metrics_series(r, SB_HISTOGRAM, "switchboard_bus_delivery_seconds",
                                        "From a bus entry's creation to its frames queued for the sockets.", NULL, lat,
                                        nlat);
    m->redis_seconds = sb_metrics_series(r, SB_HISTOGRAM, "switchboard_redis_command_seconds",
                                         "Redis command round trips (state changes and events).", NULL, lat, nlat);
    m->redis_errors = sb_metrics_series(r, SB_COUNTER, "switchboard_redis_errors_total",
                                        "Redis commands that failed (error reply, timeout, lost connection).", NULL,
                                        NULL, 0);
    m->redis_connected = sb_metrics_series(r, SB_GAUGE, "switchboard_redis_connected",
                                           "Workers whose Redis command connection is up.", NULL, NULL, 0);
    m->webhook_ok = sb_metrics_series(r, SB_COUNTER, "switchboard_webhook_calls_total",
                                      "Webhook calls by final outcome.", "outcome=\"ok\"", NULL, 0);
    m->webhook_failed = sb_metrics_series(r, SB_COUNTER, "switchboard_webhook_calls_total",
                                          "Webhook calls by final outcome.", "outcome=\"failed\"", NULL, 0);
    m->webhook_rejected = sb_metrics_series(r, SB_COUNTER, "switchboard_webhook_calls_total",
                                            "Webhook calls by final outcome.", "outcome=\"rejected\"", NULL, 0);
    m->webhook_open = sb_metrics_series(r, SB_GAUGE, "switchboard_webhook_circuit_open",
                                        "Webhook circuits open (per URL and worker).", NULL, NULL, 0);
    static const char *limits[] = {"events", "connections", "api", "publish"};
    for (int i = 0; i < SB_LIMITS; i++) {
        snprintf(labels, sizeof(labels), "kind=\"%s\"", limits[i]);
        m->rate_limited[i] = sb_metrics_series(r, SB_COUNTER, "switchboard_rate_limited_total",
                                               "Requests refused by a rate limit.", labels, NULL, 0);
    }
    static const char *drops[] = {"send_queue_full", "volatile", "event_not_stored", "webhook"};
    for (int i = 0; i < SB_DROPS; i++) {
        snprintf(labels, sizeof(labels), "reason=\"%s\"", drops[i]);
        m->dropped[i] = sb_metrics_series(r, SB_COUNTER, "switchboard_dropped_total",
                                          "Messages dropped (never silently: each is also logged).", labels, NULL, 0);
    }
    m->loop_lag = sb_metrics_series(r, SB_HISTOGRAM, "switchboard_event_loop_lag_seconds",
                                    "How late a worker's 100 ms timer fires.", NULL, lat, nlat);
    static const char *codes[] = {"2xx", "4xx", "5xx"};
    for (int i = 0; i < 3; i++) {
        snprintf(labels, sizeof(labels), "code=\"%s\"", codes[i]);
        m->rest[i] = sb_metrics_series(r, SB_COUNTER, "switchboard_rest_requests_total", "REST API answers.", labels,
                                       NULL, 0);
    }
    m->accept_paused = sb_metrics_series(r, SB_COUNTER, "switchboard_accept_paused_total",
                                         "Times a worker stopped accepting for 100 ms: out of file descriptors.", NULL,
                                         NULL, 0);
    m->durable_stored = sb_metrics_series(r, SB_COUNTER, "switchboard_durable_stored_total",
                                          "Durable emits written to user inboxes (one per user).", NULL, NULL, 0);
    m->durable_delivered = sb_metrics_series(r, SB_COUNTER, "switchboard_durable_delivered_total",
                                             "Durable emits written to client sockets (live and from the inbox).", NULL,
                                             NULL, 0);
    m->durable_acked = sb_metrics_series(r, SB_COUNTER, "switchboard_durable_acked_total",
                                         "Durable emits acknowledged by a client (removed from the inbox).", NULL, NULL,
                                         0);
    static const char *inbox_drops[] = {"maxlen", "age"};
    for (int i = 0; i < 2; i++) {
        snprintf(labels, sizeof(labels), "reason=\"%s\"", inbox_drops[i]);
        m->inbox_dropped[i] = sb_metrics_series(r, SB_COUNTER, "switchboard_inbox_dropped_total",
                                                "Durable emits dropped from user inboxes by --inbox-maxlen or "
                                                "--inbox-max-age (each drop is also logged).",
                                                labels, NULL, 0);
    }
    m->auth_failures = sb_metrics_series(r, SB_COUNTER, "switchboard_auth_failures_total",
                                         "Tokens refused (connect and $refresh) and bad dashboard keys.", NULL, NULL,
                                         0);
    m->rebalance_closed = sb_metrics_series(r, SB_COUNTER, "switchboard_rebalance_closed_total",
                                            "Connections closed because this node was above the cluster average "
                                            "(clients reconnect to any node).",
                                            NULL, NULL, 0);
    return 0;
}

static int on_metrics(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    sb_worker_t *w = (sb_worker_t *)((char *)req->conn->ctx - offsetof(sb_worker_t, ctx));
    sb_buf_t b;
    sb_buf_init(&b, (size_t)16 * 1024 * 1024);
    if (sb_metrics_render(w->server->metrics.registry, &b) != 0) {
        sb_buf_free(&b);
        req->res.status = 503;
        req->res.reason = "Service Unavailable";
        h2o_send_inline(req, H2O_STRLIT("cannot render the metrics\n"));
        return 0;
    }
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/plain; version=0.0.4; charset=utf-8"));
    h2o_send_inline(req, b.base, b.len);
    sb_buf_free(&b);
    return 0;
}

/* ---- health ------------------------------------------------------------------------------------------------------ */

static sb_worker_t *worker_of_req(h2o_req_t *req)
{
    return (sb_worker_t *)((char *)req->conn->ctx - offsetof(sb_worker_t, ctx));
}

static void respond_json(h2o_req_t *req, int status, const char *reason, const char *body)
{
    req->res.status = status;
    req->res.reason = reason;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_send_inline(req, body, strlen(body));
}

static int on_healthz(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    respond_json(req, 200, "OK", "{\"status\":\"ok\"}");
    return 0;
}

static int on_readyz(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    sb_worker_t *w = worker_of_req(req);
    if (atomic_load(&w->server->draining))
        respond_json(req, 503, "Service Unavailable", "{\"status\":\"draining\"}");
    else if (w->cfg->loop_lag_max_ms > 0 && atomic_load(&w->loop_lag_ms) > w->cfg->loop_lag_max_ms)
        respond_json(req, 503, "Service Unavailable", "{\"status\":\"event loop lagging\"}");
    else if (sb_redis_connected(w->cmd) && !atomic_load(&w->functions_ok))
        respond_json(req, 503, "Service Unavailable",
                     "{\"status\":\"redis functions library missing or of another version\"}");
    else if (!sb_worker_ready(w) || !sb_redis_connected(w->bus))
        respond_json(req, 503, "Service Unavailable", "{\"status\":\"redis unavailable\"}");
    else
        respond_json(req, 200, "OK", "{\"status\":\"ready\"}");
    return 0;
}

/* ---- TLS ------------------------------------------------------------------------------------------------------- */

/* A server context for --tls-cert/--tls-key: TLS 1.2 or newer, HTTP/1.1 only (no ALPN h2). NULL with *why. */
static SSL_CTX *tls_context(const sb_config_t *cfg, const char **why)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        *why = "cannot create a TLS context";
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
        *why = "--tls-cert: cannot load the certificate chain (PEM)";
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        *why = "--tls-key: cannot load the private key, or it does not match the certificate";
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static void swap_tls(sb_worker_t *w, void *arg)
{
    /* h2o keeps the SSL_CTX pointer of a connection it accepted until its handshake starts, so the context being
     * replaced may still be used for a moment: it is retired, and freed only at the next reload. */
    if (w->tls_retired != NULL)
        SSL_CTX_free(w->tls_retired);
    w->tls_retired = w->accept_ctx.ssl_ctx;
    w->accept_ctx.ssl_ctx = arg;
}

int sb_server_reload_tls(sb_server_t *s, const char **why)
{
    if (s->cfg->tls_cert == NULL)
        return 0;
    /* One context per worker, as at start-up; all are loaded before any is handed over. */
    SSL_CTX **ctx = calloc(s->nworkers, sizeof(*ctx));
    if (ctx == NULL) {
        *why = "out of memory";
        return SB_ENOMEM;
    }
    for (unsigned i = 0; i < s->nworkers; i++) {
        if ((ctx[i] = tls_context(s->cfg, why)) == NULL) {
            for (unsigned k = 0; k < i; k++)
                SSL_CTX_free(ctx[k]);
            free(ctx);
            return SB_EINVAL;
        }
    }
    for (unsigned i = 0; i < s->nworkers; i++)
        sb_worker_post(s->workers[i], swap_tls, ctx[i]);
    free(ctx);
    return 0;
}

/* ---- listeners --------------------------------------------------------------------------------------------------- */

/* A socket bound to a (listening when `listening`: SO_REUSEPORT, TCP_NODELAY, listen()), or -1 with errno and
 * *why set. */
static int bind_addr(const sb_listen_addr_t *a, int listening, const char **why)
{
    struct addrinfo hints = {0}, *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)a->port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if (getaddrinfo(a->host[0] != '\0' ? a->host : NULL, port, &hints, &res) != 0 || res == NULL) {
        *why = "cannot resolve listen address";
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        (listening && (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
                       setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) != 0)) ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || (listening && listen(fd, 4096) != 0)) {
        int e = errno;
        *why = strerror(e);
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        errno = e;
        return -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int open_listener(const sb_listen_addr_t *a, const char **why)
{
    return bind_addr(a, 1, why);
}

/* Every worker listens on its own SO_REUSEPORT socket, and the kernel would as readily let another process of the
 * same user join the port and take part of the connections without a word (a stale switchboard, a second one
 * started by mistake). A plain bind first finds such a listener: refuse to start then. */
static int check_addr_free(const sb_listen_addr_t *a, const char **why)
{
    int fd = bind_addr(a, 0, why);
    if (fd < 0) {
        if (errno == EADDRINUSE)
            *why = "--listen: the address is already in use (another process listens on it)";
        return -1;
    }
    close(fd);
    return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err);

static void resume_accept(h2o_timeout_entry_t *e)
{
    sb_worker_t *w = (sb_worker_t *)((char *)e - offsetof(sb_worker_t, accept_pause));
    for (size_t i = 0; i < w->nlisteners; i++)
        h2o_socket_read_start(w->listeners[i], on_accept);
}

/* What h2o_evloop_socket_accept does, two syscalls shorter: the peer's address comes from accept4 itself (every
 * connection asks for it, for logs and limits, and h2o would fetch it with getpeername), and TCP_NODELAY is not set
 * again (Linux copies it from the listener, which bind_addr set it on, as h2o's later versions also rely on). The
 * h2o socket still costs its fcntl(O_NONBLOCK). */
static h2o_socket_t *accept_one(sb_worker_t *w, h2o_socket_t *listener)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    int fd = accept4(h2o_socket_get_fd(listener), (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return NULL;
    h2o_socket_t *sock = h2o_evloop_socket_create(w->loop, fd, H2O_SOCKET_FLAG_IS_ACCEPTED_CONNECTION);
    if (len > 0 && len <= sizeof(sa))
        h2o_socket_setpeername(sock, (struct sockaddr *)&sa, len);
    return sock;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    sb_worker_t *w = listener->data;
    if (atomic_load(&w->stop))
        return;
    /* One connection per accept4: drain a bounded batch. */
    for (int i = 0; i < 64; i++) {
        errno = 0;
        h2o_socket_t *sock = accept_one(w, listener);
        if (sock == NULL) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of file descriptors: the listener stays readable, so accepting again at once would spin.
                 * Pause the listeners for 100 ms; connections wait in the kernel's backlog meanwhile. */
                for (size_t k = 0; k < w->nlisteners; k++)
                    h2o_socket_read_stop(w->listeners[k]);
                if (!h2o_timeout_is_linked(&w->accept_pause))
                    h2o_timeout_link(w->ctx.loop, &w->lag_to, &w->accept_pause);
                sb_metric_inc(SB_M(w)->accept_paused, w->idx);
                uint64_t now = sb_mono_ms();
                if (now - w->accept_warned_at >= 10000) {
                    sb_log(SB_LOG_ERROR, "out of file descriptors: not accepting for 100 ms (raise ulimit -n)", "error",
                           strerror(errno), NULL);
                    w->accept_warned_at = now;
                }
            }
            break;
        }
        h2o_accept(&w->accept_ctx, sock);
    }
}

/* ---- workers ----------------------------------------------------------------------------------------------------- */

/* ---- the Functions library version ---------------------------------------------------------------------------- */

static void check_functions(sb_worker_t *w);

static void on_functions_loaded(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    sb_worker_t *w = data;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        sb_log(SB_LOG_ERROR, "reloading the Functions library failed", "error", reply != NULL ? reply->str : err, NULL);
        return;
    }
    check_functions(w);
}

static void on_functions_version(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)err;
    sb_worker_t *w = data;
    if (reply == NULL)
        return; /* connection lost: checked again on reconnect */
    if (reply->type == REDIS_REPLY_ERROR) {
        if (strstr(reply->str, "not found") != NULL) {
            /* Redis lost its functions (restarted without persistence): load ours again. */
            sb_log(SB_LOG_WARN, "the Functions library is gone from Redis, loading it again", NULL);
            const char *argv[] = {"FUNCTION", "LOAD", "REPLACE", sb_functions_source};
            size_t lens[] = {8, 4, 7, strlen(sb_functions_source)};
            sb_redis_commandargv(r, on_functions_loaded, w, 0, 4, argv, lens);
        } else {
            atomic_store(&w->functions_ok, 0);
            sb_log(SB_LOG_ERROR, "cannot check the Functions library", "error", reply->str, NULL);
        }
        return;
    }
    int ok = reply->type == REDIS_REPLY_STRING && strcmp(reply->str, sb_functions_version) == 0;
    if (!ok && atomic_load(&w->functions_ok))
        sb_log(SB_LOG_ERROR, "refusing new clients: Redis holds another version of the Functions library", "ours",
               sb_functions_version, "loaded", reply->type == REDIS_REPLY_STRING ? reply->str : "?", NULL);
    atomic_store(&w->functions_ok, ok);
}

static void check_functions(sb_worker_t *w)
{
    const char *argv[] = {"FCALL", "sb_version", "0"};
    size_t lens[] = {5, 10, 1};
    sb_redis_commandargv(w->cmd, on_functions_version, w, 0, 3, argv, lens);
}

static void on_redis_cmd_state(sb_redis_t *r, int connected, void *data)
{
    (void)r;
    sb_worker_t *w = data;
    sb_metric_set(SB_M(w)->redis_connected, w->idx, connected ? 1 : 0);
    /* The adapter logs connection changes; a new connection may face a Redis that restarted or was upgraded. */
    if (connected) {
        check_functions(w);
        if (w->idx == 0)
            sb_api_heartbeat(w); /* listed in /v1/stats from the start, not after the first interval */
    }
}

static void on_redis_bus_state(sb_redis_t *r, int connected, void *data)
{
    (void)r;
    sb_bus_on_state(data, connected);
}

static void trim_done(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    (void)data;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        sb_log(SB_LOG_WARN, "trimming the bus failed", "error", reply != NULL ? reply->str : err, NULL);
}

/* Backends XADD to the bus without MAXLEN; one worker per node keeps it bounded. */
static void trim_bus(sb_worker_t *w)
{
    char key[600], maxlen[24];
    if (!sb_key(w, key, sizeof(key), "bus") || !sb_redis_connected(w->cmd))
        return;
    snprintf(maxlen, sizeof(maxlen), "%llu", (unsigned long long)w->cfg->bus_maxlen);
    const char *argv[] = {"XTRIM", key, "MAXLEN", "~", maxlen};
    size_t lens[SB_ARRAY_SIZE(argv)];
    for (size_t i = 0; i < SB_ARRAY_SIZE(argv); i++)
        lens[i] = strlen(argv[i]);
    sb_redis_commandargv(w->cmd, trim_done, NULL, 0, (int)SB_ARRAY_SIZE(argv), argv, lens);
}

/* ---- event-loop lag ---------------------------------------------------------------------------------------------- */

#define LAG_PERIOD_MS 100

static void lag_cb(h2o_timeout_entry_t *e)
{
    sb_worker_t *w = (sb_worker_t *)((char *)e - offsetof(sb_worker_t, lag_tick));
    uint64_t now = sb_mono_ms();
    uint64_t lag = now > w->lag_expected ? now - w->lag_expected : 0;
    sb_metric_observe(SB_M(w)->loop_lag, w->idx, (double)lag / 1000.0);
    if (lag > w->lag_window_max)
        w->lag_window_max = lag;
    if (now - w->lag_window_start >= 1000) {
        atomic_store(&w->loop_lag_ms, w->lag_window_max);
        w->lag_window_max = 0;
        w->lag_window_start = now;
    }
    if (lag >= w->cfg->loop_lag_warn_ms && now - w->lag_warned_at >= 10000) {
        char ms[24], wk[8];
        snprintf(ms, sizeof(ms), "%llu", (unsigned long long)lag);
        snprintf(wk, sizeof(wk), "%u", w->idx);
        sb_log(SB_LOG_WARN, "event loop lagging", "#lag_ms", ms, "#worker", wk, NULL);
        w->lag_warned_at = now;
    }
    w->lag_expected = now + LAG_PERIOD_MS;
    h2o_timeout_link(w->ctx.loop, &w->lag_to, &w->lag_tick);
}

/* ---- graceful drain ---------------------------------------------------------------------------------------------- */

/* Every 100 ms step k of the drain closes what brings the total to ceil(n0 * k / steps): the closes are spread
 * evenly over the whole --drain-timeout, so clients do not all reconnect elsewhere at the same moment. */
static void drain_cb(h2o_timeout_entry_t *e)
{
    sb_worker_t *w = (sb_worker_t *)((char *)e - offsetof(sb_worker_t, drain_tick));
    w->drain_step++;
    size_t target = w->drain_step >= w->drain_steps
                        ? SIZE_MAX
                        : (w->drain_total * w->drain_step + w->drain_steps - 1) / w->drain_steps;
    if (target > w->drain_closed)
        w->drain_closed += sb_engine_worker_close_some(w, target - w->drain_closed, "server shutting down");
    if (w->conns.count > 0)
        h2o_timeout_link(w->ctx.loop, &w->lag_to, &w->drain_tick);
}

static void drain_start(sb_worker_t *w, void *arg)
{
    (void)arg;
    w->drain_steps = w->cfg->drain_timeout_ms / LAG_PERIOD_MS;
    if (w->drain_steps < 1)
        w->drain_steps = 1;
    w->drain_total = w->conns.count;
    w->drain_step = 0;
    w->drain_closed = 0;
    w->drain_tick.cb = drain_cb;
    if (w->conns.count > 0 && !h2o_timeout_is_linked(&w->drain_tick))
        h2o_timeout_link(w->ctx.loop, &w->lag_to, &w->drain_tick);
}

void sb_server_drain(sb_server_t *s)
{
    atomic_store(&s->draining, 1);
    for (unsigned i = 0; i < s->nworkers; i++)
        sb_worker_post(s->workers[i], drain_start, NULL);
}

unsigned long sb_server_connections(sb_server_t *s)
{
    unsigned long n = 0;
    for (unsigned i = 0; i < s->nworkers; i++)
        n += atomic_load(&s->workers[i]->stats.connections);
    return n;
}

static void tick_cb(h2o_timeout_entry_t *e)
{
    sb_worker_t *w = (sb_worker_t *)((char *)e - offsetof(sb_worker_t, tick));
    /* Every heartbeat: is the Functions library still ours (Redis restarts, other versions)? */
    if (sb_redis_connected(w->cmd))
        check_functions(w);
    if (w->idx == 0 && sb_redis_connected(w->cmd))
        sb_api_heartbeat(w);
    double open = 0;
    for (size_t i = 0; w->webhooks != NULL && i < sb_webhooks_count(w->webhooks); i++)
        open += sb_webhooks_is_open(w->webhooks, (int)i);
    sb_metric_set(SB_M(w)->webhook_open, w->idx, open);
    if (w->idx == 0 && ++w->ticks % 10 == 0)
        trim_bus(w);
    h2o_timeout_link(w->ctx.loop, &w->tick_to, &w->tick);
}

static void *worker_main(void *arg)
{
    sb_worker_t *w = arg;
    current_worker = w;
    while (!atomic_load(&w->stop))
        h2o_evloop_run(w->loop, INT32_MAX);

    /* Shutdown: close every connection (their sockets are removed from Redis), let the replies arrive. */
    sb_engine_worker_close_all(w);
    uint64_t deadline = sb_mono_ms() + 2000;
    while (sb_mono_ms() < deadline && (w->conns.count > 0 || atomic_load(&w->stats.connections) > 0))
        h2o_evloop_run(w->loop, 50);
    uint64_t settle = sb_mono_ms() + 200; /* the last FCALLs were sent; give their replies a moment */
    while (sb_mono_ms() < settle)
        h2o_evloop_run(w->loop, 20);
    if (w->webhooks != NULL)
        sb_webhooks_destroy(w->webhooks); /* calls still in flight end with "shutdown" */
    w->webhooks = NULL;
    return NULL;
}

static sb_worker_t *worker_new(sb_server_t *s, unsigned idx, const char **why)
{
    sb_worker_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        *why = "out of memory";
        return NULL;
    }
    w->idx = idx;
    w->server = s;
    w->cfg = s->cfg;
    w->loop = h2o_evloop_create();
    h2o_context_init(&w->ctx, w->loop, &s->globalconf);
    w->accept_ctx.ctx = &w->ctx;
    w->accept_ctx.hosts = s->globalconf.hosts;
    if (s->cfg->tls_cert != NULL && (w->accept_ctx.ssl_ctx = tls_context(s->cfg, why)) == NULL)
        return NULL;
    w->queue = h2o_multithread_create_queue(w->loop);
    h2o_multithread_register_receiver(w->queue, &w->receiver, on_messages);
    w->ws = sb_ws_ctx_create(w->loop);
    sb_map_init_borrowed(&w->conns);
    sb_map_init_borrowed(&w->sockets);
    sb_map_init_borrowed(&w->rooms);
    sb_engine_worker_init(w);
    sb_session_worker_init(w);
    sb_api_worker_init(w);
    sb_rebalance_worker_init(w);
    w->webhooks = sb_webhooks_create(w->loop, s->cfg);
    h2o_timeout_init(w->loop, &w->tick_to, s->cfg->heartbeat_interval_ms);
    h2o_timeout_init(w->loop, &w->lag_to, LAG_PERIOD_MS);
    w->accept_pause.cb = resume_accept;
    w->lag_tick.cb = lag_cb;
    w->lag_expected = sb_mono_ms() + LAG_PERIOD_MS;
    w->lag_window_start = sb_mono_ms();
    h2o_timeout_link(w->loop, &w->lag_to, &w->lag_tick);
    w->tick.cb = tick_cb;
    h2o_timeout_link(w->loop, &w->tick_to, &w->tick);

    char name[32];
    snprintf(name, sizeof(name), "cmd-%u", idx);
    w->cmd = sb_redis_create(w->loop, &s->redis_addr, s->cfg->redis_timeout_ms, name, on_redis_cmd_state, w);
    snprintf(name, sizeof(name), "bus-%u", idx);
    w->bus = sb_redis_create(w->loop, &s->redis_addr, s->cfg->redis_timeout_ms, name, on_redis_bus_state, w);
    if (w->cmd == NULL || w->bus == NULL) {
        *why = "out of memory";
        return NULL;
    }

    w->nlisteners = s->cfg->listen_count;
    w->listeners = calloc(w->nlisteners, sizeof(*w->listeners));
    for (size_t i = 0; i < w->nlisteners; i++) {
        int fd = open_listener(&s->cfg->listen[i], why);
        if (fd < 0)
            return NULL;
        w->listeners[i] = h2o_evloop_socket_create(w->loop, fd, H2O_SOCKET_FLAG_DONT_READ);
        w->listeners[i]->data = w;
        h2o_socket_read_start(w->listeners[i], on_accept);
    }
    return w;
}

int sb_server_init(sb_server_t *s, sb_config_t *cfg, const char *redis_url, const char **why)
{
    memset(s, 0, sizeof(*s));
    s->cfg = cfg;
    s->started_at_ms = sb_now_ms();
    snprintf(s->redis_url, sizeof(s->redis_url), "%s", redis_url);
    if (sb_redis_url_parse(redis_url, &s->redis_addr, why) != 0)
        return SB_EINVAL;
    if ((s->auth = sb_auth_create(cfg, why)) == NULL)
        return SB_EINVAL;
    if (register_metrics(s) != 0) {
        *why = "out of memory";
        return SB_ENOMEM;
    }
    if (!sb_auth_enabled(s->auth))
        sb_log(SB_LOG_WARN,
               "no --jwt-secret or --jwt-public-key: clients connect anonymously (user id = socket id) and may not "
               "use $join, $leave or $publish",
               NULL);
    sb_random_id(s->node_id, SB_NODE_ID_LEN);
    s->node_id[SB_NODE_ID_LEN] = '\0';

    h2o_config_init(&s->globalconf);
    s->globalconf.server_name = h2o_iovec_init(H2O_STRLIT("switchboard"));
    /* DESIGN §6: no cleartext HTTP/2 (2.2.5 lacks the rapid-reset fix), bodies bounded by maxPayload. */
    s->globalconf.http1.upgrade_to_http2 = 0;
    /* Slow or idle HTTP requests (headers dripping in, idle keep-alive) are closed after this. */
    s->globalconf.http1.req_timeout = cfg->http_timeout_ms;
    /* The engine checks maxPayload and the API --api-max-body themselves; h2o refuses anything above both. */
    s->globalconf.max_request_entity_size = cfg->max_payload > cfg->api_max_body ? cfg->max_payload : cfg->api_max_body;
    h2o_hostconf_t *host = h2o_config_register_host(&s->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    sb_engine_register(h2o_config_register_path(host, "/socket.io", 0), s);
    h2o_create_handler(h2o_config_register_path(host, "/healthz", 0), sizeof(h2o_handler_t))->on_req = on_healthz;
    h2o_create_handler(h2o_config_register_path(host, "/readyz", 0), sizeof(h2o_handler_t))->on_req = on_readyz;
    h2o_create_handler(h2o_config_register_path(host, "/metrics", 0), sizeof(h2o_handler_t))->on_req = on_metrics;
    if (sb_api_init(s, host, why) != 0)
        return SB_EINVAL;
    /* The dashboard: static files (its live data comes over Socket.IO on /_admin). */
    if (cfg->dashboard_dir != NULL && cfg->dashboard_dir[0] != '\0') {
        if (access(cfg->dashboard_dir, R_OK | X_OK) == 0) {
            static const char *index_files[] = {"index.html", NULL};
            h2o_file_register(h2o_config_register_path(host, "/dashboard", 0), cfg->dashboard_dir, index_files, NULL,
                              0);
        } else {
            sb_log(SB_LOG_WARN, "dashboard folder not readable: /dashboard/ is not served", "dir", cfg->dashboard_dir,
                   NULL);
        }
    }

    for (size_t i = 0; i < cfg->listen_count; i++)
        if (check_addr_free(&cfg->listen[i], why) != 0)
            return SB_EINVAL;
    s->nworkers = cfg->threads;
    s->workers = calloc(s->nworkers, sizeof(*s->workers));
    if (s->workers == NULL) {
        *why = "out of memory";
        return SB_ENOMEM;
    }
    for (unsigned i = 0; i < s->nworkers; i++)
        if ((s->workers[i] = worker_new(s, i, why)) == NULL)
            return SB_EIO;
    return 0;
}

int sb_server_start(sb_server_t *s)
{
    for (unsigned i = 0; i < s->nworkers; i++)
        if (pthread_create(&s->workers[i]->tid, NULL, worker_main, s->workers[i]) != 0)
            return SB_EIO;
    return 0;
}

static void wake(sb_worker_t *w, void *arg)
{
    (void)w;
    (void)arg;
}

void sb_server_stop(sb_server_t *s)
{
    atomic_store(&s->draining, 1);
    for (unsigned i = 0; i < s->nworkers; i++) {
        atomic_store(&s->workers[i]->stop, 1);
        sb_worker_post(s->workers[i], wake, NULL);
    }
    for (unsigned i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i]->tid, NULL);
}

void sb_server_free(sb_server_t *s)
{
    /* The loops are left to the process exit: h2o 2.2.5 has no loop destructor. */
    free(s->workers);
    free(s->rebalance);
    s->rebalance = NULL;
    sb_metrics_free(s->metrics.registry);
    s->metrics.registry = NULL;
    if (s->auth != NULL)
        sb_auth_free(s->auth);
    s->auth = NULL;
}
