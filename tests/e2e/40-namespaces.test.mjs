// Namespaces: "/" plus the configured "/chat"; emits and rooms are scoped to
// their namespace; an unknown namespace is refused with "Invalid namespace".
// (STYLE.md reserves 40 for auth; auth tests join this number when JWT lands.)

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Manager } from 'socket.io-client';

import { entryOf, keys } from './lib/backend.mjs';
import { nextEvent, sioConnect } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { quietPeriod, record, uniq, waitFor, waitForEvent, waitUntil } from './lib/util.mjs';

let env;
before(async () => {
    env = await setupFile({ tag: 't40', namespaces: ['/chat'] });
});
after(() => env?.teardown());

// Sends `barrier` to each [socket, namespace] pair and waits for all of them.
async function barrier(pairs) {
    const name = uniq('barrier');
    const got = pairs.map(([s]) => nextEvent(s, name, 5000));
    for (const [s, nsp] of pairs) await env.be.emit({ namespace: nsp, event: name, args: [], sockets: [s.id] });
    await waitFor(Promise.all(got), 5000, 'barriers');
    await quietPeriod(150); // reordering margin, see 30-rooms
}

// One connection (one Manager) with a socket in "/" and one in "/chat".
async function multiplexed(t) {
    const manager = new Manager(env.url, { transports: ['websocket'], reconnection: false });
    t.after(() => manager.engine?.close());
    const main = manager.socket('/');
    const chat = manager.socket('/chat');
    await waitFor(
        Promise.all([waitForEvent(main, 'connect', 5000), waitForEvent(chat, 'connect', 5000)]),
        5000,
        'both namespaces to connect',
    );
    return { main, chat };
}

test('a namespace-wide emit to /chat reaches /chat clients only', async (t) => {
    const chat = await env.client(t, '/chat');
    const main = await env.client(t, '/');
    const ev = uniq('news');
    const chatSeen = record(chat, ev);
    const mainSeen = record(main, ev);
    await env.be.emit({ namespace: '/chat', event: ev, args: ['for chat'] });
    await barrier([[chat, '/chat'], [main, '/']]);
    assert.deepEqual(chatSeen, [['for chat']]);
    assert.deepEqual(mainSeen, []);

    await env.be.emit({ namespace: '/', event: ev, args: ['for main'] });
    await barrier([[chat, '/chat'], [main, '/']]);
    assert.deepEqual(mainSeen, [['for main']]);
    assert.deepEqual(chatSeen, [['for chat']]);
});

// On one connection that multiplexes both namespaces, an emit to /chat's
// socket id in "/" would show up on the "/" socket if it reached the connection.
test('a socket id reaches its socket in its own namespace only', async (t) => {
    const { main, chat } = await multiplexed(t);
    const ev = uniq('byid');
    const chatSeen = record(chat, ev);
    const mainSeen = record(main, ev);
    await env.be.emit({ namespace: '/', event: ev, args: ['wrong namespace'], sockets: [chat.id] });
    await env.be.emit({ namespace: '/', event: ev, args: ['wrong namespace'], rooms: [chat.id] });
    await env.be.emit({ namespace: '/chat', event: ev, args: ['by id'], sockets: [chat.id] });
    await env.be.emit({ namespace: '/chat', event: ev, args: ['by room'], rooms: [chat.id] });
    await barrier([[chat, '/chat'], [main, '/']]);
    assert.deepEqual(chatSeen, [['by id'], ['by room']]);
    assert.deepEqual(mainSeen, []);
});

test('stream entries carry the namespace', async (t) => {
    const chat = await env.client(t, '/chat');
    const connect = await env.be.readEvent(entryOf('connect', chat.id), 5000);
    assert.equal(connect.namespace, '/chat');
    chat.emit('said', 'hi');
    const ev = await env.be.readEvent(entryOf('event', chat.id, 'said'), 5000);
    assert.equal(ev.namespace, '/chat');
    assert.deepEqual(JSON.parse(ev.args), ['hi']);
});

test('one connection multiplexes "/" and "/chat"; rooms are per namespace', async (t) => {
    const { main, chat } = await multiplexed(t);
    assert.notEqual(main.id, chat.id, 'one socket id per namespace');

    const room = uniq('shared-name');
    await env.be.join({ namespace: '/chat', rooms: [room], sockets: [chat.id] });
    await waitUntil(() => env.redis.sIsMember(keys.room(env.prefix, '/chat', room), chat.id), 5000, '/chat room membership');
    assert.equal(await env.redis.exists(keys.room(env.prefix, '/', room)), 0, 'no room of that name in "/"');

    const ev = uniq('roomcast');
    const mainSeen = record(main, ev);
    const chatSeen = record(chat, ev);
    // a room of the same name in "/" is another room: nobody is in it
    await env.be.emit({ namespace: '/', event: ev, args: ['main'], rooms: [room] });
    await env.be.emit({ namespace: '/chat', event: ev, args: ['chat'], rooms: [room] });
    await barrier([[main, '/'], [chat, '/chat']]);
    assert.deepEqual(chatSeen, [['chat']]);
    assert.deepEqual(mainSeen, []);
});

test('an unknown namespace gets connect_error "Invalid namespace"', async () => {
    await assert.rejects(sioConnect(env.url, '/nope'), (err) => {
        assert.equal(err.message, 'Invalid namespace');
        return true;
    });
});

test('a refused namespace does not harm the other namespaces of the connection', async (t) => {
    const manager = new Manager(env.url, { transports: ['websocket'], reconnection: false });
    t.after(() => manager.engine?.close());
    const main = manager.socket('/');
    await waitForEvent(main, 'connect', 5000);
    const bad = manager.socket('/nope');
    const [err] = await waitForEvent(bad, 'connect_error', 5000);
    assert.equal(err.message, 'Invalid namespace');
    const hello = nextEvent(main, 'hello', 5000);
    await env.be.emit({ event: 'hello', args: [1], sockets: [main.id] });
    assert.deepEqual(await hello, [1]);
});
