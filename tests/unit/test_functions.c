/*
 * test_functions.c — the Redis Functions library (lua/ scripts) and its loader,
 * against a real redis-server started by this test.
 *
 * The server comes from PATH, or from $SWITCHBOARD_TEST_REDIS_SERVER, and
 * listens only on a unix socket in a fresh temporary directory. Every test
 * starts from an empty database with the library freshly loaded and asserts
 * the exact keys and stream entries a Function leaves behind.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>

#include "switchboard/common.h"
#include "switchboard/functions.h"

#define TS "1700000000000"
#define TS2 "1700000000500"
#define MAXLEN "1000"

typedef struct server {
    pid_t pid;
    char dir[64];
    char sock[128];
    char log[128];
} server_t;

static server_t srv;
static redisContext *rc;

/* ---- server lifecycle ---------------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void stop_server(server_t *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    if (s->sock[0] != '\0')
        unlink(s->sock);
    if (s->log[0] != '\0')
        unlink(s->log);
    if (s->dir[0] != '\0')
        rmdir(s->dir);
    s->sock[0] = s->log[0] = s->dir[0] = '\0';
}

/* Starts redis-server with `extra` (NULL-terminated, may be NULL) appended to
 * the fixed arguments, waits until it answers PING and returns a connection. */
static redisContext *start_server(server_t *s, const char *const *extra)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "/tmp/sb-test-functions-XXXXXX");
    if (mkdtemp(s->dir) == NULL)
        fail_msg("mkdtemp: %s", strerror(errno));
    snprintf(s->sock, sizeof(s->sock), "%s/redis.sock", s->dir);
    /* The server's log goes to a file so it does not mix with cmocka's output. */
    snprintf(s->log, sizeof(s->log), "%s/redis.log", s->dir);

    const char *bin = getenv("SWITCHBOARD_TEST_REDIS_SERVER");
    if (bin == NULL || bin[0] == '\0')
        bin = "redis-server";
    const char *argv[32] = {bin,  "--port", "0",    "--unixsocket", s->sock, "--save", "", "--appendonly",
                            "no", "--dir",  s->dir, "--logfile",    s->log};
    size_t argc = 13;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && argc < SB_ARRAY_SIZE(argv) - 1; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;

    s->pid = fork();
    if (s->pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (s->pid == 0) {
        execvp(bin, (char *const *)argv);
        _exit(127);
    }

    struct timeval tv = {1, 0};
    for (int i = 0; i < 500; i++) { /* 500 x 10 ms = 5 s */
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            s->pid = 0;
            fail_msg("%s exited at start-up (see %s)", bin, s->log);
        }
        redisContext *c = redisConnectUnixWithTimeout(s->sock, tv);
        if (c != NULL && c->err == 0) {
            redisReply *r = redisCommand(c, "PING");
            int ok = r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
            if (r != NULL)
                freeReplyObject(r);
            if (ok) {
                redisSetTimeout(c, tv);
                return c;
            }
        }
        if (c != NULL)
            redisFree(c);
        sleep_ms(10);
    }
    fail_msg("%s did not answer PING within 5 s", bin);
    return NULL;
}

static int group_setup(void **state)
{
    (void)state;
    rc = start_server(&srv, NULL);
    return rc == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (rc != NULL)
        redisFree(rc);
    rc = NULL;
    stop_server(&srv);
    return 0;
}

/* ---- small Redis helpers -------------------------------------------------- */

static redisReply *cmd(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    if (r == NULL)
        fail_msg("Redis command failed: %s", rc->errstr);
    return r;
}

static void cmd_ok(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    if (r == NULL)
        fail_msg("Redis command failed: %s", rc->errstr);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("Redis error: %s", r->str);
    freeReplyObject(r);
}

