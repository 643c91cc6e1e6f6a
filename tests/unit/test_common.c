/* Unit tests for src/common.c: capped buffers, base64, JSON string escaping, ids. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "switchboard/common.h"

/* Compares a buffer's bytes with an expected string of explicit length. */
static void assert_buf_eq(const sb_buf_t *b, const char *expect, size_t len)
{
    assert_int_equal(b->len, len);
    if (len > 0)
        assert_memory_equal(b->base, expect, len);
}
#define ASSERT_BUF_STR(b, lit) assert_buf_eq((b), (lit), sizeof(lit) - 1)

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(sb_strerror(SB_OK), "ok");
    assert_string_equal(sb_strerror(SB_ETOOBIG), "too big");
    assert_string_equal(sb_strerror(SB_EPROTO), "protocol error");
    assert_string_equal(sb_strerror(-999), "unknown error");
}

static void test_buf_cap(void **state)
{
    (void)state;
    sb_buf_t b;
    sb_buf_init(&b, 8);
    assert_int_equal(sb_buf_append_str(&b, "hello"), 0);
    assert_int_equal(sb_buf_append_str(&b, "1234"), SB_ETOOBIG);
    ASSERT_BUF_STR(&b, "hello");
    assert_int_equal(sb_buf_append_str(&b, "123"), 0);
    ASSERT_BUF_STR(&b, "hello123");
    assert_int_equal(sb_buf_append_char(&b, 'x'), SB_ETOOBIG);
    assert_int_equal(sb_buf_append_u64(&b, 1), SB_ETOOBIG);
    assert_int_equal(sb_buf_append_json_str(&b, "", 0), SB_ETOOBIG);
    assert_int_equal(sb_buf_reserve(&b, 1), SB_ETOOBIG);
    assert_int_equal(sb_buf_reserve(&b, SIZE_MAX), SB_ETOOBIG);
    ASSERT_BUF_STR(&b, "hello123");
    /* The allocation never exceeds the cap. */
    assert_true(b.cap <= 8);
    sb_buf_free(&b);
    assert_null(b.base);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.max, 8);
    assert_int_equal(sb_buf_append_str(&b, "again"), 0);
    ASSERT_BUF_STR(&b, "again");
    sb_buf_free(&b);
}

static void test_buf_json_str_partial_is_rolled_back(void **state)
{
    (void)state;
    sb_buf_t b;
    sb_buf_init(&b, 10);
    assert_int_equal(sb_buf_append_str(&b, "ab"), 0);
    /* "\"abcdefgh\"" is 10 bytes: with "ab" already there it does not fit. */
    assert_int_equal(sb_buf_append_json_str(&b, "abcdefgh", 8), SB_ETOOBIG);
    ASSERT_BUF_STR(&b, "ab");
    sb_buf_free(&b);
}

static void test_buf_unbounded_growth(void **state)
{
    (void)state;
    sb_buf_t b;
    sb_buf_init(&b, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(sb_buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(b.len, 10000);
    assert_memory_equal(b.base + 9990, "0123456789", 10);
    char *p = sb_buf_steal(&b);
    assert_non_null(p);
    assert_null(b.base);
    assert_int_equal(b.len, 0);
    free(p);
}

static void test_buf_numbers(void **state)
{
    (void)state;
    sb_buf_t b;
    sb_buf_init(&b, 0);
    assert_int_equal(sb_buf_append_u64(&b, 0), 0);
    assert_int_equal(sb_buf_append_char(&b, ' '), 0);
    assert_int_equal(sb_buf_append_u64(&b, UINT64_MAX), 0);
    assert_int_equal(sb_buf_append_char(&b, ' '), 0);
    assert_int_equal(sb_buf_append_i64(&b, -42), 0);
    assert_int_equal(sb_buf_append_char(&b, ' '), 0);
    assert_int_equal(sb_buf_append_i64(&b, INT64_MIN), 0);
    assert_int_equal(sb_buf_append_char(&b, ' '), 0);
    assert_int_equal(sb_buf_append_i64(&b, INT64_MAX), 0);
    ASSERT_BUF_STR(&b, "0 18446744073709551615 -42 -9223372036854775808 9223372036854775807");
    sb_buf_free(&b);
}

static void test_json_str_escaping(void **state)
{
    (void)state;
    sb_buf_t b;
    sb_buf_init(&b, 0);
    static const char in[] = "a\"b\\c\x01\n\t\r\b\f\x1f/\x7f";
    assert_int_equal(sb_buf_append_json_str(&b, in, sizeof(in) - 1), 0);
    ASSERT_BUF_STR(&b, "\"a\\\"b\\\\c\\u0001\\n\\t\\r\\b\\f\\u001f/\x7f\"");
    sb_buf_free(&b);

    /* An embedded NUL is written as \u0000, not a truncation. */
    assert_int_equal(sb_buf_append_json_str(&b, "x\0y", 3), 0);
    ASSERT_BUF_STR(&b, "\"x\\u0000y\"");
    sb_buf_free(&b);

    /* UTF-8 passes through byte for byte. */
    static const char utf8[] = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80";
    assert_int_equal(sb_buf_append_json_str(&b, utf8, sizeof(utf8) - 1), 0);
    ASSERT_BUF_STR(&b, "\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"");
    sb_buf_free(&b);

    assert_int_equal(sb_buf_append_json_str(&b, "", 0), 0);
    ASSERT_BUF_STR(&b, "\"\"");
    sb_buf_free(&b);
}

static void test_base64_known_vectors(void **state)
{
    (void)state;
    /* RFC 4648 §10 test vectors, lengths 0..6. */
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(plain); i++) {
        size_t n = strlen(plain[i]);
        char out[16];
        assert_int_equal(sb_base64_encoded_len(n), strlen(enc[i]));
        sb_base64_encode(plain[i], n, out);
        assert_memory_equal(out, enc[i], strlen(enc[i]));

        unsigned char dec[16];
        size_t declen = 99;
        assert_int_equal(sb_base64_decode(enc[i], strlen(enc[i]), dec, &declen), 0);
        assert_int_equal(declen, n);
        assert_memory_equal(dec, plain[i], n);

        /* The same without padding. */
        size_t unpadded = strlen(enc[i]);
        while (unpadded > 0 && enc[i][unpadded - 1] == '=')
            unpadded--;
        declen = 99;
        assert_int_equal(sb_base64_decode(enc[i], unpadded, dec, &declen), 0);
        assert_int_equal(declen, n);
        assert_memory_equal(dec, plain[i], n);
    }
}

static void test_base64_round_trip_binary(void **state)
{
    (void)state;
    unsigned char in[256];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (unsigned char)(255 - i);
    for (size_t n = 0; n <= sizeof(in); n++) {
        char enc[344];
        unsigned char dec[260];
        size_t elen = sb_base64_encoded_len(n), dlen = 0;
        assert_true(elen <= sizeof(enc));
        sb_base64_encode(in, n, enc);
        assert_int_equal(sb_base64_decode(enc, elen, dec, &dlen), 0);
        assert_int_equal(dlen, n);
        if (n > 0)
            assert_memory_equal(dec, in, n);
    }
    /* The characters '+' and '/' of the standard alphabet. */
    static const unsigned char hi[] = {0xfb, 0xff, 0xbf};
    char out[4];
    sb_base64_encode(hi, 3, out);
    assert_memory_equal(out, "+/+/", 4);
}

static void test_base64_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "A",        /* one char cannot encode a byte */
        "AQID=",    /* padding on a partial quantum */
        "AQ=",      /* partial padding */
        "A===",     /* too much padding */
        "====",     /* padding only */
        "AQ==AQ==", /* padding in the middle */
        "AQ-_",     /* base64url alphabet is not accepted here */
        "AQ I",     /* whitespace */
        "AQ\nI",    "AQ*D",
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(bad); i++) {
        unsigned char dec[16];
        size_t dlen = 0;
        assert_int_equal(sb_base64_decode(bad[i], strlen(bad[i]), dec, &dlen), SB_EPROTO);
    }
    unsigned char dec[4];
    size_t dlen = 0;
    assert_int_equal(sb_base64_decode("AQ\0D", 4, dec, &dlen), SB_EPROTO);
}

