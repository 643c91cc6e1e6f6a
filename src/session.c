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
#include "switchboard/api.h"
#include "switchboard/auth.h"
#include "switchboard/durable.h"
#include "switchboard/engineio.h"
#include "switchboard/log.h"
#include "switchboard/session.h"
#include "switchboard/socketio.h"
#include "switchboard/store.h"
#include "switchboard/webhook.h"

#define MAX_ROOM_KEY 1024
#define MAX_PENDING_ACKS 1024
/* Connection state recovery: bus entries fetched per replay round, the wait for this worker's bus reader when a
 * client's offset is ahead of it, and how long a replay may wait for it in all. */
#define REPLAY_BATCH 256
#define REPLAY_RETRY_MS 20
#define REPLAY_MAX_WAIT_MS 5000
#define PID_SECRET_LEN 20

/* A room's members are an array rather than a list: a broadcast walks it, and an array can be read ahead (see
 * mark_room). Most rooms (a socket's own id, its user) have one member, kept inline. */
typedef struct sb_room {
    struct sb_member **members; /* `one` while cap is 1 */
    uint32_t count, cap;
    struct sb_member *one;
    size_t keylen;
    char key[]; /* "<nsp>\0<room>" */
} sb_room_t;

typedef struct sb_socket sb_socket_t;

typedef struct sb_member {
    sb_room_t *room;
    sb_socket_t *sock;
    size_t idx; /* in room->members */
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
    char *reply_to; /* NULL for a durable emit */
    char *request_id;
    char *inbox_id; /* a durable emit: the user's inbox entry deleted when the client acks */
    sb_socket_t *sock;
    h2o_timeout_entry_t timer;
    h2o_linklist_t link;
} server_ack_t;

enum { SOCK_CONNECTING, SOCK_CONNECTED, SOCK_CLOSED };

/* Connection state recovery of one socket, allocated only while it is needed (memory per connection is measured):
 * from the CONNECT to its answer (the pid to hand out), and while missed bus entries are replayed. A new socket
 * uses the same replay for what the bus brought it while Redis registered it: nothing reaches a client before the
 * CONNECT answer (Socket.IO's order), and nothing is lost or reordered meanwhile. */
typedef struct recovery {
    char secret[PID_SECRET_LEN + 1]; /* the pid's secret half; "" when recovery is off */
    char offset[48];                 /* CONNECT answer's offset: replay starts after it when the client has none */
    int inflight;                    /* sb_recover is in flight: the socket's Redis state is not ours yet */
    /* replay: the bus entries in (cursor, upto] are fetched from Redis (upto: this worker's bus position when the
     * replay began, fixed, so the fetching ends) and applied to this socket alone; live entries skip it meanwhile
     * and wait in the worker's backlog (from backlog sequence `from` on), applied to it when the fetching is done.
     * So it gets each entry exactly once, in order, whatever the bus rate. */
    int replaying;
    uint64_t from;  /* backlog sequence number of the first live entry it skipped */
    uint64_t epoch; /* the backlog's epoch when it began: a backlog that overflowed since lost entries for it */
    h2o_linklist_t replay_link; /* in the backlog's list of replaying sockets */
    int fresh;             /* a new socket catching up with what came for it while it connected (not a recovered one) */
    char close_reason[48]; /* a close while sb_recover was in flight, carried out when it answers */
    char cursor[48];
    char upto[48];
    uint64_t deadline;
    h2o_timeout_entry_t timer;
    struct sb_socket *sock;
} recovery_t;

struct sb_socket {
    /* A broadcast's fields first: marking and sending read these for every recipient (one cache line). */
    uint64_t mark;
    uint64_t except_mark;
    recovery_t *rec; /* NULL unless connecting with recovery on, or replaying */
    sio_conn_t *sc;  /* NULL once closed */
    int state;
    char id[SB_SID_LEN + 1];
    /* In the room named after its id. That room is implicit here as in Redis: no room or member is allocated for it
     * (two allocations and a map entry per socket); mark_room finds the socket through the sockets index. */
    unsigned char own_room;
    const char *nsp; /* points into the config (static for the process) */
    char *user;
    char *auth;          /* the CONNECT payload as JSON text, for a connect webhook; freed once connected */
    sb_claims_t *claims; /* what the token grants; NULL in anonymous mode */
    int admin;           /* a dashboard socket on /_admin: never in Redis, no rooms */
    h2o_linklist_t admin_link;
    int expiring_sent;       /* $token_expiring was sent for the current exp */
    h2o_linklist_t exp_link; /* in the worker's list of sockets with a token, by exp (expiry sweep) */
    sb_worker_t *w;
    int refs;
    h2o_linklist_t memberships; /* sb_member_t.sock_link */
    h2o_linklist_t acks;        /* pending_ack_t.link */
    size_t nacks;
    h2o_linklist_t sacks;      /* server_ack_t.link */
    unsigned limited_in_a_row; /* events refused by the rate limits since the last accepted one */
    const char *close_reason;  /* overrides the connection's reason in the disconnect entry */
    char *pending_disconnect;  /* a bus disconnect that arrived while connecting */
    size_t nsacks;
    int64_t next_ack_id;
    h2o_linklist_t conn_link;
    uint64_t gen;     /* the incarnation in Redis (sb_recover increments it) */
    int unregistered; /* its Redis state is not ours (a refused recovery): closing it writes nothing there */
    struct durable_sock *durable; /* durable emits: allocated while the connect read runs or once one is delivered */
};

struct sio_conn {
    sb_eio_conn_t *eio;
    sb_worker_t *w;
    h2o_linklist_t sockets;
    h2o_timeout_entry_t connect_timer;
    struct binary_pending *pending; /* a binary packet waiting for its attachments, NULL otherwise */
};

/* Allocated only while a binary packet waits for its attachments: the packet alone (its namespace buffer) is over
 * 300 bytes, too much to carry in every connection. One block: the attachments' pointers and lengths follow. */
typedef struct binary_pending {
    sb_sio_packet_t packet; /* owned: its data is freed with it */
    size_t nbins;
    char **bins;
    size_t *lens;
} binary_pending_t;

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
        /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): the analyzer loses h2o list invariants after an unlink */
        if (m->room->keylen == nl + 1 + roomlen && memcmp(m->room->key + nl + 1, room, roomlen) == 0)
            return m;
    }
    return NULL;
}

static int room_grow(sb_room_t *r)
{
    uint32_t ncap = r->cap * 2;
    sb_member_t **n;
    if (ncap < r->cap)
        return SB_ENOMEM;
    if (r->members == &r->one) {
        if ((n = malloc(ncap * sizeof(*n))) == NULL)
            return SB_ENOMEM;
        n[0] = r->one;
    } else if ((n = realloc(r->members, ncap * sizeof(*n))) == NULL) {
        return SB_ENOMEM;
    }
    r->members = n;
    r->cap = ncap;
    return 0;
}

static int is_own_room(const sb_socket_t *s, const char *room, size_t roomlen)
{
    return roomlen == SB_SID_LEN && memcmp(room, s->id, SB_SID_LEN) == 0;
}

/* Returns 1 when added, 0 when already a member, <0 on error. */
static int local_join(sb_socket_t *s, const char *room, size_t roomlen)
{
    if (is_own_room(s, room, roomlen)) {
        int added = !s->own_room;
        s->own_room = 1;
        return added;
    }
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
        r->members = &r->one;
        r->count = 0;
        r->cap = 1;
        r->one = NULL;
        r->keylen = kl;
        memcpy(r->key, key, kl);
        if (sb_map_set(&s->w->rooms, r->key, kl, r) != 0) {
            free(r);
            return SB_ENOMEM;
        }
    }
    if (r->count == r->cap && room_grow(r) != 0) /* a new room has room for one */
        return SB_ENOMEM;
    sb_member_t *m = calloc(1, sizeof(*m)); /* h2o asserts that a node it links is unlinked (zeroed) */
    if (m == NULL) {
        if (r->count == 0) {
            sb_map_del(&s->w->rooms, r->key, r->keylen);
            free(r);
        }
        return SB_ENOMEM;
    }
    m->room = r;
    m->sock = s;
    m->idx = r->count;
    r->members[r->count++] = m;
    h2o_linklist_insert(&s->memberships, &m->sock_link);
    return 1;
}

static void member_free(sb_worker_t *w, sb_member_t *m)
{
    /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): the analyzer loses h2o list invariants after an unlink */
    sb_room_t *r = m->room;
    /* The last member takes the leaver's place: a room has no order. */
    sb_member_t *last = r->members[--r->count];
    r->members[m->idx] = last;
    last->idx = m->idx;
    h2o_linklist_unlink(&m->sock_link);
    free(m);
    if (r->count == 0) {
        sb_map_del(&w->rooms, r->key, r->keylen);
        if (r->members != &r->one)
            free(r->members);
        free(r);
    } else if (r->cap >= 64 && r->count < r->cap / 4) {
        /* A room that emptied out gives back half its array (a failed shrink keeps the larger one). */
        sb_member_t **n = realloc(r->members, (r->cap / 2) * sizeof(*n));
        if (n != NULL) {
            r->members = n;
            r->cap /= 2;
        }
    }
}

/* Returns 1 when s was in the room, 0 when not. */
static int local_leave(sb_socket_t *s, const char *room, size_t roomlen)
{
    if (is_own_room(s, room, roomlen)) {
        int was = s->own_room;
        s->own_room = 0;
        return was;
    }
    sb_member_t *m = membership(s, room, roomlen);
    if (m != NULL)
        member_free(s->w, m);
    return m != NULL;
}

/* ---- sockets ----------------------------------------------------------------------------------------------------- */

