"""Every code Surge puts on the wire, in one place: error-event codes and WebSocket close codes.

Error events (``{"type":"event","event":{"type":"error","data":{"code", "message"}}}``) tell a
client that one request failed while the connection stays open; close codes end the connection.
``surge.errors`` maps each ``SurgeError`` to its HTTP status, error code and close code.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

__all__ = [
    "ACCESS_DENIED",
    "CONFLICT",
    "INTERNAL_ERROR",
    "INVALID_MESSAGE",
    "RATE_LIMITED",
    "STORE_UNAVAILABLE",
    "SYNC_TOO_LARGE",
    "TOO_MANY_SUBSCRIPTIONS",
    "UNKNOWN_SUBSCRIPTION",
    "CloseCode",
]

# -- error-event codes ---------------------------------------------------------------------------
ACCESS_DENIED: Final = "STREAM_ACCESS_DENIED"
"""A join refused by ``can_access`` (or for an unknown stream); no subscription exists."""
INVALID_MESSAGE: Final = "INVALID_MESSAGE"
"""A malformed frame (bad JSON, wrong shape, invalid id)."""
TOO_MANY_SUBSCRIPTIONS: Final = "TOO_MANY_SUBSCRIPTIONS"
"""A join past ``Limits.max_subscriptions``."""
STORE_UNAVAILABLE: Final = "STORE_UNAVAILABLE"
"""The storage failed while serving a join; retrying later may work."""
SYNC_TOO_LARGE: Final = "SYNC_TOO_LARGE"
"""A join whose sync alone exceeds the connection's byte cap (``Limits.max_outbound_bytes``)."""
RATE_LIMITED: Final = "RATE_LIMITED"
"""A frame or join over one of the connection's rate limits (``Limits``); it was dropped.
A client that keeps going is closed with ``CloseCode.RATE_LIMITED``."""
UNKNOWN_SUBSCRIPTION: Final = "UNKNOWN_SUBSCRIPTION"
"""A ``page`` request naming a group subscription this connection does not hold (or an item
subscription); addressed with the request's ``streamName``/``groupId``."""
CONFLICT: Final = "CONFLICT"
"""A write whose ``if_version`` guard did not match the item's version (HTTP 409)."""
INTERNAL_ERROR: Final = "INTERNAL_ERROR"
"""Anything else that went wrong on the server's side."""


class CloseCode(IntEnum):
    """WebSocket close codes Surge sends (RFC 6455 section 7.4)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    """A binary frame: the protocol is text only."""
    INVALID_PAYLOAD = 1007
    """A text frame that is not UTF-8."""
    POLICY_VIOLATION = 1008
    """Too many malformed frames; a refused upgrade on servers without HTTP answers."""
    MESSAGE_TOO_BIG = 1009
    """A frame over ``Limits.max_frame_bytes``."""
    NO_STATUS = 1005
    """Received, never sent: the peer closed without a code."""
    ABNORMAL = 1006
    """Received, never sent: the connection dropped without a close frame."""
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    """The server is restarting: reconnect."""
    TRY_AGAIN_LATER = 1013
    """A slow consumer: the outbox overflowed; reconnect and resync."""

    # Application codes (RFC 6455: 4000-4999 are private use). 4000 + the HTTP status they echo.
    TOKEN_EXPIRED = 4001
    """The connection's token expired (the auth context's ``exp``): refresh it and reconnect."""
    ACCESS_REVOKED = 4003
    """The server revoked this connection's access (``streams.revoke``): do not reconnect with
    the same credentials."""
    RATE_LIMITED = 4029
    """The client kept sending over its rate limits after a ``RATE_LIMITED`` error event:
    reconnect later, slower."""
