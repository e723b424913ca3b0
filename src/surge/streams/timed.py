"""A ``StreamAdapter`` that times every storage operation of another one (for metrics).

``TimedAdapter(inner, observe)`` forwards each operation to ``inner`` and then calls
``observe(operation, seconds, ok)``: ``operation`` is the method's name (``get``, ``set``,
``update``, ``delete``, ``get_group``, ``get_item_snapshot``, ``list_groups``, ``send``,
``read_history``), ``ok``
False when it raised. ``open`` and ``close`` are not timed; every other attribute (``is_ready``,
``is_distributed``, an adapter's own extras) reads through to ``inner``, so the wrapper changes
nothing a caller can see but the timing. The cost is two ``perf_counter`` calls and the observer
per operation: per write, not per delivered frame.

``store_kind(adapter)`` names an adapter for a metric label (``memory``, ``file``, ``redis``, or
its class name): one value per deployment, never a per-item or per-group label.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from surge.streams.adapter import StreamAdapter
from surge.streams.feed import Change, FeedSink, GroupSnapshot, History
from surge.streams.history import HistoryPolicy
from surge.streams.ops import ItemValidator, Updated

__all__ = ["StoreObserver", "TimedAdapter", "innermost", "store_kind"]

StoreObserver = Callable[[str, float, bool], None]
"""Told (operation, seconds, ok) after each timed storage operation."""

_KINDS = {
    "MemoryStreamAdapter": "memory",
    "FileStreamAdapter": "file",
    "RedisStreamAdapter": "redis",
}


def innermost(adapter: object) -> object:
    """The adapter under every wrapper (wrappers keep what they wrap in ``inner``)."""
    for _ in range(16):  # wrappers are few; a cycle must not hang
        inner = getattr(adapter, "inner", None)
        if inner is None:
            return adapter
        adapter = inner
    return adapter


def store_kind(adapter: object) -> str:
    """A short, bounded name for the adapter's kind (a metric label)."""
    name = type(innermost(adapter)).__name__
    return _KINDS.get(name, name.removesuffix("StreamAdapter").lower()[:40] or "custom")


class TimedAdapter:
    """``inner`` with each operation timed (see the module docstring)."""

    def __init__(self, inner: StreamAdapter, observe: StoreObserver) -> None:
        self.inner = inner
        self._observe = observe
        self.is_distributed: bool = inner.is_distributed

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes this class lacks: the adapter's own (is_ready, where...).
        return getattr(self.inner, name)

    async def open(self, sink: FeedSink) -> None:
        """Open ``inner`` (not timed)."""
        await self.inner.open(sink)

    async def close(self) -> None:
        """Close ``inner`` (not timed)."""
        await self.inner.close()

    async def get(self, stream: str, group: str, id: str) -> dict[str, Any] | None:
        """``inner.get``, timed."""
        start, ok = time.perf_counter(), False
        try:
            item = await self.inner.get(stream, group, id)
            ok = True
            return item
        finally:
            self._observe("get", time.perf_counter() - start, ok)

    async def set(
        self, stream: str, group: str, id: str, item: dict[str, Any], *, ttl: float | None = None
    ) -> Change:
        """``inner.set``, timed."""
        start, ok = time.perf_counter(), False
        try:
            change = await self.inner.set(stream, group, id, item, ttl=ttl)
            ok = True
            return change
        finally:
            self._observe("set", time.perf_counter() - start, ok)

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
        """``inner.update``, timed (a refused update counts as not ok)."""
        start, ok = time.perf_counter(), False
        try:
            updated = await self.inner.update(
                stream,
                group,
                id,
                ops,
                if_version=if_version,
                ttl=ttl,
                default_ttl=default_ttl,
                validate=validate,
            )
            ok = True
            return updated
        finally:
            self._observe("update", time.perf_counter() - start, ok)

    async def delete(self, stream: str, group: str, id: str) -> Change | None:
        """``inner.delete``, timed."""
        start, ok = time.perf_counter(), False
        try:
            change = await self.inner.delete(stream, group, id)
            ok = True
            return change
        finally:
            self._observe("delete", time.perf_counter() - start, ok)

    async def get_group(
        self, stream: str, group: str, *, limit: int | None = None, before: str | None = None
    ) -> GroupSnapshot:
        """``inner.get_group``, timed."""
        start, ok = time.perf_counter(), False
        try:
            snapshot = await self.inner.get_group(stream, group, limit=limit, before=before)
            ok = True
            return snapshot
        finally:
            self._observe("get_group", time.perf_counter() - start, ok)

    async def get_item_snapshot(self, stream: str, group: str, id: str) -> GroupSnapshot:
        """``inner.get_item_snapshot``, timed."""
        start, ok = time.perf_counter(), False
        try:
            snapshot = await self.inner.get_item_snapshot(stream, group, id)
            ok = True
            return snapshot
        finally:
            self._observe("get_item_snapshot", time.perf_counter() - start, ok)

    async def list_groups(self, stream: str) -> list[str]:
        """``inner.list_groups``, timed."""
        start, ok = time.perf_counter(), False
        try:
            groups = await self.inner.list_groups(stream)
            ok = True
            return groups
        finally:
            self._observe("list_groups", time.perf_counter() - start, ok)

    async def send(self, stream: str, group: str, id: str | None, event: dict[str, Any]) -> None:
        """``inner.send``, timed."""
        start, ok = time.perf_counter(), False
        try:
            await self.inner.send(stream, group, id, event)
            ok = True
        finally:
            self._observe("send", time.perf_counter() - start, ok)

    @property
    def epoch(self) -> str:
        """``inner.epoch`` (it may change while open: Redis data lost)."""
        return self.inner.epoch

    def configure_history(self, stream: str, policy: HistoryPolicy) -> None:
        """``inner.configure_history``."""
        self.inner.configure_history(stream, policy)

    async def read_history(self, stream: str, group: str, since: int) -> History | None:
        """``inner.read_history``, timed."""
        start, ok = time.perf_counter(), False
        try:
            history = await self.inner.read_history(stream, group, since)
            ok = True
            return history
        finally:
            self._observe("read_history", time.perf_counter() - start, ok)
