/* Unit tests for src/socketio.c: strict client packet parsing, binary
 * attachments both ways, and the exact bytes of every server packet. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switchboard/socketio.h"

#define MAX_ATT 10

static void assert_buf_eq(const sb_buf_t *b, const char *expect, size_t len)
{
    if (b->len != len || (len > 0 && memcmp(b->base, expect, len) != 0))
        fail_msg("got '%.*s', expected '%.*s'", (int)b->len, b->base ? b->base : "", (int)len, expect);
}
#define ASSERT_BUF_STR(b, lit) assert_buf_eq((b), (lit), sizeof(lit) - 1)

/* Serialises a parsed value the way the encoder does, for exact comparisons. */
static void assert_json_text(const json_t *v, const char *expect)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    assert_non_null(s);
    if (strcmp(s, expect) != 0)
        fail_msg("got %s, expected %s", s, expect);
    free(s);
}

static json_t *parse_json(const char *s)
{
    json_error_t err;
    json_t *v = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (v == NULL)
        fail_msg("test JSON invalid: %s: %s", s, err.text);
    return v;
}

static int parse_str(const char *s, unsigned max_att, sb_sio_packet_t *p, const char **why)
{
    return sb_sio_parse(s, strlen(s), max_att, p, why);
}

/* ---------------------------------------------------------------- malformed */

static void expect_eproto(const char *s, size_t len, unsigned max_att)
{
    sb_sio_packet_t p;
    const char *why = NULL;
    int rc = sb_sio_parse(s, len, max_att, &p, &why);
    if (rc != SB_EPROTO)
        fail_msg("'%.*s': expected SB_EPROTO, got %d", (int)len, s, rc);
    if (why == NULL || why[0] == '\0')
        fail_msg("'%.*s': no reason given", (int)len, s);
    /* Nothing to free after a failure. */
    assert_null(p.data);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *const cases[] = {
        /* unknown packet type */
        "7",
        "x",
        "9[\"e\"]",
        "/chat,",
        " 2[\"e\"]",
        /* CONNECT_ERROR is server-only */
        "4",
        "4{\"message\":\"x\"}",
        /* the namespace ends at the first ',': what follows is not ack id + JSON */
        "2/a,b,[\"e\"]",
        "0/a,b,",
        "0/a,,",
        "1/a,b,",
        "2/a,,[\"e\"]",
        "0/a,b",
        "3/a,1,[1]",
        /* non-integer ack ids */
        "21a[\"e\"]",
        "2/nsp,x[\"e\"]",
        "2-1[\"e\"]",
        "21.5[\"e\"]",
        "2 1[\"e\"]",
        "21234567890123456[\"e\"]", /* 16 digits */
        "31234567890123456[1]",
        /* ack id on CONNECT / DISCONNECT */
        "01",
        "01{}",
        "0/chat,1{}",
        "11",
        "1/chat,1",
        /* CONNECT data that is not an object */
        "0[1]",
        "0\"s\"",
        "0null",
        "0/chat,[]",
        "0 ",
        /* EVENT data that is not a non-empty array whose first item is a string */
        "2{}",
        "2[]",
        "2[1]",
        "2\"x\"",
        "2",
        "2/chat,",
        "2null",
        "27",
        "2[null]",
        "2[[\"e\"]]",
        "27[]",
        /* reserved event names */
        "2[\"connect\"]",
        "2[\"connect_error\"]",
        "2[\"disconnect\"]",
        "2[\"disconnecting\"]",
        "2[\"newListener\"]",
        "2[\"removeListener\"]",
        "2/chat,3[\"disconnect\",1]",
        /* invalid JSON */
        "2[\"a\"",
        "2[\"a\"]]",
        "2[\"a\"] x",
        "2[\"a\",]",
        "2['a']",
        "2[\"a\xff\"]",
        "0{\"a\":}",
        "31[1",
        /* attachment count not an integer / missing / too large */
        "5x-[\"a\",{\"_placeholder\":true,\"num\":0}]",
        "5-[\"a\",{\"_placeholder\":true,\"num\":0}]",
        "51[\"a\",{\"_placeholder\":true,\"num\":0}]",
        "5",
        "51",
        "51-",
        "6",
        "6-",
        "5 1-[\"a\"]",
        "511-[\"a\",{\"_placeholder\":true,\"num\":0}]",
        "51234567890-[\"a\"]",
        "5+1-[\"a\"]",
        /* placeholders pointing outside the attachments */
        "51-[\"a\",{\"_placeholder\":true,\"num\":1}]",
        "51-[\"a\",{\"_placeholder\":true,\"num\":-1}]",
        "51-[\"a\",{\"_placeholder\":true,\"num\":1.5}]",
        "51-[\"a\",{\"_placeholder\":true,\"num\":\"0\"}]",
        "51-[\"a\",{\"_placeholder\":true,\"num\":0.0}]",
        "51-[\"a\",{\"_placeholder\":true}]",
        "51-[\"a\",{\"_placeholder\":true,\"num\":null}]",
        /* placeholder count does not match the attachment count */
        "51-[\"a\"]",
        "52-[\"a\",{\"_placeholder\":true,\"num\":0}]",
        "52-[\"a\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":0}]",
        "51-[\"a\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":0}]",
        "50-[\"a\",{\"_placeholder\":true,\"num\":0}]",
        /* binary packets follow the rules of their text twins */
        "51-[{\"_placeholder\":true,\"num\":0}]",
        "51-[\"connect\",{\"_placeholder\":true,\"num\":0}]",
        "51-{\"_placeholder\":true,\"num\":0}",
        "61-[{\"_placeholder\":true,\"num\":0}]",
        "61-1{\"_placeholder\":true,\"num\":0}",
        /* ACK without ack id, ACK data not an array */
        "3[1]",
        "3/chat,[1]",
        "31{}",
        "31",
        "31\"x\"",
        "3/chat,5",
        "61-{\"_placeholder\":true,\"num\":0}",
        /* DISCONNECT with data */
        "1{}",
        "1[]",
        "1/chat,{}",
        "1\"bye\"",
        "1/chat,null",
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++)
        expect_eproto(cases[i], strlen(cases[i]), MAX_ATT);

    expect_eproto("", 0, MAX_ATT);
    /* '511-' is fine when 11 attachments are allowed, so the bound is what failed above. */
    sb_sio_packet_t p;
    static const char eleven[] = "511-[\"a\",{\"_placeholder\":true,\"num\":0}]";
    assert_int_equal(sb_sio_parse(eleven, sizeof(eleven) - 1, 11, &p, NULL), SB_EPROTO); /* 1 placeholder for 11 */
    /* NUL bytes where C strings would be cut. */
    expect_eproto("2[\"e\\u0000x\"]", 13, MAX_ATT);
    expect_eproto("2/a\0b,[\"e\"]", 11, MAX_ATT);
    expect_eproto("2\0[\"e\"]", 7, MAX_ATT);
    /* Control characters in a namespace. */
    expect_eproto("0/a\nb,", 6, MAX_ATT);
    /* Binary packets are refused outright when no attachment is allowed. */
    expect_eproto("51-[\"e\",{\"_placeholder\":true,\"num\":0}]", 38, 0);
}

