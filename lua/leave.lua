-- leave.lua -- sb_leave: removes a connected socket from a room.
--
-- KEYS[1] P{sock:<sid>}            socket hash (read: nsp)
-- KEYS[2] P{sock:<sid>}:rooms      socket's room set
-- ARGV[1] P (key prefix)   ARGV[2] sid   ARGV[3] room
-- Returns 1 when removed, 0 when the socket was not a member, -1 when the
--         socket is unknown (no hash; nothing is written).
--         Leaving "user:<uid>" is allowed: the caller decides whether it may.
-- Invariant: as sb_join's, and a room whose member set became empty is no
--         longer listed in P{ns:<nsp>}:rooms. The room-side removal is done
--         even for a non-member, so a retry repairs a half-written leave.

local function leave_cb(keys, args)
    local fn = 'sb_leave'
    local p = args[1]
    if type(p) ~= 'string' then
        sb_common_fail(fn, 'ARGV[1] (prefix) must be a string')
    end
    local sid = sb_common_str(fn, args, 2, 'sid')
    local room = sb_common_str(fn, args, 3, 'room')
    sb_common_expect_key(fn, keys, 1, sb_common_sock_key(p, sid))
    sb_common_expect_key(fn, keys, 2, sb_common_sock_rooms_key(p, sid))

    local nsp = redis.call('HGET', keys[1], 'nsp')
    if not nsp then
        return -1
    end
    local removed = redis.call('SREM', keys[2], room)
    sb_common_room_remove(p, nsp, room, sid)
    return removed
end

redis.register_function('sb_leave', leave_cb)
