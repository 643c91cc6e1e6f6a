// switchboard's live dashboard.
//
// Signs in to the reserved Socket.IO namespace "/_admin" with an API key (kept in
// sessionStorage, sent only in the CONNECT auth payload), receives a "stats"
// snapshot every second, keeps the last WINDOW_MS of them in memory, and draws:
// totals, uPlot charts (per node or total), the node table, the busiest rooms,
// the disconnect reasons. "find" and "disconnect_socket" (with acks) drive the
// socket search. Counters in "stats" are cumulative; rates come from differencing
// successive samples of the same node.
//
// The globals `io` (socket.io client) and `uPlot` come from vendor/, which
// scripts/build-dashboard.sh fills from npm.

const KEY_STORAGE = 'switchboard.dashboard.apiKey';
const WINDOW_MS = 5 * 60 * 1000; // samples kept: the last 5 minutes
const MAX_SAMPLES = 400; // hard cap should the server send faster than once a second
const ACK_TIMEOUT_MS = 5000;

// Counters the server sends per node and in totals (cumulative since the node started).
const COUNTERS = ['connects_total', 'disconnects_total', 'events_in', 'events_out', 'deliveries', 'bus_entries',
    'dropped', 'rate_limited'];

// What each chart shows. kind: gauge (as sent), rate (per second, from counters),
// latency (ms as sent; the total line is the worst node, since latencies do not add up).
const CHARTS = [
    { id: 'connections', title: 'Connections', unit: '', metrics: [{ key: 'connections', label: 'connections', kind: 'gauge' }] },
    {
        id: 'connects', title: 'Connects and disconnects /s', unit: '/s',
        metrics: [
            { key: 'connects_total', label: 'connects', kind: 'rate' },
            { key: 'disconnects_total', label: 'disconnects', kind: 'rate', dash: true },
        ],
    },
    {
        id: 'events', title: 'Events in and out /s', unit: '/s',
        metrics: [
            { key: 'events_in', label: 'in', kind: 'rate' },
            { key: 'events_out', label: 'out', kind: 'rate', dash: true },
        ],
    },
    { id: 'deliveries', title: 'Deliveries /s', unit: '/s', metrics: [{ key: 'deliveries', label: 'deliveries', kind: 'rate' }] },
    {
        id: 'delivery-latency', title: 'Delivery latency (ms)', unit: 'ms',
        metrics: [
            { key: 'delivery_p50_ms', label: 'p50', kind: 'latency' },
            { key: 'delivery_p99_ms', label: 'p99', kind: 'latency', dash: true },
        ],
    },
    { id: 'loop-lag', title: 'Event-loop lag (ms)', unit: 'ms', metrics: [{ key: 'loop_lag_ms', label: 'lag', kind: 'latency' }] },
    {
        id: 'redis-latency', title: 'Redis latency (ms)', unit: 'ms',
        metrics: [
            { key: 'redis_p50_ms', label: 'p50', kind: 'latency' },
            { key: 'redis_p99_ms', label: 'p99', kind: 'latency', dash: true },
        ],
    },
];

const PALETTE = ['#3b82f6', '#f97316', '#10b981', '#e11d48', '#8b5cf6', '#eab308', '#06b6d4', '#ec4899', '#84cc16',
    '#64748b'];

const $ = (sel) => document.querySelector(sel);
const fmtInt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const fmtRate = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const fmtMs = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const fmtAxis = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2, notation: 'compact' });
const fmtClock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });

const state = {
    socket: null,
    samples: [], // {ts, nodes: Map(id -> node), totals, rates: Map(id -> {counter: per second | null})}
    view: '@total', // '@total', '@each' or a node id
    charts: new Map(), // chart id -> {plot, signature}
    everConnected: false,
    signingIn: false,
};

// ---------------------------------------------------------------- helpers

function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = v;
        else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
}

