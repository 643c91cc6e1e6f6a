// Events and acks between socket.io-client and a backend that only speaks
// Redis streams: acks answered through the bus, echo, binary both ways (over
// WebSocket and long-polling), and the error ack when no backend answers.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { entryOf } from './lib/backend.mjs';
import { emitWithAckArgs, nextEvent } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { bytesOf, uniq } from './lib/util.mjs';

const ACK_TIMEOUT = 500;

let env;
before(async () => {
    env = await setupFile({ tag: 't20', args: ['--ack-timeout', String(ACK_TIMEOUT)] });
});
after(() => env?.teardown());

const TRANSPORTS = [
    ['websocket', { transports: ['websocket'] }],
    ['polling', { transports: ['polling'], upgrade: false }],
];

for (const [name, ioOpts] of TRANSPORTS) {
    test(`[${name}] an ack asked by the client is answered by a Redis-only backend`, async (t) => {
        const s = await env.client(t, '/', ioOpts);
        const ev = uniq('question');
        const answer = emitWithAckArgs(s, ev, [1, 'two', { three: 3 }], 5000);

        const entry = await env.be.readEvent(entryOf('event', s.id, ev), 5000);
        assert.deepEqual(JSON.parse(entry.args), [1, 'two', { three: 3 }]);
        assert.match(entry.ack_id, /^\d+$/, `ack_id must be the client's numeric ack id, got ${JSON.stringify(entry.ack_id)}`);

        await env.be.ack({ socket: s.id, ack_id: Number(entry.ack_id), args: ['answer', { ok: true }] });
        assert.deepEqual(await answer, ['answer', { ok: true }]);
    });

    test(`[${name}] echo: an event goes to the stream and the backend's emit comes back`, async (t) => {
        const s = await env.client(t, '/', ioOpts);
        const ev = uniq('echo');
        s.emit(ev, 'hi', { n: [1, 2] });
        const entry = await env.be.readEvent(entryOf('event', s.id, ev), 5000);
        assert.equal(entry.ack_id, '', 'no ack asked: empty ack_id');

        const back = nextEvent(s, `${ev}-back`, 5000);
        await env.be.emit({ event: `${ev}-back`, args: JSON.parse(entry.args), sockets: [s.id] });
        assert.deepEqual(await back, ['hi', { n: [1, 2] }]);
    });

    test(`[${name}] binary from the client reaches the stream as {"$binary": base64}`, async (t) => {
        const s = await env.client(t, '/', ioOpts);
        const ev = uniq('upload');
        s.emit(ev, Buffer.from([1, 2, 3]), 'text', { file: Buffer.from([4, 5, 6]), name: 'f' });
        const entry = await env.be.readEvent(entryOf('event', s.id, ev), 5000);
        assert.deepEqual(JSON.parse(entry.args), [
            { $binary: 'AQID' },
            'text',
            { file: { $binary: 'BAUG' }, name: 'f' },
        ]);
    });

    test(`[${name}] {"$binary": base64} from the backend reaches the client as bytes`, async (t) => {
        const s = await env.client(t, '/', ioOpts);
        const ev = uniq('download');
        const got = nextEvent(s, ev, 5000);
        await env.be.emit({
            event: ev,
            args: [{ $binary: 'AQID' }, 'text', { nested: { $binary: 'BAUG' }, n: 7 }],
            sockets: [s.id],
        });
        const [bin, text, obj] = await got;
        assert.ok(bin instanceof Uint8Array || bin instanceof ArrayBuffer, `bytes expected, got ${typeof bin}`);
        assert.deepEqual(bytesOf(bin), [1, 2, 3]);
        assert.equal(text, 'text');
        assert.equal(obj.n, 7);
        assert.deepEqual(bytesOf(obj.nested), [4, 5, 6]);
    });

    test(`[${name}] a backend ack may carry binary`, async (t) => {
        const s = await env.client(t, '/', ioOpts);
        const ev = uniq('fetch');
        const answer = emitWithAckArgs(s, ev, [], 5000);
        const entry = await env.be.readEvent(entryOf('event', s.id, ev), 5000);
        await env.be.ack({ socket: s.id, ack_id: Number(entry.ack_id), args: [{ $binary: 'AQID' }] });
        const [bin] = await answer;
        assert.deepEqual(bytesOf(bin), [1, 2, 3]);
    });
}

test('acks answered out of order reach the right callbacks', async (t) => {
    const s = await env.client(t);
    const ev = uniq('multi');
    const first = emitWithAckArgs(s, ev, ['first'], 5000);
    const second = emitWithAckArgs(s, ev, ['second'], 5000);
    const entries = await env.be.readEvents(entryOf('event', s.id, ev), 5000, { count: 2 });
    const byArg = Object.fromEntries(entries.map((e) => [JSON.parse(e.args)[0], e]));
    assert.notEqual(byArg.first.ack_id, byArg.second.ack_id);
    await env.be.ack({ socket: s.id, ack_id: Number(byArg.second.ack_id), args: ['for-second'] });
    assert.deepEqual(await second, ['for-second']);
    await env.be.ack({ socket: s.id, ack_id: Number(byArg.first.ack_id), args: ['for-first'] });
    assert.deepEqual(await first, ['for-first']);
});

test('an ack nobody answers gets an error ack after --ack-timeout', async (t) => {
    const s = await env.client(t);
    const ev = uniq('unanswered');
    const started = Date.now();
    const answer = emitWithAckArgs(s, ev, ['hello?'], ACK_TIMEOUT + 4000);
    // the event did reach the stream; nobody answers it
    await env.be.readEvent(entryOf('event', s.id, ev), 5000);
    const args = await answer;
    const elapsed = Date.now() - started;
    assert.equal(args.length, 1, `one error object expected, got ${JSON.stringify(args)}`);
    assert.equal(typeof args[0]?.error?.code, 'string', `error ack expected, got ${JSON.stringify(args)}`);
    assert.ok(args[0].error.code.length > 0);
    // allow for timer granularity, but not an answer long before the timeout
    assert.ok(elapsed >= ACK_TIMEOUT - 100, `error ack after ${elapsed} ms, before the ${ACK_TIMEOUT} ms timeout`);
});
