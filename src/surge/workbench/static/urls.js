// Every URL the page uses, found from this module's own URL, so the Workbench works wherever the
// app is served: the page is <app>/__surge/workbench/, its JSON <app>/__surge/api/..., the API
// steps and the stream WebSocket <app>/...; <app> is '' on its own (surge dev) and '/rt' under a
// mount (FastAPI's api.mount("/rt", app)). No path here is absolute on purpose.

const PAGE = new URL('.', import.meta.url); // <app>/__surge/workbench/
const API = new URL('../api/', PAGE).pathname; // <app>/__surge/api/

/** The app's mount prefix: '' at the root of its server, '/rt' under mount("/rt"). */
export const APP_PREFIX = new URL('../../', PAGE).pathname.replace(/\/$/, '');

/** A Workbench JSON endpoint: api('flows') -> '<app>/__surge/api/flows' (a query may follow). */
export function api(name) {
  return API + name;
}

/** The URL of one of the app's own paths, as its API steps declare it: '/todo' -> '<app>/todo'. */
export function appPath(path) {
  return APP_PREFIX + (path.startsWith('/') ? path : `/${path}`);
}

/** The app's stream WebSocket, ws(s)://host<app>/?<query>. */
export function streamUrl(query) {
  const url = new URL(`${APP_PREFIX}/`, PAGE);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = query;
  return url.href;
}
