// GET /metrics: Prometheus text that `promtool check metrics` accepts, every
// series of CONTRACT §7 present, and counters and gauges that move by exactly
// what the clients and the backend did.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';

import { entryOf } from './lib/backend.mjs';
import { nextEvent, sioClose } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { request } from './lib/http.mjs';
import { uniq, waitUntil } from './lib/util.mjs';

// name → type; every one must have its # TYPE line on the page.
const FAMILIES = {
    switchboard_connections: 'gauge',
    switchboard_sockets: 'gauge',
    switchboard_connects_total: 'counter',
    switchboard_disconnects_total: 'counter',
    switchboard_events_in_total: 'counter',
    switchboard_deliveries_total: 'counter',
    switchboard_bus_entries_total: 'counter',
    switchboard_bus_delivery_seconds: 'histogram',
    switchboard_redis_command_seconds: 'histogram',
    switchboard_redis_errors_total: 'counter',
    switchboard_redis_connected: 'gauge',
    switchboard_webhook_calls_total: 'counter',
    switchboard_webhook_circuit_open: 'gauge',
    switchboard_rate_limited_total: 'counter',
    switchboard_dropped_total: 'counter',
    switchboard_event_loop_lag_seconds: 'histogram',
    switchboard_rest_requests_total: 'counter',
    switchboard_auth_failures_total: 'counter',
    switchboard_durable_stored_total: 'counter',
    switchboard_durable_delivered_total: 'counter',
    switchboard_durable_acked_total: 'counter',
    switchboard_inbox_dropped_total: 'counter',
    process_cpu_seconds_total: 'counter',
    process_resident_memory_bytes: 'gauge',
    process_virtual_memory_bytes: 'gauge',
    process_open_fds: 'gauge',
    process_max_fds: 'gauge',
    process_start_time_seconds: 'gauge',
};

// Series registered up front with a fixed label value (bounded by construction).
const LABELLED = {
    switchboard_connections: ['transport', ['websocket', 'polling']],
    switchboard_connects_total: ['transport', ['websocket', 'polling']],
    switchboard_webhook_calls_total: ['outcome', ['ok', 'failed', 'rejected']],
    switchboard_rate_limited_total: ['kind', ['events', 'connections', 'api', 'publish']],
    switchboard_dropped_total: ['reason', ['send_queue_full', 'volatile', 'event_not_stored', 'webhook']],
    switchboard_rest_requests_total: ['code', ['2xx', '4xx', '5xx']],
    switchboard_inbox_dropped_total: ['reason', ['maxlen', 'age']],
};

// ---- the page ----

function parseValue(text) {
    if (text === 'NaN') return NaN;
    if (text === '+Inf') return Infinity;
    if (text === '-Inf') return -Infinity;
    const v = Number(text);
    assert.ok(!Number.isNaN(v), `unparseable sample value ${JSON.stringify(text)}`);
    return v;
}

function parseLabels(text) {
    const labels = {};
    if (!text) return labels;
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    let m;
    while ((m = re.exec(text)) !== null)
        labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    return labels;
}

// {types: {name: type}, samples: [{name, labels, value}], text}
function parsePage(text) {
    const types = {};
    const samples = [];
    for (const line of text.split('\n')) {
        if (line === '') continue;
        const t = /^# TYPE (\S+) (\S+)$/.exec(line);
        if (t) {
            types[t[1]] = t[2];
            continue;
        }
        if (line.startsWith('#')) continue;
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
        assert.ok(m, `malformed sample line ${JSON.stringify(line)}`);
        samples.push({ name: m[1], labels: parseLabels(m[2]), value: parseValue(m[3]) });
    }
    return { types, samples, text };
}

// Sum of the samples called `name` whose labels include `match`.
function sum(page, name, match = {}) {
    let total = 0;
    for (const s of page.samples)
        if (s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)) total += s.value;
    return total;
}

