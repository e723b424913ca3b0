// The Endpoints view: list the API steps, fill a request, send it, show the response; when the
// response carries `x-surge-stream-item`, follow that item live over the stream connection.

import { clock, flash, h, pretty, prettyText, replace } from './dom.js';
import { errorOf } from './stream.js';
import { skeleton } from './schema.js';
import { APP_PREFIX, api, appPath } from './urls.js';

const STREAM_ITEM_HEADER = 'x-surge-stream-item';
const BODYLESS = new Set(['GET', 'HEAD']);
const PARAM = /:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

export class EndpointsView {
  constructor(root, connection) {
    this.root = root;
    this.connection = connection;
    this.endpoints = [];
    this.selected = null;
    this.stopLive = null;
    this.list = h('ul', { class: 'list', 'data-testid': 'endpoint-list' });
    this.detail = h('div', { class: 'detail', 'data-testid': 'endpoint-detail' });
    replace(root, h('aside', { class: 'sidebar' }, h('h2', {}, 'API steps'), this.list), this.detail);
  }

  async load() {
    const res = await fetch(api('endpoints'), { cache: 'no-store' });
    this.endpoints = (await res.json()).endpoints;
    replace(this.list, this.endpoints.length ? this.endpoints.map((ep) => this.#item(ep)) :
      h('li', { class: 'muted' }, 'No API steps in this project.'));
    const again = this.selected && this.endpoints.find((ep) => key(ep) === key(this.selected));
    const first = again ?? this.endpoints[0];
    if (first) this.select(first);
  }

  show() {}
  hide() {}

  #item(ep) {
    return h('li', {},
      h('button', {
        type: 'button', class: 'endpoint', 'data-testid': 'endpoint', 'data-key': key(ep),
        onclick: () => this.select(ep),
      }, methodBadge(ep.method), h('code', {}, ep.path)));
  }

  select(ep) {
    this.selected = ep;
    this.#follow(null);
    for (const btn of this.list.querySelectorAll('button.endpoint')) {
      btn.classList.toggle('selected', btn.dataset.key === key(ep));
    }
    replace(this.detail, renderForm(ep, (request) => this.#send(ep, request)));
  }

  async #send(ep, request) {
    const out = this.detail.querySelector('[data-testid="response"]');
    this.#follow(null);
    replace(out, h('p', { class: 'muted' }, `Sending ${ep.method} ${request.url}…`));
    const started = performance.now();
    let res;
    let text;
    try {
      res = await fetch(request.url, request.init);
      text = await res.text();
    } catch (error) {
      replace(out, h('p', { class: 'error', 'data-testid': 'response-error' }, String(error)));
      return;
    }
    const ms = Math.round(performance.now() - started);
    const body = h('pre', { class: 'json', 'data-testid': 'response-body' }, prettyText(text));
    const live = h('div', { class: 'live', 'data-testid': 'live-item', hidden: true });
    replace(out,
      h('div', { class: 'status-line' },
        h('span', { class: `code c${String(res.status)[0]}`, 'data-testid': 'response-status' }, res.status),
        h('span', {}, res.statusText), h('span', { class: 'muted' }, `${ms} ms · ${request.url}`)),
      live,
      h('h3', {}, 'Body'), body,
      h('details', { class: 'headers' }, h('summary', {}, 'Response headers'),
        h('table', { 'data-testid': 'response-headers' },
          [...res.headers].map(([name, value]) => h('tr', {}, h('th', {}, name), h('td', {}, value))))));
    const marker = res.headers.get(STREAM_ITEM_HEADER);
    if (marker) {
      try {
        this.#follow({ target: JSON.parse(marker), body, live });
      } catch {
        console.warn('workbench: bad x-surge-stream-item header', marker);
      }
    }
  }

  // Subscribe to the item a response returned and keep its body view up to date.
  #follow(spec) {
    if (this.stopLive) this.stopLive();
    this.stopLive = null;
    if (!spec) return;
    const { target, body, live } = spec;
    let updates = 0;
    // Frames of this item that come before its sync are in the sync already: on one socket the
    // server writes the sync after everything it sent before the join (the step's own change
    // may reach the page after its HTTP response, for the group's subscription).
    let synced = false;
    const name = `${target.streamName} / ${target.groupId} / ${target.id}`;
    const state = h('span', { class: 'state', 'data-testid': 'live-state' }, 'subscribing…');
    const count = h('span', { class: 'muted', 'data-testid': 'live-count' }, '');
    replace(live, h('span', { class: 'dot' }), h('strong', {}, 'Live stream item '),
      h('code', {}, name), ' ', state, ' ', count);
    live.hidden = false;
    const show = (item, label) => {
      body.textContent = pretty(item);
      state.textContent = label;
      flash(body);
    };
    this.stopLive = this.connection.subscribe(target, (frame) => {
      const event = frame.event ?? frame;
      const error = errorOf(frame);
      if (error) {
        state.textContent = `refused: ${error.message}`;
        live.dataset.state = 'error';
      } else if (event.type === 'disconnected') {
        synced = false; // a fresh sync follows the reconnect
        state.textContent = 'reconnecting…';
      } else if (event.type === 'sync') {
        synced = true;
        live.dataset.state = event.data ? 'live' : 'missing';
        if (event.data) show(event.data, 'live');
        else state.textContent = 'no such item (deleted?)';
      } else if (!synced) {
        // older than the sync to come
      } else if (event.type === 'create' || event.type === 'update') {
        updates += 1;
        live.dataset.state = 'live';
        show(event.data, `${event.type}d at ${clock()}`);
        count.textContent = `${updates} change${updates === 1 ? '' : 's'} since the response`;
      } else if (event.type === 'delete') {
        updates += 1;
        live.dataset.state = 'deleted';
        show(event.data, `deleted at ${clock()}`);
      } else if (event.type === 'event') {
        state.textContent = `event "${event.event?.type}" at ${clock()}`;
      }
    });
  }
}

