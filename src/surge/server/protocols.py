"""Surge's uvicorn protocols: every connection bounded in bytes and time before the app sees it.

uvicorn parses HTTP and WebSocket frames itself, below the ASGI app, so some attacks never reach
Surge's code: a request head sent one byte a minute (slowloris), a 64 MiB header that httptools
buffers whole, a flood of pings whose pongs the peer never reads (uvicorn writes each pong
regardless of back-pressure), a tracebacks-per-frame log flood for invalid UTF-8. These two
subclasses close those gaps and change nothing else:

- ``SurgeHttpProtocol`` (httptools): the request head (request line and headers) must arrive
  within ``Limits.header_timeout`` (else 408 and close) and fit in ``Limits.max_header_bytes``
  (else 431 and close). Idle keep-alive connections are closed by uvicorn's own
  ``timeout_keep_alive``.
- ``SurgeWebSocketProtocol`` (websockets Sans-I/O): a peer whose unread output (pongs, frames,
  closes) exceeds ``Limits.max_outbound_bytes`` is dropped; invalid UTF-8 is one info line, not
  a traceback; a refused upgrade (an HTTP answer through ``websocket.http.response``) counts as a
  completed handshake, so uvicorn does not log a spurious error; an exception while parsing
  drops that one connection with one line.
  It also keeps one connection from holding the event loop: a read (up to 256 KiB, over ten
  thousand tiny frames, ~65 ms of parsing at once) is parsed ``PARSE_SLICE`` bytes at a time,
  the next slice only once the app has taken the messages of the previous one (reading stays
  paused meanwhile), so a flood is parsed at the pace the app drops it and other connections'
  callbacks run in between. After the server sent its close, at most ``AFTER_CLOSE_BYTES`` more
  are parsed (room for the peer's close reply); the rest is read and discarded unparsed, so a
  client that keeps flooding a closed connection costs a memcpy per read until it is aborted.

The limits travel on the uvicorn ``Config`` (``SURGE_LIMITS_ATTR``) so that ``--workers``
processes, which get a pickled copy of it, apply the same ones. Tested against the uvicorn range
pinned in pyproject.toml (``tests/unit/server/test_protocols.py`` fails if an upgrade moves the
attributes these classes rely on).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from surge.config import Limits
from surge.server.logs import CLIENT_MISTAKES

__all__ = ["SURGE_LIMITS_ATTR", "SurgeHttpProtocol", "SurgeWebSocketProtocol", "limits_of"]

logger = logging.getLogger(__name__)
SURGE_LIMITS_ATTR = "surge_limits"
PARSE_SLICE = 8 * 1024  # ~400 tiny frames, ~2 ms of parsing
AFTER_CLOSE_BYTES = 16 * 1024
_HEAD_END = b"\r\n\r\n"
_client_mistakes = CLIENT_MISTAKES


def limits_of(config: Any) -> Limits:
    """The Surge limits carried by a uvicorn ``Config`` (the defaults when it carries none)."""
    limits = getattr(config, SURGE_LIMITS_ATTR, None)
    return limits if isinstance(limits, Limits) else Limits()


def _peer(transport: asyncio.BaseTransport | None) -> str:
    if transport is None:
        return "?"
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"


def _status_line(status: int, phrase: str) -> bytes:
    return (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(phrase)}\r\nconnection: close\r\n\r\n{phrase}"
    ).encode()


class SurgeHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a byte cap on every request head."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        limits = limits_of(config)
        self._max_head = limits.max_header_bytes
        self._head_timeout = limits.header_timeout
        self._head_bytes = 0
        self._in_head = True
        self._tail = b""
        self._head_timer: asyncio.TimerHandle | None = None
        self._has_answered = False  # a response completed on this connection (drain_step)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            # Count only the head: it ends at the first blank line (a body may follow in the
            # same read). Bytes are counted before httptools buffers them.
            window = self._tail + data
            end = window.find(_HEAD_END)
            counted = len(data) if end < 0 else max(0, end + len(_HEAD_END) - len(self._tail))
            self._head_bytes += counted
            self._tail = window[-3:] if end < 0 else b""
            if self._head_bytes > self._max_head:
                self._refuse(431, "Request Header Fields Too Large", "request head over the limit")
                return
        try:
            super().data_received(data)
        except Exception as exc:  # a parser state uvicorn does not expect: drop this one
            if _client_mistakes.allow():
                peer = _peer(self.transport)
                logger.info("%s: dropped after an HTTP parse failure: %r", peer, exc)
            self.transport.abort()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        # The next head is counted from its first byte; its deadline starts with it (meanwhile
        # uvicorn's keep-alive timeout closes an idle connection).
        self._in_head = True
        self._head_bytes = 0
        self._tail = b""
        self._has_answered = True
        super().on_response_complete()

    def handle_websocket_upgrade(self) -> None:
        """Hand the parsed upgrade to Surge's own WebSocket protocol (``surge.server.ws_protocol``)
        as it is; uvicorn's own classes get the request rebuilt as bytes, as uvicorn does."""
        take_over = getattr(self.ws_protocol_class, "from_http_upgrade", None)
        if take_over is None:
            super().handle_websocket_upgrade()
            return
        self.connections.discard(self)
        self._cancel_head_timer()
        take_over(
            self.config, self.server_state, self.app_state, self.transport, self.scope, self.url
        )

    def drain_step(self, *, close_fresh: bool) -> None:
        """One step of a graceful drain (``surge.server.serve.SurgeServer``, called repeatedly).

        A request in progress finishes and its connection closes after the response; an idle
        keep-alive connection closes now; a head that is arriving gets its own deadline; a
        connection accepted but silent so far is closed only once ``close_fresh`` (it connected
        before the listener closed and is about to send its request: closing it now would be a
        refused connection).
        """
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False
            return
        if self._in_head and self._head_bytes > 0:
            return
        if not self._has_answered and not close_fresh:
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None and self._head_timeout > 0:
            self._head_timer = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport is None or self.transport.is_closing():
            return
        self._refuse(408, "Request Timeout", "request head not received in time")

    def _refuse(self, status: int, phrase: str, why: str) -> None:
        self._cancel_head_timer()
        if _client_mistakes.allow():
            logger.info("%s: %s: %d", _peer(self.transport), why, status)
        if not self.transport.is_closing():
            self.transport.write(_status_line(status, phrase))
            self.transport.close()


class SurgeWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets Sans-I/O protocol with a byte cap on unread output."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._max_unread = limits_of(config).max_outbound_bytes
        # Read but not parsed yet (see the module docstring), from _unparsed_at on.
        self._unparsed = b""
        self._unparsed_at = 0
        self._after_close = 0

    def data_received(self, data: bytes) -> None:
        if self.close_sent:
            # Room for the peer's close reply; a peer still flooding is not worth parsing.
            if self._after_close >= AFTER_CLOSE_BYTES:
                return
            self._after_close += len(data)
            self._parse(data)
            return
        if self._unparsed_at < len(self._unparsed):
            # Reading resumed by a path we do not control: keep the order, pause again.
            self._unparsed = self._unparsed[self._unparsed_at :] + data
            self._unparsed_at = 0
            self._pause()
            return
        if len(data) <= PARSE_SLICE:
            self._parse(data)
            return
        self._unparsed, self._unparsed_at = data, 0
        self._pause()
        self._parse_slice()
        if self.queue.empty():
            self._parse_more()

    def _pause(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _parse_slice(self) -> None:
        start = self._unparsed_at
        end = start + PARSE_SLICE
        self._unparsed_at = end
        data = self._unparsed[start:end]
        if end >= len(self._unparsed):
            self._unparsed, self._unparsed_at = b"", 0
        self._parse(data)

    def _parse_more(self) -> None:
        """The app has taken every message: parse the next slice, or read again."""
        while self._unparsed and not self.close_sent and not self.transport.is_closing():
            self._parse_slice()
            if not self.queue.empty():
                return
            if self._unparsed:
                # A slice without a message for the app (pings, part of a big frame): go on
                # after the other ready callbacks, not in this one.
                self.loop.call_soon(self._parse_more)
                return
        self._unparsed, self._unparsed_at = b"", 0
        if self.read_paused and self.queue.empty() and not self.transport.is_closing():
            self.read_paused = False
            self.transport.resume_reading()

    async def receive(self) -> Any:
        message = await self.queue.get()
        if self.read_paused and self.queue.empty():
            self._parse_more()
        return message

    def _parse(self, data: bytes) -> None:
        try:
            super().data_received(data)
        except Exception as exc:
            if _client_mistakes.allow():
                peer = _peer(self.transport)
                logger.info("%s: WebSocket dropped after a protocol failure: %r", peer, exc)
            self.transport.abort()
            return
        transport = self.transport
        if not transport.is_closing() and transport.get_write_buffer_size() > self._max_unread:
            # It keeps sending (pings) but does not read what we answer: drop it.
            if _client_mistakes.allow():
                peer = _peer(transport)
                logger.info("%s: WebSocket dropped: over %d unread bytes", peer, self._max_unread)
            transport.abort()

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type != "text":
            super().send_receive_event_to_app()
            return
        # uvicorn's text path, with invalid UTF-8 as one line instead of a traceback per frame.
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return
        try:
            text = data.decode()
        except UnicodeDecodeError:
            if _client_mistakes.allow():
                logger.info("%s: WebSocket closed 1007: invalid UTF-8", _peer(self.transport))
            self.conn.send_close(1007, "invalid UTF-8")
            self.handle_parser_exception()
            return
        self.queue.put_nowait({"type": "websocket.receive", "text": text})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # The refusal was the whole answer: the handshake is over, uvicorn must not log
            # "ASGI callable returned without completing handshake".
            self.handshake_complete = True
