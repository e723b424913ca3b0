"""Surge's own uvicorn WebSocket protocol: RFC 6455 in one small object per connection.

uvicorn's websockets Sans-I/O protocol keeps, for each connection's whole life, the handshake it
parsed (websockets ``Request``, ``Response``, ``Headers``), a ``ServerProtocol`` with its reader
generator, an ``asyncio.Queue`` and an ``Event``: ~14 KB of a 25.6 KB idle subscribed connection
(bench/README.md, "idle memory"), and about half of a join's CPU in a join storm.
``LeanWebSocketProtocol`` (this module) is one ``__slots__`` object instead, the default of
``surge.server.serve.uvicorn_config``:

- **The upgrade** is handed over by ``SurgeHttpProtocol`` already parsed (its ASGI scope, turned
  into the WebSocket scope in place): no request is rebuilt and parsed again, no address is
  looked up again. The handshake is checked as websockets checks it (method GET, HTTP/1.1, one
  base64 ``Sec-WebSocket-Key`` of 16 bytes, ``Sec-WebSocket-Version: 13``; 400 or 405 otherwise,
  before the app is called); the 101 carries the subprotocol the app chose and uvicorn's default
  headers. Extensions offered are declined (with ``Limits(compression=True)`` uvicorn serves
  ``surge.server.protocols.SurgeWebSocketProtocol`` instead: permessage-deflate needs
  websockets' per-connection state).
- **Frames** are parsed here: masked client frames only, no reserved bits, control frames of at
  most 125 bytes and never fragmented, continuation frames only inside a fragmented message, a
  message over ``ws_max_size`` closed with 1009 as soon as its header says so, invalid UTF-8 in a
  text message (or a close reason) 1007 with one info line, other protocol errors 1002. Pings are
  answered with a pong of the same payload; uvicorn's keepalive (a ping every
  ``ws_ping_interval``, 1011 when its pong is not back within ``ws_ping_timeout``) is kept. The
  closing handshake: a peer's close is echoed and the TCP connection closed; the server's close
  waits up to ``CLOSE_TIMEOUT`` for the peer's, then aborts. A closed connection whose peer does
  not take what is still buffered within ``CLOSE_TIMEOUT`` is aborted too (``_close_transport``).
- **The limits of ``surge.server.protocols``** hold unchanged: unread output over
  ``Limits.max_outbound_bytes`` (pongs to a ping flood) drops the peer; parsing is lazy, one
  message at a time at the pace the app takes them (reading stays paused while a message waits),
  at most ``PARSE_SLICE`` bytes per callback when a read holds no message for the app (pings),
  and at most ``AFTER_CLOSE_BYTES`` after the server's close.
- **The ASGI interface** uvicorn offers (``receive``, ``send`` with ``websocket.accept``,
  ``websocket.send``, ``websocket.close``, ``websocket.http.response.start``/``.body`` for
  refusals), plus what ``surge.server.transport.DirectTransport`` needs to write frames itself:
  ``transport``, ``is_open``, ``is_gone``, ``is_paused`` and ``wait_writable``. What would wait
  (a receive, a paused writer) gets a future only while it waits.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import hashlib
import logging
import random
import struct
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.utils import ClientDisconnected
from websockets.speedups import apply_mask

from surge.server.logs import CLIENT_MISTAKES
from surge.server.protocols import AFTER_CLOSE_BYTES, PARSE_SLICE, limits_of

__all__ = ["CLOSE_TIMEOUT", "LeanWebSocketProtocol", "accept_key", "encode_frame"]

logger = logging.getLogger(__name__)
_uvicorn_logger = logging.getLogger("uvicorn.error")
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CLOSE_TIMEOUT = 10.0
"""How long the server waits for the peer's answer to its close (uvicorn's value)."""
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0, 1, 2, 8, 9, 10
# websockets' EXTERNAL_CLOSE_CODES: what a peer may send (plus 3000-4999).
_PEER_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)
_client_mistakes = CLIENT_MISTAKES
_NO_SCOPE: dict[str, Any] = {}  # a detached connection's scope: never written to


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key`` (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One whole unmasked server frame."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, size) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, size) + payload


def _check_close_code(code: Any) -> None:
    """Refuse an app's close code that RFC 6455 does not let an endpoint send (7.4)."""
    if not isinstance(code, int) or not (code in _PEER_CLOSE_CODES or 3000 <= code <= 4999):
        raise RuntimeError(f"Invalid close code {code!r}: 1000-1003, 1007-1014 or 3000-4999.")


