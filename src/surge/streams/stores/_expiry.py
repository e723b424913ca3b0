"""``ExpirySweeper``: the one task per adapter that deletes expired items (no timer per item).

The adapter gives it a ``sweep`` coroutine that deletes every due item (feeding one ``delete``
each) and returns how many seconds remain until the next expiry it knows of (None: none). The
sweeper sleeps that long, never more than ``max_interval`` (so expiries written by other processes
or instances are seen within it), and wakes early when a local write schedules an earlier expiry
(``notify``). A failing sweep is logged and retried with backoff; the task never dies silently.
It belongs to the adapter's open/close lifecycle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

__all__ = ["SWEEP_MAX_INTERVAL_S", "ExpirySweeper"]

logger = logging.getLogger("surge.streams.stores")

SWEEP_MAX_INTERVAL_S: Final = 1.0
_RETRY_MIN_S: Final = 0.05
_RETRY_MAX_S: Final = 5.0


class ExpirySweeper:
    """Runs ``sweep`` at the earliest expiry, at least every ``max_interval`` seconds."""

    def __init__(
        self,
        sweep: Callable[[], Awaitable[float | None]],
        *,
        name: str,
        max_interval: float = SWEEP_MAX_INTERVAL_S,
    ) -> None:
        self._sweep = sweep
        self._name = name
        self.max_interval = max_interval
        self._wake = asyncio.Event()
        self._wake_at = float("inf")  # monotonic time of the next planned sweep
        self._task: asyncio.Task[None] | None = None
        self._is_stopping = False

    def start(self) -> None:
        """Start the task (on the running loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    def notify(self, ttl: float) -> None:
        """A local write made an item expire ``ttl`` seconds from now: wake in time for it."""
        if time.monotonic() + ttl < self._wake_at:
            self._wake.set()

    async def stop(self) -> None:
        """Cancel the task and wait for it; idempotent."""
        self._is_stopping = True
        task, self._task = self._task, None
        if task is not None:
            # The flag ends the loop even if a client library swallows the cancellation.
            self._wake.set()
            task.cancel()
            await asyncio.wait([task])

    async def _run(self) -> None:
        retry = _RETRY_MIN_S
        while not self._is_stopping:
            # A notify() during the sweep (which may not see that write) forces another sweep.
            self._wake.clear()
            self._wake_at = float("inf")
            try:
                remaining = await self._sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._is_stopping:
                    return
                logger.exception("%s: expiry sweep failed; retrying in %.2f s", self._name, retry)
                delay, retry = retry, min(retry * 2, _RETRY_MAX_S)
            else:
                retry = _RETRY_MIN_S
                delay = self.max_interval if remaining is None else remaining
                delay = max(0.0, min(delay, self.max_interval))
            self._wake_at = time.monotonic() + delay
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(0)  # more is due right away: let other tasks run first
