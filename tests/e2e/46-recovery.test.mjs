// Connection state recovery (issue 5 part 2, CONTRACT §6, Socket.IO 4.6
// semantics): the CONNECT answer carries pid and offset, every broadcast its
// bus id as the last argument; a client that comes back within
// --recovery-window, to any node, gets its socket id, its rooms and every
// broadcast it missed, in order, and socket.recovered is true. Outside the
// window, with another user's token, or once the bus was trimmed past its
// offset it connects as new.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { entryOf, keys } from './lib/backend.mjs';
import { nextEvent, sioClose, sioConnect } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { request } from './lib/http.mjs';
import { startProxy } from './lib/proxy.mjs';
import { uniq, waitFor, waitUntil } from './lib/util.mjs';

const KEY = 'k46-recovery-test-key';
const WINDOW = ['--recovery-window', '60s', '--heartbeat-interval', '200', '--api-key', KEY];
let env;
before(async () => {
    env = await setupFile({ tag: 't46', nodes: 0 });
});
after(() => env?.teardown());

// A client that reconnects quickly and records every `tick` (its number and offset).
async function ticker(t, url, opts = {}) {
    const s = await sioConnect(url, '/', {
        reconnection: true,
        reconnectionDelay: 100,
        reconnectionDelayMax: 300,
        randomizationFactor: 0,
        ...opts,
    });
    t.after(() => sioClose(s));
    s.ticks = [];
    s.on('tick', (n, offset) => s.ticks.push([n, offset]));
    return s;
}

function reconnected(s, ms = 8000) {
    return waitFor(new Promise((resolve) => s.once('connect', resolve)), ms, 'the reconnect');
}

async function joinRoom(s, room) {
    await env.be.join({ rooms: [room], sockets: [s.id] });
    await waitUntil(async () => (await env.be.roomMembers('/', room)).includes(s.id), 5000, 'joined');
}

const tick = (room, n) => env.be.emit({ event: 'tick', args: [n], rooms: [room] });

test('the CONNECT answer and broadcasts carry what recovery needs', async (t) => {
    const node = await env.startNode({ args: WINDOW });
    const s = await ticker(t, node.url);
    assert.match(s._pid, /^[A-Za-z0-9_-]{20}\.[A-Za-z0-9_-]{20}$/, 'pid = socket id . secret');
    assert.equal(s._pid.slice(0, 20), s.id);
    assert.equal(s.recovered, false);
    const room = uniq('r');
    await joinRoom(s, room);
    const id = await tick(room, 1);
    await waitUntil(() => s.ticks.length === 1, 5000, 'the tick');
    assert.deepEqual(s.ticks[0], [1, id], 'the bus id is the last argument');
    assert.equal(s._lastOffset, id);
    // volatile emits carry no offset (they are never replayed)
    const got = nextEvent(s, 'vol');
    await env.be.emit({ event: 'vol', args: ['x'], sockets: [s.id], volatile: true });
    assert.deepEqual(await got, ['x']);
});

test('a lost connection recovers on the same node: same id, rooms, missed broadcasts in order', async (t) => {
    const node = await env.startNode({ args: WINDOW });
    const s = await ticker(t, node.url);
    const id = s.id;
    const room = uniq('r');
    await joinRoom(s, room);
    await tick(room, 1);
    await waitUntil(() => s.ticks.length === 1, 5000, 'tick 1');
    s.io.engine.close(); // the transport drops; the client reconnects by itself
    const back = reconnected(s);
    // Sent while it is away (the server may or may not have noticed yet).
    for (let n = 2; n <= 6; n++) await tick(room, n);
    await back;
    assert.equal(s.recovered, true, 'socket.recovered');
    assert.equal(s.id, id, 'the same socket id');
    await tick(room, 7);
    await waitUntil(() => s.ticks.length >= 7, 5000, 'every tick');
    assert.deepEqual(s.ticks.map(([n]) => n), [1, 2, 3, 4, 5, 6, 7], 'none missing, none twice, in order');
    const sock = await env.redis.hGetAll(keys.sock(env.prefix, id));
    assert.equal(sock.state, undefined, 'connected again');
    assert.ok((await env.be.roomMembers('/', room)).includes(id), 'still in its room');
    const entry = await env.be.readEvent((e) => e.type === 'connect' && e.socket === id && e.recovered === 'true', 5000);
    assert.equal(entry.auth, '{}', 'pid and offset are not part of the auth the backends see');
});

