/*
 * test_durable.c — durable emits: the stream id helpers (src/durable.c), the REST validation of durable emits
 * (sb_api_validate) and the inbox settings (--inbox-maxlen, --inbox-max-age).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "switchboard/api.h"
#include "switchboard/common.h"
#include "switchboard/config.h"
#include "switchboard/durable.h"

static sb_stream_id_t id_of(const char *s)
{
    sb_stream_id_t id = {0, 0};
    assert_int_equal(sb_durable_id_parse(s, strlen(s), &id), 0);
    return id;
}

static void test_id_parse(void **state)
{
    (void)state;
    sb_stream_id_t id = id_of("1700000000000-7");
    assert_true(id.ms == 1700000000000ULL);
    assert_true(id.seq == 7);
    id = id_of("18446744073709551615-18446744073709551615");
    assert_true(id.ms == UINT64_MAX && id.seq == UINT64_MAX);
    static const char *const bad[] = {"",
                                      "-",
                                      "1",
                                      "1-",
                                      "-1",
                                      "1-2-3",
                                      "a-1",
                                      "1-a",
                                      " 1-2",
                                      "1-2 ",
                                      "+1-2",
                                      "18446744073709551616-0",
                                      "0-18446744073709551616",
                                      "1--2",
                                      "123456789012345678901234567890-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sb_stream_id_t out = {9, 9};
        assert_int_equal(sb_durable_id_parse(bad[i], strlen(bad[i]), &out), SB_EINVAL);
        assert_true(out.ms == 9 && out.seq == 9); /* untouched on failure */
    }
    assert_int_equal(sb_durable_id_parse(NULL, 0, &id), SB_EINVAL);
    /* len bounds the text: no NUL needed */
    assert_int_equal(sb_durable_id_parse("5-6xyz", 3, &id), 0);
    assert_true(id.ms == 5 && id.seq == 6);
}

static void test_id_order_and_format(void **state)
{
    (void)state;
    sb_stream_id_t zero = {0, 0}, a = id_of("1-0"), b = id_of("1-1"), c = id_of("2-0"), big = id_of("10-0");
    assert_true(sb_durable_id_cmp(&zero, &a) < 0);
    assert_true(sb_durable_id_cmp(&a, &b) < 0);
    assert_true(sb_durable_id_cmp(&b, &c) < 0);
    assert_true(sb_durable_id_cmp(&c, &big) < 0); /* numeric, not text, order: "10-0" > "2-0" */
    assert_true(sb_durable_id_cmp(&big, &c) > 0);
    assert_int_equal(sb_durable_id_cmp(&b, &b), 0);
    char out[SB_DURABLE_ID_MAX + 1];
    sb_stream_id_t max = {UINT64_MAX, UINT64_MAX};
    assert_int_equal(sb_durable_id_format(&max, out, sizeof(out)), SB_DURABLE_ID_MAX);
    assert_string_equal(out, "18446744073709551615-18446744073709551615");
    assert_int_equal(sb_durable_id_format(&b, out, sizeof(out)), 3);
    assert_string_equal(out, "1-1");
    assert_int_equal(sb_durable_id_format(&max, out, 10), 0); /* does not fit */
}

static void test_inbox_id(void **state)
{
    (void)state;
    json_t *inbox = json_loads("{\"alice\":\"17-3\",\"bob\":\"bad\",\"carol\":5}", 0, NULL);
    assert_non_null(inbox);
    sb_stream_id_t id;
    assert_int_equal(sb_durable_inbox_id(inbox, "alice", &id), 0);
    assert_true(id.ms == 17 && id.seq == 3);
    assert_int_equal(sb_durable_inbox_id(inbox, "bob", &id), SB_EINVAL);
    assert_int_equal(sb_durable_inbox_id(inbox, "carol", &id), SB_EINVAL);
    assert_int_equal(sb_durable_inbox_id(inbox, "dave", &id), SB_ENOTFOUND);
    json_t *arr = json_array();
    assert_int_equal(sb_durable_inbox_id(arr, "alice", &id), SB_ENOTFOUND);
    json_decref(arr);
    json_decref(inbox);
}

static int validate(const sb_config_t *cfg, const char *body, char *field, char *message)
{
    return sb_api_validate(cfg, "emit", body, strlen(body), field, 64, message, 160);
}

