/*
 * server.h — the process and its worker threads.
 *
 * One sb_server_t per process: read-only configuration, the node id, the
 * Redis address, and the workers. One sb_worker_t per thread: an h2o evloop,
 * its own SO_REUSEPORT listeners, its own Redis connections (commands and the
 * blocking bus reader), and every Engine.IO/Socket.IO connection it owns.
 * Workers share nothing but read-only config; the only cross-thread traffic is
 * sb_worker_post (used for long-polling requests that land on a thread other
 * than the one owning the session).
 *
 * Lifecycle: main() calls sb_server_init, sb_server_start (threads run),
 * waits for a signal, sb_server_stop, sb_server_free.
 */
#ifndef SWITCHBOARD_SERVER_H
#define SWITCHBOARD_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <h2o.h>
#include "switchboard/common.h"
#include "switchboard/config.h"
#include "switchboard/map.h"
#include "switchboard/metrics.h"
#include "switchboard/redis.h"
#include "switchboard/ws.h"

#define SB_NODE_ID_LEN 12
#define SB_SID_LEN 20
/* Longest wait for a client's answer to a server-sent event with an ack (REST ack_timeout_ms is capped to it). */
#define SB_SERVER_ACK_MAX_MS 60000

typedef struct sb_server sb_server_t;

/* What a drop, a rate limit and a REST answer are counted as (metric labels). */
enum { SB_DROP_QUEUE_FULL, SB_DROP_VOLATILE, SB_DROP_NOT_STORED, SB_DROP_WEBHOOK, SB_DROPS };
enum { SB_LIMIT_EVENTS, SB_LIMIT_CONNECTIONS, SB_LIMIT_API, SB_LIMIT_PUBLISH, SB_LIMITS };
#define SB_METRIC_REASONS 13 /* = SB_REASONS of session.h */

/* The series switchboard exports (registered once in sb_server_init; see docs/operations.md). */
typedef struct sb_server_metrics {
    sb_metrics_t *registry;
    sb_metric_t *connections[2]; /* by transport: 0 polling, 1 websocket */
    sb_metric_t *connects[2];
    sb_metric_t *sockets;
    sb_metric_t *disconnects[SB_METRIC_REASONS];
    sb_metric_t *events_in, *deliveries, *bus_entries, *bus_delivery;
    sb_metric_t *redis_seconds, *redis_errors, *redis_connected;
    sb_metric_t *webhook_ok, *webhook_failed, *webhook_rejected, *webhook_open;
    sb_metric_t *rate_limited[SB_LIMITS];
    sb_metric_t *dropped[SB_DROPS];
    sb_metric_t *loop_lag;
    sb_metric_t *rest[3]; /* 2xx, 4xx, 5xx */
    sb_metric_t *auth_failures;
    sb_metric_t *accept_paused;
    sb_metric_t *recoveries[3]; /* connection state recovery: recovered, refused (connected as new), failed */
    sb_metric_t *replayed;      /* bus entries replayed to recovering sockets */
    sb_metric_t *rebalance_closed;
    /* durable emits (CONTRACT section 6): inbox entries written, delivered to sockets, acked by clients, and
     * dropped by the inbox bounds (0 maxlen, 1 age) */
    sb_metric_t *durable_stored, *durable_delivered, *durable_acked, *inbox_dropped[2];
} sb_server_metrics_t;
typedef struct sb_worker sb_worker_t;

/* Per-thread counters (only the owner writes; readers may see stale values). */
typedef struct sb_worker_stats {
    atomic_ulong connections; /* open Engine.IO connections */
    atomic_ulong sockets;     /* connected Socket.IO sockets */
    atomic_ulong events_in;
    atomic_ulong events_out;
    atomic_ulong bus_entries;
    atomic_ulong dropped;
    atomic_ulong rate_limited;
    atomic_ulong auth_failures;
    atomic_ulong connects;                       /* Socket.IO sockets connected, cumulative */
    atomic_ulong deliveries;                     /* messages written to sockets */
    atomic_ulong disconnects[SB_METRIC_REASONS]; /* by sb_session_reason_index (SB_REASONS) */
} sb_worker_stats_t;

