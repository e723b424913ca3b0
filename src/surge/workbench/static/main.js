// The Workbench page: tabs, the connection status, and one stream connection shared by the views.
// It connects with the per-process key from /__surge/api/session, so it works with stream auth on.
// The hash names the view and may carry its parameters: #logs?trace=<id>.

import { EndpointsView } from './endpoints.js';
import { FlowsView } from './flows.js';
import { LogsView } from './logs.js';
import { MessagesView } from './messages.js';
import { StreamConnection } from './stream.js';
import { StreamsView } from './streams.js';

const status = document.getElementById('conn-status');
const LABELS = { connecting: 'connecting…', open: 'stream connected', closed: 'disconnected, retrying…' };

async function streamUrl() {
  const res = await fetch('/__surge/api/session', { cache: 'no-store' });
  if (!res.ok) throw new Error(`session: HTTP ${res.status}`);
  const { workbenchKey } = await res.json();
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/?surgeWorkbench=${encodeURIComponent(workbenchKey)}`;
}

const connection = new StreamConnection(streamUrl, (state, detail) => {
  status.dataset.state = state;
  status.textContent = LABELS[state] ?? state;
  status.title = detail ?? '';
});

const views = {
  endpoints: new EndpointsView(document.getElementById('view-endpoints'), connection),
  streams: new StreamsView(document.getElementById('view-streams'), connection),
  flows: new FlowsView(document.getElementById('view-flows')),
  messages: new MessagesView(document.getElementById('view-messages')),
  logs: new LogsView(document.getElementById('view-logs')),
};

function show(hash) {
  const [name, query] = hash.split('?', 2);
  const current = views[name] ? name : 'endpoints';
  const params = new URLSearchParams(query ?? '');
  for (const [key, view] of Object.entries(views)) {
    const active = key === current;
    view.root.hidden = !active;
    if (active) view.show(params);
    else view.hide();
  }
  for (const tab of document.querySelectorAll('.tabs button')) {
    tab.setAttribute('aria-selected', String(tab.dataset.view === current));
  }
}

for (const tab of document.querySelectorAll('.tabs button')) {
  tab.addEventListener('click', () => { location.hash = tab.dataset.view; });
}
window.addEventListener('hashchange', () => show(location.hash.slice(1)));

connection.start();
views.endpoints.load().catch((error) => console.error('workbench: loading endpoints failed', error));
show(location.hash.slice(1));
