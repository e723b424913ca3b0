// Polling while a view is open: run `task`, wait `ms` after it settles, run it again. One run at a
// time (a slow server never piles up requests); errors go to the console, the polling goes on.

export class Poller {
  constructor(ms, task) {
    this.ms = ms;
    this.task = task;
    this.timer = null;
    this.running = false;
    this.generation = 0;
  }

  /** Start (or restart at once) polling. */
  start() {
    this.stop();
    this.running = true;
    const generation = ++this.generation;
    const tick = async () => {
      try {
        await this.task();
      } catch (error) {
        console.warn('workbench: polling failed:', String(error));
      }
      if (this.running && generation === this.generation) this.timer = setTimeout(tick, this.ms);
    };
    tick();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = null;
  }
}

/** GET a Workbench JSON endpoint; throws with the server's error text on a non-2xx answer. */
export async function getJson(path) {
  const res = await fetch(path, { cache: 'no-store' });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error ?? `HTTP ${res.status}`);
  return body;
}

/** POST JSON; resolves to {ok, status, body}. */
export async function postJson(path, payload) {
  const res = await fetch(path, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(payload),
  });
  const body = await res.json().catch(() => ({}));
  return { ok: res.ok, status: res.status, body };
}

/** hh:mm:ss.mmm of an epoch-seconds time stamp. */
export function timeOf(seconds) {
  const at = new Date(seconds * 1000);
  return at.toLocaleTimeString([], { hour12: false }) + '.' + String(at.getMilliseconds()).padStart(3, '0');
}

/** "in 3 h 2 min" / "in 12 s" from now to an epoch-seconds time. */
export function fromNow(seconds) {
  let left = Math.max(0, Math.round(seconds - Date.now() / 1000));
  if (left < 60) return `in ${left} s`;
  const parts = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['min', 60]]) {
    const n = Math.floor(left / size);
    if (n || parts.length) parts.push(`${n} ${unit}`);
    left -= n * size;
    if (parts.length === 2) break;
  }
  return `in ${parts.join(' ')}`;
}

/** The trace-id button: opens the Logs view filtered by that trace. */
export function traceLink(h, traceId) {
  if (!traceId) return h('span', { class: 'muted' }, '—');
  return h('a', {
    class: 'trace', href: `#logs?trace=${encodeURIComponent(traceId)}`, title: `logs of trace ${traceId}`,
    'data-testid': 'trace-link', 'data-trace-id': traceId,
  }, traceId.length > 12 ? traceId.slice(0, 12) + '…' : traceId);
}
