/* Unit tests for src/engineio.c: packets, polling payloads, handshake, query. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "switchboard/engineio.h"

#define LIT(s) (s), (sizeof(s) - 1)

static void assert_buf_eq(const sb_buf_t *b, const char *expect, size_t len)
{
    assert_int_equal(b->len, len);
    if (len > 0)
        assert_memory_equal(b->base, expect, len);
}
#define ASSERT_BUF_STR(b, lit) assert_buf_eq((b), (lit), sizeof(lit) - 1)

static void test_parse_text_types(void **state)
{
    (void)state;
    static const char *const in[] = {"0{\"x\":1}", "1", "2probe", "3probe", "4hello", "5", "6"};
    for (int t = 0; t <= 6; t++) {
        sb_eio_packet_t p;
        memset(&p, 0xaa, sizeof(p));
        assert_int_equal(sb_eio_parse_text(in[t], strlen(in[t]), &p), 0);
        assert_int_equal(p.type, t);
        assert_int_equal(p.binary, 0);
        assert_int_equal(p.len, strlen(in[t]) - 1);
        assert_ptr_equal(p.data, in[t] + 1);
    }
    sb_eio_packet_t p;
    assert_int_equal(sb_eio_parse_text(LIT("4"), &p), 0);
    assert_int_equal(p.type, SB_EIO_MESSAGE);
    assert_int_equal(p.len, 0);
}

static void test_parse_text_invalid(void **state)
{
    (void)state;
    sb_eio_packet_t p;
    assert_int_equal(sb_eio_parse_text("", 0, &p), SB_EPROTO);
    assert_int_equal(sb_eio_parse_text(LIT("7"), &p), SB_EPROTO);
    assert_int_equal(sb_eio_parse_text(LIT("9x"), &p), SB_EPROTO);
    assert_int_equal(sb_eio_parse_text(LIT("x"), &p), SB_EPROTO);
    assert_int_equal(sb_eio_parse_text(LIT("/4"), &p), SB_EPROTO);
    assert_int_equal(sb_eio_parse_text(LIT("b4"), &p), SB_EPROTO);
}

/* Records every packet the decoder delivers. */
struct rec {
    int calls;
    int types[8];
    int binary[8];
    char data[8][32];
    size_t len[8];
    int stop_after; /* return 99 from this call on (0 = never) */
};

static int record_cb(void *ctx, const sb_eio_packet_t *pkt)
{
    struct rec *r = ctx;
    assert_true(r->calls < 8);
    assert_true(pkt->len <= sizeof(r->data[0]));
    r->types[r->calls] = pkt->type;
    r->binary[r->calls] = pkt->binary;
    memcpy(r->data[r->calls], pkt->data, pkt->len);
    r->len[r->calls] = pkt->len;
    r->calls++;
    if (r->stop_after != 0 && r->calls >= r->stop_after)
        return 99;
    return 0;
}

static void test_payload_decode(void **state)
{
    (void)state;
    struct rec r = {0};
    assert_int_equal(sb_eio_payload_decode(LIT("4hello\x1e"
                                               "4world\x1e"
                                               "bAQID"),
                                           0, record_cb, &r),
                     0);
    assert_int_equal(r.calls, 3);
    assert_int_equal(r.types[0], SB_EIO_MESSAGE);
    assert_int_equal(r.binary[0], 0);
    assert_int_equal(r.len[0], 5);
    assert_memory_equal(r.data[0], "hello", 5);
    assert_int_equal(r.types[1], SB_EIO_MESSAGE);
    assert_int_equal(r.len[1], 5);
    assert_memory_equal(r.data[1], "world", 5);
    assert_int_equal(r.types[2], SB_EIO_MESSAGE);
    assert_int_equal(r.binary[2], 1);
    assert_int_equal(r.len[2], 3);
    assert_memory_equal(r.data[2], "\x01\x02\x03", 3);

    /* A single packet, other types, an empty binary message. */
    memset(&r, 0, sizeof(r));
    assert_int_equal(sb_eio_payload_decode(LIT("2\x1e"
                                               "1\x1e"
                                               "b"),
                                           3, record_cb, &r),
                     0);
    assert_int_equal(r.calls, 3);
    assert_int_equal(r.types[0], SB_EIO_PING);
    assert_int_equal(r.types[1], SB_EIO_CLOSE);
    assert_int_equal(r.binary[2], 1);
    assert_int_equal(r.len[2], 0);
}

