/* Unit tests for src/metrics.c: exact text of each kind, escaping, registration
 * misuse, NULL handles, sharded totals under threads, quantiles, process_*
 * metrics and `promtool check metrics` on a rendered registry. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "switchboard/metrics.h"

/* The rendered page up to the process_* metrics, NUL-terminated (caller frees). */
static char *render_own(sb_metrics_t *m)
{
    sb_buf_t b;
    sb_buf_init(&b, 1 << 20);
    assert_int_equal(sb_metrics_render(m, &b), 0);
    assert_int_equal(sb_buf_append_char(&b, '\0'), 0);
    char *text = sb_buf_steal(&b);
    char *proc = strstr(text, "# HELP process_");
    assert_non_null(proc);
    *proc = '\0';
    return text;
}

#define ASSERT_RENDERS(m, expect)                                                                                      \
    do {                                                                                                               \
        char *got_ = render_own(m);                                                                                    \
        assert_string_equal(got_, (expect));                                                                           \
        free(got_);                                                                                                    \
    } while (0)

static void test_counter_text(void **state)
{
    (void)state;
    sb_metrics_t *m = sb_metrics_create();
    assert_non_null(m);
    sb_metric_t *ws = sb_metrics_series(m, SB_COUNTER, "switchboard_connects_total", "Connections accepted.",
                                        "transport=\"websocket\"", NULL, 0);
    sb_metric_t *pl = sb_metrics_series(m, SB_COUNTER, "switchboard_connects_total", "Connections accepted.",
                                        "transport=\"polling\"", NULL, 0);
    sb_metric_t *plain = sb_metrics_series(m, SB_COUNTER, "switchboard_events_in_total", "Events in.", NULL, NULL, 0);
    assert_non_null(ws);
    assert_non_null(pl);
    assert_non_null(plain);
    assert_ptr_not_equal(ws, pl);
    sb_metric_inc(ws, 0);
    sb_metric_inc(ws, 3);
    sb_metric_add(ws, 64, 5);
    sb_metric_add(pl, 1, 0.25);
    sb_metric_add(pl, 1, -7); /* counters never go down: ignored */
    sb_metric_add(pl, 1, NAN);
    sb_metric_inc(plain, 9999); /* out of range: counted on the shared shard */
    assert_true(sb_metric_value(ws) == 7.0);
    assert_true(sb_metric_value(pl) == 0.25);
    assert_true(sb_metric_value(plain) == 1.0);
    ASSERT_RENDERS(m, "# HELP switchboard_connects_total Connections accepted.\n"
                      "# TYPE switchboard_connects_total counter\n"
                      "switchboard_connects_total{transport=\"websocket\"} 7\n"
                      "switchboard_connects_total{transport=\"polling\"} 0.25\n"
                      "# HELP switchboard_events_in_total Events in.\n"
                      "# TYPE switchboard_events_in_total counter\n"
                      "switchboard_events_in_total 1\n");
    sb_metrics_free(m);
}

