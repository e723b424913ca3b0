"""A Background over the real in-memory SQLite queue, with a tiny host (registry + streams)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from surge.config import EventSettings
from surge.events.system import Background
from surge.queues.base import MessageQueue
from surge.queues.sqlite import SqliteQueue
from surge.state.memory import MemoryStateStore
from surge.steps.config import CronConfig, EventConfig
from surge.steps.registry import CronStep, EventStep, Handler, Registry
from surge.streams.stream import Streams

FAST = EventSettings(retry_delay=0.05, max_retry_delay=0.2, shutdown_grace=5.0)


@dataclass
class Host:
    """What Background reads from the app: the registry (swappable) and the streams."""

    registry: Registry
    streams: Streams = field(default_factory=lambda: Streams({}))


def registry(*steps: tuple[EventConfig | CronConfig, Handler]) -> Registry:
    events = [EventStep(c, h) for c, h in steps if isinstance(c, EventConfig)]
    crons = [CronStep(c, h) for c, h in steps if isinstance(c, CronConfig)]
    return Registry.build([], [], events=events, crons=crons)


@asynccontextmanager
async def running(
    *steps: tuple[EventConfig | CronConfig, Handler],
    settings: EventSettings = FAST,
    queue: MessageQueue | None = None,
) -> AsyncIterator[Background]:
    """A started Background; stopped (gracefully) and closed at the end."""
    host = Host(registry(*steps))
    background = Background(
        host, queue or SqliteQueue(":memory:"), MemoryStateStore(), settings=settings
    )
    await background.open()
    task = asyncio.create_task(background.run())
    try:
        yield background
    finally:
        await background.stop()
        await task
        await background.close()


async def until(check: Callable[[], Any], what: str, within: float = 10.0) -> Any:
    """Poll ``check`` (sync) until it is truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.01)
