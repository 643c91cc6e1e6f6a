/*
 * bus.c — reading `<prefix>bus` and applying its entries (see include/switchboard/bus.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/api.h"
#include "switchboard/bus.h"
#include "switchboard/log.h"
#include "switchboard/session.h"
#include "switchboard/socketio.h"

static void read_next(sb_worker_t *w);

/* The common op ack msg a backend writes, {"socket":"…","ack_id":N,"args":[…]} (members in any order, args
 * optional), read without jansson: the socket id without escapes, the id as plain digits, the args in the form
 * sb_sio_json_plain accepts (what jansson would parse and write back byte for byte). Returns 1 and applies it;
 * 0 for anything else (whitespace, other members, reals, escapes…), which sb_bus_apply then parses as before, so
 * what is refused, and why, does not change. */
static int apply_ack_plain(sb_worker_t *w, const char *m, size_t n)
{
    const char *sid = NULL, *args = "[]";
    size_t sidlen = 0, args_len = 2, i = 1;
    int64_t id = -1;
    int have_args = 0;
    if (n < 2 || m[0] != '{' || m[n - 1] != '}')
        return 0;
    for (;;) {
        if (n - i >= 10 && sid == NULL && memcmp(m + i, "\"socket\":\"", 10) == 0) {
            size_t k = i + 10;
            while (k < n && m[k] != '"' && m[k] != '\\' && (unsigned char)m[k] >= 0x20 && (unsigned char)m[k] < 0x7f)
                k++;
            if (k >= n || m[k] != '"')
                return 0;
            sid = m + i + 10;
            sidlen = k - (i + 10);
            i = k + 1;
        } else if (n - i >= 9 && id < 0 && memcmp(m + i, "\"ack_id\":", 9) == 0) {
            size_t k = i + 9, start = k;
            int64_t v = 0;
            while (k < n && m[k] >= '0' && m[k] <= '9' && k - start < 18)
                v = v * 10 + (m[k++] - '0');
            if (k == start || (m[start] == '0' && k - start > 1) || (k < n && m[k] >= '0' && m[k] <= '9'))
                return 0; /* none, a leading zero, or too long to be sure of: jansson decides */
            id = v;
            i = k;
        } else if (n - i >= 8 && !have_args && memcmp(m + i, "\"args\":[", 8) == 0) {
            /* the array ends where the plain scan of it ends: find it by trying the candidates that close it */
            size_t start = i + 7, depth = 0, k = start;
            int in_str = 0;
            for (; k < n; k++) {
                char c = m[k];
                if (in_str) {
                    if (c == '\\')
                        k++;
                    else if (c == '"')
                        in_str = 0;
                } else if (c == '"') {
                    in_str = 1;
                } else if (c == '[' || c == '{') {
                    depth++;
                } else if (c == ']' || c == '}') {
                    if (--depth == 0)
                        break;
                }
            }
            if (k >= n || m[k] != ']' || !sb_sio_json_plain(m + start, k + 1 - start))
                return 0;
            args = m + start;
            args_len = k + 1 - start;
            have_args = 1;
            i = k + 1;
        } else {
            return 0;
        }
        if (i == n - 1 && m[i] == '}')
            break;
        if (i >= n - 1 || m[i] != ',')
            return 0;
        i++;
    }
    if (sid == NULL || id < 0)
        return 0;
    sb_session_apply_ack_raw(w, sid, sidlen, id, args, args_len);
    return 1;
}

