/* test_redis_url.c — every accepted form of --redis and the refused ones. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "switchboard/common.h"
#include "switchboard/redis.h"

static sb_redis_addr_t parse_ok(const char *url)
{
    sb_redis_addr_t a;
    const char *why = "unset";
    int rc = sb_redis_url_parse(url, &a, &why);
    if (rc != 0)
        print_error("%s: %s\n", url, why != NULL ? why : "(null)");
    assert_int_equal(rc, 0);
    return a;
}

/* Returns the reason so tests can check it says something useful. */
static const char *parse_bad(const char *url)
{
    sb_redis_addr_t a;
    const char *why = NULL;
    memset(&a, 'x', sizeof(a));
    int rc = sb_redis_url_parse(url, &a, &why);
    if (rc == 0)
        print_error("%s: unexpectedly accepted\n", url);
    assert_int_equal(rc, SB_EINVAL);
    assert_non_null(why);
    assert_true(strlen(why) > 5);
    /* Nothing of a refused URL (a password) is left behind. */
    assert_string_equal(a.pass, "");
    assert_string_equal(a.user, "");
    return why;
}

static void test_host_only(void **state)
{
    (void)state;
    sb_redis_addr_t a = parse_ok("redis://cache.internal");
    assert_int_equal(a.is_unix, 0);
    assert_string_equal(a.host, "cache.internal");
    assert_int_equal(a.port, 6379);
    assert_int_equal(a.db, 0);
    assert_string_equal(a.user, "");
    assert_string_equal(a.pass, "");
    assert_string_equal(a.path, "");
}

static void test_host_port_db(void **state)
{
    (void)state;
    sb_redis_addr_t a = parse_ok("redis://127.0.0.1:6380");
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 6380);
    assert_int_equal(a.db, 0);

    a = parse_ok("redis://localhost:7000/5");
    assert_string_equal(a.host, "localhost");
    assert_int_equal(a.port, 7000);
    assert_int_equal(a.db, 5);

    a = parse_ok("redis://h/");
    assert_int_equal(a.db, 0);
    a = parse_ok("redis://h/1023");
    assert_int_equal(a.db, 1023);
    a = parse_ok("REDIS://h:1");
    assert_int_equal(a.port, 1);
    a = parse_ok("redis://h:65535");
    assert_int_equal(a.port, 65535);
}

static void test_credentials(void **state)
{
    (void)state;
    sb_redis_addr_t a = parse_ok("redis://alice:s3cret@db.example.com:6390/2");
    assert_string_equal(a.user, "alice");
    assert_string_equal(a.pass, "s3cret");
    assert_string_equal(a.host, "db.example.com");
    assert_int_equal(a.port, 6390);
    assert_int_equal(a.db, 2);

    a = parse_ok("redis://:onlypass@h");
    assert_string_equal(a.user, "");
    assert_string_equal(a.pass, "onlypass");
    assert_string_equal(a.host, "h");

    /* Like redis-cli -u: userinfo without ':' is a password. */
    a = parse_ok("redis://pw@h");
    assert_string_equal(a.user, "");
    assert_string_equal(a.pass, "pw");
}

static void test_percent_decoding(void **state)
{
    (void)state;
    sb_redis_addr_t a = parse_ok("redis://us%40er:p%3Aa%2Fs%25s%40@h:1/3");
    assert_string_equal(a.user, "us@er");
    assert_string_equal(a.pass, "p:a/s%s@");
    assert_string_equal(a.host, "h");
    assert_int_equal(a.db, 3);

    /* An unescaped '@' in the password: the last '@' ends the userinfo. */
    a = parse_ok("redis://:p@ss@h");
    assert_string_equal(a.pass, "p@ss");
    assert_string_equal(a.host, "h");

    parse_bad("redis://:p%4@h");
    parse_bad("redis://:p%zz@h");
    parse_bad("redis://:p%@h");
    parse_bad("redis://:p%00x@h");
}

static void test_ipv6(void **state)
{
    (void)state;
    sb_redis_addr_t a = parse_ok("redis://[::1]:6379");
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 6379);

    a = parse_ok("redis://u:p@[2001:db8::5]/4");
    assert_string_equal(a.host, "2001:db8::5");
    assert_int_equal(a.port, 6379);
    assert_int_equal(a.db, 4);

    assert_non_null(strstr(parse_bad("redis://::1:6379"), "bracket"));
    parse_bad("redis://[::1");
    parse_bad("redis://[nothex]:1");
    parse_bad("redis://[::1]x");
    parse_bad("redis://[]:1");
}