function has(page, name, match = {}) {
    return page.samples.some((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
}

async function fetchMetrics(url) {
    const res = await request(`${url}/metrics`);
    assert.equal(res.status, 200, `GET /metrics: ${res.status} ${res.text.slice(0, 300)}`);
    assert.match(String(res.headers['content-type']), /^text\/plain/, 'Prometheus text is served as text/plain');
    return parsePage(res.text);
}

// `promtool check metrics` on the page (stdin); resolves {code, output}.
function promtool(text) {
    return new Promise((resolve, reject) => {
        const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
        let output = '';
        child.stdout.on('data', (d) => (output += d));
        child.stderr.on('data', (d) => (output += d));
        child.on('error', (e) =>
            reject(
                e.code === 'ENOENT'
                    ? new Error('promtool not found on PATH: install it (Debian: apt-get install -y prometheus)')
                    : e,
            ),
        );
        child.on('close', (code) => resolve({ code, output }));
        child.stdin.on('error', () => {}); // an early exit is reported through `close`
        child.stdin.end(text);
    });
}

async function assertPromtoolAccepts(page) {
    const { code, output } = await promtool(page.text);
    assert.equal(code, 0, `promtool check metrics failed (exit ${code}):\n${output}\npage:\n${page.text}`);
    assert.equal(output.trim(), '', `promtool check metrics complained:\n${output}`);
}

// Polls /metrics until `pred(page)` holds; the failure shows `show(page)`.
async function metricsUntil(url, pred, label, show) {
    let last;
    try {
        return await waitUntil(
            async () => {
                last = await fetchMetrics(url);
                return pred(last) ? last : null;
            },
            5000,
            label,
            50,
        );
    } catch (e) {
        e.message += last ? `; last seen: ${JSON.stringify(show(last))}` : '';
        throw e;
    }
}

// ---- tests ----

let env;
before(async () => {
    env = await setupFile({ tag: 't65' });
});
after(() => env?.teardown());

test('/metrics on an idle node passes promtool and lists every series', async () => {
    const page = await fetchMetrics(env.url);
    await assertPromtoolAccepts(page);
    for (const [name, type] of Object.entries(FAMILIES))
        assert.equal(page.types[name], type, `# TYPE ${name} ${type} expected, got ${page.types[name]}`);
    for (const [name, [label, values]] of Object.entries(LABELLED))
        for (const v of values) assert.ok(has(page, name, { [label]: v }), `series ${name}{${label}="${v}"} missing`);
    for (const name of Object.keys(FAMILIES).filter((n) => FAMILIES[n] === 'histogram')) {
        assert.ok(has(page, `${name}_bucket`, { le: '+Inf' }), `${name}_bucket{le="+Inf"} missing`);
        assert.ok(has(page, `${name}_sum`), `${name}_sum missing`);
        assert.ok(has(page, `${name}_count`), `${name}_count missing`);
    }
    // the page is about this process
    assert.ok(sum(page, 'process_open_fds') > 0);
    assert.ok(sum(page, 'process_resident_memory_bytes') > 0);
    const start = sum(page, 'process_start_time_seconds');
    assert.ok(start > Date.now() / 1000 - 600 && start <= Date.now() / 1000 + 1, `start time ${start}`);
    assert.ok(sum(page, 'switchboard_redis_connected') >= 1, 'Redis is up: switchboard_redis_connected >= 1');
});

test('counters and gauges follow connects, events, bus deliveries and a disconnect', async (t) => {
    const before0 = await fetchMetrics(env.url);
    const base = (name, match) => sum(before0, name, match);

    // three clients: two over WebSocket, one that stays on long-polling
    const ws1 = await env.client(t, '/');
    const ws2 = await env.client(t, '/');
    const pl = await env.client(t, '/', { transports: ['polling'], upgrade: false });
    const clients = [ws1, ws2, pl];

    const afterConnect = await metricsUntil(
        env.url,
        (p) => sum(p, 'switchboard_sockets') === base('switchboard_sockets') + 3,
        'switchboard_sockets to rise by 3',
        (p) => sum(p, 'switchboard_sockets'),
    );
    assert.equal(sum(afterConnect, 'switchboard_connects_total') - base('switchboard_connects_total'), 3);
    for (const [tr, n] of [['websocket', 2], ['polling', 1]]) {
        const m = { transport: tr };
        assert.equal(
            sum(afterConnect, 'switchboard_connects_total', m) - base('switchboard_connects_total', m), n,
            `connects_total{transport="${tr}"} +${n}`,
        );
        assert.equal(
            sum(afterConnect, 'switchboard_connections', m) - base('switchboard_connections', m), n,
            `connections{transport="${tr}"} +${n}`,
        );
    }

    // client events: 2 from each client, all seen on the events stream first
    const ev = uniq('m65');
    for (const s of clients) {
        s.emit(ev, 1);
        s.emit(ev, 2);
    }
    const eventsSent = 2 * clients.length;
    await env.be.readEvents((e) => e.type === 'event' && e.event === ev, 5000, { count: eventsSent });
    const afterEvents = await metricsUntil(
        env.url,
        (p) => sum(p, 'switchboard_events_in_total') - base('switchboard_events_in_total') >= eventsSent,
        `switchboard_events_in_total to rise by ${eventsSent}`,
        (p) => sum(p, 'switchboard_events_in_total') - base('switchboard_events_in_total'),
    );
    assert.equal(sum(afterEvents, 'switchboard_events_in_total') - base('switchboard_events_in_total'), eventsSent);

    // backend → clients through the bus: one broadcast to the namespace (3
    // sockets) and one emit to a single socket: 4 messages written
    const d0 = sum(afterEvents, 'switchboard_deliveries_total');
    const b0 = sum(afterEvents, 'switchboard_bus_entries_total');
    const lat0 = sum(afterEvents, 'switchboard_bus_delivery_seconds_count');
    const all = uniq('m65-all');
    const got = clients.map((s) => nextEvent(s, all, 5000));
    await env.be.emit({ event: all, args: ['x'] });
    await Promise.all(got);
    const one = uniq('m65-one');
    const gotOne = nextEvent(ws2, one, 5000);
    await env.be.emit({ event: one, args: ['y'], sockets: [ws2.id] });
    await gotOne;
    const afterBus = await metricsUntil(
        env.url,
        (p) => sum(p, 'switchboard_deliveries_total') - d0 >= 4,
        'switchboard_deliveries_total to rise by 4',
        (p) => sum(p, 'switchboard_deliveries_total') - d0,
    );
    assert.equal(sum(afterBus, 'switchboard_deliveries_total') - d0, 4, 'deliveries +4');
    assert.ok(sum(afterBus, 'switchboard_bus_entries_total') - b0 >= 2, 'bus entries +2 at least');
    const latCount = sum(afterBus, 'switchboard_bus_delivery_seconds_count');
    assert.ok(latCount - lat0 >= 2, `bus_delivery_seconds observed both emits (${lat0} → ${latCount})`);
    assert.equal(
        sum(afterBus, 'switchboard_bus_delivery_seconds_bucket', { le: '+Inf' }), latCount,
        'the +Inf bucket equals _count',
    );
    assert.ok(sum(afterBus, 'switchboard_redis_command_seconds_count') > 0, 'Redis commands were timed');

    // one client leaves: a namespace disconnect
    const leaving = ws1.id;
    sioClose(ws1);
    await env.be.readEvent(entryOf('disconnect', leaving), 5000);
    const reason = { reason: 'client namespace disconnect' };
    const afterDisc = await metricsUntil(
        env.url,
        (p) =>
            sum(p, 'switchboard_sockets') === base('switchboard_sockets') + 2 &&
            sum(p, 'switchboard_connections') === base('switchboard_connections') + 2,
        'switchboard_sockets and switchboard_connections to fall back to +2',
        (p) => ({ sockets: sum(p, 'switchboard_sockets'), connections: sum(p, 'switchboard_connections') }),
    );
    assert.equal(
        sum(afterDisc, 'switchboard_disconnects_total', reason) - base('switchboard_disconnects_total', reason), 1,
        'disconnects_total{reason="client namespace disconnect"} +1',
    );
    assert.equal(sum(afterDisc, 'switchboard_connects_total') - base('switchboard_connects_total'), 3);
    assert.equal(sum(afterDisc, 'switchboard_events_in_total') - base('switchboard_events_in_total'), eventsSent);

    // counters never went down, and the page after traffic is still valid
    for (const s of before0.samples)
        if (FAMILIES[s.name] === 'counter' && s.name.startsWith('switchboard_'))
            assert.ok(sum(afterDisc, s.name, s.labels) >= s.value, `${s.name} ${JSON.stringify(s.labels)} went down`);
    await assertPromtoolAccepts(afterDisc);
    for (const [name, type] of Object.entries(FAMILIES))
        assert.equal(afterDisc.types[name], type, `# TYPE ${name} ${type} expected after traffic`);
});
