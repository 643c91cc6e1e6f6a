// The REST API for backends (contract §3): every endpoint, its success answer
// and each of its error statuses; that a REST call is the same `<prefix>bus`
// entry a backend could XADD itself (same receivers); emit-with-ack; the
// presence queries and stats; API keys (several, from a file re-read on
// SIGHUP, generated when none is configured); 413 and 503.
//
// "X does not receive" is shown as in 30-rooms: a barrier event sent after the
// emit under test, then a short quietPeriod.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { after, before, test } from 'node:test';

import { entryOf, keys } from './lib/backend.mjs';
import { nextEvent, sioClose, sioConnect } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { startRedis, startSwitchboard, stopChild } from './lib/harness.mjs';
import { request } from './lib/http.mjs';
import { bytesOf, quietPeriod, record, uniq, waitFor, waitUntil } from './lib/util.mjs';

const KEY = 'rest-test-key-one';
const KEY2 = 'rest-test-key-two';
const HEARTBEAT_MS = 200;

let env;
before(async () => {
    env = await setupFile({
        tag: 't50',
        nodes: 2,
        namespaces: ['/chat'],
        args: ['--api-key', KEY, '--api-key', KEY2, '--heartbeat-interval', `${HEARTBEAT_MS}ms`],
    });
});
after(() => env?.teardown());

// One REST call. body: an object/array (sent as JSON) or a string (sent as is).
// Resolves {status, headers, body (parsed JSON or null), text}.
async function api(method, p, body, { key = KEY, node = env.node, headers = {}, timeoutMs = 5000 } = {}) {
    const h = { ...headers };
    if (key !== null) h.authorization = `Bearer ${key}`;
    let text;
    if (body !== undefined) {
        text = typeof body === 'string' ? body : JSON.stringify(body);
        h['content-type'] = 'application/json';
    }
    const res = await request(`${node.url}${p}`, { method, headers: h, body: text, timeoutMs });
    let parsed = null;
    try {
        parsed = JSON.parse(res.text);
    } catch {
        // left null: the tests that care say so
    }
    return { status: res.status, headers: res.headers, body: parsed, text: res.text };
}

const post = (p, body, opts) => api('POST', p, body, opts);

// Sends only the head of a POST announcing `length` body bytes (a server may answer 413 without reading a byte of
// the body, and a client writing it would then see EPIPE). Resolves {status, headers (lower-case), text}.
function postHead(node, p, length, key = KEY) {
    return waitFor(new Promise((resolve, reject) => {
        const sock = net.connect({ host: '127.0.0.1', port: node.port });
        let buf = '';
        sock.on('error', reject);
        sock.on('connect', () => sock.write(`POST ${p} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`));
        sock.on('data', (d) => {
            buf += d.toString('latin1');
            const end = buf.indexOf('\r\n\r\n');
            if (end < 0) return;
            const [statusLine, ...lines] = buf.slice(0, end).split('\r\n');
            const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
            const want = Number(headers['content-length'] ?? NaN);
            const body = buf.slice(end + 4);
            if (Number.isNaN(want) || body.length >= want) {
                sock.destroy();
                resolve({ status: Number(statusLine.split(' ')[1]), headers, text: body });
            }
        });
        sock.on('end', () => resolve({ status: Number(buf.split(' ')[1]), headers: {}, text: buf }));
    }), 5000, `answer to the head of POST ${p}`);
}
const get = (p, opts) => api('GET', p, undefined, opts);

function assertError(res, status, code, field, label = '') {
    const what = `${label} answered ${res.status} ${res.text}`;
    assert.equal(res.status, status, what);
    assert.match(String(res.headers['content-type']), /^application\/json/, what);
    assert.ok(res.body && typeof res.body.error === 'object', `error body: ${what}`);
    assert.equal(res.body.error.code, code, what);
    assert.equal(typeof res.body.error.message, 'string', what);
    assert.ok(res.body.error.message.length > 0, what);
    if (field === undefined) assert.equal(res.body.error.field, undefined, `no field: ${what}`);
    else assert.equal(res.body.error.field, field, what);
}

function assertAccepted(res, label = '') {
    assert.equal(res.status, 202, `${label}: ${res.status} ${res.text}`);
    assert.match(res.body.id, /^\d+-\d+$/, 'id is a stream entry id');
    return res.body.id;
}

// The bus entry with that id: {op, msg (parsed)}.
async function busEntry(id) {
    const r = await env.redis.sendCommand(['XRANGE', `${env.prefix}bus`, id, id]);
    assert.equal(r.length, 1, `bus entry ${id} exists`);
    const flat = r[0][1];
    const o = {};
    for (let i = 0; i + 1 < flat.length; i += 2) o[flat[i]] = flat[i + 1];
    assert.deepEqual(Object.keys(o).sort(), ['msg', 'op']);
    return { op: o.op, msg: JSON.parse(o.msg) };
}

async function busLength() {
    return Number(await env.redis.sendCommand(['XLEN', `${env.prefix}bus`]));
}

async function clients(t, n, nsp = '/', opts = {}) {
    const out = [];
    for (let i = 0; i < n; i++) out.push(await env.client(t, nsp, opts));
    return out;
}

// Waits until P{room:<nsp>:<room>} holds exactly `sids`.
async function membersAre(room, sids, nsp = '/') {
    const want = [...sids].sort();
    let last;
    await waitUntil(
        async () => {
            last = (await env.be.roomMembers(nsp, room)).sort();
            return JSON.stringify(last) === JSON.stringify(want);
        },
        5000,
        `room ${room} to hold ${JSON.stringify(want)}`,
    ).catch((e) => {
        throw new Error(`${e.message}; last seen ${JSON.stringify(last)}`);
    });
}

