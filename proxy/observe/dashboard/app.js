// berth's dashboard: polls Traefik's API beside this page (../api/) every 2 s and redraws.
// Every string from the configuration reaches the page as text (textContent), never as HTML.
'use strict';

const POLL_MS = 2000;
const API = new URL('../api/', window.location.href);

// Request counters of the previous poll, per router: rates come from the difference.
let previous = { at: 0, counts: new Map() };
let filterText = '';
let lastData = null;

// el('td', {className: 'num', dataset: {label: 'Rate'}}, 'text', childNode, ...)
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else node[key] = value;
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function badge(text, kind) {
  return el('span', { className: 'badge ' + (kind || '') }, text);
}

// A table cell with one wrapper inside (phones lay it out beside its label); `content` null: "–".
function cell(label, content, className) {
  const blank = content === null || content === undefined || (Array.isArray(content) && content.length === 0);
  return el('td', { className: (className || '') + (blank ? ' blank' : ''), dataset: { label } },
    el('div', { className: 'cell' }, blank ? el('span', { className: 'muted' }, '–') : content));
}

function nameCell(name, label, errors) {
  const at = name.indexOf('@');
  return cell(label, [
    el('span', { className: 'name' }, at < 0 ? name : name.slice(0, at)),
    at >= 0 ? el('span', { className: 'provider' }, '@' + name.slice(at + 1)) : null,
    errorList(errors),
  ]);
}

function errorList(errors) {
  if (!errors || errors.length === 0) return null;
  return el('ul', { className: 'errors' }, errors.map((e) => el('li', {}, e)));
}

