// Connection state recovery and durable REST paths left uncovered by 46-recovery and 56-durable (found by
// scripts/coverage.sh): malformed pids and offsets in the CONNECT payload, a pid of another namespace, a pid whose
// socket is still connected on the same node, recovery over HTTP long-polling, a client that leaves while its
// recovery is asked, and durable emits refused by Redis.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { keys } from './lib/backend.mjs';
import { RawClient, nextEvent, sioClose, sioConnect } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { request } from './lib/http.mjs';
import { uniq, waitUntil } from './lib/util.mjs';

const KEY = 'k68-recovery-test-key';
const ARGS = ['--recovery-window', '60s', '--heartbeat-interval', '200', '--api-key', KEY, '--namespace', '/chat'];
let env;
let node;
before(async () => {
    env = await setupFile({ tag: 't68', nodes: 0 });
    node = await env.startNode({ args: ARGS });
});
after(async () => {
    if (env && !env.redisServer.external) await env.redis.sendCommand(['CONFIG', 'SET', 'maxmemory', '0']);
    await env?.teardown();
});

const state = (id) => env.redis.hGet(keys.sock(env.prefix, id), 'state');

// Connects, then drops the transport (no reconnection) and waits until the state is kept for recovery.
async function lost(t, nsp = '/', opts = {}) {
    const s = await sioConnect(node.url, nsp, { reconnection: false, ...opts });
    t.after(() => sioClose(s));
    const { id } = s;
    const pid = s._pid;
    s.io.engine.close();
    await waitUntil(async () => (await state(id)) === 'disconnected', 5000, 'kept for recovery');
    return { id, pid };
}

async function recoveries() {
    const m = await request(`${node.url}/metrics`);
    const out = {};
    for (const outcome of ['recovered', 'refused', 'failed']) {
        const hit = m.text.match(new RegExp(`switchboard_recoveries_total\\{outcome="${outcome}"\\} (\\d+)`));
        out[outcome] = hit ? Number(hit[1]) : 0;
    }
    return out;
}

test('malformed pids connect as new without asking Redis', async (t) => {
    const { id, pid } = await lost(t);
    const before = await recoveries();
    const bad = [
        pid.slice(0, 19) + '.' + pid.slice(19, 40), // the dot one place early
        pid.slice(0, 20) + '!' + pid.slice(21), // right length, no dot
        pid.slice(0, 20) + '.' + pid.slice(21, 40) + '*', // a character outside the id alphabet
        pid + 'x', // too long
    ];
    for (const p of bad) {
        const s = await sioConnect(node.url, '/', { auth: { pid: p } });
        t.after(() => sioClose(s));
        assert.equal(s.recovered, false, p);
        assert.notEqual(s.id, id, p);
    }
    assert.deepEqual(await recoveries(), before, 'no recovery was even attempted');
    assert.equal(await state(id), 'disconnected', 'the kept state is untouched');
});

test('an offset that is not a stream id is ignored: the stored offset is used and the session recovers', async (t) => {
    for (const offset of ['-1', '1-', '12345678901234567890-1', '1-12345678901234567890', 'a-1', '1-b', '']) {
        const { id, pid } = await lost(t);
        const s = await sioConnect(node.url, '/', { reconnection: false, auth: { pid, offset } });
        t.after(() => sioClose(s));
        assert.equal(s.id, id, `offset ${JSON.stringify(offset)}`);
        const got = nextEvent(s, 'hello');
        await env.be.emit({ event: 'hello', args: [offset], sockets: [id] });
        assert.equal((await got)[0], offset);
    }
});

test('a pid of another namespace is refused; in its own namespace it recovers', async (t) => {
    const { id, pid } = await lost(t, '/chat');
    const before = await recoveries();
    const other = await sioConnect(node.url, '/', { reconnection: false, auth: { pid } });
    t.after(() => sioClose(other));
    assert.equal(other.recovered, false);
    assert.notEqual(other.id, id);
    assert.equal((await recoveries()).refused, before.refused + 1, 'refused by sb_recover (mismatch)');
    const mine = await sioConnect(node.url, '/chat', { reconnection: false, auth: { pid } });
    t.after(() => sioClose(mine));
    assert.equal(mine.id, id);
    assert.equal((await recoveries()).recovered, before.recovered + 1);
});

