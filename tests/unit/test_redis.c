/*
 * test_redis.c — the hiredis/h2o adapter (src/redis.c) and the embedded
 * redis-server (src/embedded_redis.c), against real redis-server processes.
 * Every wait is bounded by a deadline; nothing sleeps waiting for an outcome.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "switchboard/common.h"
#include "switchboard/log.h"
#include "switchboard/redis.h"

extern char **environ;

#define MAX_STATES 16

typedef struct fixture {
    h2o_evloop_t *loop;
    sb_redis_t *r;
    int states[MAX_STATES];
    int nstates;
    int up;
    struct result *on_up; /* when set, a PING is sent from inside on_state(1) */
} fixture_t;

typedef struct result {
    int called;
    int was_null;
    int type;
    long long integer;
    char str[256];
    char err[64];
    /* optional actions from inside the callback */
    fixture_t *destroy_from_cb;
} result_t;

static char embedded_url[256];
static sb_redis_addr_t embedded_addr;

/* Runs the loop until cond holds or ms pass. */
#define RUN_UNTIL(f, cond, ms)                                                                                         \
    do {                                                                                                               \
        uint64_t dl_ = sb_mono_ms() + (ms);                                                                            \
        while (!(cond) && sb_mono_ms() < dl_)                                                                          \
            h2o_evloop_run((f)->loop, 10);                                                                             \
    } while (0)

static void run_for(fixture_t *f, uint64_t ms)
{
    uint64_t dl = sb_mono_ms() + ms;
    while (sb_mono_ms() < dl)
        h2o_evloop_run(f->loop, 10);
}

static void on_result(sb_redis_t *r, redisReply *reply, const char *err, void *data);

static void on_state(sb_redis_t *r, int up, void *data)
{
    fixture_t *f = data;
    assert_non_null(r);
    if (f->nstates < MAX_STATES)
        f->states[f->nstates++] = up;
    f->up = up;
    assert_int_equal(sb_redis_connected(r), up);
    if (up && f->on_up != NULL) {
        const char *argv[] = {"PING"};
        assert_int_equal(sb_redis_commandargv(r, on_result, f->on_up, 0, 1, argv, NULL), 0);
    }
}

static void on_result(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    result_t *res = data;
    (void)r;
    res->called++;
    res->was_null = reply == NULL;
    if (reply != NULL) {
        assert_null(err);
        res->type = reply->type;
        res->integer = reply->integer;
        if (reply->str != NULL)
            snprintf(res->str, sizeof(res->str), "%s", reply->str);
    } else {
        assert_non_null(err);
        snprintf(res->err, sizeof(res->err), "%s", err);
    }
    if (res->destroy_from_cb != NULL) {
        sb_redis_destroy(res->destroy_from_cb->r);
        res->destroy_from_cb->r = NULL;
    }
}

/* Sends a command given as NULL-terminated strings. */
static int cmd(fixture_t *f, result_t *res, uint64_t timeout_ms, ...)
{
    const char *argv[16];
    int argc = 0;
    va_list ap;
    va_start(ap, timeout_ms);
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL && argc < 16)
        argv[argc++] = s;
    va_end(ap);
    return sb_redis_commandargv(f->r, on_result, res, timeout_ms, argc, argv, NULL);
}

static void addr_from_url(const char *url, sb_redis_addr_t *a)
{
    memset(a, 0, sizeof(*a));
    assert_int_equal(strncmp(url, "unix:///", 8), 0);
    a->is_unix = 1;
    snprintf(a->path, sizeof(a->path), "%s", url + 7);
}

static fixture_t *fixture_new(const sb_redis_addr_t *a, uint64_t cmd_timeout_ms)
{
    fixture_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->loop = h2o_evloop_create();
    f->r = sb_redis_create(f->loop, a, cmd_timeout_ms, "test", on_state, f);
    assert_non_null(f->r);
    return f;
}

static fixture_t *fixture_connected(const sb_redis_addr_t *a, uint64_t cmd_timeout_ms)
{
    fixture_t *f = fixture_new(a, cmd_timeout_ms);
    RUN_UNTIL(f, f->up, 5000);
    assert_true(sb_redis_connected(f->r));
    assert_int_equal(f->nstates, 1);
    assert_int_equal(f->states[0], 1);
    return f;
}

static void fixture_free(fixture_t *f)
{
    if (f->r != NULL)
        sb_redis_destroy(f->r);
    /* h2o_evloop_destroy asserts that every h2o_timeout_t was disposed: this
     * checks that destroy really released the connection's timer */
    h2o_evloop_run(f->loop, 0);
    h2o_evloop_destroy(f->loop);
    free(f);
}

/* --- a redis-server of the test's own, restartable on the same socket path --- */

