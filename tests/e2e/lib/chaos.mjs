// Helpers for the failover tests (79-failover): a Redis that keeps its data
// across a restart on the same port, killing a node on purpose, reading a
// node's memory and metrics, a paced broadcaster of numbered messages, and a
// per-client log of what it received and how it (re)connected.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { redisPing, stopChild } from './harness.mjs';
import { freePort, waitUntil } from './util.mjs';

const REDIS_READY_TIMEOUT_MS = 10000;

const children = new Set();
process.on('exit', () => {
    for (const c of children) {
        try {
            c.kill('SIGKILL');
        } catch {
            // already gone
        }
    }
});


// A redis-server that writes every change to an append-only file (fsync on every write) in a private directory,
// so that stop() + start() on the same port brings back every key and stream, as a production Redis with
// persistence would. Resolves {url, port, dir, start(), stop(), kill()}.
export async function startDurableRedis() {
    const port = await freePort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-e2e-redis-'));
    const handle = {
        port,
        dir,
        url: `redis://127.0.0.1:${port}`,
        child: null,
        stderr: '',
        async start() {
            const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
                '--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir, '--loglevel', 'warning'],
            { stdio: ['ignore', 'ignore', 'pipe'] });
            children.add(child);
            child.once('exit', () => children.delete(child));
            child.stderr.on('data', (d) => {
                handle.stderr = (handle.stderr + d.toString()).slice(-4000);
            });
            this.child = child;
            const deadline = Date.now() + REDIS_READY_TIMEOUT_MS;
            while (!(await redisPing(port))) {
                if (child.exitCode !== null || child.signalCode !== null)
                    throw new Error(`redis-server on port ${port} exited: ${handle.stderr}`);
                if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer PING`);
                await new Promise((r) => setTimeout(r, 50));
            }
        },
        // SIGTERM: Redis finishes its append-only file and exits; its clients see their connections close.
        async stop() {
            const st = await stopChild(this.child, 10000);
            this.child = null;
            return st;
        },
        async remove() {
            if (this.child) await this.stop();
            fs.rmSync(dir, { recursive: true, force: true });
        },
    };
    await handle.start();
    return handle;
}

// The node id a switchboard node logged when it started ("switchboard listening", field "node").
export function nodeId(node) {
    const text = fs.readFileSync(node.logFile, 'utf8') + node.stderrTail();
    const m = /"msg":"switchboard listening"[^\n]*"node":"([^"]+)"/.exec(text) ||
        /"node":"([^"]+)"[^\n]*"msg":"switchboard listening"/.exec(text);
    if (!m) throw new Error(`no "switchboard listening" line with a node id in ${node.logFile}`);
    return m[1];
}

// Kills a node with SIGKILL and waits until it is gone. Marked as stopped on purpose, so that the fixture's
// teardown does not count it as a crash.
export async function killNode(node) {
    const gone = new Promise((r) => node.child.once('exit', r));
    node.child.kill('SIGKILL');
    node.exit = { code: 0, signal: 'SIGKILL' };
    await gone;
}

// A field of /proc/<pid>/status in bytes ("VmRSS", "VmHWM" = peak RSS since start).
export function procStatusBytes(pid, field) {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
    return Number(m[1]) * 1024;
}

// The value of one series of a Prometheus text exposition (labels: exact set given as an object), or undefined.
export function metricValue(text, name, labels = {}) {
    const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',');
    for (const line of text.split('\n')) {
        if (line.startsWith('#')) continue;
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
        if (!m || m[1] !== name) continue;
        const got = (m[2] || '').split(',').filter(Boolean).sort().join(',');
        if (got === want) return Number(m[3]);
    }
    return undefined;
}

// Emits `event` with args [1], [2], ... to `room` through the bus, one XADD after the other (so the bus order is
// the numbering) at `perSecond`, until stop(). stop() resolves the last number sent.
export function startBroadcast(be, { room, event, perSecond = 20 }) {
    let n = 0;
    let running = true;
    const errors = [];
    const loop = (async () => {
        const period = 1000 / perSecond;
        const t0 = Date.now();
        while (running) {
            n += 1;
            try {
                await be.emit({ event, args: [n], rooms: [room] });
            } catch (e) {
                errors.push(e);
                n -= 1; // not on the bus: the next one takes its number
            }
            const wait = t0 + n * period - Date.now();
            if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        }
    })();
    return {
        get sent() {
            return n;
        },
        errors,
        async stop() {
            running = false;
            await loop;
            return n;
        },
    };
}

// Follows one socket.io-client Socket: the numbers of `event` it received (first argument), every "connect"
// with the socket id and `recovered`, every "disconnect" with its reason and time.
export function follow(socket, event) {
    const log = { socket, got: [], offsets: [], connects: [], disconnects: [] };
    socket.on(event, (num, offset) => {
        log.got.push(num);
        log.offsets.push(offset);
    });
    socket.on('connect', () => log.connects.push({ id: socket.id, recovered: socket.recovered, at: Date.now() }));
    socket.on('disconnect', (reason) => log.disconnects.push({ reason, at: Date.now() }));
    return log;
}

// What is wrong with a list of received numbers that should be exactly 1..last, as a short text ('' when fine).
export function sequenceProblems(got, last) {
    const count = new Map();
    for (const n of got) count.set(n, (count.get(n) || 0) + 1);
    const missing = [];
    const dup = [];
    for (let i = 1; i <= last; i++) {
        const c = count.get(i) || 0;
        if (c === 0) missing.push(i);
        if (c > 1) dup.push(i);
    }
    let disorder = -1;
    for (let i = 1; i < got.length; i++) {
        if (got[i] <= got[i - 1]) {
            disorder = i;
            break;
        }
    }
    const out = [];
    if (missing.length) out.push(`missing ${missing.length}: ${missing.slice(0, 20).join(',')}`);
    if (dup.length) out.push(`duplicated ${dup.length}: ${dup.slice(0, 20).join(',')}`);
    if (disorder >= 0) out.push(`out of order at index ${disorder}: ...${got.slice(Math.max(0, disorder - 3), disorder + 3)}`);
    const extra = got.filter((n) => !(n >= 1 && n <= last));
    if (extra.length) out.push(`unexpected numbers: ${extra.slice(0, 10).join(',')}`);
    return out.join('; ');
}

// Waits until every log has received 1..last (or `ms` passed); never throws: the caller asserts the details.
export async function settle(logs, last, ms) {
    await waitUntil(() => logs.every((l) => l.got.length >= last && l.socket.connected), ms, 'every client to catch up')
        .catch(() => {});
}
