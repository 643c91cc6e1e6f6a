/*
 * rebalance.h — evening out long-lived connections after a scale-out.
 *
 * A WebSocket lives for hours, so a node added by the autoscaler would get
 * only new clients. Every heartbeat, worker 0 reads the connection counts of
 * the live nodes (sb_node_loads, right behind the beat on the same Redis
 * connection); every --rebalance-interval it compares its own published count
 * with the cluster average, and a node clearly above it in two rounds in a row
 * closes the excess (never going below the average, at most --rebalance-rate
 * per second), spread evenly over the interval across its workers. A closed transport makes the Socket.IO
 * client reconnect, through the load balancer, to any node; the disconnect
 * reason is "server rebalancing" (state is kept for recovery on it).
 *
 * The decision and the split between workers are pure functions (below) for
 * the unit tests; the rest runs on the worker threads: sb_rebalance_worker_init
 * from worker_new, sb_rebalance_on_loads from the heartbeat's reply (worker 0).
 */
#ifndef SWITCHBOARD_REBALANCE_H
#define SWITCHBOARD_REBALANCE_H

#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>

/* Shedding starts only when the excess over the average is at least this many connections: a difference of one
 * is rounding, not imbalance. */
#define SB_REBALANCE_MIN_EXCESS 2
/* Most live nodes considered (the rest of a larger cluster is ignored, the average is then of these). */
#define SB_REBALANCE_MAX_NODES 1024
/* The disconnect reason of a connection closed to rebalance (also a label of switchboard_disconnects_total). */
#define SB_REBALANCE_REASON "server rebalancing"

/* Why a node sheds (sb_rebalance_decide's *why). */
enum { SB_REBALANCE_NONE = 0, SB_REBALANCE_OVER, SB_REBALANCE_UNDER };

/* How many connections this node closes in one round. Pure.
 *   local        this node's open connections, now
 *   others       the other live nodes' connection counts (their last heartbeat), nothers of them
 *   threshold    percent (1..1000)
 *   rate         closes per second allowed (>= 1); interval_ms the round's length: at most rate * interval_ms / 1000
 * With avg = (local + sum(others)) / (nothers + 1), the node sheds when local - avg >= SB_REBALANCE_MIN_EXCESS and
 * either local > avg * (1 + threshold/100) (SB_REBALANCE_OVER) or another node holds fewer than
 * avg * (1 - threshold/100) (SB_REBALANCE_UNDER: a new node among many old ones, each only slightly above the
 * average). It then closes floor(local - avg), capped by the rate: it never goes below the average, so the nodes
 * above it together shed no more than the nodes below it lack.
 * Returns the count (0: nothing to do); *avg (may be NULL) gets the average, *why (may be NULL) the trigger. */
uint64_t sb_rebalance_decide(uint64_t local, const uint64_t *others, size_t nothers, unsigned threshold, unsigned rate,
                             uint64_t interval_ms, double *avg, int *why);

/* Splits `total` closes among n workers holding held[i] connections, in proportion (largest remainders first),
 * never more than a worker holds: out[i] (n entries). Pure. */
void sb_rebalance_split(uint64_t total, const uint64_t *held, size_t n, uint64_t *out);

struct sb_worker;

/* Per-worker state (the shedding tick; on worker 0 also the round timer). Called once from worker_new. */
void sb_rebalance_worker_init(struct sb_worker *w);

/* The reply of FCALL_RO sb_node_loads (worker 0, after each heartbeat): records the live nodes' figures and when
 * they arrived. A NULL or error reply keeps the old figures (they go stale and rounds are skipped). */
void sb_rebalance_on_loads(struct sb_worker *w, const redisReply *reply);

#endif
