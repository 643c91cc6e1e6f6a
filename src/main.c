/*
 * main.c — switchboard's entry point: configuration, the embedded Redis when
 * no URL is given, the Functions library check, the workers, and signals.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "switchboard/api.h"
#include "switchboard/auth.h"
#include "switchboard/config.h"
#include "switchboard/functions.h"
#include "switchboard/log.h"
#include "switchboard/redis.h"
#include "switchboard/server.h"

extern char **environ;

/* Removes what this node still has registered in Redis (its sockets and their memberships). */
static void purge_node(const sb_server_t *s)
{
    const char *why = NULL;
    redisContext *c = sb_redis_connect_sync(&s->redis_addr, 2000, &why);
    if (c == NULL)
        return;
    char key[600], ts[24], maxlen[24];
    snprintf(key, sizeof(key), "%s{node:%s}:sockets", s->cfg->redis_prefix, s->node_id);
    snprintf(ts, sizeof(ts), "%" PRIu64, sb_now_ms());
    snprintf(maxlen, sizeof(maxlen), "%" PRIu64, s->cfg->events_maxlen);
    for (int i = 0; i < 100; i++) {
        /* Kept for --recovery-window: the clients recover their sessions on the other nodes. */
        redisReply *r = redisCommand(c, "FCALL sb_node_sockets_purge 1 %s %s %s %s %s %s 1000 %" PRIu64, key,
                                     s->cfg->redis_prefix, s->node_id, "server shutting down", ts, maxlen,
                                     s->cfg->recovery_window_ms);
        int more = r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer > 0;
        if (r != NULL)
            freeReplyObject(r);
        if (!more)
            break;
    }
    redisFree(c);
}

int main(int argc, char **argv)
{
    sb_config_t cfg;
    char errbuf[512];
    sb_config_init(&cfg);
    switch (sb_config_parse(&cfg, argc, argv, environ, errbuf, sizeof(errbuf))) {
    case 0:
        break;
    case 1:
        sb_config_free(&cfg);
        return 0;
    default:
        fprintf(stderr, "%s\n", errbuf);
        sb_config_free(&cfg);
        return 2;
    }
    if (cfg.check_config) {
        printf("switchboard: configuration is valid\n");
        sb_config_free(&cfg);
        return 0;
    }
    sb_log_init(cfg.log_level, cfg.log_client_ips);
    sb_log_set_rate(cfg.log_rate);
    (void)signal(SIGPIPE, SIG_IGN); /* cannot fail for a valid signal number */

    /* Block the signals in every thread; the main thread waits for them with sigwait. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    const char *why = NULL;
    char url[512];
    int embedded = cfg.redis_url == NULL;
    if (embedded) {
        if (sb_embedded_redis_start(url, sizeof(url), &why) != 0) {
            sb_log(SB_LOG_FATAL, "cannot start the embedded redis-server", "error", why, NULL);
            return 1;
        }
        sb_log(SB_LOG_INFO, "no --redis given: started a private redis-server (state is lost at exit)", "url", url,
               NULL);
    } else {
        snprintf(url, sizeof(url), "%s", cfg.redis_url);
    }

    sb_server_t server;
    sb_redis_addr_t addr;
    if (sb_redis_url_parse(url, &addr, &why) != 0) {
        fprintf(stderr, "switchboard: --redis: %s\n", why);
        return 2;
    }
    /* The Functions library must be ours before anything is served (DESIGN §4). */
    redisContext *c = NULL;
    for (int attempt = 0; attempt < 50 && c == NULL; attempt++) {
        if ((c = sb_redis_connect_sync(&addr, cfg.redis_timeout_ms, &why)) == NULL) {
            if (attempt == 0)
                sb_log(SB_LOG_WARN, "waiting for redis", "error", why, NULL);
            nanosleep(&(struct timespec){0, 200L * 1000 * 1000}, NULL);
        }
    }
    if (c == NULL) {
        sb_log(SB_LOG_FATAL, "cannot reach redis", "error", why, NULL);
        if (embedded)
            sb_embedded_redis_stop();
        return 1;
    }
    if (sb_functions_load(c, &why) != 0) {
        sb_log(SB_LOG_FATAL, "refusing to serve: the Redis Functions library could not be loaded", "error", why, NULL);
        redisFree(c);
        if (embedded)
            sb_embedded_redis_stop();
        return 1;
    }
    redisFree(c);

    if (sb_server_init(&server, &cfg, url, &why) != 0) {
        sb_log(SB_LOG_FATAL, "cannot start", "error", why, NULL);
        if (embedded)
            sb_embedded_redis_stop();
        return 1;
    }
    sb_server_start(&server);
    char threads[16], port[16];
    snprintf(threads, sizeof(threads), "%u", server.nworkers);
    snprintf(port, sizeof(port), "%u", (unsigned)cfg.listen[0].port);
    sb_log(SB_LOG_INFO, "switchboard listening", "version", SB_VERSION, "host", cfg.listen[0].host, "#port", port,
           "#threads", threads, "node", server.node_id, "functions", sb_functions_version, NULL);

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            const char *err = NULL;
            if (sb_api_reload_keys(&server, &err) != 0)
                sb_log(SB_LOG_ERROR, "SIGHUP: API keys not reloaded", "error", err, NULL);
            else
                sb_log(SB_LOG_INFO, "SIGHUP: API keys reloaded", NULL);
            if (sb_server_reload_tls(&server, &err) != 0)
                sb_log(SB_LOG_ERROR, "SIGHUP: TLS certificate not reloaded; the previous one stays in force", "error",
                       err, NULL);
            else if (cfg.tls_cert != NULL)
                sb_log(SB_LOG_INFO, "SIGHUP: TLS certificate reloaded", NULL);
            if (sb_auth_enabled(server.auth)) {
                if (sb_auth_reload(server.auth, &err) != 0)
                    sb_log(SB_LOG_ERROR, "SIGHUP: JWT key not reloaded; the previous one stays in force", "error", err,
                           NULL);
                else
                    sb_log(SB_LOG_INFO, "SIGHUP: JWT key reloaded", NULL);
            }
            continue;
        }
        sb_log(SB_LOG_INFO, "draining", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT", NULL);
        break;
    }
    /* Graceful drain: not ready at once, no new clients, open ones closed over --drain-timeout (they reconnect to
     * other nodes). A second signal ends the wait. */
    sb_server_drain(&server);
    uint64_t deadline = sb_mono_ms() + cfg.drain_timeout_ms + 1000;
    struct timespec poll = {0, 100L * 1000 * 1000};
    while (sb_server_connections(&server) > 0 && sb_mono_ms() < deadline) {
        if (sigtimedwait(&set, NULL, &poll) > 0)
            break;
    }
    sb_log(SB_LOG_INFO, "shutting down", NULL);
    sb_server_stop(&server);
    purge_node(&server);
    sb_server_free(&server);
    if (embedded)
        sb_embedded_redis_stop();
    sb_log(SB_LOG_INFO, "bye", NULL);
    sb_config_free(&cfg);
    return 0;
}