static long long cmd_int(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    if (r == NULL)
        fail_msg("Redis command failed: %s", rc->errstr);
    if (r->type != REDIS_REPLY_INTEGER)
        fail_msg("expected an integer reply, got type %d (%s)", r->type, r->type == REDIS_REPLY_ERROR ? r->str : "");
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* FCALL fn with the given keys and args; returns the raw reply. */
static redisReply *fcall(const char *fn, size_t nkeys, const char *const *keys, size_t nargs, const char *const *args)
{
    const char *argv[64];
    char numkeys[16];
    size_t argc = 0;
    assert_true(3 + nkeys + nargs <= SB_ARRAY_SIZE(argv));
    snprintf(numkeys, sizeof(numkeys), "%zu", nkeys);
    argv[argc++] = "FCALL";
    argv[argc++] = fn;
    argv[argc++] = numkeys;
    for (size_t i = 0; i < nkeys; i++)
        argv[argc++] = keys[i];
    for (size_t i = 0; i < nargs; i++)
        argv[argc++] = args[i];
    redisReply *r = redisCommandArgv(rc, (int)argc, argv, NULL);
    if (r == NULL)
        fail_msg("FCALL %s failed: %s", fn, rc->errstr);
    return r;
}

static long long fcall_int(const char *fn, size_t nkeys, const char *const *keys, size_t nargs, const char *const *args)
{
    redisReply *r = fcall(fn, nkeys, keys, nargs, args);
    if (r->type != REDIS_REPLY_INTEGER)
        fail_msg("FCALL %s: expected an integer, got type %d (%s)", fn, r->type,
                 r->type == REDIS_REPLY_ERROR ? r->str : "");
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* Asserts that FCALL fails with an error starting with `prefix`. */
static void fcall_err(const char *fn, size_t nkeys, const char *const *keys, size_t nargs, const char *const *args,
                      const char *prefix)
{
    redisReply *r = fcall(fn, nkeys, keys, nargs, args);
    if (r->type != REDIS_REPLY_ERROR)
        fail_msg("FCALL %s: expected an error, got type %d", fn, r->type);
    if (strncmp(r->str, prefix, strlen(prefix)) != 0)
        fail_msg("FCALL %s: error \"%s\" does not start with \"%s\"", fn, r->str, prefix);
    freeReplyObject(r);
}

/* Key names: a ring of buffers so several can be used in one call. */
static const char *key(const char *fmt, ...)
{
    static char ring[16][160];
    static unsigned next;
    char *b = ring[next++ % SB_ARRAY_SIZE(ring)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof(ring[0]), fmt, ap);
    va_end(ap);
    return b;
}

/* ---- the Functions, called as the store module will call them ------------- */

#define NARGS(...) (sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *))
#define ARGS(...)                                                                                                      \
    (const char *const[])                                                                                              \
    {                                                                                                                  \
        __VA_ARGS__                                                                                                    \
    }

/* extra rooms: a NULL-terminated list, or NULL. */
static long long fn_connect(const char *p, const char *sid, const char *nsp, const char *uid, const char *node,
                            const char *auth, const char *const *rooms)
{
    const char *keys[5] = {key("%s{sock:%s}", p, sid), key("%s{sock:%s}:rooms", p, sid),
                           key("%s{user:%s}:sockets", p, uid), key("%s{node:%s}:sockets", p, node), key("%sevents", p)};
    const char *args[32] = {p, sid, nsp, uid, node, "websocket", TS, MAXLEN, auth, "", ""};
    size_t n = 11;
    for (size_t i = 0; rooms != NULL && rooms[i] != NULL; i++) {
        assert_true(n < SB_ARRAY_SIZE(args));
        args[n++] = rooms[i];
    }
    return fcall_int("sb_connect", 5, keys, n, args);
}

static long long fn_join_leave(const char *fn, const char *p, const char *sid, const char *room)
{
    const char *keys[2] = {key("%s{sock:%s}", p, sid), key("%s{sock:%s}:rooms", p, sid)};
    return fcall_int(fn, 2, keys, 3, ARGS(p, sid, room));
}

static long long fn_disconnect(const char *p, const char *sid, const char *reason)
{
    const char *keys[3] = {key("%s{sock:%s}", p, sid), key("%s{sock:%s}:rooms", p, sid), key("%sevents", p)};
    return fcall_int("sb_disconnect", 3, keys, 5, ARGS(p, sid, reason, TS2, MAXLEN));
}

static long long fn_purge(const char *p, const char *node, const char *reason, const char *max_count)
{
    const char *keys[1] = {key("%s{node:%s}:sockets", p, node)};
    return fcall_int("sb_node_sockets_purge", 1, keys, 6, ARGS(p, node, reason, TS2, MAXLEN, max_count));
}

/* ---- assertions on keys --------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* SMEMBERS key equals exactly the n given members (any order); n == 0 means
 * the key must not exist at all. */
static void assert_set_eq(const char *k, const char *const *want, size_t n)
{
    if (n == 0) {
        assert_int_equal(cmd_int("EXISTS %s", k), 0);
        return;
    }
    redisReply *r = cmd("SMEMBERS %s", k);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    if (r->elements != n)
        fail_msg("%s has %zu members, want %zu", k, r->elements, n);
    const char *got[32];
    const char *exp[32];
    assert_true(n <= SB_ARRAY_SIZE(got));
    for (size_t i = 0; i < n; i++) {
        got[i] = r->element[i]->str;
        exp[i] = want[i];
    }
    qsort(got, n, sizeof(got[0]), cmp_str);
    qsort(exp, n, sizeof(exp[0]), cmp_str);
    for (size_t i = 0; i < n; i++)
        if (strcmp(got[i], exp[i]) != 0)
            fail_msg("%s: member %s, want %s", k, got[i], exp[i]);
    freeReplyObject(r);
}
#define ASSERT_SET(k, ...) assert_set_eq((k), ARGS(__VA_ARGS__), NARGS(__VA_ARGS__))
#define ASSERT_NO_KEY(k) assert_set_eq((k), NULL, 0)

/* HGETALL key equals exactly the given field/value pairs. */
static void assert_hash_eq(const char *k, const char *const *want, size_t n)
{
    redisReply *r = cmd("HGETALL %s", k);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    if (r->elements != n)
        fail_msg("%s has %zu fields+values, want %zu", k, r->elements, n);
    for (size_t i = 0; i < n; i += 2) {
        size_t j = 0;
        while (j < r->elements && strcmp(r->element[j]->str, want[i]) != 0)
            j += 2;
        if (j >= r->elements)
            fail_msg("%s: field %s missing", k, want[i]);
        if (strcmp(r->element[j + 1]->str, want[i + 1]) != 0)
            fail_msg("%s: %s = %s, want %s", k, want[i], r->element[j + 1]->str, want[i + 1]);
    }
    freeReplyObject(r);
}
#define ASSERT_HASH(k, ...) assert_hash_eq((k), ARGS(__VA_ARGS__), NARGS(__VA_ARGS__))

/* XRANGE stream - + has an entry at index idx whose fields, in order, are exactly these. */
static void assert_entry_eq(const char *stream, size_t idx, const char *const *want, size_t n)
{
    redisReply *r = cmd("XRANGE %s - +", stream);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    if (idx >= r->elements)
        fail_msg("%s has %zu entries, want index %zu", stream, r->elements, idx);
    redisReply *fields = r->element[idx]->element[1];
    if (fields->elements != n)
        fail_msg("%s[%zu] has %zu fields+values, want %zu", stream, idx, fields->elements, n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(fields->element[i]->str, want[i]) != 0)
            fail_msg("%s[%zu] item %zu = \"%s\", want \"%s\"", stream, idx, i, fields->element[i]->str, want[i]);
    freeReplyObject(r);
}
#define ASSERT_ENTRY(s, idx, ...) assert_entry_eq((s), (idx), ARGS(__VA_ARGS__), NARGS(__VA_ARGS__))

/* ---- per-test setup: empty database, library loaded ------------------------ */

static int test_setup(void **state)
{
    (void)state;
    cmd_ok("FLUSHALL");
    cmd_ok("FUNCTION FLUSH");
    const char *why = "unset";
    int err = sb_functions_load(rc, &why);
    if (err != 0)
        fail_msg("sb_functions_load: %d %s", err, why != NULL ? why : "(null)");
    return 0;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_generated_source(void **state)
{
    (void)state;
    assert_int_equal(strlen(sb_functions_version), 40);
    for (const char *p = sb_functions_version; *p != '\0'; p++)
        assert_non_null(strchr("0123456789abcdef", *p));
    const char *shebang = "#!lua name=switchboard\n";
    assert_int_equal(strncmp(sb_functions_source, shebang, strlen(shebang)), 0);
    char tail[160];
    snprintf(tail, sizeof(tail), "callback = function() return '%s' end, flags = {'no-writes'}}\n",
             sb_functions_version);
    size_t len = strlen(sb_functions_source);
    assert_true(len > strlen(tail));
    assert_string_equal(sb_functions_source + len - strlen(tail), tail);
}

static void test_load_and_check(void **state)
{
    (void)state;
    const char *why = "unset";
    assert_int_equal(sb_functions_load(rc, &why), 0);
    assert_null(why);
    why = "unset";
    assert_int_equal(sb_functions_check(rc, &why), 0);
    assert_null(why);
    redisReply *r = cmd("FCALL sb_version 0");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, sb_functions_version);
    freeReplyObject(r);
    /* sb_version is read-only, so it also runs through FCALL_RO (replicas). */
    r = cmd("FCALL_RO sb_version 0");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, sb_functions_version);
    freeReplyObject(r);
    /* Loading again (REPLACE) is fine. */
    assert_int_equal(sb_functions_load(rc, NULL), 0);
    assert_int_equal(sb_functions_check(NULL, &why), SB_EINVAL);
    assert_int_equal(sb_functions_load(NULL, &why), SB_EINVAL);
}

static void test_version_check(void **state)
{
    (void)state;
    const char *other = "#!lua name=switchboard\n"
                        "redis.register_function('sb_version', function() return 'other' end)\n";
    redisReply *r = cmd("FUNCTION LOAD REPLACE %s", other);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "switchboard");
    freeReplyObject(r);

    const char *why = NULL;
    assert_int_equal(sb_functions_check(rc, &why), SB_EINVAL);
    assert_non_null(why);
    assert_non_null(strstr(why, "version other"));
    assert_non_null(strstr(why, sb_functions_version));

    cmd_ok("FUNCTION FLUSH");
    why = NULL;
    assert_int_equal(sb_functions_check(rc, &why), SB_ENOTFOUND);
    assert_non_null(why);

    /* Loading replaces whatever was there and passes the check. */
    assert_int_equal(sb_functions_load(rc, &why), 0);
    assert_int_equal(sb_functions_check(rc, &why), 0);
}