function table(headings, rows) {
  return el('div', { className: 'scroll' }, el('table', {},
    el('thead', {}, el('tr', {}, headings.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows)));
}

// All pages of a list endpoint (Traefik pages by X-Next-Page; 1 means the last).
async function fetchAll(path) {
  const items = [];
  for (let page = 1; ;) {
    const url = new URL(path, API);
    url.searchParams.set('per_page', '1000');
    url.searchParams.set('page', String(page));
    const res = await fetch(url, { cache: 'no-store' });
    if (!res.ok) throw new Error(path + ': HTTP ' + res.status);
    items.push(...(await res.json()));
    const next = Number(res.headers.get('X-Next-Page') || '1');
    if (next <= page) return items;
    page = next;
  }
}

async function fetchJson(path) {
  const res = await fetch(new URL(path, API), { cache: 'no-store' });
  if (!res.ok) throw new Error(path + ': HTTP ' + res.status);
  return res.json();
}

function formatRate(perSecond) {
  if (perSecond === null) return '–';
  if (perSecond >= 100) return perSecond.toFixed(0) + '/s';
  if (perSecond >= 10) return perSecond.toFixed(1) + '/s';
  return perSecond.toFixed(2) + '/s';
}

// Requests and 5xx per second since the last poll, from the routers' counters.
function computeRates(routers, now) {
  const rates = new Map();
  const seconds = previous.at ? (now - previous.at) / 1000 : 0;
  const counts = new Map();
  for (const r of routers) {
    if (typeof r.requests !== 'number') continue;
    counts.set(r.name, { requests: r.requests, errors: r.serverErrors || 0 });
    const before = previous.counts.get(r.name);
    if (before && seconds > 0) {
      rates.set(r.name, {
        requests: Math.max(0, r.requests - before.requests) / seconds,
        errors: Math.max(0, (r.serverErrors || 0) - before.errors) / seconds,
      });
    }
  }
  previous = { at: now, counts };
  return rates;
}

function renderSummary(overview, services) {
  const http = overview.http || {};
  let down = 0;
  let servers = 0;
  for (const s of services) {
    for (const state of Object.values(s.serverStatus || {})) {
      servers++;
      if (state !== 'UP') down++;
    }
  }
  const card = (label, value, details) =>
    el('div', { className: 'card' },
      el('div', { className: 'label' }, label),
      el('div', { className: 'value' }, String(value)),
      el('div', { className: 'detail' }, details));
  const counts = (section) => {
    const parts = [];
    if (section && section.warnings) parts.push(el('span', { className: 'badge warning' }, section.warnings + ' warning'));
    if (section && section.errors) parts.push(el('span', { className: 'badge disabled' }, section.errors + ' disabled'));
    if (parts.length === 0) parts.push(el('span', { className: 'badge enabled' }, 'all enabled'));
    return parts;
  };
  const problems = (overview.problems || []).length;
  document.getElementById('summary').replaceChildren(
    card('Routers', (http.routers || {}).total || 0, counts(http.routers)),
    card('Services', (http.services || {}).total || 0, counts(http.services)),
    card('Servers', servers, down ? el('span', { className: 'badge down' }, down + ' down')
      : el('span', { className: 'badge up' }, servers ? 'all up' : 'none')),
    card('Middlewares', (http.middlewares || {}).total || 0, counts(http.middlewares)),
    card('Problems', problems, problems ? el('span', { className: 'badge disabled' }, 'see below')
      : el('span', { className: 'badge enabled' }, 'none')),
  );
}

function renderProblems(overview) {
  const list = overview.problems || [];
  const section = document.getElementById('problems');
  section.hidden = list.length === 0;
  document.getElementById('problem-list').replaceChildren(...list.map((p) =>
    el('li', {}, p.where ? el('span', { className: 'where' }, p.where + ': ') : null, p.message)));
}

function renderRouters(routers, rates) {
  const needle = filterText.toLowerCase();
  const shown = routers.filter((r) => !needle ||
    [r.name, r.rule, r.service].some((v) => (v || '').toLowerCase().includes(needle)));
  const rows = shown.map((r) => {
    const rate = rates.get(r.name);
    const tls = r.tls ? badge('TLS' + (r.tls.options && r.tls.options !== 'default' ? ' · ' + r.tls.options : ''), 'tls') : null;
    const errorShare = rate && rate.requests > 0 ? rate.errors / rate.requests : 0;
    const eps = r.using && r.using.length ? r.using : r.entryPoints || [];
    return el('tr', { dataset: { router: r.name } },
      cell('Status', badge(r.status || 'enabled', r.status)),
      nameCell(r.name, 'Router', r.error),
      cell('Rule', r.rule ? el('code', { className: 'rule' }, r.rule) : null, 'rule-cell'),
      cell('Entry points', eps.length || tls ? el('div', { className: 'list' }, eps.map((e) => badge(e)), tls) : null),
      cell('Middlewares', (r.middlewares || []).length ? el('div', { className: 'list' }, r.middlewares.map((m) => badge(m))) : null),
      cell('Service', r.service || null),
      cell('Req/s', rate ? formatRate(rate.requests) : null, 'num'),
      cell('5xx/s', rate ? formatRate(rate.errors) + (rate.requests > 0 ? ' (' + (100 * errorShare).toFixed(1) + '%)' : '') : null,
        'num' + (errorShare > 0.05 ? ' rate-bad' : '')),
    );
  });
  const userRouters = routers.filter((r) => r.provider !== 'internal');
  document.getElementById('empty').hidden = userRouters.length !== 0;
  document.getElementById('router-list').replaceChildren(rows.length
    ? table(['Status', 'Router', 'Rule', 'Entry points', 'Middlewares', 'Service', 'Req/s', '5xx/s'], rows)
    : el('p', { className: 'muted' }, needle ? 'No router matches the filter.' : 'No routers.'));
}

function describeService(s) {
  if (s.loadBalancer) return null;
  if (s.weighted) return (s.weighted.services || []).map((c) => c.name + ' (weight ' + c.weight + ')');
  if (s.failover) return ['main ' + s.failover.service, 'fallback ' + s.failover.fallback];
  if (s.mirroring) return ['main ' + s.mirroring.service].concat(
    (s.mirroring.mirrors || []).map((m) => m.name + ' (' + m.percent + '%)'));
  return null;
}

function renderServices(services) {
  const rows = services.map((s) => {
    let servers;
    const status = s.serverStatus || {};
    if (s.loadBalancer) {
      const urls = (s.loadBalancer.servers || []).map((srv) => srv.url);
      servers = urls.map((url) => el('div', { className: 'server' },
        status[url] ? badge(status[url], status[url] === 'UP' ? 'up' : 'down') : badge('n/a'), el('span', {}, url)));
    } else {
      const children = describeService(s);
      servers = children ? children.map((c) => el('div', {}, c)) : null;
    }
    return el('tr', { dataset: { service: s.name } },
      cell('Status', badge(s.status || 'enabled', s.status)),
      nameCell(s.name, 'Service', s.error),
      cell('Type', s.type || (s.provider === 'internal' ? 'internal' : null)),
      cell('Servers', servers),
      cell('Used by', (s.usedBy || []).length ? el('div', { className: 'list' }, s.usedBy.map((u) => badge(u))) : null),
    );
  });
  document.getElementById('service-list').replaceChildren(rows.length
    ? table(['Status', 'Service', 'Type', 'Servers', 'Used by'], rows) : el('p', { className: 'muted' }, 'No services.'));
}

function renderMiddlewares(middlewares) {
  const rows = middlewares.map((m) => {
    return el('tr', { dataset: { middleware: m.name } },
      cell('Status', badge(m.status || 'enabled', m.status)),
      nameCell(m.name, 'Middleware', m.error),
      cell('Type', m.type || null),
      cell('Used by', (m.usedBy || []).length ? el('div', { className: 'list' }, m.usedBy.map((u) => badge(u))) : null),
    );
  });
  document.getElementById('middleware-list').replaceChildren(rows.length
    ? table(['Status', 'Middleware', 'Type', 'Used by'], rows) : el('p', { className: 'muted' }, 'No middlewares.'));
}

function renderEntryPoints(entryPoints) {
  const rows = entryPoints.map((e) => {
    const http = e.http || {};
    const notes = [];
    if (http.redirections && http.redirections.entryPoint) notes.push('redirects to ' + http.redirections.entryPoint.to);
    if (http.tls) notes.push('TLS');
    if ((http.middlewares || []).length) notes.push('middlewares: ' + http.middlewares.join(', '));
    return el('tr', { dataset: { entrypoint: e.name } },
      cell('Name', el('span', { className: 'name' }, e.name)),
      cell('Address', el('code', {}, e.address)),
      cell('Notes', notes.length ? notes.join(' · ') : null),
    );
  });
  document.getElementById('entrypoint-list').replaceChildren(table(['Name', 'Address', 'Notes'], rows));
}

function setLive(ok, text) {
  const live = document.getElementById('live');
  live.classList.toggle('ok', ok);
  live.classList.toggle('down', !ok);
  document.getElementById('live-text').textContent = text;
}

function render() {
  if (!lastData) return;
  const d = lastData;
  renderSummary(d.overview, d.services);
  renderProblems(d.overview);
  renderRouters(d.routers, d.rates);
  renderServices(d.services);
  renderMiddlewares(d.middlewares);
  renderEntryPoints(d.entryPoints);
}

async function poll() {
  try {
    const [overview, routers, services, middlewares, entryPoints, version] = await Promise.all([
      fetchJson('overview'), fetchAll('http/routers'), fetchAll('http/services'), fetchAll('http/middlewares'),
      fetchAll('entrypoints'), fetchJson('version')]);
    const rates = computeRates(routers, Date.now());
    lastData = { overview, routers, services, middlewares, entryPoints, rates };
    render();
    document.getElementById('version').textContent =
      'berth ' + version.Version + ' · configuration generation ' + overview.generation;
    setLive(true, 'live · ' + new Date().toLocaleTimeString());
  } catch (e) {
    // berth restarting or unreachable: keep the last picture and say so; the next poll retries.
    setLive(false, 'disconnected, retrying');
  } finally {
    window.setTimeout(poll, POLL_MS);
  }
}

document.getElementById('filter').addEventListener('input', (event) => {
  filterText = event.target.value;
  if (lastData) renderRouters(lastData.routers, lastData.rates);
});
poll();
