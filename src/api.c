/*
 * api.c — the REST API for backends (see include/switchboard/api.h).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <openssl/evp.h>
#include "switchboard/api.h"
#include "switchboard/durable.h"
#include "switchboard/log.h"
#include "switchboard/rebalance.h"
#include "switchboard/session.h"
#include "switchboard/socketio.h"
#include "switchboard/store.h"

#define MAX_BATCH 100
#define MAX_NAME 512 /* room, user and socket names in paths and bodies */
#define DEFAULT_ROOM_LIMIT 1000
#define MAX_KEYS 1024

/* ---- API keys ------------------------------------------------------------------------------------------------ */

static pthread_rwlock_t keys_lock = PTHREAD_RWLOCK_INITIALIZER;
static sb_strlist_t keys; /* guarded by keys_lock */

static void strlist_clear(sb_strlist_t *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

static int strlist_add(sb_strlist_t *l, const char *s, size_t len)
{
    if (l->count >= MAX_KEYS)
        return SB_ETOOBIG;
    char **n = realloc(l->items, (l->count + 1) * sizeof(*n));
    if (n == NULL)
        return SB_ENOMEM;
    l->items = n;
    if ((n[l->count] = strndup(s, len)) == NULL)
        return SB_ENOMEM;
    l->count++;
    return 0;
}

/* Builds the key set from the flags/env and the keys file. */
static int load_keys(const sb_config_t *cfg, sb_strlist_t *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < cfg->api_keys.count; i++)
        if (strlist_add(out, cfg->api_keys.items[i], strlen(cfg->api_keys.items[i])) != 0) {
            *why = "too many API keys";
            strlist_clear(out);
            return SB_EINVAL;
        }
    if (cfg->api_keys_file == NULL)
        return 0;
    FILE *f = fopen(cfg->api_keys_file, "r");
    if (f == NULL) {
        *why = "cannot open --api-keys-file";
        strlist_clear(out);
        return SB_EINVAL;
    }
    char line[1024];
    while (fgets(line, sizeof(line), f) != NULL) {
        char *s = line, *e;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '#' || *s == '\n' || *s == '\0')
            continue;
        for (e = s; *e != '\0' && !isspace((unsigned char)*e); e++)
            ;
        if (e - s < 8) {
            *why = "--api-keys-file holds a key shorter than 8 characters";
            (void)fclose(f);
            strlist_clear(out);
            return SB_EINVAL;
        }
        if (strlist_add(out, s, (size_t)(e - s)) != 0) {
            *why = "too many API keys";
            (void)fclose(f);
            strlist_clear(out);
            return SB_EINVAL;
        }
    }
    (void)fclose(f);
    return 0;
}

int sb_api_key_valid(const char *key, size_t len)
{
    int found = 0;
    pthread_rwlock_rdlock(&keys_lock);
    for (size_t i = 0; i < keys.count; i++) {
        /* Constant time for a given candidate: every byte of both is looked at. */
        const char *k = keys.items[i];
        size_t kl = strlen(k);
        unsigned char diff = (unsigned char)(kl != len);
        for (size_t j = 0; j < kl; j++)
            diff |= (unsigned char)(k[j] ^ (j < len ? key[j] : 0));
        found |= diff == 0;
    }
    pthread_rwlock_unlock(&keys_lock);
    return found;
}

int sb_api_reload_keys(sb_server_t *s, const char **why)
{
    sb_strlist_t fresh;
    if (load_keys(s->cfg, &fresh, why) != 0)
        return SB_EINVAL;
    if (fresh.count == 0) {
        *why = "no API key left after reload; keeping the previous keys";
        strlist_clear(&fresh);
        return SB_EINVAL;
    }
    pthread_rwlock_wrlock(&keys_lock);
    sb_strlist_t old = keys;
    keys = fresh;
    pthread_rwlock_unlock(&keys_lock);
    strlist_clear(&old);
    return 0;
}

/* ---- per-request state ---------------------------------------------------------------------------------------- */

typedef struct api_call api_call_t;
typedef void (*api_done_cb)(api_call_t *c, redisReply *reply, const char *err, size_t idx);

struct api_call {
    sb_worker_t *w;
    h2o_req_t *req; /* NULL once the client is gone */
    int disposed;
    int finished; /* answered (or given up); freed when finished && disposed */
    api_done_cb cb;
    size_t pending;  /* Redis replies still expected */
    json_t *results; /* batch */
    /* emit-with-ack */
    char request_id[24];
    uint64_t deadline;
    h2o_linklist_t ack_link;
};

typedef struct api_worker {
    sb_map_t waiting;    /* request_id -> api_call_t (emit-with-ack) */
    h2o_linklist_t acks; /* the same calls, for the deadline sweep */
    h2o_timeout_t sweep_to;
    h2o_timeout_entry_t sweep;
} api_worker_t;

static void call_free_if_done(api_call_t *c)
{
    if (c->finished && c->disposed) {
        json_decref(c->results);
        free(c);
    }
}

static void on_dispose(void *p)
{
    api_call_t *c = *(api_call_t **)p;
    c->req = NULL;
    c->disposed = 1;
    call_free_if_done(c);
}

static api_call_t *call_new(sb_worker_t *w, h2o_req_t *req)
{
    api_call_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->w = w;
    c->req = req;
    api_call_t **slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), on_dispose);
    *slot = c;
    return c;
}

static const char *reason_of(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 504:
        return "Gateway Timeout";
    default:
        return "Service Unavailable";
    }
}

static void send_json(h2o_req_t *req, int status, json_t *body)
{
    sb_worker_t *w = (sb_worker_t *)((char *)req->conn->ctx - offsetof(sb_worker_t, ctx));
    sb_metric_inc(SB_M(w)->rest[status < 400 ? 0 : status < 500 ? 1 : 2], w->idx);
    char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);
    req->res.status = status;
    req->res.reason = reason_of(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    if (text == NULL) {
        req->res.status = 503;
        h2o_send_inline(req, H2O_STRLIT("{\"error\":{\"code\":\"unavailable\",\"message\":\"out of memory\"}}"));
        return;
    }
    h2o_send_inline(req, text, strlen(text));
    free(text);
}

static json_t *error_body(const char *code, const char *message, const char *field)
{
    json_t *e = json_pack("{s:s,s:s}", "code", code, "message", message);
    if (field != NULL)
        json_object_set_new(e, "field", json_string(field));
    return json_pack("{s:o}", "error", e);
}

static int status_of_code(const char *code)
{
    if (strcmp(code, "invalid_argument") == 0)
        return 400;
    if (strcmp(code, "unauthorized") == 0)
        return 401;
    if (strcmp(code, "not_found") == 0)
        return 404;
    if (strcmp(code, "payload_too_large") == 0)
        return 413;
    if (strcmp(code, "timeout") == 0)
        return 504;
    if (strcmp(code, "rate_limited") == 0)
        return 429;
    return 503;
}

static void send_error(h2o_req_t *req, const char *code, const char *message, const char *field)
{
    send_json(req, status_of_code(code), error_body(code, message, field));
}

/* Answers the call (if its client is still there) and marks it finished. */
static void call_answer(api_call_t *c, int status, json_t *body)
{
    if (c->finished) {
        json_decref(body);
        return;
    }
    c->finished = 1;
    if (c->req != NULL)
        send_json(c->req, status, body);
    else
        json_decref(body);
    call_free_if_done(c);
}

/* A command in flight: the call it belongs to and its index within the call. */
typedef struct {
    api_call_t *c;
    size_t idx;
} call_cmd_t;

static void on_redis(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    call_cmd_t *pc = data;
    api_call_t *c = pc->c;
    size_t idx = pc->idx;
    free(pc);
    c->pending--;
    c->cb(c, reply, err, idx);
}

static int call_redis(api_call_t *c, size_t idx, int argc, const char **argv, const size_t *lens)
{
    call_cmd_t *pc = malloc(sizeof(*pc));
    if (pc == NULL)
        return SB_ENOMEM;
    pc->c = c;
    pc->idx = idx;
    int rv = sb_redis_commandargv(c->w->cmd, on_redis, pc, 0, argc, argv, lens);
    if (rv != 0)
        free(pc);
    else
        c->pending++;
    return rv;
}

