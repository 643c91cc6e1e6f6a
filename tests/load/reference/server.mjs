// Reference Socket.IO 4.8 server for tests/load: the same contract the load
// generator (tests/load/sbload.c) drives against switchboard and the floor.
//
//   node server.mjs --port 8090 [--host 127.0.0.1] [--redis redis://127.0.0.1:6379]
//                   [--jwt-secret S | --jwt-public-key PEM]
//
// Without --redis the default in-memory adapter is used; with it,
// @socket.io/redis-streams-adapter (every broadcast goes through a Redis stream
// and back, as it would between several nodes).
//
// Contract (what the generator relies on):
// - a client joins the room named in its CONNECT auth {"room":"r"} (or the
//   handshake query ?room=r) at connect time;
// - a control client (auth {"ctl":1}) emits "bcast" (room, payload): the server
//   broadcasts "m" (payload) to that room; the generator times the delivery from
//   a timestamp inside the payload, so the server never reads it;
// - any client emitting "e" (args..., ack) gets its args back in the ack: the
//   "backend" of the acks scenario is the server itself here;
// - every "e" the handler receives is counted; the control client's "count"
//   (ack) is answered with that count (the events scenario, where "e" comes
//   without an ack and the count is what the generator compares with what it sent);
// - POST /v1/emit with a JSON body {"event","args","rooms"} (the body switchboard's
//   REST API takes) broadcasts event(...args) to those rooms and answers 202, as
//   a backend's REST call would (sbload --rest-key); the Authorization header is
//   not checked;
// - prints "listening <port>" on stdout once it accepts connections.

import crypto from 'node:crypto';
import fs from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import { createAdapter } from '@socket.io/redis-streams-adapter';
import { createClient } from 'redis';
import { Server } from 'socket.io';

const { values: opt } = parseArgs({
    options: {
        port: { type: 'string', default: '8090' },
        host: { type: 'string', default: '127.0.0.1' },
        redis: { type: 'string' },
        'jwt-secret': { type: 'string' },
        'jwt-public-key': { type: 'string' },
    },
});

// Optional JWT check of the CONNECT auth token (HS256 with --jwt-secret, RS256 with
// --jwt-public-key), so handshake costs compare like for like with switchboard's
// --jwt-alg. node:crypto only, as a small service would do it without a library.
const jwtKey = opt['jwt-public-key'] ? crypto.createPublicKey(fs.readFileSync(opt['jwt-public-key'])) : null;
function verifyJwt(token) {
    if (typeof token !== 'string') return null;
    const parts = token.split('.');
    if (parts.length !== 3) return null;
    let head, claims;
    try {
        head = JSON.parse(Buffer.from(parts[0], 'base64url'));
        claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
    } catch {
        return null;
    }
    const input = Buffer.from(`${parts[0]}.${parts[1]}`);
    const sig = Buffer.from(parts[2], 'base64url');
    let ok = false;
    if (opt['jwt-secret'] && head.alg === 'HS256') {
        const want = crypto.createHmac('sha256', opt['jwt-secret']).update(input).digest();
        ok = want.length === sig.length && crypto.timingSafeEqual(want, sig);
    } else if (jwtKey && head.alg === 'RS256') {
        ok = crypto.verify('RSA-SHA256', input, jwtKey, sig);
    }
    if (!ok || typeof claims.sub !== 'string') return null;
    if (typeof claims.exp === 'number' && claims.exp < Date.now() / 1000) return null;
    return claims;
}

const serverOpts = {
    // Same heartbeat as switchboard's defaults, so idle runs cost the same pings.
    pingInterval: 25000,
    pingTimeout: 20000,
    maxHttpBufferSize: 1e6,
    // The generator is not a browser: no CORS, no per-message deflate.
    perMessageDeflate: false,
    httpCompression: false,
};

let redisClient = null;
if (opt.redis) {
    redisClient = createClient({ url: opt.redis });
    redisClient.on('error', (e) => console.error('redis error', e.message));
    await redisClient.connect();
    serverOpts.adapter = createAdapter(redisClient);
}

// Registered before Socket.IO attaches: engine.io hands it every request outside /socket.io/.
let emits = 0;
const http = createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/v1/emit') {
        res.writeHead(404).end();
        return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
        let m;
        try {
            m = JSON.parse(Buffer.concat(chunks));
        } catch {
            m = null;
        }
        if (!m || typeof m.event !== 'string' || !Array.isArray(m.rooms)) {
            res.writeHead(400).end();
            return;
        }
        io.to(m.rooms).emit(m.event, ...(Array.isArray(m.args) ? m.args : []));
        res.writeHead(202, { 'content-type': 'application/json' }).end(`{"id":"${++emits}"}`);
    });
});
const io = new Server(http, serverOpts);

if (opt['jwt-secret'] || opt['jwt-public-key']) {
    io.use((socket, next) => {
        const claims = verifyJwt(socket.handshake.auth?.token);
        if (!claims) return next(new Error('unauthorized'));
        socket.data.user = claims.sub;
        next();
    });
}

let eventsSeen = 0;

io.on('connection', (socket) => {
    const auth = socket.handshake.auth || {};
    const room = typeof auth.room === 'string' ? auth.room : socket.handshake.query.room;
    if (auth.ctl) {
        socket.on('bcast', (r, payload) => {
            if (typeof r === 'string') io.to(r).emit('m', payload);
        });
        socket.on('count', (ack) => {
            if (typeof ack === 'function') ack(eventsSeen);
        });
    } else if (typeof room === 'string' && room.length > 0) {
        socket.join(room);
    }
    socket.on('e', (...args) => {
        eventsSeen++;
        const ack = args.length > 0 && typeof args[args.length - 1] === 'function' ? args.pop() : null;
        if (ack) ack(...args);
    });
});

// Many thousands of clients connect at once; a small backlog would reset them.
http.listen({ port: Number(opt.port), host: opt.host, backlog: 65535 }, () => {
    process.stdout.write(`listening ${opt.port}\n`);
});

const stop = () => {
    io.close();
    if (redisClient) redisClient.quit().catch(() => {});
    setTimeout(() => process.exit(0), 200).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
