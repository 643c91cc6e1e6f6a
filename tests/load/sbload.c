/* sbload: the load generator of switchboard's benchmarks (issue 7).
 *
 *   sbload SCENARIO --url http://127.0.0.1:8080 [options]     (sbload --help)
 *
 * One process, one libevent loop, raw non-blocking sockets: it drives ~19k
 * Socket.IO clients (WebSocket, or long-polling for --polling-pct of them)
 * from several 127.0.0.x source addresses. Scenarios, each bounded in time:
 *   idle       connect N clients; connect rate, server CPU per handshake,
 *              server RSS (and Redis memory) per connection
 *   broadcast  N clients in a room, M messages at --rate (or, with --rate 0, as
 *              fast as a window of --window messages in flight allows); every
 *              message carries its sequence number and send time: latency
 *              percentiles, missing and duplicate deliveries
 *   acks       clients emit "e" with an ack, --inflight at a time each, for
 *              --duration; the backend answers; acked events/s and round trips
 *   events     clients emit "e" without ack for --duration, at --rate events/s
 *              in total or (the default) with --window unseen events per client;
 *              seen = read back from <prefix>events (switchboard) or counted by
 *              the server's handler (node, floor); events/s, missing, duplicates
 *   churn      a broadcast at --rate to N steady clients while other clients
 *              connect and leave at --churn-rate
 * The "backend" is Redis for switchboard (--redis: XADD to <prefix>bus, and for
 * acks an XREAD loop on <prefix>events answering with op ack), or a control
 * Socket.IO connection for the Node reference and the floor (emits
 * "bcast"(room, payload); they ack "e" themselves).
 *
 * Output: one JSON line on stdout, a human summary on stderr. Every result
 * carries per-core busy time (/proc/stat) and the server's (and Redis')
 * utime/stime over the measured interval. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "lg.h"

lg_run R;

enum { P_CTL, P_CONNECT, P_JOIN, P_BARRIER, P_MEASURE, P_DRAIN, P_HOLD, P_DONE };
enum { SC_IDLE, SC_BROADCAST, SC_ACKS, SC_EVENTS, SC_CHURN };

/* events: a client stops emitting at this many events (its bitmap of seen seqs stays under 32 MiB) */
#define LG_EV_MAX (1u << 28)

static int scenario;
static struct event *tick_ev, *sig_ev;
static double t_phase; /* when the current phase began */
static double t_barrier_sent;
static double *send_time; /* per message */
static lg_snap snap_a, snap_b, snap_hold;
static int measured_members; /* ready members when the measured phase began */
static uint64_t members_lost;
static int timed_out, interrupted;
static long long redis_mem_before = -1, redis_mem_after = -1;
static int64_t rss_before = -1;
static uint64_t other_events;
static char padding[65536];
static int ctl_ready;
static uint64_t churn_serial;
static lg_client *dead_old;
/* events */
static double t_measure;  /* the measured phase began */
static int ev_emitters;   /* members 0..ev_emitters-1 emit */
static uint32_t ev_rr;    /* next emitter of a rate or node-window batch */
static uint32_t *sid_tab; /* socket id -> member index + 1, open addressing */
static uint32_t sid_mask;
static int count_pending, count_base_known; /* node, floor: a "count" request is out; its baseline arrived */
static uint64_t count_base;

static void ask_count(void);
static void on_count(const char *p, size_t n);

/* ---------- callbacks from the clients ---------- */

static void queue_join(lg_client *c)
{
    if (!R.cfg.pub_redis || c->sid[0] == '\0' || (scenario != SC_BROADCAST && scenario != SC_CHURN))
        return;
    if (R.join_len == R.join_cap) {
        int cap = R.join_cap ? R.join_cap * 2 : 1024;
        char **nq = realloc(R.join_q, (size_t)cap * sizeof(*nq));
        if (nq == NULL)
            return;
        R.join_q = nq;
        R.join_cap = cap;
    }
    R.join_q[R.join_len++] = c->sid;
    c->joined = 1;
}

static void flush_joins(void)
{
    int b = R.cfg.join_batch;
    for (int i = 0; i < R.join_len; i += b) {
        int n = R.join_len - i < b ? R.join_len - i : b;
        if (lg_backend_join(R.join_q + i, n, R.cfg.room) != 0)
            R.redis_errors++;
        R.joins_sent += (uint64_t)n;
    }
    R.join_len = 0;
}

void lg_on_ready(lg_client *c)
{
    double now = lg_now();
    if (c->role == ROLE_CTL) {
        ctl_ready = 1;
        if (scenario == SC_EVENTS)
            ask_count(); /* the baseline */
        return;
    }
    if (c->role == ROLE_CHURN) {
        R.churn_ready++;
        queue_join(c);
        return;
    }
    R.pending--;
    R.ready++;
    R.t_last_ready = now;
    lg_hist_add(&R.connect_hist, (uint64_t)((now - c->t_start) * 1e6));
    queue_join(c);
}

void lg_on_failed(lg_client *c)
{
    if (c->role == ROLE_CTL) {
        fprintf(stderr, "sbload: control connection failed: %s\n", R.last_error);
        R.phase = P_DONE;
        event_base_loopbreak(R.base);
        return;
    }
    if (c->role == ROLE_CHURN) {
        R.churn_failed++;
        return;
    }
    R.pending--;
    R.failed++;
}

void lg_on_lost(lg_client *c)
{
    R.server_closed++;
    if (c->role == ROLE_MEMBER)
        members_lost++;
    if (c->role == ROLE_CTL) {
        fprintf(stderr, "sbload: control connection lost: %s\n", R.last_error);
        R.phase = P_DONE;
        event_base_loopbreak(R.base);
    }
}

void lg_on_event(lg_client *c, const char *p, size_t n)
{
    if (n < 6 || memcmp(p, "[\"m\",", 5) != 0) {
        other_events++;
        return;
    }
    uint64_t v;
    if (lg_find_u64(p, n, "b", &v) == 0) {
        if (c->role == ROLE_MEMBER && !c->barrier_seen) {
            c->barrier_seen = 1;
            R.barrier_members++;
        }
        return;
    }
    uint64_t seq, t;
    if (lg_find_u64(p, n, "s", &seq) != 0 || lg_find_u64(p, n, "t", &t) != 0) {
        R.proto_errors++;
        return;
    }
    if (seq >= R.sent) {
        R.bogus++;
        return;
    }
    uint64_t now = lg_now_us();
    if (c->role != ROLE_MEMBER) {
        R.churn_deliveries++;
        return;
    }
    uint8_t *row = R.seen + (size_t)c->idx * R.seen_row;
    uint8_t bit = (uint8_t)(1u << (seq & 7));
    if (row[seq >> 3] & bit) {
        R.dups++;
        return;
    }
    row[seq >> 3] |= bit;
    R.uniq++;
    lg_hist_add(&R.lat, now > t ? now - t : 0);
    R.t_last_delivery = lg_now();
    if (++R.recv_count[seq] == (uint32_t)measured_members)
        R.complete++;
}

