// The client -> backend stream `<prefix>events` (contract §4): the exact
// fields of connect, event and disconnect entries, and a backend that reads it
// with nothing but a consumer group.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { entryOf } from './lib/backend.mjs';
import { emitWithAckArgs } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { uniq, waitFor } from './lib/util.mjs';

let env;
before(async () => {
    env = await setupFile({ tag: 't60' });
});
after(() => env?.teardown());

const BASE_FIELDS = ['type', 'namespace', 'socket', 'user', 'event', 'args', 'ack_id', 'node', 'ts'];

function fieldNames(entry) {
    return Object.keys(entry)
        .filter((k) => k !== 'id')
        .sort();
}

function assertCommon(entry, { type, sid, nsp = '/', before: t0, after: t1 }) {
    assert.equal(entry.type, type);
    assert.equal(entry.namespace, nsp);
    assert.equal(entry.socket, sid);
    assert.equal(entry.user, sid, 'anonymous mode: user id = socket id');
    assert.equal(typeof entry.node, 'string');
    assert.ok(entry.node.length > 0, 'node names the switchboard node');
    assert.match(entry.ts, /^\d+$/, 'ts is milliseconds');
    const ts = Number(entry.ts);
    assert.ok(ts >= t0 - 1000 && ts <= t1 + 1000, `ts ${ts} within the test's time window [${t0}, ${t1}]`);
    assert.ok(Array.isArray(JSON.parse(entry.args)), 'args is a JSON array text');
}

test('connect, event and disconnect entries have exactly the documented fields', async (t) => {
    const t0 = Date.now();
    const s = await env.client(t, '/', { auth: { a: 1 } });
    const sid = s.id;

    const connect = await env.be.readEvent(entryOf('connect', sid), 5000);
    assert.deepEqual(fieldNames(connect), [...BASE_FIELDS, 'auth'].sort());
    assertCommon(connect, { type: 'connect', sid, before: t0, after: Date.now() });
    assert.deepEqual(JSON.parse(connect.auth), { a: 1 });
    assert.equal(connect.auth, '{"a":1}');
    assert.equal(connect.ack_id, '');

    s.emit('plain', 1, 'two', { three: [3] }, null, true);
    const plain = await env.be.readEvent(entryOf('event', sid, 'plain'), 5000, { from: connect.id });
    assert.deepEqual(fieldNames(plain), [...BASE_FIELDS].sort());
    assertCommon(plain, { type: 'event', sid, before: t0, after: Date.now() });
    assert.deepEqual(JSON.parse(plain.args), [1, 'two', { three: [3] }, null, true]);
    assert.equal(plain.ack_id, '');
    assert.ok(Number(plain.ts) >= Number(connect.ts), 'ts does not go backwards');

    const ackP = emitWithAckArgs(s, 'with-ack', ['x'], 5000);
    const withAck = await env.be.readEvent(entryOf('event', sid, 'with-ack'), 5000, { from: plain.id });
    assert.match(withAck.ack_id, /^\d+$/);
    await env.be.ack({ socket: sid, ack_id: Number(withAck.ack_id), args: ['done'] });
    assert.deepEqual(await ackP, ['done']);

    s.disconnect();
    const disc = await env.be.readEvent(entryOf('disconnect', sid), 5000, { from: withAck.id });
    assert.deepEqual(fieldNames(disc), [...BASE_FIELDS, 'reason'].sort());
    assertCommon(disc, { type: 'disconnect', sid, before: t0, after: Date.now() });
    // socket.disconnect() sends a Socket.IO DISCONNECT first: Socket.IO's reason for it
    assert.equal(disc.reason, 'client namespace disconnect');
    assert.equal(disc.node, connect.node);
});

