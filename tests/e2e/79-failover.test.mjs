// Failover (issue 5, "How it is checked"): several switchboard nodes behind a
// TCP round-robin proxy (lib/proxy.mjs, playing the Kubernetes Service), with
// clients receiving a stream of numbered broadcasts while things break:
//   1. kill -9 one of three nodes: its clients reconnect through the proxy
//      within seconds, recover their session (same id, rooms, missed
//      broadcasts), and every client gets every broadcast once, in order;
//   2. Redis stopped for 10 s and started again (with its append-only file, as
//      a production Redis with persistence): no crash, /readyz 503 then 200,
//      REST 503 meanwhile, every accepted emit delivered, no socket lost;
//   3. SIGTERM: the drained node exits 0 and its clients recover on the others;
//   4. 1000 clients that stop reading while large broadcasts go out: the node's
//      memory stays under a ceiling derived from --max-send-queue, each slow
//      reader is disconnected and counted in /metrics (85-hostile has the
//      single-reader case).
// Cases 1 and 3 need connection state recovery (CONTRACT §6, --recovery-window).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, test } from 'node:test';

import { closeRedis, connectRedis, backend, keys } from './lib/backend.mjs';
import {
    follow, killNode, metricValue, nodeId, procStatusBytes, sequenceProblems, settle, startBroadcast,
    startDurableRedis,
} from './lib/chaos.mjs';
import { RawClient, emitWithAckArgs, nextEvent, sioClose, sioConnect } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { startSwitchboard } from './lib/harness.mjs';
import { request } from './lib/http.mjs';
import { startProxy } from './lib/proxy.mjs';
import { uniq, waitFor, waitUntil } from './lib/util.mjs';

const API_KEY = 'k79';
const HEARTBEAT_MS = 200;
const ARGS = ['--heartbeat-interval', `${HEARTBEAT_MS}ms`, '--api-key', API_KEY, '--recovery-window', '2m',
    // Limits have their own tests (45); here they would only add noise to the counts.
    '--rate-api', 'off', '--rate-socket-events', 'off', '--rate-user-events', 'off'];
// What a pod's clients do: reconnect on their own, soon, with jitter.
const RECONNECTING = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 300, transports: ['websocket'] };
const RECONNECT_BOUND_MS = 5000;

let env;
before(async () => {
    env = await setupFile({ tag: 't79', args: ARGS });
});
after(() => env?.teardown());

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// `n` socket.io clients through `url`, each followed (lib/chaos.mjs follow) for `event`; closed after t.
async function clientsThrough(t, url, n, event) {
    const logs = [];
    t.after(() => logs.forEach((l) => sioClose(l.socket)));
    for (let i = 0; i < n; i++) {
        const s = await sioConnect(url, '/', RECONNECTING);
        const l = follow(s, event);
        l.firstId = s.id;
        logs.push(l);
    }
    return logs;
}

// Joins every socket of `logs` to `room` through the bus and waits until Redis lists them all.
async function joinAll(be, logs, room) {
    const ids = logs.map((l) => l.firstId);
    for (let i = 0; i < ids.length; i += 250) await be.join({ rooms: [room], sockets: ids.slice(i, i + 250) });
    await waitUntil(async () => (await be.roomMembers('/', room)).length === ids.length, 10000,
        `${ids.length} sockets in room ${room}`);
}

// Which node (handle) holds each socket, from its Redis hash.
async function placement(be, logs, nodes) {
    const byId = new Map(nodes.map((n) => [nodeId(n), n]));
    const out = [];
    for (const l of logs) {
        const id = await be.redis.hGet(keys.sock(be.prefix, l.firstId), 'node');
        assert.ok(byId.has(id), `socket ${l.firstId} is on a known node (${id})`);
        out.push(byId.get(id));
    }
    return out;
}

// One line per client whose received numbers are not exactly 1..last.
function deliveryReport(logs, last) {
    return logs.map((l, i) => {
        const p = sequenceProblems(l.got, last);
        return p ? `client ${i} (${l.firstId}, ${l.got.length} received): ${p}` : '';
    }).filter(Boolean).join('\n');
}