static void send_emit(lg_client *c)
{
    char buf[96];
    int n = snprintf(buf, sizeof(buf), "42%u[\"e\",{\"t\":%llu}]", c->next_ack_id++, (unsigned long long)lg_now_us());
    c->acks_out++;
    R.acks_sent++;
    lg_client_send(c, buf, (size_t)n);
}

void lg_on_ack(lg_client *c, const char *p, size_t n)
{
    if (c->role == ROLE_CTL && scenario == SC_EVENTS) {
        on_count(p, n);
        return;
    }
    if (c->acks_out == 0) {
        R.proto_errors++;
        return;
    }
    c->acks_out--;
    uint64_t t;
    if (memmem(p, n, "\"error\"", 7) != NULL || lg_find_u64(p, n, "t", &t) != 0) {
        R.acks_err++;
        if (R.acks_err == 1)
            lg_note_error("ack error: %.*s", (int)(n > 120 ? 120 : n), p);
    } else {
        R.acks_ok++;
        uint64_t now = lg_now_us();
        lg_hist_add(&R.ack_lat, now > t ? now - t : 0);
    }
    if (R.phase == P_MEASURE) {
        R.acks_measured++;
        send_emit(c);
    }
}

/* ---------- events ---------- */

static void send_event(lg_client *c)
{
    if (c->state != ST_READY || c->ev_sent >= LG_EV_MAX)
        return;
    char buf[96];
    int n = snprintf(buf, sizeof(buf), "42[\"e\",{\"s\":%u,\"t\":%llu}]", c->ev_sent, (unsigned long long)lg_now_us());
    c->ev_sent++;
    R.ev_sent++;
    lg_client_send(c, buf, (size_t)n);
}

static uint32_t sid_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

/* Built when the measured phase begins: every member's socket id is known by then. */
static int build_sid_table(void)
{
    uint32_t size = 64;
    while (size < (uint32_t)R.cfg.clients * 2u)
        size <<= 1;
    sid_tab = calloc(size, sizeof(*sid_tab));
    if (sid_tab == NULL)
        return -1;
    sid_mask = size - 1;
    for (int i = 0; i < R.cfg.clients; i++) {
        size_t n = strlen(R.members[i].sid);
        if (n == 0)
            continue;
        uint32_t h = sid_hash(R.members[i].sid, n) & sid_mask;
        while (sid_tab[h])
            h = (h + 1) & sid_mask;
        sid_tab[h] = (uint32_t)i + 1;
    }
    return 0;
}

static lg_client *sid_lookup(const char *sid, size_t n)
{
    if (sid_tab == NULL || n == 0 || n >= LG_SID_MAX)
        return NULL;
    for (uint32_t h = sid_hash(sid, n) & sid_mask; sid_tab[h]; h = (h + 1) & sid_mask) {
        lg_client *c = &R.members[sid_tab[h] - 1];
        if (strlen(c->sid) == n && memcmp(c->sid, sid, n) == 0)
            return c;
    }
    return NULL;
}

void lg_on_stream_event(const char *sid, size_t sidlen, const char *args, size_t n)
{
    if (scenario != SC_EVENTS)
        return;
    lg_client *c = sid_lookup(sid, sidlen);
    if (c == NULL) {
        R.ev_unknown++;
        return;
    }
    uint64_t seq, t;
    if (lg_find_u64(args, n, "s", &seq) != 0 || lg_find_u64(args, n, "t", &t) != 0) {
        R.proto_errors++;
        return;
    }
    if (seq >= c->ev_sent) {
        R.ev_bogus++;
        return;
    }
    size_t byte = (size_t)(seq >> 3);
    if (byte >= c->ev_bits_len) {
        size_t len = c->ev_bits_len ? c->ev_bits_len : 64;
        while (len <= byte)
            len *= 2; /* seq < LG_EV_MAX: at most 32 MiB */
        uint8_t *nb = realloc(c->ev_bits, len);
        if (nb == NULL) {
            lg_note_error("out of memory for the events bitmap");
            return;
        }
        memset(nb + c->ev_bits_len, 0, len - c->ev_bits_len);
        c->ev_bits = nb;
        c->ev_bits_len = (uint32_t)len;
    }
    uint8_t bit = (uint8_t)(1u << (seq & 7));
    if (c->ev_bits[byte] & bit) {
        R.ev_dups++;
        return;
    }
    c->ev_bits[byte] |= bit;
    c->ev_seen++;
    R.ev_seen++;
    uint64_t now = lg_now_us();
    lg_hist_add(&R.ev_lat, now > t ? now - t : 0);
    R.t_last_seen = (double)now / 1e6;
    /* saturation: the seen event frees its slot of the client's window at once */
    if (R.phase == P_MEASURE && R.cfg.rate <= 0 && c->ev_sent - c->ev_seen < (uint32_t)R.cfg.window &&
        (int)c->idx < ev_emitters)
        send_event(c);
}

/* node, floor: asks the server how many events its handler received (one request out at a time). */
static void ask_count(void)
{
    if (count_pending || R.ctl == NULL || R.ctl->state != ST_READY)
        return;
    char buf[48];
    int n = snprintf(buf, sizeof(buf), "42%u[\"count\"]", R.ctl->next_ack_id++);
    count_pending = 1;
    lg_client_send(R.ctl, buf, (size_t)n);
}

/* The control connection's answer 43<id>[COUNT]. */
static void on_count(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] >= '0' && p[i] <= '9')
        i++;
    uint64_t v = 0;
    if (i >= n || p[i] != '[' || i + 1 >= n || p[i + 1] < '0' || p[i + 1] > '9') {
        R.proto_errors++;
        count_pending = 0;
        return;
    }
    for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++)
        v = v * 10 + (uint64_t)(p[i] - '0');
    count_pending = 0;
    if (!count_base_known) {
        count_base = v; /* what the server counted before this run */
        count_base_known = 1;
        return;
    }
    v = v > count_base ? v - count_base : 0;
    if (v > R.ev_server_count) {
        R.ev_server_count = v;
        R.t_last_seen = lg_now();
    }
}

/* The events due this tick: at --rate, or (node, floor) up to --window x emitters not yet counted by the server.
 * With switchboard at saturation each client refills its own window as its events are seen (lg_on_stream_event). */
static void emit_events(double now)
{
    uint64_t budget;
    if (!R.cfg.pub_redis)
        ask_count();
    if (ev_emitters == 0)
        return;
    if (R.cfg.rate > 0) {
        uint64_t due = (uint64_t)((now - t_measure) * R.cfg.rate) + 1;
        budget = due > R.ev_sent ? due - R.ev_sent : 0;
    } else if (!R.cfg.pub_redis) {
        uint64_t cap = (uint64_t)R.cfg.window * (uint64_t)ev_emitters, out = R.ev_sent - R.ev_server_count;
        budget = cap > out ? cap - out : 0;
    } else {
        return;
    }
    for (int idle = 0; budget > 0 && idle < ev_emitters;) {
        lg_client *c = &R.members[ev_rr];
        ev_rr = (ev_rr + 1) % (uint32_t)ev_emitters;
        if (c->state == ST_READY && c->ev_sent < LG_EV_MAX) {
            send_event(c);
            budget--;
            idle = 0;
        } else {
            idle++;
        }
    }
}