static void test_unix(void **state)
{
    (void)state;
    sb_redis_addr_t a = parse_ok("unix:///path/to/sock");
    assert_int_equal(a.is_unix, 1);
    assert_string_equal(a.path, "/path/to/sock");
    assert_int_equal(a.db, 0);
    assert_string_equal(a.host, "");

    a = parse_ok("unix:///var/run/redis.sock?db=2");
    assert_int_equal(a.is_unix, 1);
    assert_string_equal(a.path, "/var/run/redis.sock");
    assert_int_equal(a.db, 2);

    a = parse_ok("unix://:pw@/tmp/r.sock");
    assert_string_equal(a.pass, "pw");
    assert_string_equal(a.path, "/tmp/r.sock");

    assert_non_null(strstr(parse_bad("unix://relative/sock"), "absolute"));
    parse_bad("unix://");
    parse_bad("unix:///s?db=");
    parse_bad("unix:///s?db=x");
    parse_bad("unix:///s?db=1024");
    parse_bad("unix:///s?password=x");

    char longpath[200];
    memset(longpath, 'a', sizeof(longpath));
    memcpy(longpath, "unix:///", 8);
    longpath[7 + 108] = '\0'; /* a 108-byte path: one more than sun_path holds */
    assert_non_null(strstr(parse_bad(longpath), "too long"));
    longpath[7 + 107] = '\0';
    a = parse_ok(longpath);
    assert_int_equal(strlen(a.path), 107);
}

static void test_rediss_refused(void **state)
{
    (void)state;
    const char *why = parse_bad("rediss://h:6380");
    assert_non_null(strstr(why, "TLS"));
}

static void test_bad_port_and_db(void **state)
{
    (void)state;
    const char *why = parse_bad("redis://h:0");
    assert_non_null(strstr(why, "1 to 65535"));
    parse_bad("redis://h:65536");
    parse_bad("redis://h:");
    parse_bad("redis://h:-1");
    parse_bad("redis://h:12a");
    parse_bad("redis://h:99999999999999999999");
    why = parse_bad("redis://h/1024");
    assert_non_null(strstr(why, "0 to 1023"));
    parse_bad("redis://h/-1");
    parse_bad("redis://h/1/2");
    parse_bad("redis://h/x");
    parse_bad("redis://h/+1");
}

static void test_other_invalid(void **state)
{
    (void)state;
    sb_redis_addr_t a;
    const char *why = NULL;
    assert_int_equal(sb_redis_url_parse(NULL, &a, &why), SB_EINVAL);
    assert_non_null(why);
    assert_int_equal(sb_redis_url_parse("redis://h", &a, NULL), 0); /* why may be NULL */
    assert_int_equal(sb_redis_url_parse("http://h", &a, NULL), SB_EINVAL);

    parse_bad("");
    parse_bad("redis://");
    parse_bad("redis://:pw@");
    parse_bad("redis://:pw@:6379");
    parse_bad("redis:/h");
    parse_bad("h:6379");
    parse_bad("http://h");
    parse_bad("redis://h?db=1");
    parse_bad("redis://h#x");
    parse_bad("redis://h o");
    parse_bad("redis://h\n");
    parse_bad("redis://bad!host");

    char big[600];
    memset(big, 'a', sizeof(big));
    memcpy(big, "redis://:", 9);
    memcpy(big + 9 + 300, "@h", 3); /* a 300-byte password */
    assert_non_null(strstr(parse_bad(big), "too long"));
    memset(big, 'a', sizeof(big));
    memcpy(big, "redis://", 8);
    big[8 + 300] = '\0'; /* a 300-byte host */
    parse_bad(big);
}

/* User names: percent-escapes in either case, the length limit, bad escapes; unix URLs refuse fragments
 * (found by scripts/coverage.sh). */
static void test_user_and_fragment_edges(void **state)
{
    (void)state;
    sb_redis_addr_t a;
    const char *why = NULL;
    assert_int_equal(sb_redis_url_parse("redis://%61%4A:pw@h:1", &a, &why), 0);
    assert_string_equal(a.user, "aJ");
    assert_string_equal(a.pass, "pw");
    assert_int_equal(sb_redis_url_parse("redis://%zz:pw@h:1", &a, &why), SB_EINVAL);
    assert_string_equal(why, "bad percent-escape in user name");
    char url[300];
    char user[129];
    memset(user, 'u', 128);
    user[128] = '\0';
    snprintf(url, sizeof(url), "redis://%s:pw@h:1", user);
    assert_int_equal(sb_redis_url_parse(url, &a, &why), SB_EINVAL);
    assert_string_equal(why, "user name too long (max 127 bytes)");
    user[127] = '\0';
    snprintf(url, sizeof(url), "redis://%s:pw@h:1", user);
    assert_int_equal(sb_redis_url_parse(url, &a, &why), 0);
    assert_int_equal(strlen(a.user), 127);
    assert_int_equal(sb_redis_url_parse("unix:///tmp/r.sock#x", &a, &why), SB_EINVAL);
    assert_string_equal(why, "fragments are not supported in unix:// URLs");
    assert_int_equal(sb_redis_url_parse("unix://u:%zz@/tmp/r.sock", &a, &why), SB_EINVAL);
    assert_string_equal(why, "bad percent-escape in password");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_only),      cmocka_unit_test(test_host_port_db),
        cmocka_unit_test(test_credentials),    cmocka_unit_test(test_percent_decoding),
        cmocka_unit_test(test_ipv6),           cmocka_unit_test(test_unix),
        cmocka_unit_test(test_rediss_refused), cmocka_unit_test(test_bad_port_and_db),
        cmocka_unit_test(test_other_invalid),  cmocka_unit_test(test_user_and_fragment_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
