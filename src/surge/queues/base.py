"""The queue extension point: durable per-step queues behind event steps.

Layer: ``queues`` sits beside ``streams`` (it imports only ``surge.errors``); ``steps`` and the
server's event runner use it. Each subscribing event step has its own queue (named after the step),
so a topic with N subscribers is N copies of a message (fan-out per step); ``publish`` writes all N
copies atomically and durably before it returns.

Delivery is at least once, by leases:

- ``receive`` leases up to ``limit`` ready messages to one consumer for ``lease`` seconds. A leased
  message is invisible to other consumers until it is acked, retried, dead-lettered, or its lease
  runs out (the consumer died): then it is delivered again with ``attempt + 1``. A long handler
  keeps its lease with ``extend``.
- ``retry`` makes the message ready again after ``delay`` seconds (``attempt + 1``);
  ``dead_letter`` moves it to the queue's dead-letter list with the error, where it stays until
  ``replay`` puts it back (attempts reset) or ``discard`` removes it.
- **FIFO groups.** A message with a ``group_id`` is not delivered while an earlier message of the
  same (queue, group) is leased, waiting for a retry, or still queued: a group is handled strictly
  in order, one message at a time; a dead-lettered message unblocks its group. Messages without a
  group have no order among themselves beyond best effort.
- A message whose data cannot be decoded is dead-lettered by the backend itself (poison messages
  never block a queue).

Backends: ``surge.queues.sqlite.SqliteQueue`` (the default, embedded, durable across ``kill -9``;
``":memory:"`` for the memory store) and ``surge.queues.redis.RedisStreamsQueue`` (Redis Streams
with consumer groups: any instance takes any message, each message handled once per step).
The contract suite ``tests/unit/queues/test_queue_contract.py`` runs over every backend.

Input checks shared by the backends: ``validate_publish`` (queue names, topic, trace and group ids)
and ``encode_data`` (the data must be JSON-able: orjson types, so dicts, lists, str, numbers,
bool, None, plus datetimes, UUIDs and dataclasses); both raise ``ValidationError``.

Process identities for leases: ``process_identity()`` names one queue object of one process
(``host|boot id|pid|pid start time|random``); ``is_dead_local_process`` tells whether such a name
belongs to a process of this host that no longer exists, so its leases can be released at once
instead of after the lease time (a restarted process gets its in-flight messages back).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import orjson

from surge.errors import ValidationError

__all__ = [
    "MAX_NAME_LENGTH",
    "DeadLetter",
    "Delivery",
    "Envelope",
    "MessageQueue",
    "QueueStats",
    "encode_data",
    "is_dead_local_process",
    "process_identity",
    "validate_publish",
]

MAX_NAME_LENGTH: Final = 256
"""Longest queue name, topic, trace id or group id accepted (characters)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """What is enqueued: the topic, its JSON-able data, the trace id, an optional FIFO group
    and, with tracing on, the W3C ``traceparent`` of the emit (``surge.tracing``)."""

    topic: str
    data: Any
    trace_id: str
    group_id: str | None = None
    trace_parent: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One leased message: what to hand the handler, and the receipt to ack or retry it with."""

    queue: str
    message_id: str
    envelope: Envelope
    attempt: int
    """1 on the first delivery, +1 on each retry or redelivery after a lost lease."""
    enqueued_at: float
    """Wall-clock seconds (``time.time()``) of the original ``publish``."""
    receipt: Any = None
    """Backend-private (the lease token, the Redis entry id); opaque to callers."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that will not be delivered again unless replayed."""

    queue: str
    message_id: str
    envelope: Envelope
    attempts: int
    error: str
    failed_at: float


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counts for one queue (for the Workbench, metrics and ``wait_idle``)."""

    ready: int
    delayed: int
    in_flight: int
    dead: int

    @property
    def is_idle(self) -> bool:
        """Nothing queued, waiting for a retry or being handled."""
        return self.ready == 0 and self.delayed == 0 and self.in_flight == 0


@runtime_checkable
class MessageQueue(Protocol):
    """Durable queues, one per subscribing step; see the module docstring for the semantics."""

    is_distributed: bool
    """True when every process sharing the backend takes messages from the same queues (Redis)."""

    async def open(self) -> None:
        """Create or connect the storage; idempotent."""
        ...

    async def close(self) -> None:
        """Release every resource; leased messages stay leased until their lease runs out."""
        ...

    async def publish(self, queues: Sequence[str], envelope: Envelope) -> list[str]:
        """Enqueue one copy per queue, atomically and durably; returns the message ids."""
        ...

    async def receive(
        self, queue: str, *, consumer: str, limit: int, lease: float
    ) -> list[Delivery]:
        """Lease up to ``limit`` ready messages (possibly none) without waiting."""
        ...

    async def wait(self, queue: str, timeout: float) -> None:  # noqa: ASYNC109 (the contract)
        """Return when a message may be ready in ``queue``, or after ``timeout`` seconds."""
        ...

    async def extend(self, delivery: Delivery, lease: float) -> bool:
        """Renew the lease; False when it was already lost (another consumer may have it)."""
        ...

    async def ack(self, delivery: Delivery) -> None:
        """The handler succeeded: remove the message for good."""
        ...

    async def retry(self, delivery: Delivery, *, delay: float, error: str) -> None:
        """The handler failed: deliver again after ``delay`` seconds, attempt + 1."""
        ...

    async def dead_letter(self, delivery: Delivery, *, error: str) -> None:
        """Give up on the message: move it to the dead-letter list with ``error``."""
        ...

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters of ``queue`` (newest first)."""
        ...

    async def replay(self, queue: str, message_id: str) -> bool:
        """Put a dead letter back at the end of its queue with attempts reset; False if unknown."""
        ...

    async def discard(self, queue: str, message_id: str) -> bool:
        """Delete a dead letter for good; False if unknown."""
        ...

    async def stats(self, queue: str) -> QueueStats:
        """Current counts of ``queue``."""
        ...


