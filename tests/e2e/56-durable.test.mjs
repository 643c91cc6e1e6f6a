// Durable emits to users (CONTRACT §6, issue 5 part 3): `POST /v1/emit` with "durable": true stores the event in
// each target user's inbox stream P{user:<uid>}:inbox until a client of that user acks it (the Socket.IO ack of
// the delivered event). Offline users get everything in order when they connect; online users at once; a client
// that disconnects and reconnects mid-stream loses nothing and acks each message exactly once (the server deletes
// an entry on its ack, so an acked entry is never delivered again); the length and age bounds drop the oldest
// entries, counted in switchboard_inbox_dropped_total and logged; the REST API refuses durable emits that are not
// to users; a backend that uses only Redis calls the same Function (FCALL sb_emit_durable, docs/streams.md).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { io } from 'socket.io-client';

import { setupFile } from './lib/fixture.mjs';
import { request } from './lib/http.mjs';
import { claims, sign } from './lib/jwt.mjs';
import { quietPeriod, uniq, waitFor, waitUntil } from './lib/util.mjs';

const KEY = 'durable-test-key';
const SECRET = 'e2e-secret-56';
let env;
let small; // a node with --inbox-maxlen 3
let young; // a node with --inbox-max-age 2s
let lag; // a node whose bus reader takes one entry per XREAD: its live entries trail the inboxes
let limited; // a node that takes one connect per client address per minute

before(async () => {
    env = await setupFile({
        tag: 't56',
        namespaces: ['/chat'],
        args: ['--api-key', KEY, '--jwt-secret', SECRET],
    });
    small = await env.startNode({ args: ['--inbox-maxlen', '3'] });
    young = await env.startNode({ args: ['--inbox-max-age', '2s'] });
    lag = await env.startNode({ args: ['--bus-count', '1'] });
    limited = await env.startNode({ args: ['--rate-connections', '1/60s'] });
});
after(() => env?.teardown());

const inboxKey = (user) => `${env.prefix}{user:${user}}:inbox`;
const xlen = (user) => env.redis.xLen(inboxKey(user));

