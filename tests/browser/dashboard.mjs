// Drive headless Chromium against the dashboard of a running daemon (started
// by tests/browser_dashboard.sh, with --auth-token): put a workload through
// the API, load GET /, give the page the token, wait (bounded) until the
// figures it shows are the daemon's, check them, change the sale and wait
// for the page to follow, check the cluster-members panel against
// GET /v1/cluster and that it refreshes, check the hot-keys panel (the keys
// read, then a new hottest key showing up live), and save a screenshot.
//
// Environment: SQLCACHED_URL (http://127.0.0.1:PORT), SQLCACHED_TOKEN,
// BROWSER_WORKDIR (where `npm ci` installed playwright-core), SCREENSHOT
// (the PNG to write), CHROMIUM (default /usr/bin/chromium).
// Exit status 0 when every check passed, 1 otherwise.
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const base = process.env.SQLCACHED_URL;
const token = process.env.SQLCACHED_TOKEN;
const shot = process.env.SCREENSHOT;
const workdir = process.env.BROWSER_WORKDIR;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!base || !token || !shot || !workdir) {
  console.error('dashboard.mjs: SQLCACHED_URL, SQLCACHED_TOKEN, SCREENSHOT and BROWSER_WORKDIR are needed');
  process.exit(1);
}
const { chromium } = createRequire(join(workdir, 'package.json'))('playwright-core');

const TOTAL_MS = 120000; // the whole run
const WAIT_MS = 15000;   // one wait for the page
const guard = setTimeout(() => {
  console.error(`dashboard.mjs: gave up after ${TOTAL_MS} ms`);
  process.exit(1);
}, TOTAL_MS);

function check(cond, what) {
  if (!cond)
    throw new Error('check failed: ' + what);
  console.log('ok   ' + what);
}

