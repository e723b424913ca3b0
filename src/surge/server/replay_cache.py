"""Encoded replays shared by every resuming join of a key from one offset, until the group moves.

Why: after a restart every client resumes at once, most of them from the same offset (they were
all current). Each resume costs a history read (a thread hop, a decode of every missed message)
and an encode of every replayed frame; 5,000 clients would repeat that 5,000 times. The cache
keeps ``(block, seq)`` per (subscription key, since offset, patch form asked): the ``resume``
frame and the replayed frames, encoded once and joined once into one ``FrameBlock``
(``protocol/blocks.py``: each resuming connection queues one entry and writes one buffer, the
same bytes as the frames one by one), and the ``seq`` of the history read. Concurrent joins
share one read in flight.

Why it is correct (the argument of ``SyncCache``): an entry is dropped the moment the hub
dispatches any message (change or event) of its (stream, group). A join that uses an entry has
registered its pending subscription first, so every message committed after the entry's read
either was already dispatched (dropping the entry, so it is not used) or will be dispatched and
buffered on the subscription with a ``seq`` greater than the entry's, exactly as with a fresh
read. A feed gap (``Resync``) clears everything. ``None`` (not resumable) is cached the same way.

Bounded: at most ``max_bytes`` of encoded frames, a block counted twice (its frames and their
joined copy; least recently used first out); a replay over a quarter of the budget is not kept.
The loading and the bounds are ``SharedLoads``'s (``server/shared_loads.py``), shared with the
``SyncCache``.
"""

from __future__ import annotations

from surge.protocol.blocks import FrameBlock
from surge.protocol.messages import SubscriptionKey
from surge.server.shared_loads import SharedLoads

__all__ = ["DEFAULT_REPLAY_CACHE_BYTES", "Replay", "ReplayCache"]

DEFAULT_REPLAY_CACHE_BYTES = 32 * 1024 * 1024

Replay = tuple[FrameBlock, int] | None
"""The resume frame and the replayed frames as one block, and the history's ``seq``; None: not
resumable."""

_Key = tuple[SubscriptionKey, int, int]  # (subscription key, since, patch form asked)


class ReplayCache(SharedLoads[_Key, Replay]):
    """Encoded replays by (subscription key, since), with one load in flight per entry."""

    __slots__ = ("_by_group",)

    def __init__(self, max_bytes: int = DEFAULT_REPLAY_CACHE_BYTES) -> None:
        super().__init__(max_bytes)
        self._by_group: dict[tuple[str, str], set[_Key]] = {}

    def _size(self, value: Replay) -> int:
        return 64 if value is None else 2 * value[0].size

    def invalidate(self, stream: str, group: str) -> None:
        """A message of (stream, group) was dispatched: drop its replays."""
        if self._by_group:
            keys = self._by_group.pop((stream, group), None)
            if keys:
                for key in keys:
                    self._drop(key)

    def clear(self) -> None:
        """Forget everything (a feed gap)."""
        super().clear()
        self._by_group.clear()

    def _track(self, key: _Key) -> None:
        self._by_group.setdefault((key[0][0], key[0][1]), set()).add(key)

    _loading = _track
    _stored = _track

    def _evicted(self, key: _Key) -> None:
        group = (key[0][0], key[0][1])
        keys = self._by_group.get(group)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_group[group]
