"""Sans-I/O state of one subscription: apply server frames, get the resulting ``Change``.

The timestamp rules are those of Motia's official clients (wire-protocol.md): a group drops a
change of an item that is not newer than the last one it applied for that item, and a sync older
than the last sync; an item subscription drops any frame not newer than the last. Timestamps are
strictly increasing per *connection*, so ``reset_clock`` is called on every new connection: a
restarted server whose clock is behind the old one's is not ignored (the official clients keep
the old watermark and drop its frames until the wall clock catches up).

State is copy-on-write: ``state`` is a new list (or item) after each applied change, so another
thread may read it at any time (``surge.testing.TestClient``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from surge.client.frames import ServerFrame

__all__ = ["Change", "ChangeKind", "GroupState", "ItemState"]

ChangeKind = Literal["sync", "create", "update", "delete"]
_KINDS = ("sync", "create", "update", "delete")


@dataclass(frozen=True, slots=True)
class Change:
    """One applied change of a subscription's state.

    ``item`` is the changed item (for ``delete``: the item as it was); for a ``sync`` it is the
    new state (a list for a group, the item or None for an item subscription) and ``id`` is None
    for a group. ``offset``/``epoch`` are the server's resume position when it sends one
    (issue 13), else None.
    """

    kind: ChangeKind
    id: str | None
    item: Any
    timestamp: int
    offset: int | None = None
    epoch: str | None = None


def _change(frame: ServerFrame, item: Any) -> Change:
    kind: ChangeKind = frame.kind  # type: ignore[assignment]  # checked by the caller
    return Change(kind, frame.id, item, frame.timestamp, frame.offset, frame.epoch)


class GroupState:
    """A group's items in creation order, as the official clients keep them."""

    __slots__ = ("_items", "_last_sync", "_last_ts", "state")

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self._last_sync = 0
        self._last_ts: dict[str, int] = {}
        self.state: list[dict[str, Any]] = []

    def reset_clock(self) -> None:
        """Forget the timestamps seen (a new connection starts a new timestamp sequence)."""
        self._last_sync = 0
        self._last_ts = {}

    def apply(self, frame: ServerFrame) -> Change | None:
        """Apply a sync/create/update/delete; None when it is dropped or not a change."""
        kind = frame.kind
        if kind not in _KINDS:
            return None
        ts = frame.timestamp
        if kind == "sync":
            if ts < self._last_sync or not isinstance(frame.data, list):
                return None
            self._last_sync = ts
            self._last_ts = {}
            self._items = {
                item["id"]: item
                for item in frame.data
                if isinstance(item, dict) and isinstance(item.get("id"), str)
            }
            self.state = list(self._items.values())
            return _change(frame, self.state)
        item = frame.data
        item_id = frame.id
        if item_id is None and isinstance(item, dict) and isinstance(item.get("id"), str):
            item_id = item["id"]
        if item_id is None or not isinstance(item, dict):
            return None
        if ts <= self._last_ts.get(item_id, 0):
            return None
        self._last_ts[item_id] = ts
        if kind == "delete":
            if self._items.pop(item_id, None) is None:
                return None
        else:
            # An update of an unknown item is kept too (appended), as a create would be.
            self._items[item_id] = item
        self.state = list(self._items.values())
        return _change(frame, item)


class ItemState:
    """One item (or None when it does not exist)."""

    __slots__ = ("_last_ts", "state")

    def __init__(self) -> None:
        self._last_ts = 0
        self.state: dict[str, Any] | None = None

    def reset_clock(self) -> None:
        """Forget the last timestamp (a new connection)."""
        self._last_ts = 0

    def apply(self, frame: ServerFrame) -> Change | None:
        """Apply a sync/create/update/delete; None when it is dropped or not a change."""
        kind = frame.kind
        if kind not in _KINDS or frame.timestamp <= self._last_ts:
            return None
        item = frame.data
        if item is not None and not isinstance(item, dict):
            return None
        if kind != "sync" and item is None:
            return None
        self._last_ts = frame.timestamp
        self.state = None if kind == "delete" else item
        return _change(frame, self.state if kind == "sync" else item)
