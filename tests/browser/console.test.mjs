// The web console in a real Chromium: sign in, one real action per module (a procedure is
// created, planned, deployed, drifted by a migration and restored), a read-only
// token that sees but cannot act, sign out. Every page is checked for console errors,
// unlabelled inputs and horizontal overflow at 390 px, and screenshotted at 1280 px and
// 390 px; each screenshot must decode to a non-blank image. Run through run.sh, which
// starts `opshub serve` and sets OPSHUB_URL, OPSHUB_ADMIN_TOKEN and OPSHUB_READ_TOKEN.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { PNG } from 'pngjs';

const base = process.env.OPSHUB_URL;
const adminToken = process.env.OPSHUB_ADMIN_TOKEN;
const readToken = process.env.OPSHUB_READ_TOKEN;
const shots = process.env.SCREENSHOT_DIR ?? 'screenshots';
assert.ok(base && adminToken && readToken, 'run through run.sh (OPSHUB_URL and tokens unset)');

/** A receiver for webhook deliveries, answering 200 with a small JSON body. */
function startReceiver() {
  const received = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.writeHead(200, { 'content-type': 'application/json', 'x-receiver': 'browser-test' });
      res.end(JSON.stringify({ ok: true, receivedBy: 'browser-test' }));
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, received, port: server.address().port }));
  });
}

/** Counts distinct colours of a PNG: a blank page has one or two. */
function distinctColours(buffer) {
  const png = PNG.sync.read(buffer);
  const seen = new Set();
  for (let i = 0; i < png.data.length; i += 4) {
    seen.add(png.data.readUInt32BE(i));
    if (seen.size > 1000) break;
  }
  return seen.size;
}

/** Opens a page that records console errors and uncaught page errors. */
async function openPage(context) {
  const page = await context.newPage();
  page.errors = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') page.errors.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => page.errors.push(`page error: ${err.message}`));
  return page;
}

/** The checks every visited page passes, plus its two screenshots. */
async function check(page, name) {
  assert.deepEqual(page.errors, [], `browser errors on ${name}`);
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
      .filter((el) => !el.labels || el.labels.length === 0)
      .map((el) => el.outerHTML),
  );
  assert.deepEqual(unlabelled, [], `inputs without a label on ${name}`);
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: width === 390 ? 844 : 900 });
    const file = path.join(shots, `${name}-${width}.png`);
    const png = await page.screenshot({ path: file, fullPage: true });
    const colours = distinctColours(png);
    assert.ok(colours >= 16, `${file} looks blank (${colours} colours)`);
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    assert.ok(overflow <= 1, `${name} overflows horizontally by ${overflow}px at ${width}px`);
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  assert.deepEqual(page.errors, [], `browser errors on ${name}`);
}

async function signIn(page, token) {
  await page.goto(`${base}/`);
  assert.match(page.url(), /\/login$/, 'a signed-out visit lands on the login page');
  // Keyboard only: the token field has focus, Tab reaches the button, Enter submits.
  await page.waitForFunction(() => document.activeElement?.id === 'token');
  await page.keyboard.type(token);
  assert.equal(await page.getByLabel('API token').inputValue(), token);
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Sign in');
  await page.keyboard.press('Enter');
  await page.waitForURL(`${base}/`);
}

/** Reloads until `text` shows up (a background worker is doing the work). */
async function reloadUntil(page, locator, text, tries = 50) {
  for (let i = 0; i < tries; i++) {
    if ((await locator.allTextContents()).some((t) => t.includes(text))) return;
    await page.waitForTimeout(200);
    await page.reload();
  }
  assert.fail(`"${text}" never appeared on ${page.url()}`);
}

