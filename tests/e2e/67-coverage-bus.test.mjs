// Bus entries a backend gets wrong (found by scripts/coverage.sh): each one is skipped with a log line naming what
// is wrong, nobody receives anything from it, and the entries after it are still applied.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { entryOf } from './lib/backend.mjs';
import { emitWithAckArgs, nextEvent } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { quietPeriod, waitUntil } from './lib/util.mjs';

let env;
const skipped = []; // the "why" of every "bus entry skipped" log line, in order
before(async () => {
    // One worker: only worker 0 logs a skipped entry, and the targeted socket must live on it.
    env = await setupFile({ tag: 't67b', namespaces: ['/chat'], args: ['--threads', '1'] });
    let pending = '';
    const onOutput = (d) => {
        pending += d.toString();
        const lines = pending.split('\n');
        pending = lines.pop();
        for (const line of lines) {
            try {
                const rec = JSON.parse(line);
                if (rec.msg === 'bus entry skipped') skipped.push(rec.why);
            } catch {
                // not a log record
            }
        }
    };
    env.node.child.stdout.on('data', onOutput);
    env.node.child.stderr.on('data', onOutput);
});
after(() => env?.teardown());

test('malformed bus entries are skipped with the reason logged; later entries still apply', async (t) => {
    const s = await env.client(t, '/');
    const got = [];
    s.onAny((event) => got.push(event));
    const me = [s.id];
    const raw = (...fields) => env.redis.sendCommand(['XADD', `${env.prefix}bus`, '*', ...fields]);
    const cases = [
        [() => raw('op', 'emit'), 'missing op or msg field'],
        [() => raw('op', 'emit', 'msg', '[1,2]'), 'msg is not a JSON object'],
        [() => raw('op', 'emit', 'msg', '{not json'), 'msg is not a JSON object'],
        [() => env.be.bus('shout', { event: 'x' }), 'unknown op'],
        [() => env.be.bus('emit', { namespace: 5, event: 'x', sockets: me }), 'namespace'],
        [() => env.be.bus('emit', { namespace: '/nope', event: 'x', sockets: me }), 'namespace'],
        [() => env.be.bus('emit', { event: '', sockets: me }), 'event'],
        [() => env.be.bus('emit', { event: 'x', args: { a: 1 }, sockets: me }), 'args'],
        [() => env.be.bus('emit', { event: 'x', rooms: 'r' }), 'rooms'],
        [() => env.be.bus('emit', { event: 'x', users: [1] }), 'users'],
        [() => env.be.bus('emit', { event: 'x', except_rooms: [2] }), 'except_rooms'],
        [() => env.be.bus('emit', { event: 'x', sockets: me, reply_to: 5, request_id: 'r1' }), 'reply_to'],
        [() => env.be.bus('emit', { event: 'x', sockets: me, reply_to: 'replies' }), 'request_id'],
        [() => env.be.bus('join', { sockets: me }), 'rooms'],
        [() => env.be.bus('join', { rooms: 'r', sockets: me }), 'rooms'],
        [() => env.be.bus('leave', { namespace: '/nope', rooms: ['r'], sockets: me }), 'namespace'],
        [() => env.be.bus('join', { rooms: ['r'], sockets: [7] }), 'sockets'],
        [() => env.be.bus('disconnect', { sockets: me, reason: 5 }), 'reason'],
        [() => env.be.bus('disconnect', { namespace: 1, sockets: me }), 'namespace'],
        [() => env.be.bus('disconnect', { rooms: {} }), 'rooms'],
        [() => env.be.bus('ack', { ack_id: 1 }), 'socket'],
        [() => env.be.bus('ack', { socket: s.id, ack_id: -1 }), 'ack_id'],
        [() => env.be.bus('ack', { socket: s.id, ack_id: 'one' }), 'ack_id'],
        [() => env.be.bus('ack', { socket: s.id, ack_id: 1, args: 'x' }), 'args'],
        // Texts close to the form the bus reader takes without jansson are still judged by jansson.
        [() => raw('op', 'ack', 'msg', `{"socket":"${s.id}","ack_id":01,"args":[]}`), 'msg is not a JSON object'],
        [() => raw('op', 'ack', 'msg', `{"socket":"${s.id}","ack_id":1,"args":[1,]}`), 'msg is not a JSON object'],
        [() => raw('op', 'ack', 'msg', `{"socket":"${s.id}","ack_id":1,"args":[1]}x`), 'msg is not a JSON object'],
        [
            () =>
                raw('op', 'ack', 'msg', Buffer.concat([Buffer.from(`{"socket":"${s.id}","ack_id":1,"args":["`),
                    Buffer.from([0xc0, 0xaf]), Buffer.from('"]}')])),
            'msg is not a JSON object',
        ],
        [() => raw('op', 'ack', 'msg', `{"socket":"${s.id}","ack_id":1,"args":{"a":1}}`), 'args'],
        [() => raw('op', 'ack', 'msg', `{"socket":"${s.id}","ack_id":1.5,"args":[]}`), 'ack_id'],
        [() => raw('op', 'ack', 'msg', `{"socket":"${s.id}","ack_id":-1,"args":[]}`), 'ack_id'],
        [() => raw('op', 'ack', 'msg', `{"ack_id":1,"args":[]}`), 'socket'],
    ];
    const before = skipped.length;
    for (const [write] of cases) await write();
    // A valid emit after all of them still reaches the client.
    const ok = nextEvent(s, 'after-bad');
    await env.be.emit({ event: 'after-bad', args: [1], sockets: me });
    assert.deepEqual(await ok, [1]);
    await waitUntil(() => skipped.length - before >= cases.length, 5000, 'a log line per skipped entry');
    assert.deepEqual(skipped.slice(before), cases.map(([, why]) => why));
    await quietPeriod(100);
    assert.deepEqual(got, ['after-bad'], 'nothing else reached the client');
    assert.ok(s.connected, 'the client is still connected');
});