/* sb_connect with recovery on: pid secret and offset stored. */
static long long fn_connect_pid(const char *sid, const char *uid, const char *node, const char *pid, const char *offset)
{
    const char *keys[5] = {key("sb:{sock:%s}", sid), key("sb:{sock:%s}:rooms", sid), key("sb:{user:%s}:sockets", uid),
                           key("sb:{node:%s}:sockets", node), "sb:events"};
    return fcall_int("sb_connect", 5, keys, 12,
                     ARGS("sb:", sid, "/", uid, node, "websocket", TS, MAXLEN, "{}", pid, offset, "lobby"));
}

static long long fn_disconnect_keep(const char *sid, const char *reason, const char *keep_ms, const char *gen)
{
    const char *keys[3] = {key("sb:{sock:%s}", sid), key("sb:{sock:%s}:rooms", sid), "sb:events"};
    return fcall_int("sb_disconnect", 3, keys, 7, ARGS("sb:", sid, reason, TS2, MAXLEN, keep_ms, gen));
}

static redisReply *fn_recover(const char *sid, const char *pid, const char *uid, const char *node, const char *offset)
{
    const char *keys[4] = {key("sb:{sock:%s}", sid), key("sb:{sock:%s}:rooms", sid), "sb:bus", "sb:events"};
    return fcall("sb_recover", 4, keys, 11,
                 ARGS("sb:", sid, pid, "/", uid, node, "polling", TS2, MAXLEN, offset, "{}"));
}

static void assert_recover_refused(const char *sid, const char *pid, const char *uid, const char *offset,
                                   const char *why)
{
    redisReply *r = fn_recover(sid, pid, uid, "n2", offset);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    assert_int_equal(r->element[0]->integer, 0);
    assert_string_equal(r->element[1]->str, why);
    freeReplyObject(r);
}

