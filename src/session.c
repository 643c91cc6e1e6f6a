/*
 * session.c — the Socket.IO 5 layer (see include/switchboard/session.h).
 *
 * Per Engine.IO connection there is one sio_conn holding its sockets (one per
 * namespace). Per worker there is a room index: room key "<nsp>\0<room>" ->
 * member list, where room "" of a namespace holds every socket of it, and
 * every socket is also in its own-id room and in "user:<id>". The index is a
 * cache derived from this worker's own sockets; Redis (through store.c) is
 * the source of truth that REST queries and other nodes read.
 *
 * Lifetimes: a socket may be closed while Redis replies for it are in flight,
 * so store callbacks hold a reference (refs); the struct is freed when the
 * socket is closed and the last reference is dropped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/engineio.h"
#include "switchboard/log.h"
#include "switchboard/session.h"
#include "switchboard/socketio.h"
#include "switchboard/store.h"

#define MAX_ROOM_KEY 1024
#define MAX_PENDING_ACKS 1024

typedef struct sb_room {
    h2o_linklist_t members; /* sb_member_t.room_link */
    size_t count;
    size_t keylen;
    char key[]; /* "<nsp>\0<room>" */
} sb_room_t;

typedef struct sb_socket sb_socket_t;

typedef struct sb_member {
    sb_room_t *room;
    sb_socket_t *sock;
    h2o_linklist_t room_link;
    h2o_linklist_t sock_link;
} sb_member_t;

typedef struct sio_conn sio_conn_t;

typedef struct pending_ack {
    int64_t id;
    sb_socket_t *sock;
    h2o_timeout_entry_t timer;
    h2o_linklist_t link;
} pending_ack_t;

/* An event the server sent with an ack id (bus emit with reply_to): the client's
 * answer is XADDed to reply_to with request_id. */
typedef struct server_ack {
    int64_t id;
    char *reply_to;
    char *request_id;
    sb_socket_t *sock;
    h2o_timeout_entry_t timer;
    h2o_linklist_t link;
} server_ack_t;

enum { SOCK_CONNECTING, SOCK_CONNECTED, SOCK_CLOSED };

struct sb_socket {
    char id[SB_SID_LEN + 1];
    const char *nsp; /* points into the config (static for the process) */
    char *user;
    sio_conn_t *sc;  /* NULL once closed */
    sb_worker_t *w;
    int state;
    int refs;
    h2o_linklist_t memberships; /* sb_member_t.sock_link */
    h2o_linklist_t acks;        /* pending_ack_t.link */
    size_t nacks;
    h2o_linklist_t sacks; /* server_ack_t.link */
    unsigned limited_in_a_row; /* events refused by the rate limits since the last accepted one */
    const char *close_reason;  /* overrides the connection's reason in the disconnect entry */
    size_t nsacks;
    int64_t next_ack_id;
    h2o_linklist_t conn_link;
    uint64_t mark;
    uint64_t except_mark;
};

struct sio_conn {
    sb_eio_conn_t *eio;
    sb_worker_t *w;
    h2o_linklist_t sockets;
    h2o_timeout_entry_t connect_timer;
    /* a binary packet waiting for its attachments */
    int has_pending;
    sb_sio_packet_t pending;
    size_t nbins;
    char **bins;
    size_t *lens;
};

static const char *find_nsp(const sb_config_t *cfg, const char *nsp)
{
    if (strcmp(nsp, "/") == 0)
        return "/";
    for (size_t i = 0; i < cfg->namespaces.count; i++)
        if (strcmp(cfg->namespaces.items[i], nsp) == 0)
            return cfg->namespaces.items[i];
    return NULL;
}

/* ---- room index -------------------------------------------------------------------------------------------------- */

static size_t room_key(char *out, const char *nsp, const char *room, size_t roomlen)
{
    size_t nl = strlen(nsp);
    if (nl + 1 + roomlen > MAX_ROOM_KEY)
        return 0;
    memcpy(out, nsp, nl);
    out[nl] = '\0';
    memcpy(out + nl + 1, room, roomlen);
    return nl + 1 + roomlen;
}

static sb_room_t *room_find(sb_worker_t *w, const char *nsp, const char *room, size_t roomlen)
{
    char key[MAX_ROOM_KEY];
    size_t kl = room_key(key, nsp, room, roomlen);
    return kl == 0 ? NULL : sb_map_get(&w->rooms, key, kl);
}

static sb_member_t *membership(sb_socket_t *s, const char *room, size_t roomlen)
{
    size_t nl = strlen(s->nsp);
    for (h2o_linklist_t *l = s->memberships.next; l != &s->memberships; l = l->next) {
        sb_member_t *m = H2O_STRUCT_FROM_MEMBER(sb_member_t, sock_link, l);
        if (m->room->keylen == nl + 1 + roomlen && memcmp(m->room->key + nl + 1, room, roomlen) == 0)
            return m;
    }
    return NULL;
}

