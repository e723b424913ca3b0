"""Per-group change history: what a resuming client is replayed (docs/protocol.md section 3).

Every store keeps, per (stream, group), the latest changes and ``send`` events in ``seq`` order,
bounded by count (``HistoryPolicy.size``) and by age (``HistoryPolicy.ttl``). A store answers
``read_history(stream, group, since)`` with every message after ``since`` when it still holds
all of them, and None when it cannot be sure (``since`` older than what it kept, or newer than
the group's position): the server then falls back to a sync.

A store knows which messages it no longer holds through a *floor* per group: the largest ``seq``
it dropped (by count or age). The history is complete after ``since`` iff ``since >= floor``.

``GroupHistory`` is the in-memory structure the memory store uses (the file store keeps rows in
SQLite, Redis a capped LIST per group, each with the same rule).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Final

from surge.errors import ConfigError
from surge.streams.feed import Change, EphemeralEvent

__all__ = [
    "DEFAULT_HISTORY_SIZE",
    "DEFAULT_HISTORY_TTL",
    "DEFAULT_POLICY",
    "GroupHistory",
    "HistoryPolicy",
    "check_history",
]

DEFAULT_HISTORY_SIZE: Final = 1000
"""Messages kept per group by default."""
DEFAULT_HISTORY_TTL: Final = 300.0
"""Seconds a message stays in the history by default (5 minutes)."""


def check_history(size: object, ttl: object, what: str) -> None:
    """Raise ConfigError unless ``size`` is an int >= 0 and ``ttl`` a positive finite number."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ConfigError(f"{what}: history_size must be an integer >= 0 (0: no history)")
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not math.isfinite(ttl)
        or ttl <= 0
    ):
        raise ConfigError(f"{what}: history_ttl must be a positive number of seconds")


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """How much of a stream's history each of its groups keeps: ``size`` messages (0: none),
    each for ``ttl`` seconds."""

    size: int = DEFAULT_HISTORY_SIZE
    ttl: float = DEFAULT_HISTORY_TTL

    def __post_init__(self) -> None:
        check_history(self.size, self.ttl, "history")

    @property
    def ttl_ms(self) -> int:
        """``ttl`` in whole milliseconds (at least 1)."""
        return max(1, round(self.ttl * 1000))


DEFAULT_POLICY: Final = HistoryPolicy()

Message = Change | EphemeralEvent


class GroupHistory:
    """One group's bounded history in memory: (seq, expiry, message) in ``seq`` order."""

    __slots__ = ("entries", "floor")

    def __init__(self, floor: int) -> None:
        self.entries: deque[tuple[int, float, Message]] = deque()
        self.floor = floor
        """The largest ``seq`` no longer held (everything after it is in ``entries``)."""

    def append(self, message: Message, seq: int, now: float, policy: HistoryPolicy) -> None:
        """Add ``message`` (at ``seq``, time ``now``) and drop what ``policy`` no longer keeps."""
        if policy.size == 0:
            self.entries.clear()
            self.floor = seq
            return
        self.entries.append((seq, now + policy.ttl, message))
        while len(self.entries) > policy.size:
            self.floor = self.entries.popleft()[0]
        self.expire(now)

    def expire(self, now: float) -> None:
        """Drop the messages whose time is up."""
        entries = self.entries
        while entries and entries[0][1] <= now:
            self.floor = entries.popleft()[0]

    def after(self, since: int) -> list[Message] | None:
        """The messages after ``since``, or None when some of them were dropped."""
        if since < self.floor:
            return None
        return [message for seq, _, message in self.entries if seq > since]
