"""``MemoryStreamAdapter``: every stream in process memory, for tests and throwaway dev servers.

Items are kept as orjson bytes, so the store never shares a dict with a caller: encoding on the
way in is the copy, decoding on the way out is another. It also makes the memory store accept and
reject exactly the items the file store does. Each group is a ``dict`` whose insertion order is the
creation order (assigning an existing key keeps its position; delete then set appends).

Writes never ``await``, so a write is atomic per key and the sink runs before the writer resumes.
``update`` reads, applies the ops, validates and writes in one such step. An item's version is the
store-wide ``seq`` of its last change.

Windowed reads (``get_group(limit=, before=)``): each entry keeps ``created``, the ``seq`` of its
creation, which grows along the dict's order; the cursor is that number. The newest page walks
the dict backwards (O(limit)); a page before a cursor bisects a list of the entries (O(n) pointer
copies, no decoding).

TTL: each entry keeps its expiry (monotonic clock); a heap of (expiry, key) feeds one
``ExpirySweeper`` task (started by the first write with a TTL), which deletes due items. Heap
entries made stale by a later write are skipped when they come up.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson

from surge.errors import StoreError, ValidationError
from surge.streams.feed import (
    Change,
    ChangeKind,
    EphemeralEvent,
    FeedSink,
    GroupSnapshot,
    History,
)
from surge.streams.history import DEFAULT_POLICY, GroupHistory, HistoryPolicy
from surge.streams.ops import ItemValidator, Updated, apply_update, check_if_version, check_ops
from surge.streams.stores._expiry import ExpirySweeper
from surge.streams.stores._items import check_keys as _check_keys
from surge.streams.stores._items import check_window as _check_window
from surge.streams.stores._items import decode_item as _decode
from surge.streams.stores._items import deliver as _deliver
from surge.streams.stores._items import encode_cursor as _cursor
from surge.streams.stores._items import encode_item as _encode

__all__ = ["MemoryStreamAdapter"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Entry:
    data: bytes
    version: int
    expires_at: float | None  # time.monotonic()
    created: int  # the seq of the item's creation: its place in the group


class MemoryStreamAdapter:
    """A non-durable ``StreamAdapter`` holding every item in process memory."""

    is_distributed = False  # Changes reach this process's sink only.

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], dict[str, _Entry]] = {}
        self._seq = 0
        self._sink: FeedSink | None = None
        self._is_closed = False
        self._expiries: list[tuple[float, str, str, str]] = []  # heap of (expires_at, key)
        self._sweeper: ExpirySweeper | None = None
        self.epoch = secrets.token_urlsafe(6)
        """Names this store's history (docs/protocol.md section 2): random per instance."""
        self._policies: dict[str, HistoryPolicy] = {}
        self._histories: dict[tuple[str, str], GroupHistory] = {}
        self._pruned_floor = 0  # the largest floor of a history dropped whole
        self._pruned_at = time.monotonic()

    def configure_history(self, stream: str, policy: HistoryPolicy) -> None:
        """Keep ``policy``'s history for every group of ``stream`` (default ``HistoryPolicy()``)."""
        self._policies[stream] = policy

    async def open(self, sink: FeedSink) -> None:
        """Start delivering feed messages to ``sink`` (the sweeper starts with the first TTL)."""
        if self._is_closed:
            raise StoreError("store is closed")
        self._sink = sink

    async def close(self) -> None:
        """Stop accepting calls and the sweeper; idempotent. The data is dropped with the object."""
        self._is_closed = True
        if self._sweeper is not None:
            await self._sweeper.stop()

    async def get(self, stream: str, group: str, id: str) -> dict[str, Any] | None:
        """Return a copy of the item or None."""
        self._check_open()
        _check_keys(stream, group, id)
        entry = self._groups.get((stream, group), {}).get(id)
        return None if entry is None else _decode(entry.data)

    async def set(
        self, stream: str, group: str, id: str, item: dict[str, Any], *, ttl: float | None = None
    ) -> Change:
        """Create or replace the item (expiring ``ttl`` seconds from now, or never)."""
        sink = self._check_open()
        _check_keys(stream, group, id)
        return self._write(sink, stream, group, id, _encode(id, item), ttl)

    async def update(
        self,
        stream: str,
        group: str,
        id: str,
        ops: list[dict[str, Any]],
        *,
        if_version: int | None = None,
        ttl: float | None = None,
        default_ttl: float | None = None,
        validate: ItemValidator | None = None,
    ) -> Updated:
        """Apply ``ops`` to the item atomically (see ``StreamAdapter.update``)."""
        sink = self._check_open()
        _check_keys(stream, group, id)
        ops = check_ops(ops)
        entry = self._groups.get((stream, group), {}).get(id)
        check_if_version(if_version, None if entry is None else entry.version)
        old = None if entry is None else _decode(entry.data)
        new, delta = apply_update(None if entry is None else _decode(entry.data), ops, id, validate)
        data = _encode(id, new)
        if ttl is None and entry is None:
            ttl = default_ttl
        expires_at = None if entry is None else entry.expires_at
        change = self._write(
            sink, stream, group, id, data, ttl, keep=ttl is None, at=expires_at, ops=delta
        )
        return Updated(old, change)

    def _write(
        self,
        sink: FeedSink,
        stream: str,
        group: str,
        id: str,
        data: bytes,
        ttl: float | None,
        *,
        keep: bool = False,
        at: float | None = None,
        ops: list[dict[str, Any]] | None = None,
    ) -> Change:
        items = self._groups.setdefault((stream, group), {})
        previous = items.get(id)
        kind: ChangeKind = "update" if previous is not None else "create"
        self._seq += 1
        expires_at = at if keep else None if ttl is None else time.monotonic() + ttl
        created = self._seq if previous is None else previous.created
        items[id] = _Entry(data, self._seq, expires_at, created)
        if expires_at is not None and not keep:
            heapq.heappush(self._expiries, (expires_at, stream, group, id))
            if self._sweeper is None:
                self._sweeper = ExpirySweeper(self._sweep, name="surge-memory-expiry")
                self._sweeper.start()
            elif ttl is not None:
                self._sweeper.notify(ttl)
        change = Change(kind, stream, group, id, _decode(data), self._seq, ops)
        self._record(change)
        _deliver(sink, change)
        return change

    def _record(self, message: Change | EphemeralEvent) -> None:
        """Append ``message`` (whose ``seq`` is ``self._seq``) to its group's history."""
        now = time.monotonic()
        key = (message.stream, message.group)
        history = self._histories.get(key)
        if history is None:
            history = self._histories[key] = GroupHistory(self._pruned_floor)
        history.append(message, self._seq, now, self._policies.get(message.stream, DEFAULT_POLICY))
        if now - self._pruned_at >= 1.0:
            self._pruned_at = now
            self._prune(now)

    def _prune(self, now: float) -> None:
        """Drop the histories whose every message expired (bounded memory for idle groups)."""
        for key, history in list(self._histories.items()):
            history.expire(now)
            if not history.entries:
                self._pruned_floor = max(self._pruned_floor, history.floor)
                del self._histories[key]

    async def read_history(self, stream: str, group: str, since: int) -> History | None:
        """The group's messages after ``since``, or None when they are not all kept."""
        self._check_open()
        _check_keys(stream, group, None)
        if since > self._seq:
            return None  # not an offset of this store
        history = self._histories.get((stream, group))
        if history is None:
            # Nothing recorded: complete only if nothing was dropped after ``since`` either.
            return History([], self._seq) if since >= self._pruned_floor else None
        history.expire(time.monotonic())
        messages = history.after(since)
        return None if messages is None else History(messages, self._seq)

    async def _sweep(self) -> float | None:
        """Delete every due item; return the seconds until the next expiry (None: none)."""
        now = time.monotonic()
        heap = self._expiries
        while heap and heap[0][0] <= now:
            expires_at, stream, group, id = heapq.heappop(heap)
            entry = self._groups.get((stream, group), {}).get(id)
            if entry is None or entry.expires_at != expires_at:
                continue  # deleted, or rewritten with another expiry since
            sink = self._sink
            if sink is None or self._is_closed:
                return None
            self._remove(sink, stream, group, id)
        return heap[0][0] - now if heap else None

    async def delete(self, stream: str, group: str, id: str) -> Change | None:
        """Remove the item; returns the ``delete`` change or None when it did not exist."""
        sink = self._check_open()
        _check_keys(stream, group, id)
        items = self._groups.get((stream, group))
        if items is None or id not in items:
            return None
        return self._remove(sink, stream, group, id)

    def _remove(self, sink: FeedSink, stream: str, group: str, id: str) -> Change:
        items = self._groups[(stream, group)]
        entry = items.pop(id)
        if not items:
            # list_groups only reports groups with items; dropping the empty dict keeps it O(1).
            del self._groups[(stream, group)]
        self._seq += 1
        change = Change("delete", stream, group, id, _decode(entry.data), self._seq)
        self._record(change)
        _deliver(sink, change)
        return change

    async def get_group(
        self, stream: str, group: str, *, limit: int | None = None, before: str | None = None
    ) -> GroupSnapshot:
        """Return copies of the group's items in creation order with the current ``seq``: all of
        them, or the newest ``limit`` (created before the cursor ``before``) with ``more``."""
        self._check_open()
        _check_keys(stream, group, None)
        count, end = _check_window(limit, before)
        items = self._groups.get((stream, group), {})
        if end is None:
            if count is None:
                return GroupSnapshot([_decode(entry.data) for entry in items.values()], self._seq)
            newest = list(itertools.islice(reversed(items.values()), count + 1))
            page = newest[:count][::-1]
            has_more = len(newest) > count
        else:
            entries = list(items.values())
            stop = bisect.bisect_left(entries, end, key=lambda entry: entry.created)
            start = 0 if count is None else max(0, stop - count)
            page = entries[start:stop]
            has_more = start > 0
        more = _cursor(page[0].created) if has_more and page else None
        return GroupSnapshot([_decode(entry.data) for entry in page], self._seq, more)

    async def get_item_snapshot(self, stream: str, group: str, id: str) -> GroupSnapshot:
        """Return ``[item]`` or ``[]`` with the current ``seq``."""
        self._check_open()
        _check_keys(stream, group, id)
        entry = self._groups.get((stream, group), {}).get(id)
        return GroupSnapshot([] if entry is None else [_decode(entry.data)], self._seq)

    async def list_groups(self, stream: str) -> list[str]:
        """Return the sorted ids of the groups of ``stream`` holding at least one item."""
        self._check_open()
        _check_keys(stream, "", None)
        return sorted(group for (s, group) in self._groups if s == stream)

    async def send(self, stream: str, group: str, id: str | None, event: dict[str, Any]) -> None:
        """Hand an ephemeral event to the sink with the next ``seq``; it enters the history only."""
        sink = self._check_open()
        _check_keys(stream, group, id)
        try:
            event = _decode(orjson.dumps(event))  # the history keeps its own copy
        except TypeError as exc:
            raise ValidationError(
                f"event is not JSON-serialisable: {exc}",
                [{"loc": ["event"], "msg": str(exc), "type": "json_invalid"}],
            ) from exc
        self._seq += 1
        message = EphemeralEvent(stream, group, id, event, self._seq)
        self._record(message)
        _deliver(sink, message)

    def _check_open(self) -> FeedSink:
        if self._is_closed:
            raise StoreError("store is closed")
        if self._sink is None:
            raise StoreError("store is not open")
        return self._sink