static void test_gauge_text(void **state)
{
    (void)state;
    sb_metrics_t *m = sb_metrics_create();
    sb_metric_t *g = sb_metrics_series(m, SB_GAUGE, "switchboard_sockets", "Open sockets.", NULL, NULL, 0);
    sb_metric_t *nan = sb_metrics_series(m, SB_GAUGE, "t_special", "Special values.", "v=\"nan\"", NULL, 0);
    sb_metric_t *pinf = sb_metrics_series(m, SB_GAUGE, "t_special", "Special values.", "v=\"pinf\"", NULL, 0);
    sb_metric_t *ninf = sb_metrics_series(m, SB_GAUGE, "t_special", "Special values.", "v=\"ninf\"", NULL, 0);
    sb_metric_t *frac = sb_metrics_series(m, SB_GAUGE, "t_special", "Special values.", "v=\"frac\"", NULL, 0);
    assert_non_null(g);
    assert_non_null(frac);
    /* Shards add up; a shard may go negative on its own (a socket closed by
     * another worker than the one that opened it). */
    sb_metric_inc(g, 0);
    sb_metric_inc(g, 0);
    sb_metric_inc(g, 0);
    sb_metric_add(g, 1, -1);
    sb_metric_set(g, 2, 10);
    sb_metric_set(g, 2, 4); /* set replaces the shard's value */
    sb_metric_inc(g, 2);
    assert_true(sb_metric_value(g) == 7.0);
    sb_metric_set(nan, 0, NAN);
    sb_metric_set(pinf, 0, INFINITY);
    sb_metric_set(ninf, 0, -INFINITY);
    sb_metric_set(frac, 0, 0.1);
    sb_metric_add(frac, 1, 0.2);
    ASSERT_RENDERS(m, "# HELP switchboard_sockets Open sockets.\n"
                      "# TYPE switchboard_sockets gauge\n"
                      "switchboard_sockets 7\n"
                      "# HELP t_special Special values.\n"
                      "# TYPE t_special gauge\n"
                      "t_special{v=\"nan\"} NaN\n"
                      "t_special{v=\"pinf\"} +Inf\n"
                      "t_special{v=\"ninf\"} -Inf\n"
                      "t_special{v=\"frac\"} 0.30000000000000004\n");
    sb_metrics_free(m);
}

static void test_histogram_text(void **state)
{
    (void)state;
    static const double b[] = {0.005, 0.5, 1};
    sb_metrics_t *m = sb_metrics_create();
    sb_metric_t *h = sb_metrics_series(m, SB_HISTOGRAM, "t_latency_seconds", "Latency.", NULL, b, 3);
    sb_metric_t *hl = sb_metrics_series(m, SB_HISTOGRAM, "t_latency_seconds", "Latency.", "op=\"get\"", b, 3);
    assert_non_null(h);
    assert_non_null(hl);
    sb_metric_observe(h, 0, 0.005); /* on the bound: le is inclusive */
    sb_metric_observe(h, 1, 0.25);
    sb_metric_observe(h, 2, 0.75);
    sb_metric_observe(h, 2, 4);
    sb_metric_observe(h, 2, NAN); /* ignored */
    sb_metric_inc(h, 0);          /* not a counter: ignored */
    assert_true(sb_metric_value(h) == 4.0);
    ASSERT_RENDERS(m, "# HELP t_latency_seconds Latency.\n"
                      "# TYPE t_latency_seconds histogram\n"
                      "t_latency_seconds_bucket{le=\"0.005\"} 1\n"
                      "t_latency_seconds_bucket{le=\"0.5\"} 2\n"
                      "t_latency_seconds_bucket{le=\"1\"} 3\n"
                      "t_latency_seconds_bucket{le=\"+Inf\"} 4\n"
                      "t_latency_seconds_sum 5.005\n"
                      "t_latency_seconds_count 4\n"
                      "t_latency_seconds_bucket{op=\"get\",le=\"0.005\"} 0\n"
                      "t_latency_seconds_bucket{op=\"get\",le=\"0.5\"} 0\n"
                      "t_latency_seconds_bucket{op=\"get\",le=\"1\"} 0\n"
                      "t_latency_seconds_bucket{op=\"get\",le=\"+Inf\"} 0\n"
                      "t_latency_seconds_sum{op=\"get\"} 0\n"
                      "t_latency_seconds_count{op=\"get\"} 0\n");
    sb_metrics_free(m);
}

