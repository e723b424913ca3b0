"""The client's exceptions, under ``surge.errors.SurgeError``.

- ``ClientError``: base of everything ``surge.client`` raises on purpose.
- ``SubscriptionError``: the server refused a join or a page request (``code`` is the wire
  code, e.g. ``STREAM_ACCESS_DENIED``, ``SYNC_TOO_LARGE``, ``TOO_MANY_SUBSCRIPTIONS``,
  ``UNKNOWN_SUBSCRIPTION``).
- ``UpgradeRefused``: the server answered the WebSocket upgrade with an HTTP error (``status``:
  401 for a refused token, 403 for a foreign origin; ``is_refusal`` for those two, which the
  client does not retry; a 429 or a 503 is retried, no sooner than its ``retry_after``).
- ``AccessRevoked``: the server closed the connection with 4003 (``streams.revoke``); the client
  does not reconnect with the same credentials.
- ``ClientClosed``: the client (or the subscription) was closed while something waited on it.
- ``ChangesOverflow``: a ``changes()`` iterator fell more than its buffer behind.
- ``TransportClosed``: a connection ended (inside transports; the client reconnects).
"""

from __future__ import annotations

from surge.errors import SurgeError

__all__ = [
    "AccessRevoked",
    "ChangesOverflow",
    "ClientClosed",
    "ClientError",
    "SubscriptionError",
    "TransportClosed",
    "UpgradeRefused",
]


class ClientError(SurgeError):
    """Base class of the errors of ``surge.client``."""


class SubscriptionError(ClientError):
    """A join (or a page request) was refused by the server; ``code`` is the protocol's error
    code."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}" if message else code)


REFUSAL_STATUSES = frozenset({401, 403})
"""Upgrade answers that refuse these credentials or this origin: retrying cannot help."""


class UpgradeRefused(ClientError):
    """The WebSocket upgrade got an HTTP error response (``status``, ``body``, and the
    ``Retry-After`` header's seconds as ``retry_after`` when it had one)."""

    def __init__(self, status: int, body: str = "", retry_after: float | None = None) -> None:
        self.status = status
        self.body = body
        self.retry_after = retry_after
        super().__init__(f"WebSocket upgrade refused with HTTP {status}: {body}".rstrip(": "))

    @property
    def is_refusal(self) -> bool:
        """True for 401 and 403 (credentials, origin); False for what may pass later (429 over
        a connect rate limit, 503 at a connection cap, a proxy's 502)."""
        return self.status in REFUSAL_STATUSES


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header's delay in seconds (only the delay-seconds form; None otherwise)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date, or garbage: the backoff alone decides
    return seconds if seconds >= 0 and seconds == seconds else None


class AccessRevoked(ClientError):
    """The server closed the connection with 4003: the credentials it was opened with are
    revoked (``code``, ``reason`` as sent)."""

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"access revoked by the server ({code}{': ' + reason if reason else ''})")


class ClientClosed(ClientError):
    """The client or subscription is closed."""


class ChangesOverflow(ClientError):
    """The consumer of ``changes()`` fell behind by more than its buffer; ``sub.state`` is
    still current, re-read it and start a new iterator."""


class TransportClosed(ClientError):
    """The connection ended with ``code`` (1006: no close frame)."""

    def __init__(self, code: int = 1006, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"connection closed ({code}{': ' + reason if reason else ''})")
