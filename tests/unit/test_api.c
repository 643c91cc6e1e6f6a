/* Unit tests for src/api.c's pure part: sb_api_validate, the body checks of the REST bus operations. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "switchboard/api.h"
#include "switchboard/common.h"
#include "switchboard/config.h"

static sb_config_t cfg;

static int setup(void **state)
{
    (void)state;
    sb_config_init(&cfg);
    char *argv[] = {"switchboard", "--namespace", "/chat", NULL};
    char *envp[] = {NULL};
    char err[256];
    return sb_config_parse(&cfg, 3, argv, envp, err, sizeof(err));
}

static int teardown(void **state)
{
    (void)state;
    sb_config_free(&cfg);
    return 0;
}

/* Validates `body` for `op`; on failure the field and message must be exactly the expected ones. */
static void check(const char *op, const char *body, int expect, const char *field, const char *message)
{
    char f[64] = "untouched", m[200] = "untouched";
    int rv = sb_api_validate(&cfg, op, body, strlen(body), f, sizeof(f), m, sizeof(m));
    if (rv != expect)
        fail_msg("%s %s: got %d, want %d (%s: %s)", op, body, rv, expect, f, m);
    if (expect == 0) {
        /* Nothing is written on success. */
        assert_string_equal(f, "untouched");
        assert_string_equal(m, "untouched");
    } else {
        assert_string_equal(f, field);
        assert_string_equal(m, message);
    }
}

#define OK(op, body) check(op, body, 0, NULL, NULL)
#define BAD(op, body, field, message) check(op, body, SB_EINVAL, field, message)

static void test_body_and_op(void **state)
{
    (void)state;
    BAD("emit", "{", "body", "invalid JSON");
    BAD("emit", "[1]", "body", "the body must be a JSON object");
    /* A bare scalar is not a JSON text for the decoder (no JSON_DECODE_ANY). */
    BAD("emit", "\"x\"", "body", "invalid JSON");
    BAD("broadcast", "{}", "op", "unknown operation");
    BAD("", "{}", "op", "unknown operation");
}

static void test_emit(void **state)
{
    (void)state;
    OK("emit", "{\"event\":\"news\"}");
    OK("emit", "{\"event\":\"news\",\"args\":[1,{\"a\":2}],\"namespace\":\"/chat\",\"rooms\":[\"r\"],\"users\":[\"u\"],"
               "\"sockets\":[\"s\"],\"except_rooms\":[],\"except_sockets\":null,\"volatile\":true,\"durable\":false}");
    OK("emit", "{\"event\":\"news\",\"namespace\":\"/\",\"args\":null}");
    OK("emit", "{\"event\":\"news\",\"namespace\":null}");
    BAD("emit", "{\"event\":\"news\",\"colour\":1}", "colour", "unknown field \"colour\"");
    BAD("emit", "{}", "event", "is required: a non-empty string");
    BAD("emit", "{\"event\":\"\"}", "event", "is required: a non-empty string");
    BAD("emit", "{\"event\":7}", "event", "is required: a non-empty string");
    BAD("emit", "{\"event\":\"connect\"}", "event", "is a name reserved by Socket.IO");
    BAD("emit", "{\"event\":\"disconnecting\"}", "event", "is a name reserved by Socket.IO");
    BAD("emit", "{\"event\":\"e\",\"args\":{}}", "args", "must be an array");
    BAD("emit", "{\"event\":\"e\",\"namespace\":3}", "namespace", "must be a string");
    BAD("emit", "{\"event\":\"e\",\"namespace\":\"/other\"}", "namespace", "is not a namespace this server serves");
    BAD("emit", "{\"event\":\"e\",\"rooms\":\"r\"}", "rooms", "must be an array of strings");
    BAD("emit", "{\"event\":\"e\",\"users\":[\"\"]}", "users",
        "must be an array of non-empty strings of at most 512 bytes");
    BAD("emit", "{\"event\":\"e\",\"except_sockets\":[1]}", "except_sockets",
        "must be an array of non-empty strings of at most 512 bytes");
    BAD("emit", "{\"event\":\"e\",\"volatile\":1}", "volatile", "must be true or false");
    BAD("emit", "{\"event\":\"e\",\"durable\":true}", "durable",
        "a durable emit needs a non-empty \"users\" list (it is kept in their inboxes)");
    BAD("emit", "{\"event\":\"e\",\"durable\":true,\"users\":[\"u\"],\"rooms\":[\"r\"]}", "durable",
        "a durable emit targets users only: remove \"rooms\" or durable");
    BAD("emit", "{\"event\":\"e\",\"durable\":true,\"users\":[\"u\"],\"volatile\":true}", "durable",
        "an emit cannot be both durable and volatile");

    /* A room name of 512 bytes passes, 513 does not. */
    char body[700];
    char name[514];
    memset(name, 'r', 513);
    name[512] = '\0';
    snprintf(body, sizeof(body), "{\"event\":\"e\",\"rooms\":[\"%s\"]}", name);
    OK("emit", body);
    name[512] = 'r';
    name[513] = '\0';
    snprintf(body, sizeof(body), "{\"event\":\"e\",\"rooms\":[\"%s\"]}", name);
    BAD("emit", body, "rooms", "must be an array of non-empty strings of at most 512 bytes");
}

