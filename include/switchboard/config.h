/*
 * config.h — every setting of switchboard, parsed from command-line flags and
 * SWITCHBOARD_* environment variables (flags win over the environment).
 *
 * Lifecycle: main() calls sb_config_init (defaults), then sb_config_parse; the
 * result is read-only afterwards and shared by all threads. sb_config_free
 * releases it at exit.
 *
 * Naming rule: flag --foo-bar <=> variable SWITCHBOARD_FOO_BAR. Repeatable
 * flags (listen, namespace, api-key, cors-origin, webhook) take a comma-separated
 * list in the environment variable. Durations are milliseconds unless a unit is
 * given: "250ms", "25s", "5m", "1h". Sizes accept "kb"/"mb" suffixes (1024-based)
 * as well as plain bytes. Booleans: true/false/1/0/yes/no/on/off.
 */
#ifndef SWITCHBOARD_CONFIG_H
#define SWITCHBOARD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define SB_VERSION "0.1.0"

typedef struct sb_listen_addr {
    char host[256]; /* numeric or name; "" for any */
    uint16_t port;
} sb_listen_addr_t;

typedef struct sb_strlist {
    char **items; /* malloc'd strings */
    size_t count;
} sb_strlist_t;

/* A token-bucket rate: `rate` tokens per `period_ms`, at most `burst` saved up. rate 0 = no limit. */
typedef struct sb_rate {
    uint64_t rate;
    uint64_t period_ms;
    uint64_t burst;
} sb_rate_t;

