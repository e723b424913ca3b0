"""Fixtures shared by the store tests: every ``StreamAdapter`` opened with a recording sink."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from surge.streams.adapter import StreamAdapter
from surge.streams.feed import FeedMessage
from surge.streams.stores.file import FileStreamAdapter
from surge.streams.stores.memory import MemoryStreamAdapter

# name -> factory(tmp_path). Add a store here (e.g. "redis", skipped when no server answers)
# and the whole contract suite and the model test run against it.
ADAPTER_FACTORIES: dict[str, Callable[[Path], StreamAdapter]] = {
    "memory": lambda tmp_path: MemoryStreamAdapter(),
    "file": lambda tmp_path: FileStreamAdapter(tmp_path / "streams"),
}


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
