"""Cron steps: ticks from croniter (node-cron's seconds-first form), no overlap, tick claims."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime
from typing import Any

import pytest

from conftest import require_component
from redis_server import REDIS_TEST_URL, drop_redis_keys, redis_is_up
from surge.events.cron import LocalTickLock, RedisTickLock, next_tick
from surge.steps.config import CronConfig, EventConfig

from .conftest import running, until


def _at(text: str) -> float:
    return datetime.fromisoformat(text).astimezone().timestamp()


def test_next_tick_of_five_fields_is_minute_resolution_in_local_time() -> None:
    config = CronConfig(name="C", cron="*/5 * * * *")
    assert next_tick(config, _at("2026-03-01T10:02:30")) == _at("2026-03-01T10:05:00")
    daily = CronConfig(name="D", cron="0 9 * * *")
    assert next_tick(daily, _at("2026-03-01T10:00:00")) == _at("2026-03-02T09:00:00")


def test_six_fields_put_the_seconds_first_as_node_cron_does() -> None:
    config = CronConfig(name="C", cron="*/10 * * * * *")
    assert next_tick(config, _at("2026-03-01T10:02:31")) == _at("2026-03-01T10:02:40")
    # "30 5 * * * *": second 30 of minute 5 of every hour (croniter alone would read it
    # the other way round).
    config = CronConfig(name="C", cron="30 5 * * * *")
    assert next_tick(config, _at("2026-03-01T10:00:00")) == _at("2026-03-01T10:05:30")


async def test_every_second_cron_runs_once_per_tick_and_can_emit() -> None:
    ticks: list[str] = []
    emitted: list[str] = []

    async def tick(ctx: Any) -> None:
        ticks.append(ctx.trace_id)
        await ctx.emit({"topic": "ticked", "data": {"n": len(ticks)}})

    async def on_tick(input: Any, ctx: Any) -> None:
        emitted.append(ctx.trace_id)

    async with running(
        (CronConfig(name="Tick", cron="* * * * * *", emits=["ticked"]), tick),
        (EventConfig(name="OnTick", subscribes=["ticked"]), on_tick),
    ) as bg:
        await until(lambda: len(emitted) >= 2, "two ticks handled")
        await bg.stop()
    assert len(set(ticks)) == len(ticks)  # a fresh trace id per run
    assert emitted == ticks[: len(emitted)]


async def test_a_slow_run_skips_the_next_tick_instead_of_overlapping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    active = peak = runs = 0

    async def slow(ctx: Any) -> None:
        nonlocal active, peak, runs
        active += 1
        runs += 1
        peak = max(peak, active)
        await asyncio.sleep(1.5)
        active -= 1

    async with running((CronConfig(name="Slow", cron="* * * * * *"), slow)) as bg:
        await until(lambda: "skipping the tick" in caplog.text, "a skipped tick", within=15)
        await bg.stop()
    assert peak == 1
    assert "cron step Slow: the previous run is still going; skipping the tick of" in caplog.text


async def test_a_failing_cron_run_is_logged_with_step_and_trace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(ctx: Any) -> None:
        raise RuntimeError("cron boom")

    caplog.set_level(logging.ERROR)
    async with running((CronConfig(name="Broken", cron="* * * * * *"), broken)) as bg:
        await until(lambda: "cron boom" in caplog.text, "the failure logged", within=15)
        await bg.stop()
    assert "cron step Broken [trace " in caplog.text
    assert "never retrieved" not in caplog.text


async def test_local_lock_gives_a_tick_once_and_refuses_while_running() -> None:
    lock = LocalTickLock()
    first = await lock.claim("S", 100, 30)
    assert first.token is not None
    assert (await lock.claim("S", 100, 30)).reason == "taken"
    assert (await lock.claim("S", 101, 30)).reason == "busy"
    await lock.release("S", first.token)
    assert (await lock.claim("S", 102, 30)).token is not None


async def test_redis_lock_gives_a_tick_to_one_process_and_refuses_overlap() -> None:
    require_component(redis_is_up(), f"no Redis server answers at {REDIS_TEST_URL}")
    prefix = f"surge-test-{uuid.uuid4().hex}"
    a = RedisTickLock(REDIS_TEST_URL, prefix=prefix)
    b = RedisTickLock(REDIS_TEST_URL, prefix=prefix)
    await a.open()
    await b.open()
    try:
        claims = await asyncio.gather(a.claim("S", 100, 30), b.claim("S", 100, 30))
        winners = [c for c in claims if c.token is not None]
        assert len(winners) == 1 and {c.reason for c in claims} == {"claimed", "taken"}
        token = winners[0].token
        assert token is not None
        assert (await b.claim("S", 101, 30)).reason == "busy"
        assert await a.renew("S", token, 30) or await b.renew("S", token, 30)
        assert not await b.renew("S", "not-mine", 30)
        await a.release("S", token)
        assert (await b.claim("S", 102, 30)).token is not None
    finally:
        await a.close()
        await b.close()
        drop_redis_keys(prefix)