// The moved clients each disconnected once and came back recovered with their own id; the others never moved.
function assertMovedAndRecovered(logs, movedSet, label) {
    const bad = [];
    for (const [i, l] of logs.entries()) {
        if (!l.socket.connected) bad.push(`client ${i} is not connected`);
        if (movedSet.has(l)) {
            if (l.disconnects.length !== 1) bad.push(`client ${i} disconnected ${l.disconnects.length} times`);
            if (l.connects.length !== 1) bad.push(`client ${i} connected ${l.connects.length} times after the ${label}`);
            for (const c of l.connects) {
                if (c.recovered !== true) bad.push(`client ${i} reconnected with recovered=${c.recovered}`);
                if (c.id !== l.firstId) bad.push(`client ${i} reconnected as ${c.id}, not ${l.firstId}`);
            }
        } else if (l.disconnects.length || l.connects.length) {
            bad.push(`client ${i} on a surviving node disconnected ${l.disconnects.length}x: ` +
                JSON.stringify(l.disconnects.map((d) => d.reason)));
        }
    }
    assert.equal(bad.join('\n'), '', `after the ${label}`);
}

test('kill -9 one of three nodes under a broadcast stream: clients recover, nothing missing or duplicated',
    { timeout: 60000 }, async (t) => {
        const nodes = [await env.startNode(), await env.startNode(), await env.startNode()];
        const proxy = await startProxy(nodes.map((n) => n.port));
        t.after(() => proxy.close());
        const logs = await clientsThrough(t, proxy.url, 30, 'tick');
        const room = uniq('feed');
        await joinAll(env.be, logs, room);
        const where = await placement(env.be, logs, nodes);
        const victim = nodes[0];
        const moved = new Set(logs.filter((l, i) => where[i] === victim));
        assert.ok(moved.size >= 8 && moved.size <= 12, `the victim holds about a third (${moved.size})`);

        const bc = startBroadcast(env.be, { room, event: 'tick', perSecond: 20 });
        await waitUntil(() => logs.every((l) => l.got.length >= 10), 5000, 'every client to get the stream');
        const killedAt = Date.now();
        await killNode(victim);
        proxy.remove(victim.port); // readiness gone: the Service stops sending it connections
        await waitUntil(() => [...moved].every((l) => l.socket.connected && l.connects.length > 0),
            RECONNECT_BOUND_MS, 'the killed node\'s clients to connect again').catch(() => {});
        const back = Math.max(...[...moved].map((l) => (l.connects[0]?.at ?? Infinity) - killedAt));
        await sleep(Math.max(0, killedAt + 3000 - Date.now())); // keep broadcasting a while after the kill
        const last = await bc.stop();
        assert.deepEqual(bc.errors, [], 'every XADD of the broadcaster succeeded');
        await settle(logs, last, 5000);

        assert.ok(back <= RECONNECT_BOUND_MS, `every client of the killed node connected again within ` +
            `${RECONNECT_BOUND_MS} ms (slowest: ${back} ms)`);
        assertMovedAndRecovered(logs, moved, 'kill');
        assert.equal(deliveryReport(logs, last), '', `every client received 1..${last} exactly once, in order`);
    });