static void sock_unref(sb_socket_t *s)
{
    if (--s->refs == 0) {
        free(s->pending_disconnect);
        free(s->durable);
        if (s->claims != NULL) {
            sb_claims_free(s->claims);
            free(s->claims);
        }
        free(s->auth);
        free(s->user);
        free(s->rec);
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

static void post_webhook(sb_socket_t *s, int wh, const char *type, const char *event, const char *argtext,
                         int64_t ack_id, const char *extra_name, const char *extra_value);

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
    free(a->inbox_id);
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

static void durable_acked(sb_socket_t *s, server_ack_t *a);

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
    if (a->inbox_id != NULL) {
        durable_acked(s, a);
        sack_free(a);
        return;
    }
    char *args = json_dumps(p->data, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (args != NULL) {
        const char *xadd[] = {"XADD",       a->reply_to,   "MAXLEN", "~",   "1000", "*",
                              "request_id", a->request_id, "socket", s->id, "args", args};
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

_Static_assert(SB_REASONS == SB_METRIC_REASONS, "one disconnect metric per reason");

const char *const sb_session_reasons[SB_REASONS] = {"transport close",
                                                    "transport error",
                                                    "ping timeout",
                                                    "parse error",
                                                    "client namespace disconnect",
                                                    "server namespace disconnect",
                                                    "server shutting down",
                                                    "forced close",
                                                    "token expired",
                                                    "rate limited",
                                                    "server unavailable",
                                                    "server rebalancing",
                                                    "other"};

unsigned sb_session_reason_index(const char *reason)
{
    for (unsigned i = 0; i + 1 < SB_REASONS; i++)
        if (strcmp(sb_session_reasons[i], reason) == 0)
            return i;
    return SB_REASONS - 1; /* a backend's own reason (bus disconnect) and the rare ones */
}

/* Disconnects that the client did not ask for keep the socket's state for --recovery-window (Socket.IO 4.6 keeps it
 * for the same ones): it reconnects, maybe to another node, and takes its id, rooms and missed broadcasts back. */
static int keeps_state(const char *reason)
{
    static const char *const kept[] = {"transport close", "transport error", "ping timeout", "server shutting down",
                                       "server rebalancing"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(kept); i++)
        if (strcmp(reason, kept[i]) == 0)
            return 1;
    return 0;
}

/* ---- the worker's backlog of live bus entries, kept while some socket replays ---------------------------------- */

/* Bounds of the backlog: past either, it is dropped and the sockets that needed it are closed (their clients come
 * back and recover again) rather than the process growing. */
#define BACKLOG_MAX_BYTES ((size_t)64 << 20)
#define BACKLOG_MAX_ENTRIES ((size_t)200000)

typedef struct backlog_entry {
    char id[48];
    char *op, *msg, *inbox; /* one allocation: op, msg and inbox back to back, NUL-terminated each */
    size_t oplen, msglen, inboxlen;
} backlog_entry_t;

typedef struct backlog {
    backlog_entry_t *items;
    size_t len, cap, bytes;
    uint64_t base;            /* sequence number of items[0] */
    uint64_t epoch;           /* bumped when the backlog overflows */
    h2o_linklist_t replaying; /* recovery_t.replay_link */
    size_t nreplaying;
} backlog_t;

static backlog_t *backlog_of(sb_worker_t *w)
{
    return w->backlog;
}

static void backlog_drop(backlog_t *bl, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bl->bytes -= bl->items[i].oplen + bl->items[i].msglen + bl->items[i].inboxlen;
        free(bl->items[i].op);
    }
    if (n > 0 && n < bl->len)
        memmove(bl->items, bl->items + n, (bl->len - n) * sizeof(*bl->items));
    bl->len -= n;
    bl->base += n;
}

/* Entries no replaying socket needs any more go. The list is in replay_begin order, and base + len never goes
 * down, so `from` only grows along it, and sockets of older epochs (which need nothing) come first: the first one
 * of this epoch needs the oldest entry. This runs whenever a socket stops replaying, which is every connect. */
static void backlog_trim(backlog_t *bl)
{
    uint64_t min = bl->base + bl->len;
    if (bl->len == 0)
        return;
    for (h2o_linklist_t *l = bl->replaying.next; l != &bl->replaying; l = l->next) {
        recovery_t *r = H2O_STRUCT_FROM_MEMBER(recovery_t, replay_link, l);
        if (r->epoch == bl->epoch) {
            min = r->from; /* <= base + len: it was base + len when the socket began */
            break;
        }
    }
    if (min > bl->base)
        backlog_drop(bl, (size_t)(min - bl->base));
}

void sb_session_backlog_push(sb_worker_t *w, const sb_bus_entry_t *e)
{
    backlog_t *bl = backlog_of(w);
    if (bl == NULL || bl->nreplaying == 0 || e->op == NULL || e->msg == NULL || e->idlen >= sizeof(bl->items->id))
        return;
    size_t size = e->oplen + e->msglen + e->inboxlen;
    if (bl->len >= BACKLOG_MAX_ENTRIES || bl->bytes + size > BACKLOG_MAX_BYTES) {
        /* Every socket replaying now misses entries: they close when their fetching ends (replay_finish). */
        sb_log(SB_LOG_WARN, "replay backlog full: the sockets catching up will reconnect", NULL);
        backlog_drop(bl, bl->len);
        bl->epoch++;
        return;
    }
    if (bl->len == bl->cap) {
        size_t ncap = bl->cap ? bl->cap * 2 : 64;
        backlog_entry_t *n = realloc(bl->items, ncap * sizeof(*n));
        if (n == NULL) {
            backlog_drop(bl, bl->len);
            bl->epoch++;
            return;
        }
        bl->items = n;
        bl->cap = ncap;
    }
    backlog_entry_t *b = &bl->items[bl->len];
    char *mem = malloc(size + 3);
    if (mem == NULL) {
        backlog_drop(bl, bl->len);
        bl->epoch++;
        return;
    }
    memcpy(b->id, e->id, e->idlen);
    b->id[e->idlen] = '\0';
    b->op = mem;
    memcpy(b->op, e->op, e->oplen);
    b->op[e->oplen] = '\0';
    b->msg = b->op + e->oplen + 1;
    memcpy(b->msg, e->msg, e->msglen);
    b->msg[e->msglen] = '\0';
    b->inbox = e->inbox != NULL ? b->msg + e->msglen + 1 : NULL;
    if (e->inbox != NULL) {
        memcpy(b->inbox, e->inbox, e->inboxlen);
        b->inbox[e->inboxlen] = '\0';
    }
    b->oplen = e->oplen;
    b->msglen = e->msglen;
    b->inboxlen = e->inbox != NULL ? e->inboxlen : 0;
    bl->bytes += size;
    bl->len++;
}

static void replay_timer_cb(h2o_timeout_entry_t *e);

/* The socket starts replaying after `cursor` (a bus id; the worker's position for a new socket). */
static void replay_begin(sb_socket_t *s, const char *cursor)
{
    sb_worker_t *w = s->w;
    backlog_t *bl = backlog_of(w);
    recovery_t *rec = s->rec;
    sb_strcopy(rec->cursor, sizeof(rec->cursor), cursor);
    memcpy(rec->upto, w->bus_last_id, sizeof(rec->upto));
    rec->from = bl->base + bl->len;
    rec->epoch = bl->epoch;
    rec->replaying = 1;
    rec->sock = s;
    rec->timer.cb = replay_timer_cb;
    rec->deadline = sb_now_ms() + REPLAY_MAX_WAIT_MS;
    h2o_linklist_insert(&bl->replaying, &rec->replay_link);
    bl->nreplaying++;
}

static void rec_stop_replay(sb_socket_t *s)
{
    if (s->rec == NULL)
        return;
    if (h2o_timeout_is_linked(&s->rec->timer))
        h2o_timeout_unlink(&s->rec->timer);
    if (s->rec->replaying) {
        backlog_t *bl = backlog_of(s->w);
        s->rec->replaying = 0;
        h2o_linklist_unlink(&s->rec->replay_link);
        bl->nreplaying--;
        if (bl->nreplaying == 0)
            backlog_drop(bl, bl->len);
        else
            backlog_trim(bl);
    }
}

/* Removes the socket locally and from Redis. */
static void socket_close(sb_socket_t *s, const char *reason)
{
    if (s->state == SOCK_CLOSED)
        return;
    int was_connected = s->state == SOCK_CONNECTED;
    s->state = SOCK_CLOSED;
    rec_stop_replay(s);
    if (s->admin) {
        if (h2o_linklist_is_linked(&s->admin_link))
            h2o_linklist_unlink(&s->admin_link);
        if (h2o_linklist_is_linked(&s->conn_link))
            h2o_linklist_unlink(&s->conn_link);
        s->sc = NULL;
        sock_unref(s);
        return;
    }
    while (!h2o_linklist_is_empty(&s->memberships))
        member_free(s->w, H2O_STRUCT_FROM_MEMBER(sb_member_t, sock_link, s->memberships.next));
    while (!h2o_linklist_is_empty(&s->acks))
        ack_free(H2O_STRUCT_FROM_MEMBER(pending_ack_t, link, s->acks.next));
    while (!h2o_linklist_is_empty(&s->sacks))
        sack_free(H2O_STRUCT_FROM_MEMBER(server_ack_t, link, s->sacks.next));
    if (h2o_linklist_is_linked(&s->exp_link))
        h2o_linklist_unlink(&s->exp_link);
    sb_map_del(&s->w->sockets, s->id, SB_SID_LEN);
    if (h2o_linklist_is_linked(&s->conn_link))
        h2o_linklist_unlink(&s->conn_link);
    s->sc = NULL;
    if (was_connected) {
        atomic_fetch_sub(&s->w->stats.sockets, 1);
        unsigned ri = sb_session_reason_index(reason);
        atomic_fetch_add(&s->w->stats.disconnects[ri], 1);
        sb_metric_inc(SB_M(s->w)->disconnects[ri], s->w->idx);
        sb_metric_set(SB_M(s->w)->sockets, s->w->idx, (double)atomic_load(&s->w->stats.sockets));
    }
    sb_log(SB_LOG_DEBUG, "socket disconnected", "socket", s->id, "nsp", s->nsp, "reason", reason, NULL);
    int wh = was_connected && s->w->webhooks != NULL ? sb_webhooks_match(s->w->webhooks, "disconnect", 1) : -1;
    if (wh >= 0)
        post_webhook(s, wh, "disconnect", "", "[]", -1, "reason", reason);
    if (s->unregistered) {
        sock_unref(s);
        return;
    }
    if (s->rec != NULL && s->rec->inflight) {
        /* sb_recover is in flight: whether the state is ours is known when it answers (recovered_cb). */
        snprintf(s->rec->close_reason, sizeof(s->rec->close_reason), "%s", reason);
        sock_unref(s);
        return;
    }
    /* Pipelined after the connect FCALL on the same connection, so the order holds even while connecting. */
    uint64_t keep = s->w->cfg->recovery_window_ms > 0 && keeps_state(reason) ? s->w->cfg->recovery_window_ms : 0;
    s->refs++;
    if (sb_store_disconnect(s->w, s->id, reason, keep, s->gen, store_done, s) != 0)
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

static void replay_step(sb_socket_t *s);
static void replay_timer_cb(h2o_timeout_entry_t *e);

/* The socket is registered (or recovered) in Redis: answer the CONNECT, and start what follows it. */
/* Puts s in the worker's token list, kept in exp order so that the sweep reads only what is due. A new token
 * usually expires last: the walk starts from the tail. */
static void token_track(sb_worker_t *w, sb_socket_t *s)
{
    if (h2o_linklist_is_linked(&s->exp_link))
        h2o_linklist_unlink(&s->exp_link);
    h2o_linklist_t *l = w->token_sockets.prev;
    while (l != &w->token_sockets && H2O_STRUCT_FROM_MEMBER(sb_socket_t, exp_link, l)->claims->exp > s->claims->exp)
        l = l->prev;
    h2o_linklist_insert(l->next, &s->exp_link); /* before l's successor: after l */
}

static void connected(sb_socket_t *s)
{
    sb_worker_t *w = s->w;
    s->state = SOCK_CONNECTED;
    atomic_fetch_add(&w->stats.sockets, 1);
    atomic_fetch_add(&w->stats.connects, 1);
    sb_metric_inc(
        SB_M(w)->connects[s->sc != NULL && s->sc->eio != NULL && sb_eio_transport(s->sc->eio) == SB_EIO_WEBSOCKET],
        w->idx);
    sb_metric_set(SB_M(w)->sockets, w->idx, (double)atomic_load(&w->stats.sockets));
    if (s->claims != NULL)
        token_track(w, s);
    sb_buf_t sio;
    sb_buf_init(&sio, 0);
    /* With recovery on, the answer carries the private session id (socket id and secret: only this client knows
     * it) and the bus position replay would start after. */
    char pid[SB_SID_LEN + 1 + PID_SECRET_LEN + 1] = "";
    int with_pid = s->rec != NULL && s->rec->secret[0] != '\0';
    if (with_pid) {
        /* "<sid>.<secret>": both fixed-length ids */
        memcpy(pid, s->id, SB_SID_LEN);
        pid[SB_SID_LEN] = '.';
        sb_strcopy(pid + SB_SID_LEN + 1, sizeof(pid) - SB_SID_LEN - 1, s->rec->secret);
    }
    if (sb_sio_encode_connect(&sio, s->nsp, s->id, with_pid ? pid : NULL, with_pid ? s->rec->offset : NULL) == 0)
        send_packet_text(s, &sio);
    sb_buf_free(&sio);
    sb_log(SB_LOG_DEBUG, "socket connected", "socket", s->id, "nsp", s->nsp, NULL);
    int wh = w->webhooks != NULL ? sb_webhooks_match(w->webhooks, "connect", 1) : -1;
    if (wh >= 0)
        post_webhook(s, wh, "connect", "", "[]", -1, "auth", s->auth != NULL ? s->auth : "{}");
    free(s->auth);
    s->auth = NULL;
    if (s->pending_disconnect != NULL) {
        sb_buf_t dis;
        sb_buf_init(&dis, 0);
        if (sb_sio_encode_disconnect(&dis, s->nsp) == 0)
            send_packet_text(s, &dis);
        sb_buf_free(&dis);
        socket_close(s, s->pending_disconnect);
    }
}
static void durable_on_connected(sb_socket_t *s);

static void connect_done(sb_worker_t *w, int status, long long retry_ms, void *data)
{
    sb_socket_t *s = data;
    if (s->state == SOCK_CONNECTING) {
        if (status != SB_OK) {
            sio_conn_t *sc = s->sc;
            if (status == SB_EAGAIN) {
                sb_count_limited(w, SB_LIMIT_CONNECTIONS);
                sb_log(SB_LOG_DEBUG, "connect refused: too many connections from this address", "socket", s->id, NULL);
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
            connected(s);
            if (s->state == SOCK_CONNECTED && s->rec != NULL && s->rec->replaying) {
                s->rec->deadline = sb_now_ms() + REPLAY_MAX_WAIT_MS;
                replay_step(s); /* nothing to fetch: the backlog's entries for it, at once */
            } else if (s->rec != NULL && !s->rec->replaying) {
                free(s->rec); /* the pid went out: nothing more to keep per connection */
                s->rec = NULL;
            }
            if (s->state == SOCK_CONNECTED)
                durable_on_connected(s);
        }
    }
    sock_unref(s);
}

/* ---- connection state recovery ----------------------------------------------------------------------------------- */

static void register_new(sb_socket_t *s, char *auth);

/* A socket that never got into the map or its connection's list. */
static void socket_free_unregistered(sb_socket_t *s)
{
    s->state = SOCK_CLOSED;
    sock_unref(s);
}

/* "<ms>-<seq>", both decimal. */
static int stream_id_parse(const char *id, size_t len, uint64_t *ms, uint64_t *seq)
{
    const char *dash = memchr(id, '-', len);
    if (dash == NULL || dash == id || dash + 1 == id + len || len >= 48)
        return SB_EINVAL;
    uint64_t v[2] = {0, 0};
    const char *p = id;
    for (int k = 0; k < 2; k++) {
        const char *end = k == 0 ? dash : id + len;
        if (end - p > 19)
            return SB_EINVAL;
        for (; p < end; p++) {
            if (*p < '0' || *p > '9')
                return SB_EINVAL;
            v[k] = v[k] * 10 + (uint64_t)(*p - '0');
        }
        p = dash + 1;
    }
    *ms = v[0];
    *seq = v[1];
    return 0;
}

static int stream_id_valid(const char *id, size_t len)
{
    uint64_t ms, seq;
    return stream_id_parse(id, len, &ms, &seq) == 0;
}

/* <0, 0, >0 like strcmp; an invalid id sorts first. */
static int stream_id_cmp(const char *a, const char *b)
{
    uint64_t am = 0, as = 0, bm = 0, bs = 0;
    int ea = stream_id_parse(a, strlen(a), &am, &as), eb = stream_id_parse(b, strlen(b), &bm, &bs);
    if (ea != 0 || eb != 0)
        return (ea == 0) - (eb == 0);
    if (am != bm)
        return am < bm ? -1 : 1;
    return as < bs ? -1 : as > bs;
}

/* pid = "<socket id>.<secret>" (what the CONNECT answer handed out). */
static int parse_pid(const char *pid, size_t len, char sid[SB_SID_LEN + 1], char secret[PID_SECRET_LEN + 1])
{
    if (len != SB_SID_LEN + 1 + PID_SECRET_LEN || pid[SB_SID_LEN] != '.')
        return SB_EINVAL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)pid[i];
        if (i != SB_SID_LEN &&
            !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_'))
            return SB_EINVAL;
    }
    memcpy(sid, pid, SB_SID_LEN);
    sid[SB_SID_LEN] = '\0';
    memcpy(secret, pid + SB_SID_LEN + 1, PID_SECRET_LEN);
    secret[PID_SECRET_LEN] = '\0';
    return 0;
}

static void replay_done(sb_socket_t *s)
{
    rec_stop_replay(s);
    free(s->rec);
    s->rec = NULL;
}

static void replay_timer_cb(h2o_timeout_entry_t *e)
{
    recovery_t *rec = H2O_STRUCT_FROM_MEMBER(recovery_t, timer, e);
    sb_socket_t *s = rec->sock;
    replay_step(s);
}

/* The missed entries (one XRANGE page): each applied to this socket alone, in order, as a live node would have. */
static void replayed(sb_worker_t *w, const redisReply *reply, void *data)
{
    sb_socket_t *s = data;
    if (s->state != SOCK_CONNECTED || s->rec == NULL || !s->rec->replaying) {
        sock_unref(s);
        return;
    }
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        /* Redis failed mid-replay: drop the connection so the client reconnects and recovers again later, with
         * the offset of what it did receive. */
        sb_log(SB_LOG_WARN, "recovery replay failed, closing the connection", "socket", s->id, NULL);
        if (s->sc != NULL && s->sc->eio != NULL)
            sb_eio_close(s->sc->eio, "transport error");
        sock_unref(s);
        return;
    }
    for (size_t i = 0; i < reply->elements && s->state == SOCK_CONNECTED && s->rec != NULL; i++) {
        sb_bus_entry_t be;
        int bad = sb_bus_entry_parse(reply->element[i], &be);
        if (be.id == NULL || be.idlen >= sizeof(s->rec->cursor))
            continue;
        memcpy(s->rec->cursor, be.id, be.idlen);
        s->rec->cursor[be.idlen] = '\0';
        if (bad)
            continue;
        w->replay_sock = s;
        sb_metric_inc(SB_M(w)->replayed, w->idx);
        sb_bus_apply(w, &be);
        w->replay_sock = NULL; /* the entry may have closed the socket (a disconnect op): the loop checks */
    }
    if (s->state == SOCK_CONNECTED && s->rec != NULL && s->rec->replaying) {
        if (reply->elements < REPLAY_BATCH)
            memcpy(s->rec->cursor, s->rec->upto, sizeof(s->rec->cursor)); /* nothing else up to there */
        replay_step(s);
    }
    sock_unref(s);
}

/* The fetching is done: the live entries the backlog kept for it (after its cursor) follow, then live ones. A
 * client's offset ahead of this worker's reader (it got entries through another node) waits for the reader, a
 * bounded time, so that nothing it has is sent again. */
static void replay_finish(sb_socket_t *s)
{
    sb_worker_t *w = s->w;
    recovery_t *rec = s->rec;
    backlog_t *bl = backlog_of(w);
    if (rec->epoch != bl->epoch) {
        sb_log(SB_LOG_WARN, "replay backlog overflowed, closing the connection to recover again", "socket", s->id,
               NULL);
        if (s->sc != NULL && s->sc->eio != NULL)
            sb_eio_close(s->sc->eio, "transport error");
        return;
    }
    if (stream_id_cmp(rec->cursor, w->bus_last_id) > 0) {
        if (sb_now_ms() < rec->deadline) {
            h2o_timeout_link(w->ctx.loop, &w->replay_to, &rec->timer);
            return;
        }
        sb_log(SB_LOG_WARN, "recovery replay: the bus reader did not reach the client's offset in time", "socket",
               s->id, NULL);
    }
    /* Synchronous from here: no live entry can come in between. */
    for (uint64_t k = rec->from; s->state == SOCK_CONNECTED && s->rec != NULL && k < bl->base + bl->len; k++) {
        backlog_entry_t *b = &bl->items[k - bl->base];
        if (stream_id_cmp(b->id, s->rec->cursor) <= 0)
            continue;
        sb_bus_entry_t be = {b->id, strlen(b->id), b->op, b->oplen, b->msg, b->msglen, b->inbox, b->inboxlen};
        snprintf(s->rec->cursor, sizeof(s->rec->cursor), "%s", b->id);
        w->replay_sock = s;
        sb_metric_inc(SB_M(w)->replayed, w->idx);
        sb_bus_apply(w, &be);
        w->replay_sock = NULL;
    }
    if (s->rec != NULL)
        replay_done(s);
}

/* Fetches (cursor, upto] from the bus in pages, then finishes. */
static void replay_step(sb_socket_t *s)
{
    sb_worker_t *w = s->w;
    recovery_t *rec = s->rec;
    if (stream_id_cmp(rec->cursor, rec->upto) >= 0) {
        replay_finish(s);
        return;
    }
    s->refs++;
    if (sb_store_bus_range(w, rec->cursor, rec->upto, REPLAY_BATCH, replayed, s) != 0) {
        s->refs--;
        if (s->sc != NULL && s->sc->eio != NULL)
            sb_eio_close(s->sc->eio, "transport error");
    }
}

/* sb_recover answered: {1, user, offset, gen, room...} recovered; {0, why} connect as new; NULL Redis failed. */
static void recovered_cb(sb_worker_t *w, const redisReply *reply, void *data)
{
    sb_socket_t *s = data;
    recovery_t *rec = s->rec;
    rec->inflight = 0;
    int ok = reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 4 &&
             reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[0]->integer == 1 &&
             reply->element[1]->type == REDIS_REPLY_STRING && reply->element[2]->type == REDIS_REPLY_STRING &&
             reply->element[3]->type == REDIS_REPLY_STRING && reply->element[2]->len < sizeof(rec->cursor);
    uint64_t gen = ok ? strtoull(reply->element[3]->str, NULL, 10) : 0;
    if (s->state == SOCK_CLOSED) {
        /* The client left while we asked: if the state became ours, let it go the way the close says. */
        if (ok) {
            uint64_t keep = w->cfg->recovery_window_ms > 0 && keeps_state(rec->close_reason)
                                ? w->cfg->recovery_window_ms
                                : 0;
            sb_store_disconnect(w, s->id, rec->close_reason[0] ? rec->close_reason : "transport close", keep, gen, NULL,
                                NULL);
        }
        sock_unref(s);
        return;
    }
    if (reply == NULL) {
        s->unregistered = 1;
        sb_metric_inc(SB_M(w)->recoveries[2], w->idx);
        if (s->sc != NULL)
            send_connect_error(s->sc, s->nsp, "Service unavailable", "unavailable");
        socket_close(s, "server unavailable");
        sock_unref(s);
        return;
    }
    char *auth = s->auth;
    s->auth = NULL;
    if (!ok) {
        const char *why = reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
                                  reply->element[1]->type == REDIS_REPLY_STRING
                              ? reply->element[1]->str
                              : "unexpected reply";
        sb_log(SB_LOG_DEBUG, "session not recovered, connecting as new", "socket", s->id, "why", why, NULL);
        sb_metric_inc(SB_M(w)->recoveries[1], w->idx);
        sb_map_del(&w->sockets, s->id, SB_SID_LEN);
        sb_random_id(s->id, SB_SID_LEN);
        sb_random_id(rec->secret, PID_SECRET_LEN);
        if (s->claims == NULL) {
            free(s->user);
            s->user = strdup(s->id);
        }
        if (s->user == NULL || sb_map_set(&w->sockets, s->id, SB_SID_LEN, s) != 0) {
            free(auth);
            s->unregistered = 1;
            if (s->sc != NULL)
                send_connect_error(s->sc, s->nsp, "Service unavailable", "unavailable");
            socket_close(s, "server unavailable");
        } else {
            register_new(s, auth);
        }
        sock_unref(s);
        return;
    }
    free(auth); /* the connect entry was written by sb_recover; a connect webhook is not sent again */
    s->gen = gen;
    if (s->claims == NULL) {
        char *u = strndup(reply->element[1]->str, reply->element[1]->len);
        if (u != NULL) {
            free(s->user);
            s->user = u;
        }
    }
    char offset[48];
    memcpy(offset, reply->element[2]->str, reply->element[2]->len);
    offset[reply->element[2]->len] = '\0';
    memcpy(rec->offset, offset, sizeof(rec->offset));
    replay_begin(s, offset); /* before joining the index: live entries skip it, the replay brings them */
    int bad = local_join(s, "", 0) < 0 || local_join(s, s->id, SB_SID_LEN) < 0;
    for (size_t i = 4; !bad && i < reply->elements; i++)
        if (reply->element[i]->type == REDIS_REPLY_STRING)
            bad = local_join(s, reply->element[i]->str, reply->element[i]->len) < 0;
    sb_metric_inc(SB_M(w)->recoveries[0], w->idx);
    connected(s);
    sb_log(SB_LOG_DEBUG, "session recovered", "socket", s->id, "offset", rec->cursor, NULL);
    if (bad && s->sc != NULL && s->sc->eio != NULL)
        sb_eio_close(s->sc->eio, "transport error"); /* out of memory: the client comes back and tries again */
    else if (s->state == SOCK_CONNECTED && s->rec != NULL)
        replay_step(s);
    if (s->state == SOCK_CONNECTED)
        durable_on_connected(s); /* the inbox is not part of the bus replay: read it as on any connect */
    sock_unref(s);
}

/* ---- the dashboard's namespace: /_admin, signed in with an API key ---- */

static void answer(sb_socket_t *s, int64_t ack_id, json_t *value);
static json_t *error_value(const char *code, const char *message);

static void admin_connect(sio_conn_t *sc, sb_sio_packet_t *p)
{
    sb_worker_t *w = sc->w;
    json_t *key = json_object_get(p->data, "key");
    if (!json_is_string(key) || !sb_api_key_valid(json_string_value(key), json_string_length(key))) {
        atomic_fetch_add(&w->stats.auth_failures, 1);
        sb_metric_inc(SB_M(w)->auth_failures, w->idx);
        send_connect_error(sc, SB_ADMIN_NSP, "Unauthorized", "unauthorized");
        return;
    }
    if (sio_find_socket(sc, SB_ADMIN_NSP) != NULL)
        return;
    sb_socket_t *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->user = strdup("admin")) == NULL) {
        free(s);
        send_connect_error(sc, SB_ADMIN_NSP, "Service unavailable", "unavailable");
        return;
    }
    sb_random_id(s->id, SB_SID_LEN);
    s->nsp = SB_ADMIN_NSP;
    s->w = w;
    s->sc = sc;
    s->refs = 1;
    s->admin = 1;
    s->state = SOCK_CONNECTED;
    h2o_linklist_init_anchor(&s->memberships);
    h2o_linklist_init_anchor(&s->acks);
    h2o_linklist_init_anchor(&s->sacks);
    h2o_linklist_insert(&sc->sockets, &s->conn_link);
    h2o_linklist_insert(&w->admin_sockets, &s->admin_link);
    sb_buf_t sio;
    sb_buf_init(&sio, 0);
    if (sb_sio_encode_connect(&sio, s->nsp, s->id, NULL, NULL) == 0)
        send_packet_text(s, &sio);
    sb_buf_free(&sio);
    sb_log(SB_LOG_INFO, "dashboard connected", "remote", sb_eio_remote(sc->eio), NULL);
}

typedef struct admin_call {
    sb_socket_t *sock;
    int64_t ack_id;
    json_t *result;
    int pending;
} admin_call_t;

static json_t *admin_socket_json(const redisReply *e, size_t n)
{
    /* sb_socket_info: {sid, nsp, user, node, transport, connected_at, {rooms}} */
    if (n != 7)
        return NULL;
    json_t *rooms = json_array();
    for (size_t i = 0; e[6].type == REDIS_REPLY_ARRAY && i < e[6].elements; i++)
        json_array_append_new(rooms, json_stringn(e[6].element[i]->str, e[6].element[i]->len));
    return json_pack("{s:s#,s:s#,s:s#,s:s#,s:s#,s:o,s:I}", "id", e[0].str, (int)e[0].len, "namespace", e[1].str,
                     (int)e[1].len, "user", e[2].str, (int)e[2].len, "node", e[3].str, (int)e[3].len, "transport",
                     e[4].str, (int)e[4].len, "rooms", rooms, "connected_at",
                     (json_int_t)strtoll(e[5].str != NULL ? e[5].str : "0", NULL, 10));
}

static void admin_call_done(admin_call_t *ac)
{
    if (--ac->pending > 0)
        return;
    if (ac->sock->state == SOCK_CONNECTED && ac->ack_id >= 0)
        answer(ac->sock, ac->ack_id, json_incref(ac->result));
    json_decref(ac->result);
    sock_unref(ac->sock);
    free(ac);
}

static void admin_found(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    (void)err;
    admin_call_t *ac = data;
    json_t *list = json_object_get(ac->result, "sockets");
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY) {
        if (reply->elements == 7 && reply->element[0]->type == REDIS_REPLY_STRING) {
            /* one socket (sb_socket_info) */
            redisReply flat[7];
            for (size_t i = 0; i < 7; i++)
                flat[i] = *reply->element[i];
            json_t *o = admin_socket_json(flat, 7);
            if (o != NULL)
                json_array_append_new(list, o);
        } else {
            /* a user's sockets (sb_user_info): {sid, nsp, node, transport, connected_at, {rooms}} each */
            for (size_t i = 0; i < reply->elements; i++) {
                const redisReply *u = reply->element[i];
                if (u->type != REDIS_REPLY_ARRAY || u->elements != 6)
                    continue;
                json_t *rooms = json_array();
                for (size_t k = 0; u->element[5]->type == REDIS_REPLY_ARRAY && k < u->element[5]->elements; k++)
                    json_array_append_new(rooms, json_string(u->element[5]->element[k]->str));
                json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:I}", "id", u->element[0]->str, "user",
                                                      json_string_value(json_object_get(ac->result, "q")), "namespace",
                                                      u->element[1]->str, "node", u->element[2]->str, "transport",
                                                      u->element[3]->str, "rooms", rooms, "connected_at",
                                                      (json_int_t)strtoll(u->element[4]->str, NULL, 10)));
            }
        }
    }
    if (ac->pending == 1)
        json_object_del(ac->result, "q");
    admin_call_done(ac);
}

