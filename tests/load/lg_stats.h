/* Measurement helpers of the load generator: a latency histogram with ~0.1 %
 * precision and no allocation per sample, and snapshots of the CPU counters
 * in /proc (per core from /proc/stat, per process from /proc/PID/stat) so a
 * result can show which side of the loopback did the work. */
#ifndef LG_STATS_H
#define LG_STATS_H

#include <stdint.h>
#include <stdio.h>

/* Values are microseconds. Below 2048 every value has its own bucket; above,
 * each power of two is split into 1024 buckets (relative error < 0.1 %). */
#define LG_HIST_LINEAR 2048u
#define LG_HIST_EXPS 28u /* up to 2^38 us, about 3 days */
#define LG_HIST_BUCKETS (LG_HIST_LINEAR + LG_HIST_EXPS * 1024u)

typedef struct lg_hist {
    uint64_t count;
    uint64_t max;
    uint64_t min;
    double sum;
    uint64_t *buckets; /* LG_HIST_BUCKETS counters */
} lg_hist;

int lg_hist_init(lg_hist *h);
void lg_hist_free(lg_hist *h);
void lg_hist_reset(lg_hist *h);
void lg_hist_add(lg_hist *h, uint64_t us);
/* The value at quantile q (0..1), as the upper edge of its bucket; 0 when empty. */
uint64_t lg_hist_quantile(const lg_hist *h, double q);

#define LG_MAX_CPUS 64

/* One reading of every counter a result reports. Process fields stay -1 when
 * no pid was given or it could not be read. */
typedef struct lg_snap {
    double wall;                    /* CLOCK_MONOTONIC seconds */
    int ncpu;                       /* cores found in /proc/stat */
    uint64_t cpu_user[LG_MAX_CPUS]; /* user + nice, in USER_HZ ticks */
    uint64_t cpu_sys[LG_MAX_CPUS];  /* system + irq + softirq */
    uint64_t cpu_total[LG_MAX_CPUS];
    int64_t srv_utime, srv_stime; /* ticks */
    int64_t srv_rss_kib;
    int64_t redis_utime, redis_stime;
    double gen_user, gen_sys; /* getrusage of this process, seconds */
} lg_snap;

void lg_snap_take(lg_snap *s, int server_pid, int redis_pid);
int64_t lg_proc_rss_kib(int pid);
double lg_now(void);      /* CLOCK_MONOTONIC seconds */
uint64_t lg_now_us(void); /* CLOCK_MONOTONIC microseconds */

/* Writes the CPU part of a result as JSON members (no braces), e.g.
 * "cpu":[...],"server_cpu":{...}, for the interval a..b. */
void lg_snap_json(FILE *f, const lg_snap *a, const lg_snap *b);
/* Server (+ Redis when known) CPU seconds spent between a and b. */
void lg_snap_server_cpu(const lg_snap *a, const lg_snap *b, double *user, double *sys, double *redis_total);

#endif
