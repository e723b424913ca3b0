// The Streams view: every stream with its groups; a selected group is joined and its items shown
// live, with a log of every change and ephemeral event as it passes. The list of groups is
// refreshed every few seconds while the view is open (the protocol has no feed of new groups).

import { clock, flash, h, pretty, replace } from './dom.js';
import { errorOf } from './stream.js';
import { api } from './urls.js';

const REFRESH_MS = 3000;
const MAX_LOG = 200;

export class StreamsView {
  constructor(root, connection) {
    this.root = root;
    this.connection = connection;
    this.streams = [];
    this.shape = null;
    this.current = null; // {streamName, groupId}
    this.stop = null;
    this.timer = null;
    this.nav = h('div', { class: 'streams-nav', 'data-testid': 'stream-list' });
    this.detail = h('div', { class: 'detail', 'data-testid': 'stream-detail' },
      h('p', { class: 'muted' }, 'Pick a group to watch its items live.'));
    const refresh = h('button', {
      type: 'button', class: 'small', 'data-testid': 'refresh-streams', onclick: () => this.show(),
    }, 'refresh');
    replace(root, h('aside', { class: 'sidebar' }, h('h2', {}, 'Streams ', refresh), this.nav), this.detail);
  }

  async load() {
    const res = await fetch(api('streams'), { cache: 'no-store' });
    if (!res.ok) {
      replace(this.nav, h('p', { class: 'error' }, `Could not list streams (${res.status}).`));
      return;
    }
    const streams = (await res.json()).streams;
    const shape = JSON.stringify(streams.map((s) => [s.name, s.groups]));
    if (shape === this.shape) return; // keep what the user is typing in the inputs
    this.shape = shape;
    this.streams = streams;
    replace(this.nav, this.streams.length ? this.streams.map((s) => this.#stream(s)) :
      h('p', { class: 'muted' }, 'No streams in this project.'));
  }

  show() {
    const refresh = () => this.load().catch((error) => console.warn('workbench: listing streams failed:', String(error)));
    refresh();
    clearInterval(this.timer);
    this.timer = setInterval(refresh, REFRESH_MS);
  }

  hide() {
    clearInterval(this.timer);
  }

  #stream(stream) {
    const input = h('input', { placeholder: 'group id', 'aria-label': `group of ${stream.name}`,
      'data-testid': `watch-input-${stream.name}` });
    const watch = (event) => {
      event.preventDefault();
      if (input.value.trim()) this.watch(stream, input.value.trim());
    };
    return h('div', { class: 'stream', 'data-testid': `stream-${stream.name}` },
      h('h3', {}, stream.name, stream.hasAccessRule ? h('span', { class: 'tag', title: 'has can_access' }, 'auth') : null),
      h('ul', { class: 'list' }, stream.groups.map((group) => h('li', {},
        h('button', {
          type: 'button', class: `group${this.#isCurrent(stream.name, group) ? ' selected' : ''}`,
          'data-testid': `group-${stream.name}-${group}`, onclick: () => this.watch(stream, group),
        }, group)))),
      stream.groups.length ? null : h('p', { class: 'muted small' }, 'no groups with items yet'),
      h('form', { class: 'watch', onsubmit: watch }, input, h('button', { type: 'submit', class: 'small', 'data-testid': `watch-${stream.name}` }, 'watch')));
  }

  #isCurrent(streamName, groupId) {
    return this.current?.streamName === streamName && this.current?.groupId === groupId;
  }

  /** Join `groupId` of `stream` and show it live (leaving the previous group). */
  watch(stream, groupId) {
    if (this.stop) this.stop();
    this.current = { streamName: stream.name, groupId };
    for (const btn of this.nav.querySelectorAll('button.group')) {
      btn.classList.toggle('selected', btn.dataset.testid === `group-${stream.name}-${groupId}`);
    }
    const items = new Map();
    const state = h('span', { class: 'state', 'data-testid': 'group-state' }, 'subscribing…');
    const list = h('div', { class: 'items', 'data-testid': 'stream-items' });
    const log = h('ol', { class: 'log', 'data-testid': 'event-log', reversed: true });
    const count = h('span', { class: 'muted', 'data-testid': 'item-count' });
    replace(this.detail,
      h('div', { class: 'title' }, h('code', { class: 'path' }, `${stream.name} / ${groupId}`), state),
      h('div', { class: 'columns' },
        h('div', {}, h('h3', {}, 'Items ', count), list),
        h('div', {}, h('h3', {}, 'Events'), log)),
      h('details', { class: 'schemas' }, h('summary', {}, 'Item schema'), h('pre', { class: 'json' }, pretty(stream.schema))));

    const render = (changedId) => {
      count.textContent = `(${items.size})`;
      replace(list, items.size ? [...items.values()].map((item) => {
        const card = h('article', { class: 'item', 'data-testid': 'stream-item', 'data-id': item.id },
          h('pre', { class: 'json' }, pretty(item)));
        if (item.id === changedId) flash(card);
        return card;
      }) : h('p', { class: 'muted' }, 'This group is empty.'));
    };
    const note = (kind, id, data, ephemeral = false) => {
      log.prepend(h('li', { class: ephemeral ? 'ephemeral' : kind, 'data-testid': 'event-entry', 'data-kind': kind },
        h('span', { class: 'time' }, clock()), h('strong', {}, kind), id ? h('code', {}, id) : null,
        data === undefined ? null : h('pre', { class: 'json' }, pretty(data))));
      while (log.children.length > MAX_LOG) log.lastChild.remove();
    };

    this.stop = this.connection.subscribe(this.current, (frame) => {
      const event = frame.event ?? frame;
      const error = errorOf(frame);
      if (error) {
        state.textContent = `refused: ${error.message}`;
        state.dataset.state = 'error';
        note('error', frame.id, error);
      } else if (event.type === 'disconnected') {
        state.textContent = 'reconnecting…';
        state.dataset.state = 'closed';
      } else if (event.type === 'sync') {
        items.clear();
        for (const item of event.data ?? []) items.set(item.id, item);
        state.textContent = 'live';
        state.dataset.state = 'live';
        note('sync', null, undefined);
        render(null);
      } else if (event.type === 'create' || event.type === 'update') {
        items.set(event.data.id, event.data);
        note(event.type, frame.id, event.data);
        render(event.data.id);
      } else if (event.type === 'delete') {
        items.delete(event.data.id);
        note('delete', frame.id, event.data);
        render(null);
      } else if (event.type === 'event') {
        note(`event: ${event.event?.type}`, frame.id, event.event?.data, true);
      }
    });
  }
}
