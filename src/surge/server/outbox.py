"""A connection's bounded outbox, and how its frames reach the socket.

Two paths. Under uvicorn's websockets Sans-I/O protocol (the default), ``put`` marks the outbox
dirty and a per-loop ``Flusher`` writes every dirty outbox once at the end of the loop iteration:
all frames queued for a connection since the last flush leave in ONE ``transport.write`` of
pre-built bytes (``Frame.wire``), with no task switch per connection. The outbox's writer task
only wakes when the transport is paused by flow control, or to close. On any other ASGI server,
the writer task drains the outbox through ASGI ``send``, one frame at a time.

Slow-consumer policy: the outbox holds at most ``capacity`` frames and ``max_bytes`` bytes, the
transport's write buffer counted (so pongs, a big sync already handed to the socket and closes
count too). When a frame would exceed either cap the connection is marked overflowed, the queued
frames are dropped (the client will resync, so they are useless), nothing more is accepted, and
the connection is closed with 1013 (try again later) as soon as the socket takes it. From the
moment a close is decided, a timer of ``close_timeout`` seconds runs: a peer that has not taken
the close by then is aborted (``abort``), whatever the writer is waiting for. The official
clients reconnect after 2 s and re-join, and the fresh sync heals the state. So a slow client
costs at most ``max_bytes`` of memory for at most ``close_timeout`` seconds, and never stalls the
fan-out.

Timestamps stay strictly increasing on the connection: a frame that is not newer than the last one
written is restamped (frames queued behind a sync, or several messages in one millisecond).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from surge.protocol.codec import Frame
from surge.protocol.session import CLOSE_TRY_AGAIN_LATER
from surge.server.stats import STATS
from surge.server.transport import DirectTransport

__all__ = [
    "CLOSE_WAIT",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_OUTBOX_CAPACITY",
    "Flusher",
    "Outbox",
]

logger = logging.getLogger(__name__)

DEFAULT_OUTBOX_CAPACITY = 4096
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
CLOSE_WAIT = 5.0

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Flusher:
    """Writes each dirty outbox once per event-loop iteration (coalescing its frames)."""

    __slots__ = ("_dirty", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[Outbox] = []
        self._scheduled = False

    def schedule(self, outbox: Outbox) -> None:
        """Flush ``outbox`` at the end of this loop iteration."""
        self._dirty.append(outbox)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        dirty = self._dirty
        self._dirty = []
        self._scheduled = False
        for outbox in dirty:
            outbox.flush()


class Outbox:
    """Frames waiting for one connection, written in order, bounded in frames and bytes."""

    __slots__ = (
        "_abort",
        "_abort_timer",
        "_buffered",
        "_bytes",
        "_close",
        "_direct",
        "_flusher",
        "_frames",
        "_is_dirty",
        "_wakeup",
        "capacity",
        "close_timeout",
        "is_done",
        "is_overflowed",
        "last_ts",
        "max_bytes",
    )

    def __init__(
        self,
        capacity: int = DEFAULT_OUTBOX_CAPACITY,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        close_timeout: float | None = None,
        direct: DirectTransport | None = None,
        flusher: Flusher | None = None,
        abort: Callable[[], None] | None = None,
    ) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.close_timeout = close_timeout
        self._frames: deque[Frame] = deque()
        self._bytes = 0
        self._buffered = 0  # the transport's write buffer as last read, plus what went since
        self._wakeup = asyncio.Event()
        self._close: tuple[int, str] | None = None
        # The direct path needs both: the transport to write to and the loop-wide flusher.
        # Without a direct transport (any server but uvicorn's sansio, a mount under another
        # app, the in-process TestClient) the writer task drains through ASGI send.
        self._direct = direct if flusher is not None else None
        self._flusher = flusher if self._direct is not None else None
        # How to drop the connection at once: the transport's abort on the direct path, else
        # what the endpoint gives (it ends the connection's task).
        self._abort = abort or (direct.abort if direct is not None else None)
        self._abort_timer: asyncio.TimerHandle | None = None
        self._is_dirty = False
        self.is_overflowed = False
        self.is_done = False
        self.last_ts = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def close_code(self) -> int | None:
        """The close code this side decided on, if it did."""
        return self._close[0] if self._close is not None else None

    @property
    def transport_kind(self) -> str:
        """``"direct"`` (coalesced writes to uvicorn's transport) or ``"asgi"`` (one send per
        frame)."""
        return "direct" if self._direct is not None else "asgi"

    @property
    def queued_bytes(self) -> int:
        """Bytes of the frames queued here plus the bytes in the transport's write buffer."""
        direct = self._direct
        return self._bytes + (direct.buffered_bytes if direct is not None else 0)

    @property
    def is_gone(self) -> bool:
        """True when nothing more will reach the peer (stopped, closing, or the socket is gone)."""
        if self.is_done or self._close is not None:
            return True
        direct = self._direct
        return direct is not None and direct.is_gone

    def put(self, frame: Frame) -> bool:
        """Queue a frame; False when the connection is closing or just overflowed."""
        if self._close is not None or self.is_done:
            return False
        size = frame.size
        if len(self._frames) >= self.capacity or (
            self._bytes + self._buffered + size > self.max_bytes and self._is_over_cap(size)
        ):
            self.overflow()
            return False
        self._frames.append(frame)
        self._bytes += size
        if self._flusher is not None:
            if not self._is_dirty:
                self._is_dirty = True
                self._flusher.schedule(self)
        elif len(self._frames) == 1:
            self._wakeup.set()
        return True

    def _is_over_cap(self, size: int) -> bool:
        # ``_buffered`` only grows between reads (an over-estimate: the peer drains the socket
        # meanwhile); read the transport's real buffer only when the estimate says "over", so
        # the cap stays exact at no cost per frame.
        direct = self._direct
        self._buffered = direct.buffered_bytes if direct is not None else 0
        return self._bytes + self._buffered + size > self.max_bytes

    def overflow(self) -> None:
        """Apply the slow-consumer policy: drop what is queued and close with 1013."""
        if self.is_overflowed or self.is_done:
            return
        self.is_overflowed = True
        STATS.overflows += 1
        self._frames.clear()
        self._bytes = 0
        self._close = (CLOSE_TRY_AGAIN_LATER, "slow consumer: outbox full, resync")
        self._arm_abort()
        self._wakeup.set()

    def close(self, code: int, reason: str) -> None:
        """Write what is queued, then close with ``code``."""
        if self._close is None:
            self._close = (code, reason)
        self._arm_abort()
        self._wakeup.set()

    def stop(self) -> None:
        """The peer is gone: stop without writing anything more."""
        self.is_done = True
        self._frames.clear()
        self._bytes = 0
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        self._wakeup.set()

    def _arm_abort(self) -> None:
        """From now on the peer has ``close_timeout`` seconds to take the close."""
        if self._abort_timer is not None or self.is_done or self._abort is None:
            return
        timeout = CLOSE_WAIT if self.close_timeout is None else self.close_timeout
        self._abort_timer = asyncio.get_running_loop().call_later(timeout, self._abort_now)

    def _abort_now(self) -> None:
        self._abort_timer = None
        abort = self._abort
        self.stop()
        if abort is not None:
            logger.info("dropped a peer that did not take its close within the close timeout")
            abort()

    def flush(self) -> None:
        """Direct path: write everything queued now, or leave it to the writer when paused."""
        self._is_dirty = False
        if not self._frames or self.is_done or self._direct is None:
            return
        if self._direct.is_writable:
            self._write_direct(self._direct)
        else:
            self._wakeup.set()

    def _restamp_all(self) -> list[Frame]:
        frames = self._frames
        batch = []
        last = self.last_ts
        while frames:
            frame = frames.popleft()
            if frame.ts <= last:
                frame = frame.restamped(last + 1)
            last = frame.ts
            batch.append(frame)
        self.last_ts = last
        self._bytes = 0
        return batch

    def _write_direct(self, direct: DirectTransport) -> None:
        sent = self._bytes
        batch = self._restamp_all()
        direct.write(batch)
        self._buffered += sent
        stats = STATS
        stats.writes += 1
        stats.frames_sent += len(batch)
        stats.bytes_sent += sent

    async def run(self, send: Send) -> None:
        """The writer task: flow-control waits, the ASGI path, and the close."""
        frames = self._frames
        direct = self._direct
        while not self.is_done:
            await self._wakeup.wait()
            self._wakeup.clear()
            if direct is not None:
                while frames and self._close is None and not direct.is_writable:
                    if direct.is_gone:
                        self.stop()
                        return
                    # Woken by flow control, or by the abort timer (the transport is gone).
                    await direct.wait_writable()
                if frames and self._close is None and direct.is_writable:
                    self._write_direct(direct)
            else:
                while frames and not self.is_done:
                    frame = frames.popleft()
                    self._bytes -= frame.size
                    if frame.ts <= self.last_ts:
                        frame = frame.restamped(self.last_ts + 1)
                    self.last_ts = frame.ts
                    await send({"type": "websocket.send", "text": frame.text})
                    STATS.writes += 1
                    STATS.frames_sent += 1
                    STATS.bytes_sent += frame.size
            if self._close is not None and not self.is_done:
                await self._send_close(send, direct)

    async def _send_close(self, send: Send, direct: DirectTransport | None) -> None:
        code, reason = self._close or (1000, "")
        if direct is not None:
            while not direct.is_writable and not direct.is_gone and not self.is_done:
                # The abort timer bounds this wait.
                await direct.wait_writable()
            if direct.is_gone or self.is_done:
                self.stop()
                return
            if self._frames:
                self._write_direct(direct)
        self.is_done = True
        self._frames.clear()
        self._bytes = 0
        # The abort timer stays armed: a peer that never answers the close is still dropped.
        await send({"type": "websocket.close", "code": code, "reason": reason})