async function post(path, body, node = env.node) {
    const res = await request(`${node.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
    });
    let parsed = null;
    try {
        parsed = JSON.parse(res.text);
    } catch {
        // left null
    }
    return { status: res.status, body: parsed, text: res.text };
}

async function durable(user, n, { node, nsp = '/', event = 'note' } = {}) {
    const r = await post('/v1/emit', { namespace: nsp, event, args: [{ n }], users: [user], durable: true }, node);
    assert.equal(r.status, 202, r.text);
    assert.match(r.body.id, /^\d+-\d+$/);
    return r.body.id;
}

async function metric(node, name, labels = '') {
    const res = await request(`${node.url}/metrics`);
    const line = res.text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || l === `${name}${labels}`);
    return line === undefined ? NaN : Number(line.split(' ')[1]);
}

// A client of `user` that records every "note" it gets (its n), acks each on receipt (unless manual), and counts
// the acks it sent per n. Handlers are in place before it connects, so nothing delivered at connect is missed.
// c.packets lists the Socket.IO packet types in the order they came (0 CONNECT, 2 EVENT, 4 CONNECT_ERROR).
function durableClient(t, user, { node = env.node, nsp = '/', manual = false, localAddress } = {}) {
    const token = sign(claims({ sub: user }), { secret: SECRET });
    const socket = io(node.url + (nsp === '/' ? '' : nsp), {
        forceNew: true,
        reconnection: false,
        transports: ['websocket'],
        autoConnect: false,
        auth: { token },
        ...(localAddress !== undefined ? { localAddress } : {}),
    });
    const c = { socket, got: [], acks: new Map(), pending: [], packets: [] };
    socket.io.on('packet', (p) => c.packets.push(p.type));
    socket.on('note', (m, ack) => {
        assert.equal(typeof ack, 'function', 'a durable event is delivered with an ack id');
        c.got.push(m.n);
        const send = () => {
            c.acks.set(m.n, (c.acks.get(m.n) || 0) + 1);
            ack();
        };
        if (manual) c.pending.push(send);
        else send();
    });
    c.connect = () =>
        waitFor(
            new Promise((resolve, reject) => {
                socket.once('connect', resolve);
                socket.once('connect_error', reject);
                socket.connect();
            }),
            5000,
            `connect of ${user}`,
        );
    t.after(() => {
        socket.disconnect();
        socket.io.engine?.close();
    });
    return c;
}

const range = (n, from = 0) => Array.from({ length: n }, (_, i) => from + i);

test('(a) offline user: all stored entries come in order at connect, each acked once, then removed', async (t) => {
    const user = uniq('off');
    for (const n of range(5)) await durable(user, n);
    await durable(user, 100, { nsp: '/chat' }); // another namespace: not for the "/" socket
    assert.equal(await xlen(user), 6);

    const c = durableClient(t, user);
    await c.connect();
    await waitUntil(() => c.got.length >= 5, 5000, 'five durable events');
    await waitUntil(async () => (await xlen(user)) === 1, 5000, 'the acked entries to leave the inbox');
    await quietPeriod(200);
    assert.deepEqual(c.got, range(5), 'in order, each once, nothing of /chat');
    assert.deepEqual([...c.acks.entries()], range(5).map((n) => [n, 1]), 'each acked exactly once');

    const chat = durableClient(t, user, { nsp: '/chat' });
    await chat.connect();
    await waitUntil(() => chat.got.length === 1, 5000, 'the /chat entry');
    assert.deepEqual(chat.got, [100]);
    await waitUntil(async () => (await xlen(user)) === 0, 5000, 'an empty inbox');
});

test('(b) online user: delivered at once, kept in the inbox until a client of the user acks', async (t) => {
    const user = uniq('on');
    const c = durableClient(t, user, { manual: true });
    await c.connect();
    const delivered0 = await metric(env.node, 'switchboard_durable_delivered_total');
    const acked0 = await metric(env.node, 'switchboard_durable_acked_total');
    await durable(user, 7);
    await waitUntil(() => c.got.length === 1, 5000, 'the live durable event');
    assert.deepEqual(c.got, [7]);
    await quietPeriod(200);
    assert.equal(await xlen(user), 1, 'not acked yet: still in the inbox');
    c.pending.shift()();
    await waitUntil(async () => (await xlen(user)) === 0, 5000, 'the entry to leave the inbox after the ack');

    // two sockets of the user: both get it; the first ack (from `other`, on receipt) removes the entry
    const other = durableClient(t, user);
    await other.connect();
    await durable(user, 8);
    await waitUntil(() => c.got.length === 2 && other.got.length === 1, 5000, 'the event on both sockets');
    assert.deepEqual(other.got, [8]);
    await waitUntil(async () => (await xlen(user)) === 0, 5000, 'the entry to leave the inbox after one ack');
    await waitUntil(async () => (await metric(env.node, 'switchboard_durable_acked_total')) === acked0 + 2, 5000,
        'switchboard_durable_acked_total + 2');
    assert.equal(await metric(env.node, 'switchboard_durable_delivered_total'), delivered0 + 3);
});

// Durable emits the way a stream backend writes them, pipelined on one connection (so inbox order = n order).
function fcallDurable(user, n) {
    const msg = { namespace: '/', event: 'note', args: [{ n }], users: [user], durable: true };
    return env.redis.sendCommand(['FCALL', 'sb_emit_durable', '2', `${env.prefix}bus`, inboxKey(user), env.prefix,
        JSON.stringify(msg), JSON.stringify(msg.args), '1000', '86400000']);
}

test('(c) a client reconnecting mid-stream gets every message, in order, and acks each exactly once', async (t) => {
    // The node reads its bus one entry per XREAD, so during a burst its live deliveries trail the inboxes: the
    // inbox read of a reconnecting socket returns entries whose bus entries arrive later (they must be skipped)
    // and live entries arrive while the read is in flight (they must be neither lost nor doubled).
    const user = uniq('re');
    const BURST = 60;
    const CYCLES = 3;
    const N = BURST * 2 * CYCLES;
    const c = durableClient(t, user, { node: lag });
    await c.connect();
    let next = 0;
    const burst = () => Promise.all(range(BURST, (next += BURST) - BURST).map((n) => fcallDurable(user, n)));
    for (let cycle = 0; cycle < CYCLES; cycle++) {
        const live = burst(); // while connected
        await new Promise((r) => setTimeout(r, 2));
        c.socket.disconnect(); // mid-burst
        const offline = burst(); // while away and reconnecting
        await c.connect();
        await Promise.all([live, offline]);
    }
    await waitUntil(() => new Set(c.got).size === N, 10000, `all ${N} messages`);
    await waitUntil(async () => (await xlen(user)) === 0, 5000, 'an empty inbox');
    await quietPeriod(200);
    assert.deepEqual(c.got, range(N), 'every message once, in order, across the reconnects');
    for (const n of range(N)) assert.equal(c.acks.get(n), 1, `message ${n} acked exactly once`);
});

test('(d) --inbox-maxlen drops the oldest entries, counts them in the metric and logs the numbers', async (t) => {
    const user = uniq('max');
    const before0 = await metric(small, 'switchboard_inbox_dropped_total', '{reason="maxlen"}');
    const stored0 = await metric(small, 'switchboard_durable_stored_total');
    for (const n of range(5)) await durable(user, n, { node: small });
    assert.equal(await xlen(user), 3);
    assert.equal(await metric(small, 'switchboard_inbox_dropped_total', '{reason="maxlen"}'), before0 + 2);
    assert.equal(await metric(small, 'switchboard_durable_stored_total'), stored0 + 5);
    const logged = small.stderrTail().split('\n').filter((l) => l.includes('durable emit dropped old inbox entries'));
    assert.equal(logged.length, 2, 'one warn line per emit that dropped something');
    const line = JSON.parse(logged[1]);
    assert.equal(line.level, 40);
    assert.equal(line.dropped_maxlen, '1');
    assert.equal(line.users, '1');
    assert.ok(!logged[1].includes('"n"'), 'no payload in the log');

    const c = durableClient(t, user, { node: small });
    await c.connect();
    await waitUntil(() => c.got.length === 3, 5000, 'the three kept entries');
    assert.deepEqual(c.got, [2, 3, 4]);
});

test('(d2) --inbox-max-age drops entries that waited too long, counted with reason="age"', async (t) => {
    // The inbox key expires --inbox-max-age after its last write; the second emit keeps it alive, so the read at
    // connect finds the first entry past the max age and trims it (counted), while the second is still young.
    const user = uniq('age');
    const before0 = await metric(young, 'switchboard_inbox_dropped_total', '{reason="age"}');
    const t0 = Date.now();
    await durable(user, 1, { node: young });
    const ttl = await env.redis.pTTL(inboxKey(user));
    assert.ok(ttl > 0 && ttl <= 2000, `the inbox expires with the max age (pttl ${ttl})`);
    await new Promise((r) => setTimeout(r, 1200));
    await durable(user, 2, { node: young });
    assert.equal(await xlen(user), 2);
    await new Promise((r) => setTimeout(r, Math.max(0, t0 + 2100 - Date.now())));
    const c = durableClient(t, user, { node: young });
    await c.connect();
    await waitUntil(() => c.got.length === 1, 5000, 'the young entry');
    assert.deepEqual(c.got, [2]);
    assert.equal(await metric(young, 'switchboard_inbox_dropped_total', '{reason="age"}'), before0 + 1);
    assert.ok(young.stderrTail().includes('inbox entries older than --inbox-max-age dropped'), 'logged');
});

test('(g) the first inbox page is asked for with the connect: its entries come after the CONNECT answer, once', async (t) => {
    const user = uniq('pipe');
    for (const n of range(3)) await durable(user, n);
    const c = durableClient(t, user);
    await c.connect();
    await waitUntil(() => c.got.length === 3, 5000, 'three durable events');
    await waitUntil(async () => (await xlen(user)) === 0, 5000, 'the acked entries to leave the inbox');
    await quietPeriod(200);
    assert.deepEqual(c.got, range(3));
    assert.deepEqual(c.packets, [0, 2, 2, 2], 'the CONNECT answer first, then the three events');
    assert.deepEqual([...c.acks.entries()], range(3).map((n) => [n, 1]), 'each acked exactly once');
});

test('(g2) a connect refused by Redis (connection rate) gets none of the inbox read sent with it', async (t) => {
    const from = '127.0.0.9'; // an address of its own: one connect a minute on `limited`
    const first = durableClient(t, uniq('first'), { node: limited, localAddress: from });
    await first.connect();
    const user = uniq('refused');
    await durable(user, 5);
    const c = durableClient(t, user, { node: limited, localAddress: from });
    await assert.rejects(c.connect(), (e) => e.data?.code === 'rate_limited');
    await quietPeriod(300);
    assert.deepEqual(c.packets, [4], 'only the CONNECT_ERROR, no event');
    assert.deepEqual(c.got, []);
    assert.equal(await xlen(user), 1, 'the entry waits in the inbox');
    const later = durableClient(t, user);
    await later.connect();
    await waitUntil(() => later.got.length === 1, 5000, 'the entry on the next connect');
    await waitUntil(async () => (await xlen(user)) === 0, 5000, 'an empty inbox');
    await quietPeriod(200);
    assert.deepEqual(later.got, [5]);
    assert.deepEqual(later.packets, [0, 2]);
});

test('(e) REST: durable is for users only; 400 invalid_argument otherwise', async () => {
    const cases = [
        [{ event: 'e', durable: true }, /users/],
        [{ event: 'e', durable: true, users: [] }, /users/],
        [{ event: 'e', durable: true, users: ['u'], rooms: ['r'] }, /rooms/],
        [{ event: 'e', durable: true, users: ['u'], sockets: ['s'] }, /sockets/],
        [{ event: 'e', durable: true, users: ['u'], except_rooms: ['r'] }, /except_rooms/],
        [{ event: 'e', durable: true, users: ['u'], except_sockets: ['s'] }, /except_sockets/],
        [{ event: 'e', durable: true, users: ['u'], volatile: true }, /volatile/],
        [{ event: 'e', durable: true, users: Array.from({ length: 1001 }, (_, i) => `u${i}`) }, /1000/],
    ];
    for (const [body, msg] of cases) {
        const r = await post('/v1/emit', body);
        assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 80)}: ${r.text}`);
        assert.equal(r.body.error.code, 'invalid_argument');
        assert.match(r.body.error.message, msg);
    }
    // the batch takes durable emits too, each with its own answer
    const user = uniq('batch');
    const r = await post('/v1/batch', [
        { op: 'emit', event: 'note', args: [{ n: 1 }], users: [user], durable: true },
        { op: 'emit', event: 'note', rooms: ['x'], durable: true },
    ]);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.results[0].status, 202);
    assert.match(r.body.results[0].id, /^\d+-\d+$/);
    assert.equal(r.body.results[1].status, 400);
    assert.equal(await xlen(user), 1);
});

