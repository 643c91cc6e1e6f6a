/*
 * config.c — settings from SWITCHBOARD_* variables and command-line flags.
 *
 * One table (opts[]) drives everything: the parser, the environment variable
 * names, the validation ranges and the --help text, so a setting cannot exist
 * in one of them and be missing from another. The environment is applied
 * first, then argv, so a flag replaces what a variable said; for repeatable
 * settings the first value from a later source replaces the whole list.
 * Values that only make sense together (TLS pair, JWT key vs algorithm, files
 * that must be readable, the Redis URL) are checked once at the end.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "switchboard/common.h"
#include "switchboard/config.h"
#include "switchboard/log.h"
#include "switchboard/redis.h"

#define MAX_THREADS 64
#define MAX_LIST_ITEMS 1024 /* hard cap of every repeatable setting */
#define MAX_LISTEN 64
#define MAX_NAMESPACE_LEN 256
#define MAX_VALUE_LEN 4096 /* no setting needs more; keeps env/argv mistakes from becoming huge error lines */

#define MS_SECOND 1000ULL
#define MS_MINUTE (60 * MS_SECOND)
#define MS_HOUR (60 * MS_MINUTE)
#define MS_DAY (24 * MS_HOUR)
#define KIB 1024ULL
#define MIB (1024ULL * 1024ULL)

enum kind {
    K_STR,     /* char * */
    K_LIST,    /* sb_strlist_t, repeatable */
    K_LISTEN,  /* sb_listen_addr_t array, repeatable */
    K_DUR,     /* uint64_t milliseconds */
    K_SIZE,    /* uint64_t bytes */
    K_COUNT,   /* uint64_t plain number */
    K_UINT,    /* unsigned plain number */
    K_BOOL,    /* int; the value may be omitted on the command line (= true) */
    K_LEVEL,   /* int pino level */
    K_RATE,    /* sb_rate_t: N/DURATION[:BURST] or off */
    K_HELP,    /* --help */
    K_VERSION, /* --version */
};

#define F_SECRET 1u   /* never echo the value in an error */
#define F_EMPTY_OK 2u /* "" is a valid value */
#define F_UPPER 4u    /* stored upper-cased */
#define F_NO_ENV 8u   /* no environment variable */

/* Checks one value (one item of a list). Returns NULL or a static reason. */
typedef const char *(*check_fn)(const char *v);

typedef struct opt {
    const char *flag; /* without the leading "--" */
    enum kind kind;
    unsigned flags;
    size_t off; /* offset of the field in sb_config_t */
    uint64_t min, max;
    check_fn check;
    const char *group; /* starts a --help section when not NULL */
    const char *metavar;
    const char *def; /* default as shown by --help */
    const char *help;
    const char *env; /* explicit variable name when the naming rule is not enough */
} opt_t;

static const char *check_namespace(const char *v);
static const char *check_api_key(const char *v);
static const char *check_cors(const char *v);
static const char *check_webhook(const char *v);
static const char *check_jwt_alg(const char *v);
static const char *check_prefix(const char *v);
static const char *check_text(const char *v);

#define OFF(f) offsetof(sb_config_t, f)

