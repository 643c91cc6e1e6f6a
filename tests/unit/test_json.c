/* test_json.c — sb_json_load_simple: equal to jansson where it answers, declines the rest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "switchboard/json.h"

/* The fast path answers, and its value and key order are jansson's. */
static void expect_same(const char *text, int flags)
{
    json_t *f = sb_json_load_simple(text, strlen(text), flags);
    assert_non_null(f);
    json_t *j = json_loadb(text, strlen(text), (flags & SB_JSON_SIMPLE_REJECT_DUPLICATES) ? JSON_REJECT_DUPLICATES : 0,
                           NULL);
    assert_non_null(j);
    assert_true(json_equal(f, j));
    char *a = json_dumps(f, JSON_COMPACT | JSON_PRESERVE_ORDER), *b = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(a, b);
    free(a);
    free(b);
    json_decref(f);
    json_decref(j);
}

static void expect_declined(const char *text, int flags)
{
    assert_null(sb_json_load_simple(text, strlen(text), flags));
}

static void test_accepts(void **state)
{
    (void)state;
    expect_same("{}", 0);
    expect_same(" {\t}\r\n", 0);
    expect_same("{\"token\":\"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2ln\"}", 0);
    expect_same("{\"room\":\"bench\",\"token\":\"abc\"}", 0);
    expect_same("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", SB_JSON_SIMPLE_REJECT_DUPLICATES);
    expect_same("{\"sub\":\"u1\",\"iat\":1795849779,\"exp\":1795853379,\"join\":[\"bench\"],\"rooms\":[]}", 0);
    expect_same(" { \"a\" : [ 1 , -2 , true , false , null ] , \"b\" : \"\" , \"\" : 0 } ", 0);
    expect_same("{\"n\":-0,\"m\":999999999999999999,\"k\":-999999999999999999}", 0);
    /* a later duplicate replaces the value in the first key's place, as jansson does */
    expect_same("{\"a\":1,\"b\":2,\"a\":3}", 0);
    /* event arrays and nesting up to 8 levels */
    expect_same("[\"e\",{\"s\":7,\"t\":123456,\"p\":\"xx\"}]", 0);
    expect_same("[\"e\",1,[2,[3]],{\"a\":{\"b\":[]}},null]", 0);
    expect_same("[[[[[[[[1]]]]]]]]", 0);
    expect_same("{\"a\":{\"b\":1,\"b\":2}}", 0);
    json_t *o = sb_json_load_simple("{\"a\":1,\"b\":2,\"a\":3}", 19, 0);
    assert_int_equal(json_object_size(o), 2);
    assert_int_equal(json_integer_value(json_object_get(o, "a")), 3);
    json_decref(o);
}

static void test_declines(void **state)
{
    (void)state;
    expect_declined("", 0);
    expect_declined("\"s\"", 0);
    expect_declined("1", 0);
    expect_declined("{\"a\":1,\"a\":2}", SB_JSON_SIMPLE_REJECT_DUPLICATES);
    expect_declined("[[[[[[[[[1]]]]]]]]]", 0);                                      /* deeper than 8 */
    expect_declined("{\"a\":{\"b\":1,\"b\":2}}", SB_JSON_SIMPLE_REJECT_DUPLICATES); /* at any depth */
    expect_declined("{\"a\":\"\\u00e9\"}", 0);                                      /* escape */
    expect_declined("{\"a\":\"\xc3\xa9\"}", 0);                                     /* non-ASCII */
    expect_declined("{\"a\":\"\x01\"}", 0);                                         /* control character */
    expect_declined("{\"a\":1.5}", 0);                                              /* real */
    expect_declined("{\"a\":1e3}", 0);                                              /* exponent */
    expect_declined("{\"a\":01}", 0);                                               /* leading zero */
    expect_declined("{\"a\":1234567890123456789}", 0);                              /* 19 digits */
    expect_declined("{\"a\":-}", 0);
    expect_declined("{\"a\":tru}", 0);
    expect_declined("{\"a\":truex}", 0);
    expect_declined("{\"a\":1} x", 0); /* trailing bytes */
    expect_declined("{\"a\":1,}", 0);
    expect_declined("{\"a\" 1}", 0);
    expect_declined("{\"a\":1", 0);
    expect_declined("{\"a\":[1,]}", 0);
    expect_declined("{\"a\":[1}", 0);
    expect_declined("{a:1}", 0);
    /* bounded by len: the closing brace past it is not seen */
    assert_null(sb_json_load_simple("{\"a\":1}", 6, 0));
    assert_null(sb_json_load_simple(NULL, 0, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_declines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
