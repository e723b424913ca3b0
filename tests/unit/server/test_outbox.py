"""The outbox's direct path: coalesced writes of pre-built frames, flow control, slow peers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from starlette.types import Message
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.protocol import State

from surge import Config, ConfigError, Limits
from surge.protocol.codec import Frame, encode_change, encode_patch
from surge.server import outbox as outbox_module
from surge.server.outbox import Flusher, Outbox
from surge.server.runtime import Runtime
from surge.server.transport import AsgiTransport, DirectTransport
from surge.steps.registry import Registry
from surge.streams.feed import Change
from surge.streams.stores.memory import MemoryStreamAdapter


class FakeTransport:
    """Records writes like an asyncio transport."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.buffered += len(data)

    buffered = 0

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True
        self.on_abort()

    def on_abort(self) -> None:
        pass


class FakeConn:
    state = State.OPEN
    extensions: list[Any] = []


class FakeProtocol:
    """The attributes DirectTransport uses on uvicorn's websockets-sansio protocol."""

    def __init__(self) -> None:
        self.conn = FakeConn()
        self.transport = FakeTransport()
        self.writable = asyncio.Event()
        self.writable.set()
        self.close_sent = False
        # uvicorn's connection_lost wakes writers when the transport goes away.
        self.transport.on_abort = self.writable.set  # type: ignore[method-assign]


def frame(ts: int, n: int) -> Frame:
    return Frame(ts, f'{{"timestamp":{ts},"n":{n}}}')


def decode(data: bytes) -> list[dict[str, Any]]:
    """Parse concatenated unmasked server text frames."""
    out = []
    while data:
        size = data[1] & 0x7F
        start = 2
        if size == 126:
            size, start = int.from_bytes(data[2:4]), 4
        assert data[0] == 0x81
        out.append(orjson.loads(data[start : start + size]))
        data = data[start + size :]
    return out


def make(
    max_bytes: int = 1 << 20, close_timeout: float | None = None, send: Any = None
) -> tuple[Outbox, FakeProtocol, list[Message]]:
    """An outbox on a DirectTransport over a fake uvicorn protocol; ASGI sends go to ``sent``."""
    protocol = FakeProtocol()
    sent: list[Message] = []

    async def record(message: Message) -> None:
        sent.append(message)

    box = Outbox(
        8,
        max_bytes=max_bytes,
        close_timeout=close_timeout,
        transport=DirectTransport(protocol, send or record),
        flusher=Flusher(),
    )
    return box, protocol, sent


def test_wire_is_the_rfc6455_frame_websockets_would_send() -> None:
    for text in ('{"timestamp":1}', "x" * 200, "é" * 40000):
        expected = WsFrame(Opcode.TEXT, text.encode()).serialize(mask=False)
        assert Frame(1, text).wire == expected


async def test_frames_put_in_one_loop_iteration_leave_in_one_write_with_strict_timestamps() -> None:
    box, protocol, _ = make()
    for n in range(3):
        box.put(frame(100, n))  # three messages in the same millisecond
    assert protocol.transport.writes == []  # nothing before the loop turns
    await asyncio.sleep(0)
    assert len(protocol.transport.writes) == 1
    assert decode(protocol.transport.writes[0]) == [
        {"timestamp": 100, "n": 0},
        {"timestamp": 101, "n": 1},
        {"timestamp": 102, "n": 2},
    ]


async def test_paused_transport_keeps_frames_until_flow_control_resumes() -> None:
    box, protocol, sent = make()

    writer = asyncio.create_task(box.run())
    protocol.writable.clear()
    box.put(frame(1, 1))
    await asyncio.sleep(0.01)
    assert protocol.transport.writes == []
    protocol.writable.set()
    async with asyncio.timeout(1):
        # A fake transport has no event to wait on: poll it, under a deadline.
        while not protocol.transport.writes:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
    assert decode(protocol.transport.writes[0]) == [{"timestamp": 1, "n": 1}]
    box.close(1000, "bye")
    await asyncio.wait_for(writer, 1)
    assert sent == [{"type": "websocket.close", "code": 1000, "reason": "bye"}]


