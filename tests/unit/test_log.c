/* test_log.c — the exact JSON lines sb_log writes, level filtering, masking. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "switchboard/log.h"

#define CAPTURE_MAX 65536

static char captured[CAPTURE_MAX];
static size_t captured_len;
static unsigned long long t_before, t_after;

static unsigned long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned long long)ts.tv_sec * 1000ULL + (unsigned long long)ts.tv_nsec / 1000000ULL;
}

/* Runs the body with fd 2 pointing at a temporary file, then reads it back. */
#define CAPTURE(body)                                                                                                  \
    do {                                                                                                               \
        FILE *tmp_ = tmpfile();                                                                                        \
        assert_non_null(tmp_);                                                                                         \
        fflush(stderr);                                                                                                \
        int saved_ = dup(2);                                                                                           \
        assert_true(saved_ >= 0);                                                                                      \
        assert_true(dup2(fileno(tmp_), 2) == 2);                                                                       \
        t_before = now_ms();                                                                                           \
        body;                                                                                                          \
        t_after = now_ms();                                                                                            \
        dup2(saved_, 2);                                                                                               \
        close(saved_);                                                                                                 \
        rewind(tmp_);                                                                                                  \
        captured_len = fread(captured, 1, CAPTURE_MAX - 1, tmp_);                                                      \
        captured[captured_len] = '\0';                                                                                 \
        fclose(tmp_);                                                                                                  \
    } while (0)

/* Checks the captured output is exactly one line:
 *   {"level":L,"time":<now>,"pid":<pid>,"hostname":"<host>","msg":<rest>
 * and that <rest> equals expected_rest. */
static void assert_line(int level, const char *expected_rest)
{
    char head[64], host[256], mid[512];
    int n = snprintf(head, sizeof(head), "{\"level\":%d,\"time\":", level);
    assert_true(captured_len > (size_t)n);
    assert_memory_equal(captured, head, (size_t)n);

    char *end = NULL;
    unsigned long long t = strtoull(captured + n, &end, 10);
    assert_true(t >= t_before && t <= t_after);

    assert_int_equal(gethostname(host, sizeof(host)), 0);
    host[sizeof(host) - 1] = '\0';
    snprintf(mid, sizeof(mid), ",\"pid\":%ld,\"hostname\":\"%s\",\"msg\":%s", (long)getpid(), host, expected_rest);
    assert_string_equal(end, mid);
    /* exactly one newline, at the end */
    assert_ptr_equal(strchr(captured, '\n'), captured + captured_len - 1);
}

static int setup_info(void **state)
{
    (void)state;
    sb_log_init(SB_LOG_INFO, 0);
    return 0;
}

static void test_shape(void **state)
{
    (void)state;
    CAPTURE(sb_log(SB_LOG_INFO, "listening", NULL));
    assert_line(30, "\"listening\"}\n");

    CAPTURE(sb_log(SB_LOG_WARN, "up", "addr", "127.0.0.1:8080", "#port", "8080", NULL));
    assert_line(40, "\"up\",\"addr\":\"127.0.0.1:8080\",\"port\":8080}\n");

    CAPTURE(sb_log(SB_LOG_ERROR, "x", "a", NULL, "b", "2", NULL)); /* NULL value skipped */
    assert_line(50, "\"x\",\"b\":\"2\"}\n");

    CAPTURE(sb_log(SB_LOG_INFO, NULL, NULL));
    assert_line(30, "\"\"}\n");
}

static void test_escaping(void **state)
{
    (void)state;
    CAPTURE(sb_log(SB_LOG_INFO, "say \"hi\"\\ now\nnext\r\ttab\b\f\x01\x1f\x7f end", NULL));
    assert_line(30, "\"say \\\"hi\\\"\\\\ now\\nnext\\r\\ttab\\b\\f\\u0001\\u001f\\u007f end\"}\n");

    CAPTURE(sb_log(SB_LOG_INFO, "m", "k\"ey\n", "v\"al\\ue\n\x02", NULL));
    assert_line(30, "\"m\",\"k\\\"ey\\n\":\"v\\\"al\\\\ue\\n\\u0002\"}\n");

    /* Valid UTF-8 passes through; invalid bytes become U+FFFD. */
    CAPTURE(sb_log(SB_LOG_INFO, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "bad",
                   "a\xff" /* stray byte */ "b\xc3(" /* cut sequence */ "\xed\xa0\x80" /* surrogate */, NULL));
    assert_line(30, "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\","
                    "\"bad\":\"a\\ufffdb\\ufffd(\\ufffd\\ufffd\\ufffd\"}\n");
}

