// A Redis-only backend that plays the server handlers the official Socket.IO
// protocol test suite expects (see README.md), through the streams contract:
//
//   on connect (any namespace)          emit "auth" with the CONNECT payload to that socket
//   on "message" in "/"                 emit "message-back" with the same args to that socket
//   on "message-with-ack" in "/"        answer the ack with the same args
//
// Usage: node backend.mjs --redis redis://127.0.0.1:6379 --prefix proto:
// Prints "ready" on stdout once its consumer group exists; stops on SIGTERM/SIGINT.
// The Redis client comes from tests/e2e/node_modules (run `npm ci` there).

import { createRequire } from 'node:module';

const require = createRequire(new URL('../e2e/package.json', import.meta.url));
const { createClient } = require('redis');

function arg(name, fallback) {
    const i = process.argv.indexOf(`--${name}`);
    if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
    if (fallback !== undefined) return fallback;
    console.error(`backend.mjs: --${name} is required`);
    process.exit(2);
}

const url = arg('redis');
const prefix = arg('prefix', 'sb:');
const events = `${prefix}events`;
const bus = `${prefix}bus`;
const group = arg('group', 'protocol-suite');

const redis = createClient({ url, socket: { reconnectStrategy: false } });
redis.on('error', (e) => {
    console.error(`backend.mjs: redis: ${e.message}`);
});
await redis.connect();

let stopping = false;
for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => {
        stopping = true;
    });
}

// Start at the end of the stream: earlier entries belong to nobody here.
try {
    await redis.sendCommand(['XGROUP', 'CREATE', events, group, '$', 'MKSTREAM']);
} catch (e) {
    if (!String(e.message).includes('BUSYGROUP')) throw e;
}
console.log('ready');

function xadd(op, msg) {
    return redis.sendCommand(['XADD', bus, '*', 'op', op, 'msg', JSON.stringify(msg)]);
}

async function handle(e) {
    if (e.type === 'connect') {
        // An absent payload is "{}" (Socket.IO's socket.handshake.auth).
        const auth = e.auth ? JSON.parse(e.auth) : {};
        await xadd('emit', { namespace: e.namespace, event: 'auth', args: [auth], sockets: [e.socket] });
        return;
    }
    if (e.type !== 'event' || e.namespace !== '/') return;
    const args = JSON.parse(e.args);
    if (e.event === 'message') {
        await xadd('emit', { namespace: '/', event: 'message-back', args, sockets: [e.socket] });
    } else if (e.event === 'message-with-ack' && e.ack_id !== '') {
        await xadd('ack', { socket: e.socket, ack_id: Number(e.ack_id), args });
    }
}

while (!stopping) {
    const reply = await redis.sendCommand([
        'XREADGROUP', 'GROUP', group, 'c1', 'COUNT', '100', 'BLOCK', '200', 'STREAMS', events, '>',
    ]);
    if (!reply) continue;
    for (const [, entries] of reply) {
        for (const [id, flat] of entries) {
            const e = {};
            for (let i = 0; i + 1 < flat.length; i += 2) e[flat[i]] = flat[i + 1];
            try {
                await handle(e);
            } catch (err) {
                console.error(`backend.mjs: entry ${id}: ${err.message}`);
            }
            await redis.sendCommand(['XACK', events, group, id]);
        }
    }
}
await redis.disconnect();
