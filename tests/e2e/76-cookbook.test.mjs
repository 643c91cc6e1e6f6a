// The redis-cli cookbook of docs/operations.md (issue 8), executed: every
// ```sh block of its section is parsed out of the Markdown, its placeholders
// are replaced (SUBSTITUTIONS below; an unknown one fails), and each command
// runs with the real redis-cli against a live node whose state this file made
// (JWT users, rooms joined through the bus, bus entries, a consumer group,
// rate-limit buckets, a node that dies without SIGTERM). Each command must
// succeed and print what the cookbook says it shows; a command nobody expects
// must at least succeed without an error reply, so a new broken command fails
// here too.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { keys } from './lib/backend.mjs';
import { nextEvent, sioClose, sioConnect } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { startSwitchboard } from './lib/harness.mjs';
import { claims, sign } from './lib/jwt.mjs';
import { waitFor, waitForEvent, waitUntil } from './lib/util.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DOC = path.resolve(HERE, '..', '..', 'docs', 'operations.md');

const SECRET = 'cookbook-secret-76';
const COMMAND_TIMEOUT_MS = 15000;
// The cookbook's example client address cannot connect here; this loopback one can.
const ADDR = '127.0.0.7';
const NODE_ARGS = [
    '--jwt-secret', SECRET,
    // Slow buckets, so that they still exist (are not full again) when the cookbook reads them.
    '--rate-socket-events', '10/60s',
    '--rate-user-events', '10/60s',
    '--rate-connections', '100/6000s',
];

// Placeholder → value. The cookbook's ids that only exist at run time are
// replaced; its other example values are kept because this file creates them
// as they are: the user "42" (a JWT sub), the room "lobby", the group
// "chat-service" and the consumer "worker-2".
const SUBSTITUTIONS = [
    ['Xk3…', (c) => c.sid], // a socket of user 42
    ['h3Kp…', (c) => c.node], // a node id
    ['203.0.113.7', (c) => c.addr], // a client address
    ['sb:', (c) => c.prefix], // the key prefix
];
// What must not be left once the table is applied: elided ids and <names>.
const UNKNOWN_PLACEHOLDER = /…|<[A-Za-z_][A-Za-z0-9_ -]*>/;

// ---------------------------------------------------------------------------
// The cookbook, parsed out of the Markdown.

// Cuts a trailing shell comment ("# …" starting a word outside quotes).
// Returns [code, comment]; throws on a quote left open at the end of the line.
function splitComment(line) {
    let quote = null;
    for (let i = 0; i < line.length; i++) {
        const ch = line[i];
        if (quote === "'") {
            if (ch === "'") quote = null;
        } else if (quote === '"') {
            if (ch === '\\') i++;
            else if (ch === '"') quote = null;
        } else if (ch === '\\') {
            i++;
        } else if (ch === "'" || ch === '"') {
            quote = ch;
        } else if (ch === '#' && (i === 0 || /\s/.test(line[i - 1]))) {
            return [line.slice(0, i).trimEnd(), line.slice(i + 1).trim()];
        }
    }
    if (quote) throw new Error(`cookbook line leaves a ${quote} quote open: ${line}`);
    return [line.trimEnd(), ''];
}

const OPENS = /^(for|while|until|if|case)\b/;
const CLOSES = /^(done|fi|esac)\b/;

// One block's text → commands {text, note}: a line each, except that a
// for/while/if … done/fi construct and backslash-continued lines stay whole.
function commandsOf(block) {
    const out = [];
    let cur = null;
    let depth = 0;
    let continued = false;
    for (const raw of block.split('\n')) {
        const [code, note] = splitComment(raw);
        if (!code.trim() && !continued && depth === 0) continue;
        const word = code.trim();
        if (!cur) cur = { text: '', note: '' };
        cur.text += (cur.text ? '\n' : '') + code;
        if (note && !cur.note) cur.note = note;
        if (OPENS.test(word)) depth++;
        if (CLOSES.test(word)) depth--;
        continued = code.endsWith('\\');
        if (depth < 0) throw new Error(`unbalanced shell construct in cookbook block:\n${block}`);
        if (depth === 0 && !continued) {
            out.push(cur);
            cur = null;
        }
    }
    if (cur) throw new Error(`unterminated shell command in cookbook block:\n${block}`);
    return out;
}

