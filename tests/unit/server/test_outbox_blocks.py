"""A pre-joined replay (FrameBlock) through the outbox: the same bytes, order and stamps as its
frames queued one by one, one entry and one write on the direct path, and the same caps."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.types import Message

from surge.protocol.blocks import FrameBlock
from surge.protocol.codec import Frame, encode_change, encode_patch
from surge.server.outbox import Flusher, Outbox
from surge.server.transport import AsgiTransport, DirectTransport
from surge.streams.feed import Change

from .test_outbox import FakeProtocol, decode


def frame(ts: int, n: int, size: int = 20) -> Frame:
    return Frame(ts, f'{{"timestamp":{ts},"n":{n},"x":"' + "y" * size + '"}')


def direct(capacity: int = 64, max_bytes: int = 1 << 20, **kw: Any) -> tuple[Outbox, FakeProtocol]:
    protocol = FakeProtocol()
    box = Outbox(
        capacity,
        max_bytes=max_bytes,
        close_timeout=5,
        transport=DirectTransport(protocol),
        flusher=Flusher(),
        **kw,
    )
    return box, protocol


def replay() -> list[Frame]:
    # A cached replay is stamped when it was encoded: older than what a connection may have seen.
    return [frame(3, 100), frame(4, 101, size=200), frame(8, 102), frame(9, 103)]


async def written(box: Outbox, protocol: FakeProtocol, puts: list[Frame]) -> bytes:
    for f in puts:
        assert box.put(f)
    await asyncio.sleep(0)  # the flusher runs at the end of the loop iteration
    data = b"".join(protocol.transport.writes)
    box.stop()
    return data


async def test_a_block_writes_the_bytes_of_its_frames_queued_one_by_one_in_order() -> None:
    for before in ([], [frame(5, 1)], [frame(9, 1), frame(9, 2)], [frame(20, 1)]):
        after = [frame(6, 200), frame(30, 201)]
        joined_box, joined = direct()
        apart_box, apart = direct()
        joined_bytes = await written(joined_box, joined, [*before, FrameBlock(replay()), *after])
        apart_bytes = await written(apart_box, apart, [*before, *replay(), *after])
        assert joined_bytes == apart_bytes
        stamps = [m["timestamp"] for m in decode(joined_bytes)]
        assert stamps == sorted(set(stamps))  # strictly increasing on the connection
        ns = [m["n"] for m in decode(joined_bytes)][len(before) :]
        assert ns == [100, 101, 102, 103, 200, 201]


async def test_a_block_is_one_entry_and_one_write_but_counts_its_frames() -> None:
    box, protocol = direct()
    block = FrameBlock(replay())
    assert box.put(block)
    assert len(box) == 4 and box.queued_bytes == block.size
    await asyncio.sleep(0)
    assert protocol.transport.writes == [block.wire]
    box.stop()


async def test_the_frame_cap_counts_every_frame_of_a_block() -> None:
    box, _ = direct(capacity=6)
    assert box.put(frame(1, 1)) and box.put(frame(2, 2))
    assert not box.put(FrameBlock([frame(10 + n, n) for n in range(5)]))  # 2 + 5 > 6
    assert box.is_overflowed and len(box) == 0
    box.stop()


async def test_a_slow_consumers_block_past_the_byte_cap_overflows_and_writes_nothing() -> None:
    box, protocol = direct(max_bytes=2000)
    assert box.put(Frame(1, '{"timestamp":1,"x":"' + "y" * 1500 + '"}'))  # a big sync
    await asyncio.sleep(0)  # on the socket, which the peer does not drain
    writes = len(protocol.transport.writes)
    block = FrameBlock([frame(10 + n, n, size=100) for n in range(5)])  # ~640 bytes
    assert block.size + 1500 > 2000
    assert not box.put(block)
    assert box.is_overflowed and box.queued_bytes <= 2000
    await asyncio.sleep(0)
    assert len(protocol.transport.writes) == writes  # nothing of the replay went out
    box.stop()


async def test_a_block_that_fits_under_the_byte_cap_with_the_buffer_is_accepted() -> None:
    box, _protocol = direct(max_bytes=2000)
    assert box.put(Frame(1, '{"timestamp":1,"x":"' + "y" * 1000 + '"}'))
    await asyncio.sleep(0)
    block = FrameBlock([frame(10 + n, n, size=100) for n in range(5)])
    assert box.put(block) and not box.is_overflowed
    assert box.queued_bytes <= 2000
    box.stop()


async def test_through_asgi_a_block_goes_out_as_its_frames_one_message_each() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    box = Outbox(8, transport=AsgiTransport(send), flusher=Flusher())
    writer = asyncio.create_task(box.run())
    box.put(frame(5, 1))
    box.put(FrameBlock(replay()))
    async with asyncio.timeout(2):
        while len(sent) < 5:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
    texts = [orjson.loads(m["text"]) for m in sent]
    assert [t["n"] for t in texts] == [1, 100, 101, 102, 103]
    assert [t["timestamp"] for t in texts] == [5, 6, 7, 8, 9]
    box.close(1000, "bye")
    await asyncio.wait_for(writer, 1)


def change(kind: str, id: str, n: int, ts: int) -> Frame:
    return encode_change(Change(kind, "todo", "g", id, {"id": id, "n": n}, n), ts)  # type: ignore[arg-type]


async def test_a_block_of_a_latest_value_stream_is_queued_as_its_frames_so_they_can_collapse() -> (
    None
):
    # The latest-value collapse works on each change, so a block it could touch is not kept whole.
    ops = [{"type": "set", "path": "n", "value": 3}]
    patch = encode_patch(Change("update", "todo", "g", "a", {"id": "a", "n": 3}, 3, ops=ops), 3)
    frames = [change("update", "a", 1, 1), change("update", "a", 2, 2), patch]
    joined_box, joined = direct(capacity=4, latest_value={"todo"})
    apart_box, apart = direct(capacity=4, latest_value={"todo"})
    live = [change("update", "a", n, 10 + n) for n in range(4, 6)]
    joined_bytes = await written(joined_box, joined, [FrameBlock(frames), *live])
    apart_bytes = await written(apart_box, apart, [*frames, *live])
    assert joined_bytes == apart_bytes
    assert not joined_box.is_overflowed
    box, _ = direct(latest_value={"other"})  # another stream's policy: the block stays whole
    assert box.put(FrameBlock(frames)) and len(box._frames) == 1
    box.stop()
