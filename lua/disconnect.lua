-- disconnect.lua -- sb_disconnect: forgets a socket and announces it.
--
-- KEYS[1] P{sock:<sid>}            socket hash (read: nsp, user, node; deleted)
-- KEYS[2] P{sock:<sid>}:rooms      socket's room set (deleted)
-- KEYS[3] Pevents                  events stream
-- ARGV[1] P (key prefix)   ARGV[2] sid   ARGV[3] reason (e.g. "transport close")
-- ARGV[4] ts_ms            ARGV[5] events_maxlen (>= 1)
-- ARGV[6] keep_ms (optional): > 0 keeps the hash and room set that long for
--         connection state recovery (marked state=disconnected), see below
-- ARGV[7] gen (optional): the caller's incarnation of the socket; a stale one
--         (the socket was recovered since, maybe on another node) writes nothing
-- Also writes (derived from P and the hash): P{room:<nsp>:<room>} for every
--         room of the socket, P{ns:<nsp>}:rooms, P{user:<uid>}:sockets,
--         P{node:<node>}:sockets.
-- Returns 1 when the socket existed; 0 for an unknown, already disconnected or
--         stale socket (nothing written, so a repeated disconnect writes no
--         second entry).
-- Invariant: afterwards no membership, user or node set holds sid (with
--         keep_ms only the socket's own hash and room set remain, expiring), no room without members is listed in
--         its namespace, and exactly one disconnect entry (type, namespace,
--         socket, user, event "", args "[]", ack_id "", node, ts, reason) was
--         written per connected socket.

local function disconnect_cb(keys, args)
    local fn = 'sb_disconnect'
    local p = args[1]
    if type(p) ~= 'string' then
        sb_common_fail(fn, 'ARGV[1] (prefix) must be a string')
    end
    local sid = sb_common_str(fn, args, 2, 'sid')
    local reason = sb_common_str(fn, args, 3, 'reason')
    local ts = sb_common_uint(fn, args, 4, 'ts_ms')
    local maxlen = sb_common_posint(fn, args, 5, 'events_maxlen')
    local keep_ms = sb_common_opt_uint(fn, args, 6, 'keep_ms')
    local gen = sb_common_opt_uint(fn, args, 7, 'gen')
    sb_common_expect_key(fn, keys, 1, sb_common_sock_key(p, sid))
    sb_common_expect_key(fn, keys, 2, sb_common_sock_rooms_key(p, sid))
    sb_common_expect_key(fn, keys, 3, sb_common_events_key(p))

    return sb_common_disconnect(p, sid, reason, ts, maxlen, keep_ms, gen)
end

redis.register_function('sb_disconnect', disconnect_cb)