test('a pid whose socket is still connected takes it over: the new connection gets the same id and its rooms', async (t) => {
    const old = await sioConnect(node.url, '/', { reconnection: false });
    t.after(() => sioClose(old));
    const room = uniq('r');
    await env.be.join({ rooms: [room], sockets: [old.id] });
    await waitUntil(async () => (await env.be.roomMembers('/', room)).includes(old.id), 5000, 'joined');
    const before = await recoveries();
    const s = await sioConnect(node.url, '/', { reconnection: false, auth: { pid: old._pid } });
    t.after(() => sioClose(s));
    assert.equal(s.id, old.id);
    assert.equal((await recoveries()).recovered, before.recovered + 1);
    const got = nextEvent(s, 'tick');
    await env.be.emit({ event: 'tick', args: [1], rooms: [room] });
    assert.equal((await got)[0], 1, 'the room membership came along');
    assert.equal(await state(s.id), null, 'connected again');
});

test('recovery over HTTP long-polling replays what was missed', async (t) => {
    const s = await sioConnect(node.url, '/', {
        transports: ['polling'],
        reconnection: true,
        reconnectionDelay: 100,
        reconnectionDelayMax: 300,
        randomizationFactor: 0,
    });
    t.after(() => sioClose(s));
    const ticks = [];
    s.on('tick', (n) => ticks.push(n));
    const room = uniq('r');
    await env.be.join({ rooms: [room], sockets: [s.id] });
    await waitUntil(async () => (await env.be.roomMembers('/', room)).includes(s.id), 5000, 'joined');
    await env.be.emit({ event: 'tick', args: [1], rooms: [room] });
    await waitUntil(() => ticks.length === 1, 5000, 'tick 1');
    const { id } = s;
    const back = new Promise((resolve) => s.once('connect', resolve));
    s.io.engine.close(); // the client reconnects by itself, with its pid and offset
    await waitUntil(async () => (await state(id)) === 'disconnected', 5000, 'kept for recovery');
    await env.be.emit({ event: 'tick', args: [2], rooms: [room] });
    await env.be.emit({ event: 'tick', args: [3], rooms: [room] });
    await back;
    assert.equal(s.recovered, true);
    assert.equal(s.id, id);
    assert.equal(s.io.engine.transport.name, 'polling');
    await waitUntil(() => ticks.length >= 3, 5000, 'the replay');
    assert.deepEqual(ticks, [1, 2, 3]);
    assert.equal(await env.redis.hGet(keys.sock(env.prefix, id), 'transport'), 'polling');
});

test('a client that leaves while its recovery is asked: the state stays kept for a later recovery', async (t) => {
    const { id, pid } = await lost(t);
    const raw = await RawClient.open(node.url);
    raw.ws.send('40' + JSON.stringify({ pid }));
    raw.close(); // gone before sb_recover answers (or right after)
    await waitUntil(async () => (await state(id)) === 'disconnected', 5000, 'kept again');
    const s = await sioConnect(node.url, '/', { reconnection: false, auth: { pid } });
    t.after(() => sioClose(s));
    assert.equal(s.id, id);
});

test('durable emits refused by Redis (OOM) answer 503 with its reason; the batch answers per operation', async (t) => {
    if (env.redisServer.external) {
        t.skip('needs a private redis-server it can reconfigure (SWITCHBOARD_TEST_REDIS_URL is set)');
        return;
    }
    // Its own node: no API rate limit (its check would be the first write refused), a slow heartbeat.
    const slow = await env.startNode({ args: ['--api-key', KEY, '--rate-api', 'off', '--heartbeat-interval', '10000'] });
    const api = async (p, body) => {
        const res = await request(`${slow.url}${p}`, {
            method: 'POST',
            headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
            body: JSON.stringify(body),
        });
        return { status: res.status, body: JSON.parse(res.text) };
    };
    const user = uniq('u');
    await env.redis.sendCommand(['CONFIG', 'SET', 'maxmemory-policy', 'noeviction']);
    await env.redis.sendCommand(['CONFIG', 'SET', 'maxmemory', '1']);
    try {
        const r = await api('/v1/emit', { event: 'note', users: [user], durable: true });
        assert.equal(r.status, 503, JSON.stringify(r.body));
        assert.equal(r.body.error.code, 'unavailable');
        assert.match(r.body.error.message, /OOM/);
        const b = await api('/v1/batch', [{ op: 'emit', event: 'note', users: [user], durable: true }]);
        assert.equal(b.status, 200, JSON.stringify(b.body));
        assert.equal(b.body.results[0].status, 503);
        assert.match(b.body.results[0].error.message, /OOM/);
    } finally {
        await env.redis.sendCommand(['CONFIG', 'SET', 'maxmemory', '0']);
    }
    assert.equal(await env.redis.exists(`${env.prefix}{user:${user}}:inbox`), 0, 'nothing was stored');
    const ok = await api('/v1/emit', { event: 'note', users: [user], durable: true });
    assert.equal(ok.status, 202, JSON.stringify(ok.body));
});

