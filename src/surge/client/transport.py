"""The client's transport seam: how a protocol client gets a connection that moves text frames.

``Transport.connect()`` opens one connection (raising ``UpgradeRefused`` for an HTTP error answer
to the upgrade, ``OSError``/``TimeoutError``/``ClientError`` for anything else worth retrying).
A ``TransportConnection`` sends and receives text frames; ``recv`` raises ``TransportClosed``
once the connection has ended. Two implementations exist: ``WebSocketTransport`` here (the
``websockets`` asyncio client, real sockets) and ``surge.testing``'s in-process ASGI transport.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from surge.client.errors import TransportClosed, UpgradeRefused, retry_after_seconds

__all__ = [
    "TokenProvider",
    "TokenVia",
    "Transport",
    "TransportConnection",
    "WebSocketTransport",
    "with_token",
]

TokenVia = Literal["subprotocol", "query"]
TokenProvider = Callable[[], str | Awaitable[str | None] | None]
"""Returns the token to connect with (called before every connection attempt)."""


def _target(url: str, token: str | None, via: TokenVia) -> tuple[str, list[Subprotocol] | None]:
    target, protocols = with_token(url, token, via)
    return target, None if protocols is None else [Subprotocol(p) for p in protocols]


class TransportConnection(Protocol):
    """One open connection carrying text frames."""

    async def send(self, text: str) -> None:
        """Send one text frame; raises ``TransportClosed`` when the connection is gone."""
        ...

    async def recv(self) -> str:
        """The next text frame; raises ``TransportClosed`` once the connection has ended."""
        ...

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        ...


class Transport(Protocol):
    """Opens connections to one server."""

    async def connect(self) -> TransportConnection:
        """Open a new connection."""
        ...


def with_token(url: str, token: str | None, token_via: TokenVia) -> tuple[str, list[str] | None]:
    """The URL and subprotocols that carry ``token`` the way the protocol allows.

    ``subprotocol``: ``Sec-WebSocket-Protocol: Authorization,<token>``; ``query``:
    ``?authToken=<token>``.
    """
    if token is None:
        return url, None
    if token_via == "subprotocol":
        return url, ["Authorization", token]
    if token_via != "query":
        raise ValueError(f"token_via must be 'subprotocol' or 'query', not {token_via!r}")
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "authToken"]
    query.append(("authToken", token))
    return urlunsplit(parts._replace(query=urlencode(query))), None


class _WebSocketConnection:
    __slots__ = ("_ws",)

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    async def send(self, text: str) -> None:
        try:
            await self._ws.send(text)
        except ConnectionClosed as exc:
            raise _closed(exc) from exc

    async def recv(self) -> str:
        while True:
            try:
                message = await self._ws.recv()
            except ConnectionClosed as exc:
                raise _closed(exc) from exc
            if isinstance(message, str):
                return message
            # The protocol is text only; a binary frame from a server is ignored.

    async def close(self) -> None:
        await self._ws.close()


def _closed(exc: ConnectionClosed) -> TransportClosed:
    frame = exc.rcvd
    if frame is None:
        return TransportClosed(1006, "")
    return TransportClosed(frame.code, frame.reason)


class WebSocketTransport:
    """Real WebSocket connections with the ``websockets`` asyncio client.

    Args:
        url: ``ws://host:port/`` (any path; the server accepts every path).
        token: sent as ``Authorization,<token>`` subprotocol pair or ``?authToken=``; or a
            function (sync or async) returning the token, called before every connection
            attempt, so a reconnect after a 4001 close (token expired) uses a fresh one.
        open_timeout: limit of one connection attempt (TCP connect and handshake).
        max_size: largest frame accepted from the server (a big group sync is one frame).
        ping_interval: keepalive pings, so a dead network is noticed; None turns them off.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | TokenProvider | None = None,
        token_via: TokenVia = "subprotocol",
        open_timeout: float = 10.0,
        max_size: int | None = 64 * 1024 * 1024,
        ping_interval: float | None = 20.0,
    ) -> None:
        self._base_url = url
        self._token_via = token_via
        self._token_provider = token if callable(token) else None
        self.url, self._subprotocols = _target(url, None if callable(token) else token, token_via)
        self._open_timeout = open_timeout
        self._max_size = max_size
        self._ping_interval = ping_interval

    async def connect(self) -> TransportConnection:
        """Open one WebSocket."""
        url, subprotocols = self.url, self._subprotocols
        provider = self._token_provider
        if provider is not None:
            token = provider()
            if inspect.isawaitable(token):
                token = await token
            url, subprotocols = _target(self._base_url, token, self._token_via)
        try:
            ws = await ws_connect(
                url,
                subprotocols=subprotocols,
                open_timeout=self._open_timeout,
                close_timeout=2.0,
                max_size=self._max_size,
                ping_interval=self._ping_interval,
                compression=None,
            )
        except InvalidStatus as exc:
            response = exc.response
            body = response.body.decode(errors="replace") if response.body else ""
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
            raise UpgradeRefused(response.status_code, body, retry_after) from exc
        return _WebSocketConnection(ws)