typedef struct sb_config {
    /* network */
    sb_listen_addr_t *listen; /* --listen HOST:PORT, repeatable; default 127.0.0.1:8080 */
    size_t listen_count;
    unsigned threads;          /* --threads N; default 0 = number of online CPUs (resolved by the parser, so >= 1) */
    int rebalance;             /* --rebalance; default true: shed connections when far above the average */
    char *tls_cert;            /* --tls-cert FILE (NULL = none); both or neither with tls_key */
    char *tls_key;             /* --tls-key FILE */
    sb_strlist_t cors_origins; /* --cors-origin ORIGIN, repeatable; empty = no CORS headers; "*" = any */

    /* redis */
    char *redis_url;                /* --redis URL (NULL = embedded redis-server); validated with sb_redis_url_parse */
    char *redis_prefix;             /* --redis-prefix; default "sb:" */
    uint64_t redis_timeout_ms;      /* --redis-timeout; default 5000: per-command timeout */
    uint64_t events_maxlen;         /* --events-maxlen; default 100000: MAXLEN ~ of sb:events */
    uint64_t bus_maxlen;            /* --bus-maxlen; default 100000: MAXLEN ~ of sb:bus */
    uint64_t bus_block_ms;          /* --bus-block; default 5000: XREAD BLOCK time */
    uint64_t bus_count;             /* --bus-count; default 256: XREAD COUNT */
    uint64_t inbox_maxlen;          /* --inbox-maxlen; default 1000: entries per user inbox (durable emits) */
    uint64_t inbox_max_age_ms;      /* --inbox-max-age; default 24h: age bound and expiry of a user inbox */
    uint64_t heartbeat_interval_ms; /* --heartbeat-interval; default 1000 */
    uint64_t rebalance_interval_ms; /* --rebalance-interval; default 10000 (1 s..1 h, >= --heartbeat-interval) */
    unsigned rebalance_threshold;   /* --rebalance-threshold; default 20 (percent above the average, 5..1000) */
    unsigned rebalance_rate;        /* --rebalance-rate; default 20 (closes per second per node, 1..100000) */

    /* Engine.IO / Socket.IO */
    sb_strlist_t
        namespaces; /* --namespace NSP, repeatable; "/" always served; each must start with '/' and have no ',' */
    uint64_t ping_interval_ms; /* --ping-interval; default 25000 */
    uint64_t ping_timeout_ms;  /* --ping-timeout; default 20000 */
    uint64_t
        connect_timeout_ms; /* --connect-timeout; default 45000: time to send a Socket.IO CONNECT after the Engine.IO handshake */
    uint64_t upgrade_timeout_ms; /* --upgrade-timeout; default 10000 */
    uint64_t max_payload;        /* --max-payload; default 1000000 bytes */
    unsigned max_attachments;    /* --max-attachments; default 10 */
    uint64_t max_send_queue;     /* --max-send-queue; default 4 MiB: bytes queued per socket before it is dropped */
    uint64_t ack_timeout_ms;     /* --ack-timeout; default 10000 */
    uint64_t recovery_window_ms; /* --recovery-window; default 120000; 0 disables */
    uint64_t drain_timeout_ms;   /* --drain-timeout; default 30000 */
    int allow_upgrades;          /* --allow-upgrades; default true */
    int allow_polling;           /* --allow-polling; default true */

    /* backends */
    sb_strlist_t api_keys; /* --api-key KEY, repeatable */
    char *api_keys_file;   /* --api-keys-file FILE: one key per line, '#' comments */
    sb_strlist_t
        webhooks; /* --webhook GLOB=URL, repeatable (syntax checked: non-empty GLOB, http:// or https:// URL) */
    int webhook_lifecycle;                /* --webhook-lifecycle; default false */
    uint64_t webhook_timeout_ms;          /* --webhook-timeout; default 5000 */
    unsigned webhook_retries;             /* --webhook-retries; default 3 */
    uint64_t webhook_backoff_ms;          /* --webhook-backoff; default 100 */
    uint64_t webhook_backoff_max_ms;      /* --webhook-backoff-max; default 5000 */
    unsigned webhook_max_inflight;        /* --webhook-max-inflight; default 64 (per URL and worker) */
    unsigned webhook_queue;               /* --webhook-queue; default 10000 (per URL and worker) */
    unsigned webhook_breaker_failures;    /* --webhook-breaker-failures; default 5 */
    uint64_t webhook_breaker_window_ms;   /* --webhook-breaker-window; default 10000 */
    uint64_t webhook_breaker_cooldown_ms; /* --webhook-breaker-cooldown; default 5000 */
    int events_stream;                    /* --events-stream; default true */
    uint64_t api_max_body;                /* --api-max-body; default 1 MiB */
    uint64_t http_timeout_ms;             /* --http-timeout; default 10000 */
    uint64_t loop_lag_warn_ms;            /* --loop-lag-warn; default 200 */
    uint64_t loop_lag_max_ms;             /* --loop-lag-max; default 0 = /readyz ignores loop lag */
    char *dashboard_dir;                  /* --dashboard-dir; default SB_DASHBOARD_DIR (build time); "" = off */

    /* auth */
    char *jwt_alg;                  /* --jwt-alg; default "HS256"; one of HS256 HS384 HS512 RS256 ES256 */
    char *jwt_secret;               /* --jwt-secret */
    char *jwt_public_key;           /* --jwt-public-key FILE (must be readable) */
    char *jwt_issuer;               /* --jwt-issuer */
    char *jwt_audience;             /* --jwt-audience */
    uint64_t jwt_leeway_ms;         /* --jwt-leeway; default 0 */
    uint64_t jwt_expiry_warning_ms; /* --jwt-expiry-warning; default 60000 */

    /* rate limits (held in Redis: they hold across every node) */
    sb_rate_t rate_socket_events; /* --rate-socket-events; default 50/1s:100 */
    sb_rate_t rate_user_events;   /* --rate-user-events; default 200/1s:400 */
    sb_rate_t rate_room_publish;  /* --rate-room-publish; default 100/1s:200 */
    sb_rate_t rate_connections;   /* --rate-connections (per client address); default 50/1s:200 */
    sb_rate_t rate_api;           /* --rate-api (per API key); default 1000/1s:2000 */
    unsigned rate_abuse_limit;    /* --rate-abuse-limit; default 50 */

    /* logging */
    int log_level; /* --log-level trace|debug|info|warn|error|fatal|silent; default info (stored as pino numbers 10..60, silent = 100) */
    unsigned log_rate;  /* --log-rate; default 200 lines/s below error level, 0 = no limit */
    int log_client_ips; /* --log-client-ips; default false (addresses masked) */

    /* modes */
    int check_config; /* --check-config given */
} sb_config_t;

/* Fills defaults. Never fails. */
void sb_config_init(sb_config_t *cfg);

/* Parses the environment (environ, SWITCHBOARD_*) then argv. Returns:
 *   0   run the server with cfg;
 *   1   --help or --version was handled (text printed to stdout): exit 0;
 *   2   bad configuration: one line "switchboard: <setting>: <problem>" was
 *       written to `err` (a buffer of errlen bytes): print it and exit 2.
 * Unknown flags and unknown SWITCHBOARD_* variables are errors. */
int sb_config_parse(sb_config_t *cfg, int argc, char **argv, char **envp, char *err, size_t errlen);

/* Parses a duration ("250", "250ms", "25s", "5m", "1h") into ms. 0 or SB_EINVAL. */
int sb_config_parse_duration(const char *s, uint64_t *out_ms);
/* Parses a size ("1000000", "64kb", "4mb") into bytes. 0 or SB_EINVAL. */
int sb_config_parse_size(const char *s, uint64_t *out);

/* Parses a rate "N/DURATION[:BURST]" (burst defaults to N) or "off"/"0". 0 or SB_EINVAL. */
int sb_config_parse_rate(const char *s, sb_rate_t *out);

/* Writes the --help text (every flag, its variable and its default) to f. */
void sb_config_print_help(void *file /* FILE* */);

void sb_config_free(sb_config_t *cfg);

#endif
