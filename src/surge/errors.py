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
- ``StoreError``: the storage backend failed. ``retryable`` says whether trying again may work
  (HTTP 503 when true, 500 otherwise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "AuthError",
    "ConfigError",
    "ProtocolError",
    "StoreError",
    "SurgeError",
    "ValidationError",
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


class StoreError(SurgeError):
    """The storage backend failed; ``retryable`` tells whether a retry may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        self.retryable = retryable
        super().__init__(message)