test('REST: bad percent-encoding in a query or a path name is refused; "+" is a space; extra spaces after Bearer', async () => {
    const get = async (p, auth = `Bearer ${KEY}`) => {
        const res = await request(`${node.url}${p}`, { headers: { authorization: auth } });
        return { status: res.status, body: JSON.parse(res.text) };
    };
    const q = await get('/v1/rooms?prefix=%zz');
    assert.equal(q.status, 400, JSON.stringify(q.body));
    assert.equal(q.body.error.code, 'invalid_argument');
    assert.equal(q.body.error.message, 'bad percent-encoding');
    for (const p of ['/v1/rooms/%zz/sockets', '/v1/users/%4/sockets', '/v1/sockets/%00']) {
        const r = await get(p);
        assert.equal(r.status, 400, `${p}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.error.message, 'bad name in the path', p);
    }
    const room = 'a b ' + uniq('plus');
    const s = await sioConnect(node.url, '/', { reconnection: false });
    try {
        await env.be.join({ rooms: [room], sockets: [s.id] });
        await waitUntil(async () => (await env.be.roomMembers('/', room)).includes(s.id), 5000, 'joined');
        const r = await get(`/v1/rooms?prefix=${room.replaceAll(' ', '+')}`, `Bearer    ${KEY}`);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.ok(JSON.stringify(r.body).includes(JSON.stringify(room)), `the room with spaces is listed: ${JSON.stringify(r.body)}`);
    } finally {
        sioClose(s);
    }
});

test('raw Socket.IO: a second CONNECT is ignored; a bad attachment or text amid attachments closes the connection', async (t) => {
    const c = await RawClient.open(node.url);
    t.after(() => c.close());
    c.send('40');
    const first = await c.next((m) => typeof m === 'string' && m.startsWith('40'));
    const sid = JSON.parse(first.slice(2)).sid;
    assert.match(sid, /^[A-Za-z0-9_-]{20}$/);
    c.send('40');
    c.send('42["ping?"]');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(c.queue.filter((m) => typeof m === 'string' && m.startsWith('40')).length, 0, 'no second answer');
    assert.equal(c.closed, null);

    const bad = await RawClient.open(node.url);
    t.after(() => bad.close());
    bad.send('40');
    await bad.next((m) => typeof m === 'string' && m.startsWith('40'));
    bad.send('451-["e",{"_placeholder":true,"num":7}]'); // refers to attachment 7 of 1
    bad.ws.send(Buffer.from([1, 2, 3]));
    assert.ok(await bad.waitClose(), 'closed for the bad attachment');

    const mixed = await RawClient.open(node.url);
    t.after(() => mixed.close());
    mixed.send('40');
    await mixed.next((m) => typeof m === 'string' && m.startsWith('40'));
    mixed.send('451-["e",{"_placeholder":true,"num":0}]');
    mixed.send('42["text while waiting"]');
    assert.ok(await mixed.waitClose(), 'closed for a text packet amid attachments');
});

test('polling: a long-poll GET aborted by the client ends the Engine.IO session', async () => {
    const open = await request(`${node.url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(open.status, 200);
    const sid = JSON.parse(open.text.slice(1)).sid;
    const ctl = new AbortController();
    const parked = fetch(`${node.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`, { signal: ctl.signal })
        .catch((e) => e.name);
    await new Promise((r) => setTimeout(r, 200)); // parked on the server
    ctl.abort();
    assert.equal(await parked, 'AbortError');
    await waitUntil(async () => (await request(`${node.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`)).status === 400,
        5000, 'the session is gone');
});
