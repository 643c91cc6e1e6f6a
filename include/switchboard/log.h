/*
 * log.h — JSON-line logging in pino's shape:
 *   {"level":30,"time":1700000000000,"pid":123,"hostname":"h","msg":"…",<fields>}
 * Levels are pino's numbers (trace 10, debug 20, info 30, warn 40, error 50,
 * fatal 60). Lines go to stderr with one write(2) each, so lines from several
 * threads never interleave. Never log tokens, API keys or message payloads;
 * client addresses go through sb_log_mask_addr.
 */
#ifndef SWITCHBOARD_LOG_H
#define SWITCHBOARD_LOG_H

#define SB_LOG_TRACE 10
#define SB_LOG_DEBUG 20
#define SB_LOG_INFO 30
#define SB_LOG_WARN 40
#define SB_LOG_ERROR 50
#define SB_LOG_FATAL 60
#define SB_LOG_SILENT 100

/* Sets the minimum level and whether client addresses are logged in full.
 * Call once before threads start. */
void sb_log_init(int level, int show_client_ips);
int sb_log_enabled(int level);

/* Writes one line. Variadic part: pairs of (const char *key, const char *value)
 * ending with a NULL key; values are written as JSON strings (escaped), NULL
 * values are skipped. Keys starting with '#' are written as raw JSON values
 * (the '#' dropped), for numbers: sb_log(SB_LOG_INFO, "up", "#port", "8080", NULL). */
void sb_log(int level, const char *msg, ...);

/* At most this many lines below error level per second (0: no limit; default 200); the rest are dropped and
 * counted, and one error line reports how many once the next second starts. Thread-safe. */
void sb_log_set_rate(unsigned lines_per_second);
/* Lines suppressed by the rate since the start. */
unsigned long long sb_log_suppressed(void);

/* Masks a client address for logs unless configured to show it:
 * IPv4 a.b.c.d -> a.b.c.0, IPv6 keeps the first 3 groups. Writes to out. */
void sb_log_mask_addr(const char *addr, char *out, unsigned long outlen);

#endif