int sb_bus_apply(sb_worker_t *w, const sb_bus_entry_t *e)
{
    if (e->oplen == 3 && memcmp(e->op, "ack", 3) == 0 && apply_ack_plain(w, e->msg, e->msglen))
        return 0;
    json_error_t jerr;
    json_t *m = json_loadb(e->msg, e->msglen, JSON_ALLOW_NUL, &jerr);
    const char *op = e->op;
    size_t oplen = e->oplen;
    const char *why = NULL;
    int rv;
    if (m == NULL || !json_is_object(m)) {
        why = "msg is not a JSON object";
        rv = SB_EINVAL;
    } else if (oplen == 4 && memcmp(op, "emit", 4) == 0) {
        rv = sb_session_apply_emit(w, m, e, &why);
    } else if (oplen == 4 && memcmp(op, "join", 4) == 0) {
        rv = sb_session_apply_join(w, m, 1, &why);
    } else if (oplen == 5 && memcmp(op, "leave", 5) == 0) {
        rv = sb_session_apply_join(w, m, 0, &why);
    } else if (oplen == 10 && memcmp(op, "disconnect", 10) == 0) {
        rv = sb_session_apply_disconnect(w, m, &why);
    } else if (oplen == 3 && memcmp(op, "ack", 3) == 0) {
        rv = sb_session_apply_ack(w, m, &why);
    } else {
        why = "unknown op";
        rv = SB_EINVAL;
    }
    json_decref(m);
    if (rv != 0 && w->idx == 0) /* every worker sees the entry; one log line is enough */
        sb_log(SB_LOG_WARN, "bus entry skipped", "why", why != NULL ? why : sb_strerror(rv), NULL);
    return rv;
}

/* An entry of this worker's reply stream: a client's answer to a REST emit-with-ack. */
static void apply_reply(sb_worker_t *w, const redisReply *entry)
{
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 || entry->element[0]->type != REDIS_REPLY_STRING)
        return;
    const redisReply *id = entry->element[0];
    if (id->len < sizeof(w->reply_last_id)) {
        memcpy(w->reply_last_id, id->str, id->len);
        w->reply_last_id[id->len] = '\0';
    }
    if (entry->element[1]->type == REDIS_REPLY_ARRAY)
        sb_api_on_reply(w, entry->element[1]);
}

int sb_bus_entry_parse(const redisReply *entry, sb_bus_entry_t *out)
{
    memset(out, 0, sizeof(*out));
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 || entry->element[0]->type != REDIS_REPLY_STRING ||
        entry->element[1]->type != REDIS_REPLY_ARRAY)
        return SB_EINVAL;
    const redisReply *fields = entry->element[1];
    out->id = entry->element[0]->str;
    out->idlen = entry->element[0]->len;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i], *v = fields->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (k->len == 2 && memcmp(k->str, "op", 2) == 0) {
            out->op = v->str;
            out->oplen = v->len;
        } else if (k->len == 3 && memcmp(k->str, "msg", 3) == 0) {
            out->msg = v->str;
            out->msglen = v->len;
        } else if (k->len == 5 && memcmp(k->str, "inbox", 5) == 0) {
            out->inbox = v->str;
            out->inboxlen = v->len;
        }
    }
    return out->op != NULL && out->msg != NULL ? 0 : SB_EINVAL;
}

static void apply_entry(sb_worker_t *w, const redisReply *entry)
{
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 || entry->element[0]->type != REDIS_REPLY_STRING)
        return;
    const redisReply *id = entry->element[0];
    if (id->len < sizeof(w->bus_last_id)) {
        memcpy(w->bus_last_id, id->str, id->len);
        w->bus_last_id[id->len] = '\0';
    }
    atomic_fetch_add(&w->stats.bus_entries, 1);
    sb_metric_inc(SB_M(w)->bus_entries, w->idx);
    /* Bus delivery latency: the entry id's time (when it was written) to now, when its frames are queued. The
     * writer's clock is Redis's: on one host, or with synced clocks, this is the backend-to-socket delay. */
    char *dash = memchr(id->str, '-', id->len);
    if (dash != NULL) {
        uint64_t at = strtoull(id->str, NULL, 10), now = sb_now_ms();
        if (now >= at)
            sb_metric_observe(SB_M(w)->bus_delivery, w->idx, (double)(now - at) / 1000.0);
    }
    sb_bus_entry_t be;
    if (sb_bus_entry_parse(entry, &be) != 0) {
        if (w->idx == 0)
            sb_log(SB_LOG_WARN, "bus entry skipped", "why", "missing op or msg field", "id", w->bus_last_id, NULL);
        return;
    }
    sb_session_backlog_push(w, &be);
    sb_bus_apply(w, &be);
}

