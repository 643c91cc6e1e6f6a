/*
 * test_auth.c — unit tests for JWT verification, the verified-token cache and
 * room patterns (src/auth.c).
 *
 * Every token is made here: HS* with OpenSSL's HMAC, RS256 / ES256 with
 * EVP_DigestSign (ES256 converted from DER to the raw r||s JWS wants), keys
 * generated per run and written as PEM files to a temporary directory. A few
 * tokens made by libjwt's own encoder check that both signers agree.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "switchboard/auth.h"
#include "switchboard/common.h"
#include "switchboard/config.h"

#define NOW_S 1700000000LL
#define NOW_MS ((uint64_t)NOW_S * 1000)
#define SECRET "correct horse battery staple"

static char tmpdir[64];
static char rsa_path[128], rsa2_path[128], ec_path[128], ec2_path[128], swap_path[128];
static EVP_PKEY *rsa, *rsa2, *ec, *ec2;
static char *rsa_pub_pem; /* the text of rsa_path: the HMAC key of the alg-confusion attack */

/* ---------- signer ---------- */

static char *b64u(const void *data, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    assert_non_null(out);
    int len = EVP_EncodeBlock((unsigned char *)out, data, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    for (int i = 0; i < len; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return out;
}

/* "b64u(header).b64u(payload)" */
static char *signing_input(const char *header, const char *payload)
{
    char *h = b64u(header, strlen(header)), *p = b64u(payload, strlen(payload));
    size_t n = strlen(h) + strlen(p) + 2;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s.%s", h, p);
    free(h);
    free(p);
    return s;
}

static char *with_sig(char *input, const unsigned char *sig, size_t siglen)
{
    char *s = b64u(sig, siglen);
    size_t n = strlen(input) + strlen(s) + 2;
    char *t = malloc(n);
    assert_non_null(t);
    snprintf(t, n, "%s.%s", input, s);
    free(s);
    free(input);
    return t;
}

static char *tok_hmac_hdr(const char *header, const EVP_MD *md, const void *key, size_t keylen, const char *payload)
{
    char *in = signing_input(header, payload);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    assert_non_null(HMAC(md, key, (int)keylen, (unsigned char *)in, strlen(in), mac, &maclen));
    return with_sig(in, mac, maclen);
}

static char *tok_hs(const char *alg, const char *secret, const char *payload)
{
    char header[64];
    snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    const EVP_MD *md = strstr(alg, "384") ? EVP_sha384() : strstr(alg, "512") ? EVP_sha512() : EVP_sha256();
    return tok_hmac_hdr(header, md, secret, strlen(secret), payload);
}

static char *tok_pk_hdr(const char *header, EVP_PKEY *k, const char *payload)
{
    char *in = signing_input(header, payload);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
    size_t len = 0;
    assert_int_equal(EVP_DigestSign(ctx, NULL, &len, (unsigned char *)in, strlen(in)), 1);
    unsigned char *sig = malloc(len);
    assert_non_null(sig);
    assert_int_equal(EVP_DigestSign(ctx, sig, &len, (unsigned char *)in, strlen(in)), 1);
    EVP_MD_CTX_free(ctx);
    if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC) {
        /* JWS ES256 is r||s, 32 bytes each, not the DER OpenSSL gives. */
        const unsigned char *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)len);
        assert_non_null(es);
        unsigned char raw[64];
        assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32), 32);
        assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32), 32);
        ECDSA_SIG_free(es);
        free(sig);
        return with_sig(in, raw, 64);
    }
    char *t = with_sig(in, sig, len);
    free(sig);
    return t;
}

static char *tok_pk(const char *alg, EVP_PKEY *k, const char *payload)
{
    char header[64];
    snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    return tok_pk_hdr(header, k, payload);
}

/* A payload valid at NOW_S for an hour, with `extra` members appended. */
static const char *payload_with(char *buf, size_t n, const char *extra)
{
    int r = snprintf(buf, n, "{\"sub\":\"alice\",\"exp\":%lld%s%s}", NOW_S + 3600, extra[0] ? "," : "", extra);
    assert_true(r > 0 && (size_t)r < n); /* the payload must fit: a cut one would test something else */
    return buf;
}

/* ---------- keys ---------- */

static void write_pub(EVP_PKEY *k, const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PUBKEY(f, k), 1);
    fclose(f);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sb-test-auth-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ec2 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (rsa == NULL || rsa2 == NULL || ec == NULL || ec2 == NULL)
        return -1;
    snprintf(rsa_path, sizeof(rsa_path), "%s/rsa.pem", tmpdir);
    snprintf(rsa2_path, sizeof(rsa2_path), "%s/rsa2.pem", tmpdir);
    snprintf(ec_path, sizeof(ec_path), "%s/ec.pem", tmpdir);
    snprintf(ec2_path, sizeof(ec2_path), "%s/ec2.pem", tmpdir);
    snprintf(swap_path, sizeof(swap_path), "%s/swap.pem", tmpdir);
    write_pub(rsa, rsa_path);
    write_pub(rsa2, rsa2_path);
    write_pub(ec, ec_path);
    write_pub(ec2, ec2_path);
    rsa_pub_pem = read_text(rsa_path);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    const char *files[] = {rsa_path, rsa2_path, ec_path, ec2_path, swap_path};
    for (size_t i = 0; i < SB_ARRAY_SIZE(files); i++)
        unlink(files[i]);
    rmdir(tmpdir);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(rsa2);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ec2);
    free(rsa_pub_pem);
    return 0;
}

/* ---------- verifier helpers ---------- */

typedef struct opts {
    const char *alg, *secret, *key, *iss, *aud;
    uint64_t leeway_ms;
} opts_t;

static sb_config_t cfg_of(const opts_t *o)
{
    sb_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.jwt_alg = (char *)(o->alg ? o->alg : "HS256");
    cfg.jwt_secret = (char *)o->secret;
    cfg.jwt_public_key = (char *)o->key;
    cfg.jwt_issuer = (char *)o->iss;
    cfg.jwt_audience = (char *)o->aud;
    cfg.jwt_leeway_ms = o->leeway_ms;
    return cfg;
}

static sb_auth_t *mk(opts_t o)
{
    sb_config_t cfg = cfg_of(&o);
    const char *why = NULL;
    sb_auth_t *a = sb_auth_create(&cfg, &why);
    if (a == NULL)
        fail_msg("sb_auth_create: %s", why);
    return a;
}

static const char *mk_fails(opts_t o)
{
    sb_config_t cfg = cfg_of(&o);
    const char *why = NULL;
    sb_auth_t *a = sb_auth_create(&cfg, &why);
    assert_null(a);
    assert_non_null(why);
    return why;
}

/* Verifies at `now_ms`; returns "ok" or the error code. The token is freed. */
static const char *check_at(sb_auth_t *a, char *tok, uint64_t now_ms)
{
    sb_claims_t c;
    memset(&c, 0x5a, sizeof(c));
    const char *code = "unset", *msg = "unset";
    int rc = sb_auth_verify(a, tok, strlen(tok), now_ms, &c, &code, &msg);
    free(tok);
    if (rc == 0) {
        sb_claims_free(&c);
        return "ok";
    }
    assert_int_equal(rc, SB_EINVAL);
    assert_non_null(msg);
    assert_true(strlen(msg) > 0);
    /* On failure *out is untouched. */
    const unsigned char *b = (const unsigned char *)&c;
    for (size_t i = 0; i < sizeof(c); i++)
        assert_int_equal(b[i], 0x5a);
    return code;
}

static const char *check(sb_auth_t *a, char *tok)
{
    return check_at(a, tok, NOW_MS);
}

static char *hs(const char *extra)
{
    char p[2048];
    return tok_hs("HS256", SECRET, payload_with(p, sizeof(p), extra));
}

/* ---------- valid tokens ---------- */

static void assert_full_claims(sb_auth_t *a, char *tok)
{
    sb_claims_t c;
    const char *code = NULL, *msg = NULL;
    assert_int_equal(sb_auth_verify(a, tok, strlen(tok), NOW_MS, &c, &code, &msg), 0);
    free(tok);
    assert_string_equal(c.sub, "alice");
    assert_int_equal(c.exp, NOW_S + 3600);
    assert_int_equal(c.rooms.count, 2);
    assert_string_equal(c.rooms.items[0], "lobby");
    assert_string_equal(c.rooms.items[1], "team:*");
    assert_int_equal(c.publish.count, 1);
    assert_string_equal(c.publish.items[0], "chat:?");
    assert_int_equal(c.join.count, 0);
    assert_null(c.join.items);
    sb_claims_free(&c);
    assert_null(c.sub);
}

static const char *FULL = "\"rooms\":[\"lobby\",\"team:*\"],\"publish\":[\"chat:?\"],\"iat\":1699999000";