struct sb_worker {
    unsigned idx;
    sb_server_t *server;
    const sb_config_t *cfg;
    pthread_t tid;
    h2o_evloop_t *loop;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    void *tls_retired; /* the SSL_CTX replaced by the last reload (freed at the next one) */
    h2o_socket_t **listeners;
    size_t nlisteners;

    h2o_multithread_queue_t *queue;
    h2o_multithread_receiver_t receiver;

    sb_ws_ctx_t *ws;
    sb_redis_t *cmd; /* pipelined commands (FCALL, XADD) */
    sb_redis_t *bus; /* blocking XREAD of the bus */

    /* timeouts (h2o 2.2.5 timeouts have one duration each) */
    h2o_timeout_t ping_interval_to;
    h2o_timeout_t ping_timeout_to;
    h2o_timeout_t connect_to;
    h2o_timeout_t upgrade_to;
    h2o_timeout_t linger_to; /* 1 s: a client-closed polling session's racing GET */
    h2o_timeout_t ack_to;
    h2o_timeout_t server_ack_to; /* server-sent events waiting for the client's ack */
    h2o_timeout_t tick_to;       /* housekeeping every --heartbeat-interval */
    h2o_timeout_entry_t tick;
    uint64_t ticks;
    /* event-loop lag: a 100 ms timer measures how late it fires */
    h2o_timeout_t lag_to;
    h2o_timeout_entry_t lag_tick;
    uint64_t lag_expected;    /* mono ms the timer should fire at */
    atomic_ulong loop_lag_ms; /* the last second's worst lag */
    uint64_t lag_window_max, lag_window_start, lag_warned_at;
    h2o_timeout_entry_t accept_pause; /* listeners paused: out of file descriptors */
    uint64_t accept_warned_at;
    /* graceful drain */
    h2o_timeout_entry_t drain_tick;
    size_t drain_total, drain_closed, drain_step, drain_steps;
    /* rebalancing (rebalance.c): worker 0 starts a round every --rebalance-interval; each worker closes its
     * share of it over the round, every 100 ms */
    h2o_timeout_t rebalance_to;
    h2o_timeout_entry_t rebalance_round;
    h2o_timeout_t shed_to;
    h2o_timeout_entry_t shed_tick;
    uint64_t shed_total, shed_closed, shed_step, shed_steps;
    atomic_ulong shed_share; /* this round's closes for this worker, set by worker 0 before it posts shed_start */
    atomic_int functions_ok; /* Redis holds our version of the Functions library */

    /* borrowed-key maps (map.h): each key is the value's own sid, id or room key */
    sb_map_t conns;   /* Engine.IO sid -> sb_eio_conn */
    sb_map_t sockets; /* Socket.IO socket id -> sb_socket */
    sb_map_t rooms;   /* "<nsp>\0<room>" -> sb_room; room "" of a namespace = every socket of it */

    uint64_t emit_seq; /* dedupe marker for fan-out */
    /* connection state recovery: while a replayed bus entry is applied, it reaches this socket only (session.c) */
    void *replay_sock;
    void *backlog;              /* live bus entries kept while sockets of this worker replay (session.c) */
    h2o_timeout_t replay_to;    /* a replay waiting for this worker's bus reader to catch up with the client's offset */
    long conns_by_transport[2]; /* open Engine.IO connections: polling, websocket */

    /* bus reader state */
    char bus_last_id[48];
    char reply_key[600]; /* <prefix>{node:<node>}:replies:<idx>: answers to this worker's REST emit-with-ack */
    char reply_last_id[48];
    void *api;                        /* the REST API's per-worker state (api.c) */
    struct sb_webhooks *webhooks;     /* NULL when no --webhook is configured */
    struct sb_auth_cache *auth_cache; /* verified tokens (auth.h) */
    h2o_linklist_t token_sockets;     /* sockets with a token: the expiry sweep walks them */
    h2o_linklist_t admin_sockets;     /* dashboard sockets (/_admin) */
    int admin_pushing;
    h2o_timeout_t expiry_to;
    h2o_timeout_entry_t expiry_tick;
    uint64_t webhook_seq;
    int bus_reading;
    int bus_ready; /* last id known, reading */

