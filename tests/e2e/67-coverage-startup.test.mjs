// Start-up refusals (found by scripts/coverage.sh): a bad flag, a bad Redis URL, a keys file with a short key, a
// port already taken, and Redis servers that cannot hold the Functions library (too old, busy, another build's
// library, a strange answer), a broken certificate. Each one must exit non-zero at once with a message saying why.
// Also: SIGHUP with the keys file or the certificate broken keeps the previous ones in force, and a node whose Redis
// went away says so and refuses what needs Redis.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { emitWithAckArgs, RawClient, sioClose, sioConnect } from './lib/clients.mjs';
import { startRedis, startSwitchboard, stopChild, switchboardBin } from './lib/harness.mjs';
import { request } from './lib/http.mjs';
import { freePort, uniq, waitUntil } from './lib/util.mjs';

let redis;
let dir;
before(async () => {
    redis = await startRedis();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-t67s-'));
});
after(async () => {
    await redis?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

// Runs the binary to its exit; resolves {code, signal, out} (stdout and stderr together).
function run(args, ms = 15000) {
    return new Promise((resolve, reject) => {
        const child = spawn(switchboardBin(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (out += d));
        const timer = setTimeout(() => {
            child.kill('SIGKILL');
            reject(new Error(`switchboard ${args.join(' ')} did not exit within ${ms} ms:\n${out}`));
        }, ms);
        child.once('error', reject);
        // 'close', not 'exit': 'exit' can come before the pipes are drained, and the last log line with it.
        child.once('close', (code, signal) => {
            clearTimeout(timer);
            resolve({ code, signal, out });
        });
    });
}

// The JSON log record with msg `msg`, or undefined.
function record(out, msg) {
    for (const line of out.split('\n')) {
        try {
            const r = JSON.parse(line);
            if (r.msg === msg) return r;
        } catch {
            // not a log record
        }
    }
    return undefined;
}

async function base(extra = []) {
    const listen = `127.0.0.1:${await freePort()}`;
    return ['--listen', listen, '--threads', '1', '--redis-prefix', `${uniq('t67s')}:`, ...extra];
}

test('an unknown flag exits 2 with the message on stderr', async () => {
    const r = await run(['--no-such-flag']);
    assert.equal(r.code, 2, r.out);
    assert.match(r.out, /no-such-flag/);
});

test('a --redis URL that does not parse exits 2 saying so', async () => {
    const r = await run([...(await base()), '--redis', 'http://127.0.0.1:6379']);
    assert.equal(r.code, 2, r.out);
    assert.match(r.out, /^switchboard: --redis: /m);
});

test('an --api-keys-file holding a short key refuses to start', async () => {
    const file = path.join(dir, 'short-keys');
    fs.writeFileSync(file, 'a-long-enough-key\nshort\n');
    const r = await run([...(await base()), '--redis', redis.url, '--api-keys-file', file]);
    assert.equal(r.code, 1, r.out);
    assert.equal(record(r.out, 'cannot start')?.error, '--api-keys-file holds a key shorter than 8 characters');
});

test('a port already taken refuses to start', async () => {
    const taken = net.createServer();
    await new Promise((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
        const port = taken.address().port;
        const r = await run(['--listen', `127.0.0.1:${port}`, '--threads', '1', '--redis', redis.url,
            '--api-key', 'a-long-enough-key']);
        assert.equal(r.code, 1, r.out);
        assert.ok(record(r.out, 'cannot start'), r.out);
    } finally {
        taken.close();
    }
});

test('a port another switchboard listens on (SO_REUSEPORT) refuses to start rather than share it', async (t) => {
    const first = await startSwitchboard({ redisUrl: redis.url, prefix: `${uniq('t67s')}:`, threads: 2 });
    t.after(() => stopChild(first.child));
    const r = await run(['--listen', `127.0.0.1:${first.port}`, '--threads', '2', '--redis', redis.url,
        '--api-key', 'a-long-enough-key']);
    assert.equal(r.code, 1, r.out);
    assert.equal(record(r.out, 'cannot start')?.error,
        '--listen: the address is already in use (another process listens on it)');
    assert.equal((await request(`${first.url}/healthz`)).status, 200, 'the first one still serves');
});

// A stand-in Redis that answers each command with `answer(command words)` (a RESP string; null hangs up).
async function fakeRedis(answer) {
    const server = net.createServer((sock) => {
        let buf = '';
        sock.on('data', (d) => {
            buf += d.toString('latin1');
            // Commands come one at a time (hiredis's blocking API): answer once a whole array is in.
            for (;;) {
                const words = parseCommand(buf);
                if (words === null) return;
                buf = buf.slice(words.consumed);
                const a = answer(words.args.map((w) => w.toUpperCase()));
                if (a === null) {
                    sock.destroy();
                    return;
                }
                sock.write(a);
            }
        });
        sock.on('error', () => {});
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { url: `redis://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

// Parses one RESP array of bulk strings from the start of `s`; null when incomplete.
function parseCommand(s) {
    const m = /^\*(\d+)\r\n/.exec(s);
    if (!m) return null;
    let at = m[0].length;
    const args = [];
    for (let i = 0; i < Number(m[1]); i++) {
        const h = /^\$(\d+)\r\n/.exec(s.slice(at));
        if (!h) return null;
        const len = Number(h[1]);
        const start = at + h[0].length;
        if (s.length < start + len + 2) return null;
        args.push(s.slice(start, start + len));
        at = start + len + 2;
    }
    return { args, consumed: at };
}

// Answers FUNCTION LOAD with `load` (null hangs up) and FCALL with `fcall`; anything else (AUTH, PING) with +OK.
const answering = (load, fcall = '$0\r\n\r\n') => (w) =>
    (w[0] === 'FUNCTION' ? load : w[0] === 'FCALL' ? fcall : '+OK\r\n');
const functionsCases = [
    ['Redis 6 (no FUNCTION command)', answering("-ERR unknown command 'FUNCTION'\r\n"),
        /^Redis 7 or newer is required.*\(FUNCTION LOAD failed\): ERR unknown command/],
    ['a busy server', answering('-BUSY Redis is busy running a script\r\n'),
        /^FUNCTION LOAD failed: BUSY Redis is busy/],
    ['FCALL unknown', answering('+sb\r\n', "-ERR unknown command 'FCALL'\r\n"),
        /^Redis 7 or newer is required.*\(FCALL failed\)/],
    ['the library missing after the load', answering('+sb\r\n', '-ERR Function not found\r\n'),
        /^the switchboard Functions library is not loaded$/],
    ['another build\'s library', answering('+sb\r\n', '$5\r\n0.0.0\r\n'),
        /^the loaded switchboard Functions library is version 0\.0\.0, this build needs /],
    ['a strange FCALL answer', answering('+sb\r\n', ':1\r\n'), /^FCALL sb_version returned an unexpected reply type$/],
    ['an FCALL error', answering('+sb\r\n', '-LOADING still loading\r\n'),
        /^FCALL sb_version failed: LOADING still loading$/],
    ['a server that hangs up', answering(null), /^FUNCTION LOAD failed: /],
];

for (const [name, answer, why] of functionsCases) {
    test(`refuses to serve when the Functions library cannot be loaded: ${name}`, async (t) => {
        const fake = await fakeRedis(answer);
        t.after(() => fake.close());
        const r = await run([...(await base()), '--redis', fake.url, '--api-key', 'a-long-enough-key']);
        assert.equal(r.code, 1, r.out);
        const rec = record(r.out, 'refusing to serve: the Redis Functions library could not be loaded');
        assert.ok(rec, r.out);
        assert.match(rec.error, why);
    });
}

test('SIGHUP with the keys file gone keeps the keys in force', async (t) => {
    const file = path.join(dir, 'keys');
    const key = `k-${uniq('key')}`;
    fs.writeFileSync(file, `${key}\n`);
    const node = await startSwitchboard({ redisUrl: redis.url, prefix: `${uniq('t67s')}:`, threads: 1,
        args: ['--api-keys-file', file] });
    t.after(() => stopChild(node.child));
    const stats = () => request(`${node.url}/v1/stats`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal((await stats()).status, 200);
    fs.rmSync(file);
    node.child.kill('SIGHUP');
    await waitUntil(() => /API keys not reloaded/.test(node.stderrTail()), 5000, 'the refused reload to be logged');
    const rec = record(node.stderrTail(), 'SIGHUP: API keys not reloaded');
    assert.equal(rec?.error, 'cannot open --api-keys-file');
    assert.equal((await stats()).status, 200, 'the previous key still works');
    assert.equal((await node.stop()).code, 0, 'clean exit');
});

function makeCert(name) {
    const key = path.join(dir, `${name}.key`), crt = path.join(dir, `${name}.crt`);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', crt, '-days', '1',
        '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    return { key, crt };
}

test('a certificate that is not PEM, or a key that does not match it, refuses to start', async () => {
    const a = makeCert('a');
    const b = makeCert('b');
    const junk = path.join(dir, 'junk.crt');
    fs.writeFileSync(junk, 'not a certificate\n');
    const common = [...(await base()), '--redis', redis.url, '--api-key', 'a-long-enough-key'];
    let r = await run([...common, '--tls-cert', junk, '--tls-key', a.key]);
    assert.equal(r.code, 1, r.out);
    assert.equal(record(r.out, 'cannot start')?.error, '--tls-cert: cannot load the certificate chain (PEM)');
    r = await run([...common, '--tls-cert', a.crt, '--tls-key', b.key]);
    assert.equal(r.code, 1, r.out);
    assert.equal(record(r.out, 'cannot start')?.error,
        '--tls-key: cannot load the private key, or it does not match the certificate');
});

test('SIGHUP with a broken certificate keeps the previous one; an unreadable dashboard folder is not served',
    async (t) => {
        const a = makeCert('live');
        const node = await startSwitchboard({ redisUrl: redis.url, prefix: `${uniq('t67s')}:`, threads: 1,
            args: ['--tls-cert', a.crt, '--tls-key', a.key, '--dashboard-dir', path.join(dir, 'no-such-dashboard')] });
        t.after(() => stopChild(node.child));
        assert.ok(record(node.stderrTail(), 'dashboard folder not readable: /dashboard/ is not served'),
            node.stderrTail());
        assert.equal((await request(`${node.url}/dashboard/`)).status, 404);
        fs.writeFileSync(a.crt, 'broken\n');
        node.child.kill('SIGHUP');
        await waitUntil(() => /TLS certificate not reloaded/.test(node.stderrTail()), 5000, 'the refused reload');
        const res = await request(`${node.url}/healthz`);
        assert.equal(res.status, 200, 'still served over TLS with the previous certificate');
        assert.equal((await node.stop()).code, 0, 'clean exit');
    });

test('with Redis gone: /readyz says so, events and namespace connects are refused, the node still stops cleanly',
    async (t) => {
        const own = await startRedis();
        if (own.external) {
            t.skip('needs a private redis-server it can stop (SWITCHBOARD_TEST_REDIS_URL is set)');
            return;
        }
        t.after(() => own.stop());
        const node = await startSwitchboard({ redisUrl: own.url, prefix: `${uniq('t67s')}:`, threads: 1 });
        t.after(() => stopChild(node.child));
        const s = await sioConnect(node.url);
        t.after(() => sioClose(s));
        const raw = await RawClient.open(node.url);
        t.after(() => raw.close());

        await own.stop();
        await waitUntil(async () => (await request(`${node.url}/readyz`)).status === 503, 5000, '/readyz to fail');
        assert.deepEqual(JSON.parse((await request(`${node.url}/readyz`)).text), { status: 'redis unavailable' });

        const [ack] = await emitWithAckArgs(s, 'note', ['x']);
        assert.equal(ack?.error?.code, 'backend_unavailable', JSON.stringify(ack));
        const answer = await raw.connect('/');
        assert.ok(answer.startsWith('44{'), answer);
        assert.equal(JSON.parse(answer.slice(2)).message, 'Service unavailable');

        assert.equal((await node.stop()).code, 0, 'clean exit without Redis');
    });
