// The stream protocol of Motia's clients, spoken over one WebSocket that reconnects by itself.
//
// join:  {"type":"join","data":{"streamName","groupId","id"?,"subscriptionId"}}
// in:    {"timestamp","streamName","groupId","id"?,"event":{"type":"sync|create|update|delete|event",...}}
// A group subscription gets every frame of its group but an item's sync (the answer to an item
// join on the same connection: its data is one item, not the group's list); an item
// subscription only its item's frames.

const RECONNECT_MS = 2000;

export class StreamConnection {
  /**
   * @param {() => Promise<string>} resolveUrl  the WebSocket URL, asked again on every (re)connect
   * @param {(state: string, detail?: string) => void} onState  "connecting" | "open" | "closed"
   */
  constructor(resolveUrl, onState) {
    this.resolveUrl = resolveUrl;
    this.onState = onState;
    this.subs = new Map();
    this.ws = null;
    this.counter = 0;
    this.timer = null;
  }

  start() {
    this.#connect();
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  async #connect() {
    this.onState('connecting');
    let url;
    try {
      url = await this.resolveUrl();
    } catch (error) {
      this.onState('closed', String(error));
      this.#retry();
      return;
    }
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.addEventListener('open', () => {
      this.onState('open');
      for (const sub of this.subs.values()) this.#send({ type: 'join', data: sub.data });
    });
    ws.addEventListener('message', (message) => this.#dispatch(message.data));
    ws.addEventListener('close', () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.onState('closed');
      for (const sub of this.subs.values()) sub.listener({ type: 'disconnected' });
      this.#retry();
    });
  }

  #retry() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.#connect(), RECONNECT_MS);
  }

  #send(message) {
    if (this.isOpen) this.ws.send(JSON.stringify(message));
  }

  /**
   * Join a group (`id` undefined) or an item; `listener(frame)` gets every frame routed to it
   * (and `{type: "disconnected"}` when the socket drops: a fresh sync follows the reconnect).
   * Returns the function that leaves.
   */
  subscribe({ streamName, groupId, id }, listener) {
    this.counter += 1;
    const subscriptionId = `wb-${Date.now().toString(36)}-${this.counter}`;
    const data = { streamName, groupId, ...(id === undefined ? {} : { id }), subscriptionId };
    this.subs.set(subscriptionId, { data, listener });
    this.#send({ type: 'join', data });
    return () => {
      if (this.subs.delete(subscriptionId)) this.#send({ type: 'leave', data });
    };
  }

  #dispatch(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      console.warn('workbench: ignoring a frame that is not JSON');
      return;
    }
    if (!frame || typeof frame !== 'object' || !frame.event) return;
    for (const sub of [...this.subs.values()]) {
      if (!routes(sub.data, frame)) continue;
      try {
        sub.listener(frame);
      } catch (error) {
        console.error('workbench: a view failed on a frame:', error); // the other views go on
      }
    }
  }
}

function routes(data, frame) {
  if (frame.streamName !== data.streamName || frame.groupId !== data.groupId) return false;
  // A group subscription takes its items' changes and events, not an item join's own answer
  // (its sync, or the error event of a refused item join).
  if (data.id === undefined) return !(frame.id !== undefined && (frame.event.type === 'sync' || errorOf(frame)));
  return frame.id === data.id;
}

/** The error event of a refused join, or null. */
export function errorOf(frame) {
  const event = frame.event;
  if (event?.type === 'event' && event.event?.type === 'error') return event.event.data;
  return null;
}