    sb_worker_stats_t stats;
    atomic_int stop;
};

struct sb_server {
    sb_config_t *cfg;
    sb_redis_addr_t redis_addr;
    char redis_url[512];
    char node_id[SB_NODE_ID_LEN + 1];
    h2o_globalconf_t globalconf;
    sb_worker_t **workers;
    unsigned nworkers;
    int *listen_fds; /* one per (worker, listen address) */
    atomic_int draining;
    struct sb_auth *auth; /* JWT verifier, shared read-only (auth.h) */
    sb_server_metrics_t metrics;
    uint64_t started_at_ms;
    struct sb_rebalance *rebalance; /* the live nodes' connection counts; only worker 0 touches it (rebalance.c) */
};

/* Prepares the server: h2o configuration, handlers, node id, listeners.
 * Returns 0 or an SB_E* code with *why set. */
int sb_server_init(sb_server_t *s, sb_config_t *cfg, const char *redis_url, const char **why);
/* Starts one thread per worker. */
int sb_server_start(sb_server_t *s);
/* Loads --tls-cert/--tls-key again (SIGHUP) and hands the new context to every worker; new connections use
 * it, open ones keep theirs. On failure the old one stays. 0 or SB_EINVAL with *why. */
int sb_server_reload_tls(sb_server_t *s, const char **why);
/* Starts the graceful drain (SIGTERM): readiness fails at once, new handshakes are refused, and every worker
 * closes its connections spread over --drain-timeout (clients reconnect elsewhere). Returns at once. */
void sb_server_drain(sb_server_t *s);
/* Open Engine.IO connections across the workers. */
unsigned long sb_server_connections(sb_server_t *s);
/* Asks every worker to stop and joins them. */
void sb_server_stop(sb_server_t *s);
void sb_server_free(sb_server_t *s);

/* Runs fn(w, arg) on worker `target`'s thread: directly when called from
 * that thread, else through its message queue (fn runs later, from its loop).
 * Never fails (aborts on allocation failure, as a lost message would corrupt state). */
void sb_worker_post(sb_worker_t *target, void (*fn)(sb_worker_t *w, void *arg), void *arg);

/* The worker owning a session id (its first character encodes the index), or NULL. */
sb_worker_t *sb_server_worker_for_sid(sb_server_t *s, const char *sid, size_t len);

/* A new random id of SB_SID_LEN characters whose first character encodes w->idx; NUL-terminated. */
void sb_worker_new_sid(sb_worker_t *w, char out[SB_SID_LEN + 1]);

/* 1 when this worker's Redis command connection is up and the server not draining. */
int sb_worker_ready(sb_worker_t *w);

/* Builds "<prefix><suffix>" into out (NUL-terminated); returns its length, or 0 when it does not fit. */
size_t sb_key(const sb_worker_t *w, char *out, size_t outlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define SB_M(w) (&(w)->server->metrics)

/* Counts a message dropped for `why` (SB_DROP_*): the node figure and the metric. */
static inline void sb_count_drop(sb_worker_t *w, int why)
{
    atomic_fetch_add(&w->stats.dropped, 1);
    sb_metric_inc(SB_M(w)->dropped[why], w->idx);
}

/* Counts a request refused by a rate limit (SB_LIMIT_*). */
static inline void sb_count_limited(sb_worker_t *w, int kind)
{
    atomic_fetch_add(&w->stats.rate_limited, 1);
    sb_metric_inc(SB_M(w)->rate_limited[kind], w->idx);
}

/* Seconds from a monotonic clock with microsecond resolution (latency metrics). */
double sb_seconds(void);

#endif
