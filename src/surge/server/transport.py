"""Where an outbox's frames go: the ``Transport`` interface and its two implementations.

The outbox (``server/outbox.py``) owns the slow-consumer policy and the ordering; a transport
only moves frames to the peer. Both implementations take frames in batches with ``write_many``
(one call per connection per loop iteration, from the outbox's ``Flusher``), expose the bytes
they hold but the peer has not taken (``buffered_bytes``, counted by the outbox's byte cap), and
end with ``close`` or ``abort``:

- ``DirectTransport``, the fast path. Through ASGI every frame costs one ``send`` call, one
  websockets ``Frame.serialize`` and one ``write`` system call per connection; at fan-out that is
  most of the server's CPU (bench/README.md). Under uvicorn's websockets Sans-I/O protocol the
  connection's asyncio transport is reachable from its ASGI ``send``: ``write_many`` writes the
  batch as ONE ``transport.write`` of bytes built once per message for every connection
  (``Frame.wire``), inline. Only whole, unmasked text frames are written this way, and only while
  the protocol is open and uvicorn's flow control has not paused the transport; the handshake,
  pings and the close stay with uvicorn. When per-message compression was negotiated the frames
  go through the connection's own websockets protocol (which compresses per connection), still
  one write. It reads uvicorn internals (``conn``, ``transport``, ``writable``, ``close_sent``):
  uvicorn is pinned to the tested minor range, and a test under real uvicorn fails when this
  path is not taken.
- ``LeanDirectTransport``, the same fast path over Surge's own protocol
  (``surge.server.ws_protocol.LeanWebSocketProtocol``, the default): it reads that protocol's
  public ``transport``, ``is_open``, ``is_gone``, ``is_paused`` and ``wait_writable``, no
  uvicorn internals.
- ``AsgiTransport``, for every other case (another server, a mount under another ASGI app that
  wraps ``send``, the in-process TestClient): ``write_many`` only buffers; the outbox's writer
  task ``drain``s the buffer through ASGI ``send``, one message per frame.

``flushes_inline`` tells the outbox which of the two it has: True when ``write_many`` puts the
bytes on the socket at once, so the writer task sleeps unless flow control pauses the transport.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from starlette.types import Send
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from surge.server.stats import STATS
from surge.server.ws_protocol import LeanWebSocketProtocol

if TYPE_CHECKING:
    from surge.protocol.codec import Frame
    from surge.server.write_batch import WriteBatch

__all__ = [
    "AsgiTransport",
    "DirectTransport",
    "LeanDirectTransport",
    "Transport",
    "direct_transport",
]


class Transport(Protocol):
    """What an ``Outbox`` writes through (see the module docstring)."""

    @property
    def kind(self) -> str:
        """``"direct"`` or ``"asgi"`` (for tests, stats and logs)."""
        ...

    @property
    def flushes_inline(self) -> bool:
        """True when ``write_many`` hands the bytes to the socket at once; False when the
        writer task must ``drain`` to send them."""
        ...

    @property
    def writes_wire(self) -> bool:
        """True when ``write_many`` writes each frame's ``wire`` as is (so a pre-joined
        ``FrameBlock`` may be handed over whole); False when it needs the frames one by one."""
        ...

    @property
    def is_writable(self) -> bool:
        """True when a ``write_many`` now would not exceed the transport's flow-control mark."""
        ...

    @property
    def is_gone(self) -> bool:
        """True once nothing more can reach the peer."""
        ...

    @property
    def buffered_bytes(self) -> int:
        """Bytes handed over and not yet taken by the peer."""
        ...

    def write_many(self, frames: list[Frame]) -> None:
        """Hand frames over, in order, without waiting."""
        ...

    def write_now(self, frame: Frame) -> bool:
        """Put one frame on the socket at once when ``is_writable`` (as ``write_many`` would)
        and say so; False, with nothing written, when it cannot go out at once."""
        ...

    async def drain(self) -> None:
        """Send what ``write_many`` buffered and wait until the transport is writable again
        (or gone)."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close the WebSocket after everything handed over."""
        ...

    def abort(self) -> None:
        """Drop the connection at once (a peer that stopped reading cannot receive a close)."""
        ...

    def use_batch(self, batch: WriteBatch) -> None:
        """Let ``batch`` collect this transport's socket writes during a fan-out and write them
        on two threads (``surge.server.write_batch``); a transport that cannot ignores it."""
        ...


