/* test_config.c — flags, SWITCHBOARD_* variables, validation and --help/--version. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "switchboard/common.h"
#include "switchboard/config.h"
#include "switchboard/log.h"

#define ARGV(...) ((char *[]){"switchboard", __VA_ARGS__, NULL})
#define NOARGS ((char *[]){"switchboard", NULL})
#define ENVP(...) ((char *[]){__VA_ARGS__, NULL})

static char err[512];
static char file_a[64], file_b[64]; /* two readable files for the FILE settings */
static char env_a[128], env_b[128], arg_a[128], arg_b[128];

static int count(char **v)
{
    int n = 0;
    while (v[n] != NULL)
        n++;
    return n;
}

/* init + parse; the caller frees. */
static int parse(sb_config_t *c, char **argv, char **envp)
{
    memset(err, 0, sizeof(err));
    sb_config_init(c);
    return sb_config_parse(c, count(argv), argv, envp, err, sizeof(err));
}

static unsigned expected_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
}

static int make_file(char *path, size_t len)
{
    snprintf(path, len, "/tmp/sbcfgXXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    if (write(fd, "x\n", 2) != 2) {
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    if (make_file(file_a, sizeof(file_a)) != 0 || make_file(file_b, sizeof(file_b)) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    unlink(file_a);
    unlink(file_b);
    return 0;
}

/* ---------- structural comparison of two configs ---------- */

static int str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static int list_eq(const sb_strlist_t *a, const sb_strlist_t *b)
{
    if (a->count != b->count)
        return 0;
    for (size_t i = 0; i < a->count; i++)
        if (strcmp(a->items[i], b->items[i]) != 0)
            return 0;
    return 1;
}

static int config_eq(const sb_config_t *a, const sb_config_t *b)
{
    if (a->listen_count != b->listen_count)
        return 0;
    for (size_t i = 0; i < a->listen_count; i++)
        if (a->listen[i].port != b->listen[i].port || strcmp(a->listen[i].host, b->listen[i].host) != 0)
            return 0;
    return a->threads == b->threads && str_eq(a->tls_cert, b->tls_cert) && str_eq(a->tls_key, b->tls_key) &&
           list_eq(&a->cors_origins, &b->cors_origins) && str_eq(a->redis_url, b->redis_url) &&
           str_eq(a->redis_prefix, b->redis_prefix) && a->redis_timeout_ms == b->redis_timeout_ms &&
           a->events_maxlen == b->events_maxlen && a->bus_maxlen == b->bus_maxlen &&
           a->bus_block_ms == b->bus_block_ms && a->bus_count == b->bus_count &&
           a->heartbeat_interval_ms == b->heartbeat_interval_ms && list_eq(&a->namespaces, &b->namespaces) &&
           a->ping_interval_ms == b->ping_interval_ms && a->ping_timeout_ms == b->ping_timeout_ms &&
           a->connect_timeout_ms == b->connect_timeout_ms && a->upgrade_timeout_ms == b->upgrade_timeout_ms &&
           a->max_payload == b->max_payload && a->max_attachments == b->max_attachments &&
           a->max_send_queue == b->max_send_queue && a->ack_timeout_ms == b->ack_timeout_ms &&
           a->recovery_window_ms == b->recovery_window_ms && a->drain_timeout_ms == b->drain_timeout_ms &&
           a->allow_upgrades == b->allow_upgrades && a->allow_polling == b->allow_polling &&
           list_eq(&a->api_keys, &b->api_keys) && str_eq(a->api_keys_file, b->api_keys_file) &&
           list_eq(&a->webhooks, &b->webhooks) && str_eq(a->jwt_alg, b->jwt_alg) &&
           str_eq(a->jwt_secret, b->jwt_secret) && str_eq(a->jwt_public_key, b->jwt_public_key) &&
           str_eq(a->jwt_issuer, b->jwt_issuer) && str_eq(a->jwt_audience, b->jwt_audience) &&
           a->jwt_leeway_ms == b->jwt_leeway_ms && a->log_level == b->log_level &&
           a->log_client_ips == b->log_client_ips && a->check_config == b->check_config;
}

/* "ping-interval" -> "SWITCHBOARD_PING_INTERVAL=value" */
static void env_of(const char *flag, const char *value, char *out, size_t len)
{
    size_t n = (size_t)snprintf(out, len, "SWITCHBOARD_");
    for (const char *p = flag; *p != '\0' && n + 1 < len; p++)
        out[n++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    snprintf(out + n, len - n, "=%s", value);
}

/* ---------- tests ---------- */

static void test_defaults(void **state)
{
    (void)state;
    sb_config_t c;
    sb_config_init(&c);
    assert_int_equal(c.threads, 0); /* resolved by the parser */
    assert_int_equal(c.listen_count, 1);
    sb_config_free(&c);

    assert_int_equal(parse(&c, NOARGS, NULL), 0);
    assert_string_equal(err, "");
    assert_int_equal(c.listen_count, 1);
    assert_string_equal(c.listen[0].host, "127.0.0.1");
    assert_int_equal(c.listen[0].port, 8080);
    assert_int_equal(c.threads, expected_threads());
    assert_null(c.tls_cert);
    assert_null(c.tls_key);
    assert_int_equal(c.cors_origins.count, 0);
    assert_null(c.redis_url);
    assert_string_equal(c.redis_prefix, "sb:");
    assert_int_equal(c.redis_timeout_ms, 5000);
    assert_int_equal(c.events_maxlen, 100000);
    assert_int_equal(c.bus_maxlen, 100000);
    assert_int_equal(c.bus_block_ms, 5000);
    assert_int_equal(c.bus_count, 256);
    assert_int_equal(c.heartbeat_interval_ms, 1000);
    assert_int_equal(c.namespaces.count, 0);
    assert_int_equal(c.ping_interval_ms, 25000);
    assert_int_equal(c.ping_timeout_ms, 20000);
    assert_int_equal(c.connect_timeout_ms, 45000);
    assert_int_equal(c.upgrade_timeout_ms, 10000);
    assert_int_equal(c.max_payload, 1000000);
    assert_int_equal(c.max_attachments, 10);
    assert_int_equal(c.max_send_queue, 4 * 1024 * 1024);
    assert_int_equal(c.ack_timeout_ms, 10000);
    assert_int_equal(c.recovery_window_ms, 120000);
    assert_int_equal(c.drain_timeout_ms, 30000);
    assert_int_equal(c.allow_upgrades, 1);
    assert_int_equal(c.allow_polling, 1);
    assert_int_equal(c.api_keys.count, 0);
    assert_null(c.api_keys_file);
    assert_int_equal(c.webhooks.count, 0);
    assert_string_equal(c.jwt_alg, "HS256");
    assert_null(c.jwt_secret);
    assert_null(c.jwt_public_key);
    assert_null(c.jwt_issuer);
    assert_null(c.jwt_audience);
    assert_int_equal(c.jwt_leeway_ms, 0);
    assert_int_equal(c.log_level, SB_LOG_INFO);
    assert_int_equal(c.log_client_ips, 0);
    assert_int_equal(c.check_config, 0);
    sb_config_free(&c);

    /* Variables that are not ours, and the test harnesses' own, are ignored. */
    assert_int_equal(parse(&c, NOARGS,
                           ENVP("PATH=/bin", "SWITCHBOARDX=1", "SWITCHBOARD_TEST_REDIS_SERVER=redis-server",
                                "SWITCHBOARD_BIN=/x/switchboard")),
                     0);
    sb_config_free(&c);
}

static void test_every_flag_sets_its_field(void **state)
{
    (void)state;
    sb_config_t c;
    int rc = parse(&c,
                   ARGV("--listen", "0.0.0.0:9000", "--listen=[::1]:9001", "--listen", ":9002", "--threads", "3",
                        "--tls-cert", file_a, "--tls-key", file_b, "--cors-origin", "https://app.example.com",
                        "--cors-origin=*", "--redis", "redis://u:p@r.example:6380/2", "--redis-prefix",
                        "x:", "--redis-timeout", "2s", "--events-maxlen", "7", "--bus-maxlen", "8", "--bus-block",
                        "150ms", "--bus-count", "9", "--heartbeat-interval", "1s", "--namespace", "/chat",
                        "--namespace", "/x", "--ping-interval", "1m", "--ping-timeout", "2000", "--connect-timeout",
                        "3s", "--upgrade-timeout", "4s", "--max-payload", "64kb", "--max-attachments", "0",
                        "--max-send-queue", "1mb", "--ack-timeout", "1h", "--recovery-window", "0", "--drain-timeout",
                        "5m", "--allow-upgrades", "false", "--allow-polling=off", "--api-key", "k1", "--api-key", "k2",
                        "--api-keys-file", file_a, "--webhook", "chat:*=https://h.example/hook", "--jwt-alg", "hs512",
                        "--jwt-secret", "s3cret", "--jwt-issuer", "iss", "--jwt-audience", "aud", "--jwt-leeway", "30s",
                        "--log-level", "debug", "--log-client-ips", "--check-config"),
                   NULL);
    if (rc != 0)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(c.listen_count, 3);
    assert_string_equal(c.listen[0].host, "0.0.0.0");
    assert_int_equal(c.listen[0].port, 9000);
    assert_string_equal(c.listen[1].host, "::1");
    assert_int_equal(c.listen[1].port, 9001);
    assert_string_equal(c.listen[2].host, "");
    assert_int_equal(c.listen[2].port, 9002);
    assert_int_equal(c.threads, 3);
    assert_string_equal(c.tls_cert, file_a);
    assert_string_equal(c.tls_key, file_b);
    assert_int_equal(c.cors_origins.count, 2);
    assert_string_equal(c.cors_origins.items[0], "https://app.example.com");
    assert_string_equal(c.cors_origins.items[1], "*");
    assert_string_equal(c.redis_url, "redis://u:p@r.example:6380/2");
    assert_string_equal(c.redis_prefix, "x:");
    assert_int_equal(c.redis_timeout_ms, 2000);
    assert_int_equal(c.events_maxlen, 7);
    assert_int_equal(c.bus_maxlen, 8);
    assert_int_equal(c.bus_block_ms, 150);
    assert_int_equal(c.bus_count, 9);
    assert_int_equal(c.heartbeat_interval_ms, 1000);
    assert_int_equal(c.namespaces.count, 2);
    assert_string_equal(c.namespaces.items[0], "/chat");
    assert_string_equal(c.namespaces.items[1], "/x");
    assert_int_equal(c.ping_interval_ms, 60000);
    assert_int_equal(c.ping_timeout_ms, 2000);
    assert_int_equal(c.connect_timeout_ms, 3000);
    assert_int_equal(c.upgrade_timeout_ms, 4000);
    assert_int_equal(c.max_payload, 65536);
    assert_int_equal(c.max_attachments, 0);
    assert_int_equal(c.max_send_queue, 1048576);
    assert_int_equal(c.ack_timeout_ms, 3600000);
    assert_int_equal(c.recovery_window_ms, 0);
    assert_int_equal(c.drain_timeout_ms, 300000);
    assert_int_equal(c.allow_upgrades, 0);
    assert_int_equal(c.allow_polling, 0);
    assert_int_equal(c.api_keys.count, 2);
    assert_string_equal(c.api_keys.items[0], "k1");
    assert_string_equal(c.api_keys.items[1], "k2");
    assert_string_equal(c.api_keys_file, file_a);
    assert_int_equal(c.webhooks.count, 1);
    assert_string_equal(c.webhooks.items[0], "chat:*=https://h.example/hook");
    assert_string_equal(c.jwt_alg, "HS512"); /* normalised */
    assert_string_equal(c.jwt_secret, "s3cret");
    assert_string_equal(c.jwt_issuer, "iss");
    assert_string_equal(c.jwt_audience, "aud");
    assert_int_equal(c.jwt_leeway_ms, 30000);
    assert_int_equal(c.log_level, SB_LOG_DEBUG);
    assert_int_equal(c.log_client_ips, 1);
    assert_int_equal(c.check_config, 1);
    sb_config_free(&c);

    /* The RS256 family with its key file. */
    rc = parse(&c, ARGV("--jwt-alg=RS256", "--jwt-public-key", file_a), NULL);
    assert_int_equal(rc, 0);
    assert_string_equal(c.jwt_alg, "RS256");
    assert_string_equal(c.jwt_public_key, file_a);
    sb_config_free(&c);
    rc = parse(&c, ARGV("--jwt-alg", "ES256", "--jwt-public-key="), NULL);
    assert_int_equal(rc, 2); /* empty FILE */
    assert_non_null(strstr(err, "--jwt-public-key"));
    sb_config_free(&c);
}

/* One setting (one or two flag/value pairs) set by flag and by variable gives
 * the same configuration, different from the defaults. */
static const struct {
    const char *flag1, *value1, *flag2, *value2;
} one_setting[] = {
    {"listen", "0.0.0.0:9000", NULL, NULL},
    {"threads", "3", NULL, NULL},
    {"tls-cert", "A", "tls-key", "B"},
    {"cors-origin", "https://a.example", NULL, NULL},
    {"redis", "unix:///tmp/r.sock?db=3", NULL, NULL},
    {"redis-prefix", "app:", NULL, NULL},
    {"redis-prefix", "", NULL, NULL}, /* flag only: an empty variable means unset */
    {"redis-timeout", "250ms", NULL, NULL},
    {"events-maxlen", "5", NULL, NULL},
    {"bus-maxlen", "6", NULL, NULL},
    {"bus-block", "1s", NULL, NULL},
    {"bus-count", "10", NULL, NULL},
    {"heartbeat-interval", "2s", NULL, NULL},
    {"namespace", "/chat", NULL, NULL},
    {"ping-interval", "1s", NULL, NULL},
    {"ping-timeout", "2s", NULL, NULL},
    {"connect-timeout", "3s", NULL, NULL},
    {"upgrade-timeout", "4s", NULL, NULL},
    {"max-payload", "2mb", NULL, NULL},
    {"max-attachments", "2", NULL, NULL},
    {"max-send-queue", "64KB", NULL, NULL},
    {"ack-timeout", "5s", NULL, NULL},
    {"recovery-window", "0", NULL, NULL},
    {"drain-timeout", "1m", NULL, NULL},
    {"allow-upgrades", "no", NULL, NULL},
    {"allow-polling", "0", NULL, NULL},
    {"api-key", "key-1", NULL, NULL},
    {"api-keys-file", "A", NULL, NULL},
    {"webhook", "*=http://127.0.0.1:9/x", NULL, NULL},
    {"jwt-alg", "HS384", "jwt-secret", "sec"},
    {"jwt-secret", "sec", NULL, NULL},
    {"jwt-alg", "ES256", "jwt-public-key", "A"},
    {"jwt-issuer", "me", NULL, NULL},
    {"jwt-audience", "you", NULL, NULL},
    {"jwt-leeway", "1500", NULL, NULL},
    {"log-level", "error", NULL, NULL},
    {"log-client-ips", "on", NULL, NULL},
    {"check-config", "1", NULL, NULL},
};

static const char *file_value(const char *v)
{
    return strcmp(v, "A") == 0 ? file_a : strcmp(v, "B") == 0 ? file_b : v;
}

static void test_env_equals_flag(void **state)
{
    (void)state;
    sb_config_t defaults, by_flag, by_env;
    assert_int_equal(parse(&defaults, NOARGS, NULL), 0);
    for (size_t i = 0; i < SB_ARRAY_SIZE(one_setting); i++) {
        const char *f1 = one_setting[i].flag1, *f2 = one_setting[i].flag2;
        const char *v1 = file_value(one_setting[i].value1);
        if (strcmp(f1, "threads") == 0) /* must differ from the default, which depends on the machine */
            v1 = expected_threads() == 1 ? "2" : "1";
        const char *v2 = f2 != NULL ? file_value(one_setting[i].value2) : NULL;
        snprintf(arg_a, sizeof(arg_a), "--%s=%s", f1, v1);
        if (f2 != NULL)
            snprintf(arg_b, sizeof(arg_b), "--%s=%s", f2, v2);
        int rc = parse(&by_flag, f2 != NULL ? ARGV(arg_a, arg_b) : ARGV(arg_a), NULL);
        if (rc != 0)
            print_error("%s: %s\n", arg_a, err);
        assert_int_equal(rc, 0);
        assert_false(config_eq(&by_flag, &defaults));

        if (v1[0] != '\0') {
            env_of(f1, v1, env_a, sizeof(env_a));
            if (f2 != NULL)
                env_of(f2, v2, env_b, sizeof(env_b));
            rc = parse(&by_env, NOARGS, f2 != NULL ? ENVP(env_a, env_b) : ENVP(env_a));
            if (rc != 0)
                print_error("%s: %s\n", env_a, err);
            assert_int_equal(rc, 0);
            if (!config_eq(&by_flag, &by_env))
                print_error("%s: flag and variable differ\n", env_a);
            assert_true(config_eq(&by_flag, &by_env));
            sb_config_free(&by_env);
        }

        /* The space-separated form means the same. */
        sb_config_t spaced;
        char flag1[64], flag2[64];
        snprintf(flag1, sizeof(flag1), "--%s", f1);
        snprintf(flag2, sizeof(flag2), "--%s", f2 != NULL ? f2 : "");
        rc = parse(&spaced, f2 != NULL ? ARGV(flag1, (char *)v1, flag2, (char *)v2) : ARGV(flag1, (char *)v1), NULL);
        if (rc != 0)
            print_error("%s %s: %s\n", flag1, v1, err);
        assert_int_equal(rc, 0);
        assert_true(config_eq(&by_flag, &spaced));
        sb_config_free(&spaced);
        sb_config_free(&by_flag);
    }
    sb_config_free(&defaults);

    /* --redis has the documented variable and the rule-derived one. */
    assert_int_equal(parse(&by_env, NOARGS, ENVP("SWITCHBOARD_REDIS_URL=redis://a")), 0);
    assert_string_equal(by_env.redis_url, "redis://a");
    sb_config_free(&by_env);
    assert_int_equal(parse(&by_env, NOARGS, ENVP("SWITCHBOARD_REDIS=redis://b")), 0);
    assert_string_equal(by_env.redis_url, "redis://b");
    sb_config_free(&by_env);
}

static void test_flag_beats_env(void **state)
{
    (void)state;
    sb_config_t c;
    assert_int_equal(parse(&c, ARGV("--ping-interval", "2000"), ENVP("SWITCHBOARD_PING_INTERVAL=1000")), 0);
    assert_int_equal(c.ping_interval_ms, 2000);
    sb_config_free(&c);

    assert_int_equal(parse(&c, ARGV("--log-level=warn"), ENVP("SWITCHBOARD_LOG_LEVEL=trace")), 0);
    assert_int_equal(c.log_level, SB_LOG_WARN);
    sb_config_free(&c);

    /* A repeatable flag replaces the variable's whole list. */
    assert_int_equal(parse(&c, ARGV("--namespace", "/c", "--namespace", "/d"), ENVP("SWITCHBOARD_NAMESPACE=/a,/b")), 0);
    assert_int_equal(c.namespaces.count, 2);
    assert_string_equal(c.namespaces.items[0], "/c");
    assert_string_equal(c.namespaces.items[1], "/d");
    sb_config_free(&c);

    assert_int_equal(parse(&c, ARGV("--listen", ":1"), ENVP("SWITCHBOARD_LISTEN=:2,:3")), 0);
    assert_int_equal(c.listen_count, 1);
    assert_int_equal(c.listen[0].port, 1);
    sb_config_free(&c);

    /* Without the flag the variable stays. */
    assert_int_equal(parse(&c, ARGV("--threads", "2"), ENVP("SWITCHBOARD_PING_INTERVAL=1000")), 0);
    assert_int_equal(c.ping_interval_ms, 1000);
    sb_config_free(&c);
}

static void test_lists(void **state)
{
    (void)state;
    sb_config_t c;
    /* Comma lists: spaces around items and empty items are ignored. */
    assert_int_equal(parse(&c, NOARGS,
                           ENVP("SWITCHBOARD_NAMESPACE= /a, /b,,/c,", "SWITCHBOARD_API_KEY=k1,k2",
                                "SWITCHBOARD_LISTEN=127.0.0.1:1,[::]:2",
                                "SWITCHBOARD_WEBHOOK=a=http://h/1,b.*=https://h/2", "SWITCHBOARD_CORS_ORIGIN=*")),
                     0);
    assert_int_equal(c.namespaces.count, 3);
    assert_string_equal(c.namespaces.items[0], "/a");
    assert_string_equal(c.namespaces.items[1], "/b");
    assert_string_equal(c.namespaces.items[2], "/c");
    assert_int_equal(c.api_keys.count, 2);
    assert_string_equal(c.api_keys.items[1], "k2");
    assert_int_equal(c.listen_count, 2);
    assert_string_equal(c.listen[1].host, "::");
    assert_int_equal(c.listen[1].port, 2);
    assert_int_equal(c.webhooks.count, 2);
    assert_string_equal(c.webhooks.items[1], "b.*=https://h/2");
    assert_int_equal(c.cors_origins.count, 1);
    sb_config_free(&c);

    /* Repeated flags accumulate; exact duplicates collapse. */
    assert_int_equal(parse(&c,
                           ARGV("--namespace", "/a", "--namespace=/b", "--namespace", "/a", "--listen", ":1",
                                "--listen", ":1", "--listen", "localhost:2"),
                           NULL),
                     0);
    assert_int_equal(c.namespaces.count, 2);
    assert_int_equal(c.listen_count, 2);
    assert_string_equal(c.listen[1].host, "localhost");
    sb_config_free(&c);

    /* An empty variable means unset. */
    assert_int_equal(parse(&c, NOARGS, ENVP("SWITCHBOARD_LISTEN=", "SWITCHBOARD_REDIS_URL=")), 0);
    assert_int_equal(c.listen_count, 1);
    assert_int_equal(c.listen[0].port, 8080);
    assert_null(c.redis_url);
    sb_config_free(&c);
}

static void test_booleans(void **state)
{
    (void)state;
    sb_config_t c;
    /* Alone a boolean flag means true; a following boolean word is its value;
     * anything else after it is the next option. */
    assert_int_equal(parse(&c, ARGV("--log-client-ips", "--allow-polling", "false", "--check-config", "--threads", "2"),
                           NULL),
                     0);
    assert_int_equal(c.log_client_ips, 1);
    assert_int_equal(c.allow_polling, 0);
    assert_int_equal(c.check_config, 1);
    assert_int_equal(c.threads, 2);
    sb_config_free(&c);

    static const char *const yes[] = {"true", "TRUE", "1", "yes", "on"};
    static const char *const no[] = {"false", "False", "0", "no", "OFF"};
    for (size_t i = 0; i < 5; i++) {
        snprintf(arg_a, sizeof(arg_a), "--allow-upgrades=%s", no[i]);
        snprintf(env_a, sizeof(env_a), "SWITCHBOARD_LOG_CLIENT_IPS=%s", yes[i]);
        assert_int_equal(parse(&c, ARGV(arg_a), ENVP(env_a)), 0);
        assert_int_equal(c.allow_upgrades, 0);
        assert_int_equal(c.log_client_ips, 1);
        sb_config_free(&c);
    }
    /* A positional word after a boolean is not swallowed as its value. */
    assert_int_equal(parse(&c, ARGV("--check-config", "maybe"), NULL), 2);
    assert_non_null(strstr(err, "maybe"));
    sb_config_free(&c);
}

static void test_durations(void **state)
{
    (void)state;
    uint64_t v = 99;
    static const struct {
        const char *in;
        uint64_t ms;
    } good[] = {{"0", 0},       {"250", 250},   {"250ms", 250},
                {"25s", 25000}, {"5m", 300000}, {"1h", 3600000},
                {"0s", 0},      {"007", 7},     {"18446744073709551615", UINT64_MAX}};
    for (size_t i = 0; i < SB_ARRAY_SIZE(good); i++) {
        assert_int_equal(sb_config_parse_duration(good[i].in, &v), 0);
        assert_true(v == good[i].ms);
    }
    static const char *const bad[] = {"",
                                      "-1",
                                      "5x",
                                      "1.5s",
                                      "s",
                                      "ms",
                                      " 5",
                                      "5 ",
                                      "5S",
                                      "5sec",
                                      "+5",
                                      "1d",
                                      "5mm",
                                      "0x10",
                                      "5hs",
                                      "1e3",
                                      "18446744073709551616",
                                      "18446744073709551615h",
                                      "9999999999999999999s"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(bad); i++) {
        v = 42;
        if (sb_config_parse_duration(bad[i], &v) != SB_EINVAL)
            print_error("accepted duration \"%s\"\n", bad[i]);
        assert_int_equal(sb_config_parse_duration(bad[i], &v), SB_EINVAL);
        assert_int_equal(v, 42); /* untouched on failure */
    }
    assert_int_equal(sb_config_parse_duration(NULL, &v), SB_EINVAL);
}

static void test_sizes(void **state)
{
    (void)state;
    uint64_t v = 0;
    static const struct {
        const char *in;
        uint64_t bytes;
    } good[] = {{"1000000", 1000000}, {"64kb", 65536}, {"64KB", 65536}, {"4mb", 4194304}, {"4Mb", 4194304}, {"0", 0}};
    for (size_t i = 0; i < SB_ARRAY_SIZE(good); i++) {
        assert_int_equal(sb_config_parse_size(good[i].in, &v), 0);
        assert_true(v == good[i].bytes);
    }
    static const char *const bad[] = {"", "-1", "1.5mb", "4gb", "kb", "4 kb", "4k", "4b", "x", "17592186044416mb"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(bad); i++) {
        if (sb_config_parse_size(bad[i], &v) != SB_EINVAL)
            print_error("accepted size \"%s\"\n", bad[i]);
        assert_int_equal(sb_config_parse_size(bad[i], &v), SB_EINVAL);
    }
}

/* Each bad value: exit 2 and one line "switchboard: --flag: ..." (or the
 * variable's name when it came from the environment). */
static const struct {
    const char *flag, *value, *says;
} invalid[] = {
    {"listen", "8080", "HOST:PORT"},
    {"listen", "h:0", "1 to 65535"},
    {"listen", "h:65536", "1 to 65535"},
    {"listen", "h:", "1 to 65535"},
    {"listen", "::1:80", "brackets"},
    {"listen", "[::1]80", "[::1]:8080"},
    {"listen", "[::1:80", "]"},
    {"listen", "[zz]:80", "IPv6"},
    {"listen", "a b:80", "host"},
    {"threads", "65", "0 to 64"},
    {"threads", "-1", "0 to 64"},
    {"threads", "2x", "0 to 64"},
    {"tls-cert", "/nonexistent/cert.pem", "--tls-key"},
    {"cors-origin", "https://a.example/", "origin"},
    {"cors-origin", "ftp://a.example", "origin"},
    {"cors-origin", "a.example", "origin"},
    {"redis", "rediss://h", "TLS"},
    {"redis", "redis://h:0", "port"},
    {"redis", "mysql://h", "redis://"},
    {"redis-prefix", "a{b}", "'{'"},
    {"redis-timeout", "0", "out of range"},
    {"events-maxlen", "0", "1 to"},
    {"bus-maxlen", "x", "whole number"},
    {"bus-block", "0", "out of range"},
    {"bus-count", "100001", "1 to 100000"},
    {"heartbeat-interval", "50ms", "out of range"},
    {"namespace", "chat", "start with '/'"},
    {"namespace", "/a:b", "':'"},
    {"namespace", "/a{b", "'{'"},
    {"namespace", "/a b", "spaces"},
    {"ping-interval", "0", "out of range"},
    {"ping-interval", "5x", "not a duration"},
    {"ping-timeout", "0", "out of range"},
    {"ping-timeout", "-1", "not a duration"},
    {"connect-timeout", "1.5s", "not a duration"},
    {"upgrade-timeout", "25h", "out of range"},
    {"max-payload", "1023", "1kb to 100mb"},
    {"max-payload", "101mb", "1kb to 100mb"},
    {"max-payload", "1gb", "not a size"},
    {"max-attachments", "1001", "0 to 1000"},
    {"max-send-queue", "10", "out of range"},
    {"ack-timeout", "0", "out of range"},
    {"recovery-window", "8d", "not a duration"},
    {"drain-timeout", "25h", "out of range"},
    {"allow-upgrades", "maybe", "true or false"},
    {"allow-polling", "2", "true or false"},
    {"api-key", "a b", "visible ASCII"},
    {"api-keys-file", "/nonexistent/keys", "cannot read"},
    {"webhook", "noequals", "GLOB=URL"},
    {"webhook", "=https://h/x", "empty event pattern"},
    {"webhook", "a=ftp://h/x", "http://"},
    {"webhook", "a=https://", "http://"},
    {"jwt-alg", "none", "HS256"},
    {"jwt-alg", "RS512", "HS256"},
    {"jwt-public-key", "/nonexistent/key.pem", "cannot read"},
    {"jwt-leeway", "2h", "out of range"},
    {"log-level", "verbose", "trace, debug"},
    {"log-level", "30", "trace, debug"},
    {"log-client-ips", "sometimes", "true or false"},
};

static void assert_error_names(const char *setting, const char *says)
{
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "switchboard: %s: ", setting);
    if (strncmp(err, prefix, strlen(prefix)) != 0 || strstr(err, says) == NULL)
        print_error("want \"%s...%s\", got \"%s\"\n", prefix, says, err);
    assert_memory_equal(err, prefix, strlen(prefix));
    assert_non_null(strstr(err, says));
    assert_null(strchr(err, '\n')); /* one line */
}

static void test_invalid_values(void **state)
{
    (void)state;
    sb_config_t c;
    char name[96];
    for (size_t i = 0; i < SB_ARRAY_SIZE(invalid); i++) {
        snprintf(arg_a, sizeof(arg_a), "--%s=%s", invalid[i].flag, invalid[i].value);
        /* jwt-public-key needs a matching algorithm to reach the file check */
        int rc = strcmp(invalid[i].flag, "jwt-public-key") == 0 ? parse(&c, ARGV(arg_a, "--jwt-alg=RS256"), NULL)
                                                                : parse(&c, ARGV(arg_a), NULL);
        if (rc != 2)
            print_error("%s accepted\n", arg_a);
        assert_int_equal(rc, 2);
        snprintf(name, sizeof(name), "--%s", invalid[i].flag);
        assert_error_names(name, invalid[i].says);
        sb_config_free(&c);

        env_of(invalid[i].flag, invalid[i].value, env_a, sizeof(env_a));
        if (strcmp(invalid[i].flag, "jwt-public-key") == 0)
            rc = parse(&c, NOARGS, ENVP(env_a, "SWITCHBOARD_JWT_ALG=RS256"));
        else
            rc = parse(&c, NOARGS, ENVP(env_a));
        assert_int_equal(rc, 2);
        *strchr(env_a, '=') = '\0';
        if (strcmp(invalid[i].flag, "redis") == 0)
            snprintf(env_a, sizeof(env_a), "SWITCHBOARD_REDIS_URL");
        assert_error_names(env_a, invalid[i].says);
        sb_config_free(&c);
    }

    /* Empty values given as flags. */
    assert_int_equal(parse(&c, ARGV("--jwt-secret="), NULL), 2);
    assert_error_names("--jwt-secret", "empty");
    sb_config_free(&c);
    assert_int_equal(parse(&c, ARGV("--ping-interval", ""), NULL), 2);
    assert_error_names("--ping-interval", "empty");
    sb_config_free(&c);

    /* A namespace longer than 256 bytes, and a ',' in one. */
    char longnsp[300];
    memset(longnsp, 'n', sizeof(longnsp));
    longnsp[0] = '/';
    longnsp[257] = '\0';
    assert_int_equal(parse(&c, ARGV("--namespace", longnsp), NULL), 2);
    assert_error_names("--namespace", "256");
    sb_config_free(&c);
    longnsp[256] = '\0';
    assert_int_equal(parse(&c, ARGV("--namespace", longnsp), NULL), 0);
    sb_config_free(&c);
    assert_int_equal(parse(&c, ARGV("--namespace", "/a,b"), NULL), 2);
    assert_error_names("--namespace", "','");
    sb_config_free(&c);
}

static void test_cross_checks(void **state)
{
    (void)state;
    sb_config_t c;
    assert_int_equal(parse(&c, ARGV("--tls-cert", file_a), NULL), 2);
    assert_error_names("--tls-cert", "--tls-key");
    sb_config_free(&c);
    assert_int_equal(parse(&c, NOARGS, ENVP("SWITCHBOARD_TLS_KEY=/x")), 2);
    assert_error_names("SWITCHBOARD_TLS_KEY", "--tls-cert");
    sb_config_free(&c);
    assert_int_equal(parse(&c, ARGV("--tls-cert", file_a, "--tls-key", "/nonexistent/k"), NULL), 2);
    assert_error_names("--tls-key", "No such file");
    sb_config_free(&c);

    assert_int_equal(parse(&c, ARGV("--jwt-public-key", file_a), NULL), 2);
    assert_error_names("--jwt-public-key", "HS256");
    sb_config_free(&c);
    assert_int_equal(parse(&c, ARGV("--jwt-alg", "RS256", "--jwt-secret", "s"), NULL), 2);
    assert_error_names("--jwt-secret", "RS256");
    sb_config_free(&c);
    assert_int_equal(parse(&c, ARGV("--jwt-alg", "ES256"), NULL), 2);
    assert_error_names("--jwt-alg", "--jwt-public-key");
    sb_config_free(&c);
    assert_int_equal(parse(&c, NOARGS, ENVP("SWITCHBOARD_JWT_ALG=HS256")), 2);
    assert_error_names("SWITCHBOARD_JWT_ALG", "--jwt-secret");
    sb_config_free(&c);

    /* --threads 0 means one per CPU. */
    assert_int_equal(parse(&c, ARGV("--threads", "0"), NULL), 0);
    assert_int_equal(c.threads, expected_threads());
    sb_config_free(&c);
    assert_int_equal(parse(&c, ARGV("--threads", "64"), NULL), 0);
    assert_int_equal(c.threads, 64);
    sb_config_free(&c);
}

static void test_unknown_and_malformed_arguments(void **state)
{
    (void)state;
    sb_config_t c;
    assert_int_equal(parse(&c, ARGV("--nope"), NULL), 2);
    assert_error_names("--nope", "unknown option");
    sb_config_free(&c);
    assert_int_equal(parse(&c, ARGV("--nope=secret-value"), NULL), 2);
    assert_error_names("--nope", "unknown option");
    assert_null(strstr(err, "secret-value"));
    sb_config_free(&c);
    assert_int_equal(parse(&c, NOARGS, ENVP("SWITCHBOARD_FOO=1")), 2);
    assert_error_names("SWITCHBOARD_FOO", "unknown variable");
    sb_config_free(&c);
    assert_int_equal(parse(&c, NOARGS, ENVP("SWITCHBOARD_HELP=1")), 2); /* --help has no variable */
    assert_error_names("SWITCHBOARD_HELP", "unknown variable");
    sb_config_free(&c);
    assert_int_equal(parse(&c, ARGV("serve"), NULL), 2);
    assert_error_names("serve", "unexpected argument");
    sb_config_free(&c);
    assert_int_equal(parse(&c, ARGV("-x"), NULL), 2);
    assert_error_names("-x", "unexpected argument");
    sb_config_free(&c);
    assert_int_equal(parse(&c, ARGV("--"), NULL), 2);
    sb_config_free(&c);
    assert_int_equal(parse(&c, ARGV("--listen"), NULL), 2);
    assert_error_names("--listen", "needs a value");
    sb_config_free(&c);
    assert_int_equal(parse(&c, ARGV("--redis", "--threads", "2"), NULL), 2);
    assert_error_names("--redis", "needs a value");
    sb_config_free(&c);
    assert_int_equal(parse(&c, ARGV("--listen-address=:1"), NULL), 2);
    assert_error_names("--listen-address", "unknown option");
    sb_config_free(&c);

    /* A too-long value is refused, not truncated. */
    char *huge = malloc(5000);
    assert_non_null(huge);
    memset(huge, 'a', 4999);
    huge[4999] = '\0';
    assert_int_equal(parse(&c, ARGV("--jwt-issuer", huge), NULL), 2);
    assert_error_names("--jwt-issuer", "4096");
    assert_true(strlen(err) < 200);
    sb_config_free(&c);
    free(huge);

    /* A tiny error buffer is still terminated; a NULL one is allowed. */
    char small[16];
    memset(small, 'z', sizeof(small));
    sb_config_init(&c);
    assert_int_equal(sb_config_parse(&c, 2, ARGV("--nope"), NULL, small, sizeof(small)), 2);
    assert_string_equal(small, "switchboard: --");
    sb_config_free(&c);
    sb_config_init(&c);
    assert_int_equal(sb_config_parse(&c, 2, ARGV("--nope"), NULL, NULL, 0), 2);
    sb_config_free(&c);
}

static void test_secrets_not_echoed(void **state)
{
    (void)state;
    sb_config_t c;
    assert_int_equal(parse(&c, ARGV("--api-key", "topsecret key"), NULL), 2);
    assert_error_names("--api-key", "visible ASCII");
    assert_null(strstr(err, "topsecret"));
    sb_config_free(&c);
    assert_int_equal(parse(&c, ARGV("--jwt-secret", "hunter2\x01"), NULL), 2);
    assert_error_names("--jwt-secret", "control");
    assert_null(strstr(err, "hunter2"));
    sb_config_free(&c);
    assert_int_equal(parse(&c, ARGV("--redis", "redis://:hunter2@h:0"), NULL), 2);
    assert_error_names("--redis", "port");
    assert_null(strstr(err, "hunter2"));
    sb_config_free(&c);
}

/* Runs sb_config_parse with stdout redirected; returns what it printed. */
static char printed[16384];
static int parse_capturing_stdout(sb_config_t *c, char **argv, char **envp)
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stdout);
    int saved = dup(1);
    assert_true(dup2(fileno(tmp), 1) == 1);
    int rc = parse(c, argv, envp);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    rewind(tmp);
    size_t n = fread(printed, 1, sizeof(printed) - 1, tmp);
    printed[n] = '\0';
    fclose(tmp);
    return rc;
}

