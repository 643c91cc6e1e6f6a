// Redis-side trouble: the Functions library lost or replaced, and a Redis
// restart. The node must repair what it can (reload its library, reconnect,
// resume the bus) and refuse what it cannot (another library version).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setupFile } from './lib/fixture.mjs';
import { request } from './lib/http.mjs';
import { nextEvent } from './lib/clients.mjs';
import { waitUntil } from './lib/util.mjs';

let env;
before(async () => {
    env = await setupFile({ tag: 't75', args: ['--heartbeat-interval', '200'] });
});
after(() => env?.teardown());

const ready = async () => (await request(`${env.url}/readyz`)).status;

test('a Functions library lost by Redis is loaded again', async () => {
    const version = await env.redis.sendCommand(['FCALL', 'sb_version', '0']);
    await env.redis.sendCommand(['FUNCTION', 'FLUSH']);
    await waitUntil(
        async () => (await env.redis.sendCommand(['FUNCTION', 'LIST'])).length === 1,
        5000,
        'the library to be loaded again',
    );
    assert.equal(await env.redis.sendCommand(['FCALL', 'sb_version', '0']), version);
    assert.equal(await ready(), 200);
});

test('another version of the library makes the node refuse new clients and say why', async () => {
    const version = await env.redis.sendCommand(['FCALL', 'sb_version', '0']);
    const other = "#!lua name=switchboard\nredis.register_function('sb_version', function() return 'other' end)";
    await env.redis.sendCommand(['FUNCTION', 'LOAD', 'REPLACE', other]);
    try {
        await waitUntil(async () => (await ready()) === 503, 5000, '/readyz to fail');
        const r = await request(`${env.url}/readyz`);
        assert.match(r.text, /functions library/);
        const hs = await request(`${env.url}/socket.io/?EIO=4&transport=polling`);
        assert.equal(hs.status, 503);
    } finally {
        // Put ours back: restarting the node reloads it; here we flush and let the node reload it.
        await env.redis.sendCommand(['FUNCTION', 'FLUSH']);
    }
    await waitUntil(async () => (await ready()) === 200, 5000, '/readyz to recover');
    assert.equal(await env.redis.sendCommand(['FCALL', 'sb_version', '0']), version);
});

test('after Redis drops every connection, the node reconnects and resumes reading the bus', async (t) => {
    const s = await env.client(t, '/', { transports: ['websocket'] });
    await env.be.readEvent((e) => e.type === 'connect' && e.socket === s.id, 5000);
    await env.redis.sendCommand(['CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes']);
    // An emit written while the node may still be reconnecting must not be lost.
    const got = nextEvent(s, 'after-restart', 8000);
    await env.be.emit({ event: 'after-restart', args: [42], sockets: [s.id] });
    assert.deepEqual(await got, [42]);
    await waitUntil(async () => (await ready()) === 200, 5000, '/readyz after reconnect');
});
