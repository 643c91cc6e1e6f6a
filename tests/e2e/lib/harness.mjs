// Process harness: starts a private redis-server and switchboard processes for
// one test file, waits until they are ready (with bounds), and stops them at
// the end, also when a test fails or the test process dies.
//
// Environment:
//   SWITCHBOARD_BIN             path of the switchboard binary (default: <repo>/build/switchboard)
//   SWITCHBOARD_TEST_REDIS_URL  use this Redis instead of starting one (prefixes then get the pid appended)
//   SWITCHBOARD_E2E_VERBOSE=1   copy switchboard's stderr to the test's stderr as it comes
// Each switchboard's stderr is also written to a log file under
// $TMPDIR/switchboard-e2e/ whose path appears in every harness error message.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { request } from './http.mjs';
import { freePort } from './util.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..', '..');
const LOG_DIR = path.join(os.tmpdir(), 'switchboard-e2e');

const READY_TIMEOUT_MS = 15000;
const STOP_TIMEOUT_MS = 5000;
const REDIS_READY_TIMEOUT_MS = 10000;

// Every child we start, so that a crash of the test process still kills them.
const live = new Set();
process.on('exit', () => {
    for (const child of live) {
        try {
            child.kill('SIGKILL');
        } catch {
            // already gone
        }
    }
});

export function switchboardBin() {
    const bin = process.env.SWITCHBOARD_BIN || path.join(REPO, 'build', 'switchboard');
    if (!fs.existsSync(bin)) {
        throw new Error(`switchboard binary not found at ${bin} (build it, or set SWITCHBOARD_BIN)`);
    }
    return path.resolve(bin);
}

function track(child) {
    live.add(child);
    child.once('exit', () => live.delete(child));
    return child;
}

function exited(child) {
    return child.exitCode !== null || child.signalCode !== null;
}

// SIGTERM, then SIGKILL when it has not exited within `ms`. Resolves when gone.
// Resolves {code, signal} of the exit.
export async function stopChild(child, ms = STOP_TIMEOUT_MS) {
    if (!child) return { code: null, signal: null };
    if (exited(child)) return { code: child.exitCode, signal: child.signalCode };
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    let timer;
    const late = new Promise((r) => {
        timer = setTimeout(r, ms, 'late');
    });
    const outcome = await Promise.race([gone, late]);
    clearTimeout(timer);
    if (outcome === 'late' && !exited(child)) {
        child.kill('SIGKILL');
        await gone;
    }
    return { code: child.exitCode, signal: child.signalCode };
}

// Sends PING over a raw connection; true when +PONG comes back.
// Resolves true when a Redis answers PING on 127.0.0.1:port within 500 ms.
export function redisPing(port) {
    return new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port });
        let buf = '';
        const done = (ok) => {
            s.destroy();
            resolve(ok);
        };
        s.setTimeout(500, () => done(false));
        s.on('error', () => done(false));
        s.on('connect', () => s.write('PING\r\n'));
        s.on('data', (d) => {
            buf += d.toString();
            if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
        });
    });
}

// Starts a throw-away redis-server (or returns the one from
// SWITCHBOARD_TEST_REDIS_URL). Resolves {url, external, stop()}.
export async function startRedis() {
    if (process.env.SWITCHBOARD_TEST_REDIS_URL) {
        return { url: process.env.SWITCHBOARD_TEST_REDIS_URL, external: true, stop: async () => {} };
    }
    const port = await freePort();
    const child = track(
        spawn(
            'redis-server',
            ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'],
            { stdio: ['ignore', 'ignore', 'pipe'] },
        ),
    );
    let stderr = '';
    child.stderr.on('data', (d) => {
        stderr = (stderr + d.toString()).slice(-4000);
    });
    const spawnError = new Promise((_, reject) => child.once('error', reject));
    spawnError.catch(() => {});
    const deadline = Date.now() + REDIS_READY_TIMEOUT_MS;
    for (;;) {
        if (exited(child)) throw new Error(`redis-server exited early: ${stderr}`);
        const ok = await Promise.race([redisPing(port), spawnError]);
        if (ok) break;
        if (Date.now() > deadline) {
            await stopChild(child);
            throw new Error(`redis-server on port ${port} did not answer PING within ${REDIS_READY_TIMEOUT_MS} ms`);
        }
        await new Promise((r) => setTimeout(r, 50));
    }
    return { url: `redis://127.0.0.1:${port}`, port, external: false, child, stop: () => stopChild(child) };
}