test('SIGTERM: the drained node exits 0, its clients recover on the others with their rooms and no gap',
    { timeout: 60000 }, async (t) => {
        const DRAIN_MS = 1500;
        const nodes = [await env.startNode({ args: ['--drain-timeout', `${DRAIN_MS}ms`] }),
            await env.startNode(), await env.startNode()];
        const proxy = await startProxy(nodes.map((n) => n.port));
        t.after(() => proxy.close());
        const logs = await clientsThrough(t, proxy.url, 30, 'tick');
        const room = uniq('drain');
        await joinAll(env.be, logs, room);
        const where = await placement(env.be, logs, nodes);
        const victim = nodes[0];
        const moved = new Set(logs.filter((l, i) => where[i] === victim));
        assert.ok(moved.size >= 8, `the drained node holds about a third (${moved.size})`);

        const bc = startBroadcast(env.be, { room, event: 'tick', perSecond: 20 });
        await waitUntil(() => logs.every((l) => l.got.length >= 10), 5000, 'every client to get the stream');
        const termAt = Date.now();
        const exited = victim.stop(); // SIGTERM, then the drain
        proxy.remove(victim.port); // /readyz fails at once: the Service takes it out
        const st = await exited;
        const drainMs = Date.now() - termAt;
        await waitUntil(() => [...moved].every((l) => l.socket.connected && l.connects.length > 0),
            RECONNECT_BOUND_MS, 'the drained node\'s clients to connect again').catch(() => {});
        await sleep(Math.max(0, termAt + DRAIN_MS + 1500 - Date.now())); // broadcasts after the drain too
        const last = await bc.stop();
        assert.deepEqual(bc.errors, [], 'every XADD of the broadcaster succeeded');
        await settle(logs, last, 5000);

        assert.equal(st.code, 0, `the drained node exits 0 (${JSON.stringify(st)}; log ${victim.logFile})`);
        assert.ok(drainMs < DRAIN_MS + 3000, `the drain took ${drainMs} ms`);
        for (const l of moved)
            assert.deepEqual(l.disconnects.map((d) => d.reason), ['transport close'], 'a close that makes clients reconnect');
        assertMovedAndRecovered(logs, moved, 'drain');
        assert.equal(deliveryReport(logs, last), '', `every client received 1..${last} exactly once, in order`);
        // The room is kept: one more broadcast to it after the move reaches every member, the moved ones included.
        const ev = uniq('after-drain');
        const got = logs.map((l) => nextEvent(l.socket, ev, 5000));
        await env.be.emit({ event: ev, args: ['still here'], rooms: [room] });
        for (const args of await Promise.all(got)) assert.equal(args[0], 'still here');
    });

// REST emits to `url` numbered 1, 2, ... at `perSecond`, sequentially; records each answer's status (0: no answer).
function startRestBroadcast(url, { room, event, perSecond = 20 }) {
    let n = 0;
    let running = true;
    const answers = []; // {n, status, at}
    const loop = (async () => {
        const t0 = Date.now();
        while (running) {
            n += 1;
            const body = JSON.stringify({ event, args: [n], rooms: [room] });
            const r = await request(`${url}/v1/emit`, {
                method: 'POST', body, timeoutMs: 5000,
                headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
            }).catch((e) => ({ status: 0, text: e.message }));
            answers.push({ n, status: r.status, at: Date.now(), text: r.status === 202 ? '' : r.text });
            const wait = t0 + n * (1000 / perSecond) - Date.now();
            if (wait > 0) await sleep(wait);
        }
    })();
    return {
        answers,
        async stop() {
            running = false;
            await loop;
        },
    };
}

const readyz = async (n) => (await request(`${n.url}/readyz`, { timeoutMs: 2000 }).catch(() => ({ status: 0 }))).status;