/* The reason names the rule that failed, so a log line tells what the client did. */
static void test_malformed_reasons(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *why;
    } cases[] = {
        {"7", "unknown packet type"},
        {"4", "CONNECT_ERROR is server-only"},
        {"2/a,b,[\"e\"]", "invalid JSON"},
        {"21234567890123456[\"e\"]", "ack id too long"},
        {"01", "ack id not allowed on this packet type"},
        {"0[1]", "CONNECT data is not an object"},
        {"1{}", "DISCONNECT carries data"},
        {"2[]", "EVENT data is not a non-empty array"},
        {"2[1]", "event name is not a string"},
        {"2[\"newListener\"]", "reserved event name"},
        {"5x-[\"a\",{\"_placeholder\":true,\"num\":0}]", "malformed attachment count"},
        {"511-[\"a\",{\"_placeholder\":true,\"num\":0}]", "too many attachments"},
        {"51-[\"a\",{\"_placeholder\":true,\"num\":1}]", "placeholder num out of range"},
        {"51-[\"a\",{\"_placeholder\":true,\"num\":1.5}]", "placeholder num is not an integer"},
        {"52-[\"a\",{\"_placeholder\":true,\"num\":1}]", "placeholder count does not match attachments"},
        {"3[1]", "ACK without ack id"},
        {"31{}", "ACK data is not an array"},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        sb_sio_packet_t p;
        const char *why = NULL;
        assert_int_equal(parse_str(cases[i].in, MAX_ATT, &p, &why), SB_EPROTO);
        assert_non_null(why);
        if (strcmp(why, cases[i].why) != 0)
            fail_msg("'%s': reason '%s', expected '%s'", cases[i].in, why, cases[i].why);
    }
}

static void test_namespace_length(void **state)
{
    (void)state;
    char buf[SB_SIO_MAX_NSP_LEN + 32];
    /* Exactly SB_SIO_MAX_NSP_LEN bytes, including the leading '/', is accepted. */
    size_t n = 0;
    buf[n++] = '0';
    buf[n++] = '/';
    memset(buf + n, 'n', SB_SIO_MAX_NSP_LEN - 1);
    n += SB_SIO_MAX_NSP_LEN - 1;
    buf[n++] = ',';
    sb_sio_packet_t p;
    const char *why = NULL;
    assert_int_equal(sb_sio_parse(buf, n, MAX_ATT, &p, &why), 0);
    assert_int_equal(p.nsp_len, SB_SIO_MAX_NSP_LEN);
    assert_int_equal(strlen(p.nsp), SB_SIO_MAX_NSP_LEN);
    sb_sio_packet_clear(&p);

    /* One more is too long, with and without a comma. */
    n = 0;
    buf[n++] = '0';
    buf[n++] = '/';
    memset(buf + n, 'n', SB_SIO_MAX_NSP_LEN);
    n += SB_SIO_MAX_NSP_LEN;
    expect_eproto(buf, n, MAX_ATT);
    buf[n++] = ',';
    expect_eproto(buf, n, MAX_ATT);
    memcpy(buf + n, "[\"e\"]", 5);
    buf[0] = '2';
    expect_eproto(buf, n + 5, MAX_ATT);
}