// A Redis key prefix unique to this test file (and to this run when the Redis
// is shared, so that streams of earlier runs never show up).
export function filePrefix(tag, redis) {
    return redis.external ? `${tag}.${process.pid}.${Date.now() % 100000}:` : `${tag}:`;
}

// Starts switchboard and waits for /healthz and /readyz to answer 200.
// opts: {redisUrl, prefix, port?, args?: string[], namespaces?: string[]}
// Resolves a handle {port, url, child, logFile, node?, stderrTail(), stop()}.
export async function startSwitchboard(opts) {
    const bin = switchboardBin();
    const port = opts.port || (await freePort());
    const args = [
        '--listen', `127.0.0.1:${port}`,
        '--redis', opts.redisUrl,
        '--redis-prefix', opts.prefix,
        '--threads', String(opts.threads || 2),
        // Test files open many connections from 127.0.0.1 in bursts; the per-address connection limit has its
        // own tests (which pass --rate-connections again: the last value wins).
        '--rate-connections', 'off',
        // Stopping a node drains it; tests stop nodes with clients still open, so keep that short.
        '--drain-timeout', '1000',
        // Connection state recovery appends each broadcast's offset to its arguments (as Socket.IO does); suites
        // that compare argument lists exactly run without it, the recovery suites turn it on again.
        '--recovery-window', '0',
        // Multi-node files leave clients unevenly spread for longer than two rounds; rebalancing closing some of
        // them would make those tests flaky. 78-rebalance turns it on again (the last value wins).
        '--rebalance', 'off',
    ];
    for (const nsp of opts.namespaces || []) args.push('--namespace', nsp);
    args.push(...(opts.args || []));

    fs.mkdirSync(LOG_DIR, { recursive: true });
    const logFile = path.join(
        LOG_DIR,
        `${opts.prefix.replace(/[^A-Za-z0-9_.-]/g, '_')}${port}-${process.pid}-${Date.now()}.log`,
    );
    const log = fs.createWriteStream(logFile);
    log.write(`# ${bin} ${args.join(' ')}\n`);

    const child = track(spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let tail = '';
    const onOutput = (d) => {
        log.write(d);
        tail = (tail + d.toString()).slice(-6000);
        if (process.env.SWITCHBOARD_E2E_VERBOSE) process.stderr.write(d);
    };
    child.stdout.on('data', onOutput);
    child.stderr.on('data', onOutput);
    child.once('exit', () => log.end());
    const spawnError = new Promise((_, reject) => child.once('error', reject));
    spawnError.catch(() => {});

    const handle = {
        port,
        url: `${args.includes('--tls-cert') ? 'https' : 'http'}://127.0.0.1:${port}`,
        child,
        logFile,
        args,
        stderrTail: () => tail,
        exit: null, // {code, signal} once stopped through stop()
        async stop() {
            if (!this.exit) this.exit = await stopChild(child);
            return this.exit;
        },
    };
    const fail = async (why) => {
        await stopChild(child);
        throw new Error(`switchboard ${why}; log ${logFile}; last output:\n${tail}`);
    };

    const deadline = Date.now() + READY_TIMEOUT_MS;
    let last = 'no answer';
    for (;;) {
        if (exited(child)) return fail(`exited early (code ${child.exitCode}, signal ${child.signalCode})`);
        try {
            const health = await Promise.race([request(`${handle.url}/healthz`, { timeoutMs: 1000 }), spawnError]);
            if (health.status === 200) {
                const ready = await request(`${handle.url}/readyz`, { timeoutMs: 1000 });
                if (ready.status === 200) return handle;
                last = `/readyz answered ${ready.status}`;
            } else {
                last = `/healthz answered ${health.status}`;
            }
        } catch (e) {
            last = e.message;
        }
        if (Date.now() > deadline) return fail(`not ready within ${READY_TIMEOUT_MS} ms (${last})`);
        await new Promise((r) => setTimeout(r, 50));
    }
}
