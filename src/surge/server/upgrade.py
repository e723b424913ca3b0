"""Deciding a WebSocket upgrade: the Workbench's key (dev), origin allow-list, ``authenticate``.

A refusal is an HTTP response on the upgrade (401 for authentication, 403 for origin) with a short
plain-text reason; the exception and the token never reach the client, and the token never
reaches the logs (it is redacted from the exception text before logging).

In ``surge dev`` the app puts the Workbench's key into the scope; an upgrade offering
``?surgeWorkbench=`` is then decided by that key alone (see ``surge.workbench.access``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.types import Scope, Send

from surge.errors import ValidationError
from surge.protocol.codes import CloseCode
from surge.server.auth import AuthRequest, extract_auth_token
from surge.workbench.access import (
    WORKBENCH_CONTEXT,
    WORKBENCH_KEY_SCOPE,
    WORKBENCH_QUERY,
    is_local_host,
    is_same_origin,
    key_matches,
)

if TYPE_CHECKING:
    from surge.server.runtime import Runtime

__all__ = ["Refusal", "UpgradeDecision", "authorize_upgrade"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An HTTP answer to a refused upgrade."""

    status: int
    reason: str

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


def _workbench_upgrade(
    offered: str, key: str, headers: dict[str, str], hosts: Sequence[str]
) -> UpgradeDecision:
    if not key_matches(offered, key):
        logger.warning("WebSocket upgrade refused: wrong workbench key")
        return UpgradeDecision(refusal=Refusal(401, "authentication failed"))
    if not is_local_host(headers, hosts):
        logger.warning("WebSocket upgrade refused: workbench key under a foreign Host")
        return UpgradeDecision(refusal=Refusal(403, "host not allowed"))
    if not is_same_origin(headers):
        logger.warning("WebSocket upgrade refused: workbench key from another origin")
        return UpgradeDecision(refusal=Refusal(403, "origin not allowed"))
    return UpgradeDecision(auth_context=WORKBENCH_CONTEXT)


def _redact(text: str, secret: str | None) -> str:
    if secret and len(secret) >= 1:
        text = text.replace(secret, "[redacted]")
    return text


async def authorize_upgrade(runtime: Runtime, scope: Scope) -> UpgradeDecision:
    """Run the origin check and ``authenticate`` for one upgrade request."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    query = scope.get("query_string", b"").decode("latin-1")
    workbench_key = scope.get(WORKBENCH_KEY_SCOPE)
    if workbench_key is not None and WORKBENCH_QUERY in query:
        offered = parse_qs(query).get(WORKBENCH_QUERY)
        if offered:
            return _workbench_upgrade(
                offered[0], workbench_key, headers, runtime.config.workbench_hosts
            )
    config = runtime.config
    if config.allowed_origins is not None:
        origin = headers.get("origin")
        if origin is not None and origin not in config.allowed_origins:
            logger.warning("WebSocket upgrade refused: origin %r not allowed", origin)
            return UpgradeDecision(refusal=Refusal(403, "origin not allowed"))
    auth = config.stream_auth
    if auth is None:
        return UpgradeDecision()
    path = scope.get("raw_path", b"").decode("latin-1") or scope.get("path", "/")
    request = AuthRequest(headers=headers, url=f"{path}?{query}" if query else path)
    token = extract_auth_token(request)
    try:
        context = auth.authenticate(request)
        if inspect.isawaitable(context):
            context = await context
    except Exception as exc:
        logger.warning(
            "WebSocket authentication refused: %s: %s",
            type(exc).__name__,
            _redact(str(exc), token),
        )
        return UpgradeDecision(refusal=Refusal(401, "authentication failed"))
    if context is None:
        return UpgradeDecision()
    if context is WORKBENCH_CONTEXT:
        # Only the key may make a Workbench connection, never a project's own authenticate.
        logger.warning("authenticate returned the workbench marker: upgrade refused")
        return UpgradeDecision(refusal=Refusal(401, "authentication failed"))
    schema = runtime.auth_context_schema
    if schema is not None:
        try:
            context = schema.validate_json(context)
        except ValidationError as exc:
            logger.warning("authenticate returned a context that fails context_schema: %s", exc)
            return UpgradeDecision(refusal=Refusal(401, "authentication failed"))
    return UpgradeDecision(auth_context=context)
