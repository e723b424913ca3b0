// The Logs view: the newest ctx.logger lines of every step (secrets redacted by the server),
// filtered by trace id and step. A trace id anywhere in the Workbench links here
// (#logs?trace=<id>). Polled every second while open.

import { h, replace } from './dom.js';
import { Poller, getJson, timeOf, traceLink } from './poll.js';
import { api } from './urls.js';

const POLL_MS = 1000;

export class LogsView {
  constructor(root) {
    this.root = root;
    this.shape = null;
    this.steps = new Set();
    this.trace = h('input', { placeholder: 'trace id', 'data-testid': 'logs-trace', 'aria-label': 'trace id',
      oninput: () => this.poller.start() });
    this.step = h('select', { 'data-testid': 'logs-step', 'aria-label': 'step', onchange: () => this.poller.start() },
      h('option', { value: '' }, 'all steps'));
    const clear = h('button', { type: 'button', class: 'small', 'data-testid': 'logs-clear', onclick: () => {
      this.trace.value = '';
      this.step.value = '';
      if (location.hash.startsWith('#logs?')) history.replaceState(null, '', '#logs');
      this.poller.start();
    } }, 'clear filters');
    this.count = h('p', { class: 'muted small', 'data-testid': 'logs-count' });
    this.list = h('ol', { class: 'log lines', 'data-testid': 'log-lines' });
    replace(root,
      h('aside', { class: 'sidebar' }, h('h2', {}, 'Filter'),
        h('div', { class: 'filters' }, h('label', { class: 'small muted' }, 'Trace id'), this.trace,
          h('label', { class: 'small muted' }, 'Step'), this.step, clear), this.count),
      h('div', { class: 'detail' }, h('h3', {}, 'Step logs (ctx.logger)'), this.list));
    this.poller = new Poller(POLL_MS, () => this.refresh());
  }

  /** `params` (from #logs?trace=..&step=..) set the filters. */
  show(params) {
    if (params?.has('trace')) this.trace.value = params.get('trace');
    if (params?.has('step')) this.#ensureStep(params.get('step'));
    if (params?.has('step')) this.step.value = params.get('step');
    getJson(api('flows')) // the steps to filter by (lines add theirs as they come)
      .then(({ steps }) => { for (const s of steps) this.#ensureStep(s.name); })
      .catch((error) => console.warn('workbench: listing steps failed:', String(error)));
    this.poller.start();
  }

  hide() { this.poller.stop(); }

  #ensureStep(name) {
    if (!name || this.steps.has(name)) return;
    this.steps.add(name);
    const names = [...this.steps].sort();
    const current = this.step.value;
    replace(this.step, h('option', { value: '' }, 'all steps'), names.map((n) => h('option', { value: n }, n)));
    this.step.value = current;
  }

  async refresh() {
    const query = new URLSearchParams();
    const trace = this.trace.value.trim();
    if (trace) query.set('trace', trace);
    if (this.step.value) query.set('step', this.step.value);
    const { logs, capacity } = await getJson(api(`logs?${query}`));
    const shape = JSON.stringify([query.toString(), logs.length && logs[logs.length - 1].seq, logs.length]);
    if (shape === this.shape) return;
    this.shape = shape;
    for (const line of logs) this.#ensureStep(line.step);
    this.count.textContent = `${logs.length} line${logs.length === 1 ? '' : 's'} (of the last ${capacity})`;
    replace(this.list, logs.length ? logs.map((line) => h('li', {
      class: `lvl-${line.level.toLowerCase()}`, 'data-testid': 'log-line', 'data-trace-id': line.traceId ?? '', 'data-step': line.step ?? '',
    },
    h('span', { class: 'time' }, timeOf(line.at)),
    h('span', { class: `level l-${line.level.toLowerCase()}` }, line.level),
    h('strong', { class: 'step' }, line.step ?? line.logger),
    traceLink(h, line.traceId),
    h('span', { class: 'message', 'data-testid': 'log-message' }, line.message),
    line.data ? h('code', { class: 'data' }, line.data) : null)) :
      h('li', { class: 'muted' }, trace || this.step.value ? 'No lines match the filters.' : 'No step has logged yet.'));
  }
}