/* ---------- publishing ---------- */

static void publish_raw(const char *payload, int plen)
{
    char buf[sizeof(padding) + 512];
    int n;
    if (R.cfg.rest_key || R.cfg.pub_redis) {
        /* The same message either way: the body of POST /v1/emit is the bus entry's msg. */
        n = snprintf(buf, sizeof(buf), "{\"event\":\"m\",\"args\":[%.*s],\"rooms\":[\"%s\"]}", plen, payload,
                     R.cfg.room);
        if (n <= 0 || (size_t)n >= sizeof(buf))
            return;
        if (R.cfg.rest_key) {
            int measured = R.phase == P_MEASURE;
            if (lg_rest_publish(buf, (size_t)n, measured) != 0 && measured)
                R.rest_err++;
        } else if (lg_backend_publish(buf, (size_t)n) != 0) {
            R.redis_errors++;
        }
    } else {
        n = snprintf(buf, sizeof(buf), "42[\"bcast\",\"%s\",%.*s]", R.cfg.room, plen, payload);
        if (n > 0 && (size_t)n < sizeof(buf))
            lg_client_send(R.ctl, buf, (size_t)n);
    }
}

static void publish_msg(void)
{
    char pl[sizeof(padding) + 96];
    uint32_t seq = R.sent;
    double now = lg_now();
    int n = snprintf(pl, sizeof(pl), "{\"s\":%u,\"t\":%llu,\"p\":\"%s\"}", seq, (unsigned long long)lg_now_us(),
                     padding);
    send_time[seq] = now;
    if (R.sent == 0)
        R.t_first_send = now;
    R.sent++;
    R.t_last_send = now;
    publish_raw(pl, n);
}

static void publish_barrier(void)
{
    char pl[64];
    int n = snprintf(pl, sizeof(pl), "{\"b\":%u}", R.barrier_no++);
    publish_raw(pl, n);
    t_barrier_sent = lg_now();
}

/* ---------- phases ---------- */

static void set_phase(int p)
{
    R.phase = p;
    t_phase = lg_now();
}

static void start_member(int i)
{
    lg_client *c = &R.members[i];
    c->role = ROLE_MEMBER;
    c->idx = (uint32_t)i;
    c->polling = (uint8_t)((i % 100) < R.cfg.polling_pct);
    R.started++;
    R.pending++;
    if (R.t_first_start == 0)
        R.t_first_start = lg_now();
    if (lg_client_start(c, i % R.cfg.nsrc) != 0) {
        c->state = ST_CLOSED;
        R.pending--;
        R.failed++;
    }
}

static void start_churner(void)
{
    lg_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->role = ROLE_CHURN;
    c->idx = (uint32_t)churn_serial++;
    c->polling = (uint8_t)((c->idx % 100) < (uint32_t)R.cfg.polling_pct);
    c->t_die = lg_now() + R.cfg.churn_life;
    R.churn_started++;
    if (lg_client_start(c, (int)(c->idx % (uint32_t)R.cfg.nsrc)) != 0) {
        c->state = ST_CLOSED;
        R.churn_failed++;
    }
    c->next = R.churn_live;
    R.churn_live = c;
}

/* Closes churners whose time is up, and moves closed ones to the dead list (freed one tick later: a closed
 * polling client may still be referenced by a request callback of this iteration). */
static void churn_sweep(int close_all)
{
    double now = lg_now();
    lg_client **pp = &R.churn_live;
    while (*pp) {
        lg_client *c = *pp;
        if (c->state != ST_CLOSED && (close_all || now >= c->t_die)) {
            lg_client_close(c, 1);
            R.churn_closed++;
        }
        if (c->state == ST_CLOSED) {
            *pp = c->next;
            c->next = R.churn_dead;
            R.churn_dead = c;
        } else {
            pp = &c->next;
        }
    }
}

static int alloc_tracking(void)
{
    size_t m = (size_t)R.cfg.messages;
    R.seen_row = (m + 7) / 8;
    if ((double)R.seen_row * R.cfg.clients > 1024.0 * 1024 * 1024) {
        fprintf(stderr, "sbload: clients x messages too large to track (cap 8G deliveries)\n");
        return -1;
    }
    R.seen = calloc((size_t)R.cfg.clients, R.seen_row ? R.seen_row : 1);
    R.recv_count = calloc(m ? m : 1, sizeof(uint32_t));
    send_time = calloc(m ? m : 1, sizeof(double));
    return R.seen && R.recv_count && send_time ? 0 : -1;
}

static void begin_measure(void)
{
    measured_members = R.ready - (int)members_lost;
    lg_snap_take(&snap_a, R.cfg.server_pid, R.cfg.redis_pid);
    set_phase(P_MEASURE);
    if (scenario == SC_ACKS) {
        int n = R.cfg.ack_clients > 0 && R.cfg.ack_clients < R.cfg.clients ? R.cfg.ack_clients : R.cfg.clients;
        if (R.cfg.pub_redis && lg_backend_start_acker() != 0)
            fprintf(stderr, "sbload: cannot start the acking backend: %s\n", R.last_error);
        for (int i = 0; i < n; i++)
            if (R.members[i].state == ST_READY)
                for (int k = 0; k < R.cfg.inflight; k++)
                    send_emit(&R.members[i]);
    }
    if (scenario == SC_EVENTS) {
        t_measure = t_phase;
        R.t_last_seen = t_phase;
        ev_emitters = R.cfg.ack_clients > 0 && R.cfg.ack_clients < R.cfg.clients ? R.cfg.ack_clients : R.cfg.clients;
        if (R.cfg.pub_redis) {
            if (build_sid_table() != 0 || lg_backend_start_acker() != 0)
                fprintf(stderr, "sbload: cannot start the events reader: %s\n", R.last_error);
            if (R.cfg.rate <= 0)
                for (int i = 0; i < ev_emitters; i++)
                    for (int k = 0; k < R.cfg.window; k++)
                        send_event(&R.members[i]);
        }
        emit_events(t_phase);
    }
}

static void finish(void)
{
    if (R.phase != P_DONE) {
        set_phase(P_DONE);
        event_base_loopbreak(R.base);
    }
}

