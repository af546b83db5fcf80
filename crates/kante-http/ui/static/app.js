// Kante's web view: a small vanilla-JS page over the LXD-compatible API of
// the kanted that serves it. Authentication is a session cookie (HttpOnly,
// set by POST /ui/login from a one-time login link); every API request
// carries the X-Kante-UI header the server requires with the cookie.
// Instance state changes arrive from the /1.0/events websocket; periodic
// state reads only feed the usage columns and their sparklines. xterm.js is
// loaded only when a console is opened (console.js).
'use strict';

const HISTORY = 60; // samples kept per instance for the sparklines
const SAMPLE_MS = 5000;

const ui = {
  instances: new Map(), // name -> {inst, state, hist: {cpu: [], mem: []}, prev}
  server: null,
  events: null,
  eventsWanted: false,
  sampling: null,
  view: null,
};

// ----- helpers --------------------------------------------------------

/** Builds an element: h('td', {class: 'num'}, 'text', child, ...). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function bytes(n) {
  if (n === undefined || n === null || n < 0) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

let sayTimer = null;
function say(text, error) {
  const s = document.getElementById('status');
  s.textContent = text;
  s.classList.toggle('error', !!error);
  clearTimeout(sayTimer);
  // Successes fade after a while; errors stay until the next message.
  if (!error && text.endsWith('done.')) sayTimer = setTimeout(() => { s.textContent = ''; }, 6000);
}

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

/** One API request; returns the envelope's metadata (or the envelope of an async answer). */
async function api(method, path, body) {
  const opts = { method, headers: { 'X-Kante-UI': '1' }, credentials: 'same-origin' };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let j = null;
  try { j = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok || (j && j.type === 'error')) {
    if (r.status === 403 && path.startsWith('/1.0')) showLogin();
    throw new ApiError((j && j.error) || r.statusText, r.status);
  }
  if (j && j.type === 'async') return j;
  return j ? j.metadata : null;
}

/** A request whose answer is an operation: waits for it to end. */
async function run(method, path, body) {
  const r = await api(method, path, body);
  if (!r || r.type !== 'async') return r;
  const op = await api('GET', `${r.operation}/wait?timeout=300`);
  if (op.status_code !== 200) throw new ApiError(op.err || op.status, op.status_code);
  return op;
}

const enc = encodeURIComponent;

function confirmAction(text, ok) {
  const d = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-ok').textContent = ok;
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
    d.returnValue = 'cancel';
    d.showModal();
    document.getElementById('confirm-ok').focus();
  });
}

// ----- login ----------------------------------------------------------

function showLogin(problem) {
  stopLive();
  document.getElementById('nav').hidden = true;
  document.getElementById('logout').hidden = true;
  document.getElementById('live').hidden = true;
  document.title = 'Log in · Kante';
  const main = document.getElementById('main');
  const input = h('input', { id: 'login-token', name: 'token', type: 'password', autocomplete: 'off', required: true });
  const form = h('form', { id: 'login-form', onsubmit: (e) => {
    e.preventDefault();
    const v = input.value.trim();
    login(v.includes('#') ? v.slice(v.indexOf('#') + 1) : v);
  } },
  h('label', { for: 'login-token' }, 'Login link or token'),
  input,
  h('button', { type: 'submit' }, 'Log in'));
  main.replaceChildren(h('section', { class: 'login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Log in to Kante'),
    problem ? h('p', { class: 'state Stopped', role: 'alert' }, problem) : null,
    h('p', {}, 'This browser is not trusted by this server. On the server, run ',
      h('code', {}, 'kante config trust add --ui NAME'),
      ' and open the link it prints in this browser (it works once), or paste it here.'),
    form));
}

async function login(token) {
  try {
    await api('POST', '/ui/login', { token });
    location.replace('/ui/');
  } catch (e) {
    showLogin(`The login failed: ${e.message}. The link is valid once; ask for a new one.`);
  }
}

async function logout() {
  try { await api('POST', '/ui/logout'); } catch (_) { /* gone already */ }
  location.replace('/ui/');
}

// ----- live data --------------------------------------------------------

function startLive() {
  ui.eventsWanted = true;
  connectEvents(1000);
  if (!ui.sampling) {
    ui.sampling = setInterval(sample, SAMPLE_MS);
    // A second sample soon after the first view, so rates show at once.
    setTimeout(sample, 1500);
  }
}

function stopLive() {
  ui.eventsWanted = false;
  if (ui.events) ui.events.close();
  ui.events = null;
  clearInterval(ui.sampling);
  ui.sampling = null;
}

