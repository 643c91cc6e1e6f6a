/*
 * auth.c — JWT verification (CONTRACT §2), the per-worker cache of verified
 * RS256/ES256 tokens, and room-pattern matching.
 *
 * libjwt 1.10 trusts the token (it takes `alg` from the token's header, skips
 * the signature for `none`, compares HMACs with strcmp, checks no claim) and
 * re-reads the PEM key for every RS/ES token, so it is no longer on the path:
 * the token is examined here, bounded length, exactly three base64url
 * segments, our own parse of the header with `alg` pinned to --jwt-alg (so
 * `none` and algorithm confusion never reach a verify path); HS* signatures
 * are checked in constant time from keyed digest states, RS256/ES256 ones with
 * EVP_DigestVerify and the key parsed once; then every claim is checked here.
 */
#include "switchboard/auth.h"
#include "switchboard/common.h"
#include "switchboard/json.h"
#include "switchboard/map.h"

#include <jansson.h>
#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_HEADER_SEG 1024              /* base64url chars of the header: a real one is < 200 */
#define MAX_KEY_FILE ((size_t)64 * 1024) /* a PEM public key or certificate is a few KiB */
#define DIGEST_LEN 32                    /* SHA-256, the cache key */

enum family { FAM_NONE, FAM_HS, FAM_RS, FAM_ES };

/* Everything a verification reads; swapped as a whole by a reload. */
typedef struct policy {
    int enabled;
    enum family fam;
    jwt_alg_t alg;
    char alg_name[8];
    const EVP_MD *md; /* HS*: the HMAC digest */
    /* HS*: the digest fetched once and the HMAC's inner and outer hash states
     * with the padded key already absorbed (RFC 2104), copied for each token:
     * HMAC() fetched the digest and keyed a new MAC on every call, which cost
     * more than the rest of a handshake. */
    EVP_MD *md_fetched;
    EVP_MD_CTX *hmac_inner, *hmac_outer;
    unsigned char *key; /* HS*: the secret */
    size_t keylen;
    /* RS/ES: the public key parsed once (libjwt's jwt_decode read the PEM again for every token, most of an RS256
     * handshake's cost) and SHA-256 fetched once (md_fetched) */
    EVP_PKEY *pkey;
    EVP_MD_CTX *verify_init; /* RS/ES: EVP_DigestVerifyInit done once (it looks the algorithm up), copied per token */
    char *key_path;          /* --jwt-public-key, re-read by sb_auth_reload */
    char *issuer;            /* NULL: not checked */
    char *audience;          /* NULL: not checked */
    uint64_t leeway_ms;
} policy_t;

struct sb_auth {
    pthread_rwlock_t lock;  /* readers: verifications; writer: the swap of pol */
    pthread_mutex_t reload; /* one reload at a time, so a reload may read pol unlocked */
    policy_t pol;
    int enabled;                 /* fixed at creation (a reload never switches modes), so read without the lock */
    _Atomic uint64_t generation; /* bumped by every reload; caches compare it without the lock */
    _Atomic int cache_tokens;    /* uses_cache(&pol), stored with every swap of pol: caches read it without the lock */
};

/* Only RS/ES tokens go through the per-worker cache. Measured (micro-benchmark): an HS256 verification of a
 * 200-byte token takes ~1.45 µs and a hit ~0.32 µs, but a miss adds the SHA-256 key, ~400 bytes (centry_t, the
 * claims copy, the map's key and slot) and half a dozen allocations; with one token per client the cache only
 * added CPU and ~0.4 KiB of RSS per connection. An RS256 (~25-30 µs) or ES256 verification is worth a hit. */
static int uses_cache(const policy_t *p)
{
    return p->enabled && (p->fam == FAM_RS || p->fam == FAM_ES);
}

typedef struct centry {
    unsigned char key[DIGEST_LEN];
    sb_claims_t claims;
    uint64_t valid_until_ms; /* exp in ms plus the leeway in force when verified */
    struct centry *prev, *next;
} centry_t;

struct sb_auth_cache {
    sb_map_t map;   /* digest -> centry_t* */
    centry_t *head; /* most recently used */
    centry_t *tail; /* evicted first */
    size_t count;
    size_t max;
    uint64_t generation;
    size_t hits;
};

/* ---------- small helpers ---------- */

static int fail(const char **code, const char **message, const char *c, const char *m)
{
    if (code != NULL)
        *code = c;
    if (message != NULL)
        *message = m;
    return SB_EINVAL;
}

static int oom(const char **code, const char **message)
{
    fail(code, message, "token_invalid", "out of memory");
    return SB_ENOMEM;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* NumericDate seconds to ms, clamped: before the epoch is 0, too far ahead is "never". */
static uint64_t sec_to_ms(json_int_t s)
{
    if (s <= 0)
        return 0;
    if ((uint64_t)s > UINT64_MAX / 1000)
        return UINT64_MAX;
    return (uint64_t)s * 1000;
}

/* Unpadded base64url (JWS, RFC 7515 §2) into a buffer of `cap` bytes. */
static int b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap, size_t *outlen)
{
    if (len % 4 == 1)
        return SB_EPROTO;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > cap)
        return SB_ETOOBIG;
    return sb_base64url_decode(in, len, out, outlen);
}