static void test_help_and_version(void **state)
{
    (void)state;
    sb_config_t c;
    assert_int_equal(parse_capturing_stdout(&c, ARGV("--version"), NULL), 1);
    assert_string_equal(printed, "switchboard " SB_VERSION "\n");
    sb_config_free(&c);
    assert_int_equal(parse_capturing_stdout(&c, ARGV("-v"), NULL), 1);
    assert_string_equal(printed, "switchboard 0.1.0\n");
    sb_config_free(&c);

    /* --help works even with a broken environment and other flags. */
    assert_int_equal(parse_capturing_stdout(&c, ARGV("--threads", "999", "--help"), ENVP("SWITCHBOARD_FOO=1")), 1);
    assert_string_equal(err, "");
    static const char *const flags[] = {
        "listen",         "threads",         "tls-cert",           "tls-key",       "cors-origin",
        "redis",          "redis-prefix",    "redis-timeout",      "events-maxlen", "bus-maxlen",
        "bus-block",      "bus-count",       "heartbeat-interval", "namespace",     "ping-interval",
        "ping-timeout",   "connect-timeout", "upgrade-timeout",    "max-payload",   "max-attachments",
        "max-send-queue", "ack-timeout",     "recovery-window",    "drain-timeout", "allow-upgrades",
        "allow-polling",  "api-key",         "api-keys-file",      "webhook",       "jwt-alg",
        "jwt-secret",     "jwt-public-key",  "jwt-issuer",         "jwt-audience",  "jwt-leeway",
        "log-level",      "log-client-ips",  "check-config",       "help",          "version"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(flags); i++) {
        char want[96];
        snprintf(want, sizeof(want), "  --%s", flags[i]);
        if (strstr(printed, want) == NULL)
            print_error("--help lacks %s\n", want);
        assert_non_null(strstr(printed, want));
        if (strcmp(flags[i], "help") != 0 && strcmp(flags[i], "version") != 0) {
            env_of(flags[i], "", want, sizeof(want));
            *strchr(want, '=') = '\0';
            if (strcmp(flags[i], "redis") == 0)
                snprintf(want, sizeof(want), "SWITCHBOARD_REDIS_URL");
            assert_non_null(strstr(printed, want));
        }
    }
    assert_non_null(strstr(printed, "--ping-interval DURATION"));
    assert_non_null(strstr(printed, "Default: 25s"));
    assert_non_null(strstr(printed, "Default: 127.0.0.1:8080"));
    /* readable on an 80-column terminal */
    for (const char *line = printed; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl);
        assert_true(nl - line <= 80);
        line = nl + 1;
    }
    sb_config_free(&c);

    assert_int_equal(parse_capturing_stdout(&c, ARGV("-h"), NULL), 1);
    assert_non_null(strstr(printed, "Usage: switchboard"));
    sb_config_free(&c);
}

