"""What deciding a WebSocket upgrade yields: accept with an auth context, or refuse over HTTP.

Shared by the upgrade check (``surge.server.upgrade``) and plugins' upgrade gates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.types import Scope, Send

from surge.protocol.codes import CloseCode

__all__ = ["Refusal", "UpgradeDecision"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """An HTTP answer to a refused upgrade."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    """Extra response headers (``Retry-After`` on a 429)."""

    async def send(self, scope: Scope, send: Send) -> None:
        """Send it as an HTTP response when the server supports that, else a plain 403 close."""
        if "websocket.http.response" in scope.get("extensions", {}):
            body = self.reason.encode()
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": self.status,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers),
                    ],
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send(
                {
                    "type": "websocket.close",
                    "code": CloseCode.POLICY_VIOLATION,
                    "reason": self.reason,
                }
            )


@dataclass(frozen=True, slots=True)
class UpgradeDecision:
    """Accept with ``auth_context``, or refuse with ``refusal``."""

    auth_context: Any = None
    refusal: Refusal | None = None
