/*
 * metrics.c — the Prometheus registry (see include/switchboard/metrics.h).
 *
 * The structure (families, series, buckets) is built before the workers start
 * and never changes afterwards, so readers need no lock. Every series owns one
 * 64-byte-aligned slot per shard; a worker writes only its own slot with relaxed
 * atomics, so there is no false sharing and no contention on the hot path.
 * The shard for the main thread and "others" may be written by several threads,
 * which is why even single-writer updates use atomic read-modify-write.
 *
 * Values are kept in two parts per slot: an int64 for the integral updates
 * (inc, add of whole numbers — the common case, one fetch_add) and a double
 * stored as its uint64 bit pattern for fractional adds (a CAS loop). A reader
 * sums both parts over all shards; it may see a shard mid-update, which
 * Prometheus tolerates (values are sampled).
 */
#include "switchboard/metrics.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define CACHE_LINE 64
#define MAX_FAMILIES 512 /* registration is bounded: labels never carry user data */
#define MAX_SERIES_PER_FAMILY 256
#define MAX_NAME_LEN 200
#define MAX_HELP_LEN 1024
#define MAX_LABELS_LEN 1024
#define MAX_BUCKETS 64
#define SHARD_OTHERS (SB_METRICS_MAX_WORKERS - 1)
/* Doubles that are whole and below 2^53 are added to the integer part exactly. */
#define EXACT_INT_LIMIT 9007199254740992.0

const double SB_METRICS_LATENCY_BUCKETS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const size_t SB_METRICS_LATENCY_NBUCKETS = SB_ARRAY_SIZE(SB_METRICS_LATENCY_BUCKETS);

/* One shard of a counter or gauge: its own cache line. */
typedef struct scalar_slot {
    _Atomic int64_t n;  /* integral part */
    _Atomic uint64_t d; /* fractional part: bit pattern of a double */
    char pad[CACHE_LINE - sizeof(int64_t) - sizeof(uint64_t)];
} scalar_slot_t;

_Static_assert(sizeof(scalar_slot_t) == CACHE_LINE, "one slot per cache line");

struct family;

struct sb_metric {
    struct family *fam;
    char *labels; /* NULL when the series has none */
    /* Counters/gauges: SB_METRICS_MAX_WORKERS scalar slots.
     * Histograms: per shard `stride` uint64 words: counts of each bucket (not
     * cumulative, the last one is +Inf) then the bit pattern of the sum. */
    void *slots;
    size_t stride; /* words per histogram shard, a multiple of a cache line */
    /* Histograms: per-bucket totals when sb_metric_quantile_reset last ran; the
     * quantile window is "now minus this", so observe() pays nothing for it. */
    _Atomic uint64_t *qbase;
};

struct family {
    char *name;
    char *help;
    sb_metric_kind_t kind;
    double *buckets; /* histograms: ascending finite upper bounds */
    size_t nbuckets;
    sb_metric_t **series;
    size_t nseries;
};

struct sb_metrics {
    struct family **fams;
    size_t nfams;
};

/* ---- small helpers ---- */

static double bits_to_double(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

/* Adds v to a double stored as bits. A CAS loop because the "others" shard may
 * have several writers. */
static void atomic_add_double(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    for (;;) {
        uint64_t nw = double_to_bits(bits_to_double(old) + v);
        if (atomic_compare_exchange_weak_explicit(p, &old, nw, memory_order_relaxed, memory_order_relaxed))
            return;
    }
}

static unsigned clamp_shard(unsigned shard)
{
    /* An out-of-range shard is a caller bug; folding it into the shared shard
     * keeps the update rather than writing out of bounds. */
    return shard < SB_METRICS_MAX_WORKERS ? shard : SHARD_OTHERS;
}

static scalar_slot_t *scalar_slot(const sb_metric_t *s, unsigned shard)
{
    return (scalar_slot_t *)s->slots + clamp_shard(shard);
}

static _Atomic uint64_t *hist_shard(const sb_metric_t *s, unsigned shard)
{
    return (_Atomic uint64_t *)s->slots + (size_t)shard * s->stride;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

/* Prometheus metric names: [a-zA-Z_:][a-zA-Z0-9_:]* */
static bool valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > MAX_NAME_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        bool ok = isalpha(c) || c == '_' || c == ':' || (i > 0 && isdigit(c));
        if (!ok || c > 0x7f)
            return false;
    }
    return true;
}

