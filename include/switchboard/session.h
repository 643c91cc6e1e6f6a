/*
 * session.h — the Socket.IO 5 layer: namespaces, sockets, CONNECT (anonymous
 * for now: user id = socket id), EVENT/ACK both ways, binary attachments,
 * CONNECT_ERROR, DISCONNECT, the connect timeout, and the per-thread room
 * index used for fan-out.
 *
 * Called by the engine (hooks below) and by the bus (sb_session_apply_*).
 * Every socket is owned by the worker that owns its Engine.IO connection.
 */
#ifndef SWITCHBOARD_SESSION_H
#define SWITCHBOARD_SESSION_H

#include <jansson.h>
#include "switchboard/bus.h"
#include "switchboard/engine.h"
#include "switchboard/server.h"

/* Engine hooks. */
void sb_session_on_open(sb_eio_conn_t *c);
/* A complete MESSAGE: text (binary = 0, without the leading '4') or a binary attachment. */
void sb_session_on_message(sb_eio_conn_t *c, int binary, const char *data, size_t len);
/* The connection closed with `reason`; the session frees its sockets. */
void sb_session_on_close(sb_eio_conn_t *c, const char *reason);

/* Bus operations applied to this worker's own sockets. `msg` is the parsed
 * JSON of the bus entry. Return 0, or SB_EINVAL with *why for a malformed msg. */
/* Called by the bus reader for every live entry before it is applied: kept while a socket of this worker replays
 * (connection state recovery, a new socket's registration), which gets it when its replay ends. */
void sb_session_backlog_push(sb_worker_t *w, const sb_bus_entry_t *e);
int sb_session_apply_emit(sb_worker_t *w, json_t *msg, const sb_bus_entry_t *e, const char **why);
int sb_session_apply_join(sb_worker_t *w, json_t *msg, int join, const char **why);
int sb_session_apply_disconnect(sb_worker_t *w, json_t *msg, const char **why);
int sb_session_apply_ack(sb_worker_t *w, json_t *msg, const char **why);
/* op ack whose msg was checked without jansson (sb_bus_apply): `sid` (sidlen bytes), a non-negative ack id, and
 * `args`, a JSON array in the form sb_sio_json_plain accepts, forwarded to the client as it is. */
int sb_session_apply_ack_raw(sb_worker_t *w, const char *sid, size_t sidlen, int64_t ack_id, const char *args,
                             size_t args_len);

/* The reserved namespace of the dashboard (signed in with an API key). */
#define SB_ADMIN_NSP "/_admin"

/* Disconnect reasons counted per node (the last one, "other", takes every reason not listed). */
#define SB_REASONS 13
extern const char *const sb_session_reasons[SB_REASONS];
unsigned sb_session_reason_index(const char *reason);

/* Per-worker init/teardown of the room index. */
void sb_session_worker_init(sb_worker_t *w);
void sb_session_worker_free(sb_worker_t *w);

#endif