async def test_a_peer_that_stops_reading_overflows_and_is_dropped_after_close_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbox_module, "CLOSE_WAIT", 0.05)
    box, protocol, sent = make()

    writer = asyncio.create_task(box.run())
    protocol.writable.clear()  # the peer's socket buffer is full
    accepted = [box.put(frame(n, n)) for n in range(1, 12)]
    assert accepted == [True] * 8 + [False] * 3
    assert box.is_overflowed and len(box) == 0
    await asyncio.wait_for(writer, 1)
    assert protocol.transport.aborted
    assert sent == []  # no close frame could be written; the connection was dropped


async def test_error_frame_before_a_protocol_close_is_written_first() -> None:
    sent: list[Message] = []
    writes: list[bytes] = []

    async def send(message: Message) -> None:
        sent.append({"writes_before": len(writes), **message})

    box, protocol, _ = make(send=send)
    writes = protocol.transport.writes
    writer = asyncio.create_task(box.run())
    box.put(frame(5, 1))
    box.close(1008, "too many invalid messages")
    await asyncio.wait_for(writer, 1)
    assert decode(b"".join(protocol.transport.writes)) == [{"timestamp": 5, "n": 1}]
    assert sent == [
        {
            "writes_before": 1,
            "type": "websocket.close",
            "code": 1008,
            "reason": "too many invalid messages",
        }
    ]


async def test_overflow_while_the_writer_waits_for_writability_still_drops_the_peer() -> None:
    """The writer is parked in wait_writable (frames queued, peer not reading) when the
    outbox overflows: the abort timer must drop the peer anyway (it used to hang forever)."""
    box, protocol, sent = make(close_timeout=0.05)

    writer = asyncio.create_task(box.run())
    protocol.writable.clear()
    assert box.put(frame(1, 1))
    await asyncio.sleep(0.01)  # the flush finds the transport paused: the writer parks
    accepted = [box.put(frame(n, n)) for n in range(2, 12)]
    assert False in accepted and box.is_overflowed
    await asyncio.wait_for(writer, 2)
    assert protocol.transport.aborted
    assert sent == []


async def test_byte_cap_counts_the_transport_buffer() -> None:
    box, protocol, _ = make(max_bytes=1000, close_timeout=5)
    assert box.put(Frame(1, '{"timestamp":1,"x":"' + "y" * 850 + '"}'))  # a big sync
    await asyncio.sleep(0)  # flushed: handed to the socket, which the peer does not drain
    assert len(box) == 0 and protocol.transport.buffered > 850
    assert not box.put(Frame(2, '{"timestamp":2,"x":"' + "y" * 200 + '"}'))
    assert box.is_overflowed
    box.stop()


async def test_bytes_the_peer_drained_count_no_more() -> None:
    box, protocol, _ = make(max_bytes=1000, close_timeout=5)
    assert box.put(Frame(1, '{"timestamp":1,"x":"' + "y" * 850 + '"}'))
    await asyncio.sleep(0)
    protocol.transport.buffered = 0  # the peer read everything meanwhile
    assert box.put(Frame(2, '{"timestamp":2,"x":"' + "y" * 200 + '"}'))
    assert not box.is_overflowed
    box.stop()


async def test_byte_cap_admits_frames_up_to_the_cap() -> None:
    box, _protocol, _ = make(max_bytes=1000, close_timeout=5)
    small = Frame(1, '{"timestamp":1,"x":"' + "y" * 100 + '"}')
    accepted = [box.put(small) for _ in range(7)]
    assert accepted == [True] * 7
    assert box.queued_bytes == 7 * small.size
    await asyncio.sleep(0)  # flushed: the bytes move to the transport's buffer
    assert len(box) == 0
    assert box.queued_bytes == 7 * small.size
    box.stop()


async def test_without_a_direct_transport_the_writer_drains_through_asgi_send() -> None:
    # Mounted under another app (or served by another server) there is no DirectTransport:
    # the AsgiTransport buffers each flush and the writer task drains it through ASGI send.
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    box = Outbox(8, transport=AsgiTransport(send), flusher=Flusher())
    writer = asyncio.create_task(box.run())
    assert box.transport_kind == "asgi"
    box.put(frame(1, 1))
    box.put(frame(1, 2))
    async with asyncio.timeout(2):
        while len(sent) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
    assert [orjson.loads(m["text"]) for m in sent] == [
        {"timestamp": 1, "n": 1},
        {"timestamp": 2, "n": 2},
    ]
    box.close(1000, "bye")
    await asyncio.wait_for(writer, 1)
    assert sent[-1] == {"type": "websocket.close", "code": 1000, "reason": "bye"}