static void admin_disconnected(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    admin_call_t *ac = data;
    json_decref(ac->result);
    ac->result = reply != NULL && reply->type == REDIS_REPLY_STRING
                     ? json_pack("{s:b}", "ok", 1)
                     : error_value("backend_unavailable", err != NULL ? err : "the bus write failed");
    admin_call_done(ac);
}

static void admin_nsp_found(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)err;
    admin_call_t *ac = data;
    sb_worker_t *w = ac->sock->w;
    if (reply == NULL || reply->type != REDIS_REPLY_STRING) {
        json_decref(ac->result);
        ac->result = error_value("not_found", "no such socket");
        admin_call_done(ac);
        return;
    }
    const char *sid = json_string_value(json_object_get(ac->result, "socket"));
    json_t *msg = json_pack("{s:s#,s:[s],s:s}", "namespace", reply->str, (int)reply->len, "sockets", sid, "reason",
                            "disconnected from the dashboard");
    char *text = msg != NULL ? json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(msg);
    char key[600];
    if (text != NULL && sb_key(w, key, sizeof(key), "bus")) {
        const char *argv[] = {"XADD", key, "*", "op", "disconnect", "msg", text};
        size_t lens[] = {4, strlen(key), 1, 2, 10, 3, strlen(text)};
        if (sb_redis_commandargv(r, admin_disconnected, ac, 0, 7, argv, lens) == 0) {
            free(text);
            return;
        }
    }
    free(text);
    json_decref(ac->result);
    ac->result = error_value("backend_unavailable", "redis is not reachable");
    admin_call_done(ac);
}

