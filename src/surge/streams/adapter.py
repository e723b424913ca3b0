"""The storage extension point: one ``StreamAdapter`` holds every stream's items and feeds changes.

Contract (checked by ``tests/unit/streams/test_store_contract.py`` for every adapter):

- Items are JSON objects (``dict``) keyed by (stream, group, id); the stored item always carries
  ``"id"`` equal to its key. Groups list their items in creation order (an update keeps the
  position; a delete then a set puts the item last).
- ``set`` decides create-vs-update and writes atomically per key: two concurrent first writes give
  one ``create`` and one ``update``, never two creates.
- A write is acknowledged (its coroutine returns) only once it is durable for the adapter's
  durability level (the file adapter: on disk, surviving ``kill -9``).
- Every applied change and every ``send`` reaches the sink given to ``open`` exactly once, on the
  event loop, and the changes of one (stream, group) reach it in ``seq`` order. Local adapters
  (memory, file) call the sink *before* the writing coroutine resumes; distributed ones (Redis)
  deliver every instance's changes, their own included, through one ordered feed, so the sink may
  run after ``set`` returns.
- ``is_distributed`` is True when changes made by any process reach every process's sink (the
  Redis adapter); ``surge start --workers N`` requires it.
- ``get_group`` (and ``get_item_snapshot``) return a ``GroupSnapshot`` whose ``seq`` is consistent
  with its items: every change of that group with ``seq <= snapshot.seq`` is reflected, none with a
  larger one is.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from surge.streams.feed import Change, FeedSink, GroupSnapshot

__all__ = ["StreamAdapter"]


@runtime_checkable
class StreamAdapter(Protocol):
    """Storage for all streams plus the feed of their changes to subscribers."""

    is_distributed: bool

    async def open(self, sink: FeedSink) -> None:
        """Connect or create the storage and start delivering feed messages to ``sink``."""
        ...

    async def close(self) -> None:
        """Flush pending writes and release every resource; idempotent."""
        ...

    async def get(self, stream: str, group: str, id: str) -> dict[str, Any] | None:
        """Return the item or None."""
        ...

    async def set(self, stream: str, group: str, id: str, item: dict[str, Any]) -> Change:
        """Create or replace the item; returns the applied change (``create`` or ``update``)."""
        ...

    async def delete(self, stream: str, group: str, id: str) -> Change | None:
        """Remove the item; returns the ``delete`` change, or None when there was no such item."""
        ...

    async def get_group(self, stream: str, group: str) -> GroupSnapshot:
        """Return the group's items in creation order with the matching ``seq``."""
        ...

    async def get_item_snapshot(self, stream: str, group: str, id: str) -> GroupSnapshot:
        """Return ``[item]`` (or ``[]``) read atomically with the ``seq``, for an item sync."""
        ...

    async def list_groups(self, stream: str) -> list[str]:
        """Return the ids of the groups of ``stream`` that hold at least one item."""
        ...

    async def send(self, stream: str, group: str, id: str | None, event: dict[str, Any]) -> None:
        """Deliver an ephemeral event to the sink (on every instance, for distributed adapters)."""
        ...