static void test_help_and_label_escaping(void **state)
{
    (void)state;
    sb_buf_t lb;
    sb_buf_init(&lb, 256);
    assert_int_equal(sb_buf_append_str(&lb, "reason=\""), 0);
    assert_int_equal(sb_metrics_append_label_value(&lb, "a\\b \"q\"\nz"), 0);
    assert_int_equal(sb_buf_append_str(&lb, "\""), 0);
    assert_int_equal(sb_buf_append_char(&lb, '\0'), 0);
    assert_string_equal(lb.base, "reason=\"a\\\\b \\\"q\\\"\\nz\"");

    sb_metrics_t *m = sb_metrics_create();
    sb_metric_t *c = sb_metrics_series(m, SB_COUNTER, "t_escape_total", "Back\\slash \"quoted\"\nsecond line.", lb.base,
                                       NULL, 0);
    assert_non_null(c);
    sb_metric_inc(c, 0);
    /* HELP escapes backslash and newline only; label values were escaped above. */
    ASSERT_RENDERS(m, "# HELP t_escape_total Back\\\\slash \"quoted\"\\nsecond line.\n"
                      "# TYPE t_escape_total counter\n"
                      "t_escape_total{reason=\"a\\\\b \\\"q\\\"\\nz\"} 1\n");
    sb_metrics_free(m);

    /* A label value that does not fit leaves the buffer unchanged. */
    sb_buf_t small;
    sb_buf_init(&small, 4);
    assert_int_equal(sb_buf_append_str(&small, "x="), 0);
    assert_int_equal(sb_metrics_append_label_value(&small, "\"\""), SB_ETOOBIG);
    assert_int_equal(small.len, 2);
    sb_buf_free(&small);
    sb_buf_free(&lb);
}

static void test_number_format(void **state)
{
    (void)state;
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {0, "0"},
        {3, "3"},
        {-2, "-2"},
        {1e15, "1000000000000000"},
        {0.1, "0.1"},
        {0.0005, "0.0005"},
        {2.5, "2.5"},
        {1e-9, "1e-09"},
        {1e20, "1e+20"},
        {-0.75, "-0.75"},
        {1.0 / 3, "0.3333333333333333"},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        sb_buf_t b;
        sb_buf_init(&b, 64);
        assert_int_equal(sb_metrics_append_double(&b, cases[i].v), 0);
        assert_int_equal(sb_buf_append_char(&b, '\0'), 0);
        assert_string_equal(b.base, cases[i].text);
        assert_true(strtod(b.base, NULL) == cases[i].v);
        sb_buf_free(&b);
    }
}

