// Summarises the JSON lines of tests/load/run-bench.sh: per (scenario, server)
// the median and the spread (min-max) of every metric over the repetitions,
// and ratios to Node in-memory and to the floor measured in the same run.
//
//   node aggregate.mjs results.jsonl [summary.jsonl] [--server-cpu 0] [--gen-cpu 1]
//
// Prints Markdown on stdout, then the summary as JSON lines (one per scenario
// and server; also written to summary.jsonl when given). No dependencies.

import fs from 'node:fs';

const args = process.argv.slice(2);
const opt = (name, def) => {
    const i = args.indexOf(name);
    if (i < 0) return def;
    const v = args[i + 1];
    args.splice(i, 2);
    return v;
};
const serverCpu = Number(opt('--server-cpu', '0'));
const genCpu = Number(opt('--gen-cpu', '1'));
const [inFile, outFile] = args;
if (!inFile) {
    console.error('usage: node aggregate.mjs results.jsonl [summary.jsonl]');
    process.exit(2);
}

const rows = fs
    .readFileSync(inFile, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l, i) => {
        try {
            return JSON.parse(l);
        } catch {
            console.error(`line ${i + 1} is not JSON, skipped`);
            return null;
        }
    })
    .filter(Boolean);

const get = (o, path) => path.split('.').reduce((v, k) => (v == null ? undefined : v[k]), o);
const cpuBusy = (r, n) => (r.cpu || []).find((c) => c.cpu === n)?.busy_pct;

