/*
 * webhook.c — client events POSTed to backends (see include/switchboard/webhook.h).
 *
 * Built on h2o 2.2.5's HTTP/1 client with one keep-alive socket pool per URL
 * and worker. A call lives in exactly one of three places of its hook:
 *   queue    waiting for one of the --webhook-max-inflight slots;
 *   inflight holding a slot: an attempt on the wire, or waiting for its retry
 *            (then also linked in the worker's backoff list, sorted by due time).
 * Nothing starts from inside sb_webhooks_post: calls are dispatched from a
 * zero-delay timer, so user callbacks never run inside the post that made them
 * and h2o never re-enters itself. h2o 2.2.5 timers have one fixed duration per
 * h2o_timeout_t, so variable backoff delays are served by a short tick that only
 * runs while some retry is waiting.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>

#include "switchboard/common.h"
#include "switchboard/log.h"
#include "switchboard/webhook.h"
#include "webhook_private.h"

/* Resolution of retry delays: the tick only runs while a retry waits. */
#define TICK_MS 5
/* Idle keep-alive sockets are closed after this; below the 5 s default of
 * Node's http server so we rarely reuse a socket the backend is closing. */
#define POOL_IDLE_MS 3000

/* ---------------------------------------------------------------- pure parts */

int sb_webhooks_glob(const char *pat, const char *s)
{
    /* Greedy matching with one backtrack point (the last '*'): linear enough
     * for event names and never recursive. */
    const char *star = NULL, *resume = NULL;
    while (*s != '\0') {
        if (*pat == '*') {
            star = pat++;
            resume = s;
        } else if (*pat == '?' || *pat == *s) {
            pat++;
            s++;
        } else if (star != NULL) {
            pat = star + 1;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (*pat == '*')
        pat++;
    return *pat == '\0';
}

uint64_t sb_webhooks_backoff_ms(uint64_t base_ms, uint64_t max_ms, unsigned retry, uint64_t rnd)
{
    if (base_ms == 0)
        base_ms = 1;
    if (max_ms < base_ms)
        max_ms = base_ms;
    uint64_t d = base_ms;
    for (unsigned i = 1; i < retry && d < max_ms; i++)
        d = d > max_ms / 2 ? max_ms : d * 2;
    if (d > max_ms)
        d = max_ms;
    d -= rnd % (d / 4 + 1);
    return d == 0 ? 1 : d;
}

int sb_webhooks_breaker_init(sb_breaker_t *b, unsigned threshold, uint64_t window_ms, uint64_t cooldown_ms)
{
    memset(b, 0, sizeof(*b));
    b->threshold = threshold == 0 ? 1 : threshold;
    b->window_ms = window_ms;
    b->cooldown_ms = cooldown_ms;
    b->fails = calloc(b->threshold, sizeof(*b->fails));
    return b->fails == NULL ? SB_ENOMEM : 0;
}

void sb_webhooks_breaker_free(sb_breaker_t *b)
{
    free(b->fails);
    b->fails = NULL;
}

int sb_webhooks_breaker_would_allow(const sb_breaker_t *b, uint64_t now)
{
    switch (b->state) {
    case SB_BREAKER_CLOSED:
        return 1;
    case SB_BREAKER_OPEN:
        return now >= b->opened_at + b->cooldown_ms;
    default:
        return 0;
    }
}

int sb_webhooks_breaker_acquire(sb_breaker_t *b, uint64_t now)
{
    if (b->state == SB_BREAKER_CLOSED)
        return 1;
    if (b->state == SB_BREAKER_OPEN && now >= b->opened_at + b->cooldown_ms) {
        b->state = SB_BREAKER_HALF_OPEN;
        return 2;
    }
    return 0;
}

static void breaker_open(sb_breaker_t *b, uint64_t now)
{
    b->state = SB_BREAKER_OPEN;
    b->opened_at = now;
    b->nfails = 0;
    b->next = 0;
}

void sb_webhooks_breaker_record(sb_breaker_t *b, int ok, int is_probe, uint64_t now)
{
    if (b->state == SB_BREAKER_HALF_OPEN) {
        if (!is_probe)
            return;
        if (ok) {
            b->state = SB_BREAKER_CLOSED;
            b->nfails = 0;
            b->next = 0;
        } else {
            breaker_open(b, now);
        }
        return;
    }
    if (b->state != SB_BREAKER_CLOSED || ok)
        return;
    b->fails[b->next] = now;
    b->next = (b->next + 1) % b->threshold;
    if (b->nfails < b->threshold)
        b->nfails++;
    /* With the ring full, b->next is the oldest of the last `threshold` failures. */
    if (b->nfails == b->threshold && now - b->fails[b->next] < b->window_ms)
        breaker_open(b, now);
}

void sb_webhooks_url_free(sb_webhook_url_t *u)
{
    free(u->host);
    free(u->hostport);
    free(u->path);
    *u = (sb_webhook_url_t){0};
}

static char *dup_range(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

int sb_webhooks_parse_url(const char *url, sb_webhook_url_t *out)
{
    memset(out, 0, sizeof(*out));
    const char *p;
    if (strncmp(url, "http://", 7) == 0) {
        p = url + 7;
        out->port = 80;
    } else if (strncmp(url, "https://", 8) == 0) {
        p = url + 8;
        out->is_ssl = 1;
        out->port = 443;
    } else {
        return SB_EINVAL;
    }
    for (const char *c = p; *c != '\0'; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return SB_EINVAL; /* would break the request head */
    size_t alen = strcspn(p, "/?#");
    const char *auth = p, *rest = p + alen;
    if (alen == 0 || memchr(auth, '@', alen) != NULL)
        return SB_EINVAL;
    const char *host = auth, *portstr = NULL;
    size_t hlen;
    if (auth[0] == '[') {
        const char *close = memchr(auth, ']', alen);
        if (close == NULL || close == auth + 1)
            return SB_EINVAL;
        host = auth + 1;
        hlen = (size_t)(close - host);
        if (close + 1 < auth + alen) {
            if (close[1] != ':')
                return SB_EINVAL;
            portstr = close + 2;
        }
    } else {
        const char *colon = memchr(auth, ':', alen);
        hlen = colon != NULL ? (size_t)(colon - auth) : alen;
        if (colon != NULL)
            portstr = colon + 1;
    }
    if (hlen == 0)
        return SB_EINVAL;
    if (portstr != NULL) {
        size_t plen = (size_t)(auth + alen - portstr);
        if (plen == 0 || plen > 5)
            return SB_EINVAL;
        unsigned long v = 0;
        for (size_t i = 0; i < plen; i++) {
            if (!isdigit((unsigned char)portstr[i]))
                return SB_EINVAL;
            v = v * 10 + (unsigned long)(portstr[i] - '0');
        }
        if (v == 0 || v > 65535)
            return SB_EINVAL;
        out->port = (uint16_t)v;
    }
    /* The fragment never goes on the wire. */
    size_t plen = strcspn(rest, "#");
    out->host = dup_range(host, hlen);
    out->hostport = dup_range(auth, alen);
    if (plen == 0 || rest[0] != '/') {
        /* "http://h?q" -> "/?q" */
        out->path = malloc(plen + 2);
        if (out->path != NULL) {
            out->path[0] = '/';
            memcpy(out->path + 1, rest, plen);
            out->path[plen + 1] = '\0';
        }
    } else {
        out->path = dup_range(rest, plen);
    }
    if (out->host == NULL || out->hostport == NULL || out->path == NULL) {
        sb_webhooks_url_free(out);
        return SB_ENOMEM;
    }
    return 0;
}

/* ---------------------------------------------------------------- state */

typedef struct hook hook_t;

typedef struct call {
    h2o_linklist_t link;    /* in hook->queue or hook->inflight */
    h2o_linklist_t backoff; /* in wh->backoff while waiting for a retry */
    hook_t *hook;
    sb_webhook_cb cb;
    void *data;
    char *req; /* request head followed by the body, one allocation */
    size_t head_len, body_len;
    h2o_iovec_t reqbufs[2];
    h2o_http1client_t *client; /* non-NULL while h2o holds an attempt of ours */
    h2o_timeout_entry_t deadline;
    uint64_t due; /* when the pending retry starts */
    unsigned attempts;
    int status; /* last HTTP status seen */
    int is_probe;
    sb_buf_t resp;
} call_t;

struct hook {
    sb_webhooks_t *wh;
    char *glob;
    char *url;
    sb_webhook_url_t u;
    h2o_socketpool_t pool;
    h2o_http1client_ctx_t ctx; /* per hook: https hooks carry their own TLS context */
    SSL_CTX *ssl_ctx;          /* NULL for http:// */
    int pool_ready;            /* pool initialised: dispose it */
    sb_breaker_t breaker;
    h2o_linklist_t queue, inflight;
    size_t nqueue, ninflight;
    sb_webhook_stats_t stats;
};

struct sb_webhooks {
    h2o_loop_t *loop;
    const sb_config_t *cfg;
    hook_t *hooks;
    size_t nhooks;
    h2o_multithread_queue_t *mqueue;
    h2o_multithread_receiver_t getaddr_receiver;
    h2o_timeout_t io_to, deadline_to, kick_to, tick_to;
    h2o_timeout_entry_t kick, tick;
    h2o_linklist_t backoff; /* calls waiting for a retry, ascending due */
    uint64_t rng;
    int destroying;
};

enum outcome { OUT_OK, OUT_FATAL, OUT_RETRY };

static void start_attempt(call_t *c);

static uint64_t next_rand(sb_webhooks_t *wh)
{
    /* xorshift64: jitter needs spread, not secrecy */
    wh->rng ^= wh->rng << 13;
    wh->rng ^= wh->rng >> 7;
    wh->rng ^= wh->rng << 17;
    return wh->rng;
}

static void arm_kick(sb_webhooks_t *wh)
{
    if (!wh->destroying && !h2o_timeout_is_linked(&wh->kick))
        h2o_timeout_link(wh->loop, &wh->kick_to, &wh->kick);
}

static void arm_tick(sb_webhooks_t *wh)
{
    if (!wh->destroying && !h2o_linklist_is_empty(&wh->backoff) && !h2o_timeout_is_linked(&wh->tick))
        h2o_timeout_link(wh->loop, &wh->tick_to, &wh->tick);
}

static void free_call(call_t *c)
{
    free(c->req);
    sb_buf_free(&c->resp);
    free(c);
}

/* The call's final outcome: releases its slot, tells the caller, frees it.
 * `counter` is the statistic this outcome adds to. */
static void finish(call_t *c, const char *err, unsigned long *counter)
{
    hook_t *h = c->hook;
    sb_webhooks_t *wh = h->wh;
    h2o_linklist_unlink(&c->link);
    if (h2o_linklist_is_linked(&c->backoff))
        h2o_linklist_unlink(&c->backoff);
    h2o_timeout_unlink(&c->deadline);
    h->ninflight--;
    (*counter)++;
    c->cb(c->data, err, c->status, err == NULL ? (c->resp.base != NULL ? c->resp.base : "") : NULL,
          err == NULL ? c->resp.len : 0);
    free_call(c);
    if (h->nqueue != 0)
        arm_kick(wh);
}

/* One attempt ended. h2o has already let go of c->client (or we cancelled it). */
static void attempt_done(call_t *c, enum outcome out, const char *err)
{
    hook_t *h = c->hook;
    sb_webhooks_t *wh = h->wh;
    uint64_t now = h2o_now(wh->loop);
    h2o_timeout_unlink(&c->deadline);
    if (out == OUT_RETRY && !c->is_probe && c->attempts <= wh->cfg->webhook_retries && !wh->destroying) {
        c->due = now + sb_webhooks_backoff_ms(wh->cfg->webhook_backoff_ms, wh->cfg->webhook_backoff_max_ms, c->attempts,
                                              next_rand(wh));
        h->stats.retries++;
        /* Keep the list sorted by due time; scan from the tail, where new
         * (later) entries usually belong. */
        h2o_linklist_t *pos = wh->backoff.prev;
        while (pos != &wh->backoff && H2O_STRUCT_FROM_MEMBER(call_t, backoff, pos)->due > c->due)
            pos = pos->prev;
        h2o_linklist_insert(pos->next, &c->backoff);
        arm_tick(wh);
        return;
    }
    /* A 4xx or 3xx means the backend is up and answering: only 5xx, timeouts
     * and connection errors count against its circuit. */
    sb_webhooks_breaker_record(&h->breaker, out != OUT_RETRY, c->is_probe, now);
    finish(c, err, err == NULL ? &h->stats.calls_ok : &h->stats.calls_failed);
}

static void on_deadline(h2o_timeout_entry_t *entry)
{
    call_t *c = H2O_STRUCT_FROM_MEMBER(call_t, deadline, entry);
    if (c->client != NULL) {
        h2o_http1client_t *client = c->client;
        c->client = NULL;
        h2o_http1client_cancel(client);
    }
    attempt_done(c, OUT_RETRY, "timeout");
}

static const char *classify(int status, enum outcome *out)
{
    if (status >= 200 && status <= 299) {
        *out = OUT_OK;
        return NULL;
    }
    if (status >= 500) {
        *out = OUT_RETRY;
        return "http 5xx";
    }
    *out = OUT_FATAL;
    return status >= 400 ? "http 4xx" : "unexpected status";
}

static int on_body(h2o_http1client_t *client, const char *errstr)
{
    call_t *c = client->data;
    if (errstr != NULL && errstr != h2o_http1client_error_is_eos) {
        c->client = NULL;
        attempt_done(c, OUT_RETRY, strstr(errstr, "timeout") != NULL ? "timeout" : "connection failed");
        return -1;
    }
    h2o_buffer_t *in = client->sock->input;
    if (in->size != 0) {
        if (sb_buf_append(&c->resp, in->bytes, in->size) != 0) {
            /* h2o closes the connection (no keep-alive) when we return non-zero
             * before the end, and frees the client either way. */
            c->client = NULL;
            attempt_done(c, OUT_FATAL, "response too large");
            return -1;
        }
        h2o_buffer_consume(&client->sock->input, in->size);
    }
    if (errstr == h2o_http1client_error_is_eos) {
        c->client = NULL;
        enum outcome out;
        const char *err = classify(c->status, &out);
        attempt_done(c, out, err);
    }
    return 0;
}

static h2o_http1client_body_cb on_head(h2o_http1client_t *client, const char *errstr, int minor_version, int status,
                                       h2o_iovec_t msg, h2o_header_t *headers, size_t num_headers, int rlen)
{
    (void)minor_version, (void)msg, (void)headers, (void)num_headers, (void)rlen;
    call_t *c = client->data;
    if (errstr != NULL && errstr != h2o_http1client_error_is_eos) {
        c->client = NULL;
        attempt_done(c, OUT_RETRY, strstr(errstr, "timeout") != NULL ? "timeout" : "connection failed");
        return NULL;
    }
    c->status = status;
    sb_buf_free(&c->resp);
    if (errstr == h2o_http1client_error_is_eos) {
        /* 204 and friends: no body follows; h2o frees the client after we return. */
        c->client = NULL;
        enum outcome out;
        const char *err = classify(status, &out);
        attempt_done(c, out, err);
        return NULL;
    }
    /* Error bodies are read too (and dropped at the end) so the connection can
     * be kept alive. */
    return on_body;
}

static h2o_http1client_head_cb on_connect(h2o_http1client_t *client, const char *errstr, h2o_iovec_t **reqbufs,
                                          size_t *reqbufcnt, int *method_is_head)
{
    call_t *c = client->data;
    if (errstr != NULL) {
        c->client = NULL;
        attempt_done(c, OUT_RETRY, strstr(errstr, "timeout") != NULL ? "timeout" : "connection failed");
        return NULL;
    }
    *reqbufs = c->reqbufs;
    *reqbufcnt = c->body_len != 0 ? 2 : 1;
    *method_is_head = 0;
    return on_head;
}

static void start_attempt(call_t *c)
{
    hook_t *h = c->hook;
    sb_webhooks_t *wh = h->wh;
    c->attempts++;
    c->status = 0;
    sb_buf_free(&c->resp);
    c->reqbufs[0] = h2o_iovec_init(c->req, c->head_len);
    c->reqbufs[1] = h2o_iovec_init(c->req + c->head_len, c->body_len);
    h2o_timeout_link(wh->loop, &wh->deadline_to, &c->deadline);
    /* h2o may call on_connect synchronously (a pooled socket, or a connect(2)
     * that fails at once); c->client is set before that can matter because
     * h2o writes *client before it connects. */
    h2o_http1client_connect_with_pool(&c->client, c, &h->ctx, &h->pool, on_connect);
}

/* Dispatches queued calls into free slots. */
static void on_kick(h2o_timeout_entry_t *entry)
{
    sb_webhooks_t *wh = H2O_STRUCT_FROM_MEMBER(sb_webhooks_t, kick, entry);
    for (size_t i = 0; i < wh->nhooks; i++) {
        hook_t *h = &wh->hooks[i];
        while (h->nqueue != 0 && h->ninflight < wh->cfg->webhook_max_inflight) {
            call_t *c = H2O_STRUCT_FROM_MEMBER(call_t, link, h->queue.next);
            h2o_linklist_unlink(&c->link);
            h->nqueue--;
            h2o_linklist_insert(&h->inflight, &c->link);
            h->ninflight++;
            int r = sb_webhooks_breaker_acquire(&h->breaker, h2o_now(wh->loop));
            if (r == 0) {
                /* The circuit opened while this call waited. */
                finish(c, "circuit open", &h->stats.rejected_open);
                continue;
            }
            c->is_probe = r == 2;
            start_attempt(c);
        }
    }
}

/* Starts the retries that are due. */
static void on_tick(h2o_timeout_entry_t *entry)
{
    sb_webhooks_t *wh = H2O_STRUCT_FROM_MEMBER(sb_webhooks_t, tick, entry);
    uint64_t now = h2o_now(wh->loop);
    while (!h2o_linklist_is_empty(&wh->backoff)) {
        call_t *c = H2O_STRUCT_FROM_MEMBER(call_t, backoff, wh->backoff.next);
        if (c->due > now)
            break;
        h2o_linklist_unlink(&c->backoff);
        if (c->hook->breaker.state != SB_BREAKER_CLOSED) {
            /* Other calls opened the circuit meanwhile: do not hammer it. */
            finish(c, "circuit open", &c->hook->stats.calls_failed);
            continue;
        }
        start_attempt(c);
    }
    arm_tick(wh);
}

/* ---------------------------------------------------------------- public API */

static int init_hook(sb_webhooks_t *wh, hook_t *h, const char *spec)
{
    const sb_config_t *cfg = wh->cfg;
    const char *eq = strchr(spec, '=');
    h->wh = wh;
    h2o_linklist_init_anchor(&h->queue);
    h2o_linklist_init_anchor(&h->inflight);
    if (eq == NULL || eq == spec)
        return SB_EINVAL;
    h->glob = dup_range(spec, (size_t)(eq - spec));
    h->url = strdup(eq + 1);
    if (h->glob == NULL || h->url == NULL)
        return SB_ENOMEM;
    int rc = sb_webhooks_parse_url(h->url, &h->u);
    if (rc != 0)
        return rc;
    if ((rc = sb_webhooks_breaker_init(&h->breaker, cfg->webhook_breaker_failures, cfg->webhook_breaker_window_ms,
                                       cfg->webhook_breaker_cooldown_ms)) != 0)
        return rc;
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof(sin6));
    if (inet_pton(AF_INET6, h->u.host, &sin6.sin6_addr) == 1) {
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons(h->u.port);
        h2o_socketpool_init_by_address(&h->pool, (struct sockaddr *)&sin6, sizeof(sin6), h->u.is_ssl, SIZE_MAX);
    } else {
        /* IPv4 literals are connected to directly by h2o; names go through its
         * asynchronous resolver threads (wh->getaddr_receiver). */
        h2o_socketpool_init_by_hostport(&h->pool, h2o_iovec_init(h->u.host, strlen(h->u.host)), h->u.port, h->u.is_ssl,
                                        SIZE_MAX);
    }
    h2o_socketpool_set_timeout(&h->pool, wh->loop, POOL_IDLE_MS);
    h->pool_ready = 1;
    h->ctx.loop = wh->loop;
    h->ctx.getaddr_receiver = &wh->getaddr_receiver;
    h->ctx.io_timeout = &wh->io_to;
    h->ctx.websocket_timeout = NULL;
    if (h->u.is_ssl) {
        /* One TLS context per https hook so OpenSSL itself checks the
         * certificate against this hook's host name (or IP address), on top of
         * the chain check against the system CAs (SSL_CERT_FILE/SSL_CERT_DIR
         * are honoured). */
        if ((h->ssl_ctx = SSL_CTX_new(TLS_client_method())) == NULL)
            return SB_ENOMEM;
        SSL_CTX_set_default_verify_paths(h->ssl_ctx);
        SSL_CTX_set_verify(h->ssl_ctx, SSL_VERIFY_PEER, NULL);
        X509_VERIFY_PARAM *param = SSL_CTX_get0_param(h->ssl_ctx);
        struct in_addr a4;
        int ok = inet_pton(AF_INET, h->u.host, &a4) == 1 || inet_pton(AF_INET6, h->u.host, &sin6.sin6_addr) == 1
                     ? X509_VERIFY_PARAM_set1_ip_asc(param, h->u.host)
                     : X509_VERIFY_PARAM_set1_host(param, h->u.host, 0);
        if (ok != 1)
            return SB_EINVAL;
        h->ctx.ssl_ctx = h->ssl_ctx;
    }
    return 0;
}

static void free_hook(hook_t *h)
{
    if (h->pool_ready)
        h2o_socketpool_dispose(&h->pool);
    if (h->ssl_ctx != NULL)
        SSL_CTX_free(h->ssl_ctx);
    sb_webhooks_breaker_free(&h->breaker);
    sb_webhooks_url_free(&h->u);
    free(h->glob);
    free(h->url);
}

sb_webhooks_t *sb_webhooks_create(h2o_loop_t *loop, const sb_config_t *cfg)
{
    if (cfg->webhooks.count == 0)
        return NULL;
    sb_webhooks_t *wh = calloc(1, sizeof(*wh));
    if (wh == NULL)
        return NULL;
    wh->loop = loop;
    wh->cfg = cfg;
    h2o_linklist_init_anchor(&wh->backoff);
    wh->rng = (sb_mono_ms() ^ (uint64_t)(uintptr_t)wh) | 1;
    wh->hooks = calloc(cfg->webhooks.count, sizeof(*wh->hooks));
    if (wh->hooks == NULL) {
        free(wh);
        return NULL;
    }
    for (size_t i = 0; i < cfg->webhooks.count; i++) {
        hook_t *h = &wh->hooks[i];
        int rc = init_hook(wh, h, cfg->webhooks.items[i]);
        if (rc != 0) {
            char idx[24];
            snprintf(idx, sizeof(idx), "%zu", i + 1);
            /* The URL is not logged: it may carry a secret in its query. */
            sb_log(SB_LOG_ERROR, "webhooks disabled: bad --webhook setting", "#webhook", idx, "reason", sb_strerror(rc),
                   NULL);
            free_hook(h);
            for (size_t j = 0; j < i; j++) /* hooks before this one (wh->nhooks == i) */
                free_hook(&wh->hooks[j]);
            free(wh->hooks);
            free(wh);
            return NULL;
        }
        wh->nhooks++;
    }
    wh->mqueue = h2o_multithread_create_queue(loop);
    h2o_multithread_register_receiver(wh->mqueue, &wh->getaddr_receiver, h2o_hostinfo_getaddr_receiver);
    /* h2o's own per-phase I/O timeout stays above our per-attempt deadline so
     * that ours always decides (and names the failure "timeout"). */
    h2o_timeout_init(loop, &wh->io_to, cfg->webhook_timeout_ms + 1000);
    h2o_timeout_init(loop, &wh->deadline_to, cfg->webhook_timeout_ms);
    h2o_timeout_init(loop, &wh->kick_to, 0);
    h2o_timeout_init(loop, &wh->tick_to, TICK_MS);
    wh->kick.cb = on_kick;
    wh->tick.cb = on_tick;
    return wh;
}

static void cancel_all(h2o_linklist_t *list)
{
    while (!h2o_linklist_is_empty(list)) {
        call_t *c = H2O_STRUCT_FROM_MEMBER(call_t, link, list->next);
        /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): the analyzer loses h2o list invariants after an unlink */
        if (c->client != NULL) {
            h2o_http1client_t *client = c->client;
            c->client = NULL;
            h2o_http1client_cancel(client);
        }
        finish(c, "shutdown", &c->hook->stats.calls_failed);
    }
}

void sb_webhooks_destroy(sb_webhooks_t *wh)
{
    if (wh == NULL)
        return;
    wh->destroying = 1;
    for (size_t i = 0; i < wh->nhooks; i++) {
        hook_t *h = &wh->hooks[i];
        /* Queued calls hold no slot: give them one so finish() balances. */
        h->ninflight += h->nqueue;
        h->nqueue = 0;
        cancel_all(&h->queue);
        cancel_all(&h->inflight);
    }
    h2o_timeout_unlink(&wh->kick);
    h2o_timeout_unlink(&wh->tick);
    h2o_timeout_dispose(wh->loop, &wh->io_to);
    h2o_timeout_dispose(wh->loop, &wh->deadline_to);
    h2o_timeout_dispose(wh->loop, &wh->kick_to);
    h2o_timeout_dispose(wh->loop, &wh->tick_to);
    for (size_t i = 0; i < wh->nhooks; i++)
        free_hook(&wh->hooks[i]);
    h2o_multithread_unregister_receiver(wh->mqueue, &wh->getaddr_receiver);
    h2o_multithread_destroy_queue(wh->mqueue);
    /* h2o 2.2.5's evloop flavour closes the queue's pipe but leaves its memory to us. */
    free(wh->mqueue);
    free(wh->hooks);
    free(wh);
}

int sb_webhooks_match(const sb_webhooks_t *wh, const char *name, int lifecycle)
{
    if (wh == NULL || name == NULL)
        return -1;
    if (lifecycle && !wh->cfg->webhook_lifecycle)
        return -1;
    for (size_t i = 0; i < wh->nhooks; i++)
        if (sb_webhooks_glob(wh->hooks[i].glob, name))
            return (int)i;
    return -1;
}

int sb_webhooks_is_open(const sb_webhooks_t *wh, int idx)
{
    if (wh == NULL || idx < 0 || (size_t)idx >= wh->nhooks)
        return 0;
    return !sb_webhooks_breaker_would_allow(&wh->hooks[idx].breaker, h2o_now(wh->loop));
}

static int key_ok(const char *key)
{
    size_t n = 0;
    for (; key[n] != '\0'; n++)
        if ((unsigned char)key[n] < 0x21 || (unsigned char)key[n] > 0x7e || n >= SB_WEBHOOK_MAX_KEY)
            return 0;
    return n != 0;
}

int sb_webhooks_post(sb_webhooks_t *wh, int idx, const char *key, const char *body, size_t len, sb_webhook_cb cb,
                     void *data)
{
    if (wh == NULL || idx < 0 || (size_t)idx >= wh->nhooks || key == NULL || !key_ok(key) || cb == NULL ||
        (body == NULL && len != 0) || wh->destroying)
        return SB_EINVAL;
    hook_t *h = &wh->hooks[idx];
    if (!sb_webhooks_breaker_would_allow(&h->breaker, h2o_now(wh->loop))) {
        h->stats.rejected_open++;
        return SB_EAGAIN;
    }
    if (h->nqueue >= wh->cfg->webhook_queue) {
        h->stats.rejected_queue++;
        return SB_EAGAIN;
    }
    call_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return SB_ENOMEM;
    sb_buf_t head;
    sb_buf_init(&head, 0);
    int rc = 0;
    rc |= sb_buf_append_str(&head, "POST ");
    rc |= sb_buf_append_str(&head, h->u.path);
    rc |= sb_buf_append_str(&head, " HTTP/1.1\r\nHost: ");
    rc |= sb_buf_append_str(&head, h->u.hostport);
    rc |= sb_buf_append_str(&head, "\r\nContent-Type: application/json\r\nContent-Length: ");
    rc |= sb_buf_append_u64(&head, len);
    rc |= sb_buf_append_str(&head, "\r\nIdempotency-Key: ");
    rc |= sb_buf_append_str(&head, key);
    rc |= sb_buf_append_str(&head, "\r\nUser-Agent: switchboard/" SB_VERSION "\r\n\r\n");
    size_t head_len = head.len;
    if (rc == 0 && len != 0)
        rc = sb_buf_append(&head, body, len);
    if (rc != 0) {
        sb_buf_free(&head);
        free(c);
        return SB_ENOMEM;
    }
    c->req = sb_buf_steal(&head);
    c->head_len = head_len;
    c->body_len = len;
    c->hook = h;
    c->cb = cb;
    c->data = data;
    sb_buf_init(&c->resp, SB_WEBHOOK_MAX_RESPONSE);
    c->deadline.cb = on_deadline;
    h2o_linklist_insert(&h->queue, &c->link);
    h->nqueue++;
    arm_kick(wh);
    return 0;
}

int sb_webhooks_stats(const sb_webhooks_t *wh, int idx, sb_webhook_stats_t *out)
{
    if (wh == NULL || idx < 0 || (size_t)idx >= wh->nhooks || out == NULL)
        return SB_EINVAL;
    *out = wh->hooks[idx].stats;
    out->state = wh->hooks[idx].breaker.state;
    return 0;
}

size_t sb_webhooks_count(const sb_webhooks_t *wh)
{
    return wh == NULL ? 0 : wh->nhooks;
}

const char *sb_webhooks_url(const sb_webhooks_t *wh, int idx)
{
    if (wh == NULL || idx < 0 || (size_t)idx >= wh->nhooks)
        return NULL;
    return wh->hooks[idx].url;
}