static void test_registration_misuse(void **state)
{
    (void)state;
    static const double b[] = {0.1, 1};
    static const double unsorted[] = {1, 0.1};
    static const double dup[] = {1, 1};
    static const double inf[] = {1, INFINITY};
    sb_metrics_t *m = sb_metrics_create();
    sb_metric_t *c = sb_metrics_series(m, SB_COUNTER, "t_ok_total", "Help.", "a=\"1\"", NULL, 0);
    sb_metric_t *h = sb_metrics_series(m, SB_HISTOGRAM, "t_hist_seconds", "Help.", NULL, b, 2);
    assert_non_null(c);
    assert_non_null(h);
    /* The same series again is the same handle; "" labels mean none. */
    assert_ptr_equal(sb_metrics_series(m, SB_COUNTER, "t_ok_total", "Help.", "a=\"1\"", NULL, 0), c);
    assert_ptr_equal(sb_metrics_series(m, SB_HISTOGRAM, "t_hist_seconds", "Help.", "", b, 2), h);

    assert_null(sb_metrics_series(NULL, SB_COUNTER, "t_x_total", "Help.", NULL, NULL, 0));
    assert_null(sb_metrics_series(m, SB_COUNTER, NULL, "Help.", NULL, NULL, 0));
    assert_null(sb_metrics_series(m, SB_COUNTER, "t_x_total", NULL, NULL, NULL, 0));
    assert_null(sb_metrics_series(m, (sb_metric_kind_t)7, "t_x_total", "Help.", NULL, NULL, 0));
    /* bad names */
    assert_null(sb_metrics_series(m, SB_COUNTER, "", "Help.", NULL, NULL, 0));
    assert_null(sb_metrics_series(m, SB_COUNTER, "1abc", "Help.", NULL, NULL, 0));
    assert_null(sb_metrics_series(m, SB_COUNTER, "a-b", "Help.", NULL, NULL, 0));
    assert_null(sb_metrics_series(m, SB_COUNTER, "a b", "Help.", NULL, NULL, 0));
    assert_null(sb_metrics_series(m, SB_GAUGE, "process_open_fds", "Help.", NULL, NULL, 0));
    /* kind or help differing from the family's */
    assert_null(sb_metrics_series(m, SB_GAUGE, "t_ok_total", "Help.", "a=\"2\"", NULL, 0));
    assert_null(sb_metrics_series(m, SB_COUNTER, "t_ok_total", "Other help.", "a=\"2\"", NULL, 0));
    /* buckets */
    assert_null(sb_metrics_series(m, SB_COUNTER, "t_b_total", "Help.", NULL, b, 2));
    assert_null(sb_metrics_series(m, SB_HISTOGRAM, "t_h1", "Help.", NULL, NULL, 0));
    assert_null(sb_metrics_series(m, SB_HISTOGRAM, "t_h2", "Help.", NULL, unsorted, 2));
    assert_null(sb_metrics_series(m, SB_HISTOGRAM, "t_h3", "Help.", NULL, dup, 2));
    assert_null(sb_metrics_series(m, SB_HISTOGRAM, "t_h4", "Help.", NULL, inf, 2));
    assert_null(sb_metrics_series(m, SB_HISTOGRAM, "t_hist_seconds", "Help.", "x=\"1\"", SB_METRICS_LATENCY_BUCKETS,
                                  SB_METRICS_LATENCY_NBUCKETS));
    /* names a histogram's series would collide with */
    assert_null(sb_metrics_series(m, SB_COUNTER, "t_hist_seconds_count", "Help.", NULL, NULL, 0));
    /* ... while a histogram beside a counter of another suffix is fine */
    assert_non_null(sb_metrics_series(m, SB_HISTOGRAM, "t_ok", "Help.", NULL, b, 2));
    /* malformed label text */
    static const char *const bad_labels[] = {
        "a",
        "a=1",
        "a=\"1",
        "a=\"1\",",
        "=\"1\"",
        "1a=\"x\"",
        "a=\"x\"b=\"y\"",
        "a=\"\\x\"",
        "__name__=\"x\"",
        "a=\"line\nbreak\"",
        "a=\"x\" ",
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(bad_labels); i++)
        assert_null(sb_metrics_series(m, SB_COUNTER, "t_ok_total", "Help.", bad_labels[i], NULL, 0));
    assert_null(sb_metrics_series(m, SB_HISTOGRAM, "t_hist_seconds", "Help.", "le=\"1\"", b, 2));
    assert_non_null(sb_metrics_series(m, SB_COUNTER, "t_ok_total", "Help.", "a=\"x\\\"y\",b_2=\"\"", NULL, 0));
    /* the failures above registered nothing */
    ASSERT_RENDERS(m, "# HELP t_ok_total Help.\n"
                      "# TYPE t_ok_total counter\n"
                      "t_ok_total{a=\"1\"} 0\n"
                      "t_ok_total{a=\"x\\\"y\",b_2=\"\"} 0\n"
                      "# HELP t_hist_seconds Help.\n"
                      "# TYPE t_hist_seconds histogram\n"
                      "t_hist_seconds_bucket{le=\"0.1\"} 0\n"
                      "t_hist_seconds_bucket{le=\"1\"} 0\n"
                      "t_hist_seconds_bucket{le=\"+Inf\"} 0\n"
                      "t_hist_seconds_sum 0\n"
                      "t_hist_seconds_count 0\n"
                      "# HELP t_ok Help.\n"
                      "# TYPE t_ok histogram\n"
                      "t_ok_bucket{le=\"0.1\"} 0\n"
                      "t_ok_bucket{le=\"1\"} 0\n"
                      "t_ok_bucket{le=\"+Inf\"} 0\n"
                      "t_ok_sum 0\n"
                      "t_ok_count 0\n");
    /* t_ok is a histogram now, so t_ok_sum may not become a family */
    assert_null(sb_metrics_series(m, SB_GAUGE, "t_ok_sum", "Help.", NULL, NULL, 0));
    sb_metrics_free(m);
}