test('(f) a Redis-only backend: FCALL sb_emit_durable stores and announces the emit like the REST API', async (t) => {
    const user = uniq('fcall');
    const c = durableClient(t, user);
    await c.connect();
    const offline = uniq('fcall-off');
    const msg = { namespace: '/', event: 'note', args: [{ n: 42 }], users: [user, offline] };
    const reply = await env.redis.sendCommand([
        'FCALL', 'sb_emit_durable', '3', `${env.prefix}bus`, inboxKey(user), inboxKey(offline),
        env.prefix, JSON.stringify(msg), JSON.stringify(msg.args), '1000', '86400000',
    ]);
    assert.equal(reply.length, 5);
    assert.match(reply[0], /^\d+-\d+$/);
    assert.deepEqual(reply.slice(1), [0, 0, 0, 2], 'nothing dropped, two inbox entries written');
    await waitUntil(() => c.got.length === 1, 5000, 'the live delivery');
    assert.deepEqual(c.got, [42]);
    await waitUntil(async () => (await xlen(user)) === 0, 5000, 'the acked entry to leave the inbox');
    assert.equal(await xlen(offline), 1, 'the offline user keeps it');
    // the bus entry: op emit, msg as given, inbox = {user: inbox id}
    const [entry] = await env.redis.xRange(`${env.prefix}bus`, reply[0], reply[0]);
    assert.equal(entry.message.op, 'emit');
    assert.deepEqual(JSON.parse(entry.message.msg), msg);
    const ids = JSON.parse(entry.message.inbox);
    assert.deepEqual(Object.keys(ids).sort(), [user, offline].sort());
    const [kept] = await env.redis.xRange(inboxKey(offline), '-', '+');
    assert.equal(kept.id, ids[offline]);
    assert.deepEqual(kept.message.nsp, '/');
    assert.deepEqual(kept.message.event, 'note');
    assert.deepEqual(JSON.parse(kept.message.args), [{ n: 42 }]);
    // a wrong key or a room target is an error reply, and writes nothing
    await assert.rejects(
        env.redis.sendCommand(['FCALL', 'sb_emit_durable', '2', `${env.prefix}bus`, inboxKey('someone-else'),
            env.prefix, JSON.stringify({ event: 'e', users: [user] }), '[]', '1000', '86400000']),
        /KEYS\[2\]|key/,
    );
    await assert.rejects(
        env.redis.sendCommand(['FCALL', 'sb_emit_durable', '2', `${env.prefix}bus`, inboxKey(user), env.prefix,
            JSON.stringify({ event: 'e', users: [user], rooms: ['r'] }), '[]', '1000', '86400000']),
        /rooms/,
    );
    assert.equal(await xlen(user), 0);
});
