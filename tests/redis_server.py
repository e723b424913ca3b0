"""A Redis for the tests: the shared one on 127.0.0.1:6379, or a private ``redis-server``.

Tests that need Redis skip locally when none answers and fail under ``CI=true``
(``require_component``). Each test works under its own key prefix and drops it afterwards.
Fixtures here are registered for every test by tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import socket
import time
from collections.abc import AsyncIterator

import pytest

from conftest import require_component

__all__ = [
    "REDIS_TEST_URL",
    "PrivateRedis",
    "drop_redis_keys",
    "free_port",
    "private_redis",
    "redis_is_up",
]

REDIS_TEST_URL = "redis://127.0.0.1:6379/0"


@functools.cache
def redis_is_up(url: str = REDIS_TEST_URL) -> bool:
    """True when a Redis server answers PING at ``url`` (asked once per session)."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def drop_redis_keys(prefix: str, url: str = REDIS_TEST_URL) -> None:
    """Delete every key under ``prefix`` (test isolation)."""
    import redis

    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateRedis:
    """A throwaway ``redis-server`` without persistence, killed and restarted at will."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, within: float = 5.0) -> None:
        """Start the server and wait until it answers PING."""
        self.process = await asyncio.create_subprocess_exec(
            *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + within
        while not await self._answers_ping():
            if self.process.returncode is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            await asyncio.sleep(0.02)

    async def _answers_ping(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            return await reader.readline() == b"+PONG\r\n"
        except OSError:
            return False
        finally:
            writer.close()

    async def kill(self) -> None:
        """SIGKILL the server (its data is gone: no persistence)."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            async with asyncio.timeout(5):
                await self.process.wait()


@pytest.fixture
async def private_redis() -> AsyncIterator[PrivateRedis]:
    """A redis-server of the test's own, on a free port."""
    require_component(shutil.which("redis-server"), "redis-server is not on PATH")
    server = PrivateRedis(free_port())
    try:
        await server.start()
        yield server
    finally:
        await server.kill()