// Sends `send(event)` (one emit, by REST or XADD), then a barrier; resolves the ids of `all` that got `event`.
async function receiversOf(all, send) {
    const ev = uniq('ev');
    const barrier = uniq('barrier');
    const seen = all.map((s) => record(s, ev));
    const barriers = all.map((s) => nextEvent(s, barrier, 5000));
    await send(ev);
    assertAccepted(await post('/v1/emit', { event: barrier, sockets: all.map((s) => s.id) }), 'barrier');
    await waitFor(Promise.all(barriers), 5000, 'barrier events');
    await quietPeriod(150);
    for (const s of seen) if (s.length) assert.deepEqual(s, [['payload', 7]], 'delivered once, with its args');
    return all.filter((s, i) => seen[i].length > 0).map((s) => s.id).sort();
}

const ids = (socks) => socks.map((s) => s.id).sort();

// Stream entry ids "ms-seq" compared as numbers.
function idLess(x, y) {
    const [a1, a2] = x.split('-').map(BigInt);
    const [b1, b2] = y.split('-').map(BigInt);
    return a1 < b1 || (a1 === b1 && a2 < b2);
}

// ---- keys ------------------------------------------------------------------------------------------------------

test('401 without a key, with a wrong key or another scheme; both configured keys work', async () => {
    for (const [label, opts] of [
        ['no Authorization', { key: null }],
        ['wrong key', { key: 'not-a-configured-key' }],
        ['key prefix', { key: KEY.slice(0, -1) }],
        ['key plus a byte', { key: `${KEY}x` }],
        ['Basic scheme', { key: null, headers: { authorization: `Basic ${Buffer.from(`u:${KEY}`).toString('base64')}` } }],
        ['bare key', { key: null, headers: { authorization: KEY } }],
    ]) {
        const res = await get('/v1/stats', opts);
        assertError(res, 401, 'unauthorized', undefined, label);
        assert.match(String(res.headers['www-authenticate']), /^Bearer\b/, `${label}: WWW-Authenticate`);
    }
    // Authentication comes first: nothing about the API is told to a caller without a key.
    assertError(await get('/v1/no-such-endpoint', { key: null }), 401, 'unauthorized', undefined, 'unknown path');
    assertError(await post('/v1/emit', '{', { key: 'nope-nope' }), 401, 'unauthorized', undefined, 'bad body');
    for (const key of [KEY, KEY2]) {
        const res = await get('/v1/stats', { key });
        assert.equal(res.status, 200, res.text);
    }
    // The scheme is case-insensitive (RFC 7235).
    assert.equal((await get('/v1/stats', { key: null, headers: { authorization: `bearer ${KEY2}` } })).status, 200);
});

test('a key from --api-keys-file works and SIGHUP re-reads the file', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-keys-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'keys');
    const oldKey = `old-${uniq('key')}`;
    const newKey = `new-${uniq('key')}`;
    fs.writeFileSync(file, `# API keys, one a line\n\n  ${oldKey}\n`);
    const node = await startSwitchboard({
        redisUrl: env.redisServer.url,
        prefix: `${env.prefix}keys.`, // its own prefix: it must not show up in the stats test
        threads: 1,
        args: ['--api-keys-file', file],
    });
    t.after(() => node.stop());
    assert.equal((await get('/v1/stats', { node, key: oldKey })).status, 200, 'the key from the file works');
    assertError(await get('/v1/stats', { node, key: newKey }), 401, 'unauthorized', undefined, 'not yet in the file');
    assertError(await get('/v1/stats', { node, key: KEY }), 401, 'unauthorized', undefined, 'another node\'s key');

    fs.writeFileSync(file, `${newKey}\n`);
    node.child.kill('SIGHUP');
    await waitUntil(async () => (await get('/v1/stats', { node, key: newKey })).status === 200, 5000,
        'the new key to work after SIGHUP');
    assertError(await get('/v1/stats', { node, key: oldKey }), 401, 'unauthorized', undefined, 'the old key after SIGHUP');

    // A file that would leave no key keeps the previous keys (and says so), rather than locking everybody out.
    fs.writeFileSync(file, '# nothing here\n');
    node.child.kill('SIGHUP');
    await waitUntil(() => /API keys not reloaded/.test(node.stderrTail()), 5000, 'the refused reload to be logged');
    assert.equal((await get('/v1/stats', { node, key: newKey })).status, 200, 'the previous key still works');
    assert.equal((await node.stop()).code, 0, 'clean exit');
});

test('with no key configured a key is generated, printed once, and works', async (t) => {
    const node = await startSwitchboard({ redisUrl: env.redisServer.url, prefix: `${env.prefix}gen.`, threads: 1 });
    t.after(() => node.stop());
    const m = await waitUntil(() => /generated one for this run: (\S+)/.exec(node.stderrTail()), 5000,
        'the generated key to be printed');
    const key = m[1];
    assert.ok(key.length >= 16, `a long enough key: ${key}`);
    assert.equal(node.stderrTail().split(key).length - 1, 1, 'printed once, never logged again');
    assert.equal((await get('/v1/stats', { node, key })).status, 200);
    assertError(await get('/v1/stats', { node, key: null }), 401, 'unauthorized');
    assertError(await get('/v1/stats', { node, key: KEY }), 401, 'unauthorized', undefined, 'not a key of this node');
    assert.equal((await node.stop()).code, 0, 'clean exit');
});

// ---- 404, 405 --------------------------------------------------------------------------------------------------

