"""CORS for the API steps: Starlette's ``CORSMiddleware``, with a fast path for requests that
carry no ``Origin`` header.

Starlette's middleware looks at every request: it copies the headers, wraps ``send`` and, on a
request without ``Origin`` (a server-to-server call, curl, a load generator, a same-origin GET),
does nothing but add ``Vary: Origin`` to the answer (so that a cache keeps the answers with and
without CORS headers apart). ``Cors`` does exactly that itself for those requests, at a fraction of
the cost, and hands every request with an ``Origin`` (simple requests and preflights) to
Starlette's middleware unchanged. ``tests/unit/server/test_cors.py`` compares both paths with
Starlette's own answers.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Cors"]

_ORIGIN = b"origin"
_VARY = b"vary"


class Cors:
    """ASGI middleware: CORS as configured (``Config.cors_origins``), every method and header."""

    def __init__(self, app: ASGIApp, *, origins: Sequence[str], expose: Sequence[str]) -> None:
        self.app = app
        self._cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=list(expose),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        for name, _ in scope["headers"]:  # ASGI servers send the names lower-cased
            if name == _ORIGIN:
                await self._cors(scope, receive, send)
                return

        async def send_varied(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = vary_origin(message.get("headers", ()))
            await send(message)

        await self.app(scope, receive, send_varied)


def vary_origin(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A copy of ``headers`` whose ``vary`` says ``Origin`` too, as Starlette's middleware
    writes it: the values of every ``vary`` header joined (``Accept, Origin``) into the first."""
    varies = [value for name, value in headers if name == _VARY]
    if not varies:
        return [*headers, (_VARY, b"Origin")]
    joined: tuple[bytes, bytes] | None = (_VARY, b", ".join([*varies, b"Origin"]))
    result: list[tuple[bytes, bytes]] = []
    for header in headers:
        if header[0] != _VARY:
            result.append(header)
        elif joined is not None:  # the first vary's place; the others are dropped
            result.append(joined)
            joined = None
    return result
