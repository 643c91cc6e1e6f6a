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

#define MAX_ARGS 64
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
    if (m < 0 || (size_t)n + (size_t)m >= outlen)
        return 0;
    return (size_t)n + (size_t)m;
}

/* The hot paths (a client event, a handshake) build their keys and numbers
 * without printf: vsnprintf cost more per event than the rest of the argument
 * building together. Same results as sb_key / "%" PRIu64. */
static size_t key_join(const sb_worker_t *w, char *out, size_t outlen, const char *a, const char *id, const char *b)
{
    const char *parts[4] = {w->cfg->redis_prefix, a, id, b};
    size_t n = 0;
    for (size_t i = 0; i < 4; i++) {
        if (parts[i] == NULL)
            continue;
        size_t l = strlen(parts[i]);
        if (l >= outlen - n)
            return 0;
        memcpy(out + n, parts[i], l);
        n += l;
    }
    out[n] = '\0';
    return n;
}

static void u64_str(char out[24], uint64_t v)
{
    char tmp[24], *p = tmp + sizeof(tmp);
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    size_t n = (size_t)(tmp + sizeof(tmp) - p);
    memcpy(out, p, n);
    out[n] = '\0';
}

typedef struct call {
    sb_worker_t *w;
    double started; /* for switchboard_redis_command_seconds */
    sb_store_cb cb;
    sb_store_limited_cb lcb;
    sb_store_reply_cb rcb;
    void *data;
    const char *what;
} call_t;

static void observe(const call_t *c, const redisReply *reply)
{
    sb_metric_observe(SB_M(c->w)->redis_seconds, c->w->idx, sb_seconds() - c->started);
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        sb_metric_inc(SB_M(c->w)->redis_errors, c->w->idx);
}

static void log_failure(const call_t *c, const redisReply *reply, const char *err)
{
    sb_log(SB_LOG_WARN, "redis call failed", "call", c->what, "error",
           reply != NULL ? reply->str
           : err != NULL ? err
                         : "unknown",
           NULL);
}

static void on_reply(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    call_t *c = data;
    int ok = reply != NULL && reply->type != REDIS_REPLY_ERROR;
    observe(c, reply);
    long long value = reply != NULL && reply->type == REDIS_REPLY_INTEGER ? reply->integer : 0;
    if (!ok)
        log_failure(c, reply, err);
    if (c->cb != NULL)
        c->cb(c->w, ok, value, c->data);
    free(c);
}

/* Replies of the rate-limited Functions: {1, x} allowed, {0, retry_ms} or {-1, retry_ms} limited, an integer
 * (sb_connect without a limit hit) allowed. */
static void on_limited_reply(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    call_t *c = data;
    int status = SB_OK;
    long long retry = 0;
    observe(c, reply);
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        log_failure(c, reply, err);
        status = SB_EIO;
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
               reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[0]->integer <= 0) {
        status = SB_EAGAIN;
        retry = reply->element[1]->type == REDIS_REPLY_INTEGER ? reply->element[1]->integer : 1000;
    }
    c->lcb(c->w, status, retry, c->data);
    free(c);
}

/* One pipelined command on the worker's command connection; `on` gets the reply and calls the one callback set. */
static int send_call(sb_worker_t *w, const char *what, sb_redis_cb on, const call_t *proto, int argc, const char **argv,
                     const size_t *lens)
{
    call_t *c = malloc(sizeof(*c));
    if (c == NULL)
        return SB_ENOMEM;
    *c = *proto;
    c->w = w;
    c->started = sb_seconds();
    c->what = what;
    int rv = sb_redis_commandargv(w->cmd, on, c, 0, argc, argv, lens);
    if (rv != 0)
        free(c);
    return rv;
}

static int call_limited(sb_worker_t *w, const char *what, sb_store_limited_cb cb, void *data, int argc,
                        const char **argv, const size_t *lens)
{
    call_t proto = {.lcb = cb, .data = data};
    return send_call(w, what, on_limited_reply, &proto, argc, argv, lens);
}

