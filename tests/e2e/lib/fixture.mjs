// One test file's world: a Redis, N switchboard nodes on it (same prefix), a
// Redis-only backend, and client factories whose clients are closed when the
// test that made them ends (t.after), pass or fail.
//
// Usage in a test file:
//   let env;
//   before(async () => { env = await setupFile({ tag: 't20', args: ['--ack-timeout', '500'] }); });
//   after(() => env?.teardown());
//   test('...', async (t) => { const s = await env.client(t); ... });

import { backend, closeRedis, connectRedis } from './backend.mjs';
import { RawClient, sioClose, sioConnect } from './clients.mjs';
import { filePrefix, startRedis, startSwitchboard } from './harness.mjs';

class FileEnv {
    // opts: {tag, nodes = 1, namespaces = [], args = [] (given to every node)}
    constructor(opts) {
        this.opts = opts;
        this.redisServer = null;
        this.redis = null; // node-redis client of the test's backend
        this.prefix = null;
        this.be = null; // backend helpers bound to redis + prefix
        this.nodes = []; // switchboard handles, every one stopped by teardown
    }

    get node() {
        return this.nodes[0];
    }

    get url() {
        return this.nodes[0].url;
    }

    // Starts one more node with the file's settings plus `extra.args`
    // (extra.port to reuse a port, extra.namespaces to replace the file's).
    async startNode(extra = {}) {
        const n = await startSwitchboard({
            redisUrl: this.redisServer.url,
            prefix: this.prefix,
            namespaces: extra.namespaces || this.opts.namespaces || [],
            args: [...(this.opts.args || []), ...(extra.args || [])],
            port: extra.port,
        });
        this.nodes.push(n);
        return n;
    }

    // A connected socket.io-client Socket, closed after test `t`.
    // opts.url picks another node; other opts go to io().
    async client(t, nsp = '/', opts = {}) {
        const { url = this.url, ...ioOpts } = opts;
        const s = await sioConnect(url, nsp, ioOpts);
        t.after(() => sioClose(s));
        return s;
    }

    // A raw Engine.IO WebSocket (see RawClient), closed after test `t`.
    async raw(t, opts = {}) {
        const { url = this.url, ...rawOpts } = opts;
        const c = await RawClient.open(url, rawOpts);
        t.after(() => c.close());
        return c;
    }

    // Stops everything; fails when a node did not exit cleanly on SIGTERM (a crash, a sanitizer report, a hang),
    // since bad input or failures must never take the process down.
    async teardown() {
        const unclean = [];
        for (const n of this.nodes) {
            const alreadyGone = !n.exit && (n.child.exitCode !== null || n.child.signalCode !== null);
            const st = await n.stop().catch(() => ({ code: null, signal: 'unknown' }));
            if (alreadyGone || st.code !== 0)
                unclean.push(`node on port ${n.port} exited with code ${st.code} signal ${st.signal}` +
                    `${alreadyGone ? ' before teardown' : ''}; log ${n.logFile}:\n${n.stderrTail().slice(-1500)}`);
        }
        await closeRedis(this.redis);
        if (this.redisServer) await this.redisServer.stop();
        if (unclean.length) throw new Error(unclean.join('\n'));
    }
}

export async function setupFile(opts) {
    const env = new FileEnv(opts);
    try {
        env.redisServer = await startRedis();
        env.prefix = filePrefix(opts.tag, env.redisServer);
        env.redis = await connectRedis(env.redisServer.url);
        env.be = backend(env.redis, env.prefix);
        for (let i = 0; i < (opts.nodes || 1); i++) await env.startNode();
    } catch (e) {
        await env.teardown();
        throw e;
    }
    return env;
}
