// Two switchboard nodes on one Redis with the same prefix behave as one
// server: one XADD on the bus reaches the right sockets on both nodes, and
// bus operations on a socket work whichever node holds it.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { entryOf, keys } from './lib/backend.mjs';
import { nextEvent } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { quietPeriod, record, uniq, waitFor, waitUntil } from './lib/util.mjs';

let env;
before(async () => {
    env = await setupFile({ tag: 't70', nodes: 2 });
});
after(() => env?.teardown());

const onA = (t) => env.client(t, '/', { url: env.nodes[0].url });
const onB = (t) => env.client(t, '/', { url: env.nodes[1].url });

async function barrier(sockets) {
    const name = uniq('barrier');
    const got = sockets.map((s) => nextEvent(s, name, 5000));
    await env.be.emit({ event: name, args: [], sockets: sockets.map((s) => s.id) });
    await waitFor(Promise.all(got), 5000, 'barriers');
    await quietPeriod(150); // reordering margin, see 30-rooms
}

test('the two nodes have different node names', async (t) => {
    const a = await onA(t);
    const b = await onB(t);
    const ea = await env.be.readEvent(entryOf('connect', a.id), 5000);
    const eb = await env.be.readEvent(entryOf('connect', b.id), 5000);
    assert.ok(ea.node && eb.node);
    assert.notEqual(ea.node, eb.node);
    assert.equal((await env.redis.hGetAll(keys.sock(env.prefix, b.id))).node, eb.node);
});

test('one XADD reaches room members on both nodes, and only them', async (t) => {
    const a1 = await onA(t);
    const a2 = await onA(t);
    const b1 = await onB(t);
    const b2 = await onB(t);
    const room = uniq('across');
    // one join op naming sockets of both nodes
    await env.be.join({ rooms: [room], sockets: [a1.id, b1.id] });
    await waitUntil(
        async () => (await env.be.roomMembers('/', room)).length === 2,
        5000,
        'both sockets in the room',
    );
    const ev = uniq('broadcast');
    const seen = [a1, a2, b1, b2].map((s) => record(s, ev));
    await env.be.emit({ event: ev, args: ['same', { n: 1 }], rooms: [room] });
    await barrier([a1, a2, b1, b2]);
    assert.deepEqual(seen.map((x) => x.length), [1, 0, 1, 0]);
    assert.deepEqual(seen[0], [['same', { n: 1 }]]);
    assert.deepEqual(seen[2], seen[0]);
});

test('join, leave and disconnect via the bus work for a socket on node B', async (t) => {
    const a = await onA(t);
    const b = await onB(t);
    const room = uniq('remote');
    await env.be.join({ rooms: [room], sockets: [b.id] });
    await waitUntil(() => env.redis.sIsMember(keys.room(env.prefix, '/', room), b.id), 5000, 'B socket in the room');
    const got = nextEvent(b, 'to-room', 5000);
    await env.be.emit({ event: 'to-room', args: [2], rooms: [room] });
    assert.deepEqual(await got, [2]);

    await env.be.leave({ rooms: [room], sockets: [b.id] });
    await waitUntil(async () => !(await env.redis.sIsMember(keys.room(env.prefix, '/', room), b.id)), 5000, 'B socket out');

    const reason = nextEvent(b, 'disconnect', 5000);
    await env.be.disconnect({ sockets: [b.id], reason: 'bye' });
    assert.equal((await reason)[0], 'io server disconnect');
    assert.ok(a.connected, 'the socket on A stays');
});

test('a namespace-wide emit reaches every socket on both nodes once', async (t) => {
    const sockets = [await onA(t), await onB(t), await onA(t), await onB(t)];
    const ev = uniq('all');
    const seen = sockets.map((s) => record(s, ev));
    await env.be.emit({ event: ev, args: ['x'] });
    await barrier(sockets);
    assert.deepEqual(seen.map((x) => x.length), [1, 1, 1, 1]);
});

test('acks are answered for a socket on node B', async (t) => {
    const b = await onB(t);
    const answer = new Promise((resolve) => b.emit('ask-b', 1, (...args) => resolve(args)));
    const entry = await env.be.readEvent(entryOf('event', b.id, 'ask-b'), 5000);
    await env.be.ack({ socket: b.id, ack_id: Number(entry.ack_id), args: ['from-backend'] });
    assert.deepEqual(await waitFor(answer, 5000, 'ack on node B'), ['from-backend']);
});