/* Checks the label text the caller built: name="value"(,name="value")*, values
 * escaped (\\, \", \n only), label names [a-zA-Z_][a-zA-Z0-9_]*, not starting
 * with "__" (reserved), and no `le` on a histogram (we add it). A malformed
 * label would make the whole /metrics page unparseable, so it is refused at
 * registration instead. */
static bool valid_labels(const char *l, bool histogram)
{
    size_t n = strlen(l);
    if (n == 0 || n > MAX_LABELS_LEN)
        return false;
    const char *p = l;
    for (;;) {
        const char *start = p;
        if (!(isalpha((unsigned char)*p) || *p == '_'))
            return false;
        while (isalnum((unsigned char)*p) || *p == '_')
            p++;
        size_t len = (size_t)(p - start);
        if (len >= 2 && start[0] == '_' && start[1] == '_')
            return false;
        if (histogram && len == 2 && memcmp(start, "le", 2) == 0)
            return false;
        if (*p++ != '=' || *p++ != '"')
            return false;
        for (;;) {
            if (*p == '\0' || *p == '\n')
                return false;
            if (*p == '"')
                break;
            if (*p == '\\') {
                p++;
                if (*p != '\\' && *p != '"' && *p != 'n')
                    return false;
            }
            p++;
        }
        p++; /* closing quote */
        if (*p == '\0')
            return true;
        if (*p++ != ',')
            return false;
    }
}

/* Names this module renders itself; a registered family of that name would
 * duplicate it and make the page invalid. */
static bool reserved_name(const char *name)
{
    static const char *const own[] = {"process_cpu_seconds_total",
                                      "process_resident_memory_bytes",
                                      "process_virtual_memory_bytes",
                                      "process_open_fds",
                                      "process_max_fds",
                                      "process_start_time_seconds"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(own); i++)
        if (strcmp(name, own[i]) == 0)
            return true;
    return false;
}

/* True when `a` is `b` followed by one of the series suffixes a histogram uses. */
static bool is_hist_suffix_of(const char *a, const char *b)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    size_t bl = strlen(b);
    if (strncmp(a, b, bl) != 0)
        return false;
    for (size_t i = 0; i < SB_ARRAY_SIZE(suffixes); i++)
        if (strcmp(a + bl, suffixes[i]) == 0)
            return true;
    return false;
}

/* ---- lifecycle ---- */

sb_metrics_t *sb_metrics_create(void)
{
    return calloc(1, sizeof(sb_metrics_t));
}

static void series_free(sb_metric_t *s)
{
    if (s == NULL)
        return;
    free(s->labels);
    free(s->slots);
    free(s->qbase);
    free(s);
}

static void family_free(struct family *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->nseries; i++)
        series_free(f->series[i]);
    free(f->series);
    free(f->buckets);
    free(f->name);
    free(f->help);
    free(f);
}

void sb_metrics_free(sb_metrics_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nfams; i++)
        family_free(m->fams[i]);
    free(m->fams);
    free(m);
}

/* ---- registration ---- */

static struct family *find_family(sb_metrics_t *m, const char *name)
{
    for (size_t i = 0; i < m->nfams; i++)
        if (strcmp(m->fams[i]->name, name) == 0)
            return m->fams[i];
    return NULL;
}

