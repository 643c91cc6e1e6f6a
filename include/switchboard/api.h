/*
 * api.h — the REST API for backends (CONTRACT §3), under /v1/.
 *
 * Every call that changes clients is validated here (400 naming the field),
 * then written as the very same `<prefix>bus` entry a backend could XADD
 * itself (op + msg = the request body), so both paths behave identically.
 * Queries read Redis through the read-only Functions of lua/query.lua and
 * lua/node.lua. POST /v1/sockets/{sid}/emit waits for the client's ack: the
 * bus entry carries reply_to = this worker's reply stream, which the worker's
 * bus reader reads in the same XREAD as the bus (bus.c).
 *
 * API keys: --api-key (repeatable), SWITCHBOARD_API_KEY, --api-keys-file
 * (re-read on SIGHUP); when none is configured one is generated at start-up
 * and printed once on stdout. Keys are compared in constant time.
 */
#ifndef SWITCHBOARD_API_H
#define SWITCHBOARD_API_H

#include <hiredis/hiredis.h>
#include <h2o.h>
#include "switchboard/server.h"

/* Loads the keys (or generates one) and registers /v1 on host. Called once
 * before the workers start. Returns 0 or SB_EINVAL with *why set. */
int sb_api_init(sb_server_t *s, h2o_hostconf_t *host, const char **why);

/* Re-reads --api-keys-file (SIGHUP), keeping the flag/env keys. On failure
 * the previous keys stay in force. Thread-safe. */
int sb_api_reload_keys(sb_server_t *s, const char **why);

/* 1 when `key` (len bytes) is one of the configured keys; constant time in
 * the length of the candidates. Thread-safe. */
int sb_api_key_valid(const char *key, size_t len);

/* Validates the body of one bus operation ("emit", "join", "leave", "disconnect", "ack") as the REST API does:
 * 0, or SB_EINVAL with the field and a message copied out. Pure (no I/O): for tests and fuzzing. */
int sb_api_validate(const sb_config_t *cfg, const char *op, const char *body, size_t len, char *field, size_t fieldlen,
                    char *message, size_t messagelen);

/* Per-worker state (pending emit-with-ack calls). */
void sb_api_worker_init(sb_worker_t *w);

/* One entry of the worker's reply stream (fields as name/value pairs). */
void sb_api_on_reply(sb_worker_t *w, const redisReply *fields);

/* Writes this node's heartbeat and figures (worker 0, every heartbeat). */
void sb_api_heartbeat(sb_worker_t *w);

#endif
