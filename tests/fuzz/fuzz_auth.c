/*
 * fuzz_auth.c — libFuzzer target for JWT verification and the claim checks
 * (src/auth.c).
 *
 * The first input byte picks what the rest drives (mode = (byte - '0') % 7, so
 * the seed files start with a readable digit '0'..'6'):
 *   0  a raw token, verified with an HS256 secret (plain and through
 *      sb_auth_verify_cached, which skips the cache for HS*)
 *   1  a raw token, verified with an RS256 public key (plain and cached)
 *   2  a raw token, verified with an ES256 public key (plain and cached)
 *   3  a payload (JSON text) that this target signs with the HS256 secret, so
 *      the claim checks behind the signature are reached
 *   4  "HEADER\nPAYLOAD": both JSON texts, signed here with the HS256 secret
 *      (drives our header parse and libjwt's on signed tokens)
 *   5  a payload signed here with the RS256 private key (slower: RSA signing),
 *      verified plain and cached, so the cache's hits are reached
 *   6  "PATTERN\0ROOM" for sb_auth_match
 * Keys are made once per process in LLVMFuzzerInitialize. Properties checked:
 * a success returns claims within the documented bounds; a cached answer
 * agrees with the plain one; a failure names one of the documented codes.
 */
#include "switchboard/auth.h"
#include "switchboard/common.h"
#include "switchboard/config.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SECRET "fuzz-secret-0123456789"
#define NOW_MS 1700000000000ULL

static sb_auth_t *hs_auth, *rs_auth, *es_auth;
static sb_auth_cache_t *hs_cache, *rs_cache, *es_cache; /* one per verifier, as one per key in a worker */
static EVP_PKEY *rs_key;

static sb_auth_t *make(const char *alg, const char *secret, EVP_PKEY *pk)
{
    char path[] = "/tmp/fuzz_auth_key_XXXXXX";
    sb_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.jwt_alg = (char *)alg;
    cfg.jwt_secret = (char *)secret;
    cfg.jwt_issuer = NULL;
    cfg.jwt_audience = NULL;
    cfg.jwt_leeway_ms = 1000;
    if (pk != NULL) {
        int fd = mkstemp(path);
        FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (f == NULL || PEM_write_PUBKEY(f, pk) != 1)
            abort();
        fclose(f);
        cfg.jwt_public_key = path;
    }
    const char *why = NULL;
    sb_auth_t *a = sb_auth_create(&cfg, &why);
    if (pk != NULL)
        unlink(path);
    if (a == NULL) {
        fprintf(stderr, "fuzz_auth: sb_auth_create(%s): %s\n", alg, why);
        abort();
    }
    return a;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rs_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (rs_key == NULL || ec == NULL)
        abort();
    hs_auth = make("HS256", SECRET, NULL);
    rs_auth = make("RS256", NULL, rs_key);
    es_auth = make("ES256", NULL, ec);
    EVP_PKEY_free(ec);
    hs_cache = sb_auth_cache_create(8);
    rs_cache = sb_auth_cache_create(8);
    es_cache = sb_auth_cache_create(8);
    if (hs_cache == NULL || rs_cache == NULL || es_cache == NULL)
        abort();
    return 0;
}

static const char *const CODES[] = {"token_missing",       "token_invalid", "token_algorithm", "token_expired",
                                    "token_not_yet_valid", "token_issuer",  "token_audience",  "token_claims"};

static void check_code(const char *code, const char *message)
{
    if (code == NULL || message == NULL || message[0] == '\0')
        abort();
    for (size_t i = 0; i < SB_ARRAY_SIZE(CODES); i++)
        if (strcmp(code, CODES[i]) == 0)
            return;
    abort();
}

static void check_list(const sb_strlist_t *l)
{
    if (l->count > SB_AUTH_MAX_CLAIM_ITEMS || (l->count > 0 && l->items == NULL))
        abort();
    for (size_t i = 0; i < l->count; i++) {
        size_t n = strlen(l->items[i]);
        if (n == 0 || n > SB_AUTH_MAX_CLAIM_STR)
            abort();
        /* Exercise the matcher on claim-shaped input; a pattern matches itself
         * when it has no '?' (a '*' may match the literal '*'). */
        if (strchr(l->items[i], '?') == NULL && !sb_auth_match(l, l->items[i]))
            abort();
    }
}

static void check_claims(const sb_claims_t *c)
{
    size_t n = c->sub != NULL ? strlen(c->sub) : 0;
    if (n == 0 || n > SB_AUTH_MAX_CLAIM_STR)
        abort();
    check_list(&c->rooms);
    check_list(&c->publish);
    check_list(&c->join);
    for (size_t i = 0; i < c->join.count; i++)
        (void)sb_auth_match(&c->rooms, c->join.items[i]);
}

