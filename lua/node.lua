-- node.lua -- sb_node_beat: a node's heartbeat and figures; sb_stats: every live node's figures;
-- sb_node_loads: the live nodes' connection counts (rebalancing).
--
-- sb_node_beat
-- KEYS[1] P{node:<node>}        HASH of the node's figures (expires after ttl_ms)
-- KEYS[2] Pnodes                ZSET node id -> last heartbeat (ms)
-- ARGV[1] P   ARGV[2] node   ARGV[3] now_ms   ARGV[4] ttl_ms   ARGV[5..] field, value pairs
-- Returns the ids of dead nodes: members of Pnodes not seen within ttl_ms
--         (3 heartbeats). The caller reaps each (sb_node_sockets_purge) and then
--         removes it from Pnodes (ZREM), so a dead node's sockets, memberships
--         and presence go within three heartbeats and nothing is forgotten
--         half-way (a reap interrupted by a crash is picked up by the next beat).
--         After a gap in which no node beat at all for longer than ttl_ms (Redis
--         was down or restarted from its AOF/RDB file: every node's last beat is
--         old, yet they are alive and reconnecting with backoff), nobody is
--         declared dead for ttl_ms + SB_NODE_GAP_GRACE_MS, so the live nodes can
--         beat again first. Also writes Pnodes:last (ms of the last beat by any
--         node) and Pnodes:grace (ms until which nobody is reaped; expires).
-- Invariant: a node is live while its hash exists.
--
-- sb_stats (no writes)
-- KEYS[1] Pnodes
-- ARGV[1] P
-- Returns { {node, {field, value, ...}}, ... } for every node whose hash exists,
--         ordered by node id.
--
-- sb_node_loads (no writes): what rebalancing compares a node with
-- KEYS[1] Pnodes
-- ARGV[1] P   ARGV[2] now_ms   ARGV[3] ttl_ms
-- Returns { node, connections, node, connections, ... } (at most 1024 nodes) for the live
--         nodes: a heartbeat within ttl_ms and a hash that still exists, without the
--         nodes that are draining (field draining = 1: they take no new clients, so
--         counting them would make the others look loaded). connections is an integer.

-- Two of a node's longest Redis reconnect backoffs (src/redis.c BACKOFF_MAX_MS):
-- after an outage every live node beats again within this.
local SB_NODE_GAP_GRACE_MS = 10000

local function node_beat_cb(keys, args)
    local fn = 'sb_node_beat'
    local p = args[1]
    if type(p) ~= 'string' then
        sb_common_fail(fn, 'ARGV[1] (prefix) must be a string')
    end
    local node = sb_common_str(fn, args, 2, 'node')
    local now = sb_common_uint(fn, args, 3, 'now_ms')
    local ttl = sb_common_posint(fn, args, 4, 'ttl_ms')
    sb_common_expect_key(fn, keys, 1, p .. '{node:' .. node .. '}')
    sb_common_expect_key(fn, keys, 2, p .. 'nodes')
    if (#args - 4) % 2 ~= 0 then
        sb_common_fail(fn, 'ARGV[5..] must be field, value pairs')
    end
    if #args > 4 then
        redis.call('HSET', keys[1], unpack(args, 5))
    end
    redis.call('HSET', keys[1], 'id', node, 'last_seen', now)
    redis.call('PEXPIRE', keys[1], ttl)
    redis.call('ZADD', keys[2], now, node)
    local last_key, grace_key = keys[2] .. ':last', keys[2] .. ':grace'
    local last = tonumber(redis.call('GET', last_key) or '0') or 0
    local grace = tonumber(redis.call('GET', grace_key) or '0') or 0
    local t, limit = tonumber(now), tonumber(ttl)
    if t > last then
        redis.call('SET', last_key, now)
    end
    if last > 0 and t - last > limit then
        grace = t + limit + SB_NODE_GAP_GRACE_MS
        redis.call('SET', grace_key, grace, 'PX', limit + SB_NODE_GAP_GRACE_MS)
    end
    if t < grace then
        return {}
    end
    return redis.call('ZRANGEBYSCORE', keys[2], '-inf', '(' .. (t - limit), 'LIMIT', 0, 16)
end

local function node_stats_cb(keys, args)
    local fn = 'sb_stats'
    local p = args[1]
    if type(p) ~= 'string' then
        sb_common_fail(fn, 'ARGV[1] (prefix) must be a string')
    end
    sb_common_expect_key(fn, keys, 1, p .. 'nodes')
    local out = {}
    for _, node in ipairs(redis.call('ZRANGE', keys[1], 0, -1)) do
        local h = redis.call('HGETALL', p .. '{node:' .. node .. '}')
        if #h > 0 then
            out[#out + 1] = {node, h}
        end
    end
    table.sort(out, function(a, b) return a[1] < b[1] end)
    return out
end

local function node_loads_cb(keys, args)
    local fn = 'sb_node_loads'
    local p = args[1]
    if type(p) ~= 'string' then
        sb_common_fail(fn, 'ARGV[1] (prefix) must be a string')
    end
    local now = sb_common_uint(fn, args, 2, 'now_ms')
    local ttl = sb_common_posint(fn, args, 3, 'ttl_ms')
    sb_common_expect_key(fn, keys, 1, p .. 'nodes')
    local out = {}
    local live = redis.call('ZRANGEBYSCORE', keys[1], tonumber(now) - tonumber(ttl), '+inf', 'LIMIT', 0, 1024)
    for _, node in ipairs(live) do
        local h = redis.call('HMGET', p .. '{node:' .. node .. '}', 'id', 'connections', 'draining')
        if h[1] and h[3] ~= '1' then
            out[#out + 1] = node
            out[#out + 1] = tonumber(h[2]) or 0
        end
    end
    return out
end

redis.register_function('sb_node_beat', node_beat_cb)
redis.register_function{function_name = 'sb_stats', callback = node_stats_cb, flags = {'no-writes'}}
redis.register_function{function_name = 'sb_node_loads', callback = node_loads_cb, flags = {'no-writes'}}
