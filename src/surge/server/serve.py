"""Running an app under uvicorn with Surge's settings: its protocols and limits (``Limits``).

``uvicorn_config`` selects Surge's protocol classes (``surge.server.protocols``: deadlines and
byte caps below the ASGI app), the frame size cap, keep-alive and WebSocket ping settings, and a
connection limit. ``raise_fd_limit`` lifts the soft file-descriptor limit to the hard one, so that
the default ``max_connections`` (the fd limit less a reserve) is as large as the machine allows.

``SurgeServer`` is uvicorn's server with Surge's lifecycle (``surge start`` workers, ``surge
dev``):

- **Gated start.** An optional ``gate`` is awaited after the app's lifespan started (storage
  open, steps loaded: ``/readyz`` would say ready) and before the server accepts a connection;
  the ``surge start`` supervisor uses it to hand the listening socket from an old worker
  generation to a new one (``surge.cli.master``).
- **Drain** (``request_drain(code)``, SIGTERM, SIGINT): ``/readyz`` answers 503 at once; the
  listeners close (a socket shared with other processes stays open for them); requests in
  progress finish and their connections close after the response; idle keep-alive connections
  close; a connection accepted but still silent gets ``FRESH_GRACE`` to send its request (it
  reached us before the listener closed: dropping it unasked would be a refused connection);
  once no HTTP connection is left, every stream WebSocket is closed by the app with ``code``
  (1001 going away, 1012 restarting) after what its outbox holds; then the lifespan stops
  background work within what is left. Everything
  is bounded by ``drain_timeout``: past it, what is still open is closed and running handlers
  are cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

import uvicorn

from surge._net import bind_listener
from surge.config import Limits
from surge.protocol.codes import CloseCode
from surge.server.app import SurgeApp
from surge.server.logs import install_token_redaction
from surge.server.protocols import SURGE_LIMITS_ATTR, SurgeHttpProtocol, SurgeWebSocketProtocol
from surge.server.ws_protocol import LeanWebSocketProtocol

__all__ = [
    "DRAIN_TIMEOUT",
    "FD_RESERVE",
    "FRESH_GRACE",
    "SurgeServer",
    "bind_socket",
    "max_connections",
    "raise_fd_limit",
    "uvicorn_config",
]

logger = logging.getLogger(__name__)

# File descriptors kept for everything but client sockets (the store, Redis, logs, reloads).
FD_RESERVE = 64
DRAIN_TIMEOUT = 10.0
"""Default bound, in seconds, of a drain: from the signal to the last connection closed and the
background work stopped (``surge start --drain-timeout``)."""
FRESH_GRACE = 1.0
"""How long a connection accepted just before a drain may take to send its request."""
_DRAIN_POLL = 0.02
_CLOSE_REASONS: dict[int, str] = {
    CloseCode.SERVICE_RESTART: "server restarting",
    CloseCode.GOING_AWAY: "server shutting down",
}


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (capped at 1,048,576); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard if hard != resource.RLIM_INFINITY else 1 << 20, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def max_connections(limits: Limits) -> int:
    """``limits.max_connections``, or the fd limit less ``FD_RESERVE`` when it is None."""
    if limits.max_connections is not None:
        return limits.max_connections
    return max(16, raise_fd_limit() - FD_RESERVE)


def uvicorn_config(
    app: SurgeApp | str,
    *,
    host: str = "127.0.0.1",
    port: int = 3000,
    log_level: str = "info",
    limits: Limits | None = None,
    **extra: Any,
) -> uvicorn.Config:
    """A uvicorn config for ``app``: one port for HTTP and WebSocket, frames capped by limits.

    ``app`` may be the import string of a factory; then pass ``limits``.
    """
    if isinstance(app, SurgeApp):
        limits = app.runtime.config.limits
    limits = limits or Limits()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        http=SurgeHttpProtocol,
        # Surge's own protocol (~half the memory and handshake CPU); permessage-deflate needs
        # websockets' per-connection compressor: then uvicorn's, with Surge's limits.
        ws=SurgeWebSocketProtocol if limits.compression else LeanWebSocketProtocol,
        # A frame over the cap is refused by the WebSocket layer itself with 1009.
        ws_max_size=limits.max_frame_bytes,
        timeout_keep_alive=limits.keep_alive_timeout,  # type: ignore[arg-type]  # a float works
        limit_concurrency=max_connections(limits),
        ws_per_message_deflate=limits.compression,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        log_level=log_level,
        access_log=False,
        **extra,
    )
    # The protocols read their limits from here (worker processes get a pickled copy).
    setattr(config, SURGE_LIMITS_ATTR, limits)
    # After uvicorn.Config, which (re)configures logging: dictConfig keeps a logger's filters.
    install_token_redaction()
    return config


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind a listening TCP socket (port 0 picks a free one)."""
    sock = bind_listener(host, port)
    sock.set_inheritable(True)
    return sock