/* cache NULL: the plain verification only */
static void verify(sb_auth_t *a, sb_auth_cache_t *cache, const char *tok, size_t len)
{
    sb_claims_t c;
    const char *code = NULL, *msg = NULL;
    int rc = sb_auth_verify(a, tok, len, NOW_MS, &c, &code, &msg);
    if (rc == 0)
        check_claims(&c);
    else if (rc == SB_EINVAL)
        check_code(code, msg);
    else if (rc != SB_ENOMEM)
        abort();
    if (cache != NULL) {
        /* Twice: a miss then (for a valid token) a hit; both must agree with the plain answer. */
        for (int k = 0; k < 2; k++) {
            sb_claims_t cc;
            const char *code2 = NULL, *msg2 = NULL;
            int rc2 = sb_auth_verify_cached(a, cache, tok, len, NOW_MS, &cc, &code2, &msg2);
            if (rc2 != rc)
                abort();
            if (rc2 == 0) {
                if (strcmp(cc.sub, c.sub) != 0 || cc.exp != c.exp || cc.rooms.count != c.rooms.count)
                    abort();
                sb_claims_free(&cc);
            } else if (rc2 == SB_EINVAL && strcmp(code2, code) != 0) {
                abort();
            }
        }
    }
    if (rc == 0)
        sb_claims_free(&c);
}

/* Unpadded base64url; out needs 4*(n+2)/3+1 bytes. */
static size_t b64u(const unsigned char *in, size_t n, char *out)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = A[(v >> 18) & 63];
        out[o++] = A[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = A[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = A[v & 63];
    }
    out[o] = '\0';
    return o;
}

/* Builds "b64u(header).b64u(payload).b64u(sig)" signed with HS256 (pk NULL) or RS256. */
static void sign_and_verify(const unsigned char *hdr, size_t hlen, const unsigned char *pl, size_t plen, EVP_PKEY *pk)
{
    size_t cap = 4 * (hlen + plen + 512 + 4) / 3 + 16;
    char *tok = malloc(cap);
    if (tok == NULL)
        return;
    size_t o = b64u(hdr, hlen, tok);
    tok[o++] = '.';
    o += b64u(pl, plen, tok + o);
    unsigned char sig[512];
    size_t siglen = 0;
    if (pk == NULL) {
        unsigned int l = 0;
        if (HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (unsigned char *)tok, o, sig, &l) == NULL)
            abort();
        siglen = l;
    } else {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        siglen = sizeof(sig);
        if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pk) != 1 ||
            EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)tok, o) != 1)
            abort();
        EVP_MD_CTX_free(ctx);
    }
    tok[o++] = '.';
    o += b64u(sig, siglen, tok + o);
    verify(pk == NULL ? hs_auth : rs_auth, pk == NULL ? hs_cache : rs_cache, tok, o);
    free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = (uint8_t)(data[0] - '0') % 7;
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    /* Past the token bound everything is refused up front; keep the fuzzer near it. */
    if (n > SB_AUTH_MAX_TOKEN + 64)
        return 0;
    static const char HS_HEADER[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    static const char RS_HEADER[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
    switch (mode) {
    case 0:
        verify(hs_auth, hs_cache, (const char *)in, n);
        break;
    case 1:
        verify(rs_auth, rs_cache, (const char *)in, n);
        break;
    case 2:
        verify(es_auth, es_cache, (const char *)in, n);
        break;
    case 3:
        sign_and_verify((const unsigned char *)HS_HEADER, sizeof(HS_HEADER) - 1, in, n, NULL);
        break;
    case 4: {
        const uint8_t *nl = memchr(in, '\n', n);
        if (nl == NULL)
            return 0;
        size_t hl = (size_t)(nl - in);
        sign_and_verify(in, hl, nl + 1, n - hl - 1, NULL);
        break;
    }
    case 5:
        if (n > 2048) /* RSA signing is slow; claims need no more */
            return 0;
        sign_and_verify((const unsigned char *)RS_HEADER, sizeof(RS_HEADER) - 1, in, n, rs_key);
        break;
    case 6: {
        /* sb_auth_match wants C strings: pattern and room split at the first NUL. */
        char *buf = malloc(n + 2);
        if (buf == NULL)
            return 0;
        memcpy(buf, in, n);
        buf[n] = '\0';
        buf[n + 1] = '\0';
        size_t pl = strlen(buf);
        char *items[] = {buf};
        sb_strlist_t l = {items, 1};
        int m = sb_auth_match(&l, buf + pl + 1);
        /* A pattern without wildcards matches exactly itself. */
        if (strpbrk(buf, "*?") == NULL && m != (strcmp(buf, buf + pl + 1) == 0))
            abort();
        /* '*' alone matches everything. */
        char *star[] = {"*"};
        sb_strlist_t sl = {star, 1};
        if (!sb_auth_match(&sl, buf + pl + 1))
            abort();
        free(buf);
        break;
    }
    }
    return 0;
}
