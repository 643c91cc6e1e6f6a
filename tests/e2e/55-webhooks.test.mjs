// Webhooks (CONTRACT §4): client events whose name matches a --webhook GLOB are
// POSTed to a real HTTP server run by this file, which can be told to fail
// (500), refuse (400), hang, answer slowly or answer a JSON array. Checked:
// the body carries the sb:events fields, the JSON array answers the client's
// ack, retries come with growing delays and one Idempotency-Key, 4xx is not
// retried, a hung backend times out, the circuit opens (immediate
// backend_unavailable) and a half-open probe closes it, keep-alive reuse, and
// the events stream keeps its copy unless --events-stream false.
//
// One worker thread (--threads 1): breakers are per worker, and the circuit
// test needs all its calls to meet the same one. Each test uses its own URL
// path, i.e. its own webhook with its own breaker and connection pool.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';

import { entryOf } from './lib/backend.mjs';
import { emitWithAckArgs } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { quietPeriod, uniq, waitUntil } from './lib/util.mjs';

const TIMEOUT_MS = 300;
const BACKOFF_MS = 50;
const COOLDOWN_MS = 500;

// A backend whose answers are scripted per path: plan(path, [step, ...], fallback)
// where a step is {status, body (a JSON value), delayMs, hang}.
class HookServer {
    constructor() {
        this.requests = []; // {path, headers, body, raw, at, conn}
        this.plans = new Map();
        this.fallbacks = new Map();
        this.hanging = new Set();
        this.connIds = new WeakMap();
        this.nextConn = 0;
        this.server = http.createServer((req, res) => this.handle(req, res));
    }

    async start() {
        await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
        this.port = this.server.address().port;
        return this;
    }

    url(path) {
        return `http://127.0.0.1:${this.port}${path}`;
    }

    plan(path, steps, fallback = { status: 200, body: [] }) {
        this.plans.set(path, [...steps]);
        this.fallbacks.set(path, fallback);
    }

    handle(req, res) {
        if (!this.connIds.has(req.socket)) this.connIds.set(req.socket, ++this.nextConn);
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => {
            const raw = Buffer.concat(chunks).toString('utf8');
            let body;
            try {
                body = JSON.parse(raw);
            } catch {
                body = undefined;
            }
            this.requests.push({
                path: req.url,
                method: req.method,
                headers: req.headers,
                body,
                raw,
                at: Date.now(),
                conn: this.connIds.get(req.socket),
            });
            const steps = this.plans.get(req.url);
            const step = steps?.length ? steps.shift() : this.fallbacks.get(req.url) || { status: 404, body: null };
            if (step.hang) {
                this.hanging.add(res);
                res.on('close', () => this.hanging.delete(res));
                return;
            }
            const answer = () => {
                const text = step.body === undefined || step.body === null ? '' : JSON.stringify(step.body);
                res.writeHead(step.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
                res.end(text);
            };
            if (step.delayMs) setTimeout(answer, step.delayMs);
            else answer();
        });
    }

    // Requests to `path` (optionally only those for client event `event`).
    to(path, event) {
        return this.requests.filter((r) => r.path === path && (event === undefined || r.body?.event === event));
    }

    async waitFor(path, event, count, ms = 5000) {
        await waitUntil(() => this.to(path, event).length >= count, ms, `${count} POSTs of ${event} to ${path}`);
        return this.to(path, event);
    }

    async stop() {
        for (const res of this.hanging) res.destroy();
        this.server.closeAllConnections();
        await new Promise((resolve) => this.server.close(resolve));
    }
}

let hooks;
let env;
before(async () => {
    hooks = await new HookServer().start();
    const paths = { evans: '/answer', evretry: '/retry', evbad: '/bad', evhang: '/hang', evcb: '/breaker', evka: '/ka' };
    const webhookArgs = [];
    for (const [prefix, p] of Object.entries(paths)) webhookArgs.push('--webhook', `${prefix}*=${hooks.url(p)}`);
    webhookArgs.push('--webhook', `ev*=${hooks.url('/hook')}`); // the rest of ev*, last: the first match wins
    env = await setupFile({
        tag: 't55',
        args: [
            '--threads', '1',
            ...webhookArgs,
            '--webhook-retries', '3',
            '--webhook-backoff', `${BACKOFF_MS}ms`,
            '--webhook-backoff-max', '2s',
            '--webhook-timeout', `${TIMEOUT_MS}ms`,
            '--webhook-breaker-failures', '3',
            '--webhook-breaker-cooldown', `${COOLDOWN_MS}ms`,
            '--ack-timeout', '10s',
        ],
    });
});
after(async () => {
    try {
        await env?.teardown();
    } finally {
        await hooks?.stop();
    }
});

