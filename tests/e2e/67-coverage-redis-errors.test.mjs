// Redis answering with errors instead of going away (found by scripts/coverage.sh): over maxmemory with
// noeviction, every write is refused with "OOM ...". Clients and REST callers must be told (connect refused, error
// acks, 503 with Redis's message), nothing crashes, and everything works again once Redis accepts writes.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { entryOf } from './lib/backend.mjs';
import { emitWithAckArgs, sioClose, sioConnect } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { request } from './lib/http.mjs';

const KEY = 'coverage-redis-errors-key';

let env;
before(async () => {
    // No API rate limit on the first node, so that REST writes reach Redis; the second node has one.
    env = await setupFile({ tag: 't67r', args: ['--api-key', KEY, '--rate-api', 'off'] });
    await env.startNode({ args: ['--rate-api', '1000/1s'] });
});
after(async () => {
    if (env && !env.redisServer.external) await env.redis.sendCommand(['CONFIG', 'SET', 'maxmemory', '0']);
    await env?.teardown();
});

async function api(method, p, body, url = env.url) {
    const res = await request(`${url}${p}`, {
        method,
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: JSON.parse(res.text) };
}

test('writes refused by Redis (OOM) are reported to clients and REST callers; all recovers', async (t) => {
    if (env.redisServer.external) {
        t.skip('needs a private redis-server it can reconfigure (SWITCHBOARD_TEST_REDIS_URL is set)');
        return;
    }
    const s = await env.client(t, '/');
    // Sanity: before, a REST emit is accepted.
    assert.equal((await api('POST', '/v1/emit', { event: 'e', sockets: ['nobody'] })).status, 202);

    await env.redis.sendCommand(['CONFIG', 'SET', 'maxmemory-policy', 'noeviction']);
    await env.redis.sendCommand(['CONFIG', 'SET', 'maxmemory', '1']);
    try {
        // A new client cannot be registered: its CONNECT is refused.
        await assert.rejects(sioConnect(env.url), (e) => {
            assert.equal(e.message, 'Service unavailable');
            return true;
        });

        // A client event cannot be queued: the ack says so.
        const [ack] = await emitWithAckArgs(s, 'note', ['hello']);
        assert.equal(ack?.error?.code, 'backend_unavailable', JSON.stringify(ack));

        // REST writes answer 503 with Redis's reason.
        const emit = await api('POST', '/v1/emit', { event: 'e', sockets: [s.id] });
        assert.equal(emit.status, 503, JSON.stringify(emit.body));
        assert.equal(emit.body.error.code, 'unavailable');
        assert.match(emit.body.error.message, /^OOM /);

        const batch = await api('POST', '/v1/batch', [
            { op: 'emit', event: 'e', sockets: [s.id] },
            { op: 'join', rooms: ['r'], sockets: [s.id] },
            { op: 'emit', event: '' },
        ]);
        assert.equal(batch.status, 200, JSON.stringify(batch.body));
        const [a, b, c] = batch.body.results;
        assert.equal(a.status, 503);
        assert.match(a.error.message, /^OOM /);
        assert.equal(b.status, 503);
        assert.equal(c.status, 400, 'an invalid operation is still reported as such');

        const direct = await api('POST', `/v1/sockets/${s.id}/emit`, { event: 'ask', ack_timeout_ms: 2000 });
        assert.equal(direct.status, 503, JSON.stringify(direct.body));
        assert.match(direct.body.error.message, /^OOM /);

        // With --rate-api, the rate check is the first write refused.
        const limited = await api('POST', '/v1/emit', { event: 'e', sockets: [s.id] }, env.nodes[1].url);
        assert.equal(limited.status, 503, JSON.stringify(limited.body));
        assert.equal(limited.body.error.code, 'unavailable');
    } finally {
        await env.redis.sendCommand(['CONFIG', 'SET', 'maxmemory', '0']);
    }

    // Writes accepted again: the same operations succeed.
    s.emit('note', 'again');
    const entry = await env.be.readEvent(entryOf('event', s.id, 'note'), 5000);
    assert.deepEqual(JSON.parse(entry.args), ['again']);
    assert.equal((await api('POST', '/v1/emit', { event: 'e', sockets: [s.id] })).status, 202);
    const s2 = await sioConnect(env.url);
    sioClose(s2);
});