static void test_join_leave(void **state)
{
    (void)state;
    OK("join", "{\"rooms\":[\"r\"],\"sockets\":[\"s\"]}");
    OK("leave", "{\"rooms\":[\"r\"],\"users\":[\"u\"],\"namespace\":\"/chat\"}");
    BAD("join", "{\"rooms\":[\"r\"],\"sockets\":[\"s\"],\"event\":\"e\"}", "event", "unknown field \"event\"");
    BAD("join", "{\"sockets\":[\"s\"]}", "rooms", "is required: the rooms to join or leave");
    BAD("leave", "{\"rooms\":[],\"sockets\":[\"s\"]}", "rooms", "is required: the rooms to join or leave");
    BAD("join", "{\"rooms\":[\"r\"]}", "sockets", "sockets or users is required: whose sockets join or leave");
    BAD("join", "{\"rooms\":[\"r\"],\"users\":[]}", "sockets",
        "sockets or users is required: whose sockets join or leave");
    BAD("leave", "{\"rooms\":[\"r\"],\"sockets\":\"s\"}", "sockets", "must be an array of strings");
    BAD("join", "{\"rooms\":[\"r\"],\"sockets\":[\"s\"],\"namespace\":\"/x\"}", "namespace",
        "is not a namespace this server serves");
}

static void test_disconnect(void **state)
{
    (void)state;
    OK("disconnect", "{\"sockets\":[\"s\"]}");
    OK("disconnect", "{\"rooms\":[\"r\"],\"reason\":\"bye\"}");
    OK("disconnect", "{\"users\":[\"u\"],\"reason\":null}");
    BAD("disconnect", "{}", "sockets", "sockets, users or rooms is required");
    BAD("disconnect", "{\"sockets\":[\"s\"],\"reason\":5}", "reason", "must be a string of at most 256 bytes");
    BAD("disconnect", "{\"sockets\":[\"s\"],\"why\":\"x\"}", "why", "unknown field \"why\"");
    BAD("disconnect", "{\"rooms\":[7]}", "rooms", "must be an array of non-empty strings of at most 512 bytes");
    char body[400];
    char reason[258];
    memset(reason, 'x', 257);
    reason[257] = '\0';
    snprintf(body, sizeof(body), "{\"sockets\":[\"s\"],\"reason\":\"%s\"}", reason);
    BAD("disconnect", body, "reason", "must be a string of at most 256 bytes");
    reason[256] = '\0';
    snprintf(body, sizeof(body), "{\"sockets\":[\"s\"],\"reason\":\"%s\"}", reason);
    OK("disconnect", body);
}

static void test_ack(void **state)
{
    (void)state;
    OK("ack", "{\"socket\":\"s\",\"ack_id\":0}");
    OK("ack", "{\"socket\":\"s\",\"ack_id\":12,\"args\":[1,2]}");
    OK("ack", "{\"socket\":\"s\",\"ack_id\":12,\"args\":null}");
    BAD("ack", "{\"socket\":\"s\",\"ack_id\":1,\"rooms\":[]}", "rooms", "unknown field \"rooms\"");
    BAD("ack", "{\"ack_id\":1}", "socket", "is required: the socket id of the event's entry");
    BAD("ack", "{\"socket\":\"\",\"ack_id\":1}", "socket", "is required: the socket id of the event's entry");
    const char *ack_id = "is required: a non-negative integer (the entry's ack_id)";
    BAD("ack", "{\"socket\":\"s\"}", "ack_id", ack_id);
    BAD("ack", "{\"socket\":\"s\",\"ack_id\":-1}", "ack_id", ack_id);
    BAD("ack", "{\"socket\":\"s\",\"ack_id\":1.5}", "ack_id", ack_id);
    BAD("ack", "{\"socket\":\"s\",\"ack_id\":1,\"args\":\"a\"}", "args", "must be an array");
}

/* The field and message are cut to the caller's buffers, NUL-terminated. */
static void test_truncation(void **state)
{
    (void)state;
    char f[4], m[8];
    const char *body = "{\"event\":\"e\",\"volatile\":1}";
    assert_int_equal(sb_api_validate(&cfg, "emit", body, strlen(body), f, sizeof(f), m, sizeof(m)), SB_EINVAL);
    assert_string_equal(f, "vol");
    assert_string_equal(m, "must be");
}

/* Only `len` bytes are read: a body need not be NUL-terminated. */
static void test_length_bounded(void **state)
{
    (void)state;
    char f[32], m[64];
    const char *body = "{\"event\":\"e\"}garbage";
    assert_int_equal(sb_api_validate(&cfg, "emit", body, 13, f, sizeof(f), m, sizeof(m)), 0);
    assert_int_equal(sb_api_validate(&cfg, "emit", body, strlen(body), f, sizeof(f), m, sizeof(m)), SB_EINVAL);
    assert_string_equal(f, "body");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_and_op),    cmocka_unit_test(test_emit), cmocka_unit_test(test_join_leave),
        cmocka_unit_test(test_disconnect),     cmocka_unit_test(test_ack),  cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_length_bounded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