/* ---------- claims ---------- */

static void strlist_free(sb_strlist_t *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

void sb_claims_free(sb_claims_t *c)
{
    if (c == NULL)
        return;
    free(c->sub);
    strlist_free(&c->rooms);
    strlist_free(&c->publish);
    strlist_free(&c->join);
    memset(c, 0, sizeof(*c));
}

static int strlist_copy(sb_strlist_t *dst, const sb_strlist_t *src)
{
    dst->items = NULL;
    dst->count = 0;
    if (src->count == 0)
        return 0;
    dst->items = calloc(src->count, sizeof(char *));
    if (dst->items == NULL)
        return SB_ENOMEM;
    for (size_t i = 0; i < src->count; i++) {
        dst->items[i] = strdup(src->items[i]);
        if (dst->items[i] == NULL) {
            strlist_free(dst);
            return SB_ENOMEM;
        }
        dst->count++;
    }
    return 0;
}

int sb_claims_copy(sb_claims_t *dst, const sb_claims_t *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->exp = src->exp;
    if (src->sub != NULL && (dst->sub = strdup(src->sub)) == NULL)
        goto nomem;
    if (strlist_copy(&dst->rooms, &src->rooms) != 0 || strlist_copy(&dst->publish, &src->publish) != 0 ||
        strlist_copy(&dst->join, &src->join) != 0)
        goto nomem;
    return 0;
nomem:
    sb_claims_free(dst);
    return SB_ENOMEM;
}

/* A claim string: non-empty, at most SB_AUTH_MAX_CLAIM_STR bytes, no NUL
 * (jansson allows \u0000, which would cut the C string short). */
static int claim_str_ok(const json_t *v)
{
    if (!json_is_string(v))
        return 0;
    size_t n = json_string_length(v);
    return n > 0 && n <= SB_AUTH_MAX_CLAIM_STR && memchr(json_string_value(v), '\0', n) == NULL;
}

/* An optional array of claim strings. 1 when well-formed (or absent). */
static int claim_list_ok(const json_t *v)
{
    if (v == NULL)
        return 1;
    if (!json_is_array(v) || json_array_size(v) > SB_AUTH_MAX_CLAIM_ITEMS)
        return 0;
    for (size_t i = 0; i < json_array_size(v); i++)
        if (!claim_str_ok(json_array_get(v, i)))
            return 0;
    return 1;
}

static int claim_list_take(sb_strlist_t *dst, const json_t *v)
{
    dst->items = NULL;
    dst->count = 0;
    size_t n = v != NULL ? json_array_size(v) : 0;
    if (n == 0)
        return 0;
    dst->items = calloc(n, sizeof(char *));
    if (dst->items == NULL)
        return SB_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        dst->items[i] = strdup(json_string_value(json_array_get(v, i)));
        if (dst->items[i] == NULL) {
            strlist_free(dst);
            return SB_ENOMEM;
        }
        dst->count++;
    }
    return 0;
}

static int str_equals(const json_t *v, const char *want)
{
    size_t n = strlen(want);
    return json_is_string(v) && json_string_length(v) == n && memcmp(json_string_value(v), want, n) == 0;
}

/* Types first (a malformed token says so whatever its times), then exp, nbf,
 * iss, aud. On success fills *out and *valid_until_ms (for the cache). */
