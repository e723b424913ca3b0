"""Reconnect delays: exponential with jitter, bounded."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """``delay(n)`` before the n-th consecutive reconnect attempt (n = 0, 1, 2, ...).

    The base delay is ``initial * factor**n`` capped at ``max_delay``; the delay is then drawn
    uniformly from ``[base * (1 - jitter), base]``, so thousands of clients that lost the same
    server do not come back in the same millisecond.

    A connection that stayed open for ``stable_after`` seconds resets ``n`` to 0.
    """

    initial: float = 0.5
    max_delay: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5
    stable_after: float = 2.0

    def __post_init__(self) -> None:
        if self.initial < 0 or self.max_delay < self.initial:
            raise ValueError("Backoff needs 0 <= initial <= max_delay")
        if self.factor < 1:
            raise ValueError("Backoff.factor must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("Backoff.jitter must be between 0 and 1")

    def base(self, attempt: int) -> float:
        """The delay before jitter."""
        # Bounded exponent: factor**attempt would overflow a float after a long outage.
        exponent = min(attempt, 64)
        return float(min(self.max_delay, self.initial * self.factor**exponent))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The jittered delay before attempt ``attempt``."""
        base = self.base(attempt)
        draw = (rng or random).random()
        return base * (1 - self.jitter * draw)