// [label, getter, lower is better?] per scenario; the first `headline` ones get ratio columns.
// Core busy % counts everything on the core (other load on the machine too); the process figures only the
// server (+ its Redis) and the generator themselves, over the same measured interval.
const procPct = (cpu, wall) => (cpu && wall > 0 ? (100 * (cpu.user_s + cpu.sys_s)) / wall : undefined);
const srvPct = (r) => {
    const s = procPct(r.server_cpu, r.wall_s);
    return s === undefined ? undefined : s + (r.redis_cpu_s > 0 ? (100 * r.redis_cpu_s) / r.wall_s : 0);
};
const genPct = (r) => procPct(r.gen_cpu, r.wall_s);
const common = [
    ['srv+redis %', srvPct],
    ['gen %', genPct],
    ['srv core %', (r) => cpuBusy(r, serverCpu)],
    ['gen core %', (r) => cpuBusy(r, genCpu)],
];
const METRICS = {
    idle: {
        headline: ['µs/connect', 'µs/connect user', 'RSS KiB/conn'],
        list: [
            ['ready', (r) => r.ready],
            ['connects/s', (r) => r.connects_per_s],
            ['µs/connect', (r) => get(r, 'server_us_per_connect.total')],
            ['µs/connect user', (r) => get(r, 'server_us_per_connect.user')],
            ['redis µs/connect', (r) => nonNeg(get(r, 'server_us_per_connect.redis'))],
            ['RSS KiB/conn', (r) => r.rss_kib_per_conn],
            ['Redis B/conn', (r) => r.redis_bytes_per_conn],
        ],
    },
    broadcast: {
        headline: ['µs/deliv user', 'µs/deliv', 'p99 ms'],
        list: [
            ['delivered', (r) => r.delivered],
            ['missing', (r) => r.missing],
            ['dups', (r) => r.duplicates],
            ['p50 ms', (r) => get(r, 'lat_ms.p50')],
            ['p99 ms', (r) => get(r, 'lat_ms.p99')],
            ['p999 ms', (r) => get(r, 'lat_ms.p999')],
            ['max ms', (r) => get(r, 'lat_ms.max')],
            ['µs/deliv user', (r) => get(r, 'server_us_per_delivery.user')],
            ['µs/deliv sys', (r) => get(r, 'server_us_per_delivery.sys')],
            ['µs/deliv', (r) => get(r, 'server_us_per_delivery.total')],
            ['redis µs/deliv', (r) => nonNeg(get(r, 'server_us_per_delivery.redis'))],
        ],
    },
    saturation: {
        headline: ['deliv/s', 'µs/deliv user', 'µs/deliv'],
        list: [
            ['deliv/s', (r) => r.deliveries_per_s],
            ['missing', (r) => r.missing],
            ['dups', (r) => r.duplicates],
            ['p50 ms', (r) => get(r, 'lat_ms.p50')],
            ['p99 ms', (r) => get(r, 'lat_ms.p99')],
            ['µs/deliv user', (r) => get(r, 'server_us_per_delivery.user')],
            ['µs/deliv', (r) => get(r, 'server_us_per_delivery.total')],
            ['redis µs/deliv', (r) => nonNeg(get(r, 'server_us_per_delivery.redis'))],
        ],
    },
    acks: {
        headline: ['acks/s', 'µs/ack user', 'µs/ack'],
        list: [
            ['acks/s', (r) => r.acks_per_s],
            ['errors', (r) => r.acks_err],
            ['unanswered', (r) => r.acks_unanswered],
            ['p50 ms', (r) => get(r, 'ack_ms.p50')],
            ['p99 ms', (r) => get(r, 'ack_ms.p99')],
            ['µs/ack user', (r) => get(r, 'server_us_per_ack.user')],
            ['µs/ack', (r) => get(r, 'server_us_per_ack.total')],
            ['redis µs/ack', (r) => nonNeg(get(r, 'server_us_per_ack.redis'))],
        ],
    },
    events: {
        headline: ['events/s', 'µs/event user', 'µs/event'],
        list: [
            ['events/s', (r) => r.events_per_s],
            ['sent', (r) => r.events_sent],
            ['missing', (r) => r.events_missing],
            ['dups', (r) => r.events_duplicates ?? undefined],
            ['stream p99 ms', (r) => (r.stream_ms?.n ? r.stream_ms.p99 : undefined)],
            ['µs/event user', (r) => get(r, 'server_us_per_event.user')],
            ['µs/event sys', (r) => get(r, 'server_us_per_event.sys')],
            ['µs/event', (r) => get(r, 'server_us_per_event.total')],
            ['redis µs/event', (r) => nonNeg(get(r, 'server_us_per_event.redis'))],
        ],
    },
    rest: {
        headline: ['emits/s', 'µs/emit user', 'µs/emit'],
        list: [
            ['emits/s', (r) => get(r, 'rest.emits_per_s')],
            ['errors', (r) => get(r, 'rest.errors')],
            ['missing', (r) => r.missing],
            ['dups', (r) => r.duplicates],
            ['request p50 ms', (r) => get(r, 'rest_ms.p50')],
            ['request p99 ms', (r) => get(r, 'rest_ms.p99')],
            ['delivery p99 ms', (r) => get(r, 'lat_ms.p99')],
            ['µs/emit user', (r) => get(r, 'server_us_per_emit.user')],
            ['µs/emit', (r) => get(r, 'server_us_per_emit.total')],
            ['redis µs/emit', (r) => nonNeg(get(r, 'server_us_per_emit.redis'))],
        ],
    },
    churn: {
        headline: ['µs/deliv', 'p99 ms'],
        list: [
            ['churn conn/s', (r) => get(r, 'churn.connects_per_s')],
            ['churn failed', (r) => get(r, 'churn.failed')],
            ['missing', (r) => r.missing],
            ['dups', (r) => r.duplicates],
            ['p99 ms', (r) => get(r, 'lat_ms.p99')],
            ['max ms', (r) => get(r, 'lat_ms.max')],
            ['µs/deliv', (r) => get(r, 'server_us_per_delivery.total')],
            ['redis µs/deliv', (r) => nonNeg(get(r, 'server_us_per_delivery.redis'))],
        ],
    },
};

function nonNeg(v) {
    return typeof v === 'number' && v >= 0 ? v : undefined;
}

function stats(values) {
    const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
    if (!v.length) return null;
    const mid = v.length >> 1;
    const median = v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
    return { median, min: v[0], max: v[v.length - 1], n: v.length };
}

function fmt(x) {
    if (x == null) return '–';
    const a = Math.abs(x);
    if (a === 0) return '0';
    if (Number.isInteger(x)) return String(x);
    if (a >= 1000) return x.toFixed(0);
    if (a >= 100) return x.toFixed(1);
    if (a >= 1) return x.toFixed(2);
    return x.toPrecision(2);
}