static void lens_of(const char **argv, size_t *lens, int argc)
{
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
}

/* ---- validation ----------------------------------------------------------------------------------------------- */

/* A validation failure; the field name is copied, since the JSON it came from is freed before the answer. */
typedef struct verr {
    const char *field; /* NULL, or fieldbuf */
    char fieldbuf[128];
    char message[160];
} verr_t;

static int fail(verr_t *e, const char *field, const char *message)
{
    snprintf(e->fieldbuf, sizeof(e->fieldbuf), "%s", field);
    e->field = e->fieldbuf;
    snprintf(e->message, sizeof(e->message), "%s", message);
    return SB_EINVAL;
}

static int only_fields(json_t *o, const char *const *allowed, verr_t *e)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        int ok = 0;
        for (size_t i = 0; allowed[i] != NULL && !ok; i++)
            ok = strcmp(k, allowed[i]) == 0;
        if (!ok) {
            char m[160];
            snprintf(m, sizeof(m), "unknown field \"%.100s\"", k);
            return fail(e, k, m);
        }
    }
    return 0;
}

/* Optional array of non-empty strings; *present set when it has items. */
static int names(json_t *o, const char *field, int *present, verr_t *e)
{
    json_t *a = json_object_get(o, field);
    *present = 0;
    if (a == NULL || json_is_null(a))
        return 0;
    if (!json_is_array(a))
        return fail(e, field, "must be an array of strings");
    size_t i;
    json_t *it;
    json_array_foreach(a, i, it)
    {
        if (!json_is_string(it) || json_string_length(it) == 0 || json_string_length(it) > MAX_NAME)
            return fail(e, field, "must be an array of non-empty strings of at most 512 bytes");
    }
    *present = json_array_size(a) > 0;
    return 0;
}

static int check_nsp(const sb_config_t *cfg, json_t *o, verr_t *e)
{
    json_t *n = json_object_get(o, "namespace");
    if (n == NULL || json_is_null(n))
        return 0;
    if (!json_is_string(n))
        return fail(e, "namespace", "must be a string");
    const char *v = json_string_value(n);
    if (strcmp(v, "/") == 0)
        return 0;
    for (size_t i = 0; i < cfg->namespaces.count; i++)
        if (strcmp(cfg->namespaces.items[i], v) == 0)
            return 0;
    return fail(e, "namespace", "is not a namespace this server serves");
}

static int check_event(json_t *o, verr_t *e)
{
    json_t *ev = json_object_get(o, "event");
    if (!json_is_string(ev) || json_string_length(ev) == 0)
        return fail(e, "event", "is required: a non-empty string");
    if (sb_sio_is_reserved_event(json_string_value(ev)))
        return fail(e, "event", "is a name reserved by Socket.IO");
    json_t *args = json_object_get(o, "args");
    if (args != NULL && !json_is_null(args) && !json_is_array(args))
        return fail(e, "args", "must be an array");
    return 0;
}

static int check_bool(json_t *o, const char *field, verr_t *e)
{
    json_t *b = json_object_get(o, field);
    if (b != NULL && !json_is_null(b) && !json_is_boolean(b))
        return fail(e, field, "must be true or false");
    return 0;
}

/* A durable emit is stored per user (CONTRACT §6): users only, and never volatile. Called after the generic
 * checks, so every field present has its type. */
static int validate_durable(json_t *o, verr_t *e)
{
    static const char *const targets[] = {"rooms", "sockets", "except_rooms", "except_sockets"};
    int p;
    for (size_t i = 0; i < SB_ARRAY_SIZE(targets); i++) {
        if (names(o, targets[i], &p, e) == 0 && p) {
            char m[160];
            snprintf(m, sizeof(m), "a durable emit targets users only: remove \"%s\" or durable", targets[i]);
            return fail(e, "durable", m);
        }
    }
    if (json_is_true(json_object_get(o, "volatile")))
        return fail(e, "durable", "an emit cannot be both durable and volatile");
    json_t *users = json_object_get(o, "users");
    if (!json_is_array(users) || json_array_size(users) == 0)
        return fail(e, "durable", "a durable emit needs a non-empty \"users\" list (it is kept in their inboxes)");
    if (json_array_size(users) > SB_DURABLE_MAX_USERS)
        return fail(e, "users", "a durable emit targets at most 1000 users");
    return 0;
}

static int validate_emit(const sb_config_t *cfg, json_t *o, verr_t *e)
{
    static const char *const allowed[] = {"namespace",    "event",          "args",     "rooms",   "users", "sockets",
                                          "except_rooms", "except_sockets", "volatile", "durable", NULL};
    int p;
    if (only_fields(o, allowed, e) || check_nsp(cfg, o, e) || check_event(o, e) || names(o, "rooms", &p, e) ||
        names(o, "users", &p, e) || names(o, "sockets", &p, e) || names(o, "except_rooms", &p, e) ||
        names(o, "except_sockets", &p, e) || check_bool(o, "volatile", e) || check_bool(o, "durable", e))
        return SB_EINVAL;
    if (json_is_true(json_object_get(o, "durable")))
        return validate_durable(o, e);
    return 0;
}

static int validate_join(const sb_config_t *cfg, json_t *o, verr_t *e)
{
    static const char *const allowed[] = {"namespace", "rooms", "sockets", "users", NULL};
    int rooms, socks, users;
    if (only_fields(o, allowed, e) || check_nsp(cfg, o, e) || names(o, "rooms", &rooms, e) ||
        names(o, "sockets", &socks, e) || names(o, "users", &users, e))
        return SB_EINVAL;
    if (!rooms)
        return fail(e, "rooms", "is required: the rooms to join or leave");
    if (!socks && !users)
        return fail(e, "sockets", "sockets or users is required: whose sockets join or leave");
    return 0;
}

static int validate_disconnect(const sb_config_t *cfg, json_t *o, verr_t *e)
{
    static const char *const allowed[] = {"namespace", "rooms", "sockets", "users", "reason", NULL};
    int rooms, socks, users;
    if (only_fields(o, allowed, e) || check_nsp(cfg, o, e) || names(o, "rooms", &rooms, e) ||
        names(o, "sockets", &socks, e) || names(o, "users", &users, e))
        return SB_EINVAL;
    if (!rooms && !socks && !users)
        return fail(e, "sockets", "sockets, users or rooms is required");
    json_t *r = json_object_get(o, "reason");
    if (r != NULL && !json_is_null(r) && (!json_is_string(r) || json_string_length(r) > 256))
        return fail(e, "reason", "must be a string of at most 256 bytes");
    return 0;
}

static int validate_ack(json_t *o, verr_t *e)
{
    static const char *const allowed[] = {"socket", "ack_id", "args", NULL};
    if (only_fields(o, allowed, e))
        return SB_EINVAL;
    json_t *s = json_object_get(o, "socket"), *id = json_object_get(o, "ack_id"), *a = json_object_get(o, "args");
    if (!json_is_string(s) || json_string_length(s) == 0 || json_string_length(s) > MAX_NAME)
        return fail(e, "socket", "is required: the socket id of the event's entry");
    if (!json_is_integer(id) || json_integer_value(id) < 0)
        return fail(e, "ack_id", "is required: a non-negative integer (the entry's ack_id)");
    if (a != NULL && !json_is_null(a) && !json_is_array(a))
        return fail(e, "args", "must be an array");
    return 0;
}

/* op name -> validator; returns NULL for an unknown op. */
static const char *validate_op(const sb_config_t *cfg, const char *op, json_t *o, verr_t *e, int *rv)
{
    if (strcmp(op, "emit") == 0)
        *rv = validate_emit(cfg, o, e);
    else if (strcmp(op, "join") == 0 || strcmp(op, "leave") == 0)
        *rv = validate_join(cfg, o, e);
    else if (strcmp(op, "disconnect") == 0)
        *rv = validate_disconnect(cfg, o, e);
    else if (strcmp(op, "ack") == 0)
        *rv = validate_ack(o, e);
    else
        return NULL;
    return op;
}

