// Small waiting helpers shared by every e2e test file.
//
// Rule of the suite: a test waits for an outcome (an event, a stream entry, a
// Redis state) with a bound, never with a fixed sleep. The only fixed wait is
// quietPeriod(), used to show that something does NOT happen; it is capped at
// 300 ms so nobody hides a race behind it.

import net from 'node:net';

// Races `promise` against a timer; rejects with a message naming `label`.
export function waitFor(promise, ms, label = 'operation') {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${label}`)), ms);
    });
    const result = Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
    // A test that fails before awaiting this must not turn the later timeout
    // into an unhandled rejection; awaiting `result` still throws.
    result.catch(() => {});
    return result;
}

// Resolves with the argument array of the next `event` on an EventEmitter-like
// object (socket.io-client Socket/Manager/Engine, ws WebSocket, ChildProcess).
export function waitForEvent(emitter, event, ms, label) {
    let handler;
    const p = new Promise((resolve) => {
        handler = (...args) => resolve(args);
        emitter.once(event, handler);
    });
    return waitFor(p, ms, label || `event "${event}"`).finally(() => {
        if (typeof emitter.off === 'function') emitter.off(event, handler);
    });
}

// Polls `fn` (sync or async) until it returns a truthy value, which is returned.
// Used for Redis state that has no notification of its own.
export async function waitUntil(fn, ms, label = 'condition', intervalMs = 25) {
    const deadline = Date.now() + ms;
    let last;
    for (;;) {
        last = await fn();
        if (last) return last;
        if (Date.now() >= deadline) throw new Error(`timed out after ${ms} ms waiting for ${label}`);
        await new Promise((r) => setTimeout(r, intervalMs));
    }
}

// The one fixed wait of the suite: gives a message that must NOT arrive a
// chance to arrive. Callers first wait for a later "barrier" message on the
// same socket, so this only covers reordering, hence the small cap.
export function quietPeriod(ms = 150) {
    if (ms > 300) throw new Error('quietPeriod is capped at 300 ms');
    return new Promise((r) => setTimeout(r, ms));
}

// Records every occurrence of `event` on `emitter` (argument arrays).
export function record(emitter, event) {
    const seen = [];
    emitter.on(event, (...args) => seen.push(args));
    return seen;
}

// A TCP port nobody listens on right now (the kernel picks it).
export function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.unref();
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

// Unique-enough suffix for room/event names inside one test file.
let counter = 0;
export function uniq(base = 'x') {
    counter += 1;
    return `${base}-${process.pid}-${counter}`;
}

// Converts what socket.io-client hands out for binary data into a plain array.
export function bytesOf(value) {
    if (value instanceof ArrayBuffer) return Array.from(new Uint8Array(value));
    if (ArrayBuffer.isView(value)) return Array.from(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
    throw new Error(`not binary data: ${Object.prototype.toString.call(value)}`);
}