static void test_free_releases_everything(void **state)
{
    (void)state;
    sb_config_t c;
    /* Everything allocated, then freed: ASan's leak check would catch a miss. */
    assert_int_equal(parse(&c,
                           ARGV("--listen", ":1", "--tls-cert", file_a, "--tls-key", file_b, "--cors-origin", "*",
                                "--redis", "redis://h", "--redis-prefix", "p:", "--namespace", "/a", "--api-key", "k",
                                "--api-keys-file", file_a, "--webhook", "a=http://h", "--jwt-secret", "s",
                                "--jwt-issuer", "i", "--jwt-audience", "a"),
                           ENVP("SWITCHBOARD_NAMESPACE=/x,/y", "SWITCHBOARD_JWT_ISSUER=j")),
                     0);
    sb_config_free(&c);
    assert_null(c.listen);
    assert_int_equal(c.listen_count, 0);
    assert_null(c.redis_prefix);
    assert_null(c.namespaces.items);
    sb_config_free(&c); /* twice is harmless */

    /* A failure halfway leaves a config that frees cleanly. */
    assert_int_equal(parse(&c, ARGV("--namespace", "/a", "--jwt-issuer", "i", "--threads", "x"), NULL), 2);
    sb_config_free(&c);
}

/* --rebalance*: defaults, ranges, and an interval no shorter than the heartbeat (the default follows it). */
static void test_rebalance_settings(void **state)
{
    (void)state;
    sb_config_t c;
    assert_int_equal(parse(&c, NOARGS, NULL), 0);
    assert_int_equal(c.rebalance, 1);
    assert_int_equal(c.rebalance_interval_ms, 10000);
    assert_int_equal(c.rebalance_threshold, 20);
    assert_int_equal(c.rebalance_rate, 20);
    sb_config_free(&c);

    assert_int_equal(parse(&c,
                           ARGV("--rebalance", "off", "--rebalance-interval", "30s", "--rebalance-threshold", "50",
                                "--rebalance-rate", "5"),
                           NULL),
                     0);
    assert_int_equal(c.rebalance, 0);
    assert_int_equal(c.rebalance_interval_ms, 30000);
    assert_int_equal(c.rebalance_threshold, 50);
    assert_int_equal(c.rebalance_rate, 5);
    sb_config_free(&c);
    assert_int_equal(parse(&c, NOARGS, ENVP("SWITCHBOARD_REBALANCE=on", "SWITCHBOARD_REBALANCE_INTERVAL=1s")), 0);
    assert_int_equal(c.rebalance, 1);
    assert_int_equal(c.rebalance_interval_ms, 1000);
    sb_config_free(&c);

    static const struct {
        const char *flag, *value, *says;
    } bad[] = {{"--rebalance", "maybe", "--rebalance"},        {"--rebalance-interval", "999ms", "1000ms"},
               {"--rebalance-interval", "2h", "3600000ms"},    {"--rebalance-threshold", "4", "5 to 1000"},
               {"--rebalance-threshold", "1001", "5 to 1000"}, {"--rebalance-rate", "0", "1 to 100000"}};
    for (size_t i = 0; i < SB_ARRAY_SIZE(bad); i++) {
        snprintf(arg_a, sizeof(arg_a), "%s=%s", bad[i].flag, bad[i].value);
        assert_int_equal(parse(&c, ARGV(arg_a), NULL), 2);
        assert_error_names(bad[i].flag, bad[i].says);
        sb_config_free(&c);
    }

    /* Rounds shorter than a heartbeat would act twice on the same figures. */
    assert_int_equal(parse(&c, ARGV("--heartbeat-interval", "5s", "--rebalance-interval", "2s"), NULL), 2);
    assert_error_names("--rebalance-interval", "--heartbeat-interval");
    sb_config_free(&c);
    assert_int_equal(parse(&c, NOARGS, ENVP("SWITCHBOARD_HEARTBEAT_INTERVAL=5s", "SWITCHBOARD_REBALANCE_INTERVAL=2s")),
                     2);
    assert_error_names("SWITCHBOARD_REBALANCE_INTERVAL", "--heartbeat-interval");
    sb_config_free(&c);
    assert_int_equal(parse(&c, ARGV("--heartbeat-interval", "30s"), NULL), 0); /* the default follows */
    assert_int_equal(c.rebalance_interval_ms, 30000);
    sb_config_free(&c);
    assert_int_equal(parse(&c, ARGV("--heartbeat-interval", "5s", "--rebalance-interval", "2s", "--rebalance", "off"),
                           NULL),
                     0); /* off: nothing to check */
    sb_config_free(&c);
}

