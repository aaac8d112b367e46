// Ferry's dashboard: plain DOM, no framework. Every value from the device is put in the page as
// text (never as HTML): app names, peer labels and log lines come from elsewhere.
'use strict';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const KEEP_SAMPLES = 120;

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const k of kids.flat(Infinity)) if (k !== undefined && k !== null && k !== false) e.append(k instanceof Node ? k : String(k));
  return e;
}

const bytes = (n) => (n === undefined || n === null ? '–' : n < 10240 ? `${n} B` : n < 10485760 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`);
const millis = (n) => `${Math.round(n)} ms`;
const dur = (ms) => (ms < 1000 ? `${Math.round(ms)} ms` : ms < 120000 ? `${(ms / 1000).toFixed(1)} s` : ms < 7200000 ? `${Math.round(ms / 60000)} min` : `${(ms / 3600000).toFixed(1)} h`);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '–');
const words = (e) => `${e.message} (${e.code})`;

class UiError extends Error {
  constructor(code, message, field) {
    super(message);
    this.code = code;
    this.field = field;
  }
}

let csrf = '';
let page = 'device';
let param = '';
let refreshTimer;
const samples = new Map(); // instance -> [{at, ...figures}]
let logs = [];
let moves = { active: [], ended: -1 };
let watching; // the move this page started and follows: {id, events, report}

// ---- talking to the agent ----

async function call(cmd, args = {}) {
  let r;
  try {
    r = await fetch(`/api/cmd/${cmd}`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Ferry-CSRF': csrf }, body: JSON.stringify(args) });
  } catch {
    throw new UiError('UNREACHABLE', 'the agent does not answer (stopped, or the tunnel is down)');
  }
  let body;
  try {
    body = await r.json();
  } catch {
    throw new UiError('HTTP', `the agent answered ${r.status} without a reason`);
  }
  if (r.status === 401) showLogin();
  if (!body.ok) throw new UiError(body.error.code, body.error.message, body.error.field);
  return body.result;
}

function notice(text, kind = 'error') {
  const n = $('notice');
  n.textContent = text;
  n.className = kind === 'info' ? 'info' : '';
  n.hidden = false;
}
const clearNotice = () => ($('notice').hidden = true);

/** Runs an action, says how it went, and shows the page as it now is. */
async function act(label, cmd, args) {
  clearNotice();
  try {
    const r = await call(cmd, args);
    notice(`${label}: done.`, 'info');
    await render();
    return r;
  } catch (e) {
    notice(`${label} failed: ${words(e)}`);
    await render();
    return undefined;
  }
}

/** A confirmation in the page (a <dialog>), resolved true or false. */
function confirmed(text) {
  const d = $('confirm');
  $('confirm-text').textContent = text;
  return new Promise((resolve) => {
    const done = (v) => {
      $('confirm-yes').onclick = $('confirm-no').onclick = null;
      d.close();
      resolve(v);
    };
    $('confirm-yes').onclick = () => done(true);
    $('confirm-no').onclick = () => done(false);
    d.oncancel = () => done(false); // Escape
    d.showModal();
  });
}

// ---- session ----

async function login(token) {
  const r = await fetch('/api/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token }) });
  if (r.ok) return true;
  const b = await r.json().catch(() => ({}));
  notice(`Not opened: ${b.error ? words(b.error) : `the agent answered ${r.status}`}`);
  return false;
}

async function session() {
  const r = await fetch('/api/session');
  if (!r.ok) return false;
  csrf = (await r.json()).result.csrf;
  return true;
}

function showLogin() {
  $('login').hidden = false;
  $('nav').hidden = true;
  $('page').replaceChildren();
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if ((await login($('token').value.trim())) && (await session())) start();
});

async function boot() {
  const m = /[#&]token=([A-Za-z0-9_-]+)/.exec(location.hash);
  if (m) {
    // The token leaves the address bar (and the history) at once; the session cookie stands for it.
    history.replaceState(null, '', `${location.pathname}#/device`);
    await login(m[1]);
  }
  if (await session()) start();
  else showLogin();
}

