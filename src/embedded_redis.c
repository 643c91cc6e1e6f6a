/*
 * embedded_redis.c — the private redis-server started when no Redis URL is
 * configured, and blocking connections for start-up work.
 *
 * The embedded server listens only on a unix socket (mode 700) in a fresh
 * mkdtemp directory, keeps nothing on disk (no RDB, no AOF), and is stopped by
 * sb_embedded_redis_stop, which also removes the directory. One per process;
 * start and stop are called from the main thread at start-up and exit.
 */
#include "switchboard/redis.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "switchboard/common.h"
#include "switchboard/log.h"

#define START_TIMEOUT_MS 5000
#define STOP_TIMEOUT_MS 3000
#define POLL_MS 20

static const char not_found_path[] =
    "redis-server not found on PATH; install it (apt-get install redis-server) or pass --redis URL";
static const char not_found_env[] = "the program named by SWITCHBOARD_REDIS_SERVER was not found";

extern char **environ;

static pid_t server_pid = -1;
static char server_dir[128]; /* short enough that dir + "/redis.sock" fits sun_path */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    if (d != NULL) {
        /* only files redis-server itself created live here (socket, log) */
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                unlinkat(dirfd(d), e->d_name, 0);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* Logs the end of redis-server's log so a failed start explains itself. */
static void log_server_tail(const char *dir)
{
    char path[192], buf[1024];
    int fd;
    ssize_t n;
    off_t size;

    snprintf(path, sizeof(path), "%s/redis.log", dir);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
        return;
    size = lseek(fd, 0, SEEK_END);
    if (size > (off_t)(sizeof(buf) - 1))
        lseek(fd, size - (off_t)(sizeof(buf) - 1), SEEK_SET);
    else
        lseek(fd, 0, SEEK_SET);
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n > 0) {
        buf[n] = '\0';
        sb_log(SB_LOG_ERROR, "embedded redis-server log", "log", buf, NULL);
    }
}

/* Waits up to ms for the child to exit; returns 1 when it was reaped. */
static int wait_exit(pid_t pid, unsigned ms)
{
    uint64_t deadline = sb_mono_ms() + ms;
    for (;;) {
        pid_t p = waitpid(pid, NULL, WNOHANG);
        if (p == pid || (p == -1 && errno == ECHILD))
            return 1;
        if (sb_mono_ms() >= deadline)
            return 0;
        sleep_ms(10);
    }
}

static int ping_unix(const char *path)
{
    struct timeval tv = {0, 200L * 1000};
    redisContext *c = redisConnectUnixWithTimeout(path, tv);
    int ok = 0;

    if (c != NULL && c->err == 0) {
        redisSetTimeout(c, tv);
        redisReply *reply = redisCommand(c, "PING");
        ok = reply != NULL && reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0;
        if (reply != NULL)
            freeReplyObject(reply);
    }
    if (c != NULL)
        redisFree(c);
    return ok;
}

