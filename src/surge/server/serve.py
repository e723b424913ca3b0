"""Running an app under uvicorn with Surge's settings (frame size cap, WebSocket pings)."""

from __future__ import annotations

import os
import socket
from typing import Any

import uvicorn

from surge.config import Limits
from surge.server.app import SurgeApp, create_app
from surge.server.logs import install_token_redaction

__all__ = ["PROJECT_DIR_ENV", "app_from_env", "bind_socket", "uvicorn_config"]

PROJECT_DIR_ENV = "SURGE_PROJECT_DIR"


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
        ws="websockets-sansio",
        # A frame over the cap is refused by the WebSocket layer itself with 1009.
        ws_max_size=limits.max_frame_bytes,
        ws_per_message_deflate=limits.compression,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        log_level=log_level,
        access_log=False,
        **extra,
    )
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


def app_from_env() -> SurgeApp:
    """Factory for worker processes: the project in ``$SURGE_PROJECT_DIR`` (``--workers``)."""
    app = create_app(os.environ.get(PROJECT_DIR_ENV, "."))
    app.tune_gc = True
    return app
