// Deployment: the Helm chart rendered by a real helm v3, the Dockerfile, and
// the systemd example. Needs no running switchboard; where the binary exists
// (SWITCHBOARD_BIN, default build/switchboard) its --help and --check-config
// prove that every SWITCHBOARD_* variable the chart and the examples set is
// one switchboard knows and accepts (it exits 2 on an unknown one).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { CHART, REPO, documents, helm, notes, template } from './lib/helm.mjs';

const BIN = process.env.SWITCHBOARD_BIN || path.join(REPO, 'build', 'switchboard');
const HAVE_BIN = fs.existsSync(BIN);

// ---- helpers over the rendered text (no YAML library in the suite) ----------------------------------------------------

const one = (docs, kind, name) => {
    const found = docs.filter((d) => d.kind === kind && (name === undefined || d.name === name));
    assert.equal(found.length, 1, `expected one ${kind}${name ? ` ${name}` : ''}, got ${found.length}`);
    return found[0];
};
const none = (docs, kind) => assert.equal(docs.filter((d) => d.kind === kind).length, 0, `unexpected ${kind}`);
// The switchboard Deployment (not the bundled Redis one).
const app = (docs) => one(docs, 'Deployment', 'sb-switchboard').text;

// The block of one env entry "- name: NAME" of the container: its lines up to the next entry.
function envEntry(text, name) {
    const m = text.match(new RegExp(`^(\\s*)- name: ${name}\\n((?:\\1  .*\\n?)*)`, 'm'));
    return m ? m[2] : undefined;
}
// { NAME: value } of the ConfigMap's data (every value is quoted by the chart).
function configData(docs) {
    const text = one(docs, 'ConfigMap').text;
    const data = {};
    for (const m of text.matchAll(/^ {2}(SWITCHBOARD_[A-Z0-9_]+): "(.*)"$/gm)) data[m[1]] = JSON.parse(`"${m[2]}"`);
    return data;
}
const seconds = (d) => {
    const m = /^(\d+)(ms|s|m|h)?$/.exec(d);
    assert.ok(m, `duration ${d}`);
    return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] || 'ms'];
};
const intField = (text, field) => {
    const m = text.match(new RegExp(`^\\s*${field}: (\\d+)$`, 'm'));
    assert.ok(m, `${field} present`);
    return Number(m[1]);
};

// Env variable names of `switchboard --help`.
function knownVariables() {
    const help = execFileSync(BIN, ['--help'], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    return new Set([...help.matchAll(/\b(SWITCHBOARD_[A-Z0-9_]+)\b/g)].map((m) => m[1]));
}
// Runs switchboard --check-config with exactly these variables.
function checkConfig(vars) {
    return spawnSync(BIN, ['--check-config'], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH, ...vars, ASAN_OPTIONS: 'detect_leaks=0' },
    });
}

const FULL = {
    replicaCount: 3,
    config: {
        threads: 4,
        'log-level': 'debug',
        'cors-origin': ['https://app.example.com', 'https://admin.example.com'],
        namespace: ['/chat', '/admin'],
        'max-payload': '2mb',
        'events-maxlen': 500000,
        'ping-interval': '20s',
        'jwt-alg': 'HS512',
        'rate-api': 'off',
        'log-client-ips': false,
    },
    auth: { jwt: { mode: 'secret', existingSecret: 'my-jwt' } },
    apiKeys: { existingSecret: 'my-api-keys' },
    redis: { existingSecret: 'my-redis', existingSecretKey: 'url' },
    ingress: {
        enabled: true,
        className: 'nginx',
        hosts: [{ host: 'rt.example.com', paths: [{ path: '/', pathType: 'Prefix' }] }],
        tls: [{ secretName: 'rt-tls', hosts: ['rt.example.com'] }],
    },
    autoscaling: { enabled: true, minReplicas: 3, maxReplicas: 20, connections: { enabled: true } },
    podDisruptionBudget: { enabled: true, minAvailable: 2, maxUnavailable: null },
    serviceMonitor: { enabled: true },
    drain: { timeoutSeconds: 120, preStopSleepSeconds: 10, extraGraceSeconds: 15 },
};

// ---- helm lint ----------------------------------------------------------------------------------------------------

