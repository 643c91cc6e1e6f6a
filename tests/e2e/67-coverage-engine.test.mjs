// Engine.IO edge cases the other suites leave out (found by scripts/coverage.sh): requests naming a session that
// do not fit its transport, malformed polling payloads, and the upgrade probe's corners (queued packets moved onto
// the WebSocket, a probe that never completes, a probe for a session already upgraded, a probe that says something
// else).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { RawClient } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { request, splitPayload } from './lib/http.mjs';
import { waitFor } from './lib/util.mjs';

const PING_INTERVAL = 1000;
const PING_TIMEOUT = 1000;
const UPGRADE_TIMEOUT = 300;
const ORIGIN = 'http://c.example';

let env;
before(async () => {
    env = await setupFile({
        tag: 't67e',
        args: [
            '--ping-interval', String(PING_INTERVAL),
            '--ping-timeout', String(PING_TIMEOUT),
            '--upgrade-timeout', `${UPGRADE_TIMEOUT}ms`,
            '--cors-origin', ORIGIN,
        ],
    });
});
after(() => env?.teardown());

const eio = (query) => `${env.url}/socket.io/?${query}`;
const pollUrl = (sid) => eio(`EIO=4&transport=polling&sid=${sid}`);

async function pollingHandshake() {
    const res = await request(eio('EIO=4&transport=polling'));
    assert.equal(res.status, 200, res.text);
    return JSON.parse(res.text.slice(1)).sid;
}

function assertEioError(res, code) {
    assert.equal(res.status, 400, res.text);
    assert.equal(JSON.parse(res.text).code, code, res.text);
}

// A polling session is gone once a GET for it is answered with "unknown sid" (code 1). A closing session may first
// answer one GET with its last packets (a close "1" or a noop "6"); a live one answers with a ping "2".
async function assertGone(sid) {
    for (let i = 0; i < 3; i++) {
        const res = await request(pollUrl(sid), { timeoutMs: PING_INTERVAL + 2000 });
        if (res.status === 400) return assertEioError(res, 1);
        assert.equal(res.status, 200);
        assert.ok(!splitPayload(res.text).includes('2'), `session ${sid} still alive: ${JSON.stringify(res.text)}`);
    }
    assert.fail(`session ${sid} still known after 3 GETs`);
}

// A live polling session answers a GET with a ping at the latest after the ping interval.
async function assertAlive(sid) {
    const res = await request(pollUrl(sid), { timeoutMs: PING_INTERVAL + 2000 });
    assert.equal(res.status, 200, res.text);
    assert.ok(splitPayload(res.text).includes('2'), `a ping expected, got ${JSON.stringify(res.text)}`);
    const pong = await request(pollUrl(sid), { method: 'POST', body: '3' });
    assert.equal(pong.status, 200);
}

// A WebSocket upgrade probe for polling session `sid`; no OPEN packet comes on a probe.
async function probe(sid) {
    const c = new RawClient(eio(`EIO=4&transport=websocket&sid=${sid}`).replace(/^http/, 'ws'), false);
    await waitFor(
        new Promise((resolve, reject) => {
            c.ws.once('open', resolve);
            c.ws.once('error', reject);
        }),
        5000,
        'probe WebSocket open',
    );
    return c;
}

test('requests naming a session that are neither a WebSocket handshake, a GET nor a POST with a body are code 3',
    async () => {
        const sid = await pollingHandshake();
        // transport=websocket without the Upgrade headers
        assertEioError(await request(eio(`EIO=4&transport=websocket&sid=${sid}`)), 3);
        assertEioError(await request(pollUrl(sid), { method: 'POST', body: '' }), 3);
        assertEioError(await request(pollUrl(sid), { method: 'PUT', body: '4x' }), 3);
        // none of these hurt the session
        await assertAlive(sid);
    });

test('polling requests for a WebSocket session are code 3 and leave the WebSocket open', async (t) => {
    const c = await RawClient.open(env.url);
    t.after(() => c.close());
    const { sid } = c.handshake;
    assertEioError(await request(pollUrl(sid)), 3);
    assertEioError(await request(pollUrl(sid), { method: 'POST', body: '40' }), 3);
    const answer = await c.connect('/');
    assert.ok(answer.startsWith('40{'), answer);
    assert.equal(c.closed, null);
});