int sb_api_validate(const sb_config_t *cfg, const char *op, const char *body, size_t len, char *field, size_t fieldlen,
                    char *message, size_t messagelen)
{
    verr_t e = {0};
    json_error_t jerr;
    int rv = 0;
    json_t *o = json_loadb(body, len, JSON_ALLOW_NUL, &jerr);
    if (o == NULL)
        rv = fail(&e, "body", "invalid JSON");
    else if (!json_is_object(o))
        rv = fail(&e, "body", "the body must be a JSON object");
    else if (validate_op(cfg, op, o, &e, &rv) == NULL)
        rv = fail(&e, "op", "unknown operation");
    json_decref(o);
    if (rv != 0) {
        snprintf(field, fieldlen, "%s", e.field != NULL ? e.field : "");
        snprintf(message, messagelen, "%s", e.message);
    }
    return rv;
}

/* ---- bus writes ------------------------------------------------------------------------------------------------ */

/* A durable emit (validated): FCALL sb_emit_durable writes every user's inbox entry and the bus entry in one
 * step; its reply is {bus id, dropped by maxlen, dropped by age, users that dropped} (see bus_written_id). */
static int fcall_durable(api_call_t *c, size_t idx, json_t *msg, const char *text)
{
    json_t *users = json_object_get(msg, "users"), *a = json_object_get(msg, "args");
    size_t n = json_array_size(users);
    if (n == 0 || n > SB_DURABLE_MAX_USERS)
        return SB_EINVAL;
    char *argtext = json_is_array(a) ? json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER) : strdup("[]");
    size_t argc = 10 + n;
    const char **argv = calloc(argc, sizeof(*argv));
    size_t *lens = calloc(argc, sizeof(*lens));
    char(*inbox_keys)[600] = calloc(n + 1, sizeof(*inbox_keys));
    char nkeys[24], maxlen[24], age[24];
    int rv = SB_ENOMEM;
    if (argtext == NULL || argv == NULL || lens == NULL || inbox_keys == NULL)
        goto out;
    rv = SB_ETOOBIG;
    if (!sb_key(c->w, inbox_keys[0], sizeof(inbox_keys[0]), "bus"))
        goto out;
    for (size_t i = 0; i < n; i++)
        if (!sb_key(c->w, inbox_keys[i + 1], sizeof(inbox_keys[0]), "{user:%s}:inbox",
                    json_string_value(json_array_get(users, i))))
            goto out;
    snprintf(nkeys, sizeof(nkeys), "%zu", n + 1);
    snprintf(maxlen, sizeof(maxlen), "%" PRIu64, c->w->cfg->inbox_maxlen);
    snprintf(age, sizeof(age), "%" PRIu64, c->w->cfg->inbox_max_age_ms);
    size_t k = 0;
    argv[k++] = "FCALL";
    argv[k++] = "sb_emit_durable";
    argv[k++] = nkeys;
    for (size_t i = 0; i <= n; i++)
        argv[k++] = inbox_keys[i];
    argv[k++] = c->w->cfg->redis_prefix;
    argv[k++] = text;
    argv[k++] = argtext;
    argv[k++] = maxlen;
    argv[k++] = age;
    lens_of(argv, lens, (int)k);
    rv = call_redis(c, idx, (int)k, argv, lens);
out:
    free(argtext);
    free(argv);
    free(lens);
    free(inbox_keys);
    return rv;
}

/* The bus entry id of a write's reply: a plain XADD answers the id, sb_emit_durable an array that also counts
 * what was stored and what the inbox bounds dropped (counted and logged here, where the drop happens). */
static int bus_written_id(api_call_t *c, const redisReply *reply, const char **id, size_t *len)
{
    if (reply == NULL)
        return 0;
    if (reply->type == REDIS_REPLY_STRING) {
        *id = reply->str;
        *len = reply->len;
        return 1;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 5 || reply->element[0]->type != REDIS_REPLY_STRING)
        return 0;
    for (size_t i = 1; i < 5; i++)
        if (reply->element[i]->type != REDIS_REPLY_INTEGER)
            return 0;
    *id = reply->element[0]->str;
    *len = reply->element[0]->len;
    sb_worker_t *w = c->w;
    long long by_len = reply->element[1]->integer, by_age = reply->element[2]->integer;
    sb_metric_add(SB_M(w)->durable_stored, w->idx, (double)reply->element[4]->integer);
    if (by_len > 0)
        sb_metric_add(SB_M(w)->inbox_dropped[0], w->idx, (double)by_len);
    if (by_age > 0)
        sb_metric_add(SB_M(w)->inbox_dropped[1], w->idx, (double)by_age);
    if (by_len > 0 || by_age > 0) {
        char users[24], l[24], a[24];
        snprintf(users, sizeof(users), "%lld", reply->element[3]->integer);
        snprintf(l, sizeof(l), "%lld", by_len);
        snprintf(a, sizeof(a), "%lld", by_age);
        sb_log(SB_LOG_WARN, "durable emit dropped old inbox entries", "users", users, "dropped_maxlen", l,
               "dropped_age", a, NULL);
    }
    return 1;
}

static int xadd_bus(api_call_t *c, size_t idx, const char *op, json_t *msg)
{
    char key[600];
    if (!sb_key(c->w, key, sizeof(key), "bus"))
        return SB_ETOOBIG;
    json_object_del(msg, "op"); /* batch items name their op; the bus entry carries it as a field */
    char *text = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text == NULL)
        return SB_ENOMEM;
    if (op != NULL && strcmp(op, "emit") == 0 && json_is_true(json_object_get(msg, "durable"))) {
        int drv = fcall_durable(c, idx, msg, text);
        free(text);
        return drv;
    }
    const char *argv[] = {"XADD", key, "*", "op", op, "msg", text};
    size_t lens[7];
    lens_of(argv, lens, 7);
    int rv = call_redis(c, idx, 7, argv, lens);
    free(text);
    return rv;
}

/* The reason a Redis call failed, for a 503's message. */
static const char *failure_text(const redisReply *reply, const char *err)
{
    return reply != NULL && reply->type == REDIS_REPLY_ERROR ? reply->str : err != NULL ? err : "redis error";
}

/* Why a write failed, for the 503's message. Without any reply (the connection dropped or timed out after the command
 * was sent) the outcome is unknown: Redis may have applied it, so the message says so — a 503 is not a promise
 * that nothing happened, only a 202 is a promise that it did. */
static const char *write_failure(const redisReply *reply, const char *err, char *buf, size_t len)
{
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
        return reply->str;
    if (reply != NULL)
        return "unexpected reply from redis";
    snprintf(buf, len, "redis did not answer (%s): the write may have been applied", err != NULL ? err : "unknown");
    return buf;
}

static void on_bus_written(api_call_t *c, redisReply *reply, const char *err, size_t idx)
{
    (void)idx;
    const char *id = NULL;
    size_t idlen = 0;
    if (!bus_written_id(c, reply, &id, &idlen)) {
        char msg[160];
        call_answer(c, 503, error_body("unavailable", write_failure(reply, err, msg, sizeof(msg)), NULL));
        return;
    }
    call_answer(c, 202, json_pack("{s:s#}", "id", id, (int)idlen));
}

static void on_batch_written(api_call_t *c, redisReply *reply, const char *err, size_t idx)
{
    json_t *r;
    const char *id = NULL;
    size_t idlen = 0;
    char msg[160];
    if (!bus_written_id(c, reply, &id, &idlen))
        r = json_pack("{s:i,s:o}", "status", 503, "error",
                      json_pack("{s:s,s:s}", "code", "unavailable", "message",
                                write_failure(reply, err, msg, sizeof(msg))));
    else
        r = json_pack("{s:i,s:s#}", "status", 202, "id", id, (int)idlen);
    json_array_set_new(c->results, idx, r);
    if (c->pending == 0)
        call_answer(c, 200, json_pack("{s:O}", "results", c->results));
}

