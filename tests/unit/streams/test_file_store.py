"""What only the SQLite store promises: durability, crash safety, several processes, group commit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any

import orjson
import pytest

from surge.errors import ConfigError, StoreError
from surge.streams.feed import Change, FeedMessage
from surge.streams.stores import file as file_module
from surge.streams.stores.file import SCHEMA_VERSION, FileStreamAdapter


@pytest.fixture
async def open_store(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Open ``FileStreamAdapter``s on ``tmp_path/streams``; all are closed at teardown."""
    opened: list[FileStreamAdapter] = []

    async def open_one(feed: list[FeedMessage] | None = None, **kwargs: Any) -> FileStreamAdapter:
        store = FileStreamAdapter(tmp_path / "streams", **kwargs)
        await store.open((feed if feed is not None else []).append)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()


def db_path(tmp_path: Path) -> Path:
    return tmp_path / "streams" / "streams.db"


@contextlib.asynccontextmanager
async def _opened(tmp_path: Path) -> AsyncIterator[FileStreamAdapter]:
    """The store in ``tmp_path`` opened (again, after a restart), closed after the block."""
    store = FileStreamAdapter(tmp_path / "streams")
    await store.open(lambda message: None)
    try:
        yield store
    finally:
        await store.close()


# -- subprocess helpers ------------------------------------------------------------------------


