/*
 * redis.c — one hiredis 0.14 async connection driven by an h2o 2.2.5 evloop.
 *
 * How it hangs together:
 * - hiredis owns the socket and does the reading. h2o watches a dup() of its
 *   fd (H2O_SOCKET_FLAG_DONT_READ), so h2o only tells us when the fd is
 *   readable (read_start) or writable (notify_write, one-shot) and we call
 *   redisAsyncHandleRead. A connected context's output buffer is written by
 *   write_obuf, which keeps the buffer's capacity (hiredis frees it after each
 *   write); connecting and errors go through redisAsyncHandleWrite.
 * - Writes are deferred, not polled for: when hiredis asks for write
 *   readiness on a connected context we only link a 0 ms timer ("flush"), which
 *   h2o runs after this loop iteration's socket callbacks, and it calls
 *   redisAsyncHandleWrite itself. Every command of the iteration goes out in
 *   one write() and EPOLLOUT is armed only when the kernel took less than all
 *   of it (arming and disarming it for every batch cost two epoll_ctl and one
 *   more epoll_wait per iteration that talked to Redis). The connect itself
 *   still waits for EPOLLOUT: hiredis learns that a non-blocking connect
 *   finished only from write readiness.
 * - Every command gets a request record (req_t) kept in a FIFO in send order;
 *   Redis answers in order, so the head is the oldest outstanding command.
 *   hiredis 0.14 has no timeouts: one periodic h2o timer ("tick") checks the
 *   head's deadline and the connect deadline, drives reconnects with backoff,
 *   and closes h2o sockets that hiredis has let go of.
 * - A connection is dropped only from the tick or from sb_redis_destroy, never
 *   from inside a hiredis callback, so hiredis never frees a context under us.
 * - The object is freed when no callback of ours is on the stack ("busy"),
 *   which is either inside sb_redis_destroy or when the outermost callback
 *   that called it returns.
 */
#include "switchboard/redis.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <hiredis/async.h>
#include <hiredis/sds.h>

#include "switchboard/common.h"
#include "switchboard/log.h"

#define TICK_MS 10 /* deadline resolution; the timer runs only while something is pending */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define DEFAULT_TIMEOUT_MS 5000 /* cmd_timeout_ms == 0 */
#define MAX_PENDING 100000      /* outstanding commands per connection */
#define MAX_PENDING_BYTES                                                                                              \
    ((size_t)64 * 1024 * 1024) /* argument bytes of outstanding commands (bounds hiredis's obuf) */
#define FMT_KEEP_BYTES                                                                                                 \
    ((size_t)64 * 1024) /* the reused formatting buffer is kept up to this size; larger ones are freed */
#define OBUF_KEEP_BYTES ((size_t)256 * 1024) /* hiredis's output buffer keeps its capacity up to this size */

enum conn_state { ST_DISCONNECTED, ST_CONNECTING, ST_READY, ST_CLOSED };

/* Handshake steps sent after connect; 0 marks a user command. */
enum { STEP_USER = 0, STEP_AUTH, STEP_SELECT, STEP_PING };

/* One hiredis context plus the h2o socket watching a dup of its fd. The link
 * outlives the context: hiredis's cleanup hook detaches it (ac = NULL) and the
 * socket is closed later from the tick, never from inside hiredis. */
typedef struct link {
    struct link *next; /* on r->closing once detached */
    sb_redis_t *r;
    redisAsyncContext *ac;
    h2o_socket_t *sock;
    int write_armed; /* h2o_socket_notify_write is one-shot and asserts when armed twice */
    int in_write;    /* inside our redisAsyncHandleWrite call: hiredis's add/del write say whether output remains */
    int more;        /* set by that add write: the kernel did not take everything */
    int ready;       /* the handshake completed on this connection */
} link_t;

typedef struct req {
    struct req *next;
    sb_redis_t *r;
    sb_redis_cb cb;
    void *data;
    uint64_t deadline; /* sb_mono_ms */
    size_t bytes;
    int step; /* STEP_* */
    int done; /* the user callback was already called (shutdown); hiredis's later call only frees */
} req_t;

