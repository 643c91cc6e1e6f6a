-- durable.lua -- durable emits to users (CONTRACT section 6): every target
-- user's inbox stream keeps the event until a client of that user acks it.
--
-- sb_emit_durable
-- KEYS[1]      Pbus (the broadcast stream)
-- KEYS[2 ..]   P{user:<uid>}:inbox, one per entry of msg.users, in that order
-- ARGV[1] P (key prefix)
-- ARGV[2] msg: the emit body as JSON text (CONTRACT section 3: event, args,
--         namespace, users, durable), written to the bus entry byte for byte
-- ARGV[3] args: msg.args as JSON array text ("[]" when none), stored in the
--         inbox as given (Lua would re-encode numbers and empty arrays)
-- ARGV[4] inbox_maxlen (>= 1): entries kept per inbox (exact XTRIM MAXLEN)
-- ARGV[5] inbox_max_age_ms (>= 1): entries older than this are trimmed and
--         the inbox key expires this long after its last write
-- Returns {bus entry id, dropped by maxlen, dropped by age, users whose inbox
--         dropped something, inbox entries written (distinct users)}.
-- Writes: per user XADD P{user:<uid>}:inbox * nsp <nsp> event <e> args <args>
--         ts <ms>; then one XADD Pbus * op emit msg <msg> inbox
--         <JSON {"<uid>":"<inbox entry id>",...}>.
-- Invariant: an entry is in an inbox before the bus entry that announces it
--         exists, so a node that reads an inbox after seeing the bus entry
--         finds it (unless acked or trimmed). Everything is validated before
--         the first write. Cluster: the inboxes and the bus are separate
--         slots; this Function needs a single primary (as every Function here).
--
-- sb_inbox_read
-- KEYS[1] P{user:<uid>}:inbox
-- ARGV[1] P   ARGV[2] uid   ARGV[3] nsp
-- ARGV[4] after: an entry id (exclusive), "0-0" to start at the beginning
-- ARGV[5] count (>= 1): entries scanned at most (all namespaces)
-- ARGV[6] inbox_max_age_ms (>= 1): older entries are trimmed first
-- Returns {dropped by age, last scanned id ("" when none), more (1 when
--         `count` entries were scanned), id1, event1, args1, id2, ...}: the
--         entries of namespace nsp, oldest first.

local SB_DURABLE_MAX_USERS = 1000

-- A JSON string value of msg, or nil when absent / JSON null.
local function durable_opt_str(fn, msg, field)
    local v = msg[field]
    if v == nil or v == cjson.null then
        return nil
    end
    if type(v) ~= 'string' then
        sb_common_fail(fn, 'msg.' .. field .. ' must be a string')
    end
    return v
end

-- Fails when msg carries a target or flag that a durable emit cannot honour.
local function durable_check_exclusive(fn, msg)
    for _, f in ipairs({'rooms', 'sockets', 'except_rooms', 'except_sockets'}) do
        local v = msg[f]
        if type(v) == 'table' and #v > 0 then
            sb_common_fail(fn, 'msg.' .. f .. ' cannot be combined with a durable emit (users only)')
        end
    end
    if msg['volatile'] == true then
        sb_common_fail(fn, 'msg.volatile cannot be combined with a durable emit')
    end
    if msg['reply_to'] ~= nil and msg['reply_to'] ~= cjson.null then
        sb_common_fail(fn, 'msg.reply_to cannot be combined with a durable emit')
    end
end

-- Milliseconds of the server clock (entry ids use the same clock).
local function durable_now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function durable_inbox_key(p, uid)
    return p .. '{user:' .. uid .. '}:inbox'
end

