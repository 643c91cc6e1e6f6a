/* The backend side of a switchboard run, in C so that no Node process sits in
 * the measured path: broadcasts and joins are XADDs to <prefix>bus, and the
 * acks scenario's backend reads <prefix>events (XREAD COUNT, BLOCK) and answers
 * every event that asked for an ack with a pipelined XADD op ack; events
 * without an ack id (the events scenario) are handed to sbload.c to count. All on the
 * generator's libevent loop through hiredis' async API. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "lg.h"

static redisAsyncContext *pub;   /* XADDs */
static redisAsyncContext *rd;    /* the blocking XREAD of the acker */
static redisContext *sync_ctx;   /* set-up queries */
static char last_id[64] = "0-0"; /* acker position in <prefix>events */
static int acker_running;

static void on_disconnect(const redisAsyncContext *c, int status)
{
    if (status != REDIS_OK) {
        lg_note_error("redis: %s", c->errstr);
        R.redis_errors++;
    }
    if (c == pub)
        pub = NULL;
    if (c == rd) {
        rd = NULL;
        acker_running = 0;
    }
}

static void on_connect(const redisAsyncContext *c, int status)
{
    if (status != REDIS_OK) {
        lg_note_error("redis connect: %s", c->errstr);
        R.redis_errors++;
        if (c == pub)
            pub = NULL;
        if (c == rd)
            rd = NULL;
    }
}

static redisAsyncContext *open_async(void)
{
    redisAsyncContext *c = redisAsyncConnect(R.cfg.redis_host, R.cfg.redis_port);
    if (c == NULL || c->err) {
        lg_note_error("redis connect: %s", c ? c->errstr : "out of memory");
        if (c)
            redisAsyncFree(c);
        return NULL;
    }
    redisLibeventAttach(c, R.base);
    redisAsyncSetConnectCallback(c, on_connect);
    redisAsyncSetDisconnectCallback(c, on_disconnect);
    return c;
}

int lg_backend_open(void)
{
    struct timeval tv = {5, 0};
    sync_ctx = redisConnectWithTimeout(R.cfg.redis_host, R.cfg.redis_port, tv);
    if (sync_ctx == NULL || sync_ctx->err) {
        lg_note_error("redis %s:%d: %s", R.cfg.redis_host, R.cfg.redis_port, sync_ctx ? sync_ctx->errstr : "oom");
        return -1;
    }
    pub = open_async();
    return pub ? 0 : -1;
}

void lg_backend_close(void)
{
    if (pub)
        redisAsyncDisconnect(pub);
    if (rd)
        redisAsyncDisconnect(rd);
    if (sync_ctx)
        redisFree(sync_ctx);
    sync_ctx = NULL;
}

static void count_reply(redisAsyncContext *c, void *reply, void *priv)
{
    (void)c;
    (void)priv;
    redisReply *r = reply;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        R.redis_errors++;
        if (r)
            lg_note_error("redis: %s", r->str);
    }
}

int lg_backend_publish(const char *msg, size_t n)
{
    if (pub == NULL)
        return -1;
    return redisAsyncCommand(pub, count_reply, NULL, "XADD %sbus MAXLEN ~ 100000 * op emit msg %b", R.cfg.prefix, msg,
                             n) == REDIS_OK
               ? 0
               : -1;
}

int lg_backend_join(char **sids, int n, const char *room)
{
    if (pub == NULL)
        return -1;
    size_t cap = 64 + strlen(room) + (size_t)n * (LG_SID_MAX + 3);
    char *buf = malloc(cap);
    if (buf == NULL)
        return -1;
    size_t len = (size_t)snprintf(buf, cap, "{\"rooms\":[\"%s\"],\"sockets\":[", room);
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s\"%s\"", i ? "," : "", sids[i]);
    len += (size_t)snprintf(buf + len, cap - len, "]}");
    int rc = redisAsyncCommand(pub, count_reply, NULL, "XADD %sbus MAXLEN ~ 100000 * op join msg %b", R.cfg.prefix, buf,
                               len) == REDIS_OK
                 ? 0
                 : -1;
    free(buf);
    return rc;
}