struct sb_redis {
    h2o_loop_t *loop;
    sb_redis_addr_t addr;
    char name[64];
    uint64_t cmd_timeout_ms;
    sb_redis_state_cb on_state;
    void *state_data;

    enum conn_state state;
    link_t *link;    /* the current connection, NULL while disconnected */
    link_t *closing; /* detached links whose h2o socket still has to be closed */
    req_t *head, *tail;
    size_t npending, pending_bytes;

    /* Allocated apart from the object: when the object is freed from inside
     * this timer's own callback the h2o_timeout_t must outlive it (see dispose_timeout). */
    h2o_timeout_t *tick;
    h2o_timeout_entry_t tick_entry;
    /* 0 ms: writes what this loop iteration queued (see the top of the file); allocated apart for the same reason */
    h2o_timeout_t *flush;
    h2o_timeout_entry_t flush_entry;

    /* RESP formatting scratch, reused by every command: hiredis's own argv
     * formatter (sdscatfmt per argument, growing an sds) cost more than the
     * rest of a client event's path together. */
    char *fmt;
    size_t fmt_cap;

    uint64_t connect_deadline, reconnect_at, backoff_ms, rng;
    const char *fail_reason; /* err given to callbacks dropped by a disconnect we started */
    const char *drop_reason; /* set inside hiredis callbacks; the tick drops the connection */
    int reported_up;         /* the last state reported to on_state was 1 */
    int handshake_failed;
    int busy;      /* callbacks of ours on the stack */
    int destroyed; /* sb_redis_destroy was called; free when busy drops to 0 */
};

/* An h2o_timeout_t disposed from inside its own callback: h2o 2.2.5 still reads
 * it after the callback returns, so its memory is kept until the next one. */
static _Thread_local h2o_timeout_t *parked_tick;

static void start_connect(sb_redis_t *r);

static void arm_tick(sb_redis_t *r)
{
    if (!h2o_timeout_is_linked(&r->tick_entry))
        h2o_timeout_link(r->loop, r->tick, &r->tick_entry);
}

static uint64_t next_rand(sb_redis_t *r)
{
    /* xorshift64: jitter needs spread, not secrecy */
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 7;
    r->rng ^= r->rng << 17;
    return r->rng;
}

static void schedule_reconnect(sb_redis_t *r, const char *msg, const char *why)
{
    uint64_t base = r->backoff_ms;
    /* "equal jitter": between half and all of the current backoff, so many
     * nodes that lost the same server do not come back in lockstep */
    uint64_t delay = base / 2 + next_rand(r) % (base / 2 + 1);
    char num[24];

    r->backoff_ms = base * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : base * 2;
    r->reconnect_at = sb_mono_ms() + delay;
    snprintf(num, sizeof(num), "%llu", (unsigned long long)delay);
    sb_log(SB_LOG_WARN, msg, "redis", r->name, "error", why, "#retry_in_ms", num, NULL);
    arm_tick(r);
}

static void fifo_push(sb_redis_t *r, req_t *q)
{
    q->next = NULL;
    if (r->tail != NULL)
        r->tail->next = q;
    else
        r->head = q;
    r->tail = q;
    r->npending++;
    r->pending_bytes += q->bytes;
}

static void fifo_remove(sb_redis_t *r, req_t *q)
{
    req_t **p = &r->head, *prev = NULL;
    /* Replies arrive in order, so q is the head; the walk is only a safety net. */
    while (*p != NULL && *p != q) {
        prev = *p;
        p = &(*p)->next;
    }
    if (*p == NULL)
        return;
    *p = q->next;
    if (r->tail == q)
        r->tail = prev;
    r->npending--;
    r->pending_bytes -= q->bytes;
}

