"""Fixtures of the queue contract suite: every ``MessageQueue`` backend, opened and cleaned up.

``backend`` is parametrised over sqlite-file, sqlite-memory and redis. ``backend.make()`` opens
another queue object on the same storage (another process, as far as leases go); for
sqlite-memory, whose database lives in one connection, it returns the same object.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import require_component
from redis_server import REDIS_TEST_URL, drop_redis_keys, redis_is_up
from surge.queues import Envelope, MessageQueue, SqliteQueue

BACKENDS = ["sqlite-file", "sqlite-memory", "redis"]
SHARED_BACKENDS = ["sqlite-file", "redis"]  # storage that outlives one queue object
DEADLINE_S = 10.0  # how long a poll for a condition may take before the test fails


@dataclass
class Backend:
    """One backend under test: makes opened queue objects on the same storage."""

    name: str
    tmp_path: Path
    prefix: str = field(default_factory=lambda: f"surge-test-{uuid.uuid4().hex}")
    opened: list[MessageQueue] = field(default_factory=list)
    _memory: SqliteQueue | None = None

    @property
    def is_shared(self) -> bool:
        """True when ``make`` gives a distinct object on the same storage."""
        return self.name != "sqlite-memory"

    @property
    def db_path(self) -> Path:
        return self.tmp_path / "queues.db"

    def new(self, *, poll_interval: float | None = None) -> MessageQueue:
        """A new, unopened queue object on this backend's storage."""
        options: dict[str, Any] = {} if poll_interval is None else {"poll_interval": poll_interval}
        if self.name == "sqlite-file":
            return SqliteQueue(self.db_path, **options)
        if self.name == "sqlite-memory":
            return SqliteQueue(":memory:", **options)
        require_component(redis_is_up(), f"no Redis server answers at {REDIS_TEST_URL}")
        from surge.queues.redis import RedisStreamsQueue

        return RedisStreamsQueue(REDIS_TEST_URL, prefix=self.prefix, **options)

    async def make(self, *, poll_interval: float | None = None) -> MessageQueue:
        """An opened queue object on this backend (the same one for sqlite-memory)."""
        if self.name == "sqlite-memory" and poll_interval is None and self._memory is not None:
            return self._memory
        queue = self.new(poll_interval=poll_interval)
        await queue.open()
        self.opened.append(queue)
        if self.name == "sqlite-memory" and poll_interval is None:
            self._memory = queue if isinstance(queue, SqliteQueue) else None
        return queue

    async def corrupt(self, queue: MessageQueue, name: str, message_id: str) -> None:
        """Make a stored message undecodable (a poison message), as a bad writer would."""
        if self.name == "sqlite-file":

            def update() -> None:
                with sqlite3.connect(self.db_path, timeout=10) as conn:
                    conn.execute(
                        "UPDATE messages SET data = ? WHERE id = ?", (b"\xff{not json", message_id)
                    )
                conn.close()

            await asyncio.to_thread(update)
        elif self.name == "sqlite-memory":
            assert isinstance(queue, SqliteQueue)
            # The database lives in the writer's connection: corrupt it from there.
            await queue._submit(
                lambda conn: conn.execute(
                    "UPDATE messages SET data = ? WHERE id = ?", (b"\xff{not json", message_id)
                )
            )
        else:
            from surge.queues.redis import RedisStreamsQueue

            assert isinstance(queue, RedisStreamsQueue)
            import redis.asyncio

            async with redis.asyncio.Redis.from_url(REDIS_TEST_URL) as client:
                await client.hset(queue.queue_keys(name).body, message_id, b"\xff{not json")


async def _backend(name: str, tmp_path: Path) -> AsyncIterator[Backend]:
    b = Backend(name, tmp_path)
    try:
        yield b
    finally:
        for queue in b.opened:
            await queue.close()
        if b.name == "redis" and redis_is_up():
            drop_redis_keys(b.prefix)


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each backend in turn; every queue it made is closed and its Redis keys dropped after."""
    async for b in _backend(request.param, tmp_path):
        yield b


@pytest.fixture(params=SHARED_BACKENDS)
async def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each backend whose storage is shared by queue objects and outlives them."""
    async for b in _backend(request.param, tmp_path):
        yield b


@pytest.fixture
async def queue(backend: Backend) -> MessageQueue:
    """An opened queue object of the backend."""
    return await backend.make()


def envelope(
    data: Any = None, *, group: str | None = None, topic: str = "job.requested"
) -> Envelope:
    """An envelope with a fixed trace id."""
    return Envelope(topic, data, "trace-1", group)


async def poll(condition: Callable[[], Awaitable[bool]], within: float = DEADLINE_S) -> float:
    """Await ``condition()`` until true; returns the seconds it took; fails after ``within``."""
    start = time.monotonic()
    while not await condition():
        if time.monotonic() - start > within:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start