static void test_recovery(void **state)
{
    (void)state;
    cmd_ok("XADD sb:bus 1-1 op emit msg {}");
    assert_int_equal(fn_connect_pid("s1", "42", "n1", "secret1", "1-1"), 1);
    ASSERT_HASH("sb:{sock:s1}", "id", "s1", "nsp", "/", "user", "42", "node", "n1", "transport", "websocket",
                "connected_at", TS, "gen", "0", "pid", "secret1", "offset", "1-1");

    /* A lost connection keeps the socket's own state for the window; presence forgets it. */
    assert_int_equal(fn_disconnect_keep("s1", "transport close", "60000", "0"), 1);
    assert_int_equal(cmd_int("HEXISTS sb:{sock:s1} state"), 1);
    assert_true(cmd_int("PTTL sb:{sock:s1}") > 0);
    assert_true(cmd_int("PTTL sb:{sock:s1}:rooms") > 0);
    ASSERT_SET("sb:{sock:s1}:rooms", "user:42", "lobby");
    ASSERT_NO_KEY("sb:{room:/:lobby}");
    ASSERT_NO_KEY("sb:{user:42}:sockets");
    ASSERT_NO_KEY("sb:{node:n1}:sockets");
    ASSERT_ENTRY("sb:events", 1, "type", "disconnect", "namespace", "/", "socket", "s1", "user", "42", "event", "",
                 "args", "[]", "ack_id", "", "node", "n1", "ts", TS2, "reason", "transport close");
    /* A second disconnect, and joins, write nothing while it is away. */
    assert_int_equal(fn_disconnect_keep("s1", "transport close", "60000", "0"), 0);
    assert_int_equal(fn_join_leave("sb_join", "sb:", "s1", "other"), -1);
    assert_int_equal(cmd_int("XLEN sb:events"), 2);

    assert_recover_refused("s1", "wrong", "", "", "mismatch");
    assert_recover_refused("s1", "secret1", "43", "", "mismatch");
    assert_recover_refused("s9", "secret1", "", "", "unknown");
    assert_recover_refused("s1", "secret1", "", "x-1", "offset");
    assert_recover_refused("s1", "secret1", "", "0-5", "trimmed"); /* an offset that is not (any longer) in the bus */
    assert_int_equal(cmd_int("XLEN sb:events"), 2);

    /* Recovered on another node: memberships back, new gen, the stored offset when the client brings none. */
    redisReply *r = fn_recover("s1", "secret1", "42", "n2", "");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 6);
    assert_int_equal(r->element[0]->integer, 1);
    assert_string_equal(r->element[1]->str, "42");
    assert_string_equal(r->element[2]->str, "1-1");
    assert_string_equal(r->element[3]->str, "1");
    freeReplyObject(r);
    assert_int_equal(cmd_int("HEXISTS sb:{sock:s1} state"), 0);
    assert_int_equal(cmd_int("PTTL sb:{sock:s1}"), -1);
    assert_int_equal(cmd_int("PTTL sb:{sock:s1}:rooms"), -1);
    ASSERT_SET("sb:{room:/:lobby}", "s1");
    ASSERT_SET("sb:{user:42}:sockets", "s1");
    ASSERT_SET("sb:{node:n2}:sockets", "s1");
    ASSERT_ENTRY("sb:events", 2, "type", "connect", "namespace", "/", "socket", "s1", "user", "42", "event", "", "args",
                 "[]", "ack_id", "", "node", "n2", "ts", TS2, "auth", "{}", "recovered", "true");

    /* The old node's copy (gen 0) is stale: its disconnect writes nothing. */
    assert_int_equal(fn_disconnect_keep("s1", "ping timeout", "60000", "0"), 0);
    ASSERT_SET("sb:{room:/:lobby}", "s1");

    /* Taken over while still marked connected (its node died, not reaped yet): the old books are closed first. */
    r = fn_recover("s1", "secret1", "", "n3", "1-1");
    assert_int_equal(r->element[0]->integer, 1);
    assert_string_equal(r->element[3]->str, "2");
    freeReplyObject(r);
    ASSERT_NO_KEY("sb:{node:n2}:sockets");
    ASSERT_SET("sb:{node:n3}:sockets", "s1");
    ASSERT_ENTRY("sb:events", 3, "type", "disconnect", "namespace", "/", "socket", "s1", "user", "42", "event", "",
                 "args", "[]", "ack_id", "", "node", "n2", "ts", TS2, "reason", "transport close");
    ASSERT_ENTRY("sb:events", 4, "type", "connect", "namespace", "/", "socket", "s1", "user", "42", "event", "", "args",
                 "[]", "ack_id", "", "node", "n3", "ts", TS2, "auth", "{}", "recovered", "true");

    /* A disconnect without keep_ms forgets everything. */
    assert_int_equal(fn_disconnect_keep("s1", "client namespace disconnect", "0", "2"), 1);
    ASSERT_NO_KEY("sb:{sock:s1}:rooms");
    assert_int_equal(cmd_int("EXISTS sb:{sock:s1}"), 0);

    /* An empty bus that never lost an entry recovers from 0-0; one that was trimmed does not. */
    cmd_ok("DEL sb:bus");
    assert_int_equal(fn_connect_pid("s2", "7", "n1", "secret2", "0-0"), 1);
    assert_int_equal(fn_disconnect_keep("s2", "transport error", "60000", "0"), 1);
    cmd_ok("XADD sb:bus 5-1 op emit msg {}");
    cmd_ok("XADD sb:bus 5-2 op emit msg {}");
    cmd_ok("XTRIM sb:bus MAXLEN 1");
    assert_recover_refused("s2", "secret2", "7", "", "trimmed");
    r = fn_recover("s2", "secret2", "7", "n1", "5-2");
    assert_int_equal(r->element[0]->integer, 1);
    freeReplyObject(r);

    /* The reaper keeps a dead node's sockets for recovery too. */
    assert_int_equal(fn_connect_pid("s3", "8", "n4", "secret3", "5-2"), 1);
    const char *pkeys[1] = {"sb:{node:n4}:sockets"};
    assert_int_equal(fcall_int("sb_node_sockets_purge", 1, pkeys, 7,
                               ARGS("sb:", "n4", "node lost", TS2, MAXLEN, "100", "60000")),
                     0);
    assert_int_equal(cmd_int("HEXISTS sb:{sock:s3} state"), 1);
    ASSERT_SET("sb:{room:/:lobby}", "s2");
    ASSERT_NO_KEY("sb:{user:8}:sockets");
}

static void test_connect(void **state)
{
    (void)state;
    assert_int_equal(fn_connect("sb:", "s1", "/chat", "42", "n1", "{\"a\":1}", ARGS("lobby", "news", NULL)), 1);

    ASSERT_HASH("sb:{sock:s1}", "id", "s1", "nsp", "/chat", "user", "42", "node", "n1", "transport", "websocket",
                "connected_at", TS, "gen", "0");
    ASSERT_SET("sb:{sock:s1}:rooms", "user:42", "lobby", "news");
    ASSERT_SET("sb:{room:/chat:user:42}", "s1");
    ASSERT_SET("sb:{room:/chat:lobby}", "s1");
    ASSERT_SET("sb:{room:/chat:news}", "s1");
    ASSERT_SET("sb:{ns:/chat}:rooms", "user:42", "lobby", "news");
    ASSERT_SET("sb:{user:42}:sockets", "s1");
    ASSERT_SET("sb:{node:n1}:sockets", "s1");
    /* The own-id room is implicit: no key for it. */
    ASSERT_NO_KEY("sb:{room:/chat:s1}");
    assert_int_equal(cmd_int("XLEN sb:events"), 1);
    ASSERT_ENTRY("sb:events", 0, "type", "connect", "namespace", "/chat", "socket", "s1", "user", "42", "event", "",
                 "args", "[]", "ack_id", "", "node", "n1", "ts", TS, "auth", "{\"a\":1}");
    /* hash, rooms, 3 room sets, ns rooms, user, node, events */
    assert_int_equal(cmd_int("DBSIZE"), 9);

    /* A retry: nothing changes, no second connect entry. */
    assert_int_equal(fn_connect("sb:", "s1", "/chat", "42", "n1", "{\"a\":1}", ARGS("lobby", "news", NULL)), 0);
    assert_int_equal(cmd_int("XLEN sb:events"), 1);
    assert_int_equal(cmd_int("DBSIZE"), 9);
    ASSERT_SET("sb:{sock:s1}:rooms", "user:42", "lobby", "news");

    /* A second socket of the same user, another namespace and node, no extra
     * rooms, empty auth (stored as {}). */
    assert_int_equal(fn_connect("sb:", "s2", "/", "42", "n2", "", NULL), 1);
    ASSERT_SET("sb:{sock:s2}:rooms", "user:42");
    ASSERT_SET("sb:{room:/:user:42}", "s2");
    ASSERT_SET("sb:{room:/chat:user:42}", "s1");
    ASSERT_SET("sb:{ns:/}:rooms", "user:42");
    ASSERT_SET("sb:{user:42}:sockets", "s1", "s2");
    ASSERT_SET("sb:{node:n2}:sockets", "s2");
    ASSERT_ENTRY("sb:events", 1, "type", "connect", "namespace", "/", "socket", "s2", "user", "42", "event", "", "args",
                 "[]", "ack_id", "", "node", "n2", "ts", TS, "auth", "{}");
}

