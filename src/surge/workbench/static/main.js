// The Workbench page: tabs, the connection status, and one stream connection shared by the views.
// It connects with the per-process key from the session endpoint, so it works with stream auth on.
// The hash names the view and may carry its parameters: #logs?trace=<id>. Every URL comes from
// urls.js (relative to the page, so it works under a mount prefix too).

import { EndpointsView } from './endpoints.js';
import { FlowsView } from './flows.js';
import { LogsView } from './logs.js';
import { MessagesView } from './messages.js';
import { StreamConnection } from './stream.js';
import { StreamsView } from './streams.js';
import { api, streamUrl } from './urls.js';

const status = document.getElementById('conn-status');
const LABELS = { connecting: 'connecting…', open: 'stream connected', closed: 'disconnected, retrying…' };

async function workbenchStreamUrl() {
  const res = await fetch(api('session'), { cache: 'no-store' });
  if (!res.ok) throw new Error(`session: HTTP ${res.status}`);
  const { workbenchKey } = await res.json();
  return streamUrl(new URLSearchParams({ surgeWorkbench: workbenchKey }));
}

const connection = new StreamConnection(workbenchStreamUrl, (state, detail) => {
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
