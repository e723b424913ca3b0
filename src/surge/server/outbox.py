"""A connection's bounded outbox and the single writer that drains it.

Slow-consumer policy: the outbox holds at most ``capacity`` frames. When a frame arrives at a full
outbox the connection is marked overflowed, the queued frames are dropped (the client will resync,
so they are useless), nothing more is accepted, and the writer closes the connection with 1013
(try again later) as soon as it can. The official clients reconnect after 2 s and re-join, and
the fresh sync heals the state. So a slow client costs at most ``capacity`` frames of memory
and never stalls the fan-out.

The writer also keeps timestamps strictly increasing on the connection: a frame that is not newer
than the last one written is restamped (only frames queued behind a sync ever are).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from surge.protocol.codec import Frame
from surge.protocol.session import CLOSE_TRY_AGAIN_LATER

__all__ = ["DEFAULT_OUTBOX_CAPACITY", "Outbox"]

DEFAULT_OUTBOX_CAPACITY = 4096

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Outbox:
    """Frames waiting for one connection, written in order by ``run``."""

    __slots__ = (
        "_close",
        "_frames",
        "_wakeup",
        "capacity",
        "is_done",
        "is_overflowed",
        "last_ts",
    )

    def __init__(self, capacity: int = DEFAULT_OUTBOX_CAPACITY) -> None:
        self.capacity = capacity
        self._frames: deque[Frame] = deque()
        self._wakeup = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self.is_overflowed = False
        self.is_done = False
        self.last_ts = 0

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: Frame) -> bool:
        """Queue a frame; False when the connection is closing or just overflowed."""
        if self._close is not None or self.is_done:
            return False
        if len(self._frames) >= self.capacity:
            self.overflow()
            return False
        self._frames.append(frame)
        if len(self._frames) == 1:
            self._wakeup.set()
        return True

    def overflow(self) -> None:
        """Apply the slow-consumer policy: drop what is queued and close with 1013."""
        self.is_overflowed = True
        self._frames.clear()
        self._close = (CLOSE_TRY_AGAIN_LATER, "slow consumer: outbox full, resync")
        self._wakeup.set()

    def close(self, code: int, reason: str) -> None:
        """Write what is queued, then close with ``code``."""
        if self._close is None:
            self._close = (code, reason)
        self._wakeup.set()

    def stop(self) -> None:
        """The peer is gone: stop without writing anything more."""
        self.is_done = True
        self._frames.clear()
        self._wakeup.set()

    async def run(self, send: Send) -> None:
        """Write frames until closed or stopped."""
        frames = self._frames
        while not self.is_done:
            await self._wakeup.wait()
            self._wakeup.clear()
            while frames and not self.is_done:
                frame = frames.popleft()
                if frame.ts <= self.last_ts:
                    frame = frame.restamped(self.last_ts + 1)
                self.last_ts = frame.ts
                await send({"type": "websocket.send", "text": frame.text})
            if self._close is not None and not self.is_done:
                code, reason = self._close
                self.is_done = True
                await send({"type": "websocket.close", "code": code, "reason": reason})