static void test_raw_fields(void **state)
{
    (void)state;
    CAPTURE(sb_log(SB_LOG_INFO, "m", "#n", "-12.5", "#ok", "true", "#obj", "{\"a\":[1,2]}", "#nil", "", NULL));
    assert_line(30, "\"m\",\"n\":-12.5,\"ok\":true,\"obj\":{\"a\":[1,2]},\"nil\":null}\n");

    /* A raw value that would break the line is written as a string instead. */
    CAPTURE(sb_log(SB_LOG_INFO, "m", "#bad", "1\n2", NULL));
    assert_line(30, "\"m\",\"bad\":\"1\\n2\"}\n");

    /* Only a leading '#' is special. */
    CAPTURE(sb_log(SB_LOG_INFO, "m", "a#b", "1", NULL));
    assert_line(30, "\"m\",\"a#b\":\"1\"}\n");
}

static void test_levels(void **state)
{
    (void)state;
    sb_log_init(SB_LOG_WARN, 0);
    assert_false(sb_log_enabled(SB_LOG_INFO));
    assert_true(sb_log_enabled(SB_LOG_WARN));
    assert_true(sb_log_enabled(SB_LOG_FATAL));
    CAPTURE(sb_log(SB_LOG_INFO, "hidden", NULL); sb_log(SB_LOG_DEBUG, "hidden", NULL));
    assert_int_equal(captured_len, 0);
    CAPTURE(sb_log(SB_LOG_ERROR, "shown", NULL));
    assert_line(50, "\"shown\"}\n");

    sb_log_init(SB_LOG_TRACE, 0);
    assert_true(sb_log_enabled(SB_LOG_TRACE));
    CAPTURE(sb_log(SB_LOG_TRACE, "t", NULL));
    assert_line(10, "\"t\"}\n");

    sb_log_init(SB_LOG_SILENT, 0);
    assert_false(sb_log_enabled(SB_LOG_FATAL));
    CAPTURE(sb_log(SB_LOG_FATAL, "nothing", NULL));
    assert_int_equal(captured_len, 0);
    sb_log_init(SB_LOG_INFO, 0);
}

static void test_long_line_stays_valid(void **state)
{
    (void)state;
    size_t big = 20000;
    char *msg = malloc(big + 1);
    assert_non_null(msg);
    memset(msg, 'x', big);
    msg[big] = '\0';
    msg[100] = '"'; /* escapes must survive the cut */

    CAPTURE(sb_log(SB_LOG_INFO, msg, "after", "dropped", NULL));
    assert_true(captured_len <= 16384);
    assert_non_null(strstr(captured, "\"msg\":\""));
    const char *tail = "\",\"truncated\":true}\n";
    assert_true(captured_len > strlen(tail));
    assert_string_equal(captured + captured_len - strlen(tail), tail);
    assert_null(strstr(captured, "dropped"));

    /* A short message with one huge field: the field is cut, the line still closes. */
    CAPTURE(sb_log(SB_LOG_INFO, "m", "#n", "1", "v", msg, "#never", "2", NULL));
    assert_true(captured_len <= 16384);
    assert_non_null(strstr(captured, "\"msg\":\"m\",\"n\":1,\"v\":\"xxx"));
    assert_string_equal(captured + captured_len - strlen(tail), tail);
    assert_null(strstr(captured, "never"));

    /* Multibyte characters are never split by the cut. */
    for (size_t i = 0; i + 2 <= big; i += 2) {
        msg[i] = '\xc3';
        msg[i + 1] = '\xa9';
    }
    CAPTURE(sb_log(SB_LOG_INFO, msg, NULL));
    assert_string_equal(captured + captured_len - strlen(tail), tail);
    const char *before_tail = captured + captured_len - strlen(tail) - 2;
    assert_memory_equal(before_tail, "\xc3\xa9", 2);
    free(msg);
}

