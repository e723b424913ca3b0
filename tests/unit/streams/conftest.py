"""Fixtures shared by the store tests: every ``StreamAdapter`` opened with a recording sink."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from conftest import require_component
from redis_server import REDIS_TEST_URL, drop_redis_keys, redis_is_up
from surge.streams.adapter import StreamAdapter
from surge.streams.feed import EphemeralEvent, FeedMessage
from surge.streams.stores.file import FileStreamAdapter
from surge.streams.stores.memory import MemoryStreamAdapter

FEED_TIMEOUT_S = 5.0

# tmp_path -> key prefix: adapters made by one test share a prefix, as file adapters share a
# directory; _drop_redis_test_keys deletes each test's keys at teardown.
_redis_prefixes: dict[Path, str] = {}


def _redis_adapter(tmp_path: Path) -> StreamAdapter:
    require_component(redis_is_up(), f"no Redis server answers at {REDIS_TEST_URL}")
    from surge.streams.stores.redis import RedisStreamAdapter

    prefix = _redis_prefixes.setdefault(tmp_path, f"surge-test-{uuid.uuid4().hex}")
    return RedisStreamAdapter(REDIS_TEST_URL, prefix=prefix)


# name -> factory(tmp_path). Add a store here (e.g. "redis", skipped when no server answers)
# and the whole contract suite and the model test run against it.
ADAPTER_FACTORIES: dict[str, Callable[[Path], StreamAdapter]] = {
    "memory": lambda tmp_path: MemoryStreamAdapter(),
    "file": lambda tmp_path: FileStreamAdapter(tmp_path / "streams"),
    "redis": _redis_adapter,
}


@pytest.fixture(autouse=True)
def _drop_redis_test_keys() -> Iterator[None]:
    yield
    while _redis_prefixes:
        _, prefix = _redis_prefixes.popitem()
        drop_redis_keys(prefix)


def feed_deadline(adapter: StreamAdapter) -> float:
    """How long the sink may lag behind a write of ``adapter``.

    Memory and file feed the sink before the writer resumes: no lag is allowed. Redis delivers
    every change, local ones included, through pub/sub, so the sink runs a little later.
    """
    return 0.0 if isinstance(adapter, MemoryStreamAdapter | FileStreamAdapter) else FEED_TIMEOUT_S


async def wait_for_feed(adapter: StreamAdapter, condition: Callable[[], bool]) -> None:
    """Poll ``condition`` until it holds; fail once ``feed_deadline(adapter)`` has passed."""
    within = feed_deadline(adapter)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() >= deadline:
            raise AssertionError(f"feed condition not met within {within} s")
        await asyncio.sleep(0.005)


async def wait_until_fed(
    adapter: StreamAdapter, feed: list[FeedMessage], message: FeedMessage
) -> None:
    """Wait (within ``feed_deadline(adapter)``) until ``message`` is in ``feed``."""
    await wait_for_feed(adapter, lambda: message in feed)


async def settle_feed(adapter: StreamAdapter, feed: list[FeedMessage]) -> None:
    """Wait until everything ``adapter`` published so far reached ``feed``.

    Sends a marker event (every adapter feeds in publish order) and waits for it, then removes
    it from ``feed``: afterwards, whatever is not in ``feed`` was never fed.
    """
    marker = EphemeralEvent("__settle__", "__settle__", None, {"type": uuid.uuid4().hex})
    await adapter.send(marker.stream, marker.group, marker.id, marker.event)
    await wait_for_feed(adapter, lambda: marker in feed)
    feed.remove(marker)


@pytest.fixture
def feed() -> list[FeedMessage]:
    """Every message the adapter under test hands to its sink, in order."""
    return []


@pytest.fixture(params=list(ADAPTER_FACTORIES))
def adapter_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], StreamAdapter]:
    """Make unopened adapters of each kind; file adapters made by one test share a directory."""
    factory = ADAPTER_FACTORIES[request.param]
    return lambda: factory(tmp_path)


@pytest.fixture
async def adapter(
    adapter_factory: Callable[[], StreamAdapter], feed: list[FeedMessage]
) -> AsyncIterator[StreamAdapter]:
    """An opened adapter of each kind whose sink appends to ``feed``; closed at teardown."""
    store = adapter_factory()
    await store.open(feed.append)
    try:
        yield store
    finally:
        await store.close()
