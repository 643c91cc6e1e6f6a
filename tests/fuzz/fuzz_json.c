/*
 * fuzz_json.c — libFuzzer target for sb_json_load_simple, differential against
 * jansson: whenever the fast path returns an object, json_loadb must accept the
 * same bytes and give an equal value with the same key order; with duplicate
 * keys refused, the fast path must decline whatever jansson refuses.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/json.h"

static void check(const uint8_t *data, size_t size, int simple_flags, size_t jflags)
{
    json_t *f = sb_json_load_simple((const char *)data, size, simple_flags);
    if (f == NULL)
        return;
    json_error_t err;
    json_t *j = json_loadb((const char *)data, size, jflags, &err);
    if (j == NULL || !json_equal(f, j))
        abort();
    char *a = json_dumps(f, JSON_COMPACT | JSON_PRESERVE_ORDER);
    char *b = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (a == NULL || b == NULL || strcmp(a, b) != 0)
        abort();
    free(a);
    free(b);
    json_decref(f);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size, 0, JSON_DECODE_ANY | JSON_ALLOW_NUL);
    check(data, size, SB_JSON_SIMPLE_REJECT_DUPLICATES, JSON_REJECT_DUPLICATES);
    return 0;
}
