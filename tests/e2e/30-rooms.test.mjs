// Rooms and targeting through the bus: join/leave, emits to rooms, users,
// sockets, the namespace, with exceptions; the disconnect op; and the Redis
// state that membership leaves behind (contract §5).
//
// "X does not receive" is shown with a barrier: after the emit under test the
// backend sends a direct "barrier" event to every client; the bus is one
// ordered stream, so once a client holds its barrier it would already hold the
// event under test. A short quietPeriod only covers reordering on top.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { entryOf, keys } from './lib/backend.mjs';
import { nextEvent } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { quietPeriod, record, uniq, waitFor, waitUntil } from './lib/util.mjs';

let env;
before(async () => {
    env = await setupFile({ tag: 't30' });
});
after(() => env?.teardown());

async function clients(t, n) {
    const out = [];
    for (let i = 0; i < n; i++) out.push(await env.client(t));
    return out;
}

// Waits until P{room:/:<room>} holds exactly `sids`.
async function membersAre(room, sids, nsp = '/') {
    const want = [...sids].sort();
    let last;
    await waitUntil(
        async () => {
            last = (await env.be.roomMembers(nsp, room)).sort();
            return JSON.stringify(last) === JSON.stringify(want);
        },
        5000,
        `room ${room} to hold ${JSON.stringify(want)}`,
    ).catch((e) => {
        throw new Error(`${e.message}; last seen ${JSON.stringify(last)}`);
    });
}

// Emits `msg` (an emit op without event/args) and checks exactly `expected`
// of `all` sockets got it. The barrier goes to `all` by socket id, or to the
// whole namespace with wholeBarrier (for a socket taken out of its own room).
async function assertDelivery(all, msg, expected, wholeBarrier = false) {
    const ev = uniq('ev');
    const barrier = uniq('barrier');
    const seen = all.map((s) => record(s, ev));
    const barriers = all.map((s) => nextEvent(s, barrier, 5000));
    await env.be.emit({ ...msg, event: ev, args: ['payload'] });
    await env.be.emit(wholeBarrier ? { event: barrier, args: [] } : { event: barrier, args: [], sockets: all.map((s) => s.id) });
    await waitFor(Promise.all(barriers), 5000, 'barrier events');
    // Wanted receivers got it before their barrier (one ordered bus); give a
    // reordering bug a short chance to show up as an unwanted delivery.
    await quietPeriod(150);
    const got = all.filter((s, i) => seen[i].length > 0).map((s) => s.id).sort();
    assert.deepEqual(got, expected.map((s) => s.id).sort(), `receivers of ${JSON.stringify(msg)}`);
    for (let i = 0; i < all.length; i++) {
        if (seen[i].length) assert.deepEqual(seen[i], [['payload']], 'delivered exactly once with its args');
    }
}

test('emit to a room reaches its members only; Redis shows the membership', async (t) => {
    const [a, b, c] = await clients(t, 3);
    const room = uniq('room');
    await env.be.join({ rooms: [room], sockets: [a.id, b.id] });
    await membersAre(room, [a.id, b.id]);
    assert.ok(await env.redis.sIsMember(keys.sockRooms(env.prefix, a.id), room), 'room listed in the socket rooms set');
    await assertDelivery([a, b, c], { rooms: [room] }, [a, b]);
});

test('join then emit, back to back on the bus, is delivered in order', async (t) => {
    const [a, b] = await clients(t, 2);
    const room = uniq('ordered');
    const got = nextEvent(a, 'right-after-join', 5000);
    await env.be.join({ rooms: [room], sockets: [a.id] });
    await env.be.emit({ event: 'right-after-join', args: [1], rooms: [room] });
    assert.deepEqual(await got, [1]);
    void b;
});

test('emit to a user reaches that user only (users and the user: room)', async (t) => {
    const [a, b] = await clients(t, 2);
    // anonymous mode: user id = socket id
    await assertDelivery([a, b], { users: [a.id] }, [a]);
    await assertDelivery([a, b], { rooms: [`user:${b.id}`] }, [b]);
});

test('emit to one socket, and a socket is in the room named after its id', async (t) => {
    const [a, b, c] = await clients(t, 3);
    await assertDelivery([a, b, c], { sockets: [b.id] }, [b]);
    await assertDelivery([a, b, c], { rooms: [c.id] }, [c]);
});

