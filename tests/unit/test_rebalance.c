/* Unit tests for the pure parts of src/rebalance.c: how many connections a node closes in one round, and how a
 * round's closes are split between the workers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "switchboard/rebalance.h"

#define DECIDE(local, others, threshold, rate, interval, avg, why)                                                     \
    sb_rebalance_decide((local), (others), sizeof(others) / sizeof((others)[0]), (threshold), (rate), (interval),      \
                        (avg), (why))

/* Two nodes of 20 each and a new one: avg 13.3, the old ones are 50 % above it and close 6 each (down to 14). */
static void test_scale_out_two_to_three(void **state)
{
    (void)state;
    const uint64_t others[] = {20, 0};
    double avg = 0;
    int why = -1;
    assert_int_equal(DECIDE(20, others, 20, 20, 10000, &avg, &why), 6);
    assert_true(fabs(avg - 40.0 / 3) < 1e-9);
    assert_int_equal(why, SB_REBALANCE_OVER);
    /* The new node itself is below the average: it never closes anything. */
    const uint64_t old[] = {20, 20};
    assert_int_equal(DECIDE(0, old, 20, 20, 10000, &avg, &why), 0);
    assert_int_equal(why, SB_REBALANCE_NONE);
}

/* At most rate * interval per round. */
static void test_rate_cap(void **state)
{
    (void)state;
    const uint64_t others[] = {0};
    assert_int_equal(DECIDE(100, others, 20, 20, 10000, NULL, NULL), 50); /* budget 200: the excess decides */
    assert_int_equal(DECIDE(100, others, 20, 2, 10000, NULL, NULL), 20);
    assert_int_equal(DECIDE(100, others, 20, 1, 1000, NULL, NULL), 1);
    assert_int_equal(DECIDE(100, others, 20, 3, 1500, NULL, NULL), 4); /* 4.5 rounds down: never above the rate */
}

/* Within the band around the average nothing happens; the comparison is strict. */
static void test_threshold_edges(void **state)
{
    (void)state;
    int why = -1;
    const uint64_t a[] = {20, 18}; /* avg 20: 22 is 10 % above, 18 is 10 % below */
    assert_int_equal(DECIDE(22, a, 20, 20, 10000, NULL, &why), 0);
    assert_int_equal(why, SB_REBALANCE_NONE);
    const uint64_t b[] = {8}; /* avg 10: 12 is exactly 20 % above, 8 exactly 20 % below */
    assert_int_equal(DECIDE(12, b, 20, 20, 10000, NULL, &why), 0);
    const uint64_t c[] = {8}; /* avg 10.5: 13 is 23.8 % above; closes floor(2.5) */
    assert_int_equal(DECIDE(13, c, 20, 20, 10000, NULL, &why), 2);
    assert_int_equal(why, SB_REBALANCE_OVER);
    /* A lower threshold makes the band narrower. */
    assert_int_equal(DECIDE(22, a, 5, 20, 10000, NULL, &why), 2);
}

/* Far above in percent but only one connection above the average: rounding, not imbalance. */
static void test_min_excess(void **state)
{
    (void)state;
    const uint64_t others[] = {1};
    int why = -1;
    assert_int_equal(DECIDE(3, others, 20, 20, 10000, NULL, &why), 0); /* avg 2, 50 % above, excess 1 */
    assert_int_equal(why, SB_REBALANCE_NONE);
    const uint64_t two[] = {0};
    assert_int_equal(DECIDE(4, two, 20, 20, 10000, NULL, &why), 2); /* avg 2, excess 2 */
}

/* Ten nodes, one new: the old ones are only 11 % above the average, but the new one is far below it, so each old
 * node closes its part of the new node's deficit. */
static void test_one_new_node_among_many(void **state)
{
    (void)state;
    const uint64_t others[] = {111, 111, 111, 111, 111, 111, 111, 111, 0};
    double avg = 0;
    int why = -1;
    assert_int_equal(DECIDE(111, others, 20, 20, 10000, &avg, &why), 11); /* avg 99.9 */
    assert_int_equal(why, SB_REBALANCE_UNDER);
    /* Above 100 % no node can be that far below: only the "above" rule is left. */
    assert_int_equal(DECIDE(111, others, 100, 20, 10000, NULL, &why), 0);
    assert_int_equal(why, SB_REBALANCE_NONE);
    /* A node at or below the average never closes, whatever the others hold. */
    const uint64_t mixed[] = {200, 0};
    assert_int_equal(DECIDE(100, mixed, 20, 20, 10000, NULL, &why), 0);
}