function cell(s) {
    if (!s) return '–';
    if (s.n === 1 || s.min === s.max) return fmt(s.median);
    return `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;
}

const ORDER = ['switchboard', 'node', 'node-redis', 'floor'];
const benches = [...new Set(rows.map((r) => r.bench || r.scenario))];
const summary = [];
const md = [];

for (const bench of benches) {
    const spec = METRICS[bench] || METRICS[rows.find((r) => (r.bench || r.scenario) === bench).scenario];
    if (!spec) continue;
    const list = [...spec.list, ...common];
    const mine = rows.filter((r) => (r.bench || r.scenario) === bench);
    const servers = [...new Set(mine.map((r) => r.server))].sort(
        (a, b) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99),
    );
    const table = {};
    for (const srv of servers) {
        const rs = mine.filter((r) => r.server === srv);
        table[srv] = {};
        for (const [label, fn] of list) table[srv][label] = stats(rs.map(fn));
    }
    const sample = mine[0];
    md.push(`### ${bench}`);
    md.push('');
    md.push(
        `${sample.clients} clients` +
            (sample.rate != null ? `, ${sample.rate > 0 ? `${sample.rate} msg/s` : `saturation, window ${sample.window}`}` : '') +
            (sample.sent != null ? `, ${sample.sent} messages` : '') +
            (sample.inflight != null ? `, ${sample.inflight} in flight per client, ${sample.duration_s} s` : '') +
            (sample.emitters != null ? `, ${sample.emitters} emitting, ${sample.duration_s} s` : '') +
            (sample.churn ? `, churn ${sample.churn.rate}/s × ${sample.churn.life_s} s` : '') +
            `; median (min–max) of ${Math.max(...servers.map((s) => mine.filter((r) => r.server === s).length))} runs`,
    );
    md.push('');
    md.push(`| server | ${list.map((m) => m[0]).join(' | ')} |`);
    md.push(`|---|${list.map(() => '---:').join('|')}|`);
    for (const srv of servers) md.push(`| ${srv} | ${list.map(([l]) => cell(table[srv][l])).join(' | ')} |`);
    md.push('');
    const refs = ['node', 'floor'].filter((r) => table[r]);
    if (refs.length) {
        const heads = [];
        for (const h of spec.headline) for (const ref of refs) heads.push([h, ref]);
        md.push(`| ratio | ${heads.map(([h, ref]) => `${h} ÷ ${ref}`).join(' | ')} |`);
        md.push(`|---|${heads.map(() => '---:').join('|')}|`);
        for (const srv of servers) {
            const cells = heads.map(([h, ref]) => {
                const a = table[srv][h]?.median;
                const b = table[ref][h]?.median;
                return a != null && b ? `${fmt(a / b)}×` : '–';
            });
            md.push(`| ${srv} | ${cells.join(' | ')} |`);
        }
        md.push('');
    }
    for (const srv of servers) {
        const metrics = {};
        const vsNode = {};
        const vsFloor = {};
        for (const [label] of list) {
            const st = table[srv][label];
            if (!st) continue;
            metrics[label] = { median: st.median, min: st.min, max: st.max };
            const n = table.node?.[label]?.median;
            const f = table.floor?.[label]?.median;
            if (n) vsNode[label] = +(st.median / n).toPrecision(4);
            if (f) vsFloor[label] = +(st.median / f).toPrecision(4);
        }
        const runs = mine.filter((r) => r.server === srv).length;
        summary.push({ bench, server: srv, runs, metrics, vs_node: vsNode, vs_floor: vsFloor });
    }
}

const generatorBound = rows.filter((r) => genPct(r) > 85);
if (generatorBound.length) {
    md.push(
        `Note: the generator process used over 85 % of its core in ${generatorBound.length} run(s) ` +
            `(${[...new Set(generatorBound.map((r) => `${r.bench || r.scenario}/${r.server}`))].join(', ')}): ` +
            'those figures may be limited by the generator, not the server.',
    );
    md.push('');
}
const busyElsewhere = rows.filter(
    (r) => cpuBusy(r, serverCpu) - (srvPct(r) ?? 0) > 25 || cpuBusy(r, genCpu) - (genPct(r) ?? 0) > 25,
);
if (busyElsewhere.length) {
    md.push(
        `Note: in ${busyElsewhere.length} of ${rows.length} run(s) a core was over 25 points busier than the ` +
            'server or generator on it account for: other load on the machine; latency and rates are then ' +
            'indicative only (per-process CPU per unit of work is not affected as much).',
    );
    md.push('');
}
const incomplete = rows.filter(
    (r) =>
        r.timed_out || r.failed > 0 || r.missing > 0 || r.duplicates > 0 || r.events_missing > 0 || r.events_duplicates > 0,
);
if (incomplete.length) {
    md.push(
        `Runs with failures, missing or duplicate deliveries, or a timeout: ` +
            incomplete.map((r) => `${r.bench || r.scenario}/${r.server}#${r.rep}`).join(', '),
    );
    md.push('');
}

const jsonl = summary.map((s) => JSON.stringify({ kind: 'summary', ...s })).join('\n') + '\n';
md.push('Summary (one JSON line per scenario and server: medians, min, max, ratios to node and floor):', '', '```jsonl', jsonl.trimEnd(), '```');
process.stdout.write(md.join('\n') + '\n');
if (outFile) fs.writeFileSync(outFile, jsonl);
