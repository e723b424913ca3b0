"""Driving an ASGI app in-process: its lifespan, and WebSocket connections over queues.

``AsgiWebSocketTransport`` is a ``surge.client.Transport``: each ``connect()`` runs the app's
WebSocket scope as a task of the current loop, talking to it through two bounded queues (the
client's side stands in for the socket: a client that stops reading makes the app's ``send``
wait, as a full socket buffer would). The scope offers the ``websocket.http.response``
extension, so a refused upgrade is an HTTP status (``UpgradeRefused``) as under uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from surge.client.errors import TransportClosed, UpgradeRefused, retry_after_seconds
from surge.client.transport import TokenVia, TransportConnection, with_token

__all__ = ["ASGIApp", "AsgiWebSocketTransport", "Lifespan"]

logger = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Coroutine[Any, Any, None]]
# Frames in flight each way: like a socket buffer, small enough that backpressure is real.
QUEUE_SIZE = 256
_CLOSE_GRACE = 5.0


class Lifespan:
    """Run an app's ASGI lifespan: ``await startup()`` ... ``await shutdown()``."""

    def __init__(self, app: ASGIApp, *, timeout: float = 30.0) -> None:
        self._app = app
        self._timeout = timeout
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _receive(self) -> Message:
        return await self._to_app.get()

    async def _send(self, message: Message) -> None:
        await self._from_app.put(message)

    async def _next(self, expected: str) -> None:
        task = self._task
        if task is None:
            raise RuntimeError("not started")
        getter = asyncio.ensure_future(self._from_app.get())
        done, _ = await asyncio.wait(
            {getter, task}, timeout=self._timeout, return_when="FIRST_COMPLETED"
        )
        if getter not in done:
            getter.cancel()
            if task in done:
                task.result()  # the app's exception, if it raised one
                raise RuntimeError(f"the app's lifespan ended without {expected}")
            raise TimeoutError(f"no {expected} from the app within {self._timeout} s")
        message = getter.result()
        if message["type"] != expected:
            raise RuntimeError(f"lifespan: {message.get('message') or message['type']}")

    async def startup(self) -> None:
        """Send ``lifespan.startup`` and wait for ``lifespan.startup.complete``.

        Raises:
            RuntimeError: the app answered ``lifespan.startup.failed`` (its message).
        """
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._task = asyncio.get_running_loop().create_task(
            self._app(scope, self._receive, self._send), name="surge-test-lifespan"
        )
        await self._to_app.put({"type": "lifespan.startup"})
        try:
            await self._next("lifespan.startup.complete")
        except BaseException:
            await self._stop_task()
            raise

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait until the app completed it."""
        if self._task is None:
            return
        await self._to_app.put({"type": "lifespan.shutdown"})
        try:
            await self._next("lifespan.shutdown.complete")
        finally:
            await self._stop_task()

    async def _stop_task(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _AsgiConnection:
    """One in-process WebSocket: the app's scope runs as a task of this loop."""

    def __init__(self, app: ASGIApp, scope: dict[str, Any]) -> None:
        self._app = app
        self._scope = scope
        self._to_app: asyncio.Queue[Message] = asyncio.Queue(QUEUE_SIZE)
        self._from_app: asyncio.Queue[Message] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self._closed: TransportClosed | None = None

    async def _receive(self) -> Message:
        return await self._to_app.get()

    async def _send(self, message: Message) -> None:
        if self._closed is not None and message["type"] == "websocket.send":
            raise OSError("in-process WebSocket is closed")  # as a dead socket would
        await self._from_app.put(message)

    async def _from(self) -> Message:
        """The app's next message; a ``websocket.close`` stand-in once its task has ended."""
        task = self._task
        if task is None:
            raise RuntimeError("not started")
        if not self._from_app.empty() or task.done():
            if self._from_app.empty():
                return self._ended(task)
            return self._from_app.get_nowait()
        getter = asyncio.ensure_future(self._from_app.get())
        try:
            await asyncio.wait({getter, task}, return_when="FIRST_COMPLETED")
        except asyncio.CancelledError:
            getter.cancel()
            raise
        if getter.done():
            return getter.result()
        getter.cancel()
        return self._ended(task)

    def _ended(self, task: asyncio.Task[None]) -> Message:
        if not task.cancelled() and task.exception() is not None:
            logger.error("the app's WebSocket handler raised", exc_info=task.exception())
            return {"type": "websocket.close", "code": 1011, "reason": "server error"}
        return {"type": "websocket.close", "code": 1006, "reason": ""}

    async def open(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._app(self._scope, self._receive, self._send), name="surge-test-websocket"
        )
        await self._to_app.put({"type": "websocket.connect"})
        message = await self._from()
        kind = message["type"]
        if kind == "websocket.accept":
            return
        if kind == "websocket.http.response.start":
            status = int(message["status"])
            retry_after = retry_after_seconds(
                next(
                    (
                        v.decode("latin-1")
                        for k, v in message.get("headers", ())
                        if k.lower() == b"retry-after"
                    ),
                    None,
                )
            )
            body = b""
            while True:
                part = await self._from()
                if part["type"] != "websocket.http.response.body":
                    break
                body += part.get("body", b"")
                if not part.get("more_body", False):
                    break
            await self._finish()
            raise UpgradeRefused(status, body.decode(errors="replace"), retry_after)
        await self._finish()
        if kind == "websocket.close":
            # A refusal without the HTTP-response extension is a close before accept: 403.
            raise UpgradeRefused(403, str(message.get("reason") or ""))
        raise TransportClosed(1006, f"unexpected {kind} during the handshake")

    async def send(self, text: str) -> None:
        if self._closed is not None:
            raise self._closed
        await self._to_app.put({"type": "websocket.receive", "text": text})

    async def recv(self) -> str:
        while True:
            if self._closed is not None:
                raise self._closed
            message = await self._from()
            kind = message["type"]
            if kind == "websocket.send":
                text = message.get("text")
                if text is not None:
                    return str(text)
            elif kind == "websocket.close":
                code = int(message.get("code") or 1000)
                self._closed = TransportClosed(code, str(message.get("reason") or ""))
                # Answer the close, as a client does: the app's reader gets its disconnect.
                await self._disconnect(code)
                raise self._closed

    async def _disconnect(self, code: int) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._to_app.put_nowait({"type": "websocket.disconnect", "code": code})

    async def close(self) -> None:
        if self._closed is None:
            self._closed = TransportClosed(1000, "closed by the client")
            await self._disconnect(1000)
        await self._finish()

    async def _finish(self) -> None:
        """Let the app's task end (draining what it still sends), cancel it after a grace."""
        task = self._task
        if task is None or task.done():
            return
        self._closed = self._closed or TransportClosed(1000, "")
        await self._disconnect(1000)
        try:
            async with asyncio.timeout(_CLOSE_GRACE):
                while not task.done():
                    while not self._from_app.empty():
                        self._from_app.get_nowait()
                    getter = asyncio.ensure_future(self._from_app.get())
                    await asyncio.wait({getter, task}, return_when="FIRST_COMPLETED")
                    getter.cancel()
        except TimeoutError:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


