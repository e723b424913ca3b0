"""Running an app under uvicorn with Surge's settings: its protocols and limits (``Limits``).

``uvicorn_config`` selects Surge's protocol classes (``surge.server.protocols``: deadlines and
byte caps below the ASGI app), the frame size cap, keep-alive and WebSocket ping settings, and a
connection limit. ``raise_fd_limit`` lifts the soft file-descriptor limit to the hard one, so that
the default ``max_connections`` (the fd limit less a reserve) is as large as the machine allows.
"""

from __future__ import annotations

import resource
import socket
from typing import Any

import uvicorn

from surge.config import Limits
from surge.server.app import SurgeApp
from surge.server.logs import install_token_redaction
from surge.server.protocols import SURGE_LIMITS_ATTR, SurgeHttpProtocol, SurgeWebSocketProtocol

__all__ = [
    "FD_RESERVE",
    "PROJECT_DIR_ENV",
    "bind_socket",
    "max_connections",
    "raise_fd_limit",
    "uvicorn_config",
]

PROJECT_DIR_ENV = "SURGE_PROJECT_DIR"
# File descriptors kept for everything but client sockets (the store, Redis, logs, reloads).
FD_RESERVE = 64


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

    ``app`` may be the import string of a factory (for ``--workers``); then pass ``limits``.
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
        ws=SurgeWebSocketProtocol,
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
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