class DirectTransport:
    """Coalesced frame writes for one uvicorn websockets-sansio connection."""

    __slots__ = ("_compressed", "_conn", "_protocol", "_send", "_transport", "writes_wire")

    kind = "direct"
    flushes_inline = True

    def __init__(self, protocol: Any, send: Send | None = None) -> None:
        self._protocol = protocol
        self._conn = protocol.conn
        self._transport: asyncio.Transport = protocol.transport
        self._send = send
        # permessage-deflate keeps per-connection state: frames must go through the protocol.
        self._compressed = bool(protocol.conn.extensions)
        self.writes_wire = not self._compressed

    @classmethod
    def from_asgi_send(cls, send: Any) -> DirectTransport | None:
        """The direct path for this ASGI ``send``, or None when the server is not supported."""
        protocol = getattr(send, "__self__", None)
        if not isinstance(protocol, WebSocketsSansIOProtocol):
            return None
        needed = ("conn", "transport", "writable", "close_sent")
        if not all(hasattr(protocol, name) for name in needed):
            return None
        return cls(protocol, send)

    @property
    def is_writable(self) -> bool:
        """True when a write now goes out without exceeding the transport's high-water mark."""
        protocol = self._protocol
        return bool(
            protocol.writable.is_set()
            and not protocol.close_sent
            and self._conn.state is State.OPEN
            and not self._transport.is_closing()
        )

    @property
    def is_gone(self) -> bool:
        """True once nothing can be written any more."""
        protocol = self._protocol
        return bool(
            protocol.close_sent
            or self._conn.state is not State.OPEN
            or self._transport.is_closing()
            or getattr(protocol, "disconnected", False)
        )

    @property
    def buffered_bytes(self) -> int:
        """Bytes handed to the transport and not yet taken by the peer's socket."""
        return self._transport.get_write_buffer_size()

    async def drain(self) -> None:
        """Wait until uvicorn's flow control lets writes through (or the peer is gone)."""
        await self._protocol.writable.wait()

    def write_many(self, frames: list[Frame]) -> None:
        """Write the frames as one transport write."""
        if self._compressed:
            conn = self._conn
            for frame in frames:
                conn.send_text(frame.text.encode())
            self._transport.write(b"".join(conn.data_to_send()))
        elif len(frames) == 1:
            self._transport.write(frames[0].wire)
        else:
            self._transport.write(b"".join([frame.wire for frame in frames]))
        STATS.writes += 1

    def write_now(self, frame: Frame) -> bool:
        """``write_many([frame])`` when writable."""
        if not self.is_writable:
            return False
        self.write_many([frame])
        return True

    async def close(self, code: int, reason: str) -> None:
        """Hand the close to uvicorn (it writes the close frame and ends the handshake)."""
        if self._send is not None:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    def abort(self) -> None:
        """Drop the connection at once."""
        self._transport.abort()

    def use_batch(self, batch: WriteBatch) -> None:
        """Ignored: uvicorn's protocol writes these frames."""


class LeanDirectTransport:
    """Coalesced frame writes for one ``LeanWebSocketProtocol`` connection (Surge's own).

    A write goes to the socket with ``os.write`` while the transport holds nothing unsent: the
    same one system call the transport would make, but with the GIL released (uvloop keeps it
    through its ``write``), so the store's writer thread runs meanwhile instead of waiting for
    the loop's socket writes. Whatever the socket does not take at once (a full socket buffer, a
    partial write, an error) goes to the transport as before, which buffers it, applies flow
    control or meets the error and closes the connection. Never once the transport is closing
    (its descriptor may be closed and reused), nor under TLS (``_fd`` is -1).
    """

    __slots__ = ("_batch", "_batch_generation", "_fd", "_protocol", "_transport")

    kind = "direct"
    flushes_inline = True
    writes_wire = True

    def __init__(self, protocol: LeanWebSocketProtocol) -> None:
        self._protocol = protocol
        transport: asyncio.Transport = protocol.transport
        self._transport = transport
        sock = transport.get_extra_info("socket")
        plain = sock is not None and transport.get_extra_info("sslcontext") is None
        self._fd: int = sock.fileno() if plain else -1
        self._batch: WriteBatch | None = None
        self._batch_generation = 0

    def use_batch(self, batch: WriteBatch) -> None:
        """Hand direct writes to ``batch`` while it collects (``surge.server.write_batch``)."""
        self._batch = batch

    @property
    def fd(self) -> int:
        """The socket's descriptor for a direct write, or -1 (TLS, or the transport closing)."""
        return -1 if self._transport.is_closing() else self._fd

    def write_rest(self, data: bytes) -> None:
        """What the socket did not take of a batched write: to the transport, as ``_send``."""
        self._transport.write(data)

    @property
    def is_writable(self) -> bool:
        """True when a write now goes out without exceeding the transport's high-water mark."""
        protocol = self._protocol
        return not protocol.is_paused and protocol.is_open

    @property
    def is_gone(self) -> bool:
        """True once nothing can be written any more."""
        return self._protocol.is_gone

    @property
    def buffered_bytes(self) -> int:
        """Bytes handed to the transport and not yet taken by the peer's socket."""
        return self._transport.get_write_buffer_size()

    async def drain(self) -> None:
        """Wait until flow control lets writes through (or the peer is gone)."""
        await self._protocol.wait_writable()

    def write_many(self, frames: list[Frame]) -> None:
        """Write the frames as one system call (see the class docstring)."""
        self._send(frames[0].wire if len(frames) == 1 else b"".join([f.wire for f in frames]))

    def write_now(self, frame: Frame) -> bool:
        """``write_many([frame])`` when writable, in one call (the fan-out's per-connection
        path, ``Outbox.put`` during ``Flusher.begin_fan_out``)."""
        protocol = self._protocol
        if protocol.is_paused or not protocol.is_open:
            return False
        self._send(frame.wire)
        return True

    def _send(self, data: bytes) -> None:
        STATS.writes += 1
        batch = self._batch
        if batch is not None and batch.is_collecting:
            self._send_batched(batch, data)
            return
        transport = self._transport
        if self._fd >= 0 and not transport.get_write_buffer_size() and not transport.is_closing():
            try:
                sent = os.write(self._fd, data)
            except OSError:  # EAGAIN, EINTR, or an error the transport's write will meet too
                sent = 0
            if sent == len(data):
                return
            if sent:
                data = data[sent:]
        transport.write(data)

    def _send_batched(self, batch: WriteBatch, data: bytes) -> None:
        """``_send`` during a batch: what would go to the socket itself goes to the batch."""
        if self._batch_generation == batch.generation:
            batch.drain()  # written twice in one batch: what came first goes first
        transport = self._transport
        if self._fd >= 0 and not transport.get_write_buffer_size() and not transport.is_closing():
            self._batch_generation = batch.generation
            batch.add(self, data)
        else:
            transport.write(data)

    async def close(self, code: int, reason: str) -> None:
        """Hand the close to the protocol (it writes the close frame, waits for the reply)."""
        await self._protocol.send({"type": "websocket.close", "code": code, "reason": reason})

    def abort(self) -> None:
        """Drop the connection at once."""
        self._transport.abort()