static void end_connect_phase(void)
{
    /* Clients still handshaking at the connect deadline count as failed. */
    for (int i = 0; i < R.started; i++) {
        lg_client *c = &R.members[i];
        if (c->state != ST_READY && c->state != ST_CLOSED) {
            lg_client_close(c, 1);
            R.pending--;
            R.failed++;
        }
    }
    if (R.t_last_ready == 0)
        R.t_last_ready = lg_now();
    if (scenario == SC_IDLE) {
        lg_snap_take(&snap_b, R.cfg.server_pid, R.cfg.redis_pid);
        set_phase(P_HOLD);
    } else if (scenario == SC_ACKS || scenario == SC_EVENTS) {
        begin_measure();
    } else if (R.cfg.pub_redis) {
        set_phase(P_JOIN);
    } else {
        set_phase(P_BARRIER);
        publish_barrier();
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    double now = lg_now();
    /* free churners closed before the previous tick */
    while (dead_old) {
        lg_client *n = dead_old->next;
        free(dead_old);
        dead_old = n;
    }
    dead_old = R.churn_dead;
    R.churn_dead = NULL;

    if (now - R.t0 > R.cfg.timeout) {
        timed_out = 1;
        if (R.phase == P_MEASURE || R.phase == P_DRAIN)
            lg_snap_take(&snap_b, R.cfg.server_pid, R.cfg.redis_pid);
        finish();
        return;
    }
    if (R.join_len)
        flush_joins();

    switch (R.phase) {
    case P_CTL:
        if (ctl_ready) {
            set_phase(P_CONNECT);
            if (R.cfg.redis_pid > 0 || R.cfg.pub_redis)
                redis_mem_before = R.cfg.pub_redis ? lg_backend_used_memory() : -1;
            rss_before = lg_proc_rss_kib(R.cfg.server_pid);
            lg_snap_take(&snap_a, R.cfg.server_pid, R.cfg.redis_pid);
        } else if (now - t_phase > R.cfg.connect_timeout) {
            fprintf(stderr, "sbload: control connection not ready in time: %s\n", R.last_error);
            finish();
        }
        return;
    case P_CONNECT: {
        if (R.started < R.cfg.clients) {
            long allowed = R.cfg.clients - R.started;
            if (R.cfg.connect_rate > 0) {
                long due = (long)((now - t_phase) * R.cfg.connect_rate) + 1 - R.started;
                if (due < allowed)
                    allowed = due;
            }
            if (R.cfg.concurrency - R.pending < allowed)
                allowed = R.cfg.concurrency - R.pending;
            for (long k = 0; k < allowed; k++)
                start_member(R.started);
        }
        if ((R.started == R.cfg.clients && R.pending == 0) || now - t_phase > R.cfg.connect_timeout)
            end_connect_phase();
        return;
    }
    case P_JOIN:
        /* Joins go out with every tick; the barrier shows when they took effect. */
        set_phase(P_BARRIER);
        publish_barrier();
        return;
    case P_BARRIER:
        if (R.barrier_members >= R.ready - (int)members_lost) {
            begin_measure();
        } else if (now - t_phase > R.cfg.connect_timeout) {
            lg_note_error("barrier: %d of %d members in the room", R.barrier_members, R.ready - (int)members_lost);
            begin_measure();
        } else if (now - t_barrier_sent > 0.25) {
            publish_barrier();
        }
        return;
    case P_HOLD:
        if (now - t_phase >= R.cfg.idle_hold) {
            lg_snap_take(&snap_hold, R.cfg.server_pid, R.cfg.redis_pid);
            if (R.cfg.pub_redis)
                redis_mem_after = lg_backend_used_memory();
            finish();
        }
        return;
    case P_MEASURE:
        if (scenario == SC_EVENTS) {
            if (now - t_phase >= R.cfg.duration)
                set_phase(P_DRAIN);
            else
                emit_events(now);
            return;
        }
        if (scenario == SC_ACKS) {
            if (now - t_phase >= R.cfg.duration) {
                lg_snap_take(&snap_b, R.cfg.server_pid, R.cfg.redis_pid);
                set_phase(P_DRAIN);
            }
            return;
        }
        if (scenario == SC_CHURN) {
            double el = now - t_phase;
            uint64_t due = (uint64_t)(el * R.cfg.churn_rate);
            while (R.churn_started < due)
                start_churner();
            churn_sweep(0);
        }
        if (R.cfg.rate > 0) {
            uint64_t due = (uint64_t)((now - t_phase) * R.cfg.rate) + 1;
            if (due > (uint64_t)R.cfg.messages)
                due = (uint64_t)R.cfg.messages;
            while (R.sent < due)
                publish_msg();
        } else {
            while (R.window_base < R.sent &&
                   (R.recv_count[R.window_base] >= (uint32_t)(measured_members - (int)members_lost) ||
                    now - send_time[R.window_base] > R.cfg.drain))
                R.window_base++;
            while (R.sent < (uint32_t)R.cfg.messages && R.sent - R.window_base < (uint32_t)R.cfg.window)
                publish_msg();
        }
        if (R.sent >= (uint32_t)R.cfg.messages)
            set_phase(P_DRAIN);
        return;
    case P_DRAIN:
        if (scenario == SC_EVENTS) {
            /* the server's CPU is read once every event has arrived, so that all of their work is counted */
            uint64_t got = R.cfg.pub_redis ? R.ev_seen : R.ev_server_count;
            if (!R.cfg.pub_redis)
                ask_count();
            if (got >= R.ev_sent || now - t_phase > R.cfg.drain) {
                lg_snap_take(&snap_b, R.cfg.server_pid, R.cfg.redis_pid);
                finish();
            }
            return;
        }
        if (scenario == SC_ACKS) {
            uint64_t out = R.acks_sent - R.acks_ok - R.acks_err;
            if (out == 0 || now - t_phase > R.cfg.drain)
                finish();
            return;
        }
        if (scenario == SC_CHURN)
            churn_sweep(0);
        /* A 202 can come after the bus already delivered its message: wait for the answers too. */
        uint64_t rest_out = R.rest_sent - R.rest_ok - R.rest_err;
        if ((R.uniq >= (uint64_t)R.cfg.messages * (uint64_t)(measured_members - (int)members_lost) && rest_out == 0) ||
            now - t_phase > R.cfg.drain) {
            lg_snap_take(&snap_b, R.cfg.server_pid, R.cfg.redis_pid);
            finish();
        }
        return;
    default:
        return;
    }
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    interrupted = 1;
    if (R.phase == P_MEASURE || R.phase == P_DRAIN)
        lg_snap_take(&snap_b, R.cfg.server_pid, R.cfg.redis_pid);
    finish();
}

/* ---------- output ---------- */

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

static void hist_json(FILE *f, const char *name, const lg_hist *h)
{
    fprintf(f, ",\"%s\":{\"n\":%llu,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f,\"mean\":%.3f}",
            name, (unsigned long long)h->count, ms(lg_hist_quantile(h, 0.5)), ms(lg_hist_quantile(h, 0.9)),
            ms(lg_hist_quantile(h, 0.99)), ms(lg_hist_quantile(h, 0.999)), ms(h->max),
            h->count ? h->sum / (double)h->count / 1000.0 : 0.0);
}

static void per_unit_json(FILE *f, const char *name, double units)
{
    double su, ss, rt;
    lg_snap_server_cpu(&snap_a, &snap_b, &su, &ss, &rt);
    if (units <= 0 || su < 0) {
        fprintf(f, ",\"%s\":null", name);
        return;
    }
    fprintf(f, ",\"%s\":{\"user\":%.3f,\"sys\":%.3f,\"total\":%.3f,\"redis\":%.3f}", name, su * 1e6 / units,
            ss * 1e6 / units, (su + ss) * 1e6 / units, rt >= 0 ? rt * 1e6 / units : -1.0);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if ((unsigned char)*s < 0x20)
            continue;
        fputc(*s, f);
    }
    fputc('"', f);
}