static void handshake_reply(sb_redis_t *r, req_t *q, redisReply *reply)
{
    link_t *l = r->link;

    if (reply == NULL || l == NULL || r->destroyed)
        return; /* the connection is going away; the cleanup hook logs why */
    if (reply->type == REDIS_REPLY_ERROR) {
        if (!r->handshake_failed) {
            r->handshake_failed = 1;
            sb_log(SB_LOG_ERROR, q->step == STEP_AUTH ? "redis AUTH failed" : "redis handshake failed", "redis",
                   r->name, "error", reply->str, NULL);
            r->drop_reason = q->step == STEP_AUTH ? "AUTH failed" : "handshake failed";
            arm_tick(r);
        }
        return;
    }
    if (q->step != STEP_PING || r->handshake_failed)
        return;
    r->state = ST_READY;
    l->ready = 1;
    r->backoff_ms = BACKOFF_MIN_MS;
    sb_log(SB_LOG_INFO, "redis connected", "redis", r->name, NULL);
    if (r->reported_up && r->on_state != NULL) {
        /* keep 0/1 alternating even if the loss was not reported yet */
        r->on_state(r, 0, r->state_data);
        if (r->destroyed || r->state != ST_READY)
            return;
    }
    r->reported_up = 1;
    if (r->on_state != NULL)
        r->on_state(r, 1, r->state_data);
}

/* hiredis reply callback for every command: called exactly once per command,
 * with reply == NULL when the context goes away. */
static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    req_t *q = privdata;
    sb_redis_t *r = q->r;
    redisReply *reply = reply_;

    (void)ac;
    fifo_remove(r, q);
    if (reply == NULL && r->state == ST_READY)
        r->state = ST_DISCONNECTED; /* callbacks below must see sb_redis_connected() == 0 */
    if (q->step != STEP_USER) {
        handshake_reply(r, q, reply);
    } else if (!q->done) {
        q->done = 1;
        q->cb(r, reply, reply != NULL ? NULL : (r->fail_reason != NULL ? r->fail_reason : "disconnected"), q->data);
    }
    free(q);
}

static size_t u64_digits(uint64_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* "<type><n>\r\n", digits written in place from the last one back */
static char *put_header(char *p, char type, uint64_t n)
{
    size_t d = u64_digits(n);
    *p++ = type;
    for (size_t i = d; i > 0; i--) {
        p[i - 1] = (char)('0' + n % 10);
        n /= 10;
    }
    p += d;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* The command as a RESP array of bulk strings (what redisFormatCommandArgv
 * makes), NUL-terminated, in r->fmt or, beyond FMT_KEEP_BYTES, in a buffer the
 * caller frees (*owned). NULL when out of memory. */
static char *format_command(sb_redis_t *r, int argc, const char **argv, const size_t *argvlen, size_t *outlen,
                            char **owned)
{
    size_t total = 1 + u64_digits((uint64_t)argc) + 2;
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen != NULL ? argvlen[i] : strlen(argv[i]);
        total += 1 + u64_digits(n) + 2 + n + 2;
    }
    char *buf;
    *owned = NULL;
    total++; /* a NUL after the command: hiredis's redisAsyncFormattedCommand scans it with strchr */
    if (total <= r->fmt_cap) {
        buf = r->fmt;
    } else if (total <= FMT_KEEP_BYTES) {
        size_t cap = r->fmt_cap != 0 ? r->fmt_cap : 512;
        while (cap < total)
            cap *= 2;
        if ((buf = realloc(r->fmt, cap)) == NULL)
            return NULL;
        r->fmt = buf;
        r->fmt_cap = cap;
    } else {
        if ((buf = malloc(total)) == NULL)
            return NULL;
        *owned = buf;
    }
    char *p = put_header(buf, '*', (uint64_t)argc);
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen != NULL ? argvlen[i] : strlen(argv[i]);
        p = put_header(p, '$', n);
        memcpy(p, argv[i], n);
        p += n;
        *p++ = '\r';
        *p++ = '\n';
    }
    *p = '\0';
    *outlen = (size_t)(p - buf);
    return buf;
}

