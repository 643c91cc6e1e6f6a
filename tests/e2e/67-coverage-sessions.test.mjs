// Session corners the other suites leave out (found by scripts/coverage.sh): the dashboard's /_admin namespace
// asked for unknown things, $publish over its room rate limit, reserved events and admin calls while Redis refuses
// writes or is gone. Every refusal must come back as an error ack the caller can read.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { emitWithAckArgs, sioClose, sioConnect } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { claims, sign } from './lib/jwt.mjs';
import { request } from './lib/http.mjs';
import { waitUntil } from './lib/util.mjs';

const KEY = 'coverage-sessions-key';
const SECRET = 'coverage-sessions-secret';

let env;
before(async () => {
    env = await setupFile({
        tag: 't67s2',
        // One $publish per room per minute: the second one is over the limit.
        args: ['--api-key', KEY, '--jwt-secret', SECRET, '--rate-room-publish', '1/1m:1'],
    });
});
after(() => env?.teardown());

const token = (sub) => sign(claims({ sub, rooms: ['chat:*'], publish: ['chat:*'] }), { secret: SECRET });

async function user(t, sub) {
    const s = await sioConnect(env.url, '/', { auth: { token: token(sub) } });
    t.after(() => sioClose(s));
    return s;
}

async function admin(t) {
    const a = await sioConnect(env.url, '/_admin', { auth: { key: KEY } });
    t.after(() => sioClose(a));
    return a;
}

const errorCode = (ackArgs) => ackArgs[0]?.error?.code;

test('/_admin: unknown calls, an unknown socket and an oversized query are refused with an error', async (t) => {
    const a = await admin(t);
    assert.equal(errorCode(await emitWithAckArgs(a, 'reboot', [{}])), 'invalid_argument');
    assert.equal(errorCode(await emitWithAckArgs(a, 'find', [{ q: 'q'.repeat(257) }])), 'invalid_argument');
    assert.equal(errorCode(await emitWithAckArgs(a, 'find', [{ q: '' }])), 'invalid_argument');
    assert.equal(errorCode(await emitWithAckArgs(a, 'disconnect_socket', [{ socket: 'no-such-socket' }])), 'not_found');
    assert.ok(a.connected);
});

test('$publish over the room rate limit is refused with retry_after_ms', async (t) => {
    const s = await user(t, 'pub-1');
    const published = (ackArgs) => ackArgs[0]?.ok === true && /^\d+-\d+$/.test(ackArgs[0].id);
    assert.ok(published(await emitWithAckArgs(s, '$publish', [{ room: 'chat:rl', event: 'said', args: [1] }])));
    const [ack] = await emitWithAckArgs(s, '$publish', [{ room: 'chat:rl', event: 'said', args: [2] }]);
    assert.equal(ack?.error?.code, 'rate_limited', JSON.stringify(ack));
    assert.ok(ack.error.retry_after_ms > 0 && ack.error.retry_after_ms <= 60000, JSON.stringify(ack));
    // Another room has its own budget.
    assert.ok(published(await emitWithAckArgs(s, '$publish', [{ room: 'chat:other', event: 'said', args: [3] }])));
});

test('reserved events while Redis refuses writes (OOM) are answered backend_unavailable', async (t) => {
    if (env.redisServer.external) {
        t.skip('needs a private redis-server it can reconfigure (SWITCHBOARD_TEST_REDIS_URL is set)');
        return;
    }
    const s = await user(t, 'oom-1');
    await env.redis.sendCommand(['CONFIG', 'SET', 'maxmemory-policy', 'noeviction']);
    await env.redis.sendCommand(['CONFIG', 'SET', 'maxmemory', '1']);
    try {
        assert.equal(errorCode(await emitWithAckArgs(s, '$join', [{ room: 'chat:1' }])), 'backend_unavailable');
        assert.equal(errorCode(await emitWithAckArgs(s, '$publish', [{ room: 'chat:2', event: 'e', args: [] }])),
            'backend_unavailable');
    } finally {
        await env.redis.sendCommand(['CONFIG', 'SET', 'maxmemory', '0']);
    }
    assert.deepEqual(await emitWithAckArgs(s, '$join', [{ room: 'chat:1' }]), [{ ok: true }]);
});

// Last: stops the file's Redis.
test('with Redis gone, reserved events and admin calls are answered backend_unavailable', async (t) => {
    if (env.redisServer.external) {
        t.skip('needs a private redis-server it can stop (SWITCHBOARD_TEST_REDIS_URL is set)');
        return;
    }
    const s = await user(t, 'gone-1');
    const a = await admin(t);
    await env.redisServer.stop();
    await waitUntil(async () => (await request(`${env.url}/readyz`)).status === 503, 5000, '/readyz to fail');
    assert.equal(errorCode(await emitWithAckArgs(s, '$join', [{ room: 'chat:1' }])), 'backend_unavailable');
    assert.equal(errorCode(await emitWithAckArgs(s, '$publish', [{ room: 'chat:9', event: 'e', args: [] }])),
        'backend_unavailable');
    assert.equal(errorCode(await emitWithAckArgs(a, 'find', [{ q: s.id }])), 'backend_unavailable');
    assert.equal(errorCode(await emitWithAckArgs(a, 'disconnect_socket', [{ socket: s.id }])), 'backend_unavailable');
    assert.ok(s.connected, 'the client stays connected');
});
