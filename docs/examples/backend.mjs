// A complete switchboard backend in one file (see docs/backends.md).
//
// It reads what clients do from the Redis stream <prefix>events with a
// consumer group, and acts on them two ways: through Redis (XADD <prefix>bus)
// and through the REST API (fetch). Both reach the same clients.
//
//   connect        -> the socket joins room "lobby" (XADD op join)
//                     and gets a "welcome" event (POST /v1/emit)
//   "echo" + ack   -> the ack answers ["echo", ...args] (XADD op ack)
//   "chat" {text}  -> "chat" {from, text} to the lobby but the sender (POST /v1/emit),
//                     and the ack answers {ok: true} (POST /v1/acks)
//
// Run:  npm install redis@4
//       SWITCHBOARD_API_KEY=... node backend.mjs
// Settings (environment): API_URL (http://127.0.0.1:8080),
// SWITCHBOARD_API_KEY (required), REDIS_URL (redis://127.0.0.1:6379),
// SWITCHBOARD_REDIS_PREFIX (sb:), GROUP (chat-backend), CONSUMER (host-pid).
// Several copies with the same GROUP share the work: each entry goes to one.

import os from 'node:os';
import { createClient } from 'redis';

const API = process.env.API_URL || 'http://127.0.0.1:8080';
const KEY = process.env.SWITCHBOARD_API_KEY;
const PREFIX = process.env.SWITCHBOARD_REDIS_PREFIX || 'sb:';
const GROUP = process.env.GROUP || 'chat-backend';
const CONSUMER = process.env.CONSUMER || `${os.hostname()}-${process.pid}`;
const EVENTS = `${PREFIX}events`;
const BUS = `${PREFIX}bus`;
if (!KEY) throw new Error('set SWITCHBOARD_API_KEY');

// Two connections: XREADGROUP BLOCK holds its connection while it waits.
const redis = createClient({ url: process.env.REDIS_URL || 'redis://127.0.0.1:6379' });
const reader = redis.duplicate();
redis.on('error', (e) => console.error('redis:', e.message));
reader.on('error', (e) => console.error('redis reader:', e.message));
await Promise.all([redis.connect(), reader.connect()]);

// ---- the two ways to act ----

// Redis: one bus entry; msg is exactly the body of the matching REST call.
function bus(op, msg) {
    return redis.xAdd(BUS, '*', { op, msg: JSON.stringify(msg) });
}

// REST: the same operations over HTTP. 202 means written to the bus.
async function rest(path, body) {
    const res = await fetch(`${API}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(5000),
    });
    if (res.status !== 202) throw new Error(`POST ${path}: ${res.status} ${await res.text()}`);
    return res.json();
}

// ---- what to do with each entry ----

async function handle(e) {
    const nsp = e.namespace;
    if (e.type === 'connect') {
        await bus('join', { namespace: nsp, rooms: ['lobby'], sockets: [e.socket] });
        await rest('/v1/emit', { namespace: nsp, event: 'welcome', args: [{ user: e.user }], sockets: [e.socket] });
    } else if (e.type === 'event' && e.event === 'echo') {
        // ack_id is empty when the client asked for no ack; the bus wants it as a number.
        if (e.ack_id !== '') await bus('ack', { socket: e.socket, ack_id: Number(e.ack_id), args: ['echo', ...JSON.parse(e.args)] });
    } else if (e.type === 'event' && e.event === 'chat') {
        const [msg] = JSON.parse(e.args);
        await rest('/v1/emit', {
            namespace: nsp,
            event: 'chat',
            args: [{ from: e.user, text: String(msg?.text ?? '') }],
            rooms: ['lobby'],
            except_sockets: [e.socket],
        });
        if (e.ack_id !== '') await rest('/v1/acks', { socket: e.socket, ack_id: Number(e.ack_id), args: [{ ok: true }] });
    }
}

// ---- the consumer group loop ----

try {
    // '$': start with what happens from now on. MKSTREAM: fine before the first client.
    await redis.xGroupCreate(EVENTS, GROUP, '$', { MKSTREAM: true });
} catch (e) {
    if (!String(e.message).startsWith('BUSYGROUP')) throw e; // the group exists: join it
}

let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
        stopping = true;
        reader.disconnect().catch(() => {}); // ends a waiting XREADGROUP at once
    });
}

console.log(`backend ready: group ${GROUP}, consumer ${CONSUMER}, stream ${EVENTS}`);
while (!stopping) {
    let reply;
    try {
        reply = await reader.xReadGroup(GROUP, CONSUMER, { key: EVENTS, id: '>' }, { COUNT: 100, BLOCK: 5000 });
    } catch (e) {
        if (stopping) break;
        throw e;
    }
    for (const { messages } of reply || []) {
        for (const { id, message } of messages) {
            try {
                await handle(message);
            } catch (e) {
                // Left unacknowledged: XPENDING shows it; XAUTOCLAIM can hand it to another consumer.
                console.error(`entry ${id}:`, e.message);
                continue;
            }
            await redis.xAck(EVENTS, GROUP, id);
        }
    }
}
await redis.quit();
console.log('backend stopped');