// Case 2 runs on a Redis of its own that keeps its data across the restart (appendonly, fsync always): with the
// fixture's Redis (no persistence) a restart would wipe every socket and room, which no production setup with
// persistence does.
test('Redis stopped for 10 s under traffic and started again: no crash, 503 meanwhile, nothing lost',
    { timeout: 90000 }, async (t) => {
        const OUTAGE_MS = 10000;
        const redisSrv = await startDurableRedis();
        const prefix = 't79r:';
        const nodes = [];
        let proxy = null;
        let logs = [];
        let be = null;
        t.after(async () => {
            logs.forEach((l) => sioClose(l.socket));
            if (proxy) await proxy.close();
            if (!redisSrv.child) await redisSrv.start().catch(() => {});
            for (const n of nodes) await n.stop();
            await closeRedis(be?.redis);
            await redisSrv.remove();
        });
        for (let i = 0; i < 3; i++) {
            const n = await startSwitchboard({ redisUrl: redisSrv.url, prefix,
                args: [...ARGS, '--ping-interval', '1s', '--ping-timeout', '2s', '--redis-timeout', '1s'] });
            nodes.push(n);
            env.nodes.push(n); // the file's teardown also fails on a node that did not exit 0
        }
        proxy = await startProxy(nodes.map((n) => n.port));
        be = backend(await connectRedis(redisSrv.url), prefix);
        logs = await clientsThrough(t, proxy.url, 12, 'news');
        const room = uniq('outage');
        await joinAll(be, logs, room);

        const rest = startRestBroadcast(proxy.url, { room, event: 'news', perSecond: 20 });
        await waitUntil(() => logs.every((l) => l.got.length >= 5), 5000, 'every client to get the REST stream');

        await closeRedis(be.redis); // the test's own connection would not survive the restart
        const stoppedAt = Date.now();
        await redisSrv.stop();
        await waitUntil(async () => (await Promise.all(nodes.map(readyz))).every((s) => s === 503), 3000,
            'every node\'s /readyz to fail');
        // While Redis is away: alive, REST refused with 503, a client event gets an error ack, a new client is refused.
        const during = [];
        for (const n of nodes) {
            assert.equal((await request(`${n.url}/healthz`)).status, 200, 'liveness holds');
            const r = await request(`${n.url}/v1/emit`, {
                method: 'POST', body: JSON.stringify({ event: 'x', args: [] }),
                headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
            });
            during.push(r.status);
            assert.equal(r.status, 503, `REST during the outage: ${r.text}`);
            assert.equal(r.json().error.code, 'unavailable');
        }
        const ackArgs = await emitWithAckArgs(logs[0].socket, 'work', [1], 8000);
        assert.equal(ackArgs[0]?.error?.code, 'backend_unavailable', `error ack: ${JSON.stringify(ackArgs)}`);
        await assert.rejects(sioConnect(nodes[1].url, '/'), 'a new client is refused while Redis is away');
        await sleep(Math.max(0, stoppedAt + OUTAGE_MS - Date.now()));
        for (const n of nodes)
            assert.equal(n.child.exitCode ?? n.child.signalCode, null, `node ${n.port} still runs (${n.logFile})`);

        await redisSrv.start();
        const restartedAt = Date.now();
        await waitUntil(async () => (await Promise.all(nodes.map(readyz))).every((s) => s === 200), 15000,
            'every node\'s /readyz to come back');
        const readyAfter = Date.now() - restartedAt;
        await waitUntil(() => rest.answers.some((a) => a.at > restartedAt && a.status === 202), 5000,
            'REST to accept emits again');
        await sleep(1000);
        await rest.stop();
        be = backend(await connectRedis(redisSrv.url), prefix);

        const statuses = new Set(rest.answers.map((a) => a.status));
        assert.deepEqual([...statuses].filter((s) => s !== 202 && s !== 503), [],
            `REST answers only 202 or 503: ${JSON.stringify(rest.answers.filter((a) => a.status !== 202 && a.status !== 503))}`);
        assert.ok(rest.answers.some((a) => a.status === 503), 'REST answered 503 during the outage');
        // Every accepted emit reaches every client once, in order; refused ones reach nobody. A request whose write
        // was sent when Redis went away has no known outcome (the 503 says "may have been applied", or the HTTP
        // request itself failed): it may arrive, once and in order, or not at all.
        const accepted = rest.answers.filter((a) => a.status === 202).map((a) => a.n);
        const unknown = new Set(rest.answers.filter((a) => a.status === 0 ||
            (a.status === 503 && a.text.includes('may have been applied'))).map((a) => a.n));
        await waitUntil(() => logs.every((l) => l.got.length >= accepted.length), 8000, 'the accepted emits')
            .catch(() => {});
        const bad = logs.map((l, i) => {
            const known = l.got.filter((n) => !unknown.has(n));
            const ordered = l.got.every((n, k) => k === 0 || n > l.got[k - 1]);
            if (JSON.stringify(known) === JSON.stringify(accepted) && ordered) return '';
            return `client ${i}: ${sequenceProblems(known.map((n) => accepted.indexOf(n) + 1), accepted.length)} ` +
                `${ordered ? '' : 'out of order '}(got ${l.got.length}, refused but delivered: ` +
                `${known.filter((n) => !accepted.includes(n)).slice(0, 10)})`;
        }).filter(Boolean);
        assert.equal(bad.join('\n'), '', `each client got exactly the ${accepted.length} accepted emits ` +
            `(outcome unknown: ${[...unknown]})`);

        // No node crashed, every client is still (or again) connected, recovered when it had to reconnect.
        for (const n of nodes) assert.equal(n.child.exitCode ?? n.child.signalCode, null, `node ${n.port} still runs`);
        const moves = [];
        for (const [i, l] of logs.entries()) {
            assert.ok(l.socket.connected, `client ${i} is connected`);
            if (l.disconnects.length)
                moves.push(`client ${i}: ${JSON.stringify(l.disconnects.map((d) => d.reason))}, ` +
                    `recovered ${JSON.stringify(l.connects.map((c) => c.recovered))}`);
            for (const c of l.connects) assert.ok(c.recovered === true && c.id === l.firstId,
                `client ${i} lost its connection and was not recovered: ${moves.at(-1)}`);
        }
        // The state in Redis survived: every socket and its membership, and no socket was reaped as if its node
        // had died (Redis was away for every node alike).
        const ids = new Set(logs.map((l) => l.firstId));
        const lost = [];
        for (const [i, l] of logs.entries()) {
            if (!(await be.redis.exists(keys.sock(prefix, l.firstId)))) lost.push(`client ${i}: socket hash gone`);
            if (!(await be.redis.sIsMember(keys.room(prefix, '/', room), l.firstId))) lost.push(`client ${i}: not in the room`);
        }
        const entries = (await be.redis.sendCommand(['XRANGE', `${prefix}events`, '-', '+'])).map(([, flat]) => {
            const e = {};
            for (let k = 0; k + 1 < flat.length; k += 2) e[flat[k]] = flat[k + 1];
            return e;
        });
        for (const e of entries.filter((x) => x.type === 'disconnect' && ids.has(x.socket)))
            lost.push(`disconnect entry for connected socket ${e.socket} (node ${e.node}): ${e.reason}`);
        const reaped = nodes.filter((n) => /reaped a dead node/.test(fs.readFileSync(n.logFile, 'utf8')));
        assert.equal(lost.join('\n'), '', `the sockets' state in Redis survives the outage; nodes that reaped ` +
            `others: ${reaped.map((n) => n.logFile).join(', ') || 'none'}`);
        // And a broadcast after the outage reaches them all.
        const ev = uniq('after-outage');
        const got = logs.map((l) => nextEvent(l.socket, ev, 5000));
        await be.emit({ event: ev, args: [1], rooms: [room] });
        await waitFor(Promise.all(got), 5000, 'the broadcast after the outage');
        t.diagnostic(`readiness back ${readyAfter} ms after Redis restarted; ${accepted.length} emits accepted, ` +
            `${rest.answers.length - accepted.length} refused; ${moves.length} clients reconnected`);
    });