/* ---- emit to one socket and wait for its ack ---------------------------------------------------------------------- */

static void waiting_remove(api_call_t *c)
{
    api_worker_t *aw = c->w->api;
    if (h2o_linklist_is_linked(&c->ack_link)) {
        h2o_linklist_unlink(&c->ack_link);
        sb_map_del(&aw->waiting, c->request_id, strlen(c->request_id));
    }
}

void sb_api_on_reply(sb_worker_t *w, const redisReply *fields)
{
    api_worker_t *aw = w->api;
    const redisReply *rid = NULL, *args = NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i], *v = fields->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(k->str, "request_id") == 0)
            rid = v;
        else if (strcmp(k->str, "args") == 0)
            args = v;
    }
    if (rid == NULL || args == NULL)
        return;
    api_call_t *c = sb_map_get(&aw->waiting, rid->str, rid->len);
    if (c == NULL)
        return; /* answered too late: the caller already got 504 */
    waiting_remove(c);
    json_t *a = json_loadb(args->str, args->len, JSON_ALLOW_NUL, NULL);
    if (!json_is_array(a)) {
        json_decref(a);
        a = json_array();
    }
    call_answer(c, 200, json_pack("{s:o}", "ack", a));
}

static void on_socket_emitted(api_call_t *c, redisReply *reply, const char *err, size_t idx)
{
    (void)idx;
    if (reply == NULL || reply->type != REDIS_REPLY_STRING) {
        waiting_remove(c);
        call_answer(c, 503, error_body("unavailable", failure_text(reply, err), NULL));
    }
    /* else: the answer comes through the reply stream, or the sweep gives 504 */
}

static void on_socket_looked_up(api_call_t *c, redisReply *reply, const char *err, size_t idx)
{
    (void)idx;
    json_t *body = c->results; /* the request body, kept here until the lookup answers */
    c->results = NULL;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        json_decref(body);
        call_answer(c, 503,
                    error_body("unavailable",
                               reply != NULL ? reply->str
                               : err != NULL ? err
                                             : "redis error",
                               NULL));
        return;
    }
    if (reply->type != REDIS_REPLY_STRING) {
        json_decref(body);
        call_answer(c, 404, error_body("not_found", "no such socket", NULL));
        return;
    }
    api_worker_t *aw = c->w->api;
    json_t *t = json_integer_value(json_object_get(body, "ack_timeout_ms")) > 0
                    ? json_object_get(body, "ack_timeout_ms")
                    : NULL;
    uint64_t timeout = t != NULL ? (uint64_t)json_integer_value(t) : c->w->cfg->ack_timeout_ms;
    json_t *args = json_object_get(body, "args");
    json_t *msg = json_pack("{s:s#,s:O,s:o,s:[s],s:s,s:s}", "namespace", reply->str, (int)reply->len, "event",
                            json_object_get(body, "event"), "args",
                            json_is_array(args) ? json_incref(args) : json_array(), "sockets",
                            json_string_value(json_object_get(body, "socket")), "reply_to", c->w->reply_key,
                            "request_id", c->request_id);
    json_decref(body);
    if (msg == NULL) {
        call_answer(c, 503, error_body("unavailable", "out of memory", NULL));
        return;
    }
    c->deadline = sb_mono_ms() + timeout;
    if (sb_map_set(&aw->waiting, c->request_id, strlen(c->request_id), c) != 0) {
        json_decref(msg);
        call_answer(c, 503, error_body("unavailable", "out of memory", NULL));
        return;
    }
    h2o_linklist_insert(&aw->acks, &c->ack_link);
    if (!h2o_timeout_is_linked(&aw->sweep))
        h2o_timeout_link(c->w->ctx.loop, &aw->sweep_to, &aw->sweep);
    c->cb = on_socket_emitted;
    if (xadd_bus(c, 0, "emit", msg) != 0) {
        waiting_remove(c);
        call_answer(c, 503, error_body("unavailable", "redis is not reachable", NULL));
    }
    json_decref(msg);
}

/* ---- queries --------------------------------------------------------------------------------------------------- */

static json_t *str_of(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_STRING ? json_stringn(r->str, r->len) : json_string("");
}

static int query_failed(api_call_t *c, redisReply *reply, const char *err)
{
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY)
        return 0;
    call_answer(c, 503, error_body("unavailable", failure_text(reply, err), NULL));
    return 1;
}

static void on_rooms(api_call_t *c, redisReply *reply, const char *err, size_t idx)
{
    (void)idx;
    if (query_failed(c, reply, err))
        return;
    json_t *rooms = json_array();
    for (size_t i = 0; i + 1 < reply->elements; i += 2)
        json_array_append_new(rooms, json_pack("{s:o,s:I}", "room", str_of(reply->element[i]), "count",
                                               (json_int_t)reply->element[i + 1]->integer));
    json_t *body = c->results;
    c->results = NULL;
    json_object_set_new(body, "rooms", rooms);
    call_answer(c, 200, body);
}

static void on_room_info(api_call_t *c, redisReply *reply, const char *err, size_t idx)
{
    (void)idx;
    if (query_failed(c, reply, err))
        return;
    json_t *body = c->results;
    c->results = NULL;
    json_t *sockets = json_array(), *users = json_array();
    json_int_t count = reply->elements > 0 ? (json_int_t)reply->element[0]->integer : 0;
    for (size_t i = 1; i < reply->elements; i++) {
        const redisReply *m = reply->element[i];
        if (m->type != REDIS_REPLY_ARRAY || m->elements != 3)
            continue;
        json_array_append_new(sockets, json_pack("{s:o,s:o,s:o}", "id", str_of(m->element[0]), "user",
                                                 str_of(m->element[1]), "node", str_of(m->element[2])));
        int seen = 0;
        size_t k;
        json_t *u;
        json_array_foreach(users, k, u) seen |= strcmp(json_string_value(u), m->element[1]->str) == 0;
        if (!seen)
            json_array_append_new(users, str_of(m->element[1]));
    }
    json_object_set_new(body, "count", json_integer(count));
    json_object_set_new(body, "sockets", sockets);
    json_object_set_new(body, "users", users);
    call_answer(c, 200, body);
}

static json_t *rooms_of(const redisReply *r)
{
    json_t *a = json_array();
    if (r != NULL && r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->elements; i++)
            json_array_append_new(a, str_of(r->element[i]));
    return a;
}

static void on_user_info(api_call_t *c, redisReply *reply, const char *err, size_t idx)
{
    (void)idx;
    if (query_failed(c, reply, err))
        return;
    json_t *body = c->results;
    c->results = NULL;
    json_t *sockets = json_array(), *rooms = json_array();
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *s = reply->element[i];
        if (s->type != REDIS_REPLY_ARRAY || s->elements != 6)
            continue;
        json_array_append_new(sockets, json_pack("{s:o,s:o,s:o,s:o}", "id", str_of(s->element[0]), "namespace",
                                                 str_of(s->element[1]), "node", str_of(s->element[2]), "transport",
                                                 str_of(s->element[3])));
        const redisReply *rs = s->element[5];
        for (size_t k = 0; rs->type == REDIS_REPLY_ARRAY && k < rs->elements; k++)
            json_array_append_new(rooms, json_pack("{s:o,s:o}", "namespace", str_of(s->element[1]), "room",
                                                   str_of(rs->element[k])));
    }
    json_object_set_new(body, "online", json_boolean(json_array_size(sockets) > 0));
    json_object_set_new(body, "sockets", sockets);
    json_object_set_new(body, "rooms", rooms);
    call_answer(c, 200, body);
}

static void on_socket_info(api_call_t *c, redisReply *reply, const char *err, size_t idx)
{
    (void)idx;
    if (query_failed(c, reply, err))
        return;
    json_decref(c->results);
    c->results = NULL;
    if (reply->elements != 7) {
        call_answer(c, 404, error_body("not_found", "no such socket", NULL));
        return;
    }
    const redisReply *const *e = (const redisReply *const *)reply->element;
    long long at = e[5]->type == REDIS_REPLY_STRING ? strtoll(e[5]->str, NULL, 10) : 0;
    call_answer(c, 200,
                json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:I}", "id", str_of(e[0]), "user", str_of(e[2]), "namespace",
                          str_of(e[1]), "node", str_of(e[3]), "transport", str_of(e[4]), "rooms", rooms_of(e[6]),
                          "connected_at", (json_int_t)at));
}