test('a replay picks what a live delivery would: rooms, except_rooms, except_sockets, each once', async (t) => {
    const node = await env.startNode({ args: WINDOW });
    const s = await ticker(t, node.url);
    const other = await ticker(t, node.url); // stays connected: the same entries, delivered live
    const [a, b, c] = [uniq('ra'), uniq('rb'), uniq('rc')];
    await joinRoom(s, a);
    await joinRoom(s, b);
    await joinRoom(other, a);
    await joinRoom(other, c);
    await tick(a, 1);
    await waitUntil(() => s.ticks.length === 1 && other.ticks.length === 1, 5000, 'tick 1');
    const id = s.id; // the client forgets it while disconnected
    s.io.engine.close();
    const back = reconnected(s);
    const emit = (n, target) => env.be.emit({ event: 'tick', args: [n], ...target });
    await emit(2, { rooms: [a] });
    await emit(3, { rooms: [c] }); // not its room
    await emit(4, { rooms: [a], except_rooms: [b] }); // it is in b
    await emit(5, { rooms: [a], except_rooms: [c] });
    await emit(6, { rooms: [a, b] }); // once, though in both
    await emit(7, { sockets: [id] });
    await emit(8, { rooms: [a], except_sockets: [id] });
    await back;
    assert.equal(s.recovered, true, 'socket.recovered');
    await emit(9, { sockets: [s.id, other.id] });
    const seen = () => JSON.stringify([s.ticks.map(([n]) => n), other.ticks.map(([n]) => n)]);
    await waitUntil(() => s.ticks.length >= 6 && other.ticks.length >= 7, 5000, 'the replayed and live ticks')
        .catch((e) => {
            throw new Error(`${e.message}: ${seen()}`);
        });
    await new Promise((r) => setTimeout(r, 200)); // nothing more comes
    assert.deepEqual(s.ticks.map(([n]) => n), [1, 2, 5, 6, 7, 9], 'the replay');
    assert.deepEqual(other.ticks.map(([n]) => n), [1, 2, 3, 4, 6, 8, 9], 'live delivery of the same entries');
});

test('while it is away, presence does not list it; its state expires with the window', async (t) => {
    const node = await env.startNode({ args: ['--recovery-window', '1500', '--api-key', KEY] });
    const s = await sioConnect(node.url, '/', {});
    const id = s.id;
    const room = uniq('r');
    await joinRoom(s, room);
    s.io.engine.close();
    await waitUntil(async () => (await env.redis.hGet(keys.sock(env.prefix, id), 'state')) === 'disconnected',
        5000, 'kept for recovery');
    assert.deepEqual(await env.be.roomMembers('/', room), [], 'not a member while away');
    const r = await request(`${node.url}/v1/sockets/${id}`, { headers: { authorization: `Bearer ${KEY}` } });
    assert.equal(r.status, 404, 'not a connected socket');
    await waitUntil(async () => !(await env.redis.exists(keys.sock(env.prefix, id))), 5000, 'expired');
    assert.equal(await env.redis.exists(`${keys.sock(env.prefix, id)}:rooms`), 0);
});

test('outside the window it connects as new', async (t) => {
    const node = await env.startNode({ args: ['--recovery-window', '300'] });
    const s = await sioConnect(node.url, '/', { reconnection: true, reconnectionDelay: 1200, randomizationFactor: 0 });
    t.after(() => sioClose(s));
    const id = s.id;
    s.io.engine.close();
    await reconnected(s);
    assert.equal(s.recovered, false);
    assert.notEqual(s.id, id);
});

test('a client intentionally disconnected by the server does not keep its state', async (t) => {
    const node = await env.startNode({ args: WINDOW });
    const s = await sioConnect(node.url, '/', {});
    t.after(() => sioClose(s));
    const id = s.id;
    const gone = nextEvent(s, 'disconnect');
    await env.be.disconnect({ sockets: [id] });
    await gone;
    await waitUntil(async () => !(await env.redis.exists(keys.sock(env.prefix, id))), 5000, 'forgotten');
});