test('404 for unknown endpoints and unknown sockets', async () => {
    for (const [m, p] of [
        ['GET', '/v1/no-such-endpoint'],
        ['GET', '/v1'],
        ['GET', '/v1/'],
        ['POST', '/v1/emits'],
        ['GET', '/v1/rooms/'],
        ['GET', '/v1/rooms/lobby/members'],
        ['POST', '/v1/sockets/abc/other'],
        ['GET', '/v1/users/u1/sockets'],
    ]) {
        assertError(await api(m, p, m === 'POST' ? {} : undefined), 404, 'not_found', undefined, `${m} ${p}`);
    }
    assertError(await get('/v1/sockets/no-such-socket'), 404, 'not_found', undefined, 'GET unknown socket');
    assertError(await post('/v1/sockets/no-such-socket/emit', { event: 'x' }), 404, 'not_found', undefined,
        'emit to an unknown socket');
});

test('405 for a known endpoint with another method, with the Allow header', async () => {
    for (const [m, p, allow] of [
        ['GET', '/v1/emit', 'POST'],
        ['PUT', '/v1/join', 'POST'],
        ['DELETE', '/v1/leave', 'POST'],
        ['GET', '/v1/disconnect', 'POST'],
        ['GET', '/v1/acks', 'POST'],
        ['GET', '/v1/batch', 'POST'],
        ['POST', '/v1/rooms', 'GET'],
        ['DELETE', '/v1/rooms/lobby', 'GET'],
        ['POST', '/v1/users/u1', 'GET'],
        ['DELETE', '/v1/sockets/abc', 'GET'],
        ['GET', '/v1/sockets/abc/emit', 'POST'],
        ['POST', '/v1/stats', 'GET'],
    ]) {
        const res = await api(m, p);
        assertError(res, 405, 'method_not_allowed', undefined, `${m} ${p}`);
        assert.equal(res.headers.allow, allow, `${m} ${p}: Allow (RFC 9110 §15.5.6)`);
    }
});

// ---- 400 -------------------------------------------------------------------------------------------------------

test('400 names the field: invalid JSON, wrong types, unknown fields, missing fields', async () => {
    const len0 = await busLength();
    const cases = [
        // [path, body, field]
        ['/v1/emit', '{"event":', 'body'],
        ['/v1/emit', '', 'body'],
        ['/v1/emit', '["event"]', 'body'],
        ['/v1/emit', '"emit"', 'body'],
        ['/v1/emit', {}, 'event'],
        ['/v1/emit', { event: '' }, 'event'],
        ['/v1/emit', { event: 5 }, 'event'],
        ['/v1/emit', { event: 'connect' }, 'event'],
        ['/v1/emit', { event: 'disconnect' }, 'event'],
        ['/v1/emit', { event: 'e', args: 'x' }, 'args'],
        ['/v1/emit', { event: 'e', args: { a: 1 } }, 'args'],
        ['/v1/emit', { event: 'e', rooms: 'lobby' }, 'rooms'],
        ['/v1/emit', { event: 'e', rooms: [''] }, 'rooms'],
        ['/v1/emit', { event: 'e', rooms: [1] }, 'rooms'],
        ['/v1/emit', { event: 'e', rooms: ['x'.repeat(513)] }, 'rooms'],
        ['/v1/emit', { event: 'e', users: [null] }, 'users'],
        ['/v1/emit', { event: 'e', sockets: {} }, 'sockets'],
        ['/v1/emit', { event: 'e', except_rooms: 'r' }, 'except_rooms'],
        ['/v1/emit', { event: 'e', except_sockets: [true] }, 'except_sockets'],
        ['/v1/emit', { event: 'e', volatile: 'yes' }, 'volatile'],
        ['/v1/emit', { event: 'e', durable: 1 }, 'durable'],
        ['/v1/emit', { event: 'e', durable: true }, 'durable'],
        ['/v1/emit', { event: 'e', namespace: 5 }, 'namespace'],
        ['/v1/emit', { event: 'e', namespace: '/not-served' }, 'namespace'],
        ['/v1/emit', { event: 'e', room: ['typo'] }, 'room'],
        ['/v1/join', { rooms: ['r'] }, 'sockets'],
        ['/v1/join', { sockets: ['s'] }, 'rooms'],
        ['/v1/join', { rooms: [], sockets: ['s'] }, 'rooms'],
        ['/v1/join', { rooms: ['r'], sockets: 's' }, 'sockets'],
        ['/v1/join', { rooms: ['r'], users: [1] }, 'users'],
        ['/v1/join', { rooms: ['r'], sockets: ['s'], event: 'e' }, 'event'],
        ['/v1/leave', { rooms: ['r'] }, 'sockets'],
        ['/v1/leave', { rooms: ['r'], users: ['u'], namespace: '/x' }, 'namespace'],
        ['/v1/disconnect', {}, 'sockets'],
        ['/v1/disconnect', { users: ['u'], reason: 5 }, 'reason'],
        ['/v1/disconnect', { users: ['u'], reason: 'x'.repeat(257) }, 'reason'],
        ['/v1/disconnect', { users: ['u'], close: true }, 'close'],
        ['/v1/acks', { ack_id: 1 }, 'socket'],
        ['/v1/acks', { socket: '', ack_id: 1 }, 'socket'],
        ['/v1/acks', { socket: 's' }, 'ack_id'],
        ['/v1/acks', { socket: 's', ack_id: '1' }, 'ack_id'],
        ['/v1/acks', { socket: 's', ack_id: -1 }, 'ack_id'],
        ['/v1/acks', { socket: 's', ack_id: 1.5 }, 'ack_id'],
        ['/v1/acks', { socket: 's', ack_id: 1, args: 'x' }, 'args'],
        ['/v1/acks', { socket: 's', ack_id: 1, extra: 1 }, 'extra'],
        ['/v1/batch', '[{"op":"emit"', 'body'],
        ['/v1/batch', { op: 'emit', event: 'e' }, 'body'],
        ['/v1/batch', [], 'body'],
        ['/v1/batch', Array.from({ length: 101 }, () => ({ op: 'emit', event: 'e' })), 'body'],
        ['/v1/sockets/abc/emit', '{', 'body'],
        ['/v1/sockets/abc/emit', [], 'body'],
        ['/v1/sockets/abc/emit', {}, 'event'],
        ['/v1/sockets/abc/emit', { event: 'connect' }, 'event'],
        ['/v1/sockets/abc/emit', { event: 'e', args: 1 }, 'args'],
        ['/v1/sockets/abc/emit', { event: 'e', ack_timeout_ms: 0 }, 'ack_timeout_ms'],
        ['/v1/sockets/abc/emit', { event: 'e', ack_timeout_ms: 60001 }, 'ack_timeout_ms'],
        ['/v1/sockets/abc/emit', { event: 'e', ack_timeout_ms: '100' }, 'ack_timeout_ms'],
        ['/v1/sockets/abc/emit', { event: 'e', rooms: ['r'] }, 'rooms'],
    ];
    for (const [p, body, field] of cases) {
        assertError(await post(p, body), 400, 'invalid_argument', field, `POST ${p} ${JSON.stringify(body).slice(0, 80)}`);
    }
    // Query parameters.
    for (const [p, field] of [
        ['/v1/rooms?limit=0', 'limit'],
        ['/v1/rooms?limit=abc', 'limit'],
        ['/v1/rooms?limit=100001', 'limit'],
        ['/v1/rooms?namespace=%2Fnot-served', 'namespace'],
        ['/v1/rooms?namespace=%zz', 'namespace'],
        ['/v1/rooms/lobby?namespace=%2Fnot-served', 'namespace'],
    ]) {
        assertError(await get(p), 400, 'invalid_argument', field, `GET ${p}`);
    }
    assert.equal(await busLength(), len0, 'no refused request wrote a bus entry');
});