static void on_stats(api_call_t *c, redisReply *reply, const char *err, size_t idx)
{
    (void)idx;
    if (query_failed(c, reply, err))
        return;
    json_t *nodes = json_array(), *totals = json_object();
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *n = reply->element[i];
        if (n->type != REDIS_REPLY_ARRAY || n->elements != 2 || n->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        json_t *node = json_object();
        const redisReply *h = n->element[1];
        json_t *disc = json_object();
        for (size_t k = 0; k + 1 < h->elements; k += 2) {
            const char *f = h->element[k]->str;
            int num = strcmp(f, "id") != 0 && strcmp(f, "version") != 0;
            if (strncmp(f, "disc:", 5) == 0) {
                /* disconnects by reason: an object of their own */
                json_object_set_new(disc, f + 5, json_integer(strtoll(h->element[k + 1]->str, NULL, 10)));
            } else if (num) {
                long long v = strtoll(h->element[k + 1]->str, NULL, 10);
                size_t fl = strlen(f);
                int is_ms = fl > 3 && strcmp(f + fl - 3, "_ms") == 0;
                json_object_set_new(node, f, is_ms ? json_real(strtod(h->element[k + 1]->str, NULL)) : json_integer(v));
                /* Latencies (…_ms) do not add up across nodes: only counts go into the totals. */
                if (strcmp(f, "started_at") != 0 && strcmp(f, "last_seen") != 0 && !is_ms) {
                    json_t *t = json_object_get(totals, f);
                    json_object_set_new(totals, f, json_integer((t != NULL ? json_integer_value(t) : 0) + v));
                }
            } else {
                json_object_set_new(node, f, str_of(h->element[k + 1]));
            }
        }
        json_object_set_new(node, "disconnects", disc);
        json_array_append_new(nodes, node);
    }
    json_object_set_new(totals, "nodes", json_integer((json_int_t)json_array_size(nodes)));
    json_decref(c->results);
    c->results = NULL;
    call_answer(c, 200, json_pack("{s:o,s:o}", "nodes", nodes, "totals", totals));
}

/* ---- routing -------------------------------------------------------------------------------------------------- */

static sb_worker_t *worker_of_req(h2o_req_t *req)
{
    return (sb_worker_t *)((char *)req->conn->ctx - offsetof(sb_worker_t, ctx));
}

/* Percent-decodes src[0..len) into out (NUL-terminated). Returns the length or -1 (bad escape, NUL, too long). */
static ssize_t pct_decode(const char *src, size_t len, char *out, size_t outlen, int plus_is_space)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = src[i];
        if (ch == '%') {
            if (i + 2 >= len)
                return -1;
            char hex[3] = {src[i + 1], src[i + 2], 0};
            if (!isxdigit((unsigned char)hex[0]) || !isxdigit((unsigned char)hex[1]))
                return -1;
            ch = (char)strtol(hex, NULL, 16);
            i += 2;
        } else if (ch == '+' && plus_is_space) {
            ch = ' ';
        }
        if (ch == '\0' || n + 1 >= outlen)
            return -1;
        out[n++] = ch;
    }
    out[n] = '\0';
    return (ssize_t)n;
}

/* Finds query parameter `name` and decodes it into out. Returns 1 found, 0 absent, -1 malformed. */
static int query_param(h2o_req_t *req, const char *name, char *out, size_t outlen)
{
    if (req->query_at == SIZE_MAX)
        return 0;
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    size_t nl = strlen(name);
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp != NULL ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(stop - q));
        if (eq != NULL && (size_t)(eq - q) == nl && memcmp(q, name, nl) == 0)
            return pct_decode(eq + 1, (size_t)(stop - eq - 1), out, outlen, 1) < 0 ? -1 : 1;
        q = stop + 1;
    }
    return 0;
}

/* Returns 1 and the presented key when it is valid. */
static int authorized(h2o_req_t *req, const char **key, size_t *keylen)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    if (v.len < 7 || strncasecmp(v.base, "Bearer ", 7) != 0)
        return 0;
    const char *k = v.base + 7;
    size_t kl = v.len - 7;
    while (kl > 0 && k[0] == ' ')
        k++, kl--;
    *key = k;
    *keylen = kl;
    return kl > 0 && sb_api_key_valid(k, kl);
}

