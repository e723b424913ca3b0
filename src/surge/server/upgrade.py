"""Deciding a WebSocket upgrade: the per-IP rate limit, plugins' gates, the origin allow-list,
then ``authenticate``.

The rate limit comes first so that a flood of upgrades costs no ``authenticate`` call: over
``Limits.connects_per_ip_per_second`` an address gets HTTP 429 with ``Retry-After``.

A refusal is an HTTP response on the upgrade (401 for authentication, 403 for origin) with a short
plain-text reason; the exception and the token never reach the client, and the token never
reaches the logs (it is redacted from the exception text before logging). ``authenticate``
raising is a refusal (401, as the guide's ``throw new Error("Invalid token")``), except when it
could not decide now: a ``TimeoutError``, an ``OSError`` (a refused or reset connection to the
session store) or a retryable ``StoreError`` answers 503 with ``Retry-After``, so clients come
back instead of taking a passing outage of the auth backend for a bad token.

Plugins may register upgrade gates (``ServerExtensions.upgrade_gates``) that decide an upgrade
first (under ``surge dev``, the Workbench's key), and auth contexts only a gate may hand out
(``reserved_contexts``): ``authenticate`` returning one of those is refused.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from typing import TYPE_CHECKING

from starlette.types import Scope

from surge.errors import RateLimitError, StoreError, ValidationError, error_mapping
from surge.server.access_control import expiry_of
from surge.server.asgi import query_string, request_headers
from surge.server.auth import AuthRequest, extract_auth_token
from surge.server.decisions import Refusal, UpgradeDecision
from surge.server.logs import CLIENT_MISTAKES
from surge.server.stats import STATS

if TYPE_CHECKING:
    from surge.server.runtime import Runtime

__all__ = ["Refusal", "UpgradeDecision", "authorize_upgrade"]

logger = logging.getLogger(__name__)


def _redact(text: str, secret: str | None) -> str:
    if secret and len(secret) >= 1:
        text = text.replace(secret, "[redacted]")
    return text


async def authorize_upgrade(runtime: Runtime, scope: Scope) -> UpgradeDecision:
    """Run the rate limit, the origin check and ``authenticate`` for one upgrade request."""
    limiter = runtime.upgrade_limiter
    if limiter is not None:
        client = scope.get("client")
        address = client[0] if client else None
        wait = limiter.check(address, time.monotonic())
        if wait is not None:
            return _rate_limited(address, wait)
    headers = request_headers(scope)
    query = query_string(scope)
    extensions = runtime.extensions
    for gate in extensions.upgrade_gates:
        decision = await gate(scope, headers)
        if decision is not None:
            return decision
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
        if _cannot_decide_now(exc):
            logger.warning(
                "WebSocket authentication unavailable (503, retry later): %s: %s",
                type(exc).__name__,
                _redact(str(exc), token),
            )
            return UpgradeDecision(
                refusal=Refusal(
                    503, "authentication unavailable, retry later", (("retry-after", "1"),)
                )
            )
        logger.warning(
            "WebSocket authentication refused: %s: %s",
            type(exc).__name__,
            _redact(str(exc), token),
        )
        return UpgradeDecision(refusal=Refusal(401, "authentication failed"))
    if context is None:
        return UpgradeDecision()
    if any(context is reserved for reserved in extensions.reserved_contexts):
        # Only a plugin's gate may hand out its context (the Workbench's), never authenticate.
        logger.warning("authenticate returned a context reserved to a plugin: upgrade refused")
        return UpgradeDecision(refusal=Refusal(401, "authentication failed"))
    schema = runtime.auth_context_schema
    if schema is not None:
        try:
            context = schema.validate_json(context)
        except ValidationError as exc:
            logger.warning("authenticate returned a context that fails context_schema: %s", exc)
            return UpgradeDecision(refusal=Refusal(401, "authentication failed"))
    try:
        exp = expiry_of(context)
    except ValidationError as exc:
        logger.warning("authenticate returned a context with an invalid exp: %s", exc)
        return UpgradeDecision(refusal=Refusal(401, "authentication failed"))
    if exp is not None and exp <= time.time():
        return UpgradeDecision(refusal=Refusal(401, "token expired"))
    return UpgradeDecision(auth_context=context)


def _cannot_decide_now(exc: Exception) -> bool:
    """``authenticate`` failed for a reason that may pass (its store timed out or is away)."""
    if isinstance(exc, StoreError):
        return exc.retryable
    # PermissionError is an OSError too, and the usual way to say "bad token".
    return isinstance(exc, TimeoutError | OSError) and not isinstance(exc, PermissionError)


def _rate_limited(address: str | None, wait: float) -> UpgradeDecision:
    STATS.rate_limited["connections"] += 1
    if CLIENT_MISTAKES.allow():
        logger.info("WebSocket upgrade refused: too many attempts from %s", address)
    refused = RateLimitError("too many connection attempts", retry_after=wait)
    retry_after = str(max(1, math.ceil(refused.retry_after)))
    return UpgradeDecision(
        refusal=Refusal(
            error_mapping(refused).http_status,
            "too many connection attempts, retry later",
            (("retry-after", retry_after),),
        )
    )
