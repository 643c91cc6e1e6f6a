/*
 * rebalance.c — connections shed by a node above the cluster average (see include/switchboard/rebalance.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/engine.h"
#include "switchboard/log.h"
#include "switchboard/rebalance.h"
#include "switchboard/server.h"

#define TICK_MS 100

/* ---- the pure parts -------------------------------------------------------------------------------------------- */

uint64_t sb_rebalance_decide(uint64_t local, const uint64_t *others, size_t nothers, unsigned threshold, unsigned rate,
                             uint64_t interval_ms, double *avg, int *why)
{
    if (why != NULL)
        *why = SB_REBALANCE_NONE;
    if (nothers > SB_REBALANCE_MAX_NODES - 1)
        nothers = SB_REBALANCE_MAX_NODES - 1;
    /* Counts are bounded by file descriptors (millions at most), nodes by SB_REBALANCE_MAX_NODES: the products
     * below stay far from 2^64. Clamp anyway so a corrupt figure cannot overflow them. */
    const uint64_t cap = UINT64_C(1) << 32;
    uint64_t n = nothers + 1, total = local < cap ? local : cap;
    local = total;
    for (size_t i = 0; i < nothers; i++)
        total += others[i] < cap ? others[i] : cap;
    if (avg != NULL)
        *avg = (double)total / (double)n;
    if (nothers == 0 || local * n <= total)
        return 0;                              /* alone, or at or below the average */
    uint64_t excess = (local * n - total) / n; /* floor(local - avg): never below the average */
    if (excess < SB_REBALANCE_MIN_EXCESS)
        return 0;
    int trigger = SB_REBALANCE_NONE;
    /* local > avg * (1 + t/100)  <=>  local * n * 100 > total * (100 + t) */
    if (local * n * 100 > total * (100 + (uint64_t)threshold))
        trigger = SB_REBALANCE_OVER;
    else if (threshold < 100)
        for (size_t i = 0; i < nothers; i++) {
            uint64_t c = others[i] < cap ? others[i] : cap;
            if (c * n * 100 < total * (100 - (uint64_t)threshold)) {
                trigger = SB_REBALANCE_UNDER;
                break;
            }
        }
    if (trigger == SB_REBALANCE_NONE)
        return 0;
    uint64_t budget = (uint64_t)rate * interval_ms / 1000;
    if (why != NULL)
        *why = trigger;
    return excess < budget ? excess : budget;
}

void sb_rebalance_split(uint64_t total, const uint64_t *held, size_t n, uint64_t *out)
{
    /* Connections of one process: file descriptors, fewer than 2^31 together, so total * held[i] fits. */
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += held[i];
    if (total >= sum) {
        memcpy(out, held, n * sizeof(*out));
        return;
    }
    uint64_t given = 0;
    for (size_t i = 0; i < n; i++) {
        out[i] = total * held[i] / sum; /* < held[i] since total < sum */
        given += out[i];
    }
    /* Fewer than n left over (the fractional parts add up to it): one more each to the workers with the largest
     * fractional parts, lowest index first among equals. */
    while (given < total) {
        size_t best = n;
        uint64_t best_rem = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t base = total * held[i] / sum;
            if (out[i] > base || out[i] >= held[i])
                continue; /* raised already, or holds nothing */
            uint64_t rem = total * held[i] % sum;
            if (best == n || rem > best_rem) {
                best = i;
                best_rem = rem;
            }
        }
        if (best == n)
            break;
        out[best]++;
        given++;
    }
}

/* ---- the figures (worker 0) ------------------------------------------------------------------------------------ */

typedef struct sb_rebalance {
    uint64_t others[SB_REBALANCE_MAX_NODES];
    size_t nothers;
    uint64_t own;         /* this node's count as its last beat published it */
    int own_listed;       /* this node was among the live nodes of the reply */
    int armed;            /* the previous round found this node above too */
    uint64_t received_at; /* mono ms of the last good reply; 0 = never */
} rebalance_t;

void sb_rebalance_on_loads(sb_worker_t *w, const redisReply *reply)
{
    rebalance_t *rb = w->server->rebalance;
    if (rb == NULL || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 0) {
        if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
            sb_log(SB_LOG_WARN, "reading the nodes' connection counts failed: not rebalancing", "error", reply->str,
                   NULL);
        return;
    }
    size_t n = 0;
    int own_listed = 0;
    uint64_t own = 0;
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const redisReply *id = reply->element[i], *count = reply->element[i + 1];
        if (id->type != REDIS_REPLY_STRING || count->type != REDIS_REPLY_INTEGER || count->integer < 0)
            return; /* not what sb_node_loads returns: keep the old figures */
        if (strcmp(id->str, w->server->node_id) == 0) {
            own_listed = 1;
            own = (uint64_t)count->integer;
        } else if (n < SB_REBALANCE_MAX_NODES - 1) {
            rb->others[n++] = (uint64_t)count->integer;
        }
    }
    rb->nothers = n;
    rb->own = own;
    rb->own_listed = own_listed;
    rb->received_at = sb_mono_ms();
}

/* ---- shedding, on every worker --------------------------------------------------------------------------------- */

/* Step k of the round closes what brings this worker's total to ceil(share * k / steps), as the drain does: the
 * clients come back through the load balancer a few at a time, never in a herd. */