/* Returns 1 when added, 0 when already a member, <0 on error. */
static int local_join(sb_socket_t *s, const char *room, size_t roomlen)
{
    if (membership(s, room, roomlen) != NULL)
        return 0;
    char key[MAX_ROOM_KEY];
    size_t kl = room_key(key, s->nsp, room, roomlen);
    if (kl == 0)
        return SB_ETOOBIG;
    sb_room_t *r = sb_map_get(&s->w->rooms, key, kl);
    if (r == NULL) {
        if ((r = malloc(sizeof(*r) + kl)) == NULL)
            return SB_ENOMEM;
        h2o_linklist_init_anchor(&r->members);
        r->count = 0;
        r->keylen = kl;
        memcpy(r->key, key, kl);
        if (sb_map_set(&s->w->rooms, r->key, kl, r) != 0) {
            free(r);
            return SB_ENOMEM;
        }
    }
    sb_member_t *m = calloc(1, sizeof(*m)); /* h2o asserts that a node it links is unlinked (zeroed) */
    if (m == NULL)
        return SB_ENOMEM;
    m->room = r;
    m->sock = s;
    h2o_linklist_insert(&r->members, &m->room_link);
    h2o_linklist_insert(&s->memberships, &m->sock_link);
    r->count++;
    return 1;
}

static void member_free(sb_worker_t *w, sb_member_t *m)
{
    sb_room_t *r = m->room;
    h2o_linklist_unlink(&m->room_link);
    h2o_linklist_unlink(&m->sock_link);
    free(m);
    if (--r->count == 0) {
        sb_map_del(&w->rooms, r->key, r->keylen);
        free(r);
    }
}

/* ---- sockets ----------------------------------------------------------------------------------------------------- */

static void sock_unref(sb_socket_t *s)
{
    if (--s->refs == 0) {
        free(s->user);
        free(s);
    }
}

static void send_packet_text(sb_socket_t *s, const sb_buf_t *sio)
{
    if (s->sc == NULL || s->sc->eio == NULL)
        return;
    sb_buf_t b;
    sb_buf_init(&b, 0);
    if (sb_buf_append_char(&b, '4') == 0 && sb_buf_append(&b, sio->base, sio->len) == 0)
        sb_eio_send_text(s->sc->eio, b.base, b.len, 0, NULL);
    sb_buf_free(&b);
}

static void send_encoded(sb_socket_t *s, sb_sio_encoded_t *enc)
{
    if (s->sc == NULL || s->sc->eio == NULL)
        return;
    sb_buf_t b;
    sb_buf_init(&b, 0);
    if (sb_buf_append_char(&b, '4') == 0 && sb_buf_append(&b, enc->text.base, enc->text.len) == 0)
        sb_eio_send_text(s->sc->eio, b.base, b.len, enc->nbins, enc->bins);
    sb_buf_free(&b);
}

static void send_ack(sb_socket_t *s, int64_t id, json_t *args)
{
    sb_sio_encoded_t enc;
    memset(&enc, 0, sizeof(enc));
    if (sb_sio_encode_ack(&enc, s->nsp, id, args) == 0)
        send_encoded(s, &enc);
    sb_sio_encoded_clear(&enc);
}

static void send_error_ack(sb_socket_t *s, int64_t id, const char *code, const char *message)
{
    json_t *args = json_pack("[{s:{s:s,s:s}}]", "error", "code", code, "message", message);
    if (args != NULL) {
        send_ack(s, id, args);
        json_decref(args);
    }
}

static void ack_free(pending_ack_t *a)
{
    if (h2o_timeout_is_linked(&a->timer))
        h2o_timeout_unlink(&a->timer);
    h2o_linklist_unlink(&a->link);
    a->sock->nacks--;
    free(a);
}

static void sack_free(server_ack_t *a)
{
    if (h2o_timeout_is_linked(&a->timer))
        h2o_timeout_unlink(&a->timer);
    h2o_linklist_unlink(&a->link);
    a->sock->nsacks--;
    free(a->reply_to);
    free(a->request_id);
    free(a);
}

static void sack_timeout_cb(h2o_timeout_entry_t *e)
{
    /* The requester has its own deadline and answers its caller; only forget the id here. */
    sack_free(H2O_STRUCT_FROM_MEMBER(server_ack_t, timer, e));
}

static void reply_done(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    (void)data;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        sb_log(SB_LOG_WARN, "writing an ack reply failed", "error", reply != NULL ? reply->str : err, NULL);
}