test('helm lint passes, also with --strict and with every optional part on', async () => {
    for (const args of [
        ['lint', CHART],
        ['lint', '--strict', CHART],
        ['lint', '--strict', CHART, '--set', 'bundledRedis.enabled=true,ingress.enabled=true,autoscaling.enabled=true'],
    ]) {
        const r = await helm(args);
        assert.equal(r.code, 0, `helm ${args.join(' ')}:\n${r.stdout}${r.stderr}`);
        assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
});

// ---- default values -------------------------------------------------------------------------------------------------

test('default values: a Deployment with health probes, drain settings and a locked-down pod', async () => {
    const docs = documents(await template());
    for (const kind of ['Ingress', 'HorizontalPodAutoscaler', 'ServiceMonitor', 'Secret']) none(docs, kind);
    one(docs, 'Service', 'sb-switchboard');
    one(docs, 'PodDisruptionBudget');
    const d = app(docs);

    assert.match(d, /^ {2}replicas: 2$/m);
    assert.match(d, /livenessProbe:\n\s+httpGet:\n\s+path: \/healthz\n\s+port: http/);
    assert.match(d, /readinessProbe:\n\s+httpGet:\n\s+path: \/readyz\n\s+port: http/);
    assert.match(d, /startupProbe:\n\s+httpGet:\n\s+path: \/healthz/);
    assert.match(d, /containerPort: 8080/);

    // The kubelet SIGKILLs terminationGracePeriodSeconds after the preStop hook starts:
    // it must cover the preStop sleep and the whole drain, with room to spare.
    const cfg = configData(docs);
    const drain = seconds(cfg.SWITCHBOARD_DRAIN_TIMEOUT);
    assert.equal(drain, 30);
    const grace = intField(d, 'terminationGracePeriodSeconds');
    const sleep = Number(d.match(/preStop:\n\s+exec:\n\s+command: \["sleep", "(\d+)"\]/)[1]);
    assert.ok(sleep > 0);
    assert.ok(grace > sleep + drain, `grace ${grace} > preStop ${sleep} + drain ${drain}`);

    // Non-root, read-only root, no privilege escalation, no capabilities.
    assert.match(d, /^ {8}runAsNonRoot: true$/m, 'pod securityContext.runAsNonRoot');
    assert.match(d, /^ {12}runAsNonRoot: true$/m, 'container securityContext.runAsNonRoot');
    assert.match(d, /^ {12}readOnlyRootFilesystem: true$/m);
    assert.match(d, /^ {12}allowPrivilegeEscalation: false$/m);
    assert.match(d, /drop:\n\s+- ALL/);
    assert.ok(intField(d, 'runAsUser') > 0);
    assert.match(d, /mountPath: \/tmp/, 'a writable /tmp despite the read-only root');
    // Service links would put SWITCHBOARD_SERVICE_HOST & co. into the env, which switchboard refuses.
    assert.match(d, /enableServiceLinks: false/);

    // Settings come from the ConfigMap; the Redis URL from the values.
    assert.match(d, /envFrom:\n\s+- configMapRef:\n\s+name: sb-switchboard/);
    assert.equal(cfg.SWITCHBOARD_LISTEN, ':8080');
    assert.match(envEntry(d, 'SWITCHBOARD_REDIS_URL'), /value: "redis:\/\/redis:6379\/0"/);
    assert.equal(envEntry(d, 'SWITCHBOARD_API_KEY'), undefined);
    assert.equal(envEntry(d, 'SWITCHBOARD_JWT_SECRET'), undefined);
    assert.doesNotMatch(d, /redis-server/);
});

test('NOTES.txt says how to reach the release and warns about what is missing', async () => {
    let text = await notes();
    assert.match(text, /kubectl port-forward -n rt service\/sb-switchboard 8080:80/);
    assert.match(text, /\/socket\.io\//);
    assert.match(text, /no API keys are set/);
    assert.match(text, /sticky sessions/);
    text = await notes({ values: FULL });
    assert.match(text, /https:\/\/rt\.example\.com/);
    assert.doesNotMatch(text, /no API keys are set|sticky sessions/);
});

// ---- non-default values ---------------------------------------------------------------------------------------------

test('ingress, HPA, PDB, ServiceMonitor and existing secrets', async () => {
    const docs = documents(await template({ values: FULL }));
    const d = app(docs);
    none(docs, 'Secret');

    // The HPA owns the replica count.
    assert.doesNotMatch(d, /^ {2}replicas:/m);
    const hpa = one(docs, 'HorizontalPodAutoscaler').text;
    assert.match(hpa, /apiVersion: autoscaling\/v2/);
    assert.match(hpa, /scaleTargetRef:\n\s+apiVersion: apps\/v1\n\s+kind: Deployment\n\s+name: sb-switchboard/);
    assert.match(hpa, /minReplicas: 3\n\s+maxReplicas: 20/);
    assert.match(hpa, /name: cpu\n\s+target:\n\s+type: Utilization\n\s+averageUtilization: 70/);
    assert.match(hpa, /type: Pods\n\s+pods:\n\s+metric:\n\s+name: switchboard_connections/);

    assert.match(one(docs, 'PodDisruptionBudget').text, /minAvailable: 2/);
    assert.doesNotMatch(one(docs, 'PodDisruptionBudget').text, /maxUnavailable/);

    const sm = one(docs, 'ServiceMonitor').text;
    assert.match(sm, /- port: http\n\s+path: \/metrics/);
    assert.match(sm, /matchNames:\n\s+- rt/);

    // WebSocket-friendly timeouts and cookie affinity for long-polling (ingress-nginx).
    const ing = one(docs, 'Ingress').text;
    assert.match(ing, /nginx\.ingress\.kubernetes\.io\/proxy-read-timeout: "3600"/);
    assert.match(ing, /nginx\.ingress\.kubernetes\.io\/proxy-send-timeout: "3600"/);
    assert.match(ing, /nginx\.ingress\.kubernetes\.io\/affinity: cookie/);
    assert.match(ing, /nginx\.ingress\.kubernetes\.io\/session-cookie-name: "SWITCHBOARD_AFFINITY"/);
    assert.match(ing, /ingressClassName: nginx/);
    assert.match(ing, /host: "rt\.example\.com"/);
    assert.match(ing, /service:\n\s+name: sb-switchboard\n\s+port:\n\s+name: http/);
    assert.match(ing, /secretName: rt-tls/);

    // Secrets you manage, passed as env.
    const secretRef = (name) => envEntry(d, name)?.replace(/\s+/g, ' ');
    assert.match(secretRef('SWITCHBOARD_REDIS_URL'), /secretKeyRef: name: my-redis key: url/);
    assert.match(secretRef('SWITCHBOARD_JWT_SECRET'), /secretKeyRef: name: my-jwt key: jwt-secret/);
    assert.match(secretRef('SWITCHBOARD_API_KEY'), /secretKeyRef: name: my-api-keys key: api-keys/);

    // Settings in the ConfigMap; lists joined with commas.
    const cfg = configData(docs);
    assert.equal(cfg.SWITCHBOARD_NAMESPACE, '/chat,/admin');
    assert.equal(cfg.SWITCHBOARD_CORS_ORIGIN, 'https://app.example.com,https://admin.example.com');
    assert.equal(cfg.SWITCHBOARD_EVENTS_MAXLEN, '500000');
    assert.equal(cfg.SWITCHBOARD_THREADS, '4');
    assert.equal(cfg.SWITCHBOARD_LOG_CLIENT_IPS, 'false');
    assert.equal(cfg.SWITCHBOARD_DRAIN_TIMEOUT, '120s');
    assert.equal(intField(d, 'terminationGracePeriodSeconds'), 10 + 120 + 15);
    assert.match(d, /command: \["sleep", "10"\]/);
});

test('the bundled try-out Redis: its Service is the Redis URL, and it is off by default', async () => {
    const docs = documents(await template({ set: ['bundledRedis.enabled=true'] }));
    const redis = one(docs, 'Deployment', 'sb-switchboard-redis').text;
    const svc = one(docs, 'Service', 'sb-switchboard-redis').text;
    assert.match(redis, /image: "docker\.io\/library\/redis:7\.2"/);
    assert.match(redis, /runAsNonRoot: true/);
    assert.match(redis, /maxmemory-policy", "noeviction"/);
    assert.match(svc, /port: 6379/);
    // The Service selects the Redis pod and not the switchboard pods.
    assert.match(svc, /app\.kubernetes\.io\/name: switchboard-redis/);
    assert.match(envEntry(app(docs), 'SWITCHBOARD_REDIS_URL'), /value: "redis:\/\/sb-switchboard-redis:6379\/0"/);
    none(documents(await template()).filter((x) => x.name === 'sb-switchboard-redis'), 'Deployment');
});

test('secrets created by the chart: JWT secret, API keys as env or as a file, JWT public key as a file', async () => {
    let docs = documents(
        await template({ values: { auth: { jwt: { mode: 'secret', secret: 's3cret' } }, apiKeys: { keys: ['k1', 'k2'] } } }),
    );
    let secret = one(docs, 'Secret', 'sb-switchboard').text;
    assert.match(secret, /jwt-secret: "s3cret"/);
    assert.match(secret, /api-keys: "k1,k2"/);
    let d = app(docs);
    assert.match(envEntry(d, 'SWITCHBOARD_JWT_SECRET'), /name: sb-switchboard\n\s+key: jwt-secret/);
    assert.match(envEntry(d, 'SWITCHBOARD_API_KEY'), /name: sb-switchboard\n\s+key: api-keys/);
    // No secret in the ConfigMap, and a changed secret rolls the pods.
    assert.doesNotMatch(one(docs, 'ConfigMap').text, /s3cret|k1/);
    assert.match(d, /checksum\/secret: [0-9a-f]{64}/);

    const pem = '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n';
    docs = documents(
        await template({ values: { auth: { jwt: { mode: 'publicKey', publicKey: pem } }, apiKeys: { keys: ['k1', 'k2'], asFile: true } } }),
    );
    secret = one(docs, 'Secret', 'sb-switchboard').text;
    assert.match(secret, /api-keys: "k1\\nk2\\n"/);
    assert.match(secret, /jwt-public-key: "-----BEGIN PUBLIC KEY-----\\nMFkw/);
    d = app(docs);
    assert.match(envEntry(d, 'SWITCHBOARD_API_KEYS_FILE'), /value: \/etc\/switchboard\/api-keys\/api-keys/);
    assert.match(envEntry(d, 'SWITCHBOARD_JWT_PUBLIC_KEY'), /value: \/etc\/switchboard\/jwt\/public-key\.pem/);
    assert.equal(envEntry(d, 'SWITCHBOARD_API_KEY'), undefined);
    assert.match(d, /mountPath: \/etc\/switchboard\/jwt\n\s+readOnly: true/);
    assert.match(d, /- key: jwt-public-key\n\s+path: public-key\.pem/);
    assert.match(d, /- key: api-keys\n\s+path: api-keys/);
});

test('WebSocket-only clients: no polling, no cookie affinity, still long timeouts', async () => {
    const docs = documents(await template({ set: ['transports.websocketOnly=true', 'ingress.enabled=true'] }));
    assert.equal(configData(docs).SWITCHBOARD_ALLOW_POLLING, 'false');
    const ing = one(docs, 'Ingress').text;
    assert.doesNotMatch(ing, /affinity/);
    assert.match(ing, /proxy-read-timeout: "3600"/);
});

// ---- values.schema.json and the chart's own checks -----------------------------------------------------------------

test('bad values are refused before anything is rendered', async () => {
    const cases = [
        [['replicaCount=-1'], /replicaCount/],
        [['replicaCount=many'], /replicaCount/],
        [['config.no-such-setting=1'], /no-such-setting|Additional property/],
        [['config.log-level=loud'], /log-level/],
        [['config.ping-interval=25S'], /ping-interval/],
        [['config.listen=:9090'], /listen|Additional property/],
        [['drain.timeoutSeconds=-5'], /timeoutSeconds/],
        [['securityContext.runAsNonRoot=false'], /runAsNonRoot/],
        [['securityContext.readOnlyRootFilesystem=false'], /readOnlyRootFilesystem/],
        [['auth.jwt.mode=jwks'], /mode/],
        [['auth.jwt.mode=secret'], /auth\.jwt\.mode=secret needs auth\.jwt\.secret or auth\.jwt\.existingSecret/],
        [['redis.url='], /no Redis: set redis\.url/],
        [['podDisruptionBudget.minAvailable=1'], /not both/],
        [['apiKeys.keys={a\\,b}'], /apiKeys/],
    ];
    for (const [set, why] of cases) {
        await assert.rejects(template({ set }), (e) => {
            assert.match(e.message, why, `--set ${set.join(' ')}`);
            return true;
        }, `--set ${set.join(' ')} must fail`);
    }
    // A sane override of the same kind passes.
    await template({ set: ['replicaCount=0', 'config.ping-interval=25s', 'config.log-level=warn'] });
});

// ---- the chart against the real binary ------------------------------------------------------------------------------

test('every setting the chart can set is one switchboard knows, and the rendered ones are valid', { skip: !HAVE_BIN && `no binary at ${BIN}` }, async () => {
    const known = knownVariables();
    const schema = JSON.parse(fs.readFileSync(path.join(CHART, 'values.schema.json'), 'utf8'));
    for (const name of Object.keys(schema.properties.config.properties)) {
        const env = `SWITCHBOARD_${name.replace(/-/g, '_').toUpperCase()}`;
        assert.ok(known.has(env), `values.schema.json config.${name} → ${env} is not in switchboard --help`);
    }
    // Every setting of --help but the ones set through dedicated values is in the schema.
    const dedicated = new Set(['listen', 'redis', 'drain-timeout', 'allow-polling', 'api-key', 'api-keys-file',
        'jwt-secret', 'jwt-public-key', 'check-config']);
    const help = execFileSync(BIN, ['--help'], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    for (const m of help.matchAll(/^ {2}--([a-z0-9-]+)[^\n]*SWITCHBOARD_/gm)) {
        if (!dedicated.has(m[1])) assert.ok(schema.properties.config.properties[m[1]], `--${m[1]} missing from values.schema.json`);
    }

    for (const values of [undefined, FULL, { transports: { websocketOnly: true }, config: { 'redis-prefix': 'rt:' } }]) {
        const docs = documents(await template({ values }));
        const d = app(docs);
        const vars = configData(docs);
        for (const m of d.matchAll(/- name: (SWITCHBOARD_[A-Z0-9_]+)\n\s+value: "?([^"\n]*)"?/g)) vars[m[1]] = m[2];
        for (const m of d.matchAll(/- name: (SWITCHBOARD_[A-Z0-9_]+)\n\s+valueFrom:/g)) {
            vars[m[1]] = { SWITCHBOARD_REDIS_URL: 'redis://redis:6379/0', SWITCHBOARD_JWT_SECRET: 'x'.repeat(32) }[m[1]] ?? 'k1,k2';
        }
        for (const name of Object.keys(vars)) assert.ok(known.has(name), `${name} is not in switchboard --help`);
        const r = checkConfig(vars);
        assert.equal(r.status, 0, `switchboard --check-config with ${JSON.stringify(vars)}: ${r.stderr}${r.stdout}`);
    }
});

// ---- Dockerfile -------------------------------------------------------------------------------------------------------

// The stages of the Dockerfile, comments and line continuations folded away.
function dockerStages() {
    const text = fs
        .readFileSync(path.join(REPO, 'Dockerfile'), 'utf8')
        .replace(/^\s*#.*\n/gm, '')
        .replace(/\\\n/g, ' ');
    const stages = [];
    for (const line of text.split('\n')) {
        const m = line.match(/^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i);
        if (m) stages.push({ from: m[1], name: m[2], lines: [] });
        else if (line.trim() && stages.length) stages[stages.length - 1].lines.push(line.trim());
    }
    return stages;
}

test('Dockerfile: the build stage runs scripts/install-deps.sh, the runtime stage is slim and non-root', () => {
    const stages = dockerStages();
    assert.equal(stages.length, 2, 'a build stage and a runtime stage');
    const [build, run] = stages;
    for (const s of stages) assert.equal(s.from, 'debian:12-slim');

    // No drift: the very script the README and CI use, not a copy of its package list.
    assert.ok(fs.existsSync(path.join(REPO, 'scripts', 'install-deps.sh')));
    assert.ok(build.lines.some((l) => /^COPY\s+scripts\/install-deps\.sh\b/.test(l)));
    assert.ok(build.lines.some((l) => /^RUN\b.*\bscripts\/install-deps\.sh\b/.test(l)), 'RUN scripts/install-deps.sh');
    assert.ok(!build.lines.some((l) => /^RUN\b.*apt-get install/.test(l)), 'the build stage installs only through the script');

    const runText = run.lines.join('\n');
    assert.doesNotMatch(runText, /redis-server|redis-tools|install-deps\.sh|-dev\b|build-essential|cmake/);
    assert.match(runText, /^COPY --from=build \S+switchboard \/usr\/local\/bin\/switchboard$/m);
    const users = run.lines.filter((l) => /^USER\s/.test(l));
    assert.ok(users.length > 0, 'a USER in the runtime stage');
    const user = users[users.length - 1].split(/\s+/)[1].split(':')[0];
    assert.ok(!['root', '0'].includes(user), `USER ${user} is not root`);
    assert.match(runText, /^HEALTHCHECK\b.*\/healthz/m);
    assert.match(runText, /^ENTRYPOINT \["\/usr\/local\/bin\/switchboard"\]$/m);
});

test('Dockerfile: the runtime stage installs the package of every library the binary links', { skip: !HAVE_BIN && `no binary at ${BIN}` }, (t) => {
    // The binary's own NEEDED entries; what those libraries need in turn, apt installs with them.
    const elf = spawnSync('readelf', ['-d', BIN], { encoding: 'utf8' });
    const ldd = spawnSync('ldd', [BIN], { encoding: 'utf8' });
    const dpkg = spawnSync('dpkg-query', ['--version'], { encoding: 'utf8' });
    if (elf.status !== 0 || ldd.status !== 0 || dpkg.status !== 0) return t.skip('needs readelf, ldd and dpkg-query (Debian)');
    const needed = [...elf.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[(.+?)\]/g)].map((m) => m[1]);
    assert.ok(needed.length > 0, 'readelf lists the NEEDED libraries');
    const where = new Map([...ldd.stdout.matchAll(/^\s*(\S+) => (\/\S+)/gm)].map((m) => [m[1], m[2]]));
    const run = dockerStages()[1].lines.join(' ');
    const install = run.match(/apt-get install[^&]*/);
    assert.ok(install, 'apt-get install in the runtime stage');
    const listed = new Set(install[0].split(/\s+/).filter((w) => /^[a-z0-9][a-z0-9.+-]+$/.test(w)));
    // In every Debian image (Priority: required), and the sanitizer runtime of an ASan build.
    const base = /^(libc6|libgcc-s1|libasan\d+|libubsan\d+|liblsan\d+|libstdc\+\+6)$/;
    for (const soname of needed) {
        const file = where.get(soname);
        assert.ok(file, `ldd resolves ${soname}`);
        const owner = spawnSync('dpkg-query', ['-S', fs.realpathSync(file)], { encoding: 'utf8' });
        if (owner.status !== 0) continue; // not from a package (e.g. a local build): nothing to install
        const pkg = owner.stdout.split(':')[0].trim();
        if (!base.test(pkg)) assert.ok(listed.has(pkg), `${soname} comes from ${pkg}, missing from the runtime stage's apt-get install`);
    }
});

// ---- systemd ----------------------------------------------------------------------------------------------------------

test('systemd example: the unit outlasts the drain, and the env file holds only known, valid settings', { skip: !HAVE_BIN && `no binary at ${BIN}` }, () => {
    const unit = fs.readFileSync(path.join(REPO, 'deploy', 'systemd', 'switchboard.service'), 'utf8');
    const envText = fs.readFileSync(path.join(REPO, 'deploy', 'systemd', 'switchboard.env'), 'utf8');
    assert.match(unit, /^ExecStart=\/usr\/local\/bin\/switchboard$/m);
    assert.match(unit, /^EnvironmentFile=\/etc\/switchboard\/switchboard\.env$/m);
    assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
    assert.match(unit, /^RestartPreventExitStatus=2$/m);
    assert.doesNotMatch(unit, /^User=root$/m);
    assert.match(unit, /^DynamicUser=yes$/m);

    const known = knownVariables();
    const active = {};
    for (const m of envText.matchAll(/^(#?)(SWITCHBOARD_[A-Z0-9_]+)=(.*)$/gm)) {
        assert.ok(known.has(m[2]), `${m[2]} in switchboard.env is not in switchboard --help`);
        if (!m[1]) active[m[2]] = m[3];
    }
    assert.ok(active.SWITCHBOARD_REDIS_URL, 'the example sets a Redis URL');
    const stop = seconds(unit.match(/^TimeoutStopSec=(\S+)$/m)[1]);
    assert.ok(stop > seconds(active.SWITCHBOARD_DRAIN_TIMEOUT), 'TimeoutStopSec > SWITCHBOARD_DRAIN_TIMEOUT');
    const r = checkConfig(active);
    assert.equal(r.status, 0, r.stderr);

    const verify = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
    if (verify.status === 0) {
        // Point the unit at files that exist here, then let systemd parse it.
        const dir = fs.mkdtempSync(path.join(process.env.TMPDIR || '/tmp', 'sb-unit-'));
        const envFile = path.join(REPO, 'deploy', 'systemd', 'switchboard.env');
        fs.writeFileSync(
            path.join(dir, 'switchboard.service'),
            unit.replace('/usr/local/bin/switchboard', path.resolve(BIN)).replace('/etc/switchboard/switchboard.env', envFile),
        );
        const v = spawnSync('systemd-analyze', ['verify', path.join(dir, 'switchboard.service')], { encoding: 'utf8' });
        fs.rmSync(dir, { recursive: true, force: true });
        assert.equal(v.status, 0, `systemd-analyze verify: ${v.stderr}`);
    }
});
