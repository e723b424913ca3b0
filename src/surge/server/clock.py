"""The envelope clock: integer milliseconds since the epoch, never going backwards.

Why not strictly increasing here: a process-wide strictly increasing clock runs ahead of the
wall clock by 1 ms for every message beyond 1,000 a second, and the official clients keep the
last timestamp they saw across a reconnect, so after a restart (when a new process starts again
from the wall clock) they would drop every frame until the wall clock caught up. Strictness is
needed only per connection, and ``Outbox`` provides exactly that: a frame not newer than the
last one written on its connection is restamped there. A connection then runs ahead only while
it alone receives more than 1,000 frames a second.
"""

from __future__ import annotations

import time

__all__ = ["EnvelopeClock"]


class EnvelopeClock:
    """``next()`` returns ``max(now_ms, last)``: the wall clock, but never backwards."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        """Return the current timestamp."""
        now = time.time_ns() // 1_000_000
        if now > self._last:
            self._last = now
        return self._last
