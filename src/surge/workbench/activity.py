"""What the Workbench remembers of background work: a ring buffer of delivery events.

``DeliveryLog.observe`` is a delivery observer (``surge.events.observers``): every event of this
process (published, started, retried, done, dead) goes into a bounded deque, the oldest falling
out first; the Workbench adds ``replayed`` and ``discarded`` when its buttons are used.
``messages()`` folds the events still in the buffer into one row per (step, message id) with its
current status. Nothing here is durable: it is the recent history of one dev process.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from surge.events.observers import DeliveryEvent

__all__ = ["DEFAULT_CAPACITY", "STATUS_OF", "DeliveryLog"]

DEFAULT_CAPACITY: Final = 500

STATUS_OF: Final = {
    "published": "queued",
    "started": "running",
    "retried": "retried",
    "done": "done",
    "dead": "dead",
    "replayed": "queued",
    "discarded": "discarded",
}
"""The status a message has after each kind of event."""


@dataclass(frozen=True, slots=True)
class _Entry:
    seq: int
    kind: str
    step: str
    topic: str
    message_id: str
    trace_id: str
    attempt: int
    error: str | None
    delay: float | None
    at: float


class DeliveryLog:
    """The last ``capacity`` delivery events (a ring buffer) and the messages they describe."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._entries: deque[_Entry] = deque(maxlen=capacity)
        self._seq = itertools.count(1)
        # Observers run on the loop, but a threaded server could read while the loop writes.
        self._lock = threading.Lock()

    def observe(self, event: DeliveryEvent) -> None:
        """The delivery observer: remember ``event``."""
        self._add(
            event.kind,
            event.step,
            event.topic,
            event.message_id,
            event.trace_id,
            event.attempt,
            event.error,
            event.delay,
            event.at,
        )

    def note(self, kind: str, step: str, message_id: str, *, topic: str, trace_id: str) -> None:
        """Record what the Workbench did to a dead letter (``replayed`` or ``discarded``)."""
        self._add(kind, step, topic, message_id, trace_id, 0, None, None, time.time())

    def _add(
        self,
        kind: str,
        step: str,
        topic: str,
        message_id: str,
        trace_id: str,
        attempt: int,
        error: str | None,
        delay: float | None,
        at: float,
    ) -> None:
        with self._lock:
            entry = _Entry(
                next(self._seq), kind, step, topic, message_id, trace_id, attempt, error, delay, at
            )
            self._entries.append(entry)

    def events(self) -> list[dict[str, Any]]:
        """Every event still in the buffer, oldest first (wire names)."""
        with self._lock:
            entries = list(self._entries)
        return [_event_json(e) for e in entries]

    def messages(
        self, *, step: str | None = None, trace_id: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """One row per message seen in the buffer, most recently changed first.

        A row: ``step``, ``messageId``, ``topic``, ``traceId``, ``status`` (see ``STATUS_OF``),
        ``attempt`` (the latest), ``error`` (the latest failure, kept after a replay),
        ``firstSeen``/``updatedAt`` (epoch seconds) and ``history`` (its events, oldest first).
        """
        with self._lock:
            entries = list(self._entries)
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for entry in entries:
            if step is not None and entry.step != step:
                continue
            if trace_id is not None and entry.trace_id != trace_id:
                continue
            key = (entry.step, entry.message_id)
            row = rows.get(key)
            if row is None:
                row = rows[key] = {
                    "step": entry.step,
                    "messageId": entry.message_id,
                    "topic": entry.topic,
                    "traceId": entry.trace_id,
                    "attempt": 0,
                    "error": None,
                    "firstSeen": entry.at,
                    "history": [],
                }
            row["status"] = STATUS_OF.get(entry.kind, entry.kind)
            row["updatedAt"] = entry.at
            row["seq"] = entry.seq
            if entry.attempt:
                row["attempt"] = entry.attempt
            if entry.error is not None:
                row["error"] = entry.error
            row["history"].append(_event_json(entry))
        ordered = sorted(rows.values(), key=lambda r: r["seq"], reverse=True)
        return ordered[: max(0, limit)]

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest event (0 when empty): changes when anything does."""
        with self._lock:
            return self._entries[-1].seq if self._entries else 0


def _event_json(entry: _Entry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "kind": entry.kind,
        "step": entry.step,
        "topic": entry.topic,
        "messageId": entry.message_id,
        "traceId": entry.trace_id,
        "attempt": entry.attempt,
        "error": entry.error,
        "delay": entry.delay,
        "at": entry.at,
    }
