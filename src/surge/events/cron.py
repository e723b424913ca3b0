"""Cron steps: run ``handler(ctx)`` on every tick, once per tick in the whole deployment.

Each cron step has a loop that sleeps until its next tick (computed by croniter in local time;
node-cron's 6-field form has the seconds first, croniter's ``second_at_beginning``), then claims
the tick from a ``TickLock``:

- a tick is run by one process only (the first to claim ``(step, tick)``);
- a step never runs twice at once: while a run is going on (here or, with Redis, in any process)
  the next tick is skipped and logged.

``LocalTickLock`` serves one process (the file and memory stores). ``RedisTickLock`` shares the
claims through Redis: ``SET <prefix>:cron:{step}:tick:<t> NX PX`` and a running-lease key renewed
while the handler runs (one Lua script claims both atomically). A failed run is logged with its
trace id and not retried (the next tick is the retry), as in Motia.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from surge.errors import ConfigError, StoreError
from surge.events.runner import ContextFactory
from surge.log_context import log_context
from surge.steps.config import CronConfig
from surge.steps.registry import CronStep, Registry

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Claim", "CronScheduler", "LocalTickLock", "RedisTickLock", "TickLock", "next_tick"]

logger = logging.getLogger(__name__)

RUN_LEASE_S: Final = 30.0  # a running claim lives this long unless renewed (a crashed process)
TICK_TTL_S: Final = 600.0  # how long a claimed tick is remembered (bounds the clock skew allowed)


def next_tick(config: CronConfig, after: float) -> float:
    """The first tick of ``config.cron`` strictly after ``after`` (epoch seconds, local time)."""
    from croniter import croniter

    start = datetime.fromtimestamp(after).astimezone()
    schedule = croniter(config.cron, start, second_at_beginning=config.has_seconds)
    tick: float = schedule.get_next(float)
    return tick


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer of ``TickLock.claim``: a ``token`` when this process runs the tick."""

    token: str | None
    reason: str
    """``"claimed"``, ``"taken"`` (another process has this tick) or ``"busy"`` (a run is on)."""


class TickLock(Protocol):
    """Who runs a cron tick; see the module docstring."""

    async def open(self) -> None:
        """Connect, if needed."""
        ...

    async def close(self) -> None:
        """Release resources."""
        ...

    async def claim(self, step: str, tick: int, lease: float) -> Claim:
        """Claim ``(step, tick)`` and the step's running lease."""
        ...

    async def renew(self, step: str, token: str, lease: float) -> bool:
        """Keep the running lease; False when it was lost."""
        ...

    async def release(self, step: str, token: str) -> None:
        """The run ended: free the running lease."""
        ...