static bool same_labels(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static struct family *family_new(sb_metrics_t *m, sb_metric_kind_t kind, const char *name, const char *help,
                                 const double *buckets, size_t nbuckets)
{
    if (m->nfams >= MAX_FAMILIES)
        return NULL;
    for (size_t i = 0; i < m->nfams; i++) {
        const struct family *o = m->fams[i];
        if ((o->kind == SB_HISTOGRAM && is_hist_suffix_of(name, o->name)) ||
            (kind == SB_HISTOGRAM && is_hist_suffix_of(o->name, name)))
            return NULL;
    }
    struct family *f = calloc(1, sizeof *f);
    struct family **fams = realloc(m->fams, (m->nfams + 1) * sizeof *fams);
    if (fams != NULL)
        m->fams = fams;
    if (f == NULL || fams == NULL)
        goto fail;
    f->kind = kind;
    f->name = dup_str(name);
    f->help = dup_str(help);
    if (f->name == NULL || f->help == NULL)
        goto fail;
    if (kind == SB_HISTOGRAM) {
        f->buckets = malloc(nbuckets * sizeof(double));
        if (f->buckets == NULL)
            goto fail;
        memcpy(f->buckets, buckets, nbuckets * sizeof(double));
        f->nbuckets = nbuckets;
    }
    m->fams[m->nfams++] = f;
    return f;
fail:
    family_free(f);
    return NULL;
}

static sb_metric_t *series_new(struct family *f, const char *labels)
{
    if (f->nseries >= MAX_SERIES_PER_FAMILY)
        return NULL;
    sb_metric_t **arr = realloc(f->series, (f->nseries + 1) * sizeof *arr);
    if (arr == NULL)
        return NULL;
    f->series = arr;
    sb_metric_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->fam = f;
    size_t bytes;
    if (f->kind == SB_HISTOGRAM) {
        size_t words = f->nbuckets + 2; /* buckets, +Inf, sum */
        size_t per_line = CACHE_LINE / sizeof(uint64_t);
        s->stride = (words + per_line - 1) / per_line * per_line;
        bytes = s->stride * sizeof(uint64_t) * SB_METRICS_MAX_WORKERS;
        s->qbase = calloc(f->nbuckets + 1, sizeof *s->qbase);
        if (s->qbase == NULL)
            goto fail;
    } else {
        bytes = sizeof(scalar_slot_t) * SB_METRICS_MAX_WORKERS;
    }
    s->slots = aligned_alloc(CACHE_LINE, bytes); /* bytes is a multiple of CACHE_LINE */
    if (s->slots == NULL)
        goto fail;
    /* All-zero bits are 0 for the integers and +0.0 for the doubles. */
    memset(s->slots, 0, bytes);
    if (labels != NULL && (s->labels = dup_str(labels)) == NULL)
        goto fail;
    f->series[f->nseries++] = s;
    return s;
fail:
    series_free(s);
    return NULL;
}

sb_metric_t *sb_metrics_series(sb_metrics_t *m, sb_metric_kind_t kind, const char *name, const char *help,
                               const char *labels, const double *buckets, size_t nbuckets)
{
    if (m == NULL || name == NULL || help == NULL || !valid_name(name) || reserved_name(name))
        return NULL;
    if (kind != SB_COUNTER && kind != SB_GAUGE && kind != SB_HISTOGRAM)
        return NULL;
    if (strlen(help) > MAX_HELP_LEN)
        return NULL;
    if (labels != NULL && labels[0] == '\0')
        labels = NULL; /* "" and NULL both mean "no labels": one series, not two */
    if (labels != NULL && !valid_labels(labels, kind == SB_HISTOGRAM))
        return NULL;
    if (kind == SB_HISTOGRAM) {
        if (buckets == NULL || nbuckets == 0 || nbuckets > MAX_BUCKETS)
            return NULL;
        for (size_t i = 0; i < nbuckets; i++)
            if (!isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])))
                return NULL;
    } else if (buckets != NULL || nbuckets != 0) {
        return NULL;
    }

    struct family *f = find_family(m, name);
    if (f != NULL) {
        if (f->kind != kind || strcmp(f->help, help) != 0)
            return NULL;
        if (kind == SB_HISTOGRAM &&
            (f->nbuckets != nbuckets || memcmp(f->buckets, buckets, nbuckets * sizeof(double)) != 0))
            return NULL;
        for (size_t i = 0; i < f->nseries; i++)
            if (same_labels(f->series[i]->labels, labels))
                return f->series[i];
    } else {
        f = family_new(m, kind, name, help, buckets, nbuckets);
        if (f == NULL)
            return NULL;
    }
    return series_new(f, labels);
}

/* ---- updates ---- */

