// The web view in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core), against the real kanted that tests/ui.rs started on
// loopback HTTPS. tests/ui.rs passes everything in the environment:
//   KANTE_UI_URL       https://127.0.0.1:PORT
//   KANTE_UI_LOGIN     the login link `kante config trust add --ui` printed
//   KANTE_UI_INSTANCE  a running instance, KANTE_UI_ADDRESS its address
//   KANTE_UI_IMAGE     an image fingerprint, KANTE_UI_NEW a name to launch
//   KANTE_BIN, KANTE_DIR   the CLI and the daemon's directory
//   KANTE_UI_ARTIFACTS where screenshots go
// Each step asserts what a user would see; the last line printed is
// `RESULT {json}`, which tests/ui.rs checks again.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const env = (k) => {
  const v = process.env[k];
  assert.ok(v, `${k} is not set`);
  return v;
};
const URL_BASE = env('KANTE_UI_URL');
const LOGIN = env('KANTE_UI_LOGIN');
const NAME = env('KANTE_UI_INSTANCE');
const ADDRESS = env('KANTE_UI_ADDRESS');
const IMAGE = env('KANTE_UI_IMAGE');
const NEW = env('KANTE_UI_NEW');
const ART = env('KANTE_UI_ARTIFACTS');
const TIMEOUT = 60_000;
const result = { screenshots: [], axe: {} };