static int spawn_server(const char *bin, const char *dir, const char *sock, const char *logfile, pid_t *pid)
{
    const char *argv[] = {bin,   "--port", "0", "--unixsocket", sock,    "--unixsocketperm",
                          "700", "--save", "",  "--appendonly", "no",    "--daemonize",
                          "no",  "--dir",  dir, "--logfile",    logfile, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, defaults;
    int rc;

    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    /* stdout/stderr are our JSON log stream: anything redis-server prints
     * before it opens its logfile goes into that logfile instead */
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, logfile, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    /* the server ignores SIGPIPE and may block signals; the child must not
     * inherit that, and its own process group keeps a terminal's Ctrl-C from
     * killing it before we drain */
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGHUP);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    rc = posix_spawnp(pid, bin, &fa, &attr, (char *const *)argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

int sb_embedded_redis_start(char *url_out, size_t url_len, const char **why)
{
    const char *bin = getenv("SWITCHBOARD_REDIS_SERVER");
    const char *tmp = getenv("TMPDIR");
    int from_env = bin != NULL && bin[0] != '\0';
    char sock[sizeof(server_dir) + 16], logfile[sizeof(server_dir) + 16];
    uint64_t deadline;
    pid_t pid;
    int rc, n;

    if (server_pid > 0) {
        *why = "the embedded redis-server is already running";
        return SB_EIO;
    }
    if (!from_env)
        bin = "redis-server";
    /* a unix socket path is limited to 107 bytes: fall back to /tmp when TMPDIR is long */
    if (tmp == NULL || tmp[0] != '/' || strlen(tmp) > 64)
        tmp = "/tmp";
    snprintf(server_dir, sizeof(server_dir), "%s/switchboard-redis-XXXXXX", tmp);
    if (mkdtemp(server_dir) == NULL) {
        server_dir[0] = '\0';
        *why = "cannot create a temporary directory for the embedded redis-server";
        return SB_EIO;
    }
    snprintf(sock, sizeof(sock), "%s/redis.sock", server_dir);
    snprintf(logfile, sizeof(logfile), "%s/redis.log", server_dir);

    if ((rc = spawn_server(bin, server_dir, sock, logfile, &pid)) != 0) {
        remove_dir(server_dir);
        server_dir[0] = '\0';
        if (rc == ENOENT)
            *why = from_env ? not_found_env : not_found_path;
        else
            *why = "cannot start redis-server";
        return SB_EIO;
    }
    server_pid = pid;

    deadline = sb_mono_ms() + START_TIMEOUT_MS;
    for (;;) {
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            char code[16];
            snprintf(code, sizeof(code), "%d", WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
            sb_log(SB_LOG_ERROR, "embedded redis-server exited at start-up", "program", bin, "#status", code, NULL);
            log_server_tail(server_dir);
            server_pid = -1;
            remove_dir(server_dir);
            server_dir[0] = '\0';
            /* 127: the exec failed in the child, where posix_spawnp could not report it (some libcs, valgrind) */
            if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
                *why = from_env ? not_found_env : not_found_path;
            else
                *why = "redis-server exited at start-up (its log was written to our log)";
            return SB_EIO;
        }
        if (ping_unix(sock))
            break;
        if (sb_mono_ms() >= deadline) {
            log_server_tail(server_dir);
            sb_embedded_redis_stop();
            *why = "redis-server did not answer PING within 5 s";
            return SB_EIO;
        }
        sleep_ms(POLL_MS);
    }

    n = snprintf(url_out, url_len, "unix://%s", sock);
    if (n < 0 || (size_t)n >= url_len) {
        sb_embedded_redis_stop();
        *why = "URL buffer too small for the embedded redis-server's socket path";
        return SB_EIO;
    }
    char pidstr[24];
    snprintf(pidstr, sizeof(pidstr), "%ld", (long)pid);
    sb_log(SB_LOG_INFO, "started an embedded redis-server (no --redis URL given); its data is not persisted", "path",
           sock, "#pid", pidstr, NULL);
    return 0;
}

void sb_embedded_redis_stop(void)
{
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        if (!wait_exit(server_pid, STOP_TIMEOUT_MS)) {
            sb_log(SB_LOG_WARN, "embedded redis-server ignored SIGTERM; killing it", NULL);
            kill(server_pid, SIGKILL);
            while (waitpid(server_pid, NULL, 0) == -1 && errno == EINTR)
                ;
        }
        server_pid = -1;
    }
    if (server_dir[0] != '\0') {
        remove_dir(server_dir);
        server_dir[0] = '\0';
    }
}

static redisReply *command_ok(redisContext *c, int argc, const char **argv, const size_t *lens, const char *what,
                              const char **why)
{
    redisReply *reply = redisCommandArgv(c, argc, argv, lens);
    if (reply == NULL) {
        sb_log(SB_LOG_ERROR, "redis I/O error", "during", what, "error", c->errstr, NULL);
        *why = "redis connection failed during the handshake";
        return NULL;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        sb_log(SB_LOG_ERROR, "redis handshake failed", "during", what, "error", reply->str, NULL);
        *why = argv[0][0] == 'A' ? "redis AUTH failed" : "redis SELECT failed";
        freeReplyObject(reply);
        return NULL;
    }
    return reply;
}

redisContext *sb_redis_connect_sync(const sb_redis_addr_t *addr, uint64_t timeout_ms, const char **why)
{
    struct timeval tv;
    redisContext *c;
    redisReply *reply;

    if (timeout_ms == 0)
        timeout_ms = 5000;
    tv.tv_sec = (time_t)(timeout_ms / 1000);
    tv.tv_usec = (suseconds_t)((timeout_ms % 1000) * 1000);
    if (addr->is_unix)
        c = redisConnectUnixWithTimeout(addr->path, tv);
    else
        c = redisConnectWithTimeout(addr->host, addr->port, tv);
    if (c == NULL) {
        *why = "out of memory";
        return NULL;
    }
    if (c->err != 0) {
        sb_log(SB_LOG_ERROR, "redis connect failed", "error", c->errstr, NULL);
        *why = "cannot connect to redis";
        redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        *why = "cannot set the redis command timeout";
        redisFree(c);
        return NULL;
    }
    if (addr->pass[0] != '\0') {
        const char *argv[3] = {"AUTH", addr->user, addr->pass};
        size_t lens[3] = {4, strlen(addr->user), strlen(addr->pass)};
        if (addr->user[0] != '\0')
            reply = command_ok(c, 3, argv, lens, "AUTH", why);
        else
            reply = command_ok(c, 2, (const char *[]){"AUTH", addr->pass}, (const size_t[]){4, lens[2]}, "AUTH", why);
        if (reply == NULL) {
            redisFree(c);
            return NULL;
        }
        freeReplyObject(reply);
    }
    if (addr->db != 0) {
        char db[16];
        int n = snprintf(db, sizeof(db), "%d", addr->db);
        reply = command_ok(c, 2, (const char *[]){"SELECT", db}, (const size_t[]){6, (size_t)n}, "SELECT", why);
        if (reply == NULL) {
            redisFree(c);
            return NULL;
        }
        freeReplyObject(reply);
    }
    return c;
}