static void test_ack_id_digits(void **state)
{
    (void)state;
    sb_sio_packet_t p;
    /* 15 digits is the most. */
    assert_int_equal(parse_str("2999999999999999[\"e\"]", MAX_ATT, &p, NULL), 0);
    assert_true(p.ack_id == 999999999999999LL);
    sb_sio_packet_clear(&p);
    expect_eproto("21000000000000000[\"e\"]", 22, MAX_ATT);
    assert_int_equal(parse_str("20[\"e\"]", MAX_ATT, &p, NULL), 0);
    assert_true(p.ack_id == 0);
    sb_sio_packet_clear(&p);
}

/* ---------------------------------------------------------------- valid */

struct valid_case {
    const char *in;
    sb_sio_type_t type;
    const char *nsp;
    int64_t ack_id;
    unsigned attachments;
    const char *data; /* compact JSON, NULL when absent */
};

static void test_valid(void **state)
{
    (void)state;
    static const struct valid_case cases[] = {
        {"0", SB_SIO_CONNECT, "/", -1, 0, NULL},
        {"0/chat,", SB_SIO_CONNECT, "/chat", -1, 0, NULL},
        {"0/chat", SB_SIO_CONNECT, "/chat", -1, 0, NULL}, /* no comma: the namespace runs to the end */
        {"0/,", SB_SIO_CONNECT, "/", -1, 0, NULL},
        {"0{\"token\":\"x\"}", SB_SIO_CONNECT, "/", -1, 0, "{\"token\":\"x\"}"},
        {"0/chat,{\"a\":1}", SB_SIO_CONNECT, "/chat", -1, 0, "{\"a\":1}"},
        {"2[\"e\",1,{\"a\":[2]}]", SB_SIO_EVENT, "/", -1, 0, "[\"e\",1,{\"a\":[2]}]"},
        {"212[\"e\"]", SB_SIO_EVENT, "/", 12, 0, "[\"e\"]"},
        {"2/chat,7[\"e\"]", SB_SIO_EVENT, "/chat", 7, 0, "[\"e\"]"},
        {"2/chat,[\"e\"]", SB_SIO_EVENT, "/chat", -1, 0, "[\"e\"]"},
        {"2[\"$join\",{\"room\":\"r\"}]", SB_SIO_EVENT, "/", -1, 0, "[\"$join\",{\"room\":\"r\"}]"},
        {"2[\"Connect\"]", SB_SIO_EVENT, "/", -1, 0, "[\"Connect\"]"}, /* reserved names are case-sensitive */
        {"2[\"\"]", SB_SIO_EVENT, "/", -1, 0, "[\"\"]"},
        {"2[\"e\",\"a\\u0000b\"]", SB_SIO_EVENT, "/", -1, 0, "[\"e\",\"a\\u0000b\"]"}, /* NUL in args is data */
        {"2[\"e\",{\"_placeholder\":true,\"num\":5}]", SB_SIO_EVENT, "/", -1, 0,
         "[\"e\",{\"_placeholder\":true,\"num\":5}]"}, /* not a binary packet: just data */
        {"31[1,2]", SB_SIO_ACK, "/", 1, 0, "[1,2]"},
        {"3/chat,5[]", SB_SIO_ACK, "/chat", 5, 0, "[]"},
        {"1", SB_SIO_DISCONNECT, "/", -1, 0, NULL},
        {"1/chat,", SB_SIO_DISCONNECT, "/chat", -1, 0, NULL},
        {"51-[\"e\",{\"_placeholder\":true,\"num\":0}]", SB_SIO_BINARY_EVENT, "/", -1, 1,
         "[\"e\",{\"_placeholder\":true,\"num\":0}]"},
        {"61-/chat,3[{\"_placeholder\":true,\"num\":0}]", SB_SIO_BINARY_ACK, "/chat", 3, 1,
         "[{\"_placeholder\":true,\"num\":0}]"},
        {"52-/x,9[\"e\",{\"a\":[{\"_placeholder\":true,\"num\":1}]},{\"_placeholder\":true,\"num\":0}]",
         SB_SIO_BINARY_EVENT, "/x", 9, 2,
         "[\"e\",{\"a\":[{\"_placeholder\":true,\"num\":1}]},{\"_placeholder\":true,\"num\":0}]"},
        {"510-[\"e\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1},"
         "{\"_placeholder\":true,\"num\":2},{\"_placeholder\":true,\"num\":3},{\"_placeholder\":true,\"num\":4},"
         "{\"_placeholder\":true,\"num\":5},{\"_placeholder\":true,\"num\":6},{\"_placeholder\":true,\"num\":7},"
         "{\"_placeholder\":true,\"num\":8},{\"_placeholder\":true,\"num\":9}]",
         SB_SIO_BINARY_EVENT, "/", -1, 10, NULL},
        {"50-[\"e\"]", SB_SIO_BINARY_EVENT, "/", -1, 0, "[\"e\"]"},
        {"51-[\"e\",{\"_placeholder\":false,\"num\":0},{\"_placeholder\":true,\"num\":0}]", SB_SIO_BINARY_EVENT, "/",
         -1, 1, "[\"e\",{\"_placeholder\":false,\"num\":0},{\"_placeholder\":true,\"num\":0}]"},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        const struct valid_case *c = &cases[i];
        sb_sio_packet_t p;
        const char *why = NULL;
        int rc = parse_str(c->in, MAX_ATT, &p, &why);
        if (rc != 0)
            fail_msg("'%s': rc %d (%s)", c->in, rc, why ? why : "?");
        assert_int_equal(p.type, c->type);
        assert_string_equal(p.nsp, c->nsp);
        assert_int_equal(p.nsp_len, strlen(c->nsp));
        assert_true(p.ack_id == c->ack_id);
        assert_int_equal(p.attachments, c->attachments);
        if (c->data == NULL && c->attachments == 0)
            assert_null(p.data);
        else if (c->data != NULL)
            assert_json_text(p.data, c->data);
        sb_sio_packet_clear(&p);
        assert_null(p.data);
        sb_sio_packet_clear(&p); /* twice is harmless */
    }
    /* The input need not be NUL-terminated: only len bytes are read. */
    sb_sio_packet_t p;
    assert_int_equal(sb_sio_parse("212[\"e\"]garbage", 8, MAX_ATT, &p, NULL), 0);
    assert_true(p.ack_id == 12);
    sb_sio_packet_clear(&p);
}