static pid_t spawn_server_port(const char *dir, const char *port)
{
    const char *bin = getenv("SWITCHBOARD_TEST_REDIS_SERVER");
    char sock[256], logfile[256];
    pid_t pid;
    snprintf(sock, sizeof(sock), "%s/redis.sock", dir);
    snprintf(logfile, sizeof(logfile), "%s/redis.log", dir);
    const char *argv[] = {bin != NULL ? bin : "redis-server",
                          "--port",
                          port,
                          "--bind",
                          "127.0.0.1",
                          "--unixsocket",
                          sock,
                          "--save",
                          "",
                          "--appendonly",
                          "no",
                          "--dir",
                          dir,
                          "--logfile",
                          logfile,
                          NULL};
    assert_int_equal(posix_spawnp(&pid, argv[0], NULL, NULL, (char *const *)argv, environ), 0);

    sb_redis_addr_t a;
    memset(&a, 0, sizeof(a));
    a.is_unix = 1;
    snprintf(a.path, sizeof(a.path), "%s", sock);
    uint64_t dl = sb_mono_ms() + 5000;
    for (;;) {
        const char *why = NULL;
        redisContext *c = sb_redis_connect_sync(&a, 200, &why);
        if (c != NULL) {
            redisFree(c);
            return pid;
        }
        assert_true(sb_mono_ms() < dl);
        usleep(10 * 1000); /* polling for the server to come up, bounded by dl */
    }
}

static pid_t spawn_server(const char *dir)
{
    return spawn_server_port(dir, "0");
}

static void shutdown_server(const char *dir, pid_t pid)
{
    sb_redis_addr_t a;
    const char *why = NULL;
    memset(&a, 0, sizeof(a));
    a.is_unix = 1;
    snprintf(a.path, sizeof(a.path), "%s/redis.sock", dir);
    redisContext *c = sb_redis_connect_sync(&a, 1000, &why);
    assert_non_null(c);
    redisReply *reply = redisCommand(c, "SHUTDOWN NOSAVE");
    assert_null(reply); /* the server closes the connection instead of answering */
    redisFree(c);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
}

/* --- embedded server --- */

static void test_embedded_not_found(void **state)
{
    (void)state;
    char url[256];
    const char *why = NULL;

    setenv("SWITCHBOARD_REDIS_SERVER", "sb-no-such-redis-server", 1);
    assert_int_equal(sb_embedded_redis_start(url, sizeof(url), &why), SB_EIO);
    assert_string_equal(why, "the program named by SWITCHBOARD_REDIS_SERVER was not found");
    unsetenv("SWITCHBOARD_REDIS_SERVER");

    char *path = getenv("PATH") != NULL ? strdup(getenv("PATH")) : NULL;
    setenv("PATH", "/nonexistent-sb-dir", 1);
    why = NULL;
    assert_int_equal(sb_embedded_redis_start(url, sizeof(url), &why), SB_EIO);
    assert_string_equal(why, "redis-server not found on PATH; install it (apt-get install redis-server) "
                             "or pass --redis URL");
    if (path != NULL) {
        setenv("PATH", path, 1);
        free(path);
    }
    sb_embedded_redis_stop(); /* safe when not started */
}