class LocalTickLock:
    """Claims within this process (one process serves the file and memory stores)."""

    def __init__(self) -> None:
        self._last_tick: dict[str, int] = {}
        self._running: dict[str, str] = {}

    async def open(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close."""

    async def claim(self, step: str, tick: int, lease: float) -> Claim:
        """First claim of a tick wins, unless the step is still running."""
        if self._last_tick.get(step, -1) >= tick:
            return Claim(None, "taken")
        self._last_tick[step] = tick
        if step in self._running:
            return Claim(None, "busy")
        token = uuid.uuid4().hex
        self._running[step] = token
        return Claim(token, "claimed")

    async def renew(self, step: str, token: str, lease: float) -> bool:
        """True while the claim is ours."""
        return self._running.get(step) == token

    async def release(self, step: str, token: str) -> None:
        """Free the step."""
        if self._running.get(step) == token:
            del self._running[step]


_CLAIM: Final = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[3]) then return -1 end
return 1
"""
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisTickLock:
    """Claims shared by every process on one Redis (``--workers``, several instances)."""

    def __init__(self, url: str, *, prefix: str = "surge", password: str | None = None) -> None:
        self._url = url
        self._password = password
        self.prefix = prefix
        self._client: Redis | None = None

    def _keys(self, step: str) -> tuple[str, str]:
        tag = step.replace("{", "_").replace("}", "_")
        base = f"{self.prefix}:cron:{{{tag}}}"
        return f"{base}:tick", f"{base}:running"

    async def open(self) -> None:
        """Create the client (connections open on first use)."""
        if self._client is not None:
            return
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - redis is a dev/optional dependency
            raise ConfigError("cron on Redis needs redis-py: pip install redis") from exc
        options: dict[str, Any] = {"socket_connect_timeout": 5.0, "socket_timeout": 5.0}
        if self._password is not None:
            options["password"] = self._password
        self._client = aioredis.Redis.from_url(self._url, **options)

    async def close(self) -> None:
        """Close the client."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _eval(self, script: str, keys: list[str], *args: str | int) -> int:
        if self._client is None:
            raise StoreError("cron lock is not open")
        import redis

        try:
            result = await self._client.eval(script, len(keys), *keys, *args)
        except redis.RedisError as exc:
            raise StoreError(f"cron lock: Redis failed: {exc}", retryable=True) from exc
        return int(result)

    async def claim(self, step: str, tick: int, lease: float) -> Claim:
        """One Lua script: the tick key (NX), then the running key (NX)."""
        tick_key, run_key = self._keys(step)
        token = uuid.uuid4().hex
        result = await self._eval(
            _CLAIM,
            [f"{tick_key}:{tick}", run_key],
            token,
            int(TICK_TTL_S * 1000),
            int(lease * 1000),
        )
        if result == 1:
            return Claim(token, "claimed")
        return Claim(None, "taken" if result == 0 else "busy")

    async def renew(self, step: str, token: str, lease: float) -> bool:
        """Extend the running key while it is ours."""
        _, run_key = self._keys(step)
        return await self._eval(_RENEW, [run_key], token, int(lease * 1000)) == 1

    async def release(self, step: str, token: str) -> None:
        """Delete the running key if it is ours."""
        _, run_key = self._keys(step)
        await self._eval(_RELEASE, [run_key], token)


class _Schedule:
    def __init__(self, step: CronStep) -> None:
        self.step = step
        self.wake = asyncio.Event()
        self.stopping = False
        self.run: asyncio.Task[None] | None = None


class CronScheduler:
    """One loop per cron step; ``reload`` follows hot reload, ``stop`` shuts down gracefully."""

    def __init__(
        self,
        registry: Registry,
        context: ContextFactory,
        lock: TickLock,
        *,
        lease: float = RUN_LEASE_S,
    ) -> None:
        self._registry = registry
        self._context = context
        self.lock = lock
        self.lease = lease
        self._schedules: dict[str, _Schedule] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._stopping = asyncio.Event()
        self.runs = 0
        """Runs started by this process."""

    @property
    def running(self) -> int:
        """Cron handlers running in this process now."""
        return sum(1 for s in self._schedules.values() if s.run is not None and not s.run.done())

    async def run(self) -> None:
        """Schedule until ``stop()``; returns once every run has ended."""
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            self.reload(self._registry)
            await self._stopping.wait()
            for schedule in self._schedules.values():
                schedule.stopping = True
                schedule.wake.set()
        self._tasks = None

    def reload(self, registry: Registry) -> None:
        """Start, stop or update the loops to match ``registry``."""
        self._registry = registry
        if self._tasks is None or self._stopping.is_set():
            return
        wanted = {step.name: step for step in registry.crons}
        for name, schedule in list(self._schedules.items()):
            if name not in wanted:
                schedule.stopping = True
                schedule.wake.set()
                del self._schedules[name]
        for name, step in wanted.items():
            existing = self._schedules.get(name)
            if existing is not None:
                if existing.step.config != step.config or existing.step.handler is not step.handler:
                    existing.step = step
                    existing.wake.set()  # recompute the next tick
                continue
            schedule = _Schedule(step)
            self._schedules[name] = schedule
            self._tasks.create_task(self._loop(schedule))

    async def _loop(self, schedule: _Schedule) -> None:
        while not schedule.stopping:
            tick = next_tick(schedule.step.config, time.time())
            woken = False
            while not schedule.stopping and (delay := tick - time.time()) > 0:
                try:
                    async with asyncio.timeout(delay):
                        await schedule.wake.wait()
                except TimeoutError:
                    continue
                schedule.wake.clear()
                woken = True
                break
            if schedule.stopping:
                return
            if not woken:
                await self._fire(schedule, tick)

    async def _fire(self, schedule: _Schedule, tick: float) -> None:
        step = schedule.step
        if schedule.run is not None and not schedule.run.done():
            logger.warning(
                "cron step %s: the previous run is still going; skipping the tick of %s",
                step.name,
                _when(tick),
            )
            return
        try:
            claim = await self.lock.claim(step.name, int(tick), self.lease)
        except StoreError as exc:
            logger.error("cron step %s: claiming the tick failed, skipped: %s", step.name, exc)
            return
        if claim.token is None:
            if claim.reason == "busy":
                logger.warning(
                    "cron step %s: a run is still going in another process; skipping the tick "
                    "of %s",
                    step.name,
                    _when(tick),
                )
            else:
                logger.debug("cron step %s: tick %s runs in another process", step.name, tick)
            return
        assert self._tasks is not None  # _loop runs only inside run()
        self.runs += 1
        schedule.run = self._tasks.create_task(self._run(step, claim.token))

    async def _run(self, step: CronStep, token: str) -> None:
        trace_id = uuid.uuid4().hex
        with log_context(trace_id=trace_id, step=step.name):
            await self._run_traced(step, token, trace_id)

    async def _run_traced(self, step: CronStep, token: str, trace_id: str) -> None:
        ctx = self._context(step.name, step.config.emits, step.source, trace_id)
        keeper = asyncio.ensure_future(self._keep(step, token))
        try:
            async with asyncio.timeout(step.config.timeout):
                await step.handler(ctx)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("cron step %s [trace %s] failed", step.name, trace_id)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            try:
                await self.lock.release(step.name, token)
            except StoreError as exc:
                logger.warning("cron step %s: releasing its claim failed: %s", step.name, exc)

    async def _keep(self, step: CronStep, token: str) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                if not await self.lock.renew(step.name, token, self.lease):
                    logger.warning("cron step %s: its running claim was lost", step.name)
                    return
            except StoreError as exc:
                logger.warning("cron step %s: renewing its claim failed: %s", step.name, exc)

    async def stop(self, grace: float) -> None:
        """Stop scheduling; give running handlers ``grace`` seconds, then cancel them."""
        runs = [s.run for s in self._schedules.values() if s.run is not None and not s.run.done()]
        for schedule in self._schedules.values():
            schedule.stopping = True
            schedule.wake.set()
        if runs:
            _, late = await asyncio.wait(runs, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                logger.warning(
                    "cancelled %d cron run(s) still going after %.1f s", len(late), grace
                )
        self._stopping.set()


def _when(tick: float) -> str:
    return datetime.fromtimestamp(tick).astimezone().isoformat(timespec="seconds")
