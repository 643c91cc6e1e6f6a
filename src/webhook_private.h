/*
 * webhook_private.h — the pure parts of src/webhook.c, exposed for
 * tests/unit/test_webhook.c: glob matching, the retry backoff, the circuit
 * breaker state machine and URL parsing. None of them touches the event loop;
 * all take the current time as an argument so tests drive the clock.
 */
#ifndef SWITCHBOARD_WEBHOOK_PRIVATE_H
#define SWITCHBOARD_WEBHOOK_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

/* Largest response body kept from a webhook; a larger one fails the attempt. */
#define SB_WEBHOOK_MAX_RESPONSE ((size_t)1024 * 1024)
/* Longest Idempotency-Key accepted by sb_webhooks_post. */
#define SB_WEBHOOK_MAX_KEY 256

/* 1 when `s` matches `pat` ('*' any run of characters, possibly empty; '?'
 * exactly one character; every other byte matches itself). */
int sb_webhooks_glob(const char *pat, const char *s);

/* Delay before retry number `retry` (1 = the first retry): d = base * 2^(retry-1)
 * capped at max_ms, then jittered down by up to a quarter: d - rnd % (d/4 + 1).
 * So retries 1, 2, 3 with base 100 wait 75..100, 150..200, 300..400 ms: the
 * delays grow even with jitter (until the cap). Never returns 0. */
uint64_t sb_webhooks_backoff_ms(uint64_t base_ms, uint64_t max_ms, unsigned retry, uint64_t rnd);

/* The circuit breaker of one URL.
 *   closed: calls go through; each failed call's time is remembered (the last
 *     `threshold` of them); when `threshold` failures lie within window_ms the
 *     circuit opens. Successes do not erase earlier failures (they age out).
 *   open: calls are refused until cooldown_ms after opening; the first call
 *     acquired after that becomes the probe and the state is half-open.
 *   half-open: exactly one probe call is in flight, everything else is refused;
 *     the probe's success closes the circuit (failures forgotten), its failure
 *     opens it again for another cooldown.
 * Results of non-probe calls that finish while open or half-open are ignored. */
enum { SB_BREAKER_CLOSED = 0, SB_BREAKER_OPEN = 1, SB_BREAKER_HALF_OPEN = 2 };
typedef struct sb_breaker {
    int state;
    unsigned threshold;
    uint64_t window_ms, cooldown_ms;
    uint64_t opened_at;
    uint64_t *fails; /* ring of the last `threshold` failure times (malloc'd) */
    unsigned nfails, next;
} sb_breaker_t;

/* 0 or SB_ENOMEM. threshold >= 1. */
int sb_webhooks_breaker_init(sb_breaker_t *b, unsigned threshold, uint64_t window_ms, uint64_t cooldown_ms);
void sb_webhooks_breaker_free(sb_breaker_t *b);
/* 1 when a call acquired at `now` would be allowed (closed, or open with the
 * cooldown over). Changes nothing. */
int sb_webhooks_breaker_would_allow(const sb_breaker_t *b, uint64_t now);
/* Takes the right to make a call: 0 refused, 1 a normal call, 2 the half-open
 * probe (the state is then half-open). */
int sb_webhooks_breaker_acquire(sb_breaker_t *b, uint64_t now);
/* Records a call's final result (ok: the backend answered healthily). */
void sb_webhooks_breaker_record(sb_breaker_t *b, int ok, int is_probe, uint64_t now);

/* A parsed http:// or https:// URL; host/hostport/path are malloc'd. */
typedef struct sb_webhook_url {
    int is_ssl;
    char *host;     /* without brackets for IPv6 literals */
    char *hostport; /* the authority as written: the Host header */
    char *path;     /* "/" when the URL has none; includes the query */
    uint16_t port;
} sb_webhook_url_t;

/* 0, SB_EINVAL (not http(s), empty host, bad port, userinfo, spaces or
 * control characters) or SB_ENOMEM. On failure nothing is left allocated. */
int sb_webhooks_parse_url(const char *url, sb_webhook_url_t *out);
void sb_webhooks_url_free(sb_webhook_url_t *u);

#endif
