// Bad input from clients: every malformed packet closes that one connection
// (and its socket's disconnect reaches the stream) while a well-behaved client
// on the same server keeps receiving; payloads over --max-payload close the
// connection / get 413; a client that stops answering pings is dropped.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { entryOf } from './lib/backend.mjs';
import { nextEvent, sioClose, sioConnect } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { request } from './lib/http.mjs';
import { uniq } from './lib/util.mjs';

const PING_INTERVAL = 300;
const PING_TIMEOUT = 200;
const MAX_PAYLOAD = 10000;

let env;
let good; // a socket.io-client that behaves, connected for the whole file
before(async () => {
    env = await setupFile({
        tag: 't80',
        namespaces: ['/chat'],
        args: [
            '--ping-interval', String(PING_INTERVAL),
            '--ping-timeout', String(PING_TIMEOUT),
            '--max-payload', String(MAX_PAYLOAD),
        ],
    });
    good = await sioConnect(env.url);
});
after(async () => {
    sioClose(good);
    await env?.teardown();
});

// The well-behaved client still gets a namespace-wide broadcast.
async function goodClientStillServed() {
    assert.ok(good.connected, 'the well-behaved client is still connected');
    const ev = uniq('still');
    const got = nextEvent(good, ev, 5000);
    await env.be.emit({ event: ev, args: ['ok'] });
    assert.deepEqual(await got, ['ok']);
}

// A raw client connected to "/" (socket id returned with it).
async function rawConnected(t, opts) {
    const raw = await env.raw(t, opts);
    const sid = await raw.connectSid('/');
    await env.be.readEvent(entryOf('connect', sid), 5000);
    return { raw, sid };
}

// Every `type=event` entry of socket `sid` in the events stream so far.
async function eventEntriesOf(sid) {
    const all = await env.redis.sendCommand(['XRANGE', `${env.prefix}events`, '-', '+']);
    const entries = all.map(([id, flat]) => {
        const e = { id };
        for (let i = 0; i + 1 < flat.length; i += 2) e[flat[i]] = flat[i + 1];
        return e;
    });
    return entries.filter((e) => e.socket === sid && e.type === 'event');
}

const RESERVED = ['connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener'];

// [label, frames to send after CONNECT to "/"]
const MALFORMED = [
    ['unknown Socket.IO packet type', ['47']],
    ['unknown Engine.IO packet type', ['9']],
    ['CONNECT with garbage after the namespace', ['40/a,b,']],
    ['EVENT with a non-integer ack id', ['42/chat,x["e"]']],
    ['EVENT with a non-integer ack id in "/"', ['42abc["message",1]']],
    ['CONNECT data not an object', ['40[1]']],
    ['EVENT payload an object', ['42{}']],
    ['EVENT payload an empty array', ['42[]']],
    ['EVENT name not a string', ['42[1]']],
    ...RESERVED.map((name) => [`EVENT with the reserved name "${name}"`, [`42${JSON.stringify([name])}`]]),
    ['more attachments than allowed (max 10)', ['4511-["a",{"_placeholder":true,"num":0}]']],
    ['attachment count not a number', ['45x-["a",{"_placeholder":true,"num":0}]']],
    // closes at the header or, at the latest, when the attachment arrives
    ['placeholder index out of range', ['451-["a",{"_placeholder":true,"num":3}]', Buffer.from([1])]],
    ['binary frame with no binary packet pending', [Buffer.from([1, 2, 3])]],
    ['CONNECT_ERROR sent by a client', ['44{"message":"x"}']],
    ['invalid JSON', ['42["a"']],
];

for (const [label, frames] of MALFORMED) {
    test(`malformed: ${label} closes only that connection`, async (t) => {
        const { raw, sid } = await rawConnected(t);
        for (const f of frames) await raw.send(f);
        await raw.waitClose(5000);
        await env.be.readEvent(entryOf('disconnect', sid), 5000);
        // nothing of the bad packet reached the backends as an event
        const events = await eventEntriesOf(sid);
        assert.deepEqual(events, [], 'no event entry from the malformed connection');
        await goodClientStillServed();
    });
}

