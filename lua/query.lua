-- query.lua -- read-only presence queries behind the REST API (all no-writes,
-- callable with FCALL_RO, also from replicas).
--
-- sb_rooms
-- KEYS[1] P{ns:<nsp>}:rooms
-- ARGV[1] P   ARGV[2] nsp   ARGV[3] name prefix ('' for all)   ARGV[4] limit
-- Returns {room, count, room, count, ...} sorted by room name, at most limit rooms.
--
-- sb_room_info
-- KEYS[1] P{room:<nsp>:<room>}
-- ARGV[1] P   ARGV[2] limit
-- Returns {count, {sid, user, node}, ...} with at most limit members (sorted by sid).
--
-- sb_user_info
-- KEYS[1] P{user:<uid>}:sockets
-- ARGV[1] P
-- Returns { {sid, nsp, node, transport, connected_at, {room, ...}}, ... } sorted by sid.
--
-- sb_socket_info
-- KEYS[1] P{sock:<sid>}   KEYS[2] P{sock:<sid>}:rooms
-- ARGV[1] P   ARGV[2] sid
-- Returns {} for an unknown socket, else {sid, nsp, user, node, transport, connected_at, {room, ...}}.
--
-- Invariant: nothing is written; the answers are one consistent snapshot.

local function query_prefix(fn, args)
    local p = args[1]
    if type(p) ~= 'string' then
        sb_common_fail(fn, 'ARGV[1] (prefix) must be a string')
    end
    return p
end

local function query_rooms_cb(keys, args)
    local fn = 'sb_rooms'
    local p = query_prefix(fn, args)
    local nsp = sb_common_nsp(fn, args, 2)
    local want = args[3] or ''
    local limit = tonumber(sb_common_posint(fn, args, 4, 'limit'))
    sb_common_expect_key(fn, keys, 1, sb_common_ns_rooms_key(p, nsp))
    local rooms = redis.call('SMEMBERS', keys[1])
    table.sort(rooms)
    local out = {}
    local n = 0
    for _, room in ipairs(rooms) do
        if want == '' or string.sub(room, 1, #want) == want then
            out[#out + 1] = room
            out[#out + 1] = redis.call('SCARD', sb_common_room_key(p, nsp, room))
            n = n + 1
            if n >= limit then
                break
            end
        end
    end
    return out
end

local function query_room_info_cb(keys, args)
    local fn = 'sb_room_info'
    local p = query_prefix(fn, args)
    local limit = tonumber(sb_common_posint(fn, args, 2, 'limit'))
    local members = redis.call('SMEMBERS', keys[1])
    table.sort(members)
    local out = {#members}
    for i, sid in ipairs(members) do
        if i > limit then
            break
        end
        local f = redis.call('HMGET', sb_common_sock_key(p, sid), 'user', 'node')
        out[#out + 1] = {sid, f[1] or '', f[2] or ''}
    end
    return out
end

local function query_socket(p, sid)
    local f = redis.call('HMGET', sb_common_sock_key(p, sid), 'nsp', 'user', 'node', 'transport', 'connected_at',
        'state')
    if not f[1] or f[6] == 'disconnected' then -- kept only for recovery: not a connected socket
        return nil
    end
    local rooms = redis.call('SMEMBERS', sb_common_sock_rooms_key(p, sid))
    rooms[#rooms + 1] = sid -- every socket is in its own room (implicit in Redis)
    table.sort(rooms)
    return f, rooms
end

local function query_user_info_cb(keys, args)
    local fn = 'sb_user_info'
    local p = query_prefix(fn, args)
    local sids = redis.call('SMEMBERS', keys[1])
    table.sort(sids)
    local out = {}
    for _, sid in ipairs(sids) do
        local f, rooms = query_socket(p, sid)
        if f then
            out[#out + 1] = {sid, f[1], f[3] or '', f[4] or '', f[5] or '', rooms}
        end
    end
    return out
end

local function query_socket_info_cb(keys, args)
    local fn = 'sb_socket_info'
    local p = query_prefix(fn, args)
    local sid = sb_common_str(fn, args, 2, 'sid')
    sb_common_expect_key(fn, keys, 1, sb_common_sock_key(p, sid))
    sb_common_expect_key(fn, keys, 2, sb_common_sock_rooms_key(p, sid))
    local f, rooms = query_socket(p, sid)
    if not f then
        return {}
    end
    return {sid, f[1], f[2] or '', f[3] or '', f[4] or '', f[5] or '', rooms}
end

redis.register_function{function_name = 'sb_rooms', callback = query_rooms_cb, flags = {'no-writes'}}
redis.register_function{function_name = 'sb_room_info', callback = query_room_info_cb, flags = {'no-writes'}}
redis.register_function{function_name = 'sb_user_info', callback = query_user_info_cb, flags = {'no-writes'}}
redis.register_function{function_name = 'sb_socket_info', callback = query_socket_info_cb, flags = {'no-writes'}}

-- sb_top_rooms (no writes)
-- KEYS: P{ns:<nsp>}:rooms for each namespace to look at
-- ARGV[1] P   ARGV[2] limit   ARGV[3..] the namespaces, in the order of KEYS
-- Returns {nsp, room, count, ...} of the `limit` rooms with the most members
-- (at most 10000 rooms looked at per namespace: a dashboard view, not an audit).
local function query_top_rooms_cb(keys, args)
    local fn = 'sb_top_rooms'
    local p = query_prefix(fn, args)
    local limit = tonumber(sb_common_posint(fn, args, 2, 'limit'))
    local all = {}
    for i, key in ipairs(keys) do
        local nsp = sb_common_nsp(fn, args, 2 + i)
        sb_common_expect_key(fn, keys, i, sb_common_ns_rooms_key(p, nsp))
        local rooms = redis.call('SRANDMEMBER', key, 10000)
        for _, room in ipairs(rooms) do
            all[#all + 1] = {nsp, room, redis.call('SCARD', sb_common_room_key(p, nsp, room))}
        end
    end
    table.sort(all, function(a, b)
        if a[3] ~= b[3] then return a[3] > b[3] end
        return a[2] < b[2]
    end)
    local out = {}
    for i = 1, math.min(limit, #all) do
        out[#out + 1] = all[i][1]
        out[#out + 1] = all[i][2]
        out[#out + 1] = all[i][3]
    end
    return out
end

redis.register_function{function_name = 'sb_top_rooms', callback = query_top_rooms_cb, flags = {'no-writes'}}