static void shed_cb(h2o_timeout_entry_t *e)
{
    sb_worker_t *w = H2O_STRUCT_FROM_MEMBER(sb_worker_t, shed_tick, e);
    /* The drain closes everything anyway, and without Redis a reconnecting client finds no node able to take it. */
    if (atomic_load(&w->server->draining) || !sb_worker_ready(w)) {
        w->shed_total = w->shed_closed;
        return;
    }
    w->shed_step++;
    uint64_t target = w->shed_step >= w->shed_steps
                          ? w->shed_total
                          : (w->shed_total * w->shed_step + w->shed_steps - 1) / w->shed_steps;
    if (target > w->shed_closed) {
        uint64_t want = target - w->shed_closed;
        size_t n = sb_engine_worker_close_some(w, (size_t)want, SB_REBALANCE_REASON);
        w->shed_closed += n;
        if (n > 0)
            sb_metric_add(SB_M(w)->rebalance_closed, w->idx, (double)n);
        if (n < want)
            w->shed_total = w->shed_closed; /* fewer open than planned: the round is over for this worker */
    }
    if (w->shed_closed < w->shed_total && w->shed_step < w->shed_steps)
        h2o_timeout_link(w->ctx.loop, &w->shed_to, &w->shed_tick);
}

static void shed_start(sb_worker_t *w, void *arg)
{
    (void)arg;
    uint64_t share = atomic_load(&w->shed_share); /* posted by worker 0 with the round */
    w->shed_steps = w->cfg->rebalance_interval_ms / TICK_MS;
    if (w->shed_steps < 1)
        w->shed_steps = 1;
    w->shed_total = share; /* a round still running is replaced: its figures are older */
    w->shed_closed = 0;
    w->shed_step = 0;
    if (share > 0 && !h2o_timeout_is_linked(&w->shed_tick))
        h2o_timeout_link(w->ctx.loop, &w->shed_to, &w->shed_tick);
}

/* ---- one round, on worker 0 ------------------------------------------------------------------------------------ */

static void round_cb(h2o_timeout_entry_t *e)
{
    sb_worker_t *w = H2O_STRUCT_FROM_MEMBER(sb_worker_t, rebalance_round, e);
    sb_server_t *s = w->server;
    rebalance_t *rb = s->rebalance;
    h2o_timeout_link(w->ctx.loop, &w->rebalance_to, &w->rebalance_round);
    if (rb == NULL)
        return;
    /* Not while draining or not ready (Redis down, another library version); not on figures older than a node's
     * liveness (3 heartbeats: they may list nodes long gone, or miss new ones); not while this node is not live in
     * Redis's view (the others do not count it either). Such a round also breaks the two-in-a-row rule. */
    if (atomic_load(&s->draining) || !sb_worker_ready(w) || rb->received_at == 0 ||
        sb_mono_ms() - rb->received_at > 3 * w->cfg->heartbeat_interval_ms || !rb->own_listed) {
        rb->armed = 0;
        return;
    }
    /* The decision compares figures of the same kind, each from its node's last beat (at most one heartbeat
     * apart): this node's live count against the others' older ones would look like an imbalance whenever
     * clients are arriving. */
    double avg = 0;
    int why = SB_REBALANCE_NONE;
    uint64_t n = sb_rebalance_decide(rb->own, rb->others, rb->nothers, w->cfg->rebalance_threshold,
                                     w->cfg->rebalance_rate, w->cfg->rebalance_interval_ms, &avg, &why);
    if (n == 0) {
        rb->armed = 0;
        return;
    }
    /* Only an imbalance seen by two rounds in a row is acted on: a burst of connects skews one round's figures. */
    if (!rb->armed) {
        rb->armed = 1;
        return;
    }
    uint64_t held[SB_METRICS_MAX_WORKERS], share[SB_METRICS_MAX_WORKERS];
    uint64_t local = 0;
    unsigned nw = s->nworkers;
    if (nw > SB_METRICS_MAX_WORKERS)
        nw = SB_METRICS_MAX_WORKERS;
    for (unsigned i = 0; i < nw; i++)
        local += held[i] = atomic_load(&s->workers[i]->stats.connections);
    /* Never below the average with what is open now either (clients may have left since the beat). */
    uint64_t room = (double)local > avg ? (uint64_t)((double)local - avg) : 0;
    if (n > room)
        n = room;
    if (n == 0)
        return;
    sb_rebalance_split(n, held, nw, share);
    for (unsigned i = 0; i < nw; i++)
        if (share[i] > 0) {
            atomic_store(&s->workers[i]->shed_share, share[i]);
            sb_worker_post(s->workers[i], shed_start, NULL);
        }
    char closing[24], loc[24], av[32], nodes[24];
    snprintf(closing, sizeof(closing), "%" PRIu64, n);
    snprintf(loc, sizeof(loc), "%" PRIu64, local);
    snprintf(av, sizeof(av), "%.1f", avg);
    snprintf(nodes, sizeof(nodes), "%zu", rb->nothers + 1);
    sb_log(SB_LOG_INFO, "rebalancing: closing connections over this round, clients reconnect to any node", "#closing",
           closing, "#local", loc, "#avg", av, "#nodes", nodes, "trigger",
           why == SB_REBALANCE_OVER ? "above threshold" : "a node below threshold", NULL);
}

void sb_rebalance_worker_init(sb_worker_t *w)
{
    h2o_timeout_init(w->loop, &w->shed_to, TICK_MS);
    w->shed_tick.cb = shed_cb;
    if (!w->cfg->rebalance || w->idx != 0)
        return;
    if (w->server->rebalance == NULL && (w->server->rebalance = calloc(1, sizeof(rebalance_t))) == NULL)
        return; /* no figures: this node never sheds (it still counts in the others' average) */
    h2o_timeout_init(w->loop, &w->rebalance_to, w->cfg->rebalance_interval_ms);
    w->rebalance_round.cb = round_cb;
    h2o_timeout_link(w->loop, &w->rebalance_to, &w->rebalance_round);
}
