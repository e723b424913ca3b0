"""The event-step runner: one consumer per event step, taking messages from the step's queue.

Per consumer: lease up to ``concurrency`` messages minus those running; for each, validate the data
against the step's ``input`` (invalid: dead-lettered at once with the validation error, never
retried), run ``handler(input, ctx)`` with the message's trace id, renew the lease every third of
``visibility_timeout`` while it runs, then ack. A handler that raises (or overruns ``timeout``) is
retried after ``retry_delay * 2 ** (attempt - 1)`` seconds (+-10 % jitter, capped), and after
``max_retries`` retries it is dead-lettered with its error. Every outcome is logged with the step
name and trace id.

Structured concurrency: ``run()`` owns a TaskGroup of consumers; each consumer owns a TaskGroup of
its running handlers. Handler tasks never raise (every error is handled and logged), so one failure
never cancels its siblings, and nothing is ever "never retrieved".

Shutdown (``stop()``): consumers stop leasing; running handlers get ``grace`` seconds, then are
cancelled. A cancelled handler's message is left leased: it is delivered again after the restart
(the default queue releases a dead process's leases at once; otherwise once the lease runs out).

Hot reload (``reload(registry)``): new steps get a consumer, removed ones stop theirs (running
handlers finish), changed ones use the new handler and config for their next message.

Observers (``observers``, see ``surge.events.observers``) hear ``started`` when a handler run
begins and ``retried``/``done``/``dead`` once the queue has recorded the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import surge.tracing as tracing
from surge.errors import ValidationError
from surge.events.observers import DeliveryEvent, DeliveryKind, DeliveryObserver, notify
from surge.log_context import log_context
from surge.queues.base import Delivery, MessageQueue
from surge.steps.context import FlowContext
from surge.steps.registry import EventStep, Registry

__all__ = ["ContextFactory", "EventRunner", "backoff_delay"]

logger = logging.getLogger(__name__)

ContextFactory = Callable[[str, Sequence[str], Path | None, str], FlowContext]
"""(step name, declared emits, source file, trace id) -> the handler's ``ctx``."""

WAIT_TIMEOUT_S = 1.0  # longest a consumer sleeps in queue.wait before looking again
ERROR_BACKOFF_S = (0.1, 5.0)


def backoff_delay(attempt: int, base: float, cap: float, *, jitter: float = 0.1) -> float:
    """Seconds before retry number ``attempt`` (1 = the first retry): doubling, capped."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return float(max(0.0, delay * random.uniform(1 - jitter, 1 + jitter)))


class _Consumer:
    """The loop taking one step's messages; ``step`` is swapped on hot reload."""

    def __init__(self, runner: EventRunner, step: EventStep) -> None:
        self.runner = runner
        self.step = step
        self.name = step.name
        self.stopping = asyncio.Event()
        self.running: set[asyncio.Task[None]] = set()
        self._slot_free = asyncio.Event()

    async def run(self) -> None:
        queue = self.runner.queue
        error_delay = ERROR_BACKOFF_S[0]
        async with asyncio.TaskGroup() as handlers:
            while not self.stopping.is_set():
                step = self.step
                free = step.config.concurrency - len(self.running)
                if free <= 0:
                    self._slot_free.clear()
                    await self._until(self._slot_free.wait())
                    continue
                try:
                    deliveries = await queue.receive(
                        self.name,
                        consumer=self.runner.consumer,
                        limit=free,
                        lease=step.config.visibility_timeout,
                    )
                except Exception as exc:
                    logger.error(
                        "event step %s: receiving failed, retrying in %.1f s: %s",
                        self.name,
                        error_delay,
                        exc,
                    )
                    await self._until(asyncio.sleep(error_delay))
                    error_delay = min(error_delay * 2, ERROR_BACKOFF_S[1])
                    continue
                error_delay = ERROR_BACKOFF_S[0]
                if not deliveries:
                    await self._until(self._wait_ready())
                    continue
                for delivery in deliveries:
                    task = handlers.create_task(self.runner.handle(step, delivery))
                    self.running.add(task)
                    task.add_done_callback(self._finished)

    async def _wait_ready(self) -> None:
        try:
            await self.runner.queue.wait(self.name, WAIT_TIMEOUT_S)
        except Exception as exc:
            logger.error("event step %s: waiting for messages failed: %s", self.name, exc)
            await asyncio.sleep(ERROR_BACKOFF_S[0])

    async def _until(self, awaitable: Awaitable[Any]) -> None:
        """Await ``awaitable`` unless the consumer is told to stop first."""
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, stop):
                if not task.done():
                    task.cancel()
            for task in (work, stop):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        self._slot_free.set()
        self.runner.note_finished()


