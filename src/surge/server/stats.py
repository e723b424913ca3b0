"""Process-wide counters of the server's hot paths: plain integers, read at scrape time.

Why plain integers: the fan-out path runs once per delivered frame, and even an uncontended
``prometheus_client`` counter costs a lock per increment. These are bumped on the event loop
thread only (one writer, no lock) and turned into Prometheus metrics by a collector when
``/metrics`` is read (``surge.server.metrics``). Per process, like every Prometheus target.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["STATS", "ServerStats"]


class ServerStats:
    """Counters since the process started."""

    __slots__ = (
        "bytes_sent",
        "closed_by_code",
        "collapsed",
        "connections_opened",
        "frames_sent",
        "overflows",
        "rate_limited",
        "resumes",
        "resyncs",
        "writes",
    )

    def __init__(self) -> None:
        self.connections_opened = 0
        self.closed_by_code: Counter[int] = Counter()
        self.frames_sent = 0
        self.bytes_sent = 0
        self.writes = 0
        self.overflows = 0
        self.collapsed = 0
        self.resyncs = 0
        self.resumes = 0
        """Subscriptions resumed from an offset (the changes since, not a fresh sync)."""
        self.rate_limited: Counter[str] = Counter()
        """Per-connection rate-limit hits, by limit name (a fixed set, e.g. ``"frames"``,
        ``"joins"``, ``"bytes"``, ``"connections"``): never a client id."""


STATS = ServerStats()
