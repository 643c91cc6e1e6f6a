// Handshake and transports: WebSocket, long-polling, the upgrade between them,
// Engine.IO's HTTP error answers, CORS, and a client riding out a restart.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';

import { entryOf } from './lib/backend.mjs';
import { sioClose, sioConnect } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { request, splitPayload } from './lib/http.mjs';
import { waitFor, waitForEvent } from './lib/util.mjs';

const PING_INTERVAL = 2000;
const PING_TIMEOUT = 1500;
const MAX_PAYLOAD = 50000;
const ORIGIN = 'http://a.example';

let env;
before(async () => {
    env = await setupFile({
        tag: 't10',
        args: [
            '--ping-interval', String(PING_INTERVAL),
            '--ping-timeout', String(PING_TIMEOUT),
            '--max-payload', String(MAX_PAYLOAD),
            '--cors-origin', ORIGIN,
        ],
    });
});
after(() => env?.teardown());

const eio = (query) => `${env.url}/socket.io/?${query}`;

// Opens a polling session by hand and returns its Engine.IO sid.
async function pollingHandshake() {
    const res = await request(eio('EIO=4&transport=polling'));
    assert.equal(res.status, 200, res.text);
    assert.ok(res.text.startsWith('0'), `open packet expected, got ${JSON.stringify(res.text)}`);
    return JSON.parse(res.text.slice(1));
}

// Proves a connected socket is usable end to end: a backend emit reaches it.
async function assertRoundTrip(socket) {
    const got = new Promise((resolve) => socket.once('hello', (...args) => resolve(args)));
    await env.be.emit({ event: 'hello', args: ['there', 1], sockets: [socket.id] });
    assert.deepEqual(await waitFor(got, 5000, 'hello from the backend'), ['there', 1]);
}

test('connects over WebSocket only', async (t) => {
    const s = await env.client(t, '/', { transports: ['websocket'] });
    assert.equal(s.io.engine.transport.name, 'websocket');
    assert.ok(s.id, 'socket id set');
    const entry = await env.be.readEvent(entryOf('connect', s.id), 5000);
    assert.equal(entry.namespace, '/');
    await assertRoundTrip(s);
});

test('connects over long-polling only', async (t) => {
    const s = await env.client(t, '/', { transports: ['polling'], upgrade: false });
    assert.equal(s.io.engine.transport.name, 'polling');
    await env.be.readEvent(entryOf('connect', s.id), 5000);
    await assertRoundTrip(s);
    // and client -> backend over polling
    s.emit('up', 'via-polling');
    const entry = await env.be.readEvent(entryOf('event', s.id, 'up'), 5000);
    assert.deepEqual(JSON.parse(entry.args), ['via-polling']);
});

test('upgrades from long-polling to WebSocket', async (t) => {
    const s = await sioConnect(env.url, '/', { transports: ['polling', 'websocket'] });
    t.after(() => sioClose(s));
    if (s.io.engine.transport.name !== 'websocket') {
        await waitForEvent(s.io.engine, 'upgrade', 5000, 'the Engine.IO upgrade');
    }
    assert.equal(s.io.engine.transport.name, 'websocket');
    await assertRoundTrip(s);
    s.emit('after-upgrade', 1);
    await env.be.readEvent(entryOf('event', s.id, 'after-upgrade'), 5000);
});

test('polling handshake answers the OPEN packet with the configured settings', async () => {
    const res = await request(eio('EIO=4&transport=polling'));
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain/);
    assert.ok(res.text.startsWith('0'), res.text);
    const open = JSON.parse(res.text.slice(1));
    assert.deepEqual(Object.keys(open).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
    assert.equal(typeof open.sid, 'string');
    assert.ok(open.sid.length > 0);
    assert.deepEqual(open.upgrades, ['websocket']);
    assert.equal(open.pingInterval, PING_INTERVAL);
    assert.equal(open.pingTimeout, PING_TIMEOUT);
    assert.equal(open.maxPayload, MAX_PAYLOAD);
});

test('a Socket.IO session driven by hand over polling', async () => {
    const { sid } = await pollingHandshake();
    const post = await request(eio(`EIO=4&transport=polling&sid=${sid}`), { method: 'POST', body: '40' });
    assert.equal(post.status, 200);
    assert.equal(post.text, 'ok');
    const poll = await request(eio(`EIO=4&transport=polling&sid=${sid}`));
    assert.equal(poll.status, 200);
    const packets = splitPayload(poll.text);
    assert.ok(packets[0].startsWith('40{'), `CONNECT answer expected, got ${JSON.stringify(poll.text)}`);
    const sioSid = JSON.parse(packets[0].slice(2)).sid;
    assert.equal(typeof sioSid, 'string');
    await env.be.readEvent(entryOf('connect', sioSid), 5000);
    // close the session: the server then forgets the sid
    const bye = await request(eio(`EIO=4&transport=polling&sid=${sid}`), { method: 'POST', body: '1' });
    assert.equal(bye.status, 200);
    await env.be.readEvent(entryOf('disconnect', sioSid), 5000);
});

test('a client close over polling answers the pending GET with a noop', async () => {
    const { sid } = await pollingHandshake();
    const url = eio(`EIO=4&transport=polling&sid=${sid}`);
    // Engine.IO (and the protocol suite) answer the pending GET with "6" when
    // the client closes through a POST of "1".
    const [poll, post] = await waitFor(
        Promise.all([request(url), request(url, { method: 'POST', body: '1' })]),
        PING_INTERVAL + 2000,
        'the pending GET and the closing POST',
    );
    assert.equal(post.status, 200);
    assert.equal(poll.status, 200);
    assert.equal(poll.text, '6');
    await assertEioError(await request(url), 1);
});