static json_t *parse_body(h2o_req_t *req, verr_t *e)
{
    json_error_t jerr;
    if (req->entity.base == NULL || req->entity.len == 0) {
        fail(e, "body", "a JSON body is required");
        return NULL;
    }
    json_t *o = json_loadb(req->entity.base, req->entity.len, JSON_ALLOW_NUL, &jerr);
    if (o == NULL) {
        char m[160];
        snprintf(m, sizeof(m), "invalid JSON: %.100s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        fail(e, "body", m);
    }
    return o;
}

static void handle_op(sb_worker_t *w, h2o_req_t *req, const char *op)
{
    verr_t e = {0};
    json_t *o = parse_body(req, &e);
    if (o == NULL) {
        send_error(req, "invalid_argument", e.message, e.field);
        return;
    }
    int rv = 0;
    if (!json_is_object(o)) {
        json_decref(o);
        send_error(req, "invalid_argument", "the body must be a JSON object", "body");
        return;
    }
    validate_op(w->cfg, op, o, &e, &rv);
    if (rv != 0) {
        json_decref(o);
        send_error(req, "invalid_argument", e.message, e.field);
        return;
    }
    api_call_t *c = call_new(w, req);
    if (c == NULL) {
        json_decref(o);
        send_error(req, "unavailable", "out of memory", NULL);
        return;
    }
    c->cb = on_bus_written;
    if (xadd_bus(c, 0, op, o) != 0) {
        c->finished = 1;
        send_error(req, "unavailable", "redis is not reachable", NULL);
    }
    json_decref(o);
}

static void handle_batch(sb_worker_t *w, h2o_req_t *req)
{
    verr_t e = {0};
    json_t *a = parse_body(req, &e);
    if (a == NULL) {
        send_error(req, "invalid_argument", e.message, e.field);
        return;
    }
    if (!json_is_array(a) || json_array_size(a) == 0 || json_array_size(a) > MAX_BATCH) {
        json_decref(a);
        send_error(req, "invalid_argument", "the body must be an array of 1 to 100 operations", "body");
        return;
    }
    api_call_t *c = call_new(w, req);
    if (c == NULL) {
        json_decref(a);
        send_error(req, "unavailable", "out of memory", NULL);
        return;
    }
    c->cb = on_batch_written;
    c->results = json_array();
    size_t i;
    json_t *item;
    const char *names_of[MAX_BATCH] = {0};
    json_array_foreach(a, i, item)
    {
        json_array_append_new(c->results, json_null());
        json_t *op = json_object_get(item, "op");
        names_of[i] = !json_is_string(op)                                ? NULL
                      : strcmp(json_string_value(op), "emit") == 0       ? "emit"
                      : strcmp(json_string_value(op), "join") == 0       ? "join"
                      : strcmp(json_string_value(op), "leave") == 0      ? "leave"
                      : strcmp(json_string_value(op), "disconnect") == 0 ? "disconnect"
                      : strcmp(json_string_value(op), "ack") == 0        ? "ack"
                                                                         : NULL;
    }
    /* Validate everything first; then write the valid operations, pipelined. */
    json_array_foreach(a, i, item)
    {
        int rv = 0;
        const char *name = names_of[i];
        if (!json_is_object(item)) {
            fail(&e, "op", "each operation must be an object");
            rv = SB_EINVAL;
        } else if (name == NULL || (json_object_del(item, "op"), validate_op(w->cfg, name, item, &e, &rv)) == NULL) {
            fail(&e, "op", "must be one of emit, join, leave, disconnect, ack");
            rv = SB_EINVAL;
        }
        if (rv != 0) {
            json_t *err = json_pack("{s:s,s:s}", "code", "invalid_argument", "message", e.message);
            if (e.field != NULL)
                json_object_set_new(err, "field", json_string(e.field));
            json_array_set_new(c->results, i, json_pack("{s:i,s:o}", "status", 400, "error", err));
        }
    }
    json_array_foreach(a, i, item)
    {
        if (!json_is_null(json_array_get(c->results, i)))
            continue;
        if (xadd_bus(c, i, names_of[i], item) != 0)
            json_array_set_new(c->results, i,
                               json_pack("{s:i,s:{s:s,s:s}}", "status", 503, "error", "code", "unavailable", "message",
                                         "redis is not reachable"));
    }
    json_decref(a);
    if (c->pending == 0)
        call_answer(c, 200, json_pack("{s:O}", "results", c->results));
}

static void handle_socket_emit(sb_worker_t *w, h2o_req_t *req, const char *sid)
{
    verr_t e = {0};
    json_t *o = parse_body(req, &e);
    if (o == NULL) {
        send_error(req, "invalid_argument", e.message, e.field);
        return;
    }
    static const char *const allowed[] = {"event", "args", "ack_timeout_ms", NULL};
    json_t *t = json_object_get(o, "ack_timeout_ms");
    if (json_is_null(t))
        t = NULL; /* null means absent, as for every optional field */
    if (!json_is_object(o)) {
        fail(&e, "body", "the body must be a JSON object");
    } else if (only_fields(o, allowed, &e) == 0 && check_event(o, &e) == 0 && t != NULL &&
               (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > SB_SERVER_ACK_MAX_MS)) {
        fail(&e, "ack_timeout_ms", "must be an integer from 1 to 60000");
    }
    if (e.field != NULL) {
        json_decref(o);
        send_error(req, "invalid_argument", e.message, e.field);
        return;
    }
    api_call_t *c = call_new(w, req);
    if (c == NULL) {
        json_decref(o);
        send_error(req, "unavailable", "out of memory", NULL);
        return;
    }
    json_object_set_new(o, "socket", json_string(sid));
    c->results = o; /* kept until the lookup answers */
    sb_random_id(c->request_id, 20);
    c->request_id[20] = '\0';
    c->cb = on_socket_looked_up;
    char key[600];
    sb_key(w, key, sizeof(key), "{sock:%s}", sid);
    const char *argv[] = {"HGET", key, "nsp"};
    size_t lens[3];
    lens_of(argv, lens, 3);
    if (call_redis(c, 0, 3, argv, lens) != 0) {
        c->finished = 1;
        send_error(req, "unavailable", "redis is not reachable", NULL);
    }
}

/* Runs a read-only Function; body is the JSON the handler completes. */
static void fcall_ro(sb_worker_t *w, h2o_req_t *req, api_done_cb cb, json_t *body, const char *fn, int nkeys,
                     const char **args, int nargs)
{
    api_call_t *c = call_new(w, req);
    if (c == NULL) {
        json_decref(body);
        send_error(req, "unavailable", "out of memory", NULL);
        return;
    }
    c->cb = cb;
    c->results = body;
    const char *argv[16];
    size_t lens[16];
    char nk[8];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    int argc = 0;
    argv[argc++] = "FCALL_RO";
    argv[argc++] = fn;
    argv[argc++] = nk;
    for (int i = 0; i < nargs && argc < 16; i++)
        argv[argc++] = args[i];
    lens_of(argv, lens, argc);
    if (call_redis(c, 0, argc, argv, lens) != 0) {
        c->finished = 1;
        json_decref(c->results);
        c->results = NULL;
        send_error(req, "unavailable", "redis is not reachable", NULL);
    }
}

static int get_nsp(sb_worker_t *w, h2o_req_t *req, char *nsp, size_t len)
{
    int r = query_param(req, "namespace", nsp, len);
    if (r < 0) {
        send_error(req, "invalid_argument", "bad percent-encoding", "namespace");
        return -1;
    }
    if (r == 0)
        snprintf(nsp, len, "/");
    json_t *o = json_pack("{s:s}", "namespace", nsp);
    verr_t e = {0};
    int bad = check_nsp(w->cfg, o, &e);
    json_decref(o);
    if (bad) {
        send_error(req, "invalid_argument", e.message, e.field);
        return -1;
    }
    return 0;
}

static int route(sb_worker_t *w, h2o_req_t *req);

/* The per-key bucket answered (--rate-api). */
static void on_api_rate(sb_worker_t *w, int status, long long retry_ms, void *data)
{
    api_call_t *c = data;
    if (c->req == NULL) {
        c->finished = 1;
        call_free_if_done(c);
        return;
    }
    if (status == SB_EAGAIN) {
        sb_count_limited(w, SB_LIMIT_API);
        char ra[24];
        snprintf(ra, sizeof(ra), "%lld", (retry_ms + 999) / 1000);
        h2o_add_header_by_str(&c->req->pool, &c->req->res.headers, H2O_STRLIT("retry-after"), 0, NULL, ra, strlen(ra));
        json_t *body = error_body("rate_limited", "too many requests for this API key", NULL);
        json_object_set_new(json_object_get(body, "error"), "retry_after_ms", json_integer(retry_ms));
        call_answer(c, 429, body);
        return;
    }
    if (status != SB_OK) {
        call_answer(c, 503, error_body("unavailable", "redis is not reachable", NULL));
        return;
    }
    c->finished = 1; /* this call's part is done; the route answers the request */
    h2o_req_t *req = c->req;
    call_free_if_done(c);
    route(w, req);
}

/* Buckets are named by a digest of the key: keys never reach Redis. */
static void key_id(const char *key, size_t len, char out[33])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(key, len, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 16 && i < mdlen; i++)
        snprintf(out + (size_t)2 * i, 3, "%02x", md[i]);
    out[32] = '\0';
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    sb_worker_t *w = worker_of_req(req);
    const char *key = NULL;
    size_t keylen = 0;
    if (!authorized(req, &key, &keylen)) {
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("www-authenticate"), 0, NULL,
                              H2O_STRLIT("Bearer realm=\"switchboard\""));
        send_error(req, "unauthorized", "a valid API key is required: Authorization: Bearer <key>", NULL);
        return 0;
    }
    if (req->entity.base != NULL && req->entity.len > w->cfg->api_max_body) {
        send_error(req, "payload_too_large", "the request body is larger than --api-max-body", "body");
        return 0;
    }
    if (!sb_redis_connected(w->cmd)) {
        send_error(req, "unavailable", "redis is not reachable", NULL);
        return 0;
    }
    if (w->cfg->rate_api.rate > 0) {
        api_call_t *c = call_new(w, req);
        char id[33];
        key_id(key, keylen, id);
        if (c == NULL || sb_store_ratelimit(w, "key", id, &w->cfg->rate_api, on_api_rate, c) != 0) {
            if (c != NULL)
                c->finished = 1;
            send_error(req, "unavailable", "redis is not reachable", NULL);
        }
        return 0;
    }
    return route(w, req);
}

