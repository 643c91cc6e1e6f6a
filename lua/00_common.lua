-- 00_common.lua -- helpers shared by every Function of the switchboard library.
--
-- KEYS:   none (this file registers no Function).
-- ARGV:   none.
-- Return: nothing; it defines the sb_common_* locals that the files sorted
--         after it use (all lua/*.lua are concatenated into one library, so a
--         top-level local here is visible to every later file).
-- Invariant: every key name is built here and only here, so the schema written
--         in docs/redis-keys.md has exactly one implementation. Every Function
--         validates all of its input before its first write, because Redis does
--         not roll back the writes of a script that fails half-way.
--
-- Key schema (P = prefix, ARGV[1] of every Function):
--   P{sock:<sid>}             HASH id, nsp, user, node, transport, connected_at, gen,
--                                  [pid, offset] (recovery), [state=disconnected, disconnected_at]
--   P{sock:<sid>}:rooms       SET  rooms joined explicitly plus "user:<uid>"
--   P{room:<nsp>:<room>}      SET  socket ids
--   P{ns:<nsp>}:rooms         SET  room names of <nsp> with at least one member
--   P{user:<uid>}:sockets     SET  socket ids of the user (all namespaces)
--   P{node:<node>}:sockets    SET  socket ids connected through the node
--   Pevents                   STREAM connect / disconnect / event entries

-- Upper bound on sockets handled by one sb_node_sockets_purge call: a Function
-- blocks the whole server while it runs, so big purges are done in slices.
local SB_COMMON_PURGE_MAX = 10000

local function sb_common_sock_key(p, sid)
    return p .. '{sock:' .. sid .. '}'
end

local function sb_common_sock_rooms_key(p, sid)
    return p .. '{sock:' .. sid .. '}:rooms'
end

local function sb_common_room_key(p, nsp, room)
    return p .. '{room:' .. nsp .. ':' .. room .. '}'
end

local function sb_common_ns_rooms_key(p, nsp)
    return p .. '{ns:' .. nsp .. '}:rooms'
end

local function sb_common_user_sockets_key(p, uid)
    return p .. '{user:' .. uid .. '}:sockets'
end

local function sb_common_node_sockets_key(p, node)
    return p .. '{node:' .. node .. '}:sockets'
end

local function sb_common_events_key(p)
    return p .. 'events'
end

-- The room every socket of user <uid> is in (CONTRACT section 2).
local function sb_common_user_room(uid)
    return 'user:' .. uid
end

-- Raises an error reply; nothing has been written when the callers use it.
local function sb_common_fail(fn, msg)
    error({err = 'ERR ' .. fn .. ': ' .. msg})
end

-- Returns args[i] when it is a non-empty string, else fails naming the argument.
local function sb_common_str(fn, args, i, name)
    local v = args[i]
    if type(v) ~= 'string' or v == '' then
        sb_common_fail(fn, 'ARGV[' .. i .. '] (' .. name .. ') must be a non-empty string')
    end
    return v
end

-- Returns args[i] (kept as its decimal text: Lua numbers would print large
-- millisecond values as 1.7e+12) when it is an unsigned decimal integer.
local function sb_common_uint(fn, args, i, name)
    local v = args[i]
    if type(v) ~= 'string' or not string.match(v, '^%d+$') or #v > 18 then
        sb_common_fail(fn, 'ARGV[' .. i .. '] (' .. name .. ') must be an unsigned decimal integer')
    end
    return v
end

-- Like sb_common_uint, and at least 1 (stream MAXLEN, counts).
local function sb_common_posint(fn, args, i, name)
    local v = sb_common_uint(fn, args, i, name)
    if tonumber(v) < 1 then
        sb_common_fail(fn, 'ARGV[' .. i .. '] (' .. name .. ') must be at least 1')
    end
    return v
end

-- A namespace is "/" or "/name" and never contains ':' (it is part of room
-- keys, where a ':' would make P{room:<nsp>:<room>} ambiguous).
local function sb_common_nsp(fn, args, i)
    local v = sb_common_str(fn, args, i, 'namespace')
    if string.sub(v, 1, 1) ~= '/' or string.find(v, ':', 1, true) then
        sb_common_fail(fn, 'ARGV[' .. i .. '] (namespace) must start with / and contain no :')
    end
    return v
end

-- The caller names the keys it knows up front in KEYS (for Redis Cluster);
-- a mismatch with the key derived here is a caller bug, refused before writing.
local function sb_common_expect_key(fn, keys, i, expected)
    if keys[i] ~= expected then
        sb_common_fail(fn, 'KEYS[' .. i .. '] must be ' .. expected)
    end
end

-- Adds sid to the room's member set and the room to its namespace's room list.
local function sb_common_room_add(p, nsp, room, sid)
    redis.call('SADD', sb_common_room_key(p, nsp, room), sid)
    redis.call('SADD', sb_common_ns_rooms_key(p, nsp), room)
end

-- SADD of every member of the list: one call per chunk instead of one per
-- member (each redis.call costs more than the member it adds); the chunks keep
-- unpack() within Lua's stack limit whatever the caller passed.
local function sb_common_sadd_all(key, members)
    local n = #members
    for i = 1, n, 512 do
        redis.call('SADD', key, unpack(members, i, math.min(i + 511, n)))
    end
end

-- Removes sid from the room's member set; a room without members leaves the
-- namespace's room list (Redis already deleted the empty set itself).
local function sb_common_room_remove(p, nsp, room, sid)
    local key = sb_common_room_key(p, nsp, room)
    redis.call('SREM', key, sid)
    if redis.call('SCARD', key) == 0 then
        redis.call('SREM', sb_common_ns_rooms_key(p, nsp), room)
    end
end

-- Appends one entry with the CONTRACT section 4 fields, in that order, plus
-- the extra field (auth for connect, reason for disconnect), and optionally a
-- second one (recovered for the connect of a recovered socket).
local function sb_common_xadd(p, maxlen, etype, nsp, sid, uid, node, ts, extra_name, extra_value, x2_name, x2_value)
    if x2_name then
        return redis.call('XADD', sb_common_events_key(p), 'MAXLEN', '~', maxlen, '*',
            'type', etype, 'namespace', nsp, 'socket', sid, 'user', uid,
            'event', '', 'args', '[]', 'ack_id', '', 'node', node, 'ts', ts,
            extra_name, extra_value, x2_name, x2_value)
    end
    return redis.call('XADD', sb_common_events_key(p), 'MAXLEN', '~', maxlen, '*',
        'type', etype, 'namespace', nsp, 'socket', sid, 'user', uid,
        'event', '', 'args', '[]', 'ack_id', '', 'node', node, 'ts', ts,
        extra_name, extra_value)
end

-- Optional unsigned integer argument: nil when absent or empty.
local function sb_common_opt_uint(fn, args, i, name)
    if args[i] == nil or args[i] == '' then
        return nil
    end
    return sb_common_uint(fn, args, i, name)
end

-- Removes every trace of socket sid and writes its disconnect entry.
-- keep_ms > 0 (connection state recovery): the memberships, the user's and the
-- node's socket sets lose the socket as usual (presence never lists it), but
-- its hash and room set stay for keep_ms, marked state=disconnected, so that
-- sb_recover can restore them. gen (optional): the incarnation the caller
-- holds; when the socket was recovered since (its gen moved on), the caller's
-- copy is stale and nothing is written.
-- Returns 0 (and writes nothing) when the socket hash does not exist, is
-- already disconnected, or is of another gen; else 1.
local function sb_common_disconnect(p, sid, reason, ts, maxlen, keep_ms, gen)
    local sock = sb_common_sock_key(p, sid)
    if redis.call('EXISTS', sock) == 0 then
        return 0
    end
    local f = redis.call('HMGET', sock, 'nsp', 'user', 'node', 'gen', 'state')
    if f[5] == 'disconnected' then
        return 0
    end
    if gen and (f[4] or '0') ~= gen then
        return 0
    end
    local nsp = f[1] or ''
    local uid = f[2] or ''
    local node = f[3] or ''
    local rooms_key = sb_common_sock_rooms_key(p, sid)
    if nsp ~= '' then
        local rooms = redis.call('SMEMBERS', rooms_key)
        for _, room in ipairs(rooms) do
            sb_common_room_remove(p, nsp, room, sid)
        end
    end
    if uid ~= '' then
        redis.call('SREM', sb_common_user_sockets_key(p, uid), sid)
    end
    if node ~= '' then
        redis.call('SREM', sb_common_node_sockets_key(p, node), sid)
    end
    if keep_ms and tonumber(keep_ms) > 0 then
        redis.call('HSET', sock, 'state', 'disconnected', 'disconnected_at', ts)
        redis.call('PEXPIRE', sock, keep_ms)
        redis.call('PEXPIRE', rooms_key, keep_ms)
    else
        redis.call('DEL', sock, rooms_key)
    end
    sb_common_xadd(p, maxlen, 'disconnect', nsp, sid, uid, node, ts, 'reason', reason)
    return 1
end

-- Token buckets (rate limits). A bucket is a HASH {t = tokens, ts = ms of
-- the last update}; it refills `rate` tokens per `period` ms up to `burst`,
-- and expires once it would be full again, so idle buckets cost nothing.
-- Reads the bucket at `now`: returns its current tokens (without writing).
local function sb_common_bucket_tokens(key, rate, period, burst, now)
    local b = redis.call('HMGET', key, 't', 'ts')
    local tokens = tonumber(b[1])
    local ts = tonumber(b[2])
    if not tokens or not ts then
        return burst
    end
    if now > ts then
        tokens = math.min(burst, tokens + (now - ts) * rate / period)
    end
    return tokens
end

-- Milliseconds until `cost` tokens are there.
local function sb_common_bucket_wait(tokens, cost, rate, period)
    return math.ceil((cost - tokens) * period / rate)
end

local function sb_common_bucket_store(key, tokens, rate, period, burst, now)
    redis.call('HSET', key, 't', tostring(tokens), 'ts', now)
    redis.call('PEXPIRE', key, math.ceil((burst - tokens) * period / rate) + 1000)
end

-- Bucket parameters from args[i], args[i+1], args[i+2] (rate, period_ms, burst).
local function sb_common_bucket_params(fn, args, i)
    local rate = tonumber(sb_common_posint(fn, args, i, 'rate'))
    local period = tonumber(sb_common_posint(fn, args, i + 1, 'period_ms'))
    local burst = tonumber(sb_common_posint(fn, args, i + 2, 'burst'))
    return rate, period, burst
end

-- Takes `cost` tokens from every bucket, or from none: returns 0 when all had
-- enough, else the longest wait in ms (nothing written). buckets is a list of
-- {key, rate, period, burst}.
local function sb_common_buckets_take(buckets, now, cost)
    local wait = 0
    local left = {}
    for i, b in ipairs(buckets) do
        local tokens = sb_common_bucket_tokens(b[1], b[2], b[3], b[4], now)
        if tokens < cost then
            wait = math.max(wait, sb_common_bucket_wait(tokens, cost, b[2], b[3]))
        end
        left[i] = tokens - cost
    end
    if wait > 0 then
        return wait
    end
    for i, b in ipairs(buckets) do
        sb_common_bucket_store(b[1], left[i], b[2], b[3], b[4], now)
    end
    return 0
end
