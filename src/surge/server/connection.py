"""One accepted WebSocket as the rest of the server sees it: protocol session, outbox, auth.

The hub routes frames to a ``Connection`` and never touches its outbox: ``send`` queues a frame,
``pending_limit`` bounds what the hub may buffer for a subscription waiting for its sync, and
``drop_slow`` applies the slow-consumer policy. The protocol ``Session`` is the one record of the
connection's subscriptions; the hub holds their routing entries.
"""

from __future__ import annotations

import itertools
from typing import Any

from surge.protocol.codec import Frame
from surge.protocol.session import Session
from surge.server.outbox import Outbox

__all__ = ["Connection"]

_ids = itertools.count(1)


class Connection:
    """One accepted WebSocket: its outbox, protocol session and auth context."""

    __slots__ = ("auth_context", "errors_logged", "id", "outbox", "session")

    def __init__(self, session: Session, outbox: Outbox, auth_context: Any) -> None:
        self.id = next(_ids)
        self.session = session
        self.outbox = outbox
        self.auth_context = auth_context
        # Client mistakes are logged once per connection at info, the rest at debug.
        self.errors_logged = 0

    def send(self, frame: Frame) -> None:
        """Queue a frame (the hub's only way to reach the socket)."""
        self.outbox.put(frame)

    @property
    def pending_limit(self) -> int:
        """How many frames may wait on one subscription whose sync is being prepared."""
        return self.outbox.capacity

    @property
    def max_sync_bytes(self) -> int:
        """The largest sync this connection may be sent (its outbox's byte cap)."""
        return self.outbox.max_bytes

    @property
    def is_gone(self) -> bool:
        """True once nothing more will reach the peer."""
        return self.outbox.is_gone

    def drop_slow(self) -> None:
        """The slow-consumer policy: drop what is queued and close with 1013."""
        self.outbox.overflow()

    def __repr__(self) -> str:
        return f"<Connection {self.id}>"