class EventRunner:
    """Consumers for every event step of the registry; see the module docstring."""

    def __init__(
        self,
        queue: MessageQueue,
        registry: Registry,
        context: ContextFactory,
        *,
        consumer: str,
        retry_delay: float = 1.0,
        max_retry_delay: float = 300.0,
        observers: list[DeliveryObserver] | None = None,
    ) -> None:
        self.queue = queue
        self.observers: list[DeliveryObserver] = [] if observers is None else observers
        """Told about each delivery's start and outcome (``surge.events.observers``)."""
        self.consumer = consumer
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._context = context
        self._registry = registry
        self._consumers: dict[str, _Consumer] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._stopping = asyncio.Event()
        self.handled = 0
        """Messages whose handling finished in this process (``wait_idle`` watches it)."""

    @property
    def running(self) -> int:
        """Handlers running now."""
        return sum(len(c.running) for c in self._consumers.values())

    def note_finished(self) -> None:
        """A handler task ended (counted for ``wait_idle``)."""
        self.handled += 1

    async def run(self) -> None:
        """Run the consumers until ``stop()``; returns once every handler has ended."""
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            self.reload(self._registry)
            await self._stopping.wait()
        self._tasks = None

    def reload(self, registry: Registry) -> None:
        """Follow a new registry: start, stop or update consumers."""
        self._registry = registry
        if self._tasks is None or self._stopping.is_set():
            return
        wanted = {step.name: step for step in registry.events}
        for name, consumer in list(self._consumers.items()):
            if name not in wanted:
                logger.info("event step %s removed: its consumer stops", name)
                consumer.stopping.set()
                del self._consumers[name]
        for name, step in wanted.items():
            existing = self._consumers.get(name)
            if existing is not None:
                existing.step = step
                continue
            consumer = _Consumer(self, step)
            self._consumers[name] = consumer
            self._tasks.create_task(self._supervised(consumer))

    async def _supervised(self, consumer: _Consumer) -> None:
        # The loop handles its own errors; this is the last line against a bug in it.
        while not consumer.stopping.is_set():
            try:
                await consumer.run()
            except Exception:
                logger.exception("event step %s: consumer failed; restarting", consumer.name)
                await asyncio.sleep(ERROR_BACKOFF_S[1])

    async def stop(self, grace: float) -> None:
        """Stop leasing; give running handlers ``grace`` seconds, then cancel them."""
        consumers = list(self._consumers.values())
        for consumer in consumers:
            consumer.stopping.set()
        running = [task for consumer in consumers for task in consumer.running]
        if running:
            logger.info("waiting up to %.1f s for %d running handler(s)", grace, len(running))
            _, late = await asyncio.wait(running, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                logger.warning(
                    "cancelled %d handler(s) still running after %.1f s; their messages "
                    "will be delivered again",
                    len(late),
                    grace,
                )
        self._stopping.set()

    async def handle(self, step: EventStep, delivery: Delivery) -> None:
        """Run one delivery to its end: ack, retry or dead-letter. Never raises (but cancels)."""
        envelope = delivery.envelope
        with log_context(trace_id=envelope.trace_id, step=step.name):
            tracer = tracing.TRACER
            if tracer is None:
                await self._handle(step, delivery)
                return
            with tracer.consumer(step.name, envelope.topic, envelope.trace_parent):
                await self._handle(step, delivery)

    async def _handle(self, step: EventStep, delivery: Delivery) -> None:
        trace_id = delivery.envelope.trace_id
        config = step.config
        try:
            value = self._validate(step, delivery.envelope.data)
        except ValidationError as exc:
            logger.error(
                "event step %s [trace %s]: invalid input, dead-lettered: %s",
                step.name,
                trace_id,
                exc,
            )
            await self._settle(step, delivery, "dead_letter", f"invalid input: {exc}")
            return
        ctx = self._context(step.name, config.emits, step.source, trace_id)
        if self.observers:
            self._notify("started", step, delivery)
        keeper = asyncio.ensure_future(self._keep_lease(step, delivery))
        deadline = asyncio.timeout(config.timeout)
        try:
            async with deadline:
                await step.handler(value, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                error = f"TimeoutError: handler ran longer than {config.timeout} s"
            else:
                error = f"{type(exc).__name__}: {exc}"
            await self._failed(step, delivery, error, exc)
        else:
            await self._settle(step, delivery, "ack", "")
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    def _validate(self, step: EventStep, data: object) -> object:
        schema = step.config.input_schema
        return data if schema is None else schema.validate_json(data)

    async def _failed(
        self, step: EventStep, delivery: Delivery, error: str, exc: BaseException
    ) -> None:
        trace_id = delivery.envelope.trace_id
        retries = step.config.max_retries
        if delivery.attempt > retries:
            logger.error(
                "event step %s [trace %s] failed on attempt %d of %d, dead-lettered: %s",
                step.name,
                trace_id,
                delivery.attempt,
                retries + 1,
                error,
                exc_info=exc,
            )
            await self._settle(step, delivery, "dead_letter", error)
            return
        delay = backoff_delay(delivery.attempt, self.retry_delay, self.max_retry_delay)
        logger.warning(
            "event step %s [trace %s] failed on attempt %d of %d, retrying in %.1f s: %s",
            step.name,
            trace_id,
            delivery.attempt,
            retries + 1,
            delay,
            error,
            exc_info=exc,
        )
        await self._settle(step, delivery, "retry", error, delay=delay)

    def _notify(
        self,
        kind: DeliveryKind,
        step: EventStep,
        delivery: Delivery,
        error: str | None = None,
        delay: float | None = None,
    ) -> None:
        envelope = delivery.envelope
        event = DeliveryEvent(
            kind,
            step.name,
            envelope.topic,
            delivery.message_id,
            envelope.trace_id,
            delivery.attempt,
            error,
            delay,
        )
        notify(self.observers, event)

    async def _settle(
        self, step: EventStep, delivery: Delivery, outcome: str, error: str, delay: float = 0.0
    ) -> None:
        """Ack, retry or dead-letter; a queue failure leaves the lease to run out (redelivery)."""
        try:
            if outcome == "ack":
                await self.queue.ack(delivery)
            elif outcome == "retry":
                await self.queue.retry(delivery, delay=delay, error=error)
            else:
                await self.queue.dead_letter(delivery, error=error)
        except Exception as exc:
            logger.error(
                "event step %s [trace %s]: %s of message %s failed (it will be delivered again "
                "when its lease runs out): %s",
                step.name,
                delivery.envelope.trace_id,
                outcome,
                delivery.message_id,
                exc,
            )
            return
        if self.observers:
            if outcome == "ack":
                self._notify("done", step, delivery)
            elif outcome == "retry":
                self._notify("retried", step, delivery, error, delay)
            else:
                self._notify("dead", step, delivery, error)

    async def _keep_lease(self, step: EventStep, delivery: Delivery) -> None:
        lease = step.config.visibility_timeout
        while True:
            await asyncio.sleep(lease / 3)
            try:
                kept = await self.queue.extend(delivery, lease)
            except Exception as exc:
                logger.warning(
                    "event step %s [trace %s]: renewing the lease failed: %s",
                    step.name,
                    delivery.envelope.trace_id,
                    exc,
                )
                continue
            if not kept:
                logger.warning(
                    "event step %s [trace %s]: lease of message %s was lost; another consumer "
                    "may run it too",
                    step.name,
                    delivery.envelope.trace_id,
                    delivery.message_id,
                )
                return