local function emit_durable_cb(keys, args)
    local fn = 'sb_emit_durable'
    local p = args[1]
    if type(p) ~= 'string' then
        sb_common_fail(fn, 'ARGV[1] (prefix) must be a string')
    end
    local text = sb_common_str(fn, args, 2, 'msg')
    local argtext = sb_common_str(fn, args, 3, 'args')
    local maxlen = sb_common_posint(fn, args, 4, 'inbox_maxlen')
    local maxage = tonumber(sb_common_posint(fn, args, 5, 'inbox_max_age_ms'))
    local ok, msg = pcall(cjson.decode, text)
    if not ok or type(msg) ~= 'table' then
        sb_common_fail(fn, 'ARGV[2] (msg) must be a JSON object')
    end
    local okargs, a = pcall(cjson.decode, argtext)
    if not okargs or type(a) ~= 'table' or string.sub(argtext, 1, 1) ~= '[' then
        sb_common_fail(fn, 'ARGV[3] (args) must be a JSON array')
    end
    local event = durable_opt_str(fn, msg, 'event')
    if event == nil or event == '' then
        sb_common_fail(fn, 'msg.event is required: a non-empty string')
    end
    local nsp = durable_opt_str(fn, msg, 'namespace') or '/'
    durable_check_exclusive(fn, msg)
    local users = msg['users']
    if type(users) ~= 'table' or #users == 0 then
        sb_common_fail(fn, 'msg.users is required: a durable emit targets users')
    end
    if #users > SB_DURABLE_MAX_USERS then
        sb_common_fail(fn, 'msg.users holds more than ' .. SB_DURABLE_MAX_USERS .. ' users')
    end
    if #keys ~= 1 + #users then
        sb_common_fail(fn, 'KEYS must be Pbus and one inbox key per user (' .. (1 + #users) .. ' keys)')
    end
    sb_common_expect_key(fn, keys, 1, p .. 'bus')
    for i, uid in ipairs(users) do
        if type(uid) ~= 'string' or uid == '' then
            sb_common_fail(fn, 'msg.users must hold non-empty strings')
        end
        sb_common_expect_key(fn, keys, i + 1, durable_inbox_key(p, uid))
    end

    local now = durable_now_ms()
    local ids = {}
    local by_len, by_age, hit, stored = 0, 0, 0, 0
    for i, uid in ipairs(users) do
        if ids[uid] == nil then
            local key = keys[i + 1]
            stored = stored + 1
            ids[uid] = redis.call('XADD', key, '*', 'nsp', nsp, 'event', event, 'args', argtext, 'ts', tostring(now))
            local l = redis.call('XTRIM', key, 'MAXLEN', maxlen)
            local a2 = redis.call('XTRIM', key, 'MINID', tostring(now - maxage))
            redis.call('PEXPIRE', key, maxage)
            by_len = by_len + l
            by_age = by_age + a2
            if l + a2 > 0 then
                hit = hit + 1
            end
        end
    end
    local id = redis.call('XADD', keys[1], '*', 'op', 'emit', 'msg', text, 'inbox', cjson.encode(ids))
    return {id, by_len, by_age, hit, stored}
end

local function inbox_read_cb(keys, args)
    local fn = 'sb_inbox_read'
    local p = args[1]
    if type(p) ~= 'string' then
        sb_common_fail(fn, 'ARGV[1] (prefix) must be a string')
    end
    local uid = sb_common_str(fn, args, 2, 'uid')
    local nsp = sb_common_str(fn, args, 3, 'nsp')
    local after = sb_common_str(fn, args, 4, 'after')
    if not string.match(after, '^%d+%-%d+$') then
        sb_common_fail(fn, 'ARGV[4] (after) must be a stream id <ms>-<seq>')
    end
    local count = sb_common_posint(fn, args, 5, 'count')
    local maxage = tonumber(sb_common_posint(fn, args, 6, 'inbox_max_age_ms'))
    sb_common_expect_key(fn, keys, 1, durable_inbox_key(p, uid))

    -- Most users have no inbox at all (it expires with its last entry): one EXISTS instead of TIME, XTRIM and XRANGE.
    if redis.call('EXISTS', keys[1]) == 0 then
        return {0, '', 0}
    end
    local dropped = redis.call('XTRIM', keys[1], 'MINID', tostring(durable_now_ms() - maxage))
    local entries = redis.call('XRANGE', keys[1], '(' .. after, '+', 'COUNT', count)
    local out = {dropped, '', 0}
    if #entries > 0 then
        out[2] = entries[#entries][1]
    end
    if #entries == tonumber(count) then
        out[3] = 1
    end
    for _, e in ipairs(entries) do
        local f = {}
        local kv = e[2]
        for j = 1, #kv - 1, 2 do
            f[kv[j]] = kv[j + 1]
        end
        if f['nsp'] == nsp and f['event'] then
            out[#out + 1] = e[1]
            out[#out + 1] = f['event']
            out[#out + 1] = f['args'] or '[]'
        end
    end
    return out
end

redis.register_function('sb_emit_durable', emit_durable_cb)
redis.register_function('sb_inbox_read', inbox_read_cb)