void sb_metric_inc(sb_metric_t *s, unsigned shard)
{
    if (s == NULL || s->fam->kind == SB_HISTOGRAM)
        return;
    atomic_fetch_add_explicit(&scalar_slot(s, shard)->n, 1, memory_order_relaxed);
}

void sb_metric_add(sb_metric_t *s, unsigned shard, double v)
{
    if (s == NULL || s->fam->kind == SB_HISTOGRAM || isnan(v))
        return;
    if (s->fam->kind == SB_COUNTER && v < 0)
        return; /* counters only go up; a negative add would break rate() */
    scalar_slot_t *slot = scalar_slot(s, shard);
    if (v == trunc(v) && fabs(v) < EXACT_INT_LIMIT)
        atomic_fetch_add_explicit(&slot->n, (int64_t)v, memory_order_relaxed);
    else
        atomic_add_double(&slot->d, v);
}

void sb_metric_set(sb_metric_t *s, unsigned shard, double v)
{
    if (s == NULL || s->fam->kind != SB_GAUGE)
        return;
    scalar_slot_t *slot = scalar_slot(s, shard);
    /* Two stores, not one atomic step: a reader may briefly see the old integer
     * part with the new fraction. Gauges are sampled, so that is harmless. */
    atomic_store_explicit(&slot->d, double_to_bits(v), memory_order_relaxed);
    atomic_store_explicit(&slot->n, 0, memory_order_relaxed);
}