// ---- bus operations --------------------------------------------------------------------------------------------

test('POST /v1/emit is the bus entry: op emit, msg = the body', async () => {
    const body = {
        namespace: '/',
        event: uniq('news'),
        args: ['hello', { $binary: 'AQID' }, { n: 1 }],
        rooms: ['lobby'],
        users: ['u1'],
        sockets: ['s1'],
        except_rooms: ['muted'],
        except_sockets: ['s2'],
        volatile: true,
        durable: false,
    };
    const id = assertAccepted(await post('/v1/emit', body));
    assert.deepEqual(await busEntry(id), { op: 'emit', msg: body });
    // The other operations likewise, each under its own op name.
    for (const [p, op, msg] of [
        ['/v1/join', 'join', { namespace: '/chat', rooms: ['a', 'b'], sockets: ['s1'], users: ['u1'] }],
        ['/v1/leave', 'leave', { rooms: ['a'], users: ['u1'] }],
        ['/v1/disconnect', 'disconnect', { namespace: '/', rooms: ['a'], reason: 'maintenance' }],
        ['/v1/acks', 'ack', { socket: 's1', ack_id: 12, args: ['ok', { $binary: 'AA==' }] }],
    ]) {
        const eid = assertAccepted(await post(p, msg), p);
        assert.deepEqual(await busEntry(eid), { op, msg }, p);
    }
});

test('an emit through REST and the same emit through XADD reach the same clients', async (t) => {
    const [a, b, c, d] = await clients(t, 4);
    const chat = await env.client(t, '/chat');
    const all = [a, b, c, d];
    const room = uniq('room');
    const muted = uniq('muted');
    assertAccepted(await post('/v1/join', { rooms: [room], sockets: [a.id, b.id, c.id] }));
    assertAccepted(await post('/v1/join', { rooms: [muted], sockets: [b.id] }));
    await membersAre(room, [a.id, b.id, c.id]);
    await membersAre(muted, [b.id]);
    const targets = [
        [{ rooms: [room] }, [a, b, c]],
        [{ users: [d.id] }, [d]],
        [{ sockets: [a.id, d.id] }, [a, d]],
        [{ rooms: [room], except_rooms: [muted] }, [a, c]],
        [{ rooms: [room], except_sockets: [a.id] }, [b, c]],
        [{ rooms: [muted], users: [d.id] }, [b, d]],
        [{}, all],
        [{ except_sockets: [c.id] }, [a, b, d]],
        [{ rooms: [`user:${a.id}`] }, [a]],
    ];
    for (const [target, want] of targets) {
        const viaRest = await receiversOf(all, async (ev) =>
            assertAccepted(await post('/v1/emit', { event: ev, args: ['payload', 7], ...target })));
        const viaBus = await receiversOf(all, (ev) => env.be.emit({ event: ev, args: ['payload', 7], ...target }));
        assert.deepEqual(viaRest, ids(want), `REST ${JSON.stringify(target)}`);
        assert.deepEqual(viaBus, viaRest, `XADD ${JSON.stringify(target)} reaches the same clients as REST`);
    }
    // Another namespace: the /chat socket saw none of the above, and gets what is sent to /chat.
    const got = nextEvent(chat, 'chat-only', 5000);
    assertAccepted(await post('/v1/emit', { namespace: '/chat', event: 'chat-only', args: [{ $binary: 'AQID' }] }));
    const [bin] = await got;
    assert.deepEqual(bytesOf(bin), [1, 2, 3], '{"$binary"} arrives as a binary attachment');
});