function key(ep) {
  return `${ep.method} ${ep.path}`;
}

function methodBadge(method) {
  return h('span', { class: `method m-${method.toLowerCase()}` }, method);
}

// Key/value rows (query parameters, headers) with an "add" button.
function pairs(testid, initial) {
  const rows = h('div', { class: 'pairs', 'data-testid': testid });
  const add = (k = '', v = '') => {
    const row = h('div', { class: 'pair' },
      h('input', { class: 'k', placeholder: 'name', value: k, 'aria-label': 'name' }),
      h('input', { class: 'v', placeholder: 'value', value: v, 'aria-label': 'value' }),
      h('button', { type: 'button', class: 'icon', title: 'remove', onclick: () => row.remove() }, '×'));
    rows.append(row);
  };
  for (const [k, v] of initial) add(k, v);
  const wrap = h('div', {}, rows,
    h('button', { type: 'button', class: 'small', 'data-testid': `${testid}-add`, onclick: () => add() }, '+ add'));
  wrap.values = () => [...rows.querySelectorAll('.pair')]
    .map((row) => [row.querySelector('.k').value.trim(), row.querySelector('.v').value])
    .filter(([k]) => k);
  return wrap;
}

function renderForm(ep, send) {
  const params = ep.pathParams.map((name) => [name,
    h('input', { 'data-testid': `path-param-${name}`, placeholder: name, 'aria-label': name })]);
  const query = pairs('query-rows', ep.queryParams.map((q) => [q.name, '']));
  const hasBody = !BODYLESS.has(ep.method);
  const headers = pairs('header-rows', hasBody ? [['content-type', 'application/json']] : []);
  const initial = ep.bodySchema ? pretty(skeleton(ep.bodySchema)) : '';
  const bodyHint = h('span', { class: 'hint' });
  const body = hasBody ? h('textarea', {
    'data-testid': 'request-body', rows: 8, spellcheck: 'false', value: initial,
    oninput: () => { bodyHint.textContent = validJson(body.value) ? '' : 'not valid JSON (sent as typed)'; },
  }) : null;
  const error = h('p', { class: 'error', hidden: true });
  const onsubmit = (event) => {
    event.preventDefault();
    const missing = params.filter(([, input]) => !input.value).map(([name]) => name);
    if (missing.length) {
      error.textContent = `Fill the path parameter${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}`;
      error.hidden = false;
      return;
    }
    error.hidden = true;
    const values = Object.fromEntries(params.map(([name, input]) => [name, input.value]));
    // The step's path below the app's mount point: /todo is /rt/todo under mount("/rt").
    let url = appPath(ep.path.replace(PARAM, (_, a, b) => encodeURIComponent(values[a ?? b])));
    const search = new URLSearchParams(query.values()).toString();
    if (search) url += `?${search}`;
    const init = { method: ep.method, headers: headers.values() };
    if (body && body.value.trim()) init.body = body.value;
    send({ url, init });
  };
  return [
    h('div', { class: 'title' }, methodBadge(ep.method),
      h('code', { class: 'path', 'data-testid': 'endpoint-path' },
        APP_PREFIX ? h('span', { class: 'muted', title: 'the app is mounted here' }, APP_PREFIX) : null, ep.path),
      h('span', { class: 'muted' }, ep.name)),
    ep.description ? h('p', {}, ep.description) : null,
    ep.source ? h('p', { class: 'muted small' }, ep.source) : null,
    h('form', { class: 'request', 'data-testid': 'request-form', onsubmit },
      params.length ? h('fieldset', {}, h('legend', {}, 'Path parameters'),
        params.map(([name, input]) => h('label', { class: 'param' }, h('code', {}, `:${name}`), input))) : null,
      h('fieldset', {}, h('legend', {}, 'Query parameters'), query),
      h('fieldset', {}, h('legend', {}, 'Headers'), headers),
      body ? h('fieldset', {}, h('legend', {}, 'JSON body'), body, bodyHint) : null,
      error,
      h('button', { type: 'submit', class: 'primary', 'data-testid': 'send-request' }, `Send ${ep.method}`)),
    h('section', { class: 'response', 'data-testid': 'response' }, h('p', { class: 'muted' }, 'No request sent yet.')),
    schemas(ep),
  ];
}

function schemas(ep) {
  const parts = [];
  if (ep.bodySchema) parts.push(h('h4', {}, 'Body'), h('pre', { class: 'json' }, pretty(ep.bodySchema)));
  for (const [status, schema] of Object.entries(ep.responseSchemas)) {
    parts.push(h('h4', {}, `Response ${status}`), h('pre', { class: 'json' }, schema ? pretty(schema) : '(any)'));
  }
  if (!parts.length) return null;
  return h('details', { class: 'schemas', 'data-testid': 'schemas' }, h('summary', {}, 'Schemas'), parts);
}

function validJson(text) {
  if (!text.trim()) return true;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