static void test_payload_decode_malformed_delivers_nothing(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
        int rc;
    } cases[] = {
        {"", 0, SB_EPROTO},
        {LIT("4a\x1e\x1e"
             "4b"),
         SB_EPROTO},                /* empty segment in the middle */
        {LIT("4a\x1e"), SB_EPROTO}, /* trailing separator */
        {LIT("\x1e"
             "4a"),
         SB_EPROTO}, /* leading separator */
        {LIT("4a\x1e"
             "7b"),
         SB_EPROTO}, /* bad type after a good packet */
        {LIT("4a\x1e"
             "bAQ!D"),
         SB_EPROTO}, /* bad base64 */
        {LIT("4a\x1e"
             "bA"),
         SB_EPROTO}, /* truncated base64 */
        {LIT("4a\x1e"
             "4b\x1e"
             "4c"),
         SB_ETOOBIG}, /* max 2 */
        {LIT("4a\x1e"
             "4b\x1e"
             "7c"),
         SB_ETOOBIG},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct rec r = {0};
        size_t max = cases[i].rc == SB_ETOOBIG ? 2 : 0; /* the count is checked before the content */
        assert_int_equal(sb_eio_payload_decode(cases[i].s, cases[i].len, max, record_cb, &r), cases[i].rc);
        assert_int_equal(r.calls, 0);
    }
    /* Exactly at the limit is fine. */
    struct rec r = {0};
    assert_int_equal(sb_eio_payload_decode(LIT("4a\x1e"
                                               "4b"),
                                           2, record_cb, &r),
                     0);
    assert_int_equal(r.calls, 2);
}

static void test_payload_decode_callback_stops(void **state)
{
    (void)state;
    struct rec r = {0};
    r.stop_after = 2;
    assert_int_equal(sb_eio_payload_decode(LIT("4a\x1e"
                                               "4b\x1e"
                                               "4c"),
                                           0, record_cb, &r),
                     99);
    assert_int_equal(r.calls, 2);
}

static void test_payload_append(void **state)
{
    (void)state;
    sb_buf_t b;
    sb_buf_init(&b, 0);
    assert_int_equal(sb_eio_payload_append_text(&b, SB_EIO_MESSAGE, LIT("hello")), 0);
    ASSERT_BUF_STR(&b, "4hello");
    assert_int_equal(sb_eio_payload_append_text(&b, SB_EIO_PING, NULL, 0), 0);
    ASSERT_BUF_STR(&b, "4hello\x1e"
                       "2");
    assert_int_equal(sb_eio_payload_append_binary(&b, "\x01\x02\x03", 3), 0);
    ASSERT_BUF_STR(&b, "4hello\x1e"
                       "2\x1e"
                       "bAQID");
    assert_int_equal(sb_eio_payload_append_binary(&b, "\xff", 1), 0);
    ASSERT_BUF_STR(&b, "4hello\x1e"
                       "2\x1e"
                       "bAQID\x1e"
                       "b/w==");
    sb_buf_free(&b);

    /* A binary first: no separator. */
    assert_int_equal(sb_eio_payload_append_binary(&b, "", 0), 0);
    ASSERT_BUF_STR(&b, "b");
    sb_buf_free(&b);

    /* Round trip through the decoder. */
    assert_int_equal(sb_eio_payload_append_text(&b, SB_EIO_MESSAGE, LIT("x")), 0);
    assert_int_equal(sb_eio_payload_append_binary(&b, "\x00\xfe", 2), 0);
    struct rec r = {0};
    assert_int_equal(sb_eio_payload_decode(b.base, b.len, 0, record_cb, &r), 0);
    assert_int_equal(r.calls, 2);
    assert_int_equal(r.len[1], 2);
    assert_memory_equal(r.data[1], "\x00\xfe", 2);
    sb_buf_free(&b);
}

