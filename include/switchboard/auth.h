/*
 * auth.h — JWT verification for client connections (CONTRACT §2) and the
 * room-pattern checks of the claims.
 *
 * One sb_auth_t per process, created from the configuration at start-up and
 * shared read-only by the workers (sb_auth_reload swaps the key under a lock
 * on SIGHUP). Each worker owns an sb_auth_cache_t of verified RS256/ES256
 * tokens, so a reconnect storm does not verify the same signature again and
 * again. HS* tokens skip it: an HMAC check costs little more than a hit, while
 * a miss costs a SHA-256, an entry of ~400 bytes and several allocations, a
 * loss when (as usual) every client has its own token.
 *
 * libjwt 1.10 pitfalls handled here (DESIGN §6): the token's own `alg` is
 * never trusted (it must equal --jwt-alg, `none` is always refused, and an
 * HS* token "signed" with the RSA/EC public key is refused); a NULL key is
 * never passed to jwt_decode; exp (required), nbf, iss and aud are checked
 * here with --jwt-leeway, since 1.10 validates no claim.
 */
#ifndef SWITCHBOARD_AUTH_H
#define SWITCHBOARD_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include "switchboard/config.h"

typedef struct sb_auth sb_auth_t;
typedef struct sb_auth_cache sb_auth_cache_t;

/* Bounds enforced by sb_auth_verify (anything larger is token_invalid or
 * token_claims): the whole token, the sub claim and each room string, and the
 * number of items of each of rooms / publish / join. */
#define SB_AUTH_MAX_TOKEN 8192
#define SB_AUTH_MAX_CLAIM_STR 256
#define SB_AUTH_MAX_CLAIM_ITEMS 100

/* What a verified token grants. All strings malloc'd; free with sb_claims_free. */
typedef struct sb_claims {
    char *sub;            /* user id (required claim) */
    sb_strlist_t rooms;   /* patterns the client may $join / $leave itself */
    sb_strlist_t publish; /* patterns the client may $publish to */
    sb_strlist_t join;    /* rooms joined at connect */
    int64_t exp;          /* seconds since the epoch */
} sb_claims_t;

/* Reads --jwt-secret / --jwt-public-key per cfg. Returns NULL with *why set
 * when a key file cannot be read or parsed. With neither configured the
 * verifier is in anonymous mode (sb_auth_enabled returns 0). */
sb_auth_t *sb_auth_create(const sb_config_t *cfg, const char **why);
void sb_auth_free(sb_auth_t *a);
int sb_auth_enabled(const sb_auth_t *a);
/* Re-reads the key (SIGHUP). On failure the old key stays in force. Thread-safe. */
int sb_auth_reload(sb_auth_t *a, const char **why);
/* Like sb_auth_reload, but takes every JWT setting (alg, secret, public key
 * file, issuer, audience, leeway) from cfg, e.g. a configuration parsed again
 * on SIGHUP: this is how a new --jwt-secret takes effect. cfg is only read
 * during the call. Switching between anonymous mode and a configured key is
 * refused (SB_EINVAL, restart instead). On failure (SB_EINVAL with *why, or
 * SB_ENOMEM) nothing changes. Either reload empties every worker's cache. */
int sb_auth_reload_from(sb_auth_t *a, const sb_config_t *cfg, const char **why);

/* Verifies `token` at time now_ms. Returns 0 and fills *out, or SB_EINVAL with
 * *code one of "token_missing", "token_invalid" (malformed or bad signature),
 * "token_algorithm" (alg not the configured one, or none), "token_expired",
 * "token_not_yet_valid", "token_issuer", "token_audience", "token_claims"
 * (sub missing or a claim of the wrong type), and *message a short human
 * text. Both static; code and message may be NULL when not wanted. On failure
 * *out is untouched. Out of memory returns SB_ENOMEM (code "token_invalid").
 * In anonymous mode every token is token_invalid (check sb_auth_enabled). */
int sb_auth_verify(sb_auth_t *a, const char *token, size_t len, uint64_t now_ms, sb_claims_t *out, const char **code,
                   const char **message);

/* A bounded per-worker cache (LRU, at most max entries) of verified RS256 /
 * ES256 tokens, keyed by the token's SHA-256; entries are valid until the
 * token's exp (plus --jwt-leeway). Not thread-safe: one per worker. max 0
 * caches nothing. Returns NULL when out of memory. */
sb_auth_cache_t *sb_auth_cache_create(size_t max);
void sb_auth_cache_free(sb_auth_cache_t *c);
/* Like sb_auth_verify, through the cache (a hit copies the cached claims; an
 * expired entry is dropped and the token verified again, which then fails
 * with token_expired). A reload (key generation change) empties the cache.
 * While an HS* algorithm is in force (also after a reload to one) it answers
 * as sb_auth_verify: nothing is looked up or stored and the hits stay put;
 * entries of an earlier RS/ES key are freed on the first call. */
int sb_auth_verify_cached(sb_auth_t *a, sb_auth_cache_t *c, const char *token, size_t len, uint64_t now_ms,
                          sb_claims_t *out, const char **code, const char **message);
size_t sb_auth_cache_hits(const sb_auth_cache_t *c);
/* Entries currently held (for tests and stats). */
size_t sb_auth_cache_size(const sb_auth_cache_t *c);

/* Frees the strings of *c and zeroes it (the struct itself is the caller's). */
void sb_claims_free(sb_claims_t *c);
/* Deep copy into *dst (overwritten, not freed first). 0, or SB_ENOMEM with *dst zeroed. */
int sb_claims_copy(sb_claims_t *dst, const sb_claims_t *src);

/* 1 when `room` matches one of the patterns: '*' matches any run of
 * characters (also empty), '?' one character (one UTF-8 sequence: a lead
 * byte and its continuation bytes), everything else literally. 0 for a NULL
 * or empty list or a NULL room. */
int sb_auth_match(const sb_strlist_t *patterns, const char *room);

#endif
