/* Shared state of the load generator (sbload.c: scenarios and output,
 * lg_client.c: WebSocket / long-polling Engine.IO + Socket.IO clients,
 * lg_backend.c: the Redis side that plays the backend for switchboard).
 * One process, one libevent loop, no threads: everything here is touched from
 * the loop only. */
#ifndef LG_H
#define LG_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>

#include "lg_stats.h"

#define LG_MAX_SOURCES 64
#define LG_SID_MAX 40
#define LG_IN_CAP (8u << 20)  /* a client's unparsed input never exceeds this */
#define LG_OUT_CAP (4u << 20) /* nor its unsent output */

enum lg_state { ST_IDLE, ST_TCP, ST_HTTP, ST_EIO_OPEN, ST_SIO_WAIT, ST_READY, ST_CLOSED };
enum lg_role { ROLE_MEMBER, ROLE_CHURN, ROLE_CTL };

typedef struct lg_client {
    int fd;
    uint8_t state; /* enum lg_state */
    uint8_t role;  /* enum lg_role */
    uint8_t polling;
    uint8_t barrier_seen;
    uint8_t post_busy; /* polling: a POST is in flight */
    uint8_t closing;   /* we closed it on purpose (churn, end of run) */
    uint8_t joined;    /* switchboard: its join was sent */
    uint32_t idx;      /* member index (bitmap row), or churn serial */
    struct event *rev; /* persistent read */
    struct event *wev; /* one-shot write (connect completion, pending output) */
    uint8_t *in;
    uint32_t in_len, in_cap;
    uint8_t *out;
    uint32_t out_len, out_cap;
    uint32_t next_ack_id;
    uint32_t acks_out;        /* emits waiting for their ack */
    uint32_t ev_sent;         /* events: events emitted (their seqs are 0..ev_sent-1) */
    uint32_t ev_seen;         /* events: distinct seqs seen in <prefix>events */
    uint8_t *ev_bits;         /* events: bitmap of the seqs seen, grown on demand */
    uint32_t ev_bits_len;     /* bytes in ev_bits */
    double t_start;           /* connect started */
    double t_die;             /* churn: when to leave */
    char key[25];             /* Sec-WebSocket-Key */
    char sid[LG_SID_MAX];     /* Socket.IO socket id (from the CONNECT reply) */
    char eio_sid[LG_SID_MAX]; /* polling: Engine.IO session id */
    struct evhttp_connection *pget, *ppost;
    char *pq; /* polling: packets waiting for the POST in flight, \x1e separated */
    uint32_t pq_len;
    struct lg_client *next; /* churn list / free list */
} lg_client;

typedef struct lg_cfg {
    const char *scenario; /* idle | broadcast | acks | events | churn */
    const char *label;
    char host[64];
    int port;
    struct sockaddr_in dst;
    struct in_addr src[LG_MAX_SOURCES];
    int nsrc;
    int clients;
    double connect_rate; /* connects/s, 0 = as fast as `concurrency` allows */
    int concurrency;     /* handshakes in flight at most */
    int polling_pct;
    const char *room;
    const char *token;
    char **tokens; /* --token-file: client i (member index or churn serial) uses tokens[i % ntokens] */
    int ntokens;
    int pub_redis; /* 1: backend = Redis streams (switchboard); 0: control Socket.IO client (node, floor) */
    char redis_host[64];
    int redis_port;
    const char *prefix;
    double rate;  /* broadcasts/s (events: events/s in total); 0 = saturation with `window` in flight */
    int messages; /* broadcasts in the measured phase */
    int window;
    int payload; /* padding bytes in each broadcast */
    double duration;
    double drain;
    double timeout;
    double connect_timeout;
    double idle_hold;
    int inflight;    /* acks: emits in flight per client */
    int ack_clients; /* acks, events: how many members emit (0 = all) */
    double churn_rate;
    double churn_life;
    int server_pid, redis_pid;
    int join_batch;
    const char *rest_key; /* broadcasts as POST /v1/emit with this API key instead of the bus / control client */
    int rest_conns;       /* keep-alive HTTP connections for them */
    int quiet;
} lg_cfg;