static void test_embedded_start_stop(void **state)
{
    (void)state;
    char url[256], dir[256];
    const char *why = NULL;
    sb_redis_addr_t a;

    assert_int_equal(sb_embedded_redis_start(url, sizeof(url), &why), 0);
    addr_from_url(url, &a);
    assert_non_null(strstr(a.path, "/switchboard-redis-"));
    assert_non_null(strstr(a.path, "/redis.sock"));
    struct stat st;
    assert_int_equal(stat(a.path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);

    redisContext *c = sb_redis_connect_sync(&a, 1000, &why);
    assert_non_null(c);
    redisReply *reply = redisCommand(c, "PING");
    assert_non_null(reply);
    assert_string_equal(reply->str, "PONG");
    freeReplyObject(reply);
    reply = redisCommand(c, "CONFIG GET save");
    assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
    assert_int_equal(reply->elements, 2);
    assert_string_equal(reply->element[1]->str, "");
    freeReplyObject(reply);
    reply = redisCommand(c, "CONFIG GET port");
    assert_string_equal(reply->element[1]->str, "0");
    freeReplyObject(reply);
    redisFree(c);

    /* a second start while running is refused */
    char url2[256];
    assert_int_equal(sb_embedded_redis_start(url2, sizeof(url2), &why), SB_EIO);

    snprintf(dir, sizeof(dir), "%s", a.path);
    *strrchr(dir, '/') = '\0';
    sb_embedded_redis_stop();
    assert_int_equal(stat(dir, &st), -1);
    assert_int_equal(errno, ENOENT);
    sb_embedded_redis_stop(); /* twice is fine */
}

/* --- async client against the embedded server --- */

static int group_setup(void **state)
{
    (void)state;
    const char *why = NULL;
    if (sb_embedded_redis_start(embedded_url, sizeof(embedded_url), &why) != 0) {
        fprintf(stderr, "cannot start redis-server: %s\n", why);
        return -1;
    }
    addr_from_url(embedded_url, &embedded_addr);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    sb_embedded_redis_stop();
    return 0;
}

static void test_set_get(void **state)
{
    (void)state;
    fixture_t *f = fixture_connected(&embedded_addr, 2000);
    result_t set = {0}, get = {0}, missing = {0};

    assert_int_equal(cmd(f, &set, 0, "SET", "sb:test:k", "hello world", NULL), 0);
    assert_int_equal(cmd(f, &get, 0, "GET", "sb:test:k", NULL), 0);
    assert_int_equal(cmd(f, &missing, 0, "GET", "sb:test:missing", NULL), 0);
    RUN_UNTIL(f, missing.called, 2000);
    assert_int_equal(set.called, 1);
    assert_int_equal(set.type, REDIS_REPLY_STATUS);
    assert_string_equal(set.str, "OK");
    assert_int_equal(get.called, 1);
    assert_int_equal(get.type, REDIS_REPLY_STRING);
    assert_string_equal(get.str, "hello world");
    assert_int_equal(missing.type, REDIS_REPLY_NIL);

    /* binary-safe arguments */
    const char *argv[] = {"SET", "sb:test:bin", "a\0b"};
    const size_t lens[] = {3, 11, 3};
    result_t bin = {0};
    assert_int_equal(sb_redis_commandargv(f->r, on_result, &bin, 0, 3, argv, lens), 0);
    result_t strlen_ = {0};
    assert_int_equal(cmd(f, &strlen_, 0, "STRLEN", "sb:test:bin", NULL), 0);
    RUN_UNTIL(f, strlen_.called, 2000);
    assert_int_equal(strlen_.integer, 3);

    /* our own RESP formatting: CR LF inside an argument, an empty argument, and one larger than the reused
     * formatting buffer keeps (64 KiB), each read back byte for byte */
    enum { BIG = 100000 };
    char *big = malloc(BIG);
    assert_non_null(big);
    for (size_t i = 0; i < BIG; i++)
        big[i] = "x\r\n$*0"[i % 6];
    const char *argv2[] = {"MSET", "sb:test:crlf", "a\r\nb", "sb:test:empty", "", "sb:test:big", big};
    const size_t lens2[] = {4, 12, 4, 13, 0, 11, BIG};
    assert_int_equal(lens2[1], strlen(argv2[1]));
    assert_int_equal(lens2[3], strlen(argv2[3]));
    result_t mset = {0}, g1 = {0}, g2 = {0}, g3 = {0};
    assert_int_equal(sb_redis_commandargv(f->r, on_result, &mset, 0, 7, argv2, lens2), 0);
    assert_int_equal(cmd(f, &g1, 0, "GET", "sb:test:crlf", NULL), 0);
    assert_int_equal(cmd(f, &g2, 0, "STRLEN", "sb:test:empty", NULL), 0);
    assert_int_equal(cmd(f, &g3, 0, "STRLEN", "sb:test:big", NULL), 0);
    RUN_UNTIL(f, g3.called, 2000);
    assert_int_equal(mset.type, REDIS_REPLY_STATUS);
    assert_string_equal(g1.str, "a\r\nb");
    assert_int_equal(g2.integer, 0);
    assert_int_equal(g3.integer, BIG);
    result_t range = {0};
    assert_int_equal(cmd(f, &range, 0, "GETRANGE", "sb:test:big", "99990", "99999", NULL), 0);
    RUN_UNTIL(f, range.called, 2000);
    assert_int_equal(range.type, REDIS_REPLY_STRING);
    assert_memory_equal(range.str, big + 99990, 10);
    free(big);

    /* commands that would break the one-reply-per-command pipeline are refused */
    result_t sub = {0};
    assert_int_equal(cmd(f, &sub, 0, "SUBSCRIBE", "ch", NULL), SB_EINVAL);
    assert_int_equal(sub.called, 0);
    fixture_free(f);
}

static int order_next;
static int order_bad;

static void on_incr(sb_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    int i = (int)(intptr_t)data;
    if (err != NULL || reply == NULL || reply->type != REDIS_REPLY_INTEGER || i != order_next ||
        reply->integer != (long long)i + 1)
        order_bad++;
    order_next++;
}

/* Issues n INCRs of key (just deleted) in one loop iteration; each reply must come in order with i + 1. */
static void incr_in_order(fixture_t *f, const char *key, int n)
{
    const char *argv[] = {"INCR", key};
    order_next = 0;
    order_bad = 0;
    for (int i = 0; i < n; i++)
        assert_int_equal(sb_redis_commandargv(f->r, on_incr, (void *)(intptr_t)i, 0, 2, argv, NULL), 0);
    RUN_UNTIL(f, order_next == n, 5000);
    assert_int_equal(order_next, n);
    assert_int_equal(order_bad, 0);
}

static void test_pipeline_in_order(void **state)
{
    (void)state;
    fixture_t *f = fixture_connected(&embedded_addr, 2000);
    result_t del = {0};
    assert_int_equal(cmd(f, &del, 0, "DEL", "sb:test:counter", NULL), 0);
    RUN_UNTIL(f, del.called, 2000);
    incr_in_order(f, "sb:test:counter", 1000);
    fixture_free(f);
}

static void test_error_reply(void **state)
{
    (void)state;
    fixture_t *f = fixture_connected(&embedded_addr, 2000);
    result_t set = {0}, incr = {0}, after = {0};

    assert_int_equal(cmd(f, &set, 0, "SET", "sb:test:str", "abc", NULL), 0);
    assert_int_equal(cmd(f, &incr, 0, "INCR", "sb:test:str", NULL), 0);
    assert_int_equal(cmd(f, &after, 0, "PING", NULL), 0);
    RUN_UNTIL(f, after.called, 2000);
    assert_int_equal(incr.called, 1);
    assert_int_equal(incr.was_null, 0);
    assert_int_equal(incr.type, REDIS_REPLY_ERROR);
    assert_string_equal(incr.str, "ERR value is not an integer or out of range");
    /* an error reply does not hurt the connection */
    assert_string_equal(after.str, "PONG");
    assert_true(sb_redis_connected(f->r));
    assert_int_equal(f->nstates, 1);
    fixture_free(f);
}

static void test_timeout_then_reconnect(void **state)
{
    (void)state;
    fixture_t *f = fixture_connected(&embedded_addr, 2000);
    result_t slow = {0}, behind = {0}, after = {0};

    uint64_t t0 = sb_mono_ms();
    /* BLPOP holds the reply 500 ms without blocking the server for others */
    assert_int_equal(cmd(f, &slow, 100, "BLPOP", "sb:test:never", "0.5", NULL), 0);
    assert_int_equal(cmd(f, &behind, 0, "PING", NULL), 0);
    RUN_UNTIL(f, slow.called, 2000);
    uint64_t elapsed = sb_mono_ms() - t0;
    assert_int_equal(slow.called, 1);
    assert_true(slow.was_null);
    assert_string_equal(slow.err, "timeout");
    assert_true(elapsed >= 100);
    assert_true(elapsed < 450);
    /* what was queued behind it went down with the connection */
    assert_int_equal(behind.called, 1);
    assert_true(behind.was_null);
    assert_string_equal(behind.err, "timeout");
    assert_false(sb_redis_connected(f->r));
    result_t refused = {0};
    assert_int_equal(cmd(f, &refused, 0, "PING", NULL), SB_EAGAIN);

    RUN_UNTIL(f, f->nstates >= 3, 3000);
    assert_int_equal(f->nstates, 3);
    assert_int_equal(f->states[1], 0);
    assert_int_equal(f->states[2], 1);
    assert_int_equal(cmd(f, &after, 0, "PING", NULL), 0);
    RUN_UNTIL(f, after.called, 2000);
    assert_string_equal(after.str, "PONG");
    /* the late BLPOP reply of the old connection never reaches anyone */
    run_for(f, 600);
    assert_int_equal(slow.called, 1);
    assert_int_equal(behind.called, 1);
    assert_int_equal(f->nstates, 3);
    fixture_free(f);
}

static pid_t private_pid = -1;
static char private_dir[64];

static int private_teardown(void **state)
{
    (void)state;
    char p[128];
    if (private_pid > 0) {
        kill(private_pid, SIGKILL);
        waitpid(private_pid, NULL, 0);
        private_pid = -1;
    }
    if (private_dir[0] != '\0') {
        snprintf(p, sizeof(p), "%s/redis.log", private_dir);
        unlink(p);
        snprintf(p, sizeof(p), "%s/redis.sock", private_dir);
        unlink(p);
        rmdir(private_dir);
        private_dir[0] = '\0';
    }
    return 0;
}

static void test_reconnect_after_restart(void **state)
{
    (void)state;
    char *dir = private_dir;
    snprintf(private_dir, sizeof(private_dir), "/tmp/sb-test-redis-XXXXXX");
    assert_non_null(mkdtemp(dir));
    pid_t pid = private_pid = spawn_server(dir);
    sb_redis_addr_t a;
    memset(&a, 0, sizeof(a));
    a.is_unix = 1;
    snprintf(a.path, sizeof(a.path), "%s/redis.sock", dir);

    fixture_t *f = fixture_connected(&a, 2000);
    result_t set = {0}, pending = {0}, on_up = {0};
    assert_int_equal(cmd(f, &set, 0, "SET", "sb:test:persist", "1", NULL), 0);
    RUN_UNTIL(f, set.called, 2000);
    assert_string_equal(set.str, "OK");

    /* a command in flight when the server goes away gets NULL, "disconnected" */
    assert_int_equal(cmd(f, &pending, 0, "BLPOP", "sb:test:never", "5", NULL), 0);
    shutdown_server(dir, pid);
    private_pid = -1;
    RUN_UNTIL(f, f->nstates >= 2, 3000);
    assert_int_equal(f->nstates, 2);
    assert_int_equal(f->states[1], 0);
    assert_int_equal(pending.called, 1);
    assert_true(pending.was_null);
    assert_string_equal(pending.err, "disconnected");
    assert_false(sb_redis_connected(f->r));

    result_t refused = {0};
    assert_int_equal(cmd(f, &refused, 0, "PING", NULL), SB_EAGAIN);
    run_for(f, 300); /* several failed reconnect attempts (logged) */
    assert_int_equal(cmd(f, &refused, 0, "PING", NULL), SB_EAGAIN);
    assert_int_equal(refused.called, 0);
    assert_int_equal(f->nstates, 2);

    f->on_up = &on_up;
    pid = private_pid = spawn_server(dir);
    RUN_UNTIL(f, f->nstates >= 3, 7000);
    assert_int_equal(f->nstates, 3);
    assert_int_equal(f->states[2], 1);
    RUN_UNTIL(f, on_up.called, 2000);
    assert_string_equal(on_up.str, "PONG"); /* a command sent from inside on_state(1) */
    result_t get = {0};
    assert_int_equal(cmd(f, &get, 0, "GET", "sb:test:persist", NULL), 0);
    RUN_UNTIL(f, get.called, 2000);
    assert_int_equal(get.type, REDIS_REPLY_NIL); /* a fresh server without persistence */
    fixture_free(f);

    shutdown_server(dir, pid);
    private_pid = -1;
}

/* A free TCP port on 127.0.0.1 (bind to port 0, read it back, release it). */
static uint16_t free_port(void)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static void test_tcp(void **state)
{
    (void)state;
    char port[8];
    uint16_t p = free_port();
    snprintf(port, sizeof(port), "%u", (unsigned)p);
    snprintf(private_dir, sizeof(private_dir), "/tmp/sb-test-redis-XXXXXX");
    assert_non_null(mkdtemp(private_dir));
    pid_t pid = private_pid = spawn_server_port(private_dir, port);

    sb_redis_addr_t a;
    memset(&a, 0, sizeof(a));
    snprintf(a.host, sizeof(a.host), "127.0.0.1");
    a.port = p;
    fixture_t *f = fixture_connected(&a, 2000);
    result_t echo = {0};
    assert_int_equal(cmd(f, &echo, 0, "ECHO", "over tcp", NULL), 0);
    RUN_UNTIL(f, echo.called, 2000);
    assert_string_equal(echo.str, "over tcp");
    fixture_free(f);

    const char *why = NULL;
    redisContext *c = sb_redis_connect_sync(&a, 1000, &why);
    assert_non_null(c);
    redisFree(c);
    shutdown_server(private_dir, pid);
    private_pid = -1;
}

static void test_destroy_with_pending(void **state)
{
    (void)state;
    fixture_t *f = fixture_connected(&embedded_addr, 2000);
    result_t res[4];
    memset(res, 0, sizeof(res));

    assert_int_equal(cmd(f, &res[0], 0, "BLPOP", "sb:test:never", "2", NULL), 0);
    for (int i = 1; i < 4; i++)
        assert_int_equal(cmd(f, &res[i], 0, "PING", NULL), 0);
    h2o_evloop_run(f->loop, 0); /* get them onto the wire */
    sb_redis_destroy(f->r);
    f->r = NULL;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(res[i].called, 1);
        assert_true(res[i].was_null);
        assert_string_equal(res[i].err, "shutdown");
    }
    run_for(f, 100);
    for (int i = 0; i < 4; i++)
        assert_int_equal(res[i].called, 1);
    assert_int_equal(f->nstates, 1); /* no state callback after destroy */
    fixture_free(f);
}

