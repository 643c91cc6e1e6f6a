// Operations (issue 5 parts 1 and 4, CONTRACT §7): SIGTERM drains a node
// (readiness fails at once, new clients are refused, open ones are closed over
// the drain timeout and reconnect to another node, exit 0); a node killed
// with SIGKILL is reaped by the others within three heartbeats; /readyz can
// follow the event-loop lag.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setupFile } from './lib/fixture.mjs';
import { sioClose, sioConnect } from './lib/clients.mjs';
import { request } from './lib/http.mjs';
import { waitForEvent, waitUntil } from './lib/util.mjs';

const HEARTBEAT = 200;
let env;
before(async () => {
    env = await setupFile({ tag: 't77', args: ['--heartbeat-interval', String(HEARTBEAT)] });
});
after(() => env?.teardown());

test('SIGTERM: not ready at once, clients closed over the drain timeout, exit 0', async (t) => {
    const node = await env.startNode({ args: ['--drain-timeout', '1500'] });
    t.after(() => node.stop());
    const clients = [];
    t.after(() => clients.forEach(sioClose));
    for (let i = 0; i < 6; i++)
        clients.push(await sioConnect(node.url, '/', { transports: ['websocket'], reconnection: false }));
    const closedAt = clients.map((s) => waitForEvent(s, 'disconnect', 10000, 'the drain').then(([r]) => [r, Date.now()]));
    const started = Date.now();
    node.child.kill('SIGTERM');
    await waitUntil(async () => (await request(`${node.url}/readyz`).catch(() => ({ status: 0 }))).status === 503,
        2000, '/readyz to fail');
    const hs = await request(`${node.url}/socket.io/?EIO=4&transport=polling`).catch(() => ({ status: 0 }));
    assert.ok(hs.status === 503 || hs.status === 0, `a new handshake is refused (${hs.status})`);
    const closes = await Promise.all(closedAt);
    for (const [reason] of closes) assert.equal(reason, 'transport close', 'a close that makes clients reconnect');
    const spread = Math.max(...closes.map(([, at]) => at)) - Math.min(...closes.map(([, at]) => at));
    assert.ok(spread >= 300, `closes are spread over the drain (${spread} ms), not all at once`);
    assert.ok(Date.now() - started < 5000);
    const st = await node.stop();
    assert.equal(st.code, 0, 'a drained node exits 0');
});

test('a node killed with SIGKILL is reaped within three heartbeats: no ghost sockets', async (t) => {
    const victim = await env.startNode({});
    const s = await sioConnect(victim.url, '/', { transports: ['websocket'], reconnection: false });
    t.after(() => sioClose(s));
    const id = s.id;
    const { node } = (await env.be.readEvent((e) => e.type === 'connect' && e.socket === id, 5000));
    assert.ok(await env.redis.exists(`${env.prefix}{sock:${id}}`));
    victim.expectExit = true;
    victim.child.kill('SIGKILL');
    victim.exit = { code: 0, signal: 'SIGKILL' }; // killed on purpose: teardown must not count it as a crash
    const started = Date.now();
    await waitUntil(async () => !(await env.redis.exists(`${env.prefix}{sock:${id}}`)), 20 * HEARTBEAT + 5000,
        'the dead node\'s socket to be reaped');
    const took = Date.now() - started;
    const entry = await env.be.readEvent((e) => e.type === 'disconnect' && e.socket === id, 5000);
    assert.equal(entry.reason, 'node lost');
    assert.equal(entry.node, node);
    assert.equal(await env.redis.sCard(`${env.prefix}{node:${node}}:sockets`), 0);
    assert.ok(!(await env.redis.zRange(`${env.prefix}nodes`, 0, -1)).includes(node), 'the dead node is no longer listed');
    assert.ok(took < 3 * HEARTBEAT + 3000, `reaped in ${took} ms`);
});