// The room named after a socket's id is implicit (no room object is kept for
// it): another socket can still be put in a room of that name, a leave by that
// name takes both out, and the owner can be put back (here through its user, as
// it is no longer reachable by its id). 40-namespaces binds it to its namespace.
test('the own-id room: shared with a joiner, left and rejoined', async (t) => {
    const [a, b, c] = await clients(t, 3);
    await env.be.join({ rooms: [b.id], sockets: [a.id] });
    await membersAre(b.id, [a.id]); // b's own membership is implicit in Redis too
    await assertDelivery([a, b, c], { rooms: [b.id] }, [a, b]);
    await assertDelivery([a, b, c], { sockets: [b.id] }, [a, b]);
    await assertDelivery([a, b, c], { rooms: [b.id], except_sockets: [a.id] }, [b]);

    await env.be.leave({ rooms: [b.id], sockets: [b.id] });
    await membersAre(b.id, []);
    await assertDelivery([a, b, c], { sockets: [b.id] }, [], true);
    await env.be.join({ rooms: [b.id], users: [b.id] }); // anonymous mode: the user id is the socket id
    await assertDelivery([a, b, c], { sockets: [b.id] }, [b]);
    void c;
});

test('emit to the whole namespace, and to all but one socket', async (t) => {
    const [a, b, c] = await clients(t, 3);
    await assertDelivery([a, b, c], {}, [a, b, c]);
    await assertDelivery([a, b, c], { except_sockets: [b.id] }, [a, c]);
});

test('except_rooms leaves the members of those rooms out', async (t) => {
    const [a, b, c] = await clients(t, 3);
    const inner = uniq('inner');
    const muted = uniq('muted');
    await env.be.join({ rooms: [inner], sockets: [a.id, b.id, c.id] });
    await env.be.join({ rooms: [muted], sockets: [b.id] });
    await membersAre(inner, [a.id, b.id, c.id]);
    await membersAre(muted, [b.id]);
    await assertDelivery([a, b, c], { rooms: [inner], except_rooms: [muted] }, [a, c]);
    await assertDelivery([a, b, c], { except_rooms: [muted] }, [a, c]);
});

test('emit to several rooms delivers once to a socket in both', async (t) => {
    const [a, b, c] = await clients(t, 3);
    const r1 = uniq('r1');
    const r2 = uniq('r2');
    await env.be.join({ rooms: [r1, r2], sockets: [a.id] });
    await env.be.join({ rooms: [r2], sockets: [b.id] });
    await membersAre(r1, [a.id]);
    await membersAre(r2, [a.id, b.id]);
    await assertDelivery([a, b, c], { rooms: [r1, r2] }, [a, b]);
});

test('join and leave by user; leave stops delivery', async (t) => {
    const [a, b] = await clients(t, 2);
    const room = uniq('byuser');
    await env.be.join({ rooms: [room], users: [a.id, b.id] });
    await membersAre(room, [a.id, b.id]);
    await assertDelivery([a, b], { rooms: [room] }, [a, b]);

    await env.be.leave({ rooms: [room], sockets: [a.id] });
    await membersAre(room, [b.id]);
    assert.equal(await env.redis.sIsMember(keys.sockRooms(env.prefix, a.id), room), false);
    await assertDelivery([a, b], { rooms: [room] }, [b]);

    await env.be.leave({ rooms: [room], users: [b.id] });
    await membersAre(room, []);
    await assertDelivery([a, b], { rooms: [room] }, []);
});

// A room keeps its members in an array: it grows past 64, a leaver's place is
// taken by the last member, and it shrinks once three quarters have left. The
// leavers here are taken from the front, the middle and the end, and a
// disconnect leaves the room too.
test('a large room: members leave from anywhere, rejoin, and delivery stays exact', async (t) => {
    const all = await clients(t, 70);
    const room = uniq('big');
    await env.be.join({ rooms: [room], sockets: all.map((s) => s.id) });
    await membersAre(room, all.map((s) => s.id));
    await assertDelivery(all, { rooms: [room] }, all);

    const leavers = all.filter((s, i) => i < 10 || (i >= 30 && i < 50) || i >= 60 || i % 7 === 3);
    await env.be.leave({ rooms: [room], sockets: leavers.map((s) => s.id) });
    let members = all.filter((s) => !leavers.includes(s));
    assert.ok(members.length < 128 / 4, `few enough members left to shrink the array (${members.length})`);
    await membersAre(room, members.map((s) => s.id));
    await assertDelivery(all, { rooms: [room] }, members);

    const back = leavers.filter((s, i) => i % 3 === 0);
    await env.be.join({ rooms: [room], sockets: back.map((s) => s.id) });
    members = members.concat(back);
    await membersAre(room, members.map((s) => s.id));
    await assertDelivery(all, { rooms: [room] }, members);

    const gone = members[Math.floor(members.length / 2)];
    gone.disconnect();
    members = members.filter((s) => s !== gone);
    await membersAre(room, members.map((s) => s.id));
    const open = all.filter((s) => s !== gone);
    await assertDelivery(open, { rooms: [room] }, members);
});