static int check_claims(const policy_t *p, const json_t *root, uint64_t now_ms, sb_claims_t *out,
                        uint64_t *valid_until_ms, const char **code, const char **message)
{
    if (!json_is_object(root))
        return fail(code, message, "token_claims", "payload is not a JSON object");
    const json_t *sub = json_object_get(root, "sub");
    const json_t *exp = json_object_get(root, "exp");
    const json_t *nbf = json_object_get(root, "nbf");
    const json_t *iss = json_object_get(root, "iss");
    const json_t *aud = json_object_get(root, "aud");
    const json_t *rooms = json_object_get(root, "rooms");
    const json_t *publish = json_object_get(root, "publish");
    const json_t *join = json_object_get(root, "join");

    if (sub == NULL)
        return fail(code, message, "token_claims", "sub claim missing");
    if (!claim_str_ok(sub))
        return fail(code, message, "token_claims", "sub must be a non-empty string of at most 256 bytes");
    if (exp == NULL)
        return fail(code, message, "token_claims", "exp claim missing");
    if (!json_is_integer(exp))
        return fail(code, message, "token_claims", "exp must be an integer");
    if (nbf != NULL && !json_is_integer(nbf))
        return fail(code, message, "token_claims", "nbf must be an integer");
    if (iss != NULL && !json_is_string(iss))
        return fail(code, message, "token_claims", "iss must be a string");
    if (aud != NULL && !json_is_string(aud)) {
        if (!json_is_array(aud) || json_array_size(aud) > SB_AUTH_MAX_CLAIM_ITEMS)
            return fail(code, message, "token_claims", "aud must be a string or an array of strings");
        for (size_t i = 0; i < json_array_size(aud); i++)
            if (!json_is_string(json_array_get(aud, i)))
                return fail(code, message, "token_claims", "aud must be a string or an array of strings");
    }
    if (!claim_list_ok(rooms))
        return fail(code, message, "token_claims", "rooms must be an array of at most 100 strings");
    if (!claim_list_ok(publish))
        return fail(code, message, "token_claims", "publish must be an array of at most 100 strings");
    if (!claim_list_ok(join))
        return fail(code, message, "token_claims", "join must be an array of at most 100 strings");

    uint64_t until = add_sat(sec_to_ms(json_integer_value(exp)), p->leeway_ms);
    if (now_ms >= until)
        return fail(code, message, "token_expired", "token has expired");
    if (nbf != NULL && sec_to_ms(json_integer_value(nbf)) > add_sat(now_ms, p->leeway_ms))
        return fail(code, message, "token_not_yet_valid", "token is not valid yet (nbf)");
    if (p->issuer != NULL && !str_equals(iss, p->issuer))
        return fail(code, message, "token_issuer", "token issuer is not accepted");
    if (p->audience != NULL) {
        int ok = str_equals(aud, p->audience);
        for (size_t i = 0; !ok && json_is_array(aud) && i < json_array_size(aud); i++)
            ok = str_equals(json_array_get(aud, i), p->audience);
        if (!ok)
            return fail(code, message, "token_audience", "token audience is not accepted");
    }

    sb_claims_t c;
    memset(&c, 0, sizeof(c));
    c.exp = (int64_t)json_integer_value(exp);
    if ((c.sub = strdup(json_string_value(sub))) == NULL || claim_list_take(&c.rooms, rooms) != 0 ||
        claim_list_take(&c.publish, publish) != 0 || claim_list_take(&c.join, join) != 0) {
        sb_claims_free(&c);
        return oom(code, message);
    }
    *out = c;
    *valid_until_ms = until;
    return 0;
}

/* ---------- the token ---------- */

/* Our own look at the header, so that libjwt never picks the algorithm. */
static int check_header(const policy_t *p, const char *seg, size_t len, const char **code, const char **message)
{
    if (len > MAX_HEADER_SEG)
        return fail(code, message, "token_invalid", "token header too long");
    unsigned char buf[MAX_HEADER_SEG];
    size_t n;
    if (b64url_decode(seg, len, buf, sizeof(buf), &n) != 0)
        return fail(code, message, "token_invalid", "token header is not base64url");
    json_error_t jerr;
    /* Duplicate keys refused: no second "alg" for another parser to prefer. */
    json_t *h = sb_json_load_simple((const char *)buf, n, SB_JSON_SIMPLE_REJECT_DUPLICATES);
    if (h == NULL)
        h = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, &jerr);
    if (h == NULL || !json_is_object(h)) {
        json_decref(h);
        return fail(code, message, "token_invalid", "token header is not a JSON object");
    }
    int rc = 0;
    const json_t *alg = json_object_get(h, "alg");
    const json_t *typ = json_object_get(h, "typ");
    if (!json_is_string(alg))
        rc = fail(code, message, "token_invalid", "token header has no alg");
    else if (strcasecmp(json_string_value(alg), "none") == 0) /* libjwt maps "NoNe" to none too */
        rc = fail(code, message, "token_algorithm", "unsigned tokens (alg none) are refused");
    else if (!str_equals(alg, p->alg_name))
        rc = fail(code, message, "token_algorithm", "token alg is not the configured algorithm");
    else if (json_object_get(h, "crit") != NULL) /* RFC 7515 §4.1.11: we understand no extension */
        rc = fail(code, message, "token_invalid", "token header has crit extensions");
    else if (typ != NULL && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0))
        rc = fail(code, message, "token_invalid", "token typ is not JWT");
    json_decref(h);
    return rc;
}

/* HMAC(key, data) from the pre-keyed states of policy_build. */
static int hmac_compute(const policy_t *p, const unsigned char *data, size_t len, unsigned char *out,
                        unsigned int *outlen)
{
    unsigned char inner[EVP_MAX_MD_SIZE];
    unsigned int ilen = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c != NULL && EVP_MD_CTX_copy_ex(c, p->hmac_inner) == 1 && EVP_DigestUpdate(c, data, len) == 1 &&
             EVP_DigestFinal_ex(c, inner, &ilen) == 1 && EVP_MD_CTX_copy_ex(c, p->hmac_outer) == 1 &&
             EVP_DigestUpdate(c, inner, ilen) == 1 && EVP_DigestFinal_ex(c, out, outlen) == 1;
    EVP_MD_CTX_free(c);
    OPENSSL_cleanse(inner, sizeof(inner));
    return ok ? 0 : SB_EPROTO;
}

/* The HMAC's key schedule: a key longer than the block is hashed first, then
 * padded with zeros; inner absorbs key ^ 0x36.., outer key ^ 0x5c... */
