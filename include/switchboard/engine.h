/*
 * engine.h — the Engine.IO 4 server: the /socket.io/ HTTP handler, the
 * long-polling and WebSocket transports, the upgrade, heartbeats and
 * maxPayload. Above it sits the Socket.IO layer (session.h), which it calls
 * through three hooks: a connection opened, a MESSAGE arrived, a connection
 * closed.
 *
 * A connection (sb_eio_conn_t) is owned by the worker whose thread created it;
 * every function here must be called on that thread. Connections are freed by
 * the engine after the close hook returns (never inside a caller's stack
 * frame that still holds the pointer: closing only marks and schedules).
 */
#ifndef SWITCHBOARD_ENGINE_H
#define SWITCHBOARD_ENGINE_H

#include <stddef.h>
#include <h2o.h>
#include "switchboard/common.h"
#include "switchboard/server.h"
#include "switchboard/ws.h"

typedef struct sb_eio_conn sb_eio_conn_t;

typedef enum sb_eio_transport { SB_EIO_POLLING = 0, SB_EIO_WEBSOCKET = 1 } sb_eio_transport_t;

/* A message prepared once for many recipients: the Engine.IO text packet
 * ("4" + Socket.IO text) and its binary attachments; WebSocket frames are
 * built on first use and shared by every WebSocket recipient. */
typedef struct sb_eio_msg {
    const char *text; /* "4…" */
    size_t len;
    size_t nbins;
    const sb_buf_t *bins;
    sb_ws_frame_t **frames; /* NULL until needed: 1 + nbins frames */
    int volatile_;          /* may be dropped under backpressure */
} sb_eio_msg_t;

/* Frees the shared frames (the text and bins belong to the caller). */
void sb_eio_msg_release(sb_eio_msg_t *m);

/* Registers the /socket.io handler on a path configuration. */
void sb_engine_register(h2o_pathconf_t *pathconf, sb_server_t *server);

/* Per-worker start/stop (timers). */
void sb_engine_worker_init(sb_worker_t *w);
/* Closes up to `max` open connections (the drain); returns how many it closed. */
size_t sb_engine_worker_close_some(sb_worker_t *w, size_t max, const char *reason);
/* Closes every connection of the worker (reason "server shutting down"). */
void sb_engine_worker_close_all(sb_worker_t *w);

/* Sends one MESSAGE. Returns 0, SB_ETOOBIG when the send queue is full (the
 * connection is then closed with reason "transport error"), SB_EIO when the
 * connection is closing. */
int sb_eio_send_msg(sb_eio_conn_t *c, sb_eio_msg_t *m);
/* Cache hints for a fan-out loop, called a few recipients ahead of sb_eio_send_msg: stage 0 asks for the
 * WebSocket's hot fields (the connection itself must be in cache or on its way), stage 1, later, for the slot the
 * next frame goes to. Never change anything; any connection, even closing, is fine. */
void sb_eio_prefetch(const sb_eio_conn_t *c, int stage);
/* Sends "4" + text (and attachments) to one connection. */
int sb_eio_send_text(sb_eio_conn_t *c, const char *sio_text, size_t len, size_t nbins, const sb_buf_t *bins);

/* Closes the connection with a Socket.IO-visible reason ("transport close",
 * "ping timeout", "parse error", "forced close", "server shutting down" …).
 * The close hook runs from the loop, later. Idempotent. */
void sb_eio_close(sb_eio_conn_t *c, const char *reason);

const char *sb_eio_sid(const sb_eio_conn_t *c);
sb_eio_transport_t sb_eio_transport(const sb_eio_conn_t *c);
sb_worker_t *sb_eio_worker(const sb_eio_conn_t *c);
/* The masked client address for logs ("unknown" when not known), formatted on each call into a per-thread buffer
 * that the next call overwrites: use it as an argument of one sb_log call. */
const char *sb_eio_remote(const sb_eio_conn_t *c);
/* The bearer token of the Engine.IO handshake's Authorization header, or NULL. */
const char *sb_eio_token(const sb_eio_conn_t *c);
/* The client address in full (for per-address limits; never log it unless --log-client-ips). */
const char *sb_eio_addr(const sb_eio_conn_t *c);
/* The Socket.IO layer's per-connection data. */
void *sb_eio_data(const sb_eio_conn_t *c);
void sb_eio_set_data(sb_eio_conn_t *c, void *data);

#endif
