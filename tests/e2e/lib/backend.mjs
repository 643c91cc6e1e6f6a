// A backend that uses nothing but Redis, as the contract (§4) allows:
// reads client events from the stream `<prefix>events` and acts through
// `XADD <prefix>bus * op <op> msg <json>`.
//
// Blocking XREADs run on node-redis' isolated connections so that they never
// hold up the XADDs and state reads issued on the main connection.

import { createClient } from 'redis';

const BLOCK_SLICE_MS = 500; // one XREAD BLOCK never outlives the caller's bound by more than this

export async function connectRedis(url) {
    // No reconnect: a lost connection in a test is a failure to report, not to hide.
    const client = createClient({ url, socket: { reconnectStrategy: false } });
    client.on('error', () => {}); // surfaced through the rejected commands instead
    await client.connect();
    return client;
}

export async function closeRedis(client) {
    if (client && client.isOpen) {
        try {
            await client.disconnect();
        } catch {
            // already closed
        }
    }
}

// Turns [k1, v1, k2, v2, ...] into {k1: v1, ...}.
function fieldsToObject(id, flat) {
    const entry = { id };
    for (let i = 0; i + 1 < flat.length; i += 2) entry[flat[i]] = flat[i + 1];
    return entry;
}

// Reads `<prefix>events` from the cursor `from` (exclusive; default: the
// start) with XREAD BLOCK until `count` entries satisfy `predicate`, or
// rejects after `timeoutMs` listing what it saw. Entries are plain objects of
// the stream fields plus `id`. Resolves an array of `count` entries.
export async function readEvents(redis, prefix, predicate, timeoutMs = 5000, { from = '0-0', count = 1 } = {}) {
    const key = `${prefix}events`;
    const deadline = Date.now() + timeoutMs;
    const found = [];
    const seen = [];
    let cursor = from;
    for (;;) {
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
            const shown = seen.slice(-10).map((e) => JSON.stringify(e)).join('\n  ');
            throw new Error(
                `timed out after ${timeoutMs} ms reading ${key}: ${found.length}/${count} matching entries; ` +
                    `last entries seen:\n  ${shown || '(none)'}`,
            );
        }
        const block = Math.max(1, Math.min(remaining, BLOCK_SLICE_MS));
        const reply = await redis.executeIsolated((c) =>
            c.sendCommand(['XREAD', 'COUNT', '100', 'BLOCK', String(block), 'STREAMS', key, cursor]),
        );
        if (!reply) continue;
        for (const [, entries] of reply) {
            for (const [id, flat] of entries) {
                cursor = id;
                const entry = fieldsToObject(id, flat);
                seen.push(entry);
                if (predicate(entry)) {
                    found.push(entry);
                    if (found.length === count) return found;
                }
            }
        }
    }
}

// The first entry matching `predicate` (see readEvents).
export async function readEvent(redis, prefix, predicate, timeoutMs = 5000, opts = {}) {
    const [entry] = await readEvents(redis, prefix, predicate, timeoutMs, { ...opts, count: 1 });
    return entry;
}

// Predicate builder: entry of `type` for socket `sid`, optionally with `event`.
export function entryOf(type, sid, event) {
    return (e) => e.type === type && e.socket === sid && (event === undefined || e.event === event);
}

// XADD <prefix>bus * op <op> msg <json>; resolves the bus entry id.
export function bus(redis, prefix, op, msg) {
    return redis.sendCommand(['XADD', `${prefix}bus`, '*', 'op', op, 'msg', JSON.stringify(msg)]);
}

export const emit = (redis, prefix, msg) => bus(redis, prefix, 'emit', { namespace: '/', args: [], ...msg });
export const join = (redis, prefix, msg) => bus(redis, prefix, 'join', { namespace: '/', ...msg });
export const leave = (redis, prefix, msg) => bus(redis, prefix, 'leave', { namespace: '/', ...msg });
export const disconnect = (redis, prefix, msg) => bus(redis, prefix, 'disconnect', { namespace: '/', ...msg });
export const ack = (redis, prefix, msg) => bus(redis, prefix, 'ack', msg);

// Redis state keys (contract §5, "P" = prefix).
export const keys = {
    sock: (p, sid) => `${p}{sock:${sid}}`,
    sockRooms: (p, sid) => `${p}{sock:${sid}}:rooms`,
    room: (p, nsp, room) => `${p}{room:${nsp}:${room}}`,
    userSockets: (p, uid) => `${p}{user:${uid}}:sockets`,
    nodeSockets: (p, node) => `${p}{node:${node}}:sockets`,
    nsRooms: (p, nsp) => `${p}{ns:${nsp}}:rooms`,
};

// Bundles the helpers for one prefix: `const be = backend(redis, prefix); await be.emit({...})`.
export function backend(redis, prefix) {
    return {
        redis,
        prefix,
        readEvents: (pred, ms, opts) => readEvents(redis, prefix, pred, ms, opts),
        readEvent: (pred, ms, opts) => readEvent(redis, prefix, pred, ms, opts),
        emit: (msg) => emit(redis, prefix, msg),
        join: (msg) => join(redis, prefix, msg),
        leave: (msg) => leave(redis, prefix, msg),
        disconnect: (msg) => disconnect(redis, prefix, msg),
        ack: (msg) => ack(redis, prefix, msg),
        bus: (op, msg) => bus(redis, prefix, op, msg),
        // SMEMBERS of P{room:<nsp>:<room>}
        roomMembers: (nsp, room) => redis.sMembers(keys.room(prefix, nsp, room)),
    };
}