static void test_valid_hs(void **state)
{
    (void)state;
    const char *algs[] = {"HS256", "HS384", "HS512"};
    for (size_t i = 0; i < 3; i++) {
        sb_auth_t *a = mk((opts_t){.alg = algs[i], .secret = SECRET});
        assert_true(sb_auth_enabled(a));
        char p[512];
        assert_full_claims(a, tok_hs(algs[i], SECRET, payload_with(p, sizeof(p), FULL)));
        sb_auth_free(a);
    }
    /* Secrets longer than the digest's block (64 or 128 bytes) are hashed first (RFC 2104): the pre-keyed
     * HMAC states must agree with OpenSSL's HMAC(), and a secret one byte off must not. */
    char longkey[201], other[201];
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    memcpy(other, longkey, sizeof(other));
    other[199] = 'j';
    for (size_t i = 0; i < 3; i++) {
        sb_auth_t *a = mk((opts_t){.alg = algs[i], .secret = longkey});
        char p[512];
        assert_full_claims(a, tok_hs(algs[i], longkey, payload_with(p, sizeof(p), FULL)));
        assert_string_equal(check(a, tok_hs(algs[i], other, payload_with(p, sizeof(p), FULL))), "token_invalid");
        sb_auth_free(a);
    }
}

static void test_valid_rs256_es256(void **state)
{
    (void)state;
    char p[512];
    payload_with(p, sizeof(p), FULL);
    sb_auth_t *a = mk((opts_t){.alg = "RS256", .key = rsa_path});
    assert_full_claims(a, tok_pk("RS256", rsa, p));
    sb_auth_free(a);
    a = mk((opts_t){.alg = "ES256", .key = ec_path});
    assert_full_claims(a, tok_pk("ES256", ec, p));
    sb_auth_free(a);
}

/* Tokens from libjwt's encoder pass too: both signers agree on the format,
 * in particular ES256's raw 64-byte r||s. */
static void test_libjwt_encoded_tokens(void **state)
{
    (void)state;
    jwt_t *j = NULL;
    assert_int_equal(jwt_new(&j), 0);
    assert_int_equal(jwt_add_grant(j, "sub", "bob"), 0);
    assert_int_equal(jwt_add_grant_int(j, "exp", (long)(NOW_S + 60)), 0);
    assert_int_equal(jwt_add_grants_json(j, "{\"join\":[\"r1\"]}"), 0);
    assert_int_equal(jwt_set_alg(j, JWT_ALG_HS384, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
    char *t = jwt_encode_str(j);
    assert_non_null(t);
    sb_auth_t *a = mk((opts_t){.alg = "HS384", .secret = SECRET});
    sb_claims_t c;
    assert_int_equal(sb_auth_verify(a, t, strlen(t), NOW_MS, &c, NULL, NULL), 0);
    assert_string_equal(c.sub, "bob");
    assert_int_equal(c.join.count, 1);
    assert_string_equal(c.join.items[0], "r1");
    sb_claims_free(&c);
    sb_auth_free(a);
    free(t);

    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, ec, NULL, NULL, 0, NULL, NULL), 1);
    char *pem;
    long pemlen = BIO_get_mem_data(b, &pem);
    assert_int_equal(jwt_set_alg(j, JWT_ALG_ES256, (const unsigned char *)pem, (int)pemlen), 0);
    t = jwt_encode_str(j);
    BIO_free(b);
    assert_non_null(t);
    assert_int_equal(strlen(strrchr(t, '.') + 1), 86); /* 64 bytes, unpadded base64url */
    a = mk((opts_t){.alg = "ES256", .key = ec_path});
    assert_int_equal(sb_auth_verify(a, t, strlen(t), NOW_MS, &c, NULL, NULL), 0);
    assert_string_equal(c.sub, "bob");
    sb_claims_free(&c);
    sb_auth_free(a);
    free(t);
    jwt_free(j);
}

/* ---------- times ---------- */

static void test_expiry(void **state)
{
    (void)state;
    sb_auth_t *a = mk((opts_t){.secret = SECRET});
    char p[256];
    snprintf(p, sizeof(p), "{\"sub\":\"a\",\"exp\":%lld}", NOW_S - 1);
    assert_string_equal(check(a, tok_hs("HS256", SECRET, p)), "token_expired");
    snprintf(p, sizeof(p), "{\"sub\":\"a\",\"exp\":%lld}", NOW_S);
    assert_string_equal(check(a, tok_hs("HS256", SECRET, p)), "token_expired"); /* exp is exclusive */
    assert_string_equal(check_at(a, tok_hs("HS256", SECRET, p), NOW_MS - 1), "ok");
    snprintf(p, sizeof(p), "{\"sub\":\"a\",\"exp\":-5}");
    assert_string_equal(check(a, tok_hs("HS256", SECRET, p)), "token_expired");
    snprintf(p, sizeof(p), "{\"sub\":\"a\",\"exp\":9223372036854775807}"); /* no overflow: far future */
    assert_string_equal(check(a, tok_hs("HS256", SECRET, p)), "ok");
    /* Missing or mistyped exp. */
    assert_string_equal(check(a, tok_hs("HS256", SECRET, "{\"sub\":\"a\"}")), "token_claims");
    assert_string_equal(check(a, tok_hs("HS256", SECRET, "{\"sub\":\"a\",\"exp\":\"9999999999\"}")), "token_claims");
    assert_string_equal(check(a, tok_hs("HS256", SECRET, "{\"sub\":\"a\",\"exp\":9999999999.5}")), "token_claims");
    assert_string_equal(check(a, tok_hs("HS256", SECRET, "{\"sub\":\"a\",\"exp\":null}")), "token_claims");
    sb_auth_free(a);

    /* Leeway 5 s: expired 4 s ago passes, 5 s ago does not. */
    a = mk((opts_t){.secret = SECRET, .leeway_ms = 5000});
    snprintf(p, sizeof(p), "{\"sub\":\"a\",\"exp\":%lld}", NOW_S - 4);
    assert_string_equal(check(a, tok_hs("HS256", SECRET, p)), "ok");
    snprintf(p, sizeof(p), "{\"sub\":\"a\",\"exp\":%lld}", NOW_S - 5);
    assert_string_equal(check(a, tok_hs("HS256", SECRET, p)), "token_expired");
    sb_auth_free(a);
}

static void test_not_before(void **state)
{
    (void)state;
    sb_auth_t *a = mk((opts_t){.secret = SECRET});
    char e[64];
    snprintf(e, sizeof(e), "\"nbf\":%lld", NOW_S + 10);
    assert_string_equal(check(a, hs(e)), "token_not_yet_valid");
    snprintf(e, sizeof(e), "\"nbf\":%lld", NOW_S);
    assert_string_equal(check(a, hs(e)), "ok");
    assert_string_equal(check(a, hs("\"nbf\":\"soon\"")), "token_claims");
    sb_auth_free(a);

    a = mk((opts_t){.secret = SECRET, .leeway_ms = 30000});
    snprintf(e, sizeof(e), "\"nbf\":%lld", NOW_S + 10);
    assert_string_equal(check(a, hs(e)), "ok");
    snprintf(e, sizeof(e), "\"nbf\":%lld", NOW_S + 31);
    assert_string_equal(check(a, hs(e)), "token_not_yet_valid");
    sb_auth_free(a);
}

/* ---------- issuer and audience ---------- */

static void test_issuer(void **state)
{
    (void)state;
    sb_auth_t *a = mk((opts_t){.secret = SECRET, .iss = "https://idp.example"});
    assert_string_equal(check(a, hs("\"iss\":\"https://idp.example\"")), "ok");
    assert_string_equal(check(a, hs("\"iss\":\"https://evil.example\"")), "token_issuer");
    assert_string_equal(check(a, hs("\"iss\":\"https://idp.example/\"")), "token_issuer");
    assert_string_equal(check(a, hs("")), "token_issuer");
    assert_string_equal(check(a, hs("\"iss\":[\"https://idp.example\"]")), "token_claims");
    sb_auth_free(a);
    /* Not configured: any string issuer passes, a wrong type does not. */
    a = mk((opts_t){.secret = SECRET});
    assert_string_equal(check(a, hs("\"iss\":\"anyone\"")), "ok");
    assert_string_equal(check(a, hs("\"iss\":5")), "token_claims");
    sb_auth_free(a);
}