static void test_rates(void **state)
{
    (void)state;
    sb_rate_t r;
    assert_int_equal(sb_config_parse_rate("20/1s", &r), 0);
    assert_int_equal(r.rate, 20);
    assert_int_equal(r.period_ms, 1000);
    assert_int_equal(r.burst, 20);
    assert_int_equal(sb_config_parse_rate("100/1m:250", &r), 0);
    assert_int_equal(r.rate, 100);
    assert_int_equal(r.period_ms, 60000);
    assert_int_equal(r.burst, 250);
    assert_int_equal(sb_config_parse_rate("5/250ms:1", &r), 0);
    assert_int_equal(r.period_ms, 250);
    assert_int_equal(r.burst, 1);
    assert_int_equal(sb_config_parse_rate("off", &r), 0);
    assert_int_equal(r.rate, 0);
    assert_int_equal(sb_config_parse_rate("0", &r), 0);
    assert_int_equal(r.rate, 0);
    const char *bad[] = {"",        "20",      "/1s",   "20/",        "20/1x", "0/1s",  "20/1s:",
                         "20/1s:0", "20/1s:x", "-1/1s", "2000000/1s", "20/0",  "20/2d", "20/1s:5:6"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(sb_config_parse_rate(bad[i], &r), SB_EINVAL);

    sb_config_t cfg;
    char err[512];
    sb_config_init(&cfg);
    assert_int_equal(cfg.rate_socket_events.rate, 50);
    char *argv[] = {"switchboard", "--rate-user-events", "7/2s:9", "--rate-api", "off", NULL};
    assert_int_equal(sb_config_parse(&cfg, 5, argv, (char *[]){NULL}, err, sizeof(err)), 0);
    assert_int_equal(cfg.rate_user_events.rate, 7);
    assert_int_equal(cfg.rate_user_events.period_ms, 2000);
    assert_int_equal(cfg.rate_user_events.burst, 9);
    assert_int_equal(cfg.rate_api.rate, 0);
    sb_config_free(&cfg);
    sb_config_init(&cfg);
    char *bad_argv[] = {"switchboard", "--rate-connections", "lots", NULL};
    assert_int_equal(sb_config_parse(&cfg, 3, bad_argv, (char *[]){NULL}, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "--rate-connections"));
    sb_config_free(&cfg);
}

/* ---------- limits (found by scripts/coverage.sh) ---------- */

/* Parses argv (count n) and expects exit status 2 with `setting` and `says` in the one-line error. */
static void expect_refused(char **argv, char **envp, const char *setting, const char *says)
{
    sb_config_t c;
    int rc = parse(&c, argv, envp);
    if (rc != 2)
        print_error("accepted; want %s: %s\n", setting, says);
    assert_int_equal(rc, 2);
    assert_error_names(setting, says);
    sb_config_free(&c);
}

static char *repeat(char ch, size_t n, const char *prefix, const char *suffix)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    char *s = malloc(pl + n + sl + 1);
    assert_non_null(s);
    memcpy(s, prefix, pl);
    memset(s + pl, ch, n);
    memcpy(s + pl + n, suffix, sl + 1);
    return s;
}