static void admin_event(sb_socket_t *s, sb_sio_packet_t *p)
{
    sb_worker_t *w = s->w;
    if (p->type != SB_SIO_EVENT)
        return;
    const char *name = json_string_value(json_array_get(p->data, 0));
    json_t *arg = json_array_get(p->data, 1);
    admin_call_t *ac = calloc(1, sizeof(*ac));
    if (ac == NULL)
        return;
    ac->sock = s;
    ac->ack_id = p->ack_id;
    s->refs++;
    char k1[600], k2[600];
    if (strcmp(name, "find") == 0 && json_is_string(json_object_get(arg, "q")) &&
        json_string_length(json_object_get(arg, "q")) > 0 && json_string_length(json_object_get(arg, "q")) <= 256) {
        const char *q = json_string_value(json_object_get(arg, "q"));
        ac->result = json_pack("{s:[],s:s}", "sockets", "q", q);
        ac->pending = 2;
        sb_key(w, k1, sizeof(k1), "{sock:%s}", q);
        sb_key(w, k2, sizeof(k2), "{sock:%s}:rooms", q);
        const char *a1[] = {"FCALL_RO", "sb_socket_info", "2", k1, k2, w->cfg->redis_prefix, q};
        size_t l1[7];
        for (int i = 0; i < 7; i++)
            l1[i] = strlen(a1[i]);
        char k3[600];
        sb_key(w, k3, sizeof(k3), "{user:%s}:sockets", q);
        const char *a2[] = {"FCALL_RO", "sb_user_info", "1", k3, w->cfg->redis_prefix};
        size_t l2[5];
        for (int i = 0; i < 5; i++)
            l2[i] = strlen(a2[i]);
        if (sb_redis_commandargv(w->cmd, admin_found, ac, 0, 7, a1, l1) != 0)
            ac->pending--;
        if (sb_redis_commandargv(w->cmd, admin_found, ac, 0, 5, a2, l2) != 0)
            ac->pending--;
        if (ac->pending == 0) {
            ac->pending = 1;
            json_decref(ac->result);
            ac->result = error_value("backend_unavailable", "redis is not reachable");
            admin_call_done(ac);
        }
        return;
    }
    if (strcmp(name, "disconnect_socket") == 0 && json_is_string(json_object_get(arg, "socket")) &&
        json_string_length(json_object_get(arg, "socket")) <= 256) {
        const char *sid = json_string_value(json_object_get(arg, "socket"));
        ac->result = json_pack("{s:s}", "socket", sid);
        ac->pending = 1;
        sb_key(w, k1, sizeof(k1), "{sock:%s}", sid);
        const char *a[] = {"HGET", k1, "nsp"};
        size_t l[] = {4, strlen(k1), 3};
        if (sb_redis_commandargv(w->cmd, admin_nsp_found, ac, 0, 3, a, l) != 0) {
            json_decref(ac->result);
            ac->result = error_value("backend_unavailable", "redis is not reachable");
            admin_call_done(ac);
        }
        return;
    }
    ac->pending = 1;
    ac->result = error_value("invalid_argument", "expected find {q} or disconnect_socket {socket}");
    admin_call_done(ac);
}

/* The stats pushed to dashboards every second. */
typedef struct admin_push {
    sb_worker_t *w;
    int pending;
    json_t *nodes, *totals, *rooms, *disconnects;
} admin_push_t;

static void admin_push_done(admin_push_t *ap)
{
    if (--ap->pending > 0)
        return;
    sb_worker_t *w = ap->w;
    w->admin_pushing = 0;
    json_t *dis = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(ap->disconnects, k, v)
        json_array_append_new(dis, json_pack("{s:s,s:O}", "reason", k, "count", v));
    json_t *stats = json_pack("{s:I,s:o,s:o,s:o,s:o}", "ts", (json_int_t)sb_now_ms(), "nodes", ap->nodes, "totals",
                              ap->totals, "rooms", ap->rooms, "disconnects", dis);
    json_decref(ap->disconnects);
    json_t *args = stats != NULL ? json_pack("[o]", stats) : NULL;
    sb_sio_encoded_t enc;
    memset(&enc, 0, sizeof(enc));
    if (args != NULL && sb_sio_encode_event(&enc, SB_ADMIN_NSP, "stats", args, -1) == 0) {
        for (h2o_linklist_t *l = w->admin_sockets.next; l != &w->admin_sockets; l = l->next)
            send_encoded(H2O_STRUCT_FROM_MEMBER(sb_socket_t, admin_link, l), &enc);
    }
    sb_sio_encoded_clear(&enc);
    json_decref(args);
    free(ap);
}

