/*
 * store.c — Redis state changes of sockets (see include/switchboard/store.h).
 * Key names follow docs/redis-keys.md; the Functions check that the keys we
 * pass are the ones they derive, so a mismatch fails loudly, never silently.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/log.h"
#include "switchboard/store.h"

#define MAX_ARGS 24
#define KEYLEN 600

size_t sb_key(const sb_worker_t *w, char *out, size_t outlen, const char *fmt, ...)
{
    int n = snprintf(out, outlen, "%s", w->cfg->redis_prefix);
    if (n < 0 || (size_t)n >= outlen)
        return 0;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(out + n, outlen - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0 || (size_t)(n + m) >= outlen)
        return 0;
    return (size_t)(n + m);
}

typedef struct call {
    sb_worker_t *w;
    sb_store_cb cb;
    void *data;
    const char *what;
} call_t;

static void on_reply(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    call_t *c = data;
    int ok = reply != NULL && reply->type != REDIS_REPLY_ERROR;
    long long value = reply != NULL && reply->type == REDIS_REPLY_INTEGER ? reply->integer : 0;
    if (!ok)
        sb_log(SB_LOG_WARN, "redis call failed", "call", c->what, "error",
               reply != NULL ? reply->str : err != NULL ? err : "unknown", NULL);
    if (c->cb != NULL)
        c->cb(c->w, ok, value, c->data);
    free(c);
}

static int call(sb_worker_t *w, const char *what, sb_store_cb cb, void *data, int argc, const char **argv,
                const size_t *lens)
{
    call_t *c = malloc(sizeof(*c));
    if (c == NULL)
        return SB_ENOMEM;
    c->w = w;
    c->cb = cb;
    c->data = data;
    c->what = what;
    int rv = sb_redis_commandargv(w->cmd, on_reply, c, 0, argc, argv, lens);
    if (rv != 0)
        free(c);
    return rv;
}

typedef struct argv_builder {
    const char *argv[MAX_ARGS];
    size_t lens[MAX_ARGS];
    int argc;
} argv_builder_t;

static void arg(argv_builder_t *b, const char *s, size_t len)
{
    b->argv[b->argc] = s;
    b->lens[b->argc] = len;
    b->argc++;
}

static void args(argv_builder_t *b, const char *s)
{
    arg(b, s, strlen(s));
}

int sb_store_connect(sb_worker_t *w, const char *sid, const char *nsp, const char *user, const char *transport,
                     const char *auth_json, sb_store_cb cb, void *data)
{
    char k1[KEYLEN], k2[KEYLEN], k3[KEYLEN], k4[KEYLEN], k5[KEYLEN], ts[24], maxlen[24];
    if (!sb_key(w, k1, sizeof(k1), "{sock:%s}", sid) || !sb_key(w, k2, sizeof(k2), "{sock:%s}:rooms", sid) ||
        !sb_key(w, k3, sizeof(k3), "{user:%s}:sockets", user) ||
        !sb_key(w, k4, sizeof(k4), "{node:%s}:sockets", w->server->node_id) || !sb_key(w, k5, sizeof(k5), "events"))
        return SB_ETOOBIG;
    snprintf(ts, sizeof(ts), "%" PRIu64, sb_now_ms());
    snprintf(maxlen, sizeof(maxlen), "%" PRIu64, w->cfg->events_maxlen);
    argv_builder_t b = {.argc = 0};
    args(&b, "FCALL");
    args(&b, "sb_connect");
    args(&b, "5");
    args(&b, k1);
    args(&b, k2);
    args(&b, k3);
    args(&b, k4);
    args(&b, k5);
    args(&b, w->cfg->redis_prefix);
    args(&b, sid);
    args(&b, nsp);
    args(&b, user);
    args(&b, w->server->node_id);
    args(&b, transport);
    args(&b, ts);
    args(&b, maxlen);
    args(&b, auth_json);
    return call(w, "sb_connect", cb, data, b.argc, b.argv, b.lens);
}

int sb_store_join(sb_worker_t *w, const char *sid, const char *room, int join, sb_store_cb cb, void *data)
{
    char k1[KEYLEN], k2[KEYLEN];
    if (!sb_key(w, k1, sizeof(k1), "{sock:%s}", sid) || !sb_key(w, k2, sizeof(k2), "{sock:%s}:rooms", sid))
        return SB_ETOOBIG;
    argv_builder_t b = {.argc = 0};
    args(&b, "FCALL");
    args(&b, join ? "sb_join" : "sb_leave");
    args(&b, "2");
    args(&b, k1);
    args(&b, k2);
    args(&b, w->cfg->redis_prefix);
    args(&b, sid);
    args(&b, room);
    return call(w, join ? "sb_join" : "sb_leave", cb, data, b.argc, b.argv, b.lens);
}

int sb_store_disconnect(sb_worker_t *w, const char *sid, const char *reason, sb_store_cb cb, void *data)
{
    char k1[KEYLEN], k2[KEYLEN], k3[KEYLEN], ts[24], maxlen[24];
    if (!sb_key(w, k1, sizeof(k1), "{sock:%s}", sid) || !sb_key(w, k2, sizeof(k2), "{sock:%s}:rooms", sid) ||
        !sb_key(w, k3, sizeof(k3), "events"))
        return SB_ETOOBIG;
    snprintf(ts, sizeof(ts), "%" PRIu64, sb_now_ms());
    snprintf(maxlen, sizeof(maxlen), "%" PRIu64, w->cfg->events_maxlen);
    argv_builder_t b = {.argc = 0};
    args(&b, "FCALL");
    args(&b, "sb_disconnect");
    args(&b, "3");
    args(&b, k1);
    args(&b, k2);
    args(&b, k3);
    args(&b, w->cfg->redis_prefix);
    args(&b, sid);
    args(&b, reason != NULL && reason[0] != '\0' ? reason : "unknown");
    args(&b, ts);
    args(&b, maxlen);
    return call(w, "sb_disconnect", cb, data, b.argc, b.argv, b.lens);
}

int sb_store_event(sb_worker_t *w, const char *nsp, const char *sid, const char *user, const char *event,
                   const char *args_json, size_t args_len, int64_t ack_id, sb_store_cb cb, void *data)
{
    char key[KEYLEN], ts[24], maxlen[24], ack[24];
    if (!sb_key(w, key, sizeof(key), "events"))
        return SB_ETOOBIG;
    snprintf(ts, sizeof(ts), "%" PRIu64, sb_now_ms());
    snprintf(maxlen, sizeof(maxlen), "%" PRIu64, w->cfg->events_maxlen);
    if (ack_id >= 0)
        snprintf(ack, sizeof(ack), "%" PRId64, ack_id);
    else
        ack[0] = '\0';
    argv_builder_t b = {.argc = 0};
    args(&b, "XADD");
    args(&b, key);
    args(&b, "MAXLEN");
    args(&b, "~");
    args(&b, maxlen);
    args(&b, "*");
    args(&b, "type");
    args(&b, "event");
    args(&b, "namespace");
    args(&b, nsp);
    args(&b, "socket");
    args(&b, sid);
    args(&b, "user");
    args(&b, user);
    args(&b, "event");
    args(&b, event);
    args(&b, "args");
    arg(&b, args_json, args_len);
    args(&b, "ack_id");
    args(&b, ack);
    args(&b, "node");
    args(&b, w->server->node_id);
    args(&b, "ts");
    args(&b, ts);
    return call(w, "xadd events", cb, data, b.argc, b.argv, b.lens);
}