test('a malformed polling payload is code 3 and ends the session', async () => {
    const sid = await pollingHandshake();
    assertEioError(await request(pollUrl(sid), { method: 'POST', body: '9nonsense' }), 3);
    await assertGone(sid);
});

test('packets queued for polling move onto the WebSocket when the upgrade completes', async (t) => {
    const sid = await pollingHandshake();
    // The CONNECT answer is queued for polling; no GET collects it before the upgrade.
    assert.equal((await request(pollUrl(sid), { method: 'POST', body: '40' })).status, 200);
    const c = await probe(sid);
    t.after(() => c.close());
    await c.send('2probe');
    assert.equal(await c.next(), '3probe');
    await c.send('5');
    const connect = await c.next((m) => m.startsWith('40'));
    assert.ok(JSON.parse(connect.slice(2)).sid, connect);
    // Upgraded: polling requests for the session are refused now, the WebSocket carries it.
    assertEioError(await request(pollUrl(sid)), 3);
    await c.send('42["after-upgrade"]');
    assert.equal(c.closed, null);

    // A second probe for the upgraded session is completed and closed at once; the session keeps its WebSocket.
    const again = await probe(sid);
    t.after(() => again.close());
    assert.equal((await again.waitClose()).code, 1000);
    await c.waitPings(1, PING_INTERVAL + 2000);
    assert.equal(c.closed, null);
});

test('an upgrade probe that is never completed is closed after --upgrade-timeout; polling goes on', async (t) => {
    const sid = await pollingHandshake();
    const c = await probe(sid);
    t.after(() => c.close());
    const started = Date.now();
    await c.send('2probe');
    assert.equal(await c.next(), '3probe');
    // While the probe is pending, a GET is answered at once with a noop so that the client can pause polling.
    const noop = await request(pollUrl(sid), { timeoutMs: 2000 });
    assert.equal(noop.text, '6');
    const closed = await c.waitClose(UPGRADE_TIMEOUT + 3000);
    assert.equal(closed.code, 1000);
    assert.ok(Date.now() - started >= UPGRADE_TIMEOUT - 50, `closed after ${Date.now() - started} ms`);
    // Still a polling session: CONNECT and read the answer over polling.
    assert.equal((await request(pollUrl(sid), { method: 'POST', body: '40' })).status, 200);
    const res = await request(pollUrl(sid), { timeoutMs: 2000 });
    assert.ok(splitPayload(res.text).some((p) => p.startsWith('40{')), res.text);
});

test('an upgrade probe that sends something other than "2probe" is closed with 1002; polling goes on', async (t) => {
    const sid = await pollingHandshake();
    const c = await probe(sid);
    t.after(() => c.close());
    await c.send('4hello');
    assert.equal((await c.waitClose()).code, 1002);
    await assertAlive(sid);
});

test('CORS preflight echoes the requested headers', async () => {
    const pre = await request(eio('EIO=4&transport=polling'), {
        method: 'OPTIONS',
        headers: {
            origin: ORIGIN,
            'access-control-request-method': 'POST',
            'access-control-request-headers': 'x-a, x-b',
        },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-headers'], 'x-a, x-b');
    assert.equal(pre.headers['access-control-allow-methods'], 'GET, POST, OPTIONS');
});

test('an Engine.IO packet a v4 client never sends on an open transport (OPEN, UPGRADE) closes the connection',
    async (t) => {
        for (const packet of ['0', '5']) {
            const c = await RawClient.open(env.url);
            t.after(() => c.close());
            await c.send(packet);
            const closed = await c.waitClose();
            assert.equal(closed.code, 1000, `closed after "${packet}"`);
        }
        // over polling too: the POST is taken, the session ends
        const sid = await pollingHandshake();
        assert.equal((await request(pollUrl(sid), { method: 'POST', body: '0' })).status, 200);
        await assertGone(sid);
    });