static void test_destroy_from_reply_callback(void **state)
{
    (void)state;
    fixture_t *f = fixture_connected(&embedded_addr, 2000);
    result_t first = {0}, res[3];
    memset(res, 0, sizeof(res));

    first.destroy_from_cb = f;
    assert_int_equal(cmd(f, &first, 0, "PING", NULL), 0);
    assert_int_equal(cmd(f, &res[0], 0, "PING", NULL), 0);
    assert_int_equal(cmd(f, &res[1], 0, "BLPOP", "sb:test:never", "2", NULL), 0);
    assert_int_equal(cmd(f, &res[2], 0, "PING", NULL), 0);
    RUN_UNTIL(f, first.called, 2000);
    assert_int_equal(first.called, 1);
    assert_string_equal(first.str, "PONG");
    assert_null(f->r);
    /* even a reply already read in the same batch is not delivered after destroy */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(res[i].called, 1);
        assert_string_equal(res[i].err, "shutdown");
    }
    run_for(f, 100);
    for (int i = 0; i < 3; i++)
        assert_int_equal(res[i].called, 1);
    fixture_free(f);
}

static void test_destroy_from_timeout_callback(void **state)
{
    (void)state;
    fixture_t *f = fixture_connected(&embedded_addr, 2000);
    result_t slow = {0}, behind = {0};

    /* the timeout callback runs from the adapter's own h2o timer: destroying
     * there must not break h2o's walk of the loop's timeouts */
    slow.destroy_from_cb = f;
    assert_int_equal(cmd(f, &slow, 100, "BLPOP", "sb:test:never", "0.5", NULL), 0);
    assert_int_equal(cmd(f, &behind, 0, "PING", NULL), 0);
    RUN_UNTIL(f, slow.called, 2000);
    assert_int_equal(slow.called, 1);
    assert_string_equal(slow.err, "timeout");
    assert_null(f->r);
    assert_int_equal(behind.called, 1);
    assert_string_equal(behind.err, "shutdown");
    run_for(f, 100);
    assert_int_equal(behind.called, 1);
    assert_int_equal(f->nstates, 1);
    fixture_free(f);
}

