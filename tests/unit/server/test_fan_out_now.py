"""A change after a quieter period is written to its connections during the hub's dispatch
(``Flusher.begin_fan_out``), over real sockets: at once, in order behind anything queued, with
strictly increasing timestamps, and what follows it in the same loop iteration coalesces."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from surge.protocol.codec import Frame, encode_group_sync
from surge.protocol.messages import SubscriptionRequest
from surge.protocol.session import Session
from surge.server.connection import Connection
from surge.server.hub import Hub
from surge.server.outbox import Flusher, Outbox
from surge.server.transport import LeanDirectTransport
from surge.server.write_batch import WriteBatch
from surge.streams.feed import Change


class Protocol:
    """What ``LeanDirectTransport`` reads of ``LeanWebSocketProtocol``, over a real transport."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.is_paused = False
        self.resumed = asyncio.Event()

    @property
    def is_open(self) -> bool:
        return not self.transport.is_closing()

    @property
    def is_gone(self) -> bool:
        return self.transport.is_closing()

    async def wait_writable(self) -> None:
        await self.resumed.wait()


class Peer:
    """One connection of the hub: its outbox on a socket pair, and the peer's end of it."""

    def __init__(self, conn: Connection, protocol: Protocol, sock: socket.socket) -> None:
        self.conn = conn
        self.protocol = protocol
        self.sock = sock
        self.buffer = b""

    def ready(self) -> list[dict[str, Any]]:
        """The frames the socket holds now, without waiting (no loop iteration)."""
        try:
            while True:
                self.buffer += self.sock.recv(65536)
        except BlockingIOError:
            pass
        return self._parse()

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        """All frames read so far, once there are at least ``count`` (5 s at most)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(5):
            while len(self._peek()) < count:
                self.buffer += await loop.sock_recv(self.sock, 65536)
        return self._parse()

    def _peek(self) -> list[dict[str, Any]]:
        out, data = [], self.buffer
        while len(data) >= 2 and len(data) >= 2 + (data[1] & 0x7F):
            size = data[1] & 0x7F
            assert size < 126, "test frames are small"
            out.append(orjson.loads(data[2 : 2 + size]))
            data = data[2 + size :]
        return out

    def _parse(self) -> list[dict[str, Any]]:
        frames = self._peek()
        self.buffer = b""
        return frames


def change(n: int) -> Change:
    return Change("create", "t", "g", f"i{n}", {"id": f"i{n}"}, n)


@contextlib.asynccontextmanager
async def wired_hub(
    count: int, batch: WriteBatch | None = None
) -> AsyncIterator[tuple[Hub, list[Peer]]]:
    """A hub with the runtime's wiring (one flusher, 40 ms cap, ``batch`` if given) and
    ``count`` live subscribers on socket pairs, each past its sync and the flusher quiet."""
    hub = Hub()
    flusher = Flusher(0.04, batch=batch)
    hub.flusher = flusher
    hub.call_after_writes = flusher.call_after_flush
    loop = asyncio.get_running_loop()
    peers, closers = [], []
    try:
        for n in range(count):
            ours, theirs = socket.socketpair()
            theirs.setblocking(False)
            transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
            closers.append((transport, theirs))
            protocol = Protocol(transport)
            outbox = Outbox(transport=LeanDirectTransport(protocol), flusher=flusher)  # type: ignore[arg-type]
            conn = Connection(Session(), outbox, None)
            sub = hub.subscribe(conn, SubscriptionRequest("t", "g", None, f"s{n}"))
            hub.activate(sub, encode_group_sync("t", "g", [], hub.clock.next()), 0)
            peers.append(Peer(conn, protocol, theirs))
        for peer in peers:
            assert [f["event"]["type"] for f in await peer.wait_for(1)] == ["sync"]
        await quiet(flusher)
        yield hub, peers
    finally:
        if batch is not None:
            batch.close()
        for transport, theirs in closers:
            transport.close()
            theirs.close()
        await asyncio.sleep(0)


@pytest.fixture
async def hub() -> AsyncIterator[tuple[Hub, list[Peer]]]:
    """Two live subscribers (``wired_hub``)."""
    async with wired_hub(2) as wired:
        yield wired


async def quiet(flusher: Flusher) -> None:
    """Wait until the flusher is past its pause (a quieter period)."""
    async with asyncio.timeout(5):
        # The pause is the flusher's own timer, with no event to wait on: poll it.
        while not flusher.is_idle:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_change_after_a_quiet_period_is_on_the_sockets_when_dispatch_returns(
    hub: tuple[Hub, list[Peer]],
) -> None:
    h, peers = hub
    h.dispatch(change(1))
    for peer in peers:  # no loop iteration since the dispatch
        assert [f["id"] for f in peer.ready()] == ["i1"]


async def test_changes_right_after_a_written_fan_out_coalesce_into_one_write_each(
    hub: tuple[Hub, list[Peer]], monkeypatch: pytest.MonkeyPatch
) -> None:
    h, peers = hub
    writes: list[int] = []
    real_now, real_many = LeanDirectTransport.write_now, LeanDirectTransport.write_many

    def write_now(self: LeanDirectTransport, frame: Frame) -> bool:
        writes.append(1)
        return real_now(self, frame)

    def write_many(self: LeanDirectTransport, frames: list[Frame]) -> None:
        writes.append(len(frames))
        real_many(self, frames)

    monkeypatch.setattr(LeanDirectTransport, "write_now", write_now)
    monkeypatch.setattr(LeanDirectTransport, "write_many", write_many)
    for n in (1, 2, 3):  # one loop iteration, as a handler's sets on the memory store
        h.dispatch(change(n))
    assert writes == [1, 1]  # the first change, to each connection
    for peer in peers:
        got = await peer.wait_for(3)
        assert [f["id"] for f in got] == ["i1", "i2", "i3"]
        stamps = [f["timestamp"] for f in got]
        assert stamps == sorted(set(stamps))
    assert writes == [1, 1, 2, 2]  # then the two others together, to each


async def test_a_fan_out_writes_behind_frames_held_by_flow_control_in_order(
    hub: tuple[Hub, list[Peer]],
) -> None:
    h, (slow, fast) = hub
    outbox = slow.conn.outbox
    writer = asyncio.create_task(outbox.run())
    slow.protocol.is_paused = True
    last = outbox.last_ts
    outbox.put(Frame(last + 1, f'{{"timestamp":{last + 1},"held":true}}'))
    await asyncio.sleep(0)  # the flush finds the transport paused: the frame stays queued
    await quiet(h.flusher)  # type: ignore[arg-type]
    h.dispatch(change(1))
    assert [f["id"] for f in fast.ready()] == ["i1"]
    assert slow.ready() == []  # not ahead of the held frame
    slow.protocol.is_paused = False
    slow.protocol.resumed.set()
    got = await slow.wait_for(2)
    assert [f.get("held", f.get("id")) for f in got] == [True, "i1"]
    assert got[0]["timestamp"] < got[1]["timestamp"]
    writer.cancel()


async def test_a_fan_out_restamps_a_frame_not_newer_than_the_last_one_written(
    hub: tuple[Hub, list[Peer]],
) -> None:
    h, (ahead, other) = hub
    future = h.clock.next() + 10**9
    ahead.conn.outbox.put(Frame(future, f'{{"timestamp":{future},"ahead":true}}'))
    assert len(await ahead.wait_for(1)) == 1
    await quiet(h.flusher)  # type: ignore[arg-type]
    h.dispatch(change(1))
    assert [f["timestamp"] for f in ahead.ready()] == [future + 1]
    assert other.ready()[0]["timestamp"] < future


async def test_fan_out_sampling_reports_once_the_frames_were_written(
    hub: tuple[Hub, list[Peer]],
) -> None:
    h, peers = hub
    seen: list[int] = []
    h.on_fanout = lambda _: seen.append(len(peers[0].ready()))
    h._fanout_countdown = 1  # sample the next message
    h.dispatch(change(1))
    async with asyncio.timeout(5):
        while not seen:  # noqa: ASYNC110 (a callback the loop runs soon)
            await asyncio.sleep(0)
    assert seen == [1]  # already written, reported without waiting for the pause


async def test_a_key_delivers_to_every_connection_once_its_pending_subscriptions_are_settled(
    hub: tuple[Hub, list[Peer]],
) -> None:
    h, (a, b) = hub
    waiting = h.subscribe(b.conn, SubscriptionRequest("t", "g", None, "extra"))
    h.dispatch(change(1))  # b has a live and a pending subscription: it gets the change once
    assert [f["id"] for f in await a.wait_for(1)] == ["i1"]
    assert [f["id"] for f in await b.wait_for(1)] == ["i1"]
    assert waiting.pending is not None and len(waiting.pending) == 1
    h.unsubscribe(waiting)
    gone = h.subscribe(a.conn, SubscriptionRequest("t", "g", None, "gone"))
    h.unsubscribe(gone)
    h.dispatch(change(2))
    assert [f["id"] for f in await a.wait_for(1)] == ["i2"]
    assert [f["id"] for f in await b.wait_for(1)] == ["i2"]
    assert h._pending_subs == {}


async def test_a_fan_out_applies_the_caps_and_the_close_of_each_connection_alone(
    hub: tuple[Hub, list[Peer]],
) -> None:
    # The fan-out's inline path (Outbox.put_each) hands every case it does not cover to put:
    # here one connection over its byte cap (it overflows: its queue dropped, a 1013 close
    # decided) and, next, one already closing (nothing more is written to it).
    h, (capped, other) = hub
    outbox = capped.conn.outbox
    outbox.max_bytes = outbox._buffered + 10  # the next frame does not fit
    h.dispatch(change(1))
    assert outbox.is_overflowed and outbox.close_code == 1013
    assert capped.ready() == []
    assert [f["id"] for f in other.ready()] == ["i1"]
    await quiet(h.flusher)  # type: ignore[arg-type]
    h.dispatch(change(2))
    assert capped.ready() == []  # closing: refused, not written
    assert [f["id"] for f in other.ready()] == ["i2"]
