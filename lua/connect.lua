-- connect.lua -- sb_connect: records a newly connected socket.
--
-- KEYS[1] P{sock:<sid>}            socket hash
-- KEYS[2] P{sock:<sid>}:rooms      socket's room set
-- KEYS[3] P{user:<uid>}:sockets    user's socket set
-- KEYS[4] P{node:<node>}:sockets   node's socket set
-- KEYS[5] Pevents                  events stream
-- ARGV[1] P (key prefix, e.g. "sb:")
-- ARGV[2] sid        ARGV[3] nsp ("/" or "/name", no ':')
-- ARGV[4] uid        ARGV[5] node        ARGV[6] transport ("websocket", "polling")
-- ARGV[7] ts_ms (connected_at and the entry's ts)
-- ARGV[8] events_maxlen (>= 1, XADD MAXLEN ~)
-- ARGV[9] auth_json (the CONNECT auth payload as JSON text; "" is stored as "{}")
-- ARGV[10] pid: the secret half of the private session id given to the client
--          for connection state recovery ("" when recovery is off)
-- ARGV[11] offset: the last bus entry id the node had applied when the socket
--          entered its room index ("" when recovery is off); replay starts
--          after it when a recovering client brings no offset of its own
-- ARGV[12..] extra rooms to join at connect (e.g. the token's "join" claim)
-- With KEYS[6] P{rl:addr:<client address>} (a connection-rate bucket), ARGV[12],
-- ARGV[13], ARGV[14] are its rate, period_ms and burst, and the rooms start at ARGV[15].
-- Returns 1 when recorded; 0 when the socket hash already exists (a retry):
--         then nothing is written, in particular no second connect entry;
--         {-1, retry_after_ms} when the address is over its connection rate
--         (nothing written, no token taken).
-- Invariant: the socket is in "user:<uid>" and every extra room, and each of
--         those memberships is mirrored in the room set and the namespace's
--         room list; exactly one connect entry is written per socket id.

local function connect_cb(keys, args)
    local fn = 'sb_connect'
    local p = args[1]
    if type(p) ~= 'string' then
        sb_common_fail(fn, 'ARGV[1] (prefix) must be a string')
    end
    local sid = sb_common_str(fn, args, 2, 'sid')
    local nsp = sb_common_nsp(fn, args, 3)
    local uid = sb_common_str(fn, args, 4, 'user')
    local node = sb_common_str(fn, args, 5, 'node')
    local transport = sb_common_str(fn, args, 6, 'transport')
    local ts = sb_common_uint(fn, args, 7, 'ts_ms')
    local maxlen = sb_common_posint(fn, args, 8, 'events_maxlen')
    local auth = args[9]
    if type(auth) ~= 'string' then
        sb_common_fail(fn, 'ARGV[9] (auth_json) is missing')
    end
    if auth == '' then
        auth = '{}'
    end
    local pid = args[10]
    local offset = args[11]
    if type(pid) ~= 'string' or type(offset) ~= 'string' then
        sb_common_fail(fn, 'ARGV[10] (pid) and ARGV[11] (offset) are required (may be empty)')
    end
    if offset ~= '' and not string.match(offset, '^%d+%-%d+$') then
        sb_common_fail(fn, 'ARGV[11] (offset) must be a stream id')
    end
    local first_room = 12
    local bucket = nil
    if #keys >= 6 then
        local rate, period, burst = sb_common_bucket_params(fn, args, 12)
        bucket = {keys[6], rate, period, burst}
        first_room = 15
    end
    local rooms = {sb_common_user_room(uid)}
    for i = first_room, #args do
        rooms[#rooms + 1] = sb_common_str(fn, args, i, 'room')
    end
    sb_common_expect_key(fn, keys, 1, sb_common_sock_key(p, sid))
    sb_common_expect_key(fn, keys, 2, sb_common_sock_rooms_key(p, sid))
    sb_common_expect_key(fn, keys, 3, sb_common_user_sockets_key(p, uid))
    sb_common_expect_key(fn, keys, 4, sb_common_node_sockets_key(p, node))
    sb_common_expect_key(fn, keys, 5, sb_common_events_key(p))

    if redis.call('EXISTS', keys[1]) == 1 then
        return 0
    end
    if bucket then
        local wait = sb_common_buckets_take({bucket}, tonumber(ts), 1)
        if wait > 0 then
            return {-1, wait}
        end
    end
    -- One call per key, not per field or member: redis.call dominates the cost of this Function.
    if pid ~= '' then
        redis.call('HSET', keys[1], 'id', sid, 'nsp', nsp, 'user', uid, 'node', node,
            'transport', transport, 'connected_at', ts, 'gen', '0', 'pid', pid, 'offset', offset)
    else
        redis.call('HSET', keys[1], 'id', sid, 'nsp', nsp, 'user', uid, 'node', node,
            'transport', transport, 'connected_at', ts, 'gen', '0')
    end
    sb_common_sadd_all(keys[2], rooms)
    for _, room in ipairs(rooms) do
        redis.call('SADD', sb_common_room_key(p, nsp, room), sid)
    end
    sb_common_sadd_all(sb_common_ns_rooms_key(p, nsp), rooms)
    redis.call('SADD', keys[3], sid)
    redis.call('SADD', keys[4], sid)
    sb_common_xadd(p, maxlen, 'connect', nsp, sid, uid, node, ts, 'auth', auth)
    return 1
end

redis.register_function('sb_connect', connect_cb)