static void test_reserved_names(void **state)
{
    (void)state;
    assert_true(sb_sio_is_reserved_event("connect"));
    assert_true(sb_sio_is_reserved_event("connect_error"));
    assert_true(sb_sio_is_reserved_event("disconnect"));
    assert_true(sb_sio_is_reserved_event("disconnecting"));
    assert_true(sb_sio_is_reserved_event("newListener"));
    assert_true(sb_sio_is_reserved_event("removeListener"));
    assert_false(sb_sio_is_reserved_event("message"));
    assert_false(sb_sio_is_reserved_event("connected"));
    assert_false(sb_sio_is_reserved_event(""));
    assert_false(sb_sio_is_reserved_event(NULL));
}

/* ---------------------------------------------------------------- binary */

static void test_attach_binary(void **state)
{
    (void)state;
    static const char in[] =
        "52-/chat,4[\"up\",{\"_placeholder\":true,\"num\":1},[{\"f\":{\"_placeholder\":true,\"num\":0}}]]";
    sb_sio_packet_t p;
    assert_int_equal(sb_sio_parse(in, sizeof(in) - 1, MAX_ATT, &p, NULL), 0);
    const void *bins[2] = {"\x01\x02\x03", "\xff"};
    size_t lens[2] = {3, 1};
    const char *why = NULL;
    assert_int_equal(sb_sio_attach_binary(p.data, bins, lens, 2, &why), 0);
    assert_json_text(p.data, "[\"up\",{\"$binary\":\"/w==\"},[{\"f\":{\"$binary\":\"AQID\"}}]]");

    /* And back: the encoder produces the placeholders again, numbered in order. */
    json_t *args = json_array();
    for (size_t i = 1; i < json_array_size(p.data); i++)
        json_array_append(args, json_array_get(p.data, i));
    sb_sio_encoded_t enc;
    assert_int_equal(sb_sio_encode_event(&enc, p.nsp, "up", args, p.ack_id), 0);
    ASSERT_BUF_STR(&enc.text,
                   "52-/chat,4[\"up\",{\"_placeholder\":true,\"num\":0},[{\"f\":{\"_placeholder\":true,\"num\":1}}]]");
    assert_int_equal(enc.nbins, 2);
    assert_int_equal(enc.bins[0].len, 1);
    assert_memory_equal(enc.bins[0].base, "\xff", 1);
    assert_int_equal(enc.bins[1].len, 3);
    assert_memory_equal(enc.bins[1].base, "\x01\x02\x03", 3);
    /* The encoder did not touch args. */
    assert_json_text(args, "[{\"$binary\":\"/w==\"},[{\"f\":{\"$binary\":\"AQID\"}}]]");

    /* The encoded packet parses again. */
    sb_sio_packet_t q;
    assert_int_equal(sb_sio_parse(enc.text.base, enc.text.len, MAX_ATT, &q, NULL), 0);
    assert_int_equal(q.type, SB_SIO_BINARY_EVENT);
    assert_int_equal(q.attachments, 2);
    sb_sio_packet_clear(&q);

    sb_sio_encoded_clear(&enc);
    assert_int_equal(enc.nbins, 0);
    assert_null(enc.bins);
    json_decref(args);
    sb_sio_packet_clear(&p);
}