test('1000 clients stop reading under large broadcasts: memory stays bounded, each is dropped and counted',
    { timeout: 60000 }, async (t) => {
        const CLIENTS = 1000;
        const CAP = 64 * 1024; // --max-send-queue
        const PAYLOAD = 'x'.repeat(32 * 1024);
        const node = await env.startNode({ args: ['--max-send-queue', `${CAP / 1024}kb`] });
        const good = follow(await sioConnect(node.url, '/'), 'big');
        good.firstId = good.socket.id;
        t.after(() => sioClose(good.socket));
        const raws = [];
        t.after(() => raws.forEach((c) => c.close()));
        const sids = [];
        for (let i = 0; i < CLIENTS; i += 100) {
            const batch = await Promise.all(Array.from({ length: Math.min(100, CLIENTS - i) }, async () => {
                const c = await RawClient.open(node.url);
                raws.push(c);
                return c.connectSid('/');
            }));
            sids.push(...batch);
        }
        const room = uniq('slow');
        await joinAll(env.be, [good, ...sids.map((id) => ({ firstId: id }))], room);
        const metrics = async () => (await request(`${node.url}/metrics`)).text;
        const before = await metrics();
        const dropped0 = metricValue(before, 'switchboard_dropped_total', { reason: 'send_queue_full' }) ?? 0;
        assert.equal(metricValue(before, 'switchboard_sockets'), CLIENTS + 1);
        const baseline = procStatusBytes(node.child.pid, 'VmRSS');
        // Under AddressSanitizer freed memory sits in a quarantine (256 MiB by default) before it is reused: that
        // bounded extra is not the node's own, so the ceiling allows it in sanitizer builds only.
        const asan = /libasan/.test(fs.readFileSync(`/proc/${node.child.pid}/maps`, 'utf8'));
        const ceiling = baseline + CLIENTS * CAP + 32 * 1024 * 1024 + (asan ? 256 * 1024 * 1024 : 0);

        for (const c of raws) c.ws.pause(); // they stop reading: kernel buffers fill, then the node's queues
        let peak = baseline;
        const sampler = setInterval(() => {
            peak = Math.max(peak, procStatusBytes(node.child.pid, 'VmRSS'));
        }, 20);
        t.after(() => clearInterval(sampler));
        // Large broadcasts until the node has given up on every slow reader (bounded: 400 x 32 KB = 12.5 MB each).
        let sent = 0;
        let sockets = CLIENTS + 1;
        const started = Date.now();
        while (sent < 400 && sockets > 1) {
            await env.be.emit({ event: 'big', args: [sent + 1, PAYLOAD], rooms: [room] });
            sent += 1;
            // Closed loop on the reader that keeps reading: it is never more than one broadcast behind, so only the
            // slow readers can reach the cap.
            await waitUntil(() => good.got.length >= sent, 5000, 'the good reader to keep up').catch((e) => {
                throw new Error(`${e.message}: got ${good.got.length}/${sent}, connected ${good.socket.connected}, ` +
                    `disconnects ${JSON.stringify(good.disconnects)}`);
            });
            if (sent % 10 === 0) sockets = metricValue(await metrics(), 'switchboard_sockets');
        }
        await waitUntil(async () => metricValue(await metrics(), 'switchboard_sockets') === 1, 10000,
            'only the good reader to be left').catch(() => {});
        clearInterval(sampler);
        peak = Math.max(peak, procStatusBytes(node.child.pid, 'VmRSS'));
        const after = await metrics();
        const dropped = metricValue(after, 'switchboard_dropped_total', { reason: 'send_queue_full' }) - dropped0;
        t.diagnostic(`${sent} broadcasts of 32 KB in ${Date.now() - started} ms; RSS baseline ` +
            `${(baseline / 1048576).toFixed(1)} MiB, peak ${(peak / 1048576).toFixed(1)} MiB, ceiling ` +
            `${(ceiling / 1048576).toFixed(1)} MiB${asan ? ' (ASan build)' : ''}; dropped ${dropped}`);

        assert.equal(metricValue(after, 'switchboard_sockets'), 1, `every slow reader was disconnected (sent ${sent})`);
        assert.ok(peak <= ceiling, `RSS peak ${peak} stays under baseline ${baseline} + ${CLIENTS} x ${CAP} + 32 MiB${asan ? ' + 256 MiB' : ''}`);
        assert.equal(dropped, CLIENTS, 'one send_queue_full drop counted per slow reader');
        const gone = await env.be.readEvents((e) => e.type === 'disconnect' && sids.includes(e.socket), 10000,
            { count: CLIENTS });
        assert.equal(new Set(gone.map((e) => e.socket)).size, CLIENTS, 'a disconnect entry for each slow reader');
        assert.match(node.stderrTail() + '', /send queue full/, 'the reason is logged');
        // The reader that kept reading got every broadcast, in order, and is still served.
        assert.ok(good.socket.connected);
        assert.equal(sequenceProblems(good.got, sent), '');
    });