function num(v) {
    return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

function show(node, visible) {
    node.hidden = !visible;
}

function duration(ms) {
    if (!(ms >= 0)) return '–';
    const s = Math.floor(ms / 1000);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

function colorOf(index) {
    return PALETTE[index % PALETTE.length];
}

function setStatus(kind, text) {
    const s = $('#status');
    s.dataset.state = kind;
    s.textContent = text;
}

// ---------------------------------------------------------------- samples

// Per-second rates of one node against the previous sample holding that node.
// A counter that went down (the node restarted under the same id) gives no rate.
function ratesOf(node, prevNode, dtSec) {
    const r = {};
    for (const c of COUNTERS) {
        const a = num(node[c]);
        const b = prevNode ? num(prevNode[c]) : null;
        r[c] = a !== null && b !== null && dtSec > 0 && a >= b ? (a - b) / dtSec : null;
    }
    return r;
}

function addSample(msg) {
    if (!msg || typeof msg !== 'object' || !Array.isArray(msg.nodes)) return null;
    const ts = num(msg.ts) ?? Date.now();
    const prev = state.samples[state.samples.length - 1];
    if (prev && ts <= prev.ts) return null; // a duplicate or out-of-order sample would give bogus rates
    const nodes = new Map();
    for (const n of msg.nodes) if (n && typeof n.id === 'string') nodes.set(n.id, n);
    const rates = new Map();
    for (const [id, n] of nodes) {
        // A node's figures are as of its last_seen (when it wrote them), which may lag the push: the same
        // snapshot seen twice keeps its rate instead of reading as 0 followed by a burst. Without last_seen,
        // the push times are the clock.
        const at = (node, sampleTs) => num(node.last_seen) ?? sampleTs;
        const now = at(n, ts);
        let p = null;
        for (let i = state.samples.length - 1; i >= 0 && !p; i--) {
            const cand = state.samples[i].nodes.get(id);
            if (!cand) continue;
            if (at(cand, state.samples[i].ts) === now) {
                const same = state.samples[i].rates.get(id);
                if (same) p = { reuse: same };
            } else {
                p = { node: cand, at: at(cand, state.samples[i].ts) };
            }
        }
        if (p?.reuse) rates.set(id, p.reuse);
        else rates.set(id, ratesOf(n, p?.node, p ? (now - p.at) / 1000 : 0));
    }
    const sample = {
        ts,
        nodes,
        totals: msg.totals && typeof msg.totals === 'object' ? msg.totals : {},
        rooms: Array.isArray(msg.rooms) ? msg.rooms : [],
        disconnects: Array.isArray(msg.disconnects) ? msg.disconnects : [],
        rates,
    };
    state.samples.push(sample);
    while (state.samples.length > MAX_SAMPLES || (state.samples.length > 1 && state.samples[0].ts < ts - WINDOW_MS)) {
        state.samples.shift();
    }
    return sample;
}

// The total rate is the sum of per-node rates, not the difference of totals: a
// node joining or leaving would otherwise show as a burst or a negative rate.
function totalRate(sample, counter) {
    let sum = null;
    for (const r of sample.rates.values()) {
        if (r[counter] !== null) sum = (sum ?? 0) + r[counter];
    }
    return sum;
}

function totalGauge(sample, key) {
    const t = num(sample.totals[key]);
    if (t !== null) return t;
    let sum = null;
    for (const n of sample.nodes.values()) if (num(n[key]) !== null) sum = (sum ?? 0) + n[key];
    return sum;
}

function worstLatency(sample, key) {
    let worst = null;
    for (const n of sample.nodes.values()) if (num(n[key]) !== null) worst = Math.max(worst ?? 0, n[key]);
    return worst;
}

function valueOf(sample, nodeId, metric) {
    if (nodeId === null) {
        if (metric.kind === 'rate') return totalRate(sample, metric.key);
        if (metric.kind === 'latency') return worstLatency(sample, metric.key);
        return totalGauge(sample, metric.key);
    }
    if (metric.kind === 'rate') return sample.rates.get(nodeId)?.[metric.key] ?? null;
    const n = sample.nodes.get(nodeId);
    return n ? num(n[metric.key]) : null;
}

// ---------------------------------------------------------------- charts

// Node ids seen in the window, oldest first, so colours stay put as nodes come and go.
function nodesInWindow() {
    const ids = [];
    const seen = new Set();
    for (const s of state.samples) {
        for (const id of s.nodes.keys()) {
            if (!seen.has(id)) {
                seen.add(id);
                ids.push(id);
            }
        }
    }
    return ids;
}

function seriesFor(chart) {
    const out = [];
    const allNodes = nodesInWindow();
    let nodeIds;
    if (state.view === '@total') nodeIds = [null];
    else if (state.view === '@each') nodeIds = allNodes;
    else nodeIds = [state.view];
    for (const nodeId of nodeIds) {
        chart.metrics.forEach((m, mi) => {
            const colorIndex = nodeId === null ? mi : allNodes.indexOf(nodeId);
            let label = nodeId === null ? m.label : nodeIds.length > 1 ? `${nodeId} ${m.label}` : m.label;
            if (nodeId === null && m.kind === 'latency') label += ' (worst node)';
            out.push({ nodeId, metric: m, label, color: colorOf(colorIndex), dash: nodeIds.length > 1 && m.dash });
        });
    }
    return out;
}

function cssVar(name, fallback) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

function chartWidth(box) {
    return Math.max(200, Math.floor(box.clientWidth - 2));
}

function chartHeight() {
    return window.matchMedia('(max-width: 600px)').matches ? 160 : 190;
}

function makePlot(chart, series, box) {
    const axisColor = cssVar('--muted', '#666');
    const gridColor = cssVar('--grid', 'rgba(0,0,0,0.08)');
    const axis = { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor, width: 1 } };
    const fmt = chart.unit === 'ms' ? fmtMs : chart.unit === '/s' ? fmtRate : fmtInt;
    const xAxis = {
        ...axis,
        space: 70,
        // Whole seconds at least: samples are a second apart, and uPlot would otherwise label half seconds.
        incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600],
        values: (u, vals) => vals.map((v) => fmtClock.format(new Date(v * 1000))),
    };
    const opts = {
        width: chartWidth(box),
        height: chartHeight(),
        cursor: { drag: { x: false, y: false } },
        legend: { live: true },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
        axes: [xAxis, { ...axis, size: 50, values: (u, vals) => vals.map((v) => fmtAxis.format(v)) }],
        series: [
            {},
            ...series.map((s) => ({
                label: s.label,
                stroke: s.color,
                width: 1.5,
                dash: s.dash ? [6, 4] : undefined,
                spanGaps: false,
                value: (u, v) => (v === null || v === undefined ? '–' : fmt.format(v)),
            })),
        ],
    };
    return new uPlot(opts, dataFor(series), box);
}