static const redisReply *field(const redisReply *kv, const char *name)
{
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        const redisReply *k = kv->element[i];
        if (k->type == REDIS_REPLY_STRING && strcmp(k->str, name) == 0)
            return kv->element[i + 1];
    }
    return NULL;
}

static void read_more(void);

static void on_events(redisAsyncContext *c, void *reply, void *priv)
{
    (void)c;
    (void)priv;
    redisReply *r = reply;
    if (r == NULL)
        return; /* disconnected */
    if (r->type == REDIS_REPLY_ERROR) {
        lg_note_error("XREAD: %s", r->str);
        R.redis_errors++;
        acker_running = 0;
        return;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        const redisReply *st = r->element[0];
        const redisReply *entries = st->type == REDIS_REPLY_ARRAY && st->elements == 2 ? st->element[1] : NULL;
        for (size_t i = 0; entries && i < entries->elements; i++) {
            const redisReply *e = entries->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
                continue;
            if (e->element[0]->type == REDIS_REPLY_STRING && e->element[0]->len < sizeof(last_id))
                memcpy(last_id, e->element[0]->str, e->element[0]->len + 1);
            const redisReply *kv = e->element[1];
            const redisReply *type = field(kv, "type"), *sock = field(kv, "socket");
            const redisReply *ack = field(kv, "ack_id"), *args = field(kv, "args");
            R.backend_events++;
            if (!type || !sock || !ack || !args || strcmp(type->str, "event") != 0)
                continue;
            if (ack->len == 0) { /* the events scenario: nothing to answer, count it */
                lg_on_stream_event(sock->str, sock->len, args->str, args->len);
                continue;
            }
            char msg[4096];
            int n = snprintf(msg, sizeof(msg), "{\"socket\":\"%s\",\"ack_id\":%s,\"args\":%s}", sock->str, ack->str,
                             args->str);
            if (n <= 0 || (size_t)n >= sizeof(msg))
                continue;
            if (pub && redisAsyncCommand(pub, count_reply, NULL, "XADD %sbus MAXLEN ~ 100000 * op ack msg %b",
                                         R.cfg.prefix, msg, (size_t)n) == REDIS_OK)
                R.backend_acks++;
        }
    }
    if (acker_running)
        read_more();
}

static void read_more(void)
{
    if (rd == NULL)
        return;
    redisAsyncCommand(rd, on_events, NULL, "XREAD COUNT 1000 BLOCK 500 STREAMS %sevents %s", R.cfg.prefix, last_id);
}

int lg_backend_start_acker(void)
{
    if (sync_ctx == NULL)
        return -1;
    /* Start after the newest entry: connect entries of the set-up phase need no answer. */
    redisReply *r = redisCommand(sync_ctx, "XREVRANGE %sevents + - COUNT 1", R.cfg.prefix);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[0]->elements == 2 && r->element[0]->element[0]->len < sizeof(last_id))
        memcpy(last_id, r->element[0]->element[0]->str, r->element[0]->element[0]->len + 1);
    if (r)
        freeReplyObject(r);
    rd = open_async();
    if (rd == NULL)
        return -1;
    acker_running = 1;
    read_more();
    return 0;
}

long long lg_backend_used_memory(void)
{
    if (sync_ctx == NULL)
        return -1;
    redisReply *r = redisCommand(sync_ctx, "INFO memory");
    long long v = -1;
    if (r && r->type == REDIS_REPLY_STRING) {
        const char *p = strstr(r->str, "used_memory:");
        if (p) {
            char *end;
            v = strtoll(p + 12, &end, 10);
            if (end == p + 12)
                v = -1;
        }
    }
    if (r)
        freeReplyObject(r);
    return v;
}