static size_t bucket_index(const struct family *f, double v)
{
    /* Binary search for the first bound >= v (Prometheus' `le` semantics). */
    size_t lo = 0, hi = f->nbuckets;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v <= f->buckets[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo; /* nbuckets means +Inf */
}

void sb_metric_observe(sb_metric_t *s, unsigned shard, double v)
{
    if (s == NULL || s->fam->kind != SB_HISTOGRAM || isnan(v))
        return; /* a NaN would poison _sum forever */
    _Atomic uint64_t *h = hist_shard(s, clamp_shard(shard));
    atomic_fetch_add_explicit(&h[bucket_index(s->fam, v)], 1, memory_order_relaxed);
    atomic_add_double(&h[s->fam->nbuckets + 1], v);
}

/* ---- reading ---- */

static double scalar_total(const sb_metric_t *s)
{
    int64_t n = 0;
    double d = 0;
    for (unsigned i = 0; i < SB_METRICS_MAX_WORKERS; i++) {
        const scalar_slot_t *slot = scalar_slot(s, i);
        /* Wrapping sum: shards of a gauge may be negative individually. */
        n = (int64_t)((uint64_t)n + (uint64_t)atomic_load_explicit(&slot->n, memory_order_relaxed));
        d += bits_to_double(atomic_load_explicit(&slot->d, memory_order_relaxed));
    }
    return (double)n + d;
}

/* Per-bucket (not cumulative) totals over the shards, +Inf last; returns the sum. */
static double hist_totals(const sb_metric_t *s, uint64_t *counts)
{
    size_t nb = s->fam->nbuckets + 1;
    double sum = 0;
    memset(counts, 0, nb * sizeof *counts);
    for (unsigned i = 0; i < SB_METRICS_MAX_WORKERS; i++) {
        _Atomic uint64_t *h = hist_shard(s, i);
        for (size_t b = 0; b < nb; b++)
            counts[b] += atomic_load_explicit(&h[b], memory_order_relaxed);
        sum += bits_to_double(atomic_load_explicit(&h[nb], memory_order_relaxed));
    }
    return sum;
}

double sb_metric_value(const sb_metric_t *s)
{
    if (s == NULL)
        return NAN;
    if (s->fam->kind != SB_HISTOGRAM)
        return scalar_total(s);
    uint64_t counts[MAX_BUCKETS + 1];
    hist_totals(s, counts);
    uint64_t total = 0;
    for (size_t b = 0; b <= s->fam->nbuckets; b++)
        total += counts[b];
    return (double)total;
}

double sb_metric_quantile(const sb_metric_t *s, double q)
{
    if (s == NULL || s->fam->kind != SB_HISTOGRAM || isnan(q))
        return NAN;
    const struct family *f = s->fam;
    uint64_t counts[MAX_BUCKETS + 1];
    hist_totals(s, counts);
    uint64_t total = 0;
    for (size_t b = 0; b <= f->nbuckets; b++) {
        uint64_t base = atomic_load_explicit(&s->qbase[b], memory_order_relaxed);
        /* A reset racing an observe may leave base a hair above the count. */
        counts[b] = counts[b] > base ? counts[b] - base : 0;
        total += counts[b];
    }
    if (total == 0)
        return NAN;
    if (q < 0)
        return -INFINITY;
    if (q > 1)
        return INFINITY;
    /* As histogram_quantile: find the bucket holding the rank, interpolate
     * linearly inside it; the first bucket starts at 0 (or is its bound when
     * that is <= 0); a rank in +Inf answers the highest finite bound. */
    double rank = q * (double)total;
    uint64_t before = 0;
    size_t b = 0;
    for (; b <= f->nbuckets; b++) {
        /* Skip empty buckets so that rank 0 lands on the first non-empty one. */
        if (counts[b] > 0 && (double)(before + counts[b]) >= rank)
            break;
        before += counts[b];
    }
    if (b >= f->nbuckets)
        return f->buckets[f->nbuckets - 1];
    double end = f->buckets[b];
    double start = b > 0 ? f->buckets[b - 1] : 0;
    if (b == 0 && end <= 0)
        return end;
    return start + (end - start) * ((rank - (double)before) / (double)counts[b]);
}

void sb_metric_quantile_reset(sb_metric_t *s)
{
    if (s == NULL || s->fam->kind != SB_HISTOGRAM)
        return;
    uint64_t counts[MAX_BUCKETS + 1];
    hist_totals(s, counts);
    for (size_t b = 0; b <= s->fam->nbuckets; b++)
        atomic_store_explicit(&s->qbase[b], counts[b], memory_order_relaxed);
}

/* ---- rendering ---- */

/* Prometheus' spelling of a sample value: whole numbers without exponent or
 * fraction, others as the shortest %g that reads back to the same double
 * (never lossy, at most 17 digits), NaN and ±Inf as the text format spells them. */
static void format_double(double v, char *out, size_t outlen)
{
    if (isnan(v)) {
        snprintf(out, outlen, "NaN");
    } else if (isinf(v)) {
        snprintf(out, outlen, v > 0 ? "+Inf" : "-Inf");
    } else if (v == trunc(v) && fabs(v) < 9.2e18) {
        snprintf(out, outlen, "%lld", (long long)v);
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(out, outlen, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                return;
        }
    }
}

int sb_metrics_append_double(sb_buf_t *out, double v)
{
    char tmp[40];
    format_double(v, tmp, sizeof tmp);
    return sb_buf_append_str(out, tmp);
}

/* HELP text: backslash and newline escaped (quotes stay as they are). */
static int append_help(sb_buf_t *out, const char *s)
{
    int rc = 0;
    for (; *s != '\0' && rc == 0; s++) {
        if (*s == '\\')
            rc = sb_buf_append(out, "\\\\", 2);
        else if (*s == '\n')
            rc = sb_buf_append(out, "\\n", 2);
        else
            rc = sb_buf_append_char(out, *s);
    }
    return rc;
}

int sb_metrics_append_label_value(sb_buf_t *out, const char *v)
{
    size_t start = out->len;
    int rc = 0;
    for (; *v != '\0' && rc == 0; v++) {
        if (*v == '\\')
            rc = sb_buf_append(out, "\\\\", 2);
        else if (*v == '"')
            rc = sb_buf_append(out, "\\\"", 2);
        else if (*v == '\n')
            rc = sb_buf_append(out, "\\n", 2);
        else
            rc = sb_buf_append_char(out, *v);
    }
    if (rc != 0)
        out->len = start;
    return rc;
}

static int append_header(sb_buf_t *out, const char *name, const char *help, const char *type)
{
    int rc = sb_buf_append_str(out, "# HELP ");
    if (rc == 0)
        rc = sb_buf_append_str(out, name);
    if (rc == 0)
        rc = sb_buf_append_char(out, ' ');
    if (rc == 0)
        rc = append_help(out, help);
    if (rc == 0)
        rc = sb_buf_append_str(out, "\n# TYPE ");
    if (rc == 0)
        rc = sb_buf_append_str(out, name);
    if (rc == 0)
        rc = sb_buf_append_char(out, ' ');
    if (rc == 0)
        rc = sb_buf_append_str(out, type);
    if (rc == 0)
        rc = sb_buf_append_char(out, '\n');
    return rc;
}

/* One sample line: name[suffix]{labels[,le="…"]} value */
static int append_sample(sb_buf_t *out, const char *name, const char *suffix, const char *labels, const char *le,
                         double v)
{
    int rc = sb_buf_append_str(out, name);
    if (rc == 0 && suffix != NULL)
        rc = sb_buf_append_str(out, suffix);
    if (rc == 0 && (labels != NULL || le != NULL)) {
        rc = sb_buf_append_char(out, '{');
        if (rc == 0 && labels != NULL)
            rc = sb_buf_append_str(out, labels);
        if (rc == 0 && labels != NULL && le != NULL)
            rc = sb_buf_append_char(out, ',');
        if (rc == 0 && le != NULL) {
            rc = sb_buf_append_str(out, "le=\"");
            if (rc == 0)
                rc = sb_buf_append_str(out, le);
            if (rc == 0)
                rc = sb_buf_append_char(out, '"');
        }
        if (rc == 0)
            rc = sb_buf_append_char(out, '}');
    }
    if (rc == 0)
        rc = sb_buf_append_char(out, ' ');
    if (rc == 0)
        rc = sb_metrics_append_double(out, v);
    if (rc == 0)
        rc = sb_buf_append_char(out, '\n');
    return rc;
}

static int render_histogram(sb_buf_t *out, const struct family *f, const sb_metric_t *s)
{
    uint64_t counts[MAX_BUCKETS + 1];
    double sum = hist_totals(s, counts);
    uint64_t cum = 0;
    char le[40];
    int rc = 0;
    for (size_t b = 0; b < f->nbuckets && rc == 0; b++) {
        cum += counts[b];
        format_double(f->buckets[b], le, sizeof le);
        rc = append_sample(out, f->name, "_bucket", s->labels, le, (double)cum);
    }
    cum += counts[f->nbuckets];
    /* _count is the +Inf bucket by definition, so both come from one snapshot. */
    if (rc == 0)
        rc = append_sample(out, f->name, "_bucket", s->labels, "+Inf", (double)cum);
    if (rc == 0)
        rc = append_sample(out, f->name, "_sum", s->labels, NULL, sum);
    if (rc == 0)
        rc = append_sample(out, f->name, "_count", s->labels, NULL, (double)cum);
    return rc;
}

static int render_family(sb_buf_t *out, const struct family *f)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    int rc = append_header(out, f->name, f->help, types[f->kind]);
    for (size_t i = 0; i < f->nseries && rc == 0; i++) {
        const sb_metric_t *s = f->series[i];
        if (f->kind == SB_HISTOGRAM)
            rc = render_histogram(out, f, s);
        else
            rc = append_sample(out, f->name, NULL, s->labels, NULL, scalar_total(s));
    }
    return rc;
}

