// Rebalancing after a scale-out (issue 5 part 7): WebSockets live for hours, so
// a node added behind the load balancer would get no load. Two nodes behind a
// round-robin proxy (the Kubernetes Service) hold 40 clients; a third node is
// added, and within a few --rebalance-interval rounds the two old ones have
// closed connections (reason "server rebalancing", a transport close: the
// clients reconnect through the proxy) until the new one holds a fair share and
// no node is above the threshold, with every client connected at the end. A node
// with --rebalance off never sheds.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setupFile } from './lib/fixture.mjs';
import { sioClose, sioConnect } from './lib/clients.mjs';
import { request } from './lib/http.mjs';
import { startProxy } from './lib/proxy.mjs';
import { waitUntil } from './lib/util.mjs';

const INTERVAL_MS = 1000;
const THRESHOLD = 10; // percent
const CLIENTS = 40;
let env;
before(async () => {
    env = await setupFile({
        tag: 't78',
        // The harness turns rebalancing off for the other files: on again here (the default of the binary).
        args: ['--rebalance', 'on', '--heartbeat-interval', '200', '--rebalance-interval', `${INTERVAL_MS}ms`,
            '--rebalance-threshold', String(THRESHOLD), '--rebalance-rate', '20'],
    });
});
after(() => env?.teardown());

// One sample of a node's /metrics, summed over labels matching `labels` (a substring of the label text).
async function metric(node, name, labels = '') {
    const r = await request(`${node.url}/metrics`);
    assert.equal(r.status, 200);
    let sum = 0;
    for (const line of r.text.split('\n')) {
        const m = line.match(/^([a-z_]+)(\{[^}]*\})? (\S+)$/);
        if (m && m[1] === name && (m[2] || '').includes(labels)) sum += Number(m[3]);
    }
    return sum;
}

const connections = (node) => metric(node, 'switchboard_connections');
const shed = (node) => metric(node, 'switchboard_rebalance_closed_total');

// Reconnecting clients through the proxy, as an application would configure them (short delays for the test).
async function connectMany(url, n) {
    const clients = [];
    for (let i = 0; i < n; i += 10)
        clients.push(...await Promise.all(Array.from({ length: Math.min(10, n - i) }, () => sioConnect(url, '/', {
            transports: ['websocket'], reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 400,
        }))));
    return clients;
}

async function countsOf(nodes) {
    return Promise.all(nodes.map(connections));
}

test('a node added after a scale-out gets its share; clients reconnect; nobody above the threshold', async (t) => {
    const a = env.node;
    const b = await env.startNode();
    const proxy = await startProxy([a.port, b.port]);
    t.after(() => proxy.close());
    const clients = await connectMany(proxy.url, CLIENTS);
    t.after(() => clients.forEach(sioClose));
    const reasons = [];
    clients.forEach((s) => s.on('disconnect', (r) => reasons.push(r)));

    // Balanced: 20 and 20. Two rounds later nobody has shed anything.
    await waitUntil(async () => (await countsOf([a, b])).join() === '20,20', 5000, '20 clients on each node');
    await new Promise((r) => setTimeout(r, 2 * INTERVAL_MS + 300));
    assert.deepEqual(await countsOf([a, b]), [20, 20], 'a balanced cluster sheds nothing');
    assert.deepEqual([await shed(a), await shed(b)], [0, 0]);

    // Scale out: a third node, added to the Service.
    const c = await env.startNode();
    proxy.add(c.port);
    const added = Date.now();
    let last;
    await waitUntil(async () => {
        const counts = await countsOf([a, b, c]);
        const total = counts.reduce((x, y) => x + y, 0);
        const avg = total / 3;
        last = { counts, connected: clients.filter((s) => s.connected).length };
        return total === CLIENTS && last.connected === CLIENTS && counts[2] >= 0.7 * avg &&
            counts.every((n) => n <= avg * (1 + THRESHOLD / 100) || n - avg < 2);
    }, 15 * INTERVAL_MS, 'the new node to hold a fair share', 100).catch((e) => {
        throw new Error(`${e.message}: last ${JSON.stringify(last)}`);
    });
    const took = Date.now() - added;
    assert.ok(took < 12 * INTERVAL_MS, `balanced within a few rounds (${took} ms)`);
    const final = await countsOf([a, b, c]);
    t.diagnostic(`balanced in ${took} ms: ${final.join(', ')}`);
    assert.ok(final[2] >= 10, `the new node holds ${final[2]} of ${CLIENTS}`);

    // The old nodes shed, the new one did not; every close was a transport close that the client recovered from.
    const [shedA, shedB, shedC] = [await shed(a), await shed(b), await shed(c)];
    assert.ok(shedA > 0 && shedB > 0, `both old nodes shed (${shedA}, ${shedB})`);
    assert.equal(shedC, 0, 'the new node sheds nothing');
    assert.ok(reasons.length >= shedA + shedB, `${reasons.length} client disconnects for ${shedA + shedB} closes`);
    assert.ok(reasons.every((r) => r === 'transport close'), `clients saw ${[...new Set(reasons)]}`);
    await waitUntil(() => clients.every((s) => s.connected), 3000, 'every client connected');

    // Counted as their own disconnect reason, in the metric and in the events stream.
    const byReason = (await metric(a, 'switchboard_disconnects_total', 'reason="server rebalancing"')) +
        (await metric(b, 'switchboard_disconnects_total', 'reason="server rebalancing"'));
    assert.equal(byReason, shedA + shedB);
    const entries = await env.redis.xRange(`${env.prefix}events`, '-', '+');
    const rebalanced = entries.filter((e) => e.message.type === 'disconnect' && e.message.reason === 'server rebalancing');
    assert.equal(rebalanced.length, shedA + shedB);

    // One info line per round that sheds, with the figures.
    const lines = (a.stderrTail() + b.stderrTail()).split('\n').filter((l) => l.includes('"msg":"rebalancing'))
        .map((l) => JSON.parse(l));
    assert.ok(lines.length >= 2, `${lines.length} rebalancing log lines`);
    for (const l of lines) {
        assert.equal(l.level, 30);
        assert.ok(l.closing >= 1 && l.closing <= 20, `closing ${l.closing}: at most --rebalance-rate x interval`);
        assert.ok(l.local - l.closing >= l.avg - 0.051, `never below the average (${JSON.stringify(l)})`);
    }

    for (const s of clients) sioClose(s);
    await Promise.all([a.stop(), b.stop(), c.stop()]);
});

test('--rebalance off: a node far above the average never sheds', async (t) => {
    const off = await env.startNode({ args: ['--rebalance', 'off'] });
    const proxy = await startProxy([off.port]);
    t.after(() => proxy.close());
    const clients = await connectMany(proxy.url, 24);
    t.after(() => clients.forEach(sioClose));
    let disconnects = 0;
    clients.forEach((s) => s.on('disconnect', () => disconnects++));
    const on = await env.startNode();
    proxy.add(on.port);
    // Four rounds with the other node at 0: 24 against an average of 12 is 100 % above any threshold.
    await new Promise((r) => setTimeout(r, 4 * INTERVAL_MS + 500));
    assert.deepEqual(await countsOf([off, on]), [24, 0]);
    assert.equal(await shed(off), 0);
    assert.equal(disconnects, 0, 'no client was disconnected');
    assert.ok(!off.stderrTail().includes('"msg":"rebalancing'), 'no rebalancing round was logged');
});