test('a node killed with SIGKILL: its clients recover on another node with every broadcast', async (t) => {
    const a = await env.startNode({ args: WINDOW });
    const b = await env.startNode({ args: WINDOW });
    const proxy = await startProxy([a.port]);
    t.after(() => proxy.close());
    const room = uniq('r');
    const clients = [];
    for (let i = 0; i < 4; i++) {
        const s = await ticker(t, proxy.url);
        await joinRoom(s, room);
        clients.push(s);
    }
    const ids = clients.map((s) => s.id);
    let n = 0;
    for (; n < 3; n++) await tick(room, n + 1);
    await waitUntil(() => clients.every((s) => s.ticks.length === 3), 5000, 'the first ticks');
    proxy.setBackends([b.port]);
    const back = clients.map((s) => reconnected(s, 10000));
    a.child.kill('SIGKILL');
    a.exit = { code: 0, signal: 'SIGKILL' }; // on purpose: teardown must not count it as a crash
    for (; n < 10; n++) {
        await tick(room, n + 1);
        await new Promise((r) => setTimeout(r, 30));
    }
    await Promise.all(back);
    for (; n < 12; n++) await tick(room, n + 1);
    await waitUntil(() => clients.every((s) => s.ticks.length >= 12), 8000, 'every tick on every client');
    await new Promise((r) => setTimeout(r, 200));
    const want = Array.from({ length: 12 }, (_, i) => i + 1);
    for (const s of clients) {
        assert.equal(s.recovered, true);
        assert.deepEqual(s.ticks.map(([k]) => k), want, `client ${s.id}: none missing, none twice`);
    }
    assert.deepEqual(clients.map((s) => s.id), ids, 'the same socket ids');
    // The reaper later finds the dead node: it must leave the recovered sockets alone.
    await new Promise((r) => setTimeout(r, 1500));
    for (const id of ids) {
        const h = await env.redis.hGetAll(keys.sock(env.prefix, id));
        assert.equal(h.state, undefined, 'still connected after the reaper ran');
        assert.ok((await env.be.roomMembers('/', room)).includes(id));
    }
    await tick(room, 13);
    await waitUntil(() => clients.every((s) => s.ticks.length === 13), 5000, 'a tick after the reaper');
});

test('a token of another user cannot take a session over', async (t) => {
    const secret = 'recovery-secret-0123456789abcdef0123';
    const { sign } = await import('./lib/jwt.mjs');
    const node = await env.startNode({ args: [...WINDOW, '--jwt-alg', 'HS256', '--jwt-secret', secret] });
    const tok = (sub) => sign({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, { secret });
    const s = await sioConnect(node.url, '/', { auth: { token: tok('alice') } });
    const pid = s._pid;
    const id = s.id;
    s.io.engine.close(); // lost, not left: the state is kept
    await waitUntil(async () => (await env.redis.hGet(keys.sock(env.prefix, id), 'state')) === 'disconnected',
        5000, 'kept for recovery');
    const m = await sioConnect(node.url, '/', { auth: { token: tok('mallory'), pid, offset: '0-0' } });
    t.after(() => sioClose(m));
    assert.notEqual(m.id, id, 'mallory gets a socket of her own');
    assert.equal(m.recovered, false);
    const a = await sioConnect(node.url, '/', { auth: { token: tok('alice'), pid } });
    t.after(() => sioClose(a));
    assert.equal(a.id, id, 'alice gets hers back');
});

test('a CONNECT with a made-up pid connects as new', async (t) => {
    const node = await env.startNode({ args: WINDOW });
    for (const pid of ['x', 'A'.repeat(20) + '.' + 'B'.repeat(20), 42, '../../etc']) {
        const s = await sioConnect(node.url, '/', { auth: { pid, offset: 'nope' } });
        t.after(() => sioClose(s));
        assert.ok(s.connected);
        assert.notEqual(s.id, 'A'.repeat(20));
    }
    const m = await request(`${node.url}/metrics`);
    assert.match(m.text, /switchboard_recoveries_total\{outcome="refused"\} 1\b/, `one well-formed pid was refused:
${m.text.split('\n').filter((l) => l.includes('recover')).join('\n')}`);
});

test('a bus trimmed past the offset: connects as new rather than missing broadcasts', async (t) => {
    const node = await env.startNode({ args: WINDOW });
    const s = await ticker(t, node.url, { reconnection: false });
    const pid = s._pid;
    const id = s.id;
    const room = uniq('r');
    await joinRoom(s, room);
    await tick(room, 1);
    await waitUntil(() => s.ticks.length === 1, 5000, 'tick 1');
    const offset = s.ticks[0][1];
    s.io.engine.close();
    await waitUntil(async () => (await env.redis.hGet(keys.sock(env.prefix, id), 'state')) === 'disconnected',
        5000, 'kept');
    for (let n = 2; n <= 4; n++) await tick(room, n);
    await env.redis.sendCommand(['XTRIM', `${env.prefix}bus`, 'MAXLEN', '1']);
    const again = await sioConnect(node.url, '/', { auth: { pid, offset } });
    t.after(() => sioClose(again));
    assert.equal(again.recovered, false);
    assert.notEqual(again.id, id);
});
