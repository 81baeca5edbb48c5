// The Surge operations console. Reads the admin API once at start (and after each
// reconnect), then follows the tenant over /ws: completions update the jobs as they finish,
// queue figures arrive when they change. No polling loop: the only timers are the
// reconnect's backoff and a short debounce before re-reading the figures after an event.
'use strict';

const SESSION = 'surge.console';
const RECENT_JOBS = 50;
const DEAD_PER_FUNCTION = 50;
const MAX_ROWS = 200;

const $ = (selector) => document.querySelector(selector);

let session = null;
let functions = [];
let socket = null;
let reconnectDelay = 1000;
let refreshTimer = null;
let refreshing = false;
let lastRefresh = 0;
let refreshDead = false;
/// Completions that arrive while the tables load are kept and applied again over what the
/// load read, so a job that finished meanwhile never shows an older state.
let arrivedDuringLoad = null;

// ---- session ---------------------------------------------------------------------------

function loadSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION) ?? 'null');
    if (saved?.token && (!saved.expires_at || saved.expires_at > Date.now())) return saved;
  } catch { /* a damaged entry is no session */ }
  sessionStorage.removeItem(SESSION);
  return null;
}

function logout(message) {
  sessionStorage.removeItem(SESSION);
  session = null;
  if (socket) {
    socket.onclose = null;
    socket.close(1000, 'logged out');
    socket = null;
  }
  showLogin(message ?? '');
}

// "Log out" ends the console's own login token everywhere (DELETE /token); a pasted API key
// is only forgotten by this tab: it belongs to whoever made it.
async function logOutAndRevoke() {
  const ended = session;
  if (ended?.token && ended.account !== 'API key') {
    try {
      await fetch('/token', { method: 'DELETE', headers: { Authorization: `Bearer ${ended.token}` } });
    } catch { /* the tab forgets it all the same */ }
  }
  logout('');
}

function showLogin(message) {
  $('#console').hidden = true;
  $('#logout').hidden = true;
  $('#who').textContent = '';
  $('#login').hidden = false;
  $('#login-error').textContent = message;
  $('#login-title').focus();
}

// ---- the API ---------------------------------------------------------------------------

class Problem extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(method, path, body, headers = {}) {
  const init = { method, headers: { Authorization: `Bearer ${session.token}`, ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = body;
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (response.status === 401) {
    logout('Your session has ended; log in again.');
    throw new Problem(401, json?.detail ?? 'not authenticated');
  }
  if (!response.ok) {
    throw new Problem(response.status, json?.detail ?? json?.title ?? `${response.status} ${response.statusText}`);
  }
  return json;
}

// ---- rendering -------------------------------------------------------------------------

function cell(text, className) {
  const td = document.createElement('td');
  if (className) td.className = className;
  td.textContent = text ?? '';
  return td;
}

function codeCell(text) {
  const td = document.createElement('td');
  const code = document.createElement('code');
  code.textContent = text;
  td.append(code);
  return td;
}

function time(value) {
  if (!value) return '';
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toISOString().replace(/\.\d+Z$/, 'Z');
}

/// When a job was created, from its id: a UUIDv7 starts with its creation time in
/// milliseconds (48 bits), so a row that arrives live still has one.
function createdFromId(id) {
  const hex = String(id).replace(/-/g, '').slice(0, 12);
  if (!/^[0-9a-f]{12}$/i.test(hex) || String(id)[14] !== '7') return null;
  return new Date(parseInt(hex, 16)).toISOString();
}

function ms(value) {
  if (value === null || value === undefined) return '–';
  return value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(2)} s`;
}

function figure(value) {
  return value === null || value === undefined ? '–' : String(value);
}

function reason(error) {
  if (!error) return '';
  return error.detail ?? error.title ?? JSON.stringify(error);
}

function renderFunctions(overview) {
  functions = overview.functions.map((f) => f.function);
  $('#window').textContent = `${Math.round(overview.window_s / 60)} minutes`;
  const body = $('#functions tbody');
  body.replaceChildren(...overview.functions.map((f) => {
    const row = document.createElement('tr');
    row.dataset.function = f.function;
    const name = document.createElement('th');
    name.scope = 'row';
    name.textContent = f.function;
    row.append(
      name,
      cell(figure(f.ready), 'num ready'),
      cell(figure(f.unacked), 'num unacked'),
      cell(figure(f.replicas), 'num replicas'),
      cell(String(f.succeeded), 'num succeeded'),
      cell(String(f.failed), 'num failed'),
      cell(ms(f.latency_p50_ms), 'num p50'),
      cell(ms(f.latency_p95_ms), 'num p95'),
      cell(String(f.dead), 'num dead'),
    );
    return row;
  }));
  const select = $('#submit-function');
  const names = [...select.options].map((o) => o.value);
  if (names.join() !== functions.join()) {
    const chosen = select.value;
    select.replaceChildren(...functions.map((name) => new Option(name, name)));
    if (functions.includes(chosen)) select.value = chosen;
  }
}

function renderQueues(message) {
  for (const q of message.functions) {
    const row = document.querySelector(`#functions tr[data-function="${CSS.escape(q.function)}"]`);
    if (!row) continue;
    row.querySelector('.ready').textContent = figure(q.ready);
    row.querySelector('.unacked').textContent = figure(q.unacked);
    row.querySelector('.replicas').textContent = figure(q.consumers);
  }
}

