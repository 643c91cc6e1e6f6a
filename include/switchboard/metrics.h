/*
 * metrics.h — Prometheus metrics (CONTRACT §7, issue 6).
 *
 * One process-wide registry. Every series is registered once at start-up
 * (before the workers run) with its full label set fixed, e.g.
 *   sb_metrics_series(m, SB_COUNTER, "switchboard_disconnects_total", "…", "reason=\"ping timeout\"", NULL, 0)
 * and returns a handle. Updates are sharded per worker: a worker only ever
 * writes its own slot (index = worker idx; index SB_METRICS_MAX_WORKERS - 1 is
 * for the main thread and others), so the hot path is one relaxed atomic add
 * on a cache line of its own, no lock. Rendering sums the shards.
 *
 * Label values are bounded by construction (never a room, user or socket
 * name): the caller registers one series per value it will ever use.
 */
#ifndef SWITCHBOARD_METRICS_H
#define SWITCHBOARD_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "switchboard/common.h"

#define SB_METRICS_MAX_WORKERS 65

typedef enum sb_metric_kind { SB_COUNTER, SB_GAUGE, SB_HISTOGRAM } sb_metric_kind_t;

typedef struct sb_metrics sb_metrics_t;
typedef struct sb_metric sb_metric_t;

sb_metrics_t *sb_metrics_create(void);
void sb_metrics_free(sb_metrics_t *m);

/* Registers (or returns the already registered) series `name{labels}`.
 * labels: NULL or the Prometheus label text without braces, e.g.
 * "transport=\"websocket\"" (the caller escapes values). All series of one
 * name must have the same kind and help. Histograms take `buckets` (upper
 * bounds, ascending, in the metric's unit; +Inf is implied); counters and
 * gauges pass NULL/0. Returns NULL on a misuse (kind/help mismatch, bad
 * name) or allocation failure — callers may pass NULL handles to the update
 * functions, which then do nothing. Not thread-safe: call before the workers start. */
sb_metric_t *sb_metrics_series(sb_metrics_t *m, sb_metric_kind_t kind, const char *name, const char *help,
                               const char *labels, const double *buckets, size_t nbuckets);

/* Updates from shard `shard` (a worker index, or SB_METRICS_MAX_WORKERS - 1). */
void sb_metric_inc(sb_metric_t *s, unsigned shard);
void sb_metric_add(sb_metric_t *s, unsigned shard, double v);
/* Gauges: each shard holds its own value; the rendered value is the sum of the shards. */
void sb_metric_set(sb_metric_t *s, unsigned shard, double v);
void sb_metric_observe(sb_metric_t *s, unsigned shard, double v);

/* The current total of a counter or gauge (sum of shards); for a histogram the
 * number of observations; NaN for a NULL handle. (Counters ignore negative or
 * NaN adds, histograms ignore NaN observations; shards >= SB_METRICS_MAX_WORKERS
 * count as SB_METRICS_MAX_WORKERS - 1.) */
double sb_metric_value(const sb_metric_t *s);
/* A quantile (0..1) of a histogram, estimated from its buckets (linear within
 * a bucket, as Prometheus' histogram_quantile does), over everything observed
 * since the last call of sb_metric_quantile_reset on it; NaN when empty. */
double sb_metric_quantile(const sb_metric_t *s, double q);
void sb_metric_quantile_reset(sb_metric_t *s);

/* Appends the Prometheus text format (version 0.0.4) of every series, grouped
 * by name with one # HELP and # TYPE each, followed by the process_* metrics
 * (process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds) read from /proc/self. Thread-safe (reads only). */
int sb_metrics_render(sb_metrics_t *m, sb_buf_t *out);

/* Appends v escaped as a label value (backslash, double quote and newline get a
 * backslash), without the quotes, for building the `labels` text of
 * sb_metrics_series. On failure (SB_ETOOBIG, SB_ENOMEM) nothing is appended. */
int sb_metrics_append_label_value(sb_buf_t *out, const char *v);
/* Appends a sample value as the text format spells it: whole numbers without
 * exponent, others as the shortest %g that reads back exactly, NaN, +Inf, -Inf. */
int sb_metrics_append_double(sb_buf_t *out, double v);

/* Bucket sets for the usual units. */
extern const double SB_METRICS_LATENCY_BUCKETS[]; /* seconds: 0.0005 … 10 */
extern const size_t SB_METRICS_LATENCY_NBUCKETS;

#endif