async def test_asgi_path_counts_undrained_frames_against_the_byte_cap() -> None:
    # A send that never completes (the peer stopped reading): frames handed to the
    # AsgiTransport still count, so the cap holds on this path too.
    blocked = asyncio.Event()

    async def send(message: Message) -> None:
        await blocked.wait()

    aborted: list[bool] = []

    def abort() -> None:  # as the endpoint does: end the connection's task
        aborted.append(True)
        writer.cancel()

    transport = AsgiTransport(send, abort)
    box = Outbox(100, max_bytes=1000, close_timeout=0.05, transport=transport, flusher=Flusher())
    writer = asyncio.create_task(box.run())
    big = Frame(1, '{"timestamp":1,"x":"' + "y" * 400 + '"}')
    assert box.put(big)
    await asyncio.sleep(0.01)  # flushed into the transport; its send is stuck
    assert len(box) == 0 and box.queued_bytes == big.size
    assert box.put(big.restamped(2))
    await asyncio.sleep(0.01)
    assert not box.put(big.restamped(3))  # 3 x 420 bytes > 1000
    assert box.is_overflowed
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(writer, 1)  # the peer never took its close: aborted
    assert aborted == [True] and transport.is_gone and transport.buffered_bytes == 0


# -- latest-value policy ------------------------------------------------------------------------


def change_frame(kind: str, id: str, n: int, stream: str = "todo", ts: int = 1) -> Frame:
    return encode_change(Change(kind, stream, "g", id, {"id": id, "n": n}, n), ts)  # type: ignore[arg-type]


def latest_box(capacity: int = 8, **kw: Any) -> tuple[Outbox, FakeProtocol]:
    protocol = FakeProtocol()
    box = Outbox(
        capacity,
        transport=DirectTransport(protocol),
        flusher=Flusher(),
        latest_value={"todo"},
        **kw,
    )
    return box, protocol


async def test_latest_value_collapses_each_items_queued_updates_into_the_newest() -> None:
    box, protocol = latest_box()
    protocol.writable.clear()  # the peer is not reading
    assert box.put(change_frame("create", "a", 0))
    for n in range(1, 41):  # 40 updates, 5x the capacity
        assert box.put(change_frame("update", "a" if n % 2 else "b", n))
    assert not box.is_overflowed
    assert len(box) <= 8
    protocol.writable.set()
    box.flush()
    written = [
        (f["event"]["type"], f["id"], f["event"]["data"]["n"])
        for f in decode(b"".join(protocol.transport.writes))
    ]
    # The create is kept; each item ends at its newest value; per item, order is kept.
    assert written[0] == ("create", "a", 0)
    assert written[-2:] == [("update", "a", 39), ("update", "b", 40)]
    for item in ("a", "b"):
        ns = [n for _, i, n in written if i == item]
        assert ns == sorted(ns)
    box.stop()


async def test_latest_value_never_drops_creates_deletes_or_other_frames() -> None:
    box, protocol = latest_box(capacity=12)
    protocol.writable.clear()
    box.put(change_frame("update", "a", 1))
    box.put(change_frame("delete", "a", 2))  # supersedes the update before it
    box.put(change_frame("create", "a", 3))
    box.put(frame(1, 99))  # an event or a sync: never touched
    box.put(change_frame("update", "x", 4, stream="other"))  # a resync-policy stream
    box.put(change_frame("update", "a", 5))
    for n in range(6, 20):
        assert box.put(change_frame("update", "a", n))
    protocol.writable.set()
    box.flush()
    written = decode(b"".join(protocol.transport.writes))
    kinds = [(f["event"]["type"], f["id"]) if "event" in f else ("other", f["n"]) for f in written]
    # The update before the delete is gone; the delete, the create, the event and the other
    # stream's update are all there, in order; a's later updates follow, ascending, to 19.
    assert [k for k in kinds if k != ("update", "a")] == [
        ("delete", "a"),
        ("create", "a"),
        ("other", 99),
        ("update", "x"),
    ]
    assert kinds.index(("update", "a")) > kinds.index(("create", "a"))
    ns = [f["event"]["data"]["n"] for f in written if "event" in f and f["id"] == "a"]
    assert ns[2:] == sorted(ns[2:]) and ns[-1] == 19 and len(written) <= 12
    box.stop()