function jobRow(job) {
  const row = document.createElement('tr');
  row.dataset.job = job.id;
  row.dataset.state = job.state;
  if (job.created_at) row.dataset.created = job.created_at;
  row.append(
    codeCell(job.id),
    cell(job.function),
    cell(job.state, `state state-${job.state}`),
    cell(job.attempts === undefined || job.attempts === null ? '' : String(job.attempts), 'num'),
    cell(time(job.created_at)),
    cell(time(job.finished_at)),
    cell(job.state === 'succeeded' ? '' : reason(job.error), 'error'),
  );
  return row;
}

const FINISHED = new Set(['succeeded', 'failed', 'dead']);

function upsertJob(job, fresh) {
  const body = $('#jobs tbody');
  const old = body.querySelector(`tr[data-job="${CSS.escape(job.id)}"]`);
  // A fast job's completion can arrive before the answer that accepted it: a finished row
  // is never put back to queued, except a dead one being replayed.
  const replayingDead = job.again && old?.dataset.state === 'dead';
  if (old && !FINISHED.has(job.state) && FINISHED.has(old.dataset.state) && !replayingDead) return;
  const row = jobRow(job);
  if (fresh) {
    row.classList.add('fresh');
    setTimeout(() => row.classList.remove('fresh'), 3000);
  }
  if (old) {
    old.replaceWith(row);
  } else {
    body.prepend(row);
    while (body.rows.length > MAX_ROWS) body.lastElementChild.remove();
  }
}

function renderDead(jobs, cut) {
  const body = $('#dead tbody');
  // A rebuilt table must not drop the keyboard user's focus on the floor.
  const hadFocus = body.contains(document.activeElement);
  body.replaceChildren(...jobs.map(deadRow));
  $('#dead-empty').textContent = 'No dead jobs.';
  $('#dead-cut').hidden = !cut;
  showDeadEmpty();
  if (hadFocus) $('#dead-title').focus();
}

function showDeadEmpty() {
  const none = $('#dead tbody').rows.length === 0;
  $('#dead').hidden = none;
  $('#dead-empty').hidden = !none;
}

function deadRow(job) {
  const row = document.createElement('tr');
  row.dataset.job = job.id;
  row.dataset.function = job.function;
  const action = document.createElement('td');
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'secondary replay';
  button.textContent = 'Replay';
  button.setAttribute('aria-label', `Replay job ${job.id} of ${job.function}`);
  button.addEventListener('click', () => replay(job, button));
  action.append(button);
  row.append(
    codeCell(job.id),
    cell(job.function),
    cell(time(job.died_at)),
    cell(String(job.attempts), 'num'),
    cell(reason(job.error), 'error'),
    action,
  );
  return row;
}

