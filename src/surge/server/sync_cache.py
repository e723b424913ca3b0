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
larger than a quarter of the budget is not cached. The loading and the bounds are
``SharedLoads``'s (``server/shared_loads.py``), shared with the ``ReplayCache``.
"""

from __future__ import annotations

from surge.protocol.codec import Frame
from surge.protocol.messages import SubscriptionKey
from surge.server.shared_loads import SharedLoads

__all__ = ["DEFAULT_SYNC_CACHE_BYTES", "CachedSync", "SyncCache"]

DEFAULT_SYNC_CACHE_BYTES = 64 * 1024 * 1024

CachedSync = tuple[Frame, int]
"""An encoded sync and the ``seq`` of the snapshot it was encoded from."""


class SyncCache(SharedLoads[SubscriptionKey, CachedSync]):
    """Encoded syncs by key, with one load in flight per key."""

    __slots__ = ()

    def __init__(self, max_bytes: int = DEFAULT_SYNC_CACHE_BYTES) -> None:
        super().__init__(max_bytes)

    def _size(self, value: CachedSync) -> int:
        return value[0].size

    def invalidate(self, stream: str, group: str, id: str | None) -> None:
        """A change of (stream, group, id) was dispatched: drop the group's and the item's syncs."""
        if self._entries or self._inflight:
            self._drop((stream, group))
            if id is not None:
                self._drop((stream, group, id))