def _check_headers(headers: Any) -> list[tuple[bytes, bytes]]:
    """An app's response headers as a list, refused when a name or value is not bytes or holds
    CR, LF or NUL (they would end the header early: response splitting)."""
    checked = list(headers)
    for header in checked:
        for part in header:
            if not isinstance(part, bytes) or b"\r" in part or b"\n" in part or b"\0" in part:
                raise RuntimeError(f"Invalid header {header!r} in the response.")
    return checked


def _close_frame(code: int, reason: str) -> bytes:
    data = reason.encode()
    if len(data) > 123:  # cut on a character boundary: a close reason must be valid UTF-8
        data = data[:123].decode(errors="ignore").encode()
    return encode_frame(_OP_CLOSE, code.to_bytes(2, "big") + data)


def _plain_response(status: int, raw: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    lines = [f"HTTP/1.1 {status} {phrase}\r\n".encode()]
    names = {name.lower() for name, _ in headers}
    extra = []
    if b"date" not in names:
        extra.append((b"Date", email.utils.formatdate(usegmt=True).encode()))
    if b"connection" not in names:
        extra.append((b"Connection", b"close"))
    if b"content-length" not in names:
        extra.append((b"Content-Length", str(len(raw)).encode()))
    if b"content-type" not in names:
        extra.append((b"Content-Type", b"text/plain; charset=utf-8"))
    for name, value in (*headers, *extra):
        lines.append(name + b": " + value + b"\r\n")
    lines.append(b"\r\n")
    lines.append(raw)
    return b"".join(lines)


class _Shared:
    """What every connection of one uvicorn server shares (one object, not one per connection)."""

    __slots__ = (
        "app",
        "app_state",
        "asgi_version",
        "connections",
        "detachable",
        "keepalive",
        "max_size",
        "max_unread",
        "root_path",
        "server_state",
        "tasks",
    )

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any]) -> None:
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.detachable = _serves_detached(self.app)
        self.app_state = app_state
        self.asgi_version = config.asgi_version
        self.root_path = config.root_path
        self.server_state = server_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.max_size = config.ws_max_size
        self.max_unread = limits_of(config).max_outbound_bytes
        interval = config.ws_ping_interval
        self.keepalive = (
            _Keepalive(interval, config.ws_ping_timeout)
            if interval is not None and interval > 0
            else None
        )

    @classmethod
    def of(cls, config: Any, server_state: Any, app_state: dict[str, Any]) -> _Shared:
        shared = getattr(server_state, "_surge_ws_shared", None)
        if not isinstance(shared, cls) or shared.app_state is not app_state:
            shared = cls(config, server_state, app_state)
            server_state._surge_ws_shared = shared
        return shared


def _serves_detached(app: Any) -> bool:
    """True when ``app`` (uvicorn's loaded app) is one that may ``detach`` its connections: it
    says so (``serves_detached_websockets``), maybe under uvicorn's ``ProxyHeadersMiddleware``
    (which only rewrites the scope before calling it). Any other middleware may want the app's
    call to last as long as the connection."""
    while isinstance(app, ProxyHeadersMiddleware):
        app = app.app
    return getattr(app, "serves_detached_websockets", False) is True


