"""``emit``: route a topic's message to the queue of every subscribing event step.

Each subscribing step has its own queue, named after the step, so each gets its own copy (fan-out
per step). ``publish`` returns once every copy is durable. The trace id travels in the envelope:
the event handler's ``ctx.trace_id`` (and every log line of the chain) is the emitter's.

FIFO: steps whose queue is ``fifo`` get the message in its ``messageGroupId`` (``"default"`` when
none is given: the whole queue in order); standard steps get it without a group. When one topic
has subscribers of both kinds this takes two writes (each durable) instead of one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pydantic

import surge.tracing as tracing
from surge.errors import ConfigError, ValidationError
from surge.events.observers import DeliveryEvent, DeliveryObserver, notify
from surge.queues.base import Envelope, MessageQueue
from surge.steps.registry import EventStep, Registry

__all__ = ["DEFAULT_FIFO_GROUP", "Publisher", "StepEmit", "emit_arguments", "to_json"]

logger = logging.getLogger(__name__)

DEFAULT_FIFO_GROUP = "default"


def _default(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(data: Any) -> Any:
    """``data`` as plain JSON values (pydantic models dumped), a copy the caller cannot mutate.

    Raises:
        ValidationError: ``data`` is not JSON-serializable.
    """
    try:
        return orjson.loads(orjson.dumps(data, default=_default))
    except TypeError as exc:
        raise ValidationError(
            f"emitted data is not JSON-serializable: {exc}",
            [{"loc": ["data"], "msg": str(exc), "type": "type_error"}],
        ) from exc


class Publisher:
    """Routes emitted messages to the queues of the steps subscribed to their topic."""

    def __init__(
        self,
        queue: MessageQueue,
        registry: Callable[[], Registry],
        observers: list[DeliveryObserver] | None = None,
    ) -> None:
        self.queue = queue
        self._registry = registry
        self.published = 0
        """Messages enqueued by this process (``wait_idle`` watches it change)."""
        self.observers: list[DeliveryObserver] = [] if observers is None else observers
        """Told ``published`` for each durable copy (``surge.events.observers``)."""

    async def _enqueue(
        self,
        steps: Sequence[EventStep],
        topic: str,
        payload: Any,
        trace_id: str,
        group_id: str | None,
        parent: str | None,
    ) -> tuple[list[str], list[str]]:
        """Publish to the FIFO and the standard queues; returns (queues, ids) in one order."""
        fifo = [s.name for s in steps if s.config.fifo]
        standard = [s.name for s in steps if not s.config.fifo]
        ids: list[str] = []
        if fifo:
            group = group_id or DEFAULT_FIFO_GROUP
            envelope = Envelope(topic, payload, trace_id, group, parent)
            ids += await self.queue.publish(fifo, envelope)
        if standard:
            envelope = Envelope(topic, payload, trace_id, None, parent)
            ids += await self.queue.publish(standard, envelope)
        return [*fifo, *standard], ids

    def subscribers(self, topic: str) -> list[str]:
        """The names (queues) of the steps subscribed to ``topic`` now."""
        return [step.name for step in self._registry().subscribers.get(topic, ())]

    async def publish(
        self, topic: str, data: Any, *, trace_id: str, group_id: str | None = None
    ) -> list[str]:
        """Enqueue ``data`` for every subscriber of ``topic``; returns the message ids.

        A topic nobody subscribes to is not an error (a debug log line), as in Motia.

        Raises:
            ValidationError: the data is not JSON-able or an id is invalid.
            StoreError: the queue failed (nothing is enqueued for that write).
        """
        steps = self._registry().subscribers.get(topic, ())
        if not steps:
            logger.debug("emit %r [trace %s]: no step subscribes to it", topic, trace_id)
            return []
        payload = to_json(data)
        tracer = tracing.TRACER
        if tracer is None:
            queues, ids = await self._enqueue(steps, topic, payload, trace_id, group_id, None)
        else:
            with tracer.producer(topic, trace_id) as parent:
                queues, ids = await self._enqueue(steps, topic, payload, trace_id, group_id, parent)
        self.published += len(ids)
        if self.observers:
            for step_name, message_id in zip(queues, ids, strict=False):
                event = DeliveryEvent("published", step_name, topic, message_id, trace_id)
                notify(self.observers, event)
        return ids


def emit_arguments(
    event: Mapping[str, Any] | None,
    topic: str | None,
    data: Any,
    group_id: str | None,
) -> tuple[str, Any, str | None]:
    """Motia's ``emit({"topic", "data", "messageGroupId"})`` or the keyword form, checked.

    Raises:
        ValidationError: no topic, or a group id that is not a string.
    """
    if event is not None:
        if not isinstance(event, Mapping):
            raise ValidationError(
                f"emit takes a dict {{'topic': ..., 'data': ...}}, got {type(event).__name__}"
            )
        # Old Motia examples spell the topic "type".
        topic = event.get("topic", event.get("type"))
        data = event.get("data")
        group_id = event.get("messageGroupId", event.get("message_group_id"))
    if not isinstance(topic, str) or not topic:
        raise ValidationError(
            "emit needs a topic: emit({'topic': 'name', 'data': {...}})",
            [{"loc": ["topic"], "msg": "required string", "type": "missing"}],
        )
    if group_id is not None and (not isinstance(group_id, str) or not group_id):
        raise ValidationError(
            "messageGroupId must be a non-empty string",
            [{"loc": ["messageGroupId"], "msg": "must be a string", "type": "type_error"}],
        )
    return topic, data, group_id


class StepEmit:
    """``ctx.emit`` of one step run: only the topics the step declares, with its trace id."""

    __slots__ = ("_publisher", "source", "step", "topics", "trace_id")

    def __init__(
        self,
        publisher: Publisher,
        *,
        step: str,
        topics: Sequence[str],
        trace_id: str,
        source: Path | None = None,
    ) -> None:
        self._publisher = publisher
        self.step = step
        self.topics = frozenset(topics)
        self.trace_id = trace_id
        self.source = source

    async def __call__(
        self,
        event: Mapping[str, Any] | None = None,
        /,
        *,
        topic: str | None = None,
        data: Any = None,
        messageGroupId: str | None = None,
    ) -> list[str]:
        """Enqueue the message for every subscriber; returns the message ids once durable.

        Raises:
            ConfigError: the step does not declare the topic in ``emits``.
            ValidationError: no topic, or data that is not JSON-able.
            StoreError: the queue failed.
        """
        topic, data, group_id = emit_arguments(event, topic, data, messageGroupId)
        if topic not in self.topics:
            declared = ", ".join(sorted(self.topics)) or "none"
            raise ConfigError(
                f"step {self.step!r} emitted topic {topic!r}, which it does not declare in "
                f"`emits` (declared: {declared})",
                path=self.source,
            )
        return await self._publisher.publish(topic, data, trace_id=self.trace_id, group_id=group_id)