/* --- the deferred write (flush): batching, partial writes, losing the connection with a flush pending --- */

static long long info_stat(redisContext *c, const char *name)
{
    redisReply *reply = redisCommand(c, "INFO stats");
    assert_non_null(reply);
    assert_int_equal(reply->type, REDIS_REPLY_STRING);
    const char *p = strstr(reply->str, name);
    assert_non_null(p);
    long long v = strtoll(p + strlen(name) + 1, NULL, 10);
    freeReplyObject(reply);
    return v;
}

static void test_flush_batches_one_write(void **state)
{
    (void)state;
    fixture_t *f = fixture_connected(&embedded_addr, 2000);
    const char *why = NULL;
    redisContext *c = sb_redis_connect_sync(&embedded_addr, 1000, &why);
    assert_non_null(c);
    result_t del = {0};
    assert_int_equal(cmd(f, &del, 0, "DEL", "sb:test:batch", NULL), 0);
    RUN_UNTIL(f, del.called, 2000);
    long long reads0 = info_stat(c, "total_reads_processed");
    /* 200 commands in one loop iteration (about 7 KB): written by one write() at the end of the iteration, so
     * Redis reads them at once; written one by one they would cost it about 200 reads */
    incr_in_order(f, "sb:test:batch", 200);
    long long reads = info_stat(c, "total_reads_processed") - reads0;
    assert_true(reads >= 2); /* the batch and this INFO */
    assert_true(reads <= 3);
    /* the output buffer keeps the batch's capacity for the next iteration (hiredis alone frees it after each write) */
    assert_true(sb_redis_output_capacity(f->r) >= 4096);
    redisFree(c);
    fixture_free(f);
}

