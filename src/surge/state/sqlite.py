"""``SqliteStateStore``: the default ``ctx.state``, one SQLite database in WAL mode.

Every operation runs on one private thread (state traffic is small next to stream writes; one
thread keeps the connection's use serial without locks). A write returns once its transaction is
committed with ``synchronous=FULL``: it survives ``kill -9`` and power loss. Several processes may
open the same file; SQLite's lock (``busy_timeout``) serialises their writes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, TypeVar

from surge.errors import StoreError

__all__ = ["SqliteStateStore"]

T = TypeVar("T")

_BUSY_TIMEOUT_MS: Final = 5000
# Primary result codes after which trying again later may work: BUSY, LOCKED, IOERR, FULL.
_RETRYABLE_CODES: Final = frozenset({5, 6, 10, 13})
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS state (
    grp   TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,
    UNIQUE (grp, key)
)
"""


class SqliteStateStore:
    """State in ``path`` (a file, created with its directory; ``":memory:"`` for a private one)."""

    is_distributed = False

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        """Create the database (and its directory) if needed."""
        if self._db is not None:
            return
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="surge-state")
        self._db = await self._run(self._connect)

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute(_SCHEMA)
        return db

    async def close(self) -> None:
        """Close the database and stop the thread; idempotent."""
        db, thread = self._db, self._thread
        self._db = self._thread = None
        if thread is None:
            return
        if db is not None:
            await asyncio.get_running_loop().run_in_executor(thread, db.close)
        thread.shutdown(wait=True)

    async def _run(self, work: Callable[[], T]) -> T:
        if self._thread is None:
            raise StoreError("state store is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, work)
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            raise StoreError(f"state store: {exc}", retryable=code in _RETRYABLE_CODES) from exc

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("state store is not open")
        return self._db

    async def get(self, group: str, key: str) -> bytes | None:
        """The value, or None."""
        db = self._conn

        def read() -> bytes | None:
            row = db.execute("SELECT value FROM state WHERE grp = ? AND key = ?", (group, key))
            found = row.fetchone()
            return None if found is None else bytes(found[0])

        return await self._run(read)

    async def set(self, group: str, key: str, value: bytes) -> None:
        """Create or replace (an update keeps the row, hence its place in the group)."""
        db = self._conn
        sql = (
            "INSERT INTO state (grp, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (grp, key) DO UPDATE SET value = excluded.value"
        )
        await self._run(lambda: db.execute(sql, (group, key, value)))

    async def delete(self, group: str, key: str) -> bytes | None:
        """Remove and return the value."""
        db = self._conn

        def delete() -> bytes | None:
            rows = db.execute(
                "DELETE FROM state WHERE grp = ? AND key = ? RETURNING value", (group, key)
            ).fetchall()
            return bytes(rows[0][0]) if rows else None

        return await self._run(delete)

    async def get_group(self, group: str) -> list[bytes]:
        """The group's values in creation order."""
        db = self._conn

        def read() -> list[bytes]:
            rows = db.execute("SELECT value FROM state WHERE grp = ? ORDER BY rowid", (group,))
            return [bytes(row[0]) for row in rows]

        return await self._run(read)

    async def clear(self, group: str) -> None:
        """Drop the group."""
        db = self._conn
        await self._run(lambda: db.execute("DELETE FROM state WHERE grp = ?", (group,)))