test('Redis describes a connected socket (contract §5 keys)', async (t) => {
    const [a] = await clients(t, 1);
    // The connect entry is written together with the state: once a backend
    // sees it, the state is there.
    await env.be.readEvent(entryOf('connect', a.id), 5000);
    const hash = await env.redis.hGetAll(keys.sock(env.prefix, a.id));
    assert.equal(hash.id, a.id);
    assert.equal(hash.nsp, '/');
    assert.equal(hash.user, a.id);
    assert.equal(hash.transport, 'websocket');
    assert.ok(hash.node, 'node set');
    assert.match(hash.connected_at, /^\d+$/);
    // The own room (the socket id) is implicit; the user room is stored.
    const rooms = await env.redis.sMembers(keys.sockRooms(env.prefix, a.id));
    assert.ok(rooms.includes(`user:${a.id}`), `user room in ${JSON.stringify(rooms)}`);
    assert.ok(await env.redis.sIsMember(keys.room(env.prefix, '/', `user:${a.id}`), a.id));
    assert.ok(await env.redis.sIsMember(keys.userSockets(env.prefix, a.id), a.id));
    assert.ok(await env.redis.sIsMember(keys.nodeSockets(env.prefix, hash.node), a.id));
});

test('the disconnect op disconnects the socket and its keys go away', async (t) => {
    const [a, b] = await clients(t, 2);
    const room = uniq('gone');
    await env.be.join({ rooms: [room], sockets: [a.id, b.id] });
    await membersAre(room, [a.id, b.id]);
    const hash = await env.redis.hGetAll(keys.sock(env.prefix, a.id));
    const sid = a.id; // a.id is cleared by the client on disconnect

    const reason = nextEvent(a, 'disconnect', 5000);
    await env.be.disconnect({ sockets: [sid], reason: 'kicked' });
    assert.deepEqual((await reason)[0], 'io server disconnect');

    const entry = await env.be.readEvent(entryOf('disconnect', sid), 5000);
    assert.equal(typeof entry.reason, 'string');

    await membersAre(room, [b.id]);
    assert.ok(await env.redis.sIsMember(keys.nsRooms(env.prefix, '/'), room), 'a room with members stays listed');
    let left;
    await waitUntil(
        async () => {
            const [h, r, own, userRoom, user, node, listed] = await Promise.all([
                env.redis.exists(keys.sock(env.prefix, sid)),
                env.redis.exists(keys.sockRooms(env.prefix, sid)),
                env.redis.exists(keys.room(env.prefix, '/', sid)),
                env.redis.exists(keys.room(env.prefix, '/', `user:${sid}`)),
                env.redis.sIsMember(keys.userSockets(env.prefix, sid), sid),
                env.redis.sIsMember(keys.nodeSockets(env.prefix, hash.node), sid),
                env.redis.sIsMember(keys.nsRooms(env.prefix, '/'), `user:${sid}`),
            ]);
            left = { hash: h, rooms: r, ownRoom: own, userRoom, inUserSockets: user, inNodeSockets: node, listedInNs: listed };
            return h === 0 && r === 0 && own === 0 && userRoom === 0 && !user && !node && !listed;
        },
        5000,
        `every key of socket ${sid} to be gone`,
    ).catch((e) => {
        throw new Error(`${e.message}; still there: ${JSON.stringify(left)}`);
    });
    assert.ok(b.connected, 'the other socket stays');
});

test('the disconnect op by room disconnects its members only', async (t) => {
    const [a, b, c] = await clients(t, 3);
    const room = uniq('kickroom');
    await env.be.join({ rooms: [room], sockets: [a.id, c.id] });
    await membersAre(room, [a.id, c.id]);
    const gone = [nextEvent(a, 'disconnect', 5000), nextEvent(c, 'disconnect', 5000)];
    await env.be.disconnect({ rooms: [room], reason: 'room closed' });
    for (const [reason] of await Promise.all(gone)) assert.equal(reason, 'io server disconnect');
    // b is untouched: it still receives
    const still = nextEvent(b, 'still-here', 5000);
    await env.be.emit({ event: 'still-here', args: [], sockets: [b.id] });
    await still;
    assert.ok(b.connected);
});
