// docs/openapi.yaml: passes `redocly lint` with the recommended ruleset (no
// error, no warning), and cannot drift from src/api.c: every route, body field
// and error code the C code handles is in the document, and the document
// lists nothing the code does not handle.
//
// Needs @redocly/cli from tests/e2e/package.json (devDependencies): `npm ci`.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const SPEC = path.join(REPO, 'docs', 'openapi.yaml');
const LINT_CONFIG = path.join(REPO, 'docs', 'redocly.yaml');
const API_C = path.join(REPO, 'src', 'api.c');
// REDOCLY_BIN: another redocly binary (for trying a version without touching node_modules).
const REDOCLY = process.env.REDOCLY_BIN || path.join(HERE, 'node_modules', '.bin', 'redocly');
const LINT_TIMEOUT_MS = 120000;

function redocly(args) {
    if (!fs.existsSync(REDOCLY)) {
        throw new Error(`${REDOCLY} is missing: @redocly/cli is a devDependency of tests/e2e; run npm ci there`);
    }
    return new Promise((resolve, reject) => {
        execFile(
            REDOCLY,
            args,
            {
                cwd: REPO,
                timeout: LINT_TIMEOUT_MS,
                maxBuffer: 32 * 1024 * 1024,
                // No telemetry, no update check: the lint must not depend on the network.
                env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', NO_COLOR: '1' },
            },
            (err, stdout, stderr) => resolve({ code: err ? (err.code ?? err.signal) : 0, stdout, stderr }),
        );
    });
}

// ---- what the C code handles --------------------------------------------------------------------------------------