// The section whose heading names the redis-cli cookbook → [{title, commands}],
// the title being the bold lead-in above each fenced block.
function parseCookbook(markdown) {
    const lines = markdown.split('\n');
    const start = lines.findIndex((l) => /^##\s.*redis-cli cookbook/i.test(l));
    assert.ok(start >= 0, `no "## … redis-cli cookbook" section in ${DOC}`);
    let end = lines.findIndex((l, i) => i > start && /^##?\s/.test(l));
    if (end < 0) end = lines.length;
    const blocks = [];
    let title = null;
    for (let i = start + 1; i < end; i++) {
        const bold = lines[i].match(/^\*\*(.+?)\*\*/);
        if (bold) title = bold[1];
        const fence = lines[i].match(/^```(\S*)\s*$/);
        if (!fence) continue;
        assert.ok(['', 'sh', 'shell', 'bash'].includes(fence[1]), `cookbook block in ${fence[1]} at line ${i + 1}`);
        const body = [];
        for (i++; i < end && !/^```\s*$/.test(lines[i]); i++) body.push(lines[i]);
        assert.ok(i < end, `unterminated code block in the cookbook`);
        assert.ok(title, `cookbook block at line ${i + 1} has no bold title above it`);
        blocks.push({ title, commands: commandsOf(body.join('\n')) });
        title = null;
    }
    return blocks;
}

function substitute(text, ctx) {
    let out = text;
    for (const [from, value] of SUBSTITUTIONS) {
        const v = value(ctx);
        if (!out.includes(from)) continue;
        // Values go into shell words: nothing that could change the command's meaning.
        assert.match(String(v), /^[A-Za-z0-9_.:/-]+$/, `substitution for ${from}: ${v}`);
        out = out.split(from).join(v);
    }
    const left = out.match(UNKNOWN_PLACEHOLDER);
    assert.equal(left, null, `unknown placeholder ${left?.[0]} in cookbook command:\n${text}`);
    return out;
}

// Runs one cookbook command with /bin/sh, every redis-cli given -u <url>.
// Resolves {code, stdout, stderr, lines, run}.
function runCommand(text, ctx) {
    const run = substitute(text, ctx).replace(/(^|[\s;|&(`])redis-cli(?=\s)/g, `$1redis-cli -u '${ctx.url}'`);
    assert.notEqual(run, substitute(text, ctx), `not a redis-cli command: ${text}`);
    return new Promise((resolve) => {
        execFile('/bin/sh', ['-c', run], { timeout: COMMAND_TIMEOUT_MS, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
            const code = err ? (err.killed ? `killed after ${COMMAND_TIMEOUT_MS} ms` : err.code) : 0;
            const lines = stdout.split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l !== '');
            resolve({ code, stdout, stderr, lines, run });
        });
    });
}

// ---------------------------------------------------------------------------
// What each command shows (matched on the doc's text, before substitution).

const pairs = (lines) => {
    const o = {};
    for (let i = 0; i + 1 < lines.length; i += 2) o[lines[i]] = lines[i + 1];
    return o;
};
// The value printed after the line `name` in a flattened reply (XINFO, …).
const after1 = (lines, name) => {
    const i = lines.indexOf(name);
    return i >= 0 ? lines[i + 1] : undefined;
};
const sorted = (a) => [...a].sort();
// An error reply or a redis-cli complaint, wherever it is printed (a loop's $(…) included).
const ERROR_REPLY =
    /^(\(error\) )?(ERR|WRONGTYPE|NOSCRIPT|NOGROUP|NOPERM|BUSYGROUP)\b|Could not connect|Unrecognized option/m;
const isMs = (v) => /^\d{13}$/.test(v) && Math.abs(Number(v) - Date.now()) < 10 * 60 * 1000;

const EXPECT = [
    [/FCALL sb_version 0/, (r, c) => assert.deepEqual(r.lines, [c.functions])],
    [/FUNCTION LIST LIBRARYNAME switchboard/, (r) => {
        assert.equal(after1(r.lines, 'library_name'), 'switchboard');
        assert.ok(r.lines.includes('sb_version') && r.lines.includes('sb_node_sockets_purge'));
    }],
    [/SMEMBERS '?sb:\{user:42\}:sockets/, (r, c) => assert.deepEqual(sorted(r.lines), sorted(c.user42))],
    [/HGETALL '?sb:\{sock:/, (r, c) => {
        const h = pairs(r.lines);
        assert.equal(h.id, c.sid);
        assert.equal(h.nsp, '/');
        assert.equal(h.user, '42');
        assert.equal(h.node, c.node);
        assert.equal(h.transport, 'websocket');
        assert.ok(isMs(h.connected_at), `connected_at ${h.connected_at}`);
    }],
    [/SMEMBERS '?sb:\{sock:.*\}:rooms/, (r) => assert.deepEqual(sorted(r.lines), ['lobby', 'user:42'])],
    [/HGET '?sb:\{sock:[^ ]* node$/, (r, c) => assert.deepEqual(r.lines, [c.node])],
    [/SCARD '?sb:\{node:.*\}:sockets/, (r, c) => assert.deepEqual(r.lines, [String(c.onNode.length)])],
    [/SSCAN '?sb:\{node:.*\}:sockets'? 0 /, (r, c) => {
        assert.equal(r.lines[0], '0', 'one SSCAN call covers this small set');
        assert.deepEqual(sorted(r.lines.slice(1)), sorted(c.onNode));
    }],
    [/SCARD '?sb:\{room:\/:lobby\}/, (r, c) => assert.deepEqual(r.lines, [String(c.lobby.length)])],
    [/SSCAN '?sb:\{room:\/:lobby\}'? 0 /, (r, c) => {
        assert.equal(r.lines[0], '0');
        assert.deepEqual(sorted(r.lines.slice(1)), sorted(c.lobby));
    }],
    [/SMEMBERS '?sb:\{ns:\/\}:rooms/, (r, c) => {
        for (const room of ['lobby', 'user:42', ...c.users.map((u) => `user:${u}`)]) {
            assert.ok(r.lines.includes(room), `${room} listed`);
        }
    }],
    [/XREVRANGE sb:bus \+ - COUNT 5/, async (r, c) => {
        const last = (await c.redis.xRevRange(`${c.prefix}bus`, '+', '-', { COUNT: 5 })).map((e) => e.id);
        assert.deepEqual(r.lines.filter((l) => /^\d+-\d+$/.test(l)), last);
        assert.equal(last[0], c.lastBusId, 'the newest bus entry comes first');
        assert.ok(r.lines.includes('op') && r.lines.includes('msg'));
    }],
    [/XREVRANGE sb:events \+ - COUNT 5/, async (r, c) => {
        const last = (await c.redis.xRevRange(`${c.prefix}events`, '+', '-', { COUNT: 5 })).map((e) => e.id);
        assert.equal(last.length, 5);
        assert.deepEqual(r.lines.filter((l) => /^\d+-\d+$/.test(l)), last);
        assert.ok(r.lines.includes('type') && r.lines.includes('socket'));
    }],
    [/XINFO STREAM sb:bus/, async (r, c) => {
        assert.equal(after1(r.lines, 'length'), String(await c.redis.xLen(`${c.prefix}bus`)));
        assert.ok(r.lines.includes('first-entry') && r.lines.includes('last-entry'));
        assert.equal(after1(r.lines, 'last-generated-id'), c.lastBusId);
    }],
    [/XINFO GROUPS sb:events/, (r) => {
        assert.equal(after1(r.lines, 'name'), 'chat-service');
        assert.equal(after1(r.lines, 'consumers'), '1');
        assert.equal(after1(r.lines, 'pending'), '3');
        assert.ok(r.lines.includes('last-delivered-id') && r.lines.includes('lag'));
    }],
    [/XINFO CONSUMERS sb:events chat-service/, (r) => {
        assert.equal(after1(r.lines, 'name'), 'worker-1');
        assert.equal(after1(r.lines, 'pending'), '3');
        assert.ok(Number(after1(r.lines, 'idle')) >= 0);
    }],
    [/XPENDING sb:events chat-service$/, (r, c) => {
        assert.deepEqual(r.lines, ['3', c.pending[0], c.pending[2], 'worker-1', '3']);
    }],
    [/XPENDING sb:events chat-service - \+ 10/, (r, c) => {
        assert.deepEqual(r.lines.filter((l) => /^\d+-\d+$/.test(l)), c.pending);
        assert.equal(r.lines.filter((l) => l === 'worker-1').length, 3);
        // The entries were made to look idle for two minutes, delivered once.
        assert.ok(Number(r.lines[2]) >= 120000, `idle ${r.lines[2]}`);
    }],
    [/XAUTOCLAIM sb:events chat-service worker-2 60000 0-0/, async (r, c) => {
        assert.equal(r.lines[0], '0-0', 'the whole pending list was scanned');
        for (const id of c.pending) assert.ok(r.lines.includes(id), `${id} claimed`);
        const owners = await c.redis.sendCommand(['XPENDING', `${c.prefix}events`, 'chat-service', '-', '+', '10']);
        assert.deepEqual(owners.map((p) => p[1]), ['worker-2', 'worker-2', 'worker-2']);
    }],
    [/ZRANGE sb:nodes 0 -1 WITHSCORES/, (r, c) => {
        const z = pairs(r.lines);
        assert.ok(z[c.node], `${c.node} listed`);
        assert.ok(isMs(z[c.node]), `heartbeat ${z[c.node]}`);
    }],
    [/HGETALL '?sb:\{node:/, (r, c) => {
        const h = pairs(r.lines);
        assert.equal(h.id, c.node);
        for (const f of ['connections', 'sockets', 'events_in', 'events_out', 'version']) assert.ok(f in h, f);
        assert.ok(isMs(h.last_seen), `last_seen ${h.last_seen}`);
    }],
    [/^for k in .*--scan --pattern 'sb:\{node:\*\}:sockets'/, (r, c) => {
        assert.ok(r.lines.includes(`${c.deadNode} sockets=2 alive=0`), `dead node listed:\n${r.stdout}`);
    }],
    [/FCALL sb_node_sockets_purge 1 /, async (r, c) => {
        assert.deepEqual(r.lines, ['0'], 'nothing left to purge after one call');
        assert.equal(await c.redis.exists(keys.nodeSockets(c.prefix, c.deadNode)), 0);
        for (const sid of c.onDeadNode) {
            assert.equal(await c.redis.exists(keys.sock(c.prefix, sid)), 0, `${sid} hash removed`);
            assert.equal(await c.redis.exists(keys.sockRooms(c.prefix, sid)), 0, `${sid} rooms removed`);
        }
        const ends = (await c.redis.xRange(`${c.prefix}events`, '-', '+'))
            .filter((e) => e.message.type === 'disconnect' && c.onDeadNode.includes(e.message.socket));
        assert.deepEqual(sorted(ends.map((e) => e.message.socket)), sorted(c.onDeadNode));
        for (const e of ends) assert.equal(e.message.reason, 'node gone');
    }],
    [/HGETALL '?sb:\{rl:(user|sock):/, (r) => {
        const h = pairs(r.lines);
        // 10 tokens, 3 events spent (a token comes back every 6 s, so a fraction may be back).
        assert.ok(Number(h.t) >= 7 && Number(h.t) < 10, `tokens ${h.t}`);
        assert.ok(isMs(h.ts), `ts ${h.ts}`);
    }],
    [/PTTL '?sb:\{rl:addr:/, (r) => {
        assert.equal(r.lines.length, 1);
        assert.ok(Number(r.lines[0]) > 0 && Number(r.lines[0]) <= 61000, `PTTL ${r.lines[0]}`); // full again + 1 s
    }],
    [/XADD sb:bus '\*' op emit msg/, async (r, c) => {
        assert.match(r.lines[0] || '', /^\d+-\d+$/);
        assert.deepEqual(await c.noticed, ['maintenance at 22:00']);
    }],
    [/XADD sb:bus '\*' op disconnect msg '\{"users":\["42"\]/, async (r, c) => {
        assert.match(r.lines[0] || '', /^\d+-\d+$/);
        await waitFor(c.gone42, 5000, 'the user-42 sockets to be disconnected');
        assert.ok(c.others.every((s) => s.connected), 'other users stay connected');
    }],
    [/INFO memory \| grep/, (r) => {
        const names = r.lines.map((l) => l.split(':')[0]);
        assert.deepEqual(names, ['used_memory_human', 'maxmemory_human', 'maxmemory_policy']);
    }],
    [/MEMORY USAGE sb:events/, (r) => assert.ok(Number(r.lines[0]) > 0, r.stdout)],
    [/--memkeys/, (r, c) => {
        assert.match(r.stdout, /^Sampled \d+ keys in the keyspace/m);
        // The events stream is the biggest stream here (the connects, events and disconnects of this file).
        assert.ok(r.stdout.includes(`Biggest stream found '"${c.prefix}events"'`), r.stdout);
    }],
];

// Runs the commands of `blocks` in order; returns the EXPECT entries used.
async function runBlocks(blocks, ctx) {
    const used = new Set();
    for (const b of blocks) {
        for (const cmd of b.commands) {
            const r = await runCommand(cmd.text, ctx);
            const where =
                `cookbook "${b.title}": ${cmd.text}\nran: ${r.run}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
            assert.equal(r.code, 0, `exit status, ${where}`);
            assert.doesNotMatch(r.stdout + r.stderr, ERROR_REPLY, where);
            assert.equal(r.stderr, '', where);
            const hits = EXPECT.filter(([re]) => re.test(cmd.text));
            assert.ok(hits.length <= 1, `several expectations match ${cmd.text}`);
            if (hits.length === 1) {
                used.add(hits[0]);
                try {
                    await hits[0][1](r, ctx);
                } catch (e) {
                    e.message = `${e.message}\n${where}`;
                    throw e;
                }
            } else {
                // Nobody said what it prints; it still has to work.
                assert.ok(r.lines.length > 0, `no output, ${where}`);
            }
        }
    }
    return used;
}

// ---------------------------------------------------------------------------

let env;
let blocks;
const used = new Set();

before(async () => {
    blocks = parseCookbook(fs.readFileSync(DOC, 'utf8'));
    // A heartbeat a second, so that the node is listed in Redis soon after it starts.
    env = await setupFile({ tag: 't76', args: [...NODE_ARGS, '--heartbeat-interval', '1s'] });
});
after(() => env?.teardown());

const token = (sub) => sign(claims({ sub }), { secret: SECRET });

// {node, functions} from a node's start-up line, as the cookbook tells operators to find them.
function startLine(handle) {
    const logged = fs.existsSync(handle.logFile) ? fs.readFileSync(handle.logFile, 'utf8') : '';
    const text = `${handle.stderrTail()}\n${logged}`;
    for (const line of text.split('\n')) {
        if (!line.includes('switchboard listening')) continue;
        const j = JSON.parse(line);
        return { node: j.node, functions: j.functions };
    }
    throw new Error(`no start-up line in ${handle.logFile}`);
}

const isDestructive = (b) => b.commands.some((c) => /sb_node_sockets_purge/.test(c.text));
const isDisconnecting = (b) => b.commands.some((c) => /op disconnect/.test(c.text));

test('the cookbook section parses into blocks of redis-cli commands', () => {
    assert.ok(blocks.length >= 10, `${blocks.length} blocks`);
    const all = blocks.flatMap((b) => b.commands);
    assert.ok(all.length >= 25, `${all.length} commands`);
    for (const c of all) assert.match(c.text, /redis-cli/, 'every command uses redis-cli');
    assert.equal(blocks.filter(isDestructive).length, 1, 'one purge block');
});

let ctx; // shared by the tests below, in order

test('the reading commands show the state this file made', async (t) => {
    const { node, functions } = startLine(env.node);
    const connect = (sub, opts = {}) => env.client(t, '/', { auth: { token: token(sub) }, ...opts });
    const s42a = await connect('42');
    const s42b = await connect('42');
    const alice = await connect('alice');
    const bob = await connect('bob', { localAddress: ADDR });

    await env.be.join({ rooms: ['lobby'], sockets: [s42a.id, alice.id] });
    await env.be.join({ rooms: ['lobby'], users: ['bob'] });
    await waitUntil(async () => (await env.be.redis.sCard(keys.room(env.prefix, '/', 'lobby'))) === 3, 5000, 'lobby');

    // Three events of user 42 (socket and user buckets), to the events stream.
    for (let i = 0; i < 3; i++) s42a.emit('chat', { n: i });
    await env.be.readEvents((e) => e.type === 'event' && e.socket === s42a.id, 5000, { count: 3 });

    // A backend's consumer group: three entries delivered to worker-1, not acknowledged, idle for two minutes.
    const events = `${env.prefix}events`;
    await env.redis.sendCommand(['XGROUP', 'CREATE', events, 'chat-service', '0']);
    const read = await env.redis.sendCommand(
        ['XREADGROUP', 'GROUP', 'chat-service', 'worker-1', 'COUNT', '3', 'STREAMS', events, '>'],
    );
    const pending = read[0][1].map(([id]) => id);
    assert.equal(pending.length, 3);
    await env.redis.sendCommand(
        ['XCLAIM', events, 'chat-service', 'worker-1', '0', ...pending, 'IDLE', '120000', 'JUSTID'],
    );

    // The last bus entry is one this file wrote.
    const warm = nextEvent(alice, 'warmup', 5000);
    const lastBusId = await env.be.emit({ event: 'warmup', args: [1], rooms: ['lobby'] });
    await warm;

    await waitUntil(async () => (await env.redis.exists(`${env.prefix}{node:${node}}`)) === 1, 5000, 'the heartbeat');

    const all = [s42a, s42b, alice, bob];
    ctx = {
        url: env.redisServer.url,
        prefix: env.prefix,
        redis: env.redis,
        addr: ADDR,
        node,
        functions,
        sid: s42a.id,
        user42: [s42a.id, s42b.id],
        users: ['42', 'alice', 'bob'],
        onNode: all.map((s) => s.id),
        lobby: [s42a.id, alice.id, bob.id],
        lastBusId,
        pending,
        others: [alice, bob],
    };

    for (const u of await runBlocks(blocks.filter((b) => !isDestructive(b) && !isDisconnecting(b)), ctx)) used.add(u);

    // Acting on clients comes last: it disconnects user 42, whom the reading commands look at.
    // Every client must get the notice; both sockets of user 42 must go.
    ctx.noticed = Promise.all(all.map((s) => nextEvent(s, 'notice', 10000))).then((a) => a[0]);
    ctx.gone42 = Promise.all([s42a, s42b].map((s) => waitForEvent(s, 'disconnect', 10000, 'disconnect of user 42')));
    ctx.noticed.catch(() => {});
    ctx.gone42.catch(() => {});
    for (const u of await runBlocks(blocks.filter(isDisconnecting), ctx)) used.add(u);
});

test('the purge of a node that died without SIGTERM removes its sockets', async (t) => {
    assert.ok(ctx, 'runs after the reading test');
    // A node of its own to kill, with a short heartbeat so that its heartbeat hash expires quickly.
    const dead = await startSwitchboard({
        redisUrl: env.redisServer.url,
        prefix: env.prefix,
        args: [...NODE_ARGS, '--heartbeat-interval', '200ms'],
    });
    t.after(() => dead.stop());
    const deadNode = startLine(dead).node;
    const clients = [];
    t.after(() => clients.forEach(sioClose));
    for (const sub of ['carol', 'dave']) clients.push(await sioConnect(dead.url, '/', { auth: { token: token(sub) } }));
    await env.be.join({ rooms: ['lobby'], users: ['carol', 'dave'] });
    const onDeadNode = clients.map((s) => s.id);
    const joined = async () => {
        const m = await env.redis.sMembers(keys.room(env.prefix, '/', 'lobby'));
        return onDeadNode.every((sid) => m.includes(sid));
    };
    await waitUntil(joined, 5000, 'the dying node\'s sockets in the lobby');

    // No live node may clean up behind the cookbook's back: the file's node stops cleanly (removing its own
    // sockets), then the other one dies without a word.
    const st = await env.node.stop();
    assert.equal(st.code, 0, 'the live node stops cleanly');
    const gone = new Promise((r) => dead.child.once('exit', r));
    dead.child.kill('SIGKILL');
    await waitFor(gone, 5000, 'the SIGKILLed node to exit');
    const beating = async () => (await env.redis.exists(`${env.prefix}{node:${deadNode}}`)) === 1;
    await waitUntil(async () => !(await beating()), 5000, 'the heartbeat hash to expire');
    assert.equal(await env.redis.sCard(keys.nodeSockets(env.prefix, deadNode)), 2, 'its sockets are left behind');
    const lobby = keys.room(env.prefix, '/', 'lobby');
    assert.deepEqual(sorted(await env.redis.sMembers(lobby)), sorted(onDeadNode), 'and their memberships');

    const c = { ...ctx, node: deadNode, deadNode, onDeadNode };
    for (const u of await runBlocks(blocks.filter(isDestructive), c)) used.add(u);
    assert.deepEqual(await env.redis.sMembers(lobby), [], 'lobby emptied');
});

test('every expectation of this file met a cookbook command', () => {
    const unused = EXPECT.filter((e) => !used.has(e)).map(([re]) => re.source);
    assert.deepEqual(unused, [], 'expectations whose command left the cookbook (update this file)');
});