static void test_attach_binary_invalid(void **state)
{
    (void)state;
    const void *bins[1] = {"x"};
    size_t lens[1] = {1};
    static const char *const bad[] = {
        "[{\"_placeholder\":true,\"num\":1}]",
        "[{\"_placeholder\":true,\"num\":-1}]",
        "[{\"_placeholder\":true,\"num\":\"0\"}]",
        "[{\"_placeholder\":true}]",
        "[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":0.5}]",
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(bad); i++) {
        json_t *v = parse_json(bad[i]);
        const char *why = NULL;
        assert_int_equal(sb_sio_attach_binary(v, bins, lens, 1, &why), SB_EPROTO);
        assert_non_null(why);
        /* Nothing was converted. */
        assert_json_text(v, bad[i]);
        json_decref(v);
    }
    /* A root placeholder is converted in place; NULL data is nothing to do. */
    json_t *v = parse_json("{\"_placeholder\":true,\"num\":0}");
    assert_int_equal(sb_sio_attach_binary(v, bins, lens, 1, NULL), 0);
    assert_json_text(v, "{\"$binary\":\"eA==\"}");
    json_decref(v);
    assert_int_equal(sb_sio_attach_binary(NULL, bins, lens, 1, NULL), 0);
}

/* ---------------------------------------------------------------- encoding */

static void expect_event(const char *nsp, const char *event, const char *args_json, int64_t ack_id,
                         const char *expect_text, size_t expect_bins)
{
    json_t *args = args_json ? parse_json(args_json) : NULL;
    sb_sio_encoded_t enc;
    assert_int_equal(sb_sio_encode_event(&enc, nsp, event, args, ack_id), 0);
    assert_buf_eq(&enc.text, expect_text, strlen(expect_text));
    assert_int_equal(enc.nbins, expect_bins);
    sb_sio_encoded_clear(&enc);
    json_decref(args);
}

static void test_encode_event(void **state)
{
    (void)state;
    expect_event("/", "e", "[1,\"two\",{\"b\":3,\"a\":[null,true]}]", -1,
                 "2[\"e\",1,\"two\",{\"b\":3,\"a\":[null,true]}]", 0);
    expect_event(NULL, "e", "[]", -1, "2[\"e\"]", 0);
    expect_event("/", "e", NULL, -1, "2[\"e\"]", 0);
    expect_event("/", "e", NULL, 7, "27[\"e\"]", 0);
    expect_event("/chat", "e", "[1]", -1, "2/chat,[\"e\",1]", 0);
    expect_event("/chat", "e", "[1]", 42, "2/chat,42[\"e\",1]", 0);
    expect_event("/", "quo\"te", "[\"\\u0001\"]", -1, "2[\"quo\\\"te\",\"\\u0001\"]", 0);
    expect_event("/", "h\xc3\xa9", "[\"\xe2\x82\xac\"]", -1, "2[\"h\xc3\xa9\",\"\xe2\x82\xac\"]", 0);
    /* Things that look like $binary but are not: two keys, a non-string value. */
    expect_event("/", "e", "[{\"$binary\":\"AQID\",\"x\":1},{\"$binary\":5}]", -1,
                 "2[\"e\",{\"$binary\":\"AQID\",\"x\":1},{\"$binary\":5}]", 0);
}

static void test_encode_event_binary(void **state)
{
    (void)state;
    json_t *args = parse_json("[{\"$binary\":\"AQID\"}]");
    sb_sio_encoded_t enc;
    assert_int_equal(sb_sio_encode_event(&enc, "/", "e", args, -1), 0);
    ASSERT_BUF_STR(&enc.text, "51-[\"e\",{\"_placeholder\":true,\"num\":0}]");
    assert_int_equal(enc.nbins, 1);
    assert_int_equal(enc.bins[0].len, 3);
    assert_memory_equal(enc.bins[0].base, "\x01\x02\x03", 3);
    sb_sio_encoded_clear(&enc);
    assert_json_text(args, "[{\"$binary\":\"AQID\"}]");
    json_decref(args);

    /* Nested in objects and arrays, with namespace and ack id, unpadded and empty. */
    args = parse_json("[{\"a\":{\"$binary\":\"AQ\"},\"b\":[1,{\"$binary\":\"\"}]},{\"$binary\":\"/w==\"}]");
    assert_int_equal(sb_sio_encode_event(&enc, "/chat", "up", args, 5), 0);
    ASSERT_BUF_STR(&enc.text, "53-/chat,5[\"up\",{\"a\":{\"_placeholder\":true,\"num\":0},"
                              "\"b\":[1,{\"_placeholder\":true,\"num\":1}]},{\"_placeholder\":true,\"num\":2}]");
    assert_int_equal(enc.nbins, 3);
    assert_int_equal(enc.bins[0].len, 1);
    assert_memory_equal(enc.bins[0].base, "\x01", 1);
    assert_int_equal(enc.bins[1].len, 0);
    assert_int_equal(enc.bins[2].len, 1);
    assert_memory_equal(enc.bins[2].base, "\xff", 1);
    sb_sio_encoded_clear(&enc);
    json_decref(args);

    /* Binary ACK. */
    args = parse_json("[{\"$binary\":\"AQID\"},2]");
    assert_int_equal(sb_sio_encode_ack(&enc, "/", 3, args), 0);
    ASSERT_BUF_STR(&enc.text, "61-3[{\"_placeholder\":true,\"num\":0},2]");
    assert_int_equal(enc.nbins, 1);
    sb_sio_encoded_clear(&enc);
    json_decref(args);
}