test('with no event rate limit the entry (a plain XADD, not sb_event) has the same fields', async (t) => {
    const t0 = Date.now();
    const node = await env.startNode({ args: ['--rate-socket-events', 'off', '--rate-user-events', 'off'] });
    const s = await env.client(t, '/', { url: node.url });
    const sid = s.id;
    const connect = await env.be.readEvent(entryOf('connect', sid), 5000);
    s.emit('plain', 1, 'two', { three: [3] }, null, true);
    const plain = await env.be.readEvent(entryOf('event', sid, 'plain'), 5000, { from: connect.id });
    assert.deepEqual(fieldNames(plain), [...BASE_FIELDS].sort());
    assertCommon(plain, { type: 'event', sid, before: t0, after: Date.now() });
    assert.equal(plain.args, '[1,"two",{"three":[3]},null,true]');
    assert.equal(plain.ack_id, '');
    assert.equal(plain.node, connect.node);
    const ackP = emitWithAckArgs(s, 'with-ack', ['x'], 5000);
    const withAck = await env.be.readEvent(entryOf('event', sid, 'with-ack'), 5000, { from: plain.id });
    assert.match(withAck.ack_id, /^\d+$/);
    await env.be.ack({ socket: sid, ack_id: Number(withAck.ack_id), args: ['done'] });
    assert.deepEqual(await ackP, ['done']);
});

test('a connect without auth payload carries an object (or empty) auth', async (t) => {
    const s = await env.client(t);
    const connect = await env.be.readEvent(entryOf('connect', s.id), 5000);
    assert.ok('auth' in connect, 'auth field present');
    if (connect.auth !== '') assert.deepEqual(JSON.parse(connect.auth), {});
});

test('a client closing its connection yields a disconnect entry', async (t) => {
    const s = await env.client(t);
    const sid = s.id;
    await env.be.readEvent(entryOf('connect', sid), 5000);
    s.io.engine.close(); // transport goes away without a Socket.IO DISCONNECT
    const disc = await env.be.readEvent(entryOf('disconnect', sid), 5000);
    assert.equal(disc.reason, 'transport close');
});

test('a Redis-only backend with a consumer group sees the events', async (t) => {
    const key = `${env.prefix}events`;
    const group = uniq('g');
    // An own connection: XREADGROUP BLOCK must not stall the shared client.
    const r = env.redis.duplicate();
    r.on('error', () => {});
    await r.connect();
    t.after(() => r.disconnect().catch(() => {}));

    assert.equal(await r.sendCommand(['XGROUP', 'CREATE', key, group, '$', 'MKSTREAM']), 'OK');
    const s = await env.client(t);
    const sid = s.id;
    s.emit('grouped', 'one');
    s.emit('grouped', 'two');

    // Read as consumer c1 until both events of this socket came by.
    const mine = [];
    const readAll = async () => {
        while (mine.filter((e) => e.type === 'event').length < 2) {
            const reply = await r.sendCommand([
                'XREADGROUP', 'GROUP', group, 'c1', 'COUNT', '10', 'BLOCK', '500', 'STREAMS', key, '>',
            ]);
            if (!reply) continue;
            for (const [, entries] of reply) {
                for (const [id, flat] of entries) {
                    const e = { id };
                    for (let i = 0; i + 1 < flat.length; i += 2) e[flat[i]] = flat[i + 1];
                    if (e.socket === sid) mine.push(e);
                    assert.equal(await r.sendCommand(['XACK', key, group, id]), 1);
                }
            }
        }
    };
    await waitFor(readAll(), 5000, 'the group to deliver both events');
    assert.deepEqual(
        mine.map((e) => [e.type, e.event, e.type === 'event' ? JSON.parse(e.args) : null]),
        [
            ['connect', mine[0].event, null],
            ['event', 'grouped', ['one']],
            ['event', 'grouped', ['two']],
        ],
    );

    // Everything read was acknowledged: nothing pending for the group.
    const pending = await r.sendCommand(['XPENDING', key, group]);
    assert.equal(Number(pending[0]), 0);
});
