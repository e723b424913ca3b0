"""What flows from storage to subscribers: item changes and ephemeral events.

Every ``set``/``delete`` applied by a store becomes a ``Change``; every ``send`` becomes an
``EphemeralEvent``. Adapters hand both to one ``FeedSink`` on the event loop, *in the order they
were applied*, whichever process or instance applied them. The server's hub is that sink.

Changes and events of a (stream, group) share one sequence (``seq``): the wire ``offset`` of
docs/protocol.md section 2. Each store also keeps a bounded history of them per group, read back
as a ``History`` for a resuming client (section 3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Change",
    "ChangeKind",
    "EphemeralEvent",
    "FeedMessage",
    "FeedSink",
    "GroupSnapshot",
    "History",
    "Resync",
]

ChangeKind = Literal["create", "update", "delete"]


@dataclass(frozen=True, slots=True)
class Change:
    """One applied write: ``item`` is the stored item (or the deleted one), always with ``"id"``.

    ``seq`` orders changes within a (stream, group): a change with a larger ``seq`` was applied
    later, and a ``GroupSnapshot`` with ``seq >= change.seq`` already reflects the change.

    ``ops``: for an ``update`` made by ``update(ops)`` on an existing item, the ops that turn the
    item's previous state into ``item`` (``surge.streams.ops.apply_ops``), so subscribers that
    hold the previous state can be sent them instead of the whole item (protocol.md section 4).
    None for every other change, and when the stream's schema changed what the ops produced
    (a coerced or defaulted field): then only the whole item is right.
    """

    kind: ChangeKind
    stream: str
    group: str
    id: str
    item: dict[str, Any]
    seq: int
    ops: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class EphemeralEvent:
    """An event from ``send()``: no item changes; ``id`` is None for group-wide events.

    ``seq`` is its place in the group's sequence, shared with the changes (0: none given; not
    part of equality, so tests can compare events by content).
    """

    stream: str
    group: str
    id: str | None
    event: dict[str, Any]  # {"type": str, "data": Any}
    seq: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class GroupSnapshot:
    """A group's items in creation order, read atomically with the group's ``seq`` then.

    ``more``: for a windowed read (``get_group(limit=..., before=...)``), the cursor of the items
    older than these (pass it as ``before=``), or None when there are none.
    """

    items: list[dict[str, Any]]
    seq: int
    more: str | None = None


@dataclass(frozen=True, slots=True)
class History:
    """A group's changes and events after an offset, in order, read atomically with ``seq``.

    ``seq`` is the group's position at the read: every message of the group with a larger
    ``seq`` comes later through the feed, every one up to it is in ``messages`` (or at or
    before the offset asked for).
    """

    messages: list[Change | EphemeralEvent]
    seq: int


@dataclass(frozen=True, slots=True)
class Resync:
    """The feed may have missed messages (e.g. a lost Redis connection came back).

    The hub answers by sending every live subscription a fresh sync, so clients end in the
    stored state instead of silently missing what happened in between.
    """

    reason: str


FeedMessage = Change | EphemeralEvent | Resync
FeedSink = Callable[[FeedMessage], None]
