"""``surge dev``'s access log: one line per HTTP request (method, path, status, milliseconds).

uvicorn's own access log is off (it costs CPU on every request under ``surge start``:
bench/README.md); in development a line per request is worth it. The path is logged without its
query string (tokens travel there), WebSocket connections pass through untouched (the fan-out's
direct transport is reached through their ``send``), and the Workbench's own polling under
``/__surge/`` is not logged, so the lines are the app's requests.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AccessLog"]

logger = logging.getLogger("surge.access")
QUIET_PREFIX = "/__surge/"


class AccessLog:
    """ASGI middleware: log ``GET /todo 200 1.4 ms`` when each HTTP response is complete."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(QUIET_PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            shown = str(status) if status is not None else "(no response)"
            logger.info("%s %s %s %.1f ms", scope["method"], scope["path"], shown, elapsed_ms)