static void test_audience(void **state)
{
    (void)state;
    sb_auth_t *a = mk((opts_t){.secret = SECRET, .aud = "switchboard"});
    assert_string_equal(check(a, hs("\"aud\":\"switchboard\"")), "ok");
    assert_string_equal(check(a, hs("\"aud\":[\"other\",\"switchboard\"]")), "ok");
    assert_string_equal(check(a, hs("\"aud\":\"other\"")), "token_audience");
    assert_string_equal(check(a, hs("\"aud\":[\"other\",\"switchboard2\"]")), "token_audience");
    assert_string_equal(check(a, hs("\"aud\":[]")), "token_audience");
    assert_string_equal(check(a, hs("")), "token_audience");
    assert_string_equal(check(a, hs("\"aud\":[\"switchboard\",7]")), "token_claims");
    assert_string_equal(check(a, hs("\"aud\":{\"a\":1}")), "token_claims");
    sb_auth_free(a);
}

/* ---------- keys and algorithms ---------- */

static void test_wrong_keys(void **state)
{
    (void)state;
    char p[256];
    payload_with(p, sizeof(p), "");
    sb_auth_t *a = mk((opts_t){.secret = SECRET});
    assert_string_equal(check(a, tok_hs("HS256", "another secret", p)), "token_invalid");
    assert_string_equal(check(a, tok_hs("HS256", SECRET "x", p)), "token_invalid");
    /* A flipped payload byte breaks the signature. */
    char *t = tok_hs("HS256", SECRET, p);
    char *dot = strchr(t, '.');
    dot[2] = dot[2] == 'A' ? 'B' : 'A';
    assert_string_equal(check(a, t), "token_invalid");
    /* A truncated signature. */
    t = tok_hs("HS256", SECRET, p);
    t[strlen(t) - 4] = '\0';
    assert_string_equal(check(a, t), "token_invalid");
    sb_auth_free(a);

    a = mk((opts_t){.alg = "RS256", .key = rsa_path});
    assert_string_equal(check(a, tok_pk("RS256", rsa2, p)), "token_invalid");
    sb_auth_free(a);
    a = mk((opts_t){.alg = "ES256", .key = ec_path});
    assert_string_equal(check(a, tok_pk("ES256", ec2, p)), "token_invalid");
    sb_auth_free(a);
}

/* RS256 and ES256 are verified with the key parsed once (no libjwt): a flipped signature byte, a truncated
 * signature, and an ES256 signature in OpenSSL's DER form instead of the JWS r||s are all refused. */
static void test_pk_signature_forms(void **state)
{
    (void)state;
    char p[256];
    payload_with(p, sizeof(p), "");
    sb_auth_t *a = mk((opts_t){.alg = "RS256", .key = rsa_path});
    char *t = tok_pk("RS256", rsa, p);
    char *sig = strrchr(t, '.') + 1;
    sig[5] = sig[5] == 'A' ? 'B' : 'A';
    assert_string_equal(check(a, t), "token_invalid");
    t = tok_pk("RS256", rsa, p);
    t[strlen(t) - 8] = '\0';
    assert_string_equal(check(a, t), "token_invalid");
    assert_string_equal(check(a, tok_pk("RS256", rsa, p)), "ok");
    sb_auth_free(a);

    a = mk((opts_t){.alg = "ES256", .key = ec_path});
    t = tok_pk("ES256", ec, p);
    sig = strrchr(t, '.') + 1;
    sig[5] = sig[5] == 'A' ? 'B' : 'A';
    assert_string_equal(check(a, t), "token_invalid");
    char *in = signing_input("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", p);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, ec), 1);
    unsigned char der[128];
    size_t len = sizeof(der);
    assert_int_equal(EVP_DigestSign(ctx, der, &len, (unsigned char *)in, strlen(in)), 1);
    EVP_MD_CTX_free(ctx);
    assert_true(len != 64);
    assert_string_equal(check(a, with_sig(in, der, len)), "token_invalid");
    assert_string_equal(check(a, tok_pk("ES256", ec, p)), "ok");
    sb_auth_free(a);
}

static void test_alg_none(void **state)
{
    (void)state;
    char p[256];
    payload_with(p, sizeof(p), "");
    sb_auth_t *a = mk((opts_t){.secret = SECRET});
    const char *headers[] = {"{\"alg\":\"none\"}", "{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"alg\":\"NONE\"}",
                             "{\"alg\":\"nOnE\"}"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(headers); i++) {
        char *in = signing_input(headers[i], p);
        size_t n = strlen(in) + 2;
        char *t = malloc(n);
        snprintf(t, n, "%s.", in); /* "xxx.yyy." */
        free(in);
        assert_string_equal(check(a, t), "token_algorithm");
        /* Even with some signature attached. */
        t = tok_hmac_hdr(headers[i], EVP_sha256(), SECRET, strlen(SECRET), p);
        assert_string_equal(check(a, t), "token_algorithm");
    }
    /* The classic literal: {"alg":"none"} . {"sub":…} . (empty) */
    assert_string_equal(check(a, strdup("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.")),
                        "token_algorithm");
    sb_auth_free(a);
}

static void test_alg_confusion(void **state)
{
    (void)state;
    char p[256];
    payload_with(p, sizeof(p), "");
    /* The attack works against bare libjwt 1.10 (why this module exists)… */
    char *t = tok_hmac_hdr("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", EVP_sha256(), rsa_pub_pem, strlen(rsa_pub_pem), p);
    jwt_t *j = NULL;
    assert_int_equal(jwt_decode(&j, t, (const unsigned char *)rsa_pub_pem, (int)strlen(rsa_pub_pem)), 0);
    jwt_free(j);
    /* …and is refused here. */
    sb_auth_t *a = mk((opts_t){.alg = "RS256", .key = rsa_path});
    assert_string_equal(check(a, t), "token_algorithm");
    assert_string_equal(check(a, tok_pk("ES256", ec, p)), "token_algorithm");
    assert_string_equal(check(a, tok_pk("rs256", rsa, p)), "token_algorithm"); /* libjwt ignores case; we do not */
    assert_string_equal(check(a, tok_pk("RS256", rsa, p)), "ok");
    sb_auth_free(a);

    a = mk((opts_t){.alg = "ES256", .key = ec_path});
    assert_string_equal(check(a, tok_pk("RS256", rsa, p)), "token_algorithm");
    sb_auth_free(a);

    /* HS512 (same secret) when HS256 is configured. */
    a = mk((opts_t){.alg = "HS256", .secret = SECRET});
    assert_string_equal(check(a, tok_hs("HS512", SECRET, p)), "token_algorithm");
    assert_string_equal(check(a, tok_hs("HS384", SECRET, p)), "token_algorithm");
    assert_string_equal(check(a, tok_hs("hs256", SECRET, p)), "token_algorithm");
    assert_string_equal(check(a, tok_pk("RS256", rsa, p)), "token_algorithm");
    sb_auth_free(a);
}

/* ---------- malformed ---------- */