static void test_null_handles(void **state)
{
    (void)state;
    sb_metric_inc(NULL, 0);
    sb_metric_add(NULL, 0, 1);
    sb_metric_set(NULL, 0, 1);
    sb_metric_observe(NULL, 0, 1);
    sb_metric_quantile_reset(NULL);
    assert_true(isnan(sb_metric_value(NULL)));
    assert_true(isnan(sb_metric_quantile(NULL, 0.5)));
    sb_metrics_free(NULL);
    sb_buf_t b;
    sb_buf_init(&b, 0);
    assert_int_equal(sb_metrics_render(NULL, &b), SB_EINVAL);
    assert_int_equal(b.len, 0);
}

/* ---- threads ---- */

#define THREADS 8
#define ROUNDS 200000

struct hammer {
    sb_metric_t *c, *g, *h;
    unsigned shard;
};

static void *hammer_run(void *arg)
{
    struct hammer *w = arg;
    for (int i = 0; i < ROUNDS; i++) {
        sb_metric_inc(w->c, w->shard);
        sb_metric_add(w->c, w->shard, 0.5); /* the fractional path (CAS) */
        sb_metric_add(w->g, w->shard, (i & 1) ? -1 : 2);
        sb_metric_observe(w->h, w->shard, (i % 4) * 0.25); /* 0, 0.25, 0.5, 0.75: exact in binary */
    }
    return NULL;
}