typedef struct lg_run {
    struct event_base *base;
    lg_cfg cfg;
    lg_client *members; /* cfg.clients of them */
    lg_client *ctl;     /* publisher connection (node, floor) */
    lg_client *churn_live;
    lg_client *churn_dead; /* closed churners, freed by the next tick */
    int phase;
    double t0;
    /* connect accounting (members) */
    int started, pending, ready, failed;
    double t_first_start, t_last_ready;
    lg_hist connect_hist; /* start -> Socket.IO CONNECT reply, us */
    /* broadcast accounting */
    uint32_t sent; /* broadcasts published */
    uint64_t uniq; /* first deliveries to members */
    uint64_t dups;
    uint64_t bogus; /* deliveries with a sequence number never sent */
    uint64_t churn_deliveries;
    uint32_t *recv_count; /* members holding each message */
    uint32_t complete;    /* messages every member holds */
    uint32_t window_base; /* saturation: lowest message not complete */
    uint8_t *seen;        /* members x bits(messages) */
    size_t seen_row;
    lg_hist lat; /* delivery latency, us */
    double t_last_send, t_last_delivery, t_first_send;
    int barrier_members;
    uint32_t barrier_no;
    /* acks */
    uint64_t acks_sent, acks_ok, acks_err, acks_measured;
    lg_hist ack_lat;
    /* churn */
    uint64_t churn_started, churn_ready, churn_failed, churn_closed;
    /* errors */
    uint64_t server_closed; /* connections the server ended */
    uint64_t proto_errors;
    uint64_t connect_errors;
    uint64_t pings;
    char last_error[160];
    /* switchboard joins waiting for the next XADD */
    char **join_q;
    int join_len, join_cap;
    uint64_t joins_sent;
    uint64_t redis_errors;
    uint64_t backend_events, backend_acks;
    /* events (client -> <prefix>events without ack) */
    uint64_t ev_sent, ev_seen, ev_dups, ev_bogus, ev_unknown;
    uint64_t ev_server_count; /* node, floor: events the server's handler counted (asked over the control conn) */
    lg_hist ev_lat;           /* switchboard: client send -> backend read of the entry, us */
    double t_last_seen;
    /* --rest-key: broadcasts through POST /v1/emit */
    uint64_t rest_sent, rest_ok, rest_err;
    lg_hist rest_lat; /* request sent -> answer, us */
} lg_run;

extern lg_run R;

/* lg_client.c */
int lg_client_start(lg_client *c, int src_index);
void lg_client_close(lg_client *c, int on_purpose);
/* Sends one Engine.IO packet (text) over the client's transport. */
void lg_client_send(lg_client *c, const char *txt, size_t n);
void lg_note_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* sbload.c: what the clients report */
void lg_on_ready(lg_client *c);
void lg_on_failed(lg_client *c);
void lg_on_lost(lg_client *c);
void lg_on_event(lg_client *c, const char *p, size_t n); /* Socket.IO EVENT body after "2" */
void lg_on_ack(lg_client *c, const char *p, size_t n);   /* Socket.IO ACK body after "3" */
/* The backend read an event without ack id from <prefix>events: its socket id and args (JSON array text). */
void lg_on_stream_event(const char *sid, size_t sidlen, const char *args, size_t n);

/* lg_backend.c */
int lg_backend_open(void);
void lg_backend_close(void);
int lg_backend_publish(const char *msg_json, size_t n);    /* XADD bus op emit */
int lg_backend_join(char **sids, int n, const char *room); /* XADD bus op join */
int lg_backend_start_acker(void);       /* read <prefix>events: answer events with op ack, report the others */
long long lg_backend_used_memory(void); /* INFO memory used_memory, -1 unknown */

/* lg_rest.c */
int lg_rest_open(void);
void lg_rest_close(void);
int lg_rest_publish(const char *msg_json, size_t n, int measured); /* POST /v1/emit; measured: count it */

/* Finds `"key":` in p[0..n) and parses the unsigned number after it. */
int lg_find_u64(const char *p, size_t n, const char *key, uint64_t *out);

#endif