test('op ack: plain msg texts are forwarded as they are, the others parsed; the client gets the same values', async (t) => {
    const s = await env.client(t, '/');
    const raw = (msg) => env.redis.sendCommand(['XADD', `${env.prefix}bus`, '*', 'op', 'ack', 'msg', msg]);
    const ask = async (ev) => {
        const answer = emitWithAckArgs(s, ev, [ev], 5000);
        const entry = await env.be.readEvent(entryOf('event', s.id, ev), 5000);
        return { answer, id: entry.ack_id };
    };
    const cases = [
        // plain: what a JSON.stringify backend writes
        [(id) => `{"socket":"${s.id}","ack_id":${id},"args":[{"t":1,"u":"é\\n\\"q\\""},[true,null],-5,""]}`,
            [{ t: 1, u: 'é\n"q"' }, [true, null], -5, '']],
        [(id) => `{"args":["x"],"ack_id":${id},"socket":"${s.id}"}`, ['x']],
        [(id) => `{"socket":"${s.id}","ack_id":${id}}`, []],
        [(id) => `{"socket":"${s.id}","ack_id":${id},"args":[]}`, []],
        // not plain: whitespace, reals, \\u escapes, duplicate keys, other members, $binary
        [(id) => `{ "socket": "${s.id}", "ack_id": ${id}, "args": [1.5, "\\u0041\\/", {"a":1,"a":2}] }`,
            [1.5, 'A/', { a: 2 }]],
        [(id) => `{"socket":"${s.id}","ack_id":${id},"args":[1],"extra":true}`, [1]],
        [(id) => `{"socket":"${s.id}","ack_id":${id},"args":[{"$binary":"AQI="}]}`, [Buffer.from([1, 2])]],
    ];
    for (const [i, [msg, want]] of cases.entries()) {
        const { answer, id } = await ask(`plain-${i}`);
        await raw(msg(id));
        const got = await answer;
        assert.deepEqual(
            got.map((v) => (v instanceof ArrayBuffer ? Buffer.from(v) : v)),
            want,
            `case ${i}: ${msg(id)}`,
        );
        // A second answer to the same ack id is ignored (it was taken off the socket).
        await raw(msg(id));
    }
    await quietPeriod(100);
    assert.ok(s.connected);
});