static int hmac_prepare(policy_t *p)
{
    const char *name = p->alg == JWT_ALG_HS384 ? "SHA384" : p->alg == JWT_ALG_HS512 ? "SHA512" : "SHA256";
    if ((p->md_fetched = EVP_MD_fetch(NULL, name, NULL)) == NULL)
        return SB_ENOMEM;
    int block = EVP_MD_get_block_size(p->md_fetched);
    unsigned char k[256], pad[256];
    unsigned int klen = 0;
    if (block <= 0 || (size_t)block > sizeof(k))
        return SB_EINVAL;
    memset(k, 0, sizeof(k));
    if (p->keylen > (size_t)block) {
        if (EVP_Digest(p->key, p->keylen, k, &klen, p->md_fetched, NULL) != 1)
            return SB_ENOMEM;
    } else {
        memcpy(k, p->key, p->keylen);
    }
    int ok = (p->hmac_inner = EVP_MD_CTX_new()) != NULL && (p->hmac_outer = EVP_MD_CTX_new()) != NULL;
    for (int i = 0; ok && i < block; i++)
        pad[i] = (unsigned char)(k[i] ^ 0x36);
    ok = ok && EVP_DigestInit_ex(p->hmac_inner, p->md_fetched, NULL) == 1 &&
         EVP_DigestUpdate(p->hmac_inner, pad, (size_t)block) == 1;
    for (int i = 0; ok && i < block; i++)
        pad[i] = (unsigned char)(k[i] ^ 0x5c);
    ok = ok && EVP_DigestInit_ex(p->hmac_outer, p->md_fetched, NULL) == 1 &&
         EVP_DigestUpdate(p->hmac_outer, pad, (size_t)block) == 1;
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(pad, sizeof(pad));
    return ok ? 0 : SB_ENOMEM;
}

/* Our own HMAC check, in constant time. For HS* it is the only signature
 * check: libjwt (which compares with strcmp) is not used for them. */
static int check_hmac(const policy_t *p, const char *signed_part, size_t signed_len, const char *sig, size_t sig_len)
{
    unsigned char want[EVP_MAX_MD_SIZE];
    unsigned int want_len = 0;
    unsigned char got[EVP_MAX_MD_SIZE];
    size_t got_len = 0;
    if (b64url_decode(sig, sig_len, got, sizeof(got), &got_len) != 0)
        return SB_EPROTO;
    if (hmac_compute(p, (const unsigned char *)signed_part, signed_len, want, &want_len) != 0)
        return SB_EPROTO;
    if (got_len != want_len || CRYPTO_memcmp(got, want, want_len) != 0)
        return SB_EPROTO;
    return 0;
}

/* RS256 (PKCS#1 v1.5) or ES256 over header.payload with the key parsed once. A JWS ES256 signature is the raw
 * 64-byte r||s; OpenSSL verifies the DER form, so it is converted (any other length is refused, DER included). */
static int check_pkey_sig(const policy_t *p, const char *signed_part, size_t signed_len, const char *sig,
                          size_t sig_len)
{
    unsigned char raw[1024]; /* RSA up to 8192 bits */
    size_t raw_len = 0;
    if (p->verify_init == NULL || b64url_decode(sig, sig_len, raw, sizeof(raw), &raw_len) != 0)
        return SB_EPROTO;
    const unsigned char *der = raw;
    size_t der_len = raw_len;
    unsigned char *ec_der = NULL;
    if (p->fam == FAM_ES) {
        if (raw_len != 64)
            return SB_EPROTO;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(raw, 32, NULL), *s = BN_bin2bn(raw + 32, 32, NULL);
        if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            ERR_clear_error();
            return SB_ENOMEM;
        }
        int n = i2d_ECDSA_SIG(es, &ec_der); /* r and s belong to es now */
        ECDSA_SIG_free(es);
        if (n <= 0) {
            ERR_clear_error();
            return SB_ENOMEM;
        }
        der = ec_der;
        der_len = (size_t)n;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_MD_CTX_copy_ex(ctx, p->verify_init) == 1 &&
             EVP_DigestVerify(ctx, der, der_len, (const unsigned char *)signed_part, signed_len) == 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(ec_der);
    /* a failed verification leaves errors on this thread's queue, where a TLS read on the same worker would take
     * them for its own */
    ERR_clear_error();
    return ok ? 0 : SB_EPROTO;
}