function assertErrorAck(args, code = 'backend_unavailable') {
    assert.equal(args.length, 1, `one error object expected, got ${JSON.stringify(args)}`);
    assert.equal(args[0]?.error?.code, code, `error ack ${code} expected, got ${JSON.stringify(args)}`);
    assert.equal(typeof args[0].error.message, 'string');
}

test('a matching event is POSTed with the sb:events fields; its JSON array answer reaches the ack', async (t) => {
    hooks.plan('/answer', [], { status: 200, body: ['saved', { id: 7 }] });
    const s = await env.client(t);
    const ev = uniq('evans');
    const t0 = Date.now();
    const answer = await emitWithAckArgs(s, ev, ['hi', { n: [1, 2] }, Buffer.from([1, 2, 3])], 5000);
    assert.deepEqual(answer, ['saved', { id: 7 }]);

    const [req] = hooks.to('/answer', ev);
    assert.ok(req, 'the backend got the POST');
    assert.equal(req.method, 'POST');
    assert.match(req.headers['content-type'], /^application\/json/);
    const key = req.headers['idempotency-key'];
    assert.equal(typeof key, 'string');
    assert.ok(key.includes(s.id), `Idempotency-Key ${key} names the socket`);
    assert.match(key, /-\d+$/, 'Idempotency-Key ends with a sequence number');
    const b = req.body;
    assert.deepEqual(Object.keys(b).sort(), ['ack_id', 'args', 'event', 'namespace', 'node', 'socket', 'ts', 'type', 'user'].sort());
    assert.equal(b.type, 'event');
    assert.equal(b.namespace, '/');
    assert.equal(b.socket, s.id);
    assert.equal(b.user, s.id);
    assert.equal(b.event, ev);
    assert.deepEqual(b.args, ['hi', { n: [1, 2] }, { $binary: 'AQID' }], 'args is a JSON array, binary as $binary');
    assert.match(b.ack_id, /^\d+$/);
    assert.equal(typeof b.node, 'string');
    assert.ok(b.node.length > 0);
    assert.ok(Number(b.ts) >= t0 - 1000 && Number(b.ts) <= Date.now() + 1000, `ts ${b.ts}`);

    // --events-stream defaults to true: the event is on the stream too
    const entry = await env.be.readEvent(entryOf('event', s.id, ev), 5000);
    assert.deepEqual(JSON.parse(entry.args), ['hi', { n: [1, 2] }, { $binary: 'AQID' }]);
    assert.equal(entry.ack_id, b.ack_id);
});

test('failures are retried with growing delays and the same Idempotency-Key', async (t) => {
    hooks.plan('/retry', [{ status: 500, body: { e: 1 } }, { status: 502 }, { status: 503 }], {
        status: 200,
        body: ['third retry'],
    });
    const s = await env.client(t);
    const ev = uniq('evretry');
    const answer = await emitWithAckArgs(s, ev, ['x'], 5000);
    assert.deepEqual(answer, ['third retry']);

    const reqs = hooks.to('/retry', ev);
    assert.equal(reqs.length, 4, 'one call and three retries');
    const keys = new Set(reqs.map((r) => r.headers['idempotency-key']));
    assert.equal(keys.size, 1, `one Idempotency-Key across retries, got ${[...keys]}`);
    assert.ok(reqs.every((r) => r.raw === reqs[0].raw), 'the same body on every retry');
    const gaps = [1, 2, 3].map((i) => reqs[i].at - reqs[i - 1].at);
    // backoff 50 ms doubling, jittered down by at most a quarter: 37..50, 75..100, 150..200 ms
    assert.ok(gaps[0] >= 30, `first retry after ${gaps[0]} ms`);
    assert.ok(gaps[1] > gaps[0] && gaps[2] > gaps[1], `delays must grow: ${gaps.join(', ')} ms`);
    assert.ok(gaps[2] >= 140 && gaps[2] < 1000, `third retry after ${gaps[2]} ms`);
});

test('a 4xx answer is not retried and gives the client an error ack', async (t) => {
    hooks.plan('/bad', [], { status: 400, body: { error: 'nope' } });
    const s = await env.client(t);
    const ev = uniq('evbad');
    const answer = await emitWithAckArgs(s, ev, [], 5000);
    assertErrorAck(answer);
    await quietPeriod(300); // a retry would come after ~50 ms
    assert.equal(hooks.to('/bad', ev).length, 1, 'exactly one POST');
});