static int route(sb_worker_t *w, h2o_req_t *req)
{
    /* The path without the query string, after "/v1". */
    const char *path = req->path.base;
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    if (plen < 3 || memcmp(path, "/v1", 3) != 0) {
        send_error(req, "not_found", "no such endpoint", NULL);
        return 0;
    }
    path += 3;
    plen -= 3;
    const char *allow = "GET"; /* for a 405: what the matched endpoint takes */
    int is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"));
    int is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
#define IS(p) (plen == sizeof(p) - 1 && memcmp(path, p, sizeof(p) - 1) == 0)
#define STARTS(p) (plen > sizeof(p) - 1 && memcmp(path, p, sizeof(p) - 1) == 0)
    static const struct {
        const char *path;
        const char *op;
    } ops[] = {{"/emit", "emit"},
               {"/join", "join"},
               {"/leave", "leave"},
               {"/disconnect", "disconnect"},
               {"/acks", "ack"}};
    for (size_t i = 0; i < SB_ARRAY_SIZE(ops); i++) {
        if (plen == strlen(ops[i].path) && memcmp(path, ops[i].path, plen) == 0) {
            allow = "POST";
            if (!is_post)
                goto method;
            handle_op(w, req, ops[i].op);
            return 0;
        }
    }
    if (IS("/batch")) {
        allow = "POST";
        if (!is_post)
            goto method;
        handle_batch(w, req);
        return 0;
    }
    char name[MAX_NAME + 1], nsp[300], key[700], key2[700];
    if (IS("/rooms")) {
        if (!is_get)
            goto method;
        char prefix[MAX_NAME + 1], limit[16];
        if (get_nsp(w, req, nsp, sizeof(nsp)) != 0)
            return 0;
        if (query_param(req, "prefix", prefix, sizeof(prefix)) < 0) {
            send_error(req, "invalid_argument", "bad percent-encoding", "prefix");
            return 0;
        }
        int hl = query_param(req, "limit", limit, sizeof(limit));
        if (hl == 0)
            snprintf(limit, sizeof(limit), "%d", DEFAULT_ROOM_LIMIT);
        char *end = NULL;
        long lv = strtol(limit, &end, 10);
        if (hl < 0 || end == limit || *end != '\0' || lv < 1 || lv > 100000) {
            send_error(req, "invalid_argument", "must be an integer from 1 to 100000", "limit");
            return 0;
        }
        if (query_param(req, "prefix", prefix, sizeof(prefix)) == 0)
            prefix[0] = '\0';
        sb_key(w, key, sizeof(key), "{ns:%s}:rooms", nsp);
        const char *args[] = {key, w->cfg->redis_prefix, nsp, prefix, limit};
        fcall_ro(w, req, on_rooms, json_pack("{s:s}", "namespace", nsp), "sb_rooms", 1, args, 5);
        return 0;
    }
    if (STARTS("/rooms/") || STARTS("/users/") || STARTS("/sockets/")) {
        const char *rest = (const char *)memchr(path + 1, '/', plen - 1) + 1;
        size_t rl = plen - (size_t)(rest - path);
        const char *tail = memchr(rest, '/', rl);
        size_t nl = tail != NULL ? (size_t)(tail - rest) : rl;
        if (nl == 0 || pct_decode(rest, nl, name, sizeof(name), 0) < 0) {
            send_error(req, "invalid_argument", "bad name in the path", "path");
            return 0;
        }
        if (STARTS("/sockets/") && tail != NULL) {
            if (rl - nl != 5 || memcmp(tail, "/emit", 5) != 0)
                goto notfound;
            allow = "POST";
            if (!is_post)
                goto method;
            handle_socket_emit(w, req, name);
            return 0;
        }
        if (tail != NULL)
            goto notfound;
        if (!is_get)
            goto method;
        if (STARTS("/rooms/")) {
            if (get_nsp(w, req, nsp, sizeof(nsp)) != 0)
                return 0;
            sb_key(w, key, sizeof(key), "{room:%s:%s}", nsp, name);
            const char *args[] = {key, w->cfg->redis_prefix, "10000"};
            fcall_ro(w, req, on_room_info, json_pack("{s:s,s:s}", "room", name, "namespace", nsp), "sb_room_info", 1,
                     args, 3);
        } else if (STARTS("/users/")) {
            sb_key(w, key, sizeof(key), "{user:%s}:sockets", name);
            const char *args[] = {key, w->cfg->redis_prefix};
            fcall_ro(w, req, on_user_info, json_pack("{s:s}", "user", name), "sb_user_info", 1, args, 2);
        } else {
            sb_key(w, key, sizeof(key), "{sock:%s}", name);
            sb_key(w, key2, sizeof(key2), "{sock:%s}:rooms", name);
            const char *args[] = {key, key2, w->cfg->redis_prefix, name};
            fcall_ro(w, req, on_socket_info, json_object(), "sb_socket_info", 2, args, 4);
        }
        return 0;
    }
    if (IS("/stats")) {
        if (!is_get)
            goto method;
        sb_key(w, key, sizeof(key), "nodes");
        const char *args[] = {key, w->cfg->redis_prefix};
        fcall_ro(w, req, on_stats, json_object(), "sb_stats", 1, args, 2);
        return 0;
    }
notfound:
    send_error(req, "not_found", "no such endpoint", NULL);
    return 0;
method:
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("allow"), 0, NULL, allow, strlen(allow));
    send_json(req, 405, error_body("method_not_allowed", "this endpoint does not take that method", NULL));
    return 0;
#undef IS
#undef STARTS
}

/* ---- lifecycle ------------------------------------------------------------------------------------------------- */

int sb_api_init(sb_server_t *s, h2o_hostconf_t *host, const char **why)
{
    sb_strlist_t loaded;
    if (load_keys(s->cfg, &loaded, why) != 0)
        return SB_EINVAL;
    if (loaded.count == 0) {
        /* Never open by accident: a fresh key for this run, shown once to whoever started it. */
        char k[33];
        sb_random_id(k, 32);
        k[32] = '\0';
        strlist_add(&loaded, k, 32);
        fprintf(stdout,
                "switchboard: no API key configured; generated one for this run: %s\n"
                "switchboard: use it as 'Authorization: Bearer <key>', or set --api-key / SWITCHBOARD_API_KEY\n",
                k);
        fflush(stdout);
        sb_log(SB_LOG_WARN, "no API key configured: generated one and printed it on stdout", NULL);
    }
    pthread_rwlock_wrlock(&keys_lock);
    strlist_clear(&keys);
    keys = loaded;
    pthread_rwlock_unlock(&keys_lock);
    h2o_create_handler(h2o_config_register_path(host, "/v1", 0), sizeof(h2o_handler_t))->on_req = on_req;
    return 0;
}

static void sweep_entry_cb(h2o_timeout_entry_t *e);

void sb_api_worker_init(sb_worker_t *w)
{
    api_worker_t *aw = calloc(1, sizeof(*aw));
    if (aw == NULL)
        abort();
    sb_map_init(&aw->waiting);
    h2o_linklist_init_anchor(&aw->acks);
    h2o_timeout_init(w->ctx.loop, &aw->sweep_to, 50);
    aw->sweep.cb = sweep_entry_cb;
    w->api = aw;
    snprintf(w->reply_last_id, sizeof(w->reply_last_id), "0-0");
    sb_key(w, w->reply_key, sizeof(w->reply_key), "{node:%s}:replies:%u", w->server->node_id, w->idx);
}

static void sweep_entry_cb(h2o_timeout_entry_t *e)
{
    api_worker_t *aw = (api_worker_t *)((char *)e - offsetof(api_worker_t, sweep));
    uint64_t now = sb_mono_ms();
    sb_worker_t *w = NULL;
    for (h2o_linklist_t *l = aw->acks.next; l != &aw->acks;) {
        api_call_t *c = H2O_STRUCT_FROM_MEMBER(api_call_t, ack_link, l);
        l = l->next;
        w = c->w;
        if (c->deadline <= now) {
            waiting_remove(c);
            call_answer(c, 504, error_body("timeout", "the client did not acknowledge in time", NULL));
        }
    }
    if (w != NULL && !h2o_linklist_is_empty(&aw->acks))
        h2o_timeout_link(w->ctx.loop, &aw->sweep_to, &aw->sweep);
}

/* ---- the reaper: any node removes what dead nodes left in Redis ---------------------------------------------------- */

typedef struct reap {
    sb_worker_t *w;
    char node[64];
} reap_t;

static void reap_next(reap_t *rp);

static void ignore_reply(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r, (void)reply, (void)err, (void)data; /* a lost ZREM is redone by the next beat */
}

