"""The client's exceptions, under ``surge.errors.SurgeError``.

- ``ClientError``: base of everything ``surge.client`` raises on purpose.
- ``SubscriptionError``: the server refused a join or a page request (``code`` is the wire
  code, e.g. ``STREAM_ACCESS_DENIED``, ``SYNC_TOO_LARGE``, ``TOO_MANY_SUBSCRIPTIONS``,
  ``UNKNOWN_SUBSCRIPTION``).
- ``UpgradeRefused``: the server answered the WebSocket upgrade with an HTTP error (``status``:
  401 for a refused token, 403 for a foreign origin).
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


class UpgradeRefused(ClientError):
    """The WebSocket upgrade got an HTTP error response (``status``, ``body``)."""

    def __init__(self, status: int, body: str = "") -> None:
        self.status = status
        self.body = body
        super().__init__(f"WebSocket upgrade refused with HTTP {status}: {body}".rstrip(": "))


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