// ---- loading ---------------------------------------------------------------------------

async function loadDead() {
  const pages = await Promise.all(functions.map((f) =>
    api('GET', `/admin/dead/${encodeURIComponent(f)}?limit=${DEAD_PER_FUNCTION}`)));
  const jobs = pages.flatMap((p) => p.jobs);
  jobs.sort((a, b) => Date.parse(b.died_at) - Date.parse(a.died_at));
  renderDead(jobs, pages.some((p) => p.next_before));
}

async function loadFunctions() {
  renderFunctions(await api('GET', '/admin/functions'));
}

/// Everything, read once the live feed is subscribed (so nothing finishes unseen between
/// the read and the subscription).
async function loadAll() {
  arrivedDuringLoad = [];
  try {
    await loadFunctions();
    const [recent] = await Promise.all([api('GET', `/admin/jobs?limit=${RECENT_JOBS}`), loadDead()]);
    $('#jobs tbody').replaceChildren(...recent.jobs.map(jobRow));
  } finally {
    const arrived = arrivedDuringLoad;
    arrivedDuringLoad = null;
    arrived.forEach(completion);
  }
}

/// After an event the counts, latencies and dead jobs change: read them again, at most once
/// every 2 s and one read at a time, the last event always followed by a read.
function refreshSoon(withDead) {
  refreshDead ||= withDead;
  if (refreshTimer || refreshing) return;
  const wait = Math.max(300, lastRefresh + 2000 - Date.now());
  refreshTimer = setTimeout(async () => {
    const dead = refreshDead;
    refreshTimer = null;
    refreshDead = false;
    refreshing = true;
    try {
      await loadFunctions();
      if (dead) await loadDead();
      if ($('#live').classList.contains('down') && socket?.readyState === WebSocket.OPEN) {
        live('Live: updates arrive as jobs finish.', 'up');
      }
    } catch (e) {
      if (e.status !== 401) live(`Could not refresh: ${e.message}`, 'down');
    } finally {
      refreshing = false;
      lastRefresh = Date.now();
      if (refreshDead) refreshSoon(false);
    }
  }, wait);
}

// ---- the live feed ---------------------------------------------------------------------

function live(text, state) {
  const status = $('#live');
  status.textContent = text;
  status.className = state ?? '';
}

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  // Browsers cannot set headers on a websocket: the key goes as a subprotocol, never in the URL.
  const ws = new WebSocket(`${scheme}://${location.host}/ws`, ['surge.v1', `bearer.${session.token}`]);
  socket = ws;
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: 'subscribe', functions, scope: 'tenant' }));
  };
  ws.onmessage = (message) => {
    let data;
    try { data = JSON.parse(message.data); } catch { return; }
    if (data.type === 'subscribed') {
      reconnectDelay = 1000;
      live('Loading…');
      loadAll().then(
        () => live('Live: updates arrive as jobs finish.', 'up'),
        (e) => { if (e.status !== 401) live(`Could not load: ${e.message}`, 'down'); },
      );
    } else if (data.type === 'queues') {
      renderQueues(data);
    } else if (data.type === 'error') {
      // The subscription did not take (the broker was away): start again, with backoff.
      ws.refused = data.detail;
      ws.close(1000, 'subscribing again');
    } else if (data.specversion) {
      completion(data);
    }
  };
  ws.onclose = (event) => {
    if (socket !== ws || !session) return;
    if (event.code === 4003) {
      return logout('Your login is no longer valid for the console (expired, revoked, or no longer an admin); log in again.');
    }
    const seconds = Math.round(reconnectDelay / 1000);
    const why = ws.refused ? `the live feed refused: ${ws.refused}` : `disconnected (${event.code})`;
    live(`Not live: ${why}; trying again in ${seconds} s…`, 'down');
    // Once subscribed again, everything is read again: what happened while away.
    setTimeout(() => {
      if (session && socket === ws) connect();
    }, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, 30000);
  };
}