/* More rooms than one SADD chunk takes (512), with a duplicate and the user's own room among them: every set holds
 * each room once. */
static void test_connect_many_rooms(void **state)
{
    (void)state;
    enum { NROOMS = 1100, NARGS_ = 3 + 5 + 11 + NROOMS };
    static char names[NROOMS][16];
    const char **argv = calloc(NARGS_, sizeof(*argv));
    assert_non_null(argv);
    const char *head[] = {"FCALL", "sb_connect", "5"};
    const char *keys[] = {"sb:{sock:m1}", "sb:{sock:m1}:rooms", "sb:{user:7}:sockets", "sb:{node:n1}:sockets",
                          "sb:events"};
    const char *args[] = {"sb:", "m1", "/", "7", "n1", "websocket", TS, MAXLEN, "{}", "", ""};
    size_t argc = 0;
    for (size_t i = 0; i < SB_ARRAY_SIZE(head); i++)
        argv[argc++] = head[i];
    for (size_t i = 0; i < SB_ARRAY_SIZE(keys); i++)
        argv[argc++] = keys[i];
    for (size_t i = 0; i < SB_ARRAY_SIZE(args); i++)
        argv[argc++] = args[i];
    for (int i = 0; i < NROOMS - 2; i++) {
        snprintf(names[i], sizeof(names[i]), "r%d", i);
        argv[argc++] = names[i];
    }
    argv[argc++] = "r0";     /* a duplicate */
    argv[argc++] = "user:7"; /* the room every socket of the user is in anyway */
    assert_int_equal(argc, NARGS_);
    redisReply *r = redisCommandArgv(rc, (int)argc, argv, NULL);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    free(argv);
    assert_int_equal(cmd_int("SCARD sb:{sock:m1}:rooms"), NROOMS - 1);
    assert_int_equal(cmd_int("SCARD sb:{ns:/}:rooms"), NROOMS - 1);
    assert_int_equal(cmd_int("SISMEMBER sb:{sock:m1}:rooms r1097"), 1);
    assert_int_equal(cmd_int("SISMEMBER sb:{ns:/}:rooms r513"), 1);
    ASSERT_SET("sb:{room:/:r1097}", "m1");
    ASSERT_SET("sb:{room:/:user:7}", "m1");
    /* hash, rooms, NROOMS - 1 room sets, ns rooms, user, node, events */
    assert_int_equal(cmd_int("DBSIZE"), 6 + NROOMS - 1);
    assert_int_equal(fn_disconnect("sb:", "m1", "bye"), 1);
    assert_int_equal(cmd_int("DBSIZE"), 1);
}

/* sb_inbox_read: a user without an inbox gets the empty answer and no key is made; with entries, those of the
 * namespace come with the last scanned id. */
static void test_inbox_read(void **state)
{
    (void)state;
    const char *keys[1] = {"sb:{user:9}:inbox"};
    redisReply *r = fcall("sb_inbox_read", 1, keys, 6, ARGS("sb:", "9", "/", "0-0", "10", "60000"));
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 3);
    assert_int_equal(r->element[0]->integer, 0);
    assert_string_equal(r->element[1]->str, "");
    assert_int_equal(r->element[2]->integer, 0);
    freeReplyObject(r);
    assert_int_equal(cmd_int("DBSIZE"), 0);
    /* the checks still run on that short path */
    fcall_err("sb_inbox_read", 1, keys, 6, ARGS("sb:", "9", "/", "x", "10", "60000"), "ERR sb_inbox_read: ARGV[4]");
    fcall_err("sb_inbox_read", 1, ARGS("sb:{user:8}:inbox"), 6, ARGS("sb:", "9", "/", "0-0", "10", "60000"),
              "ERR sb_inbox_read: KEYS[1] must be sb:{user:9}:inbox");

    redisReply *a = cmd("XADD sb:{user:9}:inbox * nsp / event e1 args [1] ts 1");
    redisReply *b = cmd("XADD sb:{user:9}:inbox * nsp /chat event e2 args [2] ts 1");
    r = fcall("sb_inbox_read", 1, keys, 6, ARGS("sb:", "9", "/", "0-0", "10", "60000"));
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 6);
    assert_int_equal(r->element[0]->integer, 0);
    assert_string_equal(r->element[1]->str, b->str); /* scanned up to the /chat entry */
    assert_int_equal(r->element[2]->integer, 0);
    assert_string_equal(r->element[3]->str, a->str);
    assert_string_equal(r->element[4]->str, "e1");
    assert_string_equal(r->element[5]->str, "[1]");
    freeReplyObject(r);
    freeReplyObject(a);
    freeReplyObject(b);
}

static void test_connect_other_prefix(void **state)
{
    (void)state;
    assert_int_equal(fn_connect("app1:", "x", "/", "u", "n", "{}", ARGS("r", NULL)), 1);
    ASSERT_SET("app1:{sock:x}:rooms", "user:u", "r");
    ASSERT_SET("app1:{room:/:r}", "x");
    assert_int_equal(cmd_int("XLEN app1:events"), 1);
    assert_int_equal(cmd_int("EXISTS sb:events"), 0);
    assert_int_equal(fn_disconnect("app1:", "x", "bye"), 1);
    /* Only the stream is left. */
    assert_int_equal(cmd_int("DBSIZE"), 1);
}

