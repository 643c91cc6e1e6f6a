// Clients for the e2e tests: the real socket.io-client, and a raw Engine.IO /
// Socket.IO client over the `ws` package for sending bytes no real client
// would send.

import { io } from 'socket.io-client';
import WebSocket from 'ws';

import { waitFor } from './util.mjs';

export const CONNECT_TIMEOUT_MS = 5000;

// Opens a socket.io-client Socket and waits for "connect" (rejects on
// connect_error or after the bound). Defaults: its own connection (forceNew),
// WebSocket only, no automatic reconnection; `opts` overrides them.
export async function sioConnect(baseUrl, nsp = '/', opts = {}) {
    const socket = io(baseUrl + (nsp === '/' ? '' : nsp), {
        forceNew: true,
        reconnection: false,
        transports: ['websocket'],
        timeout: CONNECT_TIMEOUT_MS,
        ...opts,
    });
    try {
        await waitFor(
            new Promise((resolve, reject) => {
                socket.once('connect', resolve);
                socket.once('connect_error', reject);
            }),
            CONNECT_TIMEOUT_MS,
            `socket.io connect to ${nsp}`,
        );
    } catch (e) {
        socket.disconnect();
        if (socket.io && socket.io.engine) socket.io.engine.close();
        throw e;
    }
    return socket;
}

// Closes a socket.io-client Socket and its Manager's connection.
export function sioClose(socket) {
    if (!socket) return;
    socket.io.reconnection(false);
    socket.disconnect();
    socket.io.engine?.close();
}

// Resolves the argument array of the next `event` on a socket.io-client Socket.
export function nextEvent(socket, event, ms = 5000) {
    let handler;
    const p = new Promise((resolve) => {
        handler = (...args) => resolve(args);
        socket.once(event, handler);
    });
    return waitFor(p, ms, `client event "${event}"`).finally(() => socket.off(event, handler));
}

// Emits `event` with `args` asking for an ack; resolves the ack's argument array.
export function emitWithAckArgs(socket, event, args, ms = 5000) {
    return waitFor(
        new Promise((resolve) => socket.emit(event, ...args, (...ackArgs) => resolve(ackArgs))),
        ms,
        `ack of "${event}"`,
    );
}

// A raw Engine.IO v4 WebSocket client. Messages are kept in arrival order;
// text frames as strings, binary frames as Buffers. Pings ("2") are answered
// with "3" unless autoPong is false, and are never handed to next().
export class RawClient {
    static async open(baseUrl, { query = 'EIO=4&transport=websocket', autoPong = true, ms = 5000 } = {}) {
        const c = new RawClient(baseUrl.replace(/^http/, 'ws') + '/socket.io/?' + query, autoPong);
        try {
            await c.opened(ms);
        } catch (e) {
            c.close();
            throw e;
        }
        return c;
    }

    // Waits for the WebSocket upgrade and the Engine.IO OPEN packet "0{...}".
    async opened(ms) {
        const c = this;
        await waitFor(
            new Promise((resolve, reject) => {
                c.ws.once('open', resolve);
                c.ws.once('error', reject); // e.g. "Unexpected server response: 400"
            }),
            ms,
            'raw WebSocket open',
        );
        const open = await c.next((m) => typeof m === 'string' && m.startsWith('0'), ms);
        c.handshake = JSON.parse(open.slice(1));
    }

    constructor(url, autoPong) {
        this.autoPong = autoPong;
        this.queue = [];
        this.waiters = [];
        this.pings = 0;
        this.closed = null; // {code, reason} once closed
        this.closeWaiters = [];
        this.pingWaiters = [];
        this.ws = new WebSocket(url);
        this.ws.on('error', () => {}); // a close always follows; tests look at the close
        this.ws.on('message', (data, isBinary) => {
            const msg = isBinary ? Buffer.from(data) : data.toString('utf8');
            if (msg === '2') {
                this.pings += 1;
                if (this.autoPong && this.ws.readyState === WebSocket.OPEN) this.ws.send('3');
                for (const w of this.pingWaiters.filter((x) => this.pings >= x.n)) {
                    this.pingWaiters.splice(this.pingWaiters.indexOf(w), 1);
                    w.resolve(this.pings);
                }
                return;
            }
            this.queue.push(msg);
            this.flush();
        });
        this.ws.on('close', (code, reason) => {
            this.closed = { code, reason: reason.toString() };
            for (const w of this.closeWaiters.splice(0)) w(this.closed);
            this.flush();
        });
    }

    flush() {
        for (const w of [...this.waiters]) {
            const i = this.queue.findIndex(w.predicate);
            if (i >= 0) {
                const [msg] = this.queue.splice(0, i + 1).slice(-1);
                this.waiters.splice(this.waiters.indexOf(w), 1);
                w.resolve(msg);
            } else if (this.closed) {
                this.waiters.splice(this.waiters.indexOf(w), 1);
                w.reject(new Error(`connection closed (${this.closed.code}) before the expected message; got ${JSON.stringify(this.queue)}`));
            }
        }
    }

    // Resolves the first queued or future message satisfying `predicate`,
    // dropping the messages before it.
    next(predicate = () => true, ms = 5000) {
        let entry;
        const p = new Promise((resolve, reject) => {
            entry = { predicate, resolve, reject };
            this.waiters.push(entry);
            this.flush();
        });
        return waitFor(p, ms, 'raw message').catch((e) => {
            const i = this.waiters.indexOf(entry);
            if (i >= 0) this.waiters.splice(i, 1);
            throw new Error(`${e.message}; queued: ${JSON.stringify(this.queue.map(String))}`);
        });
    }

    send(data) {
        return new Promise((resolve) => {
            // After a close, ws reports the failed send through the callback; that is fine here.
            this.ws.send(data, () => resolve());
        });
    }

    // Sends a Socket.IO CONNECT for `nsp` and resolves the answer's packet text
    // ("40{...}" or "44{...}" with the namespace part).
    async connect(nsp = '/', auth, ms = 5000) {
        const nspPart = nsp === '/' ? '' : `${nsp},`;
        await this.send(`40${nspPart}${auth === undefined ? '' : JSON.stringify(auth)}`);
        return this.next((m) => typeof m === 'string' && (m.startsWith(`40${nspPart}`) || m.startsWith(`44${nspPart}`)), ms);
    }

    // CONNECT to "/" and return the Socket.IO socket id from "40{"sid":...}".
    async connectSid(nsp = '/', auth, ms = 5000) {
        const nspPart = nsp === '/' ? '' : `${nsp},`;
        const answer = await this.connect(nsp, auth, ms);
        if (!answer.startsWith(`40${nspPart}`)) throw new Error(`CONNECT refused: ${answer}`);
        return JSON.parse(answer.slice(2 + nspPart.length)).sid;
    }

    // Resolves once `n` pings in total have arrived.
    waitPings(n, ms = 5000) {
        if (this.pings >= n) return Promise.resolve(this.pings);
        return waitFor(new Promise((resolve) => this.pingWaiters.push({ n, resolve })), ms, `${n} pings`);
    }

    waitClose(ms = 5000) {
        if (this.closed) return Promise.resolve(this.closed);
        return waitFor(new Promise((r) => this.closeWaiters.push(r)), ms, 'the server to close the WebSocket');
    }

    close() {
        if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
    }
}
