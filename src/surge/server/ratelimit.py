"""Rate limits: per-connection token buckets for frames, bytes and joins; per-IP upgrade attempts.

A ``TokenBucket`` holds up to ``burst`` tokens and refills at ``rate`` per second. It keeps no
timer: each ``take`` first adds what accrued since the last call (``now`` comes from the caller,
one ``time.monotonic()`` per frame), so a check is O(1) and an idle connection costs nothing.

``ConnectionLimiter`` is one connection's buckets plus its strike count. A frame or join over a
limit is a strike: the first strike of a run is answered with a ``RATE_LIMITED`` error event
(``Verdict.WARN``), later ones are dropped (``Verdict.DROP``), and the ``rate_limit_strikes``-th
strike after the first (each within ``RATE_LIMIT_STRIKE_WINDOW`` seconds of the previous one)
closes the connection with 4029 (``Verdict.CLOSE``). A client that backs off for that long
starts afresh, so one burst over the limit costs a well-behaved client one error event, never
its connection.
Dropped frames cost no parsing: the endpoint checks the frame before the session sees it.

``UpgradeLimiter`` is the per-process table of client addresses for WebSocket upgrades. It is an
LRU of at most ``max_tracked_ips`` buckets (an ``OrderedDict``: O(1) lookup, refresh and
eviction), so memory stays bounded whatever the number of addresses; an address evicted from a
full table comes back with a full bucket, which is the price of the bound. Loopback (by default)
and other ``connect_limit_exempt`` networks are never limited.
"""

from __future__ import annotations

import enum
import ipaddress
import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

from surge.config import Limits

__all__ = [
    "RATE_LIMIT_STRIKE_WINDOW",
    "ConnectionLimiter",
    "TokenBucket",
    "UpgradeLimiter",
    "Verdict",
]

RATE_LIMIT_STRIKE_WINDOW: Final = 10.0
"""Seconds without a refused frame after which a connection's strikes are forgotten."""
_EXEMPT_CACHE: Final = 1024  # exempt addresses remembered (loopback: a handful)


class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate`` per second; starts full."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float, amount: float = 1.0) -> bool:
        """Take ``amount`` tokens if there are that many (after refilling); True if taken."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.stamp = now
        if tokens >= amount:
            self.tokens = tokens - amount
            return True
        self.tokens = tokens
        return False

    def wait_for(self, amount: float = 1.0) -> float:
        """Seconds until ``amount`` tokens will be there (as of the last ``take``)."""
        missing = amount - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate


class Verdict(enum.Enum):
    """What to do with a frame or a join."""

    OK = "ok"
    WARN = "warn"
    """Over a limit: drop it and send a ``RATE_LIMITED`` error event."""
    DROP = "drop"
    """Over a limit again: drop it (a join still gets its error event)."""
    CLOSE = "close"
    """Still over a limit after the strikes allowed: close with 4029."""


class ConnectionLimiter:
    """One connection's frame, byte and join buckets; see the module docstring."""

    __slots__ = (
        "_bytes",
        "_frames",
        "_joins",
        "_last_strike",
        "_max_strikes",
        "_strikes",
        "kind",
        "what",
    )

    def __init__(self, limits: Limits, now: float) -> None:
        self._frames = _bucket(limits.frames_per_second, limits.frame_burst, now)
        self._bytes = _bucket(limits.bytes_in_per_second, limits.bytes_in_burst, now)
        self._joins = _bucket(limits.joins_per_second, limits.join_burst, now)
        self._max_strikes = limits.rate_limit_strikes
        self._strikes = 0
        self._last_strike = -math.inf
        self.kind = ""
        """Which limit the last refused frame or join went over: frames, bytes or joins."""
        self.what = ""
        """The same, for its error message."""

    @classmethod
    def for_limits(cls, limits: Limits, now: float) -> ConnectionLimiter | None:
        """A limiter, or None when every per-connection rate limit is off."""
        if (
            limits.frames_per_second is None
            and limits.bytes_in_per_second is None
            and limits.joins_per_second is None
        ):
            return None
        return cls(limits, now)

    def frame(self, text: str, now: float) -> Verdict:
        """Account for one client text frame."""
        frames = self._frames
        if frames is not None and not frames.take(now):
            return self._strike(now, "frames", f"more than {frames.rate:g} frames per second")
        size = self._bytes
        if size is not None:
            # str.isascii() is O(1) in CPython: encode only frames that are not ASCII.
            n = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
            if not size.take(now, n):
                return self._strike(now, "bytes", f"more than {size.rate:g} bytes per second")
        return Verdict.OK

    def join(self, now: float) -> Verdict:
        """Account for one join (after its frame passed ``frame``)."""
        joins = self._joins
        if joins is not None and not joins.take(now):
            return self._strike(now, "joins", f"more than {joins.rate:g} joins per second")
        return Verdict.OK

    def _strike(self, now: float, kind: str, what: str) -> Verdict:
        self.kind, self.what = kind, what
        if now - self._last_strike > RATE_LIMIT_STRIKE_WINDOW:
            self._strikes = 0
        self._last_strike = now
        self._strikes += 1
        if self._strikes == 1:
            return Verdict.WARN
        if self._strikes > self._max_strikes:
            return Verdict.CLOSE
        return Verdict.DROP


def _bucket(rate: float | None, burst: int, now: float) -> TokenBucket | None:
    return None if rate is None else TokenBucket(rate, burst, now)


class UpgradeLimiter:
    """Upgrade attempts per client address, in a bounded LRU table."""

    def __init__(
        self, rate: float, burst: int, max_tracked: int, exempt: Sequence[str] = ()
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_tracked = max_tracked
        self._exempt = [ipaddress.ip_network(net, strict=False) for net in exempt]
        self._table: OrderedDict[str, TokenBucket] = OrderedDict()
        self._exempt_seen: dict[str, bool] = {}

    @classmethod
    def for_limits(cls, limits: Limits) -> UpgradeLimiter | None:
        """The limiter ``limits`` ask for, or None when the per-IP limit is off."""
        if limits.connects_per_ip_per_second is None:
            return None
        return cls(
            limits.connects_per_ip_per_second,
            limits.connect_burst_per_ip,
            limits.max_tracked_ips,
            limits.connect_limit_exempt,
        )

    def __len__(self) -> int:
        return len(self._table)

    def check(self, address: str | None, now: float) -> float | None:
        """Count one upgrade attempt from ``address``; None if allowed, else seconds to wait."""
        if address is None or self._is_exempt(address):
            return None
        table = self._table
        bucket = table.get(address)
        if bucket is None:
            bucket = table[address] = TokenBucket(self.rate, self.burst, now)
            if len(table) > self.max_tracked:
                table.popitem(last=False)
        else:
            table.move_to_end(address)
        if bucket.take(now):
            return None
        return bucket.wait_for()

    def _is_exempt(self, address: str) -> bool:
        if not self._exempt:
            return False
        known = self._exempt_seen.get(address)
        if known is not None:
            return known
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False  # a unix socket path or a proxy's odd value: limited like any address
        exempt = any(ip in net for net in self._exempt)
        if exempt and len(self._exempt_seen) < _EXEMPT_CACHE:
            self._exempt_seen[address] = True
        return exempt
