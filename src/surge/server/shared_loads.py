"""Encoded answers shared by every join that asks the same thing, until the hub says it changed.

The base of ``SyncCache`` (a key's encoded sync) and ``ReplayCache`` (a key's encoded replay from
one offset): a bounded LRU of values with their size in bytes, and one load in flight per key,
whose result every concurrent caller shares. Each subclass says how big a value is and which
dispatched messages make which keys stale (``_drop`` them); the correctness argument is in each
subclass's module docstring.

- A load whose key is dropped while it runs (a change was dispatched meanwhile) still answers
  its callers, but is neither stored nor shared with later callers.
- A caller whose shared load was cancelled because *its* initiator went away loads again; a
  caller that is itself cancelled is.
- A failed load raises the same exception in every caller waiting on it.
- Bounded: at most ``max_bytes`` of values (least recently used dropped first); a value over a
  quarter of the budget is not kept.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SharedLoads"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedLoads(Generic[K, V]):
    """Values by key, sized in bytes, with one load in flight per key."""

    __slots__ = ("_bytes", "_entries", "_inflight", "hits", "max_bytes", "misses")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()  # -> (value, size)
        # Loads in flight; dropping a key removes its load, so a load older than a change is
        # neither shared with later callers nor stored.
        self._inflight: dict[K, asyncio.Future[V]] = {}
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _size(self, value: V) -> int:
        """Bytes ``value`` holds (what the budget counts)."""
        raise NotImplementedError

    def _loading(self, key: K) -> None:
        """A load of ``key`` starts (subclasses index it, so that it can be dropped meanwhile)."""

    def _stored(self, key: K) -> None:
        """``key`` now has an entry (subclasses index it)."""

    def _evicted(self, key: K) -> None:
        """``key``'s entry was dropped to stay within the budget."""

    def clear(self) -> None:
        """Forget everything (a feed gap: nothing cached can be trusted)."""
        for key in list(self._entries) + list(self._inflight):
            self._drop(key)

    def _drop(self, key: K) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[1]
        self._inflight.pop(key, None)

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The value of ``key``, or ``load()``'s result (shared by concurrent callers).

        Raises whatever ``load`` raises (to every caller waiting on that load).
        """
        while True:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[0]
            waiting = self._inflight.get(key)
            if waiting is None:
                break
            try:
                result = await asyncio.shield(waiting)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if waiting.cancelled() and task is not None and not task.cancelling():
                    continue  # the loading caller went away, not this one: load again
                raise
            self.hits += 1
            return result
        self.misses += 1
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        self._loading(key)
        try:
            result = await load()
        except BaseException as exc:
            if self._inflight.get(key) is future:
                del self._inflight[key]
            if not future.done():
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                    future.exception()  # retrieved: waiters re-raise it, nobody else must
                else:
                    future.cancel()
            raise
        future.set_result(result)
        if self._inflight.get(key) is future:
            del self._inflight[key]
            self._store(key, result)
        return result

    def _store(self, key: K, value: V) -> None:
        size = self._size(value)
        if size * 4 > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        self._entries[key] = (value, size)
        self._bytes += size
        self._stored(key)
        while self._bytes > self.max_bytes and self._entries:
            old_key, (_, old_size) = self._entries.popitem(last=False)
            self._bytes -= old_size
            self._evicted(old_key)
