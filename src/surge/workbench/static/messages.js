// The Messages view: emit a message, watch recent messages of every event step with their status
// (queued, running, retried, done, dead), the queue counts, and the dead letters with Replay and
// Discard. Polled every second while open. The history is the server's ring buffer of delivery
// events in this process (the newest few hundred), not a durable log.

import { h, pretty, replace } from './dom.js';
import { Poller, getJson, postJson, timeOf, traceLink } from './poll.js';
import { api } from './urls.js';

const POLL_MS = 1000;
const FAILING = new Set(['retried', 'dead']);
const STATUS_TITLE = {
  queued: 'waiting in the queue', running: 'a handler is running it', retried: 'failed; waiting for its retry',
  done: 'handled and acked', dead: 'in the dead letters', discarded: 'discarded from the dead letters',
};

export class MessagesView {
  constructor(root) {
    this.root = root;
    this.shape = null;
    this.topicsShape = null;
    this.topic = h('select', { 'data-testid': 'emit-topic', 'aria-label': 'topic' });
    this.data = h('textarea', { 'data-testid': 'emit-data', rows: 6, spellcheck: 'false', value: '{}', 'aria-label': 'data' });
    this.result = h('div', { class: 'small', 'data-testid': 'emit-result' });
    this.queues = h('div', { 'data-testid': 'queues' });
    this.dead = h('div', { 'data-testid': 'dead-letters' });
    this.list = h('div', { 'data-testid': 'messages' }, h('p', { class: 'muted' }, 'Loading…'));
    this.error = h('p', { class: 'error', 'data-testid': 'messages-error', hidden: true });
    const form = h('form', { class: 'emit', onsubmit: (event) => { event.preventDefault(); this.emit(); } },
      h('label', { class: 'small muted' }, 'Topic'), this.topic,
      h('label', { class: 'small muted' }, 'Data (JSON)'), this.data,
      h('button', { type: 'submit', class: 'primary', 'data-testid': 'emit-send' }, 'Emit'), this.result);
    replace(root,
      h('aside', { class: 'sidebar' }, h('h2', {}, 'Emit'), form, h('h2', {}, 'Queues'), this.queues),
      h('div', { class: 'detail' }, this.error,
        h('h3', {}, 'Dead letters'), this.dead,
        h('h3', {}, 'Recent messages'), this.list));
    this.poller = new Poller(POLL_MS, () => this.refresh());
  }

  show() {
    this.loadTopics().catch((error) => console.warn('workbench: loading topics failed:', String(error)));
    this.poller.start();
  }

  hide() { this.poller.stop(); }

  async loadTopics() {
    const { topics } = await getJson(api('flows'));
    const shape = JSON.stringify(topics.map((t) => [t.topic, t.subscribers]));
    if (shape === this.topicsShape) return;
    this.topicsShape = shape;
    const current = this.topic.value;
    replace(this.topic, topics.map((t) => h('option', { value: t.topic },
      `${t.topic} → ${t.subscribers.length ? t.subscribers.join(', ') : 'nobody'}`)));
    if (topics.some((t) => t.topic === current)) this.topic.value = current;
    else {
      const first = topics.find((t) => t.subscribers.length);
      if (first) this.topic.value = first.topic;
    }
  }

  async emit() {
    delete this.result.dataset.traceId; // set again by this emit's answer
    replace(this.result, h('span', { class: 'muted' }, 'Emitting…'));
    let data;
    try {
      data = JSON.parse(this.data.value || 'null');
    } catch (error) {
      replace(this.result, h('span', { class: 'error' }, `Data is not JSON: ${error.message}`));
      return;
    }
    const topic = this.topic.value;
    if (!topic) {
      replace(this.result, h('span', { class: 'error' }, 'Pick a topic.'));
      return;
    }
    const { ok, body } = await postJson(api('emit'), { topic, data });
    if (!ok) {
      replace(this.result, h('span', { class: 'error', 'data-testid': 'emit-error' }, body.error ?? 'emit failed'));
      return;
    }
    replace(this.result, body.messageIds.length ?
      [`Emitted to ${body.subscribers.join(', ')} · trace `, traceLink(h, body.traceId)] :
      h('span', { class: 'hint' }, 'Emitted, but no step subscribes to this topic.'));
    this.result.dataset.traceId = body.traceId;
    this.poller.start(); // show it at once
  }