function connectEvents(backoff) {
  const ws = new WebSocket(`wss://${location.host}/1.0/events?type=lifecycle`);
  ui.events = ws;
  const live = document.getElementById('live');
  ws.onopen = () => { live.hidden = false; live.classList.remove('off'); live.textContent = 'live'; backoff = 1000; };
  ws.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (_) { return; }
    onEvent(ev).catch((e) => say(`An update failed: ${e.message}`, true));
  };
  ws.onclose = () => {
    live.classList.add('off');
    live.textContent = 'offline';
    if (ui.eventsWanted && ui.events === ws) {
      setTimeout(() => {
        if (!ui.eventsWanted) return;
        connectEvents(Math.min(backoff * 2, 30000));
        // What happened while the stream was down.
        refreshAll().then(() => rerender()).catch(() => { /* the next try tells */ });
      }, backoff);
    }
  };
}

/** A lifecycle event: the instance it names is read again (or dropped). */
async function onEvent(ev) {
  const md = ev.metadata || {};
  const action = md.action || '';
  const m = /^\/1\.0\/(?:instances|containers)\/([^/?]+)/.exec(md.source || '');
  if (m && action.startsWith('instance-') && !action.startsWith('instance-log')) {
    const name = decodeURIComponent(m[1]);
    if (action === 'instance-deleted') {
      ui.instances.delete(name);
    } else if (action === 'instance-renamed') {
      ui.instances.delete(name);
      await refreshAll();
      return;
    } else {
      await refreshInstance(name);
    }
    rerender(name);
  } else if (action.startsWith('network-') || action.startsWith('storage-pool-')) {
    if (ui.view === 'networks' || ui.view === 'storage') route();
  }
}

function entry(name) {
  let e = ui.instances.get(name);
  if (!e) {
    e = { inst: null, state: null, hist: { cpu: [], mem: [] }, prev: null };
    ui.instances.set(name, e);
  }
  return e;
}

async function refreshAll() {
  const list = await api('GET', '/1.0/instances?recursion=2');
  const seen = new Set();
  for (const i of list) {
    const e = entry(i.name);
    e.inst = i;
    e.state = i.state || null;
    seen.add(i.name);
    note(e);
  }
  for (const n of [...ui.instances.keys()]) if (!seen.has(n)) ui.instances.delete(n);
}

async function refreshInstance(name) {
  try {
    const inst = await api('GET', `/1.0/instances/${enc(name)}`);
    const state = await api('GET', `/1.0/instances/${enc(name)}/state`);
    const e = entry(name);
    e.inst = inst;
    e.state = state;
    note(e);
  } catch (err) {
    if (err.status === 404) ui.instances.delete(name);
    else throw err;
  }
}

/** Records one usage sample of `e` (CPU % from the usage delta). */
function note(e) {
  const st = e.state;
  if (!st || st.status !== 'Running') { e.prev = null; e.rate = null; return; }
  const now = performance.now();
  const cpu = (st.cpu && st.cpu.usage) || 0;
  let rx = 0, tx = 0;
  for (const [dev, n] of Object.entries(st.network || {})) {
    if (dev === 'lo' || !n.counters) continue;
    rx += n.counters.bytes_received || 0;
    tx += n.counters.bytes_sent || 0;
  }
  if (e.prev && now > e.prev.t) {
    const dt = (now - e.prev.t) / 1000;
    const pct = Math.max(0, ((cpu - e.prev.cpu) / 1e9 / dt) * 100);
    e.rate = { cpu: pct, rx: Math.max(0, (rx - e.prev.rx) / dt), tx: Math.max(0, (tx - e.prev.tx) / dt) };
    push(e.hist.cpu, pct);
  }
  push(e.hist.mem, (st.memory && st.memory.usage) || 0);
  e.prev = { t: now, cpu, rx, tx };
}

function push(arr, v) {
  arr.push(v);
  if (arr.length > HISTORY) arr.shift();
}

/** Periodic state reads of running instances: usage and graphs only. */
async function sample() {
  if (ui.view !== 'overview' && ui.view !== 'instance') return;
  const running = [...ui.instances.entries()].filter(([, e]) => e.state && e.state.status === 'Running');
  for (const [name, e] of running) {
    try {
      const st = await api('GET', `/1.0/instances/${enc(name)}/state`);
      // The state itself (Running/Stopped) comes from events; keep it.
      e.state = Object.assign({}, st, { status: e.state ? e.state.status : st.status });
      note(e);
    } catch (_) { /* an event will tell */ }
  }
  rerender();
}

