// Rate limits held in Redis (issue 4, part 3): events per socket and per user,
// connections per client address, REST calls per API key; two switchboard
// processes share one limit because the buckets live in Redis.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setupFile } from './lib/fixture.mjs';
import { emitWithAckArgs, sioClose, sioConnect } from './lib/clients.mjs';
import { request } from './lib/http.mjs';
import { waitForEvent } from './lib/util.mjs';

const KEY = 'rate-test-key-1';
let env;
before(async () => {
    env = await setupFile({
        tag: 't45',
        nodes: 2,
        args: [
            '--api-key', KEY,
            '--ack-timeout', '300',
            '--rate-socket-events', '5/10s',
            '--rate-user-events', 'off',
            '--rate-api', '4/10s',
            '--rate-abuse-limit', '6',
            '--rate-connections', '3/10s',
        ],
    });
});
after(() => env?.teardown());

const codeOf = (ack) => ack?.[0]?.error?.code;

test('events over the per-socket limit get rate_limited error acks and never reach the stream', async (t) => {
    const s = await env.client(t, '/', { transports: ['websocket'], url: env.nodes[0].url });
    const acks = await Promise.all([...Array(7).keys()].map((i) => emitWithAckArgs(s, 'spam', [i], 5000)));
    const limited = acks.filter((a) => codeOf(a) === 'rate_limited');
    assert.equal(limited.length, 2, JSON.stringify(acks));
    assert.ok(limited[0][0].error.retry_after_ms > 0 && limited[0][0].error.retry_after_ms <= 10000);
    // The allowed five were written (nobody answers them, so they end with the ack timeout).
    assert.equal(acks.filter((a) => codeOf(a) === 'timeout').length, 5);
    const entries = await env.redis.xRange(`${env.prefix}events`, '-', '+');
    assert.equal(entries.filter((e) => e.message.type === 'event' && e.message.socket === s.id).length, 5);
    // The bucket is in Redis, readable with redis-cli.
    assert.ok(await env.redis.exists(`${env.prefix}{rl:sock:${s.id}}`));
});

test('a socket that keeps sending over its limit is disconnected', async (t) => {
    const s = await env.client(t, '/', { transports: ['websocket'], url: env.nodes[0].url });
    const id = s.id; // the client forgets its id once disconnected
    const gone = waitForEvent(s, 'disconnect', 10000, 'the abuse disconnect');
    for (let i = 0; i < 20; i++) s.emit('flood', i);
    await gone;
    const entry = await env.be.readEvent((e) => e.type === 'disconnect' && e.socket === id, 5000);
    assert.equal(entry.reason, 'rate limited');
});

test('connections per client address are limited across both nodes', async (t) => {
    // Every node of this file shares one bucket per address: 3 connects in 10 s, whichever node takes them.
    // A source address of its own (the other tests connect from 127.0.0.1).
    const from = { transports: ['websocket'], localAddress: '127.0.0.3' };
    const ok = [];
    t.after(() => ok.forEach(sioClose));
    for (let i = 0; i < 3; i++) ok.push(await sioConnect(env.nodes[i % 2].url, '/', from));
    await assert.rejects(
        sioConnect(env.nodes[1].url, '/', from),
        (e) => e.message === 'Too many connections' && e.data?.code === 'rate_limited' && e.data.retry_after_ms > 0,
    );
});

test('REST calls per API key are limited across both nodes with 429 and Retry-After', async () => {
    const statuses = [];
    let retryAfter = null;
    for (let i = 0; i < 6; i++) {
        const r = await request(`${env.nodes[i % 2].url}/v1/stats`, { headers: { Authorization: `Bearer ${KEY}` } });
        statuses.push(r.status);
        if (r.status === 429) {
            retryAfter = r.headers['retry-after'];
            assert.equal(JSON.parse(r.text).error.code, 'rate_limited');
        }
    }
    assert.deepEqual(statuses, [200, 200, 200, 200, 429, 429]);
    assert.ok(Number(retryAfter) >= 1, `Retry-After: ${retryAfter}`);
});
