"""Each queue backend against a simple model: a hypothesis state machine drives random operations.

The model keeps every live message in publish order (a replay goes to the end). It checks which
messages ``receive`` may hand out (ready ones; for a FIFO group only its oldest live message),
how many (``limit`` or all eligible), their attempts, the stats and the dead letters. The order
among messages without a group is not part of the contract, so only the set is compared.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from redis_server import drop_redis_keys
from surge.queues import Delivery, Envelope, MessageQueue, QueueStats

from .conftest import Backend

T = TypeVar("T")

QUEUE = "q"
groups = st.sampled_from([None, None, "a", "b"])
picks = st.integers(min_value=0, max_value=1_000)


@dataclass
class Message:
    id: str
    data: int
    group: str | None
    order: int
    state: Literal["ready", "leased", "dead"] = "ready"
    attempts: int = 0


class QueueMachine(RuleBasedStateMachine):
    """Compares one backend with a list of messages in publish order."""

    backend_name = ""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="surge-queue-model-"))
        self.backend = Backend(self.backend_name, self.directory)
        # Hypothesis drives the machine synchronously: one private loop per run.
        self.loop = asyncio.new_event_loop()
        try:
            self.queue: MessageQueue = self.run(self.backend.make())
        except BaseException:
            self.loop.close()
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self.model: dict[str, Message] = {}
        self.deliveries: dict[str, Delivery] = {}
        self.order = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.queue.close())
        finally:
            self.loop.close()
            shutil.rmtree(self.directory, ignore_errors=True)
            if self.backend_name == "redis":
                drop_redis_keys(self.backend.prefix)

    def _in(self, state: str) -> list[Message]:
        return sorted((m for m in self.model.values() if m.state == state), key=lambda m: m.order)

    def _eligible(self) -> list[Message]:
        live = sorted((m for m in self.model.values() if m.state != "dead"), key=lambda m: m.order)
        heads: dict[str, Message] = {}
        for m in live:
            if m.group is not None:
                heads.setdefault(m.group, m)
        return [m for m in live if m.state == "ready" and (m.group is None or heads[m.group] is m)]

    def _next_order(self) -> int:
        self.order += 1
        return self.order

    @rule(group=groups)
    def publish(self, group: str | None) -> None:
        data = self._next_order()
        [id] = self.run(self.queue.publish([QUEUE], Envelope("t", data, "trace", group)))
        self.model[id] = Message(id, data, group, data)

    @rule(limit=st.integers(min_value=1, max_value=4))
    def receive(self, limit: int) -> None:
        eligible = {m.id: m for m in self._eligible()}
        got = self.run(self.queue.receive(QUEUE, consumer="c", limit=limit, lease=600))
        assert len(got) == min(limit, len(eligible))
        for delivery in got:
            message = eligible.pop(delivery.message_id)  # KeyError: not eligible
            assert delivery.envelope == Envelope("t", message.data, "trace", message.group)
            assert delivery.attempt == message.attempts + 1
            message.attempts += 1
            message.state = "leased"
            self.deliveries[message.id] = delivery

    def _pick(self, state: str, pick: int) -> Message:
        candidates = self._in(state)
        return candidates[pick % len(candidates)]

    @precondition(lambda self: self._in("leased"))
    @rule(pick=picks)
    def ack(self, pick: int) -> None:
        message = self._pick("leased", pick)
        self.run(self.queue.ack(self.deliveries.pop(message.id)))
        del self.model[message.id]

    @precondition(lambda self: self._in("leased"))
    @rule(pick=picks)
    def retry(self, pick: int) -> None:
        message = self._pick("leased", pick)
        self.run(self.queue.retry(self.deliveries.pop(message.id), delay=0, error="boom"))
        message.state = "ready"

    @precondition(lambda self: self._in("leased"))
    @rule(pick=picks)
    def dead_letter(self, pick: int) -> None:
        message = self._pick("leased", pick)
        self.run(self.queue.dead_letter(self.deliveries.pop(message.id), error="gave up"))
        message.state = "dead"

    @precondition(lambda self: self._in("dead"))
    @rule(pick=picks)
    def replay(self, pick: int) -> None:
        message = self._pick("dead", pick)
        assert self.run(self.queue.replay(QUEUE, message.id)) is True
        message.state, message.attempts, message.order = "ready", 0, self._next_order()

    @precondition(lambda self: self._in("dead"))
    @rule(pick=picks)
    def discard(self, pick: int) -> None:
        message = self._pick("dead", pick)
        assert self.run(self.queue.discard(QUEUE, message.id)) is True
        del self.model[message.id]

    @rule()
    def dead_letters(self) -> None:
        letters = self.run(self.queue.dead_letters(QUEUE, limit=1000))
        assert sorted((d.message_id, d.attempts) for d in letters) == sorted(
            (m.id, m.attempts) for m in self._in("dead")
        )

    @invariant()
    def stats_match(self) -> None:
        stats = self.run(self.queue.stats(QUEUE))
        expected = QueueStats(
            len(self._in("ready")), 0, len(self._in("leased")), len(self._in("dead"))
        )
        assert stats == expected


@pytest.mark.parametrize("name", ["sqlite-memory", "redis"])
def test_queue_matches_the_model(name: str) -> None:
    machine = cast(
        type[QueueMachine],
        type(
            f"{name.title().replace('-', '')}QueueMachine", (QueueMachine,), {"backend_name": name}
        ),
    )
    machine.TestCase.settings = settings(
        max_examples=25,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine.TestCase().runTest()