function dataFor(series) {
    const xs = state.samples.map((s) => s.ts / 1000);
    const ys = series.map((s) => state.samples.map((sample) => valueOf(sample, s.nodeId, s.metric)));
    return [xs, ...ys];
}

function renderCharts() {
    const host = $('#charts');
    for (const chart of CHARTS) {
        let entry = state.charts.get(chart.id);
        if (!entry) {
            const box = el('div', { class: 'plot' });
            const card = el('figure', { class: 'card chart', id: `chart-${chart.id}` },
                el('figcaption', { text: chart.title }), box);
            host.append(card);
            entry = { box, plot: null, signature: '' };
            state.charts.set(chart.id, entry);
        }
        const series = seriesFor(chart);
        const signature = series.map((s) => `${s.label}|${s.color}`).join(';');
        if (!entry.plot || entry.signature !== signature) {
            // The set of lines changed (a node came, the view changed): uPlot's series are fixed per instance.
            entry.plot?.destroy();
            entry.box.textContent = '';
            entry.plot = makePlot(chart, series, entry.box);
            entry.signature = signature;
        } else {
            entry.plot.setData(dataFor(series));
        }
    }
}

function resizeCharts() {
    for (const entry of state.charts.values()) {
        entry.plot?.setSize({ width: chartWidth(entry.box), height: chartHeight() });
    }
}

function clearCharts() {
    for (const entry of state.charts.values()) entry.plot?.destroy();
    state.charts.clear();
    $('#charts').textContent = '';
}

// ---------------------------------------------------------------- tables and figures

function setFigure(id, v, fmt = fmtInt) {
    $(id).textContent = v === null || v === undefined ? '–' : fmt.format(v);
}