test('an emit through node 2 reaches clients of node 1 (one bus)', async (t) => {
    const a = await env.client(t);
    const b = await env.client(t, '/', { url: env.nodes[1].url });
    const pa = nextEvent(a, 'cross', 5000);
    const pb = nextEvent(b, 'cross', 5000);
    assertAccepted(await post('/v1/emit', { event: 'cross', args: [1], sockets: [a.id, b.id] }, { node: env.nodes[1] }));
    assert.deepEqual(await pa, [1]);
    assert.deepEqual(await pb, [1]);
});

test('join, leave and disconnect through REST change Redis and what clients receive', async (t) => {
    const [a, b, c] = await clients(t, 3);
    const room = uniq('club');
    assertAccepted(await post('/v1/join', { rooms: [room], sockets: [a.id], users: [b.id] }));
    await membersAre(room, [a.id, b.id]);
    assert.ok(await env.redis.sIsMember(keys.sockRooms(env.prefix, a.id), room), 'in the socket rooms set');
    assert.deepEqual(await receiversOf([a, b, c], async (ev) =>
        assertAccepted(await post('/v1/emit', { event: ev, args: ['payload', 7], rooms: [room] }))), ids([a, b]));

    assertAccepted(await post('/v1/leave', { rooms: [room], users: [a.id] }));
    await membersAre(room, [b.id]);
    assert.equal(await env.redis.sIsMember(keys.sockRooms(env.prefix, a.id), room), false);
    assert.deepEqual(await receiversOf([a, b, c], async (ev) =>
        assertAccepted(await post('/v1/emit', { event: ev, args: ['payload', 7], rooms: [room] }))), ids([b]));

    // Disconnect by room: b leaves with "io server disconnect"; a and c stay.
    const since = (await env.redis.sendCommand(['XREVRANGE', `${env.prefix}events`, '+', '-', 'COUNT', '1']))[0]?.[0] || '0-0';
    const gone = nextEvent(b, 'disconnect', 5000);
    const bid = b.id;
    assertAccepted(await post('/v1/disconnect', { rooms: [room], reason: 'kicked' }));
    assert.equal((await gone)[0], 'io server disconnect');
    const entry = await env.be.readEvent(entryOf('disconnect', bid), 5000, { from: since });
    assert.equal(entry.reason, 'kicked');
    await membersAre(room, []);
    await waitUntil(async () => !(await env.redis.exists(keys.sock(env.prefix, bid))), 5000, 'the socket hash to go');
    assert.ok(a.connected && c.connected, 'the others stay connected');
});

test('a join sent as soon as the connect entry shows up is applied', async (t) => {
    // What a backend naturally does: on `connect`, put the socket in its rooms. The connect entry is visible in
    // <prefix>events before the node has finished the connect, so this races with the node.
    const n = 30;
    let cursor = (await env.redis.sendCommand(['XREVRANGE', `${env.prefix}events`, '+', '-', 'COUNT', '1']))[0]?.[0] || '0-0';
    const lost = [];
    for (let i = 0; i < n; i++) {
        const room = uniq('early');
        const pending = sioConnect(env.url, '/');
        const entry = await env.be.readEvent((e) => e.type === 'connect', 5000, { from: cursor });
        cursor = entry.id;
        // XADD, as a Redis backend does (also the quickest way: a REST call loses the race less often).
        await env.be.join({ rooms: [room], sockets: [entry.socket] });
        const s = await pending;
        t.after(() => sioClose(s));
        assert.equal(s.id, entry.socket);
        const ok = await waitUntil(() => env.redis.sIsMember(keys.room(env.prefix, '/', room), s.id), 1000, 'join')
            .then(() => true, () => false);
        if (!ok) lost.push(s.id);
    }
    assert.deepEqual(lost, [], `${lost.length} of ${n} joins sent right after the connect entry were lost`);
});

test('POST /v1/acks answers a client event', async (t) => {
    const s = await env.client(t);
    const acked = waitFor(new Promise((resolve) => s.emit('question', 'q?', (...args) => resolve(args))), 5000,
        'the client\'s ack callback');
    const entry = await env.be.readEvent(entryOf('event', s.id, 'question'), 5000);
    assert.match(entry.ack_id, /^\d+$/);
    const res = await post('/v1/acks', { socket: s.id, ack_id: Number(entry.ack_id), args: ['answer', { $binary: 'AQID' }] });
    assertAccepted(res);
    const [text, bin] = await acked;
    assert.equal(text, 'answer');
    assert.deepEqual(bytesOf(bin), [1, 2, 3]);
});

