// Drives the real @motiadev/stream-client-node over stdin/stdout, one JSON object per line.
//
//   node driver.mjs <ws-url> [protocol ...]
//
// Commands (stdin), each may carry "req" which is echoed in its {"type":"reply"}:
//   {"cmd":"subscribeGroup","key":"g1","stream":"todo","group":"inbox","events":["typing"]?}
//   {"cmd":"subscribeItem","key":"i1","stream":"todo","group":"inbox","id":"t1","events":[...]?}
//   {"cmd":"onEvent","key":"g1","type":"typing"}
//   {"cmd":"state","key":"g1"}          -> reply with getState()
//   {"cmd":"unsubscribe","key":"g1"}    -> the subscription's close() (sends a leave)
//   {"cmd":"close"}                     -> Stream.close(), then exit
// Output (stdout): {"type":"state","key","state"} on every change listener call,
// {"type":"event","key","event","data"} for onEvent, {"type":"frame","data"} for every raw frame,
// {"type":"socket","state":"open"|"close","code"}, {"type":"error","message","code"} for an
// exception the client let escape (it would otherwise kill the process), {"type":"ready"}.
import { createInterface } from "node:readline";
import { Stream } from "@motiadev/stream-client-node";

const [url, ...protocols] = process.argv.slice(2);
const emit = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);

// Observe the sockets the client creates (including its own reconnects) without changing them.
class ObservedStream extends Stream {
  createSocket() {
    const adapter = super.createSocket();
    adapter.ws.addEventListener("open", () => emit({ type: "socket", state: "open" }));
    adapter.ws.addEventListener("close", (e) => emit({ type: "socket", state: "close", code: e.code }));
    adapter.ws.addEventListener("message", (e) => emit({ type: "frame", data: e.data.toString() }));
    return adapter;
  }
}

process.on("uncaughtException", (err) => emit({ type: "error", message: String(err?.message ?? err), code: err?.code ?? null }));

const stream = new ObservedStream(url, protocols.length ? { protocols } : undefined);
const subs = new Map();

function listen(key, type) {
  subs.get(key).onEvent(type, (data) => emit({ type: "event", key, event: type, data }));
}

// `events` registers onEvent listeners at once, before any answer to the join can arrive.
function track(key, sub, events = []) {
  subs.set(key, sub);
  sub.addChangeListener((state) => emit({ type: "state", key, state }));
  for (const type of events) listen(key, type);
}

const commands = {
  subscribeGroup: (c) => track(c.key, stream.subscribeGroup(c.stream, c.group), c.events),
  subscribeItem: (c) => track(c.key, stream.subscribeItem(c.stream, c.group, c.id), c.events),
  onEvent: (c) => listen(c.key, c.type),
  state: (c) => ({ state: subs.get(c.key).getState() }),
  unsubscribe: (c) => subs.get(c.key).close(),
  close: () => {
    stream.close();
    setImmediate(() => process.exit(0));
  },
};

createInterface({ input: process.stdin }).on("line", (line) => {
  if (!line.trim()) return;
  let command;
  try {
    command = JSON.parse(line);
    const handler = commands[command.cmd];
    if (!handler) throw new Error(`unknown command ${command.cmd}`);
    emit({ type: "reply", req: command.req ?? null, cmd: command.cmd, ...(handler(command) ?? {}) });
  } catch (err) {
    emit({ type: "reply", req: command?.req ?? null, cmd: command?.cmd ?? null, error: String(err?.message ?? err) });
  }
}).on("close", () => process.exit(0));

emit({ type: "ready" });