static void test_flush_partial_writes(void **state)
{
    (void)state;
    fixture_t *f = fixture_connected(&embedded_addr, 5000);
    /* 8 MiB: far more than a fresh loopback socket's send buffer, yet quick under valgrind (24 MiB did not finish
     * within the deadline there) */
    enum { N = 8, SIZE = 1024 * 1024 };
    char *val = malloc(SIZE);
    assert_non_null(val);
    result_t set[N], len[N], tail[N];
    char keys[N][32];
    memset(set, 0, sizeof(set));
    memset(len, 0, sizeof(len));
    memset(tail, 0, sizeof(tail));
    /* All of it in one iteration: the flush writes part of it and the rest goes out as EPOLLOUT reports room */
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "sb:test:big%d", i);
        memset(val, 'a' + i, SIZE);
        const char *argv[] = {"SET", keys[i], val};
        const size_t lens[] = {3, strlen(keys[i]), SIZE};
        assert_int_equal(sb_redis_commandargv(f->r, on_result, &set[i], 0, 3, argv, lens), 0);
    }
    free(val);
    h2o_evloop_run(f->loop, 0); /* the flush: a partial write, EPOLLOUT armed */
    /* commands added while EPOLLOUT is armed go out with the rest */
    for (int i = 0; i < N; i++) {
        assert_int_equal(cmd(f, &len[i], 0, "STRLEN", keys[i], NULL), 0);
        assert_int_equal(cmd(f, &tail[i], 0, "GETRANGE", keys[i], "-1", "-1", NULL), 0);
    }
    RUN_UNTIL(f, tail[N - 1].called, 30000);
    assert_int_equal(tail[N - 1].called, 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(set[i].called, 1);
        assert_string_equal(set[i].str, "OK");
        assert_int_equal(len[i].integer, SIZE);
        char want[2] = {(char)('a' + i), '\0'};
        assert_string_equal(tail[i].str, want);
    }
    result_t del = {0};
    const char *dargv[N + 1];
    dargv[0] = "DEL";
    for (int i = 0; i < N; i++)
        dargv[i + 1] = keys[i];
    assert_int_equal(sb_redis_commandargv(f->r, on_result, &del, 0, N + 1, dargv, NULL), 0);
    RUN_UNTIL(f, del.called, 2000);
    assert_int_equal(del.integer, N);
    assert_int_equal(f->nstates, 1);
    /* a burst's 8 MiB buffer is not kept once written */
    assert_true(sb_redis_output_capacity(f->r) <= 256 * 1024);
    fixture_free(f);
}

static void test_flush_pending_when_connection_lost(void **state)
{
    (void)state;
    fixture_t *f = fixture_connected(&embedded_addr, 2000);
    result_t id = {0}, res[3], after = {0};
    memset(res, 0, sizeof(res));
    const char *why = NULL;

    assert_int_equal(cmd(f, &id, 0, "CLIENT", "ID", NULL), 0);
    RUN_UNTIL(f, id.called, 2000);
    assert_int_equal(id.type, REDIS_REPLY_INTEGER);
    for (int i = 0; i < 3; i++)
        assert_int_equal(cmd(f, &res[i], 0, "PING", NULL), 0);
    /* the server drops the connection while the commands wait for the flush */
    redisContext *c = sb_redis_connect_sync(&embedded_addr, 1000, &why);
    assert_non_null(c);
    redisReply *k = redisCommand(c, "CLIENT KILL ID %lld", id.integer);
    assert_non_null(k);
    assert_int_equal(k->integer, 1);
    freeReplyObject(k);
    redisFree(c);
    RUN_UNTIL(f, res[2].called, 2000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(res[i].called, 1);
        assert_true(res[i].was_null);
        assert_string_equal(res[i].err, "disconnected");
    }
    /* the reconnect (its handshake is written by the flush once connected) */
    RUN_UNTIL(f, f->nstates >= 3, 3000);
    assert_int_equal(f->nstates, 3);
    assert_int_equal(f->states[1], 0);
    assert_int_equal(f->states[2], 1);
    assert_int_equal(cmd(f, &after, 0, "PING", NULL), 0);
    RUN_UNTIL(f, after.called, 2000);
    assert_string_equal(after.str, "PONG");
    fixture_free(f);
}

