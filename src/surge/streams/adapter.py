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
- **Readiness (optional).** An adapter whose feed can be lost while it is open (Redis) has an
  ``is_ready`` property, False while changes may not reach the sink, and ``not_ready_reason``
  saying why; the server's ``/readyz`` answers 503 with that reason meanwhile. Without them the
  adapter counts as ready while open.
- ``get_group`` (and ``get_item_snapshot``) return a ``GroupSnapshot`` whose ``seq`` is consistent
  with its items: every change of that group with ``seq <= snapshot.seq`` is reflected, none with a
  larger one is.
- ``update(ops)`` is atomic per key against every other write, in this process and any other
  sharing the storage: N concurrent increments add N, concurrent appends lose no fragment. The ops
  (``surge.streams.ops``) apply to the stored item, or to ``{}`` when it is missing (the update
  then creates it); ``validate`` (the stream's schema) sees the result and may refuse it. Any
  failure (bad op, refused result, ``if_version`` mismatch -> ``ConflictError``) changes and
  feeds nothing. The applied change is fed like a ``set``'s (``create`` or ``update``, whole item),
  and an ``update`` of an existing item also carries ``Change.ops`` (``ops.apply_update``: the
  ops, unless the schema changed what they produced), on every instance of a distributed
  adapter, so any server can send it as a delta.
- **Windows.** ``get_group(stream, group, limit=N)`` returns the newest N items (in creation
  order) and ``more``, an opaque cursor (a string) when older items exist; ``before=cursor``
  returns those created before the item the cursor names, ``limit`` or all of them, with their own
  ``more``. Cursors stay valid while items change (deleting the item a cursor names included).
  A bad ``limit`` or cursor raises ``ValidationError``. The cost must not grow with the group's
  size beyond a log factor for a durable adapter (a group of 100,000 opens with its last 50).
- **Versions.** An item's version is the ``seq`` of its last change: it grows with every change of
  the item and never repeats (a delete then a re-create gets a larger one). ``if_version=N``
  applies the update only at version N; ``if_version=0`` only when the item is absent.
- **TTL.** ``set(..., ttl=s)`` makes the item expire ``s`` seconds later; ``set`` without ``ttl``
  clears any expiry. ``update(..., ttl=s)`` resets it; without ``ttl`` the item keeps its expiry
  (``default_ttl`` applies when the update creates the item). An expired item is deleted by the
  adapter, and its ``delete`` change is fed exactly once in a deployment (distributed adapters:
  on every instance, applied by one). Durable adapters delete what expired while they were closed
  before ``open`` returns. Expiry costs no timer per item: one sweeper task per adapter, started
  by ``open`` and stopped by ``close``. Expired items stay readable until swept (normally within
  milliseconds; at most about ``SWEEP_MAX_INTERVAL_S`` for expiries written elsewhere).
- **Offsets.** ``send`` takes a ``seq`` in the same per-group sequence as the changes (fed as
  ``EphemeralEvent.seq``): a group's messages reach the sink in strictly increasing ``seq``.
- **History** (docs/protocol.md sections 2-3, ``surge.streams.history``). Every change and
  ``send`` enters its group's history with the write, atomically (file: the same transaction;
  Redis: the same script). Each group keeps at most ``size`` messages, each for ``ttl`` seconds,
  of its stream's ``configure_history`` policy (default ``HistoryPolicy()``).
  ``read_history(stream, group, since)`` returns every message of the group with
  ``seq > since`` and the group's ``seq`` at the read, atomically, like ``get_group`` (Redis:
  after the feed delivered everything up to it); None when the history no longer holds all of
  them or ``since`` is not a position of this store. ``epoch`` names the history: it differs
  whenever offsets handed out earlier cannot be trusted (a new memory store, a new or
  recreated database file, lost Redis data); it is set by ``open``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from surge.streams.feed import Change, FeedSink, GroupSnapshot, History
from surge.streams.history import HistoryPolicy
from surge.streams.ops import ItemValidator, Updated

__all__ = ["StreamAdapter"]


@runtime_checkable
class StreamAdapter(Protocol):
    """Storage for all streams plus the feed of their changes to subscribers."""

    is_distributed: bool

    @property
    def epoch(self) -> str:
        """Names the store's history (set by ``open``); offsets compare within one epoch only."""
        ...

    def configure_history(self, stream: str, policy: HistoryPolicy) -> None:
        """Keep ``policy``'s history for the groups of ``stream`` from now on (no I/O)."""
        ...

    async def open(self, sink: FeedSink) -> None:
        """Connect or create the storage and start delivering feed messages to ``sink``."""
        ...

    async def close(self) -> None:
        """Flush pending writes and release every resource; idempotent."""
        ...

    async def get(self, stream: str, group: str, id: str) -> dict[str, Any] | None:
        """Return the item or None."""
        ...

    async def set(
        self, stream: str, group: str, id: str, item: dict[str, Any], *, ttl: float | None = None
    ) -> Change:
        """Create or replace the item; returns the applied change (``create`` or ``update``).

        ``ttl``: seconds until the item expires (None: never; clears a previous expiry).
        """
        ...

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
        """Apply ``ops`` to the item atomically; returns the old item and the applied change.

        Raises:
            ValidationError: an op is invalid or does not fit the item, or ``validate`` refused
                the result; nothing changed.
            ConflictError: ``if_version`` is not the item's version; nothing changed.
        """
        ...

    async def delete(self, stream: str, group: str, id: str) -> Change | None:
        """Remove the item; returns the ``delete`` change, or None when there was no such item."""
        ...

    async def get_group(
        self, stream: str, group: str, *, limit: int | None = None, before: str | None = None
    ) -> GroupSnapshot:
        """Return the group's items in creation order with the matching ``seq``.

        ``limit``: only the newest ``limit`` of them (``more``: the cursor of the older ones).
        ``before``: only items created before the one this cursor (an earlier ``more``) names.
        """
        ...

    async def get_item_snapshot(self, stream: str, group: str, id: str) -> GroupSnapshot:
        """Return ``[item]`` (or ``[]``) read atomically with the ``seq``, for an item sync."""
        ...

    async def list_groups(self, stream: str) -> list[str]:
        """Return the ids of the groups of ``stream`` that hold at least one item."""
        ...

    async def send(self, stream: str, group: str, id: str | None, event: dict[str, Any]) -> None:
        """Deliver an ephemeral event to the sink (on every instance, for distributed adapters),
        with the group's next ``seq``, and keep it in the group's history."""
        ...

    async def read_history(self, stream: str, group: str, since: int) -> History | None:
        """The group's messages after ``since`` with its ``seq``, or None (not all kept)."""
        ...