def patch_frame(id: str, n: int) -> Frame:
    ops = [{"type": "set", "path": "n", "value": n}]
    change = Change("update", "todo", "g", id, {"id": id, "n": n}, n, ops=ops)
    return encode_patch(change, 1)


async def test_latest_value_turns_the_newest_patch_whole_and_keeps_what_older_ones_build_on() -> (
    None
):
    box, protocol = latest_box(capacity=8)
    protocol.writable.clear()

    def queued(id: str) -> list[tuple[str, int]]:
        out = []
        for f in box._frames:
            if f.change and f.change[2] == id:
                event = orjson.loads(f.text)["event"]
                n = (
                    event["data"]["n"]
                    if event["type"] == "update"
                    else event["data"]["ops"][0]["value"]
                )
                out.append((event["type"], n))
        return out

    box.put(change_frame("update", "a", 1))
    box.put(patch_frame("a", 2))  # builds on update 1
    for n in range(3, 10):  # the 9th frame makes the outbox collapse
        assert box.put(change_frame("update", "b", n))
    # a's newest change, the patch, is now the whole item: the update before it can go.
    assert queued("a") == [("update", 2)]
    assert queued("b") == [("update", 8), ("update", 9)]
    box.put(patch_frame("b", 10))
    box.put(patch_frame("b", 11))  # at the next collapse 11 goes whole, and 10 with 8, 9 go
    for n in range(12, 18):
        assert box.put(change_frame("update", "c", n))
    assert not box.is_overflowed
    assert queued("b") == [("update", 11)]
    box.stop()


async def test_latest_value_falls_back_to_resync_when_distinct_items_fill_the_outbox() -> None:
    box, protocol = latest_box(capacity=8)
    protocol.writable.clear()
    accepted = [box.put(change_frame("update", f"i{n}", n)) for n in range(9)]
    assert accepted == [True] * 8 + [False]  # nothing to collapse: bounded, closed with 1013
    assert box.is_overflowed and box.close_code == 1013
    box.stop()


# -- Limits.max_write_delay: coalescing changes that arrive in successive loop iterations -----


