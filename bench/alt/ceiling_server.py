"""A reference point, not a contender: the least Python work per delivered frame on this machine.

It serves just enough of Surge's todo job for ``bench/run.py ceiling`` (``POST /todo`` creates
an item and fans the same envelope out to every joined connection; a join gets a group sync) with
none of Surge's guarantees beyond ordering: no outbox bound, no per-connection timestamps, no
validation, no auth, no compression. Each change is JSON-encoded once and framed once (server
frames are unmasked, so the same bytes go to every connection), then:

- ``--mode direct``: ``transport.write(frame)`` on every connection at once (one syscall each);
- ``--mode coalesce``: frames are queued per connection and flushed once per event-loop tick,
  one write per connection for all the frames of that tick.

Its frames/s and CPU per delivery bound what any Python design on uvloop can reach here; the gap
to Surge is Surge's overhead.

Usage: ``.venv/bin/python bench/alt/ceiling_server.py --port 3103 --mode coalesce``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import secrets
import time
from datetime import UTC, datetime

import orjson
import uvloop

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(payload: bytes) -> bytes:
    """An unmasked text frame."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


class Hub:
    """The one group, its items and the fan-out."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.members: dict[Conn, None] = {}
        self.items: dict[str, dict[str, object]] = {}
        self.dirty: list[Conn] = []
        self.flush_scheduled = False

    def publish(self, data: bytes) -> None:
        """Send one frame to every member."""
        if self.mode == "direct":
            for conn in self.members:
                conn.transport.write(data)
            return
        for conn in self.members:
            if not conn.pending:
                self.dirty.append(conn)
            conn.pending.append(data)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """One write per connection for everything queued this tick."""
        self.flush_scheduled = False
        dirty, self.dirty = self.dirty, []
        for conn in dirty:
            pending, conn.pending = conn.pending, []
            if not conn.transport.is_closing():
                conn.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))


class Conn(asyncio.Protocol):
    """One client: HTTP requests until it upgrades, then WebSocket frames."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.buf = b""
        self.is_ws = False
        self.pending: list[bytes] = []
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.hub.members.pop(self, None)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.is_ws:
            self._frames()
            return
        while not self.is_ws:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            lines = head.split("\r\n")
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
            }
            length = int(headers.get("content-length", "0"))
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            method, path, _ = lines[0].split(" ", 2)
            if headers.get("upgrade", "").lower() == "websocket":
                key = headers["sec-websocket-key"].encode()
                accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
                self.transport.write(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                )
                self.is_ws = True
                self._frames()
                return
            self._http(method, path, body)

    def _http(self, method: str, path: str, body: bytes) -> None:
        status, payload = 404, b'{"error":"not found"}'
        if path == "/health":
            status, payload = 200, b'{"ok":true}'
        elif method == "POST" and path == "/todo":
            description = orjson.loads(body)["description"]
            todo_id = f"todo-{time.time_ns() // 1_000_000}-{secrets.token_hex(4)}"
            item = {
                "id": todo_id,
                "description": description,
                "createdAt": datetime.now(UTC).isoformat(),
                "dueDate": None,
                "completedAt": None,
            }
            self.hub.items[todo_id] = item
            envelope = {
                "timestamp": time.time_ns() // 1_000_000,
                "streamName": "todo",
                "groupId": "inbox",
                "id": todo_id,
                "event": {"type": "create", "data": item},
            }
            self.hub.publish(frame(orjson.dumps(envelope)))
            status, payload = 200, orjson.dumps(item)
        self.transport.write(
            f"HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\n"
            f"content-length: {len(payload)}\r\n\r\n".encode()
            + payload
        )

    def _frames(self) -> None:
        buf = self.buf
        while len(buf) >= 6:
            n = buf[1] & 0x7F
            start = 2
            if n == 126:
                n = int.from_bytes(buf[2:4], "big")
                start = 4
            elif n == 127:
                n = int.from_bytes(buf[2:10], "big")
                start = 10
            if len(buf) < start + 4 + n:
                break
            mask = buf[start : start + 4]
            raw = buf[start + 4 : start + 4 + n]
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(raw))
            opcode = buf[0] & 0x0F
            buf = buf[start + 4 + n :]
            if opcode == 0x8:
                self.transport.close()
                break
            if opcode == 0x1 and b'"join"' in payload:
                sync = {
                    "timestamp": time.time_ns() // 1_000_000,
                    "streamName": "todo",
                    "groupId": "inbox",
                    "event": {"type": "sync", "data": list(self.hub.items.values())},
                }
                self.transport.write(frame(orjson.dumps(sync)))
                self.hub.members[self] = None
        self.buf = buf


async def main_async(args: argparse.Namespace) -> None:
    """Serve until killed."""
    hub = Hub(args.mode)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Conn(hub), args.host, args.port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3103)
    parser.add_argument("--mode", choices=["direct", "coalesce"], default="coalesce")
    args = parser.parse_args()
    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
