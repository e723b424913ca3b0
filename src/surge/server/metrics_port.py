"""A second listening port that serves only ``GET /metrics`` (``--metrics-port``).

Why not uvicorn again: a second ``uvicorn.Server`` in the process would install its own signal
handlers over the app server's. This listener runs on the app's event loop (as a plugin
*service*, ``surge.server.plugins``), so scraping reads the hub's tables on the loop thread that
writes them. It speaks just enough HTTP/1.1 for a scraper: one request per connection, the head
capped at ``MAX_HEAD_BYTES`` and ``HEAD_TIMEOUT_S``, then ``Connection: close``.

With ``surge start --workers N`` every worker serves its own numbers: the workers take the ports
``port`` .. ``port + N - 1``, each the first one free (``bind_first_free``), so Prometheus scrapes
N targets (README: "Operations").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable

__all__ = ["HEAD_TIMEOUT_S", "MAX_HEAD_BYTES", "bind_first_free", "serve_metrics_port"]

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8192
HEAD_TIMEOUT_S = 5.0

Render = Callable[[], Awaitable[tuple[bytes, str]]]
"""Returns the exposition body and its content type."""


def bind_first_free(host: str, ports: range) -> socket.socket:
    """A listening socket on the first port of ``ports`` that is free.

    Raises:
        OSError: every port is taken (the last error).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    error: OSError | None = None
    for port in ports:
        sock = socket.socket(family, socket.SOCK_STREAM)
        # SO_REUSEADDR (not SO_REUSEPORT): a port in TIME_WAIT is reusable, one that another
        # worker listens on is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(64)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sock.setblocking(False)
        return sock
    raise error or OSError(f"no port in {ports}")


async def serve_metrics_port(sock: socket.socket, render: Render) -> None:
    """Serve ``GET /metrics`` on ``sock`` until cancelled (then the socket is closed)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0].split(b" ")
            if len(line) != 3 or not line[2].startswith(b"HTTP/1."):
                status, body, kind = "400 Bad Request", b"bad request\n", "text/plain"
            elif line[0] not in (b"GET", b"HEAD"):
                status, body, kind = "405 Method Not Allowed", b"GET only\n", "text/plain"
            elif line[1].split(b"?", 1)[0] != b"/metrics":
                status, body, kind = "404 Not Found", b"metrics are at /metrics\n", "text/plain"
            else:
                body, kind = await render()
                status = "200 OK"
            headers = (
                f"HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {len(body)}\r\n"
                "cache-control: no-store\r\nconnection: close\r\n\r\n"
            ).encode()
            writer.write(headers if line[0] == b"HEAD" else headers + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a scraper that went away or sent garbage: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, sock=sock, limit=MAX_HEAD_BYTES)
    where = sock.getsockname()
    logger.info("metrics at http://%s:%s/metrics", *where[:2])
    try:
        async with server:
            await server.serve_forever()
    finally:
        server.close()