class SlowTransport(FakeTransport):
    """A socket whose every write takes ``seconds`` of real time (as 1,000 of them do)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def write(self, data: bytes) -> None:
        time.sleep(self.seconds)  # the flush's own duration: what the pause is measured from
        super().write(data)


def make_delayed(
    max_delay: float, write_s: float = 0.0, capacity: int = 8
) -> tuple[Outbox, FakeProtocol, Flusher, list[Message]]:
    protocol = FakeProtocol()
    protocol.transport = SlowTransport(write_s)
    protocol.transport.on_abort = protocol.writable.set  # type: ignore[method-assign]
    sent: list[Message] = []

    async def record(message: Message) -> None:
        sent.append({"writes_before": len(protocol.transport.writes), **message})

    flusher = Flusher(max_delay)
    box = Outbox(capacity, transport=DirectTransport(protocol, record), flusher=flusher)
    return box, protocol, flusher, sent


async def wait_for_writes(protocol: FakeProtocol, count: int) -> None:
    async with asyncio.timeout(5):
        # A fake transport has no event to wait on: poll it, under a deadline.
        while len(protocol.transport.writes) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.001)


async def test_write_delay_writes_a_lone_change_at_once_and_coalesces_the_ones_after_it() -> None:
    box, protocol, _, _ = make_delayed(10.0, write_s=0.05)  # each flush takes 50 ms
    box.put(frame(1, 0))
    await asyncio.sleep(0)
    assert len(protocol.transport.writes) == 1  # nothing before it: not delayed
    t0 = time.monotonic()
    for n in range(1, 5):  # one change per loop iteration, as an awaiting producer makes them
        box.put(frame(1 + n, n))
        await asyncio.sleep(0)
    assert len(protocol.transport.writes) == 1  # held back: the pause is as long as the flush
    await wait_for_writes(protocol, 2)
    assert time.monotonic() - t0 < 5  # the pause was the flush's 50 ms, not max_delay's 10 s
    assert len(protocol.transport.writes) == 2
    assert decode(protocol.transport.writes[1]) == [
        {"timestamp": 2, "n": 1},
        {"timestamp": 3, "n": 2},
        {"timestamp": 4, "n": 3},
        {"timestamp": 5, "n": 4},
    ]


async def test_write_delay_never_exceeds_max_delay() -> None:
    box, protocol, _, _ = make_delayed(0.01, write_s=1.0)  # a flush far longer than the cap
    box.put(frame(1, 0))
    await asyncio.sleep(0)  # the first flush: one second
    t0 = time.monotonic()
    box.put(frame(2, 1))
    await wait_for_writes(protocol, 2)
    # Paused 10 ms (the cap), then a one-second write; uncapped it would pause a second first.
    assert time.monotonic() - t0 < 1.7


async def test_write_delay_never_delays_a_change_after_a_quiet_period() -> None:
    box, protocol, _, _ = make_delayed(10.0, write_s=0.01)
    box.put(frame(1, 0))
    await asyncio.sleep(0)
    assert len(protocol.transport.writes) == 1
    await asyncio.sleep(0.1)  # quieter than the last flush took
    box.put(frame(2, 1))
    await asyncio.sleep(0)
    assert decode(protocol.transport.writes[1]) == [{"timestamp": 2, "n": 1}]


async def test_without_a_write_delay_every_loop_iteration_writes() -> None:
    box, protocol, _, _ = make_delayed(0.0, write_s=0.01)
    for n in range(3):
        box.put(frame(1 + n, n))
        await asyncio.sleep(0)
    assert len(protocol.transport.writes) == 3


async def test_write_delay_keeps_the_outbox_bounded_by_its_capacity() -> None:
    box, _, _, _ = make_delayed(10.0, write_s=1.0)  # the next flush is a second away
    writer = asyncio.create_task(box.run())
    box.put(frame(1, 0))
    await asyncio.sleep(0)
    accepted = []
    for n in range(1, 12):
        accepted.append(box.put(frame(1 + n, n)))
        await asyncio.sleep(0)
    assert accepted == [True] * 8 + [False] * 3
    assert box.is_overflowed and box.close_code == 1013
    writer.cancel()


async def test_a_close_writes_frames_held_by_the_write_delay_at_once_in_order() -> None:
    box, protocol, _, sent = make_delayed(10.0, write_s=1.0)  # a pause far longer than allowed
    writer = asyncio.create_task(box.run())
    box.put(frame(1, 0))
    await asyncio.sleep(0)
    t0 = time.monotonic()
    box.put(frame(2, 1))
    await asyncio.sleep(0)
    box.put(frame(3, 2))
    box.close(1000, "bye")
    await asyncio.wait_for(writer, 5)
    assert time.monotonic() - t0 < 1.0 + 0.9  # one slow write, not the pause before it
    assert [m["n"] for m in decode(b"".join(protocol.transport.writes))] == [0, 1, 2]
    assert sent == [{"writes_before": 2, "type": "websocket.close", "code": 1000, "reason": "bye"}]


async def test_call_after_flush_runs_once_the_held_frames_were_written() -> None:
    box, protocol, flusher, _ = make_delayed(10.0, write_s=0.05)
    seen: list[int] = []
    box.put(frame(1, 0))
    await asyncio.sleep(0)
    box.put(frame(2, 1))
    flusher.call_after_flush(lambda _: seen.append(len(protocol.transport.writes)), 0.0)
    await asyncio.sleep(0)
    assert seen == []
    await wait_for_writes(protocol, 2)
    await asyncio.sleep(0)
    assert seen == [2]
    flusher.call_after_flush(lambda _: seen.append(-1), 0.0)  # nothing scheduled: soon
    await asyncio.sleep(0)
    assert seen == [2, -1]


def test_a_negative_write_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="write delay"):
        Flusher(-0.001)


@pytest.mark.parametrize("bad", [-0.001, 0.5, True, "0.002"])
def test_limits_refuse_a_max_write_delay_out_of_range(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_write_delay"):
        Limits(max_write_delay=bad)  # type: ignore[arg-type]


def test_the_runtime_flusher_takes_limits_max_write_delay() -> None:
    runtime = Runtime(
        Config(limits=Limits(max_write_delay=0.01)), Registry.build([], []), MemoryStreamAdapter()
    )
    assert runtime.flusher.max_delay == 0.01
    default = Runtime(Config(), Registry.build([], []), MemoryStreamAdapter())
    assert default.flusher.max_delay == Limits().max_write_delay > 0