function renderFigures(sample) {
    setFigure('#total-nodes', num(sample.totals.nodes) ?? sample.nodes.size);
    setFigure('#total-connections', totalGauge(sample, 'connections'));
    setFigure('#total-sockets', totalGauge(sample, 'sockets'));
    setFigure('#total-connects-rate', totalRate(sample, 'connects_total'), fmtRate);
    setFigure('#total-disconnects-rate', totalRate(sample, 'disconnects_total'), fmtRate);
    setFigure('#total-events-in-rate', totalRate(sample, 'events_in'), fmtRate);
    setFigure('#total-events-out-rate', totalRate(sample, 'events_out'), fmtRate);
    setFigure('#total-deliveries-rate', totalRate(sample, 'deliveries'), fmtRate);
    setFigure('#total-dropped', totalGauge(sample, 'dropped'));
    setFigure('#total-rate-limited', totalGauge(sample, 'rate_limited'));
}

function cell(v, fmt, cls = 'num', col = undefined) {
    return el('td', { class: cls, 'data-col': col, text: v === null || v === undefined ? '–' : fmt ? fmt.format(v) : String(v) });
}

function renderNodes(sample) {
    const tbody = $('#nodes-table tbody');
    const rows = [];
    const ids = [...sample.nodes.keys()].sort();
    const all = nodesInWindow();
    for (const id of ids) {
        const n = sample.nodes.get(id);
        const r = sample.rates.get(id) || {};
        rows.push(el('tr', { 'data-node-id': id },
            el('td', {}, el('span', { class: 'node-name' },
                el('span', { class: 'swatch', style: `background:${colorOf(all.indexOf(id))}` }),
                el('span', { class: 'mono', text: id }))),
            cell(num(n.connections), fmtInt, 'num', 'connections'),
            cell(num(n.sockets), fmtInt, 'num', 'sockets'),
            cell(r.events_in, fmtRate, 'num', 'events-in'),
            cell(r.events_out, fmtRate, 'num', 'events-out'),
            cell(r.deliveries, fmtRate, 'num', 'deliveries'),
            cell(num(n.delivery_p99_ms), fmtMs, 'num', 'delivery-p99'),
            cell(num(n.loop_lag_ms), fmtMs, 'num', 'loop-lag'),
            cell(num(n.redis_p99_ms), fmtMs, 'num', 'redis-p99'),
            cell(num(n.dropped), fmtInt, 'num', 'dropped'),
            cell(num(n.rate_limited), fmtInt, 'num', 'rate-limited'),
            cell(n.version ?? null, null, '', 'version'),
            cell(num(n.threads), fmtInt, 'num', 'threads'),
            el('td', { class: 'num', 'data-col': 'up',
                text: num(n.started_at) === null ? '–' : duration(sample.ts - n.started_at) }),
            el('td', { class: 'num', 'data-col': 'seen',
                text: num(n.last_seen) === null ? '–' : duration(Math.max(0, sample.ts - n.last_seen)) })));
    }
    tbody.replaceChildren(...rows);
}

function renderNodeSelect(sample) {
    const sel = $('#node-select');
    const want = ['@total', '@each', ...nodesInWindow()];
    const have = [...sel.options].map((o) => o.value);
    if (JSON.stringify(want) === JSON.stringify(have)) return;
    for (const id of want.slice(2)) {
        if (!have.includes(id)) sel.append(el('option', { value: id, text: `Node ${id}` }));
    }
    for (const o of [...sel.options]) if (!want.includes(o.value)) o.remove();
    if (!want.includes(state.view)) state.view = '@total';
    sel.value = state.view;
    void sample;
}

function renderRooms(sample) {
    const rooms = sample.rooms.filter((r) => r && typeof r.room === 'string').slice(0, 10);
    const max = Math.max(1, ...rooms.map((r) => num(r.count) ?? 0));
    const rows = rooms.map((r) => el('tr', {},
        el('td', { class: 'mono', text: String(r.namespace ?? '/') }),
        el('td', { class: 'mono room', text: r.room, title: r.room }),
        el('td', { class: 'num bar', style: `--fill:${((num(r.count) ?? 0) / max) * 100}%` }, fmtInt.format(num(r.count) ?? 0))));
    $('#rooms-table tbody').replaceChildren(...rows);
    show($('[data-for="rooms-table"]'), rows.length === 0);
}

