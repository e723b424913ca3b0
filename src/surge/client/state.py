"""Sans-I/O state of one subscription: apply server frames, get the resulting ``Change``.

The timestamp rules are those of Motia's official clients (wire-protocol.md): a group drops a
change of an item that is not newer than the last one it applied for that item, and a sync older
than the last sync; an item subscription drops any frame not newer than the last. Timestamps are
strictly increasing per *connection*, so ``reset_clock`` is called on every new connection: a
restarted server whose clock is behind the old one's is not ignored (the official clients keep
the old watermark and drop its frames until the wall clock catches up).

State is copy-on-write: ``state`` is a new list (or item) after each applied change, so another
thread may read it at any time (``surge.testing.TestClient``).

Deltas (protocol.md section 4): a ``patch`` frame's ops are applied with the server's own
``surge.streams.ops.apply_ops`` to a copy of the held item, so the result is exactly the stored
item; it is seen as an ``update`` change. A patch of an item not held is ignored (the server only
patches what a subscription holds; outside a windowed sync there is nothing to patch).

Windowed groups (protocol.md section 5): a ``sync`` with ``more`` holds only the newest items;
``GroupState.more`` is the cursor of the older ones, a ``page`` frame puts them before the held
items (a ``page`` change), and an ``update`` of an item not held is ignored (it is an older item
outside the window, not a new one: new items come as ``create``).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any, Literal

from surge.client.frames import ServerFrame
from surge.errors import ValidationError
from surge.streams.ops import apply_ops

__all__ = ["Change", "ChangeKind", "GroupState", "ItemState"]

logger = logging.getLogger(__name__)

ChangeKind = Literal["sync", "create", "update", "delete", "page"]
_KINDS = ("sync", "create", "update", "delete", "patch", "page")


@dataclass(frozen=True, slots=True)
class Change:
    """One applied change of a subscription's state.

    ``item`` is the changed item (for ``delete``: the item as it was); for a ``sync`` it is the
    new state (a list for a group, the item or None for an item subscription) and ``id`` is None
    for a group; for a ``page`` it is the older items just loaded. A ``patch`` from the server is
    an ``update`` here, with the whole patched item. ``offset``/``epoch`` are the server's resume
    position when it sends one (issue 13), else None.
    """

    kind: ChangeKind
    id: str | None
    item: Any
    timestamp: int
    offset: int | None = None
    epoch: str | None = None


def _change(frame: ServerFrame, item: Any) -> Change:
    kind: ChangeKind = "update" if frame.kind == "patch" else frame.kind  # type: ignore[assignment]
    return Change(kind, frame.id, item, frame.timestamp, frame.offset, frame.epoch)


def _patched(held: dict[str, Any], frame: ServerFrame) -> dict[str, Any] | None:
    """``held`` with the frame's ops applied (a new dict), or None when they do not apply."""
    data = frame.data
    ops = data.get("ops") if isinstance(data, dict) else None
    item_id = frame.id
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops) or not item_id:
        logger.warning("stream client: ignored a malformed patch of %s", item_id)
        return None
    try:
        return apply_ops(copy.deepcopy(held), ops, item_id)
    except (ValidationError, KeyError, TypeError) as exc:
        # The server sends only ops that applied to this very item: a failure means the copy
        # is not the item's previous state. Keep it; the next whole item or sync heals it.
        logger.warning("stream client: a patch of %s did not apply: %s", item_id, exc)
        return None


def _is_stale(frame: ServerFrame, last: int) -> bool:
    """The timestamp rule: a change not newer than the last one applied is dropped. The frames
    of a batched ``resume`` all carry its timestamp (and come, in order, before any later frame
    of the connection): an equal timestamp is newer there."""
    ts = frame.timestamp
    return ts < last if frame.replayed else ts <= last


class GroupState:
    """A group's items in creation order, as the official clients keep them."""

    __slots__ = ("_is_windowed", "_items", "_last_sync", "_last_ts", "more", "state")

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self._last_sync = 0
        self._last_ts: dict[str, int] = {}
        self.state: list[dict[str, Any]] = []
        self.more: str | None = None
        """The cursor of the items older than those held (a windowed sync), or None."""
        self._is_windowed = False

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
            self._items = _by_id(frame.data)
            self.more = frame.more
            self._is_windowed = frame.more is not None
            self.state = list(self._items.values())
            return _change(frame, self.state)
        if kind == "page":
            return self._page(frame)
        if kind == "patch":
            return self._patch(frame)
        item = frame.data
        item_id = frame.id
        if item_id is None and isinstance(item, dict) and isinstance(item.get("id"), str):
            item_id = item["id"]
        if item_id is None or not isinstance(item, dict):
            return None
        if _is_stale(frame, self._last_ts.get(item_id, 0)):
            return None
        self._last_ts[item_id] = ts
        if kind == "delete":
            if self._items.pop(item_id, None) is None:
                return None
        elif kind == "update" and self._is_windowed and item_id not in self._items:
            return None  # an older item outside the window
        else:
            # An update of an unknown item is kept too (appended), as a create would be.
            self._items[item_id] = item
        self.state = list(self._items.values())
        return _change(frame, item)

    def _patch(self, frame: ServerFrame) -> Change | None:
        item_id = frame.id
        held = None if item_id is None else self._items.get(item_id)
        if item_id is None or held is None or _is_stale(frame, self._last_ts.get(item_id, 0)):
            return None
        item = _patched(held, frame)
        if item is None:
            return None
        self._last_ts[item_id] = frame.timestamp
        self._items[item_id] = item
        self.state = list(self._items.values())
        return _change(frame, item)

    def _page(self, frame: ServerFrame) -> Change | None:
        """Older items: before the held ones (an item already held takes the page's value)."""
        if not isinstance(frame.data, list):
            return None
        older = _by_id(frame.data)
        self.more = frame.more
        for item_id, item in older.items():
            if item_id in self._items:
                self._items[item_id] = item
        added = {item_id: item for item_id, item in older.items() if item_id not in self._items}
        self._items = {**added, **self._items}
        self.state = list(self._items.values())
        return _change(frame, list(older.values()))


def _by_id(items: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(items, list):
        return {}
    return {
        item["id"]: item
        for item in items
        if isinstance(item, dict) and isinstance(item.get("id"), str)
    }


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
        """Apply a sync/create/update/patch/delete; None when it is dropped or not a change."""
        kind = frame.kind
        if kind not in _KINDS or kind == "page" or _is_stale(frame, self._last_ts):
            return None
        if kind == "patch":
            held = self.state
            item = None if held is None else _patched(held, frame)
            if item is None:
                return None
            self._last_ts = frame.timestamp
            self.state = item
            return _change(frame, item)
        item = frame.data
        if item is not None and not isinstance(item, dict):
            return None
        if kind != "sync" and item is None:
            return None
        self._last_ts = frame.timestamp
        self.state = None if kind == "delete" else item
        return _change(frame, self.state if kind == "sync" else item)
