-- ratelimit.lua -- token-bucket rate limits held in Redis, so a limit holds
-- across every node (CONTRACT section 7).
--
-- sb_ratelimit
-- KEYS[1..n] bucket keys (P{rl:<kind>:<id>}, see docs/redis-keys.md)
-- ARGV[1] now_ms   ARGV[2] cost (tokens, >= 1)
-- ARGV[3 + 3(i-1) ..] rate, period_ms, burst of bucket i
-- Returns {1, 0} when every bucket had `cost` tokens (they are taken), else
--         {0, retry_after_ms} and nothing is taken.
--
-- sb_event
-- KEYS[1] Pevents   KEYS[2..] bucket keys
-- ARGV[1] now_ms   ARGV[2] events_maxlen (0: check the buckets only, no XADD)
-- ARGV[3] n (number of buckets)   ARGV[4 ..] rate, period_ms, burst per bucket
-- ARGV[4 + 3n ..] field, value pairs of the events entry
-- Returns {1, entry id or ""} when allowed (and written), else {0, retry_after_ms}.
-- Invariant: an event is written only when every bucket allowed it, and the
--         tokens are taken only then (one atomic step, one round trip).

local function ratelimit_cb(keys, args)
    local fn = 'sb_ratelimit'
    local now = tonumber(sb_common_uint(fn, args, 1, 'now_ms'))
    local cost = tonumber(sb_common_posint(fn, args, 2, 'cost'))
    if #args ~= 2 + 3 * #keys then
        sb_common_fail(fn, 'ARGV must hold rate, period_ms, burst for each of the ' .. #keys .. ' keys')
    end
    local buckets = {}
    for i = 1, #keys do
        local rate, period, burst = sb_common_bucket_params(fn, args, 3 + 3 * (i - 1))
        buckets[i] = {keys[i], rate, period, burst}
    end
    local wait = sb_common_buckets_take(buckets, now, cost)
    if wait > 0 then
        return {0, wait}
    end
    return {1, 0}
end

local function ratelimit_event_cb(keys, args)
    local fn = 'sb_event'
    local now = tonumber(sb_common_uint(fn, args, 1, 'now_ms'))
    local maxlen = sb_common_uint(fn, args, 2, 'events_maxlen')
    local n = tonumber(sb_common_uint(fn, args, 3, 'buckets'))
    if #keys ~= n + 1 then
        sb_common_fail(fn, 'KEYS must be the events stream and ' .. n .. ' bucket keys')
    end
    local first = 4 + 3 * n
    if #args < first + 1 or (#args - first + 1) % 2 ~= 0 then
        sb_common_fail(fn, 'ARGV must end with field, value pairs')
    end
    local buckets = {}
    for i = 1, n do
        local rate, period, burst = sb_common_bucket_params(fn, args, 4 + 3 * (i - 1))
        buckets[i] = {keys[i + 1], rate, period, burst}
    end
    local wait = sb_common_buckets_take(buckets, now, 1)
    if wait > 0 then
        return {0, wait}
    end
    if tonumber(maxlen) == 0 then
        return {1, ''}
    end
    return {1, redis.call('XADD', keys[1], 'MAXLEN', '~', maxlen, '*', unpack(args, first))}
end

redis.register_function('sb_ratelimit', ratelimit_cb)
redis.register_function('sb_event', ratelimit_event_cb)
