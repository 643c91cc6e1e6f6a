/*
 * webhook.h — client events POSTed to backends over HTTP (CONTRACT §4).
 *
 * One sb_webhooks_t per worker thread, built from --webhook GLOB=URL (in the
 * order given: the first matching GLOB wins). Each URL has, per worker, a
 * keep-alive connection pool, at most --webhook-max-inflight requests in
 * flight with a bounded queue behind them, retries with exponential backoff
 * and jitter (5xx, timeouts, connection errors; never a 4xx), and a circuit
 * breaker (closed -> open after --webhook-breaker-failures failed calls within
 * --webhook-breaker-window -> half-open after --webhook-breaker-cooldown: one
 * probe call -> closed on success, open again on failure).
 *
 * Used only from its worker's thread.
 */
#ifndef SWITCHBOARD_WEBHOOK_H
#define SWITCHBOARD_WEBHOOK_H

#include <stddef.h>
#include <h2o.h>
#include "switchboard/config.h"

typedef struct sb_webhooks sb_webhooks_t;

/* Creates the per-worker state for cfg->webhooks (NULL when none are configured
 * or on allocation failure: callers treat NULL as "no webhooks"). */
sb_webhooks_t *sb_webhooks_create(h2o_loop_t *loop, const sb_config_t *cfg);
/* Cancels everything: pending callbacks are called with SB_EIO ("shutdown")
 * before this returns. */
void sb_webhooks_destroy(sb_webhooks_t *wh);

/* The index of the first webhook whose GLOB matches `name` ('*' any run of
 * characters, '?' one character, no other specials), or -1. For connect and
 * disconnect entries pass "connect"/"disconnect" with lifecycle = 1: they only
 * match when --webhook-lifecycle is on. */
int sb_webhooks_match(const sb_webhooks_t *wh, const char *name, int lifecycle);

/* 1 when webhook idx's circuit is open (calls would fail at once). */
int sb_webhooks_is_open(const sb_webhooks_t *wh, int idx);

/* The final outcome of a call, exactly once:
 *   err NULL: a 2xx answer; body/len is the response body (may be empty);
 *   err non-NULL: a static reason ("circuit open", "queue full", "timeout",
 *   "connection failed", "http 4xx", "http 5xx", "shutdown"), body NULL.
 * `status` is the last HTTP status seen (0 when none). */
typedef void (*sb_webhook_cb)(void *data, const char *err, int status, const char *body, size_t len);

/* POSTs `body` (JSON, Content-Type: application/json) to webhook idx with the
 * header Idempotency-Key: key (the same on every retry). Returns 0 and calls
 * cb later (never from inside this call), or SB_EAGAIN when the circuit is open
 * or the queue is full (cb is then never called), or SB_EINVAL for a bad idx. */
int sb_webhooks_post(sb_webhooks_t *wh, int idx, const char *key, const char *body, size_t len, sb_webhook_cb cb,
                     void *data);

/* Counters for metrics (per worker, per URL index). */
typedef struct sb_webhook_stats {
    unsigned long calls_ok, calls_failed, retries, rejected_open, rejected_queue;
    int state; /* 0 closed, 1 open, 2 half-open */
} sb_webhook_stats_t;
int sb_webhooks_stats(const sb_webhooks_t *wh, int idx, sb_webhook_stats_t *out);
size_t sb_webhooks_count(const sb_webhooks_t *wh);
const char *sb_webhooks_url(const sb_webhooks_t *wh, int idx);

#endif
