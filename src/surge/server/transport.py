"""Writing fan-out frames straight to a connection's transport, coalesced.

Why: through ASGI every frame costs one ``send`` call, one websockets ``Frame.serialize`` and one
``write`` system call per connection; at fan-out that is most of the server's CPU
(bench/README.md). Under uvicorn's websockets Sans-I/O protocol the connection's transport is
reachable from its ASGI ``send``; ``DirectTransport`` writes the frames queued for a connection
as ONE ``transport.write`` of bytes that were built once per message for every connection
(``Frame.wire``).

Only whole, unmasked text frames are written this way, and only while the protocol is open and
its transport is not paused (uvicorn's flow control); everything else (the handshake, closes,
pings) stays with uvicorn. When per-message compression was negotiated the frames go through the
connection's own websockets protocol (which compresses per connection), still coalesced. Any
other server: no ``DirectTransport``, and the outbox uses ASGI ``send``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

if TYPE_CHECKING:
    from surge.protocol.codec import Frame

__all__ = ["DirectTransport"]


class DirectTransport:
    """Coalesced frame writes for one uvicorn websockets-sansio connection."""

    __slots__ = ("_compressed", "_conn", "_protocol", "_transport")

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self._conn = protocol.conn
        self._transport: asyncio.Transport = protocol.transport
        # permessage-deflate keeps per-connection state: frames must go through the protocol.
        self._compressed = bool(protocol.conn.extensions)

    @classmethod
    def from_asgi_send(cls, send: Any) -> DirectTransport | None:
        """The direct path for this ASGI ``send``, or None when the server is not supported."""
        protocol = getattr(send, "__self__", None)
        if not isinstance(protocol, WebSocketsSansIOProtocol):
            return None
        needed = ("conn", "transport", "writable", "close_sent")
        if not all(hasattr(protocol, name) for name in needed):
            return None
        return cls(protocol)

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

    async def wait_writable(self) -> None:
        """Wait until uvicorn's flow control lets writes through (or the peer is gone)."""
        await self._protocol.writable.wait()

    def write(self, frames: list[Frame]) -> None:
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

    def abort(self) -> None:
        """Drop the connection at once (a peer that stopped reading cannot receive a close)."""
        self._transport.abort()