static void test_bad_input_writes_nothing(void **state)
{
    (void)state;
    const char *keys[5] = {"sb:{sock:s1}", "sb:{sock:s1}:rooms", "sb:{user:42}:sockets", "sb:{node:n1}:sockets",
                           "sb:events"};
    /* Wrong KEYS[3] (user 43). */
    const char *bad_keys[5] = {"sb:{sock:s1}", "sb:{sock:s1}:rooms", "sb:{user:43}:sockets", "sb:{node:n1}:sockets",
                               "sb:events"};
    fcall_err("sb_connect", 5, bad_keys, 11, ARGS("sb:", "s1", "/", "42", "n1", "websocket", TS, MAXLEN, "{}", "", ""),
              "ERR sb_connect: KEYS[3] must be sb:{user:42}:sockets");
    /* A ':' in the namespace would make room keys ambiguous. */
    fcall_err("sb_connect", 5, keys, 11, ARGS("sb:", "s1", "/a:b", "42", "n1", "websocket", TS, MAXLEN, "{}", "", ""),
              "ERR sb_connect: ARGV[3] (namespace)");
    fcall_err("sb_connect", 5, keys, 11, ARGS("sb:", "s1", "/", "42", "n1", "websocket", "12x", MAXLEN, "{}", "", ""),
              "ERR sb_connect: ARGV[7] (ts_ms)");
    fcall_err("sb_connect", 5, keys, 11, ARGS("sb:", "s1", "/", "42", "n1", "websocket", TS, "0", "{}", "", ""),
              "ERR sb_connect: ARGV[8] (events_maxlen)");
    fcall_err("sb_connect", 5, keys, 12, ARGS("sb:", "s1", "/", "42", "n1", "websocket", TS, MAXLEN, "{}", "", "", ""),
              "ERR sb_connect: ARGV[12] (room)");
    fcall_err("sb_connect", 5, keys, 10, ARGS("sb:", "s1", "/", "42", "n1", "websocket", TS, MAXLEN, "{}", ""),
              "ERR sb_connect: ARGV[10] (pid) and ARGV[11] (offset) are required");
    fcall_err("sb_connect", 5, keys, 11, ARGS("sb:", "s1", "/", "42", "n1", "websocket", TS, MAXLEN, "{}", "x", "1"),
              "ERR sb_connect: ARGV[11] (offset) must be a stream id");
    fcall_err("sb_connect", 5, keys, 8, ARGS("sb:", "s1", "/", "42", "n1", "websocket", TS, MAXLEN),
              "ERR sb_connect: ARGV[9] (auth_json)");
    fcall_err("sb_join", 2, keys, 3, ARGS("sb:", "s1", ""), "ERR sb_join: ARGV[3] (room)");
    fcall_err("sb_leave", 2, ARGS("sb:{sock:s2}", "sb:{sock:s2}:rooms"), 3, ARGS("sb:", "s1", "r"),
              "ERR sb_leave: KEYS[1] must be sb:{sock:s1}");
    fcall_err("sb_disconnect", 3, ARGS("sb:{sock:s1}", "sb:{sock:s1}:rooms", "sb:events"), 5,
              ARGS("sb:", "s1", "", TS, MAXLEN), "ERR sb_disconnect: ARGV[3] (reason)");
    fcall_err("sb_node_sockets_purge", 1, ARGS("sb:{node:n1}:sockets"), 6, ARGS("sb:", "n1", "r", TS, MAXLEN, "0"),
              "ERR sb_node_sockets_purge: ARGV[6] (max_count)");
    fcall_err("sb_node_sockets_purge", 1, ARGS("sb:{node:n1}:sockets"), 6, ARGS("sb:", "n1", "r", TS, MAXLEN, "10001"),
              "ERR sb_node_sockets_purge: ARGV[6] (max_count)");
    assert_int_equal(cmd_int("DBSIZE"), 0);
}

static void test_join_leave(void **state)
{
    (void)state;
    assert_int_equal(fn_connect("sb:", "s1", "/", "42", "n1", "{}", NULL), 1);
    assert_int_equal(fn_connect("sb:", "s2", "/", "7", "n1", "{}", NULL), 1);

    assert_int_equal(fn_join_leave("sb_join", "sb:", "s1", "lobby"), 1);
    assert_int_equal(fn_join_leave("sb_join", "sb:", "s1", "lobby"), 0);
    assert_int_equal(fn_join_leave("sb_join", "sb:", "s2", "lobby"), 1);
    ASSERT_SET("sb:{sock:s1}:rooms", "user:42", "lobby");
    ASSERT_SET("sb:{room:/:lobby}", "s1", "s2");
    ASSERT_SET("sb:{ns:/}:rooms", "user:42", "user:7", "lobby");

    /* Unknown socket: -1 and no key appears. */
    long long before = cmd_int("DBSIZE");
    assert_int_equal(fn_join_leave("sb_join", "sb:", "ghost", "lobby"), -1);
    assert_int_equal(fn_join_leave("sb_join", "sb:", "ghost", "newroom"), -1);
    assert_int_equal(fn_join_leave("sb_leave", "sb:", "ghost", "lobby"), -1);
    assert_int_equal(cmd_int("DBSIZE"), before);
    ASSERT_NO_KEY("sb:{sock:ghost}:rooms");
    ASSERT_NO_KEY("sb:{room:/:newroom}");
    ASSERT_SET("sb:{room:/:lobby}", "s1", "s2");

    /* One member leaves: the room stays listed. */
    assert_int_equal(fn_join_leave("sb_leave", "sb:", "s1", "lobby"), 1);
    assert_int_equal(fn_join_leave("sb_leave", "sb:", "s1", "lobby"), 0);
    assert_int_equal(fn_join_leave("sb_leave", "sb:", "s1", "never-joined"), 0);
    ASSERT_SET("sb:{sock:s1}:rooms", "user:42");
    ASSERT_SET("sb:{room:/:lobby}", "s2");
    ASSERT_SET("sb:{ns:/}:rooms", "user:42", "user:7", "lobby");
    ASSERT_NO_KEY("sb:{room:/:never-joined}");

    /* The last member leaves: the room is gone from the namespace. */
    assert_int_equal(fn_join_leave("sb_leave", "sb:", "s2", "lobby"), 1);
    ASSERT_NO_KEY("sb:{room:/:lobby}");
    ASSERT_SET("sb:{ns:/}:rooms", "user:42", "user:7");

    /* Leaving the user room is allowed. */
    assert_int_equal(fn_join_leave("sb_leave", "sb:", "s2", "user:7"), 1);
    ASSERT_NO_KEY("sb:{sock:s2}:rooms");
    ASSERT_NO_KEY("sb:{room:/:user:7}");
    ASSERT_SET("sb:{ns:/}:rooms", "user:42");
    /* The socket itself is still there. */
    ASSERT_HASH("sb:{sock:s2}", "id", "s2", "nsp", "/", "user", "7", "node", "n1", "transport", "websocket",
                "connected_at", TS, "gen", "0");
    /* Rooms may contain ':' (only namespaces may not). */
    assert_int_equal(fn_join_leave("sb_join", "sb:", "s2", "a:b"), 1);
    ASSERT_SET("sb:{room:/:a:b}", "s2");

    /* No join or leave writes a stream entry. */
    assert_int_equal(cmd_int("XLEN sb:events"), 2);
}