static void report(void)
{
    static const char *names[] = {"idle", "broadcast", "acks", "events", "churn"};
    FILE *f = stdout;
    double conn_span = R.t_last_ready - R.t_first_start;
    fprintf(f, "{\"scenario\":\"%s\",\"server\":", names[scenario]);
    json_str(f, R.cfg.label);
    fprintf(f, ",\"clients\":%d,\"polling_pct\":%d,\"sources\":%d,\"auth\":\"%s\",\"ready\":%d,\"failed\":%d",
            R.cfg.clients, R.cfg.polling_pct, R.cfg.nsrc,
            R.cfg.ntokens ? "token-file"
            : R.cfg.token ? "token"
                          : "none",
            R.ready, R.failed);
    fprintf(f, ",\"connects_per_s\":%.1f", conn_span > 0 ? R.ready / conn_span : 0.0);
    hist_json(f, "connect_ms", &R.connect_hist);
    double measured = 0;
    if (scenario == SC_IDLE) {
        double span = snap_b.wall - snap_a.wall;
        (void)span;
        int64_t rss_after = snap_hold.srv_rss_kib;
        fprintf(f, ",\"rss_kib_before\":%lld,\"rss_kib_after\":%lld", (long long)rss_before, (long long)rss_after);
        if (rss_before >= 0 && rss_after >= 0 && R.ready > 0)
            fprintf(f, ",\"rss_kib_per_conn\":%.2f", (double)(rss_after - rss_before) / R.ready);
        else
            fprintf(f, ",\"rss_kib_per_conn\":null");
        if (redis_mem_before >= 0 && redis_mem_after >= 0 && R.ready > 0)
            fprintf(f, ",\"redis_bytes_per_conn\":%.1f", (double)(redis_mem_after - redis_mem_before) / R.ready);
        else
            fprintf(f, ",\"redis_bytes_per_conn\":null");
        per_unit_json(f, "server_us_per_connect", R.ready);
        measured = R.ready;
    } else if (scenario == SC_BROADCAST || scenario == SC_CHURN) {
        uint64_t expected = (uint64_t)R.sent * (uint64_t)measured_members;
        double span = R.t_last_delivery - R.t_first_send;
        fprintf(f, ",\"messages\":%d,\"rate\":%.2f,\"window\":%d,\"payload\":%d,\"members\":%d,\"sent\":%u",
                R.cfg.messages, R.cfg.rate, R.cfg.rate > 0 ? 0 : R.cfg.window, R.cfg.payload, measured_members, R.sent);
        fprintf(f, ",\"expected\":%llu,\"delivered\":%llu,\"missing\":%llu,\"duplicates\":%llu,\"bogus\":%llu",
                (unsigned long long)expected, (unsigned long long)R.uniq,
                (unsigned long long)(expected > R.uniq ? expected - R.uniq : 0), (unsigned long long)R.dups,
                (unsigned long long)R.bogus);
        fprintf(f, ",\"deliveries_per_s\":%.1f", span > 0 ? (double)R.uniq / span : 0.0);
        hist_json(f, "lat_ms", &R.lat);
        per_unit_json(f, "server_us_per_delivery", (double)(R.uniq + R.churn_deliveries));
        measured = (double)R.uniq;
        if (R.cfg.rest_key) {
            fprintf(f, ",\"rest\":{\"conns\":%d,\"requests\":%llu,\"ok\":%llu,\"errors\":%llu,\"emits_per_s\":%.1f}",
                    R.cfg.rest_conns, (unsigned long long)R.rest_sent, (unsigned long long)R.rest_ok,
                    (unsigned long long)R.rest_err, span > 0 ? (double)R.sent / span : 0.0);
            hist_json(f, "rest_ms", &R.rest_lat);
            per_unit_json(f, "server_us_per_emit", (double)R.sent);
        }
        if (scenario == SC_CHURN) {
            double d = R.cfg.duration;
            fprintf(f,
                    ",\"churn\":{\"rate\":%.1f,\"life_s\":%.2f,\"started\":%llu,\"ready\":%llu,\"failed\":%llu,"
                    "\"closed\":%llu,\"connects_per_s\":%.1f,\"deliveries\":%llu}",
                    R.cfg.churn_rate, R.cfg.churn_life, (unsigned long long)R.churn_started,
                    (unsigned long long)R.churn_ready, (unsigned long long)R.churn_failed,
                    (unsigned long long)R.churn_closed, d > 0 ? (double)R.churn_ready / d : 0.0,
                    (unsigned long long)R.churn_deliveries);
        }
    } else if (scenario == SC_EVENTS) {
        int by_stream = R.cfg.pub_redis;
        uint64_t got = by_stream ? R.ev_seen : R.ev_server_count;
        double span = R.t_last_seen - t_measure;
        int short_clients = 0; /* clients with events never seen */
        for (int i = 0; by_stream && i < ev_emitters; i++)
            short_clients += R.members[i].ev_seen < R.members[i].ev_sent;
        fprintf(f, ",\"rate\":%.2f,\"window\":%d,\"emitters\":%d,\"duration_s\":%.2f,\"counted_by\":\"%s\"", R.cfg.rate,
                R.cfg.rate > 0 ? 0 : R.cfg.window, ev_emitters, R.cfg.duration, by_stream ? "stream" : "server");
        fprintf(f, ",\"events_sent\":%llu,\"events_seen\":%llu,\"events_missing\":%llu", (unsigned long long)R.ev_sent,
                (unsigned long long)got, (unsigned long long)(R.ev_sent > got ? R.ev_sent - got : 0));
        if (by_stream)
            fprintf(f,
                    ",\"events_duplicates\":%llu,\"events_bogus\":%llu,\"events_unknown_socket\":%llu,"
                    "\"clients_missing\":%d",
                    (unsigned long long)R.ev_dups, (unsigned long long)R.ev_bogus, (unsigned long long)R.ev_unknown,
                    short_clients);
        else
            fprintf(f, ",\"events_duplicates\":null,\"events_bogus\":null,\"events_unknown_socket\":null,"
                       "\"clients_missing\":null");
        fprintf(f, ",\"events_per_s\":%.1f", span > 0 ? (double)got / span : 0.0);
        hist_json(f, "stream_ms", &R.ev_lat);
        per_unit_json(f, "server_us_per_event", (double)got);
        measured = (double)got;
    } else {
        double span = snap_b.wall - snap_a.wall;
        uint64_t out = R.acks_sent - R.acks_ok - R.acks_err;
        fprintf(f, ",\"inflight\":%d,\"duration_s\":%.2f,\"acks_sent\":%llu,\"acks_ok\":%llu,\"acks_err\":%llu",
                R.cfg.inflight, R.cfg.duration, (unsigned long long)R.acks_sent, (unsigned long long)R.acks_ok,
                (unsigned long long)R.acks_err);
        fprintf(f, ",\"acks_unanswered\":%llu,\"acks_per_s\":%.1f", (unsigned long long)out,
                span > 0 ? (double)R.acks_measured / span : 0.0);
        hist_json(f, "ack_ms", &R.ack_lat);
        per_unit_json(f, "server_us_per_ack", (double)R.acks_measured);
        measured = (double)R.acks_measured;
        if (R.cfg.pub_redis)
            fprintf(f, ",\"backend\":{\"events\":%llu,\"acks\":%llu}", (unsigned long long)R.backend_events,
                    (unsigned long long)R.backend_acks);
    }
    (void)measured;
    fputc(',', f);
    lg_snap_json(f, &snap_a, &snap_b);
    fprintf(f,
            ",\"errors\":{\"server_closed\":%llu,\"protocol\":%llu,\"connect\":%llu,\"redis\":%llu,"
            "\"other_events\":%llu},\"pings\":%llu,\"timed_out\":%s,\"interrupted\":%s,\"last_error\":",
            (unsigned long long)R.server_closed, (unsigned long long)R.proto_errors,
            (unsigned long long)R.connect_errors, (unsigned long long)R.redis_errors, (unsigned long long)other_events,
            (unsigned long long)R.pings, timed_out ? "true" : "false", interrupted ? "true" : "false");
    json_str(f, R.last_error);
    fputs("}\n", f);
    fflush(f);

    if (R.cfg.quiet)
        return;
    double su, ss, rt;
    lg_snap_server_cpu(&snap_a, &snap_b, &su, &ss, &rt);
    fprintf(stderr, "sbload %s [%s]: %d/%d clients ready (%d failed), %.0f connects/s", names[scenario], R.cfg.label,
            R.ready, R.cfg.clients, R.failed, conn_span > 0 ? R.ready / conn_span : 0.0);
    if (scenario == SC_BROADCAST || scenario == SC_CHURN)
        fprintf(stderr, "; %llu/%llu delivered, %llu dup, p50 %.2f ms p99 %.2f ms max %.2f ms",
                (unsigned long long)R.uniq, (unsigned long long)R.sent * (unsigned long long)measured_members,
                (unsigned long long)R.dups, ms(lg_hist_quantile(&R.lat, 0.5)), ms(lg_hist_quantile(&R.lat, 0.99)),
                ms(R.lat.max));
    if (scenario == SC_ACKS)
        fprintf(stderr, "; %llu acks (%llu errors), p99 %.2f ms", (unsigned long long)R.acks_ok,
                (unsigned long long)R.acks_err, ms(lg_hist_quantile(&R.ack_lat, 0.99)));
    if (scenario == SC_EVENTS) {
        uint64_t got = R.cfg.pub_redis ? R.ev_seen : R.ev_server_count;
        double span = R.t_last_seen - t_measure, units = got ? (double)got : 1;
        fprintf(stderr, "; %llu/%llu events seen (%s), %llu dup, %.0f events/s, server %.2f us user %.2f us sys/event",
                (unsigned long long)got, (unsigned long long)R.ev_sent, R.cfg.pub_redis ? "stream" : "server count",
                (unsigned long long)R.ev_dups, span > 0 ? (double)got / span : 0.0, su * 1e6 / units, ss * 1e6 / units);
        if (rt >= 0)
            fprintf(stderr, ", redis %.2f us/event", rt * 1e6 / units);
    }
    fprintf(stderr, "; server cpu %.2fs user %.2fs sys%s%s\n", su, ss, R.last_error[0] ? "; last error: " : "",
            R.last_error);
}

