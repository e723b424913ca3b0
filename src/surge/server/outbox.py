"""A connection's bounded outbox: ordering, timestamps and the slow-consumer policy.

Frames go out through a ``Transport`` (``server/transport.py``). ``put`` marks the outbox dirty
and the per-loop ``Flusher`` hands every dirty outbox's frames to its transport once at the end
of the loop iteration, as one ``write_many``: under uvicorn's websockets Sans-I/O protocol (the
default, ``DirectTransport``) that is ONE ``transport.write`` of pre-built bytes, with no task
switch per connection. A change after a quieter period does not wait for that: the hub's
dispatch writes it to each connection with nothing queued at once (``Flusher.begin_fan_out``,
``Transport.write_now``: one pass over the connections, no queue), and the fan-out counts as a
flush. The outbox's writer task (``run``) only wakes when the transport is
paused by flow control, when the transport needs draining (``AsgiTransport``: one ASGI ``send``
per frame, for any other server), or to close. It is started only then (``start_writer``,
given by the endpoint): an idle connection has no writer task, no coroutine and no ``Event``.

Slow-consumer policy: the outbox holds at most ``capacity`` frames and ``max_bytes`` bytes, the
transport's buffer counted (so pongs, a big sync already handed to the socket and closes count
too). When a frame would exceed either cap the connection is marked overflowed, the queued frames
are dropped (the client will resync, so they are useless), nothing more is accepted, and the
connection is closed with 1013 (try again later) as soon as the socket takes it. From the moment
a close is decided, a timer of ``close_timeout`` seconds runs: a peer that has not taken the
close by then is aborted (``Transport.abort``), whatever the writer is waiting for. The official
clients reconnect after 2 s and re-join, and the fresh sync heals the state. So a slow client
costs at most ``max_bytes`` of memory for at most ``close_timeout`` seconds, and never stalls the
fan-out.

Latest-value policy (streams in ``latest_value``, see ``StreamConfig.slow_consumer``): before a
full outbox overflows, the queued changes of each item of those streams collapse into the newest
state. Walking the queue from its end, an ``update`` (or a ``patch``) of an item is dropped when
a later ``update``, ``patch`` or ``delete`` of the same item is queued, and the newest
``patch`` of an item becomes its whole-item ``update`` (``PatchFrame.full``, the same state);
creates and deletes are never dropped, other frames (syncs, events, other streams) are never
touched, and nothing is moved, so every item's own changes keep their order and the client ends
in the server's state. When that
does not bring the outbox under three quarters of its caps (the bytes the transport already holds
cannot collapse: they count against the byte cap first), the resync policy applies after all
(the connection is too slow for this many distinct items): memory stays bounded, and the cost of
a collapse (one pass over the queue) is paid at most once per quarter of the capacity.

Timestamps stay strictly increasing on the connection: a frame that is not newer than the last one
written is restamped (frames queued behind a sync, or several messages in one millisecond).

A ``FrameBlock`` (``protocol/blocks.py``: a replay's frames, joined once for every connection)
is one entry here when the transport writes frames' bytes as they are (``writes_wire``) and no
latest-value collapse could touch its changes; otherwise it is queued as its frames. Either way
the caps count its frames and bytes, and the peer gets the same bytes in the same order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Container
from typing import cast

from surge.protocol.blocks import FrameBlock
from surge.protocol.codec import Frame, PatchFrame
from surge.protocol.session import CLOSE_TRY_AGAIN_LATER
from surge.server.stats import STATS
from surge.server.transport import Transport
from surge.server.write_batch import CHUNK, WriteBatch

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


class Flusher:
    """Writes each dirty outbox once per event-loop iteration (coalescing its frames), and
    under a sustained stream of changes, after a pause as long as the previous flush took (at
    most ``max_delay`` seconds).

    Why the pause (``Limits.max_write_delay``): a producer that awaits each change (a handler
    doing sequential ``set``s on a durable store) makes one change per loop iteration, so
    flushing every iteration costs one ``write`` system call per connection per change, and the
    producer cannot run while the loop writes. So the next flush starts no sooner than the
    previous one's duration after it ended (capped at ``max_delay``): the loop spends at most
    about half its time writing while changes keep coming, the changes made meanwhile go out
    together (one write per connection), and the pause scales with the work, not with a guess:
    a flush to ten connections pauses for microseconds, one to thousands for milliseconds. A
    change after a quieter period is written during its dispatch (``begin_fan_out``), before
    its producer goes on (a POST's response is sent after it, as Socket.IO's ``emit`` writes
    before the handler answers): only a sustained stream is delayed, never a lone change, and
    never by more than ``max_delay``. Closes do not wait (the writer task writes what is
    queued, then the close).
    """

    __slots__ = (
        "_after",
        "_batching",
        "_dirty",
        "_due",
        "_max_delay",
        "_scheduled",
        "_started",
        "batch",
        "is_writing",
    )

    def __init__(self, max_delay: float = 0.0, *, batch: WriteBatch | None = None) -> None:
        if not max_delay >= 0:
            raise ValueError(f"max write delay must be >= 0, not {max_delay!r}")
        self.batch = batch
        """Collects each fan-out's and each flush's socket writes and writes them on two
        threads (``surge.server.write_batch``); None: every write goes out at once."""
        self._batching = False  # this fan-out began the batch (it ends it)
        self._dirty: list[Outbox] = []
        self._scheduled = False
        self._max_delay = max_delay
        self._due = float("-inf")  # the earliest time the next flush may start
        self._after: list[tuple[Callable[[float], object], float]] = []
        self._started = 0.0
        self.is_writing = False
        """True during a fan-out that writes at once (``begin_fan_out``): puts write, not queue."""

    @property
    def max_delay(self) -> float:
        """The longest a frame waits to be coalesced, seconds (0: every loop iteration)."""
        return self._max_delay

    def schedule(self, outbox: Outbox) -> None:
        """Flush ``outbox`` at the end of this loop iteration, or once the pause is over."""
        self._dirty.append(outbox)
        if not self._scheduled:
            self._schedule_flush(asyncio.get_running_loop())

    def begin_fan_out(self) -> bool:
        """Let the puts of one message write at once: True when no flush is scheduled and no
        pause runs (the caller must then call ``end_fan_out``), False when they should queue.

        A change after a quieter period then reaches the sockets from the dispatch itself, not
        after the rest of its producer's task step (a POST's response) and a second pass over
        the outboxes; the fan-out counts as a flush, so what comes after it (later in the same
        loop iteration included) waits for the pause and goes out coalesced.
        """
        if self._scheduled or self.is_writing:
            return False
        now = asyncio.get_running_loop().time()
        if self._due > now:
            return False
        self._started = now
        self.is_writing = True
        self._batching = self.batch is not None and self.batch.begin()
        return True

    @property
    def is_idle(self) -> bool:
        """True when nothing is scheduled and no pause runs (a fan-out now writes at once)."""
        return not (
            self._scheduled or self.is_writing or self._due > asyncio.get_running_loop().time()
        )

    def end_fan_out(self) -> None:
        """The message's frames were written: start the pause, with a flush at its end."""
        self.is_writing = False
        try:
            if self._batching and self.batch is not None:
                self._batching = False
                self.batch.finish()
        finally:
            self._start_pause()

    def _start_pause(self) -> None:
        loop = asyncio.get_running_loop()
        self._pause_after(self._started, loop.time())
        # Scheduled even with nothing dirty yet: the puts until then queue (coalesce) instead
        # of each writing at once.
        self._schedule_flush(loop)

    def _pause_after(self, started: float, ended: float) -> None:
        """The next flush may start once as long as this write took has passed (at most
        ``max_delay``)."""
        self._due = ended + min(self._max_delay, ended - started)

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Flush at the end of this loop iteration, or once the pause is over."""
        self._scheduled = True
        if self._due > loop.time():
            loop.call_at(self._due, self._flush)
        else:
            loop.call_soon(self._flush)

    def _flush_all(self, dirty: list[Outbox]) -> None:
        batch = self.batch
        if batch is None or len(dirty) < CHUNK or not batch.begin():
            for outbox in dirty:
                outbox.flush()
            return
        try:
            for outbox in dirty:
                outbox.flush()
        finally:
            batch.finish()

    def call_after_flush(self, callback: Callable[[float], object], arg: float) -> None:
        """Run ``callback(arg)`` once what is scheduled now was written (soon if nothing is)."""
        if self._dirty:
            self._after.append((callback, arg))
        else:
            asyncio.get_running_loop().call_soon(callback, arg)

    def _flush(self) -> None:
        dirty = self._dirty
        self._dirty = []
        self._scheduled = False
        if self._max_delay:
            clock = asyncio.get_running_loop().time
            started = clock()
            self._flush_all(dirty)
            self._pause_after(started, clock())
        else:
            self._flush_all(dirty)
        if self._after:
            after = self._after
            self._after = []
            for callback, arg in after:
                callback(arg)


class Outbox:
    """Frames waiting for one connection, written in order, bounded in frames and bytes.

    Without a transport (unit tests of the hub) frames only queue.
    """

    __slots__ = (
        "_abort_timer",
        "_buffered",
        "_bytes",
        "_close",
        "_extra",
        "_flusher",
        "_frames",
        "_inline",
        "_is_dirty",
        "_joins",
        "_latest",
        "_start_writer",
        "_transport",
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
        transport: Transport | None = None,
        flusher: Flusher | None = None,
        latest_value: Container[str] = (),
    ) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.close_timeout = close_timeout
        # A list, not a deque: empty it costs 56 bytes, a deque keeps a 64-slot block (~600);
        # it is only appended to and emptied whole (``_write``).
        self._frames: list[Frame] = []
        self._extra = 0  # frames queued inside blocks beyond one per entry
        self._bytes = 0
        self._buffered = 0  # the transport's buffer as last read, plus what went since
        # Created with the writer (``_wake``): most connections never need one.
        self._wakeup: asyncio.Event | None = None
        self._start_writer: Callable[[], object] | None = None
        self._close: tuple[int, str] | None = None
        self._transport = transport
        self._inline = transport is not None and transport.flushes_inline
        # Without the loop-wide flusher, every put wakes the writer task.
        self._flusher = flusher if transport is not None else None
        batch = None if flusher is None else flusher.batch
        if transport is not None and batch is not None and batch.enabled:
            transport.use_batch(batch)  # off (the default): its transport never looks at one
        self._abort_timer: asyncio.TimerHandle | None = None
        self._is_dirty = False
        self._latest = latest_value
        # Blocks stay whole only where the transport writes their joined bytes as they are.
        self._joins = transport is not None and transport.writes_wire
        self.is_overflowed = False
        self.is_done = False
        self.last_ts = 0

    def __len__(self) -> int:
        return len(self._frames) + self._extra

    @property
    def close_code(self) -> int | None:
        """The close code this side decided on, if it did."""
        return self._close[0] if self._close is not None else None

    @property
    def transport_kind(self) -> str | None:
        """The transport's kind: ``"direct"`` (coalesced writes to uvicorn's transport) or
        ``"asgi"`` (one send per frame); None without a transport."""
        return self._transport.kind if self._transport is not None else None

    @property
    def queued_bytes(self) -> int:
        """Bytes of the frames queued here plus the bytes in the transport's buffer."""
        transport = self._transport
        return self._bytes + (transport.buffered_bytes if transport is not None else 0)

    @property
    def is_gone(self) -> bool:
        """True when nothing more will reach the peer (stopped, closing, or the socket is gone)."""
        if self.is_done or self._close is not None:
            return True
        transport = self._transport
        return transport is not None and transport.is_gone

    def put(self, frame: Frame) -> bool:
        """Queue a frame; False when the connection is closing or just overflowed."""
        flusher = self._flusher
        # During a fan-out that writes at once, and nothing queued (no bytes) ahead of it.
        if (
            flusher is not None
            and flusher.is_writing
            and not self._bytes
            and self._write_now(frame)
        ):
            return True
        if self._close is not None or self.is_done:
            return False
        count = frame.count
        if count > 1 and isinstance(frame, FrameBlock) and not self._keeps_whole(frame):
            return all(self.put(part) for part in frame.frames)  # stops at the first refusal
        size = frame.size
        if (
            len(self._frames) + self._extra + count > self.capacity
            or (self._bytes + self._buffered + size > self.max_bytes and self._is_over_cap(size))
        ) and not (self._latest and self._collapse(size)):
            self.overflow()
            return False
        self._frames.append(frame)
        self._bytes += size
        if count > 1:
            self._extra += count - 1
        if flusher is not None:
            if not self._is_dirty:
                self._is_dirty = True
                flusher.schedule(self)
        elif len(self._frames) == 1:
            self._wake()
        return True

    def start_writer_with(self, start: Callable[[], object]) -> None:
        """Start the writer task with ``start()`` the first time it is needed (not before)."""
        self._start_writer = start

    def _wake(self) -> None:
        """Wake the writer task, starting it first when it does not run yet."""
        wakeup = self._wakeup
        if wakeup is not None:
            wakeup.set()
            return
        self._wakeup = wakeup = asyncio.Event()
        wakeup.set()
        start = self._start_writer
        if start is not None and not self.is_done:
            self._start_writer = None
            try:
                start()
            except RuntimeError:  # the connection's task group is over: nothing to write to
                self.stop()

    def _keeps_whole(self, block: FrameBlock) -> bool:
        """True when ``block`` may be queued as one entry (see the module docstring)."""
        if not self._joins:
            return False
        latest = self._latest
        return not latest or not any(stream in latest for stream in block.changed_streams)

    def _is_over_cap(self, size: int) -> bool:
        # ``_buffered`` only grows between reads (an over-estimate: the peer drains the socket
        # meanwhile); read the transport's real buffer only when the estimate says "over", so
        # the cap stays exact at no cost per frame.
        transport = self._transport
        self._buffered = transport.buffered_bytes if transport is not None else 0
        return self._bytes + self._buffered + size > self.max_bytes

    def _collapse(self, size: int) -> bool:
        """The latest-value policy (module docstring); True when there is room again."""
        latest = self._latest
        frames = self._frames
        superseded: set[tuple[str, str, str]] = set()
        kept: list[Frame] = []
        freed = 0
        for frame in reversed(frames):
            change = frame.change
            if change is not None and change[0] in latest:
                kind = change[3]
                if kind in ("update", "patch", "delete"):
                    key = (change[0], change[1], change[2])
                    if kind != "delete" and key in superseded:
                        freed += frame.size
                        continue
                    if kind == "patch":
                        if not isinstance(frame, PatchFrame):
                            kept.append(frame)  # it needs every earlier state of its item
                            continue
                        # The newest change of its item: sent whole instead (the same state,
                        # same timestamp), so that it supersedes what came before it.
                        full = frame.full
                        self._bytes += full.size - frame.size
                        frame = full
                    superseded.add(key)
            kept.append(frame)
        dropped = len(frames) - len(kept)
        if dropped:
            kept.reverse()
            frames.clear()
            frames.extend(kept)
            self._bytes -= freed
            STATS.collapsed += dropped
        transport = self._transport
        self._buffered = transport.buffered_bytes if transport is not None else 0
        # Room for a quarter of the caps again (what the transport holds cannot collapse).
        return (
            len(frames) + self._extra < self.capacity * 3 // 4
            and self._bytes + size <= (self.max_bytes - self._buffered) * 3 // 4
        )

    def overflow(self) -> None:
        """Apply the slow-consumer policy: drop what is queued and close with 1013."""
        if self.is_overflowed or self.is_done:
            return
        self.is_overflowed = True
        STATS.overflows += 1
        self._frames.clear()
        self._extra = 0
        self._bytes = 0
        self._close = (CLOSE_TRY_AGAIN_LATER, "slow consumer: outbox full, resync")
        self._arm_abort()
        self._wake()

    def close(self, code: int, reason: str) -> None:
        """Write what is queued, then close with ``code``."""
        if self._close is None:
            self._close = (code, reason)
        self._arm_abort()
        self._wake()

    def stop(self) -> None:
        """The peer is gone: stop without writing anything more."""
        self.is_done = True
        self._frames.clear()
        self._extra = 0
        self._bytes = 0
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        self._start_writer = None
        if self._wakeup is not None:  # a writer that runs (or will) must see it
            self._wakeup.set()

    def _arm_abort(self) -> None:
        """From now on the peer has ``close_timeout`` seconds to take the close."""
        if self._abort_timer is not None or self.is_done or self._transport is None:
            return
        timeout = CLOSE_WAIT if self.close_timeout is None else self.close_timeout
        self._abort_timer = asyncio.get_running_loop().call_later(timeout, self._abort_now)

    def _abort_now(self) -> None:
        self._abort_timer = None
        transport = self._transport
        self.stop()
        if transport is not None:
            logger.info("dropped a peer that did not take its close within the close timeout")
            transport.abort()

    def flush(self) -> None:
        """Hand everything queued to the transport now, or leave it to the writer when paused."""
        self._is_dirty = False
        transport = self._transport
        if not self._frames or self.is_done or transport is None:
            return
        if transport.is_writable:
            self._write(transport)
            if self._inline:
                return
        self._wake()

    def _write(self, transport: Transport) -> None:
        frames = self._frames
        batch = []
        last = self.last_ts
        for frame in frames:
            if frame.ts <= last:
                frame = frame.restamped(last + 1)
            last = frame.ts if frame.count == 1 else cast(FrameBlock, frame).last_ts
            batch.append(frame)
        frames.clear()
        self.last_ts = last
        sent = self._bytes
        self._bytes = 0
        extra = self._extra
        self._extra = 0
        transport.write_many(batch)
        self._buffered += sent
        stats = STATS
        stats.frames_sent += len(batch) + extra
        stats.bytes_sent += sent

    def _write_now(self, frame: Frame) -> bool:
        """Write ``frame`` at once, as ``_write`` would, when nothing is queued ahead of it
        (``put`` checked: no bytes queued) and the transport takes it inline; False: ``put``
        applies the usual rules (queue it, or refuse it, or overflow)."""
        transport = self._transport
        if self._close is not None or self.is_done or frame.count != 1 or transport is None:
            return False
        size = frame.size
        if self._buffered + size > self.max_bytes and self._is_over_cap(size):
            return False
        last = self.last_ts
        if frame.ts <= last:
            frame = frame.restamped(last + 1)
        if not transport.write_now(frame):
            return False
        self.last_ts = frame.ts
        self._buffered += size
        stats = STATS
        stats.frames_sent += 1
        stats.bytes_sent += size
        return True

    async def run(self) -> None:
        """The writer task: flow-control waits, draining the transport, and the close."""
        transport = self._transport
        if transport is None:
            raise RuntimeError("an outbox without a transport has no writer")
        frames = self._frames
        wakeup = self._wakeup
        if wakeup is None:
            self._wakeup = wakeup = asyncio.Event()
        while not self.is_done:
            await wakeup.wait()
            wakeup.clear()
            while frames and self._close is None and not transport.is_writable:
                if transport.is_gone:
                    self.stop()
                    return
                # Woken by flow control, or by the abort timer (the transport is gone).
                await transport.drain()
            if frames and self._close is None and transport.is_writable:
                self._write(transport)
            if not self._inline and not self.is_done:
                await transport.drain()
            if self._close is not None and not self.is_done:
                await self._send_close(transport)

    async def _send_close(self, transport: Transport) -> None:
        code, reason = self._close or (1000, "")
        while not transport.is_writable and not transport.is_gone and not self.is_done:
            # The abort timer bounds this wait.
            await transport.drain()
        if transport.is_gone or self.is_done:
            self.stop()
            return
        if self._frames:
            self._write(transport)
        self.is_done = True
        self._frames.clear()
        self._extra = 0
        self._bytes = 0
        # The abort timer stays armed: a peer that never answers the close is still dropped.
        await transport.close(code, reason)
