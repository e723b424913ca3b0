"""The one exception hierarchy of Surge.

Errors are grouped by who must react to them:

- ``SurgeError``: the base of everything Surge raises on purpose.
- ``ConfigError``: the project is wrong (a step file, ``surge.config.py``, a setting). Carries the
  ``path`` at fault; startup stops with it.
- ``ValidationError``: data does not match a schema or an id is not acceptable. Carries
  pydantic-style
  ``errors`` (a list of ``{"loc", "msg", "type"}``). HTTP 400 when it comes from a request body.
- ``ProtocolError``: a client sent a frame that breaks the wire protocol. The connection gets an
  error event or a close code; nothing else is affected.
- ``AuthError``: a connection could not be authenticated (HTTP 401 on the upgrade).
  ``TokenExpiredError``: its token expired (the auth context's ``exp``): an upgrade gets 401, a
  live connection is closed with 4001 so the client refreshes its token and reconnects.
  ``AccessRevokedError``: the server revoked its access (``streams.revoke``): close 4003.
- ``RateLimitError``: a client went over a rate limit (``Limits``): 429 on the upgrade (with
  ``retry_after`` seconds), a ``RATE_LIMITED`` error event on a connection, then close 4029.
- ``ConflictError``: an ``update(..., if_version=...)`` found the item at another version
  (``expected``, ``actual``; ``actual`` None when the item is absent). Re-read and retry. HTTP 409.
- ``StoreError``: the storage backend failed. ``retryable`` says whether trying again may work
  (HTTP 503 when true, 500 otherwise).

``error_mapping(exc)`` is the one table from an error to what each client sees: its HTTP status,
its wire error code (``surge.protocol.codes``) and its WebSocket close code. Modules raise; the
HTTP adapter and the WebSocket endpoint look the answer up here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from surge.protocol.codes import (
    ACCESS_DENIED,
    CONFLICT,
    INTERNAL_ERROR,
    INVALID_MESSAGE,
    RATE_LIMITED,
    STORE_UNAVAILABLE,
    CloseCode,
)

__all__ = [
    "AccessRevokedError",
    "AuthError",
    "ConfigError",
    "ConflictError",
    "ErrorMapping",
    "ProtocolError",
    "RateLimitError",
    "StoreError",
    "SurgeError",
    "TokenExpiredError",
    "ValidationError",
    "error_mapping",
]


class SurgeError(Exception):
    """Base class of every error Surge raises on purpose."""


class ConfigError(SurgeError):
    """The project's configuration or a step file is invalid."""

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class ValidationError(SurgeError):
    """Data failed validation; ``errors`` lists each problem with its location."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        self.message = message
        self.errors: list[dict[str, Any]] = errors or []
        super().__init__(message)


class ProtocolError(SurgeError):
    """A client frame broke the wire protocol; ``code`` is the wire error code."""

    def __init__(self, message: str, *, code: str = "INVALID_MESSAGE") -> None:
        self.code = code
        super().__init__(message)


class AuthError(SurgeError):
    """A connection could not be authenticated."""


class TokenExpiredError(AuthError):
    """The connection's token expired: refresh it and connect again."""


class AccessRevokedError(AuthError):
    """The server revoked the connection's access."""


class RateLimitError(SurgeError):
    """A client went over a rate limit; ``retry_after`` says when trying again may work."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class ConflictError(SurgeError):
    """An optimistic-concurrency guard failed: the item is not at the ``expected`` version."""

    def __init__(self, message: str, *, expected: int, actual: int | None) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(message)


class StoreError(SurgeError):
    """The storage backend failed; ``retryable`` tells whether a retry may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        self.retryable = retryable
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ErrorMapping:
    """What a client sees of an error: HTTP status, wire error code, WebSocket close code."""

    http_status: int
    wire_code: str
    close_code: int


_INTERNAL = ErrorMapping(500, INTERNAL_ERROR, CloseCode.INTERNAL_ERROR)
_TABLE: dict[type[SurgeError], ErrorMapping] = {
    ValidationError: ErrorMapping(400, INVALID_MESSAGE, CloseCode.POLICY_VIOLATION),
    ProtocolError: ErrorMapping(400, INVALID_MESSAGE, CloseCode.POLICY_VIOLATION),
    TokenExpiredError: ErrorMapping(401, ACCESS_DENIED, CloseCode.TOKEN_EXPIRED),
    AccessRevokedError: ErrorMapping(403, ACCESS_DENIED, CloseCode.ACCESS_REVOKED),
    AuthError: ErrorMapping(401, ACCESS_DENIED, CloseCode.POLICY_VIOLATION),
    RateLimitError: ErrorMapping(429, RATE_LIMITED, CloseCode.RATE_LIMITED),
    ConflictError: ErrorMapping(409, CONFLICT, CloseCode.POLICY_VIOLATION),
    ConfigError: _INTERNAL,
    StoreError: _INTERNAL,
    SurgeError: _INTERNAL,
}
_RETRYABLE_STORE = ErrorMapping(503, STORE_UNAVAILABLE, CloseCode.TRY_AGAIN_LATER)


def error_mapping(exc: BaseException) -> ErrorMapping:
    """The HTTP status, wire code and close code for ``exc`` (500 for anything not Surge's)."""
    if isinstance(exc, StoreError) and exc.retryable:
        return _RETRYABLE_STORE
    if isinstance(exc, ProtocolError):
        return ErrorMapping(400, exc.code, CloseCode.POLICY_VIOLATION)
    for kind in type(exc).__mro__:
        found = _TABLE.get(kind)
        if found is not None:
            return found
    return _INTERNAL
