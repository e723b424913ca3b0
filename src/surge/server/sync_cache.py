"""Encoded syncs shared by every join of a key until that key changes.

Why: a join costs a snapshot read (a thread hop and a decode of every item) plus an encode of the
whole group. A join storm (every client reconnecting after a deploy) or one client joining the same
big group again and again would repeat that work per join. The cache keeps the encoded sync of a
(stream, group) or (stream, group, id) key with its snapshot ``seq``; joins of the same key share
one read in flight and then the cached frame, until the hub sees a change of that key.

Why it is correct: a cached entry is dropped the moment the hub dispatches any change of its key
(before routing). A join that uses an entry has registered its pending subscription first, so every
change committed after the entry's snapshot either was already dispatched (and dropped the entry,
so it is not used) or will be dispatched later and be buffered on the subscription with a
``seq`` greater than the entry's, exactly as with a fresh read. A feed gap (``Resync``) clears
everything.

Bounded: at most ``max_bytes`` of encoded frames (least recently used dropped first); a frame
larger than a quarter of the budget is not cached.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from surge.protocol.codec import Frame
from surge.protocol.messages import SubscriptionKey

__all__ = ["DEFAULT_SYNC_CACHE_BYTES", "CachedSync", "SyncCache"]

DEFAULT_SYNC_CACHE_BYTES = 64 * 1024 * 1024

CachedSync = tuple[Frame, int]
"""An encoded sync and the ``seq`` of the snapshot it was encoded from."""


class SyncCache:
    """Encoded syncs by key, with one load in flight per key."""

    __slots__ = ("_bytes", "_entries", "_inflight", "hits", "max_bytes", "misses")

    def __init__(self, max_bytes: int = DEFAULT_SYNC_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[SubscriptionKey, CachedSync] = OrderedDict()
        # Loads in flight; invalidation removes a key's, so a load older than a change is
        # neither shared with later joins nor stored.
        self._inflight: dict[SubscriptionKey, asyncio.Future[CachedSync]] = {}
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def invalidate(self, stream: str, group: str, id: str | None) -> None:
        """A change of (stream, group, id) was dispatched: drop the group's and the item's syncs."""
        if self._entries or self._inflight:
            self._drop((stream, group))
            if id is not None:
                self._drop((stream, group, id))

    def clear(self) -> None:
        """Forget everything (a feed gap: nothing cached can be trusted)."""
        for key in list(self._entries) + list(self._inflight):
            self._drop(key)

    def _drop(self, key: SubscriptionKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[0].size
        self._inflight.pop(key, None)

    async def get(
        self, key: SubscriptionKey, load: Callable[[], Awaitable[CachedSync]]
    ) -> CachedSync:
        """The cached sync of ``key``, or ``load()``'s result (shared by concurrent callers).

        Raises whatever ``load`` raises (to every caller waiting on that load).
        """
        while True:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry
            waiting = self._inflight.get(key)
            if waiting is None:
                break
            try:
                result = await asyncio.shield(waiting)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if waiting.cancelled() and task is not None and not task.cancelling():
                    continue  # the loading join went away, not this one: load again
                raise
            self.hits += 1
            return result
        self.misses += 1
        future: asyncio.Future[CachedSync] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
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

    def _store(self, key: SubscriptionKey, entry: CachedSync) -> None:
        size = entry[0].size
        if size * 4 > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[0].size
        self._entries[key] = entry
        self._bytes += size
        while self._bytes > self.max_bytes and self._entries:
            _, (frame, _) = self._entries.popitem(last=False)
            self._bytes -= frame.size