// Routes of the router (from the ops[] table to `#undef STARTS`) as "METHOD /v1/path", path parameters written "{}".
// The method of a route is the first `!is_get` / `!is_post` test after its match.
function routesOfApiC() {
    const src = fs.readFileSync(API_C, 'utf8');
    const from = src.indexOf('ops[] =');
    const to = src.indexOf('#undef STARTS', from);
    assert.ok(from >= 0 && to > from, 'src/api.c routes requests with an ops[] table, IS() and STARTS()');
    const body = src.slice(from, to);
    const methodAfter = (idx, what) => {
        const m = /!is_(get|post)\b/.exec(body.slice(idx, idx + 400));
        assert.ok(m, `the method of ${what} is found in src/api.c`);
        return m[1].toUpperCase();
    };
    const routes = new Set();
    // The table of bus operations: {"/emit", "emit"}, ..., matched in one loop.
    const table = /^ops\[\]\s*=\s*\{([\s\S]*?)\};/.exec(body);
    assert.ok(table, 'the ops[] table');
    const opsMethod = methodAfter(body.indexOf('ops[i]'), 'the ops[] routes');
    for (const m of table[1].matchAll(/\{\s*"(\/[A-Za-z0-9_/-]+)"\s*,\s*"[a-z_]+"\s*\}/g)) routes.add(`${opsMethod} /v1${m[1]}`);
    // Exact paths: if (IS("/x")) {
    for (const m of body.matchAll(/IS\("(\/[A-Za-z0-9_/-]+)"\)\)\s*\{/g)) routes.add(`${methodAfter(m.index, m[1])} /v1${m[1]}`);
    // Named resources: if (STARTS("/x/") || ...) { ... a tail: STARTS("/x/") && tail != NULL ... memcmp(tail, "/y" ...
    const group = /if \((STARTS\("[^"]+"\)(?:\s*\|\|\s*STARTS\("[^"]+"\))*)\)\s*\{/.exec(body);
    assert.ok(group, 'the STARTS(...) group of named resources');
    const rest = body.slice(group.index);
    for (const m of rest.matchAll(/STARTS\("([^"]+)"\) && tail != NULL\)\s*\{[\s\S]*?memcmp\(tail, "([^"]+)"/g)) {
        routes.add(`${methodAfter(group.index + m.index + m[0].length, m[1] + m[2])} /v1${m[1]}{}${m[2]}`);
    }
    const plain = /if \(tail != NULL\)\s*goto notfound;/.exec(rest);
    assert.ok(plain, 'the named resources without a tail');
    const plainMethod = methodAfter(group.index + plain.index, 'the named resources');
    for (const m of group[1].matchAll(/STARTS\("([^"]+)"\)/g)) routes.add(`${plainMethod} /v1${m[1]}{}`);
    return routes;
}

// ---- what the document says ---------------------------------------------------------------------------------------

// "METHOD /path" of every operation, path parameters written "{}" (regex on the YAML: paths at 2 spaces, methods at 4).
function routesOfSpec() {
    const routes = new Set();
    let inPaths = false;
    let current = null;
    for (const line of fs.readFileSync(SPEC, 'utf8').split('\n')) {
        if (/^\S/.test(line)) inPaths = line.startsWith('paths:');
        if (!inPaths) continue;
        const p = /^ {2}(\/[^:\s]*):\s*$/.exec(line);
        if (p) current = p[1].replace(/\{[^}]+\}/g, '{}');
        const m = /^ {4}(get|put|post|delete|patch|head|options):\s*$/.exec(line);
        if (m && current) routes.add(`${m[1].toUpperCase()} ${current}`);
    }
    return routes;
}

test('every route of src/api.c is in docs/openapi.yaml, and only those under /v1', () => {
    const code = routesOfApiC();
    const spec = routesOfSpec();
    // A parser that silently finds nothing would make this test pass; the API has at least these.
    for (const r of ['POST /v1/emit', 'POST /v1/batch', 'GET /v1/rooms', 'GET /v1/rooms/{}', 'POST /v1/sockets/{}/emit', 'GET /v1/stats']) {
        assert.ok(code.has(r), `the parser of src/api.c finds ${r} (found ${[...code].join(', ')}); update the parser`);
    }
    const missing = [...code].filter((r) => !spec.has(r));
    assert.deepEqual(missing, [], 'routes handled by src/api.c but missing from docs/openapi.yaml');
    const extra = [...spec].filter((r) => r.includes(' /v1') && !code.has(r));
    assert.deepEqual(extra, [], 'routes in docs/openapi.yaml that src/api.c does not handle');
    assert.ok(spec.has('GET /healthz') && spec.has('GET /readyz'), 'the health probes are documented');
});

test('redocly lint passes with the recommended ruleset: no error, no warning', async () => {
    const r = await redocly(['lint', SPEC, '--config', LINT_CONFIG, '--format', 'json']);
    let report;
    try {
        report = JSON.parse(r.stdout);
    } catch {
        assert.fail(`redocly lint printed no JSON report (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
    }
    const problems = report.problems
        .map((p) => `${p.severity} ${p.ruleId}: ${p.message} at ${p.location?.[0]?.pointer}`)
        .join('\n');
    assert.equal(report.totals.errors, 0, problems);
    assert.equal(report.totals.warnings, 0, problems);
    assert.equal(r.code, 0, `exit status of redocly lint\n${r.stderr}`);
});

test('body fields and error codes of src/api.c match the schemas', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-openapi-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const out = path.join(dir, 'openapi.json');
    const r = await redocly(['bundle', SPEC, '--config', LINT_CONFIG, '--dereferenced', '--ext', 'json', '-o', out]);
    assert.equal(r.code, 0, `redocly bundle failed:\n${r.stdout}\n${r.stderr}`);
    const spec = JSON.parse(fs.readFileSync(out, 'utf8'));
    const src = fs.readFileSync(API_C, 'utf8');

    // The fields a validator accepts (its allowed[] list, less "op", which batch items carry).
    const allowedIn = (fn) => {
        const at = src.indexOf(`${fn}(`);
        assert.ok(at >= 0, `src/api.c has ${fn}()`);
        const m = /allowed\[\]\s*=\s*\{([^}]*)\}/.exec(src.slice(at));
        return [...m[1].matchAll(/"([a-z_]+)"/g)].map((x) => x[1]).filter((f) => f !== 'op').sort();
    };
    // Properties of a request schema, through its allOf.
    const propsOf = (schema) => {
        const names = new Set(Object.keys(schema.properties || {}));
        for (const part of schema.allOf || []) for (const n of propsOf(part)) names.add(n);
        return [...names].sort();
    };
    const bodyOf = (p) => spec.paths[p].post.requestBody.content['application/json'].schema;
    assert.deepEqual(propsOf(bodyOf('/v1/emit')), allowedIn('validate_emit'), '/v1/emit fields');
    assert.deepEqual(propsOf(bodyOf('/v1/join')), allowedIn('validate_join'), '/v1/join fields');
    assert.deepEqual(propsOf(bodyOf('/v1/leave')), allowedIn('validate_join'), '/v1/leave fields');
    assert.deepEqual(propsOf(bodyOf('/v1/disconnect')), allowedIn('validate_disconnect'), '/v1/disconnect fields');
    assert.deepEqual(propsOf(bodyOf('/v1/acks')), allowedIn('validate_ack'), '/v1/acks fields');
    assert.deepEqual(propsOf(bodyOf('/v1/sockets/{sid}/emit')), allowedIn('handle_socket_emit'), 'socket emit fields');

    // Every error code the C code can send is in the ErrorDetail enum, and the other way round.
    const codes = new Set();
    for (const m of src.matchAll(/(?:send_error\([^,]+,|error_body\(|"code",)\s*"([a-z_]+)"/g)) codes.add(m[1]);
    assert.ok(codes.has('invalid_argument') && codes.has('timeout'), `codes found in src/api.c: ${[...codes]}`);
    const anyError = spec.paths['/v1/emit'].post.responses['400'].content['application/json'].schema;
    const documented = anyError.properties.error.properties.code.enum;
    assert.deepEqual([...codes].sort(), [...documented].sort(), 'error codes of src/api.c vs ErrorDetail.code');

    // Every /v1 operation documents the errors any call can get.
    for (const [p, item] of Object.entries(spec.paths).filter(([p]) => p.startsWith('/v1/'))) {
        for (const [method, op] of Object.entries(item)) {
            for (const status of ['401', '405', '503']) {
                assert.ok(op.responses[status], `${method.toUpperCase()} ${p} documents ${status}`);
            }
            if (method === 'post') {
                for (const status of ['400', '413']) assert.ok(op.responses[status], `POST ${p} documents ${status}`);
            }
        }
    }
});