static void test_disconnect(void **state)
{
    (void)state;
    assert_int_equal(fn_connect("sb:", "s1", "/", "42", "n1", "{}", ARGS("lobby", NULL)), 1);
    assert_int_equal(fn_connect("sb:", "s2", "/", "42", "n2", "{}", ARGS("lobby", "solo", NULL)), 1);

    assert_int_equal(fn_disconnect("sb:", "s2", "transport close"), 1);
    ASSERT_NO_KEY("sb:{sock:s2}");
    ASSERT_NO_KEY("sb:{sock:s2}:rooms");
    ASSERT_NO_KEY("sb:{room:/:solo}");
    ASSERT_NO_KEY("sb:{node:n2}:sockets");
    ASSERT_SET("sb:{room:/:lobby}", "s1");
    ASSERT_SET("sb:{room:/:user:42}", "s1");
    ASSERT_SET("sb:{ns:/}:rooms", "user:42", "lobby");
    ASSERT_SET("sb:{user:42}:sockets", "s1");
    ASSERT_SET("sb:{node:n1}:sockets", "s1");
    assert_int_equal(cmd_int("XLEN sb:events"), 3);
    ASSERT_ENTRY("sb:events", 2, "type", "disconnect", "namespace", "/", "socket", "s2", "user", "42", "event", "",
                 "args", "[]", "ack_id", "", "node", "n2", "ts", TS2, "reason", "transport close");

    /* Again, and an unknown socket: 0, nothing written. */
    long long before = cmd_int("DBSIZE");
    assert_int_equal(fn_disconnect("sb:", "s2", "transport close"), 0);
    assert_int_equal(fn_disconnect("sb:", "nobody", "transport close"), 0);
    assert_int_equal(cmd_int("XLEN sb:events"), 3);
    assert_int_equal(cmd_int("DBSIZE"), before);

    /* The last socket: everything but the stream goes. */
    assert_int_equal(fn_disconnect("sb:", "s1", "ping timeout"), 1);
    assert_int_equal(cmd_int("DBSIZE"), 1);
    ASSERT_ENTRY("sb:events", 3, "type", "disconnect", "namespace", "/", "socket", "s1", "user", "42", "event", "",
                 "args", "[]", "ack_id", "", "node", "n1", "ts", TS2, "reason", "ping timeout");
}

static void test_node_sockets_purge(void **state)
{
    (void)state;
    assert_int_equal(fn_connect("sb:", "a", "/", "1", "n1", "{}", ARGS("r", NULL)), 1);
    assert_int_equal(fn_connect("sb:", "b", "/", "2", "n1", "{}", ARGS("r", NULL)), 1);
    assert_int_equal(fn_connect("sb:", "c", "/chat", "1", "n1", "{}", NULL), 1);
    assert_int_equal(fn_connect("sb:", "d", "/", "4", "n2", "{}", ARGS("r", NULL)), 1);
    /* A stale member (no hash, orphaned room list) and one whose id now lives
     * on another node: neither may produce a disconnect entry. */
    cmd_ok("SADD sb:{node:n1}:sockets ghost d");
    cmd_ok("SADD sb:{sock:ghost}:rooms lobby");

    long long left = fn_purge("sb:", "n1", "server shutting down", "2");
    assert_int_equal(left, 3);
    long long rounds = 1;
    while (left > 0 && rounds < 10) {
        long long next = fn_purge("sb:", "n1", "server shutting down", "2");
        assert_true(next < left);
        left = next;
        rounds++;
    }
    assert_int_equal(left, 0);
    assert_int_equal(fn_purge("sb:", "n1", "server shutting down", "2"), 0);

    ASSERT_NO_KEY("sb:{node:n1}:sockets");
    ASSERT_NO_KEY("sb:{sock:ghost}:rooms");
    ASSERT_NO_KEY("sb:{sock:a}");
    ASSERT_NO_KEY("sb:{sock:b}");
    ASSERT_NO_KEY("sb:{sock:c}");
    ASSERT_NO_KEY("sb:{sock:c}:rooms");
    ASSERT_NO_KEY("sb:{user:1}:sockets");
    ASSERT_NO_KEY("sb:{ns:/chat}:rooms");
    ASSERT_SET("sb:{room:/:r}", "d");
    ASSERT_SET("sb:{ns:/}:rooms", "user:4", "r");
    ASSERT_SET("sb:{node:n2}:sockets", "d");
    ASSERT_HASH("sb:{sock:d}", "id", "d", "nsp", "/", "user", "4", "node", "n2", "transport", "websocket",
                "connected_at", TS, "gen", "0");

    /* 4 connects + exactly one disconnect for each of a, b, c. */
    redisReply *r = cmd("XRANGE sb:events - +");
    assert_int_equal(r->elements, 7);
    int seen[3] = {0, 0, 0};
    for (size_t i = 4; i < 7; i++) {
        redisReply *f = r->element[i]->element[1];
        assert_int_equal(f->elements, 20);
        assert_string_equal(f->element[1]->str, "disconnect");
        assert_string_equal(f->element[15]->str, "n1");
        assert_string_equal(f->element[18]->str, "reason");
        assert_string_equal(f->element[19]->str, "server shutting down");
        const char *sid = f->element[5]->str;
        assert_int_equal(strlen(sid), 1);
        assert_in_range(sid[0], 'a', 'c');
        seen[sid[0] - 'a']++;
    }
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 1);
    assert_int_equal(seen[2], 1);
    freeReplyObject(r);
}

