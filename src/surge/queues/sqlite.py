"""``SqliteQueue``: the default durable queue, in one SQLite database (WAL, ``synchronous=FULL``).

Design:

- **Tables.** ``messages`` holds every live message of every queue, ordered by ``seq`` (an
  AUTOINCREMENT key: never reused, so "later" always means a larger ``seq``); ``dead_letters``
  holds the given-up ones. A message is *ready* when ``ready_at <= now`` (wall clock: several
  processes share the file) and it has no live lease (``lease_until`` NULL or past). ``receive``
  sets ``lease_until``, a fresh lease ``token`` (the receipt), the caller's ``consumer`` and
  ``owner`` (this process: host, boot, pid, pid start time, a random id) and bumps ``attempts``;
  ``ack``, ``retry``, ``extend`` and ``dead_letter`` act only while the token still matches, so a
  consumer whose lease was lost (and maybe re-leased) changes nothing. An expired lease simply
  makes the row ready again: the next ``receive`` delivers it with ``attempts + 1``.
- **FIFO groups.** A grouped message is deliverable only when it is the smallest ``seq`` of its
  (queue, group) among live messages: while the head is leased or waiting for its retry, nothing
  behind it is ready. Dead-lettering (or acking) the head removes it from ``messages``, which
  unblocks the next one. ``replay`` re-inserts a dead letter with a new ``seq``: the end of the
  queue and of its group.
- **Poison.** A row whose data does not decode as JSON (or whose topic or trace id is not text) is
  moved to ``dead_letters`` by ``receive`` itself, which then keeps filling ``limit``.
- **Fast redelivery after a crash.** On ``open()`` and every ``REAP_INTERVAL_S`` during
  ``receive``, leases whose owner ran on this host and is no longer alive (same boot and pid but
  another start time, no such pid, or another boot) are released at once, so a process restarted
  after ``kill -9`` gets its in-flight messages again without waiting out the lease. Owners on
  other hosts are left to lease expiry. Two containers sharing the file under the same hostname
  would look like one host: give them distinct hostnames (Docker and Kubernetes do).
- **One writer thread, group commit** (as in ``surge.streams.stores.file``): every operation,
  reads included, is queued to one thread with one connection, which applies everything queued
  (up to ``MAX_BATCH``) in ONE ``BEGIN IMMEDIATE`` transaction; a burst of N publishes costs one
  fsync. A batch failing for a data reason is re-applied one operation per transaction; lock, I/O
  and disk-full errors fail the batch as retryable ``StoreError``. ``publish`` returns only after
  ``COMMIT``: with ``synchronous=FULL`` the WAL is fsynced, so a published message survives
  ``kill -9`` and power loss.
- **Several processes** may share the file: each has its own writer thread, SQLite's lock
  (``BEGIN IMMEDIATE`` plus ``busy_timeout``, then a few retries) serialises their transactions,
  and the lease columns make sure each message goes to one consumer at a time.
- **wait().** ``publish``, ``retry`` (when its delay is over, by a loop timer), ``replay`` and
  released leases wake this process's waiters at once. Other processes' publishes are seen by
  polling: ``wait`` returns at the latest after ``poll_interval`` seconds.
- ``SqliteQueue(":memory:")`` keeps everything in memory on the writer's connection (no WAL, no
  durability, not shareable): for the memory store and tests.
- ``dead_letters`` keeps every dead letter until it is replayed or discarded.
- Cost: ``receive`` walks the queue in ``seq`` order past leased rows, rows waiting for a retry
  and FIFO rows behind their head (one index probe each): cheap for thousands of such rows, not
  for millions. ``retry`` and ``extend`` do not record the error (the runner logs it); the dead
  letter keeps the last one.
"""

from __future__ import annotations

import asyncio
import logging
import queue as queue_module
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from surge.errors import ConfigError, StoreError
from surge.queues.base import (
    DeadLetter,
    Delivery,
    Envelope,
    QueueStats,
    encode_data,
    is_dead_local_process,
    process_identity,
    validate_publish,
)