static void test_rest_validation(void **state)
{
    (void)state;
    sb_config_t cfg;
    sb_config_init(&cfg);
    char field[64], message[160];
    assert_int_equal(validate(&cfg, "{\"event\":\"e\",\"users\":[\"u\"],\"durable\":true}", field, message), 0);
    assert_int_equal(validate(&cfg, "{\"event\":\"e\",\"rooms\":[\"r\"],\"durable\":false}", field, message), 0);
    static const struct {
        const char *body, *field, *word;
    } bad[] = {
        {"{\"event\":\"e\",\"durable\":true}", "durable", "users"},
        {"{\"event\":\"e\",\"users\":[],\"durable\":true}", "durable", "users"},
        {"{\"event\":\"e\",\"users\":null,\"durable\":true}", "durable", "users"},
        {"{\"event\":\"e\",\"users\":[\"u\"],\"rooms\":[\"r\"],\"durable\":true}", "durable", "rooms"},
        {"{\"event\":\"e\",\"users\":[\"u\"],\"sockets\":[\"s\"],\"durable\":true}", "durable", "sockets"},
        {"{\"event\":\"e\",\"users\":[\"u\"],\"except_rooms\":[\"r\"],\"durable\":true}", "durable", "except_rooms"},
        {"{\"event\":\"e\",\"users\":[\"u\"],\"except_sockets\":[\"s\"],\"durable\":true}", "durable",
         "except_sockets"},
        {"{\"event\":\"e\",\"users\":[\"u\"],\"volatile\":true,\"durable\":true}", "durable", "volatile"},
        {"{\"event\":\"e\",\"users\":[\"u\"],\"durable\":1}", "durable", "true or false"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(validate(&cfg, bad[i].body, field, message), SB_EINVAL);
        assert_string_equal(field, bad[i].field);
        assert_non_null(strstr(message, bad[i].word));
    }
    /* an empty rooms list is no target: allowed with durable */
    assert_int_equal(validate(&cfg, "{\"event\":\"e\",\"users\":[\"u\"],\"rooms\":[],\"durable\":true}", field,
                              message),
                     0);
    /* at most SB_DURABLE_MAX_USERS users */
    char body[16384];
    size_t n = (size_t)snprintf(body, sizeof(body), "{\"event\":\"e\",\"durable\":true,\"users\":[");
    for (int i = 0; i <= SB_DURABLE_MAX_USERS; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n, "%s\"%d\"", i ? "," : "", i);
    snprintf(body + n, sizeof(body) - n, "]}");
    assert_int_equal(validate(&cfg, body, field, message), SB_EINVAL);
    assert_string_equal(field, "users");
    sb_config_free(&cfg);
}

static void test_settings(void **state)
{
    (void)state;
    sb_config_t c;
    char err[256];
    sb_config_init(&c);
    assert_true(c.inbox_maxlen == 1000);
    assert_true(c.inbox_max_age_ms == 24ULL * 3600 * 1000);
    char *argv[] = {"switchboard", "--inbox-maxlen", "50", "--inbox-max-age", "90s", NULL};
    assert_int_equal(sb_config_parse(&c, 5, argv, NULL, err, sizeof(err)), 0);
    assert_true(c.inbox_maxlen == 50);
    assert_true(c.inbox_max_age_ms == 90000);
    sb_config_free(&c);

    sb_config_init(&c);
    char *env[] = {"SWITCHBOARD_INBOX_MAXLEN=7", "SWITCHBOARD_INBOX_MAX_AGE=2h", NULL};
    char *argv0[] = {"switchboard", NULL};
    assert_int_equal(sb_config_parse(&c, 1, argv0, env, err, sizeof(err)), 0);
    assert_true(c.inbox_maxlen == 7);
    assert_true(c.inbox_max_age_ms == 2ULL * 3600 * 1000);
    sb_config_free(&c);

    sb_config_init(&c);
    char *bad1[] = {"switchboard", "--inbox-maxlen", "0", NULL};
    assert_int_equal(sb_config_parse(&c, 3, bad1, NULL, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "inbox-maxlen"));
    sb_config_free(&c);
    sb_config_init(&c);
    char *bad2[] = {"switchboard", "--inbox-max-age", "10ms", NULL};
    assert_int_equal(sb_config_parse(&c, 3, bad2, NULL, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "inbox-max-age"));
    sb_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_parse), cmocka_unit_test(test_id_order_and_format),
        cmocka_unit_test(test_inbox_id), cmocka_unit_test(test_rest_validation),
        cmocka_unit_test(test_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