static int call(sb_worker_t *w, const char *what, sb_store_cb cb, void *data, int argc, const char **argv,
                const size_t *lens)
{
    call_t proto = {.cb = cb, .data = data};
    return send_call(w, what, on_reply, &proto, argc, argv, lens);
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

static void rate_args(argv_builder_t *b, const sb_rate_t *r, char (*buf)[24])
{
    u64_str(buf[0], r->rate);
    u64_str(buf[1], r->period_ms);
    u64_str(buf[2], r->burst);
    for (int i = 0; i < 3; i++)
        args(b, buf[i]);
}

int sb_store_connect(sb_worker_t *w, const char *sid, const char *nsp, const char *user, const char *transport,
                     const char *auth_json, const char *pid, const char *offset, const char *addr,
                     const char *const *rooms, size_t nrooms, sb_store_limited_cb cb, void *data)
{
    char k1[KEYLEN], k2[KEYLEN], k3[KEYLEN], k4[KEYLEN], k5[KEYLEN], k6[KEYLEN], ts[24], maxlen[24], rate[3][24];
    int limited = addr != NULL && w->cfg->rate_connections.rate > 0;
    if (nrooms > MAX_ARGS - 24)
        return SB_ETOOBIG;
    if (limited && !key_join(w, k6, sizeof(k6), "{rl:addr:", addr, "}"))
        return SB_ETOOBIG;
    if (!key_join(w, k1, sizeof(k1), "{sock:", sid, "}") || !key_join(w, k2, sizeof(k2), "{sock:", sid, "}:rooms") ||
        !key_join(w, k3, sizeof(k3), "{user:", user, "}:sockets") ||
        !key_join(w, k4, sizeof(k4), "{node:", w->server->node_id, "}:sockets") ||
        !key_join(w, k5, sizeof(k5), "events", NULL, NULL))
        return SB_ETOOBIG;
    u64_str(ts, sb_now_ms());
    u64_str(maxlen, w->cfg->events_maxlen);
    argv_builder_t b = {.argc = 0};
    args(&b, "FCALL");
    args(&b, "sb_connect");
    args(&b, limited ? "6" : "5");
    args(&b, k1);
    args(&b, k2);
    args(&b, k3);
    args(&b, k4);
    args(&b, k5);
    if (limited)
        args(&b, k6);
    args(&b, w->cfg->redis_prefix);
    args(&b, sid);
    args(&b, nsp);
    args(&b, user);
    args(&b, w->server->node_id);
    args(&b, transport);
    args(&b, ts);
    args(&b, maxlen);
    args(&b, auth_json);
    args(&b, pid != NULL ? pid : "");
    args(&b, offset != NULL ? offset : "");
    if (limited)
        rate_args(&b, &w->cfg->rate_connections, rate);
    for (size_t i = 0; i < nrooms; i++)
        args(&b, rooms[i]);
    return call_limited(w, "sb_connect", cb, data, b.argc, b.argv, b.lens);
}

int sb_store_join(sb_worker_t *w, const char *sid, const char *room, int join, sb_store_cb cb, void *data)
{
    char k1[KEYLEN], k2[KEYLEN];
    if (!key_join(w, k1, sizeof(k1), "{sock:", sid, "}") || !key_join(w, k2, sizeof(k2), "{sock:", sid, "}:rooms"))
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

int sb_store_disconnect(sb_worker_t *w, const char *sid, const char *reason, uint64_t keep_ms, uint64_t gen,
                        sb_store_cb cb, void *data)
{
    char k1[KEYLEN], k2[KEYLEN], k3[KEYLEN], ts[24], maxlen[24], keep[24], gens[24];
    if (!key_join(w, k1, sizeof(k1), "{sock:", sid, "}") || !key_join(w, k2, sizeof(k2), "{sock:", sid, "}:rooms") ||
        !key_join(w, k3, sizeof(k3), "events", NULL, NULL))
        return SB_ETOOBIG;
    u64_str(ts, sb_now_ms());
    u64_str(maxlen, w->cfg->events_maxlen);
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
    u64_str(keep, keep_ms);
    u64_str(gens, gen);
    args(&b, keep);
    args(&b, gens);
    return call(w, "sb_disconnect", cb, data, b.argc, b.argv, b.lens);
}

static void on_raw_reply(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    call_t *c = data;
    observe(c, reply);
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        log_failure(c, reply, err);
        reply = NULL;
    }
    c->rcb(c->w, reply, c->data);
    free(c);
}

static int call_raw(sb_worker_t *w, const char *what, sb_store_reply_cb cb, void *data, int argc, const char **argv,
                    const size_t *lens)
{
    call_t proto = {.rcb = cb, .data = data};
    return send_call(w, what, on_raw_reply, &proto, argc, argv, lens);
}

int sb_store_recover(sb_worker_t *w, const char *sid, const char *pid, const char *nsp, const char *user,
                     const char *transport, const char *offset, const char *auth_json, sb_store_reply_cb cb, void *data)
{
    char k1[KEYLEN], k2[KEYLEN], k3[KEYLEN], k4[KEYLEN], ts[24], maxlen[24];
    if (!sb_key(w, k1, sizeof(k1), "{sock:%s}", sid) || !sb_key(w, k2, sizeof(k2), "{sock:%s}:rooms", sid) ||
        !sb_key(w, k3, sizeof(k3), "bus") || !sb_key(w, k4, sizeof(k4), "events"))
        return SB_ETOOBIG;
    snprintf(ts, sizeof(ts), "%" PRIu64, sb_now_ms());
    snprintf(maxlen, sizeof(maxlen), "%" PRIu64, w->cfg->events_maxlen);
    argv_builder_t b = {.argc = 0};
    args(&b, "FCALL");
    args(&b, "sb_recover");
    args(&b, "4");
    args(&b, k1);
    args(&b, k2);
    args(&b, k3);
    args(&b, k4);
    args(&b, w->cfg->redis_prefix);
    args(&b, sid);
    args(&b, pid);
    args(&b, nsp);
    args(&b, user != NULL ? user : "");
    args(&b, w->server->node_id);
    args(&b, transport);
    args(&b, ts);
    args(&b, maxlen);
    args(&b, offset != NULL ? offset : "");
    args(&b, auth_json);
    return call_raw(w, "sb_recover", cb, data, b.argc, b.argv, b.lens);
}

int sb_store_bus_range(sb_worker_t *w, const char *after, const char *upto, unsigned count, sb_store_reply_cb cb,
                       void *data)
{
    char key[KEYLEN], start[48], n[16];
    if (!sb_key(w, key, sizeof(key), "bus"))
        return SB_ETOOBIG;
    int len = snprintf(start, sizeof(start), "(%s", after);
    if (len < 0 || (size_t)len >= sizeof(start))
        return SB_EINVAL;
    snprintf(n, sizeof(n), "%u", count);
    const char *argv[] = {"XRANGE", key, start, upto, "COUNT", n};
    size_t lens[6];
    for (size_t i = 0; i < 6; i++)
        lens[i] = strlen(argv[i]);
    return call_raw(w, "bus replay", cb, data, 6, argv, lens);
}

int sb_store_event(sb_worker_t *w, const char *nsp, const char *sid, const char *user, const char *event,
                   const char *args_json, size_t args_len, int64_t ack_id, int write, sb_store_limited_cb cb,
                   void *data)
{
    char key[KEYLEN], ks[KEYLEN], ku[KEYLEN], ts[24], maxlen[24], ack[24], n[4], rs[3][24], ru[3][24];
    const sb_rate_t *per_sock = &w->cfg->rate_socket_events, *per_user = &w->cfg->rate_user_events;
    int nb = (per_sock->rate > 0) + (per_user->rate > 0);
    if (!write && nb == 0) {
        cb(w, SB_OK, 0, data); /* nothing to write, nothing to limit */
        return 0;
    }
    if (!key_join(w, key, sizeof(key), "events", NULL, NULL) || !key_join(w, ks, sizeof(ks), "{rl:sock:", sid, "}") ||
        !key_join(w, ku, sizeof(ku), "{rl:user:", user, "}"))
        return SB_ETOOBIG;
    u64_str(ts, sb_now_ms());
    u64_str(maxlen, write ? w->cfg->events_maxlen : 0);
    n[0] = (char)('0' + nb); /* 0..2 buckets */
    n[1] = '\0';
    if (ack_id >= 0)
        u64_str(ack, (uint64_t)ack_id);
    else
        ack[0] = '\0';
    char nkeys[4] = {(char)('1' + nb), '\0'};
    argv_builder_t b = {.argc = 0};
    if (nb == 0) {
        /* No bucket to take from: what sb_event would do is one XADD, and a plain XADD costs Redis a fraction of a
         * Function call (no Lua, no argument checks). Its reply (the entry id) reads as "allowed". */
        args(&b, "XADD");
        args(&b, key);
        args(&b, "MAXLEN");
        args(&b, "~");
        args(&b, maxlen);
        args(&b, "*");
    } else {
        args(&b, "FCALL");
        args(&b, "sb_event");
        args(&b, nkeys);
        args(&b, key);
    }
    if (per_sock->rate > 0)
        args(&b, ks);
    if (per_user->rate > 0)
        args(&b, ku);
    if (nb > 0) {
        args(&b, ts);
        args(&b, maxlen);
        args(&b, n);
    }
    if (per_sock->rate > 0)
        rate_args(&b, per_sock, rs);
    if (per_user->rate > 0)
        rate_args(&b, per_user, ru);
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
    return call_limited(w, nb == 0 ? "XADD events" : "sb_event", cb, data, b.argc, b.argv, b.lens);
}

int sb_store_ratelimit(sb_worker_t *w, const char *kind, const char *id, const sb_rate_t *r, sb_store_limited_cb cb,
                       void *data)
{
    if (r->rate == 0) {
        cb(w, SB_OK, 0, data);
        return 0;
    }
    char key[KEYLEN], now[24], rate[3][24];
    if (!sb_key(w, key, sizeof(key), "{rl:%s:%s}", kind, id))
        return SB_ETOOBIG;
    snprintf(now, sizeof(now), "%" PRIu64, sb_now_ms());
    argv_builder_t b = {.argc = 0};
    args(&b, "FCALL");
    args(&b, "sb_ratelimit");
    args(&b, "1");
    args(&b, key);
    args(&b, now);
    args(&b, "1");
    rate_args(&b, r, rate);
    return call_limited(w, "sb_ratelimit", cb, data, b.argc, b.argv, b.lens);
}

int sb_store_inbox_read(sb_worker_t *w, const char *user, const char *nsp, const char *after, unsigned count,
                        sb_store_reply_cb cb, void *data)
{
    char key[KEYLEN], n[24], age[24];
    if (!sb_key(w, key, sizeof(key), "{user:%s}:inbox", user))
        return SB_ETOOBIG;
    snprintf(n, sizeof(n), "%u", count);
    snprintf(age, sizeof(age), "%" PRIu64, w->cfg->inbox_max_age_ms);
    argv_builder_t b = {.argc = 0};
    args(&b, "FCALL");
    args(&b, "sb_inbox_read");
    args(&b, "1");
    args(&b, key);
    args(&b, w->cfg->redis_prefix);
    args(&b, user);
    args(&b, nsp);
    args(&b, after);
    args(&b, n);
    args(&b, age);
    return call_raw(w, "sb_inbox_read", cb, data, b.argc, b.argv, b.lens);
}

int sb_store_inbox_del(sb_worker_t *w, const char *user, const char *id)
{
    char key[KEYLEN];
    if (!sb_key(w, key, sizeof(key), "{user:%s}:inbox", user))
        return SB_ETOOBIG;
    const char *argv[] = {"XDEL", key, id};
    size_t lens[] = {4, strlen(key), strlen(id)};
    return call(w, "XDEL inbox", NULL, NULL, 3, argv, lens);
}