test('batch: each operation answered in order; valid ones applied, invalid ones refused alone', async (t) => {
    const [a, b] = await clients(t, 2);
    const room = uniq('batch');
    const got = nextEvent(a, 'after-join', 5000);
    const len0 = await busLength();
    const res = await post('/v1/batch', [
        { op: 'join', rooms: [room], sockets: [a.id] },
        { op: 'emit', event: 'after-join', args: ['in order'], rooms: [room] },
        { op: 'emit', event: 'e', bogus: 1 },
        { op: 'teleport', sockets: [a.id] },
        { event: 'no-op-field' },
        42,
        { op: 'emit', event: 'e', durable: true },
        { op: 'ack', socket: b.id, ack_id: 99999, args: [] },
        { op: 'leave', rooms: [room] },
        { op: 'disconnect' },
    ]);
    assert.equal(res.status, 200, res.text);
    const r = res.body.results;
    assert.equal(r.length, 10);
    const ok = [0, 1, 7];
    for (const i of ok) {
        assert.equal(r[i].status, 202, `op ${i}: ${JSON.stringify(r[i])}`);
        assert.match(r[i].id, /^\d+-\d+$/);
    }
    const wantField = { 2: 'bogus', 3: 'op', 4: 'op', 5: 'op', 6: 'durable', 8: 'sockets', 9: 'sockets' };
    for (const [i, field] of Object.entries(wantField)) {
        assert.equal(r[i].status, 400, `op ${i}: ${JSON.stringify(r[i])}`);
        assert.equal(r[i].error.code, 'invalid_argument');
        assert.equal(r[i].error.field, field, `op ${i}: ${JSON.stringify(r[i])}`);
        assert.equal(r[i].id, undefined);
    }
    assert.equal(await busLength(), len0 + ok.length, 'only the valid operations reached the bus');
    // Entries are in request order, and carry no "op" inside msg.
    assert.ok(idLess(r[0].id, r[1].id) && idLess(r[1].id, r[7].id), 'entry ids follow the request order');
    assert.deepEqual(await busEntry(r[0].id), { op: 'join', msg: { rooms: [room], sockets: [a.id] } });
    assert.deepEqual(await busEntry(r[7].id), { op: 'ack', msg: { socket: b.id, ack_id: 99999, args: [] } });
    assert.deepEqual(await got, ['in order'], 'join then emit of one batch are applied in order');
    await membersAre(room, [a.id]);

    // 100 operations are fine.
    const full = await post('/v1/batch', Array.from({ length: 100 }, (_, i) => ({ op: 'emit', event: `n${i}`, sockets: ['x'] })));
    assert.equal(full.status, 200);
    assert.equal(full.body.results.length, 100);
    assert.ok(full.body.results.every((x) => x.status === 202));
});

// ---- emit with ack ---------------------------------------------------------------------------------------------

test('POST /v1/sockets/{sid}/emit answers with the client\'s ack, binary too', async (t) => {
    const s = await env.client(t);
    s.on('ask', (...args) => {
        const cb = args.pop();
        cb('fine', { got: args[0] }, Buffer.from([1, 2, 3]));
    });
    const t0 = Date.now();
    const res = await post(`/v1/sockets/${encodeURIComponent(s.id)}/emit`, { event: 'ask', args: ['how are you'], ack_timeout_ms: 3000 });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { ack: ['fine', { got: 'how are you' }, { $binary: 'AQID' }] });
    assert.ok(Date.now() - t0 < 3000, 'answered as soon as the client acked');

    // Binary sent to the client, no args echoed back.
    s.on('bin', (...args) => args.pop()(bytesOf(args[0]).length));
    const res2 = await post(`/v1/sockets/${s.id}/emit`, { event: 'bin', args: [{ $binary: 'AAECAwQ=' }] });
    assert.deepEqual(res2.body, { ack: [5] }, res2.text);

    // An ack with no arguments.
    s.on('empty', (cb) => cb());
    const res3 = await post(`/v1/sockets/${s.id}/emit`, { event: 'empty' });
    assert.deepEqual(res3.body, { ack: [] }, res3.text);
});

test('emit-with-ack to a client of another node, and in another namespace', async (t) => {
    const s = await env.client(t, '/chat', { url: env.nodes[1].url });
    s.on('where', (...args) => args.pop()('node-2', args[0]));
    const res = await post(`/v1/sockets/${s.id}/emit`, { event: 'where', args: [42], ack_timeout_ms: 3000 });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { ack: ['node-2', 42] });
});

test('a client that never acks gives 504 within the timeout', async (t) => {
    const s = await env.client(t);
    const seen = record(s, 'silent'); // listener that never calls the ack
    const t0 = Date.now();
    const res = await post(`/v1/sockets/${s.id}/emit`, { event: 'silent', args: [1], ack_timeout_ms: 400 });
    const took = Date.now() - t0;
    assertError(res, 504, 'timeout');
    assert.ok(took >= 390, `not before the timeout (${took} ms)`);
    assert.ok(took < 2000, `soon after the timeout (${took} ms)`);
    assert.equal(seen.length, 1, 'the client got the event');
    assert.equal(typeof seen[0].at(-1), 'function', 'with an ack callback');
    // A late ack is ignored; the socket and the API go on working.
    seen[0].at(-1)('too late');
    s.on('now', (cb) => cb('ok'));
    const res2 = await post(`/v1/sockets/${s.id}/emit`, { event: 'now', ack_timeout_ms: 3000 });
    assert.deepEqual(res2.body, { ack: ['ok'] }, res2.text);
});

test('emit-with-ack to a socket that is gone: 404', async (t) => {
    const s = await env.client(t);
    const sid = s.id;
    sioClose(s);
    await waitUntil(async () => (await get(`/v1/sockets/${sid}`)).status === 404, 5000, 'the socket to be gone');
    assertError(await post(`/v1/sockets/${sid}/emit`, { event: 'e' }), 404, 'not_found');
});

// ---- queries ---------------------------------------------------------------------------------------------------

