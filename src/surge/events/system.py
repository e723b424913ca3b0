"""``Background``: the queue, state, publisher, event runner and cron scheduler of one app.

The app's lifespan calls ``open()``, runs ``run()`` in its TaskGroup, calls ``stop()`` (graceful:
handlers get ``EventSettings.shutdown_grace``) when the server shuts down, then ``close()``. The
HTTP adapter builds each API handler's ``ctx`` with ``context()``; hot reload calls ``reload()``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from surge.config import EventSettings
from surge.events.cron import CronScheduler, LocalTickLock, TickLock
from surge.events.emit import Publisher, StepEmit, emit_arguments
from surge.events.observers import DeliveryObserver
from surge.events.runner import EventRunner
from surge.queues.base import MessageQueue, QueueStats
from surge.state.base import State, StateStore
from surge.steps.context import FlowContext, StepLogger
from surge.steps.registry import Registry
from surge.streams.stream import Streams

__all__ = ["Background", "Host"]

logger = logging.getLogger(__name__)


class Host(Protocol):
    """What the background work reads from the running app (the server's ``Runtime``)."""

    registry: Registry
    streams: Streams


class Background:
    """Event steps, cron steps, ``emit`` and ``state`` of one app; see the module docstring."""

    def __init__(
        self,
        host: Host,
        queue: MessageQueue,
        state: StateStore,
        *,
        settings: EventSettings | None = None,
        tick_lock: TickLock | None = None,
    ) -> None:
        self.host = host
        self.queue = queue
        self.state_store = state
        self.state = State(state)
        """``ctx.state``."""
        self.settings = settings or EventSettings()
        self.resources: Any = None
        """``ctx.resources``: what ``Config.lifespan`` yielded (set by the app at startup)."""
        self.observers: list[DeliveryObserver] = []
        """Told about every message's life here: published, started, retried, done, dead
        (``surge.events.observers``; the Workbench's messages view)."""
        self.publisher = Publisher(queue, lambda: host.registry, self.observers)
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        """This process's name on the leases it takes."""
        self.runner = EventRunner(
            queue,
            host.registry,
            self.context,
            consumer=self.consumer,
            retry_delay=self.settings.retry_delay,
            max_retry_delay=self.settings.max_retry_delay,
            observers=self.observers,
        )
        self.cron = CronScheduler(host.registry, self.context, tick_lock or LocalTickLock())

    def context(
        self, step: str, emits: Sequence[str], source: Path | None, trace_id: str
    ) -> FlowContext:
        """The ``ctx`` of one handler run of ``step`` in the flow ``trace_id``."""
        emit = StepEmit(self.publisher, step=step, topics=emits, trace_id=trace_id, source=source)
        return FlowContext(
            StepLogger(step, trace_id),
            self.host.streams,
            trace_id,
            emit=emit,
            state=self.state,
            resources=self.resources,
        )

    async def open(self) -> None:
        """Open the queue, the state store and the cron lock.

        Raises:
            StoreError: a backend cannot be reached.
        """
        await self.queue.open()
        await self.state_store.open()
        await self.cron.lock.open()

    async def run(self) -> None:
        """Run consumers and cron loops until ``stop()``."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.runner.run())
            tasks.create_task(self.cron.run())

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking work; running handlers get ``grace`` seconds (default: the settings')."""
        grace = self.settings.shutdown_grace if grace is None else grace
        await asyncio.gather(self.runner.stop(grace), self.cron.stop(grace))

    async def close(self) -> None:
        """Close every backend (errors are logged, not raised: this runs at shutdown)."""
        for name, closer in (
            ("queue", self.queue.close),
            ("state store", self.state_store.close),
            ("cron lock", self.cron.lock.close),
        ):
            try:
                await closer()
            except Exception as exc:
                logger.warning("closing the %s failed: %s", name, exc)

    def reload(self, registry: Registry) -> None:
        """Follow a hot reload: consumers and cron loops for the new steps."""
        self.runner.reload(registry)
        self.cron.reload(registry)

    async def emit(
        self,
        event: Mapping[str, Any] | None = None,
        /,
        *,
        topic: str | None = None,
        data: Any = None,
        messageGroupId: str | None = None,
        trace_id: str | None = None,
    ) -> list[str]:
        """Emit from outside a step (tests, the Workbench, ``surge emit``): any topic.

        Returns:
            The message ids, one per subscribing step (empty when nobody subscribes).
        """
        topic, data, group_id = emit_arguments(event, topic, data, messageGroupId)
        return await self.publisher.publish(
            topic, data, trace_id=trace_id or uuid.uuid4().hex, group_id=group_id
        )

    async def stats(self) -> dict[str, QueueStats]:
        """Queue counts of every event step."""
        return {step.name: await self.queue.stats(step.name) for step in self.host.registry.events}

    async def wait_idle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (a public helper)
        """Return once no message is queued, delayed or running and no handler runs here.

        Raises:
            TimeoutError: still busy after ``timeout`` seconds (the message says what is left).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            mark = (self.publisher.published, self.runner.handled, self.cron.runs)
            busy = self.runner.running + self.cron.running
            stats: dict[str, QueueStats] = {}
            if busy == 0:
                stats = await self.stats()
                again = (self.publisher.published, self.runner.handled, self.cron.runs)
                if (
                    all(s.is_idle for s in stats.values())
                    and again == mark
                    and self.runner.running + self.cron.running == 0
                ):
                    return
            if loop.time() > deadline:
                left = {n: s for n, s in stats.items() if not s.is_idle}
                raise TimeoutError(
                    f"background work still busy after {timeout} s: {busy} handler(s) running, "
                    f"queues {left}"
                )
            await asyncio.sleep(0.01)