static void test_malformed(void **state)
{
    (void)state;
    sb_auth_t *a = mk((opts_t){.secret = SECRET});
    char p[256];
    payload_with(p, sizeof(p), "");
    const char *code = NULL, *msg = NULL;
    sb_claims_t c;
    assert_int_equal(sb_auth_verify(a, NULL, 0, NOW_MS, &c, &code, &msg), SB_EINVAL);
    assert_string_equal(code, "token_missing");
    assert_int_equal(sb_auth_verify(a, "", 0, NOW_MS, &c, &code, &msg), SB_EINVAL);
    assert_string_equal(code, "token_missing");

    char *good = tok_hs("HS256", SECRET, p);
    assert_string_equal(check(a, strdup(good)), "ok");
    /* Two segments, four segments, empty segments. */
    *strrchr(good, '.') = '\0';
    assert_string_equal(check(a, strdup(good)), "token_invalid");
    free(good);
    good = tok_hs("HS256", SECRET, p);
    size_t n = strlen(good) + 8;
    char *t = malloc(n);
    snprintf(t, n, "%s.AAAA", good);
    assert_string_equal(check(a, t), "token_invalid");
    t = malloc(n);
    snprintf(t, n, ".%s", strchr(good, '.') + 1);
    assert_string_equal(check(a, t), "token_invalid");
    assert_string_equal(check(a, strdup("..")), "token_invalid");
    assert_string_equal(check(a, strdup("abc")), "token_invalid");
    /* Characters outside base64url: standard alphabet, padding, space, NUL. */
    const char bad[] = {'+', '/', '=', ' ', '\n'};
    for (size_t i = 0; i < sizeof(bad); i++) {
        t = strdup(good);
        t[3] = bad[i];
        assert_string_equal(check(a, t), "token_invalid");
    }
    size_t glen = strlen(good);
    char *withnul = malloc(glen + 1);
    memcpy(withnul, good, glen + 1);
    withnul[5] = '\0';
    assert_int_equal(sb_auth_verify(a, withnul, glen, NOW_MS, &c, &code, &msg), SB_EINVAL);
    assert_string_equal(code, "token_invalid");
    free(withnul);
    /* A length that is not a base64 length (4k+1). */
    t = malloc(n);
    char *dot = strchr(good, '.');
    snprintf(t, n, "%.*sA%s", (int)(dot - good), good, dot);
    assert_string_equal(check(a, t), "token_invalid");
    free(good);

    /* Huge: 8193 bytes with a valid signature is still refused up front. */
    char big[9000];
    memset(big, 0, sizeof(big));
    int off = snprintf(big, sizeof(big), "{\"sub\":\"a\",\"exp\":%lld,\"pad\":\"", NOW_S + 60);
    memset(big + off, 'x', 6200);
    memcpy(big + off + 6200, "\"}", 3);
    t = tok_hs("HS256", SECRET, big);
    assert_true(strlen(t) > SB_AUTH_MAX_TOKEN);
    assert_string_equal(check(a, t), "token_invalid");
    /* Just under the bound passes. */
    big[off + 5000] = '\0';
    memcpy(big + off + 5000, "\"}", 3);
    t = tok_hs("HS256", SECRET, big);
    assert_true(strlen(t) <= SB_AUTH_MAX_TOKEN);
    assert_string_equal(check(a, t), "ok");

    /* Header not JSON, not an object, no alg, duplicate alg, crit, odd typ. */
    const struct {
        const char *header, *code;
    } hdrs[] = {
        {"not json", "token_invalid"},
        {"[\"HS256\"]", "token_invalid"},
        {"{\"typ\":\"JWT\"}", "token_invalid"},
        {"{\"alg\":256}", "token_invalid"},
        {"{\"alg\":\"HS256\",\"alg\":\"HS256\"}", "token_invalid"},
        {"{\"alg\":\"none\",\"alg\":\"HS256\"}", "token_invalid"},
        {"{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", "token_invalid"},
        {"{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", "token_invalid"},
        {"{\"alg\":\"HS256\",\"typ\":\"jwt\"}", "ok"},
        {"{\"alg\":\"HS256\"}", "ok"},
        {"{\"alg\":\"HS256\",\"kid\":\"k1\"}", "ok"},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(hdrs); i++) {
        t = tok_hmac_hdr(hdrs[i].header, EVP_sha256(), SECRET, strlen(SECRET), p);
        const char *got = check(a, t);
        if (strcmp(got, hdrs[i].code) != 0)
            fail_msg("header %s: got %s, want %s", hdrs[i].header, got, hdrs[i].code);
    }
    /* A header segment that is not base64 of anything. */
    char hugeh[1200];
    memset(hugeh, 'e', 1100);
    hugeh[1100] = '\0';
    t = tok_hmac_hdr(hugeh, EVP_sha256(), SECRET, strlen(SECRET), p);
    assert_string_equal(check(a, t), "token_invalid");

    /* Payload not JSON / not an object (correctly signed). */
    assert_string_equal(check(a, tok_hs("HS256", SECRET, "not json")), "token_invalid");
    assert_string_equal(check(a, tok_hs("HS256", SECRET, "[1,2]")), "token_claims");
    assert_string_equal(check(a, tok_hs("HS256", SECRET, "\"alice\"")), "token_invalid");
    sb_auth_free(a);
}

/* ---------- claim types ---------- */

static void test_claim_types(void **state)
{
    (void)state;
    sb_auth_t *a = mk((opts_t){.secret = SECRET});
    char p[16384], e[8192];
    snprintf(p, sizeof(p), "{\"exp\":%lld}", NOW_S + 60);
    assert_string_equal(check(a, tok_hs("HS256", SECRET, p)), "token_claims");
    const char *bad_sub[] = {"5", "null", "\"\"", "[\"a\"]", "true", "{}"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(bad_sub); i++) {
        snprintf(p, sizeof(p), "{\"sub\":%s,\"exp\":%lld}", bad_sub[i], NOW_S + 60);
        assert_string_equal(check(a, tok_hs("HS256", SECRET, p)), "token_claims");
    }
    /* libjwt's parser refuses \u0000 in any string, before the claim checks. */
    snprintf(p, sizeof(p), "{\"sub\":\"a\\u0000b\",\"exp\":%lld}", NOW_S + 60);
    assert_string_equal(check(a, tok_hs("HS256", SECRET, p)), "token_invalid");
    /* sub at most 256 bytes. */
    char s257[258];
    memset(s257, 'u', 257);
    s257[257] = '\0';
    snprintf(p, sizeof(p), "{\"sub\":\"%s\",\"exp\":%lld}", s257, NOW_S + 60);
    assert_string_equal(check(a, tok_hs("HS256", SECRET, p)), "token_claims");
    s257[256] = '\0';
    snprintf(p, sizeof(p), "{\"sub\":\"%s\",\"exp\":%lld}", s257, NOW_S + 60);
    assert_string_equal(check(a, tok_hs("HS256", SECRET, p)), "ok");

    const char *names[] = {"rooms", "publish", "join"};
    for (size_t k = 0; k < 3; k++) {
        const char *bad_lists[] = {"\"lobby\"", "{}", "[1]", "[\"ok\",null]", "[\"\"]", "[[\"x\"]]", "null"};
        for (size_t i = 0; i < SB_ARRAY_SIZE(bad_lists); i++) {
            snprintf(e, sizeof(e), "\"%s\":%s", names[k], bad_lists[i]);
            assert_string_equal(check(a, hs(e)), "token_claims");
        }
        snprintf(e, sizeof(e), "\"%s\":[\"%s\"]", names[k], s257); /* 256 bytes: fine */
        assert_string_equal(check(a, hs(e)), "ok");
        s257[256] = 'u';
        snprintf(e, sizeof(e), "\"%s\":[\"%s\"]", names[k], s257);
        assert_string_equal(check(a, hs(e)), "token_claims");
        s257[256] = '\0';
        /* 100 items pass, 101 do not. */
        for (int count = 100; count <= 101; count++) {
            int off = snprintf(e, sizeof(e), "\"%s\":[", names[k]);
            for (int i = 0; i < count; i++)
                off += snprintf(e + off, sizeof(e) - (size_t)off, "%s\"r%d\"", i ? "," : "", i);
            snprintf(e + off, sizeof(e) - (size_t)off, "]");
            assert_string_equal(check(a, hs(e)), count == 100 ? "ok" : "token_claims");
        }
        snprintf(e, sizeof(e), "\"%s\":[]", names[k]);
        assert_string_equal(check(a, hs(e)), "ok");
    }
    sb_auth_free(a);
}

/* ---------- cache ---------- */

/* The cache is for RS256/ES256 only (HS* skips it), so its behaviour is checked with ES256 tokens. ECDSA
 * signatures are randomised: every call makes a different token, even for the same payload. */
static char *es(const char *extra)
{
    char p[2048];
    return tok_pk("ES256", ec, payload_with(p, sizeof(p), extra));
}

static int verify_c(sb_auth_t *a, sb_auth_cache_t *c, const char *t, uint64_t now_ms, const char **code)
{
    sb_claims_t cl;
    int rc = sb_auth_verify_cached(a, c, t, strlen(t), now_ms, &cl, code, NULL);
    if (rc == 0) {
        assert_string_equal(cl.sub, "alice");
        sb_claims_free(&cl);
    }
    return rc;
}

/* Reloads with o, then: the stale token fails with stale_code, the fresh one passes twice (a miss, then a hit or,
 * for HS*, a second check). */
static void reload_then(sb_auth_t *a, sb_auth_cache_t *c, opts_t o, const char *stale, const char *stale_code,
                        const char *fresh)
{
    const char *code = NULL, *why = NULL;
    sb_config_t cfg = cfg_of(&o);
    assert_int_equal(sb_auth_reload_from(a, &cfg, &why), 0);
    assert_int_equal(verify_c(a, c, stale, NOW_MS, &code), SB_EINVAL);
    assert_string_equal(code, stale_code);
    assert_int_equal(verify_c(a, c, fresh, NOW_MS, &code), 0);
    assert_int_equal(verify_c(a, c, fresh, NOW_MS, &code), 0);
}