static void test_encode_errors(void **state)
{
    (void)state;
    sb_sio_encoded_t enc;
    static const char *const bad_b64[] = {
        "[{\"$binary\":\"A\"}]", "[{\"$binary\":\"AQ!D\"}]",
        "[1,{\"x\":[{\"$binary\":\"AQID\"},{\"$binary\":\"%%%%\"}]}]", /* fails after a good one */
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(bad_b64); i++) {
        json_t *args = parse_json(bad_b64[i]);
        memset(&enc, 0x5a, sizeof(enc));
        assert_int_equal(sb_sio_encode_event(&enc, "/", "e", args, -1), SB_EPROTO);
        /* Left cleared. */
        assert_int_equal(enc.text.len, 0);
        assert_null(enc.text.base);
        assert_int_equal(enc.nbins, 0);
        assert_null(enc.bins);
        assert_json_text(args, bad_b64[i]);
        json_decref(args);
    }
    json_t *obj = parse_json("{\"a\":1}");
    assert_int_equal(sb_sio_encode_event(&enc, "/", "e", obj, -1), SB_EINVAL);
    assert_int_equal(sb_sio_encode_ack(&enc, "/", 1, obj), SB_EINVAL);
    json_decref(obj);
    json_t *arr = json_array();
    assert_int_equal(sb_sio_encode_ack(&enc, "/", -1, arr), SB_EINVAL);
    json_decref(arr);
}

static void test_encode_ack(void **state)
{
    (void)state;
    sb_sio_encoded_t enc;
    json_t *args = parse_json("[{\"ok\":true,\"id\":\"1-0\"}]");
    assert_int_equal(sb_sio_encode_ack(&enc, "/", 12, args), 0);
    ASSERT_BUF_STR(&enc.text, "312[{\"ok\":true,\"id\":\"1-0\"}]");
    assert_int_equal(enc.nbins, 0);
    sb_sio_encoded_clear(&enc);
    assert_int_equal(sb_sio_encode_ack(&enc, "/chat", 0, args), 0);
    ASSERT_BUF_STR(&enc.text, "3/chat,0[{\"ok\":true,\"id\":\"1-0\"}]");
    sb_sio_encoded_clear(&enc);
    json_decref(args);
    assert_int_equal(sb_sio_encode_ack(&enc, "/", 1, NULL), 0);
    ASSERT_BUF_STR(&enc.text, "31[]");
    sb_sio_encoded_clear(&enc);
    /* encode_event with a NULL event is the same ACK. */
    args = parse_json("[1,2]");
    assert_int_equal(sb_sio_encode_event(&enc, "/", NULL, args, 9), 0);
    ASSERT_BUF_STR(&enc.text, "39[1,2]");
    sb_sio_encoded_clear(&enc);
    json_decref(args);
}

static void test_encode_connect(void **state)
{
    (void)state;
    sb_buf_t b;
    sb_buf_init(&b, 0);
    assert_int_equal(sb_sio_encode_connect(&b, "/", "abc", NULL, NULL), 0);
    ASSERT_BUF_STR(&b, "0{\"sid\":\"abc\"}");
    sb_buf_free(&b);
    assert_int_equal(sb_sio_encode_connect(&b, "/chat", "abc", NULL, NULL), 0);
    ASSERT_BUF_STR(&b, "0/chat,{\"sid\":\"abc\"}");
    sb_buf_free(&b);
    assert_int_equal(sb_sio_encode_connect(&b, "/", "abc", "p1", "1700-0"), 0);
    ASSERT_BUF_STR(&b, "0{\"sid\":\"abc\",\"pid\":\"p1\",\"offset\":\"1700-0\"}");
    sb_buf_free(&b);
    assert_int_equal(sb_sio_encode_connect(&b, "/chat", "abc", "p1", "1700-0"), 0);
    ASSERT_BUF_STR(&b, "0/chat,{\"sid\":\"abc\",\"pid\":\"p1\",\"offset\":\"1700-0\"}");
    sb_buf_free(&b);

    /* Appends to what is there; on overflow nothing stays. */
    sb_buf_init(&b, 16);
    assert_int_equal(sb_buf_append_str(&b, "x"), 0);
    assert_int_equal(sb_sio_encode_connect(&b, "/", "abcdefghijkl", NULL, NULL), SB_ETOOBIG);
    ASSERT_BUF_STR(&b, "x");
    sb_buf_free(&b);
}

static void test_encode_connect_error(void **state)
{
    (void)state;
    sb_buf_t b;
    sb_buf_init(&b, 0);
    assert_int_equal(sb_sio_encode_connect_error(&b, "/", "Invalid namespace", NULL), 0);
    ASSERT_BUF_STR(&b, "4{\"message\":\"Invalid namespace\"}");
    sb_buf_free(&b);
    assert_int_equal(sb_sio_encode_connect_error(&b, "/admin", "Invalid namespace", NULL), 0);
    ASSERT_BUF_STR(&b, "4/admin,{\"message\":\"Invalid namespace\"}");
    sb_buf_free(&b);
    json_t *data = parse_json("{\"code\":\"token_expired\",\"at\":12}");
    assert_int_equal(sb_sio_encode_connect_error(&b, "/", "jwt \"expired\"", data), 0);
    ASSERT_BUF_STR(&b, "4{\"message\":\"jwt \\\"expired\\\"\",\"data\":{\"code\":\"token_expired\",\"at\":12}}");
    sb_buf_free(&b);
    assert_int_equal(sb_sio_encode_connect_error(&b, "/chat", "no", data), 0);
    ASSERT_BUF_STR(&b, "4/chat,{\"message\":\"no\",\"data\":{\"code\":\"token_expired\",\"at\":12}}");
    sb_buf_free(&b);
    json_decref(data);
}