class SurgeServer(uvicorn.Server):
    """uvicorn's server with a gated start and a bounded drain (see the module docstring).

    Args:
        config: from ``uvicorn_config``.
        app: the Surge app served (its WebSockets are closed through it; ``config.app`` may wrap
            it, e.g. in the dev access log).
        drain_timeout: bound of a drain, in seconds.
        gate: awaited once the lifespan started; False means "do not serve" (the lifespan is
            stopped and the process exits with uvicorn's startup-failure status, 3).
        on_started: called once the listeners accept connections.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        app: SurgeApp,
        drain_timeout: float = DRAIN_TIMEOUT,
        gate: Callable[[], Awaitable[bool]] | None = None,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.surge_app = app
        self.drain_timeout = drain_timeout
        self.close_code = int(CloseCode.GOING_AWAY)
        self._gate = gate
        self._on_started = on_started
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def request_drain(self, code: int = CloseCode.GOING_AWAY) -> None:
        """Begin a drain whose WebSocket closes carry ``code`` (call on the server's loop)."""
        if not self.should_exit:
            self.close_code = int(code)
        self.should_exit = True
        if self._wake is not None:
            self._wake.set()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: wake the main loop now rather than at its next 0.1 s tick.
        super().handle_exit(sig, frame)
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            loop.call_soon_threadsafe(wake.set)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        gate = self._gate
        if gate is not None:
            lifespan = self.lifespan
            started = lifespan.startup

            async def startup_then_gate() -> None:
                await started()
                if lifespan.should_exit or self.should_exit:
                    return
                if not await gate():
                    await lifespan.shutdown()
                    lifespan.should_exit = True  # uvicorn exits with its startup failure

            lifespan.startup = startup_then_gate
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit and self._on_started is not None:
            self._on_started()

    async def main_loop(self) -> None:
        counter = 0
        wake = self._wake
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            if wake is None:
                await asyncio.sleep(0.1)
                continue
            try:
                async with asyncio.timeout(0.1):
                    await wake.wait()
            except TimeoutError:
                pass

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + self.drain_timeout
        app = self.surge_app
        app.begin_drain(deadline)
        for server in self.servers:
            server.close()  # stop accepting; a socket shared with other processes stays open
        for sock in sockets or []:
            sock.close()
        code = self.close_code
        reason = _CLOSE_REASONS.get(code, "server closing")
        fresh_until = start + min(FRESH_GRACE, self.drain_timeout)
        state = self.server_state
        closing_websockets = False
        while True:
            close_fresh = loop.time() >= fresh_until
            http = [c for c in state.connections if isinstance(c, SurgeHttpProtocol)]
            for connection in http:
                connection.drain_step(close_fresh=close_fresh)
            # WebSockets close once the HTTP requests are answered: the changes those make still
            # reach them, and clients reconnect as late as possible (Motia's retry is at 2 s).
            closing_websockets = closing_websockets or not http
            if closing_websockets:
                app.close_websockets(code, reason)
            if (not state.connections and not state.tasks) or self.force_exit:
                break
            if loop.time() >= deadline:
                logger.warning(
                    "drain timeout (%.1f s): closing %d connection(s), cancelling %d task(s)",
                    self.drain_timeout,
                    len(state.connections),
                    len(state.tasks),
                )
                for remaining in list(state.connections):
                    remaining.shutdown()
                for task in state.tasks:
                    task.cancel(msg="drain timeout")
                break
            await asyncio.sleep(_DRAIN_POLL)
        if not self.force_exit:
            await self.lifespan.shutdown()
        logger.info("drained in %.2f s", loop.time() - start)
