// The Flows view: every topic with the steps that emit it and the event steps that subscribe to
// it, the steps by type, and each cron step's schedule and next tick. Refreshed every few
// seconds while open (hot reload changes the steps; the next ticks move on).

import { h, replace } from './dom.js';
import { Poller, fromNow, getJson } from './poll.js';
import { api } from './urls.js';

const REFRESH_MS = 5000;
const TYPE_LABEL = { api: 'API', event: 'Event', cron: 'Cron' };

export class FlowsView {
  constructor(root) {
    this.root = root;
    this.flow = null; // a Motia flow name to show only its steps, or null for all
    this.data = null;
    this.nav = h('div', { 'data-testid': 'flow-list' });
    this.detail = h('div', { class: 'detail', 'data-testid': 'flow-detail' }, h('p', { class: 'muted' }, 'Loading…'));
    replace(root, h('aside', { class: 'sidebar' }, h('h2', {}, 'Flows'), this.nav), this.detail);
    this.poller = new Poller(REFRESH_MS, () => this.load());
  }

  async load() {
    try {
      this.data = await getJson(api('flows'));
    } catch (error) {
      replace(this.detail, h('p', { class: 'error' }, `Could not load the flows: ${error.message}`));
      return;
    }
    this.render();
  }

  show() { this.poller.start(); }
  hide() { this.poller.stop(); }

  render() {
    const { steps, topics, flows } = this.data;
    const names = Object.keys(flows).sort();
    const pick = (flow) => { this.flow = flow; this.render(); };
    replace(this.nav, h('ul', { class: 'list' },
      [null, ...names].map((flow) => h('li', {}, h('button', {
        type: 'button', class: this.flow === flow ? 'selected' : '', 'data-testid': `flow-${flow ?? 'all'}`,
        onclick: () => pick(flow),
      }, flow ?? 'all steps', flow ? h('span', { class: 'muted small' }, ` ${flows[flow].length}`) : null)))));
    const inFlow = this.flow ? new Set(flows[this.flow] ?? []) : null;
    const shown = (name) => !inFlow || inFlow.has(name);
    const byName = Object.fromEntries(steps.map((s) => [s.name, s]));
    const rows = topics.filter((t) => [...t.emitters, ...t.subscribers].some(shown));
    const crons = steps.filter((s) => s.type === 'cron' && shown(s.name));
    replace(this.detail,
      h('h3', {}, 'Topics'),
      rows.length ? h('table', { class: 'grid flows', 'data-testid': 'flow-topics' },
        h('tr', {}, h('th', {}, 'Emitted by'), h('th', {}, ''), h('th', {}, 'Topic'), h('th', {}, ''), h('th', {}, 'Subscribed by')),
        rows.map((t) => h('tr', { 'data-testid': 'flow-topic', 'data-topic': t.topic },
          h('td', {}, t.emitters.length ? t.emitters.map((n) => stepBadge(byName[n])) :
            h('span', { class: 'hint' }, 'no step (Workbench / surge emit)')),
          h('td', { class: 'arrow' }, '→'),
          h('td', {}, h('code', { class: 'topic' }, t.topic)),
          h('td', { class: 'arrow' }, '→'),
          h('td', {}, t.subscribers.length ? t.subscribers.map((n) => stepBadge(byName[n])) :
            h('span', { class: 'hint' }, 'nobody subscribes'))))) :
        h('p', { class: 'muted' }, 'No step emits or subscribes to a topic.'),
      h('h3', {}, 'Cron steps'),
      crons.length ? h('table', { class: 'grid', 'data-testid': 'cron-steps' },
        h('tr', {}, h('th', {}, 'Step'), h('th', {}, 'Schedule'), h('th', {}, 'Next tick'), h('th', {}, 'Emits')),
        crons.map((c) => h('tr', { 'data-testid': 'cron-step', 'data-step': c.name },
          h('td', {}, stepBadge(c)), h('td', {}, h('code', {}, c.cron)),
          h('td', { 'data-testid': 'next-tick' }, c.nextTick ?
            [new Date(c.nextTick * 1000).toLocaleString(), ' ', h('span', { class: 'muted' }, fromNow(c.nextTick))] : '—'),
          h('td', {}, c.emits.map((t) => h('code', { class: 'topic' }, t)))))) :
        h('p', { class: 'muted' }, 'No cron steps.'),
      h('h3', {}, 'Steps'),
      h('table', { class: 'grid', 'data-testid': 'flow-steps' },
        h('tr', {}, h('th', {}, 'Step'), h('th', {}, 'Subscribes'), h('th', {}, 'Emits'), h('th', {}, 'Source')),
        steps.filter((s) => shown(s.name)).map((s) => h('tr', { 'data-testid': 'flow-step', 'data-step': s.name },
          h('td', {}, stepBadge(s), s.type === 'api' ? h('code', { class: 'muted small' }, ` ${s.method} ${s.path}`) : null),
          h('td', {}, s.subscribes.map((t) => h('code', { class: 'topic' }, t))),
          h('td', {}, s.emits.map((t) => h('code', { class: 'topic' }, t))),
          h('td', { class: 'muted small' }, s.source ?? 'inline')))));
  }
}

function stepBadge(step) {
  if (!step) return null;
  return h('span', { class: `step-badge t-${step.type}`, title: step.description ?? '' },
    h('span', { class: 'kind' }, TYPE_LABEL[step.type] ?? step.type), step.name);
}