/* A fake server on a unix socket: answers each PING with +PONG. Driven from the test between loop runs. */
typedef struct fake {
    int lfd, cfd;
    char path[108];
    char dir[64];
} fake_t;

static void fake_start(fake_t *fk)
{
    struct sockaddr_un sa;
    snprintf(fk->dir, sizeof(fk->dir), "/tmp/sb-test-fake-XXXXXX");
    assert_non_null(mkdtemp(fk->dir));
    snprintf(fk->path, sizeof(fk->path), "%s/s.sock", fk->dir);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fk->path);
    fk->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(fk->lfd >= 0);
    assert_int_equal(bind(fk->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fk->lfd, 4), 0);
    fk->cfd = -1;
}

static void fake_serve(fake_t *fk)
{
    char buf[4096];
    ssize_t n;
    if (fk->cfd < 0)
        fk->cfd = accept4(fk->lfd, NULL, NULL, SOCK_NONBLOCK);
    if (fk->cfd < 0)
        return;
    while ((n = read(fk->cfd, buf, sizeof(buf) - 1)) > 0) {
        buf[n] = '\0';
        for (char *p = buf; (p = strstr(p, "PING\r\n")) != NULL; p += 6)
            assert_int_equal(write(fk->cfd, "+PONG\r\n", 7), 7);
    }
}

static void fake_stop(fake_t *fk)
{
    if (fk->cfd >= 0)
        close(fk->cfd);
    close(fk->lfd);
    unlink(fk->path);
    rmdir(fk->dir);
}

static void run_fake(fixture_t *f, fake_t *fk, uint64_t ms)
{
    uint64_t dl = sb_mono_ms() + ms;
    while (sb_mono_ms() < dl) {
        fake_serve(fk);
        h2o_evloop_run(f->loop, 5);
    }
}

