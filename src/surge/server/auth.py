"""Connection authentication: the request ``authenticate`` sees, and the token helper."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

__all__ = ["AuthRequest", "extract_auth_token"]


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """The WebSocket upgrade as ``authenticate`` sees it: lower-case headers and the URL."""

    headers: Mapping[str, str]
    url: str  # path and query, e.g. "/?authToken=abc"

    @property
    def query_params(self) -> dict[str, str]:
        """The query string's parameters (first value of each)."""
        return {k: v[0] for k, v in parse_qs(urlsplit(self.url).query).items()}


def extract_auth_token(request: AuthRequest) -> str | None:
    """Return the token from ``Sec-WebSocket-Protocol: Authorization,<token>`` or ``?authToken=``.

    Both the ``ws`` form (``Authorization,tok``) and the browser form (``Authorization, tok``) work.
    """
    protocols = request.headers.get("sec-websocket-protocol")
    if protocols:
        parts = [p.strip() for p in protocols.split(",")]
        if len(parts) >= 2 and parts[0] == "Authorization" and parts[1]:
            return parts[1]
    token = request.query_params.get("authToken")
    return token or None
