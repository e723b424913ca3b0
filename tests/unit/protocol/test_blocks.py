"""FrameBlock: a run of frames joined once; the same bytes and stamps as the frames one by one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surge.protocol.blocks import FrameBlock
from surge.protocol.codec import Frame


def frame(ts: int, n: int, size: int = 10) -> Frame:
    return Frame(ts, f'{{"timestamp":{ts},"n":{n},"x":"' + "y" * size + '"}')


def one_by_one(frames: list[Frame], last: int) -> list[Frame]:
    """What an outbox whose last frame was stamped ``last`` writes for ``frames`` alone."""
    out = []
    for f in frames:
        if f.ts <= last:
            f = f.restamped(last + 1)
        last = f.ts
        out.append(f)
    return out


def test_a_block_is_its_frames_wire_joined_and_counts_their_frames_and_bytes() -> None:
    frames = [frame(5, 1), frame(6, 2, size=300), frame(9, 3, size=70_000)]
    block = FrameBlock(frames)
    assert block.wire == b"".join(f.wire for f in frames)
    assert block.count == 3 and block.size == sum(f.size for f in frames) == len(block.wire)
    assert (block.ts, block.last_ts) == (5, 9)
    assert block.frames == tuple(frames)


def test_restamping_gives_each_frame_the_stamp_it_would_get_alone() -> None:
    frames = [frame(5, 1), frame(6, 2), frame(9, 3), frame(10, 4)]
    block = FrameBlock(frames)
    assert block.restamped(4) is block  # newer than what the connection saw: as is
    again = block.restamped(8)  # the connection's last frame was stamped 7
    assert [f.ts for f in again.frames] == [8, 9, 10, 11]
    assert again.wire == b"".join(f.wire for f in one_by_one(frames, 7))
    assert again.last_ts == 11


def test_frames_not_increasing_are_stamped_as_an_outbox_would() -> None:
    block = FrameBlock([frame(5, 1), frame(5, 2), frame(3, 3)])
    assert [f.ts for f in block.frames] == [5, 6, 7]


def test_an_empty_block_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        FrameBlock([])


@given(
    st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=12),
    st.integers(min_value=0, max_value=60),
)
def test_after_any_last_stamp_a_block_writes_the_bytes_of_its_frames_one_by_one(
    stamps: list[int], last: int
) -> None:
    frames = [frame(ts, n) for n, ts in enumerate(stamps)]
    block = FrameBlock(frames)
    out = block.restamped(last + 1) if block.ts <= last else block
    assert out.wire == b"".join(f.wire for f in one_by_one(frames, last))
    assert out.last_ts == one_by_one(frames, last)[-1].ts
