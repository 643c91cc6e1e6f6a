/*
 * test_map.c — unit tests for the string-keyed hash map (src/map.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switchboard/common.h"
#include "switchboard/map.h"

static int v1, v2, v3;

static void test_set_get_del_replace(void **state)
{
    (void)state;
    sb_map_t m;
    sb_map_init(&m);
    assert_null(sb_map_get(&m, "a", 1));
    assert_null(sb_map_del(&m, "a", 1));

    assert_int_equal(sb_map_set(&m, "alpha", 5, &v1), 0);
    assert_int_equal(sb_map_set(&m, "beta", 4, &v2), 0);
    assert_int_equal(m.count, 2);
    assert_ptr_equal(sb_map_get(&m, "alpha", 5), &v1);
    assert_ptr_equal(sb_map_get(&m, "beta", 4), &v2);
    /* Prefixes and longer keys are different keys. */
    assert_null(sb_map_get(&m, "alph", 4));
    assert_null(sb_map_get(&m, "alphax", 6));

    /* Replace keeps the count. */
    assert_int_equal(sb_map_set(&m, "alpha", 5, &v3), 0);
    assert_int_equal(m.count, 2);
    assert_ptr_equal(sb_map_get(&m, "alpha", 5), &v3);

    assert_ptr_equal(sb_map_del(&m, "alpha", 5), &v3);
    assert_int_equal(m.count, 1);
    assert_null(sb_map_get(&m, "alpha", 5));
    assert_null(sb_map_del(&m, "alpha", 5));
    assert_ptr_equal(sb_map_get(&m, "beta", 4), &v2);

    /* NULL values are storable but indistinguishable from absence by get. */
    assert_int_equal(sb_map_set(&m, "", 0, &v1), 0);
    assert_ptr_equal(sb_map_get(&m, "", 0), &v1);
    assert_ptr_equal(sb_map_del(&m, "", 0), &v1);
    sb_map_free(&m);
    assert_int_equal(m.cap, 0);
    assert_null(m.entries);
}

static void test_key_is_copied(void **state)
{
    (void)state;
    sb_map_t m;
    sb_map_init(&m);
    char key[8];
    memcpy(key, "room", 5);
    assert_int_equal(sb_map_set(&m, key, 4, &v1), 0);
    memcpy(key, "XXXX", 5);
    assert_ptr_equal(sb_map_get(&m, "room", 4), &v1);
    size_t it = 0;
    const sb_map_entry_t *e;
    assert_true(sb_map_next(&m, &it, &e));
    assert_string_equal(e->key, "room"); /* NUL-terminated copy */
    assert_int_equal(e->keylen, 4);
    sb_map_free(&m);
}

static void test_borrowed_keys(void **state)
{
    (void)state;
    sb_map_t m;
    sb_map_init_borrowed(&m);
    /* keys that live in their values, as a room's name lives in the room */
    static char k1[] = "room:a", k2[] = "room:b", k1b[] = "room:a";
    assert_int_equal(sb_map_set(&m, k1, 6, &v1), 0);
    assert_int_equal(sb_map_set(&m, k2, 6, &v2), 0);
    assert_ptr_equal(sb_map_get(&m, "room:a", 6), &v1);
    size_t it = 0;
    const sb_map_entry_t *e;
    int seen = 0;
    while (sb_map_next(&m, &it, &e)) {
        assert_true(e->key == k1 || e->key == k2); /* the caller's bytes, not a copy */
        seen++;
    }
    assert_int_equal(seen, 2);
    /* a replacement takes the new value's key pointer: the old value may go */
    assert_int_equal(sb_map_set(&m, k1b, 6, &v3), 0);
    it = 0;
    while (sb_map_next(&m, &it, &e))
        if (e->value == &v3)
            assert_ptr_equal(e->key, k1b);
    assert_ptr_equal(sb_map_del(&m, "room:a", 6), &v3);
    assert_null(sb_map_get(&m, "room:a", 6));
    /* growth and tombstones keep the pointers; free releases no key (ASan/valgrind would see a bad free) */
    static char many[200][8];
    for (int i = 0; i < 200; i++) {
        snprintf(many[i], sizeof(many[i]), "k%d", i);
        assert_int_equal(sb_map_set(&m, many[i], strlen(many[i]), many[i]), 0);
    }
    for (int i = 0; i < 200; i += 2)
        assert_ptr_equal(sb_map_del(&m, many[i], strlen(many[i])), many[i]);
    for (int i = 1; i < 200; i += 2)
        assert_ptr_equal(sb_map_get(&m, many[i], strlen(many[i])), many[i]);
    assert_int_equal(m.count, 101);
    sb_map_free(&m);
    assert_int_equal(m.borrowed, 1); /* still a borrowed map, empty */
    assert_int_equal(sb_map_set(&m, k2, 6, &v2), 0);
    sb_map_free(&m);
}

static void test_many_keys_growth(void **state)
{
    (void)state;
    enum { N = 20000 };
    sb_map_t m;
    sb_map_init(&m);
    static int vals[N];
    char k[32];
    for (int i = 0; i < N; i++) {
        int n = snprintf(k, sizeof(k), "key-%d", i);
        assert_int_equal(sb_map_set(&m, k, (size_t)n, &vals[i]), 0);
        /* Load stays at or below 70% at every step. */
        assert_true(m.used * 10 <= m.cap * 7);
    }
    assert_int_equal(m.count, N);
    assert_true((m.cap & (m.cap - 1)) == 0);
    for (int i = 0; i < N; i++) {
        int n = snprintf(k, sizeof(k), "key-%d", i);
        assert_ptr_equal(sb_map_get(&m, k, (size_t)n), &vals[i]);
    }
    for (int i = 0; i < N; i += 2) {
        int n = snprintf(k, sizeof(k), "key-%d", i);
        assert_ptr_equal(sb_map_del(&m, k, (size_t)n), &vals[i]);
    }
    assert_int_equal(m.count, N / 2);
    for (int i = 0; i < N; i++) {
        int n = snprintf(k, sizeof(k), "key-%d", i);
        if (i % 2)
            assert_ptr_equal(sb_map_get(&m, k, (size_t)n), &vals[i]);
        else
            assert_null(sb_map_get(&m, k, (size_t)n));
    }
    sb_map_free(&m);
}