let streaming = false;
function start() {
  $('login').hidden = true;
  $('nav').hidden = false;
  clearNotice();
  // Signed in again after the session was lost: the stream and the listeners are there already.
  if (streaming) return route();
  streaming = true;
  const es = new EventSource('/api/events');
  es.addEventListener('hello', (ev) => {
    const d = JSON.parse(ev.data);
    samples.clear();
    for (const s of d.history) addSample(s);
    logs = d.logs;
    drawLive();
  });
  es.addEventListener('sample', (ev) => {
    addSample(JSON.parse(ev.data));
    drawLive();
  });
  es.addEventListener('log', (ev) => {
    const l = JSON.parse(ev.data);
    logs.push(l);
    if (logs.length > 200) logs.shift();
    if (page === 'device') drawLogs();
    // A pairing request from another device, or its next step: the peers page shows it at once.
    if (page === 'peers' && /^(pair|peer)\./.test(l.event || '')) rerenderSoon();
  });
  es.onerror = () => setLiveState(false);
  es.onopen = () => setLiveState(true);
  window.addEventListener('hashchange', route);
  setInterval(tickCountdowns, 1000);
  route();
}

function setLiveState(up) {
  if (up) return void header(); // back: the header says how the broker is
  const b = $('broker');
  b.hidden = false;
  b.className = 'pill bad';
  b.textContent = 'live updates: reconnecting';
}

function addSample(s) {
  for (const i of s.instances) {
    const list = samples.get(i.instance) || [];
    list.push({ at: s.at, ...i });
    if (list.length > KEEP_SAMPLES) list.shift();
    samples.set(i.instance, list);
  }
  const endedBefore = moves.ended;
  moves = s.moves;
  if (page === 'handoffs' && endedBefore !== -1 && moves.ended !== endedBefore && !watching?.live) void render();
  if (page === 'handoffs') drawActive();
}

// ---- pages ----

const PAGES = { device: pageDevice, apps: pageApps, checkpoints: pageCheckpoints, services: pageServices, peers: pagePeers, handoffs: pageHandoffs };

function route() {
  const m = /^#\/([a-z]+)(?:\/(.*))?$/.exec(location.hash);
  page = m && PAGES[m[1]] ? m[1] : 'device';
  param = m && m[2] ? decodeURIComponent(m[2]) : '';
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === page);
  clearNotice();
  void render();
}

let soon;
function rerenderSoon() {
  clearTimeout(soon);
  const shown = page;
  soon = setTimeout(() => page === shown && void render(), 150);
}

let rendering = 0;
async function render() {
  clearTimeout(refreshTimer);
  const mine = ++rendering;
  const root = h('div', { 'data-page': page });
  try {
    await PAGES[page](root);
  } catch (e) {
    root.append(h('p', { class: 'error' }, `This page could not be read: ${words(e)}`));
  }
  if (mine !== rendering) return; // a newer render took over
  $('page').replaceChildren(root);
  drawLive();
  drawLogs();
  drawWatch();
  drawActive();
  await header();
}

async function header() {
  try {
    const s = await call('status');
    $('device-name').textContent = `${s.deviceId} · ${s.profile}`;
    const b = $('broker');
    const up = s.brokerConnected && !s.brokerDownSince;
    b.hidden = false;
    b.className = `pill ${up ? 'ok' : 'bad'}`;
    b.textContent = up ? 'broker connected' : `broker down since ${when(s.brokerDownSince)}`;
  } catch {
    // the page itself says what failed
  }
}

