-- recover.lua -- sb_recover: connection state recovery (CONTRACT section 6).
-- A client reconnecting with the private session id (pid) and the offset of
-- the last broadcast it received takes its socket back, on any node: same
-- socket id, same rooms, and the node replays the bus after the offset.
--
-- KEYS[1] P{sock:<sid>}            socket hash
-- KEYS[2] P{sock:<sid>}:rooms      socket's room set
-- KEYS[3] Pbus                     the bus stream (read: was anything after the offset trimmed?)
-- KEYS[4] Pevents                  events stream
-- ARGV[1] P (key prefix)   ARGV[2] sid   ARGV[3] pid (the secret half)
-- ARGV[4] nsp              ARGV[5] uid ("" in anonymous mode: any user; else
--         it must be the socket's user, so a token of another user cannot
--         take a session over)
-- ARGV[6] node (the recovering node)   ARGV[7] transport
-- ARGV[8] ts_ms            ARGV[9] events_maxlen (>= 1)
-- ARGV[10] offset: the client's last bus entry id, or "" (then the offset
--          stored at connect: the client received no broadcast since)
-- ARGV[11] auth_json (the CONNECT payload without token, for the entry)
-- Returns {0, why} when the session cannot be recovered (nothing written):
--         why is "unknown" (no such socket or expired), "mismatch" (pid,
--         namespace or user differ), "offset" (not a stream id) or "trimmed"
--         (bus entries after the offset may have been trimmed: the replay would miss
--         some, so the client connects as new rather than silently losing
--         them);
--         {1, uid, offset, gen, room...} when recovered: the socket is connected
--         again through ARGV[6] with a new gen (a copy still held by another
--         node is then stale: its later sb_disconnect writes nothing), its
--         memberships and presence are restored, and a connect entry with
--         the extra field recovered="true" was written (preceded by a
--         disconnect entry, reason "transport close", when the socket was
--         still marked connected on some node, so entries stay paired).
--         The rooms exclude the implicit own-id room.

-- True when entries after `offset` may have been trimmed from the stream.
-- The offset is a bus entry id the client received, or the node's bus
-- position when the socket connected (also an entry id, or 0-0 for a bus that
-- was empty). Trimming removes the oldest entries first, so while the offset's
-- own entry is still there nothing after it is gone. (XINFO's
-- max-deleted-entry-id would be simpler, but Redis 7.0 updates it on XDEL
-- only, not on trimming.)
local function trimmed_after(bus, offset)
    if offset == '0-0' then
        if redis.call('EXISTS', bus) == 0 then
            return false
        end
        local info = redis.call('XINFO', 'STREAM', bus)
        local added, length
        for i = 1, #info, 2 do
            if info[i] == 'entries-added' then
                added = info[i + 1]
            elseif info[i] == 'length' then
                length = info[i + 1]
            end
        end
        return added ~= length
    end
    return #redis.call('XRANGE', bus, offset, offset) == 0
end

local function recover_cb(keys, args)
    local fn = 'sb_recover'
    local p = args[1]
    if type(p) ~= 'string' then
        sb_common_fail(fn, 'ARGV[1] (prefix) must be a string')
    end
    local sid = sb_common_str(fn, args, 2, 'sid')
    local pid = sb_common_str(fn, args, 3, 'pid')
    local nsp = sb_common_nsp(fn, args, 4)
    local uid = args[5]
    if type(uid) ~= 'string' then
        sb_common_fail(fn, 'ARGV[5] (user) is missing')
    end
    local node = sb_common_str(fn, args, 6, 'node')
    local transport = sb_common_str(fn, args, 7, 'transport')
    local ts = sb_common_uint(fn, args, 8, 'ts_ms')
    local maxlen = sb_common_posint(fn, args, 9, 'events_maxlen')
    local offset = args[10]
    local auth = args[11]
    if type(offset) ~= 'string' or type(auth) ~= 'string' then
        sb_common_fail(fn, 'ARGV[10] (offset) and ARGV[11] (auth_json) are required (offset may be empty)')
    end
    if auth == '' then
        auth = '{}'
    end
    sb_common_expect_key(fn, keys, 1, sb_common_sock_key(p, sid))
    sb_common_expect_key(fn, keys, 2, sb_common_sock_rooms_key(p, sid))
    sb_common_expect_key(fn, keys, 3, p .. 'bus')
    sb_common_expect_key(fn, keys, 4, sb_common_events_key(p))

    local f = redis.call('HMGET', keys[1], 'pid', 'nsp', 'user', 'node', 'gen', 'state', 'offset')
    if not f[1] or not f[2] then
        return {0, 'unknown'}
    end
    if f[1] ~= pid or f[2] ~= nsp or (uid ~= '' and f[3] ~= uid) then
        return {0, 'mismatch'}
    end
    if offset == '' then
        offset = f[7] or '0-0'
    end
    if not string.match(offset, '^%d+%-%d+$') or #offset > 41 then
        return {0, 'offset'}
    end
    if trimmed_after(keys[3], offset) then
        return {0, 'trimmed'}
    end
    local user = f[3]
    local old_node = f[4] or ''
    local gen = tostring((tonumber(f[5]) or 0) + 1)
    local rooms = redis.call('SMEMBERS', keys[2])
    if f[6] ~= 'disconnected' then
        -- Still marked connected (its node has not noticed the loss yet, or
        -- died and was not reaped yet): close that incarnation's books.
        if old_node ~= '' then
            redis.call('SREM', sb_common_node_sockets_key(p, old_node), sid)
        end
        sb_common_xadd(p, maxlen, 'disconnect', nsp, sid, user, old_node, ts, 'reason', 'transport close')
    else
        for _, room in ipairs(rooms) do
            sb_common_room_add(p, nsp, room, sid)
        end
        redis.call('SADD', sb_common_user_sockets_key(p, user), sid)
    end
    redis.call('PERSIST', keys[1])
    redis.call('PERSIST', keys[2])
    redis.call('HDEL', keys[1], 'state', 'disconnected_at')
    redis.call('HSET', keys[1], 'node', node, 'transport', transport, 'gen', gen, 'connected_at', ts)
    redis.call('SADD', sb_common_node_sockets_key(p, node), sid)
    sb_common_xadd(p, maxlen, 'connect', nsp, sid, user, node, ts, 'auth', auth, 'recovered', 'true')
    local out = {1, user, offset, gen}
    for _, room in ipairs(rooms) do
        out[#out + 1] = room
    end
    return out
end

redis.register_function('sb_recover', recover_cb)