test('the console, module by module', async (t) => {
  fs.mkdirSync(shots, { recursive: true });
  const receiver = await startReceiver();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  t.after(async () => {
    await browser.close();
    receiver.server.close();
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await openPage(context);
  let webhookPath;
  let procedurePath;

  await t.test('login page, then sign in with the keyboard', async () => {
    await page.goto(`${base}/login`);
    await check(page, 'login');
    await signIn(page, adminToken);
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    await check(page, 'dashboard-empty');
  });

  await t.test('migrations: create, see the plan, run', async () => {
    await page.getByRole('link', { name: 'Migrations' }).first().click();
    await page.getByText('New migration').click();
    await page.getByLabel('Name', { exact: true }).fill('create_browser_items');
    await page.getByLabel('Version', { exact: true }).fill('1');
    await page.getByLabel('Up script').fill('CREATE TABLE browser_items (id INTEGER PRIMARY KEY, name TEXT)');
    await page.getByLabel('Down script (optional)').fill('DROP TABLE browser_items');
    await page.getByRole('button', { name: 'Create migration' }).click();
    await page.getByText('Created.').waitFor();
    await page.getByRole('button', { name: 'Run pending…' }).click();
    await page.getByRole('heading', { name: 'Run migrations' }).waitFor();
    assert.match(await page.locator('ol.plan').innerText(), /CREATE TABLE browser_items/);
    await check(page, 'migrations-plan');
    await page.getByRole('button', { name: 'Run 1 migration(s)' }).click();
    await page.getByText('Done: 1 migration(s) applied.').waitFor();
    await page.getByRole('link', { name: 'Back to migrations' }).click();
    assert.match(await page.locator('table').first().innerText(), /create_browser_items\s+executed/);
    await check(page, 'migrations');
  });

  await t.test('procedures: create a view, plan, deploy, in sync; drift and restore', async () => {
    await page.getByRole('link', { name: 'Procedures', exact: true }).first().click();
    await page.getByRole('heading', { name: 'Procedures', exact: true }).waitFor();
    await page.getByRole('link', { name: 'New procedure' }).click();
    await page.getByLabel('Name', { exact: true }).fill('browser_item_names');
    await page.getByLabel('Type').selectOption('view');
    await page.getByLabel('Up script').fill('CREATE VIEW browser_item_names AS\nSELECT id, name\nFROM browser_items');
    await page.getByLabel(/^Down script/).fill('DROP VIEW browser_item_names');
    await check(page, 'procedure-new');
    await page.getByRole('button', { name: 'Create procedure' }).click();
    await page.getByText('Created.').waitFor();
    assert.match(await page.locator('dl.props').innerText(), /State\s+pending/);
    procedurePath = new URL(page.url()).pathname;

    // Deploy all shows the dry-run plan first; cancel it and deploy this one instead.
    await page.goto(`${base}/procedures`);
    await page.getByRole('button', { name: 'Deploy all…' }).click();
    await page.getByRole('heading', { name: 'Deploy procedures' }).waitFor();
    assert.match(await page.locator('ol.plan').innerText(), /browser_item_names[\s\S]*CREATE VIEW browser_item_names/);
    await check(page, 'procedures-plan');
    await page.getByRole('link', { name: 'Cancel' }).click();
    await page.getByRole('link', { name: 'browser_item_names' }).click();
    await page.getByRole('button', { name: 'Deploy', exact: true }).click();
    await page.getByText('Deployed.').waitFor();
    assert.match(await page.locator('dl.props').innerText(), /State\s+in_sync/);
    await page.getByText('Identical').waitFor();
    await check(page, 'procedure');
    await page.getByRole('link', { name: 'Back to procedures' }).click();
    assert.match(await page.locator('table').innerText(), /browser_item_names\s+view\s+1\s+in_sync/);
    await check(page, 'procedures');

    // Someone redefines the view outside the procedure (here: a migration run by the API).
    const api = (path, body) =>
      fetch(`${base}/api/v1${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const made = await api('/migrations', {
      name: 'redefine_browser_view',
      version: '2',
      isActive: true,
      upScript:
        'DROP VIEW browser_item_names;\nCREATE VIEW browser_item_names AS\nSELECT id, upper(name) AS name\nFROM browser_items\nWHERE id > 1',
    });
    assert.equal(made.status, 201, await made.text());
    const ran = await api('/migrations/run', {});
    assert.equal(ran.status, 200, await ran.text());
    await page.goto(`${base}${procedurePath}`);
    assert.match(await page.locator('dl.props').innerText(), /State\s+drifted/);
    const [deployed, live] = await page.locator('.sbs .lines').allInnerTexts();
    assert.match(deployed, /SELECT id, name/);
    assert.doesNotMatch(deployed, /upper/);
    assert.match(live, /upper\(name\)/);
    assert.ok((await page.locator('.sbs .ln.add').count()) > 0, 'changed lines are highlighted');
    await check(page, 'procedure-drifted');
    await page.goto(`${base}/`);
    const panel = await page.locator('section', { has: page.getByRole('heading', { name: 'Drifted procedures' }) }).innerText();
    assert.match(panel, /1 not in sync[\s\S]*drifted\s+browser_item_names/);
    await check(page, 'dashboard-drifted');
    await page.getByRole('link', { name: 'browser_item_names' }).click();
    await page.getByRole('button', { name: 'Deploy (restore)' }).click();
    await page.getByText('Deployed.').waitFor();
    assert.match(await page.locator('dl.props').innerText(), /State\s+in_sync/);
  });

  await t.test('webhooks: create, send a test event, read the attempt', async () => {
    await page.getByRole('link', { name: 'Webhooks' }).first().click();
    await page.getByRole('link', { name: 'New webhook' }).click();
    await page.getByLabel('Name', { exact: true }).fill('browser-receiver');
    await page.getByLabel('Endpoint URL').fill(`http://127.0.0.1:${receiver.port}/hook`);
    await check(page, 'webhook-new');
    await page.getByRole('button', { name: 'Create webhook' }).click();
    const secret = await page.getByLabel('Signing secret').inputValue();
    assert.match(secret, /^whsec_/);
    await page.getByRole('link', { name: 'Continue to the webhook' }).click();
    webhookPath = new URL(page.url()).pathname;
    await page.getByRole('button', { name: 'Send test event' }).click();
    await page.getByText('Test event queued').waitFor();
    await reloadUntil(page, page.locator('table'), 'succeeded');
    assert.equal(receiver.received.length, 1, 'the receiver got the test event');
    assert.match(receiver.received[0].headers['webhook-signature'], /^v1,/);
    await check(page, 'webhook');
    await page.locator('table a').first().click();
    await page.getByRole('heading', { name: 'Attempts' }).waitFor();
    const timeline = await page.locator('ol.timeline').innerText();
    assert.match(timeline, /200/);
    assert.match(timeline, /receivedBy/);
    await check(page, 'delivery');
  });

  await t.test('incoming: create a source, receive a request, verify the chain', async () => {
    await page.getByRole('link', { name: 'Incoming' }).first().click();
    await page.getByText('New source').click();
    await page.getByLabel('Name', { exact: true }).fill('browser');
    await page.getByRole('button', { name: 'Create source' }).click();
    await page.getByText('Created.').waitFor();
    const sent = await fetch(`${base}/ingest/browser/orders?x=1`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-provider': 'browser-test' },
      body: JSON.stringify({ order: 7, items: ['tea'] }),
    });
    assert.ok(sent.ok, `ingest answered ${sent.status}`);
    await reloadUntil(page, page.locator('table').first(), '/orders');
    await page.getByLabel('Source').selectOption('browser');
    await page.getByRole('button', { name: 'Filter' }).click();
    await check(page, 'incoming');
    await page.locator('table').first().locator('a').first().click();
    await page.getByRole('heading', { name: 'Body' }).waitFor();
    assert.match(await page.locator('pre').innerText(), /^\{\n {2}"order": 7,\n {2}"items": \[\n {4}"tea"\n {2}\]\n\}$/);
    assert.match(await page.locator('table').innerText(), /x-provider\s+browser-test/);
    await check(page, 'incoming-request');
    await page.goto(`${base}/incoming`);
    await page.getByRole('link', { name: 'Verify hash chain' }).click();
    await page.getByText('The chain is intact').waitFor();
    await check(page, 'incoming-verify');
  });

  await t.test('key-value: typed editor, edit, history rollback, secret reveal', async () => {
    await page.getByRole('link', { name: 'Key-value' }).first().click();
    await page.getByLabel('Key', { exact: true }).fill('browser/limit');
    await page.getByLabel('Type').selectOption('integer');
    await page.getByRole('button', { name: 'Continue' }).click();
    const value = page.getByLabel(/^Value/);
    assert.equal(await value.getAttribute('type'), 'number', 'integers get a number field');
    await value.fill('42');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Saved.').waitFor();
    await page.getByLabel(/^Value/).fill('43');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Saved.').waitFor();
    await page.getByRole('button', { name: 'Roll back to v1' }).click();
    await page.getByText('Rolled back').waitFor();
    assert.match(await page.locator('dl.props').innerText(), /Version\s+3/);
    assert.match(await page.locator('dl.props pre').innerText(), /^42$/);
    await check(page, 'kv-entry');

    await page.goto(`${base}/kv/edit?key=browser/password&type=secret`);
    assert.equal(await page.getByLabel(/^Value/).getAttribute('type'), 'password');
    await page.getByLabel(/^Value/).fill('hunter2-browser');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Saved.').waitFor();
    assert.ok(!(await page.content()).includes('hunter2-browser'), 'a secret is masked');
    await page.getByRole('button', { name: 'Reveal' }).click();
    assert.match(await page.locator('dl.props pre').innerText(), /hunter2-browser/);
    await page.goto(`${base}/kv`);
    await check(page, 'kv');
    await page.goto(`${base}/`);
    await check(page, 'dashboard');
  });

  await t.test('a read token sees but cannot act', async () => {
    const readContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const reader = await openPage(readContext);
    await signIn(reader, readToken);
    await reader.goto(`${base}${webhookPath}`);
    assert.equal(await reader.getByRole('button', { name: 'Send test event' }).count(), 0);
    assert.equal(await reader.getByRole('link', { name: 'New webhook' }).count(), 0);
    await reader.goto(`${base}/kv/entry?key=browser/password`);
    assert.equal(await reader.getByRole('button', { name: 'Reveal' }).count(), 0);
    assert.equal(await reader.getByRole('button', { name: 'Save' }).count(), 0);
    await check(reader, 'kv-entry-read-only');
    await reader.goto(`${base}${procedurePath}`);
    assert.equal(await reader.getByRole('button', { name: /Deploy/ }).count(), 0);
    assert.equal(await reader.getByRole('link', { name: 'Roll back…' }).count(), 0);
    // The forms' absence is cosmetic; the server refuses the post itself.
    const csrf = await reader.locator('input[name=_csrf]').first().inputValue();
    const refused = await readContext.request.post(`${base}${webhookPath}/test`, {
      form: { _csrf: csrf },
      headers: { origin: base },
      maxRedirects: 0,
    });
    assert.equal(refused.status(), 403);
    const deploy = await readContext.request.post(`${base}${procedurePath}/deploy`, {
      form: { _csrf: csrf },
      headers: { origin: base },
      maxRedirects: 0,
    });
    assert.equal(deploy.status(), 403);
    await readContext.close();
  });

  await t.test('sign out ends the session', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(`${base}/login`);
    await page.goto(`${base}/kv`);
    assert.match(page.url(), /\/login\?next=\/kv$/);
    assert.deepEqual(page.errors, []);
  });
});
