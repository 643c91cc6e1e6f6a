/*
 * redis.h — hiredis 0.14 async connections driven by an h2o evloop, Redis URL
 * parsing, and the embedded redis-server used when no URL is configured.
 *
 * One sb_redis_t is one TCP/unix connection owned by one worker thread; it is
 * used only from that thread. It connects at creation, reconnects by itself
 * with exponential backoff (100 ms doubling to 5 s, with jitter), and gives
 * every command a deadline: when a command's deadline passes the connection is
 * dropped (hiredis cannot cancel one request), every pending callback gets
 * reply == NULL, and reconnection starts. AUTH (user:pass or pass) and SELECT
 * from the URL are sent on every (re)connect before on_connect is called.
 */
#ifndef SWITCHBOARD_REDIS_H
#define SWITCHBOARD_REDIS_H

#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>
#include <h2o.h>

typedef struct sb_redis_addr {
    int is_unix;
    char host[256]; /* tcp host */
    uint16_t port;  /* tcp port, default 6379 */
    char path[256]; /* unix socket path */
    char user[128]; /* "" when none */
    char pass[256]; /* "" when none */
    int db;         /* default 0 */
} sb_redis_addr_t;

/* Parses redis://[user:pass@]host[:port][/db], redis://:pass@host, unix:///path[?db=N].
 * rediss:// is refused (no TLS in this hiredis). Percent-escapes in user/pass
 * are decoded. Returns 0 or SB_EINVAL (with *why set to a static reason). */
int sb_redis_url_parse(const char *url, sb_redis_addr_t *out, const char **why);

typedef struct sb_redis sb_redis_t;

/* Reply callback. reply is NULL when the command failed without a reply
 * (timeout, disconnect, shutdown); `err` then says why, else err is NULL.
 * An error reply from Redis is a reply of type REDIS_REPLY_ERROR with err NULL.
 * The reply is freed by the adapter after the callback returns. */
typedef void (*sb_redis_cb)(sb_redis_t *r, redisReply *reply, const char *err, void *data);
/* Connection state callback: called with connected 1 after each successful
 * (re)connect (AUTH/SELECT done) and with 0 when an established connection is lost. */
typedef void (*sb_redis_state_cb)(sb_redis_t *r, int connected, void *data);

/* Creates the connection and starts connecting. `name` is used in logs.
 * cmd_timeout_ms is the default per-command deadline. Never returns NULL
 * except on allocation failure. */
sb_redis_t *sb_redis_create(h2o_loop_t *loop, const sb_redis_addr_t *addr, uint64_t cmd_timeout_ms, const char *name,
                            sb_redis_state_cb on_state, void *state_data);

/* 1 when connected and ready for commands. */
int sb_redis_connected(sb_redis_t *r);

/* Bytes allocated for the connection's output buffer right now (0 when not
 * connected). Between bursts it stays allocated up to 256 KiB, so a loop
 * iteration's commands are appended without regrowing it; larger ones are
 * given back once written. For tests and diagnostics. */
size_t sb_redis_output_capacity(const sb_redis_t *r);

/* Sends a command. timeout_ms 0 means the default; blocking commands
 * (XREAD BLOCK n) pass n plus a margin. Returns 0, or SB_EAGAIN when not
 * connected (the callback is then NOT called), or SB_ENOMEM. */
int sb_redis_commandargv(sb_redis_t *r, sb_redis_cb cb, void *data, uint64_t timeout_ms, int argc, const char **argv,
                         const size_t *argvlen);

/* Closes the connection: pending callbacks get reply NULL (err "shutdown")
 * before this returns; no reconnect. The object is freed later from the loop;
 * do not use it after this call. */
void sb_redis_destroy(sb_redis_t *r);

/* Starts a private redis-server from PATH listening only on a unix socket in a
 * fresh temporary directory (no persistence), waits until it answers PING
 * (up to 5 s), and writes its URL ("unix:///tmp/…/redis.sock") to url_out.
 * Returns 0 or SB_EIO with *why set. */
int sb_embedded_redis_start(char *url_out, size_t url_len, const char **why);
/* Stops it (SIGTERM, wait, then remove the directory). Safe to call when not started. */
void sb_embedded_redis_stop(void);

/* Opens a blocking (synchronous) connection with AUTH/SELECT done, for
 * start-up work. timeout_ms bounds connect and each command. NULL on failure
 * with *why set. Free with redisFree. */
redisContext *sb_redis_connect_sync(const sb_redis_addr_t *addr, uint64_t timeout_ms, const char **why);

#endif