static const opt_t opts[] = {
    {"listen", K_LISTEN, 0, OFF(listen), 0, 0, NULL, "Network", "HOST:PORT", "127.0.0.1:8080",
     "Address to serve HTTP and WebSocket on. Repeatable; IPv6 as [::1]:8080, any address as :8080.", NULL},
    {"threads", K_UINT, 0, OFF(threads), 0, MAX_THREADS, NULL, NULL, "N", "0 (one per online CPU, at most 64)",
     "Worker threads, each with its own event loop and Redis connections.", NULL},
    {"tls-cert", K_STR, 0, OFF(tls_cert), 0, 0, check_text, NULL, "FILE", "none",
     "PEM certificate chain; serves HTTPS/WSS. Needs --tls-key.", NULL},
    {"tls-key", K_STR, 0, OFF(tls_key), 0, 0, check_text, NULL, "FILE", "none", "PEM private key for --tls-cert.",
     NULL},
    {"cors-origin", K_LIST, 0, OFF(cors_origins), 0, 0, check_cors, NULL, "ORIGIN", "none (no CORS headers)",
     "Origin allowed to use HTTP long-polling from a browser, e.g. https://app.example.com, or * for any. "
     "Repeatable.",
     NULL},

    {"redis", K_STR, F_SECRET, OFF(redis_url), 0, 0, check_text, "Redis", "URL", "none (start a private redis-server)",
     "redis://[user:pass@]host[:port][/db] or unix:///path/to/redis.sock[?db=N].", "SWITCHBOARD_REDIS_URL"},
    {"redis-prefix", K_STR, F_EMPTY_OK, OFF(redis_prefix), 0, 0, check_prefix, NULL, "PREFIX",
     "sb:", "Prefix of every Redis key and stream.", NULL},
    {"redis-timeout", K_DUR, 0, OFF(redis_timeout_ms), 1, 10 * MS_MINUTE, NULL, NULL, "DURATION", "5s",
     "Deadline of one Redis command; past it the connection is dropped and re-established.", NULL},
    {"events-maxlen", K_COUNT, 0, OFF(events_maxlen), 1, 1000000000, NULL, NULL, "N", "100000",
     "Approximate length cap (MAXLEN ~) of the client events stream.", NULL},
    {"bus-maxlen", K_COUNT, 0, OFF(bus_maxlen), 1, 1000000000, NULL, NULL, "N", "100000",
     "Approximate length cap (MAXLEN ~) of the broadcast bus stream.", NULL},
    {"bus-block", K_DUR, 0, OFF(bus_block_ms), 1, 10 * MS_MINUTE, NULL, NULL, "DURATION", "5s",
     "How long one XREAD on the bus waits for new entries (must be > 0: 0 would block forever).", NULL},
    {"bus-count", K_COUNT, 0, OFF(bus_count), 1, 100000, NULL, NULL, "N", "256", "Maximum bus entries read per XREAD.",
     NULL},
    {"inbox-maxlen", K_COUNT, 0, OFF(inbox_maxlen), 1, 1000000, NULL, NULL, "N", "1000",
     "Entries kept in one user's durable inbox; a durable emit to a full inbox drops the oldest (counted, logged).",
     NULL},
    {"inbox-max-age", K_DUR, 0, OFF(inbox_max_age_ms), 1000, 365 * MS_DAY, NULL, NULL, "DURATION", "24h",
     "How long an unacknowledged durable emit is kept in a user's inbox (older ones are dropped, counted, logged).",
     NULL},
    {"heartbeat-interval", K_DUR, 0, OFF(heartbeat_interval_ms), 100, 10 * MS_MINUTE, NULL, NULL, "DURATION", "1s",
     "How often the node writes its heartbeat and figures to Redis (a node silent for 3 beats is reaped by the "
     "others) and each worker checks the Functions library (reloading it when Redis lost it).",
     NULL},
    {"rebalance", K_BOOL, 0, OFF(rebalance), 0, 0, NULL, NULL, "on|off", "on",
     "Close connections slowly while this node holds clearly more than the average of the live nodes, so that "
     "nodes added by scaling out get their share of long-lived WebSockets (clients reconnect through the load "
     "balancer). Never while draining, while Redis is unreachable, or on stale figures.",
     NULL},
    {"rebalance-interval", K_DUR, 0, OFF(rebalance_interval_ms), MS_SECOND, MS_HOUR, NULL, NULL, "DURATION", "10s",
     "How often the node compares its connections with the cluster average; a round's closes are spread over "
     "it. 1s..1h, at least --heartbeat-interval (the default follows a longer heartbeat).",
     NULL},
    {"rebalance-threshold", K_UINT, 0, OFF(rebalance_threshold), 5, 1000, NULL, NULL, "PERCENT", "20",
     "Shed when the node holds more than the average plus this percentage (or when another node holds less "
     "than the average minus it), down to the average, never below. 5..1000.",
     NULL},
    {"rebalance-rate", K_UINT, 0, OFF(rebalance_rate), 1, 100000, NULL, NULL, "N", "20",
     "Most connections one node closes per second to rebalance. 1..100000.", NULL},

    {"namespace", K_LIST, 0, OFF(namespaces), 0, 0, check_namespace, "Engine.IO / Socket.IO", "NSP",
     "none (only / is served)", "Extra Socket.IO namespace to serve, e.g. /chat. Repeatable.", NULL},
    {"ping-interval", K_DUR, 0, OFF(ping_interval_ms), 1, MS_DAY, NULL, NULL, "DURATION", "25s",
     "Engine.IO pingInterval: time between server pings.", NULL},
    {"ping-timeout", K_DUR, 0, OFF(ping_timeout_ms), 1, MS_DAY, NULL, NULL, "DURATION", "20s",
     "Engine.IO pingTimeout: time a client has to answer a ping.", NULL},
    {"connect-timeout", K_DUR, 0, OFF(connect_timeout_ms), 1, MS_DAY, NULL, NULL, "DURATION", "45s",
     "Time to send a Socket.IO CONNECT after the Engine.IO handshake.", NULL},
    {"upgrade-timeout", K_DUR, 0, OFF(upgrade_timeout_ms), 1, MS_DAY, NULL, NULL, "DURATION", "10s",
     "Time to finish an upgrade from polling to WebSocket.", NULL},
    {"max-payload", K_SIZE, 0, OFF(max_payload), 1 * KIB, 100 * MIB, NULL, NULL, "SIZE", "1000000",
     "Largest message or polling body accepted from a client (1kb..100mb).", NULL},
    {"max-attachments", K_UINT, 0, OFF(max_attachments), 0, 1000, NULL, NULL, "N", "10",
     "Most binary attachments in one Socket.IO packet.", NULL},
    {"max-send-queue", K_SIZE, 0, OFF(max_send_queue), 1 * KIB, 1024 * MIB, NULL, NULL, "SIZE", "4mb",
     "Bytes queued for one slow client before it is disconnected.", NULL},
    {"ack-timeout", K_DUR, 0, OFF(ack_timeout_ms), 1, MS_DAY, NULL, NULL, "DURATION", "10s",
     "Time a backend has to answer a client event that asked for an ack.", NULL},
    {"recovery-window", K_DUR, 0, OFF(recovery_window_ms), 0, 7 * MS_DAY, NULL, NULL, "DURATION", "2m",
     "How long a disconnected socket can be recovered with its rooms and missed messages; 0 disables.", NULL},
    {"drain-timeout", K_DUR, 0, OFF(drain_timeout_ms), 0, MS_DAY, NULL, NULL, "DURATION", "30s",
     "On SIGTERM, time given to clients before open sockets are closed.", NULL},
    {"allow-upgrades", K_BOOL, 0, OFF(allow_upgrades), 0, 0, NULL, NULL, "BOOL", "true",
     "Let polling clients upgrade to WebSocket.", NULL},
    {"allow-polling", K_BOOL, 0, OFF(allow_polling), 0, 0, NULL, NULL, "BOOL", "true",
     "Serve the HTTP long-polling transport (false: WebSocket only).", NULL},

    {"api-key", K_LIST, F_SECRET, OFF(api_keys), 0, 0, check_api_key, "Backends", "KEY",
     "none (one is generated and printed at start-up)", "Key a backend sends as Authorization: Bearer KEY. Repeatable.",
     NULL},
    {"api-keys-file", K_STR, 0, OFF(api_keys_file), 0, 0, check_text, NULL, "FILE", "none",
     "File with one API key per line ('#' starts a comment); reread on SIGHUP.", NULL},
    {"webhook", K_LIST, 0, OFF(webhooks), 0, 0, check_webhook, NULL, "GLOB=URL", "none",
     "POST client events whose name matches GLOB to URL, e.g. 'chat:*=https://api.example.com/hook'. Repeatable.",
     NULL},
    {"webhook-lifecycle", K_BOOL, 0, OFF(webhook_lifecycle), 0, 0, NULL, NULL, "BOOL", "false",
     "Also POST connect and disconnect entries, to webhooks whose GLOB matches \"connect\" / \"disconnect\".", NULL},
    {"webhook-timeout", K_DUR, 0, OFF(webhook_timeout_ms), 1, 10 * MS_MINUTE, NULL, NULL, "DURATION", "5s",
     "Deadline of one webhook request (connect, send, answer).", NULL},
    {"webhook-retries", K_UINT, 0, OFF(webhook_retries), 0, 20, NULL, NULL, "N", "3",
     "Retries after a failed webhook call (5xx, timeout, connection error; never after a 4xx).", NULL},
    {"webhook-backoff", K_DUR, 0, OFF(webhook_backoff_ms), 1, 10 * MS_MINUTE, NULL, NULL, "DURATION", "100ms",
     "Delay before the first retry; doubles each retry (with jitter) up to --webhook-backoff-max.", NULL},
    {"webhook-backoff-max", K_DUR, 0, OFF(webhook_backoff_max_ms), 1, 10 * MS_MINUTE, NULL, NULL, "DURATION", "5s",
     "Longest delay between retries.", NULL},
    {"webhook-max-inflight", K_UINT, 0, OFF(webhook_max_inflight), 1, 100000, NULL, NULL, "N", "64",
     "Requests in flight per webhook URL and worker thread; more wait in a bounded queue.", NULL},
    {"webhook-queue", K_UINT, 0, OFF(webhook_queue), 1, 1000000, NULL, NULL, "N", "10000",
     "Calls waiting per webhook URL and worker thread beyond --webhook-max-inflight; past it the client gets "
     "backend_unavailable.",
     NULL},
    {"webhook-breaker-failures", K_UINT, 0, OFF(webhook_breaker_failures), 1, 100000, NULL, NULL, "N", "5",
     "Failed calls within --webhook-breaker-window that open a URL's circuit.", NULL},
    {"webhook-breaker-window", K_DUR, 0, OFF(webhook_breaker_window_ms), 1, MS_HOUR, NULL, NULL, "DURATION", "10s",
     "Window in which failures are counted.", NULL},
    {"webhook-breaker-cooldown", K_DUR, 0, OFF(webhook_breaker_cooldown_ms), 1, MS_HOUR, NULL, NULL, "DURATION", "5s",
     "How long an open circuit stays open before one half-open probe request.", NULL},
    {"events-stream", K_BOOL, 0, OFF(events_stream), 0, 0, NULL, NULL, "BOOL", "true",
     "Write client events to the events stream even when a webhook handles them.", NULL},
    {"http-timeout", K_DUR, 0, OFF(http_timeout_ms), 100, 10 * MS_MINUTE, NULL, NULL, "DURATION", "10s",
     "Time to receive a whole HTTP request (slow or dripping headers and bodies are closed), and the idle "
     "keep-alive time.",
     NULL},
    {"loop-lag-warn", K_DUR, 0, OFF(loop_lag_warn_ms), 1, MS_MINUTE, NULL, NULL, "DURATION", "200ms",
     "Event-loop lag that is logged as a warning (at most every 10 s per worker).", NULL},
    {"loop-lag-max", K_DUR, 0, OFF(loop_lag_max_ms), 0, MS_MINUTE, NULL, NULL, "DURATION", "0 (off)",
     "When a worker's loop lag stays above this, /readyz fails so the load balancer sends clients elsewhere.", NULL},
    {"dashboard-dir", K_STR, F_EMPTY_OK, OFF(dashboard_dir), 0, 0, check_text, NULL, "DIR",
     "the dashboard-static folder of the build",
     "Folder of the dashboard, served at /dashboard/ (sign in with an API key); empty turns it off.", NULL},
    {"api-max-body", K_SIZE, 0, OFF(api_max_body), 1 * KIB, 100 * MIB, NULL, NULL, "SIZE", "1mb",
     "Largest REST request body; larger ones get 413.", NULL},

    {"jwt-alg", K_STR, F_UPPER, OFF(jwt_alg), 0, 0, check_jwt_alg, "Auth", "ALG", "HS256",
     "JWT algorithm, pinned: HS256, HS384, HS512 (with --jwt-secret) or RS256, ES256 (with --jwt-public-key).", NULL},
    {"jwt-secret", K_STR, F_SECRET, OFF(jwt_secret), 0, 0, check_text, NULL, "SECRET", "none",
     "Shared secret for HS* tokens. Without a secret or key, clients connect anonymously.", NULL},
    {"jwt-public-key", K_STR, 0, OFF(jwt_public_key), 0, 0, check_text, NULL, "FILE", "none",
     "PEM public key for RS256/ES256 tokens.", NULL},
    {"jwt-issuer", K_STR, 0, OFF(jwt_issuer), 0, 0, check_text, NULL, "ISS", "none (not checked)",
     "Required value of the token's iss claim.", NULL},
    {"jwt-audience", K_STR, 0, OFF(jwt_audience), 0, 0, check_text, NULL, "AUD", "none (not checked)",
     "Required value (or member) of the token's aud claim.", NULL},
    {"jwt-expiry-warning", K_DUR, 0, OFF(jwt_expiry_warning_ms), 0, MS_DAY, NULL, NULL, "DURATION", "60s",
     "How long before its token expires a socket gets the $token_expiring event.", NULL},
    {"jwt-leeway", K_DUR, 0, OFF(jwt_leeway_ms), 0, MS_HOUR, NULL, NULL, "DURATION", "0",
     "Clock skew tolerated when checking exp and nbf.", NULL},

    {"rate-socket-events", K_RATE, 0, OFF(rate_socket_events), 0, 0, NULL, "Rate limits", "N/DURATION[:BURST]",
     "50/1s:100",
     "Events one socket may send (held in Redis, so across all nodes); over it: rate_limited error acks. "
     "'off' disables.",
     NULL},
    {"rate-user-events", K_RATE, 0, OFF(rate_user_events), 0, 0, NULL, NULL, "N/DURATION[:BURST]", "200/1s:400",
     "Events all sockets of one user may send together.", NULL},
    {"rate-room-publish", K_RATE, 0, OFF(rate_room_publish), 0, 0, NULL, NULL, "N/DURATION[:BURST]", "100/1s:200",
     "$publish calls into one room, from all clients together.", NULL},
    {"rate-connections", K_RATE, 0, OFF(rate_connections), 0, 0, NULL, NULL, "N/DURATION[:BURST]", "50/1s:200",
     "Socket.IO connects from one client address; over it the connect is refused (CONNECT_ERROR rate_limited).", NULL},
    {"rate-api", K_RATE, 0, OFF(rate_api), 0, 0, NULL, NULL, "N/DURATION[:BURST]", "1000/1s:2000",
     "REST calls per API key; over it: 429 with Retry-After.", NULL},
    {"rate-abuse-limit", K_UINT, 0, OFF(rate_abuse_limit), 0, 1000000, NULL, NULL, "N", "50",
     "Rate-limited events in a row after which the socket is disconnected; 0 never disconnects.", NULL},

    {"log-level", K_LEVEL, 0, OFF(log_level), 0, 0, NULL, "Logging", "LEVEL", "info",
     "trace, debug, info, warn, error, fatal or silent.", NULL},
    {"log-rate", K_UINT, 0, OFF(log_rate), 0, 1000000, NULL, NULL, "N", "200",
     "Log lines below error level per second; the rest are dropped and counted (0: no limit).", NULL},
    {"log-client-ips", K_BOOL, 0, OFF(log_client_ips), 0, 0, NULL, NULL, "BOOL", "false",
     "Log client addresses in full instead of masked (a.b.c.0, first 3 IPv6 groups).", NULL},

    {"check-config", K_BOOL, 0, OFF(check_config), 0, 0, NULL, "Modes", NULL, NULL,
     "Validate the configuration, print the result and exit.", NULL},
    {"help", K_HELP, F_NO_ENV, 0, 0, 0, NULL, NULL, NULL, NULL, "Print this help and exit (also -h).", NULL},
    {"version", K_VERSION, F_NO_ENV, 0, 0, 0, NULL, NULL, NULL, NULL, "Print the version and exit (also -v).", NULL},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

enum source { SRC_DEFAULT = 0, SRC_ENV = 1, SRC_ARGV = 2 };

typedef struct parser {
    sb_config_t *cfg;
    char *err;
    size_t errlen;
    unsigned char src[NOPTS]; /* where each setting's current value came from */
} parser_t;

/* ---------- small helpers ---------- */

static void env_name(const opt_t *o, char *out, size_t outlen)
{
    if (o->env != NULL) {
        snprintf(out, outlen, "%s", o->env);
        return;
    }
    size_t n = (size_t)snprintf(out, outlen, "SWITCHBOARD_");
    for (const char *p = o->flag; *p != '\0' && n + 1 < outlen; p++)
        out[n++] = (char)(*p == '-' ? '_' : toupper((unsigned char)*p));
    out[n] = '\0';
}

/* The name the user wrote: the flag or the variable. */
static void setting_name(const opt_t *o, enum source src, char *out, size_t outlen)
{
    if (src == SRC_ENV)
        env_name(o, out, outlen);
    else
        snprintf(out, outlen, "--%s", o->flag);
}

static int failf(parser_t *p, const char *setting, const char *fmt, ...)
{
    char problem[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof(problem), fmt, ap);
    va_end(ap);
    if (p->err != NULL && p->errlen > 0)
        snprintf(p->err, p->errlen, "switchboard: %s: %s", setting, problem);
    return -1;
}

/* A value fit to quote in an error line: at most 60 bytes, printable only. */
static void quote_value(const char *v, char *out, size_t outlen)
{
    size_t n = 0;
    for (; *v != '\0' && n + 4 < outlen && n < 60; v++)
        out[n++] = isprint((unsigned char)*v) ? *v : '?';
    if (*v != '\0' && n + 4 < outlen) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

static int fail_value(parser_t *p, const opt_t *o, enum source src, const char *v, const char *problem)
{
    char name[128], q[80];
    setting_name(o, src, name, sizeof(name));
    if ((o->flags & F_SECRET) || v[0] == '\0')
        return failf(p, name, "%s", problem);
    quote_value(v, q, sizeof(q));
    return failf(p, name, "\"%s\" %s", q, problem);
}

static int parse_digits(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0)
        return SB_EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return SB_EINVAL;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return SB_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Splits "123unit" into the number and the unit. */
static int number_and_unit(const char *s, uint64_t *num, const char **unit)
{
    size_t n = 0;
    if (s == NULL)
        return SB_EINVAL;
    while (s[n] >= '0' && s[n] <= '9')
        n++;
    if (parse_digits(s, n, num) != 0)
        return SB_EINVAL;
    *unit = s + n;
    return 0;
}

static int mul_checked(uint64_t a, uint64_t b, uint64_t *out)
{
    if (b != 0 && a > UINT64_MAX / b)
        return SB_EINVAL;
    *out = a * b;
    return 0;
}

int sb_config_parse_duration(const char *s, uint64_t *out_ms)
{
    uint64_t n, mult;
    const char *unit;
    if (number_and_unit(s, &n, &unit) != 0)
        return SB_EINVAL;
    if (*unit == '\0' || strcmp(unit, "ms") == 0)
        mult = 1;
    else if (strcmp(unit, "s") == 0)
        mult = MS_SECOND;
    else if (strcmp(unit, "m") == 0)
        mult = MS_MINUTE;
    else if (strcmp(unit, "h") == 0)
        mult = MS_HOUR;
    else
        return SB_EINVAL;
    return mul_checked(n, mult, out_ms);
}

int sb_config_parse_size(const char *s, uint64_t *out)
{
    uint64_t n, mult;
    const char *unit;
    if (number_and_unit(s, &n, &unit) != 0)
        return SB_EINVAL;
    if (*unit == '\0')
        mult = 1;
    else if (strcasecmp(unit, "kb") == 0)
        mult = KIB;
    else if (strcasecmp(unit, "mb") == 0)
        mult = MIB;
    else
        return SB_EINVAL;
    return mul_checked(n, mult, out);
}

static int parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"}, *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return SB_EINVAL;
}

static int parse_level(const char *s, int *out)
{
    static const struct {
        const char *name;
        int level;
    } levels[] = {{"trace", SB_LOG_TRACE}, {"debug", SB_LOG_DEBUG}, {"info", SB_LOG_INFO},    {"warn", SB_LOG_WARN},
                  {"error", SB_LOG_ERROR}, {"fatal", SB_LOG_FATAL}, {"silent", SB_LOG_SILENT}};
    for (size_t i = 0; i < SB_ARRAY_SIZE(levels); i++) {
        if (strcasecmp(s, levels[i].name) == 0) {
            *out = levels[i].level;
            return 0;
        }
    }
    return SB_EINVAL;
}

/* ---------- per-value checks ---------- */

static int has_control(const char *v)
{
    for (; *v != '\0'; v++)
        if ((unsigned char)*v < 0x20 || (unsigned char)*v == 0x7f)
            return 1;
    return 0;
}

static const char *check_text(const char *v)
{
    return has_control(v) ? "contains a control character" : NULL;
}

static const char *check_namespace(const char *v)
{
    if (v[0] != '/')
        return "must start with '/'";
    if (strlen(v) > MAX_NAMESPACE_LEN)
        return "is longer than 256 bytes";
    /* ',' separates namespaces in SWITCHBOARD_NAMESPACE and ends the namespace
     * in a Socket.IO packet; ':' separates the parts of our Redis key names
     * (sb:{room:/chat:lobby}), so a namespace containing one would make two
     * different (namespace, room) pairs map to the same key. Braces would
     * break the {hash tag} of those keys. */
    if (strpbrk(v, ",:{}") != NULL)
        return "must not contain ',', ':', '{' or '}'";
    for (const char *p = v; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f)
            return "must not contain spaces or control characters";
    return NULL;
}

static const char *check_api_key(const char *v)
{
    if (strlen(v) > 512)
        return "is longer than 512 bytes";
    /* It travels in an Authorization header: visible ASCII only. */
    for (const char *p = v; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return "must contain only visible ASCII characters (no spaces)";
    return NULL;
}

/* http:// or https:// followed by a non-empty host; returns the part after
 * the host ("" or "/path...", ":port..."), or NULL. */
static const char *after_http_scheme(const char *v)
{
    const char *h;
    if (strncasecmp(v, "http://", 7) == 0)
        h = v + 7;
    else if (strncasecmp(v, "https://", 8) == 0)
        h = v + 8;
    else
        return NULL;
    if (*h == '\0' || *h == '/' || *h == ':' || *h == '?' || *h == '#')
        return NULL;
    for (const char *p = v; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f)
            return NULL;
    return h;
}

static const char *check_cors(const char *v)
{
    if (strcmp(v, "*") == 0)
        return NULL;
    const char *h = after_http_scheme(v);
    if (h == NULL)
        return "must be * or an origin such as https://app.example.com";
    /* Browsers send Origin without a path or a trailing slash; such an entry
     * would never match. */
    if (strpbrk(h, "/?#") != NULL)
        return "must be an origin without a path or trailing '/', such as https://app.example.com";
    return NULL;
}

static const char *check_webhook(const char *v)
{
    const char *eq = strchr(v, '=');
    if (eq == NULL)
        return "must be GLOB=URL, e.g. 'chat:*=https://api.example.com/hook'";
    if (eq == v)
        return "has an empty event pattern before '='";
    if (after_http_scheme(eq + 1) == NULL)
        return "needs an http:// or https:// URL after '='";
    if (has_control(v))
        return "contains a control character";
    return NULL;
}

static const char *check_jwt_alg(const char *v)
{
    static const char *const algs[] = {"HS256", "HS384", "HS512", "RS256", "ES256"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(algs); i++)
        if (strcasecmp(v, algs[i]) == 0)
            return NULL;
    return "is not one of HS256, HS384, HS512, RS256, ES256";
}

static const char *check_prefix(const char *v)
{
    if (strlen(v) > 64)
        return "is longer than 64 bytes";
    /* Braces would create or break Redis Cluster hash tags in every key. */
    for (const char *p = v; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f || *p == '{' || *p == '}')
            return "must not contain spaces, control characters, '{' or '}'";
    return NULL;
}

/* "HOST:PORT", "[v6]:PORT", ":PORT" (any address). */
static const char *parse_listen(const char *v, sb_listen_addr_t *out)
{
    const char *host = v, *port;
    size_t hostlen;
    memset(out, 0, sizeof(*out));
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (close == NULL)
            return "is missing ']' after the IPv6 address";
        if (close[1] != ':')
            return "must be [IPV6]:PORT, e.g. [::1]:8080";
        host = v + 1;
        hostlen = (size_t)(close - host);
        port = close + 2;
        char tmp[64];
        unsigned char a6[16];
        if (hostlen == 0 || hostlen >= sizeof(tmp))
            return "has an invalid IPv6 address";
        memcpy(tmp, host, hostlen);
        tmp[hostlen] = '\0';
        if (inet_pton(AF_INET6, tmp, a6) != 1)
            return "has an invalid IPv6 address";
    } else {
        const char *colon = strrchr(v, ':');
        if (colon == NULL)
            return "must be HOST:PORT, e.g. 127.0.0.1:8080 or :8080";
        hostlen = (size_t)(colon - v);
        port = colon + 1;
        if (memchr(v, ':', hostlen) != NULL)
            return "has an IPv6 address without brackets; write [::1]:8080";
        for (size_t i = 0; i < hostlen; i++) {
            char c = v[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
                return "has an invalid host name";
        }
    }
    if (hostlen >= sizeof(out->host))
        return "has a host name longer than 255 bytes";
    uint64_t p;
    if (parse_digits(port, strlen(port), &p) != 0 || p < 1 || p > 65535)
        return "needs a port from 1 to 65535";
    memcpy(out->host, host, hostlen);
    out->host[hostlen] = '\0';
    out->port = (uint16_t)p;
    return NULL;
}

/* ---------- storing values ---------- */

static void list_clear(sb_strlist_t *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

static int list_push(sb_strlist_t *l, const char *v)
{
    char *copy = strdup(v);
    if (copy == NULL)
        return SB_ENOMEM;
    char **items = realloc(l->items, (l->count + 1) * sizeof(*items));
    if (items == NULL) {
        free(copy);
        return SB_ENOMEM;
    }
    l->items = items;
    l->items[l->count++] = copy;
    return 0;
}

static int list_has(const sb_strlist_t *l, const char *v)
{
    for (size_t i = 0; i < l->count; i++)
        if (strcmp(l->items[i], v) == 0)
            return 1;
    return 0;
}

static int set_default_listen(sb_config_t *cfg)
{
    sb_listen_addr_t *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return SB_ENOMEM;
    memcpy(a->host, "127.0.0.1", sizeof("127.0.0.1"));
    a->port = 8080;
    free(cfg->listen);
    cfg->listen = a;
    cfg->listen_count = 1;
    return 0;
}

/* Stores one value (one list item) of opts[i] from src. */
static int set_one(parser_t *p, size_t i, enum source src, const char *v)
{
    const opt_t *o = &opts[i];
    char *field = (char *)p->cfg + o->off;
    const char *why = NULL;
    uint64_t u = 0;
    char name[128];

    if (strlen(v) > MAX_VALUE_LEN)
        return fail_value(p, o, src, v, "is longer than 4096 bytes");
    if (v[0] == '\0' && !(o->flags & F_EMPTY_OK))
        return fail_value(p, o, src, v, "must not be empty");

    /* The first value from a stronger source replaces the whole list. */
    if (p->src[i] < src) {
        if (o->kind == K_LIST)
            list_clear((sb_strlist_t *)(void *)field);
        if (o->kind == K_LISTEN) {
            free(p->cfg->listen);
            p->cfg->listen = NULL;
            p->cfg->listen_count = 0;
        }
    }
    p->src[i] = (unsigned char)src;

    switch (o->kind) {
    case K_STR: {
        if (o->check != NULL && (why = o->check(v)) != NULL)
            return fail_value(p, o, src, v, why);
        char *copy = strdup(v);
        if (copy == NULL)
            return fail_value(p, o, src, v, "cannot be stored: out of memory");
        if (o->flags & F_UPPER)
            for (char *c = copy; *c != '\0'; c++)
                *c = (char)toupper((unsigned char)*c);
        char **dst = (char **)(void *)field;
        free(*dst);
        *dst = copy;
        return 0;
    }
    case K_LIST: {
        sb_strlist_t *l = (sb_strlist_t *)(void *)field;
        if (o->check != NULL && (why = o->check(v)) != NULL)
            return fail_value(p, o, src, v, why);
        if (list_has(l, v))
            return 0; /* a repeated value changes nothing */
        if (l->count >= MAX_LIST_ITEMS)
            return fail_value(p, o, src, v, "is one value too many (at most 1024)");
        if (list_push(l, v) != 0)
            return fail_value(p, o, src, v, "cannot be stored: out of memory");
        return 0;
    }
    case K_LISTEN: {
        sb_listen_addr_t a;
        if ((why = parse_listen(v, &a)) != NULL)
            return fail_value(p, o, src, v, why);
        sb_config_t *c = p->cfg;
        for (size_t k = 0; k < c->listen_count; k++)
            if (c->listen[k].port == a.port && strcmp(c->listen[k].host, a.host) == 0)
                return 0;
        if (c->listen_count >= MAX_LISTEN)
            return fail_value(p, o, src, v, "is one address too many (at most 64)");
        sb_listen_addr_t *arr = realloc(c->listen, (c->listen_count + 1) * sizeof(*arr));
        if (arr == NULL)
            return fail_value(p, o, src, v, "cannot be stored: out of memory");
        arr[c->listen_count++] = a;
        c->listen = arr;
        return 0;
    }
    case K_DUR:
        if (sb_config_parse_duration(v, &u) != 0)
            return fail_value(p, o, src, v, "is not a duration (examples: 250, 250ms, 25s, 5m, 1h)");
        if (u < o->min || u > o->max) {
            char msg[160];
            if (o->min > 0)
                snprintf(msg, sizeof(msg), "is out of range: must be from %llums to %llums", (unsigned long long)o->min,
                         (unsigned long long)o->max);
            else
                snprintf(msg, sizeof(msg), "is out of range: must be at most %llums", (unsigned long long)o->max);
            return fail_value(p, o, src, v, msg);
        }
        *(uint64_t *)(void *)field = u;
        return 0;
    case K_SIZE:
        if (sb_config_parse_size(v, &u) != 0)
            return fail_value(p, o, src, v, "is not a size (examples: 1000000, 64kb, 4mb)");
        if (u < o->min || u > o->max) {
            char msg[160];
            snprintf(msg, sizeof(msg), "is out of range: must be from %llukb to %llumb",
                     (unsigned long long)(o->min / KIB), (unsigned long long)(o->max / MIB));
            return fail_value(p, o, src, v, msg);
        }
        *(uint64_t *)(void *)field = u;
        return 0;
    case K_COUNT:
    case K_UINT:
        if (parse_digits(v, strlen(v), &u) != 0 || u < o->min || u > o->max) {
            char msg[160];
            snprintf(msg, sizeof(msg), "must be a whole number from %llu to %llu", (unsigned long long)o->min,
                     (unsigned long long)o->max);
            return fail_value(p, o, src, v, msg);
        }
        if (o->kind == K_UINT)
            *(unsigned *)(void *)field = (unsigned)u;
        else
            *(uint64_t *)(void *)field = u;
        return 0;
    case K_BOOL:
        if (parse_bool(v, (int *)(void *)field) != 0)
            return fail_value(p, o, src, v, "must be true or false (also 1/0, yes/no, on/off)");
        return 0;
    case K_LEVEL:
        if (parse_level(v, (int *)(void *)field) != 0)
            return fail_value(p, o, src, v, "must be trace, debug, info, warn, error, fatal or silent");
        return 0;
    case K_RATE:
        if (sb_config_parse_rate(v, (sb_rate_t *)(void *)field) != 0)
            return fail_value(p, o, src, v,
                              "is not a rate: N/DURATION[:BURST] (e.g. 20/1s, 100/1m:200) or off; N and BURST up to "
                              "1000000");
        return 0;
    case K_HELP:
    case K_VERSION:
        break;
    }
    setting_name(o, src, name, sizeof(name));
    return failf(p, name, "cannot be set here");
}

/* Environment lists are comma-separated; spaces around items and empty items
 * (a trailing comma) are ignored. */
static int set_env_list(parser_t *p, size_t i, const char *v)
{
    char item[MAX_VALUE_LEN + 1];
    const char *s = v;
    for (;;) {
        const char *end = strchr(s, ',');
        size_t len = end != NULL ? (size_t)(end - s) : strlen(s);
        while (len > 0 && (*s == ' ' || *s == '\t')) {
            s++;
            len--;
        }
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        if (len > MAX_VALUE_LEN)
            return fail_value(p, &opts[i], SRC_ENV, v, "has an item longer than 4096 bytes");
        if (len > 0) {
            memcpy(item, s, len);
            item[len] = '\0';
            if (set_one(p, i, SRC_ENV, item) != 0)
                return -1;
        }
        if (end == NULL)
            return 0;
        s = end + 1;
    }
}

/* ---------- sources ---------- */

static const opt_t *find_flag(const char *name, size_t len, size_t *idx)
{
    for (size_t i = 0; i < NOPTS; i++) {
        if (strlen(opts[i].flag) == len && memcmp(opts[i].flag, name, len) == 0) {
            *idx = i;
            return &opts[i];
        }
    }
    return NULL;
}

/* Variables the test harnesses export to every child (CMake sets
 * SWITCHBOARD_TEST_* for unit tests and SWITCHBOARD_BIN for the e2e runner):
 * they are not settings, and refusing them would stop every server the tests start. */
static int ignored_env(const char *name, size_t len)
{
    return (len > 17 && memcmp(name, "SWITCHBOARD_TEST_", 17) == 0) ||
           (len > 16 && memcmp(name, "SWITCHBOARD_E2E_", 16) == 0) ||
           (len == 15 && memcmp(name, "SWITCHBOARD_BIN", 15) == 0);
}

static int apply_env(parser_t *p, char **envp)
{
    char ename[128], shown[80];
    if (envp == NULL)
        return 0;
    for (char **e = envp; *e != NULL; e++) {
        if (strncmp(*e, "SWITCHBOARD_", 12) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (eq == NULL)
            continue;
        size_t nlen = (size_t)(eq - *e);
        const char *v = eq + 1;
        if (ignored_env(*e, nlen))
            continue;
        size_t idx = NOPTS;
        for (size_t i = 0; i < NOPTS && idx == NOPTS; i++) {
            if (opts[i].flags & F_NO_ENV)
                continue;
            env_name(&opts[i], ename, sizeof(ename));
            if (strlen(ename) == nlen && memcmp(ename, *e, nlen) == 0)
                idx = i;
        }
        /* SWITCHBOARD_REDIS is what the naming rule gives for --redis; accept
         * it next to the documented SWITCHBOARD_REDIS_URL. */
        if (idx == NOPTS && nlen == 17 && memcmp(*e, "SWITCHBOARD_REDIS", 17) == 0)
            find_flag("redis", 5, &idx);
        if (idx == NOPTS) {
            quote_value(*e, shown, sizeof(shown));
            char *cut = strchr(shown, '=');
            if (cut != NULL)
                *cut = '\0';
            return failf(p, shown, "unknown variable (see switchboard --help)");
        }
        /* Empty means unset, so compose files can pass ${VAR:-} through. */
        if (v[0] == '\0')
            continue;
        if (opts[idx].kind == K_LIST || opts[idx].kind == K_LISTEN) {
            if (set_env_list(p, idx, v) != 0)
                return -1;
        } else if (set_one(p, idx, SRC_ENV, v) != 0) {
            return -1;
        }
    }
    return 0;
}

static int apply_argv(parser_t *p, int argc, char **argv)
{
    char shown[80];
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            quote_value(arg, shown, sizeof(shown));
            return failf(p, shown, "unexpected argument (options start with --; see --help)");
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
        size_t idx;
        const opt_t *o = find_flag(name, nlen, &idx);
        if (o == NULL) {
            quote_value(arg, shown, sizeof(shown));
            char *cut = strchr(shown, '=');
            if (cut != NULL)
                *cut = '\0';
            return failf(p, shown, "unknown option (see switchboard --help)");
        }
        const char *v;
        if (eq != NULL) {
            v = eq + 1;
        } else if (o->kind == K_BOOL) {
            /* "--log-client-ips" alone means true; a following boolean word
             * is its value ("--allow-polling false"). */
            int dummy;
            if (a + 1 < argc && parse_bool(argv[a + 1], &dummy) == 0)
                v = argv[++a];
            else
                v = "true";
        } else {
            if (a + 1 >= argc || strncmp(argv[a + 1], "--", 2) == 0)
                return failf(p, arg, "needs a value (--%s %s)", o->flag, o->metavar != NULL ? o->metavar : "VALUE");
            v = argv[++a];
        }
        if (set_one(p, idx, SRC_ARGV, v) != 0)
            return -1;
    }
    return 0;
}

/* ---------- checks across settings ---------- */

static int readable(parser_t *p, size_t idx, const char *path, const char *what)
{
    char name[128];
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        (void)fclose(f);
        return 0;
    }
    int e = errno;
    setting_name(&opts[idx], (enum source)p->src[idx], name, sizeof(name));
    char q[80];
    quote_value(path, q, sizeof(q));
    return failf(p, name, "cannot read %s \"%s\": %s", what, q, strerror(e));
}

static size_t idx_of(const char *flag)
{
    size_t idx = 0;
    find_flag(flag, strlen(flag), &idx);
    return idx;
}

static void name_of(parser_t *p, const char *flag, char *out, size_t outlen)
{
    size_t i = idx_of(flag);
    setting_name(&opts[i], (enum source)p->src[i], out, outlen);
}

static int finish(parser_t *p)
{
    sb_config_t *c = p->cfg;
    char name[128];

    if (c->threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->threads = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (unsigned)n;
    }
    if (c->listen_count == 0 && set_default_listen(c) != 0)
        return failf(p, "--listen", "cannot be stored: out of memory");
    if (c->redis_prefix == NULL || c->jwt_alg == NULL)
        return failf(p, c->jwt_alg == NULL ? "--jwt-alg" : "--redis-prefix", "cannot be stored: out of memory");

    if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
        int cert = c->tls_cert != NULL;
        name_of(p, cert ? "tls-cert" : "tls-key", name, sizeof(name));
        return failf(p, name, "is given without --%s (give both or neither)", cert ? "tls-key" : "tls-cert");
    }
    if (c->tls_cert != NULL && readable(p, idx_of("tls-cert"), c->tls_cert, "certificate") != 0)
        return -1;
    if (c->tls_key != NULL && readable(p, idx_of("tls-key"), c->tls_key, "private key") != 0)
        return -1;

    if (c->redis_url != NULL) {
        sb_redis_addr_t addr;
        const char *why = "invalid URL";
        int rc = sb_redis_url_parse(c->redis_url, &addr, &why);
        memset(&addr, 0, sizeof(addr)); /* it may hold a password */
        if (rc != 0) {
            /* The URL may carry a password: name the problem, not the value. */
            name_of(p, "redis", name, sizeof(name));
            return failf(p, name, "%s", why != NULL ? why : "invalid URL");
        }
    }

    /* A round must see new figures (one heartbeat) or it would act twice on the same counts and overshoot. */
    if (c->rebalance && c->rebalance_interval_ms < c->heartbeat_interval_ms) {
        size_t ri = idx_of("rebalance-interval");
        if (p->src[ri] == SRC_DEFAULT) {
            c->rebalance_interval_ms = c->heartbeat_interval_ms;
        } else {
            setting_name(&opts[ri], (enum source)p->src[ri], name, sizeof(name));
            return failf(p, name, "must be at least --heartbeat-interval (%llu ms) while --rebalance is on",
                         (unsigned long long)c->heartbeat_interval_ms);
        }
    }

    if (c->api_keys_file != NULL && readable(p, idx_of("api-keys-file"), c->api_keys_file, "API keys file") != 0)
        return -1;

    /* The algorithm is pinned (libjwt would otherwise trust the token's own
     * alg), so the key material must match the family. */
    int hs = strncmp(c->jwt_alg, "HS", 2) == 0;
    if (c->jwt_public_key != NULL) {
        if (readable(p, idx_of("jwt-public-key"), c->jwt_public_key, "public key") != 0)
            return -1;
        if (hs) {
            name_of(p, "jwt-public-key", name, sizeof(name));
            return failf(p, name, "is for RS256/ES256 but --jwt-alg is %s (set --jwt-alg RS256 or ES256)", c->jwt_alg);
        }
    }
    if (c->jwt_secret != NULL && !hs) {
        name_of(p, "jwt-secret", name, sizeof(name));
        return failf(p, name, "is for HS256/HS384/HS512 but --jwt-alg is %s (use --jwt-public-key)", c->jwt_alg);
    }
    size_t ai = idx_of("jwt-alg");
    if (p->src[ai] != SRC_DEFAULT && c->jwt_secret == NULL && c->jwt_public_key == NULL) {
        /* Choosing an algorithm but no key would silently leave clients anonymous. */
        setting_name(&opts[ai], (enum source)p->src[ai], name, sizeof(name));
        return failf(p, name, "%s needs %s", c->jwt_alg, hs ? "--jwt-secret" : "--jwt-public-key");
    }
    return 0;
}

/* ---------- public API ---------- */

int sb_config_parse_rate(const char *s, sb_rate_t *out)
{
    if (strcasecmp(s, "off") == 0 || strcmp(s, "0") == 0) {
        *out = (sb_rate_t){0, 0, 0};
        return 0;
    }
    const char *slash = strchr(s, '/');
    if (slash == NULL || slash == s)
        return SB_EINVAL;
    uint64_t n, burst, period;
    if (parse_digits(s, (size_t)(slash - s), &n) != 0 || n < 1 || n > 1000000)
        return SB_EINVAL;
    const char *colon = strchr(slash + 1, ':');
    char dur[64];
    size_t dl = colon != NULL ? (size_t)(colon - slash - 1) : strlen(slash + 1);
    if (dl == 0 || dl >= sizeof(dur))
        return SB_EINVAL;
    memcpy(dur, slash + 1, dl);
    dur[dl] = '\0';
    if (sb_config_parse_duration(dur, &period) != 0 || period < 1 || period > MS_DAY)
        return SB_EINVAL;
    burst = n;
    if (colon != NULL && (parse_digits(colon + 1, strlen(colon + 1), &burst) != 0 || burst < 1 || burst > 1000000))
        return SB_EINVAL;
    *out = (sb_rate_t){n, period, burst};
    return 0;
}

void sb_config_init(sb_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    (void)set_default_listen(cfg); /* retried by sb_config_parse when allocation failed */
    cfg->threads = 0;
    cfg->redis_prefix = strdup("sb:");
    cfg->redis_timeout_ms = 5000;
    cfg->events_maxlen = 100000;
    cfg->bus_maxlen = 100000;
    cfg->bus_block_ms = 5000;
    cfg->bus_count = 256;
    cfg->inbox_maxlen = 1000;
    cfg->inbox_max_age_ms = 24 * MS_HOUR;
    cfg->heartbeat_interval_ms = 1000;
    cfg->rebalance = 1;
    cfg->rebalance_interval_ms = 10000;
    cfg->rebalance_threshold = 20;
    cfg->rebalance_rate = 20;
    cfg->ping_interval_ms = 25000;
    cfg->ping_timeout_ms = 20000;
    cfg->connect_timeout_ms = 45000;
    cfg->upgrade_timeout_ms = 10000;
    cfg->max_payload = 1000000;
    cfg->max_attachments = 10;
    cfg->max_send_queue = 4 * MIB;
    cfg->ack_timeout_ms = 10000;
    cfg->recovery_window_ms = 120000;
    cfg->drain_timeout_ms = 30000;
    cfg->allow_upgrades = 1;
    cfg->allow_polling = 1;
    cfg->jwt_alg = strdup("HS256");
    cfg->jwt_leeway_ms = 0;
    cfg->jwt_expiry_warning_ms = 60000;
    cfg->log_level = SB_LOG_INFO;
    cfg->log_client_ips = 0;
    cfg->log_rate = 200;
    cfg->check_config = 0;
    cfg->webhook_lifecycle = 0;
    cfg->webhook_timeout_ms = 5000;
    cfg->webhook_retries = 3;
    cfg->webhook_backoff_ms = 100;
    cfg->webhook_backoff_max_ms = 5000;
    cfg->webhook_max_inflight = 64;
    cfg->webhook_queue = 10000;
    cfg->webhook_breaker_failures = 5;
    cfg->webhook_breaker_window_ms = 10000;
    cfg->webhook_breaker_cooldown_ms = 5000;
    cfg->events_stream = 1;
    cfg->api_max_body = 1 * MIB;
    cfg->loop_lag_warn_ms = 200;
    cfg->http_timeout_ms = 10000;
    cfg->loop_lag_max_ms = 0;
#ifdef SB_DASHBOARD_DIR
    cfg->dashboard_dir = strdup(SB_DASHBOARD_DIR);
#endif
    cfg->rate_socket_events = (sb_rate_t){50, 1000, 100};
    cfg->rate_user_events = (sb_rate_t){200, 1000, 400};
    cfg->rate_room_publish = (sb_rate_t){100, 1000, 200};
    cfg->rate_connections = (sb_rate_t){50, 1000, 200};
    cfg->rate_api = (sb_rate_t){1000, 1000, 2000};
    cfg->rate_abuse_limit = 50;
}

int sb_config_parse(sb_config_t *cfg, int argc, char **argv, char **envp, char *err, size_t errlen)
{
    parser_t p;
    memset(&p, 0, sizeof(p));
    p.cfg = cfg;
    p.err = err;
    p.errlen = errlen;
    if (err != NULL && errlen > 0)
        err[0] = '\0';

    /* --help and --version win over everything, even a broken environment:
     * that is when people need them. */
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) {
            sb_config_print_help(stdout);
            fflush(stdout);
            return 1;
        }
        if (strcmp(argv[a], "--version") == 0 || strcmp(argv[a], "-v") == 0) {
            fputs("switchboard " SB_VERSION "\n", stdout);
            fflush(stdout);
            return 1;
        }
    }
    if (apply_env(&p, envp) != 0 || apply_argv(&p, argc, argv) != 0 || finish(&p) != 0)
        return 2;
    return 0;
}