class LineReader:
    """Reads a child's stdout line by line with a deadline, so a stuck child fails the test."""

    def __init__(self, stream: IO[bytes], stderr_path: Path) -> None:
        self.fd = stream.fileno()
        self.stderr_path = stderr_path
        self.buffer = b""
        self.lines: list[str] = []
        self.is_eof = False

    def read_until(self, is_done: Callable[[list[str]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not is_done(self.lines):
            if self.is_eof:
                raise AssertionError(f"child exited early: {self.stderr_path.read_text()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {len(self.lines)} lines")
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                self._read_chunk()

    def read_to_eof(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.is_eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("child output did not end")
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                self._read_chunk()

    def _read_chunk(self) -> None:
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.is_eof = True
            return
        *complete, self.buffer = (self.buffer + chunk).split(b"\n")
        self.lines.extend(line.decode() for line in complete)


def spawn(script: str, *args: str, stderr_path: Path) -> tuple[subprocess.Popen[bytes], LineReader]:
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            bufsize=0,
        )
    assert proc.stdout is not None
    return proc, LineReader(proc.stdout, stderr_path)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


# -- durability --------------------------------------------------------------------------------


async def test_items_order_and_seq_survive_reopening(tmp_path: Path) -> None:
    first = FileStreamAdapter(tmp_path / "streams")
    await first.open(lambda message: None)
    for id in ["b", "a", "c"]:
        await first.set("todo", "inbox", id, {"title": id})
    await first.set("todo", "inbox", "b", {"title": "B"})
    last = await first.delete("todo", "inbox", "a")
    assert last is not None
    await first.close()

    second = FileStreamAdapter(tmp_path / "streams")
    await second.open(lambda message: None)
    try:
        snapshot = await second.get_group("todo", "inbox")
        assert snapshot.items == [{"title": "B", "id": "b"}, {"title": "c", "id": "c"}]
        assert snapshot.seq == last.seq
        assert (await second.set("todo", "inbox", "d", {})).seq == last.seq + 1
    finally:
        await second.close()


async def test_database_holds_the_items_exactly_as_set(
    open_store: Callable[..., Any], tmp_path: Path
) -> None:
    store = await open_store()
    await store.set("todo", "inbox", "t1", {"title": "milk", "n": [1, 2]})
    await store.set("todo", "inbox", "t1", {"title": "bread"})
    await store.close()

    with sqlite3.connect(db_path(tmp_path)) as conn:
        rows = conn.execute("SELECT stream, grp, id, data, created, seq FROM items").fetchall()
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
    assert [(s, g, i, orjson.loads(d), c, q) for s, g, i, d, c, q in rows] == [
        ("todo", "inbox", "t1", {"title": "bread", "id": "t1"}, 1, 2)
    ]


async def test_open_creates_missing_directories(tmp_path: Path) -> None:
    store = FileStreamAdapter(tmp_path / "a" / "b" / "c", synchronous="normal")
    await store.open(lambda message: None)
    try:
        await store.set("s", "g", "x", {})
    finally:
        await store.close()

    assert (tmp_path / "a" / "b" / "c" / "streams.db").is_file()


def test_unknown_synchronous_level_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        FileStreamAdapter(".", synchronous="off")  # type: ignore[arg-type]


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db_path(tmp_path).parent.mkdir()
    with sqlite3.connect(db_path(tmp_path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    store = FileStreamAdapter(tmp_path / "streams")
    with pytest.raises(StoreError, match="schema version"):
        await store.open(lambda message: None)
    await store.close()


async def test_a_version_1_database_is_migrated_and_keeps_its_items(tmp_path: Path) -> None:
    db_path(tmp_path).parent.mkdir()
    with sqlite3.connect(db_path(tmp_path)) as conn:
        for statement in file_module._SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            "INSERT INTO items (stream, grp, id, data, created, seq) VALUES (?, ?, ?, ?, 1, 1)",
            ("s", "g", "x", b'{"v":1,"id":"x"}'),
        )
        conn.execute("UPDATE meta SET value = 1 WHERE key = 'seq'")
        conn.execute("PRAGMA user_version = 1")
    conn.close()

    async with _opened(tmp_path) as store:
        assert await store.get("s", "g", "x") == {"v": 1, "id": "x"}
        updated = await store.update("s", "g", "x", [{"type": "increment", "path": "v"}])
        assert updated.change.item == {"v": 2, "id": "x"} and updated.change.seq == 2
        await store.set("s", "g", "y", {}, ttl=3600)
    with sqlite3.connect(db_path(tmp_path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        rows = conn.execute("SELECT id, expires_at IS NOT NULL FROM items ORDER BY id").fetchall()
    conn.close()
    assert rows == [("x", 0), ("y", 1)]


async def test_an_idle_store_takes_no_write_lock_to_sweep(open_store: Callable[..., Any]) -> None:
    store = await open_store()
    await store.set("s", "g", "x", {}, ttl=3600)
    transactions = store.stats.transactions

    await store._sweep()

    assert store.stats.transactions == transactions
    assert store.stats.sweeps == 0


async def test_a_file_that_is_not_a_database_is_a_non_retryable_store_error(
    tmp_path: Path,
) -> None:
    db_path(tmp_path).parent.mkdir()
    db_path(tmp_path).write_bytes(b"definitely not sqlite " * 100)

    store = FileStreamAdapter(tmp_path / "streams")
    with pytest.raises(StoreError) as raised:
        await store.open(lambda message: None)
    await store.close()

    assert raised.value.retryable is False
    assert isinstance(raised.value.__cause__, sqlite3.DatabaseError)


# -- writer thread -----------------------------------------------------------------------------


async def test_group_commit_applies_concurrent_writes_in_few_transactions(
    open_store: Callable[..., Any],
) -> None:
    feed: list[FeedMessage] = []
    store = await open_store(feed)

    results = await asyncio.gather(*(store.set("s", "g", f"k{n}", {"n": n}) for n in range(500)))

    assert len(results) == 500
    assert len((await store.get_group("s", "g")).items) == 500
    assert store.stats.writes == 500
    assert store.stats.transactions < 500
    assert 1 < store.stats.largest_batch <= file_module.MAX_BATCH
    assert [m.seq for m in feed if isinstance(m, Change)] == list(range(1, 501))


async def test_one_failing_write_in_a_batch_fails_alone(
    open_store: Callable[..., Any], tmp_path: Path
) -> None:
    feed: list[FeedMessage] = []
    store = await open_store(feed)
    other = sqlite3.connect(db_path(tmp_path), isolation_level=None)
    try:
        other.execute(
            "CREATE TRIGGER reject_bad BEFORE INSERT ON items WHEN NEW.id = 'bad'"
            " BEGIN SELECT RAISE(ABORT, 'rejected by test'); END"
        )
        # Holding the write lock keeps the writer waiting until all three writes are queued,
        # so "bad" shares its transaction with at least one good write.
        other.execute("BEGIN IMMEDIATE")
        tasks = [
            asyncio.create_task(store.set("s", "g", id, {"id": id}))
            for id in ["first", "bad", "after"]
        ]
        await asyncio.sleep(0)  # let the three tasks queue their writes
        other.execute("COMMIT")
        first, bad, after = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        other.close()

    assert isinstance(first, Change)
    assert isinstance(after, Change)
    assert isinstance(bad, StoreError)
    assert bad.retryable is False
    assert isinstance(bad.__cause__, sqlite3.IntegrityError)
    assert store.stats.fallbacks == 1
    assert [m.id for m in feed if isinstance(m, Change)] == ["first", "after"]
    assert [item["id"] for item in (await store.get_group("s", "g")).items] == ["first", "after"]


async def test_opening_waits_out_another_process_holding_a_new_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process holds the new (rollback-mode) database past busy_timeout while this one
    # switches it to WAL: the switch is retried, as BEGIN IMMEDIATE is, instead of failing the
    # open (two `surge start` processes created one store at once; one died "database is
    # locked").
    monkeypatch.setattr(file_module, "BUSY_TIMEOUT_S", 0.05)
    monkeypatch.setattr(file_module, "BUSY_RETRIES", 6)  # ~1.4 s of retries in all
    (tmp_path / "streams").mkdir()
    other = sqlite3.connect(db_path(tmp_path), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(0.2, other.execute, ("COMMIT",))
    release.start()
    try:
        store = FileStreamAdapter(tmp_path / "streams")
        await store.open(lambda message: None)
        assert store.stats.busy_retries >= 1
        assert (await store.set("s", "g", "x", {"v": 1})).kind == "create"
        await store.close()
    finally:
        release.join()
        other.close()


async def test_a_locked_database_is_a_retryable_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_module, "BUSY_TIMEOUT_S", 0.05)
    monkeypatch.setattr(file_module, "BUSY_RETRIES", 1)
    store = FileStreamAdapter(tmp_path / "streams")
    await store.open(lambda message: None)
    await store.set("s", "g", "x", {"v": 1})
    other = sqlite3.connect(db_path(tmp_path), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError) as raised:
            await store.set("s", "g", "y", {})
        assert await store.get("s", "g", "x") == {"v": 1, "id": "x"}  # WAL: reads go on
        other.execute("COMMIT")

        assert raised.value.retryable is True
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        assert store.stats.busy_retries == 1
        assert (await store.set("s", "g", "y", {})).kind == "create"
    finally:
        other.close()
        await store.close()


async def test_close_applies_every_queued_write(tmp_path: Path) -> None:
    feed: list[FeedMessage] = []
    store = FileStreamAdapter(tmp_path / "streams")
    await store.open(feed.append)
    tasks = [asyncio.create_task(store.set("s", "g", f"k{n}", {"n": n})) for n in range(300)]
    await asyncio.sleep(0)  # let the tasks queue their writes

    await store.close()

    assert all(task.done() and task.exception() is None for task in tasks)
    assert len([m for m in feed if isinstance(m, Change)]) == 300
    reopened = FileStreamAdapter(tmp_path / "streams")
    await reopened.open(lambda message: None)
    try:
        assert len((await reopened.get_group("s", "g")).items) == 300
    finally:
        await reopened.close()


async def test_a_cancelled_write_is_still_applied_and_fed(open_store: Callable[..., Any]) -> None:
    feed: list[FeedMessage] = []
    store = await open_store(feed)
    task = asyncio.create_task(store.set("s", "g", "cancelled", {}))
    await asyncio.sleep(0)  # queued
    task.cancel()

    await store.set("s", "g", "next", {})  # the writer applies writes in queue order

    assert task.cancelled()
    assert await store.get("s", "g", "cancelled") == {"id": "cancelled"}
    assert [m.id for m in feed if isinstance(m, Change)] == ["cancelled", "next"]


# -- several writers on one directory ----------------------------------------------------------


async def test_two_adapters_in_one_process_share_the_directory(
    open_store: Callable[..., Any],
) -> None:
    one, two = await open_store(), await open_store()

    results = await asyncio.gather(
        *(store.set("s", "g", "hot", {"n": n}) for n in range(50) for store in (one, two)),
        *(store.set("s", "g", f"k{n}", {"n": n}) for n in range(100) for store in (one, two)),
    )

    assert [c.kind for c in results if c.id == "hot"].count("create") == 1
    assert len({c.seq for c in results}) == len(results)
    assert len((await one.get_group("s", "g")).items) == 101
    assert (await two.get_group("s", "g")).items == (await one.get_group("s", "g")).items


WRITER_SCRIPT = """
import asyncio, sys
import orjson
from surge.streams.feed import Change
from surge.streams.stores.file import FileStreamAdapter

async def main():
    directory, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    feed = []
    store = FileStreamAdapter(directory)
    await store.open(feed.append)
    print("ready", flush=True)
    sys.stdin.readline()  # start together with the other process
    kinds = []

    async def writer(w):
        for i in range(w, count, 8):
            await store.set("shared", "g", f"{name}-{i}", {"by": name, "i": i})
            kinds.append((await store.set("shared", "g", "hot", {"by": name, "i": i})).kind)

    await asyncio.gather(*(writer(w) for w in range(8)))
    await store.close()
    seqs = [m.seq for m in feed if isinstance(m, Change)]
    print(orjson.dumps({
        "creates": kinds.count("create"),
        "changes": len(seqs),
        "ordered": seqs == sorted(set(seqs)),
        "seqs": seqs,
    }).decode(), flush=True)

asyncio.run(main())
"""


def test_two_processes_interleave_writes_without_losing_any(tmp_path: Path) -> None:
    count = 300
    directory = str(tmp_path / "streams")
    children = [
        spawn(WRITER_SCRIPT, directory, name, str(count), stderr_path=tmp_path / f"{name}.err")
        for name in ("p1", "p2")
    ]
    try:
        for _, reader in children:
            reader.read_until(lambda lines: "ready" in lines, timeout=30)
        for proc, _ in children:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.close()
        for _, reader in children:
            reader.read_to_eof(timeout=60)
        summaries = [orjson.loads(reader.lines[-1]) for _, reader in children]
    finally:
        for proc, _ in children:
            stop(proc)

    assert all(proc.returncode == 0 for proc, _ in children)
    assert all(s["ordered"] and s["changes"] == 2 * count for s in summaries)
    assert sum(s["creates"] for s in summaries) == 1  # "hot": one create across both processes
    all_seqs = summaries[0]["seqs"] + summaries[1]["seqs"]
    assert sorted(all_seqs) == list(range(1, 4 * count + 1))  # one store-wide counter
    with sqlite3.connect(db_path(tmp_path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        ids = {row[0] for row in conn.execute("SELECT id FROM items")}
    conn.close()
    assert ids == {"hot"} | {f"{p}-{i}" for p in ("p1", "p2") for i in range(count)}


# -- crash safety ------------------------------------------------------------------------------

CRASH_SCRIPT = """
import asyncio, sys
from surge.streams.stores.file import FileStreamAdapter

async def main():
    store = FileStreamAdapter(sys.argv[1])
    await store.open(lambda message: None)
    out = sys.stdout

    async def writer(w):
        for i in range(5000):
            id = f"w{w}-{i}"
            await store.set("crash", f"g{w % 4}", id, {"w": w, "i": i, "pad": "x" * 200})
            out.write(id + "\\n")  # acknowledged: the set returned
            out.flush()

    await asyncio.gather(*(writer(w) for w in range(16)))

asyncio.run(main())
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
async def test_every_acknowledged_write_survives_kill_9(tmp_path: Path) -> None:
    directory = tmp_path / "streams"
    proc, reader = spawn(CRASH_SCRIPT, str(directory), stderr_path=tmp_path / "crash.err")
    try:
        reader.read_until(lambda lines: len(lines) >= 200, timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
        reader.read_to_eof(timeout=30)  # acks already in the pipe count too
    finally:
        stop(proc)
    assert proc.returncode == -signal.SIGKILL
    acked = reader.lines

    with sqlite3.connect(directory / "streams.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    store = FileStreamAdapter(directory)
    await store.open(lambda message: None)
    try:
        stored: dict[str, dict[str, Any]] = {}
        for group in await store.list_groups("crash"):
            for item in (await store.get_group("crash", group)).items:
                stored[item["id"]] = item
    finally:
        await store.close()
    assert len(acked) >= 200
    for id in acked:
        w, i = (int(part) for part in id[1:].split("-"))
        assert stored.get(id) == {"w": w, "i": i, "pad": "x" * 200, "id": id}


async def test_history_rows_stay_bounded_and_a_migrated_database_does_not_resume_from_before(
    tmp_path: Path,
) -> None:
    from surge.streams.history import HistoryPolicy

    store = FileStreamAdapter(tmp_path / "streams")
    store.configure_history("s", HistoryPolicy(size=20, ttl=300))
    await store.open(lambda message: None)
    try:
        for n in range(200):
            await store.set("s", "g", f"i{n % 7}", {"n": n})
    finally:
        await store.close()
    with sqlite3.connect(db_path(tmp_path)) as conn:
        (rows,) = conn.execute("SELECT COUNT(*) FROM history WHERE stream = 's'").fetchone()
        (held,) = conn.execute("SELECT count FROM history_groups WHERE stream = 's'").fetchone()
    assert 20 <= rows <= 22 and held == rows
    assert store.stats.history_trims >= 8


async def test_a_version_2_database_gets_history_from_its_migration_on(tmp_path: Path) -> None:
    async with _opened(tmp_path) as store:
        await store.set("s", "g", "x", {"v": 1})
        await store.set("s", "g", "x", {"v": 2})
    with sqlite3.connect(db_path(tmp_path)) as conn:  # back to what version 2 had
        conn.executescript(
            "DROP TABLE history; DROP TABLE history_groups;"
            "DELETE FROM meta WHERE key IN ('epoch', 'history_floor'); PRAGMA user_version = 2;"
        )

    async with _opened(tmp_path) as again:
        assert again.epoch
        assert await again.read_history("s", "g", 0) is None  # those changes were not recorded
        assert await again.read_history("s", "g", 1) is None
        current = await again.read_history("s", "g", 2)
        assert current is not None and current.messages == []
        change = await again.set("s", "g", "x", {"v": 3})
        history = await again.read_history("s", "g", 2)
        assert history is not None and history.messages == [change]


def _has_rowid(path: Path, table: str) -> bool:
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"SELECT rowid FROM {table} LIMIT 1").fetchall()
        return True
    except sqlite3.OperationalError:  # "no such column: rowid": a WITHOUT ROWID table
        return False
    finally:
        conn.close()


async def _relayout(
    tmp_path: Path, script: str, *, item: tuple[str, str, str, dict[str, Any]] | None = None
) -> None:
    """Create a store (with ``item`` in it), close it, and run ``script`` on its database."""
    store = FileStreamAdapter(tmp_path / "streams")
    await store.open(lambda message: None)
    if item is not None:
        await store.set(*item)
    await store.close()
    conn = sqlite3.connect(db_path(tmp_path))
    try:
        conn.executescript(script)
    finally:
        conn.close()


async def test_a_new_database_keeps_history_in_a_rowid_table(tmp_path: Path) -> None:
    async with _opened(tmp_path) as store:
        change = await store.set("s", "g", "x", {"text": "t" * 3000})  # past 1 KB, under 4 KB
    assert _has_rowid(db_path(tmp_path), "history")
    async with _opened(tmp_path) as again:
        history = await again.read_history("s", "g", 0)
        assert history is not None and history.messages == [change]


async def test_a_database_with_a_without_rowid_history_keeps_it_and_works(tmp_path: Path) -> None:
    await _relayout(  # the history table as first released
        tmp_path,
        "DROP TABLE history;"
        "CREATE TABLE history (stream TEXT NOT NULL, grp TEXT NOT NULL, seq INTEGER NOT NULL,"
        " expires_at REAL NOT NULL, kind TEXT NOT NULL, id TEXT, data BLOB NOT NULL, ops BLOB,"
        " PRIMARY KEY (stream, grp, seq)) WITHOUT ROWID;"
        "CREATE INDEX history_by_expiry ON history (expires_at);",
    )
    assert not _has_rowid(db_path(tmp_path), "history")

    async with _opened(tmp_path) as again:
        first = await again.set("s", "g", "x", {"v": 1})
        updated = await again.update("s", "g", "x", [{"type": "increment", "path": "v"}])
        history = await again.read_history("s", "g", 0)
        assert history is not None and history.messages == [first, updated.change]
    assert not _has_rowid(db_path(tmp_path), "history")


async def test_a_new_database_keeps_items_in_a_rowid_table(tmp_path: Path) -> None:
    async with _opened(tmp_path) as store:
        await store.set("s", "g", "x", {"text": "t" * 3000})  # past 1 KB, under 4 KB
        updated = await store.update(
            "s", "g", "x", [{"type": "append", "path": "text", "value": "u"}]
        )
    assert _has_rowid(db_path(tmp_path), "items")
    async with _opened(tmp_path) as again:
        assert await again.get("s", "g", "x") == updated.change.item
        assert updated.change.item["text"] == "t" * 3000 + "u"


async def test_a_database_with_without_rowid_items_keeps_them_and_works(tmp_path: Path) -> None:
    await _relayout(  # the items table as first released
        tmp_path,
        "CREATE TABLE items2 (stream TEXT NOT NULL, grp TEXT NOT NULL, id TEXT NOT NULL,"
        " data BLOB NOT NULL, created INTEGER NOT NULL, seq INTEGER NOT NULL,"
        " expires_at REAL, PRIMARY KEY (stream, grp, id)) WITHOUT ROWID;"
        "INSERT INTO items2 SELECT stream, grp, id, data, created, seq, expires_at FROM items;"
        "DROP TABLE items; ALTER TABLE items2 RENAME TO items;"
        "CREATE INDEX items_by_creation ON items (stream, grp, created);"
        "CREATE INDEX items_by_expiry ON items (expires_at) WHERE expires_at IS NOT NULL;",
        item=("s", "g", "old", {"v": 0}),
    )
    assert not _has_rowid(db_path(tmp_path), "items")

    async with _opened(tmp_path) as again:
        first = await again.set("s", "g", "x", {"v": 1}, ttl=3600)
        updated = await again.update("s", "g", "x", [{"type": "increment", "path": "v"}])
        assert first.kind == "create" and updated.change.kind == "update"
        group = await again.get_group("s", "g")
        assert group.items == [{"v": 0, "id": "old"}, {"v": 2, "id": "x"}]
        deleted = await again.delete("s", "g", "old")
        assert deleted is not None and deleted.kind == "delete"
    assert not _has_rowid(db_path(tmp_path), "items")


def _wait_for(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


async def test_the_wal_is_checkpointed_off_the_writer(tmp_path: Path) -> None:
    # The writer's own automatic checkpoint is the backstop only; the checkpointer thread copies
    # the WAL while the store stays open, so the database file has the items long before close.
    async with _opened(tmp_path) as store:
        writer = store._writer
        assert writer is not None
        (pages,) = writer.execute("PRAGMA wal_autocheckpoint").fetchone()
        assert pages == file_module.WRITER_CHECKPOINT_PAGES
        for k in range(300):  # 300 commits of a 2 KB item, each waking the checkpointer
            await store.set("s", f"g{k % 7}", f"x{k}", {"text": "t" * 2000})
        await asyncio.to_thread(_wait_for, lambda: store.stats.checkpoints > 0, 10.0)
        assert store.stats.checkpoints >= 1 and store.stats.checkpoint_errors == 0
        assert store.stats.checkpointed_frames > 0  # it copied pages, not merely ran
    names = {thread.name for thread in threading.enumerate()}
    assert "surge-store-checkpoint" not in names