function renderReasons(sample) {
    // Counts are cumulative since each node started: the last-5-minutes figure is the
    // difference with the oldest sample of the window.
    const oldest = state.samples[0];
    const before = new Map();
    for (const d of oldest?.disconnects || []) if (d && typeof d.reason === 'string') before.set(d.reason, num(d.count) ?? 0);
    const list = sample.disconnects
        .filter((d) => d && typeof d.reason === 'string' && (num(d.count) ?? 0) > 0)
        .map((d) => {
            const total = num(d.count) ?? 0;
            const recent = oldest === sample ? null : Math.max(0, total - (before.get(d.reason) ?? 0));
            return { reason: d.reason, total, recent };
        })
        .sort((a, b) => (b.recent ?? 0) - (a.recent ?? 0) || b.total - a.total);
    const rows = list.map((d) => el('tr', { 'data-reason': d.reason },
        el('td', { class: 'mono', text: d.reason }),
        cell(d.recent, fmtInt),
        cell(d.total, fmtInt)));
    $('#disconnects-table tbody').replaceChildren(...rows);
    show($('[data-for="disconnects-table"]'), rows.length === 0);
}

function onStats(msg) {
    const sample = addSample(msg);
    if (!sample) return;
    renderNodeSelect(sample);
    renderFigures(sample);
    renderNodes(sample);
    renderRooms(sample);
    renderReasons(sample);
    renderCharts();
    $('#app').dataset.ts = String(sample.ts);
}

// ---------------------------------------------------------------- socket search

function withAck(event, payload) {
    return new Promise((resolve, reject) => {
        const s = state.socket;
        if (!s || !s.connected) {
            reject(new Error('not connected'));
            return;
        }
        s.timeout(ACK_TIMEOUT_MS).emit(event, payload, (err, reply) => {
            if (err) reject(new Error('no answer from the server'));
            else resolve(reply);
        });
    });
}

function socketCard(s) {
    const rooms = Array.isArray(s.rooms) ? s.rooms : [];
    const status = el('span', { class: 'result-status', role: 'status' });
    const button = el('button', {
        type: 'button', class: 'danger disconnect-btn', 'data-socket-id': s.id, text: 'Disconnect',
    });
    button.addEventListener('click', async () => {
        button.disabled = true;
        status.textContent = 'disconnecting…';
        try {
            const reply = await withAck('disconnect_socket', { socket: s.id });
            if (reply && reply.ok) {
                status.textContent = 'disconnected';
                card.classList.add('gone');
            } else {
                const e = reply && reply.error;
                status.textContent = `failed: ${e?.message || e?.code || 'unknown error'}`;
                button.disabled = false;
            }
        } catch (e) {
            status.textContent = `failed: ${e.message}`;
            button.disabled = false;
        }
    });
    const when = num(s.connected_at);
    const card = el('article', { class: 'result', 'data-socket-id': s.id },
        el('dl', {},
            el('dt', { text: 'Socket' }), el('dd', { class: 'mono', text: String(s.id) }),
            el('dt', { text: 'User' }), el('dd', { class: 'mono', text: s.user == null ? '–' : String(s.user) }),
            el('dt', { text: 'Namespace' }), el('dd', { class: 'mono', text: String(s.namespace ?? '/') }),
            el('dt', { text: 'Node' }), el('dd', { class: 'mono', text: String(s.node ?? '–') }),
            el('dt', { text: 'Transport' }), el('dd', { text: String(s.transport ?? '–') }),
            el('dt', { text: 'Connected' }),
            el('dd', { text: when === null ? '–' : `${new Date(when).toLocaleString()} (${duration(Date.now() - when)} ago)` }),
            el('dt', { text: `Rooms (${rooms.length})` }),
            el('dd', { class: 'rooms' }, ...(rooms.length ? rooms.map((r) => el('span', { class: 'chip mono', text: String(r) }))
                : [el('span', { class: 'hint', text: 'none' })]))),
        el('div', { class: 'actions' }, button, status));
    return card;
}

async function onSearch(ev) {
    ev.preventDefault();
    const q = $('#search-q').value.trim();
    const msg = $('#search-message');
    const out = $('#search-results');
    if (!q) return;
    msg.textContent = 'searching…';
    out.replaceChildren();
    try {
        const reply = await withAck('find', { q });
        if (reply && reply.error) {
            msg.textContent = `search failed: ${reply.error.message || reply.error.code}`;
            return;
        }
        // A socket can match both ways (an anonymous socket's user id is its socket id): show it once.
        const seen = new Set();
        const list = (reply && Array.isArray(reply.sockets) ? reply.sockets : []).filter((s) => {
            const k = `${s?.namespace}\u0000${s?.id}`;
            if (!s || !s.id || seen.has(k)) return false;
            seen.add(k);
            return true;
        });
        msg.textContent = list.length ? `${list.length} socket${list.length > 1 ? 's' : ''}` : `no socket matches “${q}”`;
        out.replaceChildren(...list.map(socketCard));
    } catch (e) {
        msg.textContent = `search failed: ${e.message}`;
    }
}