function rerender(name) {
  if (ui.view === 'overview') renderInstanceRows();
  else if (ui.view === 'instance' && (!name || name === ui.viewName)) renderInstanceHead();
}

// ----- views --------------------------------------------------------------

function addresses(state) {
  const out = [];
  for (const [dev, n] of Object.entries((state && state.network) || {})) {
    if (dev === 'lo') continue;
    for (const a of n.addresses || []) {
      if (a.scope === 'global') out.push(`${a.address} (${dev})`);
    }
  }
  return out;
}

function spark(values, label) {
  const w = 90, hgt = 22;
  const max = Math.max(1e-9, ...values);
  const pts = values.map((v, i) => `${(i / Math.max(1, HISTORY - 1)) * w},${hgt - (v / max) * (hgt - 2) - 1}`).join(' ');
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('width', w);
  svg.setAttribute('height', hgt);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  const pl = document.createElementNS(NS, 'polyline');
  pl.setAttribute('points', pts);
  svg.append(pl);
  return svg;
}

function stateCell(st) {
  const s = (st && st.status) || 'Unknown';
  return h('span', { class: `state ${s}` }, s);
}

function setView(view, title) {
  ui.view = view;
  document.title = `${title} · Kante`;
  for (const a of document.querySelectorAll('#nav a')) {
    const here = a.getAttribute('href') === (location.hash || '#/') ||
      (view === 'instance' && a.getAttribute('href') === '#/');
    if (here) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
}

async function viewOverview(main) {
  setView('overview', 'Overview');
  const hosts = h('div', { class: 'cards', id: 'hosts' });
  const tbody = h('tbody', { id: 'instance-rows' });
  main.replaceChildren(
    h('h1', {}, 'Overview'),
    h('section', { 'aria-labelledby': 'h-hosts' }, h('h2', { id: 'h-hosts' }, 'Hosts'), hosts),
    h('section', { 'aria-labelledby': 'h-instances' },
      h('h2', { id: 'h-instances' }, 'Instances'),
      h('table', { id: 'instances' },
        h('caption', { class: 'muted' }, 'State changes arrive live; usage is sampled every 5 seconds.'),
        h('thead', {}, h('tr', {}, ['Name', 'State', 'Addresses', 'Location', 'CPU', 'Memory', 'Disk', 'Network', 'Recent CPU']
          .map((t) => h('th', { scope: 'col' }, t)))),
        tbody)));
  await refreshAll();
  renderInstanceRows();
  await renderHosts(hosts);
}

async function renderHosts(box) {
  const server = await api('GET', '/1.0');
  const env = server.environment || {};
  let res = null;
  try { res = await api('GET', '/1.0/resources'); } catch (_) { /* not for this caller */ }
  let members = [];
  try {
    const cluster = await api('GET', '/1.0/cluster');
    if (cluster && cluster.enabled) members = await api('GET', '/1.0/cluster/members?recursion=1');
  } catch (_) { /* not clustered */ }
  // Load and free memory per host: GET /1.0/cluster/members/NAME/state
  // (a standalone server answers for its own name).
  const names = members.length ? members.map((m) => m.server_name) : [env.server_name];
  const states = new Map(await Promise.all(names.map(async (n) => [n,
    await api('GET', `/1.0/cluster/members/${enc(n)}/state`).catch(() => null)])));
  // sysinfo's free RAM leaves out the page cache: a member's card says so;
  // this server's card has the used memory from /1.0/resources already.
  const loadRows = (st, memory) => {
    if (!st) return [['Load', '–']];
    const s = st.sysinfo;
    return [['Load (1, 5, 15 min)', s.load_averages.map((l) => l.toFixed(2)).join(', ')],
      ...(memory ? [['Memory free (not cache)', `${bytes(s.free_ram)} of ${bytes(s.total_ram)}`]] : []),
      ['Pools free', Object.entries(st.storage_pools || {}).map(([p, v]) =>
        `${p} ${bytes(v.resources.space.total - v.resources.space.used)}`).join(', ') || '–']];
  };
  const running = [...ui.instances.values()].filter((e) => e.state && e.state.status === 'Running').length;
  const card = (title, rows) => h('section', { class: 'card', 'aria-label': title },
    h('h3', {}, title), h('dl', {}, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
  const cards = [];
  const mem = res && res.memory;
  cards.push(card(env.server_name || 'This server', [
    ['Version', `${env.server || 'kante'} ${env.server_version || ''}`],
    ['Addresses', (env.addresses || []).join(', ') || '–'],
    ['CPU threads', res ? res.cpu.total : '–'],
    ['Memory used', mem ? `${bytes(mem.used)} of ${bytes(mem.total)}` : '–'],
    ...(members.length ? [] : loadRows(states.get(env.server_name), false)),
    ['Instances running', `${running} of ${ui.instances.size}`],
  ]));
  for (const m of members) {
    cards.push(card(`Member ${m.server_name}`, [
      ['Status', m.status], ['Address', m.url], ['Roles', (m.roles || []).join(', ') || '–'], ['Message', m.message || '–'],
      ...loadRows(states.get(m.server_name), true),
    ]));
  }
  box.replaceChildren(...cards);
}

function renderInstanceRows() {
  const tbody = document.getElementById('instance-rows');
  if (!tbody) return;
  const focused = document.activeElement && document.activeElement.dataset && document.activeElement.dataset.key;
  const rows = [...ui.instances.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, e]) => {
    const st = e.state || {};
    const r = e.rate;
    const run = st.status === 'Running';
    const cpuLabel = r ? `${r.cpu.toFixed(1)} %` : '–';
    return h('tr', { 'data-name': name, 'data-state': st.status || '' },
      h('td', {}, h('a', { href: `#/instance/${enc(name)}`, 'data-key': `i:${name}` }, name)),
      h('td', {}, stateCell(st)),
      h('td', { class: 'addresses' }, addresses(st).join(', ') || '–'),
      h('td', {}, (e.inst && e.inst.location) || 'none'),
      h('td', { class: 'num' }, run ? cpuLabel : '–'),
      h('td', { class: 'num' }, run && st.memory ? bytes(st.memory.usage) : '–'),
      h('td', { class: 'num' }, st.disk && st.disk.root ? bytes(st.disk.root.usage) : '–'),
      h('td', { class: 'num' }, run && r ? `↓ ${bytes(r.rx)}/s ↑ ${bytes(r.tx)}/s` : '–'),
      h('td', {}, run ? spark(e.hist.cpu, `CPU of ${name} over the last minutes, now ${cpuLabel}`) : '–'));
  });
  if (!rows.length) rows.push(h('tr', {}, h('td', { colspan: 9 }, 'No instances.')));
  tbody.replaceChildren(...rows);
  if (focused) {
    const el = tbody.querySelector(`[data-key="${CSS.escape(focused)}"]`);
    if (el) el.focus();
  }
}

async function viewInstance(main, name) {
  setView('instance', name);
  ui.viewName = name;
  await refreshInstance(name);
  const e = ui.instances.get(name);
  if (!e) { main.replaceChildren(h('h1', {}, name), h('p', {}, 'This instance does not exist.')); return; }
  const inst = e.inst;
  const snaps = await api('GET', `/1.0/instances/${enc(name)}/snapshots?recursion=1`);
  let log = '';
  try {
    const r = await fetch(`/1.0/instances/${enc(name)}/console`, { headers: { 'X-Kante-UI': '1' } });
    log = r.ok ? await r.text() : `(no console log: ${r.status})`;
  } catch (err) { log = `(no console log: ${err.message})`; }
  const kv = (obj) => h('table', {}, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Key'), h('th', { scope: 'col' }, 'Value'))),
    h('tbody', {}, Object.entries(obj || {}).sort().map(([k, v]) => h('tr', {}, h('td', {}, h('code', {}, k)), h('td', {}, h('code', {}, String(v)))))));
  const act = (label, fn, cls) => h('button', { type: 'button', class: cls, onclick: fn }, label);
  main.replaceChildren(
    h('h1', {}, `Instance ${name}`),
    h('div', { id: 'instance-head' }),
    h('div', { class: 'actions', role: 'group', 'aria-label': 'Actions' },
      act('Start', () => stateAction(name, 'start')),
      act('Stop', () => stateAction(name, 'stop')),
      act('Restart', () => stateAction(name, 'restart')),
      act('Snapshot', () => snapshot(name), 'quiet'),
      act('Delete', () => remove(name), 'danger')),
    h('section', { 'aria-labelledby': 'h-console' },
      h('h2', { id: 'h-console' }, 'Console'),
      h('button', { type: 'button', id: 'open-console', onclick: () => openConsole(name) }, 'Open a shell'),
      h('div', { id: 'console-box' })),
    h('section', { 'aria-labelledby': 'h-snaps' },
      h('h2', { id: 'h-snaps' }, 'Snapshots'),
      h('table', { id: 'snapshots' },
        h('thead', {}, h('tr', {}, ['Name', 'Created', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, snaps.length ? snaps.map((s) => h('tr', {},
          h('td', {}, s.name), h('td', {}, s.created_at || ''),
          h('td', {}, h('div', { class: 'actions' },
            act(`Restore ${s.name}`, () => restore(name, s.name), 'quiet'),
            act(`Delete ${s.name}`, () => removeSnapshot(name, s.name), 'danger'))))) :
          h('tr', {}, h('td', { colspan: 3 }, 'No snapshots.'))))),
    h('section', { 'aria-labelledby': 'h-config' }, h('h2', { id: 'h-config' }, 'Configuration'), kv(inst.expanded_config || inst.config)),
    h('section', { 'aria-labelledby': 'h-devices' }, h('h2', { id: 'h-devices' }, 'Devices'),
      h('table', {}, h('thead', {}, h('tr', {}, ['Device', 'Type', 'Properties'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, Object.entries(inst.expanded_devices || inst.devices || {}).sort().map(([d, props]) => h('tr', {},
          h('td', {}, d), h('td', {}, props.type || ''),
          h('td', {}, h('code', {}, Object.entries(props).filter(([k]) => k !== 'type').map(([k, v]) => `${k}=${v}`).join(' ')))))))),
    h('section', { 'aria-labelledby': 'h-log' }, h('h2', { id: 'h-log' }, 'Console log'),
      h('pre', { class: 'log', tabindex: '0', 'aria-label': 'Console log' }, log || '(empty)')));
  renderInstanceHead();
}

function renderInstanceHead() {
  const box = document.getElementById('instance-head');
  const e = ui.instances.get(ui.viewName);
  if (!box || !e) return;
  const st = e.state || {};
  const r = e.rate;
  box.replaceChildren(h('dl', { class: 'cards' },
    h('div', { class: 'card' }, h('dt', {}, 'State'), h('dd', { id: 'detail-state' }, stateCell(st))),
    h('div', { class: 'card' }, h('dt', {}, 'Addresses'), h('dd', {}, addresses(st).join(', ') || '–')),
    h('div', { class: 'card' }, h('dt', {}, 'Location'), h('dd', {}, (e.inst && e.inst.location) || 'none')),
    h('div', { class: 'card' }, h('dt', {}, 'CPU'), h('dd', {}, r ? `${r.cpu.toFixed(1)} %` : '–', ' ', spark(e.hist.cpu, 'CPU over the last minutes'))),
    h('div', { class: 'card' }, h('dt', {}, 'Memory'), h('dd', {}, st.memory ? bytes(st.memory.usage) : '–', ' ', spark(e.hist.mem, 'Memory over the last minutes'))),
    h('div', { class: 'card' }, h('dt', {}, 'Image'), h('dd', {}, (e.inst && e.inst.config && e.inst.config['image.description']) || '–'))));
}

async function act(what, fn) {
  say(`${what}…`);
  try {
    await fn();
    say(`${what}: done.`);
  } catch (e) {
    say(`${what} failed: ${e.message}`, true);
  }
}

async function stateAction(name, action) {
  const verbs = { start: 'Start', stop: 'Stop', restart: 'Restart' };
  if (!(await confirmAction(`${verbs[action]} instance ${name}?`, verbs[action]))) return;
  await act(`${verbs[action]} ${name}`, () => run('PUT', `/1.0/instances/${enc(name)}/state`, { action, timeout: 30, force: false }));
}

async function snapshot(name) {
  const snap = `snap-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}`;
  if (!(await confirmAction(`Take snapshot ${snap} of ${name}?`, 'Snapshot'))) return;
  await act(`Snapshot ${name}`, () => run('POST', `/1.0/instances/${enc(name)}/snapshots`, { name: snap }));
  route();
}

async function restore(name, snap) {
  if (!(await confirmAction(`Restore ${name} to snapshot ${snap}? Changes since the snapshot are lost.`, 'Restore'))) return;
  await act(`Restore ${name}`, () => run('PUT', `/1.0/instances/${enc(name)}`, { restore: snap }));
  route();
}

async function removeSnapshot(name, snap) {
  if (!(await confirmAction(`Delete snapshot ${snap} of ${name}?`, 'Delete'))) return;
  await act(`Delete ${name}/${snap}`, () => run('DELETE', `/1.0/instances/${enc(name)}/snapshots/${enc(snap)}`));
  route();
}

async function remove(name) {
  if (!(await confirmAction(`Delete instance ${name} and its snapshots? This cannot be undone.`, 'Delete'))) return;
  await act(`Delete ${name}`, () => run('DELETE', `/1.0/instances/${enc(name)}`));
  location.hash = '#/';
}

function usedBy(list) {
  if (!list || !list.length) return '–';
  return h('ul', {}, list.map((u) => {
    const m = /^\/1\.0\/instances\/([^/?]+)/.exec(u);
    return h('li', {}, m ? h('a', { href: `#/instance/${m[1]}` }, decodeURIComponent(m[1])) : h('code', {}, u));
  }));
}

async function viewNetworks(main) {
  setView('networks', 'Networks');
  const nets = await api('GET', '/1.0/networks?recursion=1');
  main.replaceChildren(h('h1', {}, 'Networks'),
    h('table', { id: 'networks' },
      h('thead', {}, h('tr', {}, ['Name', 'Type', 'Managed', 'IPv4', 'IPv6', 'Used by'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, nets.map((n) => h('tr', {},
        h('td', {}, n.name), h('td', {}, n.type), h('td', {}, n.managed ? 'yes' : 'no'),
        h('td', {}, (n.config || {})['ipv4.address'] || '–'), h('td', {}, (n.config || {})['ipv6.address'] || '–'),
        h('td', {}, usedBy(n.used_by)))))));
}

async function viewStorage(main) {
  setView('storage', 'Storage');
  const pools = await api('GET', '/1.0/storage-pools?recursion=1');
  const space = await Promise.all(pools.map((p) => api('GET', `/1.0/storage-pools/${enc(p.name)}/resources`).catch(() => null)));
  main.replaceChildren(h('h1', {}, 'Storage pools'),
    h('table', { id: 'pools' },
      h('thead', {}, h('tr', {}, ['Name', 'Driver', 'Status', 'Space used', 'Used by'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, pools.map((p, i) => h('tr', {},
        h('td', {}, p.name), h('td', {}, p.driver), h('td', {}, p.status || '–'),
        h('td', { class: 'num' }, space[i] && space[i].space ? `${bytes(space[i].space.used)} of ${bytes(space[i].space.total)}` : '–'),
        h('td', {}, usedBy(p.used_by)))))));
}

async function openConsole(name) {
  const box = document.getElementById('console-box');
  box.replaceChildren(h('p', {}, 'Loading the terminal…'));
  try {
    await loadScript('/ui/console.js');
    await window.KanteConsole.open(box, name, api);
  } catch (e) {
    box.replaceChildren(h('p', { class: 'state Stopped', role: 'alert' }, `The console failed: ${e.message}`));
  }
}

const loaded = new Map();
/** Loads a script of this page once (the console's, on demand). */
function loadScript(src) {
  if (!loaded.has(src)) {
    loaded.set(src, new Promise((resolve, reject) => {
      const s = h('script', { src });
      s.onload = resolve;
      s.onerror = () => reject(new Error(`${src} did not load`));
      document.head.append(s);
    }));
  }
  return loaded.get(src);
}

// ----- routing ----------------------------------------------------------

async function route() {
  if (window.KanteConsole) window.KanteConsole.close();
  const main = document.getElementById('main');
  const hash = location.hash || '#/';
  try {
    let m;
    if ((m = /^#\/instance\/([^/]+)$/.exec(hash))) await viewInstance(main, decodeURIComponent(m[1]));
    else if (hash === '#/networks') await viewNetworks(main);
    else if (hash === '#/storage') await viewStorage(main);
    else await viewOverview(main);
  } catch (e) {
    if (e.status !== 403) say(`Loading failed: ${e.message}`, true);
  }
}

async function boot() {
  document.getElementById('logout').addEventListener('click', logout);
  if (location.pathname === '/ui/login') {
    const token = location.hash.slice(1);
    // The secret leaves the address bar (and the history) at once.
    history.replaceState(null, '', '/ui/login');
    if (token) { await login(token); return; }
  }
  let server;
  try {
    server = await api('GET', '/1.0');
  } catch (e) {
    say(`The server does not answer: ${e.message}`, true);
    return;
  }
  if (server.auth !== 'trusted') { showLogin(); return; }
  if (location.pathname !== '/ui/') history.replaceState(null, '', '/ui/');
  ui.server = server;
  document.getElementById('nav').hidden = false;
  document.getElementById('logout').hidden = false;
  window.addEventListener('hashchange', route);
  startLive();
  await route();
}

boot();