static void test_cache_hits_and_expiry(void **state)
{
    (void)state;
    sb_auth_t *a = mk((opts_t){.alg = "ES256", .key = ec_path, .leeway_ms = 2000});
    sb_auth_cache_t *c = sb_auth_cache_create(8);
    assert_non_null(c);
    char p[512];
    char *t = tok_pk("ES256", ec, payload_with(p, sizeof(p), FULL));
    const char *code = NULL;
    assert_int_equal(verify_c(a, c, t, NOW_MS, &code), 0);
    assert_int_equal(sb_auth_cache_hits(c), 0);
    assert_int_equal(sb_auth_cache_size(c), 1);
    /* A hit gives the same claims, as an independent copy. */
    sb_claims_t cl;
    assert_int_equal(sb_auth_verify_cached(a, c, t, strlen(t), NOW_MS + 1000, &cl, NULL, NULL), 0);
    assert_int_equal(sb_auth_cache_hits(c), 1);
    assert_string_equal(cl.rooms.items[1], "team:*");
    assert_string_equal(cl.publish.items[0], "chat:?");
    assert_int_equal(cl.exp, NOW_S + 3600);
    sb_claims_free(&cl);
    assert_int_equal(verify_c(a, c, t, NOW_MS + 2000, &code), 0);
    assert_int_equal(sb_auth_cache_hits(c), 2);
    /* A different token with the same claims (signed again) is a different entry. */
    char *t2 = tok_pk("ES256", ec, p);
    assert_string_not_equal(t2, t);
    assert_int_equal(verify_c(a, c, t2, NOW_MS, &code), 0);
    assert_int_equal(sb_auth_cache_hits(c), 2);
    assert_int_equal(sb_auth_cache_size(c), 2);
    free(t2);
    /* Past exp but within the leeway: still a hit. */
    uint64_t exp_ms = (uint64_t)(NOW_S + 3600) * 1000;
    assert_int_equal(verify_c(a, c, t, exp_ms + 1999, &code), 0);
    assert_int_equal(sb_auth_cache_hits(c), 3);
    /* Past exp + leeway: the entry is dropped and the verification says expired. */
    assert_int_equal(verify_c(a, c, t, exp_ms + 2000, &code), SB_EINVAL);
    assert_string_equal(code, "token_expired");
    assert_int_equal(sb_auth_cache_hits(c), 3);
    assert_int_equal(sb_auth_cache_size(c), 1);
    /* Failures are not cached. */
    char *bad = tok_pk("ES256", ec2, p);
    assert_int_equal(verify_c(a, c, bad, NOW_MS, &code), SB_EINVAL);
    assert_int_equal(verify_c(a, c, bad, NOW_MS, &code), SB_EINVAL);
    assert_string_equal(code, "token_invalid");
    assert_int_equal(sb_auth_cache_size(c), 1);
    assert_int_equal(sb_auth_cache_hits(c), 3);
    /* An empty token is token_missing, not a lookup. */
    assert_int_equal(sb_auth_verify_cached(a, c, "", 0, NOW_MS, &cl, &code, NULL), SB_EINVAL);
    assert_string_equal(code, "token_missing");
    free(bad);
    free(t);
    sb_auth_cache_free(c);

    /* max 0 caches nothing; a NULL cache verifies directly. */
    c = sb_auth_cache_create(0);
    t = es("");
    assert_int_equal(verify_c(a, c, t, NOW_MS, &code), 0);
    assert_int_equal(verify_c(a, c, t, NOW_MS, &code), 0);
    assert_int_equal(sb_auth_cache_hits(c), 0);
    assert_int_equal(sb_auth_cache_size(c), 0);
    assert_int_equal(verify_c(a, NULL, t, NOW_MS, &code), 0);
    free(t);
    sb_auth_cache_free(c);
    sb_auth_free(a);
}

static void test_cache_lru(void **state)
{
    (void)state;
    sb_auth_t *a = mk((opts_t){.alg = "ES256", .key = ec_path});
    sb_auth_cache_t *c = sb_auth_cache_create(2);
    char *t1 = es("\"n\":1"), *t2 = es("\"n\":2"), *t3 = es("\"n\":3");
    const char *code;
    assert_int_equal(verify_c(a, c, t1, NOW_MS, &code), 0);
    assert_int_equal(verify_c(a, c, t2, NOW_MS, &code), 0);
    assert_int_equal(verify_c(a, c, t1, NOW_MS, &code), 0); /* t1 now most recent */
    assert_int_equal(sb_auth_cache_hits(c), 1);
    assert_int_equal(verify_c(a, c, t3, NOW_MS, &code), 0); /* evicts t2 */
    assert_int_equal(sb_auth_cache_size(c), 2);
    assert_int_equal(verify_c(a, c, t1, NOW_MS, &code), 0);
    assert_int_equal(sb_auth_cache_hits(c), 2);
    assert_int_equal(verify_c(a, c, t3, NOW_MS, &code), 0);
    assert_int_equal(sb_auth_cache_hits(c), 3);
    assert_int_equal(verify_c(a, c, t2, NOW_MS, &code), 0); /* a miss */
    assert_int_equal(sb_auth_cache_hits(c), 3);
    assert_int_equal(sb_auth_cache_size(c), 2);
    free(t1);
    free(t2);
    free(t3);
    sb_auth_cache_free(c);
    sb_auth_free(a);
}

/* HS* tokens are verified as usual through sb_auth_verify_cached but never stored: an HMAC check is about as
 * cheap as a hit, and a miss (SHA-256, an entry, allocations) made the cache a loss (src/auth.c, uses_cache). */
static void test_cache_skips_hs(void **state)
{
    (void)state;
    const char *algs[] = {"HS256", "HS384", "HS512"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(algs); i++) {
        sb_auth_t *a = mk((opts_t){.alg = algs[i], .secret = SECRET});
        sb_auth_cache_t *c = sb_auth_cache_create(16);
        assert_non_null(c);
        char p[512];
        char *t = tok_hs(algs[i], SECRET, payload_with(p, sizeof(p), FULL));
        for (int k = 0; k < 3; k++) {
            sb_claims_t cl;
            const char *code = NULL;
            assert_int_equal(sb_auth_verify_cached(a, c, t, strlen(t), NOW_MS + (uint64_t)k, &cl, &code, NULL), 0);
            assert_string_equal(cl.sub, "alice");
            assert_int_equal(cl.exp, NOW_S + 3600);
            assert_int_equal(cl.rooms.count, 2);
            assert_string_equal(cl.rooms.items[1], "team:*");
            assert_string_equal(cl.publish.items[0], "chat:?");
            sb_claims_free(&cl);
            assert_int_equal(sb_auth_cache_size(c), 0);
            assert_int_equal(sb_auth_cache_hits(c), 0);
        }
        /* A bad signature still fails, every time. */
        char *bad = tok_hs(algs[i], "another secret", p);
        const char *code = NULL;
        assert_int_equal(verify_c(a, c, bad, NOW_MS, &code), SB_EINVAL);
        assert_string_equal(code, "token_invalid");
        assert_int_equal(verify_c(a, c, bad, NOW_MS, &code), SB_EINVAL);
        assert_string_equal(code, "token_invalid");
        assert_int_equal(sb_auth_cache_size(c), 0);
        free(bad);
        free(t);
        sb_auth_cache_free(c);
        sb_auth_free(a);
    }

    /* A new --jwt-secret by reload: the old token fails at once, the new one passes; still nothing cached. */
    sb_auth_t *a = mk((opts_t){.secret = SECRET});
    sb_auth_cache_t *c = sb_auth_cache_create(16);
    char p[256];
    payload_with(p, sizeof(p), "");
    char *old_tok = tok_hs("HS256", SECRET, p);
    char *new_tok = tok_hs("HS256", "the new secret", p);
    const char *code = NULL;
    assert_int_equal(verify_c(a, c, old_tok, NOW_MS, &code), 0);
    assert_int_equal(verify_c(a, c, new_tok, NOW_MS, &code), SB_EINVAL);
    reload_then(a, c, (opts_t){.secret = "the new secret"}, old_tok, "token_invalid", new_tok);
    assert_int_equal(sb_auth_cache_size(c), 0);
    assert_int_equal(sb_auth_cache_hits(c), 0);
    free(old_tok);
    free(new_tok);
    sb_auth_cache_free(c);
    sb_auth_free(a);
}

/* ---------- reload ---------- */