/* The client answered an event the server sent with an ack id. */
static void handle_client_ack(sb_socket_t *s, sb_sio_packet_t *p)
{
    server_ack_t *a = NULL;
    for (h2o_linklist_t *l = s->sacks.next; l != &s->sacks; l = l->next) {
        server_ack_t *x = H2O_STRUCT_FROM_MEMBER(server_ack_t, link, l);
        if (x->id == p->ack_id) {
            a = x;
            break;
        }
    }
    if (a == NULL) {
        sb_log(SB_LOG_DEBUG, "client ack for an unknown or expired id ignored", "socket", s->id, NULL);
        return;
    }
    char *args = json_dumps(p->data, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (args != NULL) {
        const char *xadd[] = {"XADD", a->reply_to, "MAXLEN", "~", "1000", "*", "request_id", a->request_id,
                              "socket", s->id, "args", args};
        size_t xl[SB_ARRAY_SIZE(xadd)];
        for (size_t i = 0; i < SB_ARRAY_SIZE(xadd); i++)
            xl[i] = strlen(xadd[i]);
        /* Reply streams are per requester and short-lived: they expire when nobody reads them any more. */
        const char *exp[] = {"PEXPIRE", a->reply_to, "300000"};
        size_t el[] = {7, strlen(a->reply_to), 6};
        if (sb_redis_commandargv(s->w->cmd, reply_done, NULL, 0, (int)SB_ARRAY_SIZE(xadd), xadd, xl) == 0)
            sb_redis_commandargv(s->w->cmd, reply_done, NULL, 0, 3, exp, el);
        free(args);
    }
    sack_free(a);
}

static pending_ack_t *ack_find(sb_socket_t *s, int64_t id)
{
    for (h2o_linklist_t *l = s->acks.next; l != &s->acks; l = l->next) {
        pending_ack_t *a = H2O_STRUCT_FROM_MEMBER(pending_ack_t, link, l);
        if (a->id == id)
            return a;
    }
    return NULL;
}

static void ack_timeout_cb(h2o_timeout_entry_t *e)
{
    pending_ack_t *a = H2O_STRUCT_FROM_MEMBER(pending_ack_t, timer, e);
    sb_socket_t *s = a->sock;
    char msg[128];
    snprintf(msg, sizeof(msg), "no backend answered within %llu ms", (unsigned long long)s->w->cfg->ack_timeout_ms);
    int64_t id = a->id;
    ack_free(a);
    send_error_ack(s, id, "timeout", msg);
}

static void store_done(sb_worker_t *w, int ok, long long value, void *data)
{
    (void)w;
    (void)ok;
    (void)value;
    sock_unref(data);
}

/* Removes the socket locally and from Redis. */
static void socket_close(sb_socket_t *s, const char *reason)
{
    if (s->state == SOCK_CLOSED)
        return;
    int was_connected = s->state == SOCK_CONNECTED;
    s->state = SOCK_CLOSED;
    while (!h2o_linklist_is_empty(&s->memberships))
        member_free(s->w, H2O_STRUCT_FROM_MEMBER(sb_member_t, sock_link, s->memberships.next));
    while (!h2o_linklist_is_empty(&s->acks))
        ack_free(H2O_STRUCT_FROM_MEMBER(pending_ack_t, link, s->acks.next));
    while (!h2o_linklist_is_empty(&s->sacks))
        sack_free(H2O_STRUCT_FROM_MEMBER(server_ack_t, link, s->sacks.next));
    sb_map_del(&s->w->sockets, s->id, SB_SID_LEN);
    if (h2o_linklist_is_linked(&s->conn_link))
        h2o_linklist_unlink(&s->conn_link);
    s->sc = NULL;
    if (was_connected)
        atomic_fetch_sub(&s->w->stats.sockets, 1);
    sb_log(SB_LOG_DEBUG, "socket disconnected", "socket", s->id, "nsp", s->nsp, "reason", reason, NULL);
    /* Pipelined after the connect FCALL on the same connection, so the order holds even while connecting. */
    s->refs++;
    if (sb_store_disconnect(s->w, s->id, reason, store_done, s) != 0)
        s->refs--;
    sock_unref(s);
}

static sb_socket_t *sio_find_socket(sio_conn_t *sc, const char *nsp)
{
    for (h2o_linklist_t *l = sc->sockets.next; l != &sc->sockets; l = l->next) {
        sb_socket_t *s = H2O_STRUCT_FROM_MEMBER(sb_socket_t, conn_link, l);
        if (strcmp(s->nsp, nsp) == 0)
            return s;
    }
    return NULL;
}

static void send_connect_error(sio_conn_t *sc, const char *nsp, const char *message, const char *code)
{
    sb_buf_t b;
    sb_buf_init(&b, 0);
    json_t *data = code != NULL ? json_pack("{s:s}", "code", code) : NULL;
    if (sb_buf_append_char(&b, '4') == 0) {
        size_t off = b.len;
        (void)off;
        sb_buf_t sio;
        sb_buf_init(&sio, 0);
        if (sb_sio_encode_connect_error(&sio, nsp, message, data) == 0 && sb_buf_append(&b, sio.base, sio.len) == 0 &&
            sc->eio != NULL)
            sb_eio_send_text(sc->eio, b.base, b.len, 0, NULL);
        sb_buf_free(&sio);
    }
    json_decref(data);
    sb_buf_free(&b);
}

static void send_rate_limited_connect_error(sio_conn_t *sc, const char *nsp, long long retry_ms)
{
    json_t *data = json_pack("{s:s,s:I}", "code", "rate_limited", "retry_after_ms", (json_int_t)retry_ms);
    sb_buf_t b, sio;
    sb_buf_init(&b, 0);
    sb_buf_init(&sio, 0);
    if (data != NULL && sb_sio_encode_connect_error(&sio, nsp, "Too many connections", data) == 0 &&
        sb_buf_append_char(&b, '4') == 0 && sb_buf_append(&b, sio.base, sio.len) == 0)
        sb_eio_send_text(sc->eio, b.base, b.len, 0, NULL);
    json_decref(data);
    sb_buf_free(&sio);
    sb_buf_free(&b);
}

static void connect_done(sb_worker_t *w, int status, long long retry_ms, void *data)
{
    sb_socket_t *s = data;
    if (s->state == SOCK_CONNECTING) {
        if (status != SB_OK) {
            sio_conn_t *sc = s->sc;
            if (status == SB_EAGAIN) {
                sb_log(SB_LOG_DEBUG, "connect refused: too many connections from this address", "socket", s->id,
                       NULL);
                if (sc != NULL && sc->eio != NULL)
                    send_rate_limited_connect_error(sc, s->nsp, retry_ms);
                socket_close(s, "rate limited");
            } else {
                sb_log(SB_LOG_WARN, "socket registration failed, refusing connect", "socket", s->id, NULL);
                if (sc != NULL)
                    send_connect_error(sc, s->nsp, "Service unavailable", "unavailable");
                socket_close(s, "server unavailable");
            }
        } else {
            s->state = SOCK_CONNECTED;
            atomic_fetch_add(&w->stats.sockets, 1);
            char room[8 + 512];
            int n = snprintf(room, sizeof(room), "user:%s", s->user);
            if (local_join(s, "", 0) < 0 || local_join(s, s->id, SB_SID_LEN) < 0 ||
                (n > 0 && (size_t)n < sizeof(room) && local_join(s, room, (size_t)n) < 0)) {
                socket_close(s, "server error");
            } else {
                sb_buf_t sio;
                sb_buf_init(&sio, 0);
                if (sb_sio_encode_connect(&sio, s->nsp, s->id, NULL, NULL) == 0)
                    send_packet_text(s, &sio);
                sb_buf_free(&sio);
                sb_log(SB_LOG_DEBUG, "socket connected", "socket", s->id, "nsp", s->nsp, NULL);
            }
        }
    }
    sock_unref(s);
}

static void handle_connect(sio_conn_t *sc, sb_sio_packet_t *p)
{
    sb_worker_t *w = sc->w;
    if (h2o_timeout_is_linked(&sc->connect_timer))
        h2o_timeout_unlink(&sc->connect_timer);
    const char *nsp = find_nsp(w->cfg, p->nsp);
    if (nsp == NULL) {
        send_connect_error(sc, p->nsp, "Invalid namespace", NULL);
        return;
    }
    if (sio_find_socket(sc, nsp) != NULL) {
        sb_log(SB_LOG_DEBUG, "duplicate CONNECT ignored", "nsp", nsp, NULL);
        return;
    }
    sb_socket_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        send_connect_error(sc, p->nsp, "Service unavailable", "unavailable");
        return;
    }
    sb_random_id(s->id, SB_SID_LEN);
    s->nsp = nsp;
    s->w = w;
    s->sc = sc;
    s->refs = 1;
    s->state = SOCK_CONNECTING;
    h2o_linklist_init_anchor(&s->memberships);
    h2o_linklist_init_anchor(&s->acks);
    h2o_linklist_init_anchor(&s->sacks);
    s->user = strdup(s->id); /* anonymous mode: the user is the socket */
    char *auth = p->data != NULL ? json_dumps(p->data, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (s->user == NULL || sb_map_set(&w->sockets, s->id, SB_SID_LEN, s) != 0) {
        free(auth);
        free(s->user);
        free(s);
        send_connect_error(sc, p->nsp, "Service unavailable", "unavailable");
        return;
    }
    h2o_linklist_insert(&sc->sockets, &s->conn_link);
    s->refs++;
    const char *transport = sb_eio_transport(sc->eio) == SB_EIO_WEBSOCKET ? "websocket" : "polling";
    if (sb_store_connect(w, s->id, nsp, s->user, transport, auth != NULL ? auth : "{}", sb_eio_addr(sc->eio), NULL, 0,
                         connect_done, s) != 0) {
        s->refs--;
        send_connect_error(sc, p->nsp, "Service unavailable", "unavailable");
        socket_close(s, "server unavailable");
    }
    free(auth);
}

typedef struct event_ctx {
    sb_socket_t *sock;
    int64_t ack_id;
} event_ctx_t;

/* The rate check (and stream write) of a client event is done. */
static void event_stored(sb_worker_t *w, int status, long long retry_ms, void *data)
{
    event_ctx_t *ec = data;
    sb_socket_t *s = ec->sock;
    pending_ack_t *a = ec->ack_id >= 0 && s->state == SOCK_CONNECTED ? ack_find(s, ec->ack_id) : NULL;
    if (status == SB_EAGAIN) {
        atomic_fetch_add(&w->stats.rate_limited, 1);
        if (a != NULL) {
            ack_free(a);
            json_t *args = json_pack("[{s:{s:s,s:s,s:I}}]", "error", "code", "rate_limited", "message",
                                     "too many events; slow down", "retry_after_ms", (json_int_t)retry_ms);
            if (args != NULL)
                send_ack(s, ec->ack_id, args);
            json_decref(args);
        }
        if (w->cfg->rate_abuse_limit > 0 && ++s->limited_in_a_row >= w->cfg->rate_abuse_limit &&
            s->state == SOCK_CONNECTED && s->sc != NULL && s->sc->eio != NULL) {
            sb_log(SB_LOG_WARN, "socket keeps sending over its rate limit, disconnecting", "socket", s->id, NULL);
            s->close_reason = "rate limited";
            sb_eio_close(s->sc->eio, "forced close");
        }
    } else if (status != SB_OK) {
        atomic_fetch_add(&w->stats.dropped, 1);
        sb_log(SB_LOG_WARN, "client event could not be stored", "socket", s->id, NULL);
        if (a != NULL) {
            ack_free(a);
            send_error_ack(s, ec->ack_id, "backend_unavailable", "the event could not be queued for backends");
        }
    } else {
        s->limited_in_a_row = 0;
    }
    free(ec);
    sock_unref(s);
}

static void handle_event(sb_socket_t *s, sb_sio_packet_t *p)
{
    sb_worker_t *w = s->w;
    atomic_fetch_add(&w->stats.events_in, 1);
    json_t *name = json_array_get(p->data, 0);
    json_t *args = json_array();
    if (args == NULL)
        return;
    for (size_t i = 1; i < json_array_size(p->data); i++)
        json_array_append(args, json_array_get(p->data, i));
    char *argtext = json_dumps(args, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    json_decref(args);
    if (argtext == NULL)
        return;
    if (p->ack_id >= 0) {
        if (s->nacks >= MAX_PENDING_ACKS) {
            send_error_ack(s, p->ack_id, "too_many_pending_acks", "too many events are waiting for an answer");
            free(argtext);
            return;
        }
        pending_ack_t *a = calloc(1, sizeof(*a));
        if (a == NULL) {
            free(argtext);
            return;
        }
        a->id = p->ack_id;
        a->sock = s;
        a->timer.cb = ack_timeout_cb;
        h2o_linklist_insert(&s->acks, &a->link);
        s->nacks++;
        h2o_timeout_link(w->ctx.loop, &w->ack_to, &a->timer);
    }
    event_ctx_t *ec = malloc(sizeof(*ec));
    if (ec == NULL) {
        free(argtext);
        return;
    }
    ec->sock = s;
    ec->ack_id = p->ack_id;
    s->refs++;
    if (sb_store_event(w, s->nsp, s->id, s->user, json_string_value(name), argtext, strlen(argtext), p->ack_id, 1,
                       event_stored, ec) != 0) {
        free(ec);
        s->refs--;
        atomic_fetch_add(&w->stats.dropped, 1);
        if (p->ack_id >= 0) {
            pending_ack_t *a = ack_find(s, p->ack_id);
            if (a != NULL)
                ack_free(a);
            send_error_ack(s, p->ack_id, "backend_unavailable", "the event could not be queued for backends");
        }
    }
    free(argtext);
}

static void protocol_error(sio_conn_t *sc, const char *why)
{
    sb_log(SB_LOG_WARN, "socket.io protocol error, closing connection", "sid", sb_eio_sid(sc->eio), "why", why,
           "remote", sb_eio_remote(sc->eio), NULL);
    sb_eio_close(sc->eio, "parse error");
}

static void pending_clear(sio_conn_t *sc)
{
    for (size_t i = 0; i < sc->nbins; i++)
        free(sc->bins[i]);
    free(sc->bins);
    free(sc->lens);
    sc->bins = NULL;
    sc->lens = NULL;
    sc->nbins = 0;
    if (sc->has_pending)
        sb_sio_packet_clear(&sc->pending);
    sc->has_pending = 0;
}

static void dispatch(sio_conn_t *sc, sb_sio_packet_t *p)
{
    if (p->type == SB_SIO_CONNECT) {
        handle_connect(sc, p);
        return;
    }
    sb_socket_t *s = sio_find_socket(sc, p->nsp);
    if (s == NULL || s->state != SOCK_CONNECTED) {
        /* A packet for a namespace that is not connected: Socket.IO closes the connection. */
        sb_log(SB_LOG_WARN, "packet for a namespace that is not connected, closing", "nsp", p->nsp, NULL);
        sb_eio_close(sc->eio, "forced close");
        return;
    }
    switch (p->type) {
    case SB_SIO_EVENT:
    case SB_SIO_BINARY_EVENT:
        handle_event(s, p);
        break;
    case SB_SIO_ACK:
    case SB_SIO_BINARY_ACK:
        handle_client_ack(s, p);
        break;
    case SB_SIO_DISCONNECT:
        socket_close(s, "client namespace disconnect");
        break;
    default:
        break;
    }
}

static void connect_timeout_cb(h2o_timeout_entry_t *e)
{
    sio_conn_t *sc = H2O_STRUCT_FROM_MEMBER(sio_conn_t, connect_timer, e);
    if (h2o_linklist_is_empty(&sc->sockets) && sc->eio != NULL) {
        sb_log(SB_LOG_DEBUG, "no namespace connected in time, closing", "sid", sb_eio_sid(sc->eio), NULL);
        sb_eio_close(sc->eio, "connect timeout");
    }
}

void sb_session_on_open(sb_eio_conn_t *c)
{
    sb_worker_t *w = sb_eio_worker(c);
    sio_conn_t *sc = calloc(1, sizeof(*sc));
    if (sc == NULL) {
        sb_eio_close(c, "server error");
        return;
    }
    sc->eio = c;
    sc->w = w;
    h2o_linklist_init_anchor(&sc->sockets);
    sc->connect_timer.cb = connect_timeout_cb;
    h2o_timeout_link(w->ctx.loop, &w->connect_to, &sc->connect_timer);
    sb_eio_set_data(c, sc);
}

void sb_session_on_message(sb_eio_conn_t *c, int binary, const char *data, size_t len)
{
    sio_conn_t *sc = sb_eio_data(c);
    if (sc == NULL)
        return;
    if (binary) {
        if (!sc->has_pending) {
            protocol_error(sc, "unexpected binary attachment");
            return;
        }
        char *copy = malloc(len > 0 ? len : 1);
        if (copy == NULL) {
            protocol_error(sc, "out of memory");
            return;
        }
        memcpy(copy, data, len);
        sc->bins[sc->nbins] = copy;
        sc->lens[sc->nbins] = len;
        if (++sc->nbins == sc->pending.attachments) {
            const char *why = NULL;
            if (sb_sio_attach_binary(sc->pending.data, (const void *const *)sc->bins, sc->lens, sc->nbins, &why) != 0) {
                protocol_error(sc, why != NULL ? why : "bad attachment");
                pending_clear(sc);
                return;
            }
            sb_sio_packet_t p = sc->pending;
            sc->has_pending = 0;
            pending_clear(sc);
            dispatch(sc, &p);
            sb_sio_packet_clear(&p);
        }
        return;
    }
    if (sc->has_pending) {
        protocol_error(sc, "text packet while waiting for binary attachments");
        return;
    }
    sb_sio_packet_t p;
    const char *why = NULL;
    if (sb_sio_parse(data, len, sc->w->cfg->max_attachments, &p, &why) != 0) {
        protocol_error(sc, why != NULL ? why : "malformed packet");
        return;
    }
    if ((p.type == SB_SIO_BINARY_EVENT || p.type == SB_SIO_BINARY_ACK) && p.attachments > 0) {
        sc->bins = calloc(p.attachments, sizeof(*sc->bins));
        sc->lens = calloc(p.attachments, sizeof(*sc->lens));
        if (sc->bins == NULL || sc->lens == NULL) {
            sb_sio_packet_clear(&p);
            pending_clear(sc);
            protocol_error(sc, "out of memory");
            return;
        }
        sc->pending = p;
        sc->has_pending = 1;
        return;
    }
    dispatch(sc, &p);
    sb_sio_packet_clear(&p);
}

void sb_session_on_close(sb_eio_conn_t *c, const char *reason)
{
    sio_conn_t *sc = sb_eio_data(c);
    if (sc == NULL)
        return;
    sb_eio_set_data(c, NULL);
    if (h2o_timeout_is_linked(&sc->connect_timer))
        h2o_timeout_unlink(&sc->connect_timer);
    while (!h2o_linklist_is_empty(&sc->sockets)) {
        sb_socket_t *s = H2O_STRUCT_FROM_MEMBER(sb_socket_t, conn_link, sc->sockets.next);
        socket_close(s, s->close_reason != NULL ? s->close_reason : reason);
    }
    pending_clear(sc);
    free(sc);
}

/* ---- bus operations ---------------------------------------------------------------------------------------------- */

/* Collects the targeted local sockets of a bus message into `out` (deduplicated). */
typedef struct target_vec {
    sb_socket_t **items;
    size_t count, cap;
} target_vec_t;

static int vec_push(target_vec_t *v, sb_socket_t *s)
{
    if (v->count == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 16;
        sb_socket_t **n = realloc(v->items, ncap * sizeof(*n));
        if (n == NULL)
            return SB_ENOMEM;
        v->items = n;
        v->cap = ncap;
    }
    v->items[v->count++] = s;
    return 0;
}

static int str_array(json_t *msg, const char *field, json_t **out, const char **why)
{
    json_t *a = json_object_get(msg, field);
    *out = NULL;
    if (a == NULL || json_is_null(a))
        return 0;
    if (!json_is_array(a)) {
        *why = field;
        return SB_EINVAL;
    }
    for (size_t i = 0; i < json_array_size(a); i++)
        if (!json_is_string(json_array_get(a, i))) {
            *why = field;
            return SB_EINVAL;
        }
    *out = json_array_size(a) > 0 ? a : NULL;
    return 0;
}

static void mark_room(sb_worker_t *w, const char *nsp, const char *prefix, json_t *name, uint64_t seq, int except,
                      target_vec_t *v)
{
    char buf[MAX_ROOM_KEY];
    const char *room = json_string_value(name);
    size_t rl = json_string_length(name);
    if (prefix != NULL) {
        size_t pl = strlen(prefix);
        if (pl + rl >= sizeof(buf))
            return;
        memcpy(buf, prefix, pl);
        memcpy(buf + pl, room, rl);
        room = buf;
        rl += pl;
    }
    sb_room_t *r = room_find(w, nsp, room, rl);
    if (r == NULL)
        return;
    for (h2o_linklist_t *l = r->members.next; l != &r->members; l = l->next) {
        sb_socket_t *s = H2O_STRUCT_FROM_MEMBER(sb_member_t, room_link, l)->sock;
        if (except) {
            s->except_mark = seq;
        } else if (s->mark != seq && s->except_mark != seq) {
            s->mark = seq;
            if (v != NULL)
                vec_push(v, s);
        }
    }
}

static const char *msg_nsp(sb_worker_t *w, json_t *msg, const char **why)
{
    json_t *n = json_object_get(msg, "namespace");
    if (n == NULL || json_is_null(n))
        return "/";
    if (!json_is_string(n)) {
        *why = "namespace";
        return NULL;
    }
    const char *nsp = find_nsp(w->cfg, json_string_value(n));
    if (nsp == NULL)
        *why = "namespace";
    return nsp;
}

/* Targets: sockets, users, rooms (any combination); none of them = `all_if_none` ? whole namespace : nothing. */
static int collect_targets(sb_worker_t *w, json_t *msg, const char *nsp, int all_if_none, int with_except,
                           target_vec_t *v, const char **why)
{
    json_t *rooms, *users, *socks, *xrooms = NULL, *xsocks = NULL;
    if (str_array(msg, "rooms", &rooms, why) || str_array(msg, "users", &users, why) ||
        str_array(msg, "sockets", &socks, why))
        return SB_EINVAL;
    if (with_except && (str_array(msg, "except_rooms", &xrooms, why) || str_array(msg, "except_sockets", &xsocks, why)))
        return SB_EINVAL;
    uint64_t seq = ++w->emit_seq;
    size_t i;
    json_t *it;
    json_array_foreach(xrooms, i, it) mark_room(w, nsp, NULL, it, seq, 1, NULL);
    json_array_foreach(xsocks, i, it) mark_room(w, nsp, NULL, it, seq, 1, NULL);
    if (rooms == NULL && users == NULL && socks == NULL) {
        if (all_if_none) {
            json_t *all = json_string("");
            mark_room(w, nsp, NULL, all, seq, 0, v);
            json_decref(all);
        }
        return 0;
    }
    json_array_foreach(rooms, i, it) mark_room(w, nsp, NULL, it, seq, 0, v);
    json_array_foreach(users, i, it) mark_room(w, nsp, "user:", it, seq, 0, v);
    json_array_foreach(socks, i, it) mark_room(w, nsp, NULL, it, seq, 0, v);
    return 0;
}

static void emit_with_ack(sb_socket_t *s, const char *event, json_t *args, const char *reply_to,
                          const char *request_id)
{
    if (s->state != SOCK_CONNECTED || s->sc == NULL || s->nsacks >= MAX_PENDING_ACKS)
        return; /* the requester times out and tells its caller */
    server_ack_t *a = calloc(1, sizeof(*a));
    if (a == NULL || (a->reply_to = strdup(reply_to)) == NULL || (a->request_id = strdup(request_id)) == NULL) {
        if (a != NULL)
            free(a->reply_to);
        free(a);
        return;
    }
    a->id = s->next_ack_id++;
    a->sock = s;
    a->timer.cb = sack_timeout_cb;
    sb_sio_encoded_t enc;
    memset(&enc, 0, sizeof(enc));
    if (sb_sio_encode_event(&enc, s->nsp, event, args, a->id) != 0) {
        sb_sio_encoded_clear(&enc);
        free(a->reply_to);
        free(a->request_id);
        free(a);
        return;
    }
    h2o_linklist_insert(&s->sacks, &a->link);
    s->nsacks++;
    h2o_timeout_link(s->w->ctx.loop, &s->w->server_ack_to, &a->timer);
    send_encoded(s, &enc);
    sb_sio_encoded_clear(&enc);
    atomic_fetch_add(&s->w->stats.events_out, 1);
}

int sb_session_apply_emit(sb_worker_t *w, json_t *msg, const char **why)
{
    const char *nsp = msg_nsp(w, msg, why);
    if (nsp == NULL)
        return SB_EINVAL;
    json_t *event = json_object_get(msg, "event");
    if (!json_is_string(event) || json_string_length(event) == 0) {
        *why = "event";
        return SB_EINVAL;
    }
    json_t *args = json_object_get(msg, "args");
    if (args != NULL && !json_is_null(args) && !json_is_array(args)) {
        *why = "args";
        return SB_EINVAL;
    }
    if (json_is_null(args))
        args = NULL;
    target_vec_t v = {0};
    if (collect_targets(w, msg, nsp, 1, 1, &v, why) != 0)
        return SB_EINVAL;
    if (v.count == 0) {
        free(v.items);
        return 0;
    }
    /* Encode once; the same bytes go to every recipient. */
    sb_sio_encoded_t enc;
    memset(&enc, 0, sizeof(enc));
    int rv = sb_sio_encode_event(&enc, nsp, json_string_value(event), args, -1);
    if (rv != 0) {
        *why = "args";
        free(v.items);
        return SB_EINVAL;
    }
    sb_buf_t text;
    sb_buf_init(&text, 0);
    if (sb_buf_append_char(&text, '4') != 0 || sb_buf_append(&text, enc.text.base, enc.text.len) != 0) {
        sb_buf_free(&text);
        sb_sio_encoded_clear(&enc);
        free(v.items);
        return SB_ENOMEM;
    }
    json_t *reply_to = json_object_get(msg, "reply_to"), *request_id = json_object_get(msg, "request_id");
    if (reply_to != NULL && !json_is_null(reply_to)) {
        /* Each recipient gets the event with its own ack id; its answer goes to the reply_to stream. */
        if (!json_is_string(reply_to) || json_string_length(reply_to) == 0 || json_string_length(reply_to) > 512 ||
            !json_is_string(request_id) || json_string_length(request_id) == 0 ||
            json_string_length(request_id) > 128) {
            *why = !json_is_string(reply_to) ? "reply_to" : "request_id";
            sb_buf_free(&text);
            sb_sio_encoded_clear(&enc);
            free(v.items);
            return SB_EINVAL;
        }
        for (size_t i = 0; i < v.count; i++)
            emit_with_ack(v.items[i], json_string_value(event), args, json_string_value(reply_to),
                          json_string_value(request_id));
        sb_buf_free(&text);
        sb_sio_encoded_clear(&enc);
        free(v.items);
        return 0;
    }
    json_t *vol = json_object_get(msg, "volatile");
    sb_eio_msg_t m = {text.base, text.len, enc.nbins, enc.bins, NULL, json_is_true(vol)};
    for (size_t i = 0; i < v.count; i++) {
        sb_socket_t *s = v.items[i];
        if (s->state == SOCK_CONNECTED && s->sc != NULL && s->sc->eio != NULL)
            if (sb_eio_send_msg(s->sc->eio, &m) == 0)
                atomic_fetch_add(&w->stats.events_out, 1);
    }
    sb_eio_msg_release(&m);
    sb_buf_free(&text);
    sb_sio_encoded_clear(&enc);
    free(v.items);
    return 0;
}

int sb_session_apply_join(sb_worker_t *w, json_t *msg, int join, const char **why)
{
    const char *nsp = msg_nsp(w, msg, why);
    if (nsp == NULL)
        return SB_EINVAL;
    json_t *rooms;
    if (str_array(msg, "rooms", &rooms, why) != 0)
        return SB_EINVAL;
    if (rooms == NULL) {
        *why = "rooms";
        return SB_EINVAL;
    }
    json_t *stripped = json_deep_copy(msg);
    if (stripped == NULL)
        return SB_ENOMEM;
    json_object_del(stripped, "rooms"); /* targets are sockets/users; "rooms" is what to join */
    target_vec_t v = {0};
    int rv = collect_targets(w, stripped, nsp, 0, 0, &v, why);
    json_decref(stripped);
    if (rv != 0)
        return SB_EINVAL;
    for (size_t i = 0; i < v.count; i++) {
        sb_socket_t *s = v.items[i];
        size_t k;
        json_t *it;
        json_array_foreach(rooms, k, it)
        {
            if (s->state != SOCK_CONNECTED)
                break;
            const char *room = json_string_value(it);
            size_t rl = json_string_length(it);
            int changed;
            if (join) {
                changed = local_join(s, room, rl) == 1;
            } else {
                sb_member_t *m = membership(s, room, rl);
                changed = m != NULL;
                if (m != NULL)
                    member_free(w, m);
            }
            /* The own-id room is implicit in Redis (see docs/redis-keys.md). */
            if (changed && !(rl == SB_SID_LEN && memcmp(room, s->id, rl) == 0)) {
                s->refs++;
                if (sb_store_join(w, s->id, room, join, store_done, s) != 0)
                    s->refs--;
            }
        }
    }
    free(v.items);
    return 0;
}

int sb_session_apply_disconnect(sb_worker_t *w, json_t *msg, const char **why)
{
    const char *nsp = msg_nsp(w, msg, why);
    if (nsp == NULL)
        return SB_EINVAL;
    json_t *reason = json_object_get(msg, "reason");
    if (reason != NULL && !json_is_string(reason)) {
        *why = "reason";
        return SB_EINVAL;
    }
    target_vec_t v = {0};
    if (collect_targets(w, msg, nsp, 0, 0, &v, why) != 0)
        return SB_EINVAL;
    for (size_t i = 0; i < v.count; i++)
        v.items[i]->refs++; /* closing one socket must not free another we still hold */
    for (size_t i = 0; i < v.count; i++) {
        sb_socket_t *s = v.items[i];
        if (s->state == SOCK_CONNECTED) {
            sb_buf_t sio;
            sb_buf_init(&sio, 0);
            if (sb_sio_encode_disconnect(&sio, s->nsp) == 0)
                send_packet_text(s, &sio);
            sb_buf_free(&sio);
            socket_close(s, reason != NULL ? json_string_value(reason) : "server namespace disconnect");
        }
        sock_unref(s);
    }
    free(v.items);
    return 0;
}

int sb_session_apply_ack(sb_worker_t *w, json_t *msg, const char **why)
{
    json_t *sid = json_object_get(msg, "socket"), *id = json_object_get(msg, "ack_id"), *args = json_object_get(msg, "args");
    if (!json_is_string(sid)) {
        *why = "socket";
        return SB_EINVAL;
    }
    if (!json_is_integer(id) || json_integer_value(id) < 0) {
        *why = "ack_id";
        return SB_EINVAL;
    }
    if (args != NULL && !json_is_array(args)) {
        *why = "args";
        return SB_EINVAL;
    }
    if (json_string_length(sid) != SB_SID_LEN)
        return 0;
    sb_socket_t *s = sb_map_get(&w->sockets, json_string_value(sid), SB_SID_LEN);
    if (s == NULL || s->state != SOCK_CONNECTED)
        return 0; /* another worker's or node's socket, or gone */
    pending_ack_t *a = ack_find(s, json_integer_value(id));
    if (a == NULL) {
        sb_log(SB_LOG_DEBUG, "ack for an unknown or answered ack id ignored", "socket", s->id, NULL);
        return 0;
    }
    int64_t ack_id = a->id;
    ack_free(a);
    json_t *empty = NULL;
    if (args == NULL)
        args = empty = json_array();
    send_ack(s, ack_id, args);
    json_decref(empty);
    return 0;
}

void sb_session_worker_init(sb_worker_t *w)
{
    h2o_timeout_init(w->ctx.loop, &w->connect_to, w->cfg->connect_timeout_ms);
    h2o_timeout_init(w->ctx.loop, &w->ack_to, w->cfg->ack_timeout_ms);
    h2o_timeout_init(w->ctx.loop, &w->server_ack_to, SB_SERVER_ACK_MAX_MS + 1000);
}

void sb_session_worker_free(sb_worker_t *w)
{
    sb_map_free(&w->rooms);
    sb_map_free(&w->sockets);
}