// ---------------------------------------------------------------- connection

function showSignin(error) {
    show($('#signin'), true);
    show($('#app'), false);
    show($('#signout'), false);
    show($('#view-label'), false);
    const err = $('#signin-error');
    err.textContent = error || '';
    show(err, Boolean(error));
    $('#signin-button').disabled = false;
    $('#api-key').focus();
}

function showApp() {
    show($('#signin'), false);
    show($('#app'), true);
    show($('#signout'), true);
    show($('#view-label'), true);
}

function closeSocket() {
    const s = state.socket;
    state.socket = null;
    if (s) {
        s.removeAllListeners();
        s.io.removeAllListeners?.();
        s.disconnect();
    }
}

function signOut(error) {
    closeSocket();
    sessionStorage.removeItem(KEY_STORAGE);
    state.samples = [];
    state.everConnected = false;
    clearCharts();
    setStatus('signed-out', 'signed out');
    showSignin(error);
}

function connect(key) {
    closeSocket();
    state.signingIn = true;
    setStatus('connecting', 'connecting…');
    const socket = io(`${location.origin}/_admin`, {
        auth: { key },
        transports: ['websocket'],
        forceNew: true,
        reconnectionDelayMax: 5000,
    });
    state.socket = socket;
    socket.on('connect', () => {
        state.signingIn = false;
        state.everConnected = true;
        setStatus('live', 'live');
        showApp();
        renderCharts();
    });
    socket.on('connect_error', (err) => {
        const unauthorized = err?.message === 'Unauthorized' || err?.data?.code === 'unauthorized';
        if (unauthorized) {
            // The key is wrong or was revoked: never retry it on our own.
            signOut('The server refused this API key.');
            return;
        }
        // A transport failure: socket.io retries by itself (a CONNECT_ERROR from the server is not retried).
        if (!socket.active) {
            signOut(`The server refused the connection: ${err?.message || 'unknown error'}`);
            return;
        }
        setStatus('offline', 'offline, retrying…');
        if (!state.everConnected) {
            const e = $('#signin-error');
            e.textContent = `Cannot reach the server (${err?.message || 'error'}); retrying…`;
            show(e, true);
        }
    });
    socket.on('disconnect', (reason) => {
        if (reason === 'io server disconnect') {
            // The server closed the admin session (key revoked, server shutting down): sign in again.
            signOut('The server ended the session; sign in again.');
            return;
        }
        setStatus('offline', 'offline, reconnecting…');
    });
    socket.on('stats', onStats);
}

function onSignin(ev) {
    ev.preventDefault();
    const key = $('#api-key').value;
    if (!key) return;
    $('#signin-button').disabled = true;
    show($('#signin-error'), false);
    sessionStorage.setItem(KEY_STORAGE, key);
    $('#api-key').value = '';
    connect(key);
}

function start() {
    if (typeof io !== 'function' || typeof uPlot !== 'function') {
        const f = $('#fatal');
        f.textContent = 'The dashboard\'s libraries are missing from /dashboard/vendor/: run scripts/build-dashboard.sh.';
        show(f, true);
        show($('#signin'), false);
        return;
    }
    $('#signin-form').addEventListener('submit', onSignin);
    $('#signout').addEventListener('click', () => signOut());
    $('#search-form').addEventListener('submit', onSearch);
    $('#node-select').addEventListener('change', (ev) => {
        state.view = ev.target.value;
        renderCharts();
    });
    let resizeTimer = 0;
    window.addEventListener('resize', () => {
        clearTimeout(resizeTimer);
        resizeTimer = setTimeout(resizeCharts, 100);
    });
    const saved = sessionStorage.getItem(KEY_STORAGE);
    if (saved) connect(saved);
    else showSignin();
}

start();
