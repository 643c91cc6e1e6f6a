// Plain HTTP requests for the Engine.IO and health checks. Every request uses
// its own connection (agent: false) so that a test about one request is never
// disturbed by a pooled keep-alive connection of an earlier one, and so that
// restarting the server never leaves a stale pooled socket behind.

import http from 'node:http';
import https from 'node:https';

// Resolves {status, headers, text, json()}; rejects on network errors or after
// `timeoutMs` (the request is destroyed then).
export function request(url, { method = 'GET', headers = {}, body, timeoutMs = 5000 } = {}) {
    return new Promise((resolve, reject) => {
        const u = new URL(url);
        // https: the tests' certificates are self-signed (tests/e2e/42-tls-logs.test.mjs).
        const mod = u.protocol === 'https:' ? https : http;
        const req = mod.request(
            {
                rejectUnauthorized: false,
                host: u.hostname,
                port: u.port,
                path: u.pathname + u.search,
                method,
                headers: body !== undefined ? { 'content-length': Buffer.byteLength(body), ...headers } : headers,
                agent: false,
            },
            (res) => {
                const chunks = [];
                res.on('data', (c) => chunks.push(c));
                res.on('error', reject);
                res.on('end', () => {
                    clearTimeout(timer);
                    const raw = Buffer.concat(chunks);
                    const text = raw.toString('utf8');
                    resolve({
                        status: res.statusCode,
                        headers: res.headers,
                        raw,
                        text,
                        json() {
                            try {
                                return JSON.parse(text);
                            } catch (e) {
                                throw new Error(`${method} ${url}: body is not JSON: ${JSON.stringify(text)}`);
                            }
                        },
                    });
                });
            },
        );
        const timer = setTimeout(() => {
            req.destroy(new Error(`${method} ${url}: no answer within ${timeoutMs} ms`));
        }, timeoutMs);
        req.on('error', (e) => {
            clearTimeout(timer);
            reject(e);
        });
        if (body !== undefined) req.write(body);
        req.end();
    });
}

// Engine.IO polling payloads separate packets with the record separator.
export function splitPayload(text) {
    return text.split('\x1e');
}
