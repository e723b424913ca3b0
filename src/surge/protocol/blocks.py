"""A run of frames that goes to many connections together: ``FrameBlock``.

Why: a resume after a restart answers thousands of joins with the same replay (the ``resume``
frame and every missed message, ``server/replay_cache.py``). Queued frame by frame, each
connection pays per frame: an outbox entry, a timestamp check, a list append, a slice of the
``b"".join`` in its write. A block is the frames encoded once *and joined once*: ``wire`` is the
concatenation of the frames' own ``wire`` bytes, so a connection queues one entry and writes one
buffer, whatever the number of frames. What reaches the peer is byte for byte what the frames
sent one by one would be:

- Timestamps: the frames are stamped strictly increasing when the block is made (with the rule
  of the outbox: a frame not newer than the one before it is stamped one more). A connection
  whose last timestamp is not below the block's first asks for ``restamped(last + 1)``, which
  applies the same rule frame by frame, so each frame gets the stamp it would have got alone.
- Caps: ``count`` frames and ``size`` bytes, what the outbox's frame and byte caps count.
- Whoever needs the frames themselves (a transport that sends frames one by one or compresses
  them, the latest-value collapse of an outbox) takes ``frames``.
"""

from __future__ import annotations

from collections.abc import Sequence

from surge.protocol.codec import Frame

__all__ = ["FrameBlock"]


def _stamped_after(frames: Sequence[Frame], last: int) -> list[Frame]:
    """``frames`` as a connection whose last frame was stamped ``last`` would send them."""
    out = []
    for frame in frames:
        if frame.ts <= last:
            frame = frame.restamped(last + 1)
        last = frame.ts
        out.append(frame)
    return out


class FrameBlock(Frame):
    """Frames that go out together, in order, as one pre-joined buffer (see the module).

    ``ts`` is the first frame's timestamp and ``last_ts`` the last one's; ``text`` is empty (a
    block is never sent as one message: ``frames`` are its messages).
    """

    __slots__ = ("_changed_streams", "count", "frames", "last_ts")

    def __init__(self, frames: Sequence[Frame]) -> None:
        if not frames:
            raise ValueError("a frame block needs at least one frame")
        stamped = tuple(_stamped_after(frames, -1))
        super().__init__(stamped[0].ts, "")
        self.frames = stamped
        self.count = len(stamped)
        self.last_ts = stamped[-1].ts
        self._size = sum(frame.size for frame in stamped)
        self._changed_streams = frozenset(
            frame.change[0] for frame in stamped if frame.change is not None
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FrameBlock) and self.frames == other.frames

    def __hash__(self) -> int:
        return hash(self.frames)

    def __repr__(self) -> str:
        return f"FrameBlock({self.count} frames, ts={self.ts}..{self.last_ts})"

    @property
    def changed_streams(self) -> frozenset[str]:
        """The streams of the item changes among the frames (what a collapse could touch)."""
        return self._changed_streams

    @property
    def wire(self) -> bytes:
        """The frames' WebSocket frames, concatenated (joined on first use, then shared)."""
        wire = self._wire
        if wire is None:
            wire = self._wire = b"".join([frame.wire for frame in self.frames])
        return wire

    def restamped(self, ts: int) -> FrameBlock:
        """The block after a frame stamped ``ts - 1``: each frame as it would be stamped alone."""
        if self.ts >= ts:
            return self
        return FrameBlock(_stamped_after(self.frames, ts - 1))