static void admin_stats_reply(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    (void)err;
    admin_push_t *ap = data;
    for (size_t i = 0; reply != NULL && reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
        const redisReply *n = reply->element[i];
        if (n->type != REDIS_REPLY_ARRAY || n->elements != 2 || n->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        json_t *node = json_object();
        const redisReply *h = n->element[1];
        for (size_t f = 0; f + 1 < h->elements; f += 2) {
            const char *name = h->element[f]->str, *val = h->element[f + 1]->str;
            if (strncmp(name, "disc:", 5) == 0) {
                json_t *c = json_object_get(ap->disconnects, name + 5);
                json_object_set_new(ap->disconnects, name + 5,
                                    json_integer((c != NULL ? json_integer_value(c) : 0) + strtoll(val, NULL, 10)));
                continue;
            }
            char *end = NULL;
            double d = strtod(val, &end);
            if (strcmp(name, "id") != 0 && strcmp(name, "version") != 0 && end != val && *end == '\0') {
                json_object_set_new(node, name, d == (double)(long long)d ? json_integer((long long)d) : json_real(d));
                if (strcmp(name, "started_at") != 0 && strcmp(name, "last_seen") != 0 && strstr(name, "_ms") == NULL) {
                    json_t *t = json_object_get(ap->totals, name);
                    json_object_set_new(ap->totals, name,
                                        json_integer((t != NULL ? json_integer_value(t) : 0) + (long long)d));
                }
            } else {
                json_object_set_new(node, name, json_string(val));
            }
        }
        json_array_append_new(ap->nodes, node);
    }
    json_object_set_new(ap->totals, "nodes", json_integer((json_int_t)json_array_size(ap->nodes)));
    admin_push_done(ap);
}

static void admin_rooms_reply(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    (void)err;
    admin_push_t *ap = data;
    for (size_t i = 0; reply != NULL && reply->type == REDIS_REPLY_ARRAY && i + 3 <= reply->elements; i += 3)
        json_array_append_new(ap->rooms, json_pack("{s:s,s:s,s:I}", "namespace", reply->element[i]->str, "room",
                                                   reply->element[i + 1]->str, "count",
                                                   (json_int_t)reply->element[i + 2]->integer));
    admin_push_done(ap);
}

static void admin_push(sb_worker_t *w)
{
    if (w->admin_pushing || !sb_redis_connected(w->cmd))
        return;
    admin_push_t *ap = calloc(1, sizeof(*ap));
    if (ap == NULL)
        return;
    ap->w = w;
    ap->nodes = json_array();
    ap->totals = json_object();
    ap->rooms = json_array();
    ap->disconnects = json_object();
    ap->pending = 2;
    w->admin_pushing = 1;
    char nodes[600];
    sb_key(w, nodes, sizeof(nodes), "nodes");
    const char *a1[] = {"FCALL_RO", "sb_stats", "1", nodes, w->cfg->redis_prefix};
    size_t l1[5];
    for (int i = 0; i < 5; i++)
        l1[i] = strlen(a1[i]);
    if (sb_redis_commandargv(w->cmd, admin_stats_reply, ap, 0, 5, a1, l1) != 0)
        ap->pending--;
    /* The busiest rooms of every namespace served. */
    size_t nns = 1 + w->cfg->namespaces.count;
    const char **a2 = calloc(5 + 2 * nns, sizeof(*a2)); /* FCALL_RO, name, n, n keys, prefix, limit, n namespaces */
    char(*keys)[600] = calloc(nns, sizeof(*keys));
    char nk[16];
    int rv = SB_ENOMEM;
    if (a2 != NULL && keys != NULL) {
        snprintf(nk, sizeof(nk), "%zu", nns);
        size_t argc = 0;
        a2[argc++] = "FCALL_RO";
        a2[argc++] = "sb_top_rooms";
        a2[argc++] = nk;
        for (size_t i = 0; i < nns; i++) {
            sb_key(w, keys[i], sizeof(keys[i]), "{ns:%s}:rooms", i == 0 ? "/" : w->cfg->namespaces.items[i - 1]);
            a2[argc++] = keys[i];
        }
        a2[argc++] = w->cfg->redis_prefix;
        a2[argc++] = "10";
        for (size_t i = 0; i < nns; i++)
            a2[argc++] = i == 0 ? "/" : w->cfg->namespaces.items[i - 1];
        size_t *l2 = calloc(argc, sizeof(*l2));
        if (l2 != NULL) {
            for (size_t i = 0; i < argc; i++)
                l2[i] = strlen(a2[i]);
            rv = sb_redis_commandargv(w->cmd, admin_rooms_reply, ap, 0, (int)argc, a2, l2);
            free(l2);
        }
    }
    free(a2);
    free(keys);
    if (rv != 0)
        ap->pending--;
    if (ap->pending == 0) {
        ap->pending = 1;
        admin_push_done(ap);
    }
}

static void handle_connect(sio_conn_t *sc, sb_sio_packet_t *p)
{
    sb_worker_t *w = sc->w;
    if (h2o_timeout_is_linked(&sc->connect_timer))
        h2o_timeout_unlink(&sc->connect_timer);
    if (strcmp(p->nsp, SB_ADMIN_NSP) == 0) {
        admin_connect(sc, p);
        return;
    }
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
    sb_auth_t *auth_ = w->server->auth;
    if (auth_ != NULL && sb_auth_enabled(auth_)) {
        /* The token: in the CONNECT payload ({"token":"…"}), else the handshake's Authorization: Bearer. */
        json_t *t = json_object_get(p->data, "token");
        const char *token = json_is_string(t) ? json_string_value(t) : sb_eio_token(sc->eio);
        size_t tlen = json_is_string(t) ? json_string_length(t) : token != NULL ? strlen(token) : 0;
        const char *code = "token_missing",
                   *message = "a token is required: auth {\"token\": \"…\"} or Authorization: Bearer";
        if ((s->claims = calloc(1, sizeof(*s->claims))) == NULL) {
            free(s);
            send_connect_error(sc, p->nsp, "Service unavailable", "unavailable");
            return;
        }
        if (token == NULL || tlen == 0 ||
            sb_auth_verify_cached(auth_, w->auth_cache, token, tlen, sb_now_ms(), s->claims, &code, &message) != 0) {
            sb_log(SB_LOG_DEBUG, "connect refused: token not accepted", "code", code, "remote", sb_eio_remote(sc->eio),
                   NULL);
            atomic_fetch_add(&w->stats.auth_failures, 1);
            sb_metric_inc(SB_M(w)->auth_failures, w->idx);
            free(s->claims);
            free(s);
            send_connect_error(sc, p->nsp, message, code);
            return;
        }
        s->user = strdup(s->claims->sub);
        /* The connect entry carries the CONNECT payload without the token. */
        if (json_is_object(p->data))
            json_object_del(p->data, "token");
    } else {
        s->user = strdup(s->id); /* anonymous mode: the user is the socket */
    }
    /* Connection state recovery: the client's CONNECT payload carries {pid, offset} when it had a session (the
     * Socket.IO client adds them to its auth); they are ours, not the application's, so the connect entry and the
     * webhooks never see them. */
    char rsid[SB_SID_LEN + 1], rsecret[PID_SECRET_LEN + 1], offset[48] = "";
    int recovering = 0;
    if ((s->rec = calloc(1, sizeof(*s->rec))) == NULL) {
        socket_free_unregistered(s);
        send_connect_error(sc, p->nsp, "Service unavailable", "unavailable");
        return;
    }
    if (w->cfg->recovery_window_ms > 0) {
        sb_random_id(s->rec->secret, PID_SECRET_LEN);
        json_t *jpid = json_object_get(p->data, "pid"), *joff = json_object_get(p->data, "offset");
        if (json_is_string(jpid) && parse_pid(json_string_value(jpid), json_string_length(jpid), rsid, rsecret) == 0) {
            recovering = 1;
            if (json_is_string(joff) && stream_id_valid(json_string_value(joff), json_string_length(joff)))
                memcpy(offset, json_string_value(joff), json_string_length(joff) + 1);
        }
    }
    if (json_is_object(p->data)) {
        json_object_del(p->data, "pid");
        json_object_del(p->data, "offset");
    }
    char *auth = p->data != NULL ? json_dumps(p->data, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (s->user == NULL) {
        free(auth);
        socket_free_unregistered(s);
        send_connect_error(sc, p->nsp, "Service unavailable", "unavailable");
        return;
    }
    if (recovering) {
        sb_socket_t *stale = sb_map_get(&w->sockets, rsid, SB_SID_LEN);
        if (stale != NULL) /* this worker still holds the lost connection's copy: it goes first, keeping the state */
            socket_close(stale, "transport close");
        memcpy(s->id, rsid, sizeof(rsid));
        if (sb_map_get(&w->sockets, s->id, SB_SID_LEN) == NULL && sb_map_set(&w->sockets, s->id, SB_SID_LEN, s) == 0) {
            h2o_linklist_insert(&sc->sockets, &s->conn_link);
            memcpy(s->rec->secret, rsecret, sizeof(rsecret)); /* the same pid: the client sees recovered = true */
            s->rec->inflight = 1;
            s->auth = auth;
            s->refs++;
            const char *transport = sb_eio_transport(sc->eio) == SB_EIO_WEBSOCKET ? "websocket" : "polling";
            int anonymous = s->claims == NULL;
            if (sb_store_recover(w, s->id, rsecret, nsp, anonymous ? "" : s->user, transport, offset,
                                 auth != NULL ? auth : "{}", recovered_cb, s) == 0)
                return;
            s->refs--;
            s->rec->inflight = 0;
            s->auth = NULL;
            h2o_linklist_unlink(&s->conn_link);
            sb_map_del(&w->sockets, s->id, SB_SID_LEN);
        }
        /* Not even asked: connect as new. */
        sb_random_id(s->id, SB_SID_LEN);
        sb_random_id(s->rec->secret, PID_SECRET_LEN);
        if (s->claims == NULL) {
            free(s->user);
            s->user = strdup(s->id);
        }
        if (s->user == NULL) {
            free(auth);
            socket_free_unregistered(s);
            send_connect_error(sc, p->nsp, "Service unavailable", "unavailable");
            return;
        }
    }
    if (sb_map_set(&w->sockets, s->id, SB_SID_LEN, s) != 0) {
        free(auth);
        socket_free_unregistered(s);
        send_connect_error(sc, p->nsp, "Service unavailable", "unavailable");
        return;
    }
    h2o_linklist_insert(&sc->sockets, &s->conn_link);
    register_new(s, auth);
}

/* Registers a new socket (in the map and linked to its connection already): local room index, then sb_connect.
 * Takes `auth` (the CONNECT payload as JSON text, may be NULL). */
static void register_new(sb_socket_t *s, char *auth)
{
    sb_worker_t *w = s->w;
    sio_conn_t *sc = s->sc;
    const char *nsp = s->nsp;
    /* In the local room index at once, replaying: the connect entry reaches backends before Redis answers us, and
     * a join or emit they send right away is for this socket. Live entries skip it until the CONNECT answer went
     * out; then the replay from the bus position of this moment brings them, in order. */
    sb_strcopy(s->rec->offset, sizeof(s->rec->offset), w->bus_last_id);
    s->rec->fresh = 1;
    replay_begin(s, s->rec->offset); /* nothing to fetch: what comes meanwhile waits in the backlog */
    char room[8 + 512];
    memcpy(room, "user:", 5);
    size_t un = sb_strcopy(room + 5, sizeof(room) - 5, s->user);
    int n = un < sizeof(room) - 5 ? (int)(5 + un) : (int)sizeof(room);
    int bad = local_join(s, "", 0) < 0 || local_join(s, s->id, SB_SID_LEN) < 0 ||
              (n > 0 && (size_t)n < sizeof(room) && local_join(s, room, (size_t)n) < 0);
    for (size_t i = 0; !bad && s->claims != NULL && i < s->claims->join.count; i++)
        bad = local_join(s, s->claims->join.items[i], strlen(s->claims->join.items[i])) < 0;
    if (bad) {
        free(auth);
        send_connect_error(sc, nsp, "Service unavailable", "unavailable");
        s->state = SOCK_CLOSED; /* never registered in Redis: only the local state goes */
        while (!h2o_linklist_is_empty(&s->memberships))
            member_free(w, H2O_STRUCT_FROM_MEMBER(sb_member_t, sock_link, s->memberships.next));
        sb_map_del(&w->sockets, s->id, SB_SID_LEN);
        h2o_linklist_unlink(&s->conn_link);
        s->sc = NULL;
        sock_unref(s);
        return;
    }
    s->refs++;
    const char *transport = sb_eio_transport(sc->eio) == SB_EIO_WEBSOCKET ? "websocket" : "polling";
    const char *const *join = s->claims != NULL ? (const char *const *)s->claims->join.items : NULL;
    size_t njoin = s->claims != NULL ? s->claims->join.count : 0;
    int with_pid = s->rec->secret[0] != '\0';
    if (sb_store_connect(w, s->id, nsp, s->user, transport, auth != NULL ? auth : "{}",
                         with_pid ? s->rec->secret : NULL, with_pid ? s->rec->offset : NULL, sb_eio_addr(sc->eio), join,
                         njoin, connect_done, s) != 0) {
        s->refs--;
        send_connect_error(sc, nsp, "Service unavailable", "unavailable");
        socket_close(s, "server unavailable");
    } else {
        durable_on_connected(s); /* the first inbox page, in the same write as sb_connect */
    }
    if (w->webhooks != NULL && s->state == SOCK_CONNECTING && sb_webhooks_match(w->webhooks, "connect", 1) >= 0)
        s->auth = auth; /* kept for the connect webhook */
    else
        free(auth);
}

typedef struct event_ctx {
    sb_socket_t *sock;
    int64_t ack_id;
    int webhook; /* index of the webhook that handles the event, or -1 */
    char *name;  /* event name and args, kept for the webhook */
    char *argtext;
} event_ctx_t;

/* ---- webhooks ---- */

typedef struct webhook_ctx {
    sb_socket_t *sock;
    int64_t ack_id;
} webhook_ctx_t;

static void webhook_done(void *data, const char *err, int status, const char *body, size_t len)
{
    (void)status;
    webhook_ctx_t *wc = data;
    sb_socket_t *s = wc->sock;
    sb_metric_inc(err == NULL ? SB_M(s->w)->webhook_ok : SB_M(s->w)->webhook_failed, s->w->idx);
    pending_ack_t *a = wc->ack_id >= 0 && s->state == SOCK_CONNECTED ? ack_find(s, wc->ack_id) : NULL;
    if (a != NULL) {
        ack_free(a);
        if (err != NULL) {
            char msg[160];
            snprintf(msg, sizeof(msg), "the webhook failed: %s", err);
            send_error_ack(s, wc->ack_id, "backend_unavailable", msg);
        } else {
            /* A JSON array answers with those arguments; any other JSON value is the one argument; no body, none. */
            json_t *v = len > 0 ? json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL) : NULL;
            if (len > 0 && v == NULL) {
                send_error_ack(s, wc->ack_id, "backend_unavailable", "the webhook answered with invalid JSON");
            } else {
                json_t *args = json_is_array(v) ? json_incref(v) : json_array();
                if (v != NULL && !json_is_array(v))
                    json_array_append(args, v);
                send_ack(s, wc->ack_id, args);
                json_decref(args);
            }
            json_decref(v);
        }
    }
    free(wc);
    sock_unref(s);
}

/* POSTs one entry shaped like the events stream's to webhook `wh` (args as a JSON array, not text).
 * ack_id >= 0: the webhook's answer goes to the client's ack. */
static void post_webhook(sb_socket_t *s, int wh, const char *type, const char *event, const char *argtext,
                         int64_t ack_id, const char *extra_name, const char *extra_value)
{
    sb_worker_t *w = s->w;
    char ack[24] = "", ts[24], key[96];
    if (ack_id >= 0)
        snprintf(ack, sizeof(ack), "%lld", (long long)ack_id);
    snprintf(ts, sizeof(ts), "%llu", (unsigned long long)sb_now_ms());
    /* The same key on every retry of this call; unique across nodes, workers and events. */
    snprintf(key, sizeof(key), "%s-%u-%s-%llu", w->server->node_id, w->idx, s->id,
             (unsigned long long)++w->webhook_seq);
    json_t *args = json_loads(argtext, JSON_ALLOW_NUL, NULL);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:s,s:s,s:s}", "type", type, "namespace", s->nsp, "socket", s->id,
                          "user", s->user, "event", event, "args", args != NULL ? args : json_array(), "ack_id", ack,
                          "node", w->server->node_id, "ts", ts);
    if (o != NULL && extra_name != NULL)
        json_object_set_new(o, extra_name, json_string(extra_value));
    char *body = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    webhook_ctx_t *wc = body != NULL ? malloc(sizeof(*wc)) : NULL;
    int rv = SB_ENOMEM;
    if (wc != NULL) {
        wc->sock = s;
        wc->ack_id = ack_id;
        s->refs++;
        rv = sb_webhooks_post(w->webhooks, wh, key, body, strlen(body), webhook_done, wc);
        if (rv != 0) {
            s->refs--;
            free(wc);
        }
    }
    free(body);
    if (rv != 0) {
        sb_count_drop(w, SB_DROP_WEBHOOK);
        sb_metric_inc(SB_M(w)->webhook_rejected, w->idx);
        pending_ack_t *a = ack_id >= 0 ? ack_find(s, ack_id) : NULL;
        if (a != NULL) {
            ack_free(a);
            send_error_ack(s, ack_id, "backend_unavailable",
                           rv == SB_EAGAIN ? "the webhook is unavailable (circuit open or queue full)"
                                           : "the webhook call failed");
        }
    }
}