async function assertEioError(res, code) {
    assert.equal(res.status, 400, `status for ${JSON.stringify(res.text)}`);
    const body = res.json();
    assert.equal(body.code, code, `error body ${res.text}`);
    assert.equal(typeof body.message, 'string');
    assert.ok(body.message.length > 0);
}

test('Engine.IO errors: unsupported protocol version is code 5', async () => {
    await assertEioError(await request(eio('EIO=3&transport=polling')), 5);
    // missing or garbage EIO is refused too
    assert.equal((await request(eio('transport=polling'))).status, 400);
    assert.equal((await request(eio('EIO=abc&transport=polling'))).status, 400);
});

test('Engine.IO errors: unknown transport is code 0', async () => {
    await assertEioError(await request(eio('EIO=4&transport=abc')), 0);
    await assertEioError(await request(eio('EIO=4')), 0);
});

test('Engine.IO errors: unknown session id is code 1', async () => {
    await assertEioError(await request(eio('EIO=4&transport=polling&sid=nosuchsession')), 1);
    const post = await request(eio('EIO=4&transport=polling&sid=nosuchsession'), { method: 'POST', body: '40' });
    await assertEioError(post, 1);
});

test('Engine.IO errors: a handshake other than GET is code 2', async () => {
    await assertEioError(await request(eio('EIO=4&transport=polling'), { method: 'PUT', body: '' }), 2);
    await assertEioError(await request(eio('EIO=4&transport=polling'), { method: 'POST', body: '40' }), 2);
});

test('a second concurrent GET on one polling session is refused and ends the session', async () => {
    const { sid } = await pollingHandshake();
    const url = eio(`EIO=4&transport=polling&sid=${sid}`);
    // Nothing is queued for this session, so whichever GET arrives first stays
    // pending (until the next ping at the earliest); the other one overlaps it.
    const [a, b] = await waitFor(
        Promise.allSettled([request(url, { timeoutMs: 8000 }), request(url, { timeoutMs: 8000 })]),
        PING_INTERVAL + 3000,
        'both overlapping GETs to be answered',
    );
    const statuses = [a, b].map((r) => (r.status === 'fulfilled' ? r.value.status : r.reason.message));
    assert.ok(statuses.includes(400), `one GET must be refused with 400, got ${JSON.stringify(statuses)}`);
    // the session is gone afterwards
    await assertEioError(await request(url), 1);
});

test('CORS: the configured origin is allowed with credentials', async () => {
    const res = await request(eio('EIO=4&transport=polling'), { headers: { origin: ORIGIN } });
    assert.equal(res.status, 200);
    assert.equal(res.headers['access-control-allow-origin'], ORIGIN);
    assert.equal(res.headers['access-control-allow-credentials'], 'true');

    const pre = await request(eio('EIO=4&transport=polling'), {
        method: 'OPTIONS',
        headers: { origin: ORIGIN, 'access-control-request-method': 'POST' },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], ORIGIN);
    assert.equal(pre.headers['access-control-allow-credentials'], 'true');
});

test('CORS: another origin is refused (403, Engine.IO code 4), over polling and WebSocket', async () => {
    const res = await request(eio('EIO=4&transport=polling'), { headers: { origin: 'http://evil.example' } });
    assert.equal(res.status, 403);
    assert.equal(JSON.parse(res.text).code, 4);
    assert.equal(res.headers['access-control-allow-origin'], undefined);
    // A WebSocket is not subject to CORS in the browser: the server itself must refuse the page's origin.
    const ws = new WebSocket(`${env.url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`,
        { headers: { origin: 'http://evil.example' } });
    const status = await new Promise((resolve) => {
        ws.on('unexpected-response', (_req, r) => resolve(r.statusCode));
        ws.on('open', () => resolve('opened'));
        ws.on('error', () => {});
    });
    ws.terminate();
    assert.equal(status, 403);
    // Without an Origin header (not a browser) nothing changes, and a page of this node's own origin (the
    // dashboard) is always allowed.
    assert.equal((await request(eio('EIO=4&transport=polling'))).status, 200);
    const same = await request(eio('EIO=4&transport=polling'), { headers: { origin: env.url } });
    assert.equal(same.status, 200);
});

test('a client reconnects on its own after switchboard restarts on the same port', async (t) => {
    // Its own node, so the other tests' node is never restarted.
    let node = await env.startNode();
    const port = node.port;
    const s = await sioConnect(node.url, '/', {
        reconnection: true,
        reconnectionDelay: 100,
        reconnectionDelayMax: 300,
        randomizationFactor: 0,
    });
    t.after(() => sioClose(s));
    const firstId = s.id;
    await env.be.readEvent(entryOf('connect', firstId), 5000);

    const disconnected = waitForEvent(s, 'disconnect', 10000, 'disconnect on server stop');
    await node.stop();
    const [reason] = await disconnected;
    assert.notEqual(reason, 'io client disconnect');

    const reconnected = waitForEvent(s, 'connect', 15000, 'reconnect after the restart');
    node = await env.startNode({ port });
    await reconnected;
    assert.ok(s.connected);
    // No assertion on s.id: with connection state recovery (later) the id may survive.
    await assertRoundTrip(s);
});