def validate_publish(queues: Sequence[str], envelope: Envelope) -> None:
    """Check the queue names and the envelope's ids before anything is stored.

    Raises:
        ValidationError: no queue, a queue named twice, or a name or id that is not a non-empty
            string of at most ``MAX_NAME_LENGTH`` characters without NUL.
    """
    if isinstance(queues, str) or not queues:
        raise ValidationError("publish needs a non-empty sequence of queue names")
    if len(set(queues)) != len(queues):
        raise ValidationError(f"queue names must be distinct: {list(queues)!r}")
    for queue in queues:
        _check_name("queue name", queue)
    _check_name("topic", envelope.topic)
    _check_name("trace id", envelope.trace_id)
    if envelope.group_id is not None:
        _check_name("group id", envelope.group_id)
    if envelope.trace_parent is not None:
        _check_name("trace parent", envelope.trace_parent)


def encode_data(data: Any) -> bytes:
    """The message data as JSON bytes (orjson).

    Raises:
        ValidationError: ``data`` is not JSON-able.
    """
    try:
        return orjson.dumps(data)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise ValidationError(
            f"message data is not JSON-serialisable: {exc}",
            [{"loc": ["data"], "msg": str(exc), "type": "json_encode"}],
        ) from exc


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{what} must be a non-empty string, not {value!r}")
    if len(value) > MAX_NAME_LENGTH or "\0" in value:
        raise ValidationError(
            f"{what} must be at most {MAX_NAME_LENGTH} characters without NUL: {value[:40]!r}"
        )


# -- process identity ------------------------------------------------------------------------


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or "-"
    except OSError:
        return "-"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux); "-" elsewhere; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "-"
    # Field 22; the command name (field 2) may contain spaces, so count from its ")".
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else "-"


_HOST: Final = socket.gethostname().replace("|", "_") or "-"
_BOOT: Final = _boot_id()


def process_identity() -> str:
    """A new identity for one queue object of this process: ``host|boot|pid|start|random``."""
    pid = os.getpid()
    return f"{_HOST}|{_BOOT}|{pid}|{_start_time(pid) or '-'}|{uuid.uuid4().hex[:12]}"


def is_dead_local_process(identity: str) -> bool:
    """True when ``identity`` is a process of this host that no longer exists.

    False for other hosts (only lease expiry can tell) and whenever in doubt. Two containers
    sharing a queue under one hostname would look like one host: give them distinct hostnames.
    """
    parts = identity.split("|")
    if len(parts) != 5 or parts[0] != _HOST:
        return False
    _, boot, pid_text, started, _ = parts
    if boot != _BOOT:
        return boot != "-" and _BOOT != "-"  # the machine rebooted since
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    now_started = _start_time(pid)
    if now_started is None:
        return True
    if now_started != "-" and started != "-":
        return now_started != started  # the pid now belongs to another process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. EPERM: it exists under another user
        return False
    return False
