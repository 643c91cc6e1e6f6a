// The dashboard at /dashboard/ in headless Chromium (playwright-core): sign-in
// with an API key over the reserved /_admin namespace, the node table, a
// connections figure that follows 50 real clients up and down, a wrong key
// refused, and the disconnect button of the socket search dropping the chosen
// socket. Every page request must stay on the node itself (no CDN).
//
// Environment:
//   SWITCHBOARD_TEST_CHROMIUM        browser binary (default /usr/bin/chromium, Debian's `chromium` package)
//   SWITCHBOARD_TEST_ARTIFACTS_DIR   where the screenshot 66-dashboard.png goes (also read: SWITCHBOARD_ARTIFACTS_DIR;
//                                    default: the OS temp folder)
// (switchboard refuses unknown SWITCHBOARD_* variables but ignores SWITCHBOARD_TEST_*, and the nodes inherit
// this process's environment.)
// The page's vendor/ files are made by scripts/build-dashboard.sh, run here when missing.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { nextEvent, sioClose, sioConnect } from './lib/clients.mjs';
import { setupFile } from './lib/fixture.mjs';
import { waitFor } from './lib/util.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DASHBOARD_DIR = path.join(REPO, 'dashboard-static');
const VENDOR_FILES = ['uPlot.iife.min.js', 'uPlot.min.css', 'socket.io.min.js'];
const CHROMIUM = process.env.SWITCHBOARD_TEST_CHROMIUM || '/usr/bin/chromium';
const KEY = 'dashboard-test-key';
const CLIENTS = 50;
// Stats are pushed every second from figures each node writes every second: a change shows within a few seconds.
const FIGURE_MS = 15000;
const UI_MS = 10000;

let env;
let browser; // a persistent context on a fresh profile
let profileDir;

before(async () => {
    if (!VENDOR_FILES.every((f) => fs.existsSync(path.join(DASHBOARD_DIR, 'vendor', f)))) {
        execFileSync(path.join(REPO, 'scripts', 'build-dashboard.sh'), { stdio: 'inherit' });
    }
    if (!fs.existsSync(CHROMIUM)) {
        throw new Error(`no browser at ${CHROMIUM}: apt-get install chromium (or set SWITCHBOARD_TEST_CHROMIUM)`);
    }
    env = await setupFile({ tag: 't66', args: ['--api-key', KEY, '--dashboard-dir', DASHBOARD_DIR] });
    profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-chromium-'));
    browser = await chromium.launchPersistentContext(profileDir, {
        executablePath: CHROMIUM,
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
            '--disable-sync', '--no-first-run'],
        viewport: { width: 1280, height: 800 },
    });
});

after(async () => {
    await browser?.close();
    if (profileDir) fs.rmSync(profileDir, { recursive: true, force: true });
    await env?.teardown();
});

// A new tab (its own sessionStorage) on /dashboard/, closed after test `t`. Page errors and every request that
// leaves the node are collected; checkClean() asserts there were none.
async function openDashboard(t) {
    const page = await browser.newPage();
    t.after(() => page.close());
    const errors = [];
    const foreign = [];
    const origin = new URL(env.url).origin;
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('request', (r) => {
        const u = r.url();
        if (!u.startsWith('data:') && new URL(u).origin !== origin) foreign.push(u);
    });
    const res = await page.goto(`${env.url}/dashboard/`, { timeout: UI_MS });
    assert.equal(res.status(), 200, '/dashboard/ is served');
    await page.locator('#api-key').waitFor({ state: 'visible', timeout: UI_MS });
    return {
        page,
        checkClean() {
            assert.deepEqual(errors, [], 'no script errors on the page');
            assert.deepEqual(foreign, [], 'every request goes to the node itself');
        },
    };
}

async function signIn(page, key) {
    await page.fill('#api-key', key);
    await page.click('#signin-button');
}

// The integer shown by a figure element, or null while it shows a placeholder.
async function figure(page, sel) {
    const text = (await page.locator(sel).textContent()) || '';
    const digits = text.replace(/[^0-9]/g, '');
    return digits === '' ? null : Number(digits);
}

// Polls the figure until pred(value) holds; resolves the value.
async function figureUntil(page, sel, pred, label) {
    const deadline = Date.now() + FIGURE_MS;
    let last = null;
    for (;;) {
        last = await figure(page, sel);
        if (last !== null && pred(last)) return last;
        if (Date.now() > deadline) throw new Error(`timed out after ${FIGURE_MS} ms waiting for ${label}; ${sel} shows ${last}`);
        await page.waitForTimeout(100);
    }
}

function screenshotPath(name) {
    const dir = process.env.SWITCHBOARD_TEST_ARTIFACTS_DIR || process.env.SWITCHBOARD_ARTIFACTS_DIR || os.tmpdir();
    fs.mkdirSync(dir, { recursive: true });
    return path.join(dir, name);
}

test('a wrong API key is refused: the error shows and the live view stays closed', async (t) => {
    const { page, checkClean } = await openDashboard(t);
    await signIn(page, `${KEY}-wrong`);
    const err = page.locator('#signin-error');
    await err.waitFor({ state: 'visible', timeout: UI_MS });
    assert.match(await err.textContent(), /refused/i);
    assert.equal(await page.locator('#app').isVisible(), false, 'no live view without a valid key');
    assert.equal(await page.locator('#status').getAttribute('data-state'), 'signed-out');
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused key is not kept');
    assert.doesNotMatch(page.url(), /wrong/, 'the key never goes into the URL');
    checkClean();
});