static void test_payload_append_cap(void **state)
{
    (void)state;
    sb_buf_t b;
    sb_buf_init(&b, 8);
    assert_int_equal(sb_eio_payload_append_text(&b, SB_EIO_MESSAGE, LIT("abcd")), 0);
    /* Separator + type + 3 bytes = 5 more: 10 > 8, and nothing of it stays. */
    assert_int_equal(sb_eio_payload_append_text(&b, SB_EIO_MESSAGE, LIT("xyz")), SB_ETOOBIG);
    ASSERT_BUF_STR(&b, "4abcd");
    assert_int_equal(sb_eio_payload_append_binary(&b, "\x01\x02\x03", 3), SB_ETOOBIG);
    ASSERT_BUF_STR(&b, "4abcd");
    assert_int_equal(sb_eio_payload_append_text(&b, SB_EIO_PING, LIT("x")), 0);
    ASSERT_BUF_STR(&b, "4abcd\x1e"
                       "2x");
    sb_buf_free(&b);
}

static void test_handshake_json(void **state)
{
    (void)state;
    sb_buf_t b;
    sb_buf_init(&b, 0);
    assert_int_equal(sb_eio_handshake_json(&b, "abc-_123", 1, 25000, 20000, 1000000), 0);
    ASSERT_BUF_STR(&b, "{\"sid\":\"abc-_123\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,"
                       "\"pingTimeout\":20000,\"maxPayload\":1000000}");
    sb_buf_free(&b);
    assert_int_equal(sb_eio_handshake_json(&b, "s", 0, 1, 2, 3), 0);
    ASSERT_BUF_STR(&b, "{\"sid\":\"s\",\"upgrades\":[],\"pingInterval\":1,\"pingTimeout\":2,\"maxPayload\":3}");
    sb_buf_free(&b);
}

static void test_error_messages(void **state)
{
    (void)state;
    assert_string_equal(sb_eio_error_message(SB_EIO_ERR_UNKNOWN_TRANSPORT), "Transport unknown");
    assert_string_equal(sb_eio_error_message(SB_EIO_ERR_UNKNOWN_SID), "Session ID unknown");
    assert_string_equal(sb_eio_error_message(SB_EIO_ERR_BAD_HANDSHAKE_METHOD), "Bad handshake method");
    assert_string_equal(sb_eio_error_message(SB_EIO_ERR_BAD_REQUEST), "Bad request");
    assert_string_equal(sb_eio_error_message(SB_EIO_ERR_FORBIDDEN), "Forbidden");
    assert_string_equal(sb_eio_error_message(SB_EIO_ERR_UNSUPPORTED_PROTOCOL_VERSION), "Unsupported protocol version");
}

static void test_query_parse(void **state)
{
    (void)state;
    sb_eio_query_t q;
    assert_int_equal(sb_eio_query_parse(LIT("EIO=4&transport=polling&t=OxYz1&sid=ab%2Dc%5F"), &q), 0);
    assert_string_equal(q.eio, "4");
    assert_string_equal(q.transport, "polling");
    assert_string_equal(q.sid, "ab-c_");
    assert_int_equal(q.b64, 0);

    assert_int_equal(sb_eio_query_parse(LIT("transport=websocket&b64=1&EIO=3"), &q), 0);
    assert_string_equal(q.eio, "3");
    assert_string_equal(q.transport, "websocket");
    assert_string_equal(q.sid, "");
    assert_int_equal(q.b64, 1);

    /* Missing keys, NULL and empty queries, a key without '=' and empty values. */
    assert_int_equal(sb_eio_query_parse(NULL, 0, &q), 0);
    assert_string_equal(q.eio, "");
    assert_string_equal(q.transport, "");
    assert_string_equal(q.sid, "");
    assert_int_equal(sb_eio_query_parse("", 0, &q), 0);
    assert_string_equal(q.eio, "");
    assert_int_equal(sb_eio_query_parse(LIT("&&foo&EIO&sid=&x=%zz"), &q), 0);
    assert_string_equal(q.eio, "");
    assert_string_equal(q.sid, "");

    /* Keys are case-sensitive, like engine.io's. */
    assert_int_equal(sb_eio_query_parse(LIT("eio=4&Transport=polling"), &q), 0);
    assert_string_equal(q.eio, "");
    assert_string_equal(q.transport, "");

    /* '+' is a space, upper- and lower-case hex both decode. */
    assert_int_equal(sb_eio_query_parse(LIT("sid=a+b%2fc%2Fd"), &q), 0);
    assert_string_equal(q.sid, "a b/c/d");

    /* Only the query's own length counts. */
    assert_int_equal(sb_eio_query_parse("EIO=4&transport=polling", 5, &q), 0);
    assert_string_equal(q.eio, "4");
    assert_string_equal(q.transport, "");
}