static void test_tombstone_reuse(void **state)
{
    (void)state;
    sb_map_t m;
    sb_map_init(&m);
    char k[32];
    /* A long-lived key keeps the table from being empty. */
    assert_int_equal(sb_map_set(&m, "anchor", 6, &v2), 0);
    assert_int_equal(sb_map_set(&m, "k", 1, &v1), 0);
    size_t cap = m.cap, used = m.used;
    /* Deleting and re-inserting the same key reuses its tombstone. */
    for (int i = 0; i < 1000; i++) {
        assert_ptr_equal(sb_map_del(&m, "k", 1), &v1);
        assert_int_equal(m.used, used); /* the tombstone still counts */
        assert_int_equal(sb_map_set(&m, "k", 1, &v1), 0);
        assert_int_equal(m.used, used);
        assert_int_equal(m.cap, cap);
    }
    /* Churn through many distinct keys with a small live set: tombstones are
     * purged by rehashing at the same size instead of growing forever. */
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(k, sizeof(k), "churn-%d", i);
        assert_int_equal(sb_map_set(&m, k, (size_t)n, &v3), 0);
        assert_ptr_equal(sb_map_del(&m, k, (size_t)n), &v3);
        assert_true(m.used * 10 <= m.cap * 7);
    }
    assert_int_equal(m.count, 2);
    assert_true(m.cap <= 16);
    assert_ptr_equal(sb_map_get(&m, "anchor", 6), &v2);
    assert_ptr_equal(sb_map_get(&m, "k", 1), &v1);
    sb_map_free(&m);
}

static void test_iteration_with_deletion(void **state)
{
    (void)state;
    enum { N = 500 };
    sb_map_t m;
    sb_map_init(&m);
    static int vals[N];
    char k[32];
    for (int i = 0; i < N; i++) {
        vals[i] = i;
        int n = snprintf(k, sizeof(k), "s%d", i);
        assert_int_equal(sb_map_set(&m, k, (size_t)n, &vals[i]), 0);
    }
    /* Visit every entry exactly once, deleting the odd ones as we go. */
    unsigned char seen[N];
    memset(seen, 0, sizeof(seen));
    size_t visited = 0;
    const sb_map_entry_t *e;
    for (size_t it = 0; sb_map_next(&m, &it, &e);) {
        int v = *(int *)e->value;
        assert_true(v >= 0 && v < N);
        assert_int_equal(seen[v], 0);
        seen[v] = 1;
        visited++;
        if (v % 2) {
            char kc[32];
            memcpy(kc, e->key, e->keylen + 1);
            assert_ptr_equal(sb_map_del(&m, kc, e->keylen), &vals[v]);
        }
    }
    assert_int_equal(visited, N);
    assert_int_equal(m.count, N / 2);
    visited = 0;
    for (size_t it = 0; sb_map_next(&m, &it, &e);) {
        assert_int_equal(*(int *)e->value % 2, 0);
        visited++;
    }
    assert_int_equal(visited, N / 2);
    /* Empty map iterates nothing. */
    sb_map_t empty;
    sb_map_init(&empty);
    size_t it = 0;
    assert_false(sb_map_next(&empty, &it, &e));
    sb_map_free(&m);
}

static void test_binary_keys(void **state)
{
    (void)state;
    sb_map_t m;
    sb_map_init(&m);
    /* "<nsp>\0<room>" keys: the NUL is part of the key. */
    assert_int_equal(sb_map_set(&m, "/\0lobby", 7, &v1), 0);
    assert_int_equal(sb_map_set(&m, "/\0lobbx", 7, &v2), 0);
    assert_int_equal(sb_map_set(&m, "/\0", 2, &v3), 0);
    assert_int_equal(sb_map_set(&m, "/", 1, &v2), 0);
    assert_int_equal(m.count, 4);
    assert_ptr_equal(sb_map_get(&m, "/\0lobby", 7), &v1);
    assert_ptr_equal(sb_map_get(&m, "/\0lobbx", 7), &v2);
    assert_ptr_equal(sb_map_get(&m, "/\0", 2), &v3);
    assert_ptr_equal(sb_map_get(&m, "/", 1), &v2);
    assert_null(sb_map_get(&m, "/\0lobbz", 7));
    assert_null(sb_map_get(&m, "/\0\0", 3));
    const char bin[] = {'\0', '\0', '\xff', '\x01'};
    assert_int_equal(sb_map_set(&m, bin, sizeof(bin), &v1), 0);
    assert_ptr_equal(sb_map_get(&m, bin, sizeof(bin)), &v1);
    assert_null(sb_map_get(&m, bin, 2));
    assert_ptr_equal(sb_map_del(&m, "/\0lobby", 7), &v1);
    assert_ptr_equal(sb_map_get(&m, "/\0lobbx", 7), &v2);
    sb_map_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_get_del_replace), cmocka_unit_test(test_key_is_copied),
        cmocka_unit_test(test_borrowed_keys),       cmocka_unit_test(test_many_keys_growth),
        cmocka_unit_test(test_tombstone_reuse),     cmocka_unit_test(test_iteration_with_deletion),
        cmocka_unit_test(test_binary_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
