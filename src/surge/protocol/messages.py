"""Typed client messages of the wire protocol (see shared/spec/wire-protocol.md)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Join", "Leave", "SubscriptionKey", "SubscriptionRequest"]

# (stream, group) for a group subscription, (stream, group, id) for an item subscription.
SubscriptionKey = tuple[str, str] | tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    """The ``data`` object of a join or leave: what the client subscribes to, under which id."""

    stream: str
    group: str
    id: str | None
    subscription_id: str

    @property
    def key(self) -> SubscriptionKey:
        """The routing key: (stream, group) or (stream, group, id)."""
        if self.id is None:
            return (self.stream, self.group)
        return (self.stream, self.group, self.id)

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