class LeanWebSocketProtocol(asyncio.Protocol):
    """One WebSocket connection under uvicorn (see the module docstring)."""

    __slots__ = (
        "_after_close",
        "_at",
        "_buf",
        "_close_timer",
        "_frag",
        "_frag_op",
        "_frag_size",
        "_gone_message",
        "_handler",
        "_inbox",
        "_key",
        "_ping_payload",
        "_receiver",
        "_response",
        "_shared",
        "_stalled",
        "_writers",
        "close_sent",
        "disconnected",
        "handshake_complete",
        "is_paused",
        "keepalive_slot",
        "read_paused",
        "scope",
        "transport",
    )

    def __init__(self, shared: _Shared) -> None:
        self._shared = shared
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.scope: dict[str, Any] = {}
        self._key: bytes | None = None
        self._buf: bytes | bytearray = b""
        self._at = 0  # the buffer is parsed from here on
        self._inbox: list[dict[str, Any]] = []
        self._receiver: asyncio.Future[None] | None = None
        self._writers: asyncio.Future[None] | None = None
        self._gone_message: dict[str, Any] | None = None
        # Set by ``detach``: called when a message waits, instead of waking ``receive``.
        self._handler: Callable[[], None] | None = None
        self._frag: list[bytes] | None = None
        self._frag_op = 0
        self._frag_size = 0
        self._after_close = 0
        self._stalled = False
        self._response: tuple[int, list[tuple[bytes, bytes]], bytes] | None = None
        self._ping_payload: bytes | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self.handshake_complete = False
        self.close_sent = False
        self.disconnected = False
        self.read_paused = False
        self.is_paused = False  # writing paused by the transport's flow control
        self.keepalive_slot = -1  # its bucket in the server's keepalive wheel

    # -- the upgrade (from SurgeHttpProtocol) --------------------------------------------------

    @classmethod
    def from_http_upgrade(
        cls,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        transport: asyncio.Transport,
        scope: dict[str, Any],
        url: bytes,
    ) -> LeanWebSocketProtocol:
        """Take over ``transport`` from the HTTP protocol that parsed the upgrade request
        (``scope`` is its ASGI scope, ``url`` the request target); check the handshake and start
        the app, or answer an HTTP error and close."""
        self = cls(_Shared.of(config, server_state, app_state))
        self.transport = transport
        transport.set_protocol(self)
        shared = self._shared
        shared.connections.add(self)
        problem = self._check_handshake(scope)
        if problem is not None:
            status, why = problem
            self.handshake_complete = True
            self.close_sent = True
            extra = [(b"Sec-WebSocket-Version", b"13")] if status == 426 else []
            if status == 405:
                extra.append((b"Allow", b"GET"))
            body = f"Failed to open a WebSocket connection: {why}.\n"
            transport.write(_plain_response(status, body.encode(), extra))
            transport.close()
            return self
        root_path = shared.root_path
        raw_path, _, query = url.partition(b"?")
        path = raw_path.decode("ascii", "replace")
        subprotocols: list[str] = []
        for name, value in scope["headers"]:
            if name == b"sec-websocket-protocol":
                subprotocols.extend(t.strip() for t in value.decode("latin-1").split(","))
        scope["type"] = "websocket"
        scope["asgi"] = {"version": shared.asgi_version, "spec_version": "2.4"}
        scope["scheme"] = "wss" if scope.get("scheme") == "https" else "ws"
        scope["path"] = root_path + (unquote(path) if "%" in path else path)
        scope["raw_path"] = root_path.encode("ascii") + raw_path
        scope["query_string"] = query
        scope["subprotocols"] = subprotocols
        scope["extensions"] = {"websocket.http.response": {}}
        scope.pop("method", None)
        self.scope = scope
        self._inbox.append({"type": "websocket.connect"})
        task = asyncio.get_running_loop().create_task(self._run_asgi())
        shared.tasks.add(task)
        task.add_done_callback(shared.tasks.discard)
        return self

    def _check_handshake(self, scope: dict[str, Any]) -> tuple[int, str] | None:
        if scope.get("method") != "GET":
            return 405, "invalid HTTP method; expected GET"
        if scope.get("http_version", "1.1") != "1.1":
            return 400, "invalid HTTP version; expected HTTP/1.1"
        keys = []
        versions = []
        for name, value in scope["headers"]:
            if name == b"sec-websocket-key":
                keys.append(value)
            elif name == b"sec-websocket-version":
                versions.append(value)
        if len(keys) != 1:
            return 400, "missing or repeated Sec-WebSocket-Key header"
        try:
            raw = base64.b64decode(keys[0], validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) != 16:
            return 400, "invalid Sec-WebSocket-Key header"
        if versions != [b"13"]:
            return 426, "invalid Sec-WebSocket-Version header; expected 13"
        self._key = keys[0]
        return None

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # pragma: no cover
        raise RuntimeError("LeanWebSocketProtocol is created by SurgeHttpProtocol's upgrade")

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_keepalive()
        self._deliver_gone(1005 if self.handshake_complete else 1006, "")
        self._shared.connections.discard(self)
        self.handshake_complete = True
        self.disconnected = True
        self._wake_writers()
        self._cancel_close_timer()
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        self.is_paused = True

    def resume_writing(self) -> None:
        self.is_paused = False
        self._wake_writers()

    def data_received(self, data: bytes) -> None:
        if self.close_sent:
            # Room for the peer's close reply; a peer still flooding is not worth parsing.
            if self._after_close >= AFTER_CLOSE_BYTES:
                return
            self._after_close += len(data)
        buf = self._buf
        if not buf:
            self._buf = data  # the usual case: whole frames in one read, no copy
        else:
            # A frame arrives in pieces: grow one bytearray in place (dropping the parsed part
            # at its front is O(1)), so a frame sent a byte per packet costs O(n), not O(n^2).
            if not isinstance(buf, bytearray):
                buf = bytearray(memoryview(buf)[self._at :])
            elif self._at:
                del buf[: self._at]
            buf += data
            self._buf = buf
        self._at = 0
        if (self._inbox or self._stalled) and not self.close_sent:
            self._pause_reading()  # parsed once the app has taken what waits
            return
        self._pump()

    # -- what DirectTransport reads ------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True while frames may be written (accepted, no close sent, transport open)."""
        return self.handshake_complete and not self.close_sent and not self.transport.is_closing()

    @property
    def is_gone(self) -> bool:
        """True once nothing more can be written."""
        return self.close_sent or self.disconnected or self.transport.is_closing()

    async def wait_writable(self) -> None:
        """Return once the transport's flow control lets writes through (or it is gone)."""
        while self.is_paused and not self.disconnected:
            if self._writers is None:
                self._writers = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._writers)

    def _wake_writers(self) -> None:
        waiter = self._writers
        if waiter is not None:
            self._writers = None
            if not waiter.done():
                waiter.set_result(None)

    # -- parsing -------------------------------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self.read_paused and not self.transport.is_closing():
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and not self.transport.is_closing():
            self.read_paused = False
            self.transport.resume_reading()

    def _pump(self) -> None:
        """Parse until a message waits for the app, the buffer holds no whole frame, or
        ``PARSE_SLICE`` bytes were parsed (then go on in a later callback)."""
        self._stalled = False
        try:
            self._parse()
        except Exception as exc:  # a bug here must cost this connection only
            if _client_mistakes.allow():
                peer = _peer(self.transport)
                logger.info("%s: WebSocket dropped after a protocol failure: %r", peer, exc)
            self._buf = b""
            self._at = 0
            self.transport.abort()
            return
        if (self._inbox or self._stalled) and not self.close_sent:
            self._pause_reading()
        else:
            self._resume_reading()
        transport = self.transport
        max_unread = self._shared.max_unread
        if not transport.is_closing() and transport.get_write_buffer_size() > max_unread:
            # It keeps sending (pings) but does not read what we answer: drop it.
            if _client_mistakes.allow():
                logger.info(
                    "%s: WebSocket dropped: over %d unread bytes",
                    _peer(transport),
                    self._shared.max_unread,
                )
            transport.abort()

    def _pump_later(self) -> None:
        if self.transport.is_closing() or not self._stalled:
            return
        if not self._inbox or self.close_sent:  # past its close, the app takes nothing more
            self._pump()

    def _parse(self) -> None:
        buf = self._buf
        size = len(buf)
        pos = self._at
        budget = pos + PARSE_SLICE
        max_size = self._shared.max_size
        inbox = self._inbox
        while size - pos >= 2 and (not inbox or self.close_sent):
            if pos >= budget:
                self._stalled = True
                asyncio.get_running_loop().call_soon(self._pump_later)
                break
            b0 = buf[pos]
            b1 = buf[pos + 1]
            if not b1 & 0x80:
                self._fail(1002, "incorrect masking")
                return
            if b0 & 0x70:
                self._fail(1002, "reserved bits must be 0")
                return
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            length = b1 & 0x7F
            head = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[head : head + 2], "big")
                head += 2
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[head : head + 8], "big")
                head += 8
                if length >> 63:  # RFC 6455 5.2: the most significant bit must be 0
                    self._fail(1002, "invalid frame length")
                    return
            if opcode >= 8:
                if opcode > _OP_PONG:
                    self._fail(1002, "invalid opcode")
                    return
                if length > 125 or not fin:
                    self._fail(1002, "invalid control frame")
                    return
            else:
                if opcode > _OP_BINARY:
                    self._fail(1002, "invalid opcode")
                    return
                total = length + (self._frag_size if opcode == _OP_CONT else 0)
                if max_size is not None and total > max_size:
                    self._fail(1009, f"frame with {total} bytes exceeds limit of {max_size} bytes")
                    return
            end = head + 4 + length
            if end > size:
                break
            payload = apply_mask(buf[head + 4 : end], buf[head : head + 4])
            pos = end
            self._frame(opcode, bool(fin), payload)
            if self.transport.is_closing():
                pos = size
                break
        if pos < size:
            self._at = pos
        else:
            self._buf = b""
            self._at = 0

    def _frame(self, opcode: int, fin: bool, payload: bytes) -> None:
        if opcode == _OP_PING:
            if not self.close_sent:
                self.transport.write(encode_frame(_OP_PONG, payload))
            return
        if opcode == _OP_PONG:
            self._pong(payload)
            return
        if opcode == _OP_CLOSE:
            self._peer_closed(payload)
            return
        if opcode == _OP_CONT:
            if self._frag is None:
                self._fail(1002, "unexpected continuation frame")
                return
            self._frag.append(payload)
            self._frag_size += len(payload)
            if not fin:
                return
            payload = b"".join(self._frag)
            opcode = self._frag_op
            self._frag = None
            self._frag_size = 0
        elif self._frag is not None:
            self._fail(1002, "expected a continuation frame")
            return
        elif not fin:
            self._frag = [payload]
            self._frag_op = opcode
            self._frag_size = len(payload)
            return
        if self.close_sent:
            return  # the app is past its close: drop the message, keep reading for the reply
        if opcode == _OP_TEXT:
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                if _client_mistakes.allow():
                    logger.info("%s: WebSocket closed 1007: invalid UTF-8", _peer(self.transport))
                self._fail(1007, "invalid UTF-8")
                return
            self._deliver({"type": "websocket.receive", "text": text})
        else:
            self._deliver({"type": "websocket.receive", "bytes": payload})

    def _peer_closed(self, payload: bytes) -> None:
        if len(payload) >= 2:
            code = int.from_bytes(payload[:2], "big")
            try:
                reason = payload[2:].decode()
            except UnicodeDecodeError:
                self._fail(1007, "invalid UTF-8 in the close reason")
                return
            if code not in _PEER_CLOSE_CODES and not 3000 <= code < 5000:
                self._fail(1002, f"invalid close code {code}")
                return
        elif payload:
            self._fail(1002, "close frame too short")
            return
        else:
            code, reason = 1005, ""
        if self.close_sent:
            # The peer answered our close: the closing handshake is complete.
            self._cancel_close_timer()
            self._close_transport()
            return
        if self._frag is not None:
            self._fail(1002, "incomplete fragmented message")
            return
        self.close_sent = True
        self._deliver_gone(code, reason)
        self.transport.write(encode_frame(_OP_CLOSE, payload))  # echoed as it came
        self._close_transport()

    def _fail(self, code: int, reason: str) -> None:
        """A protocol error: close with ``code`` and drop the connection."""
        self._buf = b""
        self._at = 0
        if not self.close_sent and not self.transport.is_closing():
            self.transport.write(_close_frame(code, reason))
        self.close_sent = True
        self._deliver_gone(code, reason)
        self._close_transport()

    def _cancel_close_timer(self) -> None:
        timer = self._close_timer
        if timer is not None:
            self._close_timer = None
            timer.cancel()

    def _close_transport(self) -> None:
        """Close the TCP connection once what is buffered is written, and abort it if that has
        not happened within ``CLOSE_TIMEOUT``: a peer that stopped reading must not keep the
        socket and its buffer (up to ``Limits.max_outbound_bytes``) for ever."""
        transport = self.transport
        transport.close()
        if self._close_timer is None and transport.get_write_buffer_size() > 0:
            loop = asyncio.get_running_loop()
            self._close_timer = loop.call_later(CLOSE_TIMEOUT, transport.abort)

    # -- receive -------------------------------------------------------------------------------

    def _deliver(self, message: dict[str, Any] | None) -> None:
        if message is not None:
            self._inbox.append(message)
        handler = self._handler
        if handler is not None:
            handler()
            return
        waiter = self._receiver
        if waiter is not None:
            self._receiver = None
            if not waiter.done():
                waiter.set_result(None)

    def _deliver_gone(self, code: int, reason: str) -> None:
        if self._gone_message is None:
            # Kept apart from the inbox: parsing (for the peer's close reply) never waits on it.
            self._gone_message = {"type": "websocket.disconnect", "code": code, "reason": reason}
            self._deliver(None)

    async def receive(self) -> dict[str, Any]:
        """The next ASGI message (``websocket.connect``, ``.receive``, ``.disconnect``)."""
        inbox = self._inbox
        while not inbox:
            if self._buf and not self._stalled and not self.transport.is_closing():
                self._pump()
                if inbox:
                    break
            gone = self._gone_message
            if gone is not None:
                return gone  # every receive after the end says so
            waiter = self._receiver
            if waiter is None or waiter.done():
                waiter = self._receiver = asyncio.get_running_loop().create_future()
            await waiter
        return self._pop()

    def _pop(self) -> dict[str, Any]:
        """The oldest waiting message (there is one); reading resumes once the inbox is empty."""
        inbox = self._inbox
        message = inbox.pop(0)
        if not inbox and self.read_paused and not self._stalled:
            if self._buf:
                self._pump()
            else:
                self._resume_reading()
        return message

    # -- detached: no app call per connection -------------------------------------------------

    @property
    def can_detach(self) -> bool:
        """True when ``detach`` would succeed: the handshake was accepted and the app is one
        that serves detached connections (``_serves_detached``)."""
        return (
            self._shared.detachable
            and self.handshake_complete
            and self._response is None
            and self._handler is None
        )

    def detach(self, handler: Callable[[], None]) -> None:
        """From now on the connection lives without the app's call (which may return at once):
        ``handler()`` is called whenever a message waits, and ``take`` returns it.

        An idle connection then costs no task and no coroutine. The handshake's scope is
        dropped (its request headers are ~0.7 KB a connection). Raises RuntimeError when
        ``can_detach`` is False.
        """
        if not self.can_detach:
            raise RuntimeError("this WebSocket connection cannot be detached")
        self._handler = handler
        self.scope = _NO_SCOPE
        if self._inbox or self._buf or self._gone_message is not None:
            handler()  # something arrived before the detach

    def take(self) -> dict[str, Any] | None:
        """The next ASGI message without waiting (``receive``'s), or None when none waits.

        Once the connection is over, ``websocket.disconnect`` every time.
        """
        inbox = self._inbox
        if not inbox:
            if self._buf and not self._stalled and not self.transport.is_closing():
                self._pump()
            if not inbox:
                return self._gone_message
        return self._pop()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a task of this (detached) connection. uvicorn's shutdown waits for it, as for
        the app's call; an exception it raises is logged and drops the connection (as one
        raised by the app's call would)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._shared.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._shared.tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, ClientDisconnected):
            _uvicorn_logger.error("Exception in a WebSocket task", exc_info=exc)
            self.transport.close()

    # -- send ----------------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        """An ASGI message from the app."""
        if self.is_paused:
            await self.wait_writable()
        if self.disconnected:
            raise ClientDisconnected()
        kind = message["type"]
        transport = self.transport
        if not self.handshake_complete and self._response is None:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._log_answer("403")
                self.handshake_complete = True
                self.close_sent = True
                self._deliver_gone(1006, "")
                transport.write(_plain_response(403, b"", []))
                transport.close()
            elif kind == "websocket.http.response.start":
                status = message["status"]
                if not 100 <= status < 600:
                    raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
                headers = _check_headers(message.get("headers", ()))
                self._log_answer(str(status))
                self._response = (status, headers, b"")
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' "
                    f"or 'websocket.http.response.start' but got '{kind}'."
                )
        elif self._response is not None:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f"Expected 'websocket.http.response.body' but got '{kind}'.")
            status, headers, body = self._response
            body += message.get("body", b"")
            self._response = (status, headers, body)
            if not message.get("more_body", False):
                # The refusal was the whole answer: the handshake is over.
                self.handshake_complete = True
                self.close_sent = True
                self._deliver_gone(1006, "")
                transport.write(_plain_response(status, body, headers))
                transport.close()
        elif not self.close_sent:
            if kind == "websocket.send":
                data = message.get("bytes")
                if data is not None:
                    transport.write(encode_frame(_OP_BINARY, data))
                else:
                    text = message.get("text")
                    if text is not None:
                        transport.write(encode_frame(_OP_TEXT, text.encode()))
            elif kind == "websocket.close":
                code = message.get("code", 1000)
                _check_close_code(code)
                if not transport.is_closing():
                    reason = message.get("reason", "") or ""
                    self._deliver_gone(code, reason)
                    transport.write(_close_frame(code, reason))
                    self.close_sent = True
                    self._stalled = False
                    self._resume_reading()
                    loop = asyncio.get_running_loop()
                    # No answer within CLOSE_TIMEOUT: give up on the peer (and its buffer).
                    self._close_timer = loop.call_later(CLOSE_TIMEOUT, transport.abort)
                    if self._buf:
                        self._pump()  # the peer's close may be read already
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.send' or 'websocket.close', "
                    f"but got '{kind}'."
                )
        elif transport.is_closing():
            # The peer closed (or broke the protocol): as uvicorn, a send says the client is
            # gone, a close is ignored.
            if kind != "websocket.close":
                raise ClientDisconnected()
        else:
            raise RuntimeError(
                f"Unexpected ASGI message '{kind}', after sending 'websocket.close'."
            )

    def _accept(self, message: dict[str, Any]) -> None:
        transport = self.transport
        subprotocol = message.get("subprotocol")
        protocol = [(b"Sec-WebSocket-Protocol", subprotocol.encode())] if subprotocol else []
        protocol = _check_headers(protocol)
        extra = _check_headers(message.get("headers", ()))
        if transport.is_closing():
            return
        self._log_answer("[accepted]")
        key = self._key
        assert key is not None  # checked before the app was called
        lines = [
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: ",
            accept_key(key),
            b"\r\n",
        ]
        defaults = self._shared.server_state.default_headers
        for name, value in (*protocol, *defaults, *extra):
            lines += [name, b": ", value, b"\r\n"]
        lines.append(b"\r\n")
        self._key = None
        self.handshake_complete = True
        transport.write(b"".join(lines))
        self._start_keepalive()

    def _log_answer(self, what: str) -> None:
        if _uvicorn_logger.isEnabledFor(logging.INFO):
            scope = self.scope
            client = scope.get("client")
            address = f"{client[0]}:{client[1]}" if client else ""
            path = scope.get("path", "")
            query = scope.get("query_string", b"")
            if query:
                path = f"{path}?{query.decode('ascii', 'replace')}"
            _uvicorn_logger.info('%s - "WebSocket %s" %s', address, path, what)

    # -- the app -------------------------------------------------------------------------------

    async def _run_asgi(self) -> None:
        try:
            result = await self._shared.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            _uvicorn_logger.exception("Exception in ASGI application\n")
            self._send_500()
        else:
            if not self.handshake_complete:
                _uvicorn_logger.error("ASGI callable returned without completing handshake.")
                self._send_500()
            elif result is not None:
                _uvicorn_logger.error(
                    "ASGI callable should return None, but returned '%s'.", result
                )
        if self._close_timer is None and self._handler is None:
            self._close_transport()

    def _send_500(self) -> None:
        if self._response is not None or self.handshake_complete:
            return
        self.handshake_complete = True
        self.transport.write(_plain_response(500, b"Internal Server Error", []))

    def shutdown(self) -> None:
        """uvicorn's forced shutdown: close with 1012 now."""
        self._stop_keepalive()
        transport = self.transport
        if self.close_sent:
            self._cancel_close_timer()
            self._close_transport()
            return
        if self.handshake_complete:
            self._deliver_gone(1012, "")
            self.close_sent = True
            transport.write(_close_frame(1012, ""))
        else:
            self._send_500()
        self._close_transport()

    # -- keepalive (one loop-wide wheel, not a timer per connection) ---------------------------

    def _start_keepalive(self) -> None:
        wheel = self._shared.keepalive
        if wheel is not None:
            wheel.enroll(self, wheel.interval)

    def _stop_keepalive(self) -> None:
        wheel = self._shared.keepalive
        if wheel is not None:
            wheel.remove(self)
        self._ping_payload = None

    def keepalive_due(self, wheel: _Keepalive) -> None:
        """The wheel's call: a ping is due, or the pong of the last one is overdue."""
        if self.close_sent or self.transport.is_closing():
            return
        if self._ping_payload is not None:
            self._ping_payload = None
            self._fail(1011, "keepalive ping timeout")
            return
        payload = struct.pack("!I", random.getrandbits(32))
        self._ping_payload = payload
        self.transport.write(encode_frame(_OP_PING, payload))
        timeout = wheel.timeout
        if timeout is not None:
            wheel.enroll(self, timeout)
        else:
            self._ping_payload = None  # no deadline: the next ping as usual
            wheel.enroll(self, wheel.interval)

    def _pong(self, payload: bytes) -> None:
        if self._ping_payload is None or payload != self._ping_payload:
            return  # unsolicited or stale
        self._ping_payload = None
        self._start_keepalive()