static int submit(sb_redis_t *r, sb_redis_cb cb, void *data, uint64_t deadline, int step, int argc, const char **argv,
                  const size_t *argvlen, size_t bytes)
{
    redisAsyncContext *ac = r->link->ac;
    size_t len;
    char *owned;
    const char *cmd = format_command(r, argc, argv, argvlen, &len, &owned);
    if (cmd == NULL)
        return SB_ENOMEM;
    req_t *q = calloc(1, sizeof(*q));

    if (q == NULL) {
        free(owned);
        return SB_ENOMEM;
    }
    q->r = r;
    q->cb = cb;
    q->data = data;
    q->deadline = deadline;
    q->step = step;
    q->bytes = bytes;
    /* hiredis copies the bytes into its output buffer; they go out with the
     * other commands of this loop iteration in one write */
    int rc = redisAsyncFormattedCommand(ac, on_reply, q, cmd, len);
    free(owned);
    if (rc != REDIS_OK) {
        free(q);
        return (ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)) != 0 ? SB_EAGAIN : SB_ENOMEM;
    }
    fifo_push(r, q);
    arm_tick(r);
    return 0;
}

static void send_handshake(sb_redis_t *r)
{
    const sb_redis_addr_t *a = &r->addr;
    int err = 0;

    if (a->pass[0] != '\0') {
        const char *argv[3] = {"AUTH", a->user, a->pass};
        size_t lens[3] = {4, strlen(a->user), strlen(a->pass)};
        if (a->user[0] != '\0')
            err = submit(r, NULL, NULL, r->connect_deadline, STEP_AUTH, 3, argv, lens, 0);
        else
            err = submit(r, NULL, NULL, r->connect_deadline, STEP_AUTH, 2, (const char *[]){"AUTH", a->pass},
                         (const size_t[]){4, lens[2]}, 0);
    }
    if (err == 0 && a->db != 0) {
        char db[16];
        int n = snprintf(db, sizeof(db), "%d", a->db);
        err = submit(r, NULL, NULL, r->connect_deadline, STEP_SELECT, 2, (const char *[]){"SELECT", db},
                     (const size_t[]){6, (size_t)n}, 0);
    }
    /* PING ends every handshake so "connected" always means "Redis answered". */
    if (err == 0)
        err = submit(r, NULL, NULL, r->connect_deadline, STEP_PING, 1, (const char *[]){"PING"}, (const size_t[]){4},
                     0);
    if (err != 0) {
        /* we are inside hiredis's connect callback: freeing the context here
         * would pull it from under hiredis, so the tick drops it */
        r->drop_reason = "out of memory";
        arm_tick(r);
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    link_t *l = ac->data;

    /* on failure hiredis frees the context right after this; the cleanup hook
     * logs it and schedules the reconnect */
    if (status == REDIS_OK && l->r->link == l && !l->r->destroyed)
        send_handshake(l->r);
}

static void enter(sb_redis_t *r)
{
    r->busy++;
}

static void free_now(sb_redis_t *r, h2o_timeout_t *running);

static void leave(sb_redis_t *r, h2o_timeout_t *running)
{
    if (--r->busy == 0 && r->destroyed)
        free_now(r, running);
}

static void on_sock_read(h2o_socket_t *sock, const char *err)
{
    link_t *l = sock->data;
    sb_redis_t *r = l->r;

    (void)err; /* DONT_READ: h2o only reports readiness; hiredis reads and sees errors itself */
    if (l->ac == NULL)
        return;
    enter(r);
    redisAsyncHandleRead(l->ac);
    leave(r, NULL);
}

static void on_sock_write(h2o_socket_t *sock, const char *err);
static void ev_add_read(void *privdata);

/* hiredis 0.14 frees its output buffer after every complete write (redisBufferWrite), so each loop iteration's
 * commands regrew it from empty by doubling reallocs and copies (perf put 7 % of a handshake ramp's samples there,
 * most of it first touches of fresh heap, a cost that then lands on other allocations: the ramp's total CPU did not
 * measurably change, the reallocs and copies are gone). A connected context's buffer is written here instead and
 * keeps its capacity, up to OBUF_KEEP_BYTES. Returns 0 when everything went out, 1 when some is left (EAGAIN or a short
 * write), -1 when hiredis must do it: not connected yet (it learns of the finished connect from this write
 * readiness) or an error, which its own write then meets and turns into a disconnect. */
static int write_obuf(link_t *l)
{
    redisContext *c = &l->ac->c;
    if (c->err != 0 || (c->flags & REDIS_CONNECTED) == 0 || c->obuf == NULL)
        return -1;
    size_t len = sdslen(c->obuf);
    if (len == 0)
        return 0;
    ssize_t n = write(c->fd, c->obuf, len);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 1 : -1;
    if ((size_t)n < len) {
        sdsrange(c->obuf, (int)n, -1); /* len <= MAX_PENDING_BYTES + one command: fits an int */
        return 1;
    }
    sdsclear(c->obuf);
    if (sdsalloc(c->obuf) > OBUF_KEEP_BYTES) {
        sds t = sdsRemoveFreeSpace(c->obuf); /* a burst's buffer is not kept */
        if (t != NULL)
            c->obuf = t;
    }
    return 0;
}

/* Writes what hiredis holds, and polls for EPOLLOUT only when some of it is left. Called with enter() done, never
 * from inside a hiredis callback (hiredis would free the context under its own caller on a write error). */
static void handle_write(link_t *l)
{
    int left = write_obuf(l);
    if (left >= 0) {
        ev_add_read(l); /* as hiredis does after every write */
        if (left == 1 && !l->write_armed) {
            l->write_armed = 1;
            h2o_socket_notify_write(l->sock, on_sock_write);
        }
        return;
    }
    l->in_write = 1;
    l->more = 0;
    /* On a write error hiredis fails every pending callback and frees the context: ev_cleanup sets l->ac = NULL and
     * parks l on r->closing, which only the tick or free_now (at leave) release, so l is still ours here. */
    redisAsyncHandleWrite(l->ac);
    l->in_write = 0;
    if (l->ac != NULL && l->more && !l->write_armed) {
        l->write_armed = 1;
        h2o_socket_notify_write(l->sock, on_sock_write);
    }
}

static void on_sock_write(h2o_socket_t *sock, const char *err)
{
    link_t *l = sock->data;
    sb_redis_t *r = l->r;

    (void)err;
    l->write_armed = 0; /* h2o disarmed it before calling us; handle_write re-arms it if output remains */
    if (l->ac == NULL)
        return;
    enter(r);
    handle_write(l);
    leave(r, NULL);
}

static void on_flush(h2o_timeout_entry_t *entry)
{
    sb_redis_t *r = H2O_STRUCT_FROM_MEMBER(sb_redis_t, flush_entry, entry);
    h2o_timeout_t *flush = r->flush;
    link_t *l = r->link;

    enter(r);
    /* Only on a connected context: before that hiredis would take "no socket error yet" for a finished connect.
     * A link replaced since the flush was asked for is fine: the new one is connecting (its EPOLLOUT is armed) or
     * connected (its handshake waits here). While EPOLLOUT is armed, its callback writes everything anyway. */
    if (!r->destroyed && l != NULL && l->ac != NULL && !l->write_armed && (l->ac->c.flags & REDIS_CONNECTED) != 0)
        handle_write(l);
    leave(r, flush);
}

static void ev_add_read(void *privdata)
{
    link_t *l = privdata;
    if (l->ac != NULL && !h2o_socket_is_reading(l->sock))
        h2o_socket_read_start(l->sock, on_sock_read);
}

static void ev_del_read(void *privdata)
{
    link_t *l = privdata;
    if (h2o_socket_is_reading(l->sock))
        h2o_socket_read_stop(l->sock);
}

static void ev_add_write(void *privdata)
{
    link_t *l = privdata;
    sb_redis_t *r = l->r;

    if (l->ac == NULL || l->write_armed)
        return; /* gone, or the armed EPOLLOUT writes this command with the rest */
    if (l->in_write) {
        l->more = 1; /* hiredis's verdict after its write; handle_write arms EPOLLOUT once hiredis returns */
        return;
    }
    if ((l->ac->c.flags & REDIS_CONNECTED) == 0) {
        /* the connect in progress: its completion is reported as write readiness */
        l->write_armed = 1;
        h2o_socket_notify_write(l->sock, on_sock_write);
        return;
    }
    if (!h2o_timeout_is_linked(&r->flush_entry))
        h2o_timeout_link(r->loop, r->flush, &r->flush_entry);
}

static void ev_del_write(void *privdata)
{
    link_t *l = privdata;
    /* h2o 2.2.5 cannot cancel a write notification; a spurious one is harmless
     * because hiredis finds nothing to write */
    if (l->in_write)
        l->more = 0;
}

/* hiredis is freeing the context (after failing every pending callback with
 * NULL): detach, and let the tick close the socket and reconnect. */
static void ev_cleanup(void *privdata)
{
    link_t *l = privdata;
    sb_redis_t *r = l->r;
    redisAsyncContext *ac = l->ac;
    char why[128];

    l->ac = NULL;
    ev_del_read(l);
    if (r->link == l)
        r->link = NULL;
    l->next = r->closing;
    r->closing = l;
    arm_tick(r);
    if (r->destroyed)
        return;

    if (r->fail_reason != NULL)
        snprintf(why, sizeof(why), "%s", r->fail_reason);
    else if (r->drop_reason != NULL)
        snprintf(why, sizeof(why), "%s", r->drop_reason);
    else if (ac != NULL && ac->c.errstr[0] != '\0')
        snprintf(why, sizeof(why), "%s", ac->c.errstr);
    else
        snprintf(why, sizeof(why), "closed");
    r->state = ST_DISCONNECTED;
    r->handshake_failed = 0;
    r->drop_reason = NULL;
    schedule_reconnect(r, l->ready ? "redis connection lost" : "redis connect failed", why);
}

/* Drops the current connection: hiredis calls every pending callback with
 * NULL (err = reason) and then ev_cleanup. Never called from inside a hiredis
 * callback (hiredis would only mark the context). */
static void drop(sb_redis_t *r, const char *reason)
{
    link_t *l = r->link;

    if (l == NULL || l->ac == NULL)
        return;
    r->fail_reason = reason;
    if (r->state != ST_CLOSED)
        r->state = ST_DISCONNECTED;
    redisAsyncFree(l->ac);
    r->fail_reason = NULL;
}

static void close_detached(sb_redis_t *r)
{
    while (r->closing != NULL) {
        link_t *l = r->closing;
        r->closing = l->next;
        h2o_socket_close(l->sock);
        free(l);
    }
}

static void dispose_timeout(sb_redis_t *r, h2o_timeout_t *t, h2o_timeout_entry_t *entry, h2o_timeout_t *running)
{
    h2o_timeout_unlink(entry);
    if (running == NULL || t != running) {
        h2o_timeout_dispose(r->loop, t);
        free(t);
        return;
    }
    /* We are inside this timeout's callback. h2o 2.2.5's h2o_evloop_run walks
     * loop->_timeouts with node = node->next after h2o_timeout_run returns, and
     * h2o_timeout_run re-reads timeout->_entries: unlink the timeout from the
     * loop but keep its successor pointer and its memory until the next park
     * (by then the walk has moved past it). */
    h2o_linklist_t *next = running->_link.next;
    h2o_timeout_dispose(r->loop, running);
    running->_link.next = next;
    free(parked_tick);
    parked_tick = running;
}

static void free_now(sb_redis_t *r, h2o_timeout_t *running)
{
    /* hiredis has run every request callback by now (the context is freed), so
     * only records hiredis never saw could remain */
    while (r->head != NULL) {
        req_t *q = r->head;
        fifo_remove(r, q);
        free(q);
    }
    close_detached(r);
    /* At most one of them is running, so one parking slot is enough. The flush timeout follows the tick in the
     * loop's list: it goes first, so that a parked tick does not keep a pointer to it. */
    dispose_timeout(r, r->flush, &r->flush_entry, running);
    dispose_timeout(r, r->tick, &r->tick_entry, running);
    free(r->fmt);
    free(r);
}

static void run_tick(sb_redis_t *r)
{
    uint64_t now;

    if (r->reported_up && r->state != ST_READY) {
        r->reported_up = 0;
        if (r->on_state != NULL)
            r->on_state(r, 0, r->state_data);
        if (r->destroyed)
            return;
    }

    now = sb_mono_ms();
    if (r->link != NULL && r->link->ac != NULL) {
        if (r->drop_reason != NULL) {
            drop(r, r->drop_reason);
        } else if (r->state == ST_CONNECTING && now >= r->connect_deadline) {
            drop(r, "connect timeout");
        } else if (r->state == ST_READY && r->head != NULL && now >= r->head->deadline) {
            sb_log(SB_LOG_WARN, "redis command timed out; resetting the connection", "redis", r->name, NULL);
            drop(r, "timeout");
        }
        if (r->destroyed)
            return;
    }
    if (r->link == NULL && r->state == ST_DISCONNECTED && now >= r->reconnect_at)
        start_connect(r);
    close_detached(r);
}

static int tick_needed(sb_redis_t *r)
{
    return r->closing != NULL || r->head != NULL || r->state != ST_READY || r->drop_reason != NULL;
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    sb_redis_t *r = H2O_STRUCT_FROM_MEMBER(sb_redis_t, tick_entry, entry);
    h2o_timeout_t *tick = r->tick;

    enter(r);
    run_tick(r);
    if (!r->destroyed && tick_needed(r))
        arm_tick(r);
    leave(r, tick);
}

static void start_connect(sb_redis_t *r)
{
    redisAsyncContext *ac;
    link_t *l;
    int fd;

    ac = r->addr.is_unix ? redisAsyncConnectUnix(r->addr.path) : redisAsyncConnect(r->addr.host, r->addr.port);
    if (ac == NULL) {
        schedule_reconnect(r, "redis connect failed", "out of memory");
        return;
    }
    if (ac->err != 0) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac); /* hooks are not attached yet: nothing of ours runs */
        schedule_reconnect(r, "redis connect failed", why);
        return;
    }
    if ((l = calloc(1, sizeof(*l))) == NULL || (fd = fcntl(ac->c.fd, F_DUPFD_CLOEXEC, 0)) == -1) {
        free(l);
        redisAsyncFree(ac);
        schedule_reconnect(r, "redis connect failed", "out of memory or file descriptors");
        return;
    }
    if (!r->addr.is_unix)
        redisEnableKeepAlive(&ac->c); /* notice a dead peer on an idle connection */
    l->r = r;
    l->ac = ac;
    l->sock = h2o_evloop_socket_create(r->loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    l->sock->data = l;
    ac->data = l;
    ac->ev.data = l;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    r->link = l;
    r->state = ST_CONNECTING;
    r->handshake_failed = 0;
    r->drop_reason = NULL;
    r->connect_deadline = sb_mono_ms() + r->cmd_timeout_ms;
    redisAsyncSetConnectCallback(ac, on_connect); /* arms the first write notification */
    arm_tick(r);
}

