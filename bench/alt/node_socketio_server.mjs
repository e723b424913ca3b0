// Socket.IO on Node doing Surge's todo job, for `bench/run.py compare`.
//
// - clients connect with /socket.io/?EIO=4&transport=websocket and emit `join` with a room name
//   (acknowledged once they are in the room);
// - POST /todo {"description": ...} builds the same item as Surge's todo example, keeps it in a Map
//   and emits `todo` with the same envelope Surge sends to the room `inbox`.
//
// Usage: node bench/alt/node_socketio_server.mjs --port 3102   (after `npm ci` in bench/node)
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";

// socket.io is installed in bench/node (bench/setup.sh), not next to this file.
const require = createRequire(new URL("../node/package.json", import.meta.url));
const { Server } = require("socket.io");

const { values } = parseArgs({
  options: { port: { type: "string", default: "3102" }, host: { type: "string", default: "127.0.0.1" } },
});
const items = new Map();

function json(res, status, body) {
  const raw = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(raw) });
  res.end(raw);
}

const httpServer = createServer((req, res) => {
  if (req.url === "/health") return json(res, 200, { ok: true });
  if (req.method !== "POST" || req.url !== "/todo") return; // socket.io handles its own paths
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString());
    } catch {
      return json(res, 400, { error: "invalid JSON" });
    }
    if (typeof body.description !== "string" || !body.description.trim()) {
      return json(res, 400, { error: "Description is required" });
    }
    const id = `todo-${Date.now()}-${randomBytes(4).toString("hex")}`;
    const item = {
      id,
      description: body.description,
      createdAt: new Date().toISOString(),
      dueDate: body.dueDate ?? null,
      completedAt: null,
    };
    items.set(id, item);
    const envelope = {
      timestamp: Date.now(),
      streamName: "todo",
      groupId: "inbox",
      id,
      event: { type: "create", data: item },
    };
    io.to("inbox").emit("todo", envelope);
    json(res, 200, item);
  });
});

const io = new Server(httpServer, { serveClient: false, cors: { origin: "*" } });
io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack(true);
  });
});

httpServer.listen(Number(values.port), values.host, 2048);