test('a hung backend times out after --webhook-timeout and the retry gets through', async (t) => {
    hooks.plan('/hang', [{ hang: true }, { status: 200, body: ['late', 2], delayMs: 100 }]);
    const s = await env.client(t);
    const ev = uniq('evhang');
    const started = Date.now();
    const answer = await emitWithAckArgs(s, ev, [], 5000);
    const took = Date.now() - started;
    assert.deepEqual(answer, ['late', 2], 'a slow answer within the deadline is fine');
    const reqs = hooks.to('/hang', ev);
    assert.equal(reqs.length, 2);
    assert.equal(reqs[0].headers['idempotency-key'], reqs[1].headers['idempotency-key']);
    assert.ok(reqs[1].at - reqs[0].at >= TIMEOUT_MS, `retry ${reqs[1].at - reqs[0].at} ms after the hung attempt`);
    assert.ok(took < TIMEOUT_MS + 1500, `answered after ${took} ms`);
});

test('the circuit opens after repeated failures, fails fast, and a half-open probe closes it', async (t) => {
    hooks.plan('/breaker', [], { status: 500 });
    const s = await env.client(t);
    const ev = uniq('evcb');

    // three failing calls (each with its retries) open the circuit
    const failing = await Promise.all([1, 2, 3].map((i) => emitWithAckArgs(s, ev, [i], 8000)));
    for (const a of failing) assertErrorAck(a);
    assert.equal(hooks.to('/breaker', ev).length, 12, 'three calls of four attempts each');

    // open: the error ack comes at once and nothing reaches the backend
    const t0 = Date.now();
    assertErrorAck(await emitWithAckArgs(s, ev, ['fast'], 5000));
    const fast = Date.now() - t0;
    assert.ok(fast < 150, `error ack after ${fast} ms while the circuit is open`);
    assert.equal(hooks.to('/breaker', ev).length, 12, 'no POST while open');

    // the backend comes back; after the cooldown one probe goes through and closes the circuit
    hooks.plan('/breaker', [], { status: 200, body: ['recovered'] });
    const openedAt = Date.now();
    const ok = await waitUntil(
        async () => {
            const a = await emitWithAckArgs(s, ev, ['probe?'], 5000);
            return a[0]?.error ? null : a;
        },
        COOLDOWN_MS + 3000,
        'a successful ack after the cooldown',
        50,
    );
    assert.deepEqual(ok, ['recovered']);
    assert.ok(Date.now() - openedAt >= COOLDOWN_MS - 200, 'not before the cooldown');
    assert.equal(hooks.to('/breaker', ev).length, 13, 'only the probe reached the backend');
    // closed again: calls flow normally
    assert.deepEqual(await emitWithAckArgs(s, ev, ['after'], 5000), ['recovered']);
    assert.equal(hooks.to('/breaker', ev).length, 14);
});

test('consecutive calls reuse one keep-alive connection', async (t) => {
    hooks.plan('/ka', [], { status: 200, body: [] });
    const s = await env.client(t);
    const ev = uniq('evka');
    for (let i = 0; i < 3; i++) assert.deepEqual(await emitWithAckArgs(s, ev, [i], 5000), []);
    const conns = new Set(hooks.to('/ka', ev).map((r) => r.conn));
    assert.equal(conns.size, 1, `one connection expected, got ${conns.size}`);
});

test('an event no GLOB matches is not POSTed (and still reaches the stream)', async (t) => {
    hooks.plan('/hook', [], { status: 200, body: ['hooked'] });
    const s = await env.client(t);
    const other = uniq('other');
    const before = hooks.requests.length;
    s.emit(other, 'not for the webhook');
    await env.be.readEvent(entryOf('event', s.id, other), 5000);
    // barrier: a matching event sent afterwards reaches the webhook
    const ev = uniq('evplain');
    assert.deepEqual(await emitWithAckArgs(s, ev, [], 5000), ['hooked']);
    const since = hooks.requests.slice(before);
    assert.equal(since.filter((r) => r.body?.event === other).length, 0, 'the non-matching event was POSTed');
    assert.equal(since.filter((r) => r.body?.event === ev && r.path === '/hook').length, 1);
});

test('with --events-stream false a webhook-handled event stays off the stream', async (t) => {
    const node = await env.startNode({ args: ['--events-stream', 'false'] });
    hooks.plan('/hook', [], { status: 200, body: ['only-hook'] });
    const s = await env.client(t, '/', { url: node.url });
    const ev = uniq('evquiet');
    assert.deepEqual(await emitWithAckArgs(s, ev, [1], 5000), ['only-hook']);
    assert.equal(hooks.to('/hook', ev).length, 1);
    // barrier: an event with no webhook still goes to the stream; the hooked one must not be before it
    const other = uniq('plain');
    s.emit(other, 2);
    const seen = await env.be.readEvents(
        (e) => e.socket === s.id && e.type === 'event' && (e.event === other || e.event === ev),
        5000,
    );
    assert.equal(seen[0].event, other, `the webhook-handled event reached the stream: ${JSON.stringify(seen[0])}`);
});
