"""Encoded replays shared by every resuming join of a key from one offset, until the group moves.

Why: after a restart every client resumes at once, most of them from the same offset (they were
all current). Each resume costs a history read (a thread hop, a decode of every missed message)
and an encode of every replayed frame; 5,000 clients would repeat that 5,000 times. The cache
keeps ``(frames, seq)`` per (subscription key, since offset, deltas asked): the ``resume``
frame and the replayed frames, encoded once, and the ``seq`` of the history read. Concurrent
joins share one read in flight.

Why it is correct (the argument of ``SyncCache``): an entry is dropped the moment the hub
dispatches any message (change or event) of its (stream, group). A join that uses an entry has
registered its pending subscription first, so every message committed after the entry's read
either was already dispatched (dropping the entry, so it is not used) or will be dispatched and
buffered on the subscription with a ``seq`` greater than the entry's, exactly as with a fresh
read. A feed gap (``Resync``) clears everything. ``None`` (not resumable) is cached the same way.

Bounded: at most ``max_bytes`` of encoded frames (least recently used first out); a replay over a
quarter of the budget is not kept.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from surge.protocol.codec import Frame
from surge.protocol.messages import SubscriptionKey

__all__ = ["DEFAULT_REPLAY_CACHE_BYTES", "Replay", "ReplayCache"]

DEFAULT_REPLAY_CACHE_BYTES = 32 * 1024 * 1024

Replay = tuple[list[Frame], int] | None
"""The resume frame and the replayed frames, and the history's ``seq``; None: not resumable."""

_Key = tuple[SubscriptionKey, int, bool]  # (subscription key, since, deltas)


class ReplayCache:
    """Encoded replays by (subscription key, since), with one load in flight per entry."""

    __slots__ = ("_by_group", "_bytes", "_entries", "_inflight", "hits", "max_bytes", "misses")

    def __init__(self, max_bytes: int = DEFAULT_REPLAY_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[_Key, tuple[Replay, int]] = OrderedDict()  # -> (replay, size)
        self._inflight: dict[_Key, asyncio.Future[Replay]] = {}
        self._by_group: dict[tuple[str, str], set[_Key]] = {}
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def invalidate(self, stream: str, group: str) -> None:
        """A message of (stream, group) was dispatched: drop its replays."""
        if self._by_group:
            keys = self._by_group.pop((stream, group), None)
            if keys:
                for key in keys:
                    self._drop(key)

    def clear(self) -> None:
        """Forget everything (a feed gap)."""
        for key in list(self._entries) + list(self._inflight):
            self._drop(key)
        self._by_group.clear()

    def _drop(self, key: _Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[1]
        self._inflight.pop(key, None)

    def _track(self, key: _Key) -> None:
        self._by_group.setdefault((key[0][0], key[0][1]), set()).add(key)

    async def get(self, key: _Key, load: Callable[[], Awaitable[Replay]]) -> Replay:
        """The cached replay of ``key``, or ``load()``'s result (shared by concurrent callers)."""
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
                    continue  # the loading join went away, not this one: load again
                raise
            self.hits += 1
            return result
        self.misses += 1
        future: asyncio.Future[Replay] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        self._track(key)
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

    def _store(self, key: _Key, replay: Replay) -> None:
        size = 64 if replay is None else sum(frame.size for frame in replay[0])
        if size * 4 > self.max_bytes:
            return
        self._track(key)
        self._entries[key] = (replay, size)
        self._bytes += size
        while self._bytes > self.max_bytes and self._entries:
            old_key, (_, old_size) = self._entries.popitem(last=False)
            self._bytes -= old_size
            keys = self._by_group.get((old_key[0][0], old_key[0][1]))
            if keys is not None:
                keys.discard(old_key)
                if not keys:
                    del self._by_group[(old_key[0][0], old_key[0][1])]