/* ---------- options ---------- */

/* Splits *cur in place at `sep`: returns the next field (NUL-terminated) or NULL at the end. */
static char *next_field(char **cur, char sep)
{
    char *s = *cur;
    if (s == NULL || *s == '\0')
        return NULL;
    char *e = strchr(s, sep);
    if (e) {
        *e = '\0';
        *cur = e + 1;
    } else {
        *cur = NULL;
    }
    return s;
}

/* Reads --token-file: one token per line, kept for the whole run (lg_cfg.tokens points into the buffer). */
static int load_tokens(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "sbload: %s: %s\n", path, strerror(errno));
        return -1;
    }
    static char *buf;
    size_t cap = 1u << 20, len = 0;
    buf = malloc(cap + 1);
    while (buf != NULL) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
        if (len == cap) {
            if (cap >= (256u << 20)) {
                fprintf(stderr, "sbload: %s is over 256 MiB\n", path);
                fclose(f);
                return -1;
            }
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
    }
    fclose(f);
    if (buf == NULL)
        return -1;
    buf[len] = '\0';
    int n = 0;
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '\n')
            n++;
    R.cfg.tokens = calloc((size_t)n + 1, sizeof(char *));
    if (R.cfg.tokens == NULL)
        return -1;
    char *cur = buf;
    for (char *line; (line = next_field(&cur, '\n')) != NULL;) {
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r')
            line[l - 1] = '\0';
        if (*line)
            R.cfg.tokens[R.cfg.ntokens++] = line;
    }
    if (R.cfg.ntokens == 0) {
        fprintf(stderr, "sbload: %s holds no token\n", path);
        return -1;
    }
    return 0;
}

