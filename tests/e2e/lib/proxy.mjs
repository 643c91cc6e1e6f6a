// A small TCP round-robin proxy: plays the Kubernetes Service in front of
// several switchboard nodes. Each new client connection goes to the next
// backend that is up (a refused or reset connect tries the next one, like
// kube-proxy with readiness removing a pod); bytes are piped both ways.
//
//   const p = await startProxy([nodeA.port, nodeB.port]);
//   p.url                      -> 'http://127.0.0.1:<port>' for socket.io-client
//   p.setBackends([a, b, c])   -> new connections go to these ports
//   p.remove(port)             -> stop sending new connections to one (readiness failed)
//   p.counts                   -> Map port -> connections sent there
//   await p.close()            -> stops listening and destroys open pipes
import net from 'node:net';

export async function startProxy(ports, { host = '127.0.0.1' } = {}) {
    let backends = [...ports];
    let next = 0;
    const counts = new Map();
    const open = new Set();

    function pick(tried) {
        for (let i = 0; i < backends.length; i++) {
            const port = backends[(next + i) % backends.length];
            if (!tried.has(port)) {
                next = (next + i + 1) % Math.max(backends.length, 1);
                return port;
            }
        }
        return null;
    }

    function connect(client, tried) {
        const port = pick(tried);
        if (port == null) {
            client.destroy();
            return;
        }
        tried.add(port);
        const upstream = net.connect({ host, port });
        let connected = false;
        upstream.once('connect', () => {
            connected = true;
            counts.set(port, (counts.get(port) || 0) + 1);
            open.add(upstream);
            client.pipe(upstream);
            upstream.pipe(client);
            client.resume();
        });
        upstream.on('error', () => {
            if (!connected) connect(client, tried); // refused: try the next node
            else client.destroy();
        });
        upstream.on('close', () => {
            open.delete(upstream);
            if (connected) client.destroy();
        });
    }

    const server = net.createServer({ pauseOnConnect: true }, (client) => {
        open.add(client);
        client.on('error', () => {});
        client.on('close', () => open.delete(client));
        connect(client, new Set());
    });
    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, host, resolve);
    });
    const port = server.address().port;
    return {
        port,
        url: `http://${host}:${port}`,
        counts,
        setBackends(list) {
            backends = [...list];
            next = 0;
        },
        remove(p) {
            backends = backends.filter((b) => b !== p);
        },
        add(p) {
            if (!backends.includes(p)) backends.push(p);
        },
        async close() {
            for (const s of open) s.destroy();
            await new Promise((resolve) => server.close(resolve));
        },
    };
}