static void test_strcopy(void **state)
{
    (void)state;
    char b[4];
    assert_int_equal(sb_strcopy(b, sizeof(b), "ab"), 2);
    assert_string_equal(b, "ab");
    assert_int_equal(sb_strcopy(b, sizeof(b), "abc"), 3);
    assert_string_equal(b, "abc");
    assert_int_equal(sb_strcopy(b, sizeof(b), "abcdef"), 6); /* truncated: the result says so */
    assert_string_equal(b, "abc");
    assert_int_equal(sb_strcopy(b, 1, "x"), 1);
    assert_string_equal(b, "");
}

static void test_ipv4_text(void **state)
{
    (void)state;
    char b[16];
    const unsigned char a[4] = {127, 0, 10, 255}, z[4] = {0, 0, 0, 0}, m[4] = {255, 255, 255, 255};
    assert_int_equal(sb_ipv4_text(a, b), 12);
    assert_string_equal(b, "127.0.10.255");
    assert_int_equal(sb_ipv4_text(z, b), 7);
    assert_string_equal(b, "0.0.0.0");
    assert_int_equal(sb_ipv4_text(m, b), 15);
    assert_string_equal(b, "255.255.255.255");
}

static void test_random_id(void **state)
{
    (void)state;
    char a[33] = {0}, b[33] = {0};
    sb_random_id(a, 32);
    sb_random_id(b, 32);
    assert_int_equal(strlen(a), 32);
    assert_string_not_equal(a, b);
    for (size_t i = 0; i < 32; i++) {
        char c = a[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        assert_true(ok);
    }
    /* Longer than the internal chunk, and nothing written past n. */
    char big[201];
    memset(big, '#', sizeof(big));
    sb_random_id(big, 200);
    assert_int_equal(big[200], '#');
    assert_null(memchr(big, '#', 200));
}

static void test_clocks(void **state)
{
    (void)state;
    uint64_t now = sb_now_ms();
    assert_true(now > 1600000000000ull); /* after 2020 */
    uint64_t m1 = sb_mono_ms();
    uint64_t m2 = sb_mono_ms();
    assert_true(m2 >= m1);
}

/* Every error code has its own words (found by scripts/coverage.sh). */
static void test_strerror_all(void **state)
{
    (void)state;
    assert_string_equal(sb_strerror(SB_ENOMEM), "out of memory");
    assert_string_equal(sb_strerror(SB_ENOTFOUND), "not found");
    assert_string_equal(sb_strerror(SB_EIO), "i/o error");
    assert_string_equal(sb_strerror(SB_EAGAIN), "try again");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_buf_cap),
        cmocka_unit_test(test_buf_json_str_partial_is_rolled_back),
        cmocka_unit_test(test_buf_unbounded_growth),
        cmocka_unit_test(test_buf_numbers),
        cmocka_unit_test(test_json_str_escaping),
        cmocka_unit_test(test_base64_known_vectors),
        cmocka_unit_test(test_base64_round_trip_binary),
        cmocka_unit_test(test_base64_invalid),
        cmocka_unit_test(test_random_id),
        cmocka_unit_test(test_strcopy),
        cmocka_unit_test(test_ipv4_text),
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_strerror_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