static void test_sharded_threads(void **state)
{
    (void)state;
    static const double b[] = {0.1, 0.3, 0.6};
    sb_metrics_t *m = sb_metrics_create();
    struct hammer w[THREADS];
    pthread_t th[THREADS];
    sb_metric_t *c = sb_metrics_series(m, SB_COUNTER, "t_hammer_total", "Help.", NULL, NULL, 0);
    sb_metric_t *g = sb_metrics_series(m, SB_GAUGE, "t_hammer", "Help.", NULL, NULL, 0);
    sb_metric_t *h = sb_metrics_series(m, SB_HISTOGRAM, "t_hammer_seconds", "Help.", NULL, b, 3);
    for (unsigned i = 0; i < THREADS; i++) {
        /* Half the threads own a shard; the other half share the "others" shard,
         * which must stay exact under concurrent writers too. */
        w[i] = (struct hammer){c, g, h, i < THREADS / 2 ? i : SB_METRICS_MAX_WORKERS - 1};
        assert_int_equal(pthread_create(&th[i], NULL, hammer_run, &w[i]), 0);
    }
    for (unsigned i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    const double n = (double)THREADS * ROUNDS;
    assert_true(sb_metric_value(c) == n * 1.5);
    assert_true(sb_metric_value(g) == n / 2);
    assert_true(sb_metric_value(h) == n);
    char *text = render_own(m);
    char expect[2048];
    snprintf(expect, sizeof expect,
             "# HELP t_hammer_total Help.\n# TYPE t_hammer_total counter\nt_hammer_total %d\n"
             "# HELP t_hammer Help.\n# TYPE t_hammer gauge\nt_hammer %d\n"
             "# HELP t_hammer_seconds Help.\n# TYPE t_hammer_seconds histogram\n"
             "t_hammer_seconds_bucket{le=\"0.1\"} %d\nt_hammer_seconds_bucket{le=\"0.3\"} %d\n"
             "t_hammer_seconds_bucket{le=\"0.6\"} %d\nt_hammer_seconds_bucket{le=\"+Inf\"} %d\n"
             "t_hammer_seconds_sum %d\nt_hammer_seconds_count %d\n",
             THREADS * ROUNDS * 3 / 2, THREADS * ROUNDS / 2, THREADS * ROUNDS / 4, THREADS * ROUNDS / 2,
             THREADS * ROUNDS * 3 / 4, THREADS * ROUNDS, THREADS * ROUNDS * 3 / 8, THREADS * ROUNDS);
    assert_string_equal(text, expect);
    free(text);
    sb_metrics_free(m);
}

/* ---- quantiles ---- */

static void observe_n(sb_metric_t *h, double v, int n)
{
    for (int i = 0; i < n; i++)
        sb_metric_observe(h, (unsigned)i % 3, v);
}

static void test_quantiles(void **state)
{
    (void)state;
    static const double b[] = {1, 2, 3, 4};
    sb_metrics_t *m = sb_metrics_create();
    sb_metric_t *h = sb_metrics_series(m, SB_HISTOGRAM, "t_q_seconds", "Help.", NULL, b, 4);
    sb_metric_t *c = sb_metrics_series(m, SB_COUNTER, "t_q_total", "Help.", NULL, NULL, 0);
    assert_true(isnan(sb_metric_quantile(h, 0.5))); /* empty */
    assert_true(isnan(sb_metric_quantile(c, 0.5))); /* not a histogram */
    /* 25 observations in each of the four buckets: uniform over [0, 4]. */
    observe_n(h, 0.5, 25);
    observe_n(h, 1.5, 25);
    observe_n(h, 2.5, 25);
    observe_n(h, 3.5, 25);
    assert_float_equal(sb_metric_quantile(h, 0.25), 1.0, 1e-12);
    assert_float_equal(sb_metric_quantile(h, 0.5), 2.0, 1e-12);
    assert_float_equal(sb_metric_quantile(h, 0.9), 3.6, 1e-12);
    assert_float_equal(sb_metric_quantile(h, 0.99), 3.96, 1e-12);
    assert_float_equal(sb_metric_quantile(h, 0.1), 0.4, 1e-12);
    assert_float_equal(sb_metric_quantile(h, 0), 0.0, 1e-12);
    assert_float_equal(sb_metric_quantile(h, 1), 4.0, 1e-12);
    assert_true(sb_metric_quantile(h, 1.5) == INFINITY);
    assert_true(sb_metric_quantile(h, -0.5) == -INFINITY);
    assert_true(isnan(sb_metric_quantile(h, NAN)));

    /* After a reset only what follows counts; the exported totals are untouched. */
    sb_metric_quantile_reset(h);
    assert_true(isnan(sb_metric_quantile(h, 0.5)));
    assert_true(sb_metric_value(h) == 100.0);
    observe_n(h, 2.9, 40); /* all in (2, 3] */
    assert_float_equal(sb_metric_quantile(h, 0.5), 2.5, 1e-12);
    assert_float_equal(sb_metric_quantile(h, 0.25), 2.25, 1e-12);
    observe_n(h, 0.2, 10); /* (0, 1] */
    observe_n(h, 99, 50);  /* +Inf */
    assert_float_equal(sb_metric_quantile(h, 0.05), 0.5, 1e-12);
    assert_float_equal(sb_metric_quantile(h, 0.3), 2.5, 1e-12);
    /* a rank inside +Inf answers the highest finite bound, as histogram_quantile does */
    assert_float_equal(sb_metric_quantile(h, 0.99), 4.0, 1e-12);
    sb_metric_quantile_reset(h);
    observe_n(h, 1.25, 4);
    assert_float_equal(sb_metric_quantile(h, 0.5), 1.5, 1e-12);

    /* Latency buckets: 90 fast requests (<= 1 ms), 10 slow ones (250-500 ms). */
    sb_metric_t *lat = sb_metrics_series(m, SB_HISTOGRAM, "t_lat_seconds", "Help.", NULL, SB_METRICS_LATENCY_BUCKETS,
                                         SB_METRICS_LATENCY_NBUCKETS);
    assert_non_null(lat);
    observe_n(lat, 0.0008, 90);
    observe_n(lat, 0.3, 10);
    assert_true(sb_metric_quantile(lat, 0.5) > 0.0005 && sb_metric_quantile(lat, 0.5) <= 0.001);
    assert_true(sb_metric_quantile(lat, 0.99) > 0.25 && sb_metric_quantile(lat, 0.99) <= 0.5);
    sb_metrics_free(m);
}

static void test_latency_buckets(void **state)
{
    (void)state;
    assert_int_equal(SB_METRICS_LATENCY_NBUCKETS, 14);
    assert_true(SB_METRICS_LATENCY_BUCKETS[0] == 0.0005);
    assert_true(SB_METRICS_LATENCY_BUCKETS[SB_METRICS_LATENCY_NBUCKETS - 1] == 10);
    for (size_t i = 1; i < SB_METRICS_LATENCY_NBUCKETS; i++)
        assert_true(SB_METRICS_LATENCY_BUCKETS[i] > SB_METRICS_LATENCY_BUCKETS[i - 1]);
}

/* ---- process_* ---- */

/* The value of the unlabelled sample `name` in a rendered page. */
static double sample_of(const char *text, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(text, key);
    if (p == NULL)
        fail_msg("no sample %s in:\n%s", name, text);
    return strtod(p + strlen(key), NULL);
}

static void test_process_metrics(void **state)
{
    (void)state;
    sb_metrics_t *m = sb_metrics_create();
    sb_buf_t b;
    sb_buf_init(&b, 1 << 20);
    assert_int_equal(sb_metrics_render(m, &b), 0);
    assert_int_equal(sb_buf_append_char(&b, '\0'), 0);
    const char *t = b.base;
    /* exactly these, in this order, each with HELP and TYPE */
    const char *expect_types[] = {
        "# TYPE process_cpu_seconds_total counter\n",
        "# TYPE process_resident_memory_bytes gauge\n",
        "# TYPE process_virtual_memory_bytes gauge\n",
        "# TYPE process_open_fds gauge\n",
        "# TYPE process_max_fds gauge\n",
        "# TYPE process_start_time_seconds gauge\n",
    };
    const char *prev = t;
    for (size_t i = 0; i < SB_ARRAY_SIZE(expect_types); i++) {
        const char *p = strstr(t, expect_types[i]);
        assert_non_null(p);
        assert_true(p >= prev);
        prev = p;
    }
    assert_true(strncmp(t, "# HELP process_cpu_seconds_total ", 33) == 0);

    double cpu = sample_of(t, "process_cpu_seconds_total");
    assert_true(cpu >= 0 && cpu < 3600);
    double rss = sample_of(t, "process_resident_memory_bytes");
    double vsz = sample_of(t, "process_virtual_memory_bytes");
    assert_true(rss > 100 * 1024 && rss <= vsz);
    /* a descriptor opened now shows up */
    double fds = sample_of(t, "process_open_fds");
    FILE *fp = fopen("/proc/self/stat", "r");
    assert_non_null(fp);
    sb_buf_t b2;
    sb_buf_init(&b2, 1 << 20);
    assert_int_equal(sb_metrics_render(m, &b2), 0);
    assert_int_equal(sb_buf_append_char(&b2, '\0'), 0);
    assert_true(sample_of(b2.base, "process_open_fds") == fds + 1);
    fclose(fp);
    assert_true(fds >= 3);
    assert_true(sample_of(t, "process_max_fds") >= fds);
    /* started within the last ten minutes (test time) and not in the future */
    double start = sample_of(t, "process_start_time_seconds");
    double now = (double)time(NULL);
    assert_true(start <= now + 1 && start > now - 600);

    /* A cap too small for the page: SB_ETOOBIG and nothing appended. */
    sb_buf_t small;
    sb_buf_init(&small, 100);
    assert_int_equal(sb_buf_append_str(&small, "keep"), 0);
    assert_int_equal(sb_metrics_render(m, &small), SB_ETOOBIG);
    assert_int_equal(small.len, 4);
    sb_buf_free(&small);
    sb_buf_free(&b2);
    sb_buf_free(&b);
    sb_metrics_free(m);
}

/* ---- promtool ---- */

/* Full path of `prog` found on PATH, or false. */
static bool find_in_path(const char *prog, char *out, size_t outlen)
{
    const char *path = getenv("PATH");
    if (path == NULL)
        return false;
    while (*path != '\0') {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);
        if (len > 0 && (size_t)snprintf(out, outlen, "%.*s/%s", (int)len, path, prog) < outlen &&
            access(out, X_OK) == 0)
            return true;
        path += len;
        if (*path == ':')
            path++;
    }
    return false;
}

