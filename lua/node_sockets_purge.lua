-- node_sockets_purge.lua -- sb_node_sockets_purge: disconnects a node's sockets
-- in slices (at shutdown, and by the reaper for a node whose heartbeat is gone).
--
-- KEYS[1] P{node:<node>}:sockets   node's socket set
-- ARGV[1] P (key prefix)   ARGV[2] node   ARGV[3] reason (e.g. "server shutting down")
-- ARGV[4] ts_ms            ARGV[5] events_maxlen (>= 1)
-- ARGV[6] max_count (1..10000: sockets handled by this call; a Function blocks
--         the server while it runs, so callers loop until 0 remain)
-- ARGV[7] keep_ms (optional): > 0 keeps each socket's state that long for
--         connection state recovery, like sb_disconnect's keep_ms
-- Returns how many socket ids remain in the node's set afterwards.
-- Invariant: each socket handled is removed exactly as sb_disconnect removes
--         it, with one disconnect entry carrying the given reason. A set member
--         whose hash is missing (stale) or whose hash names another node (the
--         id was recovered elsewhere) is only dropped from this node's set: no
--         entry is written and the live socket elsewhere is left alone.

local function node_sockets_purge_cb(keys, args)
    local fn = 'sb_node_sockets_purge'
    local p = args[1]
    if type(p) ~= 'string' then
        sb_common_fail(fn, 'ARGV[1] (prefix) must be a string')
    end
    local node = sb_common_str(fn, args, 2, 'node')
    local reason = sb_common_str(fn, args, 3, 'reason')
    local ts = sb_common_uint(fn, args, 4, 'ts_ms')
    local maxlen = sb_common_posint(fn, args, 5, 'events_maxlen')
    local count = sb_common_posint(fn, args, 6, 'max_count')
    if tonumber(count) > SB_COMMON_PURGE_MAX then
        sb_common_fail(fn, 'ARGV[6] (max_count) must be at most ' .. SB_COMMON_PURGE_MAX)
    end
    local keep_ms = sb_common_opt_uint(fn, args, 7, 'keep_ms')
    sb_common_expect_key(fn, keys, 1, sb_common_node_sockets_key(p, node))

    -- A positive count makes SRANDMEMBER return distinct members.
    local sids = redis.call('SRANDMEMBER', keys[1], count)
    for _, sid in ipairs(sids) do
        local owner = redis.call('HGET', sb_common_sock_key(p, sid), 'node')
        if owner == node then
            sb_common_disconnect(p, sid, reason, ts, maxlen, keep_ms)
        elseif not owner then
            -- Without the hash the namespace of its rooms is unknown; at
            -- least the orphaned room list goes.
            redis.call('DEL', sb_common_sock_rooms_key(p, sid))
        end
        -- sb_common_disconnect already removed it; stale members go here.
        redis.call('SREM', keys[1], sid)
    end
    return redis.call('SCARD', keys[1])
end

redis.register_function('sb_node_sockets_purge', node_sockets_purge_cb)