static int verify_with(const policy_t *p, const char *token, size_t len, uint64_t now_ms, sb_claims_t *out,
                       uint64_t *valid_until_ms, const char **code, const char **message)
{
    if (!p->enabled)
        return fail(code, message, "token_invalid", "no JWT key is configured");
    if (len > SB_AUTH_MAX_TOKEN)
        return fail(code, message, "token_invalid", "token too long");

    /* Exactly three segments of the base64url alphabet; no padding, no NUL. */
    size_t dots[2];
    int ndots = 0;
    for (size_t i = 0; i < len; i++) {
        if (token[i] == '.') {
            if (ndots == 2)
                return fail(code, message, "token_invalid", "token must have three segments");
            dots[ndots++] = i;
        } else if (!sb_base64url_char((unsigned char)token[i])) {
            return fail(code, message, "token_invalid", "token is not base64url");
        }
    }
    if (ndots != 2)
        return fail(code, message, "token_invalid", "token must have three segments");
    size_t hlen = dots[0], plen = dots[1] - dots[0] - 1, slen = len - dots[1] - 1;
    if (hlen == 0 || plen == 0)
        return fail(code, message, "token_invalid", "token has an empty segment");

    int rc = check_header(p, token, hlen, code, message);
    if (rc != 0)
        return rc;
    if (slen == 0)
        return fail(code, message, "token_invalid", "token has no signature");
    if (plen % 4 == 1 || slen % 4 == 1)
        return fail(code, message, "token_invalid", "token is not base64url");
    if (p->fam == FAM_HS && check_hmac(p, token, dots[1], token + dots[1] + 1, slen) != 0)
        return fail(code, message, "token_invalid", "bad token signature");
    /* RS/ES keep the message they had when libjwt judged them */
    if (p->fam != FAM_HS && check_pkey_sig(p, token, dots[1], token + dots[1] + 1, slen) != 0)
        return fail(code, message, "token_invalid", "bad token signature or malformed token");

    /* Header and signature are checked: parse the payload once. */
    json_error_t jerr;
    size_t cap = plen / 4 * 3 + 3, n = 0;
    unsigned char *body = malloc(cap);
    if (body == NULL)
        return oom(code, message);
    if (b64url_decode(token + hlen + 1, plen, body, cap, &n) != 0) {
        free(body);
        return fail(code, message, "token_invalid", "bad token signature or malformed token");
    }
    json_t *root = sb_json_load_simple((const char *)body, n, 0);
    if (root == NULL)
        root = json_loadb((const char *)body, n, 0, &jerr);
    free(body);
    if (root == NULL)
        return fail(code, message, "token_invalid", "bad token signature or malformed token");
    rc = check_claims(p, root, now_ms, out, valid_until_ms, code, message);
    json_decref(root);
    return rc;
}

/* Verifies under the read lock; *gen is the key generation the answer is valid for. */
static int verify_gen(sb_auth_t *a, const char *token, size_t len, uint64_t now_ms, sb_claims_t *out,
                      uint64_t *valid_until_ms, uint64_t *gen, const char **code, const char **message)
{
    if (token == NULL || len == 0)
        return fail(code, message, "token_missing", "no token was given");
    if (a == NULL)
        return fail(code, message, "token_invalid", "no JWT key is configured");
    pthread_rwlock_rdlock(&a->lock);
    *gen = atomic_load_explicit(&a->generation, memory_order_acquire);
    int rc = verify_with(&a->pol, token, len, now_ms, out, valid_until_ms, code, message);
    pthread_rwlock_unlock(&a->lock);
    return rc;
}

int sb_auth_verify(sb_auth_t *a, const char *token, size_t len, uint64_t now_ms, sb_claims_t *out, const char **code,
                   const char **message)
{
    uint64_t until, gen;
    return verify_gen(a, token, len, now_ms, out, &until, &gen, code, message);
}

/* ---------- keys and the verifier ---------- */

static void policy_free(policy_t *p)
{
    EVP_MD_CTX_free(p->hmac_inner);
    EVP_MD_CTX_free(p->hmac_outer);
    EVP_MD_free(p->md_fetched);
    EVP_MD_CTX_free(p->verify_init);
    EVP_PKEY_free(p->pkey);
    if (p->key != NULL)
        OPENSSL_cleanse(p->key, p->keylen);
    free(p->key);
    free(p->key_path);
    free(p->issuer);
    free(p->audience);
    memset(p, 0, sizeof(*p));
}

/* Reads the file, accepts a PEM public key or a certificate, checks the key
 * fits the algorithm, and keeps the parsed key. */