static void reaped_slice(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    reap_t *rp = data;
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        sb_log(SB_LOG_WARN, "reaping a dead node failed", "node", rp->node, "error", reply != NULL ? reply->str : err,
               NULL);
        free(rp);
        return;
    }
    if (reply->integer > 0) {
        reap_next(rp); /* more sockets left: another slice (a Function blocks Redis while it runs) */
        return;
    }
    char nodes[600];
    sb_key(rp->w, nodes, sizeof(nodes), "nodes");
    const char *argv[] = {"ZREM", nodes, rp->node};
    size_t lens[3];
    lens_of(argv, lens, 3);
    sb_redis_commandargv(rp->w->cmd, ignore_reply, NULL, 0, 3, argv, lens);
    sb_log(SB_LOG_INFO, "reaped a dead node: its sockets, rooms and presence are gone", "node", rp->node, NULL);
    free(rp);
}

static void reap_next(reap_t *rp)
{
    sb_worker_t *w = rp->w;
    char key[600], ts[24], maxlen[24], keep[24];
    sb_key(w, key, sizeof(key), "{node:%s}:sockets", rp->node);
    snprintf(ts, sizeof(ts), "%" PRIu64, sb_now_ms());
    snprintf(maxlen, sizeof(maxlen), "%" PRIu64, w->cfg->events_maxlen);
    /* The dead node's clients reconnect elsewhere: their state stays for recovery (--recovery-window). */
    snprintf(keep, sizeof(keep), "%" PRIu64, w->cfg->recovery_window_ms);
    const char *argv[] = {
        "FCALL", "sb_node_sockets_purge", "1", key, w->cfg->redis_prefix, rp->node, "node lost", ts, maxlen, "1000",
        keep};
    size_t lens[11];
    lens_of(argv, lens, 11);
    if (sb_redis_commandargv(w->cmd, reaped_slice, rp, 0, 11, argv, lens) != 0)
        free(rp);
}

static void beat_done(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    sb_worker_t *w = data;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        sb_log(SB_LOG_WARN, "node heartbeat failed", "error", reply != NULL ? reply->str : err, NULL);
        return;
    }
    /* The beat lists nodes whose heartbeat is gone: reap them. */
    for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
        const redisReply *n = reply->element[i];
        if (n->type != REDIS_REPLY_STRING || n->len >= sizeof(((reap_t *)0)->node) ||
            strcmp(n->str, w->server->node_id) == 0)
            continue;
        reap_t *rp = calloc(1, sizeof(*rp));
        if (rp == NULL)
            continue;
        rp->w = w;
        memcpy(rp->node, n->str, n->len);
        reap_next(rp);
    }
}

static void loads_done(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r, (void)err;
    sb_rebalance_on_loads(data, reply);
}

void sb_api_heartbeat(sb_worker_t *w)
{
    sb_server_t *s = w->server;
    unsigned long conns = 0, socks = 0, in = 0, dlv = 0, bus = 0, dropped = 0, limited = 0, connects = 0, authf = 0;
    unsigned long disc[SB_REASONS] = {0}, disc_total = 0;
    for (unsigned i = 0; i < s->nworkers; i++) {
        sb_worker_stats_t *st = &s->workers[i]->stats;
        conns += atomic_load(&st->connections);
        socks += atomic_load(&st->sockets);
        in += atomic_load(&st->events_in);
        dlv += atomic_load(&st->deliveries);
        bus += atomic_load(&st->bus_entries);
        dropped += atomic_load(&st->dropped);
        limited += atomic_load(&st->rate_limited);
        connects += atomic_load(&st->connects);
        authf += atomic_load(&st->auth_failures);
        for (unsigned r = 0; r < SB_REASONS; r++)
            disc[r] += atomic_load(&st->disconnects[r]);
    }
    for (unsigned r = 0; r < SB_REASONS; r++)
        disc_total += disc[r];
    char key[600], nodes[600], now[24], ttl[24];
    sb_key(w, key, sizeof(key), "{node:%s}", s->node_id);
    sb_key(w, nodes, sizeof(nodes), "nodes");
    snprintf(now, sizeof(now), "%" PRIu64, sb_now_ms());
    snprintf(ttl, sizeof(ttl), "%" PRIu64, 3 * w->cfg->heartbeat_interval_ms);
    struct {
        const char *name;
        unsigned long long v;
    } figures[] = {{"connections", conns},
                   {"sockets", socks},
                   {"connects_total", connects},
                   {"disconnects_total", disc_total},
                   {"events_in", in},
                   {"events_out", dlv},
                   {"deliveries", dlv},
                   {"bus_entries", bus},
                   {"dropped", dropped},
                   {"rate_limited", limited},
                   {"auth_failures", authf},
                   {"threads", s->nworkers},
                   {"started_at", s->started_at_ms},
                   {"draining", (unsigned long long)atomic_load(&s->draining)}};
    enum { NF = sizeof(figures) / sizeof(figures[0]) };
    char vals[NF + SB_REASONS][24], reason_names[SB_REASONS][64];
    const char *argv[9 + 2 * (NF + SB_REASONS) + 2 + 2 * 5];
    int argc = 0;
    argv[argc++] = "FCALL";
    argv[argc++] = "sb_node_beat";
    argv[argc++] = "2";
    argv[argc++] = key;
    argv[argc++] = nodes;
    argv[argc++] = w->cfg->redis_prefix;
    argv[argc++] = s->node_id;
    argv[argc++] = now;
    argv[argc++] = ttl;
    for (size_t i = 0; i < NF; i++) {
        snprintf(vals[i], sizeof(vals[i]), "%llu", figures[i].v);
        argv[argc++] = figures[i].name;
        argv[argc++] = vals[i];
    }
    /* Disconnect reasons, for the dashboard: disc:<reason> = count since the node started. */
    for (unsigned r = 0; r < SB_REASONS; r++) {
        snprintf(reason_names[r], sizeof(reason_names[r]), "disc:%s", sb_session_reasons[r]);
        snprintf(vals[NF + r], sizeof(vals[NF + r]), "%lu", disc[r]);
        argv[argc++] = reason_names[r];
        argv[argc++] = vals[NF + r];
    }
    /* Latency figures of the last heartbeat interval, for the dashboard (NaN when nothing was measured: skipped). */
    struct {
        const char *name;
        sb_metric_t *m;
        double q, scale;
    } lat[] = {{"delivery_p50_ms", SB_M(w)->bus_delivery, 0.5, 1000},
               {"delivery_p99_ms", SB_M(w)->bus_delivery, 0.99, 1000},
               {"redis_p50_ms", SB_M(w)->redis_seconds, 0.5, 1000},
               {"redis_p99_ms", SB_M(w)->redis_seconds, 0.99, 1000},
               {"loop_lag_ms", SB_M(w)->loop_lag, 1.0, 1000}};
    char latv[SB_ARRAY_SIZE(lat)][32];
    for (size_t i = 0; i < SB_ARRAY_SIZE(lat); i++) {
        double v = sb_metric_quantile(lat[i].m, lat[i].q);
        if (v != v)
            v = 0; /* nothing observed this interval */
        snprintf(latv[i], sizeof(latv[i]), "%.3f", v * lat[i].scale);
        argv[argc++] = lat[i].name;
        argv[argc++] = latv[i];
    }
    for (size_t i = 0; i < SB_ARRAY_SIZE(lat); i++)
        if (i == 0 || lat[i].m != lat[i - 1].m)
            sb_metric_quantile_reset(lat[i].m);
    argv[argc++] = "version";
    argv[argc++] = SB_VERSION;
    size_t lens[SB_ARRAY_SIZE(argv)];
    lens_of(argv, lens, argc);
    sb_redis_commandargv(w->cmd, beat_done, w, 0, argc, argv, lens);
    /* Right behind the beat on the same connection (one round trip): the live nodes' counts, this beat included. */
    if (w->cfg->rebalance) {
        const char *largv[] = {"FCALL_RO", "sb_node_loads", "1", nodes, w->cfg->redis_prefix, now, ttl};
        size_t llens[SB_ARRAY_SIZE(largv)];
        lens_of(largv, llens, (int)SB_ARRAY_SIZE(largv));
        sb_redis_commandargv(w->cmd, loads_done, w, 0, (int)SB_ARRAY_SIZE(largv), largv, llens);
    }
}