// One API call with the token; returns [status, parsed body or null].
async function api(method, path, body) {
  const headers = { Authorization: 'Bearer ' + token };
  if (body !== undefined)
    headers['Content-Type'] = 'application/json';
  const resp = await fetch(base + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await resp.text();
  let json = null;
  try { json = JSON.parse(text); } catch (e) { /* not JSON: a stored value */ }
  return [resp.status, json];
}

async function expectStatus(want, method, path, body) {
  const [status] = await api(method, path, body);
  if (status !== want)
    throw new Error(`${method} ${path}: got ${status}, want ${want}`);
}

// The workload: two items, orders (one refused sold out), KV writes and
// reads, some of them served by the memory tier.
async function workload() {
  await expectStatus(201, 'PUT', '/v1/items/print', { name: 'Limited print', stock: 5 });
  await expectStatus(201, 'PUT', '/v1/items/poster', { name: 'Tour poster', stock: 3 });
  for (const u of ['ada', 'grace', 'edsger'])
    await expectStatus(201, 'POST', '/v1/items/print/orders', { user_id: u });
  for (const u of ['ada', 'grace', 'edsger'])
    await expectStatus(201, 'POST', '/v1/items/poster/orders', { user_id: u });
  await expectStatus(409, 'POST', '/v1/items/poster/orders', { user_id: 'barbara' });
  for (let i = 1; i <= 4; i++)
    await expectStatus(201, 'PUT', `/v1/kv/user:${i}`, { n: i });
  for (let round = 0; round < 5; round++)
    for (let i = 1; i <= 4; i++)
      await expectStatus(200, 'GET', `/v1/kv/user:${i}`);
  await expectStatus(404, 'GET', '/v1/kv/nobody');
  await expectStatus(200, 'GET', '/v1/items/print');
  await expectStatus(200, 'GET', '/v1/items/print');
}

// Wait until every figure the page shows is the one expected.
async function waitFigures(page, want, what) {
  try {
    await page.waitForFunction((w) => {
      const text = (sel) => (document.querySelector(sel) || {}).textContent;
      const row = (id) => document.querySelector(`#items tbody tr[data-id="${id}"]`);
      for (const [id, stock, sold] of w.items) {
        const tr = row(id);
        if (!tr || tr.querySelector('.stock').textContent !== stock ||
            tr.querySelector('.sold').textContent !== sold)
          return false;
      }
      return text('#hit-ratio') === w.hitRatio && text('#evictions') === w.evictions &&
             /^\d+\.\d$/.test(text('#rps')) && /^\d+(\.\d)? (B|KiB|MiB|GiB)$/.test(text('#memory'));
    }, want, { timeout: WAIT_MS, polling: 200 });
  } catch (e) {
    const shown = await page.evaluate(() => document.querySelector('main').innerText);
    throw new Error(`${what}: the page did not show the expected figures in ${WAIT_MS} ms ` +
                    `(want ${JSON.stringify(want)}); it shows:\n${shown}`);
  }
  console.log('ok   ' + what);
}

// The cluster-members panel against GET /v1/cluster: on SQLite one member,
// this node, up, its heartbeat a moment ago (the age shown is under 5 s:
// browser and daemon share this machine's clock); live: the heartbeat the
// row shows moves on without reloading.
async function checkMembers(page) {
  const [cs, cluster] = await api('GET', '/v1/cluster');
  check(cs === 200 && cluster.members.length === 1 && cluster.members[0].id === cluster.node &&
        cluster.members[0].state === 'up', 'GET /v1/cluster: one member, this node, up');
  const me = cluster.members[0];
  const want = { id: String(me.id), address: me.address, prev: null };
  // the heartbeat the row shows once it shows all that, and one other than
  // w.prev; null until then
  const shown = (w) => {
    const tr = document.querySelector(`#members tbody tr[data-id="${w.id}"]`);
    if (!tr || document.querySelectorAll('#members tbody tr').length !== 1)
      return null;
    const age = tr.querySelector('td.age').textContent;
    const m = /^(\d+\.\d) s$/.exec(age);
    const self = tr.querySelector('td.id .self');
    const ok = tr.querySelector('td.id code').textContent === '#' + w.id &&
               tr.classList.contains('self') && self && !self.hidden && self.textContent === 'this node' &&
               tr.querySelector('td.address').textContent === w.address &&
               tr.querySelector('td.state').textContent === 'up' && m && Number(m[1]) < 5 &&
               document.querySelector('#members-detail').textContent.startsWith(`1 of 1 up · this node #${w.id}`);
    return ok && tr.dataset.heartbeat !== w.prev ? tr.dataset.heartbeat : null;
  };
  const members = () => page.evaluate(() =>
    (document.querySelector('section.members') || { innerText: '(no members panel)' }).innerText);
  let first;
  try {
    first = await (await page.waitForFunction(shown, want, { timeout: WAIT_MS, polling: 200 })).jsonValue();
  } catch (e) {
    throw new Error(`the members panel did not show ${JSON.stringify(want)} up, this node, ` +
                    `heartbeat under 5 s in ${WAIT_MS} ms (${e.message}); it shows:\n${await members()}`);
  }
  console.log(`ok   the members panel shows #${want.id} ${want.address} up, this node, heartbeat under 5 s`);
  try {
    await page.waitForFunction(shown, { ...want, prev: first }, { timeout: WAIT_MS, polling: 200 });
  } catch (e) {
    throw new Error(`the members panel did not refresh the heartbeat (${first}) in ${WAIT_MS} ms ` +
                    `(${e.message}); it shows:\n${await members()}`);
  }
  console.log('ok   the members panel is live: the heartbeat it shows moved on');
}

// The hot-keys panel (GET /v1/stats/hotkeys): the keys the workload read,
// with their reads; then a key read more than any other takes the top row
// live, with the count the API gives (decayed counts only go down).
async function hotRows(page) {
  return page.evaluate(() => [...document.querySelectorAll('#hotkeys tbody tr')].map((tr) => ({
    key: tr.dataset.key, reads: tr.querySelector('.reads').textContent,
    rank: tr.querySelector('.rank').textContent,
  })));
}

async function checkHotkeys(page) {
  const [st, hk] = await api('GET', '/v1/stats/hotkeys?limit=10');
  check(st === 200 && hk.enabled === true && hk.keys.some((k) => k.key === 'user:1'),
        'the API names the keys the workload read');
  const want = ['user:1', 'user:2', 'user:3', 'user:4'];
  try {
    await page.waitForFunction((w) => {
      const rows = [...document.querySelectorAll('#hotkeys tbody tr')];
      return w.every((k) => rows.some((tr) => tr.dataset.key === k &&
        /^[1-9][0-9,]*$/.test(tr.querySelector('.reads').textContent)));
    }, want, { timeout: WAIT_MS, polling: 200 });
  } catch (e) {
    throw new Error('the hot-keys panel did not show user:1..4: ' + JSON.stringify(await hotRows(page)));
  }
  console.log('ok   the hot-keys panel shows the keys read, with their reads');
  check(await page.isHidden('#hotkeys-empty'), 'the hot-keys panel is not empty');

  for (let i = 0; i < 40; i++)
    await expectStatus(404, 'GET', '/v1/kv/hot:live');
  const [, after] = await api('GET', '/v1/stats/hotkeys?limit=1');
  check(after.keys[0].key === 'hot:live', `the API puts hot:live on top (${after.keys[0].count})`);
  const apiCount = after.keys[0].count;
  // The panel may refresh in the middle of the 40 reads (a slow machine),
  // and counts halve every 10 s: wait until the row it shows was fetched
  // after the reads, i.e. until it shows at least what the API gives now
  // (a count only goes down) and no more than the API gave right after
  // them.
  const deadline = Date.now() + WAIT_MS;
  let top, apiNow;
  for (;;) {
    top = (await hotRows(page))[0];
    const [, now] = await api('GET', '/v1/stats/hotkeys?limit=1');
    apiNow = now.keys.length && now.keys[0].key === 'hot:live' ? now.keys[0].count : 0;
    const reads = top ? Number(top.reads.replace(/,/g, '')) : 0;
    if (top && top.key === 'hot:live' && top.rank === '1' && reads > 0 && reads >= apiNow &&
        reads <= apiCount)
      break;
    if (Date.now() > deadline)
      throw new Error(`hot:live did not take the top row live (API: ${apiCount} after the reads, ` +
                      `${apiNow} now): ` + JSON.stringify(await hotRows(page)));
    await new Promise((r) => setTimeout(r, 200));
  }
  console.log(`ok   hot:live shows live on top of the panel with ${top.reads} reads ` +
              `(API: ${apiCount} after the reads, ${apiNow} now)`);
}

async function run(page) {
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content.Security.Policy|Refused to/i.test(m.text()))
      pageErrors.push(m.text());
  });

  await workload();
  const [st, stats] = await api('GET', '/v1/stats');
  check(st === 200 && stats.cache.hits > 0 && stats.cache.misses > 0, 'the workload made hits and misses');
  const hitRatio = (stats.cache.hit_ratio * 100).toFixed(1) + '%';

  const resp = await page.goto(base + '/', { waitUntil: 'load', timeout: WAIT_MS });
  const h = resp.headers();
  check(resp.status() === 200, 'GET / answers 200 without a token');
  check(h['content-type'] === 'text/html; charset=utf-8', 'GET / is text/html; charset=utf-8');
  check(/default-src 'none'/.test(h['content-security-policy'] || '') &&
        /script-src 'self'/.test(h['content-security-policy']), 'GET / has a strict Content-Security-Policy');
  check(h['cache-control'] === 'no-cache', 'GET / has Cache-Control: no-cache');

  // The daemon wants a token: the page says so and asks for it.
  await page.waitForSelector('#auth:not([hidden])', { timeout: WAIT_MS });
  check((await page.textContent('#status')) === 'token needed', 'the page asks for the token');
  check((await page.textContent('#hit-ratio')) === '–', 'no figures without the token');
  await page.fill('#token', token);
  await page.click('#token-use');

  await waitFigures(page, {
    hitRatio, evictions: String(stats.cache.evictions),
    items: [['print', '2', '3'], ['poster', '0', '3']],
  }, `the page shows hit ratio ${hitRatio}, print 2 left / 3 sold, poster 0 / 3`);
  check(await page.isHidden('#auth'), 'the token form is gone');
  check((await page.evaluate(() => sessionStorage.getItem('sqlcached.token'))) === token,
        'the token is kept in sessionStorage');
  check((await page.textContent('#status')) === 'live', 'the status says live');
  check(/^of 64\.0 MiB/.test(await page.textContent('#memory-detail')), 'memory is shown against the 64 MiB limit');

  // Live: one more order shows up without reloading, and the chart of the
  // item has a line of several samples.
  await expectStatus(201, 'POST', '/v1/items/print/orders', { user_id: 'barbara' });
  await waitFigures(page, {
    hitRatio, evictions: String(stats.cache.evictions),
    items: [['print', '1', '4'], ['poster', '0', '3']],
  }, 'a new order shows up live: print 1 left / 4 sold');
  await page.waitForFunction(() => {
    const pl = document.querySelector('#items tr[data-id="print"] .chart polyline.sold');
    return pl && pl.getAttribute('points').split(' ').length >= 3;
  }, null, { timeout: WAIT_MS });
  console.log('ok   the item chart has a line of several samples');
  const rps = Number(await page.textContent('#rps'));
  check(rps > 0, `requests/s is above 0 (${rps})`);

  await checkMembers(page);
  await checkHotkeys(page);

  // The hit-ratio chart and its key are in the policy's palette colour
  // (the colour the SVGs of docs/plots/ give that policy).
  const c = await page.evaluate(() => {
    const chart = document.querySelector('#hit-chart');
    const hex = getComputedStyle(document.documentElement)
      .getPropertyValue('--policy-' + chart.dataset.policy).trim();
    const line = chart.querySelector('polyline');
    return { policy: chart.dataset.policy, hex, text: document.querySelector('#hit-policy').textContent,
             stroke: line ? getComputedStyle(line).stroke : null,
             key: getComputedStyle(document.querySelector('#hit-policy-key')).backgroundColor };
  });
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(c.hex);
  const rgb = m ? `rgb(${parseInt(m[1], 16)}, ${parseInt(m[2], 16)}, ${parseInt(m[3], 16)})` : 'none';
  check(c.policy === stats.cache.policy && c.text === 'policy ' + stats.cache.policy,
        `the hit-ratio card names the policy (${c.text})`);
  check(m && c.stroke === rgb && c.key === rgb,
        `the hit-ratio chart is in the palette colour of ${c.policy} (${c.hex}: stroke ${c.stroke}, key ${c.key})`);
  check(pageErrors.length === 0, 'no script error and no CSP violation' +
        (pageErrors.length ? ': ' + pageErrors.join(' | ') : ''));
}

const userDataDir = mkdtempSync(join(tmpdir(), 'sqlcached-chromium-'));
let context = null;
let status = 0;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    timeout: 60000, // a loaded machine can take this long to start Chromium
    viewport: { width: 1280, height: 860 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--no-proxy-server'],
  });
  const page = context.pages()[0] || await context.newPage();
  try {
    await run(page);
  } finally {
    await page.screenshot({ path: shot, fullPage: true, timeout: 10000 })
      .then(() => console.log('screenshot: ' + shot))
      .catch((e) => console.error('screenshot failed: ' + e.message));
  }
} catch (e) {
  console.error('FAIL ' + (e && e.message ? e.message : e));
  status = 1;
} finally {
  if (context)
    await context.close().catch(() => {});
  // Chromium's helper processes may still be writing the profile for a
  // moment after the close: retry, and never let the cleanup decide the
  // test's outcome.
  try {
    rmSync(userDataDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  } catch (e) {
    console.error('could not remove ' + userDataDir + ': ' + e.message);
  }
  clearTimeout(guard);
}
process.exit(status);