class _Keepalive:
    """uvicorn's keepalive for every connection of a server, on one timer ticking each second.

    A connection sits in the bucket of the second its next step is due: a ping ``interval``
    seconds after the handshake or the last pong, then the pong's deadline ``timeout`` seconds
    after the ping (1011 when it passes). Deadlines are kept to the second (a ping goes out up to
    a second late), for a set entry per connection instead of a ``TimerHandle`` (~0.6 KB).
    """

    __slots__ = ("_buckets", "_count", "_handle", "_tick", "interval", "timeout")

    def __init__(self, interval: float, timeout: float | None) -> None:
        self.interval = interval
        self.timeout = timeout
        # One lap is longer than any delay, so a bucket holds only what is due at its second.
        self._buckets: list[set[LeanWebSocketProtocol]] = [
            set() for _ in range(int(max(interval, timeout or 0)) + 3)
        ]
        self._count = 0  # connections enrolled
        self._handle: asyncio.TimerHandle | None = None
        self._tick = 0  # the last second processed

    def enroll(self, protocol: LeanWebSocketProtocol, delay: float) -> None:
        loop = asyncio.get_running_loop()
        second = int(loop.time() + delay) + 1
        self.remove(protocol)
        buckets = self._buckets
        slot = second % len(buckets)  # a small int: cached, nothing allocated per connection
        buckets[slot].add(protocol)
        protocol.keepalive_slot = slot
        self._count += 1
        if self._handle is None:
            self._tick = int(loop.time())
            self._handle = loop.call_at(self._tick + 1, self._run)

    def remove(self, protocol: LeanWebSocketProtocol) -> None:
        slot = protocol.keepalive_slot
        if slot >= 0:
            protocol.keepalive_slot = -1
            self._buckets[slot].discard(protocol)
            self._count -= 1

    def _run(self) -> None:
        loop = asyncio.get_running_loop()
        now = int(loop.time())
        buckets = self._buckets
        # Every second since the last tick (a busy loop may skip some), at most one lap.
        for second in range(max(self._tick + 1, now - len(buckets) + 1), now + 1):
            bucket = buckets[second % len(buckets)]
            if not bucket:
                continue
            due = list(bucket)
            bucket.clear()
            self._count -= len(due)
            for protocol in due:
                protocol.keepalive_slot = -1
                protocol.keepalive_due(self)
        self._tick = now
        self._handle = loop.call_at(now + 1, self._run) if self._count else None


def _peer(transport: asyncio.BaseTransport | None) -> str:
    if transport is None:
        return "?"
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"


def is_lean(cls: Callable[..., Any] | None) -> bool:
    """True when ``cls`` (a uvicorn ``ws_protocol_class``) is this module's protocol."""
    return isinstance(cls, type) and issubclass(cls, LeanWebSocketProtocol)