/* ---- process_* from /proc ---- */

/* Reads a small /proc file whole into buf (NUL-terminated); false on failure. */
static bool read_small_file(const char *path, char *buf, size_t len)
{
    FILE *fp = fopen(path, "re");
    if (fp == NULL)
        return false;
    size_t n = fread(buf, 1, len - 1, fp);
    (void)fclose(fp);
    buf[n] = '\0';
    return n > 0;
}

static bool parse_u64(const char *s, char **end, uint64_t *out)
{
    errno = 0;
    unsigned long long v = strtoull(s, end, 10);
    if (errno != 0 || *end == s)
        return false;
    *out = v;
    return true;
}

/* Fields of /proc/self/stat, counted from 1 as proc(5) does. */
struct proc_stat {
    uint64_t utime, stime, starttime, vsize;
};

static bool read_proc_stat(struct proc_stat *ps)
{
    char buf[1024];
    if (!read_small_file("/proc/self/stat", buf, sizeof buf))
        return false;
    /* comm (field 2) may hold spaces and parentheses: fields resume after the last ')'. */
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return false;
    p++;
    for (int field = 3; field <= 23; field++) {
        while (*p == ' ')
            p++;
        char *end;
        uint64_t v = 0;
        if (field == 3) { /* state: a letter */
            end = p;
            while (*end != ' ' && *end != '\0')
                end++;
        } else if (*p == '-') { /* a few fields are signed; we never need those */
            end = p + 1;
            while (isdigit((unsigned char)*end))
                end++;
        } else if (!parse_u64(p, &end, &v)) {
            return false;
        }
        if (field == 14)
            ps->utime = v;
        else if (field == 15)
            ps->stime = v;
        else if (field == 22)
            ps->starttime = v;
        else if (field == 23)
            ps->vsize = v;
        p = end;
    }
    return true;
}

