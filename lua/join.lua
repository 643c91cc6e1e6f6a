-- join.lua -- sb_join: adds a connected socket to a room of its namespace.
--
-- KEYS[1] P{sock:<sid>}            socket hash (read: nsp)
-- KEYS[2] P{sock:<sid>}:rooms      socket's room set
-- ARGV[1] P (key prefix)   ARGV[2] sid   ARGV[3] room
-- Returns 1 when added, 0 when the socket already was a member, -1 when the
--         socket is unknown (no hash; nothing is written).
-- Invariant: room in P{sock:<sid>}:rooms <=> sid in P{room:<nsp>:<room>}, and a
--         room with members is listed in P{ns:<nsp>}:rooms. The room-side adds
--         are repeated even for an existing member, so a retry repairs a
--         membership that was only half written (future Cluster mode).

local function join_cb(keys, args)
    local fn = 'sb_join'
    local p = args[1]
    if type(p) ~= 'string' then
        sb_common_fail(fn, 'ARGV[1] (prefix) must be a string')
    end
    local sid = sb_common_str(fn, args, 2, 'sid')
    local room = sb_common_str(fn, args, 3, 'room')
    sb_common_expect_key(fn, keys, 1, sb_common_sock_key(p, sid))
    sb_common_expect_key(fn, keys, 2, sb_common_sock_rooms_key(p, sid))

    local f = redis.call('HMGET', keys[1], 'nsp', 'state')
    local nsp = f[1]
    if not nsp or f[2] == 'disconnected' then
        return -1 -- unknown, or kept only for recovery (never listed as a member)
    end
    local added = redis.call('SADD', keys[2], room)
    sb_common_room_add(p, nsp, room, sid)
    return added
end

redis.register_function('sb_join', join_cb)
