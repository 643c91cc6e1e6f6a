/* See lg_stats.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "lg_stats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

int lg_hist_init(lg_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->buckets = calloc(LG_HIST_BUCKETS, sizeof(uint64_t));
    if (h->buckets == NULL)
        return -1;
    h->min = UINT64_MAX;
    return 0;
}

void lg_hist_free(lg_hist *h)
{
    free(h->buckets);
    h->buckets = NULL;
}

void lg_hist_reset(lg_hist *h)
{
    memset(h->buckets, 0, LG_HIST_BUCKETS * sizeof(uint64_t));
    h->count = 0;
    h->max = 0;
    h->min = UINT64_MAX;
    h->sum = 0;
}

static uint32_t bucket_of(uint64_t v)
{
    if (v < LG_HIST_LINEAR)
        return (uint32_t)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* >= 11 */
    unsigned e = msb - 10u;                            /* >= 1: v >> e lies in 1024..2047 */
    if (e > LG_HIST_EXPS)
        return LG_HIST_BUCKETS - 1;
    return LG_HIST_LINEAR + (e - 1u) * 1024u + (uint32_t)((v >> e) - 1024u);
}

static uint64_t upper_of(uint32_t b)
{
    if (b < LG_HIST_LINEAR)
        return b;
    uint32_t e = (b - LG_HIST_LINEAR) / 1024u + 1u;
    uint64_t sub = (b - LG_HIST_LINEAR) % 1024u + 1024u;
    return ((sub + 1u) << e) - 1u;
}

void lg_hist_add(lg_hist *h, uint64_t us)
{
    h->buckets[bucket_of(us)]++;
    h->count++;
    h->sum += (double)us;
    if (us > h->max)
        h->max = us;
    if (us < h->min)
        h->min = us;
}

uint64_t lg_hist_quantile(const lg_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    /* The rank of the sample at q, 1-based: the smallest value with at least q*count samples at or below it. */
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (uint32_t b = 0; b < LG_HIST_BUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= rank) {
            uint64_t up = upper_of(b);
            return up > h->max ? h->max : up;
        }
    }
    return h->max;
}

double lg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t lg_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return (int)n;
}

static int parse_u64(const char **p, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(*p, &end, 10);
    if (end == *p || errno != 0)
        return -1;
    *out = v;
    *p = end;
    return 0;
}

static void read_proc_stat(lg_snap *s)
{
    static char buf[65536];
    s->ncpu = 0;
    if (read_file("/proc/stat", buf, sizeof(buf)) < 0)
        return;
    const char *p = buf;
    while ((p = strstr(p, "\ncpu")) != NULL) {
        p += 4;
        if (*p < '0' || *p > '9')
            continue;
        uint64_t idx;
        if (parse_u64(&p, &idx) != 0 || idx >= LG_MAX_CPUS)
            continue;
        uint64_t v[8] = {0};
        for (int i = 0; i < 8; i++)
            if (parse_u64(&p, &v[i]) != 0)
                break;
        /* user nice system idle iowait irq softirq steal */
        s->cpu_user[idx] = v[0] + v[1];
        s->cpu_sys[idx] = v[2] + v[5] + v[6];
        s->cpu_total[idx] = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
        if ((int)idx + 1 > s->ncpu)
            s->ncpu = (int)idx + 1;
    }
}

static void read_pid_times(int pid, int64_t *ut, int64_t *st)
{
    char path[64], buf[4096];
    *ut = -1;
    *st = -1;
    if (pid <= 0)
        return;
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if (read_file(path, buf, sizeof(buf)) < 0)
        return;
    /* The command name may hold spaces and parentheses: fields count from the last ')'. */
    const char *p = strrchr(buf, ')');
    if (p == NULL)
        return;
    p++;
    /* After ')': state(3) ppid(4) ... utime is field 14, stime 15: skip 11 fields. */
    int field = 2;
    while (*p != '\0' && field < 13) {
        while (*p == ' ')
            p++;
        while (*p != ' ' && *p != '\0')
            p++;
        field++;
    }
    uint64_t u, s;
    if (parse_u64(&p, &u) != 0 || parse_u64(&p, &s) != 0)
        return;
    *ut = (int64_t)u;
    *st = (int64_t)s;
}

int64_t lg_proc_rss_kib(int pid)
{
    char path[64], buf[8192];
    if (pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    if (read_file(path, buf, sizeof(buf)) < 0)
        return -1;
    const char *p = strstr(buf, "VmRSS:");
    if (p == NULL)
        return -1;
    p += 6;
    uint64_t v;
    if (parse_u64(&p, &v) != 0)
        return -1;
    return (int64_t)v;
}

void lg_snap_take(lg_snap *s, int server_pid, int redis_pid)
{
    memset(s, 0, sizeof(*s));
    s->wall = lg_now();
    read_proc_stat(s);
    read_pid_times(server_pid, &s->srv_utime, &s->srv_stime);
    s->srv_rss_kib = lg_proc_rss_kib(server_pid);
    read_pid_times(redis_pid, &s->redis_utime, &s->redis_stime);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    s->gen_user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    s->gen_sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double hz(void)
{
    static double v;
    if (v == 0) {
        long t = sysconf(_SC_CLK_TCK);
        v = t > 0 ? (double)t : 100.0;
    }
    return v;
}

void lg_snap_server_cpu(const lg_snap *a, const lg_snap *b, double *user, double *sys, double *redis_total)
{
    *user = *sys = *redis_total = -1;
    if (a->srv_utime >= 0 && b->srv_utime >= 0) {
        *user = (double)(b->srv_utime - a->srv_utime) / hz();
        *sys = (double)(b->srv_stime - a->srv_stime) / hz();
    }
    if (a->redis_utime >= 0 && b->redis_utime >= 0)
        *redis_total = (double)(b->redis_utime - a->redis_utime + b->redis_stime - a->redis_stime) / hz();
}

void lg_snap_json(FILE *f, const lg_snap *a, const lg_snap *b)
{
    double wall = b->wall - a->wall;
    fprintf(f, "\"wall_s\":%.3f,\"cpu\":[", wall);
    int n = a->ncpu < b->ncpu ? a->ncpu : b->ncpu;
    for (int i = 0; i < n; i++) {
        double tot = (double)(b->cpu_total[i] - a->cpu_total[i]);
        if (tot <= 0)
            tot = 1;
        double us = (double)(b->cpu_user[i] - a->cpu_user[i]);
        double sy = (double)(b->cpu_sys[i] - a->cpu_sys[i]);
        fprintf(f, "%s{\"cpu\":%d,\"user_pct\":%.1f,\"sys_pct\":%.1f,\"busy_pct\":%.1f}", i ? "," : "", i,
                100.0 * us / tot, 100.0 * sy / tot, 100.0 * (us + sy) / tot);
    }
    double su, ss, rt;
    lg_snap_server_cpu(a, b, &su, &ss, &rt);
    fprintf(f, "],\"server_cpu\":{\"user_s\":%.3f,\"sys_s\":%.3f},\"redis_cpu_s\":%.3f", su, ss, rt);
    fprintf(f, ",\"gen_cpu\":{\"user_s\":%.3f,\"sys_s\":%.3f}", b->gen_user - a->gen_user, b->gen_sys - a->gen_sys);
}