/// A completion CloudEvent: the job's final state, attempts and result or problem.
function completion(event) {
  arrivedDuringLoad?.push(event);
  const match = /^dev\.surge\.fn\.(.+)\.(completed|failed)$/.exec(event.type ?? '');
  if (!match) return;
  const state = event.surgestate ?? (match[2] === 'completed' ? 'succeeded' : 'failed');
  const id = event.subject ?? event.id;
  const old = document.querySelector(`#jobs tr[data-job="${CSS.escape(id)}"]`);
  upsertJob({
    id,
    function: match[1],
    state,
    attempts: event.surgeattempts === undefined ? null : Number(event.surgeattempts),
    created_at: old?.dataset.created || createdFromId(id),
    finished_at: event.time,
    error: state === 'succeeded' ? null : event.data,
  }, true);
  const dead = document.querySelector(`#dead tr[data-job="${CSS.escape(id)}"]`);
  if (dead && state === 'succeeded') {
    dead.remove();
    showDeadEmpty();
  }
  refreshSoon(state === 'dead' || Boolean(dead));
}

// ---- actions ---------------------------------------------------------------------------

async function submit(event) {
  event.preventDefault();
  const result = $('#submit-result');
  const fn = $('#submit-function').value;
  const input = $('#submit-input').value.trim() || 'null';
  result.textContent = 'Submitting…';
  result.className = '';
  const field = $('#submit-input');
  try {
    JSON.parse(input);
    field.removeAttribute('aria-invalid');
  } catch (e) {
    result.textContent = `The input is not JSON: ${e.message}`;
    result.className = 'error';
    field.setAttribute('aria-invalid', 'true');
    field.focus();
    return;
  }
  try {
    const job = await api('POST', `/jobs/${encodeURIComponent(fn)}`, input, { Prefer: 'respond-async' });
    upsertJob(job, true);
    result.textContent = `Job ${job.id} accepted (${job.state}).`;
    result.className = '';
  } catch (e) {
    result.textContent = `Not accepted: ${e.message}`;
    result.className = 'error';
  }
}

async function replay(job, button) {
  const result = $('#dead-result');
  button.disabled = true;
  button.textContent = 'Replaying…';
  try {
    await api('POST', `/admin/dead/${encodeURIComponent(job.function)}/${encodeURIComponent(job.id)}/replay`);
    upsertJob({ ...job, state: 'queued', finished_at: null, error: null, again: true }, true);
    button.textContent = 'Queued';
    button.setAttribute('aria-label', `Job ${job.id} of ${job.function} queued again`);
    result.textContent = `Job ${job.id} queued again.`;
    result.className = '';
    result.focus();
  } catch (e) {
    button.disabled = false;
    button.textContent = 'Replay';
    result.textContent = `Job ${job.id} was not replayed: ${e.message}`;
    result.className = 'error';
    button.focus();
  }
}

// ---- start -----------------------------------------------------------------------------

async function start() {
  session = loadSession();
  if (!session) return showLogin('');
  let me;
  try {
    me = await api('GET', '/me');
  } catch (e) {
    showLogin(e.status === 401
      ? 'That key or login was not accepted (mistyped, expired or revoked).'
      : `The gateway did not answer: ${e.message}`);
    return;
  }
  if (!me.admin) {
    return logout(`This login (tenant ${me.tenant}) is not an admin: the console is for the tenant's admin group.`);
  }
  $('#login').hidden = true;
  $('#console').hidden = false;
  $('#logout').hidden = false;
  $('#who').textContent = `${session.account || 'API key'} · tenant ${me.tenant}`;
  $('#functions-title').focus();
  try {
    await loadFunctions(); // the functions to follow
  } catch (e) {
    if (e.status !== 401) live(`Could not load: ${e.message}`, 'down');
    return;
  }
  connect();
}

document.addEventListener('DOMContentLoaded', () => {
  $('#key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = $('#key').value.trim();
    $('#key').value = '';
    sessionStorage.setItem(SESSION, JSON.stringify({ token, account: 'API key', expires_at: null }));
    start();
  });
  $('#logout').addEventListener('click', logOutAndRevoke);
  $('#submit-form').addEventListener('submit', submit);
  start();
});