sb_redis_t *sb_redis_create(h2o_loop_t *loop, const sb_redis_addr_t *addr, uint64_t cmd_timeout_ms, const char *name,
                            sb_redis_state_cb on_state, void *state_data)
{
    sb_redis_t *r;

    if (loop == NULL || addr == NULL)
        return NULL;
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return NULL;
    if ((r->tick = malloc(sizeof(*r->tick))) == NULL || (r->flush = malloc(sizeof(*r->flush))) == NULL) {
        free(r->tick);
        free(r);
        return NULL;
    }
    r->loop = loop;
    r->addr = *addr;
    r->addr.host[sizeof(r->addr.host) - 1] = '\0';
    r->addr.path[sizeof(r->addr.path) - 1] = '\0';
    r->addr.user[sizeof(r->addr.user) - 1] = '\0';
    r->addr.pass[sizeof(r->addr.pass) - 1] = '\0';
    snprintf(r->name, sizeof(r->name), "%s", name != NULL ? name : "redis");
    r->cmd_timeout_ms = cmd_timeout_ms != 0 ? cmd_timeout_ms : DEFAULT_TIMEOUT_MS;
    r->on_state = on_state;
    r->state_data = state_data;
    r->state = ST_DISCONNECTED;
    r->backoff_ms = BACKOFF_MIN_MS;
    r->rng = (sb_mono_ms() ^ (uint64_t)(uintptr_t)r) | 1;
    h2o_timeout_init(loop, r->tick, TICK_MS);
    r->tick_entry.cb = on_tick;
    h2o_timeout_init(loop, r->flush, 0);
    r->flush_entry.cb = on_flush;
    start_connect(r);
    return r;
}