def direct_transport(send: Any) -> DirectTransport | LeanDirectTransport | None:
    """The direct path for this ASGI ``send``, or None when the server is not supported."""
    protocol = getattr(send, "__self__", None)
    if isinstance(protocol, LeanWebSocketProtocol):
        return LeanDirectTransport(protocol)
    return DirectTransport.from_asgi_send(send)


class AsgiTransport:
    """Frames through ASGI ``send``, one message per frame, from a buffer drained by the writer."""

    __slots__ = ("_abort", "_buffer", "_bytes", "_is_gone", "_send")

    kind = "asgi"
    flushes_inline = False
    writes_wire = False

    def __init__(self, send: Send, abort: Callable[[], None] | None = None) -> None:
        self._send = send
        self._abort = abort
        self._buffer: deque[Frame] = deque()
        self._bytes = 0
        self._is_gone = False

    @property
    def is_writable(self) -> bool:
        """Always, until gone: the outbox's byte cap bounds what waits here."""
        return not self._is_gone

    @property
    def is_gone(self) -> bool:
        """True once a send failed, the close went out, or the connection was aborted."""
        return self._is_gone

    @property
    def buffered_bytes(self) -> int:
        """Bytes of the frames waiting for ``drain``."""
        return self._bytes

    def write_many(self, frames: list[Frame]) -> None:
        """Buffer the frames for the writer task's ``drain``."""
        if self._is_gone:
            return
        self._buffer.extend(frames)
        self._bytes += sum(frame.size for frame in frames)

    def write_now(self, frame: Frame) -> bool:
        """Never: frames reach the peer only through ``drain``."""
        return False

    async def drain(self) -> None:
        """Send the buffered frames, one ASGI message each, in order."""
        buffer = self._buffer
        try:
            while buffer and not self._is_gone:
                frame = buffer[0]
                await self._send({"type": "websocket.send", "text": frame.text})
                buffer.popleft()
                self._bytes -= frame.size
                STATS.writes += 1
        except BaseException:
            self._gone()
            raise

    async def close(self, code: int, reason: str) -> None:
        """Send what is buffered, then the close."""
        await self.drain()
        if self._is_gone:
            return
        self._is_gone = True
        await self._send({"type": "websocket.close", "code": code, "reason": reason})

    def abort(self) -> None:
        """Drop what is buffered and end the connection through the endpoint's callback."""
        self._gone()
        if self._abort is not None:
            self._abort()

    def use_batch(self, batch: WriteBatch) -> None:
        """Ignored: every frame goes through ASGI ``send``."""

    def _gone(self) -> None:
        self._is_gone = True
        self._buffer.clear()
        self._bytes = 0
