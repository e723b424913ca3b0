"""Running an app under uvicorn with Surge's settings (frame size cap, WebSocket pings)."""

from __future__ import annotations

import socket
from typing import Any

import uvicorn

from surge.server.app import SurgeApp

__all__ = ["uvicorn_config"]


def uvicorn_config(
    app: SurgeApp,
    *,
    host: str = "127.0.0.1",
    port: int = 3000,
    log_level: str = "info",
    **extra: Any,
) -> uvicorn.Config:
    """A uvicorn config for ``app``: one port for HTTP and WebSocket, frames capped by limits."""
    limits = app.runtime.config.limits
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        ws="websockets-sansio",
        # A frame over the cap is refused by the WebSocket layer itself with 1009.
        ws_max_size=limits.max_frame_bytes,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        log_level=log_level,
        access_log=False,
        **extra,
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind a listening TCP socket (port 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
