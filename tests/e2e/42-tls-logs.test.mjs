// TLS listener (issue 4, part 7) and log hygiene (issue 4, part 4; issue 6, part 2):
// wss/https with --tls-cert/--tls-key, the certificate reloaded on SIGHUP; logs
// are pino-shaped JSON lines that never contain tokens, API keys, secrets,
// payloads or full client addresses.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { setupFile } from './lib/fixture.mjs';
import { emitWithAckArgs, sioClose, sioConnect } from './lib/clients.mjs';
import { claims, sign } from './lib/jwt.mjs';
import { waitUntil } from './lib/util.mjs';

const SECRET = 'jwt-secret-never-logged-42';
const KEY = 'api-key-never-logged-42';
let env;
let dir;

function makeCert(name) {
    const key = path.join(dir, `${name}.key`), crt = path.join(dir, `${name}.crt`);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', crt, '-days', '1',
        '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    return { key, crt };
}

before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-tls-'));
    const first = makeCert('first');
    // The node reads these paths again on SIGHUP: copy so the test can swap them.
    fs.copyFileSync(first.key, path.join(dir, 'live.key'));
    fs.copyFileSync(first.crt, path.join(dir, 'live.crt'));
    env = await setupFile({
        tag: 't42',
        args: ['--tls-cert', path.join(dir, 'live.crt'), '--tls-key', path.join(dir, 'live.key'), '--log-level', 'debug',
            '--jwt-secret', SECRET, '--api-key', KEY, '--ack-timeout', '500'],
    });
});
after(async () => {
    await env?.teardown();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const httpsUrl = () => env.url.replace(/^http:/, 'https:');

function peerCN() {
    return new Promise((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: env.node.port, rejectUnauthorized: false }, () => {
            const cn = s.getPeerCertificate().subject.CN;
            s.end();
            resolve(cn);
        });
        s.on('error', reject);
    });
}

function get(pathname, headers = {}) {
    return new Promise((resolve, reject) => {
        https.get(`${httpsUrl()}${pathname}`, { rejectUnauthorized: false, headers }, (res) => {
            let body = '';
            res.on('data', (d) => (body += d));
            res.on('end', () => resolve({ status: res.statusCode, body }));
        }).on('error', reject);
    });
}

test('Socket.IO over wss and the REST API over https', async (t) => {
    const token = sign(claims({ sub: 'tls-user' }), { secret: SECRET });
    const s = await sioConnect(httpsUrl(), '/', { auth: { token }, rejectUnauthorized: false });
    t.after(() => sioClose(s));
    assert.ok(s.connected);
    const r = await get('/v1/stats', { Authorization: `Bearer ${KEY}` });
    assert.equal(r.status, 200);
    const plain = await fetch(`http://127.0.0.1:${env.node.port}/healthz`).then(() => 'answered', () => 'refused');
    assert.equal(plain, 'refused', 'no cleartext HTTP on a TLS listener');
});

test('SIGHUP loads a new certificate for new connections', async () => {
    assert.equal(await peerCN(), 'first');
    const second = makeCert('second');
    fs.copyFileSync(second.key, path.join(dir, 'live.key'));
    fs.copyFileSync(second.crt, path.join(dir, 'live.crt'));
    env.node.child.kill('SIGHUP');
    await waitUntil(async () => (await peerCN()) === 'second', 5000, 'the new certificate');
});

test('the log is pino-shaped JSON and holds no token, key, secret, payload or full client address', async (t) => {
    const token = sign(claims({ sub: 'log-user' }), { secret: SECRET });
    const s = await sioConnect(httpsUrl(), '/', { auth: { token }, rejectUnauthorized: false });
    t.after(() => sioClose(s));
    await emitWithAckArgs(s, 'secret-event', ['PAYLOAD-MARKER-42'], 15000).catch(() => {});
    s.emit('42["bad', 1); // harmless, just more traffic
    await get('/v1/rooms', { Authorization: `Bearer ${KEY}` });
    await get('/v1/rooms', { Authorization: 'Bearer wrong-key-marker-42' });
    await sioConnect(httpsUrl(), '/', { auth: { token: `${token}x` }, rejectUnauthorized: false }).catch(() => {});
    sioClose(s);
    await waitUntil(() => {
        const log = fs.readFileSync(env.node.logFile, 'utf8');
        return log.includes('socket disconnected') && log.includes('connect refused');
    }, 5000, 'the debug lines of the disconnect and of the refused token');
    // The harness writes the command line (with the secrets) as the file's first line, starting with "# ".
    const text = fs.readFileSync(env.node.logFile, 'utf8').split('\n').filter((l) => !l.startsWith('# ')).join('\n');
    for (const secret of [token, SECRET, KEY, 'wrong-key-marker-42', 'PAYLOAD-MARKER-42', '"remote":"127.0.0.1"'])
        assert.ok(!text.includes(secret), `the log contains ${secret.slice(0, 24)}…`);
    const lines = text.split('\n').filter((l) => l.startsWith('{'));
    assert.ok(lines.length > 5);
    for (const line of lines) {
        const o = JSON.parse(line);
        assert.deepEqual(Object.keys(o).slice(0, 5), ['level', 'time', 'pid', 'hostname', 'msg'], line);
        assert.ok([10, 20, 30, 40, 50, 60].includes(o.level) && Number.isInteger(o.time), line);
    }
    assert.ok(lines.some((l) => l.includes('"remote":"127.0.0.0"')), 'client addresses appear masked');
});
