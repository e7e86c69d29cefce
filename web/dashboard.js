/*
 * The sqlcached dashboard's script (served as /dashboard.js).
 *
 * Every second it reads GET /v1/stats and GET /v1/items from the daemon
 * that served the page, and shows: the memory tier's hit ratio, requests per
 * second (the growth of the request counters between two polls, divided by
 * the time between them), memory use against the limit, evictions, and for
 * each item its stock and sold with a chart of the last WINDOW_S seconds,
 * and the hot keys (GET /v1/stats/hotkeys: the keys read most recently,
 * with their estimated reads). On a loop of its own it reads GET
 * /v1/cluster: the cluster's members.
 * The hit-ratio chart is drawn in the colour of the daemon's eviction
 * policy, from the palette in dashboard.css that the SVGs of docs/plots/
 * use too.
 *
 * When the daemon answers 401 (it runs with --auth-token) the page asks for
 * the token, keeps it in sessionStorage (this tab only) and sends it as
 * "Authorization: Bearer". Data is written into the page only as text
 * (textContent, SVG attributes), never as markup.
 */
'use strict';

(function () {
  const POLL_MS = 1000;
  const TIMEOUT_MS = 5000;
  const WINDOW_S = 60;
  const ITEMS_PAGE = 100;
  const HOTKEYS_LIMIT = 10;
  const TOKEN_KEY = 'sqlcached.token';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const DASH = '–';

  const $ = (id) => document.getElementById(id);

  let prev = null;         // previous stats snapshot {t, requests, hits, misses, evictions}
  const series = { hit: [], rps: [], evictions: [] };
  const itemHistory = new Map(); // id -> [{t, stock, sold}]

  /* ------------------------------------------------------------- token */

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || '';
    } catch (e) {
      return '';
    }
  }

  function setToken(value) {
    try {
      if (value)
        sessionStorage.setItem(TOKEN_KEY, value);
      else
        sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      /* storage refused: the token lasts until the page is left */
    }
  }

  function showAuth(message) {
    const form = $('auth');
    form.hidden = false;
    setStatus(message, 'bad');
  }

  $('auth').addEventListener('submit', (ev) => {
    ev.preventDefault();
    setToken($('token').value.trim());
    $('token').value = '';
    poll();
  });

  $('token-forget').addEventListener('click', () => {
    setToken('');
    $('token').value = '';
    poll();
  });

  /* ------------------------------------------------------------ fetching */

  async function getJSON(path) {
    const headers = { Accept: 'application/json' };
    const t = token();
    if (t)
      headers.Authorization = 'Bearer ' + t;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      const resp = await fetch(path, { headers, cache: 'no-store', signal: ctl.signal });
      if (resp.status === 401)
        return { unauthorized: true };
      if (!resp.ok)
        throw new Error(path + ': HTTP ' + resp.status);
      return { body: await resp.json() };
    } finally {
      clearTimeout(timer);
    }
  }

  /* ---------------------------------------------------------- formatting */

  function bytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + units[i];
  }

  function count(n) {
    return Number(n).toLocaleString('en-US');
  }

  function setText(id, text) {
    const el = $(id);
    if (el.textContent !== text)
      el.textContent = text;
  }

  function setStatus(text, cls) {
    const el = $('status');
    el.textContent = text;
    el.className = 'status ' + (cls || '');
  }

  function push(list, value, max) {
    list.push(value);
    while (list.length > max)
      list.shift();
  }

  /* --------------------------------------------------------------- charts */

  function svgEl(name, attrs) {
    const el = document.createElementNS(SVG_NS, name);
    for (const k in attrs)
      el.setAttribute(k, attrs[k]);
    return el;
  }

  /* Points "x,y ..." of values (nulls skipped) scaled into w x h, spread
   * over the whole width (the window fills up, then scrolls). */
  function points(values, w, h, max) {
    const step = w / Math.max(values.length - 1, 1);
    const x0 = values.length > 1 ? 0 : w;
    const out = [];
    values.forEach((v, i) => {
      if (v === null || !isFinite(v))
        return;
      const y = h - 2 - (max > 0 ? (v / max) * (h - 4) : 0);
      out.push((x0 + i * step).toFixed(1) + ',' + y.toFixed(1));
    });
    return out.join(' ');
  }

  /* A sparkline of values in the card's svg (viewBox 200 x 40). */
  function spark(id, values, fixedMax) {
    const svg = $(id);
    const max = fixedMax || Math.max(1, ...values.filter((v) => v !== null));
    const pts = points(values, 200, 40, max);
    svg.replaceChildren();
    if (!pts)
      return;
    const first = pts.split(' ')[0].split(',')[0];
    const last = pts.split(' ').slice(-1)[0].split(',')[0];
    svg.append(svgEl('polygon', { class: 'area', points: first + ',40 ' + pts + ' ' + last + ',40' }),
               svgEl('polyline', { points: pts }));
  }

  /* The item's stock and sold over the window, on one scale (stock + sold,
   * the stock of its last reset). */
  function itemChart(svg, hist) {
    const w = 240, h = 44;
    const max = Math.max(1, ...hist.map((p) => p.stock + p.sold));
    svg.replaceChildren(
      svgEl('line', { class: 'axis', x1: 0, y1: h - 1, x2: w, y2: h - 1 }),
      svgEl('polyline', { class: 'stock', points: points(hist.map((p) => p.stock), w, h, max) }),
      svgEl('polyline', { class: 'sold', points: points(hist.map((p) => p.sold), w, h, max) }));
  }

  /* ---------------------------------------------------------------- stats */

  function totalRequests(stats) {
    return (stats.requests || []).reduce((sum, r) => sum + r.count, 0);
  }

  function errorRequests(stats) {
    return (stats.requests || []).filter((r) => r.status >= 500).reduce((s, r) => s + r.count, 0);
  }

  function showStats(stats, now) {
    const c = stats.cache;
    const lookups = c.hits + c.misses;
    const cur = { t: now, requests: totalRequests(stats), hits: c.hits, misses: c.misses,
                  evictions: c.evictions };

    setText('hit-ratio', lookups > 0 ? (c.hit_ratio * 100).toFixed(1) + '%' : DASH);
    setText('hit-detail', lookups > 0
      ? count(c.hits) + ' hits · ' + count(c.misses) + ' misses'
      : 'no lookups yet');

    // the chart and its key take the policy's colour (dashboard.css palette)
    $('hit-chart').dataset.policy = c.policy;
    $('hit-policy-key').dataset.policy = c.policy;
    setText('hit-policy', 'policy ' + c.policy);

    setText('memory', bytes(c.memory_bytes));
    const bar = $('memory-bar');
    if (c.memory_limit_bytes > 0) {
      const pct = Math.min(100, (100 * c.memory_bytes) / c.memory_limit_bytes);
      bar.style.width = pct.toFixed(1) + '%';
      bar.className = pct > 90 ? 'high' : '';
      setText('memory-detail', 'of ' + bytes(c.memory_limit_bytes) + ' (' + pct.toFixed(1) +
              '%) · ' + count(c.entries) + ' entries · ' + c.policy);
    } else {
      bar.style.width = '0';
      setText('memory-detail', 'memory tier off (--cache-memory 0)');
    }

    setText('evictions', count(c.evictions));

    if (prev && cur.requests < prev.requests)
      prev = null; // the daemon restarted: its counters began again
    if (prev) {
      const dt = (now - prev.t) / 1000;
      const rps = dt > 0 ? (cur.requests - prev.requests) / dt : 0;
      setText('rps', rps.toFixed(1));
      setText('rps-detail', count(cur.requests) + ' requests since start · ' +
              count(errorRequests(stats)) + ' answered 5xx');
      push(series.rps, rps, WINDOW_S);
      push(series.hit, lookups > 0 ? c.hit_ratio : null, WINDOW_S);
      const ev = cur.evictions - prev.evictions;
      push(series.evictions, ev / (dt || 1), WINDOW_S);
      setText('evictions-detail', (ev > 0 ? '+' + count(ev) + ' since the last poll' : 'none since the last poll') +
              ' · ' + count(c.expirations) + ' expired');
      spark('rps-chart', series.rps);
      spark('hit-chart', series.hit, 1);
      spark('evictions-chart', series.evictions);
    } else {
      setText('evictions-detail', count(c.expirations) + ' expired');
    }
    prev = cur;
  }

  /* ---------------------------------------------------------------- items */

  function itemRow(id) {
    const tr = document.createElement('tr');
    tr.dataset.id = id;
    const idCell = document.createElement('td');
    idCell.className = 'id';
    const code = document.createElement('code');
    code.textContent = id;
    const name = document.createElement('span');
    name.className = 'name';
    idCell.append(code, name);
    const stock = document.createElement('td');
    stock.className = 'num stock';
    const sold = document.createElement('td');
    sold.className = 'num sold';
    const bar = document.createElement('td');
    bar.className = 'bar';
    const meter = document.createElement('div');
    meter.className = 'meter';
    meter.append(document.createElement('div'));
    const pct = document.createElement('span');
    pct.className = 'pct';
    bar.append(meter, pct);
    const chart = document.createElement('td');
    chart.className = 'chart';
    chart.append(svgEl('svg', { viewBox: '0 0 240 44', preserveAspectRatio: 'none' }));
    tr.append(idCell, stock, sold, bar, chart);
    return tr;
  }

  function showItems(page, now) {
    const tbody = $('items').tBodies[0];
    const rows = new Map([...tbody.rows].map((tr) => [tr.dataset.id, tr]));
    const seen = new Set();
    for (const it of page.items) {
      seen.add(it.id);
      let tr = rows.get(it.id);
      if (!tr)
        tr = itemRow(it.id);
      tbody.append(tr); // keeps the answer's (id) order
      tr.querySelector('.name').textContent = it.name;
      tr.querySelector('.stock').textContent = count(it.stock);
      tr.querySelector('.sold').textContent = count(it.sold);
      const total = it.stock + it.sold;
      const pct = total > 0 ? (100 * it.sold) / total : 0;
      tr.querySelector('.bar .meter div').style.width = pct.toFixed(1) + '%';
      tr.querySelector('.bar .pct').textContent = pct.toFixed(0) + '% sold';
      const hist = itemHistory.get(it.id) || [];
      push(hist, { t: now, stock: it.stock, sold: it.sold }, WINDOW_S);
      itemHistory.set(it.id, hist);
      itemChart(tr.querySelector('.chart svg'), hist);
    }
    for (const [id, tr] of rows) {
      if (!seen.has(id)) {
        tr.remove();
        itemHistory.delete(id);
      }
    }
    $('items-empty').hidden = page.items.length > 0;
    const more = $('items-more');
    more.hidden = page.next === null;
    more.textContent = page.next === null ? '' : 'Showing the first ' + ITEMS_PAGE + ' items.';
  }

  /* ------------------------------------------------------ cluster members */

  /* GET /v1/cluster on a loop of its own (so that a failure there leaves
   * the other figures alone): each member's id, address, state and the age
   * of its last heartbeat, this node marked. The age is this browser's
   * clock minus heartbeat_at (epoch ms, the database's clock): clocks that
   * disagree shift it, so it is never shown below 0. */

  let membersTimer = null;

  function heartbeatAge(ms) {
    const s = Math.max(0, ms) / 1000;
    if (s < 60)
      return s.toFixed(1) + ' s';
    if (s < 3600)
      return Math.floor(s / 60) + ' min ' + Math.floor(s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  function memberRow(id) {
    const tr = document.createElement('tr');
    tr.dataset.id = id;
    for (const cls of ['id', 'address', 'state', 'num age']) {
      const td = document.createElement('td');
      td.className = cls;
      tr.append(td);
    }
    const code = document.createElement('code');
    const self = document.createElement('span');
    self.className = 'self';
    self.textContent = 'this node';
    tr.cells[0].append(code, self);
    return tr;
  }

  function showMembers(cluster, nowMs) {
    const tbody = $('members').tBodies[0];
    const rows = new Map([...tbody.rows].map((tr) => [tr.dataset.id, tr]));
    const seen = new Set();
    for (const m of cluster.members) {
      const id = String(m.id);
      seen.add(id);
      const tr = rows.get(id) || memberRow(id);
      tbody.append(tr); // keeps the answer's (id) order
      const isSelf = m.id === cluster.node;
      tr.classList.toggle('self', isSelf);
      tr.dataset.heartbeat = String(m.heartbeat_at);
      tr.querySelector('td.id code').textContent = '#' + id;
      tr.querySelector('td.id .self').hidden = !isSelf;
      tr.querySelector('td.address').textContent = m.address || DASH;
      const state = tr.querySelector('td.state');
      state.textContent = m.state;
      state.className = 'state ' + (m.state === 'up' ? 'up' : 'down');
      tr.querySelector('td.age').textContent = heartbeatAge(nowMs - m.heartbeat_at);
    }
    for (const [id, tr] of rows)
      if (!seen.has(id))
        tr.remove();
    const up = cluster.members.filter((m) => m.state === 'up').length;
    setText('members-detail', count(up) + ' of ' + count(cluster.members.length) + ' up · this node #' +
            cluster.node + ' · updated ' + new Date(nowMs).toLocaleTimeString('en-GB'));
  }

  async function pollMembers() {
    clearTimeout(membersTimer);
    const started = performance.now();
    try {
      const cluster = await getJSON('/v1/cluster');
      if (cluster.unauthorized)
        setText('members-detail', token() ? 'token refused' : 'token needed');
      else
        showMembers(cluster.body, Date.now());
    } catch (e) {
      setText('members-detail', 'cannot read the members: ' + String(e.message || e));
    }
    const wait = Math.max(0, POLL_MS - (performance.now() - started));
    membersTimer = setTimeout(pollMembers, wait);
  }

  /* ------------------------------------------------------------- hot keys */

  /* One row of the hot-keys table: rank, key (or its base64 form), the
   * estimated reads and a bar against the hottest key. */
  function hotkeyRow() {
    const tr = document.createElement('tr');
    const rank = document.createElement('td');
    rank.className = 'rank';
    const key = document.createElement('td');
    key.className = 'hk-key'; // not .key: the legend swatches' class
    key.append(document.createElement('code'));
    const reads = document.createElement('td');
    reads.className = 'num reads';
    const bar = document.createElement('td');
    bar.className = 'bar';
    const meter = document.createElement('div');
    meter.className = 'meter';
    meter.append(document.createElement('div'));
    bar.append(meter);
    tr.append(rank, key, reads, bar);
    return tr;
  }

  function showHotkeys(body) {
    const tbody = $('hotkeys').tBodies[0];
    const keys = body.keys || [];
    while (tbody.rows.length > keys.length)
      tbody.deleteRow(-1);
    while (tbody.rows.length < keys.length)
      tbody.append(hotkeyRow());
    const top = keys.length > 0 ? Math.max(1, keys[0].count) : 1;
    keys.forEach((k, i) => {
      const tr = tbody.rows[i];
      const code = tr.querySelector('.hk-key code');
      const b64 = typeof k.key !== 'string';
      code.textContent = b64 ? k.key_base64 : k.key;
      code.className = b64 ? 'b64' : '';
      tr.dataset.key = code.textContent;
      tr.querySelector('.rank').textContent = String(i + 1);
      tr.querySelector('.reads').textContent = count(k.count);
      tr.querySelector('.bar .meter div').style.width = ((100 * k.count) / top).toFixed(1) + '%';
    });
    setText('hotkeys-half-life', String(Math.round((body.half_life_ms || 10000) / 1000)));
    const empty = $('hotkeys-empty');
    empty.hidden = keys.length > 0;
    empty.textContent = body.enabled === false
      ? 'Hot-key tracking is off (--hotkeys off).' : 'No key read yet.';
  }

  /* The hot keys, apart from the other figures: with --admin-token the
   * route wants that token, and a 401 here must not ask for the user one. */
  async function pollHotkeys() {
    try {
      const hk = await getJSON('/v1/stats/hotkeys?limit=' + HOTKEYS_LIMIT);
      if (hk.unauthorized) {
        showHotkeys({ keys: [] });
        setText('hotkeys-empty', 'Hot keys need the admin token (--admin-token).');
      } else {
        showHotkeys(hk.body);
      }
    } catch (e) {
      setText('hotkeys-empty', 'Hot keys unavailable: ' + String(e.message || e));
    }
  }

  /* ----------------------------------------------------------------- loop */

  let timer = null;

  async function poll() {
    clearTimeout(timer);
    const started = performance.now();
    try {
      const [stats, items] = await Promise.all([
        getJSON('/v1/stats'),
        getJSON('/v1/items?limit=' + ITEMS_PAGE),
      ]);
      if (stats.unauthorized || items.unauthorized) {
        showAuth(token() ? 'token refused' : 'token needed');
      } else {
        $('auth').hidden = true;
        const now = performance.now();
        showStats(stats.body, now);
        showItems(items.body, now);
        await pollHotkeys();
        setStatus('live', 'ok');
        setText('updated', 'updated ' + new Date().toLocaleTimeString('en-GB'));
      }
    } catch (e) {
      setStatus('unreachable', 'bad');
      setText('updated', String(e.message || e));
    }
    const wait = Math.max(0, POLL_MS - (performance.now() - started));
    timer = setTimeout(poll, wait);
  }

  $('window').textContent = String(WINDOW_S);
  poll();
  pollMembers();
})();