static void test_alone_or_empty(void **state)
{
    (void)state;
    double avg = 0;
    int why = -1;
    assert_int_equal(sb_rebalance_decide(100, NULL, 0, 20, 20, 10000, &avg, &why), 0);
    assert_true(avg == 100.0);
    assert_int_equal(why, SB_REBALANCE_NONE);
    const uint64_t zeros[] = {0, 0};
    assert_int_equal(DECIDE(0, zeros, 20, 20, 10000, &avg, NULL), 0);
    assert_true(avg == 0.0);
}

/* Over many random clusters: never below the average, never above the budget, and the nodes above the average
 * together never close more than the nodes below it lack (no overshoot, no herd). */
static void test_never_below_average(void **state)
{
    (void)state;
    uint64_t seed = 42;
    for (int round = 0; round < 5000; round++) {
        uint64_t counts[8];
        size_t n = 2 + (size_t)(round % 7);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            counts[i] = (seed >> 33) % 500;
        }
        unsigned threshold = 5 + (unsigned)(round % 60);
        uint64_t total = 0, shed = 0;
        double deficit = 0;
        for (size_t i = 0; i < n; i++)
            total += counts[i];
        double mean = (double)total / (double)n;
        for (size_t k = 0; k < n; k++) {
            uint64_t others[8];
            size_t m = 0;
            for (size_t i = 0; i < n; i++)
                if (i != k)
                    others[m++] = counts[i];
            double avg = 0;
            uint64_t c = sb_rebalance_decide(counts[k], others, m, threshold, 7, 10000, &avg, NULL);
            assert_true(fabs(avg - mean) < 1e-6);
            assert_true(c <= 70);
            if (c > 0) {
                assert_true((double)(counts[k] - c) >= avg - 1e-9);
                assert_true((double)counts[k] - avg >= SB_REBALANCE_MIN_EXCESS);
            }
            shed += c;
            if ((double)counts[k] < mean)
                deficit += mean - (double)counts[k];
        }
        assert_true((double)shed <= deficit + 1e-6);
    }
}

static void test_split(void **state)
{
    (void)state;
    uint64_t out[3];
    const uint64_t even[] = {10, 10};
    sb_rebalance_split(6, even, 2, out);
    assert_int_equal(out[0], 3);
    assert_int_equal(out[1], 3);
    sb_rebalance_split(5, even, 2, out); /* equal remainders: the lower index first */
    assert_int_equal(out[0], 3);
    assert_int_equal(out[1], 2);
    const uint64_t uneven[] = {1, 9, 0};
    sb_rebalance_split(7, uneven, 3, out); /* 0.7, 6.3, 0: the largest remainder gets the leftover */
    assert_int_equal(out[0], 1);
    assert_int_equal(out[1], 6);
    assert_int_equal(out[2], 0);
    const uint64_t few[] = {3, 4};
    sb_rebalance_split(50, few, 2, out); /* more than they hold: everything */
    assert_int_equal(out[0], 3);
    assert_int_equal(out[1], 4);
    sb_rebalance_split(0, few, 2, out);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 0);
}

static void test_split_random(void **state)
{
    (void)state;
    uint64_t seed = 7;
    for (int round = 0; round < 2000; round++) {
        uint64_t held[6], out[6], sum = 0, given = 0;
        size_t n = 1 + (size_t)(round % 6);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            held[i] = (seed >> 33) % 50;
            sum += held[i];
        }
        uint64_t total = (uint64_t)round % 120;
        sb_rebalance_split(total, held, n, out);
        for (size_t i = 0; i < n; i++) {
            assert_true(out[i] <= held[i]);
            if (sum > 0 && total < sum) {
                double share = (double)total * (double)held[i] / (double)sum;
                assert_true(fabs((double)out[i] - share) < 1.0);
            }
            given += out[i];
        }
        assert_int_equal(given, total < sum ? total : sum);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scale_out_two_to_three),
        cmocka_unit_test(test_rate_cap),
        cmocka_unit_test(test_threshold_edges),
        cmocka_unit_test(test_min_excess),
        cmocka_unit_test(test_one_new_node_among_many),
        cmocka_unit_test(test_alone_or_empty),
        cmocka_unit_test(test_never_below_average),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_split_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
