// Reads run-bench.sh results (JSON lines of the broadcast scenario at several
// room sizes) and prints a Markdown table of CPU per delivery and p99 latency
// by room size and server; with --svg FILE also draws both as a small SVG
// line chart (no dependencies: the SVG is written by hand).
//
//   node plot-scaling.mjs [--svg FILE] results.jsonl...
import { readFileSync, writeFileSync } from 'node:fs';

const args = process.argv.slice(2);
let svgPath = null;
const files = [];
for (let i = 0; i < args.length; i++) {
    if (args[i] === '--svg') svgPath = args[++i];
    else files.push(args[i]);
}
const rows = [];
for (const f of files) {
    for (const line of readFileSync(f, 'utf8').split('\n')) {
        if (!line.trim()) continue;
        let r;
        try {
            r = JSON.parse(line);
        } catch {
            continue;
        }
        if (r.scenario !== 'broadcast' || !r.server_us_per_delivery || !r.lat_ms) continue;
        rows.push({
            server: r.server,
            size: r.members ?? r.clients,
            us: r.server_us_per_delivery.total,
            user: r.server_us_per_delivery.user,
            p99: r.lat_ms.p99,
            missing: r.missing,
        });
    }
}
const servers = [...new Set(rows.map((r) => r.server))];
const sizes = [...new Set(rows.map((r) => r.size))].sort((a, b) => a - b);
const at = (s, n) => rows.find((r) => r.server === s && r.size === n);

console.log('| room size | ' + servers.map((s) => `${s} µs/deliv (user) | ${s} p99 ms`).join(' | ') + ' |');
console.log('|---:|' + servers.map(() => '---:|---:').join('|') + '|');
for (const n of sizes) {
    const cells = servers.map((s) => {
        const r = at(s, n);
        return r ? `${r.us.toFixed(2)} (${r.user.toFixed(2)}) | ${r.p99.toFixed(1)}` : '– | –';
    });
    console.log(`| ${n} | ${cells.join(' | ')} |`);
}

if (svgPath) {
    const W = 360, H = 240, L = 52, R = 26, T = 28, B = 40;
    const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
    // logY: latency spans two orders of magnitude between servers
    const panel = (x0, title, key, unit, logY) => {
        const vals = rows.map((r) => r[key]).filter((v) => v > 0);
        const ymax = logY ? Math.ceil(Math.log10(Math.max(...vals))) : Math.max(...vals) * 1.1 || 1;
        const ymin = logY ? Math.floor(Math.log10(Math.min(...vals))) : 0;
        const xmin = Math.log10(sizes[0]), xmax = Math.log10(sizes[sizes.length - 1]) || xmin + 1;
        const px = (n) => x0 + L + ((Math.log10(n) - xmin) / (xmax - xmin || 1)) * (W - L - R);
        const py = (v) =>
            T + (1 - (logY ? (Math.log10(Math.max(v, 1e-9)) - ymin) / (ymax - ymin || 1) : v / ymax)) * (H - T - B);
        let g = `<text x="${x0 + W / 2}" y="16" text-anchor="middle" font-size="13">${title}</text>`;
        g += `<line x1="${x0 + L}" y1="${H - B}" x2="${x0 + W - R}" y2="${H - B}" stroke="#333"/>`;
        g += `<line x1="${x0 + L}" y1="${T}" x2="${x0 + L}" y2="${H - B}" stroke="#333"/>`;
        const ticks = logY ? Array.from({ length: ymax - ymin + 1 }, (_, i) => 10 ** (ymin + i)) : [0, 1, 2, 3, 4].map((i) => (ymax * i) / 4);
        for (const v of ticks) {
            g += `<text x="${x0 + L - 4}" y="${py(v) + 4}" text-anchor="end" font-size="10">${v.toFixed(v < 10 ? 1 : 0)}</text>`;
            g += `<line x1="${x0 + L}" y1="${py(v)}" x2="${x0 + W - R}" y2="${py(v)}" stroke="#eee"/>`;
        }
        for (const n of sizes)
            g += `<text x="${px(n)}" y="${H - B + 14}" text-anchor="middle" font-size="10">${n}</text>`;
        g += `<text x="${x0 + W / 2}" y="${H - 6}" text-anchor="middle" font-size="10">room size (clients, log scale)</text>`;
        g += `<text x="${x0 + 12}" y="${(T + H - B) / 2}" font-size="10" transform="rotate(-90 ${x0 + 12} ${(T + H - B) / 2})" text-anchor="middle">${unit}</text>`;
        servers.forEach((s, i) => {
            const pts = sizes.map((n) => at(s, n)).filter(Boolean).map((r) => `${px(r.size).toFixed(1)},${py(r[key]).toFixed(1)}`);
            g += `<polyline fill="none" stroke="${colors[i % colors.length]}" stroke-width="2" points="${pts.join(' ')}"/>`;
            for (const p of pts) {
                const [x, y] = p.split(',');
                g += `<circle cx="${x}" cy="${y}" r="3" fill="${colors[i % colors.length]}"/>`;
            }
        });
        return g;
    };
    let legend = '';
    servers.forEach((s, i) => {
        legend += `<rect x="${20 + i * 110}" y="${H + 8}" width="12" height="12" fill="${colors[i % colors.length]}"/>`;
        legend += `<text x="${36 + i * 110}" y="${H + 18}" font-size="11">${s}</text>`;
    });
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${H + 28}" font-family="sans-serif">` +
        `<rect width="100%" height="100%" fill="white"/>` +
        panel(0, 'server CPU per delivery', 'us', 'µs (user + sys)', false) +
        panel(W, 'p99 delivery latency, 5 msg/s', 'p99', 'ms (log scale)', true) + legend + '</svg>\n';
    writeFileSync(svgPath, svg);
}
