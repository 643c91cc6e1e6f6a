/*
 * store.h — every Redis state change of a socket goes through here, as FCALLs
 * of the Functions library (lua/) or single-key XADDs. All calls are
 * asynchronous on the worker's command connection. cb may be NULL (fire and
 * forget: failures are logged). When a call returns an error, cb is never
 * called.
 */
#ifndef SWITCHBOARD_STORE_H
#define SWITCHBOARD_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "switchboard/server.h"

/* ok: 1 when Redis applied the change (reply not an error), 0 otherwise. */
typedef void (*sb_store_cb)(sb_worker_t *w, int ok, long long value, void *data);

/* Outcome of a rate-limited write: SB_OK, SB_EAGAIN (over a limit: retry_ms says when), SB_EIO (Redis failed). */
typedef void (*sb_store_limited_cb)(sb_worker_t *w, int status, long long retry_ms, void *data);

/* The raw reply of a read or a Function with a structured answer; NULL when the call failed (logged). */
typedef void (*sb_store_reply_cb)(sb_worker_t *w, const redisReply *reply, void *data);
/* Registers a socket (sb_connect). `addr` is the client address whose connection rate (--rate-connections) is
 * checked in the same step; NULL or a disabled rate skips the check. `rooms` (count n) are joined at connect.
 * `pid` (secret half of the private session id) and `offset` (the bus id replay would start after) are stored for
 * connection state recovery; NULL when it is off. */
int sb_store_connect(sb_worker_t *w, const char *sid, const char *nsp, const char *user, const char *transport,
                     const char *auth_json, const char *pid, const char *offset, const char *addr,
                     const char *const *rooms, size_t nrooms, sb_store_limited_cb cb, void *data);
/* Takes a disconnected (or not yet reaped) socket back (sb_recover; see lua/recover.lua for the reply). `user` is
 * "" in anonymous mode; `offset` "" when the client brought none. */
int sb_store_recover(sb_worker_t *w, const char *sid, const char *pid, const char *nsp, const char *user,
                     const char *transport, const char *offset, const char *auth_json, sb_store_reply_cb cb,
                     void *data);
/* XRANGE <prefix>bus (after upto COUNT count: the bus entries after `after` up to `upto` included. */
int sb_store_bus_range(sb_worker_t *w, const char *after, const char *upto, unsigned count, sb_store_reply_cb cb,
                       void *data);
int sb_store_join(sb_worker_t *w, const char *sid, const char *room, int join, sb_store_cb cb, void *data);
/* Forgets a socket (sb_disconnect). keep_ms > 0 keeps its state that long for recovery; gen is the incarnation
 * this node holds (a stale one writes nothing). */
int sb_store_disconnect(sb_worker_t *w, const char *sid, const char *reason, uint64_t keep_ms, uint64_t gen,
                        sb_store_cb cb, void *data);
/* A client event: takes a token from the socket's and the user's buckets (--rate-socket-events,
 * --rate-user-events) and, when allowed and `write` is set, XADDs it to <prefix>events — one atomic step.
 * ack_id < 0 for none. */
int sb_store_event(sb_worker_t *w, const char *nsp, const char *sid, const char *user, const char *event,
                   const char *args_json, size_t args_len, int64_t ack_id, int write, sb_store_limited_cb cb,
                   void *data);
/* Takes `cost` tokens from the bucket P{rl:<kind>:<id>} with rate r (sb_ratelimit). */
int sb_store_ratelimit(sb_worker_t *w, const char *kind, const char *id, const sb_rate_t *r, sb_store_limited_cb cb,
                       void *data);

#endif