class AsgiWebSocketTransport:
    """A ``surge.client.Transport`` that connects to an ASGI app in this process.

    Args:
        app: the ASGI app (a ``SurgeApp``).
        url: the path and query of the upgrade (``/`` by default; ``ws://testserver/...`` works).
        token: sent as the client would (subprotocol pair or ``?authToken=``).
        headers: extra request headers (lower-case names), e.g. ``{"origin": ...}``.
    """

    def __init__(
        self,
        app: ASGIApp,
        url: str = "/",
        *,
        token: str | None = None,
        token_via: TokenVia = "subprotocol",
        headers: dict[str, str] | None = None,
    ) -> None:
        self._app = app
        url, subprotocols = with_token(url, token, token_via)
        parts = urlsplit(url)
        self._path = parts.path or "/"
        self._query = parts.query
        self._subprotocols = subprotocols or []
        self._headers = {"host": "testserver", **(headers or {})}
        if self._subprotocols:
            self._headers["sec-websocket-protocol"] = ",".join(self._subprotocols)

    def scope(self) -> dict[str, Any]:
        """The ASGI WebSocket scope of one connection."""
        return {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": self._path,
            "raw_path": self._path.encode(),
            "query_string": self._query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in self._headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "subprotocols": list(self._subprotocols),
            "extensions": {"websocket.http.response": {}},
            "state": {},
        }

    async def connect(self) -> TransportConnection:
        """Run a new WebSocket scope of the app and complete its handshake."""
        conn = _AsgiConnection(self._app, self.scope())
        await conn.open()
        return conn