static void mask(const char *in, const char *want)
{
    char out[64];
    memset(out, 'z', sizeof(out));
    sb_log_mask_addr(in, out, sizeof(out));
    assert_string_equal(out, want);
}

static void test_mask(void **state)
{
    (void)state;
    sb_log_init(SB_LOG_INFO, 0);
    mask("192.168.1.77", "192.168.1.0");
    mask("10.0.0.0", "10.0.0.0");
    mask("2001:db8:85a3:1234:5678:8a2e:370:7334", "2001:db8:85a3::");
    mask("2001:db8::1", "2001:db8::");
    mask("[2001:db8:aaaa:bbbb::1]", "2001:db8:aaaa::");
    mask("fe80::1%eth0", "fe80::");
    mask("::1", "::");
    mask("::ffff:10.1.2.3", "::ffff:10.1.2.0");
    mask("not an address", "unknown");
    mask("1.2.3.4.5", "unknown");
    mask("", "unknown");
    mask(NULL, "unknown");

    char small[6];
    sb_log_mask_addr("192.168.1.77", small, sizeof(small));
    assert_string_equal(small, "192.1");
    sb_log_mask_addr("192.168.1.77", small, 0); /* must not write */

    sb_log_init(SB_LOG_INFO, 1);
    mask("192.168.1.77", "192.168.1.77");
    mask("2001:db8:85a3:1234:5678:8a2e:370:7334", "2001:db8:85a3:1234:5678:8a2e:370:7334");
    sb_log_init(SB_LOG_INFO, 0);
}

static size_t count_lines(const char *needle)
{
    size_t n = 0;
    for (const char *p = captured; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* A flood of warnings is cut to the per-second budget; errors always pass; the cut is reported. */
static void test_rate(void **state)
{
    (void)state;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* Start at a fresh second (earlier tests spent this one's budget), and keep the flood inside it. */
    struct timespec rest = {0, 1000 * 1000 * 1000 - ts.tv_nsec + 1000 * 1000};
    nanosleep(&rest, NULL);
    sb_log_set_rate(5);
    unsigned long long before = sb_log_suppressed();
    CAPTURE({
        for (int i = 0; i < 20; i++)
            sb_log(SB_LOG_WARN, "flood", NULL);
        sb_log(SB_LOG_ERROR, "important", NULL);
    });
    assert_int_equal(count_lines("\"msg\":\"flood\""), 5);
    assert_int_equal(count_lines("\"msg\":\"important\""), 1);
    assert_int_equal(sb_log_suppressed() - before, 15);
    /* The next second reports what was cut. */
    struct timespec wait = {1, 50 * 1000 * 1000};
    nanosleep(&wait, NULL);
    CAPTURE(sb_log(SB_LOG_WARN, "later", NULL));
    assert_non_null(strstr(captured, "\"msg\":\"log lines suppressed (over --log-rate)\",\"suppressed\":15"));
    assert_int_equal(count_lines("\"msg\":\"later\""), 1);
    sb_log_set_rate(0);
    CAPTURE({
        for (int i = 0; i < 300; i++)
            sb_log(SB_LOG_INFO, "unlimited", NULL);
    });
    assert_int_equal(count_lines("\"msg\":\"unlimited\""), 300);
    sb_log_set_rate(200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_shape, setup_info),
        cmocka_unit_test_setup(test_escaping, setup_info),
        cmocka_unit_test_setup(test_raw_fields, setup_info),
        cmocka_unit_test_setup(test_levels, setup_info),
        cmocka_unit_test_setup(test_long_line_stays_valid, setup_info),
        cmocka_unit_test_setup(test_mask, setup_info),
        cmocka_unit_test_setup(test_rate, setup_info),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