__all__ = ["MAX_BATCH", "POLL_INTERVAL_S", "REAP_INTERVAL_S", "SCHEMA_VERSION", "SqliteQueue"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 2
"""1: the first; 2: ``trace_parent`` (the emit's W3C traceparent) on messages and dead letters."""
MAX_BATCH: Final = 256
POLL_INTERVAL_S: Final = 0.2  # wait() looks at the file at least this often
REAP_INTERVAL_S: Final = 2.0  # receive() releases dead local owners' leases this often
BUSY_TIMEOUT_S: Final = 5.0
BUSY_RETRIES: Final = 3
MEMORY: Final = ":memory:"

# Primary result codes after which trying again later may work: BUSY, LOCKED, IOERR, FULL.
_RETRYABLE_CODES: Final = frozenset({5, 6, 10, 13})

_SCHEMA: Final = """
CREATE TABLE messages (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    queue       TEXT    NOT NULL,
    grp         TEXT,
    topic       TEXT    NOT NULL,
    trace_id    TEXT    NOT NULL,
    data        BLOB    NOT NULL,
    enqueued_at REAL    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    trace_parent TEXT,
    ready_at    REAL    NOT NULL,
    lease_until REAL,
    token       TEXT,
    consumer    TEXT,
    owner       TEXT
);
CREATE INDEX messages_by_queue ON messages (queue, seq);
CREATE INDEX messages_by_group ON messages (queue, grp, seq) WHERE grp IS NOT NULL;
CREATE INDEX messages_by_owner ON messages (owner) WHERE owner IS NOT NULL;
CREATE TABLE dead_letters (
    id          TEXT    PRIMARY KEY,
    queue       TEXT    NOT NULL,
    grp         TEXT,
    topic       TEXT    NOT NULL,
    trace_id    TEXT    NOT NULL,
    data        BLOB    NOT NULL,
    enqueued_at REAL    NOT NULL,
    attempts    INTEGER NOT NULL,
    error       TEXT    NOT NULL,
    failed_at   REAL    NOT NULL,
    trace_parent TEXT
) WITHOUT ROWID;
CREATE INDEX dead_letters_by_queue ON dead_letters (queue, failed_at);
"""

_INSERT: Final = """
INSERT INTO messages
    (id, queue, grp, topic, trace_id, data, enqueued_at, attempts, ready_at, trace_parent)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# Ready rows in queue order; a grouped row only when it is its group's head.
_READY: Final = """
SELECT seq, id, grp, topic, trace_id, data, enqueued_at, attempts, trace_parent FROM messages AS m
WHERE queue = ? AND ready_at <= ? AND (lease_until IS NULL OR lease_until <= ?)
  AND (grp IS NULL OR seq = (SELECT min(seq) FROM messages AS g
                             WHERE g.queue = m.queue AND g.grp = m.grp))
ORDER BY seq LIMIT ?
"""
_LEASE: Final = """
UPDATE messages SET attempts = attempts + 1, lease_until = ?, token = ?, consumer = ?, owner = ?
WHERE seq = ?
"""
_MINE: Final = "id = ? AND queue = ? AND token = ?"
_EXTEND: Final = f"UPDATE messages SET lease_until = ? WHERE {_MINE}"
_ACK: Final = f"DELETE FROM messages WHERE {_MINE}"
_RETRY: Final = f"""
UPDATE messages SET ready_at = ?, lease_until = NULL, token = NULL, consumer = NULL, owner = NULL
WHERE {_MINE}
"""
_TO_DEAD: Final = """
INSERT OR REPLACE INTO dead_letters
    (id, queue, grp, topic, trace_id, data, enqueued_at, attempts, error, failed_at, trace_parent)
SELECT id, queue, grp, topic, trace_id, data, enqueued_at, attempts, ?, ?, trace_parent
FROM messages
WHERE seq = ?
"""
_SEQ_IF_MINE: Final = f"SELECT seq FROM messages WHERE {_MINE}"
_DELETE_SEQ: Final = "DELETE FROM messages WHERE seq = ?"
_DEAD_LIST: Final = """
SELECT id, grp, topic, trace_id, data, enqueued_at, attempts, error, failed_at FROM dead_letters
WHERE queue = ? ORDER BY failed_at DESC, id DESC LIMIT ?
"""
_REPLAY: Final = """
INSERT INTO messages
    (id, queue, grp, topic, trace_id, data, enqueued_at, attempts, ready_at, trace_parent)
SELECT id, queue, grp, topic, trace_id, data, enqueued_at, 0, ?, trace_parent FROM dead_letters
WHERE queue = ? AND id = ?
"""
_DISCARD: Final = "DELETE FROM dead_letters WHERE queue = ? AND id = ?"
_OWNERS: Final = "SELECT DISTINCT owner FROM messages WHERE owner IS NOT NULL AND lease_until > ?"
_RELEASE: Final = """
UPDATE messages SET lease_until = NULL, token = NULL, consumer = NULL, owner = NULL
WHERE owner = ? RETURNING queue
"""
_STATS: Final = """
SELECT
    coalesce(sum(lease_until > :now), 0),
    coalesce(sum((lease_until IS NULL OR lease_until <= :now) AND ready_at > :now), 0),
    count(*)
FROM messages WHERE queue = :queue
"""
_DEAD_COUNT: Final = "SELECT count(*) FROM dead_letters WHERE queue = ?"


@dataclass(slots=True, eq=False)
class _Op:
    """One queued operation: ``fn`` runs on the writer thread inside a write transaction."""

    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    result: Any = None
    error: StoreError | None = None


class SqliteQueue:
    """A durable ``MessageQueue`` on SQLite; ``":memory:"`` for a non-durable one."""

    is_distributed = False  # Only processes sharing the file (one host) share its queues.

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: Literal["full", "normal"] = "full",
        poll_interval: float = POLL_INTERVAL_S,
    ) -> None:
        """Configure (no I/O yet). ``path`` is the database file, or ``":memory:"``.

        ``synchronous="normal"`` skips the fsync per commit: still safe against a killed process,
        not against power loss. ``poll_interval`` bounds how long ``wait`` may miss another
        process's publish.
        """
        if synchronous not in ("full", "normal"):
            raise ConfigError(f"synchronous must be 'full' or 'normal', not {synchronous!r}")
        if poll_interval <= 0:
            raise ConfigError(f"poll_interval must be positive, not {poll_interval!r}")
        self.is_memory = str(path) == MEMORY
        self.path: Path | None = None if self.is_memory else Path(path)
        self.synchronous = synchronous
        self.poll_interval = poll_interval
        self.owner = process_identity()
        """This queue object's identity on the leases it takes."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ops: queue_module.SimpleQueue[_Op | None] = queue_module.SimpleQueue()
        self._conn: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None
        self._last_reap = 0.0  # writer thread only
        self._pending: set[str] = set()  # queues that may have gained ready messages
        self._waiters: dict[str, asyncio.Event] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._is_open = False
        self._is_closed = False
        self._open_lock = asyncio.Lock()
        self._close_task: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"SqliteQueue({MEMORY if self.path is None else str(self.path)!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Create or open the database, start the writer thread, release dead owners' leases.

        Raises:
            StoreError: the file cannot be created or opened, or the queue was closed.
        """
        async with self._open_lock:
            if self._is_closed:
                raise StoreError("queue is closed")
            if self._is_open:
                return
            self._loop = asyncio.get_running_loop()
            self._conn = await asyncio.to_thread(self._connect)
            # Daemon: a queue the app forgot to close must not keep the interpreter alive;
            # acknowledged publishes are already on disk.
            self._thread = threading.Thread(
                target=self._writer_main, name="surge-queue-write", daemon=True
            )
            self._thread.start()
            self._is_open = True
        released = await self._submit(lambda conn: self._reap(conn, force=True))
        for name in released:
            self._wake(name)

    async def close(self) -> None:
        """Finish queued operations, stop the writer thread, close the database; idempotent."""
        self._is_closed = True
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._close_task)

    async def _shutdown(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for event in self._waiters.values():
            event.set()
        if self._thread is not None:
            self._ops.put(None)
            await asyncio.to_thread(self._thread.join)
        if self._conn is not None:
            await asyncio.to_thread(self._conn.close)
            self._conn = None

    def _connect(self) -> sqlite3.Connection:
        target = MEMORY if self.path is None else str(self.path)
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create {self.path.parent}: {exc}") from exc
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                target, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            if self.path is not None:
                mode = _execute_retrying(conn, "PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"{self.path}: cannot use WAL mode (got {mode!r})")
                conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            _begin_immediate(conn)
            try:
                self._migrate(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.Error):
                raise _store_error(exc, f"opening {target}") from exc
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version == 1:  # a file written before tracing: the column is added, empty
            conn.execute("ALTER TABLE messages ADD COLUMN trace_parent TEXT")
            conn.execute("ALTER TABLE dead_letters ADD COLUMN trace_parent TEXT")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has queue schema version {version}; "
                f"this Surge reads up to {SCHEMA_VERSION}"
            )

    # -- the writer thread -------------------------------------------------------------------

    async def _submit(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        if self._is_closed:
            raise StoreError("queue is closed")
        loop = self._loop
        if loop is None or not self._is_open:
            raise StoreError("queue is not open")
        future: asyncio.Future[Any] = loop.create_future()
        self._ops.put(_Op(fn, future))
        return await future

    def _writer_main(self) -> None:
        is_stopping = False
        while not is_stopping:
            batch: list[_Op] = []
            op = self._ops.get()
            while True:
                if op is None:
                    is_stopping = True  # close() submits nothing after the sentinel
                    break
                batch.append(op)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    op = self._ops.get_nowait()
                except queue_module.Empty:
                    break
            if not batch:
                continue
            try:
                self._apply(batch)
            except Exception as exc:
                # A bug here must not kill the thread and strand every awaiting caller.
                logger.exception("queue writer failed on a batch of %d", len(batch))
                for entry in batch:
                    entry.result, entry.error = None, _store_error(exc, "queue operation")
            self._post(batch)

    def _apply(self, batch: list[_Op]) -> None:
        try:
            self._transaction(batch)
            return
        except Exception as exc:
            error = _store_error(exc, "queue operation")
            if len(batch) == 1 or error.retryable:
                for op in batch:
                    op.result, op.error = None, error
                return
        for op in batch:  # one bad operation fails alone
            try:
                self._transaction([op])
            except Exception as exc:
                op.result, op.error = None, _store_error(exc, "queue operation")

    def _transaction(self, ops: list[_Op]) -> None:
        conn = self._conn
        if conn is None:
            raise StoreError("queue is closed")
        _begin_immediate(conn)
        try:
            results = [op.fn(conn) for op in ops]
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        for op, result in zip(ops, results, strict=True):
            op.result, op.error = result, None

    def _post(self, batch: list[_Op]) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(_resolve, batch)
        except RuntimeError:
            logger.warning("event loop closed; %d queue operations not reported", len(batch))

    # -- publish and receive -----------------------------------------------------------------

    async def publish(self, queues: Sequence[str], envelope: Envelope) -> list[str]:
        """Enqueue one copy per queue in one transaction; returns once it is on disk.

        Raises:
            ValidationError: a bad queue name or id, or data that is not JSON-able.
            StoreError: the database failed (``retryable`` for lock, I/O and disk-full errors).
        """
        validate_publish(queues, envelope)
        data = encode_data(envelope.data)
        ids = [uuid.uuid4().hex for _ in queues]
        now = time.time()
        rows = [
            (
                id,
                name,
                envelope.group_id,
                envelope.topic,
                envelope.trace_id,
                data,
                now,
                0,
                now,
                envelope.trace_parent,
            )
            for id, name in zip(ids, queues, strict=True)
        ]
        await self._submit(lambda conn: conn.executemany(_INSERT, rows))
        for name in queues:
            self._wake(name)
        return ids

    async def receive(
        self, queue: str, *, consumer: str, limit: int, lease: float
    ) -> list[Delivery]:
        """Lease up to ``limit`` ready messages for ``lease`` seconds; never waits for one."""
        if limit <= 0:
            return []
        if lease <= 0:
            raise ValueError(f"lease must be positive, not {lease!r}")
        self._pending.discard(queue)
        deliveries: list[Delivery]
        released: list[str]
        deliveries, released = await self._submit(
            lambda conn: self._receive_sync(conn, queue, consumer, limit, lease)
        )
        for name in released:
            self._wake(name)
        if len(deliveries) == limit:
            self._pending.add(queue)  # there may be more
        return deliveries

    def _receive_sync(
        self, conn: sqlite3.Connection, queue: str, consumer: str, limit: int, lease: float
    ) -> tuple[list[Delivery], list[str]]:
        released = self._reap(conn, force=False)
        now = time.time()
        deliveries: list[Delivery] = []
        while len(deliveries) < limit:
            rows = conn.execute(_READY, (queue, now, now, limit - len(deliveries))).fetchall()
            has_poison = False
            for seq, id, grp, topic, trace_id, data, enqueued_at, attempts, parent in rows:
                try:
                    if not isinstance(topic, str) or not isinstance(trace_id, str):
                        raise ValueError("topic and trace id must be text")
                    parent = parent if isinstance(parent, str) else None
                    envelope = Envelope(topic, orjson.loads(data), trace_id, grp, parent)
                except (ValueError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
                    logger.warning("queue %s: dead-lettering undecodable message %s", queue, id)
                    conn.execute(_TO_DEAD, (f"cannot decode message: {exc}", now, seq))
                    conn.execute(_DELETE_SEQ, (seq,))
                    has_poison = True
                    continue
                token = uuid.uuid4().hex
                conn.execute(_LEASE, (now + lease, token, consumer, self.owner, seq))
                deliveries.append(
                    Delivery(queue, id, envelope, attempts + 1, enqueued_at, receipt=token)
                )
            if not has_poison:
                break  # without poison, a short page means nothing more is ready
        return deliveries, released

    def _reap(self, conn: sqlite3.Connection, *, force: bool) -> list[str]:
        """Release leases held by dead owners on this host; returns the queues touched."""
        now = time.time()
        if not force and now - self._last_reap < REAP_INTERVAL_S:
            return []
        self._last_reap = now
        queues: set[str] = set()
        for (owner,) in conn.execute(_OWNERS, (now,)).fetchall():
            if isinstance(owner, str) and is_dead_local_process(owner):
                rows = conn.execute(_RELEASE, (owner,)).fetchall()
                logger.info("released %d leases of dead consumer %s", len(rows), owner)
                queues.update(name for (name,) in rows)
        return sorted(queues)

    async def wait(self, queue: str, timeout: float) -> None:  # noqa: ASYNC109 (the contract)
        """Return when this process published into ``queue`` (or a retry became due), or after
        ``min(timeout, poll_interval)`` seconds (other processes are seen by polling)."""
        if self._is_closed:
            raise StoreError("queue is closed")
        if queue in self._pending or timeout <= 0:
            return
        event = self._waiters.get(queue)
        if event is None:
            event = self._waiters[queue] = asyncio.Event()
        try:
            async with asyncio.timeout(min(timeout, self.poll_interval)):
                await event.wait()
        except TimeoutError:
            pass

    def _wake(self, queue: str) -> None:
        self._pending.add(queue)
        event = self._waiters.pop(queue, None)
        if event is not None:
            event.set()

    def _wake_later(self, queue: str, delay: float) -> None:
        if self._loop is None or self._is_closed:
            return

        def fire() -> None:
            self._timers.discard(timer)
            self._wake(queue)

        timer = self._loop.call_later(delay, fire)
        self._timers.add(timer)

    # -- settling a delivery -----------------------------------------------------------------

    async def extend(self, delivery: Delivery, lease: float) -> bool:
        """Renew the lease for ``lease`` seconds from now; False when it was already lost."""
        args = (delivery.message_id, delivery.queue, delivery.receipt)
        count: int = await self._submit(
            lambda conn: conn.execute(_EXTEND, (time.time() + lease, *args)).rowcount
        )
        return count == 1

    async def ack(self, delivery: Delivery) -> None:
        """Delete the message; nothing happens when the lease was lost to another consumer."""
        args = (delivery.message_id, delivery.queue, delivery.receipt)
        count: int = await self._submit(lambda conn: conn.execute(_ACK, args).rowcount)
        if count == 0:
            logger.debug("ack of %s in %s: lease was lost", delivery.message_id, delivery.queue)
        elif delivery.envelope.group_id is not None:
            self._wake(delivery.queue)  # the next message of the group is ready

    async def retry(self, delivery: Delivery, *, delay: float, error: str) -> None:
        """Release the message to be delivered again after ``delay`` seconds (attempt + 1)."""
        delay = max(0.0, delay)
        args = (delivery.message_id, delivery.queue, delivery.receipt)
        count: int = await self._submit(
            lambda conn: conn.execute(_RETRY, (time.time() + delay, *args)).rowcount
        )
        if count == 0:
            logger.debug("retry of %s in %s: lease was lost", delivery.message_id, delivery.queue)
        elif delay == 0:
            self._wake(delivery.queue)
        else:
            self._wake_later(delivery.queue, delay)

    async def dead_letter(self, delivery: Delivery, *, error: str) -> None:
        """Move the message to the dead letters with ``error`` (nothing if the lease was lost)."""
        args = (delivery.message_id, delivery.queue, delivery.receipt)

        def move(conn: sqlite3.Connection) -> bool:
            row = conn.execute(_SEQ_IF_MINE, args).fetchone()
            if row is None:
                return False
            conn.execute(_TO_DEAD, (error, time.time(), row[0]))
            conn.execute(_DELETE_SEQ, (row[0],))
            return True

        if not await self._submit(move):
            logger.debug("dead letter of %s: lease was lost", delivery.message_id)
        elif delivery.envelope.group_id is not None:
            self._wake(delivery.queue)

    # -- dead letters and stats --------------------------------------------------------------

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """The newest ``limit`` dead letters of ``queue``, newest first."""
        rows: list[tuple[Any, ...]] = await self._submit(
            lambda conn: conn.execute(_DEAD_LIST, (queue, max(0, limit))).fetchall()
        )
        letters = []
        for id, grp, topic, trace_id, data, _enqueued_at, attempts, error, failed_at in rows:
            try:
                decoded = orjson.loads(data)
            except (ValueError, TypeError):  # a poison message: show what was stored
                decoded = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
            envelope = Envelope(str(topic), decoded, str(trace_id), grp)
            letters.append(DeadLetter(queue, id, envelope, attempts, error, failed_at))
        return letters

    async def replay(self, queue: str, message_id: str) -> bool:
        """Re-enqueue a dead letter at the end of its queue with attempts reset."""

        def move(conn: sqlite3.Connection) -> bool:
            if conn.execute(_REPLAY, (time.time(), queue, message_id)).rowcount == 0:
                return False
            conn.execute(_DISCARD, (queue, message_id))
            return True

        is_replayed: bool = await self._submit(move)
        if is_replayed:
            self._wake(queue)
        return is_replayed

    async def discard(self, queue: str, message_id: str) -> bool:
        """Delete a dead letter for good; False if unknown."""
        count: int = await self._submit(
            lambda conn: conn.execute(_DISCARD, (queue, message_id)).rowcount
        )
        return count == 1

    async def stats(self, queue: str) -> QueueStats:
        """Counts of ``queue``: FIFO-blocked messages count as ready, expired leases too."""

        def read(conn: sqlite3.Connection) -> QueueStats:
            in_flight, delayed, total = conn.execute(
                _STATS, {"now": time.time(), "queue": queue}
            ).fetchone()
            (dead,) = conn.execute(_DEAD_COUNT, (queue,)).fetchone()
            return QueueStats(total - in_flight - delayed, delayed, in_flight, dead)

        result: QueueStats = await self._submit(read)
        return result


def _resolve(batch: list[_Op]) -> None:
    for op in batch:
        if op.future.done():  # the caller was cancelled; the operation still happened
            continue
        if op.error is not None:
            op.future.set_exception(op.error)
        else:
            op.future.set_result(op.result)


def _begin_immediate(conn: sqlite3.Connection) -> None:
    _execute_retrying(conn, "BEGIN IMMEDIATE")


def _execute_retrying(conn: sqlite3.Connection, sql: str) -> sqlite3.Cursor:
    # busy_timeout already waits BUSY_TIMEOUT_S for another process's lock; a few retries
    # ride out a long checkpoint or a burst from another writer before giving up, and the
    # SQLITE_BUSY SQLite returns at once when two processes switch one new database to WAL.
    for attempt in range(BUSY_RETRIES + 1):
        try:
            return conn.execute(sql)
        except sqlite3.OperationalError as exc:
            if _primary_code(exc) not in (5, 6) or attempt == BUSY_RETRIES:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")  # the last attempt returns or raises


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def _store_error(exc: BaseException, action: str) -> StoreError:
    """Wrap ``exc`` (chained as its cause) in a ``StoreError`` saying whether to retry."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.Error):
        error = StoreError(
            f"{action} failed: {exc}", retryable=_primary_code(exc) in _RETRYABLE_CODES
        )
    else:
        error = StoreError(f"{action} failed: {exc!r}")
    error.__cause__ = exc
    return error