test('rooms, room members, users and sockets after joins', async (t) => {
    const [a, b] = await clients(t, 2);
    const chat = await env.client(t, '/chat', { url: env.nodes[1].url });
    const base = uniq('q');
    const r1 = `${base}-one`;
    const r2 = `${base}-two`;
    const odd = `${base} a/b?c`;
    assertAccepted(await post('/v1/join', { rooms: [r1, odd], sockets: [a.id, b.id] }));
    assertAccepted(await post('/v1/join', { rooms: [r2], sockets: [a.id] }));
    assertAccepted(await post('/v1/join', { namespace: '/chat', rooms: [r1], sockets: [chat.id] }));
    await membersAre(r1, [a.id, b.id]);
    await membersAre(r2, [a.id]);
    await membersAre(odd, [a.id, b.id]);
    await membersAre(r1, [chat.id], '/chat');

    const list = await get(`/v1/rooms?prefix=${encodeURIComponent(base)}`);
    assert.equal(list.status, 200, list.text);
    assert.deepEqual(list.body, {
        namespace: '/',
        rooms: [{ room: odd, count: 2 }, { room: r1, count: 2 }, { room: r2, count: 1 }],
    });
    const limited = await get(`/v1/rooms?namespace=%2F&prefix=${encodeURIComponent(base)}&limit=2`);
    assert.deepEqual(limited.body.rooms, [{ room: odd, count: 2 }, { room: r1, count: 2 }], limited.text);
    const chatRooms = await get(`/v1/rooms?namespace=${encodeURIComponent('/chat')}&prefix=${encodeURIComponent(base)}`);
    assert.deepEqual(chatRooms.body, { namespace: '/chat', rooms: [{ room: r1, count: 1 }] }, chatRooms.text);
    const all = await get('/v1/rooms');
    assert.equal(all.status, 200);
    assert.ok(all.body.rooms.some((x) => x.room === r2), 'no prefix: every room');

    const nodeIds = (await get('/v1/stats')).body.nodes.map((n) => n.id);
    const info = await get(`/v1/rooms/${encodeURIComponent(r1)}`);
    assert.equal(info.status, 200, info.text);
    assert.equal(info.body.room, r1);
    assert.equal(info.body.namespace, '/');
    assert.equal(info.body.count, 2);
    assert.deepEqual(info.body.sockets.map((x) => x.id).sort(), ids([a, b]));
    for (const x of info.body.sockets) {
        assert.equal(x.user, x.id, 'anonymous: user = socket id');
        assert.ok(nodeIds.includes(x.node), `node ${x.node} is a live node`);
    }
    assert.deepEqual([...info.body.users].sort(), ids([a, b]));
    const oddInfo = await get(`/v1/rooms/${encodeURIComponent(odd)}`);
    assert.equal(oddInfo.body.room, odd, 'percent-encoded room names, "/" included');
    assert.equal(oddInfo.body.count, 2);
    const chatInfo = await get(`/v1/rooms/${encodeURIComponent(r1)}?namespace=%2Fchat`);
    assert.deepEqual(chatInfo.body.sockets.map((x) => x.id), [chat.id], chatInfo.text);
    const empty = await get(`/v1/rooms/${uniq('nobody')}`);
    assert.equal(empty.status, 200, 'an empty room is simply empty');
    assert.equal(empty.body.count, 0);
    assert.deepEqual(empty.body.sockets, []);
    assert.deepEqual(empty.body.users, []);

    const user = await get(`/v1/users/${encodeURIComponent(a.id)}`);
    assert.equal(user.status, 200, user.text);
    assert.equal(user.body.user, a.id);
    assert.equal(user.body.online, true);
    assert.equal(user.body.sockets.length, 1);
    assert.equal(user.body.sockets[0].id, a.id);
    assert.equal(user.body.sockets[0].namespace, '/');
    assert.equal(user.body.sockets[0].transport, 'websocket');
    assert.ok(nodeIds.includes(user.body.sockets[0].node));
    const rooms = user.body.rooms.filter((x) => x.room.startsWith(base)).map((x) => `${x.namespace}|${x.room}`).sort();
    assert.deepEqual(rooms, [`/|${odd}`, `/|${r1}`, `/|${r2}`]);
    assert.ok(user.body.rooms.some((x) => x.room === a.id), 'its own room too');
    const nobody = await get(`/v1/users/${uniq('nobody')}`);
    assert.equal(nobody.status, 200);
    assert.equal(nobody.body.online, false);
    assert.deepEqual(nobody.body.sockets, []);
    assert.deepEqual(nobody.body.rooms, []);

    const t0 = Date.now();
    const sock = await get(`/v1/sockets/${encodeURIComponent(chat.id)}`);
    assert.equal(sock.status, 200, sock.text);
    assert.deepEqual(Object.keys(sock.body).sort(), ['connected_at', 'id', 'namespace', 'node', 'rooms', 'transport', 'user']);
    assert.equal(sock.body.id, chat.id);
    assert.equal(sock.body.user, chat.id);
    assert.equal(sock.body.namespace, '/chat');
    assert.equal(sock.body.transport, 'websocket');
    assert.deepEqual([...sock.body.rooms].sort(), [chat.id, r1, `user:${chat.id}`].sort(), 'its own room and user: room too');
    assert.ok(nodeIds.includes(sock.body.node));
    assert.ok(Number.isInteger(sock.body.connected_at) && sock.body.connected_at <= t0 && sock.body.connected_at > t0 - 60000,
        `connected_at ${sock.body.connected_at} is a recent epoch ms`);
    const onNode1 = (await get(`/v1/sockets/${a.id}`)).body.node;
    assert.notEqual(sock.body.node, onNode1, 'the /chat socket is on the other node');
});

