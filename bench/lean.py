"""Lean load-generator clients: WebSocket and Socket.IO subscribers, and an HTTP/1.1 writer.

Why not the websockets library or python-socketio's client: per received message they cost about
as much CPU as the server spends sending it, so the load generator would measure itself. These
are asyncio ``Protocol``s over raw sockets that do the least the wire allows:

- the WebSocket handshake is written by hand (one HTTP upgrade request, no extension offered, so
  no compression); the 101 answer is checked by its status line only;
- server frames are unmasked: each frame costs a header parse and, when counting, no copy at
  all (headers are read in place from the receive buffer);
- client frames (joins, pongs, closes) are masked as RFC 6455 requires;
- Socket.IO is Engine.IO v4 over the websocket transport only: ``0{...}`` open -> send ``40``;
  ``40{...}`` namespace connected -> send ``421["join",room]``; ``431[...]`` join ack; ``2`` ping
  -> ``3`` pong; ``42[...]`` is an event, counted like a Surge change.

A ``Stats`` object is shared by all the connections of one process; receipt times are taken once
per ``data_received`` call (every frame of one read arrived together).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
import zlib
from collections.abc import Callable
from typing import Any, Literal

__all__ = [
    "HttpConnection",
    "Stats",
    "Subscriber",
    "latency_marker",
    "mask_frame",
]

Kind = Literal["surge", "sio"]
Mode = Literal["count", "latency"]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
# The writer embeds its send time (time.monotonic_ns, system-wide on Linux) in the description.
LATENCY_MARK = b'"description":"L'
SYNC_MARK = b'"type":"sync"'


def latency_marker(t0_ns: int, size: int) -> str:
    """A description of ``size`` characters that carries the send time ``t0_ns``."""
    head = f"L{t0_ns}-"
    return head + "x" * max(0, size - len(head))


def mask_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One masked client frame (FIN set) carrying ``payload``."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    repeated = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
    return head + key + masked


def _upgrade_request(host: str, port: int, path: str, *, deflate: bool) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    # Browsers and the `ws` client offer permessage-deflate; the lean client does only on request.
    extension = (
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        if deflate
        else ""
    )
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{extension}\r\n"
    ).encode()


class Stats:
    """Counters shared by every subscriber of one load-generator process."""

    __slots__ = (
        "close_codes",
        "closed",
        "first_ns",
        "frames",
        "last_ns",
        "latencies",
        "refused",
        "sent_at",
        "synced",
    )

    def __init__(self) -> None:
        self.frames = 0  # data frames (changes / Socket.IO events) after the sync
        self.synced = 0
        self.closed = 0
        self.refused = 0  # upgrades answered with something other than 101
        self.close_codes: dict[int, int] = {}
        self.first_ns = 0
        self.last_ns = 0
        self.latencies: list[int] = []  # ns, latency mode only
        self.sent_at: list[int] = []  # the POST start of each latency sample

    def reset(self) -> None:
        """Forget the frames counted so far (not the connections)."""
        self.frames = 0
        self.first_ns = 0
        self.last_ns = 0
        self.latencies = []
        self.sent_at = []


class Subscriber(asyncio.Protocol):
    """One WebSocket connection that joins one group (or Socket.IO room) and counts frames."""

    def __init__(
        self,
        stats: Stats,
        *,
        kind: Kind,
        host: str,
        port: int,
        group: str,
        mode: Mode = "count",
        deflate: bool = False,
        on_synced: Callable[[Subscriber], None] | None = None,
        on_lost: Callable[[Subscriber], None] | None = None,
    ) -> None:
        self.stats = stats
        self.kind = kind
        self.mode = mode
        self.group = group
        self.on_synced = on_synced
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.is_open = False
        self.is_synced = False
        self.is_lost = False
        self.synced_ns = 0
        self._buf = b""
        self._text: list[bytes] = []  # fragments of a message in progress (rare)
        path = "/socket.io/?EIO=4&transport=websocket" if kind == "sio" else "/"
        self._upgrade = _upgrade_request(host, port, path, deflate=deflate)
        self._handshake = b""
        # permessage-deflate, when the server accepted it: frames with RSV1 are compressed. Only
        # latency mode inflates them (it must read the send time); counting needs no payload.
        self.is_compressed = False
        self._inflate: Any = None

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self._upgrade)

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_lost = True
        self.stats.closed += 1
        if self.on_lost is not None:
            self.on_lost(self)

    def data_received(self, data: bytes) -> None:
        if not self.is_open:
            data = self._finish_handshake(data)
            if not data:
                return
        now = time.monotonic_ns()
        buf = self._buf + data if self._buf else data
        n = len(buf)
        pos = 0
        while n - pos >= 2:
            length = buf[pos + 1] & 0x7F
            if length < 126:
                start = pos + 2
            elif length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            else:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > n:
                break
            b0 = buf[pos]
            opcode = b0 & 0x0F
            if opcode == OP_TEXT and b0 & 0x80:
                if b0 & 0x40 and self._inflate is not None:
                    plain = self._inflate.decompress(buf[start:end] + b"\x00\x00\xff\xff")
                    self._on_text(plain, 0, len(plain), now)
                else:
                    self._on_text(buf, start, end, now)
            elif opcode in (OP_TEXT, OP_CONT):
                self._text.append(buf[start:end])
                if b0 & 0x80:
                    whole = b"".join(self._text)
                    self._text = []
                    self._on_text(whole, 0, len(whole), now)
            elif opcode == OP_PING:
                self._write(mask_frame(buf[start:end], OP_PONG))
            elif opcode == OP_CLOSE:
                code = int.from_bytes(buf[start : start + 2], "big") if length >= 2 else 1005
                codes = self.stats.close_codes
                codes[code] = codes.get(code, 0) + 1
                self._write(mask_frame(buf[start : start + 2], OP_CLOSE))
                if self.transport is not None:
                    self.transport.close()
            pos = end
        self._buf = buf[pos:] if pos < n else b""

    # -- messages ------------------------------------------------------------------------------

    def _on_text(self, buf: bytes, start: int, end: int, now: int) -> None:
        if self.kind == "sio":
            first = buf[start]
            if first == 0x34 and end - start >= 2 and buf[start + 1] == 0x32:  # "42": an event
                self._count(buf, start, end, now)
            elif first == 0x32 and end - start == 1:  # "2": Engine.IO ping
                self._write(mask_frame(b"3"))
            elif first == 0x30:  # "0{...}": Engine.IO open -> connect to the namespace
                self._write(mask_frame(b"40"))
            elif buf.startswith(b"40", start):  # namespace connected -> join the room, with ack
                self._write(mask_frame(b'421["join","' + self.group.encode() + b'"]'))
            elif buf.startswith(b"431", start):  # the join's ack
                self._synced(now)
            return
        if self.is_synced:
            self._count(buf, start, end, now)
        elif (self.is_compressed and self._inflate is None) or buf.find(SYNC_MARK, start, end) >= 0:
            # Compressed and not inflated: the first frame after a join is its sync.
            self._synced(now)

    def _count(self, buf: bytes, start: int, end: int, now: int) -> None:
        stats = self.stats
        stats.frames += 1
        if not stats.first_ns:
            stats.first_ns = now
        stats.last_ns = now
        if self.mode == "latency":
            i = buf.find(LATENCY_MARK, start, end)
            if i >= 0:
                i += len(LATENCY_MARK)
                j = buf.find(b"-", i, end)
                t0 = int(buf[i:j])
                stats.latencies.append(now - t0)
                stats.sent_at.append(t0)

    def _synced(self, now: int) -> None:
        if self.is_synced:
            return
        self.is_synced = True
        self.synced_ns = now
        self.stats.synced += 1
        if self.on_synced is not None:
            self.on_synced(self)

    # -- handshake and writes ------------------------------------------------------------------

    def _finish_handshake(self, data: bytes) -> bytes:
        self._handshake += data
        end = self._handshake.find(b"\r\n\r\n")
        if end < 0:
            return b""
        head, rest = self._handshake[:end], self._handshake[end + 4 :]
        self._handshake = b""
        if not head.startswith(b"HTTP/1.1 101"):
            self.stats.refused += 1
            if self.transport is not None:
                self.transport.close()
            return b""
        self.is_open = True
        if b"permessage-deflate" in head.lower():
            self.is_compressed = True
            if self.mode == "latency":
                self._inflate = zlib.decompressobj(wbits=-15)
        if self.kind == "surge":
            self._write(mask_frame(self.join_frame()))
        return rest

    def join_frame(self) -> bytes:
        """The Surge join for this subscriber's group."""
        return (
            b'{"type":"join","data":{"streamName":"todo","groupId":"'
            + self.group.encode()
            + b'","subscriptionId":"s1"}}'
        )

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            # uvloop: a transport whose peer went away may be closed without is_closing().
            with contextlib.suppress(RuntimeError):
                self.transport.write(data)

    def close(self, code: int = 1001) -> None:
        """Send a close frame and drop the connection (no wait for the echo)."""
        if self.transport is not None and not self.transport.is_closing():
            self._write(mask_frame(code.to_bytes(2, "big"), OP_CLOSE))
            self.transport.close()


class HttpConnection(asyncio.Protocol):
    """A keep-alive HTTP/1.1 client connection: one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = b""
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def is_lost(self) -> bool:
        """The connection is gone (the server closed it, or it was reset)."""
        return self._lost.done()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("server closed the connection"))
        if not self._lost.done():
            self._lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = buf[:end]
        length = 0
        i = head.lower().find(b"content-length:")
        if i >= 0:
            j = head.find(b"\r\n", i)
            length = int(head[i + 15 : j if j >= 0 else len(head)])
        total = end + 4 + length
        if len(buf) < total:
            return
        status = int(head[9:12])
        body = buf[end + 4 : total]
        self._buf = buf[total:]
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body))

    def request(self, raw: bytes) -> asyncio.Future[tuple[int, bytes]]:
        """Write one complete request; the future gets (status, body)."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("connection is closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self._waiter


def post_request(host: str, port: int, path: str, body: bytes) -> bytes:
    """A complete keep-alive ``POST`` with a JSON body."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
