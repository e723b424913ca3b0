"""``MemoryStreamAdapter``: every stream in process memory, for tests and throwaway dev servers.

Items are kept as orjson bytes, so the store never shares a dict with a caller: encoding on the
way in is the copy, decoding on the way out is another. It also makes the memory store accept and
reject exactly the items the file store does. Each group is a ``dict`` whose insertion order is the
creation order (assigning an existing key keeps its position; delete then set appends).

Writes never ``await``, so a write is atomic per key and the sink runs before the writer resumes.
"""

from __future__ import annotations

import logging
from typing import Any

from surge.errors import StoreError
from surge.streams.feed import (
    Change,
    ChangeKind,
    EphemeralEvent,
    FeedSink,
    GroupSnapshot,
)
from surge.streams.stores._items import check_keys as _check_keys
from surge.streams.stores._items import decode_item as _decode
from surge.streams.stores._items import deliver as _deliver
from surge.streams.stores._items import encode_item as _encode

__all__ = ["MemoryStreamAdapter"]

logger = logging.getLogger(__name__)


class MemoryStreamAdapter:
    """A non-durable ``StreamAdapter`` holding every item in process memory."""

    is_distributed = False  # Changes reach this process's sink only.

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], dict[str, bytes]] = {}
        self._seq = 0
        self._sink: FeedSink | None = None
        self._is_closed = False

    async def open(self, sink: FeedSink) -> None:
        """Start delivering feed messages to ``sink``."""
        if self._is_closed:
            raise StoreError("store is closed")
        self._sink = sink

    async def close(self) -> None:
        """Stop accepting calls; idempotent. The data is dropped with the object."""
        self._is_closed = True

    async def get(self, stream: str, group: str, id: str) -> dict[str, Any] | None:
        """Return a copy of the item or None."""
        self._check_open()
        _check_keys(stream, group, id)
        data = self._groups.get((stream, group), {}).get(id)
        return None if data is None else _decode(data)

    async def set(self, stream: str, group: str, id: str, item: dict[str, Any]) -> Change:
        """Create or replace the item; the stored item carries ``"id": id``."""
        sink = self._check_open()
        _check_keys(stream, group, id)
        data = _encode(id, item)
        items = self._groups.setdefault((stream, group), {})
        kind: ChangeKind = "update" if id in items else "create"
        items[id] = data
        self._seq += 1
        change = Change(kind, stream, group, id, _decode(data), self._seq)
        _deliver(sink, change)
        return change

    async def delete(self, stream: str, group: str, id: str) -> Change | None:
        """Remove the item; returns the ``delete`` change or None when it did not exist."""
        sink = self._check_open()
        _check_keys(stream, group, id)
        items = self._groups.get((stream, group))
        if items is None or id not in items:
            return None
        data = items.pop(id)
        if not items:
            # list_groups only reports groups with items; dropping the empty dict keeps it O(1).
            del self._groups[(stream, group)]
        self._seq += 1
        change = Change("delete", stream, group, id, _decode(data), self._seq)
        _deliver(sink, change)
        return change

    async def get_group(self, stream: str, group: str) -> GroupSnapshot:
        """Return copies of the group's items in creation order with the current ``seq``."""
        self._check_open()
        _check_keys(stream, group, None)
        items = self._groups.get((stream, group), {})
        return GroupSnapshot([_decode(data) for data in items.values()], self._seq)

    async def get_item_snapshot(self, stream: str, group: str, id: str) -> GroupSnapshot:
        """Return ``[item]`` or ``[]`` with the current ``seq``."""
        self._check_open()
        _check_keys(stream, group, id)
        data = self._groups.get((stream, group), {}).get(id)
        return GroupSnapshot([] if data is None else [_decode(data)], self._seq)

    async def list_groups(self, stream: str) -> list[str]:
        """Return the sorted ids of the groups of ``stream`` holding at least one item."""
        self._check_open()
        _check_keys(stream, "", None)
        return sorted(group for (s, group) in self._groups if s == stream)

    async def send(self, stream: str, group: str, id: str | None, event: dict[str, Any]) -> None:
        """Hand an ephemeral event to the sink; nothing is stored."""
        sink = self._check_open()
        _check_keys(stream, group, id)
        _deliver(sink, EphemeralEvent(stream, group, id, event))

    def _check_open(self) -> FeedSink:
        if self._is_closed:
            raise StoreError("store is closed")
        if self._sink is None:
            raise StoreError("store is not open")
        return self._sink