static void test_reload_key_clears_cache(void **state)
{
    (void)state;
    sb_auth_t *a = mk((opts_t){.alg = "ES256", .key = ec_path});
    sb_auth_cache_t *c = sb_auth_cache_create(16);
    char p[256];
    payload_with(p, sizeof(p), "");
    char *old_tok = tok_pk("ES256", ec, p);
    char *new_tok = tok_pk("ES256", ec2, p);
    const char *code = NULL, *why = NULL;
    assert_int_equal(verify_c(a, c, old_tok, NOW_MS, &code), 0);
    assert_int_equal(verify_c(a, c, old_tok, NOW_MS, &code), 0);
    assert_int_equal(sb_auth_cache_hits(c), 1);
    assert_int_equal(verify_c(a, c, new_tok, NOW_MS, &code), SB_EINVAL);

    /* Plain reload (same key): the cache is emptied, the token still passes. */
    assert_int_equal(sb_auth_reload(a, &why), 0);
    assert_int_equal(verify_c(a, c, old_tok, NOW_MS, &code), 0);
    assert_int_equal(sb_auth_cache_hits(c), 1);
    assert_int_equal(sb_auth_cache_size(c), 1);

    /* New key: the cached old token fails, the new one passes. */
    reload_then(a, c, (opts_t){.alg = "ES256", .key = ec2_path}, old_tok, "token_invalid", new_tok);
    assert_int_equal(sb_auth_cache_hits(c), 2);
    sb_config_t cfg;
    /* Plain verify agrees. */
    assert_string_equal(check(a, strdup(old_tok)), "token_invalid");

    /* A failed reload keeps the key in force, and switching to anonymous is refused. */
    cfg = cfg_of(&(opts_t){.alg = "RS256", .key = "/nonexistent/key.pem"});
    assert_int_equal(sb_auth_reload_from(a, &cfg, &why), SB_EINVAL);
    assert_non_null(why);
    cfg = cfg_of(&(opts_t){0});
    assert_int_equal(sb_auth_reload_from(a, &cfg, &why), SB_EINVAL);
    assert_non_null(strstr(why, "anonymous"));
    assert_true(sb_auth_enabled(a));
    assert_string_equal(check(a, strdup(new_tok)), "ok");
    free(old_tok);
    free(new_tok);
    sb_auth_cache_free(c);
    sb_auth_free(a);
}

/* A reload may change the algorithm (only anonymous <-> keyed is refused): from ES256 to HS256 the cached ES256
 * entries are freed on the next call and nothing more is cached; back to ES256, caching resumes. */
static void test_reload_to_hs_stops_caching(void **state)
{
    (void)state;
    sb_auth_t *a = mk((opts_t){.alg = "ES256", .key = ec_path});
    sb_auth_cache_t *c = sb_auth_cache_create(16);
    char *es_tok = es(""), *hs_tok = hs("");
    const char *code = NULL, *why = NULL;
    assert_int_equal(verify_c(a, c, es_tok, NOW_MS, &code), 0);
    assert_int_equal(verify_c(a, c, es_tok, NOW_MS, &code), 0);
    assert_int_equal(sb_auth_cache_size(c), 1);
    assert_int_equal(sb_auth_cache_hits(c), 1);

    sb_config_t cfg = cfg_of(&(opts_t){.alg = "HS256", .secret = SECRET});
    assert_int_equal(sb_auth_reload_from(a, &cfg, &why), 0);
    /* The cached ES256 token is not served from the cache any more: HS256 is in force. */
    assert_int_equal(verify_c(a, c, es_tok, NOW_MS, &code), SB_EINVAL);
    assert_string_equal(code, "token_algorithm");
    assert_int_equal(sb_auth_cache_size(c), 0);
    for (int k = 0; k < 3; k++)
        assert_int_equal(verify_c(a, c, hs_tok, NOW_MS, &code), 0);
    assert_int_equal(sb_auth_cache_size(c), 0);
    assert_int_equal(sb_auth_cache_hits(c), 1);

    reload_then(a, c, (opts_t){.alg = "ES256", .key = ec_path}, hs_tok, "token_algorithm", es_tok);
    assert_int_equal(sb_auth_cache_size(c), 1);
    assert_int_equal(sb_auth_cache_hits(c), 2);
    free(es_tok);
    free(hs_tok);
    sb_auth_cache_free(c);
    sb_auth_free(a);
}

static void test_reload_key_file(void **state)
{
    (void)state;
    char *text = read_text(rsa_path);
    write_text(swap_path, text);
    free(text);
    sb_auth_t *a = mk((opts_t){.alg = "RS256", .key = swap_path});
    char p[256];
    payload_with(p, sizeof(p), "");
    const char *why = NULL;
    assert_string_equal(check(a, tok_pk("RS256", rsa, p)), "ok");
    /* The file now holds another key: after the reload, the old signer fails. */
    text = read_text(rsa2_path);
    write_text(swap_path, text);
    free(text);
    assert_string_equal(check(a, tok_pk("RS256", rsa, p)), "ok"); /* not re-read yet */
    assert_int_equal(sb_auth_reload(a, &why), 0);
    assert_string_equal(check(a, tok_pk("RS256", rsa, p)), "token_invalid");
    assert_string_equal(check(a, tok_pk("RS256", rsa2, p)), "ok");
    /* A broken file: reload fails, rsa2 stays in force. */
    write_text(swap_path, "-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n");
    assert_int_equal(sb_auth_reload(a, &why), SB_EINVAL);
    assert_non_null(why);
    assert_string_equal(check(a, tok_pk("RS256", rsa2, p)), "ok");
    sb_auth_free(a);
}

/* ---------- configuration ---------- */