/* sb_node_beat: a node without a beat for 3 heartbeats is dead; after a gap in which nobody beat (Redis was down),
 * nobody is declared dead until the live ones had time to beat again. */
static size_t beat(const char *node, const char *now)
{
    const char *keys[] = {key("sb:{node:%s}", node), "sb:nodes"};
    const char *args[] = {"sb:", node, now, "3000"};
    redisReply *r = fcall("sb_node_beat", 2, keys, SB_ARRAY_SIZE(args), args);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    size_t n = r->elements;
    freeReplyObject(r);
    return n;
}

static void test_node_beat_gap(void **state)
{
    (void)state;
    assert_int_equal(beat("a", "100000"), 0);
    assert_int_equal(beat("b", "100000"), 0);
    assert_int_equal(beat("a", "102000"), 0);
    assert_int_equal(beat("a", "103500"), 1); /* b: last beat 3.5 s ago */
    cmd_ok("ZREM sb:nodes b");
    assert_int_equal(beat("b", "103600"), 0);
    /* Redis unreachable for 20 s: a comes back first; b is alive and reconnecting. */
    assert_int_equal(beat("a", "124000"), 0);
    assert_true(cmd_int("PTTL sb:nodes:grace") > 0);
    assert_int_equal(beat("a", "127000"), 0); /* b still not back: within 3 beats + 10 s of the gap */
    assert_int_equal(beat("a", "130000"), 0);
    assert_int_equal(beat("a", "133000"), 0);
    assert_int_equal(beat("b", "136000"), 0);
    assert_int_equal(beat("a", "138000"), 0); /* grace over (137000), both beat recently */
    assert_int_equal(beat("a", "139500"), 1); /* b silent for 3.5 s now: dead */
}

/* sb_node_loads: live nodes only (recent heartbeat and hash present), draining ones left out, counts as integers. */
static void test_node_loads(void **state)
{
    (void)state;
    const char *beat_keys[] = {"sb:{node:n1}", "sb:nodes"};
    const char *b1[] = {"sb:", "n1", "100000", "3000", "connections", "20", "draining", "0"};
    redisReply *r = fcall("sb_node_beat", 2, beat_keys, SB_ARRAY_SIZE(b1), b1);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    freeReplyObject(r);
    const char *beat2_keys[] = {"sb:{node:n2}", "sb:nodes"};
    const char *b2[] = {"sb:", "n2", "100500", "3000", "connections", "7"}; /* an older node: no draining field */
    freeReplyObject(fcall("sb_node_beat", 2, beat2_keys, SB_ARRAY_SIZE(b2), b2));
    const char *beat3_keys[] = {"sb:{node:n3}", "sb:nodes"};
    const char *b3[] = {"sb:", "n3", "100500", "3000", "connections", "30", "draining", "1"};
    freeReplyObject(fcall("sb_node_beat", 2, beat3_keys, SB_ARRAY_SIZE(b3), b3));
    /* n4: listed with an old heartbeat (dead, not reaped yet); n5: listed but its hash expired. */
    freeReplyObject(cmd("ZADD sb:nodes 90000 n4 100400 n5"));
    freeReplyObject(cmd("HSET sb:{node:n4} id n4 connections 99"));

    const char *keys[] = {"sb:nodes"};
    const char *args[] = {"sb:", "101000", "3000"};
    r = fcall("sb_node_loads", 1, keys, SB_ARRAY_SIZE(args), args);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 4);
    assert_string_equal(r->element[0]->str, "n1");
    assert_int_equal(r->element[1]->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->element[1]->integer, 20);
    assert_string_equal(r->element[2]->str, "n2");
    assert_int_equal(r->element[3]->integer, 7);
    freeReplyObject(r);

    /* Read-only: callable with FCALL_RO (a replica can answer it). */
    r = cmd("FCALL_RO sb_node_loads 1 sb:nodes sb: 101000 3000");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    freeReplyObject(r);

    const char *bad_key[] = {"sb:other"};
    fcall_err("sb_node_loads", 1, bad_key, SB_ARRAY_SIZE(args), args, "ERR sb_node_loads: KEYS[1]");
    const char *bad_ttl[] = {"sb:", "101000", "0"};
    fcall_err("sb_node_loads", 1, keys, SB_ARRAY_SIZE(bad_ttl), bad_ttl, "ERR sb_node_loads: ARGV[3]");
}

/* A server without FUNCTION (Redis 6 is emulated by renaming the commands
 * away) must give the plain "Redis 7 or newer is required" answer. */
static void test_old_redis(void **state)
{
    (void)state;
    server_t old;
    const char *extra[] = {"--rename-command", "FUNCTION", "", "--rename-command", "FCALL", "", NULL};
    redisContext *c = start_server(&old, extra);
    const char *why = NULL;
    int err = sb_functions_load(c, &why);
    int err2 = sb_functions_check(c, NULL);
    const char *why2 = NULL;
    int err3 = sb_functions_check(c, &why2);
    redisFree(c);
    stop_server(&old);
    assert_int_equal(err, SB_EINVAL);
    assert_non_null(why);
    assert_int_equal(strncmp(why, "Redis 7 or newer is required", 28), 0);
    assert_int_equal(err2, SB_EINVAL);
    assert_int_equal(err3, SB_EINVAL);
    assert_int_equal(strncmp(why2, "Redis 7 or newer is required", 28), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generated_source),
        cmocka_unit_test_setup(test_load_and_check, test_setup),
        cmocka_unit_test_setup(test_version_check, test_setup),
        cmocka_unit_test_setup(test_connect, test_setup),
        cmocka_unit_test_setup(test_connect_other_prefix, test_setup),
        cmocka_unit_test_setup(test_connect_many_rooms, test_setup),
        cmocka_unit_test_setup(test_inbox_read, test_setup),
        cmocka_unit_test_setup(test_bad_input_writes_nothing, test_setup),
        cmocka_unit_test_setup(test_join_leave, test_setup),
        cmocka_unit_test_setup(test_disconnect, test_setup),
        cmocka_unit_test_setup(test_node_sockets_purge, test_setup),
        cmocka_unit_test_setup(test_recovery, test_setup),
        cmocka_unit_test_setup(test_node_loads, test_setup),
        cmocka_unit_test_setup(test_node_beat_gap, test_setup),
        cmocka_unit_test(test_old_redis),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
