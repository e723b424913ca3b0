"""``FileStreamAdapter``: the default durable store, one SQLite database in WAL mode.

Design:

- **One writer thread, group commit.** ``set``/``delete`` encode the item on the event loop (that
  encode is the copy: the caller may mutate its dict afterwards), queue a write and await its
  future. The writer thread takes everything queued (up to ``MAX_BATCH``) and applies it in ONE
  ``BEGIN IMMEDIATE`` transaction, so a burst of N concurrent writes costs one commit, not N. The
  queue holds at most one entry per awaiting caller, so the callers themselves bound it.
- **Atomic create-vs-update.** Each write is one upsert whose ``RETURNING created`` tells whether
  the row was inserted, inside the write transaction: two concurrent first writes to a key, from
  this process or another, give one ``create`` and one ``update``.
- **Order of sink calls.** After the commit the writer makes ONE ``loop.call_soon_threadsafe`` per
  batch; on the loop that callback hands every applied change to the sink in commit order, and
  only then resolves the writes' futures in the same order. So the sink has seen a change before
  its writer resumes, as ``StreamAdapter`` requires. A cancelled caller does not undo its write:
  it is still committed and still fed to the sink.
- **One bad write fails alone.** If a batch transaction fails for a reason tied to its data, it is
  rolled back and each write is retried in its own transaction. Lock, I/O and disk-full errors
  fail the whole batch as retryable ``StoreError`` instead (retrying per write would only repeat
  the wait N times).
- **Durability.** A write is acknowledged only after ``COMMIT`` returned. With
  ``synchronous="full"`` (the default) SQLite fsyncs the WAL on every commit: acknowledged writes
  survive ``kill -9`` and power loss. ``"normal"`` skips that fsync: still safe against a killed
  process (the data is in the OS cache), not against power loss. SQLite's journal guarantees a
  crash never leaves a corrupt database.
- **Sequence numbers.** ``meta.seq`` is a store-wide counter bumped by every applied change inside
  the write transaction; each row keeps ``created`` (seq at creation, the group order) and ``seq``
  (its last change). ``get_group`` reads the items and the counter in one read transaction, so
  its snapshot ``seq`` matches its items exactly.
- **Reads** run on separate read-only connections in a small thread pool, never on the loop. WAL
  lets them proceed while the writer commits.
- **Windowed reads** (``get_group(limit=, before=)``) walk the ``(stream, grp, created)`` index
  backwards from the cursor (the ``created`` of the oldest item already sent), so the newest 50
  of a group of 100,000 cost as much as those of a group of 50.
- **Several processes** may open the same directory: each has its own writer thread, and SQLite's
  file lock (``BEGIN IMMEDIATE`` plus ``busy_timeout``, then a few retries) serialises their
  transactions. The counter is shared, so ``seq`` stays store-wide. Each process only feeds its
  own changes to its sink; this store does not deliver other processes' writes.
- **History** (``surge.streams.history``): every applied change and every ``send`` inserts a
  ``history`` row (its seq, kind, id, JSON and expiry time) in the same transaction as the item
  write, so a committed change is always in the history and never without its item. ``send`` is
  therefore a write too: it queues like ``set``, takes the next ``meta.seq`` and is fed after its
  commit. A batch of nothing but sends commits with ``synchronous=NORMAL`` (no fsync): an
  ephemeral event survives ``kill -9`` (it is in the OS cache), not power loss, and costs no disk
  flush; the next full commit syncs it anyway. ``history_groups`` keeps per group the floor (the
  largest seq dropped) and the row count: a group is trimmed to its policy's ``size`` when it
  holds 10% more (reads enforce ``size`` exactly); expired rows are deleted by the sweeper and
  raise the floor. ``history`` is a rowid table, so a row holding a 1-4 KB item stays in its
  b-tree page instead of spilling to an overflow page (a WITHOUT ROWID table keeps ~1 KB in the
  page): 1.2x the AI-token rate (bench/README.md, issue 14); databases whose history was created
  WITHOUT ROWID keep it. ``meta.epoch`` is random when the database is created (or migrated to
  history); ``meta.history_floor`` is the seq at that moment (nothing before it was recorded).
- **Updates** (``update(ops)``) run on the writer thread inside the batch's ``BEGIN IMMEDIATE``
  transaction: read the row, apply the ops, validate, upsert. The write lock makes that
  read-modify-write atomic against this process's other writes and other processes alike. An
  item's version is its row's ``seq``. A failing op, validation or ``if_version`` fails that one
  update; the rest of the batch commits.
- **TTL.** Rows carry ``expires_at`` (Unix time, NULL: never; a partial index covers the rest).
  ``open`` deletes what expired while the store was closed before it returns; then one
  ``ExpirySweeper`` task submits a sweep to the writer at the earliest expiry (at least every
  ``SWEEP_MAX_INTERVAL_S``, so expiries written by other processes are seen). A sweep deletes up
  to ``SWEEP_BATCH`` due rows in one transaction and feeds one ``delete`` each; under the write
  lock only one process deletes a row, so the delete is fed once.
- **Checkpoints** (copying the WAL's pages back into the database file, and its fsync) run on a
  thread of their own with its own connection (``PRAGMA wal_checkpoint(PASSIVE)``, at most every
  ``CHECKPOINT_INTERVAL_S`` while the writer commits), not inside a writer's commit: SQLite's
  automatic checkpoint runs in the commit that crosses ``wal_autocheckpoint`` pages, so every few
  commits one took several times as long, and every write of its batch waited (the tail of the
  AI-token latency, issue 14). A passive checkpoint never blocks the writer and releases the GIL
  throughout. The writer keeps an automatic checkpoint at ``WRITER_CHECKPOINT_PAGES`` as a
  backstop, so the WAL stays bounded if the checkpointer falls behind or another process holds a
  reader on an old snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import orjson

from surge.errors import ConfigError, StoreError, ValidationError
from surge.streams.feed import Change, EphemeralEvent, FeedSink, GroupSnapshot, History
from surge.streams.history import DEFAULT_POLICY, HistoryPolicy
from surge.streams.ops import ItemValidator, Updated, apply_update, check_if_version, check_ops
from surge.streams.stores._expiry import ExpirySweeper
from surge.streams.stores._items import check_keys as _check_keys
from surge.streams.stores._items import check_window as _check_window
from surge.streams.stores._items import decode_item as _decode
from surge.streams.stores._items import deliver as _deliver
from surge.streams.stores._items import encode_cursor as _cursor
from surge.streams.stores._items import encode_item as _encode

__all__ = ["MAX_BATCH", "SCHEMA_VERSION", "SWEEP_BATCH", "FileStreamAdapter", "StoreStats"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION: Final = 3
MAX_BATCH: Final = 256
SWEEP_BATCH: Final = 500
READER_THREADS: Final = 2
CHECKPOINT_INTERVAL_S: Final = 0.2
WRITER_CHECKPOINT_PAGES: Final = 10_000
BUSY_TIMEOUT_S: Final = 5.0
BUSY_RETRIES: Final = 3

# Primary result codes after which trying again later may work: BUSY, LOCKED, IOERR, FULL.
_RETRYABLE_CODES: Final = frozenset({5, 6, 10, 13})

# `items` is a rowid table (its primary key a separate index) for the reason `history` is one (see
# _MIGRATE_3): an item that grows past ~1 KB (an AI answer) stays in its page. Databases whose
# items were created WITHOUT ROWID keep them; every statement here suits both.
_SCHEMA: Final = """
CREATE TABLE items (
    stream  TEXT    NOT NULL,
    grp     TEXT    NOT NULL,
    id      TEXT    NOT NULL,
    data    BLOB    NOT NULL,
    created INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (stream, grp, id)
);
CREATE INDEX items_by_creation ON items (stream, grp, created);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('seq', 0);
"""
# Version 1 -> 2: TTL.
_MIGRATE_2: Final = """
ALTER TABLE items ADD COLUMN expires_at REAL;
CREATE INDEX items_by_expiry ON items (expires_at) WHERE expires_at IS NOT NULL;
"""

# Version 2 -> 3: history (see the module docstring). The floor starts at the current seq.
# `history` is a rowid table (its primary key a separate index): a rowid table keeps a row of up to
# ~4 KB in its 4 KB page, a WITHOUT ROWID one only ~1 KB, and a history row holds a whole item.
# Databases whose history was created WITHOUT ROWID keep it; every statement here suits both.
_MIGRATE_3: Final = """
CREATE TABLE history (
    stream     TEXT    NOT NULL,
    grp        TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    expires_at REAL    NOT NULL,
    kind       TEXT    NOT NULL,
    id         TEXT,
    data       BLOB    NOT NULL,
    ops        BLOB,
    PRIMARY KEY (stream, grp, seq)
);
CREATE INDEX history_by_expiry ON history (expires_at);
CREATE TABLE history_groups (
    stream TEXT    NOT NULL,
    grp    TEXT    NOT NULL,
    floor  INTEGER NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (stream, grp)
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('epoch', abs(random() % 281474976710656));
INSERT INTO meta (key, value) SELECT 'history_floor', value FROM meta WHERE key = 'seq'
"""
_HISTORY_INSERT: Final = """
INSERT INTO history (stream, grp, seq, expires_at, kind, id, data, ops)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
_HISTORY_GROUP: Final = "SELECT floor, count FROM history_groups WHERE stream = ? AND grp = ?"
_HISTORY_GROUP_SET: Final = """
INSERT INTO history_groups (stream, grp, floor, count) VALUES (?, ?, ?, ?)
ON CONFLICT (stream, grp) DO UPDATE SET floor = excluded.floor, count = excluded.count
"""
_HISTORY_GROUP_ADD: Final = """
INSERT INTO history_groups (stream, grp, floor, count) VALUES (?, ?, 0, ?)
ON CONFLICT (stream, grp) DO UPDATE SET count = count + excluded.count
"""
_HISTORY_NTH: Final = """
SELECT seq FROM history WHERE stream = ? AND grp = ? ORDER BY seq DESC LIMIT 1 OFFSET ?
"""
_HISTORY_CUT: Final = "DELETE FROM history WHERE stream = ? AND grp = ? AND seq <= ?"
_HISTORY_EXPIRE: Final = """
DELETE FROM history WHERE (stream, grp, seq) IN (
    SELECT stream, grp, seq FROM history WHERE expires_at <= ? ORDER BY expires_at LIMIT ?
) RETURNING stream, grp, seq
"""
_HISTORY_NEXT_EXPIRY: Final = "SELECT MIN(expires_at) FROM history"
_HISTORY_AFTER: Final = """
SELECT seq, expires_at, kind, id, data, ops FROM history WHERE stream = ? AND grp = ? AND seq > ?
ORDER BY seq LIMIT ?
"""
_READ_META: Final = "SELECT value FROM meta WHERE key = ?"

# `created` is only written on insert, so `created = seq` in RETURNING means "this was a create".
_UPSERT: Final = """
INSERT INTO items (stream, grp, id, data, created, seq, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (stream, grp, id) DO UPDATE
SET data = excluded.data, seq = excluded.seq, expires_at = excluded.expires_at
RETURNING created
"""
_GET_ROW: Final = "SELECT data, seq, expires_at FROM items WHERE stream = ? AND grp = ? AND id = ?"
_DUE: Final = """
SELECT stream, grp, id, data FROM items
WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?
"""
_NEXT_EXPIRY: Final = "SELECT MIN(expires_at) FROM items WHERE expires_at IS NOT NULL"
_DELETE: Final = "DELETE FROM items WHERE stream = ? AND grp = ? AND id = ? RETURNING data"
_READ_SEQ: Final = "SELECT value FROM meta WHERE key = 'seq'"
_WRITE_SEQ: Final = "UPDATE meta SET value = ? WHERE key = 'seq'"
_GET: Final = "SELECT data FROM items WHERE stream = ? AND grp = ? AND id = ?"
_GET_GROUP: Final = "SELECT data FROM items WHERE stream = ? AND grp = ? ORDER BY created"
# Windowed reads walk items_by_creation backwards from the cursor: O(limit), whatever the size.
_GET_BEFORE: Final = """
SELECT data, created FROM items WHERE stream = ? AND grp = ? AND created < ?
ORDER BY created DESC LIMIT ?
"""
_LIST_GROUPS: Final = "SELECT DISTINCT grp FROM items WHERE stream = ? ORDER BY grp"


@dataclass(slots=True)
class StoreStats:
    """Counters kept by the writer thread, for tests and benchmarks."""

    writes: int = 0  # set/update/delete calls the writer handled, failed ones included
    sweeps: int = 0  # expiry sweeps the writer ran (only when something was due)
    transactions: int = 0  # committed write transactions
    batches: int = 0  # times the writer took a batch off the queue
    largest_batch: int = 0
    fallbacks: int = 0  # failed batches re-applied one write per transaction
    busy_retries: int = 0  # BEGIN IMMEDIATE (or the switch to WAL) retried after busy_timeout
    sends: int = 0  # send calls the writer handled (counted in writes too)
    history_trims: int = 0  # groups trimmed to their history size
    checkpoints: int = 0  # passive checkpoints the checkpointer thread ran
    checkpointed_frames: int = 0  # WAL frames they copied into the database file
    checkpoint_errors: int = 0  # checkpoints that failed (logged; the writer's backstop remains)


class _Checkpointer:
    """The thread that checkpoints the WAL off the writer's commits (see the module docstring).

    ``committed`` (the writer thread, after each commit) wakes it; it then checkpoints, and
    sleeps at least ``CHECKPOINT_INTERVAL_S`` before the next, so a stream of small commits costs
    one checkpoint per interval, each copying the pages changed meanwhile once.
    """

    def __init__(self, path: Path, stats: StoreStats) -> None:
        self._path = path
        self._stats = stats
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._main, name="surge-store-checkpoint", daemon=True
        )
        self._thread.start()

    def committed(self) -> None:
        if not self._wake.is_set():
            self._wake.set()

    def stop(self) -> None:
        """Finish the checkpoint under way, close the connection, end the thread."""
        self._stop.set()
        self._wake.set()
        self._thread.join()

    def _main(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._wake.wait()
                if self._stop.is_set():
                    return
                self._wake.clear()
                try:
                    if conn is None:
                        conn = sqlite3.connect(
                            self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                            check_same_thread=False,
                        )  # fmt: skip
                    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self._stats.checkpoints += 1
                    self._stats.checkpointed_frames += max(0, int(row[2]))
                except sqlite3.Error:
                    # Another process checkpointing, a full disk: the next one (or the
                    # writer's automatic checkpoint) copies these pages.
                    self._stats.checkpoint_errors += 1
                    logger.warning("store checkpoint failed", exc_info=True)
                if self._stop.wait(CHECKPOINT_INTERVAL_S):
                    return
        finally:
            if conn is not None:
                conn.close()


@dataclass(slots=True, frozen=True)
class _UpdateArgs:
    ops: list[dict[str, Any]]
    if_version: int | None
    ttl: float | None
    default_ttl: float | None
    validate: ItemValidator | None


@dataclass(slots=True, frozen=True)
class _Swept:
    deleted: list[Change]
    next_expiry: float | None  # Unix time (items or history rows)


_Kind = Literal["set", "delete", "update", "sweep", "send"]
_Result = Change | Updated | _Swept | EphemeralEvent | None


@dataclass(slots=True, eq=False)
class _Write:
    kind: _Kind
    stream: str
    group: str
    id: str
    data: bytes | None
    future: asyncio.Future[Any]
    ttl: float | None = None  # set: seconds from the commit
    update: _UpdateArgs | None = None
    target: str | None = None  # send: the item id of the event's channel, if any
    result: _Result = None
    error: Exception | None = field(default=None)

    def messages(self) -> list[Change | EphemeralEvent]:
        """The applied changes (or the sent event) to feed, in order."""
        result = self.result
        if isinstance(result, Change | EphemeralEvent):
            return [result]
        if isinstance(result, Updated):
            return [result.change]
        if isinstance(result, _Swept):
            return list(result.deleted)
        return []


class FileStreamAdapter:
    """A durable ``StreamAdapter`` on SQLite (WAL) in ``<directory>/streams.db``."""

    is_distributed = False  # Changes reach this process's sink only.

    def __init__(
        self,
        directory: Path | str = ".surge/streams",
        *,
        synchronous: Literal["full", "normal"] = "full",
    ) -> None:
        if synchronous not in ("full", "normal"):
            raise ConfigError(f"synchronous must be 'full' or 'normal', not {synchronous!r}")
        self.directory = Path(directory)
        self.path = self.directory / "streams.db"
        self.synchronous = synchronous
        self.stats = StoreStats()
        self._sink: FeedSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # None is the stop sentinel; only the event loop thread puts.
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._writer: sqlite3.Connection | None = None
        self._writer_thread: threading.Thread | None = None
        self._checkpointer: _Checkpointer | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._reader_local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_conns_lock = threading.Lock()
        self._is_open = False
        self._is_closed = False
        self._close_task: asyncio.Future[None] | None = None
        self._sweeper: ExpirySweeper | None = None
        self.epoch = ""
        """Names this database's history (docs/protocol.md section 2); read by ``open``."""
        self._history_floor = 0  # meta.history_floor: nothing at or before it was recorded
        # Read by the writer thread; replaced whole by configure_history (no lock needed).
        self._policies: dict[str, HistoryPolicy] = {}
        # Writer thread only: history messages added per group since its row was last read.
        self._unchecked: dict[tuple[str, str], int] = {}

    def configure_history(self, stream: str, policy: HistoryPolicy) -> None:
        """Keep ``policy``'s history for every group of ``stream`` (default ``HistoryPolicy()``)."""
        self._policies = {**self._policies, stream: policy}

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self, sink: FeedSink) -> None:
        """Create or open the database and start the writer thread."""
        if self._is_open or self._is_closed:
            raise StoreError("store was already opened")
        self._loop = asyncio.get_running_loop()
        writer = await asyncio.to_thread(self._connect_writer)
        if self._is_closed:  # close() ran while the database was being opened
            await asyncio.to_thread(writer.close)
            raise StoreError("store was closed while opening")
        self._writer = writer
        self._sink = sink
        self._readers = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="surge-store-read")
        # Daemon: a store the app forgot to close must not keep the interpreter alive; writes
        # that were never acknowledged may then be lost, acknowledged ones are already on disk.
        self._writer_thread = threading.Thread(
            target=self._writer_main, name="surge-store-write", daemon=True
        )
        self._writer_thread.start()
        self._checkpointer = _Checkpointer(self.path, self.stats)
        self._is_open = True
        # What expired while the store was closed is gone before open returns.
        try:
            await self._sweep()
        except BaseException:
            await self.close()
            raise
        self._sweeper = ExpirySweeper(self._sweep, name="surge-file-expiry")
        self._sweeper.start()

    async def close(self) -> None:
        """Apply every queued write, stop the writer thread and close the database; idempotent."""
        self._is_closed = True
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._shutdown())
        # Shielded so a cancelled caller cannot leave the thread and connections half closed.
        await asyncio.shield(self._close_task)

    async def _shutdown(self) -> None:
        if self._sweeper is not None:
            await self._sweeper.stop()
        if self._writer_thread is not None:
            self._queue.put(None)
            # The thread's last call_soon_threadsafe precedes join's completion callback, so
            # every queued write has been delivered and resolved when this returns.
            await asyncio.to_thread(self._writer_thread.join)
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.stop)
        if self._readers is not None:
            await asyncio.to_thread(self._readers.shutdown, True)
        await asyncio.to_thread(self._close_connections)

    def _close_connections(self) -> None:
        with self._reader_conns_lock:
            conns, self._reader_conns = self._reader_conns, []
        for conn in conns:
            conn.close()
        if self._writer is not None:
            self._writer.close()  # the last connection to close checkpoints the WAL
            self._writer = None

    def _connect_writer(self) -> sqlite3.Connection:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.directory}: {exc}") from exc
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            mode = self._execute_retrying(conn, "PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot use WAL mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES}")
            self._begin_immediate(conn)
            try:
                self._migrate(conn)
                (epoch,) = conn.execute(_READ_META, ("epoch",)).fetchone()
                (floor,) = conn.execute(_READ_META, ("history_floor",)).fetchone()
                self.epoch, self._history_floor = f"{int(epoch):012x}", int(floor)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.Error):
                raise _store_error(exc, f"opening {self.path}") from exc
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            version = 1
        if version == 1:
            for statement in _MIGRATE_2.split(";"):
                if statement.strip():
                    conn.execute(statement)
            version = 2
        if version == 2:
            for statement in _MIGRATE_3.split(";"):
                if statement.strip():
                    conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}; this Surge reads up to {SCHEMA_VERSION}"
            )

    def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        self._execute_retrying(conn, "BEGIN IMMEDIATE")

    def _execute_retrying(self, conn: sqlite3.Connection, sql: str) -> sqlite3.Cursor:
        # busy_timeout already waits BUSY_TIMEOUT_S for another process's lock; a few retries
        # ride out a long checkpoint or a burst from another writer before giving up, and the
        # SQLITE_BUSY that SQLite returns at once, without its busy handler, when two processes
        # switch one new database to WAL at the same moment (each would wait for the other).
        for attempt in range(BUSY_RETRIES + 1):
            try:
                return conn.execute(sql)
            except sqlite3.OperationalError as exc:
                if _primary_code(exc) not in (5, 6) or attempt == BUSY_RETRIES:
                    raise
                self.stats.busy_retries += 1
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")  # the last attempt returns or raises

    # -- writes ------------------------------------------------------------------------------

    async def set(
        self, stream: str, group: str, id: str, item: dict[str, Any], *, ttl: float | None = None
    ) -> Change:
        """Create or replace the item (expiring ``ttl`` s after the commit, or never).

        Returns once the change is committed and fed.
        """
        self._check_open()
        _check_keys(stream, group, id)
        change = await self._submit("set", stream, group, id, _encode(id, item), ttl=ttl)
        if not isinstance(change, Change):  # the writer always returns a change for a set
            raise StoreError("set produced no change")
        self._notify_expiry(ttl)
        return change

    async def update(
        self,
        stream: str,
        group: str,
        id: str,
        ops: list[dict[str, Any]],
        *,
        if_version: int | None = None,
        ttl: float | None = None,
        default_ttl: float | None = None,
        validate: ItemValidator | None = None,
    ) -> Updated:
        """Apply ``ops`` to the item in the writer's transaction (see ``StreamAdapter.update``)."""
        self._check_open()
        _check_keys(stream, group, id)
        args = _UpdateArgs(check_ops(ops), if_version, ttl, default_ttl, validate)
        updated = await self._submit("update", stream, group, id, None, update=args)
        if not isinstance(updated, Updated):
            raise StoreError("update produced no change")
        self._notify_expiry(ttl if ttl is not None else default_ttl)
        return updated

    def _notify_expiry(self, ttl: float | None) -> None:
        if ttl is not None and self._sweeper is not None:
            self._sweeper.notify(ttl)

    async def _sweep(self) -> float | None:
        """Delete the due rows (fed as ``delete``); return seconds until the next expiry."""
        if self._is_closed:
            return None  # close() is stopping the sweeper: nothing to do, nothing to report
        # Look first, on a reader: an idle store takes no write lock.
        next_expiry = await self._read(self._next_expiry_sync)
        if next_expiry is None:
            return None
        if next_expiry > time.time():
            return next_expiry - time.time()
        swept = await self._submit("sweep", "", "", "", None)
        if not isinstance(swept, _Swept):
            raise StoreError("sweep produced no result")
        if len(swept.deleted) >= SWEEP_BATCH:
            return 0.0  # more may be due
        if swept.next_expiry is None:
            return None
        return swept.next_expiry - time.time()

    async def delete(self, stream: str, group: str, id: str) -> Change | None:
        """Remove the item; returns the ``delete`` change, or None when there was no such item."""
        self._check_open()
        _check_keys(stream, group, id)
        change = await self._submit("delete", stream, group, id, None)
        return change if isinstance(change, Change) else None

    async def _submit(
        self,
        kind: _Kind,
        stream: str,
        group: str,
        id: str,
        data: bytes | None,
        *,
        ttl: float | None = None,
        update: _UpdateArgs | None = None,
        target: str | None = None,
    ) -> _Result:
        loop = self._loop
        if loop is None:
            raise StoreError("store is not open")
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Write(kind, stream, group, id, data, future, ttl, update, target))
        result: _Result = await future
        return result

    def _writer_main(self) -> None:
        is_stopping = False
        while not is_stopping:
            batch: list[_Write] = []
            entry = self._queue.get()
            while True:
                if entry is None:
                    is_stopping = True  # close() puts nothing after the sentinel
                    break
                batch.append(entry)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
            if not batch:
                continue
            try:
                self._apply(batch)
            except Exception as exc:
                # A bug here must not kill the thread and strand every awaiting writer.
                logger.exception("store writer failed on a batch of %d", len(batch))
                for write in batch:
                    write.result, write.error = None, _store_error(exc, "write")
            self._post(batch)

    def _apply(self, batch: list[_Write]) -> None:
        stats = self.stats
        stats.batches += 1
        sweeps = sum(1 for w in batch if w.kind == "sweep")
        stats.sends += sum(1 for w in batch if w.kind == "send")
        stats.writes += len(batch) - sweeps
        stats.sweeps += sweeps
        stats.largest_batch = max(stats.largest_batch, len(batch))
        try:
            self._transaction(batch)
            return
        except Exception as exc:
            error = _store_error(exc, "write")
            if len(batch) == 1 or error.retryable:
                for write in batch:
                    write.result, write.error = None, error
                return
        stats.fallbacks += 1
        for write in batch:
            try:
                self._transaction([write])
            except Exception as exc:
                write.result, write.error = None, _store_error(exc, "write")

    def _transaction(self, writes: list[_Write]) -> None:
        conn = self._writer
        if conn is None:
            raise StoreError("store is closed")
        # Nothing but ephemeral events: no fsync (see the module docstring).
        is_light = self.synchronous == "full" and all(w.kind == "send" for w in writes)
        if is_light:
            conn.execute("PRAGMA synchronous = NORMAL")
        try:
            self._transaction_body(conn, writes)
        finally:
            if is_light:
                conn.execute("PRAGMA synchronous = FULL")

    def _transaction_body(self, conn: sqlite3.Connection, writes: list[_Write]) -> None:
        self._begin_immediate(conn)
        try:
            first_seq = seq = conn.execute(_READ_SEQ).fetchone()[0]
            now = time.time()
            results: list[tuple[_Result, Exception | None]] = []
            for w in writes:
                if w.kind == "set" and w.data is not None:
                    seq += 1
                    expires_at = None if w.ttl is None else now + w.ttl
                    change = self._upsert(conn, w.stream, w.group, w.id, w.data, seq, expires_at)
                    results.append((change, None))
                elif w.kind == "update" and w.update is not None:
                    try:
                        results.append((self._update_row(conn, w, w.update, seq + 1, now), None))
                    except Exception as exc:  # this update fails alone; nothing was written
                        results.append((None, exc))
                    else:
                        seq += 1
                elif w.kind == "sweep":
                    swept = self._sweep_rows(conn, seq, now)
                    seq += len(swept.deleted)
                    results.append((swept, None))
                elif w.kind == "send" and w.data is not None:
                    seq += 1
                    event = EphemeralEvent(w.stream, w.group, w.target, _decode(w.data), seq)
                    results.append((event, None))
                else:
                    row = conn.execute(_DELETE, (w.stream, w.group, w.id)).fetchone()
                    if row is None:
                        results.append((None, None))
                        continue
                    seq += 1
                    deleted = Change("delete", w.stream, w.group, w.id, _decode(row[0]), seq)
                    results.append((deleted, None))
            if seq != first_seq:
                conn.execute(_WRITE_SEQ, (seq,))
                self._record(
                    conn,
                    [
                        (r, w.data if w.kind in ("set", "update", "send") else None)
                        for w, (r, _) in zip(writes, results, strict=True)
                    ],
                    now,
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.stats.transactions += 1
        if self._checkpointer is not None:
            self._checkpointer.committed()
        for w, (result, error) in zip(writes, results, strict=True):
            w.result, w.error = result, error

    def _record(
        self, conn: sqlite3.Connection, entries: list[tuple[_Result, bytes | None]], now: float
    ) -> None:
        """Insert the history rows of the applied results and trim their groups.

        Each entry is a result and, when it is one message, its stored JSON (the item's or the
        event's bytes, reused rather than encoded again). The rows go in with one
        ``executemany``, the groups' counts with another; a group's row is read (to trim it)
        only after this writer added a tenth of its size since it last looked.
        """
        policies = self._policies
        rows: list[tuple[Any, ...]] = []
        added: dict[tuple[str, str], int] = {}
        results = [result for result, _ in entries]
        for result, data in entries:
            if isinstance(result, Updated):
                messages: list[Change | EphemeralEvent] = [result.change]
            elif isinstance(result, _Swept):
                messages, data = list(result.deleted), None
            elif result is None:
                continue
            else:
                messages = [result]
            for m in messages:
                policy = policies.get(m.stream, DEFAULT_POLICY)
                key = (m.stream, m.group)
                if policy.size == 0:
                    added[key] = added.get(key, 0)
                    continue
                kind: str = m.kind if isinstance(m, Change) else "event"
                if data is None:
                    data = orjson.dumps(m.item if isinstance(m, Change) else m.event)
                ops = orjson.dumps(m.ops) if isinstance(m, Change) and m.ops is not None else None
                rows.append((m.stream, m.group, m.seq, now + policy.ttl, kind, m.id, data, ops))
                data = None
                added[key] = added.get(key, 0) + 1
        if rows:
            conn.executemany(_HISTORY_INSERT, rows)
        counts: list[tuple[str, str, int]] = []
        to_check: list[tuple[str, str]] = []
        unchecked = self._unchecked
        if len(unchecked) > 10_000:
            unchecked.clear()  # bounded: forgetting only makes a group's next look later
        for (stream, group), count in added.items():
            size = policies.get(stream, DEFAULT_POLICY).size
            if size == 0:
                floor = self._last_seq(results, stream, group)
                conn.execute(_HISTORY_CUT, (stream, group, floor))
                conn.execute(_HISTORY_GROUP_SET, (stream, group, floor, 0))
                continue
            counts.append((stream, group, count))
            pending = unchecked.get((stream, group), 0) + count
            if pending >= max(1, size // 10):
                to_check.append((stream, group))
                unchecked.pop((stream, group), None)
            else:
                unchecked[(stream, group)] = pending
        if counts:
            conn.executemany(_HISTORY_GROUP_ADD, counts)
        for stream, group in to_check:
            size = policies.get(stream, DEFAULT_POLICY).size
            floor, held = conn.execute(_HISTORY_GROUP, (stream, group)).fetchone()
            if held > size + size // 10:
                # Trim with some slack: one index walk per ~size/10 messages, not per message.
                (cut,) = conn.execute(_HISTORY_NTH, (stream, group, size)).fetchone()
                conn.execute(_HISTORY_CUT, (stream, group, cut))
                conn.execute(_HISTORY_GROUP_SET, (stream, group, max(int(floor), int(cut)), size))
                self.stats.history_trims += 1

    @staticmethod
    def _last_seq(results: list[_Result], stream: str, group: str) -> int:
        """The largest seq among ``results``' messages of (stream, group)."""
        last = 0
        for result in results:
            if isinstance(result, Updated):
                result = result.change
            found = result.deleted if isinstance(result, _Swept) else [result]
            for m in found:
                if isinstance(m, Change | EphemeralEvent) and (m.stream, m.group) == (
                    stream,
                    group,
                ):
                    last = max(last, m.seq)
        return last

    @staticmethod
    def _upsert(
        conn: sqlite3.Connection,
        stream: str,
        group: str,
        id: str,
        data: bytes,
        seq: int,
        expires_at: float | None,
        ops: list[dict[str, Any]] | None = None,
    ) -> Change:
        (created,) = conn.execute(
            _UPSERT, (stream, group, id, data, seq, seq, expires_at)
        ).fetchone()
        kind: Literal["create", "update"] = "create" if created == seq else "update"
        return Change(kind, stream, group, id, _decode(data), seq, ops)

    def _update_row(
        self, conn: sqlite3.Connection, w: _Write, args: _UpdateArgs, seq: int, now: float
    ) -> Updated:
        """Read-modify-write of one row inside the open write transaction."""
        row = conn.execute(_GET_ROW, (w.stream, w.group, w.id)).fetchone()
        check_if_version(args.if_version, None if row is None else int(row[1]))
        # The item before is handed on as its bytes: decoded only if someone reads it.
        old_data = None if row is None else bytes(row[0])
        new, delta = apply_update(
            None if old_data is None else _decode(old_data), args.ops, w.id, args.validate
        )
        data = _encode(w.id, new)
        w.data = data  # the history row stores these bytes (no second encode)
        ttl = args.ttl if args.ttl is not None or row is not None else args.default_ttl
        if ttl is not None:
            expires_at: float | None = now + ttl
        else:
            expires_at = None if row is None else row[2]  # keep the item's expiry
        change = self._upsert(conn, w.stream, w.group, w.id, data, seq, expires_at, delta)
        return Updated(None, change, old_data=old_data)

    @staticmethod
    def _sweep_rows(conn: sqlite3.Connection, seq: int, now: float) -> _Swept:
        """Delete up to ``SWEEP_BATCH`` due items and expired history rows (raising their
        groups' floors) inside the open write transaction."""
        deleted: list[Change] = []
        for stream, group, id, data in conn.execute(_DUE, (now, SWEEP_BATCH)).fetchall():
            conn.execute(_DELETE, (stream, group, id)).fetchone()
            seq += 1
            deleted.append(Change("delete", stream, group, id, _decode(data), seq))
        dropped: dict[tuple[str, str], tuple[int, int]] = {}
        for stream, group, row_seq in conn.execute(_HISTORY_EXPIRE, (now, SWEEP_BATCH)).fetchall():
            top, count = dropped.get((stream, group), (0, 0))
            dropped[(stream, group)] = (max(top, int(row_seq)), count + 1)
        for (stream, group), (top, count) in dropped.items():
            row = conn.execute(_HISTORY_GROUP, (stream, group)).fetchone()
            floor, held = (0, 0) if row is None else (int(row[0]), int(row[1]))
            conn.execute(_HISTORY_GROUP_SET, (stream, group, max(floor, top), max(0, held - count)))
        (next_item,) = conn.execute(_NEXT_EXPIRY).fetchone()
        (next_history,) = conn.execute(_HISTORY_NEXT_EXPIRY).fetchone()
        due = [float(t) for t in (next_item, next_history) if t is not None]
        return _Swept(deleted, min(due) if due else None)

    def _post(self, batch: list[_Write]) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._resolve, batch)
        except RuntimeError:
            # The loop is closed: nobody can await these writes any more.
            logger.warning("event loop closed; %d committed writes not reported", len(batch))

    def _resolve(self, batch: list[_Write]) -> None:
        sink = self._sink
        if sink is not None:
            for w in batch:
                for message in w.messages():
                    _deliver(sink, message)
        for w in batch:
            if w.future.done():  # the caller was cancelled; the write still happened
                continue
            if w.error is not None:
                w.future.set_exception(w.error)
            else:
                w.future.set_result(w.result)

    # -- reads -------------------------------------------------------------------------------

    async def get(self, stream: str, group: str, id: str) -> dict[str, Any] | None:
        """Return the item or None."""
        _check_keys(stream, group, id)
        return await self._read(self._get_sync, stream, group, id)

    async def get_group(
        self, stream: str, group: str, *, limit: int | None = None, before: str | None = None
    ) -> GroupSnapshot:
        """Return the group's items in creation order, read atomically with the store's ``seq``:
        all of them, or the newest ``limit`` (created before the cursor ``before``) with
        ``more``."""
        _check_keys(stream, group, None)
        count, end = _check_window(limit, before)
        if count is None and end is None:
            return await self._read(self._get_group_sync, stream, group)
        return await self._read(self._get_window_sync, stream, group, count, end)

    async def get_item_snapshot(self, stream: str, group: str, id: str) -> GroupSnapshot:
        """Return ``[item]`` or ``[]`` read atomically with the store's ``seq``."""
        _check_keys(stream, group, id)
        return await self._read(self._snapshot_sync, _GET, (stream, group, id))

    async def list_groups(self, stream: str) -> list[str]:
        """Return the sorted ids of the groups of ``stream`` holding at least one item."""
        _check_keys(stream, "", None)
        return await self._read(self._list_groups_sync, stream)

    async def send(self, stream: str, group: str, id: str | None, event: dict[str, Any]) -> None:
        """Record the event in the group's history (next ``seq``) and feed it after the commit."""
        self._check_open()
        _check_keys(stream, group, id)
        try:
            data = orjson.dumps(event)
        except TypeError as exc:
            raise ValidationError(
                f"event is not JSON-serialisable: {exc}",
                [{"loc": ["event"], "msg": str(exc), "type": "json_invalid"}],
            ) from exc
        await self._submit("send", stream, group, "", data, target=id)

    async def read_history(self, stream: str, group: str, since: int) -> History | None:
        """The group's messages after ``since``, or None when they are not all kept."""
        _check_keys(stream, group, None)
        policy = self._policies.get(stream, DEFAULT_POLICY)
        return await self._read(self._history_sync, stream, group, since, policy.size)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        self._check_open()
        if self._loop is None or self._readers is None:
            raise StoreError("store is not open")
        return await self._loop.run_in_executor(self._readers, fn, *args)

    def _get_sync(self, stream: str, group: str, id: str) -> dict[str, Any] | None:
        try:
            row = self._reader().execute(_GET, (stream, group, id)).fetchone()
        except sqlite3.Error as exc:
            raise _store_error(exc, "get") from exc
        return None if row is None else _decode(row[0])

    def _get_group_sync(self, stream: str, group: str) -> GroupSnapshot:
        return self._snapshot_sync(_GET_GROUP, (stream, group))

    def _get_window_sync(
        self, stream: str, group: str, limit: int | None, before: int | None
    ) -> GroupSnapshot:
        conn = self._reader()
        end = 2**63 - 1 if before is None else before
        # LIMIT -1 is SQLite's "no limit"; one row more than asked tells whether older ones exist.
        fetch = -1 if limit is None else limit + 1
        try:
            conn.execute("BEGIN")
            try:
                seq = conn.execute(_READ_SEQ).fetchone()[0]
                rows = conn.execute(_GET_BEFORE, (stream, group, end, fetch)).fetchall()
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _store_error(exc, "get_group") from exc
        page = rows if limit is None else rows[:limit]
        page.reverse()
        more = _cursor(page[0][1]) if limit is not None and len(rows) > limit else None
        return GroupSnapshot([_decode(data) for data, _ in page], seq, more)

    def _snapshot_sync(self, query: str, args: tuple[str, ...]) -> GroupSnapshot:
        conn = self._reader()
        try:
            # One read transaction: the counter and the rows come from the same WAL snapshot.
            conn.execute("BEGIN")
            try:
                seq = conn.execute(_READ_SEQ).fetchone()[0]
                rows = conn.execute(query, args).fetchall()
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _store_error(exc, "snapshot") from exc
        return GroupSnapshot([_decode(data) for (data,) in rows], seq)

    def _next_expiry_sync(self) -> float | None:
        try:
            conn = self._reader()
            (next_item,) = conn.execute(_NEXT_EXPIRY).fetchone()
            (next_history,) = conn.execute(_HISTORY_NEXT_EXPIRY).fetchone()
        except sqlite3.Error as exc:
            raise _store_error(exc, "next expiry") from exc
        due = [float(t) for t in (next_item, next_history) if t is not None]
        return min(due) if due else None

    def _history_sync(self, stream: str, group: str, since: int, size: int) -> History | None:
        conn = self._reader()
        try:
            # One read transaction: the counter, the floor and the rows agree.
            conn.execute("BEGIN")
            try:
                seq = int(conn.execute(_READ_SEQ).fetchone()[0])
                row = conn.execute(_HISTORY_GROUP, (stream, group)).fetchone()
                rows = conn.execute(_HISTORY_AFTER, (stream, group, since, size + 1)).fetchall()
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _store_error(exc, "read_history") from exc
        floor = max(self._history_floor, 0 if row is None else int(row[0]))
        if since < floor or since > seq or len(rows) > size:
            return None
        now = time.time()
        messages: list[Change | EphemeralEvent] = []
        for row_seq, expires_at, kind, id, data, ops in rows:
            if expires_at <= now:
                return None  # expired, not yet swept: no longer held
            if kind == "event":
                messages.append(EphemeralEvent(stream, group, id, _decode(data), int(row_seq)))
            else:
                delta = None if ops is None else orjson.loads(ops)
                messages.append(Change(kind, stream, group, id, _decode(data), int(row_seq), delta))
        return History(messages, seq)

    def _list_groups_sync(self, stream: str) -> list[str]:
        try:
            rows = self._reader().execute(_LIST_GROUPS, (stream,)).fetchall()
        except sqlite3.Error as exc:
            raise _store_error(exc, "list_groups") from exc
        return [group for (group,) in rows]

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA query_only = ON")
            self._reader_local.conn = conn
            with self._reader_conns_lock:
                self._reader_conns.append(conn)
        return conn

    def _check_open(self) -> FeedSink:
        if self._is_closed:
            raise StoreError("store is closed")
        if self._sink is None or not self._is_open:
            raise StoreError("store is not open")
        return self._sink


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