static void on_read(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    sb_worker_t *w = data;
    w->bus_reading = 0;
    if (reply == NULL) {
        /* The connection dropped; sb_bus_on_state resumes reading after the reconnect. */
        sb_log(SB_LOG_WARN, "bus read failed", "error", err != NULL ? err : "unknown", NULL);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        sb_log(SB_LOG_ERROR, "bus read error", "error", reply->str, NULL);
    } else if (reply->type == REDIS_REPLY_ARRAY) {
        for (size_t s = 0; s < reply->elements; s++) {
            const redisReply *stream = reply->element[s];
            if (stream->type != REDIS_REPLY_ARRAY || stream->elements != 2 ||
                stream->element[1]->type != REDIS_REPLY_ARRAY)
                continue;
            const redisReply *name = stream->element[0], *entries = stream->element[1];
            int is_reply = name->type == REDIS_REPLY_STRING && strlen(w->reply_key) == name->len &&
                           memcmp(name->str, w->reply_key, name->len) == 0;
            for (size_t e = 0; e < entries->elements; e++) {
                if (is_reply)
                    apply_reply(w, entries->element[e]);
                else
                    apply_entry(w, entries->element[e]);
            }
        }
    }
    if (!atomic_load(&w->stop))
        read_next(w);
}

static void read_next(sb_worker_t *w)
{
    if (w->bus_reading || !w->bus_ready || !sb_redis_connected(w->bus))
        return;
    char key[600], count[24], block[24];
    if (!sb_key(w, key, sizeof(key), "bus"))
        return;
    snprintf(count, sizeof(count), "%llu", (unsigned long long)w->cfg->bus_count);
    snprintf(block, sizeof(block), "%llu", (unsigned long long)w->cfg->bus_block_ms);
    /* The worker's reply stream is read in the same XREAD, so a REST call waiting for a client's ack is answered
     * as soon as the ack is written, without another connection. */
    const char *argv[] = {"XREAD",   "COUNT", count,        "BLOCK",        block,
                          "STREAMS", key,     w->reply_key, w->bus_last_id, w->reply_last_id};
    size_t lens[SB_ARRAY_SIZE(argv)];
    for (size_t i = 0; i < SB_ARRAY_SIZE(argv); i++)
        lens[i] = strlen(argv[i]);
    if (sb_redis_commandargv(w->bus, on_read, w, w->cfg->bus_block_ms + w->cfg->redis_timeout_ms,
                             (int)SB_ARRAY_SIZE(argv), argv, lens) == 0)
        w->bus_reading = 1;
}

static void on_last_id(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    (void)err;
    sb_worker_t *w = data;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY)
        return; /* retried on the next (re)connect */
    if (reply->elements > 0 && reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements >= 1 &&
        reply->element[0]->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[0]->element[0]->len < sizeof(w->bus_last_id)) {
        memcpy(w->bus_last_id, reply->element[0]->element[0]->str, reply->element[0]->element[0]->len);
        w->bus_last_id[reply->element[0]->element[0]->len] = '\0';
    } else {
        snprintf(w->bus_last_id, sizeof(w->bus_last_id), "0-0");
    }
    w->bus_ready = 1;
    read_next(w);
}

void sb_bus_on_state(sb_worker_t *w, int connected)
{
    if (!connected) {
        w->bus_reading = 0;
        return;
    }
    if (w->bus_ready) {
        /* Resume after the last entry we applied: nothing published meanwhile is lost (within MAXLEN). */
        read_next(w);
        return;
    }
    char key[600];
    if (!sb_key(w, key, sizeof(key), "bus"))
        return;
    const char *argv[] = {"XREVRANGE", key, "+", "-", "COUNT", "1"};
    size_t lens[SB_ARRAY_SIZE(argv)];
    for (size_t i = 0; i < SB_ARRAY_SIZE(argv); i++)
        lens[i] = strlen(argv[i]);
    sb_redis_commandargv(w->bus, on_last_id, w, 0, (int)SB_ARRAY_SIZE(argv), argv, lens);
}