int sb_redis_connected(sb_redis_t *r)
{
    return r != NULL && r->state == ST_READY;
}

size_t sb_redis_output_capacity(const sb_redis_t *r)
{
    if (r == NULL || r->link == NULL || r->link->ac == NULL || r->link->ac->c.obuf == NULL)
        return 0;
    return sdsalloc(r->link->ac->c.obuf);
}

/* Commands that switch the connection into push mode break the one-reply-per-
 * command FIFO (and RESP3 is unknown to hiredis 0.14). */
static int refused_command(const char *cmd, size_t len)
{
    static const char *const names[] = {"subscribe",    "psubscribe",   "ssubscribe", "unsubscribe",
                                        "punsubscribe", "sunsubscribe", "monitor",    "hello"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(names); i++)
        if (strlen(names[i]) == len && strncasecmp(cmd, names[i], len) == 0)
            return 1;
    return 0;
}

int sb_redis_commandargv(sb_redis_t *r, sb_redis_cb cb, void *data, uint64_t timeout_ms, int argc, const char **argv,
                         const size_t *argvlen)
{
    size_t bytes = 0;
    uint64_t now, deadline;

    if (r == NULL || r->destroyed || r->state != ST_READY || r->link == NULL || r->link->ac == NULL)
        return SB_EAGAIN;
    if (cb == NULL || argc <= 0 || argv == NULL || argv[0] == NULL)
        return SB_EINVAL;
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen != NULL ? argvlen[i] : strlen(argv[i]);
        bytes += n + 16; /* plus RESP framing */
        if (bytes > MAX_PENDING_BYTES)
            return SB_EAGAIN;
    }
    if (refused_command(argv[0], argvlen != NULL ? argvlen[0] : strlen(argv[0])))
        return SB_EINVAL;
    if (r->npending >= MAX_PENDING || bytes > MAX_PENDING_BYTES - r->pending_bytes)
        return SB_EAGAIN;
    if (timeout_ms == 0)
        timeout_ms = r->cmd_timeout_ms;
    now = sb_mono_ms();
    deadline = timeout_ms > UINT64_MAX - now ? UINT64_MAX : now + timeout_ms;
    return submit(r, cb, data, deadline, STEP_USER, argc, argv, argvlen, bytes);
}

void sb_redis_destroy(sb_redis_t *r)
{
    if (r == NULL || r->destroyed)
        return;
    r->destroyed = 1;
    r->state = ST_CLOSED;
    enter(r);
    /* The header promises "shutdown" before we return, even where hiredis
     * would call the callbacks later (we may be inside one of them): mark each
     * record so hiredis's own call only frees it. */
    for (req_t *q = r->head; q != NULL; q = q->next) {
        if (q->step == STEP_USER && !q->done) {
            q->done = 1;
            q->cb(r, NULL, "shutdown", q->data);
        }
    }
    if (r->link != NULL && r->link->ac != NULL)
        redisAsyncFree(r->link->ac); /* inside a hiredis callback this only marks it; hiredis frees it on return */
    leave(r, NULL);
}