  async refresh() {
    let messages;
    let letters;
    try {
      [messages, letters] = await Promise.all([getJson(api('messages')), getJson(api('dead-letters'))]);
    } catch (error) {
      this.error.hidden = false;
      this.error.textContent = `Could not load the messages: ${error.message}`;
      return;
    }
    this.error.hidden = true;
    const shape = JSON.stringify([messages, letters]);
    if (shape === this.shape) return; // keep the page still (and a pending click) when nothing changed
    this.shape = shape;
    this.#queues(messages.queues);
    this.#deadLetters(letters.deadLetters);
    this.#messages(messages.messages, messages.capacity);
  }

  #queues(queues) {
    const names = Object.keys(queues).sort();
    replace(this.queues, names.length ? h('table', { class: 'grid small' },
      h('tr', {}, h('th', {}, 'Step'), h('th', { title: 'ready to be handled' }, 'ready'),
        h('th', { title: 'waiting for a retry' }, 'retry'), h('th', { title: 'being handled' }, 'run'),
        h('th', { title: 'dead letters' }, 'dead')),
      names.map((name) => {
        const q = queues[name];
        return h('tr', { 'data-testid': `queue-${name}` }, h('td', {}, name), h('td', {}, q.ready),
          h('td', {}, q.delayed), h('td', {}, q.inFlight), h('td', { class: q.dead ? 'error' : '' }, q.dead));
      })) : h('p', { class: 'muted small' }, 'No event steps.'));
  }

  #deadLetters(letters) {
    if (!letters.length) {
      replace(this.dead, h('p', { class: 'muted small' }, 'No dead letters.'));
      return;
    }
    replace(this.dead, letters.map((d) => {
      const note = h('span', { class: 'small' });
      const act = async (action, button) => {
        button.disabled = true;
        const { ok, body } = await postJson(api(`dead-letters/${action}`), { step: d.step, messageId: d.messageId });
        if (!ok) {
          button.disabled = false;
          note.className = 'small error';
          note.textContent = body.error ?? `${action} failed`;
          return;
        }
        note.textContent = action === 'replay' ? 'replayed' : 'discarded';
        this.poller.start();
      };
      return h('div', { class: 'dead-letter', 'data-testid': 'dead-letter', 'data-step': d.step, 'data-message-id': d.messageId },
        h('div', { class: 'title' },
          h('strong', {}, d.step), h('code', { class: 'topic' }, d.topic),
          h('span', { class: 'muted small' }, `${d.attempts} attempt${d.attempts === 1 ? '' : 's'} · failed at ${timeOf(d.failedAt)} · trace `),
          traceLink(h, d.traceId),
          h('span', { class: 'actions' },
            h('button', { type: 'button', class: 'small', 'data-testid': 'replay', onclick: (e) => act('replay', e.currentTarget) }, 'Replay'),
            h('button', { type: 'button', class: 'small danger', 'data-testid': 'discard', onclick: (e) => act('discard', e.currentTarget) }, 'Discard'),
            note)),
        h('div', { class: 'error small', 'data-testid': 'dead-error' }, d.error),
        h('pre', { class: 'json' }, pretty(d.data)));
    }));
  }

  #messages(rows, capacity) {
    if (!rows.length) {
      replace(this.list, h('p', { class: 'muted' }, 'No messages yet: emit one, or call an API step that emits.'));
      return;
    }
    replace(this.list,
      h('table', { class: 'grid messages' },
        h('tr', {}, h('th', {}, 'Updated'), h('th', {}, 'Step'), h('th', {}, 'Topic'), h('th', {}, 'Status'),
          h('th', {}, 'Attempt'), h('th', {}, 'Message'), h('th', {}, 'Trace'), h('th', {}, 'Error')),
        rows.map((m) => h('tr', {
          'data-testid': 'message', 'data-step': m.step, 'data-message-id': m.messageId,
          'data-status': m.status, 'data-trace-id': m.traceId,
        },
        h('td', { class: 'muted small' }, timeOf(m.updatedAt)),
        h('td', {}, m.step),
        h('td', {}, h('code', { class: 'topic' }, m.topic)),
        h('td', {}, h('span', {
          class: `badge s-${m.status}`, 'data-testid': 'message-status',
          title: `${STATUS_TITLE[m.status] ?? ''}\n${m.history.map((e) => e.kind).join(' → ')}`,
        }, m.status)),
        h('td', {}, m.attempt || ''),
        h('td', {}, h('code', { class: 'small', title: m.messageId }, m.messageId.slice(0, 10))),
        h('td', {}, traceLink(h, m.traceId)),
        // A failure the message got past (replayed, then done) stays visible, quieter.
        h('td', { class: FAILING.has(m.status) ? 'error small' : 'muted small' },
          m.error && !FAILING.has(m.status) ? `earlier: ${m.error}` : m.error ?? '')))),
      h('p', { class: 'muted small' }, `From the last ${capacity} delivery events of this process.`));
  }
}