static int load_public_key(policy_t *p, const char *path, const char **why)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        *why = "--jwt-public-key: cannot open the file";
        return SB_EINVAL;
    }
    char *text = malloc(MAX_KEY_FILE + 1);
    if (text == NULL) {
        (void)fclose(f);
        return SB_ENOMEM;
    }
    size_t n = fread(text, 1, MAX_KEY_FILE + 1, f);
    int rerr = ferror(f);
    (void)fclose(f);
    if (rerr || n > MAX_KEY_FILE) {
        free(text);
        *why = rerr ? "--jwt-public-key: cannot read the file" : "--jwt-public-key: file larger than 64 KiB";
        return SB_EINVAL;
    }

    int rc = SB_EINVAL;
    EVP_PKEY *pk = NULL;
    BIO *in = BIO_new_mem_buf(text, (int)n);
    if (in == NULL) {
        rc = SB_ENOMEM;
        goto done;
    }
    pk = PEM_read_bio_PUBKEY(in, NULL, NULL, NULL);
    if (pk == NULL) {
        BIO_free(in);
        in = BIO_new_mem_buf(text, (int)n);
        X509 *x = in != NULL ? PEM_read_bio_X509(in, NULL, NULL, NULL) : NULL;
        if (x != NULL) {
            pk = X509_get_pubkey(x);
            X509_free(x);
        }
    }
    if (pk == NULL) {
        *why = "--jwt-public-key: not a PEM public key or certificate";
        goto done;
    }
    if (p->fam == FAM_RS) {
        if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
            *why = "--jwt-public-key: RS256 needs an RSA key";
            goto done;
        }
        if (EVP_PKEY_get_bits(pk) < 2048) {
            *why = "--jwt-public-key: RSA keys shorter than 2048 bits are refused";
            goto done;
        }
    } else {
        char group[64];
        size_t glen = 0;
        if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC || EVP_PKEY_get_group_name(pk, group, sizeof(group), &glen) != 1 ||
            strcmp(group, "prime256v1") != 0) {
            *why = "--jwt-public-key: ES256 needs an EC key on P-256";
            goto done;
        }
    }
    EVP_PKEY_CTX *pctx = NULL;
    if ((p->md_fetched = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL || (p->verify_init = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestVerifyInit(p->verify_init, &pctx, p->md_fetched, NULL, pk) != 1 ||
        (p->fam == FAM_RS && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0)) {
        rc = SB_ENOMEM;
        goto done;
    }
    p->pkey = pk;
    pk = NULL;
    rc = 0;
done:
    if (rc == SB_ENOMEM)
        *why = "out of memory";
    ERR_clear_error();
    BIO_free(in);
    EVP_PKEY_free(pk);
    free(text);
    return rc;
}

static int policy_build(policy_t *p, const char *alg, const char *secret, const char *key_path, const char *issuer,
                        const char *audience, uint64_t leeway_ms, const char **why)
{
    memset(p, 0, sizeof(*p));
    if (alg == NULL)
        alg = "HS256";
    static const struct {
        const char *name;
        enum family fam;
        jwt_alg_t alg;
    } algs[] = {
        {"HS256", FAM_HS, JWT_ALG_HS256}, {"HS384", FAM_HS, JWT_ALG_HS384}, {"HS512", FAM_HS, JWT_ALG_HS512},
        {"RS256", FAM_RS, JWT_ALG_RS256}, {"ES256", FAM_ES, JWT_ALG_ES256},
    };
    size_t i;
    for (i = 0; i < SB_ARRAY_SIZE(algs); i++)
        if (strcmp(alg, algs[i].name) == 0)
            break;
    if (i == SB_ARRAY_SIZE(algs)) {
        *why = "--jwt-alg: must be one of HS256, HS384, HS512, RS256, ES256";
        return SB_EINVAL;
    }
    p->fam = algs[i].fam;
    p->alg = algs[i].alg;
    memcpy(p->alg_name, algs[i].name, strlen(algs[i].name) + 1);
    p->md = p->alg == JWT_ALG_HS384 ? EVP_sha384() : p->alg == JWT_ALG_HS512 ? EVP_sha512() : EVP_sha256();
    p->leeway_ms = leeway_ms;
    if ((issuer != NULL && (p->issuer = strdup(issuer)) == NULL) ||
        (audience != NULL && (p->audience = strdup(audience)) == NULL))
        goto nomem;

    if (secret == NULL && key_path == NULL)
        return 0; /* anonymous mode */
    p->enabled = 1;
    if (p->fam == FAM_HS) {
        if (secret == NULL || secret[0] == '\0') {
            *why = key_path != NULL ? "--jwt-public-key: is for RS256/ES256, not --jwt-alg HS*"
                                    : "--jwt-secret: must not be empty";
            goto bad;
        }
        p->keylen = strlen(secret);
        if ((p->key = malloc(p->keylen + 1)) == NULL)
            goto nomem;
        memcpy(p->key, secret, p->keylen + 1);
        int hrc = hmac_prepare(p);
        if (hrc != 0) {
            policy_free(p);
            *why = "cannot prepare the HMAC key";
            return hrc;
        }
        return 0;
    }
    if (key_path == NULL) {
        *why = "--jwt-secret: is for HS256/HS384/HS512, not RS256/ES256";
        goto bad;
    }
    if ((p->key_path = strdup(key_path)) == NULL)
        goto nomem;
    int rc = load_public_key(p, key_path, why);
    if (rc != 0) {
        policy_free(p);
        return rc;
    }
    return 0;
nomem:
    *why = "out of memory";
    policy_free(p);
    return SB_ENOMEM;
bad:
    policy_free(p);
    return SB_EINVAL;
}

sb_auth_t *sb_auth_create(const sb_config_t *cfg, const char **why)
{
    const char *dummy;
    if (why == NULL)
        why = &dummy;
    sb_auth_t *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        *why = "out of memory";
        return NULL;
    }
    if (policy_build(&a->pol, cfg->jwt_alg, cfg->jwt_secret, cfg->jwt_public_key, cfg->jwt_issuer, cfg->jwt_audience,
                     cfg->jwt_leeway_ms, why) != 0) {
        free(a);
        return NULL;
    }
    /* Verifications never stop under load; prefer the writer so a SIGHUP
     * reload is not starved by a stream of readers. */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int lrc = pthread_rwlock_init(&a->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (lrc != 0 || pthread_mutex_init(&a->reload, NULL) != 0) {
        if (lrc == 0)
            pthread_rwlock_destroy(&a->lock);
        policy_free(&a->pol);
        free(a);
        *why = "cannot create a lock";
        return NULL;
    }
    a->enabled = a->pol.enabled;
    atomic_init(&a->generation, 1);
    atomic_init(&a->cache_tokens, uses_cache(&a->pol));
    return a;
}

void sb_auth_free(sb_auth_t *a)
{
    if (a == NULL)
        return;
    policy_free(&a->pol);
    pthread_rwlock_destroy(&a->lock);
    pthread_mutex_destroy(&a->reload);
    free(a);
}

int sb_auth_enabled(const sb_auth_t *a)
{
    return a != NULL && a->enabled;
}

/* Builds the new policy outside the write lock (file I/O, PEM parsing), then swaps. */
static int reload_with(sb_auth_t *a, const char *alg, const char *secret, const char *key_path, const char *issuer,
                       const char *audience, uint64_t leeway_ms, const char **why)
{
    policy_t np;
    int rc = policy_build(&np, alg, secret, key_path, issuer, audience, leeway_ms, why);
    if (rc != 0)
        return rc;
    if (np.enabled != a->enabled) {
        policy_free(&np);
        *why = "a reload cannot switch between anonymous mode and JWT keys: restart";
        return SB_EINVAL;
    }
    policy_t old;
    pthread_rwlock_wrlock(&a->lock);
    old = a->pol;
    a->pol = np;
    /* before the generation: a cache that sees the new generation also sees the new family */
    atomic_store(&a->cache_tokens, uses_cache(&a->pol));
    atomic_fetch_add_explicit(&a->generation, 1, memory_order_release);
    pthread_rwlock_unlock(&a->lock);
    policy_free(&old);
    return 0;
}

int sb_auth_reload(sb_auth_t *a, const char **why)
{
    const char *dummy;
    if (why == NULL)
        why = &dummy;
    if (a == NULL) {
        *why = "no verifier";
        return SB_EINVAL;
    }
    pthread_mutex_lock(&a->reload);
    /* Only reloads write a->pol and we hold the reload mutex: reading it unlocked is safe.
     * The secret is copied because the build may fail halfway and the old policy stays. */
    const policy_t *p = &a->pol;
    char *secret = NULL;
    int rc = 0;
    if (p->fam == FAM_HS && p->enabled) {
        secret = malloc(p->keylen + 1);
        if (secret == NULL) {
            rc = SB_ENOMEM;
            *why = "out of memory";
        } else {
            memcpy(secret, p->key, p->keylen);
            secret[p->keylen] = '\0';
        }
    }
    if (rc == 0)
        rc = reload_with(a, p->alg_name, secret, p->key_path, p->issuer, p->audience, p->leeway_ms, why);
    if (secret != NULL) {
        OPENSSL_cleanse(secret, strlen(secret));
        free(secret);
    }
    pthread_mutex_unlock(&a->reload);
    return rc;
}

int sb_auth_reload_from(sb_auth_t *a, const sb_config_t *cfg, const char **why)
{
    const char *dummy;
    if (why == NULL)
        why = &dummy;
    if (a == NULL || cfg == NULL) {
        *why = "no verifier";
        return SB_EINVAL;
    }
    pthread_mutex_lock(&a->reload);
    int rc = reload_with(a, cfg->jwt_alg, cfg->jwt_secret, cfg->jwt_public_key, cfg->jwt_issuer, cfg->jwt_audience,
                         cfg->jwt_leeway_ms, why);
    pthread_mutex_unlock(&a->reload);
    return rc;
}

/* ---------- the cache ---------- */

sb_auth_cache_t *sb_auth_cache_create(size_t max)
{
    sb_auth_cache_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    sb_map_init(&c->map);
    c->max = max;
    return c;
}

static void lru_unlink(sb_auth_cache_t *c, centry_t *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(sb_auth_cache_t *c, centry_t *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head != NULL)
        c->head->prev = e;
    c->head = e;
    if (c->tail == NULL)
        c->tail = e;
}

static void entry_drop(sb_auth_cache_t *c, centry_t *e)
{
    sb_map_del(&c->map, (const char *)e->key, DIGEST_LEN);
    lru_unlink(c, e);
    sb_claims_free(&e->claims);
    free(e);
    c->count--;
}

static void cache_clear(sb_auth_cache_t *c)
{
    while (c->head != NULL)
        entry_drop(c, c->head);
}

void sb_auth_cache_free(sb_auth_cache_t *c)
{
    if (c == NULL)
        return;
    cache_clear(c);
    sb_map_free(&c->map);
    free(c);
}

size_t sb_auth_cache_hits(const sb_auth_cache_t *c)
{
    return c != NULL ? c->hits : 0;
}

size_t sb_auth_cache_size(const sb_auth_cache_t *c)
{
    return c != NULL ? c->count : 0;
}

/* Best effort: a token that cannot be cached is still verified. */
static void cache_insert(sb_auth_cache_t *c, const unsigned char *digest, const sb_claims_t *claims,
                         uint64_t valid_until_ms)
{
    centry_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return;
    memcpy(e->key, digest, DIGEST_LEN);
    e->valid_until_ms = valid_until_ms;
    if (sb_claims_copy(&e->claims, claims) != 0) {
        free(e);
        return;
    }
    if (sb_map_set(&c->map, (const char *)e->key, DIGEST_LEN, e) != 0) {
        sb_claims_free(&e->claims);
        free(e);
        return;
    }
    lru_push_front(c, e);
    c->count++;
    while (c->count > c->max && c->tail != NULL)
        entry_drop(c, c->tail);
}

/* SHA-256 for the cache key, fetched once: EVP_sha256() in EVP_Digest makes OpenSSL 3 look the
 * implementation up again on every call. */
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_md;
static EVP_MD_CTX *sha256_init; /* initialised once; each digest starts from a copy (only read, so shared) */

static void sha256_fetch(void)
{
    /* kept for the process's lifetime */
    if ((sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL)) != NULL && (sha256_init = EVP_MD_CTX_new()) != NULL &&
        EVP_DigestInit_ex(sha256_init, sha256_md, NULL) != 1) {
        EVP_MD_CTX_free(sha256_init);
        sha256_init = NULL;
    }
}