static void test_promtool_accepts(void **state)
{
    (void)state;
    char promtool[512];
    if (!find_in_path("promtool", promtool, sizeof promtool))
        fail_msg("promtool not found on PATH: install it (Debian: apt-get install -y prometheus) to check the "
                 "rendered metrics");
    static const double b[] = {0.001, 0.01, 0.1, 1};
    sb_metrics_t *m = sb_metrics_create();
    const char *transports[] = {"websocket", "polling"};
    for (size_t i = 0; i < 2; i++) {
        char labels[64];
        snprintf(labels, sizeof labels, "transport=\"%s\"", transports[i]);
        sb_metric_t *g = sb_metrics_series(m, SB_GAUGE, "switchboard_connections", "Open connections.", labels, NULL,
                                           0);
        sb_metric_t *c = sb_metrics_series(m, SB_COUNTER, "switchboard_connects_total", "Connections accepted.", labels,
                                           NULL, 0);
        sb_metric_add(g, 0, 3);
        sb_metric_inc(c, 1);
    }
    sb_metric_t *d = sb_metrics_series(m, SB_COUNTER, "switchboard_disconnects_total",
                                       "Disconnects by reason.\nWith a \\ in the help.", "reason=\"ping timeout\"",
                                       NULL, 0);
    sb_metric_inc(d, 0);
    sb_metric_t *h = sb_metrics_series(m, SB_HISTOGRAM, "switchboard_bus_delivery_seconds",
                                       "Bus entry to socket write.", NULL, SB_METRICS_LATENCY_BUCKETS,
                                       SB_METRICS_LATENCY_NBUCKETS);
    sb_metric_t *r = sb_metrics_series(m, SB_HISTOGRAM, "switchboard_redis_command_seconds", "Redis round trips.",
                                       "command=\"xadd\"", b, 4);
    for (int i = 0; i < 50; i++) {
        sb_metric_observe(h, 0, 0.0003 * i);
        sb_metric_observe(r, 1, 0.01 * i);
    }
    sb_metric_t *odd = sb_metrics_series(m, SB_GAUGE, "switchboard_test_special", "Special values.",
                                         "v=\"a\\\\b\\\"c\\nd\"", NULL, 0);
    sb_metric_set(odd, 0, NAN);
    assert_non_null(odd);

    sb_buf_t page;
    sb_buf_init(&page, 1 << 20);
    assert_int_equal(sb_metrics_render(m, &page), 0);
    char dir[] = "/tmp/test_metrics_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char in[128], outp[128], cmd[1024];
    snprintf(in, sizeof in, "%s/page.txt", dir);
    snprintf(outp, sizeof outp, "%s/out.txt", dir);
    FILE *fp = fopen(in, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(page.base, 1, page.len, fp), page.len);
    fclose(fp);
    snprintf(cmd, sizeof cmd, "'%s' check metrics < '%s' > '%s' 2>&1", promtool, in, outp);
    int rc = system(cmd);
    char report[4096] = "";
    fp = fopen(outp, "r");
    if (fp != NULL) {
        size_t n = fread(report, 1, sizeof report - 1, fp);
        report[n] = '\0';
        fclose(fp);
    }
    unlink(in);
    unlink(outp);
    rmdir(dir);
    if (rc != 0 || report[0] != '\0')
        fail_msg("promtool check metrics failed (status %d):\n%s\non the page:\n%.*s", rc, report, (int)page.len,
                 page.base);
    sb_buf_free(&page);
    sb_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_text),    cmocka_unit_test(test_gauge_text),
        cmocka_unit_test(test_histogram_text),  cmocka_unit_test(test_help_and_label_escaping),
        cmocka_unit_test(test_number_format),   cmocka_unit_test(test_registration_misuse),
        cmocka_unit_test(test_null_handles),    cmocka_unit_test(test_sharded_threads),
        cmocka_unit_test(test_quantiles),       cmocka_unit_test(test_latency_buckets),
        cmocka_unit_test(test_process_metrics), cmocka_unit_test(test_promtool_accepts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