static void test_encode_disconnect(void **state)
{
    (void)state;
    sb_buf_t b;
    sb_buf_init(&b, 0);
    assert_int_equal(sb_sio_encode_disconnect(&b, "/"), 0);
    ASSERT_BUF_STR(&b, "1");
    sb_buf_free(&b);
    assert_int_equal(sb_sio_encode_disconnect(&b, "/chat"), 0);
    ASSERT_BUF_STR(&b, "1/chat,");
    sb_buf_free(&b);
    assert_int_equal(sb_sio_append_nsp(&b, "/"), 0);
    assert_int_equal(b.len, 0);
    assert_int_equal(sb_sio_append_nsp(&b, "/x"), 0);
    ASSERT_BUF_STR(&b, "/x,");
    sb_buf_free(&b);
}

/* Every encoded server packet is also a valid packet for our own parser (except
 * CONNECT/CONNECT_ERROR, whose direction differs), so the two stay consistent. */
static void test_encode_parse_round_trip(void **state)
{
    (void)state;
    json_t *args = parse_json("[{\"$binary\":\"AQID\"},{\"n\":[{\"$binary\":\"BAUG\"}]},\"s\"]");
    sb_sio_encoded_t enc;
    assert_int_equal(sb_sio_encode_event(&enc, "/r", "ev", args, 77), 0);
    sb_sio_packet_t p;
    const char *why = NULL;
    assert_int_equal(sb_sio_parse(enc.text.base, enc.text.len, MAX_ATT, &p, &why), 0);
    assert_int_equal(p.type, SB_SIO_BINARY_EVENT);
    assert_string_equal(p.nsp, "/r");
    assert_true(p.ack_id == 77);
    const void *bins[2] = {enc.bins[0].base, enc.bins[1].base};
    size_t lens[2] = {enc.bins[0].len, enc.bins[1].len};
    assert_int_equal(sb_sio_attach_binary(p.data, bins, lens, enc.nbins, &why), 0);
    assert_json_text(p.data, "[\"ev\",{\"$binary\":\"AQID\"},{\"n\":[{\"$binary\":\"BAUG\"}]},\"s\"]");
    sb_sio_packet_clear(&p);
    sb_sio_encoded_clear(&enc);
    json_decref(args);
}

/* Data deeper than the walk limit cannot be checked for placeholders: refused, not recursed into. */
static void test_attach_too_deep(void **state)
{
    (void)state;
    json_t *root = json_array(), *cur = root;
    for (int i = 0; i < 2200; i++) {
        json_t *next = json_array();
        json_array_append_new(cur, next);
        cur = next;
    }
    const char *why = NULL;
    const void *bins[1] = {"x"};
    size_t lens[1] = {1};
    assert_int_equal(sb_sio_attach_binary(root, bins, lens, 1, &why), SB_EPROTO);
    assert_string_equal(why, "data nested too deeply");
    json_decref(root);
}

