// The load generator's own correctness (issue 7): tests/load/sbload, built
// here with tests/load/build.sh, runs tiny scenarios against a switchboard of
// the fixture, with Redis as the backend exactly as the benchmark does, and
// its counts must be exact: every client connected, every broadcast delivered
// once to every member (none missing, none duplicated, none unknown), every
// acked event answered, every REST emit answered. A generator that miscounts would make every benchmark
// figure meaningless, so this runs in CI; the benchmark itself does not.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { setupFile } from './lib/fixture.mjs';

const run = promisify(execFile);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const LOAD = path.resolve(HERE, '..', 'load');
const KEY = 'k95-load-smoke-rest-key';

let env;
let binDir;
before(async () => {
    binDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sbload-'));
    // Builds in a few seconds; a failure here is a real failure (libevent-dev, hiredis and OpenSSL are build deps).
    await run(path.join(LOAD, 'build.sh'), [binDir], { timeout: 60000 });
    // The generator connects far faster than a browser: the per-address connect limit would refuse it.
    env = await setupFile({
        tag: 't95',
        args: ['--rate-connections', 'off', '--rate-socket-events', 'off', '--rate-user-events', 'off', '--api-key', KEY],
    });
});
after(async () => {
    await env?.teardown();
    if (binDir) fs.rmSync(binDir, { recursive: true, force: true });
});

async function sbload(scenario, args) {
    const { stdout, stderr } = await run(
        path.join(binDir, 'sbload'),
        [
            scenario,
            '--url', env.url,
            '--redis', env.redisServer.url,
            '--prefix', env.prefix,
            '--server-pid', String(env.node.child.pid),
            '--sources', '127.0.0.1-127.0.0.2',
            '--timeout', '20',
            '--connect-timeout', '10',
            '--drain', '3',
            '--quiet',
            ...args,
        ],
        { timeout: 30000 },
    );
    const lines = stdout.trim().split('\n');
    assert.equal(lines.length, 1, `one JSON line on stdout; stderr: ${stderr}`);
    return JSON.parse(lines[0]);
}

function assertClean(r) {
    assert.equal(r.timed_out, false, 'the scenario ended by itself');
    assert.deepEqual(
        r.errors,
        { server_closed: 0, protocol: 0, connect: 0, redis: 0, other_events: 0 },
        `no errors (last: ${r.last_error})`,
    );
}

test('broadcast: 50 clients (10 % long-polling) x 20 messages arrive exactly once each', async () => {
    const r = await sbload('broadcast', ['--clients', '50', '--polling-pct', '10', '--messages', '20', '--rate', '40']);
    assertClean(r);
    assert.equal(r.ready, 50);
    assert.equal(r.failed, 0);
    assert.equal(r.members, 50);
    assert.equal(r.sent, 20);
    assert.equal(r.expected, 1000);
    assert.equal(r.delivered, 1000);
    assert.equal(r.missing, 0);
    assert.equal(r.duplicates, 0);
    assert.equal(r.bogus, 0);
    assert.equal(r.lat_ms.n, 1000, 'one latency sample per delivery');
    assert.ok(r.lat_ms.p50 > 0 && r.lat_ms.p50 <= r.lat_ms.p99 && r.lat_ms.p99 <= r.lat_ms.max, 'ordered percentiles');
    assert.ok(Array.isArray(r.cpu) && r.cpu.length >= 1, 'per-core CPU reported');
    assert.ok(r.server_cpu.user_s >= 0 && r.server_cpu.sys_s >= 0, 'server CPU read from /proc');
});

test('saturation window: 20 clients x 100 messages, none lost or doubled', async () => {
    const r = await sbload('broadcast', ['--clients', '20', '--rate', '0', '--window', '4', '--messages', '100']);
    assertClean(r);
    assert.equal(r.ready, 20);
    assert.equal(r.delivered, 2000);
    assert.equal(r.missing, 0);
    assert.equal(r.duplicates, 0);
});

test('rest: 100 broadcasts through POST /v1/emit, each answered, each delivered once to 20 clients', async () => {
    const r = await sbload('broadcast', ['--clients', '20', '--rate', '0', '--window', '8', '--messages', '100',
        '--rest-key', KEY, '--rest-conns', '2']);
    assertClean(r);
    assert.equal(r.delivered, 2000);
    assert.equal(r.missing, 0);
    assert.equal(r.duplicates, 0);
    assert.deepEqual(r.rest, { ...r.rest, requests: 100, ok: 100, errors: 0, conns: 2 });
    assert.ok(r.rest.emits_per_s > 0);
    assert.equal(r.rest_ms.n, 100, 'one request time per measured message (the barrier is not counted)');
    assert.ok(r.server_us_per_emit.total > 0, 'server CPU per emit reported');
});

test('acks: every event is answered through <prefix>events and op ack', async () => {
    const r = await sbload('acks', ['--clients', '20', '--duration', '1', '--inflight', '2']);
    assertClean(r);
    assert.equal(r.ready, 20);
    assert.ok(r.acks_ok > 40, `some acks (${r.acks_ok})`);
    assert.equal(r.acks_err, 0);
    assert.equal(r.acks_unanswered, 0);
    assert.equal(r.acks_sent, r.acks_ok, 'answered exactly once each');
    assert.equal(r.backend.acks, r.acks_sent, 'the backend saw and answered each event');
});

function assertEventsExact(r) {
    assert.equal(r.counted_by, 'stream', 'switchboard: counted in <prefix>events by the generator');
    assert.ok(r.events_sent > 0, 'some events');
    assert.equal(r.events_seen, r.events_sent, 'every event seen in the stream');
    assert.equal(r.events_missing, 0);
    assert.equal(r.events_duplicates, 0);
    assert.equal(r.events_bogus, 0);
    assert.equal(r.events_unknown_socket, 0);
    assert.equal(r.clients_missing, 0);
    assert.equal(r.stream_ms.n, r.events_sent, 'one stream latency sample per event');
    assert.ok(r.server_us_per_event && r.server_us_per_event.user >= 0, 'server CPU per event reported');
}

test('events (window): every event lands in <prefix>events exactly once', async () => {
    const r = await sbload('events', ['--clients', '20', '--duration', '1', '--window', '3']);
    assertClean(r);
    assert.equal(r.ready, 20);
    assert.equal(r.emitters, 20);
    assert.equal(r.window, 3);
    assert.ok(r.events_sent > 60, `more than one window's worth (${r.events_sent})`);
    assertEventsExact(r);
});

test('events (rate): 10 of 20 clients emit 400 events/s in total for 1 s', async () => {
    const r = await sbload('events', ['--clients', '20', '--ack-clients', '10', '--duration', '1', '--rate', '400']);
    assertClean(r);
    assert.equal(r.emitters, 10);
    assert.equal(r.window, 0);
    assert.ok(r.events_sent >= 380 && r.events_sent <= 401, `about 400 events (${r.events_sent})`);
    assertEventsExact(r);
});

test('pagefault measures a first touch of fresh memory, one JSON line', async () => {
    const { stdout } = await run(path.join(binDir, 'pagefault'), ['4'], { timeout: 30000 });
    const r = JSON.parse(stdout.trim());
    assert.equal(r.mib, 4);
    for (const k of ['us_per_page_faulted', 'us_per_page_populated', 'us_per_page_thp'])
        assert.ok(Number.isFinite(r[k]) && r[k] > 0, `${k} is a positive figure: ${stdout}`);
    assert.equal(typeof r.thp_madvise, 'boolean');
    await assert.rejects(run(path.join(binDir, 'pagefault'), ['0']), (e) => e.code === 2);
});