/* The rate check (and stream write) of a client event is done. */
static void event_stored(sb_worker_t *w, int status, long long retry_ms, void *data)
{
    event_ctx_t *ec = data;
    sb_socket_t *s = ec->sock;
    pending_ack_t *a = ec->ack_id >= 0 && s->state == SOCK_CONNECTED ? ack_find(s, ec->ack_id) : NULL;
    if (status == SB_EAGAIN) {
        sb_count_limited(w, SB_LIMIT_EVENTS);
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
        sb_count_drop(w, SB_DROP_NOT_STORED);
        sb_log(SB_LOG_WARN, "client event could not be stored", "socket", s->id, NULL);
        if (a != NULL) {
            ack_free(a);
            send_error_ack(s, ec->ack_id, "backend_unavailable", "the event could not be queued for backends");
        }
    } else {
        s->limited_in_a_row = 0;
        /* Allowed (and on the stream unless --events-stream is off): now the webhook, which answers the ack. */
        if (ec->webhook >= 0 && s->state == SOCK_CONNECTED)
            post_webhook(s, ec->webhook, "event", ec->name, ec->argtext, ec->ack_id, NULL, NULL);
    }
    free(ec->name);
    free(ec->argtext);
    free(ec);
    sock_unref(s);
}

/* ---- reserved events: $join, $leave, $publish, $refresh (CONTRACT §2) ---- */

static void answer(sb_socket_t *s, int64_t ack_id, json_t *value)
{
    if (ack_id >= 0 && value != NULL) {
        json_t *args = json_pack("[O]", value);
        if (args != NULL)
            send_ack(s, ack_id, args);
        json_decref(args);
    }
    json_decref(value);
}

static json_t *error_value(const char *code, const char *message)
{
    return json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
}

typedef struct reserved_ctx {
    sb_socket_t *sock;
    int64_t ack_id;
    int op; /* 1 $join, 2 $leave, 3 $publish */
    char *room;
    json_t *msg; /* $publish: the bus message */
} reserved_ctx_t;

static void reserved_free(reserved_ctx_t *rc)
{
    free(rc->room);
    json_decref(rc->msg);
    sock_unref(rc->sock);
    free(rc);
}

static void published(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    reserved_ctx_t *rc = data;
    sb_socket_t *s = rc->sock;
    if (s->state == SOCK_CONNECTED) {
        if (reply != NULL && reply->type == REDIS_REPLY_STRING)
            answer(s, rc->ack_id, json_pack("{s:b,s:s#}", "ok", 1, "id", reply->str, (int)reply->len));
        else
            answer(s, rc->ack_id, error_value("backend_unavailable", err != NULL ? err : "the bus write failed"));
    }
    reserved_free(rc);
}

static void joined(sb_worker_t *w, int ok, long long value, void *data)
{
    (void)w;
    (void)value;
    reserved_ctx_t *rc = data;
    if (rc->sock->state == SOCK_CONNECTED)
        answer(rc->sock, rc->ack_id,
               ok ? json_pack("{s:b}", "ok", 1) : error_value("backend_unavailable", "the membership was not stored"));
    reserved_free(rc);
}