/* What handle_event stores when the raw text cannot be used: items 1.. dumped. */
static char *dumped_args(const json_t *data)
{
    json_t *args = json_array();
    for (size_t i = 1; i < json_array_size(data); i++)
        json_array_append(args, json_array_get(data, i));
    char *t = json_dumps(args, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    json_decref(args);
    return t;
}

/* raw: 1 when the received text must be usable as it is. Either way, what the
 * caller ends up with is byte for byte the dump. */
static void expect_args_raw(const char *pkt, int raw)
{
    sb_sio_packet_t p;
    const char *why = NULL, *rest = NULL;
    size_t rest_len = 0;
    assert_int_equal(sb_sio_parse(pkt, strlen(pkt), 10, &p, &why), 0);
    char *dump = dumped_args(p.data);
    assert_non_null(dump);
    int got = sb_sio_event_args_raw(&p, &rest, &rest_len);
    if (got != raw)
        fail_msg("%s: raw %d, expected %d", pkt, got, raw);
    if (got) {
        assert_int_equal(rest_len + 1, strlen(dump));
        assert_int_equal(dump[0], '[');
        assert_memory_equal(rest, dump + 1, rest_len);
    }
    free(dump);
    sb_sio_packet_clear(&p);
}

static void test_event_args_raw(void **state)
{
    (void)state;
    expect_args_raw("2[\"e\"]", 1);
    expect_args_raw("2[\"e\",1]", 1);
    expect_args_raw("21[\"e\",{\"t\":1732761178123}]", 1);
    expect_args_raw("2/chat,7[\"e\",{\"a\":[1,-2,true,false,null,{}],\"b\":\"x\\\"y\\\\z\\n\\t\"},[],\"\u00e9/\"]", 1);
    expect_args_raw("2[\"na\\\"me\",{\"a\":{\"a\":1},\"b\":{\"a\":2}}]", 1); /* equal keys in different objects */
    expect_args_raw("2[\"e\",{\"a\":1,\"b\":[{\"a\":2}],\"c\":3}]", 1);
    /* not what jansson writes: the dump is used */
    expect_args_raw("2[\"e\", 1]", 0);
    expect_args_raw("2[ \"e\",1]", 0);
    expect_args_raw("2[\"e\",1 ]", 0);
    expect_args_raw("2[\"e\",{\"a\": 1}]", 0);
    expect_args_raw("2[\"e\",1.5]", 0);
    expect_args_raw("2[\"e\",1e3]", 0);
    expect_args_raw("2[\"e\",-0]", 0);
    expect_args_raw("2[\"e\",\"\\u00e9\"]", 0);
    expect_args_raw("2[\"e\",\"a\\/b\"]", 0);
    expect_args_raw("2[\"e\",{\"a\":1,\"a\":2}]", 0);
    expect_args_raw("2[\"e\",{\"a\":1,\"b\":{\"c\":1},\"a\":2}]", 0);
    /* binary events never: their data changes with the attachments */
    sb_sio_packet_t p;
    const char *why = NULL, *rest = NULL;
    size_t rest_len = 0;
    const char *bin = "51-[\"e\",{\"_placeholder\":true,\"num\":0}]";
    assert_int_equal(sb_sio_parse(bin, strlen(bin), 10, &p, &why), 0);
    assert_int_equal(sb_sio_event_args_raw(&p, &rest, &rest_len), 0);
    sb_sio_packet_clear(&p);
}

/* sb_sio_json_plain: when it says 1, jansson must parse the text and dump it back to the same bytes. */
static void check_plain(const char *txt, size_t len, int want)
{
    int got = sb_sio_json_plain(txt, len);
    if (got != want)
        fail_msg("sb_sio_json_plain(%.*s) = %d, want %d", (int)len, txt, got, want);
    if (got) {
        json_error_t err;
        json_t *v = json_loadb(txt, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        assert_non_null(v);
        char *d = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
        assert_non_null(d);
        assert_int_equal(strlen(d), len);
        assert_memory_equal(d, txt, len);
        free(d);
        json_decref(v);
    }
}

static void test_json_plain(void **state)
{
    (void)state;
    static const struct {
        const char *txt;
        int want;
    } cases[] = {
        {"[]", 1},
        {"[{\"t\":123,\"s\":0}]", 1},
        {"[1,-2,\"x\",true,false,null,{},[[]]]", 1},
        {"[\"a\\\"b\\\\c\\n\\t\\r\\b\\f\"]", 1},
        {"[\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"]", 1},
        {"{\"k\":{\"$bin\":\"x\"}}", 1},
        {"[123456789012345678]", 1},
        {"[1234567890123456789]", 0}, /* could overflow */
        {"[1.5]", 0},
        {"[1e3]", 0},
        {"[-0]", 0},
        {"[01]", 0},
        {"[-]", 0},
        {"[ 1]", 0},
        {"[1,]", 0},
        {"[1", 0},
        {"[1]]", 0},
        {"[\"\\u0041\"]", 0},
        {"[\"\\/\"]", 0},
        {"[\"\\x\"]", 0},
        {"[\"a\x01\"]", 0},
        {"[\"\xc0\xaf\"]", 0},         /* overlong */
        {"[\"\xed\xa0\x80\"]", 0},     /* surrogate */
        {"[\"\xf4\x90\x80\x80\"]", 0}, /* above U+10FFFF */
        {"[\"\xc3\"]", 0},
        {"{\"a\":1,\"a\":2}", 0},
        {"[{\"$binary\":\"AAA=\"}]", 0},
        {"[tru]", 0},
        {"[truex]", 0},
        {"[{\"a\"}]", 0},
        {"[{1:2}]", 0},
        {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", 1},
        {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", 0}, /* 33 deep */
        {"", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_plain(cases[i].txt, strlen(cases[i].txt), cases[i].want);
    check_plain("[\"a\0b\"]", 7, 0); /* a raw NUL is a control character */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_malformed_reasons),
        cmocka_unit_test(test_namespace_length),
        cmocka_unit_test(test_ack_id_digits),
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_reserved_names),
        cmocka_unit_test(test_attach_binary),
        cmocka_unit_test(test_attach_binary_invalid),
        cmocka_unit_test(test_encode_event),
        cmocka_unit_test(test_encode_event_binary),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_encode_ack),
        cmocka_unit_test(test_encode_connect),
        cmocka_unit_test(test_encode_connect_error),
        cmocka_unit_test(test_encode_disconnect),
        cmocka_unit_test(test_encode_parse_round_trip),
        cmocka_unit_test(test_attach_too_deep),
        cmocka_unit_test(test_event_args_raw),
        cmocka_unit_test(test_json_plain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