test('signed in: the node table, and the connections figure follows 50 clients up and down', async (t) => {
    const { page, checkClean } = await openDashboard(t);
    await signIn(page, KEY);
    await page.locator('#app').waitFor({ state: 'visible', timeout: UI_MS });
    assert.doesNotMatch(page.url(), new RegExp(KEY), 'the key never goes into the URL');
    assert.equal(await page.locator('#status').getAttribute('data-state'), 'live');

    // One node: one row in the node table once the first stats arrive.
    await page.locator('#nodes-table tbody tr').first().waitFor({ timeout: FIGURE_MS });
    assert.equal(await page.locator('#nodes-table tbody tr').count(), 1, 'one row per live node');
    assert.equal(await figureUntil(page, '#total-nodes', (v) => v >= 1, 'the node count'), 1);
    const row = page.locator('#nodes-table tbody tr').first();
    assert.ok(((await row.getAttribute('data-node-id')) || '').length > 0, 'the row names its node');
    assert.equal(await page.locator('#charts .chart').count(), 7, 'the seven charts are drawn');
    assert.ok(await page.locator('#charts canvas').count() >= 7, 'uPlot drew its canvases');

    const base = await figureUntil(page, '#total-connections', () => true, 'a first connections figure');
    const socks = [];
    t.after(() => socks.forEach(sioClose));
    const opened = await Promise.allSettled(Array.from({ length: CLIENTS }, () => sioConnect(env.url)));
    for (const r of opened) if (r.status === 'fulfilled') socks.push(r.value);
    assert.equal(socks.length, CLIENTS, `all ${CLIENTS} clients connected: ${opened.find((r) => r.reason)?.reason}`);

    const peak = await figureUntil(page, '#total-connections', (v) => v >= base + CLIENTS,
        `connections to reach ${base} + ${CLIENTS}`);
    // Also in the node's row.
    const rowConns = (await row.locator('td[data-col="connections"]').textContent()) || '';
    assert.ok(Number(rowConns.replace(/[^0-9]/g, '')) >= base + CLIENTS,
        'the node row shows the new connections');
    await page.screenshot({ path: screenshotPath('66-dashboard.png'), fullPage: true });

    for (const s of socks.splice(0)) sioClose(s);
    // Not "back to base": the first figure may predate this page's own admin connection.
    await figureUntil(page, '#total-connections', (v) => v <= peak - CLIENTS, `connections to fall from ${peak} by ${CLIENTS}`);
    // The reasons table counts them too (since start, summed over reasons).
    await page.waitForFunction((n) => {
        let sum = 0;
        for (const td of document.querySelectorAll('#disconnects-table tbody td:nth-child(3)')) {
            sum += Number(td.textContent.replace(/[^0-9]/g, '')) || 0;
        }
        return sum >= n;
    }, CLIENTS, { timeout: FIGURE_MS });
    checkClean();
});

test('socket search finds a socket by id with its rooms; its disconnect button drops it', async (t) => {
    const { page, checkClean } = await openDashboard(t);
    await signIn(page, KEY);
    await page.locator('#app').waitFor({ state: 'visible', timeout: UI_MS });

    const victim = await sioConnect(env.url);
    const bystander = await sioConnect(env.url);
    t.after(() => {
        sioClose(victim);
        sioClose(bystander);
    });
    const card = page.locator(`#search-results .result[data-socket-id="${victim.id}"]`);
    // The socket's Redis record is written as it connects; search again until it shows (bounded).
    const deadline = Date.now() + UI_MS;
    for (;;) {
        await page.fill('#search-q', victim.id);
        await page.click('#search-form button[type="submit"]');
        await page.waitForFunction(() => !/searching/.test(document.querySelector('#search-message').textContent),
            null, { timeout: UI_MS });
        if ((await card.count()) === 1) break;
        if (Date.now() > deadline) {
            throw new Error(`socket ${victim.id} not found: ${await page.locator('#search-message').textContent()}`);
        }
        await page.waitForTimeout(200);
    }
    assert.equal(await page.locator('#search-results .result').count(), 1, 'only the socket searched for');
    const text = await card.textContent();
    assert.ok(text.includes(victim.id), 'the card names the socket');
    // Every socket is in the room named after its id.
    assert.ok(await card.locator('.chip', { hasText: victim.id }).count() >= 1, 'the card lists its rooms');

    const gone = nextEvent(victim, 'disconnect', UI_MS);
    let bystanderGone = false;
    bystander.on('disconnect', () => {
        bystanderGone = true;
    });
    await card.locator('button.disconnect-btn').click();
    const [reason] = await waitFor(gone, UI_MS, 'the chosen socket to be disconnected');
    assert.equal(reason, 'io server disconnect', 'the server dropped the socket');
    await card.locator('.result-status', { hasText: 'disconnected' }).waitFor({ timeout: UI_MS });
    assert.equal(bystanderGone, false, 'only the chosen socket is dropped');
    assert.ok(bystander.connected);

    await page.fill('#search-q', `nobody-${process.pid}`);
    await page.click('#search-form button[type="submit"]');
    await page.locator('#search-message', { hasText: /no socket/i }).waitFor({ timeout: UI_MS });
    assert.equal(await page.locator('#search-results .result').count(), 0);
    checkClean();
});
