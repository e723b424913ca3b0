"""The event runner on the real SQLite queue: retries, dead letters, validation, limits, FIFO."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from surge.errors import ConfigError
from surge.events.runner import backoff_delay
from surge.queues.sqlite import SqliteQueue
from surge.steps.config import EventConfig

from .conftest import FAST, Host, registry, running, until


def test_backoff_doubles_from_the_base_and_is_capped() -> None:
    assert [backoff_delay(n, 1.0, 5.0, jitter=0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert 0.9 <= backoff_delay(1, 1.0, 5.0) <= 1.1


async def test_handler_that_fails_twice_is_retried_with_growing_delays_then_acked() -> None:
    attempts: list[float] = []

    async def flaky(input: Any, ctx: Any) -> None:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise RuntimeError("not yet")

    async with running((EventConfig(name="Flaky", subscribes=["t"]), flaky)) as bg:
        await bg.emit({"topic": "t", "data": {}})
        await bg.wait_idle()
        assert len(attempts) == 3
        first, second = attempts[1] - attempts[0], attempts[2] - attempts[1]
        assert first >= 0.05 * 0.9 and second >= 0.1 * 0.9  # retry_delay, then doubled
        assert await bg.queue.dead_letters("Flaky") == []


async def test_after_max_retries_the_message_is_dead_lettered_with_its_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def broken(input: Any, ctx: Any) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom")

    config = EventConfig(name="Broken", subscribes=["t"], max_retries=2)
    async with running((config, broken)) as bg:
        await bg.emit({"topic": "t", "data": {"x": 1}}, trace_id="trace-abc")
        await bg.wait_idle()
        dead = await bg.queue.dead_letters("Broken")
    assert calls == 3  # the first attempt and 2 retries
    assert [(d.attempts, d.error, d.envelope.data) for d in dead] == [
        (3, "RuntimeError: boom", {"x": 1})
    ]
    assert "event step Broken [trace trace-abc] failed on attempt 3 of 3, dead-lettered" in (
        caplog.text
    )
    assert "never retrieved" not in caplog.text


async def test_invalid_input_is_dead_lettered_at_once_without_calling_the_handler() -> None:
    called = False

    async def handler(input: Any, ctx: Any) -> None:
        nonlocal called
        called = True

    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    async with running((EventConfig(name="Typed", subscribes=["t"], input=schema), handler)) as bg:
        await bg.emit({"topic": "t", "data": {"n": "five"}})
        await bg.wait_idle()
        dead = await bg.queue.dead_letters("Typed")
    assert not called
    assert len(dead) == 1 and dead[0].attempts == 1
    assert dead[0].error.startswith("invalid input: n:")


async def test_a_poison_message_does_not_block_the_ones_behind_it() -> None:
    seen: list[int] = []

    async def handler(input: Any, ctx: Any) -> None:
        seen.append(input["n"])

    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    config = EventConfig(name="S", subscribes=["t"], input=schema, fifo=True)
    async with running((config, handler)) as bg:
        for n in ("bad", 1, 2):
            await bg.emit({"topic": "t", "data": {"n": n}, "messageGroupId": "g"})
        await bg.wait_idle()
    assert seen == [1, 2]


async def test_pydantic_input_arrives_as_a_model_instance() -> None:
    class Job(BaseModel):
        id: str
        size: int = 1

    got: list[Any] = []

    async def handler(input: Job, ctx: Any) -> None:
        got.append(input)

    async with running((EventConfig(name="M", subscribes=["t"], input=Job), handler)) as bg:
        await bg.emit(topic="t", data=Job(id="j", size=3))
        await bg.wait_idle()
    assert got == [Job(id="j", size=3)]


async def test_no_more_handlers_run_at_once_than_the_step_concurrency() -> None:
    active = peak = done = 0
    release = asyncio.Event()

    async def slow(input: Any, ctx: Any) -> None:
        nonlocal active, peak, done
        active += 1
        peak = max(peak, active)
        await release.wait()
        active -= 1
        done += 1

    async with running((EventConfig(name="Slow", subscribes=["t"], concurrency=2), slow)) as bg:
        for n in range(6):
            await bg.emit({"topic": "t", "data": {"n": n}})
        await until(lambda: active == 2, "two handlers running")
        stats = await bg.queue.stats("Slow")
        assert (stats.in_flight, stats.ready) == (2, 4)
        release.set()
        await bg.wait_idle()
    assert (peak, done) == (2, 6)


async def test_fifo_groups_run_in_order_one_at_a_time_and_groups_in_parallel() -> None:
    order: dict[str, list[int]] = {"a": [], "b": []}
    active: dict[str, int] = {"a": 0, "b": 0}
    overlap = False
    both = asyncio.Event()

    async def handler(input: Any, ctx: Any) -> None:
        nonlocal overlap
        group = input["g"]
        active[group] += 1
        overlap = overlap or active[group] > 1
        if active["a"] and active["b"]:
            both.set()
        await asyncio.sleep(0.01)
        order[group].append(input["n"])
        active[group] -= 1

    config = EventConfig(name="Ordered", subscribes=["t"], fifo=True, concurrency=10)
    async with running((config, handler)) as bg:
        for n in range(5):
            for group in ("a", "b"):
                await bg.emit({"topic": "t", "data": {"g": group, "n": n}, "messageGroupId": group})
        await bg.wait_idle()
    assert order == {"a": [0, 1, 2, 3, 4], "b": [0, 1, 2, 3, 4]}
    assert not overlap
    assert both.is_set()  # the two groups did run side by side


async def test_every_subscribing_step_gets_its_own_copy() -> None:
    got: list[str] = []

    async def one(input: Any, ctx: Any) -> None:
        got.append("one")

    async def two(input: Any, ctx: Any) -> None:
        got.append("two")

    async with running(
        (EventConfig(name="One", subscribes=["t"]), one),
        (EventConfig(name="Two", subscribes=["t"]), two),
    ) as bg:
        assert len(await bg.emit({"topic": "t", "data": None})) == 2
        await bg.wait_idle()
    assert sorted(got) == ["one", "two"]


async def test_handler_timeout_counts_as_a_failure() -> None:
    calls = 0

    async def sleepy(input: Any, ctx: Any) -> None:
        nonlocal calls
        calls += 1
        await asyncio.Event().wait()

    config = EventConfig(name="Sleepy", subscribes=["t"], timeout=0.05, max_retries=0)
    async with running((config, sleepy)) as bg:
        await bg.emit({"topic": "t", "data": {}})
        await bg.wait_idle()
        dead = await bg.queue.dead_letters("Sleepy")
    assert calls == 1
    assert dead[0].error == "TimeoutError: handler ran longer than 0.05 s"


async def test_emit_of_an_undeclared_topic_names_the_step_and_topic() -> None:
    errors: list[Exception] = []

    async def handler(input: Any, ctx: Any) -> None:
        try:
            await ctx.emit({"topic": "secret", "data": {}})
        except ConfigError as exc:
            errors.append(exc)

    config = EventConfig(name="Leaky", subscribes=["t"], emits=["ok"])
    async with running((config, handler)) as bg:
        await bg.emit({"topic": "t", "data": {}})
        await bg.wait_idle()
    assert len(errors) == 1
    assert "step 'Leaky' emitted topic 'secret', which it does not declare" in str(errors[0])


async def test_emit_to_a_topic_without_subscribers_is_no_error() -> None:
    async with running() as bg:
        assert await bg.emit({"topic": "nobody.listens", "data": {"x": 1}}) == []


async def test_trace_id_and_state_travel_along_a_chain(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, Any]] = []

    async def first(input: Any, ctx: Any) -> None:
        ctx.logger.info("first step", {"n": input["n"]})
        await ctx.state.set(ctx.trace_id, "n", input["n"] + 1)
        await ctx.emit(topic="second", data=input)

    async def second(input: Any, ctx: Any) -> None:
        ctx.logger.info("second step")
        seen.append((ctx.trace_id, await ctx.state.get(ctx.trace_id, "n")))

    caplog.set_level(logging.INFO, logger="surge.step")
    async with running(
        (EventConfig(name="First", subscribes=["first"], emits=["second"]), first),
        (EventConfig(name="Second", subscribes=["second"]), second),
    ) as bg:
        await bg.emit({"topic": "first", "data": {"n": 1}}, trace_id="t-123")
        await bg.wait_idle()
    assert seen == [("t-123", 2)]
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("surge.step.")]
    assert lines == ['first step {"n":1} [trace t-123]', "second step [trace t-123]"]


async def test_graceful_stop_lets_a_running_handler_finish() -> None:
    started = asyncio.Event()
    finished = False

    async def handler(input: Any, ctx: Any) -> None:
        nonlocal finished
        started.set()
        await asyncio.sleep(0.2)
        finished = True

    queue = SqliteQueue(":memory:")
    async with running((EventConfig(name="H", subscribes=["t"]), handler), queue=queue) as bg:
        await bg.emit({"topic": "t", "data": {}})
        await started.wait()
        await bg.stop(grace=30)
        assert finished
        assert (await queue.stats("H")).is_idle


async def test_handler_past_the_grace_period_is_cancelled_and_delivered_after_restart(
    tmp_path: Path,
) -> None:
    runs: list[int] = []
    started = asyncio.Event()

    async def stuck(input: Any, ctx: Any) -> None:
        runs.append(1)
        started.set()
        if len(runs) == 1:
            await asyncio.Event().wait()

    config = EventConfig(name="Stuck", subscribes=["t"], visibility_timeout=0.5)
    path = tmp_path / "queue.db"
    async with running((config, stuck), queue=SqliteQueue(path)) as bg:
        await bg.emit({"topic": "t", "data": {}})
        await started.wait()
        await bg.stop(grace=0.05)
        assert (await bg.queue.stats("Stuck")).in_flight == 1  # left leased, not acked
    async with running((config, stuck), queue=SqliteQueue(path)) as bg:
        await bg.wait_idle()
    assert len(runs) == 2


async def test_hot_reload_starts_new_consumers_and_uses_new_handlers() -> None:
    got: list[str] = []

    async def old(input: Any, ctx: Any) -> None:
        got.append("old")

    async def new(input: Any, ctx: Any) -> None:
        got.append("new")

    async def added(input: Any, ctx: Any) -> None:
        got.append("added")

    async with running((EventConfig(name="A", subscribes=["t"]), old)) as bg:
        await bg.emit({"topic": "t", "data": {}})
        await bg.wait_idle()
        assert isinstance(bg.host, Host)
        bg.host.registry = registry(
            (EventConfig(name="A", subscribes=["t"]), new),
            (EventConfig(name="B", subscribes=["u"]), added),
        )
        bg.reload(bg.host.registry)
        await bg.emit({"topic": "t", "data": {}})
        await bg.emit({"topic": "u", "data": {}})
        await bg.wait_idle()
        bg.host.registry = registry()
        bg.reload(bg.host.registry)
        assert await bg.emit({"topic": "t", "data": {}}) == []
    assert sorted(got) == ["added", "new", "old"]


async def test_dead_letter_replay_delivers_again() -> None:
    fail = True

    async def handler(input: Any, ctx: Any) -> None:
        if fail:
            raise ValueError("bad day")

    config = EventConfig(name="R", subscribes=["t"], max_retries=0)
    async with running((config, handler), settings=FAST) as bg:
        await bg.emit({"topic": "t", "data": {}})
        await bg.wait_idle()
        [dead] = await bg.queue.dead_letters("R")
        fail = False
        assert await bg.queue.replay("R", dead.message_id)
        await bg.wait_idle()
        assert await bg.queue.dead_letters("R") == []
