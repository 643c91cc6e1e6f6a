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

int sb_store_connect(sb_worker_t *w, const char *sid, const char *nsp, const char *user, const char *transport,
                     const char *auth_json, sb_store_cb cb, void *data);
int sb_store_join(sb_worker_t *w, const char *sid, const char *room, int join, sb_store_cb cb, void *data);
int sb_store_disconnect(sb_worker_t *w, const char *sid, const char *reason, sb_store_cb cb, void *data);
/* XADD <prefix>events: a client event. ack_id < 0 for none. */
int sb_store_event(sb_worker_t *w, const char *nsp, const char *sid, const char *user, const char *event,
                   const char *args_json, size_t args_len, int64_t ack_id, sb_store_cb cb, void *data);

#endif