test('a well-formed raw client works (control for the cases above)', async (t) => {
    const { raw, sid } = await rawConnected(t);
    await raw.send('42["fine",1]');
    const entry = await env.be.readEvent(entryOf('event', sid, 'fine'), 5000);
    assert.deepEqual(JSON.parse(entry.args), [1]);
    await raw.send('421["fine-ack"]');
    const withAck = await env.be.readEvent(entryOf('event', sid, 'fine-ack'), 5000);
    assert.match(withAck.ack_id, /^\d+$/);
    await env.be.ack({ socket: sid, ack_id: Number(withAck.ack_id), args: ['y'] });
    // the client gets its own ack id (1) back
    assert.equal(await raw.next((m) => typeof m === 'string' && m.startsWith('43'), 5000), '431["y"]');
    assert.equal(raw.closed, null);
});

test('a handshake into an unknown namespace is refused without closing the connection', async (t) => {
    const raw = await env.raw(t);
    assert.equal(await raw.connect('/random'), '44/random,{"message":"Invalid namespace"}');
    const sid = await raw.connectSid('/');
    assert.equal(typeof sid, 'string');
});

test('a WebSocket message over --max-payload closes the connection', async (t) => {
    const { raw, sid } = await rawConnected(t);
    // just under the limit is fine
    const fits = `42["fits","${'y'.repeat(MAX_PAYLOAD - 100)}"]`;
    await raw.send(fits);
    await env.be.readEvent(entryOf('event', sid, 'fits'), 5000);
    // over it is not
    await raw.send(`42["big","${'x'.repeat(MAX_PAYLOAD * 2)}"]`);
    await raw.waitClose(5000);
    await env.be.readEvent(entryOf('disconnect', sid), 5000);
    await goodClientStillServed();
});

test('a polling POST over --max-payload gets HTTP 413', async () => {
    const open = await request(`${env.url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(open.status, 200);
    const { sid } = JSON.parse(open.text.slice(1));
    const body = `42["big","${'x'.repeat(MAX_PAYLOAD * 2)}"]`;
    const res = await request(`${env.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'text/plain;charset=UTF-8' },
    });
    assert.equal(res.status, 413);
    await goodClientStillServed();
});

test('a client that stops answering pings is dropped with reason "ping timeout"', async (t) => {
    const { raw, sid } = await rawConnected(t, { autoPong: false });
    const started = Date.now();
    await raw.waitClose(PING_INTERVAL + PING_TIMEOUT + 3000);
    assert.ok(raw.pings >= 1, 'the server pinged before giving up');
    assert.ok(Date.now() - started >= PING_TIMEOUT, 'not dropped before a ping could be answered');
    const entry = await env.be.readEvent(entryOf('disconnect', sid), 5000);
    assert.equal(entry.reason, 'ping timeout');
    await goodClientStillServed();
});

test('a client that answers pings stays connected past several intervals', async (t) => {
    const { raw } = await rawConnected(t);
    // Wait for pings, not for time: three answered pings prove the heartbeat works.
    await raw.waitPings(3, 3 * PING_INTERVAL + 3000);
    assert.equal(raw.closed, null);
});

test('a connection that opens no namespace within --connect-timeout is closed', async (t) => {
    const node = await env.startNode({ args: ['--connect-timeout', '400'] });
    const raw = await env.raw(t, { url: node.url });
    const started = Date.now();
    const closed = await raw.waitClose(5000);
    assert.ok(closed, 'closed by the server');
    assert.ok(Date.now() - started >= 300, `not closed before the timeout (${Date.now() - started} ms)`);
    // A connection that does open a namespace in time stays.
    const ok = await env.raw(t, { url: node.url });
    ok.send('40');
    assert.match(await ok.next((m) => typeof m === 'string' && m.startsWith('40'), 5000), /^40\{"sid":"/);
    await new Promise((r) => setTimeout(r, 600)); // past the timeout: proving the absence of a close
    assert.equal(ok.closed, null);
});