static int cache_digest(const char *token, size_t len, unsigned char *digest)
{
    unsigned int dlen = 0;
    pthread_once(&sha256_once, sha256_fetch);
    if (sha256_init == NULL)
        return EVP_Digest(token, len, digest, &dlen, EVP_sha256(), NULL) == 1 && dlen == DIGEST_LEN ? 0 : SB_EIO;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c != NULL && EVP_MD_CTX_copy_ex(c, sha256_init) == 1 && EVP_DigestUpdate(c, token, len) == 1 &&
             EVP_DigestFinal_ex(c, digest, &dlen) == 1 && dlen == DIGEST_LEN;
    EVP_MD_CTX_free(c);
    return ok ? 0 : SB_EIO;
}

int sb_auth_verify_cached(sb_auth_t *a, sb_auth_cache_t *c, const char *token, size_t len, uint64_t now_ms,
                          sb_claims_t *out, const char **code, const char **message)
{
    if (c == NULL || c->max == 0 || token == NULL || len == 0 || len > SB_AUTH_MAX_TOKEN || a == NULL)
        return sb_auth_verify(a, token, len, now_ms, out, code, message);

    uint64_t gen = atomic_load_explicit(&a->generation, memory_order_acquire);
    if (gen != c->generation) {
        cache_clear(c);
        c->generation = gen;
    }
    /* HS* skips the cache (uses_cache says why). After the generation check, so that a reload from RS/ES to HS
     * still frees the entries of the old key on the next call. */
    if (!atomic_load(&a->cache_tokens))
        return sb_auth_verify(a, token, len, now_ms, out, code, message);
    unsigned char digest[DIGEST_LEN];
    if (cache_digest(token, len, digest) != 0)
        return sb_auth_verify(a, token, len, now_ms, out, code, message);

    centry_t *e = sb_map_get(&c->map, (const char *)digest, DIGEST_LEN);
    if (e != NULL) {
        if (now_ms < e->valid_until_ms) {
            sb_claims_t copy;
            if (sb_claims_copy(&copy, &e->claims) != 0)
                return oom(code, message);
            *out = copy;
            lru_unlink(c, e);
            lru_push_front(c, e);
            c->hits++;
            return 0;
        }
        entry_drop(c, e); /* expired: verify again, which reports token_expired */
    }

    sb_claims_t claims;
    uint64_t until = 0, vgen = 0;
    int rc = verify_gen(a, token, len, now_ms, &claims, &until, &vgen, code, message);
    if (rc != 0)
        return rc;
    /* A reload between our generation check and the verification: the answer
     * is right for the new key but the cache belongs to the old one. */
    if (vgen == c->generation)
        cache_insert(c, digest, &claims, until);
    *out = claims;
    return 0;
}

