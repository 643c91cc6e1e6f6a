// Webhook corners the other suites leave out (found by scripts/coverage.sh): a backend nobody listens for (the
// connection is refused on every attempt) and a backend named by an IPv6 address.

import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, test } from 'node:test';

import { emitWithAckArgs } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';

let env;
let v6; // an HTTP backend on [::1]
const v6Bodies = [];
let closedPort;
before(async () => {
    // A port that was free a moment ago and has nothing listening now.
    const probe = net.createServer();
    await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve));
    closedPort = probe.address().port;
    await new Promise((resolve) => probe.close(resolve));

    v6 = http.createServer((req, res) => {
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => {
            v6Bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify(['via-ipv6']));
        });
    });
    await new Promise((resolve) => v6.listen(0, '::1', resolve));

    env = await setupFile({
        tag: 't67w',
        args: [
            '--threads', '1',
            '--webhook', `down*=http://127.0.0.1:${closedPort}/hook`,
            '--webhook', `six*=http://[::1]:${v6.address().port}/hook`,
            '--webhook-retries', '2',
            '--webhook-backoff', '20ms',
            '--webhook-timeout', '1s',
        ],
    });
});
after(async () => {
    await env?.teardown();
    v6?.close();
});

test('a webhook backend that refuses connections: retried, then the client gets backend_unavailable', async (t) => {
    const s = await env.client(t);
    const started = Date.now();
    const [ack, ...rest] = await emitWithAckArgs(s, 'down-1', ['x'], 8000);
    assert.deepEqual(rest, []);
    assert.equal(ack?.error?.code, 'backend_unavailable', JSON.stringify(ack));
    assert.equal(typeof ack.error.message, 'string');
    // Two retries after the first attempt, each after a backoff of about 20 ms or more.
    assert.ok(Date.now() - started >= 30, `answered after ${Date.now() - started} ms: the retries were skipped`);
    assert.ok(s.connected);
});

test('a webhook backend named by an IPv6 address is called and answers the ack', async (t) => {
    const s = await env.client(t);
    assert.deepEqual(await emitWithAckArgs(s, 'six-1', [1, 2]), ['via-ipv6']);
    const body = v6Bodies.at(-1);
    assert.equal(body.event, 'six-1');
    assert.equal(body.socket, s.id);
});
