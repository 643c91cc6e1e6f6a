/* Unit tests for src/embedded_redis.c's failure paths, with stand-in programs for redis-server: one that fails at
 * start-up (its log must reach ours), one the exec cannot run (127), one that never answers and ignores SIGTERM;
 * plus an unusable TMPDIR and a URL buffer too small. The happy path is in test_redis.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "switchboard/common.h"
#include "switchboard/log.h"
#include "switchboard/redis.h"

#define CAPTURE_MAX 65536
static char captured[CAPTURE_MAX];
static size_t captured_len;
static char dir[64];

/* Runs the body with fd 2 (where sb_log writes) pointing at a temporary file, then reads it back. */
#define CAPTURE(body)                                                                                                  \
    do {                                                                                                               \
        FILE *tmp_ = tmpfile();                                                                                        \
        assert_non_null(tmp_);                                                                                         \
        fflush(stderr);                                                                                                \
        int saved_ = dup(2);                                                                                           \
        assert_true(saved_ >= 0);                                                                                      \
        assert_true(dup2(fileno(tmp_), 2) == 2);                                                                       \
        body;                                                                                                          \
        dup2(saved_, 2);                                                                                               \
        close(saved_);                                                                                                 \
        rewind(tmp_);                                                                                                  \
        captured_len = fread(captured, 1, CAPTURE_MAX - 1, tmp_);                                                      \
        captured[captured_len] = '\0';                                                                                 \
        fclose(tmp_);                                                                                                  \
    } while (0)

/* Writes an executable shell script `name` into the test's directory; its path goes to `path`. */
static void script(const char *name, const char *body, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0700), 0);
}

static int setup(void **state)
{
    (void)state;
    sb_log_init(SB_LOG_DEBUG, 0);
    snprintf(dir, sizeof(dir), "/tmp/sb-test-embedded-XXXXXX");
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* redis-server writes why it gives up into its logfile, then exits: that text must reach our log. */
static void test_exits_at_startup(void **state)
{
    (void)state;
    char path[128], url[256];
    const char *why = NULL;
    script("fails", "echo 'FATAL CONFIG FILE ERROR: stand-in says no'\nexit 3", path, sizeof(path));
    setenv("SWITCHBOARD_REDIS_SERVER", path, 1);
    int rv;
    CAPTURE(rv = sb_embedded_redis_start(url, sizeof(url), &why));
    unsetenv("SWITCHBOARD_REDIS_SERVER");
    assert_int_equal(rv, SB_EIO);
    assert_string_equal(why, "redis-server exited at start-up (its log was written to our log)");
    assert_non_null(strstr(captured, "\"msg\":\"embedded redis-server exited at start-up\""));
    assert_non_null(strstr(captured, "\"status\":3"));
    assert_non_null(strstr(captured, "\"msg\":\"embedded redis-server log\""));
    assert_non_null(strstr(captured, "FATAL CONFIG FILE ERROR: stand-in says no"));
}

/* Exit status 127 is how a shell says the program it was to run does not exist. */
static void test_exit_127_is_not_found(void **state)
{
    (void)state;
    char path[128], url[256];
    const char *why = NULL;
    script("missing", "exit 127", path, sizeof(path));
    setenv("SWITCHBOARD_REDIS_SERVER", path, 1);
    int rv;
    CAPTURE(rv = sb_embedded_redis_start(url, sizeof(url), &why));
    unsetenv("SWITCHBOARD_REDIS_SERVER");
    assert_int_equal(rv, SB_EIO);
    assert_string_equal(why, "the program named by SWITCHBOARD_REDIS_SERVER was not found");
}

/* A server that never opens its socket is given up after 5 s; one that ignores SIGTERM is then killed. */
static void test_never_answers(void **state)
{
    (void)state;
    char path[128], url[256];
    const char *why = NULL;
    script("hangs", "trap '' TERM\nwhile :; do sleep 0.1; done", path, sizeof(path));
    setenv("SWITCHBOARD_REDIS_SERVER", path, 1);
    int rv;
    CAPTURE(rv = sb_embedded_redis_start(url, sizeof(url), &why));
    unsetenv("SWITCHBOARD_REDIS_SERVER");
    assert_int_equal(rv, SB_EIO);
    assert_string_equal(why, "redis-server did not answer PING within 5 s");
    assert_non_null(strstr(captured, "\"msg\":\"embedded redis-server ignored SIGTERM; killing it\""));
    /* Gone: a new start is not refused as "already running". */
    script("fails2", "exit 3", path, sizeof(path));
    setenv("SWITCHBOARD_REDIS_SERVER", path, 1);
    CAPTURE(rv = sb_embedded_redis_start(url, sizeof(url), &why));
    unsetenv("SWITCHBOARD_REDIS_SERVER");
    assert_string_equal(why, "redis-server exited at start-up (its log was written to our log)");
}

static void test_tmpdir_unusable(void **state)
{
    (void)state;
    char url[256];
    const char *why = NULL;
    char *saved = getenv("TMPDIR") != NULL ? strdup(getenv("TMPDIR")) : NULL;
    setenv("TMPDIR", "/nonexistent-sb-tmp", 1);
    assert_int_equal(sb_embedded_redis_start(url, sizeof(url), &why), SB_EIO);
    assert_string_equal(why, "cannot create a temporary directory for the embedded redis-server");
    if (saved != NULL) {
        setenv("TMPDIR", saved, 1);
        free(saved);
    } else {
        unsetenv("TMPDIR");
    }
}

/* The real redis-server starts, but its URL does not fit: it is stopped again and the next start works. */
static void test_url_too_small(void **state)
{
    (void)state;
    char small[12], url[256];
    const char *why = NULL;
    int rv;
    CAPTURE(rv = sb_embedded_redis_start(small, sizeof(small), &why));
    assert_int_equal(rv, SB_EIO);
    assert_string_equal(why, "URL buffer too small for the embedded redis-server's socket path");
    CAPTURE(rv = sb_embedded_redis_start(url, sizeof(url), &why));
    assert_int_equal(rv, 0);
    assert_memory_equal(url, "unix:///", 8);
    sb_embedded_redis_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exits_at_startup), cmocka_unit_test(test_exit_127_is_not_found),
        cmocka_unit_test(test_never_answers),    cmocka_unit_test(test_tmpdir_unusable),
        cmocka_unit_test(test_url_too_small),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
