// docs/examples/backend.mjs, the Node backend of docs/backends.md, runs as
// documented against a real node: it greets and seats new clients, answers
// "echo" acks through the bus, relays "chat" through the REST API, and
// acknowledges what it handled in its consumer group.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { keys } from './lib/backend.mjs';
import { io } from 'socket.io-client';

import { emitWithAckArgs, nextEvent, sioClose } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { stopChild } from './lib/harness.mjs';
import { quietPeriod, record, waitFor, waitUntil } from './lib/util.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXAMPLE = path.resolve(HERE, '..', '..', 'docs', 'examples', 'backend.mjs');
const KEY = 'backend-example-key';
const GROUP = 'example-group';

let env;
let backend; // {child, output()}
let workDir;

// Runs a copy of the example next to a node_modules link to this suite's packages, as a reader would run it next to
// their own `npm install redis`. Resolves once it says it is ready.
async function startExample() {
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-backend-example-'));
    fs.copyFileSync(EXAMPLE, path.join(workDir, 'backend.mjs'));
    fs.symlinkSync(path.join(HERE, 'node_modules'), path.join(workDir, 'node_modules'), 'dir');
    const child = spawn(process.execPath, ['backend.mjs'], {
        cwd: workDir,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
            ...process.env,
            API_URL: env.url,
            SWITCHBOARD_API_KEY: KEY,
            REDIS_URL: env.redisServer.url,
            SWITCHBOARD_REDIS_PREFIX: env.prefix,
            GROUP,
            CONSUMER: 'test-consumer',
        },
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    const ready = waitUntil(() => out.includes('backend ready'), 10000, 'the example to print "backend ready"');
    const early = exited.then((code) => {
        throw new Error(`the example exited early (code ${code}):\n${out}`);
    });
    await Promise.race([ready, early]);
    early.catch(() => {});
    return { child, output: () => out, exited };
}

before(async () => {
    env = await setupFile({ tag: 't52', args: ['--api-key', KEY] });
    backend = await startExample();
});
after(async () => {
    if (backend) await stopChild(backend.child);
    if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
    await env?.teardown();
});

test('a new client gets "welcome" (REST) and is put in the lobby (XADD join)', async (t) => {
    // Listening from the first packet on: the greeting can come right after the CONNECT answer.
    const c = io(env.url, { forceNew: true, reconnection: false, transports: ['websocket'] });
    t.after(() => sioClose(c));
    const [greeting] = await nextEvent(c, 'welcome', 5000);
    assert.deepEqual(greeting, { user: c.id }, 'anonymous mode: the user id is the socket id');
    await waitUntil(async () => env.redis.sIsMember(keys.room(env.prefix, '/', 'lobby'), c.id), 5000,
        'the socket to be in room lobby');
});

test('"echo" with an ack: the ack comes back through the bus', async (t) => {
    const s = await env.client(t);
    const ack = await emitWithAckArgs(s, 'echo', ['hello', 42, { a: [1] }], 5000);
    assert.deepEqual(ack, ['echo', 'hello', 42, { a: [1] }]);
});

test('"chat" reaches the rest of the lobby (REST emit) and is acked (REST acks)', async (t) => {
    const a = await env.client(t);
    const b = await env.client(t);
    for (const s of [a, b]) {
        await waitUntil(async () => env.redis.sIsMember(keys.room(env.prefix, '/', 'lobby'), s.id), 5000, 'lobby')
            .catch(async (e) => {
                const dump = async (k) => JSON.stringify(await env.redis.sendCommand(['XRANGE', `${env.prefix}${k}`, '-', '+'])).split(s.id).length - 1;
                throw new Error(`${e.message}; sid ${s.id}; mentions in events ${await dump('events')}, bus ${await dump('bus')}; ` +
                    `pending ${JSON.stringify(await env.redis.sendCommand(['XPENDING', `${env.prefix}events`, GROUP]))}; ` +
                    `hash ${JSON.stringify(await env.redis.hGetAll(keys.sock(env.prefix, s.id)))}; ` +
                    `rooms ${JSON.stringify(await env.redis.sMembers(keys.sockRooms(env.prefix, s.id)))}; backend output:\n${backend.output()}`);
            });
    }
    const atA = record(a, 'chat');
    const atB = nextEvent(b, 'chat', 5000);
    const ack = await emitWithAckArgs(a, 'chat', [{ text: 'hi all' }], 5000);
    assert.deepEqual(ack, [{ ok: true }]);
    assert.deepEqual(await atB, [{ from: a.id, text: 'hi all' }]);
    // b's copy left the backend before the ack did; give a's (unwanted) copy a moment to show up.
    await quietPeriod(150);
    assert.deepEqual(atA, [], 'the sender is left out');
});

test('every handled entry is acknowledged in the consumer group; SIGTERM stops it cleanly', async (t) => {
    const s = await env.client(t);
    await emitWithAckArgs(s, 'echo', ['last'], 5000);
    let pending;
    await waitUntil(async () => {
        pending = await env.redis.sendCommand(['XPENDING', `${env.prefix}events`, GROUP]);
        return Number(pending[0]) === 0;
    }, 5000, 'no pending entries in the group').catch((e) => {
        throw new Error(`${e.message}: ${JSON.stringify(pending)}`);
    });
    const groups = await env.redis.sendCommand(['XINFO', 'GROUPS', `${env.prefix}events`]);
    assert.ok(JSON.stringify(groups).includes(GROUP), 'the group exists');
    assert.doesNotMatch(backend.output(), /entry .*:/, 'no entry failed');

    backend.child.kill('SIGTERM');
    const code = await waitFor(backend.exited, 5000, 'the example to exit on SIGTERM');
    assert.equal(code, 0, backend.output());
    assert.match(backend.output(), /backend stopped/);
});