test('stats lists both nodes and the totals add up', async (t) => {
    const [a, b] = await clients(t, 2);
    const c = await env.client(t, '/', { url: env.nodes[1].url });
    const nodeOf = async (s) => (await get(`/v1/sockets/${s.id}`)).body.node;
    const want = [await nodeOf(a), await nodeOf(c)].sort();
    assert.notEqual(want[0], want[1], 'the clients are on two nodes');
    assert.equal(await nodeOf(b), await nodeOf(a));
    let last;
    // Figures come from heartbeats (every --heartbeat-interval): wait until they show these clients.
    await waitUntil(async () => {
        last = await get('/v1/stats');
        return last.status === 200 && JSON.stringify(last.body.nodes.map((n) => n.id).sort()) === JSON.stringify(want) &&
            last.body.nodes.every((n) => n.sockets >= (n.id === want[0] ? 1 : 1)) && last.body.totals.sockets >= 3;
    }, 20 * HEARTBEAT_MS + 5000, 'stats to show the two nodes with their clients').catch((e) => {
        throw new Error(`${e.message}; want nodes ${want}; last ${last?.text}`);
    });
    const { nodes, totals } = last.body;
    const numeric = ['connections', 'sockets', 'connects_total', 'disconnects_total', 'events_in', 'events_out',
        'deliveries', 'bus_entries', 'dropped', 'rate_limited', 'auth_failures', 'threads', 'draining'];
    for (const n of nodes) {
        assert.deepEqual(Object.keys(n).sort(),
            [...numeric, 'id', 'last_seen', 'started_at', 'version', 'disconnects', 'delivery_p50_ms',
                'delivery_p99_ms', 'redis_p50_ms', 'redis_p99_ms', 'loop_lag_ms'].sort(), last.text);
        assert.equal(typeof n.disconnects, 'object');
        assert.ok(Number.isInteger(n.disconnects['client namespace disconnect']), last.text);
        for (const f of [...numeric, 'started_at', 'last_seen']) assert.ok(Number.isInteger(n[f]) && n[f] >= 0, `${f}: ${last.text}`);
        assert.match(n.version, /^\d+\.\d+\.\d+/);
        assert.equal(n.threads, 2);
        assert.ok(n.connections >= 1 && n.sockets >= 1, last.text);
        assert.ok(n.bus_entries > 0, 'the bus entries of the earlier tests were counted');
        assert.ok(n.started_at <= n.last_seen);
        assert.ok(Math.abs(Date.now() - n.last_seen) < 20 * HEARTBEAT_MS + 2000, 'a recent heartbeat');
    }
    for (const f of numeric) assert.equal(totals[f], nodes.reduce((s, n) => s + n[f], 0), `totals.${f}: ${last.text}`);
    assert.equal(totals.nodes, 2);
    assert.deepEqual(Object.keys(totals).sort(), [...numeric, 'nodes'].sort());
});

// ---- 413, 503 --------------------------------------------------------------------------------------------------

test('413 for a body over --api-max-body', async (t) => {
    const node = await env.startNode({ args: ['--api-max-body', '1kb'] });
    t.after(() => node.stop());
    const fill = (n) => JSON.stringify({ event: 'e', args: ['x'.repeat(n)], sockets: ['nobody'] });
    const small = fill(1024 - fill(0).length);
    assert.equal(Buffer.byteLength(small), 1024);
    assertAccepted(await post('/v1/emit', small, { node }), 'exactly 1 kb');
    const big = fill(1025 - fill(0).length);
    assertError(await post('/v1/emit', big, { node }), 413, 'payload_too_large', 'body', '1 kb + 1');
    assertError(await post('/v1/batch', `[${big}]`, { node }), 413, 'payload_too_large', 'body', 'batch');
    assertError(await post('/v1/sockets/x/emit', big, { node }), 413, 'payload_too_large', 'body', 'socket emit');
    // Far over the limit (and over --max-payload): refused from the Content-Length alone.
    const res = await postHead(node, '/v1/emit', 2_000_000);
    assert.equal(res.status, 413, `far over the limit: ${res.text}`);
    assertError(await get('/v1/stats', { node, key: 'nope-nope' }), 401, 'unauthorized');
});

test('503 while the node\'s Redis is unreachable', async (t) => {
    const redis2 = await startRedis();
    if (redis2.external) {
        t.skip('needs a private redis-server it can stop (SWITCHBOARD_TEST_REDIS_URL is set)');
        return;
    }
    t.after(() => redis2.stop());
    const node = await startSwitchboard({ redisUrl: redis2.url, prefix: 't50b:', threads: 1, args: ['--api-key', KEY] });
    t.after(() => node.stop());
    assert.equal((await get('/v1/stats', { node })).status, 200);
    await redis2.stop();
    await waitUntil(async () => (await post('/v1/emit', { event: 'e' }, { node })).status === 503, 5000,
        'REST calls to answer 503');
    for (const [m, p, body] of [
        ['POST', '/v1/emit', { event: 'e' }],
        ['POST', '/v1/join', { rooms: ['r'], sockets: ['s'] }],
        ['POST', '/v1/batch', [{ op: 'emit', event: 'e' }]],
        ['POST', '/v1/sockets/s/emit', { event: 'e' }],
        ['GET', '/v1/rooms'],
        ['GET', '/v1/rooms/r'],
        ['GET', '/v1/users/u'],
        ['GET', '/v1/sockets/s'],
        ['GET', '/v1/stats'],
    ]) {
        const t0 = Date.now();
        const res = await api(m, p, body, { node });
        assertError(res, 503, 'unavailable', undefined, `${m} ${p}`);
        assert.ok(Date.now() - t0 < 2000, `${m} ${p} answered at once`);
    }
    // Still 401 without a key: the key is checked before anything else.
    assertError(await get('/v1/stats', { node, key: null }), 401, 'unauthorized');
    const st = await stopChild(node.child);
    assert.equal(st.code, 0, `clean exit without Redis; log ${node.logFile}`);
});
