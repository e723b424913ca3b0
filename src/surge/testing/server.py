"""``live_server``: run an app under uvicorn on 127.0.0.1:<free port> inside the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from surge.server.app import SurgeApp
from surge.server.serve import bind_socket, uvicorn_config

__all__ = ["LiveServer", "live_server"]


@dataclass(frozen=True)
class LiveServer:
    """A running server: its base URLs and the app (``app.runtime`` for the hub and streams)."""

    app: SurgeApp
    host: str
    port: int

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:<port>/``."""
        return f"ws://{self.host}:{self.port}/"


@contextlib.asynccontextmanager
async def live_server(
    app: SurgeApp,
    *,
    host: str = "127.0.0.1",
    startup_timeout: float = 10.0,
    host_app: ASGIApp | None = None,
) -> AsyncIterator[LiveServer]:
    """Serve ``app`` until the block exits; raises if it does not start in time.

    ``host_app``: serve that instead, an app that mounts ``app`` (FastAPI's ``api.mount("/rt",
    app)``, with ``app.lifespan`` as its lifespan), under uvicorn's own settings, as ``uvicorn
    main:api`` would; ``LiveServer.app`` is still ``app``.
    """
    sock = bind_socket(host, 0)
    port = sock.getsockname()[1]
    if host_app is None:
        config = uvicorn_config(app, host=host, port=port, log_level="warning")
    else:
        config = uvicorn.Config(host_app, host=host, port=port, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    # The test runner owns the process's signals, not this embedded server.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(startup_timeout):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("server stopped during startup")
                await asyncio.sleep(0.01)
        yield LiveServer(app, host, port)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