static void test_lengths(void **state)
{
    (void)state;
    char *v = repeat('k', 513, "--api-key=", "");
    expect_refused(ARGV(v), NULL, "--api-key", "is longer than 512 bytes");
    free(v);
    v = repeat('k', 512, "--api-key=", "");
    sb_config_t c;
    assert_int_equal(parse(&c, ARGV(v), NULL), 0);
    sb_config_free(&c);
    free(v);

    v = repeat('p', 65, "--redis-prefix=", "");
    expect_refused(ARGV(v), NULL, "--redis-prefix", "is longer than 64 bytes");
    free(v);

    v = repeat('h', 256, "--listen=", ":8080");
    expect_refused(ARGV(v), NULL, "--listen", "has a host name longer than 255 bytes");
    free(v);
    expect_refused(ARGV("--listen=[]:8080"), NULL, "--listen", "has an invalid IPv6 address");
    expect_refused(ARGV("--listen=[fe80::zz]:8080"), NULL, "--listen", "has an invalid IPv6 address");
    expect_refused(ARGV("--webhook=ch\x01at=http://a.example/"), NULL, "--webhook", "contains a control character");
    expect_refused(ARGV("--webhook=chat=http://a.example/\x01"), NULL, "--webhook", "needs an http:// or https:// URL");

    /* An item of an environment list longer than any value. */
    v = repeat('n', 4097, "SWITCHBOARD_NAMESPACE=/a, /", "");
    expect_refused(NOARGS, ENVP(v), "SWITCHBOARD_NAMESPACE", "has an item longer than 4096 bytes");
    free(v);
}