/* "VmRSS:     1234 kB" from /proc/self/status, in bytes. */
static bool read_rss_bytes(uint64_t *out)
{
    char buf[4096];
    if (!read_small_file("/proc/self/status", buf, sizeof buf))
        return false;
    char *p = strstr(buf, "\nVmRSS:");
    if (p == NULL)
        return false;
    p += strlen("\nVmRSS:");
    while (*p == ' ' || *p == '\t')
        p++;
    char *end;
    uint64_t kb;
    if (!parse_u64(p, &end, &kb))
        return false;
    *out = kb * 1024;
    return true;
}

static bool read_boot_time(uint64_t *out)
{
    /* /proc/stat grows with the CPU count; btime follows the per-CPU lines. */
    FILE *fp = fopen("/proc/stat", "re");
    if (fp == NULL)
        return false;
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof line, fp) != NULL) {
        if (strncmp(line, "btime ", 6) == 0) {
            char *end;
            found = parse_u64(line + 6, &end, out);
        }
    }
    (void)fclose(fp);
    return found;
}

static bool count_open_fds(uint64_t *out)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return false;
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    /* The directory stream's own descriptor is not one of the process's. */
    *out = n > 0 ? n - 1 : 0;
    return true;
}

/* Soft "Max open files" limit as /proc/self/limits shows it; getrlimit reads the same value without parsing. */
static bool read_max_fds(double *out)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return false;
    *out = rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur;
    return true;
}

static int render_one(sb_buf_t *out, const char *name, const char *help, const char *type, double v)
{
    int rc = append_header(out, name, help, type);
    if (rc == 0)
        rc = append_sample(out, name, NULL, NULL, NULL, v);
    return rc;
}

static int render_process(sb_buf_t *out)
{
    int rc = 0;
    long ticks = sysconf(_SC_CLK_TCK);
    struct proc_stat ps = {0};
    bool have_stat = ticks > 0 && read_proc_stat(&ps);
    uint64_t u = 0;
    double dv = 0;
    /* A /proc file that cannot be read drops its metric, never the page. */
    if (have_stat)
        rc = render_one(out, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter",
                        (double)(ps.utime + ps.stime) / (double)ticks);
    if (rc == 0 && read_rss_bytes(&u))
        rc = render_one(out, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", (double)u);
    if (rc == 0 && have_stat)
        rc = render_one(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge",
                        (double)ps.vsize);
    if (rc == 0 && count_open_fds(&u))
        rc = render_one(out, "process_open_fds", "Number of open file descriptors.", "gauge", (double)u);
    if (rc == 0 && read_max_fds(&dv))
        rc = render_one(out, "process_max_fds", "Maximum number of open file descriptors.", "gauge", dv);
    if (rc == 0 && have_stat && read_boot_time(&u))
        rc = render_one(out, "process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                        "gauge", (double)u + (double)ps.starttime / (double)ticks);
    return rc;
}

int sb_metrics_render(sb_metrics_t *m, sb_buf_t *out)
{
    if (m == NULL || out == NULL)
        return SB_EINVAL;
    size_t start = out->len;
    int rc = 0;
    for (size_t i = 0; i < m->nfams && rc == 0; i++)
        rc = render_family(out, m->fams[i]);
    if (rc == 0)
        rc = render_process(out);
    if (rc != 0)
        out->len = start; /* all or nothing, like every sb_buf append */
    return rc;
}
