"""Typed client messages of the wire protocol (see shared/spec/wire-protocol.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Join", "Leave", "Page", "Since", "SubscriptionKey", "SubscriptionRequest"]

# (stream, group) for a group subscription, (stream, group, id) for an item subscription.
SubscriptionKey = tuple[str, str] | tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Since:
    """A join's ``"since": {"offset": N, "epoch": "E"}``: the last position the client saw
    (docs/protocol.md section 3)."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    """The ``data`` object of a join or leave: what the client subscribes to, under which id.

    ``since`` (a resuming join's position) is not part of equality or hashing: a leave, which
    carries no ``since``, still names the same subscription.
    """

    stream: str
    group: str
    id: str | None
    subscription_id: str
    deltas: bool = False
    """The join asked for deltas (``"deltas": true``): updates made by ``update(ops)`` may come as
    ``patch`` frames (protocol.md section 4)."""
    compact: bool = field(default=False, compare=False)
    """The join also asked for the compact patch form (``"compact": true``, protocol.md section
    4): its patches come as ``{"timestamp":..,"patch":[..]}``. Only meaningful with ``deltas``;
    not part of equality (a leave names the subscription without it)."""
    since: Since | None = field(default=None, compare=False)

    @property
    def key(self) -> SubscriptionKey:
        """The routing key: (stream, group) or (stream, group, id)."""
        if self.id is None:
            return (self.stream, self.group)
        return (self.stream, self.group, self.id)

    @property
    def patch_form(self) -> int:
        """How this subscription takes an ``update(ops)``: 0 whole, 1 patch, 2 compact patch."""
        return (2 if self.compact else 1) if self.deltas else 0

    @property
    def is_item(self) -> bool:
        """True for an item subscription, False for a group subscription."""
        return self.id is not None


@dataclass(frozen=True, slots=True)
class Join:
    """``{"type":"join","data":{...}}``."""

    request: SubscriptionRequest


@dataclass(frozen=True, slots=True)
class Leave:
    """``{"type":"leave","data":{...}}``."""

    request: SubscriptionRequest


@dataclass(frozen=True, slots=True)
class Page:
    """``{"type":"page","data":{streamName, groupId, subscriptionId, before?, limit?}}``: the
    items of a held group subscription older than the cursor ``before`` (protocol.md section 5).

    ``before`` None: the newest page; ``limit`` None: the stream's default.
    """

    stream: str
    group: str
    subscription_id: str
    before: str | None
    limit: int | None
