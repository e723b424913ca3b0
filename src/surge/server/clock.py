"""The envelope clock: integer milliseconds, strictly increasing within the process."""

from __future__ import annotations

import time

__all__ = ["EnvelopeClock"]


class EnvelopeClock:
    """``next()`` returns ``max(now_ms, last + 1)``: two frames never share a timestamp."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        """Return the next timestamp."""
        now = time.time_ns() // 1_000_000
        last = self._last + 1
        self._last = now if now > last else last
        return self._last