static void test_create(void **state)
{
    (void)state;
    /* Anonymous mode: no key. */
    sb_auth_t *a = mk((opts_t){0});
    assert_false(sb_auth_enabled(a));
    assert_string_equal(check(a, hs("")), "token_invalid");
    sb_auth_free(a);
    assert_false(sb_auth_enabled(NULL));

    /* Certificates are accepted as the key file. */
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_pubkey(x, rsa);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    assert_true(X509_sign(x, rsa, EVP_sha256()) > 0);
    FILE *f = fopen(swap_path, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    X509_free(x);
    a = mk((opts_t){.alg = "RS256", .key = swap_path});
    char p[256];
    payload_with(p, sizeof(p), "");
    assert_string_equal(check(a, tok_pk("RS256", rsa, p)), "ok");
    sb_auth_free(a);

    assert_non_null(strstr(mk_fails((opts_t){.alg = "RS256", .key = "/nonexistent/key.pem"}), "--jwt-public-key"));
    assert_non_null(strstr(mk_fails((opts_t){.alg = "RS256", .key = ec_path}), "RSA"));
    assert_non_null(strstr(mk_fails((opts_t){.alg = "ES256", .key = rsa_path}), "P-256"));
    assert_non_null(strstr(mk_fails((opts_t){.alg = "HS256", .key = rsa_path}), "--jwt-public-key"));
    assert_non_null(strstr(mk_fails((opts_t){.alg = "RS256", .secret = SECRET}), "--jwt-secret"));
    assert_non_null(strstr(mk_fails((opts_t){.alg = "HS256", .secret = ""}), "--jwt-secret"));
    assert_non_null(strstr(mk_fails((opts_t){.alg = "PS256", .secret = SECRET}), "--jwt-alg"));
    assert_non_null(strstr(mk_fails((opts_t){.alg = "none", .secret = SECRET}), "--jwt-alg"));
    write_text(swap_path, "not a key\n");
    assert_non_null(strstr(mk_fails((opts_t){.alg = "RS256", .key = swap_path}), "PEM"));
    /* A private key is not a public key. */
    f = fopen(swap_path, "w");
    PEM_write_PrivateKey(f, ec, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    assert_non_null(strstr(mk_fails((opts_t){.alg = "ES256", .key = swap_path}), "PEM"));
    /* A short RSA key. */
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    assert_non_null(small);
    write_pub(small, swap_path);
    EVP_PKEY_free(small);
    assert_non_null(strstr(mk_fails((opts_t){.alg = "RS256", .key = swap_path}), "2048"));
    /* A P-384 key for ES256. */
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    assert_non_null(p384);
    write_pub(p384, swap_path);
    EVP_PKEY_free(p384);
    assert_non_null(strstr(mk_fails((opts_t){.alg = "ES256", .key = swap_path}), "P-256"));
}

/* ---------- claims helpers and patterns ---------- */

static void test_claims_copy(void **state)
{
    (void)state;
    char *rooms[] = {"a", "b*"};
    sb_claims_t src = {.sub = "u", .rooms = {rooms, 2}, .exp = 42};
    sb_claims_t dst;
    assert_int_equal(sb_claims_copy(&dst, &src), 0);
    assert_string_equal(dst.sub, "u");
    assert_ptr_not_equal(dst.sub, src.sub);
    assert_int_equal(dst.rooms.count, 2);
    assert_string_equal(dst.rooms.items[1], "b*");
    assert_int_equal(dst.publish.count, 0);
    assert_int_equal(dst.exp, 42);
    sb_claims_free(&dst);
    assert_null(dst.sub);
    assert_int_equal(dst.rooms.count, 0);
    sb_claims_free(NULL);
}

static int m1(const char *pattern, const char *room)
{
    char *items[] = {(char *)pattern};
    sb_strlist_t l = {items, 1};
    return sb_auth_match(&l, room);
}

static void test_match(void **state)
{
    (void)state;
    const struct {
        const char *pattern, *room;
        int want;
    } v[] = {
        {"lobby", "lobby", 1},
        {"lobby", "lobby2", 0},
        {"lobby", "lobb", 0},
        {"lobby", "Lobby", 0},
        {"*", "", 1},
        {"*", "anything at all", 1},
        {"", "", 1},
        {"", "a", 0},
        {"team:*", "team:", 1},
        {"team:*", "team:red", 1},
        {"team:*", "team", 0},
        {"team:*", "xteam:red", 0},
        {"*:admin", "ops:admin", 1},
        {"*:admin", "ops:admin2", 0},
        {"a*b*c", "abc", 1},
        {"a*b*c", "aXbYc", 1},
        {"a*b*c", "aXbYcZ", 0},
        {"a*b*c", "acb", 0},
        {"a**b", "ab", 1},
        {"chat:?", "chat:1", 1},
        {"chat:?", "chat:", 0},
        {"chat:?", "chat:12", 0},
        {"chat:??", "chat:12", 1},
        {"?", "\xc3\xa9", 1}, /* é is one character */
        {"??", "\xc3\xa9", 0},
        {"?", "\xe2\x82\xac", 1},     /* € */
        {"?", "\xf0\x9f\x98\x80", 1}, /* 😀 */
        {"*?", "\xc3\xa9", 1},
        {"a*?", "a\xc3\xa9\xc3\xa9", 1},
        {"*\xc3\xa9", "x\xc3\xa9", 1},
        {"r.[0]", "r.[0]", 1}, /* no character classes: literal */
        {"r.[0]", "r.0", 0},
        {"*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0},
        {"user:*:room?", "user:7:room9", 1},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(v); i++)
        if (m1(v[i].pattern, v[i].room) != v[i].want)
            fail_msg("pattern \"%s\" room \"%s\": want %d", v[i].pattern, v[i].room, v[i].want);

    char *items[] = {"a", "team:*", "x?"};
    sb_strlist_t l = {items, 3};
    assert_true(sb_auth_match(&l, "team:blue"));
    assert_true(sb_auth_match(&l, "xy"));
    assert_true(sb_auth_match(&l, "a"));
    assert_false(sb_auth_match(&l, "b"));
    sb_strlist_t empty = {NULL, 0};
    assert_false(sb_auth_match(&empty, "a"));
    assert_false(sb_auth_match(NULL, "a"));
    assert_false(sb_auth_match(&l, NULL));
}

/* ---------- threads ---------- */

typedef struct {
    sb_auth_t *a;
    const char *tok;
    int ok;
} worker_arg_t;

static void *worker(void *p)
{
    worker_arg_t *w = p;
    sb_auth_cache_t *c = sb_auth_cache_create(4);
    for (int i = 0; i < 300; i++) {
        sb_claims_t cl;
        int rc = (i & 1) ? sb_auth_verify_cached(w->a, c, w->tok, strlen(w->tok), NOW_MS, &cl, NULL, NULL)
                         : sb_auth_verify(w->a, w->tok, strlen(w->tok), NOW_MS, &cl, NULL, NULL);
        if (rc == 0) {
            w->ok++;
            sb_claims_free(&cl);
        }
    }
    sb_auth_cache_free(c);
    return NULL;
}

/* Four threads verify t 300 times each while this thread reloads the key `reloads` times: all succeed. */
static void verify_while_reloading(sb_auth_t *a, char *t, int reloads)
{
    pthread_t th[4];
    worker_arg_t args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (worker_arg_t){a, t, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    const char *why;
    for (int i = 0; i < reloads; i++)
        assert_int_equal(sb_auth_reload(a, &why), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].ok, 300);
    }
}

/* Workers verify while the main thread reloads with the same secret: every
 * verification succeeds and nothing leaks or races (run under ASan/TSan). */
static void test_threads_and_reload(void **state)
{
    (void)state;
    sb_auth_t *a = mk((opts_t){.secret = SECRET});
    char *t = hs("");
    verify_while_reloading(a, t, 50);
    free(t);
    sb_auth_free(a);
}

/* ---------- RS256 / ES256 signatures (check_pkey_sig) ---------- */

/* Signs `in` with k (SHA-256) into out (512 bytes): RSA PKCS#1 v1.5, or ECDSA
 * as r||s when `jose`, else as OpenSSL's DER. Returns the length. */
static size_t sign_raw(EVP_PKEY *k, const char *in, unsigned char *out, int jose)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
    size_t len = 512;
    assert_int_equal(EVP_DigestSign(ctx, out, &len, (const unsigned char *)in, strlen(in)), 1);
    EVP_MD_CTX_free(ctx);
    if (!jose || EVP_PKEY_get_base_id(k) != EVP_PKEY_EC)
        return len;
    const unsigned char *q = out;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)len);
    assert_non_null(es);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), out, 32), 32);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), out + 32, 32), 32);
    ECDSA_SIG_free(es);
    return 64;
}

/* Verifies; returns "ok" or "code: message". The token is freed. */
static const char *outcome(sb_auth_t *a, char *tok)
{
    static char buf[160];
    sb_claims_t c;
    const char *code = NULL, *msg = NULL;
    int rc = sb_auth_verify(a, tok, strlen(tok), NOW_MS, &c, &code, &msg);
    free(tok);
    if (rc == 0) {
        sb_claims_free(&c);
        return "ok";
    }
    assert_int_equal(rc, SB_EINVAL);
    /* A failed signature check leaves nothing on OpenSSL's error queue for a TLS read to pick up. */
    assert_int_equal(ERR_peek_error(), 0);
    snprintf(buf, sizeof(buf), "%s: %s", code, msg);
    return buf;
}

#define BAD_SIG "token_invalid: bad token signature or malformed token"

/* The two public-key algorithms with their key file, signing key and signature length. */
typedef struct {
    const char *alg;
    const char *path;
    EVP_PKEY *k;
    size_t siglen;
} pk_case_t;

static const pk_case_t *pk_cases(void)
{
    static pk_case_t cases[2];
    cases[0] = (pk_case_t){"RS256", rsa_path, rsa, 256};
    cases[1] = (pk_case_t){"ES256", ec_path, ec, 64};
    return cases;
}