/* Spaces and tabs around environment list items are not part of them. */
static void test_env_list_spaces(void **state)
{
    (void)state;
    sb_config_t c;
    assert_int_equal(parse(&c, NOARGS, ENVP("SWITCHBOARD_NAMESPACE= /a \t, /b\t ,")), 0);
    assert_int_equal(c.namespaces.count, 2);
    assert_string_equal(c.namespaces.items[0], "/a");
    assert_string_equal(c.namespaces.items[1], "/b");
    sb_config_free(&c);
}

static void test_too_many_values(void **state)
{
    (void)state;
    /* 1025 namespaces, then 65 listen addresses: one too many each. */
    char **argv = calloc(1 + 1025 + 1, sizeof(*argv));
    char **vals = calloc(1025, sizeof(*vals));
    assert_non_null(argv);
    assert_non_null(vals);
    argv[0] = "switchboard";
    for (int i = 0; i < 1025; i++) {
        vals[i] = malloc(32);
        snprintf(vals[i], 32, "--namespace=/n%d", i);
        argv[1 + i] = vals[i];
    }
    expect_refused(argv, NULL, "--namespace", "is one value too many (at most 1024)");
    argv[1 + 1024] = NULL;
    sb_config_t c;
    assert_int_equal(parse(&c, argv, NULL), 0);
    assert_int_equal(c.namespaces.count, 1024);
    sb_config_free(&c);

    for (int i = 0; i < 65; i++) {
        snprintf(vals[i], 32, "--listen=127.0.0.1:%d", 10000 + i);
        argv[1 + i] = vals[i];
    }
    argv[1 + 65] = NULL;
    expect_refused(argv, NULL, "--listen", "is one address too many (at most 64)");
    for (int i = 0; i < 1025; i++)
        free(vals[i]);
    free(vals);
    free(argv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_flag_sets_its_field),
        cmocka_unit_test(test_env_equals_flag),
        cmocka_unit_test(test_flag_beats_env),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_booleans),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_invalid_values),
        cmocka_unit_test(test_cross_checks),
        cmocka_unit_test(test_unknown_and_malformed_arguments),
        cmocka_unit_test(test_secrets_not_echoed),
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_free_releases_everything),
        cmocka_unit_test(test_rates),
        cmocka_unit_test(test_rebalance_settings),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_env_list_spaces),
        cmocka_unit_test(test_too_many_values),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