const card = (title, ...body) => h('div', { class: 'card' }, h('h2', {}, title), ...body);
const dl = (...rows) => h('dl', {}, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
function table(heads, rows, attrs = {}) {
  return h('table', attrs, h('thead', {}, h('tr', {}, heads.map((x) => h('th', {}, x)))), h('tbody', {}, rows));
}
/** A bar filled to `pct` percent (set through the CSSOM: the page's CSP allows no style attributes). */
function bar(pct, title) {
  const fill = h('span');
  fill.style.width = `${Math.max(0, Math.min(100, pct))}%`;
  return h('div', { class: 'bar', title: title || `${pct.toFixed(0)}%` }, fill);
}
const stateBadge = (state, error) => h('span', { class: `pill state-${state}`, 'data-state': state, title: error || '' }, state, error ? `: ${error}` : '');

async function pageDevice(root) {
  const [s, d] = await Promise.all([call('status'), call('device')]);
  const up = s.brokerConnected && !s.brokerDownSince;
  root.append(
    h('h1', {}, 'Device'),
    h(
      'div',
      { class: 'cards' },
      card('This device', dl(['Device id', s.deviceId], ['Profile', `${d.profile.name} (${d.profile.deviceClass}, ${d.profile.wordBits}-bit)`], ['Ferry', d.version], ['Uptime', dur(s.uptimeMs)], ['Agent memory', bytes(s.rssBytes)], ['Fingerprint', s.fingerprint || '–'])),
      card('Broker', dl(['Broker', `${s.broker}${s.embeddedBroker ? ' (embedded)' : ''}`], ['Connected', up ? `yes, since ${when(s.brokerUpSince)}` : `no, since ${when(s.brokerDownSince)}`], ['Reconnects', s.brokerReconnects ?? 0])),
      card('Budgets', dl(['Heap budget', `${bytes(d.profile.heapBudgetBytes)} per instance`], ['Virtual heap', bytes(d.profile.virtualHeapBytes)], ['Link', `${bytes(d.profile.link.bandwidthBps / 8)}/s, ${d.profile.link.latencyMs} ms`], ['Local services', d.profile.services.join(', ') || 'none'], ['Apps', `${s.apps} installed, ${s.running} running`])),
      card('Store and flash', dl(['Store file', bytes(d.store.fileBytes)], ['Live data', bytes(d.store.liveBytes)], ['Written since start', bytes(d.store.segmentBytesWritten)], ['Commits', d.store.commits], ['Flash wear', `${d.store.wearPercent}% of ${d.profile.flashEnduranceCycles} erase cycles`])),
    ),
    h('h2', {}, 'Recent events'),
    h('div', { class: 'log', id: 'log' }),
  );
}

function drawLogs() {
  const box = $('log');
  if (!box) return;
  box.replaceChildren(...logs.slice(-100).map((l) => h('div', {}, `${l.ts ? new Date(l.ts).toLocaleTimeString() : ''} ${l.level || ''} ${l.event || ''}${l.instance ? ` ${l.instance}` : ''}`)));
  box.scrollTop = box.scrollHeight;
}

async function pageApps(root) {
  const a = await call('apps');
  const buttons = (i) => {
    const b = (label, cmd, cls) => h('button', { class: cls, 'data-action': cmd, onclick: () => act(`${label} ${i.instance}`, cmd, { instance: i.instance }) }, label);
    if (i.state === 'running') return [b('Suspend', 'suspend'), b('Stop', 'stop', 'danger'), b('Upgrade', 'upgrade')];
    if (i.state === 'suspended' || i.state === 'stopped' || i.state === 'failed') return [b('Resume', 'resume', 'primary')];
    return [];
  };
  root.append(
    h('h1', {}, 'Apps and instances'),
    table(
      ['Instance', 'App', 'State', 'Memory (resident of budget)', 'Virtual heap', 'Faults/s', 'Requests/s', 'Last commit', ''],
      a.instances.map((i) =>
        h(
          'tr',
          { 'data-instance': i.instance },
          h('td', {}, i.instance),
          h('td', {}, `${i.app}${i.appVersion ? ` ${i.appVersion}` : ''}`),
          h('td', {}, stateBadge(i.state, i.error)),
          ['mem', 'virt', 'faults', 'req', 'commit'].map((k) => h('td', { 'data-live': `${i.instance}|${k}` }, '–')),
          h('td', {}, buttons(i)),
        ),
      ),
      { id: 'instances' },
    ),
    h('h2', {}, 'Installed apps'),
    table(
      ['App', 'Version', 'Installed', ''],
      a.apps.map((x) => {
        const name = h('input', { placeholder: `instance (default ${x.name})`, 'aria-label': `instance name for ${x.name}` });
        return h('tr', { 'data-app': x.name }, h('td', {}, x.name), h('td', {}, x.version), h('td', {}, when(x.installedAt)), h('td', {}, name, h('button', { 'data-action': 'run', onclick: () => act(`Run ${x.name}`, 'run', { app: x.name, ...(name.value.trim() ? { instance: name.value.trim() } : {}) }) }, 'Run')));
      }),
    ),
  );
}

function sparkline(values, max, title) {
  const w = 110;
  const ht = 26;
  const s = document.createElementNS(SVG, 'svg');
  s.setAttribute('class', 'spark');
  s.setAttribute('width', w);
  s.setAttribute('height', ht);
  s.setAttribute('viewBox', `0 0 ${w} ${ht}`);
  const t = document.createElementNS(SVG, 'title');
  t.textContent = title;
  s.append(t);
  const top = Math.max(max || 0, ...values, 1e-9);
  const pts = values.map((v, i) => `${values.length === 1 ? w : (i / (values.length - 1)) * w},${ht - 1 - (v / top) * (ht - 2)}`).join(' ');
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('points', pts);
  line.setAttribute('fill', 'none');
  line.setAttribute('stroke', '#2457c5');
  line.setAttribute('stroke-width', '1.5');
  s.append(line);
  return s;
}

/** Redraws the live cells of the page shown (charts and figures) from the samples. */
function drawLive() {
  for (const cell of document.querySelectorAll('[data-live]')) {
    const [instance, k] = cell.dataset.live.split('|');
    const list = (samples.get(instance) || []).filter((s) => s.state === 'running');
    const last = list[list.length - 1];
    if (!last) {
      cell.replaceChildren('–');
      continue;
    }
    const series = (f) => list.map((s) => s[f] ?? 0);
    if (k === 'mem') {
      const pct = last.budgetBytes ? Math.min(100, (last.residentBytes / last.budgetBytes) * 100) : 0;
      cell.replaceChildren(bar(pct, `${pct.toFixed(0)}% of the budget`), `${bytes(last.residentBytes)} of ${bytes(last.budgetBytes)}`);
    } else if (k === 'virt') cell.replaceChildren(bytes(last.virtualBytes));
    else if (k === 'faults') cell.replaceChildren(sparkline(series('faultsPerSec'), 0, 'faults per second'), `${last.faultsPerSec ?? 0}`);
    else if (k === 'req') cell.replaceChildren(sparkline(series('requestsPerSec'), 0, 'requests per second'), `${last.requestsPerSec ?? 0}`);
    else if (k === 'commit') cell.replaceChildren(sparkline(series('lastCommitMs'), 0, 'last commit, ms'), last.lastCommitMs === undefined ? '–' : `${last.lastCommitMs} ms`);
  }
}

/** Why a checkpoint was taken, in words (the heap's reasons; older versions have none). */
const REASONS = { init: 'first run', create: 'created', group: 'calls committed', suspend: 'suspended', request: 'requested', 'dirty-lines': 'many changes', interval: 'timer', 'after-gc': 'after a collection', arrived: 'arrived from a peer', import: 'arrived from a peer' };
function why(reason) {
  if (!reason) return '–';
  const r = /^restore of (\d+)$/.exec(reason);
  return r ? `restored version ${r[1]}` : REASONS[reason] || reason;
}

async function pageCheckpoints(root) {
  const a = await call('apps');
  const ids = a.instances.map((i) => i.instance);
  const instance = ids.includes(param) ? param : ids[0];
  root.append(h('h1', {}, 'Checkpoints'));
  if (!instance) return root.append(h('p', { class: 'muted' }, 'No instances yet.'));
  const pick = h('select', { 'aria-label': 'instance', onchange: (ev) => (location.hash = `#/checkpoints/${encodeURIComponent(ev.target.value)}`) }, ids.map((id) => h('option', { value: id, selected: id === instance }, id)));
  const list = await call('checkpoints', { instance });
  root.append(
    h('div', { class: 'row' }, h('label', {}, 'Instance '), pick, h('span', { class: 'muted' }, `${list.length} versions kept`)),
    table(
      ['Version', 'Taken', 'Why', 'Size', '', ''],
      list
        .slice()
        .reverse()
        .map((c) =>
          h(
            'tr',
            { 'data-version': c.version },
            h('td', {}, String(c.version)),
            h('td', {}, when(c.createdAt)),
            h('td', { class: 'reason' }, why(c.reason)),
            h('td', {}, bytes(c.bytes)),
            h('td', {}, c.current ? h('span', { class: 'pill ok' }, 'current') : ''),
            h(
              'td',
              {},
              h('button', { 'data-action': 'restore', onclick: async () => (await confirmed(`Restore ${instance} to version ${c.version}? It runs from that checkpoint; what it did since is set aside (the newer versions stay listed).`)) && act(`Restore ${instance} to version ${c.version}`, 'restore', { instance, version: c.version }) }, 'Restore'),
              h('button', { class: 'danger', 'data-action': 'checkpoint-rm', onclick: async () => (await confirmed(`Remove version ${c.version} of ${instance}? This cannot be undone.`)) && act(`Remove version ${c.version} of ${instance}`, 'checkpoint-rm', { instance, version: c.version }) }, 'Remove'),
            ),
          ),
        ),
      { id: 'checkpoints' },
    ),
  );
}

const countdown = (expiresAt) => h('span', { 'data-expires': expiresAt }, left(expiresAt));
function left(expiresAt) {
  const ms = new Date(expiresAt).getTime() - Date.now();
  return ms <= 0 ? 'expired' : `${Math.ceil(ms / 1000)} s`;
}
function tickCountdowns() {
  for (const e of document.querySelectorAll('[data-expires]')) e.textContent = left(e.dataset.expires);
}

async function pageServices(root) {
  const [all, leases, grants] = await Promise.all([call('services'), call('leases'), call('grants')]);
  root.append(
    h('h1', {}, 'Services and leases'),
    h('h2', {}, 'Offered by this device'),
    table(
      ['Service', 'Type', 'Exclusive', 'Held by', 'Fence', 'Expires in'],
      grants.flatMap((g) =>
        g.holders.length === 0
          ? [h('tr', { 'data-service': g.service }, h('td', {}, g.service), h('td', {}, g.type), h('td', {}, g.exclusive ? 'yes' : 'no'), h('td', { class: 'muted' }, 'free'), h('td', {}, ''), h('td', {}, ''))]
          : g.holders.map((l) => h('tr', { 'data-service': g.service }, h('td', {}, g.service), h('td', {}, g.type), h('td', {}, g.exclusive ? 'yes' : 'no'), h('td', {}, l.holder), h('td', {}, l.fence ?? '–'), h('td', {}, countdown(l.expiresAt)))),
      ),
      { id: 'grants' },
    ),
    h('h2', {}, "Held by this device's apps"),
    table(['Instance', 'Service', 'Type', 'Provider', 'Fence', 'Expires in'], leases.map((l) => h('tr', { 'data-lease': l.service }, h('td', {}, l.instance), h('td', {}, l.service), h('td', {}, l.type), h('td', {}, l.provider ?? '–'), h('td', {}, l.fence ?? '–'), h('td', {}, countdown(l.expiresAt)))), { id: 'leases' }),
    h('h2', {}, 'Every service on the bus'),
    table(['Service', 'Type', 'Provider', 'Exclusive'], all.map((s) => h('tr', {}, h('td', {}, s.id), h('td', {}, s.type), h('td', {}, s.provider), h('td', {}, s.exclusive ? 'yes' : 'no')))),
  );
}

const pairing = new Set(); // peers this page asked to pair with, until the request ends

async function pagePeers(root) {
  const p = await call('peers', { check: true });
  const peerInput = h('input', { id: 'pair-peer', placeholder: 'device id of the other device', 'aria-label': 'device id to pair with' });
  const ask = (peer) => {
    pairing.add(peer);
    // The request waits for the other owner's answer: the page goes on meanwhile.
    call('pair', { peer })
      .then(() => notice(`Pairing with ${peer}: compare the codes on both devices.`, 'info'))
      .catch((e) => notice(`Pairing with ${peer} failed: ${words(e)}`))
      .finally(() => {
        pairing.delete(peer);
        void render();
      });
    setTimeout(() => void render(), 300);
  };
  const confirmAs = (a, yes) => {
    call('pair-confirm', { peer: a.peer, yes, ...(a.code ? { code: a.code } : {}) })
      .then(() => notice(yes ? `Paired with ${a.peer}.` : `Refused ${a.peer}.`, 'info'))
      .catch((e) => notice(`${yes ? 'Pairing' : 'Refusing'} ${a.peer} failed: ${words(e)}`))
      .finally(() => void render());
    notice(yes ? `Waiting for the owner of ${a.peer} to confirm too…` : `Refusing ${a.peer}…`, 'info');
  };
  root.append(
    h('h1', {}, 'Peers'),
    h('div', { class: 'cards' }, card('This device', dl(['Device id', p.self.deviceId], ['Fingerprint', p.self.fingerprint], ['Label', p.self.label || '–']))),
    h('form', { class: 'row', onsubmit: (ev) => (ev.preventDefault(), peerInput.value.trim() && ask(peerInput.value.trim())) }, peerInput, h('button', { class: 'primary', type: 'submit' }, 'Pair')),
    h('h2', {}, 'Pairing requests'),
    p.pending.length === 0
      ? h('p', { class: 'muted', id: 'no-pending' }, 'None.')
      : table(
          ['Peer', 'Step', 'Code to compare', ''],
          p.pending.map((a) =>
            h(
              'tr',
              { 'data-pending': a.peer },
              h('td', {}, a.peer, a.label ? h('div', { class: 'muted' }, `${a.label} · ${a.profile || ''}`) : '', a.fingerprint ? h('div', { class: 'muted' }, a.fingerprint) : ''),
              h('td', {}, `${a.role === 'initiator' ? 'you asked' : 'they asked'}: ${a.step}`),
              h('td', {}, a.code ? h('span', { class: 'code', 'data-code': a.code }, a.code) : h('span', { class: 'muted' }, 'not yet')),
              h(
                'td',
                {},
                a.role === 'responder' && a.step === 'incoming' ? h('button', { class: 'primary', 'data-action': 'accept', onclick: () => act(`Accept ${a.peer}`, 'pair', { peer: a.peer, accept: true }) }, 'Accept') : '',
                a.code && a.step !== 'confirmed' ? [h('button', { class: 'primary', 'data-action': 'codes-match', onclick: () => confirmAs(a, true) }, 'Codes match: pair'), h('button', { class: 'danger', 'data-action': 'codes-differ', onclick: () => confirmAs(a, false) }, 'Codes differ')] : '',
                h('button', { 'data-action': 'pair-cancel', onclick: () => act(`Cancel pairing with ${a.peer}`, 'pair-cancel', { peer: a.peer }) }, 'Cancel'),
              ),
            ),
          ),
          { id: 'pending' },
        ),
    h('h2', {}, 'Paired'),
    table(
      ['Peer', 'Profile', 'Reachable', 'Last seen', 'Paired', ''],
      p.paired.map((x) =>
        h(
          'tr',
          { 'data-peer': x.deviceId },
          h('td', {}, x.deviceId, h('div', { class: 'muted' }, `${x.label || ''} · ${x.fingerprint}`)),
          h('td', {}, x.profile),
          h('td', {}, h('span', { class: `pill ${x.reachable ? 'ok' : 'bad'}` }, x.reachable ? 'reachable' : 'unreachable')),
          h('td', {}, when(x.lastSeen)),
          h('td', {}, when(x.pairedAt)),
          h('td', {}, h('button', { class: 'danger', 'data-action': 'unpair', onclick: async () => (await confirmed(`Unpair ${x.deviceId}? Moves to and from it stop until you pair again.`)) && act(`Unpair ${x.deviceId}`, 'unpair', { peer: x.deviceId }) }, 'Unpair')),
        ),
      ),
      { id: 'paired' },
    ),
  );
  // Requests come and go on their own: look again while one is open.
  if (p.pending.length > 0 || pairing.size > 0) refreshTimer = setTimeout(() => page === 'peers' && void render(), 1500);
}

async function pageHandoffs(root) {
  const [a, p, m] = await Promise.all([call('apps'), call('peers', { check: false }), call('migrations')]);
  const running = a.instances.filter((i) => i.state === 'running').map((i) => i.instance);
  const inst = h('select', { id: 'move-instance', 'aria-label': 'instance' }, running.map((id) => h('option', { value: id }, id)));
  const peer = h('select', { id: 'move-peer', 'aria-label': 'peer' }, [...p.paired.map((x) => h('option', { value: x.deviceId }, `${x.deviceId} (${x.profile})`)), h('option', { value: 'best' }, 'best: fewest bytes to send')]);
  const limit = h('input', { id: 'move-limit', type: 'number', min: 10, max: 60000, placeholder: 'downtime limit, ms (default)', 'aria-label': 'downtime limit in ms' });
  const args = (to, dryRun) => ({ instance: inst.value, peer: to, options: { ...(limit.value ? { downtimeLimitMs: Number(limit.value) } : {}), ...(dryRun ? { dryRun: true } : {}) } });
  /** The peer a move goes to: the one chosen, or for "best" the top candidate now (ferry peers --for). */
  const destination = async () => {
    if (peer.value !== 'best') return { to: peer.value };
    const c = await call('peers-for', { instance: inst.value });
    const top = c.candidates.find((x) => x.fits);
    if (!top) throw new UiError('FLEET_NO_CANDIDATE', `no paired peer can take ${inst.value}: ${c.candidates.map((x) => `${x.peer}: ${x.why}`).join('; ')}`);
    return { to: top.peer, why: `best of ${c.candidates.filter((x) => x.fits).length} that fit; needs ${bytes(top.bytesNeeded)}` };
  };
  const plan = h('div', { id: 'plan' });
  /** The dry run: the plan shown, and returned (undefined when refused: the notice says why). */
  const dry = async () => {
    clearNotice();
    try {
      const d = await destination();
      const r = await call('migrate', args(d.to, true));
      plan.replaceChildren(card(`Plan: ${r.instance} to ${r.to}${d.why ? ` (${d.why})` : ''}`, dl(['Path', r.path], ['Bytes to send', bytes(r.bytesMissing)], ['Heap', bytes(r.heapBytes)], ['Expected downtime', `${millis(r.expectedDowntimeMs)} (limit ${millis(r.downtimeLimitMs)})`], ['Leases', r.leasePlan.map((l) => `${l.type}: ${l.action}`).join(', ') || 'none'])));
      return r;
    } catch (e) {
      notice(`Dry run failed: ${words(e)}`);
      return undefined;
    }
  };
  // A move starts with its dry run: the owner sees the plan and says yes to it.
  const go = async () => {
    const p = await dry();
    if (!p || !(await confirmed(`Move ${p.instance} to ${p.to}? About ${bytes(p.bytesMissing)} to send, expected downtime ${millis(p.expectedDowntimeMs)} (limit ${millis(p.downtimeLimitMs)}).`))) return;
    clearNotice();
    try {
      const started = await call('migrate', args(p.to, false));
      watching = { id: started.id, instance: started.instance, to: started.peer, events: [], live: true };
      drawWatch();
      let after = 0;
      while (!watching.report) {
        const w = await call('migrate-watch', { id: started.id, after });
        for (const e of w.events) {
          after = e.seq;
          watching.events.push(e);
        }
        if (w.done) watching.report = w.done;
        drawWatch();
      }
      watching.live = false;
      if (watching.report.outcome === 'aborted') notice(`The move was aborted: ${watching.report.message || ''} (${watching.report.code || 'MIGRATE_ABORTED'}); ${watching.instance} serves on here.`);
      else notice(`${watching.instance} moved to ${watching.to}: downtime ${millis(watching.report.downtimeMs)}.`, 'info');
      await render();
    } catch (e) {
      if (watching) watching.live = false;
      notice(`The move failed: ${words(e)}`);
    }
  };
  root.append(
    h('h1', {}, 'Handoffs'),
    running.length === 0 || p.paired.length === 0
      ? h('p', { class: 'muted' }, running.length === 0 ? 'No running instance to move.' : 'No paired peer: pair one on the Peers page first.')
      : h('div', { class: 'row' }, inst, h('span', {}, 'to'), peer, limit, h('button', { 'data-action': 'dry-run', onclick: dry }, 'Dry run'), h('button', { class: 'primary', 'data-action': 'migrate', onclick: go }, 'Move')),
    plan,
    h('div', { id: 'watch' }),
    h('div', { id: 'active' }),
    h('h2', {}, 'History'),
    table(
      ['Started', 'Instance', 'To', 'Outcome', 'Downtime', 'Bytes sent', 'Rounds', 'Total'],
      m.recent.map((r) => h('tr', { 'data-move': r.id }, h('td', {}, when(r.startedAt)), h('td', {}, r.instance), h('td', {}, r.to), h('td', {}, h('span', { class: `pill ${r.outcome === 'moved' ? 'ok' : r.outcome === 'aborted' ? 'bad' : ''}` }, r.code || r.outcome)), h('td', {}, millis(r.downtimeMs)), h('td', {}, bytes(r.bytesSent)), h('td', {}, r.rounds), h('td', {}, dur(r.totalMs)))),
      { id: 'history' },
    ),
  );
}

/** The move this page follows: phase, bytes sent of total, round, dirty rate, expected downtime as a chart. */
function drawWatch() {
  const box = $('watch');
  if (!box || !watching) return;
  const last = watching.events[watching.events.length - 1];
  const r = watching.report;
  const phase = r ? (r.outcome === 'moved' ? 'done' : 'aborted') : last ? last.phase : 'starting';
  const total = Math.max(last?.bytesMissing ?? 0, last?.bytesSent ?? 0, 1);
  const sent = r ? r.bytesSent : (last?.bytesSent ?? 0);
  box.replaceChildren(
    card(
      `${r ? (r.outcome === 'moved' ? 'Moved' : 'Tried to move') : 'Moving'} ${watching.instance} to ${watching.to}`,
      dl(
        ['Phase', h('span', { id: 'move-phase', 'data-phase': phase, class: `pill ${phase === 'done' ? 'ok' : phase === 'aborted' ? 'bad' : ''}` }, phase)],
        ['Sent', h('div', {}, bar((sent / Math.max(total, sent)) * 100), `${bytes(sent)} of ${bytes(Math.max(total, sent))}`)],
        ['Round', String(r ? r.rounds : (last?.round ?? 0))],
        ['Dirty rate', `${bytes(last?.dirtyRateBps ?? 0)}/s`],
        ['Link', `${bytes(last?.bandwidthBps ?? 0)}/s`],
        ['Expected downtime', h('div', {}, sparkline(watching.events.map((e) => e.expectedDowntimeMs), 0, 'expected downtime, ms'), `${last?.expectedDowntimeMs ?? '–'} ms`)],
        ...(r ? [['Downtime', `${millis(r.downtimeMs)} (limit ${millis(r.downtimeLimitMs)})`], ['Total', dur(r.totalMs)]] : []),
      ),
    ),
  );
}

/** Moves under way that this page did not start (from the CLI, another page). */
function drawActive() {
  const box = $('active');
  if (!box) return;
  const others = moves.active.filter((m) => m.id !== watching?.id);
  box.replaceChildren(...(others.length ? [h('h2', {}, 'Under way'), table(['Instance', 'To', 'Phase', 'Round', 'Sent', 'Expected downtime'], others.map((m) => h('tr', {}, h('td', {}, m.instance), h('td', {}, m.to), h('td', {}, m.phase), h('td', {}, m.round), h('td', {}, bytes(m.bytesSent)), h('td', {}, `${m.expectedDowntimeMs} ms`))))] : []));
}

void boot();