static void usage(FILE *f)
{
    fputs("usage: sbload idle|broadcast|acks|events|churn --url http://127.0.0.1:PORT [options]\n"
          "  --label NAME            server name in the result (default: the url)\n"
          "  --clients N             clients (members of the room) (default 100)\n"
          "  --sources A[-B|,C...]   127.0.0.x source addresses, round robin (default 127.0.0.1)\n"
          "  --connect-rate R        connects/s, 0 = limited only by --concurrency (default 0)\n"
          "  --concurrency N         handshakes in flight at most (default 200)\n"
          "  --polling-pct P         share of clients on HTTP long-polling (default 0)\n"
          "  --room NAME             room to join (default bench)\n"
          "  --token JWT             sent as CONNECT auth {\"token\":...}\n"
          "  --token-file FILE       one token per line; client i sends line i mod lines\n"
          "  --redis redis://H:P     switchboard mode: backend via Redis streams\n"
          "  --prefix P              switchboard's key prefix (default sb:)\n"
          "  --server-pid PID        server process to account (CPU, RSS)\n"
          "  --redis-pid PID         redis-server to account (CPU)\n"
          "  --rate R                broadcasts/s; 0 = saturation with --window in flight (default 10)\n"
          "                          events: events/s in total (default 0: --window unseen events per client)\n"
          "  --messages M            broadcasts (default rate x duration)\n"
          "  --window W              saturation: messages in flight; events: per client (default 4)\n"
          "  --payload BYTES         padding in each broadcast (default 32)\n"
          "  --duration S            acks/events/churn measuring time; broadcast default for M (default 10)\n"
          "  --drain S               wait for late deliveries/acks (default 5)\n"
          "  --inflight K            acks: emits in flight per client (default 1)\n"
          "  --ack-clients N         acks, events: how many clients emit (default all)\n"
          "  --churn-rate R          churn: extra clients connecting per second (default 50)\n"
          "  --churn-life S          churn: how long each stays (default 1)\n"
          "  --idle-hold S           idle: settle time before reading RSS (default 2)\n"
          "  --connect-timeout S     connect/barrier phase bound (default 60)\n"
          "  --timeout S             hard bound of the whole run (default 300)\n"
          "  --join-batch N          switchboard: sockets per XADD op join (default 500)\n"
          "  --rest-key KEY          broadcast, churn: publish with POST /v1/emit (Authorization: Bearer KEY)\n"
          "  --rest-conns N          keep-alive connections for those requests (default 8)\n"
          "  --quiet                 no summary on stderr\n",
          f);
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int loopback(struct in_addr a)
{
    return (ntohl(a.s_addr) >> 24) == 127;
}

static int parse_sources(const char *s)
{
    char buf[1024];
    if (strlen(s) >= sizeof(buf))
        return -1;
    memcpy(buf, s, strlen(s) + 1);
    R.cfg.nsrc = 0;
    char *cur = buf;
    for (char *tok; (tok = next_field(&cur, ',')) != NULL;) {
        char *dash = strchr(tok, '-');
        struct in_addr a, b;
        if (dash)
            *dash = '\0';
        if (inet_pton(AF_INET, tok, &a) != 1)
            return -1;
        b = a;
        if (dash && inet_pton(AF_INET, dash + 1, &b) != 1)
            return -1;
        if (!loopback(a) || !loopback(b) || ntohl(b.s_addr) < ntohl(a.s_addr))
            return -1;
        for (uint32_t x = ntohl(a.s_addr); x <= ntohl(b.s_addr); x++) {
            if (R.cfg.nsrc >= LG_MAX_SOURCES)
                return -1;
            R.cfg.src[R.cfg.nsrc++].s_addr = htonl(x);
        }
    }
    return R.cfg.nsrc > 0 ? 0 : -1;
}

/* host:port after an optional scheme; only 127.0.0.0/8 literal addresses */
static int parse_hostport(const char *s, const char *scheme, char *host, size_t hcap, int *port)
{
    size_t sl = strlen(scheme);
    if (strncmp(s, scheme, sl) == 0)
        s += sl;
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= hcap)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || (*end != '\0' && *end != '/') || p <= 0 || p > 65535)
        return -1;
    *port = (int)p;
    if (strcmp(host, "localhost") == 0)
        snprintf(host, hcap, "127.0.0.1");
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) != 1 || !loopback(a))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    lg_cfg *c = &R.cfg;
    c->clients = 100;
    c->concurrency = 200;
    c->room = "bench";
    c->prefix = "sb:";
    c->rate = 10;
    c->window = 4;
    c->payload = 32;
    c->duration = 10;
    c->drain = 5;
    c->inflight = 1;
    c->churn_rate = 50;
    c->churn_life = 1;
    c->idle_hold = 2;
    c->connect_timeout = 60;
    c->timeout = 300;
    c->join_batch = 500;
    c->rest_conns = 8;
    const char *url = NULL, *redis = NULL, *sources = "127.0.0.1", *token_file = NULL;
    static const struct option opts[] = {
        {"url", 1, 0, 'u'},
        {"label", 1, 0, 'L'},
        {"clients", 1, 0, 'n'},
        {"sources", 1, 0, 'S'},
        {"connect-rate", 1, 0, 'C'},
        {"concurrency", 1, 0, 'K'},
        {"polling-pct", 1, 0, 'P'},
        {"room", 1, 0, 'r'},
        {"token", 1, 0, 'T'},
        {"token-file", 1, 0, 'F'},
        {"redis", 1, 0, 'R'},
        {"prefix", 1, 0, 'x'},
        {"server-pid", 1, 0, 'p'},
        {"redis-pid", 1, 0, 'q'},
        {"rate", 1, 0, 'a'},
        {"messages", 1, 0, 'm'},
        {"window", 1, 0, 'w'},
        {"payload", 1, 0, 'y'},
        {"duration", 1, 0, 'd'},
        {"drain", 1, 0, 'D'},
        {"inflight", 1, 0, 'i'},
        {"ack-clients", 1, 0, 'A'},
        {"churn-rate", 1, 0, 'c'},
        {"churn-life", 1, 0, 'l'},
        {"idle-hold", 1, 0, 'H'},
        {"connect-timeout", 1, 0, 'O'},
        {"timeout", 1, 0, 't'},
        {"join-batch", 1, 0, 'j'},
        {"rest-key", 1, 0, 'k'},
        {"rest-conns", 1, 0, 'N'},
        {"quiet", 0, 0, 'Q'},
        {"help", 0, 0, 'h'},
        {0, 0, 0, 0},
    };
    if (argc < 2 || argv[1][0] == '-') {
        usage(argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
        return argc >= 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    c->scenario = argv[1];
    if (strcmp(c->scenario, "idle") == 0)
        scenario = SC_IDLE;
    else if (strcmp(c->scenario, "broadcast") == 0)
        scenario = SC_BROADCAST;
    else if (strcmp(c->scenario, "acks") == 0)
        scenario = SC_ACKS;
    else if (strcmp(c->scenario, "events") == 0)
        scenario = SC_EVENTS;
    else if (strcmp(c->scenario, "churn") == 0)
        scenario = SC_CHURN;
    else {
        usage(stderr);
        return 2;
    }
    optind = 2;
    int o;
    double v;
    int messages_given = 0, rate_given = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int bad = 0;
        switch (o) {
        case 'u':
            url = optarg;
            break;
        case 'L':
            c->label = optarg;
            break;
        case 'S':
            sources = optarg;
            break;
        case 'r':
            c->room = optarg;
            break;
        case 'T':
            c->token = optarg;
            break;
        case 'F':
            token_file = optarg;
            break;
        case 'R':
            redis = optarg;
            break;
        case 'x':
            c->prefix = optarg;
            break;
        case 'Q':
            c->quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'n':
            bad = parse_num(optarg, 1, 1e6, &v);
            c->clients = (int)v;
            break;
        case 'C':
            bad = parse_num(optarg, 0, 1e7, &v);
            c->connect_rate = v;
            break;
        case 'K':
            bad = parse_num(optarg, 1, 1e6, &v);
            c->concurrency = (int)v;
            break;
        case 'P':
            bad = parse_num(optarg, 0, 100, &v);
            c->polling_pct = (int)v;
            break;
        case 'p':
            bad = parse_num(optarg, 1, 1e9, &v);
            c->server_pid = (int)v;
            break;
        case 'q':
            bad = parse_num(optarg, 1, 1e9, &v);
            c->redis_pid = (int)v;
            break;
        case 'a':
            bad = parse_num(optarg, 0, 1e7, &v);
            c->rate = v;
            rate_given = 1;
            break;
        case 'm':
            bad = parse_num(optarg, 1, 1e8, &v);
            c->messages = (int)v;
            messages_given = 1;
            break;
        case 'w':
            bad = parse_num(optarg, 1, 1e6, &v);
            c->window = (int)v;
            break;
        case 'y':
            bad = parse_num(optarg, 0, (double)sizeof(padding) - 1, &v);
            c->payload = (int)v;
            break;
        case 'd':
            bad = parse_num(optarg, 0.1, 86400, &v);
            c->duration = v;
            break;
        case 'D':
            bad = parse_num(optarg, 0, 3600, &v);
            c->drain = v;
            break;
        case 'i':
            bad = parse_num(optarg, 1, 1e4, &v);
            c->inflight = (int)v;
            break;
        case 'A':
            bad = parse_num(optarg, 0, 1e6, &v);
            c->ack_clients = (int)v;
            break;
        case 'c':
            bad = parse_num(optarg, 0, 1e6, &v);
            c->churn_rate = v;
            break;
        case 'l':
            bad = parse_num(optarg, 0, 3600, &v);
            c->churn_life = v;
            break;
        case 'H':
            bad = parse_num(optarg, 0, 3600, &v);
            c->idle_hold = v;
            break;
        case 'O':
            bad = parse_num(optarg, 0.1, 3600, &v);
            c->connect_timeout = v;
            break;
        case 't':
            bad = parse_num(optarg, 1, 86400, &v);
            c->timeout = v;
            break;
        case 'j':
            bad = parse_num(optarg, 1, 100000, &v);
            c->join_batch = (int)v;
            break;
        case 'k':
            c->rest_key = optarg;
            break;
        case 'N':
            bad = parse_num(optarg, 1, 256, &v);
            c->rest_conns = (int)v;
            break;
        default:
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "sbload: bad value '%s' for %s\n", optarg, argv[optind - 1]);
            return 2;
        }
    }
    if (url == NULL || parse_hostport(url, "http://", c->host, sizeof(c->host), &c->port) != 0) {
        fprintf(stderr, "sbload: --url http://127.x.y.z:PORT is required (loopback only)\n");
        return 2;
    }
    if (parse_sources(sources) != 0) {
        fprintf(stderr, "sbload: bad --sources (127.0.0.0/8 addresses, at most %d)\n", LG_MAX_SOURCES);
        return 2;
    }
    if (redis) {
        if (parse_hostport(redis, "redis://", c->redis_host, sizeof(c->redis_host), &c->redis_port) != 0) {
            fprintf(stderr, "sbload: bad --redis (redis://127.x.y.z:PORT)\n");
            return 2;
        }
        c->pub_redis = 1;
    }
    if (c->rest_key && scenario != SC_BROADCAST && scenario != SC_CHURN) {
        fprintf(stderr, "sbload: --rest-key is for broadcast and churn\n");
        return 2;
    }
    if (token_file && load_tokens(token_file) != 0)
        return 2;
    if (!c->label)
        c->label = url;
    if (scenario == SC_EVENTS && !rate_given)
        c->rate = 0; /* events: saturation unless a rate is asked for */
    if (!messages_given)
        c->messages = c->rate > 0 ? (int)(c->rate * c->duration + 0.5) : 1000;
    if (scenario == SC_CHURN && c->rate <= 0) {
        fprintf(stderr, "sbload: churn needs --rate > 0\n");
        return 2;
    }
    if (scenario == SC_CHURN)
        c->messages = (int)(c->rate * c->duration + 0.5);
    if (c->messages < 1)
        c->messages = 1;
    memset(padding, 'x', (size_t)c->payload);
    padding[c->payload] = '\0';
    c->dst.sin_family = AF_INET;
    c->dst.sin_port = htons((uint16_t)c->port);
    inet_pton(AF_INET, c->host, &c->dst.sin_addr);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)c->clients * (c->polling_pct ? 3 : 1) + 64)
        fprintf(stderr, "sbload: warning: open files limit %llu is low for %d clients\n",
                (unsigned long long)rl.rlim_cur, c->clients);
    signal(SIGPIPE, SIG_IGN);

    struct event_config *ecfg = event_config_new();
    /* Timers must be precise (1 ms rate ticks) and the loop must not cache time across long batches. */
    event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    R.base = event_base_new_with_config(ecfg);
    event_config_free(ecfg);
    if (R.base == NULL || lg_hist_init(&R.connect_hist) || lg_hist_init(&R.lat) || lg_hist_init(&R.ack_lat) ||
        lg_hist_init(&R.ev_lat) || lg_hist_init(&R.rest_lat)) {
        fprintf(stderr, "sbload: out of memory\n");
        return 1;
    }
    R.members = calloc((size_t)c->clients, sizeof(lg_client));
    if (R.members == NULL ||
        (scenario != SC_IDLE && scenario != SC_ACKS && scenario != SC_EVENTS && alloc_tracking() != 0)) {
        fprintf(stderr, "sbload: out of memory\n");
        return 1;
    }
    for (int i = 0; i < c->clients; i++)
        R.members[i].fd = -1;
    if (c->pub_redis && lg_backend_open() != 0) {
        fprintf(stderr, "sbload: %s\n", R.last_error);
        return 1;
    }
    if (c->rest_key && lg_rest_open() != 0) {
        fprintf(stderr, "sbload: cannot set up the REST connections\n");
        return 1;
    }
    R.t0 = lg_now();
    set_phase(P_CTL);
    if (!c->pub_redis && scenario != SC_IDLE && scenario != SC_ACKS) {
        R.ctl = calloc(1, sizeof(lg_client));
        if (R.ctl == NULL) {
            fprintf(stderr, "sbload: out of memory\n");
            return 1;
        }
        R.ctl->role = ROLE_CTL;
        R.ctl->fd = -1;
        if (lg_client_start(R.ctl, 0) != 0) {
            fprintf(stderr, "sbload: control connection: %s\n", R.last_error);
            return 1;
        }
    } else {
        ctl_ready = 1;
    }
    struct timeval ms1 = {0, 1000};
    tick_ev = event_new(R.base, -1, EV_PERSIST, on_tick, NULL);
    event_add(tick_ev, &ms1);
    sig_ev = evsignal_new(R.base, SIGINT, on_signal, NULL);
    event_add(sig_ev, NULL);
    struct event *term_ev = evsignal_new(R.base, SIGTERM, on_signal, NULL);
    event_add(term_ev, NULL);

    event_base_dispatch(R.base);
    if (snap_b.wall == 0)
        lg_snap_take(&snap_b, c->server_pid, c->redis_pid);
    if (snap_a.wall == 0)
        snap_a = snap_b;
    if (scenario == SC_IDLE && snap_hold.wall == 0)
        lg_snap_take(&snap_hold, c->server_pid, c->redis_pid);
    report();

    for (int i = 0; i < c->clients; i++)
        lg_client_close(&R.members[i], 1);
    if (R.ctl)
        lg_client_close(R.ctl, 1);
    churn_sweep(1);
    if (c->pub_redis)
        lg_backend_close();
    if (c->rest_key)
        lg_rest_close();
    /* Let the close frames and the Redis QUIT leave before the process exits. */
    struct timeval short_tv = {0, 100000};
    event_base_loopexit(R.base, &short_tv);
    event_base_dispatch(R.base);
    event_free(tick_ev);
    event_free(sig_ev);
    event_free(term_ev);
    while (dead_old) {
        lg_client *n = dead_old->next;
        free(dead_old);
        dead_old = n;
    }
    while (R.churn_dead) {
        lg_client *n = R.churn_dead->next;
        free(R.churn_dead);
        R.churn_dead = n;
    }
    free(R.ctl);
    for (int i = 0; i < c->clients; i++)
        free(R.members[i].ev_bits);
    free(sid_tab);
    free(R.members);
    free(R.seen);
    free(R.recv_count);
    free(send_time);
    free(R.join_q);
    lg_hist_free(&R.connect_hist);
    lg_hist_free(&R.lat);
    lg_hist_free(&R.ack_lat);
    lg_hist_free(&R.ev_lat);
    event_base_free(R.base);
    return 0;
}
