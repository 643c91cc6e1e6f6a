// JWT auth and authorization (issue 4, parts 1 and 2; CONTRACT §2): HS and RS
// tokens, every refusal code, algorithm confusion, join claims, $join/$leave/
// $publish by the token's patterns, $refresh, $token_expiring and the expiry
// disconnect. The verifier's own cases are unit-tested (tests/unit/test_auth.c);
// these check what a client sees.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setupFile } from './lib/fixture.mjs';
import { startSwitchboard } from './lib/harness.mjs';
import { emitWithAckArgs, nextEvent, sioClose, sioConnect } from './lib/clients.mjs';
import { algConfusionToken, claims, generateKeys, noneToken, sign, tamper, withAlg } from './lib/jwt.mjs';
import { record, waitForEvent } from './lib/util.mjs';

const SECRET = 'e2e-secret-41';
let env; // HS256 nodes (two, sharing a Redis)
let rs; // an RS256 node
let keys;
let dir;
before(async () => {
    keys = generateKeys();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-jwt-'));
    fs.writeFileSync(path.join(dir, 'rsa.pub'), keys.rsa.publicKey);
    env = await setupFile({
        tag: 't41',
        nodes: 2,
        args: ['--jwt-secret', SECRET, '--jwt-issuer', 'iss-1', '--jwt-audience', 'aud-1', '--jwt-expiry-warning', '2s'],
    });
    // Not env.startNode: the file's HS settings would conflict with RS256.
    rs = await startSwitchboard({
        redisUrl: env.redisServer.url,
        prefix: env.prefix,
        args: ['--jwt-alg', 'RS256', '--jwt-public-key', path.join(dir, 'rsa.pub')],
    });
});
after(async () => {
    const st = await rs?.stop();
    await env?.teardown();
    assert.equal(st?.code, 0, 'the RS256 node exits cleanly');
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const hs = (over = {}) => sign(claims({ iss: 'iss-1', aud: 'aud-1', ...over }), { secret: SECRET });
const connect = (token, opts = {}) =>
    sioConnect(opts.url || env.nodes[0].url, opts.nsp || '/', { auth: token === undefined ? {} : { token }, ...opts.io });
const refused = async (token, code, opts) => {
    await assert.rejects(connect(token, opts), (e) => {
        assert.equal(e.data?.code, code, `${e.message} ${JSON.stringify(e.data)}`);
        return true;
    });
};

test('a valid HS256 token connects; sub becomes the user; the token never reaches the stream', async (t) => {
    const s = await connect(hs({ sub: 'alice' }));
    t.after(() => sioClose(s));
    const entry = await env.be.readEvent((e) => e.type === 'connect' && e.socket === s.id, 5000);
    assert.equal(entry.user, 'alice');
    assert.ok(!entry.auth.includes('token'), entry.auth);
    assert.ok((await env.redis.sMembers(`${env.prefix}{user:alice}:sockets`)).includes(s.id));
});

test('the Authorization header of the handshake is accepted too', async (t) => {
    const s = await sioConnect(env.url, '/', { extraHeaders: { Authorization: `Bearer ${hs({ sub: 'bob' })}` } });
    t.after(() => sioClose(s));
    const entry = await env.be.readEvent((e) => e.type === 'connect' && e.socket === s.id, 5000);
    assert.equal(entry.user, 'bob');
});

test('RS256 with a PEM public key', async (t) => {
    const s = await connect(sign(claims({ sub: 'carol' }), { alg: 'RS256', privateKey: keys.rsa.privateKey }), {
        url: rs.url,
    });
    t.after(() => sioClose(s));
    assert.ok(s.connected);
});

test('refusals carry their codes', async () => {
    await refused(undefined, 'token_missing');
    await refused(hs({ ttl: -60 }), 'token_expired');
    await refused(hs({ nbfIn: 600 }), 'token_not_yet_valid');
    await refused(hs({ iss: 'other' }), 'token_issuer');
    await refused(hs({ aud: 'other' }), 'token_audience');
    await refused(sign(claims({ iss: 'iss-1', aud: 'aud-1' }), { secret: 'wrong' }), 'token_invalid');
    await refused(tamper(hs()), 'token_invalid');
    await refused(noneToken(claims({ iss: 'iss-1', aud: 'aud-1' })), 'token_algorithm');
    await refused(withAlg(claims({ iss: 'iss-1', aud: 'aud-1' }), 'HS512', { secret: SECRET }), 'token_algorithm');
    await refused(sign(claims({ iss: 'iss-1', aud: 'aud-1', exp: null }), { secret: SECRET }), 'token_claims');
    await refused(sign(claims({ iss: 'iss-1', aud: 'aud-1', sub: null }), { secret: SECRET }), 'token_claims');
    await refused('not.a.token', 'token_invalid');
});

test('algorithm confusion: an HS256 token keyed with the RSA public key is refused by the RS256 node', async () => {
    await refused(algConfusionToken(claims({ sub: 'mallory' }), keys.rsa.publicKey), 'token_algorithm', {
        url: rs.url,
    });
    // and an RS256 token with a wrong key
    const other = generateKeys();
    await refused(sign(claims(), { alg: 'RS256', privateKey: other.rsa.privateKey }), 'token_invalid', { url: rs.url });
});

test('join claim rooms are joined at connect; $join/$leave follow the rooms patterns', async (t) => {
    const token = hs({ sub: 'dave', join: ['news'], rooms: ['chat:*'], publish: ['chat:*'] });
    const s = await connect(token);
    t.after(() => sioClose(s));
    const got = nextEvent(s, 'headline', 5000);
    await env.be.emit({ event: 'headline', args: [1], rooms: ['news'] });
    assert.deepEqual(await got, [1]);
    assert.deepEqual(await emitWithAckArgs(s, '$join', [{ room: 'chat:1' }]), [{ ok: true }]);
    assert.equal((await emitWithAckArgs(s, '$join', [{ room: 'vip' }]))[0].error.code, 'forbidden');
    assert.equal((await emitWithAckArgs(s, '$join', [{ room: 'user:erin' }]))[0].error.code, 'forbidden');
    assert.ok((await env.be.roomMembers('/', 'chat:1')).includes(s.id));
    const inRoom = nextEvent(s, 'in-chat', 5000);
    await env.be.emit({ event: 'in-chat', args: [], rooms: ['chat:1'] });
    await inRoom;
    assert.deepEqual(await emitWithAckArgs(s, '$leave', [{ room: 'chat:1' }]), [{ ok: true }]);
    assert.ok(!(await env.be.roomMembers('/', 'chat:1')).includes(s.id));
});

test('$publish reaches the room on every node, not the sender; outside the patterns it is forbidden', async (t) => {
    const token = (sub) => hs({ sub, rooms: ['chat:*'], publish: ['chat:*'] });
    const a = await connect(token('pub-a'));
    const b = await connect(token('pub-b'), { url: env.nodes[1].url });
    t.after(() => [a, b].forEach(sioClose));
    for (const s of [a, b]) assert.deepEqual(await emitWithAckArgs(s, '$join', [{ room: 'chat:pub' }]), [{ ok: true }]);
    let senderGot = false;
    a.on('said', () => (senderGot = true));
    const got = nextEvent(b, 'said', 5000);
    const ack = await emitWithAckArgs(a, '$publish', [{ room: 'chat:pub', event: 'said', args: ['hi'] }]);
    assert.equal(ack[0].ok, true);
    assert.match(ack[0].id, /^\d+-\d+$/);
    assert.deepEqual(await got, ['hi']);
    assert.equal(senderGot, false);
    const no = await emitWithAckArgs(a, '$publish', [{ room: 'lobby', event: 'said', args: [] }]);
    assert.equal(no[0].error.code, 'forbidden');
});

test('anonymous clients of an anonymous node may not use $join', async (t) => {
    const anon = await startSwitchboard({ redisUrl: env.redisServer.url, prefix: `${env.prefix}anon:`, args: [] });
    t.after(() => anon.stop());
    const s = await sioConnect(anon.url, '/');
    t.after(() => sioClose(s));
    assert.equal((await emitWithAckArgs(s, '$join', [{ room: 'any' }]))[0].error.code, 'forbidden');
});

// The sweep reads the token list in exp order and stops at the first token not
// yet due: a token connected after a later one, and a token refreshed to an
// earlier exp, must still be warned and expired on time, and the later one
// left alone.
test('expiry follows exp, not connection order; a refresh moves a socket', async (t) => {
    const far = await connect(hs({ sub: 'far', ttl: 600 }));
    t.after(() => sioClose(far));
    const farSeen = record(far, '$token_expiring');
    const moved = await connect(hs({ sub: 'moved', ttl: 600 }));
    t.after(() => sioClose(moved));
    const soon = await connect(hs({ sub: 'soon', ttl: 4 }));
    t.after(() => sioClose(soon));
    const warned = [soon, moved].map((s) => nextEvent(s, '$token_expiring', 8000));
    const ended = [soon, moved].map((s) => waitForEvent(s, 'disconnect', 10000, 'the expiry disconnect'));
    const ok = await emitWithAckArgs(moved, '$refresh', [{ token: hs({ sub: 'moved', ttl: 4 }) }]);
    assert.equal(ok[0].ok, true);
    await Promise.all(warned);
    for (const [reason] of await Promise.all(ended)) assert.equal(reason, 'io server disconnect');
    // Four sweeps ran meanwhile: the later token was read and left alone by each.
    assert.ok(far.connected, 'the later token stays connected');
    assert.deepEqual(farSeen, []);
});

// exp * 1000 of this exp is 2^64 + 384 ms: computed in 64 bits it wraps to
// the first second of 1970, and the sweep would disconnect the socket at once.
test('an exp far in the future never wraps around into the past', async (t) => {
    const payload = `{"sub":"forever","iss":"iss-1","aud":"aud-1","exp":18446744073709552}`;
    const s = await connect(sign(payload, { secret: SECRET }));
    t.after(() => sioClose(s));
    const warned = record(s, '$token_expiring');
    const ok = await emitWithAckArgs(s, '$refresh', [{ token: sign(payload, { secret: SECRET }) }]);
    assert.equal(ok[0].ok, true);
    // Sweeps run every second; the connection must outlive a few of them.
    await assert.rejects(waitForEvent(s, 'disconnect', 2500, 'a disconnect'), /timed out/);
    assert.ok(s.connected);
    assert.deepEqual(warned, []);
});

test('$refresh replaces the token; another user is refused; expiry warns, then disconnects', async (t) => {
    const s = await connect(hs({ sub: 'frank', ttl: 3 }));
    t.after(() => sioClose(s));
    const warned = nextEvent(s, '$token_expiring', 5000);
    const [{ exp }] = await warned;
    assert.ok(exp > 0);
    const other = await emitWithAckArgs(s, '$refresh', [{ token: hs({ sub: 'someone-else' }) }]);
    assert.equal(other[0].error.code, 'forbidden');
    const bad = await emitWithAckArgs(s, '$refresh', [{ token: hs({ sub: 'frank', ttl: -5 }) }]);
    assert.equal(bad[0].error.code, 'token_expired');
    const ok = await emitWithAckArgs(s, '$refresh', [{ token: hs({ sub: 'frank', ttl: 4 }) }]);
    assert.equal(ok[0].ok, true);
    assert.ok(ok[0].exp > exp);
    // Not refreshed again: disconnected by the server at the new exp.
    const id = s.id;
    const [reason] = await waitForEvent(s, 'disconnect', 10000, 'the expiry disconnect');
    assert.equal(reason, 'io server disconnect');
    const entry = await env.be.readEvent((e) => e.type === 'disconnect' && e.socket === id, 5000);
    assert.equal(entry.reason, 'token expired');
});