/* ---------- room patterns ---------- */

/* Past one UTF-8 sequence: the lead byte and up to three continuation bytes. */
static const char *utf8_next(const char *s)
{
    s++;
    for (int i = 0; i < 3 && ((unsigned char)*s & 0xC0) == 0x80; i++)
        s++;
    return s;
}

/* Iterative glob with one backtrack point (the last '*'): O(len(p) * len(s)),
 * no recursion for a hostile pattern to exhaust. */
static int glob_match(const char *p, const char *s)
{
    const char *star_p = NULL, *star_s = NULL;
    for (;;) {
        if (*p == '*') {
            while (*p == '*')
                p++;
            star_p = p;
            star_s = s;
            continue;
        }
        if (*s == '\0')
            return *p == '\0';
        if (*p == '?') {
            p++;
            s = utf8_next(s);
            continue;
        }
        if (*p != '\0' && *p == *s) {
            p++;
            s++;
            continue;
        }
        if (star_p == NULL)
            return 0;
        /* Let the last '*' take one more character (whole UTF-8 sequences,
         * so '?' always starts on a character boundary). */
        star_s = utf8_next(star_s);
        s = star_s;
        p = star_p;
    }
}

int sb_auth_match(const sb_strlist_t *patterns, const char *room)
{
    if (patterns == NULL || room == NULL)
        return 0;
    for (size_t i = 0; i < patterns->count; i++)
        if (patterns->items[i] != NULL && glob_match(patterns->items[i], room))
            return 1;
    return 0;
}