/* The rate check of a reserved event is done: carry it out. */
static void reserved_allowed(sb_worker_t *w, int status, long long retry_ms, void *data)
{
    reserved_ctx_t *rc = data;
    sb_socket_t *s = rc->sock;
    if (s->state != SOCK_CONNECTED) {
        reserved_free(rc);
        return;
    }
    if (status == SB_EAGAIN) {
        sb_count_limited(w, rc->op == 3 ? SB_LIMIT_PUBLISH : SB_LIMIT_EVENTS);
        json_t *v = error_value("rate_limited", "too many requests; slow down");
        json_object_set_new(json_object_get(v, "error"), "retry_after_ms", json_integer(retry_ms));
        answer(s, rc->ack_id, v);
        reserved_free(rc);
        return;
    }
    if (status != SB_OK) {
        answer(s, rc->ack_id, error_value("backend_unavailable", "redis is not reachable"));
        reserved_free(rc);
        return;
    }
    if (rc->op == 3) {
        char key[600];
        char *text = json_dumps(rc->msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (text == NULL || !sb_key(w, key, sizeof(key), "bus")) {
            free(text);
            answer(s, rc->ack_id, error_value("backend_unavailable", "out of memory"));
            reserved_free(rc);
            return;
        }
        const char *argv[] = {"XADD", key, "*", "op", "emit", "msg", text};
        size_t lens[] = {4, strlen(key), 1, 2, 4, 3, strlen(text)};
        int rv = sb_redis_commandargv(w->cmd, published, rc, 0, 7, argv, lens);
        free(text);
        if (rv != 0) {
            answer(s, rc->ack_id, error_value("backend_unavailable", "redis is not reachable"));
            reserved_free(rc);
        }
        return;
    }
    size_t rl = strlen(rc->room);
    int changed;
    if (rc->op == 1)
        changed = local_join(s, rc->room, rl) == 1;
    else
        changed = local_leave(s, rc->room, rl);
    /* The ack waits for Redis: once the client is told it joined, presence queries must show it. */
    if (changed && sb_store_join(w, s->id, rc->room, rc->op == 1, joined, rc) == 0)
        return;
    answer(s, rc->ack_id,
           changed ? error_value("backend_unavailable", "redis is not reachable") : json_pack("{s:b}", "ok", 1));
    reserved_free(rc);
}

static int reserved_room(json_t *arg, const char **room)
{
    json_t *r = json_object_get(arg, "room");
    if (!json_is_string(r) || json_string_length(r) == 0 || json_string_length(r) > 256)
        return SB_EINVAL;
    *room = json_string_value(r);
    return 0;
}

static void handle_refresh(sb_socket_t *s, int64_t ack_id, json_t *arg)
{
    sb_worker_t *w = s->w;
    json_t *t = json_object_get(arg, "token");
    if (s->claims == NULL) {
        answer(s, ack_id, error_value("forbidden", "this server runs without tokens"));
        return;
    }
    if (!json_is_string(t)) {
        answer(s, ack_id, error_value("invalid_argument", "expected {\"token\": \"…\"}"));
        return;
    }
    sb_claims_t fresh;
    const char *code = NULL, *message = NULL;
    if (sb_auth_verify_cached(w->server->auth, w->auth_cache, json_string_value(t), json_string_length(t), sb_now_ms(),
                              &fresh, &code, &message) != 0) {
        atomic_fetch_add(&w->stats.auth_failures, 1);
        sb_metric_inc(SB_M(w)->auth_failures, w->idx);
        answer(s, ack_id, error_value(code, message));
        return;
    }
    if (strcmp(fresh.sub, s->claims->sub) != 0) {
        sb_claims_free(&fresh);
        answer(s, ack_id, error_value("forbidden", "the new token is for another user"));
        return;
    }
    sb_claims_free(s->claims);
    *s->claims = fresh;
    s->expiring_sent = 0;
    if (h2o_linklist_is_linked(&s->exp_link))
        token_track(w, s); /* its place follows the new exp */
    answer(s, ack_id, json_pack("{s:b,s:I}", "ok", 1, "exp", (json_int_t)s->claims->exp));
}

static void handle_reserved(sb_socket_t *s, sb_sio_packet_t *p)
{
    sb_worker_t *w = s->w;
    const char *name = json_string_value(json_array_get(p->data, 0));
    json_t *arg = json_array_get(p->data, 1);
    int64_t ack_id = p->ack_id;
    int op = strcmp(name, "$join") == 0      ? 1
             : strcmp(name, "$leave") == 0   ? 2
             : strcmp(name, "$publish") == 0 ? 3
             : strcmp(name, "$refresh") == 0 ? 4
                                             : 0;
    if (op == 0) {
        answer(s, ack_id, error_value("invalid_argument", "unknown reserved event (names starting with $)"));
        return;
    }
    if (op == 4) {
        handle_refresh(s, ack_id, arg);
        return;
    }
    const char *room = NULL;
    if (!json_is_object(arg) || reserved_room(arg, &room) != 0) {
        answer(s, ack_id, error_value("invalid_argument", "expected {\"room\": \"…\"} as the first argument"));
        return;
    }
    const sb_strlist_t *allowed = s->claims == NULL ? NULL : op == 3 ? &s->claims->publish : &s->claims->rooms;
    /* The own-id and user rooms are never joined or left by the client itself. */
    if (allowed == NULL || !sb_auth_match(allowed, room) || strncmp(room, "user:", 5) == 0 ||
        (strlen(room) == SB_SID_LEN && sb_map_get(&w->sockets, room, SB_SID_LEN) != NULL)) {
        answer(s, ack_id,
               error_value("forbidden", op == 3 ? "the token does not allow publishing to this room"
                                                : "the token does not allow this room"));
        return;
    }
    reserved_ctx_t *rc = calloc(1, sizeof(*rc));
    if (rc == NULL || (rc->room = strdup(room)) == NULL) {
        free(rc);
        answer(s, ack_id, error_value("backend_unavailable", "out of memory"));
        return;
    }
    rc->sock = s;
    rc->ack_id = ack_id;
    rc->op = op;
    s->refs++;
    int rv;
    if (op == 3) {
        json_t *event = json_object_get(arg, "event"), *args = json_object_get(arg, "args");
        if (!json_is_string(event) || json_string_length(event) == 0 ||
            sb_sio_is_reserved_event(json_string_value(event)) || json_string_value(event)[0] == '$' ||
            (args != NULL && !json_is_array(args))) {
            answer(s, ack_id, error_value("invalid_argument", "expected {\"room\", \"event\", \"args\": [...]}"));
            reserved_free(rc);
            return;
        }
        /* Delivered to the room, the sender excluded, on every node: the same bus entry a backend would write. */
        rc->msg = json_pack("{s:s,s:O,s:O,s:[s],s:[s]}", "namespace", s->nsp, "event", event, "args",
                            args != NULL ? args : json_array(), "rooms", room, "except_sockets", s->id);
        char id[600];
        snprintf(id, sizeof(id), "%s:%s", s->nsp, room);
        rv = rc->msg == NULL ? SB_ENOMEM
                             : sb_store_ratelimit(w, "room", id, &w->cfg->rate_room_publish, reserved_allowed, rc);
    } else {
        rv = sb_store_ratelimit(w, "sock", s->id, &w->cfg->rate_socket_events, reserved_allowed, rc);
    }
    if (rv != 0) {
        answer(s, ack_id, error_value("backend_unavailable", "redis is not reachable"));
        reserved_free(rc);
    }
}

static void handle_event(sb_socket_t *s, sb_sio_packet_t *p)
{
    sb_worker_t *w = s->w;
    atomic_fetch_add(&w->stats.events_in, 1);
    sb_metric_inc(SB_M(w)->events_in, w->idx);
    json_t *name = json_array_get(p->data, 0);
    if (json_string_value(name)[0] == '$') {
        handle_reserved(s, p);
        return;
    }
    /* The stream's args field: the received text when it is already what jansson would write (the common case,
     * and much cheaper than building and dumping an array), else the dump. */
    char *argtext;
    const char *rest;
    size_t rest_len;
    if (sb_sio_event_args_raw(p, &rest, &rest_len)) {
        if ((argtext = malloc(rest_len + 2)) == NULL)
            return;
        argtext[0] = '[';
        memcpy(argtext + 1, rest, rest_len);
        argtext[rest_len + 1] = '\0';
    } else {
        json_t *args = json_array();
        if (args == NULL)
            return;
        for (size_t i = 1; i < json_array_size(p->data); i++)
            json_array_append(args, json_array_get(p->data, i));
        argtext = json_dumps(args, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
        json_decref(args);
        if (argtext == NULL)
            return;
    }
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
    event_ctx_t *ec = calloc(1, sizeof(*ec));
    if (ec == NULL) {
        free(argtext);
        return;
    }
    ec->sock = s;
    ec->ack_id = p->ack_id;
    ec->webhook = w->webhooks != NULL ? sb_webhooks_match(w->webhooks, json_string_value(name), 0) : -1;
    if (ec->webhook >= 0 &&
        ((ec->name = strdup(json_string_value(name))) == NULL || (ec->argtext = strdup(argtext)) == NULL)) {
        free(ec->name);
        free(ec);
        free(argtext);
        return;
    }
    /* A webhook-handled event still goes to the stream for the record, unless --events-stream false. */
    int write = ec->webhook < 0 || w->cfg->events_stream;
    s->refs++;
    if (sb_store_event(w, s->nsp, s->id, s->user, json_string_value(name), argtext, strlen(argtext), p->ack_id, write,
                       event_stored, ec) != 0) {
        free(ec->name);
        free(ec->argtext);
        free(ec);
        s->refs--;
        sb_count_drop(w, SB_DROP_NOT_STORED);
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
    binary_pending_t *bp = sc->pending;
    if (bp == NULL)
        return;
    for (size_t i = 0; i < bp->nbins; i++)
        free(bp->bins[i]);
    sb_sio_packet_clear(&bp->packet);
    free(bp);
    sc->pending = NULL;
}

static void dispatch(sio_conn_t *sc, sb_sio_packet_t *p)
{
    if (p->type == SB_SIO_CONNECT) {
        handle_connect(sc, p);
        return;
    }
    sb_socket_t *s = sio_find_socket(sc, p->nsp);
    if (s != NULL && s->admin) {
        admin_event(s, p);
        return;
    }
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
        binary_pending_t *bp = sc->pending;
        if (bp == NULL) {
            protocol_error(sc, "unexpected binary attachment");
            return;
        }
        char *copy = malloc(len > 0 ? len : 1);
        if (copy == NULL) {
            protocol_error(sc, "out of memory");
            return;
        }
        memcpy(copy, data, len);
        bp->bins[bp->nbins] = copy;
        bp->lens[bp->nbins] = len;
        if (++bp->nbins == bp->packet.attachments) {
            const char *why = NULL;
            if (sb_sio_attach_binary(bp->packet.data, (const void *const *)bp->bins, bp->lens, bp->nbins, &why) != 0) {
                protocol_error(sc, why != NULL ? why : "bad attachment");
                pending_clear(sc);
                return;
            }
            sb_sio_packet_t p = bp->packet;
            bp->packet.data = NULL; /* moved to p */
            pending_clear(sc);
            dispatch(sc, &p);
            sb_sio_packet_clear(&p);
        }
        return;
    }
    if (sc->pending != NULL) {
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
        /* attachments <= max_attachments (the parser's bound), so the size cannot overflow */
        binary_pending_t *bp = calloc(1, sizeof(*bp) + p.attachments * (sizeof(char *) + sizeof(size_t)));
        if (bp == NULL) {
            sb_sio_packet_clear(&p);
            protocol_error(sc, "out of memory");
            return;
        }
        bp->bins = (char **)(bp + 1);
        bp->lens = (size_t *)(bp->bins + p.attachments);
        bp->packet = p;
        sc->pending = bp;
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
    *out = a; /* present, even empty: an empty target list means nobody, never everybody */
    return 0;
}

/* One socket of a room an entry names: marked excepted, or a target once (seq dedupes across rooms). */
static void mark_one(sb_socket_t *s, uint64_t seq, int except, target_vec_t *v)
{
    if (except) {
        s->except_mark = seq;
    } else if (s->mark != seq && s->except_mark != seq) {
        s->mark = seq;
        if (v != NULL)
            vec_push(v, s);
    }
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
    /* The socket whose id this is, when it is in its own (implicit) room. Another socket may have joined a room of
     * that name too: both get the entry, once each. */
    sb_socket_t *owner = NULL;
    if (prefix == NULL && rl == SB_SID_LEN && (owner = sb_map_get(&w->sockets, room, rl)) != NULL &&
        (!owner->own_room || strcmp(owner->nsp, nsp) != 0))
        owner = NULL;
    sb_socket_t *only = w->replay_sock;
    if (only != NULL) {
        /* A replay is for one socket: look the room up among its own few memberships rather than walk a room
         * that may hold thousands (every socket connecting during a broadcast replays the entry). */
        if (owner == only) {
            mark_one(only, seq, except, v);
            return;
        }
        for (h2o_linklist_t *l = only->memberships.next; r != NULL && l != &only->memberships; l = l->next)
            if (H2O_STRUCT_FROM_MEMBER(sb_member_t, sock_link, l)->room == r) {
                mark_one(only, seq, except, v);
                break;
            }
        return;
    }
    sb_member_t **mb = r != NULL ? r->members : NULL;
    size_t n = r != NULL ? r->count : 0;
    for (size_t i = 0; i < n; i++) {
        /* Members and their sockets are scattered allocations: ask for them a few members ahead (in the loop: GCC
         * drops a static function made only of prefetches). */
        if (i + 8 < n)
            __builtin_prefetch(mb[i + 8]);
        if (i + 4 < n)
            __builtin_prefetch(mb[i + 4]->sock);
        sb_socket_t *s = mb[i]->sock;
        /* A replaying socket gets live entries through its replay. */
        if (except || s->rec == NULL || !s->rec->replaying)
            mark_one(s, seq, except, v);
    }
    if (owner != NULL && (except || owner->rec == NULL || !owner->rec->replaying))
        mark_one(owner, seq, except, v);
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

/* A delivery chases pointers through four allocations per recipient (socket, sio_conn, Engine.IO connection,
 * WebSocket and its queue): across thousands of recipients each is a cache miss. Asking for them a few recipients
 * ahead, one link of the chain per stage, lets the misses overlap instead of queueing one after another. */
static void prefetch_ahead(const target_vec_t *v, size_t i)
{
    const size_t step = 4, n = v->count;
    const sio_conn_t *sc;
    if (i + 5 * step < n)
        __builtin_prefetch(v->items[i + 5 * step]);
    if (i + 4 * step < n)
        __builtin_prefetch(v->items[i + 4 * step]->sc);
    if (i + 3 * step < n && (sc = v->items[i + 3 * step]->sc) != NULL)
        __builtin_prefetch(sc->eio);
    if (i + 2 * step < n && (sc = v->items[i + 2 * step]->sc) != NULL && sc->eio != NULL)
        sb_eio_prefetch(sc->eio, 0);
    if (i + step < n && (sc = v->items[i + step]->sc) != NULL && sc->eio != NULL)
        sb_eio_prefetch(sc->eio, 1);
}

static void emit_with_ack(sb_socket_t *s, const char *event, json_t *args, const char *reply_to, const char *request_id)
{
    if (s->state == SOCK_CLOSED || s->sc == NULL || s->nsacks >= MAX_PENDING_ACKS)
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
    atomic_fetch_add(&s->w->stats.deliveries, 1);
    sb_metric_inc(SB_M(s->w)->deliveries, s->w->idx);
}

static int durable_apply(sb_worker_t *w, json_t *msg, const char *nsp, const char *event, json_t *args,
                         const sb_bus_entry_t *e, const char **why);

int sb_session_apply_emit(sb_worker_t *w, json_t *msg, const sb_bus_entry_t *e, const char **why)
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
    json_t *reply_to = json_object_get(msg, "reply_to"), *request_id = json_object_get(msg, "request_id");
    int is_volatile = json_is_true(json_object_get(msg, "volatile"));
    int with_ack = reply_to != NULL && !json_is_null(reply_to);
    /* Broadcasts are what a recovering socket gets back; volatile emits and emits waiting for an answer (their
     * requester has timed out) are not. Durable entries never come through a replay: the inbox read every socket
     * makes once it is connected brings them, in inbox order (the inbox entry is written before its bus entry). */
    sb_socket_t *rs = w->replay_sock;
    if (rs != NULL && ((e != NULL && e->inbox != NULL) || (!rs->rec->fresh && (is_volatile || with_ack))))
        return 0;
    if (e != NULL && e->inbox != NULL) /* a durable emit: per-socket ack ids, never a recovery offset */
        return durable_apply(w, msg, nsp, json_string_value(event), args, e, why);
    target_vec_t v = {0};
    if (collect_targets(w, msg, nsp, 1, 1, &v, why) != 0)
        return SB_EINVAL;
    if (v.count == 0) {
        free(v.items);
        return 0;
    }
    /* With recovery on, a broadcast carries its bus id as the last argument (Socket.IO 4.6 does the same): the
     * client keeps the last one and brings it back as its offset when it reconnects. */
    json_t *with_offset = NULL;
    if (w->cfg->recovery_window_ms > 0 && e != NULL && e->idlen > 0 && e->idlen < 48 && !is_volatile && !with_ack &&
        e->inbox == NULL) {
        with_offset = args != NULL ? json_copy(args) : json_array();
        if (with_offset == NULL || json_array_append_new(with_offset, json_stringn(e->id, e->idlen)) != 0) {
            json_decref(with_offset);
            free(v.items);
            return SB_ENOMEM;
        }
    }
    /* Encode once; the same bytes go to every recipient. */
    sb_sio_encoded_t enc;
    memset(&enc, 0, sizeof(enc));
    int rv = sb_sio_encode_event(&enc, nsp, json_string_value(event), with_offset != NULL ? with_offset : args, -1);
    json_decref(with_offset);
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
    if (with_ack) {
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
    sb_eio_msg_t m = {text.base, text.len, enc.nbins, enc.bins, NULL, is_volatile};
    uint64_t sent = 0;
    for (size_t i = 0; i < v.count; i++) {
        prefetch_ahead(&v, i);
        sb_socket_t *s = v.items[i];
        if (s->state != SOCK_CLOSED && s->sc != NULL && s->sc->eio != NULL && sb_eio_send_msg(s->sc->eio, &m) == 0)
            sent++;
    }
    if (sent != 0) { /* counted once per emit, not per recipient */
        atomic_fetch_add(&w->stats.deliveries, sent);
        sb_metric_add(SB_M(w)->deliveries, w->idx, (double)sent);
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
            if (s->state == SOCK_CLOSED)
                break;
            const char *room = json_string_value(it);
            size_t rl = json_string_length(it);
            int changed;
            if (join)
                changed = local_join(s, room, rl) == 1;
            else
                changed = local_leave(s, room, rl);
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
        const char *why_ = reason != NULL ? json_string_value(reason) : "server namespace disconnect";
        if (s->state == SOCK_CONNECTED) {
            sb_buf_t sio;
            sb_buf_init(&sio, 0);
            if (sb_sio_encode_disconnect(&sio, s->nsp) == 0)
                send_packet_text(s, &sio);
            sb_buf_free(&sio);
            socket_close(s, why_);
        } else if (s->state == SOCK_CONNECTING && s->pending_disconnect == NULL) {
            s->pending_disconnect = strdup(why_); /* carried out right after the CONNECT answer */
        }
        sock_unref(s);
    }
    free(v.items);
    return 0;
}

/* The socket of this worker waiting for the backend's answer `id`: takes the pending ack off it (its id in *ack_id),
 * or NULL when the ack is not for us or not awaited. */
static sb_socket_t *ack_target(sb_worker_t *w, const char *sid, size_t sidlen, int64_t id, int64_t *ack_id)
{
    if (sidlen != SB_SID_LEN)
        return NULL;
    sb_socket_t *s = sb_map_get(&w->sockets, sid, SB_SID_LEN);
    if (s == NULL || s->state != SOCK_CONNECTED)
        return NULL; /* another worker's or node's socket, or gone */
    pending_ack_t *a = ack_find(s, id);
    if (a == NULL) {
        sb_log(SB_LOG_DEBUG, "ack for an unknown or answered ack id ignored", "socket", s->id, NULL);
        return NULL;
    }
    *ack_id = a->id;
    ack_free(a);
    return s;
}

int sb_session_apply_ack(sb_worker_t *w, json_t *msg, const char **why)
{
    json_t *sid = json_object_get(msg, "socket"), *id = json_object_get(msg, "ack_id"),
           *args = json_object_get(msg, "args");
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
    int64_t ack_id;
    sb_socket_t *s = ack_target(w, json_string_value(sid), json_string_length(sid), json_integer_value(id), &ack_id);
    if (s == NULL)
        return 0;
    json_t *empty = NULL;
    if (args == NULL)
        args = empty = json_array();
    send_ack(s, ack_id, args);
    json_decref(empty);
    return 0;
}

int sb_session_apply_ack_raw(sb_worker_t *w, const char *sid, size_t sidlen, int64_t ack_id, const char *args,
                             size_t args_len)
{
    int64_t id;
    sb_socket_t *s = ack_target(w, sid, sidlen, ack_id, &id);
    if (s == NULL || s->sc == NULL || s->sc->eio == NULL)
        return 0;
    /* "4" + what sb_sio_encode_ack would write for these args: "3" [nsp ","] id, then the array's text */
    sb_buf_t b;
    sb_buf_init(&b, 0);
    int rc = sb_buf_reserve(&b, 2 + strlen(s->nsp) + 1 + 20 + args_len);
    if (rc == 0)
        rc = sb_buf_append(&b, "43", 2);
    if (rc == 0)
        rc = sb_sio_append_nsp(&b, s->nsp);
    if (rc == 0)
        rc = sb_buf_append_i64(&b, id);
    if (rc == 0)
        rc = sb_buf_append(&b, args, args_len);
    if (rc == 0)
        sb_eio_send_text(s->sc->eio, b.base, b.len, 0, NULL);
    sb_buf_free(&b);
    return 0;
}

/* Every second: warn sockets whose token expires soon, disconnect those whose token expired. The list is in exp
 * order: the walk ends at the first token that is neither (only the sockets inside the warning window are read
 * again each second, not every socket with a token). */
static void expiry_sweep_cb(h2o_timeout_entry_t *e)
{
    sb_worker_t *w = (sb_worker_t *)((char *)e - offsetof(sb_worker_t, expiry_tick));
    uint64_t now = sb_now_ms();
    for (h2o_linklist_t *l = w->token_sockets.next; l != &w->token_sockets;) {
        sb_socket_t *s = H2O_STRUCT_FROM_MEMBER(sb_socket_t, exp_link, l);
        l = l->next;
        /* Saturating, as the verifier's: an exp far in the future must not wrap around into the past. */
        int64_t exp = s->claims->exp;
        uint64_t exp_ms = exp <= 0 ? 0 : (uint64_t)exp > UINT64_MAX / 1000 ? UINT64_MAX : (uint64_t)exp * 1000;
        if (now + w->cfg->jwt_expiry_warning_ms < exp_ms)
            break;
        if (now >= exp_ms && now - exp_ms >= w->cfg->jwt_leeway_ms) {
            sb_log(SB_LOG_DEBUG, "token expired without $refresh, disconnecting", "socket", s->id, NULL);
            sb_buf_t sio;
            sb_buf_init(&sio, 0);
            if (sb_sio_encode_disconnect(&sio, s->nsp) == 0)
                send_packet_text(s, &sio);
            sb_buf_free(&sio);
            socket_close(s, "token expired");
        } else if (!s->expiring_sent) { /* inside the warning window (the break above) */
            s->expiring_sent = 1;
            json_t *args = json_pack("[{s:I}]", "exp", (json_int_t)s->claims->exp);
            sb_sio_encoded_t enc;
            memset(&enc, 0, sizeof(enc));
            if (args != NULL && sb_sio_encode_event(&enc, s->nsp, "$token_expiring", args, -1) == 0)
                send_encoded(s, &enc);
            sb_sio_encoded_clear(&enc);
            json_decref(args);
        }
    }
    if (!h2o_linklist_is_empty(&w->admin_sockets))
        admin_push(w);
    h2o_timeout_link(w->ctx.loop, &w->expiry_to, &w->expiry_tick);
}

void sb_session_worker_init(sb_worker_t *w)
{
    h2o_linklist_init_anchor(&w->token_sockets);
    h2o_linklist_init_anchor(&w->admin_sockets);
    h2o_timeout_init(w->ctx.loop, &w->expiry_to, 1000);
    w->expiry_tick.cb = expiry_sweep_cb;
    h2o_timeout_link(w->ctx.loop, &w->expiry_to, &w->expiry_tick);
    w->auth_cache = sb_auth_cache_create(10000);
    h2o_timeout_init(w->ctx.loop, &w->connect_to, w->cfg->connect_timeout_ms);
    h2o_timeout_init(w->ctx.loop, &w->ack_to, w->cfg->ack_timeout_ms);
    h2o_timeout_init(w->ctx.loop, &w->server_ack_to, SB_SERVER_ACK_MAX_MS + 1000);
    h2o_timeout_init(w->ctx.loop, &w->replay_to, REPLAY_RETRY_MS);
    backlog_t *bl = calloc(1, sizeof(*bl));
    if (bl == NULL) {
        fputs("switchboard: out of memory at start-up\n", stderr);
        abort();
    }
    h2o_linklist_init_anchor(&bl->replaying);
    w->backlog = bl;
}

void sb_session_worker_free(sb_worker_t *w)
{
    sb_map_free(&w->rooms);
    sb_map_free(&w->sockets);
    backlog_t *bl = backlog_of(w);
    if (bl != NULL) {
        backlog_drop(bl, bl->len);
        free(bl->items);
        free(bl);
        w->backlog = NULL;
    }
}

/* ---- durable emits (CONTRACT §6) ----------------------------------------------------------------------------------
 *
 * A durable emit sits in each target user's inbox stream until a client of that user acks it. Live: the bus entry's
 * `inbox` field names each user's inbox entry; every local socket of a listed user gets the event with a server ack
 * id, and the ack deletes the inbox entry (XDEL, pipelined). On connect the socket reads its user's inbox for its
 * namespace, oldest first, in pages (sb_inbox_read). The first page is asked for together with sb_connect (same
 * connection, same write): Redis runs it right after sb_connect, so its answer comes after the connect answer and
 * the handshake costs one round trip, not two. Its entries go out only once the CONNECT answer has (the socket is
 * CONNECTED by then); after a refused or failed connect they are dropped, and stay in the inbox.
 *
 * No entry twice to one socket: a socket remembers the highest inbox id it was given (`last`) and skips live entries
 * at or below it. While the connect read is in flight a live entry may or may not be in its result; instead of
 * holding such entries, the socket only notes that one came (`again`) and reads the inbox once more after the last
 * id it read: the inbox holds them anyway, in order, so nothing is buffered per socket and nothing is lost. Ids of
 * one inbox grow monotonically, so an entry written after a read is always above what that read returned.
 * A socket that is still CONNECTING notes live entries the same way while its first read is in flight (that read may
 * have run in Redis before the entry was written); without a read in flight it ignores them: the read that
 * connect_done starts comes after the entry was written. */

typedef struct durable_sock {
    sb_stream_id_t last; /* highest inbox id delivered to this socket; {0,0}: none */
    int reading;         /* the connect read is in flight (possibly sent with sb_connect, before CONNECTED) */
    int again;           /* a live durable entry arrived during the read: read once more */
} durable_sock_t;

typedef struct durable_read {
    sb_socket_t *sock; /* holds a reference */
    char after[SB_DURABLE_ID_MAX + 1];
} durable_read_t;

static durable_sock_t *durable_of(sb_socket_t *s)
{
    if (s->durable == NULL)
        s->durable = calloc(1, sizeof(*s->durable));
    return s->durable;
}

/* Sends one durable event with a server ack id; 0, or <0 when it was not sent (the entry stays in the inbox and
 * comes again at the next connect). */
static int durable_send(sb_socket_t *s, const char *event, json_t *args, const sb_stream_id_t *inbox_id)
{
    if (s->state != SOCK_CONNECTED || s->sc == NULL || s->sc->eio == NULL)
        return SB_EAGAIN;
    if (s->nsacks >= MAX_PENDING_ACKS) {
        sb_log(SB_LOG_WARN, "durable emit not delivered now: too many unacknowledged events (kept in the inbox)",
               "socket", s->id, NULL);
        return SB_ETOOBIG;
    }
    char id[SB_DURABLE_ID_MAX + 1];
    server_ack_t *a = calloc(1, sizeof(*a));
    if (a == NULL || sb_durable_id_format(inbox_id, id, sizeof(id)) == 0 || (a->inbox_id = strdup(id)) == NULL) {
        free(a);
        return SB_ENOMEM;
    }
    a->id = s->next_ack_id++;
    a->sock = s;
    sb_sio_encoded_t enc;
    memset(&enc, 0, sizeof(enc));
    if (sb_sio_encode_event(&enc, s->nsp, event, args, a->id) != 0) {
        sb_sio_encoded_clear(&enc);
        free(a->inbox_id);
        free(a);
        return SB_EINVAL;
    }
    /* No timer: the ack is awaited as long as the socket lives (a late ack still removes the entry); the count is
     * bounded by MAX_PENDING_ACKS. */
    h2o_linklist_insert(&s->sacks, &a->link);
    s->nsacks++;
    send_encoded(s, &enc);
    sb_sio_encoded_clear(&enc);
    atomic_fetch_add(&s->w->stats.deliveries, 1);
    sb_metric_inc(SB_M(s->w)->deliveries, s->w->idx);
    sb_metric_inc(SB_M(s->w)->durable_delivered, s->w->idx);
    return 0;
}

static void durable_acked(sb_socket_t *s, server_ack_t *a)
{
    if (sb_store_inbox_del(s->w, s->user, a->inbox_id) == 0)
        sb_metric_inc(SB_M(s->w)->durable_acked, s->w->idx);
    else
        sb_log(SB_LOG_WARN, "durable ack not written: redis unavailable (the event comes again)", "socket", s->id,
               NULL);
}

static void durable_read_next(sb_socket_t *s, const char *after);

static void durable_read_done(sb_worker_t *w, const redisReply *reply, void *data)
{
    durable_read_t *rd = data;
    sb_socket_t *s = rd->sock;
    durable_sock_t *ds = s->durable;
    int ok = reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 3 &&
             (reply->elements - 3) % 3 == 0 && reply->element[0]->type == REDIS_REPLY_INTEGER &&
             reply->element[1]->type == REDIS_REPLY_STRING && reply->element[2]->type == REDIS_REPLY_INTEGER;
    if (s->state != SOCK_CONNECTED || ds == NULL || !ok) {
        if (ds != NULL)
            ds->reading = 0;
        if (s->state == SOCK_CONNECTED && !ok)
            sb_log(SB_LOG_WARN, "inbox read failed: durable events wait for the next connect", "socket", s->id, NULL);
        free(rd);
        sock_unref(s);
        return;
    }
    long long dropped = reply->element[0]->integer;
    if (dropped > 0) {
        char n[24];
        snprintf(n, sizeof(n), "%lld", dropped);
        sb_metric_add(SB_M(w)->inbox_dropped[1], w->idx, (double)dropped);
        sb_log(SB_LOG_WARN, "inbox entries older than --inbox-max-age dropped", "users", "1", "dropped_age", n, NULL);
    }
    for (size_t i = 3; i + 2 < reply->elements; i += 3) {
        const redisReply *id = reply->element[i], *ev = reply->element[i + 1], *ar = reply->element[i + 2];
        sb_stream_id_t sid;
        if (id->type != REDIS_REPLY_STRING || ev->type != REDIS_REPLY_STRING || ar->type != REDIS_REPLY_STRING ||
            sb_durable_id_parse(id->str, id->len, &sid) != 0 || sb_durable_id_cmp(&sid, &ds->last) <= 0)
            continue;
        json_t *args = json_loadb(ar->str, ar->len, JSON_ALLOW_NUL, NULL);
        char *event = strndup(ev->str, ev->len);
        if (json_is_array(args) && event != NULL && durable_send(s, event, args, &sid) == 0)
            ds->last = sid;
        free(event);
        json_decref(args);
    }
    const redisReply *scanned = reply->element[1];
    if (scanned->len > 0 && scanned->len < sizeof(rd->after)) {
        memcpy(rd->after, scanned->str, scanned->len);
        rd->after[scanned->len] = '\0';
    }
    int more = reply->element[2]->integer != 0 || ds->again;
    ds->again = 0;
    if (more && s->state == SOCK_CONNECTED) {
        durable_read_next(s, rd->after);
    } else {
        ds->reading = 0;
        if (ds->last.ms == 0 && ds->last.seq == 0) { /* nothing delivered: keep no state for this socket */
            free(ds);
            s->durable = NULL;
        }
    }
    free(rd);
    sock_unref(s);
}

static void durable_read_next(sb_socket_t *s, const char *after)
{
    durable_read_t *rd = calloc(1, sizeof(*rd));
    if (rd == NULL) {
        s->durable->reading = 0;
        return;
    }
    rd->sock = s;
    snprintf(rd->after, sizeof(rd->after), "%s", after);
    s->refs++;
    if (sb_store_inbox_read(s->w, s->user, s->nsp, rd->after, SB_DURABLE_READ_COUNT, durable_read_done, rd) != 0) {
        sb_log(SB_LOG_WARN, "inbox read not sent: durable events wait for the next connect", "socket", s->id, NULL);
        s->refs--;
        s->durable->reading = 0;
        free(rd);
    }
}

/* Starts the read of the user's inbox: from register_new right after sb_connect was sent (pipelined; the entries
 * are delivered once CONNECTED), and from connect_done and recovery once the CONNECT answer is out, where it does
 * nothing when the pipelined read is still in flight. Anonymous sockets are skipped: their user is their
 * brand-new socket id, whose inbox is empty. */
static void durable_on_connected(sb_socket_t *s)
{
    if (s->claims == NULL || s->admin)
        return;
    durable_sock_t *ds = durable_of(s);
    if (ds == NULL || ds->reading)
        return;
    ds->reading = 1;
    durable_read_next(s, "0-0");
}

/* Hook of sb_session_apply_emit for a bus entry with an `inbox` field. */
static int durable_apply(sb_worker_t *w, json_t *msg, const char *nsp, const char *event, json_t *args,
                         const sb_bus_entry_t *e, const char **why)
{
    json_t *inbox = json_loadb(e->inbox, e->inboxlen, JSON_ALLOW_NUL, NULL);
    if (!json_is_object(inbox)) {
        json_decref(inbox);
        *why = "inbox";
        return SB_EINVAL;
    }
    target_vec_t v = {0};
    if (collect_targets(w, msg, nsp, 0, 0, &v, why) != 0) {
        json_decref(inbox);
        return SB_EINVAL;
    }
    json_t *empty = args == NULL ? json_array() : NULL;
    for (size_t i = 0; i < v.count; i++) {
        sb_socket_t *s = v.items[i];
        sb_stream_id_t id;
        if (s->admin || sb_durable_inbox_id(inbox, s->user, &id) != 0)
            continue;
        if (s->state != SOCK_CONNECTED) {
            /* a connecting socket's pipelined read may have run before the entry was written: read once more;
             * without that read, the one connect_done starts finds the entry */
            if (s->state == SOCK_CONNECTING && s->durable != NULL && s->durable->reading)
                s->durable->again = 1;
            continue;
        }
        durable_sock_t *ds = durable_of(s);
        if (ds == NULL)
            continue; /* out of memory: the entry stays in the inbox for the next connect */
        if (ds->reading) {
            ds->again = 1;
            continue;
        }
        if (sb_durable_id_cmp(&id, &ds->last) <= 0)
            continue; /* the connect read delivered it already */
        if (durable_send(s, event, args != NULL ? args : empty, &id) == 0)
            ds->last = id;
    }
    json_decref(empty);
    json_decref(inbox);
    free(v.items);
    return 0;
}