static void test_query_parse_invalid(void **state)
{
    (void)state;
    sb_eio_query_t q;
    assert_int_equal(sb_eio_query_parse(LIT("EIO=%zz"), &q), SB_EPROTO);
    assert_int_equal(sb_eio_query_parse(LIT("sid=abc%2"), &q), SB_EPROTO);
    assert_int_equal(sb_eio_query_parse(LIT("sid=abc%"), &q), SB_EPROTO);
    assert_int_equal(sb_eio_query_parse(LIT("transport=a%00b"), &q), SB_EPROTO);
    /* eio holds 7 characters, transport 15, sid 63. */
    assert_int_equal(sb_eio_query_parse(LIT("EIO=1234567"), &q), 0);
    assert_string_equal(q.eio, "1234567");
    assert_int_equal(sb_eio_query_parse(LIT("EIO=12345678"), &q), SB_EPROTO);
    assert_int_equal(sb_eio_query_parse(LIT("transport=websocketwebsocket"), &q), SB_EPROTO);
    char sid[80] = "sid=";
    memset(sid + 4, 'a', 63);
    assert_int_equal(sb_eio_query_parse(sid, 4 + 63, &q), 0);
    assert_int_equal(strlen(q.sid), 63);
    sid[4 + 63] = 'a';
    assert_int_equal(sb_eio_query_parse(sid, 4 + 64, &q), SB_EPROTO);
    /* An escape counts once it is decoded: 63 decoded bytes fit. */
    char esc[200] = "sid=";
    size_t n = 4;
    for (int i = 0; i < 63; i++) {
        memcpy(esc + n, "%41", 3);
        n += 3;
    }
    assert_int_equal(sb_eio_query_parse(esc, n, &q), 0);
    assert_int_equal(strlen(q.sid), 63);
    assert_int_equal(q.sid[0], 'A');
}

/* Edges found by scripts/coverage.sh: a packet type outside 0..6, an error code outside the table. */
static void test_append_and_message_edges(void **state)
{
    (void)state;
    sb_buf_t b;
    sb_buf_init(&b, 64);
    assert_int_equal(sb_eio_payload_append_text(&b, (sb_eio_type_t)7, "x", 1), SB_EINVAL);
    assert_int_equal(sb_eio_payload_append_text(&b, (sb_eio_type_t)-1, "x", 1), SB_EINVAL);
    assert_int_equal(b.len, 0);
    sb_buf_free(&b);
    assert_string_equal(sb_eio_error_message((sb_eio_error_t)42), "Bad request");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_text_types),
        cmocka_unit_test(test_parse_text_invalid),
        cmocka_unit_test(test_payload_decode),
        cmocka_unit_test(test_payload_decode_malformed_delivers_nothing),
        cmocka_unit_test(test_payload_decode_callback_stops),
        cmocka_unit_test(test_payload_append),
        cmocka_unit_test(test_payload_append_cap),
        cmocka_unit_test(test_handshake_json),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_query_parse),
        cmocka_unit_test(test_query_parse_invalid),
        cmocka_unit_test(test_append_and_message_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