static void test_pkey_signatures(void **state)
{
    (void)state;
    char p[256];
    payload_with(p, sizeof(p), "\"join\":[\"r1\"]");
    const pk_case_t *cases = pk_cases();
    for (size_t i = 0; i < 2; i++) {
        char header[64];
        snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", cases[i].alg);
        sb_auth_t *a = mk((opts_t){.alg = cases[i].alg, .key = cases[i].path});
        unsigned char sig[520];

        /* Valid, with the claims read from the payload. */
        char *in = signing_input(header, p);
        size_t n = sign_raw(cases[i].k, in, sig, 1);
        assert_int_equal(n, cases[i].siglen);
        char *t = with_sig(in, sig, n);
        sb_claims_t c;
        const char *code = NULL, *msg = NULL;
        assert_int_equal(sb_auth_verify(a, t, strlen(t), NOW_MS, &c, &code, &msg), 0);
        assert_string_equal(c.sub, "alice");
        assert_int_equal(c.join.count, 1);
        assert_string_equal(c.join.items[0], "r1");
        sb_claims_free(&c);
        free(t);

        /* One flipped bit anywhere in the signature: first byte, middle, last. */
        size_t at[] = {0, cases[i].siglen / 2, cases[i].siglen - 1};
        for (size_t j = 0; j < SB_ARRAY_SIZE(at); j++) {
            in = signing_input(header, p);
            n = sign_raw(cases[i].k, in, sig, 1);
            sig[at[j]] ^= 0x01;
            assert_string_equal(outcome(a, with_sig(in, sig, n)), BAD_SIG);
        }
        /* One byte more or less. */
        in = signing_input(header, p);
        n = sign_raw(cases[i].k, in, sig, 1);
        sig[n] = 0;
        assert_string_equal(outcome(a, with_sig(in, sig, n + 1)), BAD_SIG);
        in = signing_input(header, p);
        n = sign_raw(cases[i].k, in, sig, 1);
        assert_string_equal(outcome(a, with_sig(in, sig, n - 1)), BAD_SIG);
        /* The other family's signature length. */
        in = signing_input(header, p);
        n = sign_raw(cases[i].k, in, sig, 1);
        assert_string_equal(outcome(a, with_sig(in, sig, i == 0 ? 64 : 256)), BAD_SIG);
        /* All zeros and all ones of the right length. */
        memset(sig, 0, sizeof(sig));
        assert_string_equal(outcome(a, with_sig(signing_input(header, p), sig, cases[i].siglen)), BAD_SIG);
        memset(sig, 0xff, sizeof(sig));
        assert_string_equal(outcome(a, with_sig(signing_input(header, p), sig, cases[i].siglen)), BAD_SIG);
        /* Signed over a different payload. */
        in = signing_input(header, p);
        char other[256];
        payload_with(other, sizeof(other), "\"join\":[\"r2\"]");
        char *in2 = signing_input(header, other);
        n = sign_raw(cases[i].k, in2, sig, 1);
        free(in2);
        assert_string_equal(outcome(a, with_sig(in, sig, n)), BAD_SIG);

        /* Expired, and the other claim checks behind a valid signature. */
        char e[256];
        snprintf(e, sizeof(e), "{\"sub\":\"a\",\"exp\":%lld}", NOW_S - 1);
        assert_string_equal(outcome(a, tok_pk(cases[i].alg, cases[i].k, e)), "token_expired: token has expired");
        snprintf(e, sizeof(e), "{\"sub\":\"a\",\"exp\":%lld,\"nbf\":%lld}", NOW_S + 60, NOW_S + 30);
        assert_string_equal(outcome(a, tok_pk(cases[i].alg, cases[i].k, e)),
                            "token_not_yet_valid: token is not valid yet (nbf)");
        assert_string_equal(outcome(a, tok_pk(cases[i].alg, cases[i].k, "{\"sub\":\"a\"}")),
                            "token_claims: exp claim missing");
        assert_string_equal(outcome(a, tok_pk(cases[i].alg, cases[i].k, "[1,2]")),
                            "token_claims: payload is not a JSON object");
        assert_string_equal(outcome(a, tok_pk(cases[i].alg, cases[i].k, "{\"sub\":")), BAD_SIG);
        assert_string_equal(outcome(a, tok_pk(cases[i].alg, cases[i].k, "42")), BAD_SIG);

        /* Another algorithm in the header, whatever signs it. */
        assert_string_equal(outcome(a, tok_pk(i == 0 ? "RS384" : "ES384", cases[i].k, p)),
                            "token_algorithm: token alg is not the configured algorithm");
        assert_string_equal(outcome(a, tok_pk("PS256", cases[i].k, p)),
                            "token_algorithm: token alg is not the configured algorithm");
        /* HS256 keyed with the configured public key's PEM text (the classic confusion). */
        char *pem = read_text(cases[i].path);
        assert_string_equal(outcome(a, tok_hmac_hdr("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", EVP_sha256(), pem,
                                                    strlen(pem), p)),
                            "token_algorithm: token alg is not the configured algorithm");
        free(pem);
        sb_auth_free(a);
    }

    /* ES256 as OpenSSL's DER (what some signers emit by mistake) is refused:
     * JWS wants r||s. (DER for P-256 is 70 to 72 bytes, shorter only when r or
     * s has several leading zero bytes.) */
    sb_auth_t *a = mk((opts_t){.alg = "ES256", .key = ec_path});
    char header[] = "{\"alg\":\"ES256\",\"typ\":\"JWT\"}";
    unsigned char der[520];
    char *in = signing_input(header, p);
    size_t n = sign_raw(ec, in, der, 0);
    assert_true(n > 64 && n <= 72);
    assert_string_equal(outcome(a, with_sig(in, der, n)), BAD_SIG);
    /* An RS256 token (256-byte signature) under the ES256 header. */
    in = signing_input(header, p);
    n = sign_raw(rsa, in, der, 1);
    assert_string_equal(outcome(a, with_sig(in, der, n)), BAD_SIG);
    sb_auth_free(a);
}

/* The parsed key and its verify context are shared by the workers: they
 * verify RS256 and ES256 tokens at once while the main thread reloads the
 * key file (ASan/TSan builds check the sharing). */
static void test_pkey_threads_and_reload(void **state)
{
    (void)state;
    char p[256];
    payload_with(p, sizeof(p), "");
    const pk_case_t *cases = pk_cases();
    for (size_t i = 0; i < 2; i++) {
        sb_auth_t *a = mk((opts_t){.alg = cases[i].alg, .key = cases[i].path});
        char *t = tok_pk(cases[i].alg, cases[i].k, p);
        verify_while_reloading(a, t, 20);
        free(t);
        sb_auth_free(a);
    }
}

/* ---------- edges found by scripts/coverage.sh ---------- */

/* Verifies and returns the failure message of a token_invalid refusal ("ok" on success). The token is freed. */
static const char *message_of(sb_auth_t *a, char *tok)
{
    static const char prefix[] = "token_invalid: ";
    const char *o = outcome(a, tok);
    if (strcmp(o, "ok") == 0)
        return o;
    assert_int_equal(strncmp(o, prefix, sizeof(prefix) - 1), 0);
    return o + sizeof(prefix) - 1;
}

static void test_signature_edges(void **state)
{
    (void)state;
    sb_auth_t *a = mk((opts_t){.secret = SECRET});
    /* Header and payload fine, the signature cut off. */
    char *t = hs("");
    *(strrchr(t, '.') + 1) = '\0';
    assert_string_equal(message_of(a, t), "token has no signature");
    /* A payload segment of 4n+1 characters cannot be base64url. */
    t = hs("");
    char *dot = strchr(t, '.');
    char *bad = NULL;
    assert_true(asprintf(&bad, "%.*s.AAAAA%s", (int)(dot - t), t, strrchr(t, '.')) > 0);
    free(t);
    assert_string_equal(message_of(a, bad), "token is not base64url");
    /* A signature longer than any HMAC is refused before comparing. */
    t = hs("");
    char *sig = strrchr(t, '.') + 1;
    char *longer = NULL;
    assert_true(asprintf(&longer, "%.*s%0100d", (int)(sig - t), t, 0) > 0);
    for (char *q = longer + (sig - t); *q != '\0'; q++)
        *q = 'A';
    free(t);
    assert_string_equal(message_of(a, longer), "bad token signature");
    /* Without a cache the cached verify is the plain one. */
    sb_claims_t c;
    const char *code = NULL, *msg = NULL;
    t = hs("");
    assert_int_equal(sb_auth_verify_cached(a, NULL, t, strlen(t), NOW_MS, &c, &code, &msg), 0);
    assert_string_equal(c.sub, "alice");
    sb_claims_free(&c);
    free(t);
    sb_auth_free(a);
}

static void test_no_verifier(void **state)
{
    (void)state;
    sb_claims_t c;
    const char *code = NULL, *msg = NULL;
    assert_int_equal(sb_auth_verify(NULL, "a.b.c", 5, NOW_MS, &c, &code, &msg), SB_EINVAL);
    assert_string_equal(code, "token_invalid");
    assert_string_equal(msg, "no JWT key is configured");
    const char *why = NULL;
    assert_int_equal(sb_auth_reload(NULL, &why), SB_EINVAL);
    assert_string_equal(why, "no verifier");
    assert_int_equal(sb_auth_reload(NULL, NULL), SB_EINVAL);
    why = NULL;
    assert_int_equal(sb_auth_reload_from(NULL, NULL, &why), SB_EINVAL);
    assert_string_equal(why, "no verifier");
    assert_int_equal(sb_auth_reload_from(NULL, NULL, NULL), SB_EINVAL);
}

/* No --jwt-alg means HS256. */
static void test_default_alg(void **state)
{
    (void)state;
    sb_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.jwt_secret = SECRET;
    const char *why = NULL;
    sb_auth_t *a = sb_auth_create(&cfg, &why);
    assert_non_null(a);
    assert_string_equal(message_of(a, hs("")), "ok");
    char p[512];
    assert_string_equal(check(a, tok_hs("HS384", SECRET, payload_with(p, sizeof(p), ""))), "token_algorithm");
    sb_auth_free(a);
}

static void test_key_file_too_large(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s/huge.pem", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 64 * 1024 + 1; i++)
        fputc('A', f);
    assert_int_equal(fclose(f), 0);
    assert_string_equal(mk_fails((opts_t){.alg = "RS256", .key = path}), "--jwt-public-key: file larger than 64 KiB");
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_hs),
        cmocka_unit_test(test_valid_rs256_es256),
        cmocka_unit_test(test_libjwt_encoded_tokens),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_not_before),
        cmocka_unit_test(test_issuer),
        cmocka_unit_test(test_audience),
        cmocka_unit_test(test_wrong_keys),
        cmocka_unit_test(test_pk_signature_forms),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_alg_confusion),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_claim_types),
        cmocka_unit_test(test_cache_hits_and_expiry),
        cmocka_unit_test(test_cache_lru),
        cmocka_unit_test(test_cache_skips_hs),
        cmocka_unit_test(test_reload_key_clears_cache),
        cmocka_unit_test(test_reload_to_hs_stops_caching),
        cmocka_unit_test(test_reload_key_file),
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_claims_copy),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_threads_and_reload),
        cmocka_unit_test(test_pkey_signatures),
        cmocka_unit_test(test_pkey_threads_and_reload),
        cmocka_unit_test(test_signature_edges),
        cmocka_unit_test(test_no_verifier),
        cmocka_unit_test(test_default_alg),
        cmocka_unit_test(test_key_file_too_large),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
