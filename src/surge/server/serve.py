"""Running an app under uvicorn with Surge's settings (frame size cap, WebSocket pings)."""

from __future__ import annotations

import logging
import re
import socket
from typing import Any

import uvicorn

from surge.server.app import SurgeApp

__all__ = ["uvicorn_config"]

# Stream tokens travel in the upgrade's URL (`?authToken=`) and in `Sec-WebSocket-Protocol:
# Authorization,<token>`; uvicorn logs the URL of every upgrade (INFO) and, at DEBUG, the
# request line and headers. Both go through the "uvicorn.error" logger.
_TOKEN_IN_TEXT = re.compile(r"(authToken=|Authorization,\s*)[^&\s,\"']+")


def _redact_tokens(value: Any) -> Any:
    return _TOKEN_IN_TEXT.sub(r"\1[redacted]", value) if isinstance(value, str) else value


class _RedactStreamTokens(logging.Filter):
    """Replace stream tokens in a record's message and arguments with ``[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redact_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_tokens(arg) for arg in record.args)
        return True


def _install_token_redaction() -> None:
    server_logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _RedactStreamTokens) for f in server_logger.filters):
        server_logger.addFilter(_RedactStreamTokens())


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
    config = uvicorn.Config(
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
    # After uvicorn.Config, which (re)configures logging: dictConfig keeps a logger's filters.
    _install_token_redaction()
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