function kante(...args) {
  return execFileSync(env('KANTE_BIN'), args, {
    env: { ...process.env, KANTE_DIR: env('KANTE_DIR') },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** The CLI's view of an instance's state (`kante list -c ns --format csv`). */
function cliState(name) {
  const line = kante('list', '-c', 'ns', '--format', 'csv').split('\n').find((l) => l.startsWith(`${name},`));
  return line ? line.split(',')[1].trim() : null;
}

/** The CLI's view of an instance's init PID (`kante list -c np`). */
function cliPid(name) {
  const line = kante('list', '-c', 'np', '--format', 'csv').split('\n').find((l) => l.startsWith(`${name},`));
  return line ? line.split(',')[1].trim() : null;
}

async function shot(page, name) {
  const file = path.join(ART, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  result.screenshots.push(file);
}

const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
/** axe-core on the page as it is: no serious or critical violation. */
async function accessible(page, view) {
  // Evaluated through the devtools protocol: the page's CSP (which
  // forbids inline scripts) stays on for everything the page does itself.
  await page.evaluate(axeSource);
  const r = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const out = await axe.run(document, { resultTypes: ['violations'] });
    return out.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  });
  result.axe[view] = r;
  const bad = r.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `${view}: serious accessibility violations: ${JSON.stringify(bad)}`);
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
// The server's certificate is its own self-signed one.
const contextOptions = { ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } };
const problems = [];
/** Every page is watched for script errors and CSP refusals. */
function watch(page) {
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  return page;
}
try {
  // ----- 1. An untrusted browser: the login step and nothing else. -------
  {
    const ctx = await browser.newContext(contextOptions);
    // A made-up session cookie changes nothing.
    await ctx.addCookies([{ name: 'kante_ui', value: 'ab'.repeat(32), url: URL_BASE, secure: true, httpOnly: true, sameSite: 'Strict' }]);
    const page = watch(await ctx.newPage());
    await page.goto(`${URL_BASE}/ui/`);
    await page.getByRole('heading', { name: 'Log in to Kante' }).waitFor({ timeout: TIMEOUT });
    assert.equal(await page.locator('#nav').isVisible(), false, 'the navigation shows before login');
    const body = await page.locator('body').innerText();
    assert.ok(!body.includes(NAME), `the login page shows the instance ${NAME}`);
    const statuses = await page.evaluate(async () => {
      const get = async (p) => (await fetch(p, { headers: { 'X-Kante-UI': '1' } })).status;
      return { instances: await get('/1.0/instances'), resources: await get('/1.0/resources'), networks: await get('/1.0/networks') };
    });
    assert.deepEqual(statuses, { instances: 403, resources: 403, networks: 403 });
    result.untrusted = statuses;
    await accessible(page, 'login');
    await shot(page, 'login');
    // A wrong login link: refused, still the login step.
    await page.goto(`${URL_BASE}/ui/login#${'0'.repeat(64)}`);
    await page.getByRole('alert').filter({ hasText: 'The login failed' }).waitFor({ timeout: TIMEOUT });
    assert.equal(page.url(), `${URL_BASE}/ui/login`, 'the secret stays in the address bar');
    await ctx.close();
  }

  // ----- 2. The login link, then the instance list. ------------------------
  const ctx = await browser.newContext(contextOptions);
  const page = watch(await ctx.newPage());
  await page.goto(LOGIN);
  await page.waitForURL(`${URL_BASE}/ui/`, { timeout: TIMEOUT });
  const row = (n) => page.locator(`#instance-rows tr[data-name="${n}"]`);
  await row(NAME).filter({ hasText: 'Running' }).filter({ hasText: ADDRESS }).waitFor({ timeout: TIMEOUT });
  const cookies = await ctx.cookies();
  const session = cookies.find((c) => c.name === 'kante_ui');
  assert.ok(session && session.httpOnly && session.secure && session.sameSite === 'Strict', `session cookie: ${JSON.stringify(session)}`);
  assert.equal(await page.evaluate(() => document.cookie.includes('kante_ui')), false, 'the page script can read the session');
  // The link is spent: a second browser cannot use it.
  {
    const other = await browser.newContext(contextOptions);
    const p2 = watch(await other.newPage());
    await p2.goto(LOGIN);
    await p2.getByRole('alert').filter({ hasText: 'The login failed' }).waitFor({ timeout: TIMEOUT });
    await other.close();
  }
  // Without the UI header the cookie alone is not enough (CSRF).
  const csrf = await page.evaluate(async () => (await fetch('/1.0/instances', { method: 'GET' })).status);
  assert.equal(csrf, 403, 'a request with the cookie but without X-Kante-UI was let through');
  result.csrf = csrf;

  // ----- 3. First view, cold cache: under 200 KiB, no terminal code. -------
  {
    const state = await ctx.storageState();
    const cold = await browser.newContext({ ...contextOptions, storageState: state });
    const p = watch(await cold.newPage());
    await p.goto(`${URL_BASE}/ui/`);
    await p.locator(`#instance-rows tr[data-name="${NAME}"]`).filter({ hasText: 'Running' }).waitFor({ timeout: TIMEOUT });
    await p.locator('#hosts .card').first().waitFor({ timeout: TIMEOUT });
    const t = await p.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const res = performance.getEntriesByType('resource');
      return {
        total: nav.transferSize + res.reduce((s, r) => s + r.transferSize, 0),
        files: [nav, ...res].map((r) => ({ name: r.name, transfer: r.transferSize, encoded: r.encodedBodySize, decoded: r.decodedBodySize })),
      };
    });
    result.firstView = t;
    assert.ok(t.files.every((f) => f.transfer > 0), `a resource without transfer size: ${JSON.stringify(t.files)}`);
    assert.ok(t.total < 200 * 1024, `first view transferred ${t.total} bytes`);
    assert.ok(!t.files.some((f) => f.name.includes('xterm')), 'xterm.js is loaded in the first view');
    const app = t.files.find((f) => f.name.endsWith('/ui/app.js'));
    assert.ok(app && app.encoded < app.decoded, `app.js was not sent compressed: ${JSON.stringify(app)}`);
    await cold.close();
  }
  // The host's load and free resources, from its member state.
  {
    const card = page.locator('#hosts .card').first();
    const load = card.locator('dt', { hasText: 'Load (1, 5, 15 min)' }).locator('xpath=following-sibling::dd[1]');
    await load.waitFor({ timeout: TIMEOUT });
    const text = (await load.textContent()).trim();
    assert.match(text, /^\d+\.\d\d, \d+\.\d\d, \d+\.\d\d$/, `load shown as ${text}`);
    const used = (await card.locator('dt', { hasText: 'Memory used' }).locator('xpath=following-sibling::dd[1]').textContent()).trim();
    assert.match(used, / of /, `memory used shown as ${used}`);
    const pools = (await card.locator('dt', { hasText: 'Pools free' }).locator('xpath=following-sibling::dd[1]').textContent()).trim();
    assert.match(pools, /^default \d/, `pools free shown as ${pools}`);
    result.hostLoad = text;
  }
  await accessible(page, 'overview');
  await shot(page, 'overview');

  // ----- 4. An instance created from the CLI appears without a reload. -----
  await page.evaluate(() => { window.__kanteMarker = 'no-reload'; });
  let listReads = 0;
  page.on('request', (r) => { if (r.url().includes('/1.0/instances?')) listReads++; });
  kante('launch', IMAGE, NEW);
  await row(NEW).filter({ hasText: 'Running' }).waitFor({ timeout: TIMEOUT });
  assert.equal(await page.evaluate(() => window.__kanteMarker), 'no-reload', 'the page reloaded');
  assert.equal(listReads, 0, 'the page polled the instance list instead of following /1.0/events');
  result.eventRow = NEW;

  // ----- 5. Stop and start from the page; the CLI sees it. -----------------
  await page.getByRole('link', { name: NAME, exact: true }).click();
  await page.getByRole('heading', { name: `Instance ${NAME}` }).waitFor({ timeout: TIMEOUT });
  const detailState = page.locator('#detail-state');
  await detailState.filter({ hasText: 'Running' }).waitFor({ timeout: TIMEOUT });
  await accessible(page, 'instance');
  await shot(page, 'instance');
  const action = async (label) => {
    await page.getByRole('group', { name: 'Actions' }).getByRole('button', { name: label, exact: true }).click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor({ timeout: TIMEOUT });
    await dialog.getByRole('button', { name: label, exact: true }).click();
  };
  await action('Stop');
  await detailState.filter({ hasText: 'Stopped' }).waitFor({ timeout: TIMEOUT });
  assert.equal(cliState(NAME), 'STOPPED');
  await action('Start');
  await detailState.filter({ hasText: 'Running' }).waitFor({ timeout: TIMEOUT });
  assert.equal(cliState(NAME), 'RUNNING');
  result.stopStart = 'ok';
  // Restart: a new init (another PID), running again, as the CLI sees it.
  const pidBefore = cliPid(NAME);
  assert.ok(/^\d+$/.test(pidBefore), `no PID for ${NAME}: ${pidBefore}`);
  await action('Restart');
  await page.getByRole('status').filter({ hasText: `Restart ${NAME}: done.` }).waitFor({ timeout: TIMEOUT });
  await detailState.filter({ hasText: 'Running' }).waitFor({ timeout: TIMEOUT });
  assert.equal(cliState(NAME), 'RUNNING');
  const pidAfter = cliPid(NAME);
  assert.ok(/^\d+$/.test(pidAfter) && pidAfter !== pidBefore, `restart kept init ${pidBefore} (now ${pidAfter})`);
  result.restart = { before: Number(pidBefore), after: Number(pidAfter) };
  // A snapshot, restored, then deleted; the CLI counts them.
  const snapshots = () => kante('list', NAME, '-c', 'nS', '--format', 'csv').trim();
  await action('Snapshot');
  const snapRow = page.locator('#snapshots tbody tr').filter({ hasText: 'snap-' });
  await snapRow.first().waitFor({ timeout: TIMEOUT });
  assert.equal(snapshots(), `${NAME},1`);
  const snap = (await snapRow.first().locator('td').first().innerText()).trim();
  await page.getByRole('button', { name: `Restore ${snap}` }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Restore', exact: true }).click();
  await page.getByRole('status').filter({ hasText: `Restore ${NAME}: done.` }).waitFor({ timeout: TIMEOUT });
  await page.getByRole('button', { name: `Delete ${snap}` }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete', exact: true }).click();
  await page.locator('#snapshots tbody').filter({ hasText: 'No snapshots.' }).waitFor({ timeout: TIMEOUT });
  assert.equal(snapshots(), `${NAME},0`);
  result.snapshots = snap;

  // ----- 6. The console: xterm.js over the exec websocket. -----------------
  await page.getByRole('button', { name: 'Open a shell' }).click();
  const term = page.locator('#terminal .xterm-rows');
  await term.waitFor({ timeout: TIMEOUT });
  await page.waitForFunction(() => performance.getEntriesByType('resource').some((r) => r.name.endsWith('/ui/vendor/xterm.js')));
  await page.locator('#terminal').click();
  await page.keyboard.type('hostname; echo END-$((6*7))\n');
  await page.waitForFunction(() => {
    const rows = document.querySelector('#terminal .xterm-rows');
    return rows && [...rows.children].some((r) => r.textContent.trim() === 'END-42');
  }, null, { timeout: TIMEOUT });
  const lines = await term.evaluate((rows) => [...rows.children].map((r) => r.textContent.trim()));
  const end = lines.indexOf('END-42');
  assert.equal(lines[end - 1], NAME, `the console printed: ${JSON.stringify(lines)}`);
  result.console = lines[end - 1];
  await shot(page, 'console');
  // A smaller window: the terminal refits and tells the instance through
  // the control websocket, so the shell's tty has the new size.
  const before = await page.evaluate(() => window.KanteConsole.size());
  await page.setViewportSize({ width: 900, height: 900 });
  await page.waitForFunction((b) => window.KanteConsole.size().cols < b.cols, before, { timeout: TIMEOUT });
  const after = await page.evaluate(() => window.KanteConsole.size());
  await page.keyboard.type('echo SIZE-$(stty size)\n');
  const want = `SIZE-${after.rows} ${after.cols}`;
  await page.waitForFunction((w) => [...document.querySelector('#terminal .xterm-rows').children]
    .some((r) => r.textContent.trim() === w), want, { timeout: TIMEOUT })
    .catch(async () => {
      const seen = await term.evaluate((rows) => [...rows.children].map((r) => r.textContent.trim()).filter(Boolean));
      assert.fail(`the shell's tty is not ${want}: ${JSON.stringify(seen)}`);
    });
  result.resize = { before, after };
  await page.setViewportSize({ width: 1280, height: 900 });

  // ----- 7. Networks and storage pools, with their users. ------------------
  await page.getByRole('link', { name: 'Networks' }).click();
  await page.locator('#networks').waitFor({ timeout: TIMEOUT });
  await page.locator('#networks').getByRole('link', { name: NAME }).waitFor({ timeout: TIMEOUT });
  await accessible(page, 'networks');
  await shot(page, 'networks');
  await page.getByRole('link', { name: 'Storage' }).click();
  await page.locator('#pools').getByRole('link', { name: NEW }).waitFor({ timeout: TIMEOUT });
  await accessible(page, 'storage');
  await shot(page, 'storage');

  // ----- 8. Delete from the page: nothing without the confirmation. -------
  await page.evaluate((n) => { location.hash = `#/instance/${encodeURIComponent(n)}`; }, NEW);
  await page.getByRole('heading', { name: `Instance ${NEW}` }).waitFor({ timeout: TIMEOUT });
  await detailState.filter({ hasText: 'Running' }).waitFor({ timeout: TIMEOUT });
  await action('Stop');
  await detailState.filter({ hasText: 'Stopped' }).waitFor({ timeout: TIMEOUT });
  assert.equal(cliState(NEW), 'STOPPED');
  const deleteButton = page.getByRole('group', { name: 'Actions' }).getByRole('button', { name: 'Delete', exact: true });
  const confirm = page.getByRole('dialog');
  await deleteButton.click();
  await confirm.waitFor({ timeout: TIMEOUT });
  const question = await confirm.locator('#confirm-text').innerText();
  assert.ok(question.includes(`Delete instance ${NEW}`), `the dialog asks: ${question}`);
  await accessible(page, 'confirm');
  await shot(page, 'confirm-delete');
  // Cancelled, and dismissed with Escape: still there.
  await confirm.getByRole('button', { name: 'Cancel', exact: true }).click();
  await confirm.waitFor({ state: 'hidden', timeout: TIMEOUT });
  assert.equal(cliState(NEW), 'STOPPED', 'Cancel deleted the instance');
  await deleteButton.click();
  await confirm.waitFor({ timeout: TIMEOUT });
  await page.keyboard.press('Escape');
  await confirm.waitFor({ state: 'hidden', timeout: TIMEOUT });
  assert.equal(cliState(NEW), 'STOPPED', 'Escape deleted the instance');
  // Confirmed: gone from the page and from the CLI.
  await deleteButton.click();
  await confirm.waitFor({ timeout: TIMEOUT });
  await confirm.getByRole('button', { name: 'Delete', exact: true }).click();
  await page.getByRole('status').filter({ hasText: `Delete ${NEW}: done.` }).waitFor({ timeout: TIMEOUT });
  await row(NAME).waitFor({ timeout: TIMEOUT });
  assert.equal(await row(NEW).count(), 0, `${NEW} is still listed on the page`);
  assert.equal(cliState(NEW), null, `the CLI still lists ${NEW}`);
  result.deleted = NEW;

  // ----- 9. `kante config trust remove` ends the session. ------------------
  const trust = kante('config', 'trust', 'list', '--format', 'csv');
  assert.ok(trust.split('\n').some((l) => l.startsWith('ui-browser,ui,')), `no session in the trust store: ${trust}`);
  kante('config', 'trust', 'remove', 'ui-browser');
  await page.goto(`${URL_BASE}/ui/`);
  await page.getByRole('heading', { name: 'Log in to Kante' }).waitFor({ timeout: TIMEOUT });
  result.revoked = true;
  await ctx.close();
  assert.deepEqual(problems, [], 'the page had errors');
} finally {
  await browser.close();
}
console.log(`RESULT ${JSON.stringify(result)}`);