/* Prints text indented by 6 columns, wrapped at 80. */
static void print_wrapped(FILE *f, const char *text)
{
    const size_t width = 80 - 6;
    while (*text != '\0') {
        size_t len = strlen(text);
        if (len > width) {
            len = width;
            while (len > 0 && text[len] != ' ')
                len--;
            if (len == 0)
                len = width;
        }
        fprintf(f, "      %.*s\n", (int)len, text);
        text += len;
        while (*text == ' ')
            text++;
    }
}

void sb_config_print_help(void *file)
{
    FILE *f = file;
    char ename[128];

    fputs("switchboard " SB_VERSION " - Socket.IO v4 gateway with its state in Redis\n"
          "\n"
          "Usage: switchboard [--option VALUE | --option=VALUE]...\n"
          "\n"
          "Every option can also be set with the environment variable shown next to it;\n"
          "a flag wins over the variable. Repeatable options take a comma-separated list\n"
          "in the variable. Durations are milliseconds unless a unit is given (250ms, 25s,\n"
          "5m, 1h); sizes are bytes or kb/mb (1024-based); booleans are true/false,\n"
          "1/0, yes/no or on/off (a boolean flag given alone means true).\n",
          f);
    for (size_t i = 0; i < NOPTS; i++) {
        const opt_t *o = &opts[i];
        char left[96];
        if (o->group != NULL)
            fprintf(f, "\n%s:\n", o->group);
        if (o->kind == K_HELP || o->kind == K_VERSION) {
            snprintf(left, sizeof(left), "--%s", o->flag);
            fprintf(f, "  %s\n", left);
            print_wrapped(f, o->help);
            continue;
        }
        env_name(o, ename, sizeof(ename));
        if (o->metavar != NULL)
            snprintf(left, sizeof(left), "--%s %s", o->flag, o->metavar);
        else
            snprintf(left, sizeof(left), "--%s", o->flag);
        fprintf(f, "  %-36s %s\n", left, ename);
        print_wrapped(f, o->help);
        if (o->def != NULL)
            fprintf(f, "      Default: %s\n", o->def);
    }
    fputs("\nBad configuration prints one line naming the setting and exits with status 2.\n", f);
}

void sb_config_free(sb_config_t *cfg)
{
    free(cfg->listen);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    free(cfg->dashboard_dir);
    list_clear(&cfg->cors_origins);
    free(cfg->redis_url);
    free(cfg->redis_prefix);
    list_clear(&cfg->namespaces);
    list_clear(&cfg->api_keys);
    free(cfg->api_keys_file);
    list_clear(&cfg->webhooks);
    free(cfg->jwt_alg);
    free(cfg->jwt_secret);
    free(cfg->jwt_public_key);
    free(cfg->jwt_issuer);
    free(cfg->jwt_audience);
    memset(cfg, 0, sizeof(*cfg));
}