static void test_flush_write_error(void **state)
{
    (void)state;
    fake_t fk;
    sb_redis_addr_t a;
    fake_start(&fk);
    memset(&a, 0, sizeof(a));
    a.is_unix = 1;
    snprintf(a.path, sizeof(a.path), "%s", fk.path);
    fixture_t *f = fixture_new(&a, 2000);
    uint64_t dl = sb_mono_ms() + 3000;
    while (!f->up && sb_mono_ms() < dl)
        run_fake(f, &fk, 10);
    assert_int_equal(f->up, 1);

    /* The server stops reading: the client's next write fails with EPIPE inside the flush (no EOF to read first,
     * so it is the flush that finds the broken connection). Every command fails and the adapter reconnects. */
    result_t res[3], after = {0};
    memset(res, 0, sizeof(res));
    assert_int_equal(shutdown(fk.cfd, SHUT_RD), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(cmd(f, &res[i], 0, "PING", NULL), 0);
    h2o_evloop_run(f->loop, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(res[i].called, 1);
        assert_true(res[i].was_null);
        assert_string_equal(res[i].err, "disconnected");
    }
    close(fk.cfd);
    fk.cfd = -1;
    dl = sb_mono_ms() + 3000;
    while (f->nstates < 3 && sb_mono_ms() < dl)
        run_fake(f, &fk, 10);
    assert_int_equal(f->nstates, 3);
    assert_int_equal(f->states[2], 1);
    assert_int_equal(cmd(f, &after, 0, "PING", NULL), 0);
    dl = sb_mono_ms() + 2000;
    while (!after.called && sb_mono_ms() < dl)
        run_fake(f, &fk, 5);
    assert_string_equal(after.str, "PONG");

    /* The same, and the first failed callback destroys the connection: the object goes away inside its own
     * flush timer, and the commands behind get "shutdown" once. */
    memset(res, 0, sizeof(res));
    res[0].destroy_from_cb = f;
    assert_int_equal(shutdown(fk.cfd, SHUT_RD), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(cmd(f, &res[i], 0, "PING", NULL), 0);
    h2o_evloop_run(f->loop, 0);
    assert_null(f->r);
    assert_int_equal(res[0].called, 1);
    assert_string_equal(res[0].err, "disconnected");
    for (int i = 1; i < 3; i++) {
        assert_int_equal(res[i].called, 1);
        assert_string_equal(res[i].err, "shutdown");
    }
    run_for(f, 50);
    for (int i = 0; i < 3; i++)
        assert_int_equal(res[i].called, 1);
    fixture_free(f);
    fake_stop(&fk);
}

static void test_never_connects(void **state)
{
    (void)state;
    sb_redis_addr_t a;
    memset(&a, 0, sizeof(a));
    a.is_unix = 1;
    snprintf(a.path, sizeof(a.path), "/nonexistent-sb-dir/redis.sock");
    fixture_t *f = fixture_new(&a, 500);
    result_t res = {0};

    assert_false(sb_redis_connected(f->r));
    assert_int_equal(cmd(f, &res, 0, "PING", NULL), SB_EAGAIN);
    run_for(f, 300);
    assert_int_equal(cmd(f, &res, 0, "PING", NULL), SB_EAGAIN);
    assert_int_equal(res.called, 0);
    assert_int_equal(f->nstates, 0);

    /* a TCP port nobody listens on: connect refused, same behaviour */
    fixture_t *g;
    memset(&a, 0, sizeof(a));
    snprintf(a.host, sizeof(a.host), "127.0.0.1");
    a.port = 1;
    g = fixture_new(&a, 500);
    run_for(g, 300);
    assert_false(sb_redis_connected(g->r));
    assert_int_equal(g->nstates, 0);
    fixture_free(g);
    fixture_free(f);
}

static void test_auth_and_select(void **state)
{
    (void)state;
    const char *why = NULL;
    redisContext *c = sb_redis_connect_sync(&embedded_addr, 1000, &why);
    assert_non_null(c);
    redisReply *reply = redisCommand(c, "ACL SETUSER sbuser on >s3cret ~* &* +@all");
    assert_non_null(reply);
    assert_int_equal(reply->type, REDIS_REPLY_STATUS);
    freeReplyObject(reply);
    redisFree(c);

    /* user + password, db 3 */
    sb_redis_addr_t a = embedded_addr;
    snprintf(a.user, sizeof(a.user), "sbuser");
    snprintf(a.pass, sizeof(a.pass), "s3cret");
    a.db = 3;
    fixture_t *f = fixture_connected(&a, 2000);
    result_t set = {0}, who = {0};
    assert_int_equal(cmd(f, &set, 0, "SET", "sb:test:db3", "yes", NULL), 0);
    assert_int_equal(cmd(f, &who, 0, "ACL", "WHOAMI", NULL), 0);
    RUN_UNTIL(f, who.called, 2000);
    assert_string_equal(set.str, "OK");
    assert_string_equal(who.str, "sbuser");
    fixture_free(f);

    /* the key is in db 3, seen through a sync connection selecting db 3 */
    c = sb_redis_connect_sync(&a, 1000, &why);
    assert_non_null(c);
    reply = redisCommand(c, "GET sb:test:db3");
    assert_string_equal(reply->str, "yes");
    freeReplyObject(reply);
    redisFree(c);
    c = sb_redis_connect_sync(&embedded_addr, 1000, &why);
    reply = redisCommand(c, "EXISTS sb:test:db3");
    assert_int_equal(reply->integer, 0); /* not in db 0 */
    freeReplyObject(reply);
    redisFree(c);

    /* a wrong password never reports connected and keeps retrying */
    snprintf(a.pass, sizeof(a.pass), "wrong");
    f = fixture_new(&a, 2000);
    run_for(f, 400);
    assert_false(sb_redis_connected(f->r));
    assert_int_equal(f->nstates, 0);
    fixture_free(f);
    why = NULL;
    assert_null(sb_redis_connect_sync(&a, 1000, &why));
    assert_string_equal(why, "redis AUTH failed");
}

static void test_connect_sync(void **state)
{
    (void)state;
    const char *why = NULL;
    redisContext *c = sb_redis_connect_sync(&embedded_addr, 1000, &why);
    assert_non_null(c);
    redisReply *reply = redisCommand(c, "PING");
    assert_string_equal(reply->str, "PONG");
    freeReplyObject(reply);
    /* the command timeout applies */
    uint64_t t0 = sb_mono_ms();
    reply = redisCommand(c, "BLPOP sb:test:never 3");
    assert_null(reply);
    assert_true(sb_mono_ms() - t0 < 2500);
    redisFree(c);

    sb_redis_addr_t bad;
    memset(&bad, 0, sizeof(bad));
    bad.is_unix = 1;
    snprintf(bad.path, sizeof(bad.path), "/nonexistent-sb-dir/redis.sock");
    why = NULL;
    assert_null(sb_redis_connect_sync(&bad, 1000, &why));
    assert_string_equal(why, "cannot connect to redis");

    bad = embedded_addr;
    bad.db = 100000; /* beyond "databases 16" */
    why = NULL;
    assert_null(sb_redis_connect_sync(&bad, 1000, &why));
    assert_string_equal(why, "redis SELECT failed");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    sb_log_init(getenv("SB_TEST_LOG") != NULL ? SB_LOG_DEBUG : SB_LOG_SILENT, 0);
    const struct CMUnitTest embedded[] = {
        cmocka_unit_test(test_embedded_not_found),
        cmocka_unit_test(test_embedded_start_stop),
    };
    const struct CMUnitTest client[] = {
        cmocka_unit_test(test_set_get),
        cmocka_unit_test(test_pipeline_in_order),
        cmocka_unit_test(test_error_reply),
        cmocka_unit_test(test_timeout_then_reconnect),
        cmocka_unit_test_teardown(test_reconnect_after_restart, private_teardown),
        cmocka_unit_test_teardown(test_tcp, private_teardown),
        cmocka_unit_test(test_destroy_with_pending),
        cmocka_unit_test(test_destroy_from_reply_callback),
        cmocka_unit_test(test_destroy_from_timeout_callback),
        cmocka_unit_test(test_flush_batches_one_write),
        cmocka_unit_test(test_flush_partial_writes),
        cmocka_unit_test(test_flush_pending_when_connection_lost),
        cmocka_unit_test(test_flush_write_error),
        cmocka_unit_test(test_never_connects),
        cmocka_unit_test(test_auth_and_select),
        cmocka_unit_test(test_connect_sync),
    };
    int failed = cmocka_run_group_tests_name("embedded redis", embedded, NULL, NULL);
    failed += cmocka_run_group_tests_name("redis client", client, group_setup, group_teardown);
    return failed;
}
