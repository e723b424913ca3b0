"""``WriteBatch``: a fan-out's socket writes shared with a helper thread, on real sockets.

Each connection is a socketpair whose server end is an asyncio transport (as uvloop's under the
server); the peers read what arrived. What must hold: every peer gets exactly its bytes, in
order, whichever thread wrote them; what a socket does not take goes to its transport in order;
a connection written twice in one batch keeps its order; a closing transport is never written
around; the helper writes while the loop is still collecting; without it (disabled) nothing
changes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from surge.protocol.codec import Frame
from surge.server.hub import Hub
from surge.server.transport import LeanDirectTransport
from surge.server.write_batch import CHUNK, WriteBatch

from .test_fan_out_now import Peer, change, wired_hub
from .test_lean_transport import Counting, GatedProtocol, read_exactly, wire


@dataclass
class Conn:
    peer: socket.socket
    counting: Counting
    lean: LeanDirectTransport


@dataclass
class Fleet:
    batch: WriteBatch
    conns: list[Conn] = field(default_factory=list)


async def _fleet(count: int, *, enabled: bool = True) -> Fleet:
    fleet = Fleet(WriteBatch(enabled=enabled))
    loop = asyncio.get_running_loop()
    for _ in range(count):
        ours, peer = socket.socketpair()
        peer.setblocking(False)
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
        counting = Counting(transport)
        lean = LeanDirectTransport(GatedProtocol(counting))  # type: ignore[arg-type]
        lean.use_batch(fleet.batch)
        fleet.conns.append(Conn(peer, counting, lean))
    return fleet


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    made = await _fleet(3 * CHUNK + 5)
    yield made
    made.batch.close()
    for conn in made.conns:
        conn.counting.close()
        conn.peer.close()
    await asyncio.sleep(0)


def frame(text: str) -> Frame:
    return Frame(1, text)


async def test_every_connection_gets_its_bytes_in_order_whoever_wrote_them(fleet: Fleet) -> None:
    batch = fleet.batch
    for round_ in range(20):
        assert batch.begin()
        for i, conn in enumerate(fleet.conns):
            conn.lean.write_now(frame(f"{round_}:{i}"))
        batch.finish()
    assert not batch.is_collecting
    for i, conn in enumerate(fleet.conns):
        expected = wire(*(f"{round_}:{i}" for round_ in range(20)))
        assert await read_exactly(conn.peer, len(expected)) == expected
        assert conn.counting.writes == []  # all went to the sockets themselves
        with pytest.raises(BlockingIOError):
            conn.peer.recv(1)  # and nothing more


async def test_the_helper_writes_while_the_loop_is_still_collecting(fleet: Fleet) -> None:
    batch = fleet.batch
    assert batch.begin()
    first = fleet.conns[:CHUNK]
    for i, conn in enumerate(first):
        conn.lean.write_now(frame(f"early {i}"))
    # A full chunk was handed over: its bytes arrive before finish() is called.
    for i, conn in enumerate(first):
        expected = wire(f"early {i}")
        assert await read_exactly(conn.peer, len(expected)) == expected
    for i, conn in enumerate(fleet.conns[CHUNK:]):
        conn.lean.write_now(frame(f"late {i}"))
    batch.finish()
    assert batch.helped_chunks >= 1
    for i, conn in enumerate(fleet.conns[CHUNK:]):
        expected = wire(f"late {i}")
        assert await read_exactly(conn.peer, len(expected)) == expected


async def test_what_a_full_socket_does_not_take_goes_to_its_transport_in_order(
    fleet: Fleet,
) -> None:
    batch = fleet.batch
    text = "".join(chr(65 + i % 26) for i in range(4 * 1024 * 1024))  # beyond socket buffers
    big = wire(text)
    target = fleet.conns[CHUNK + 3]  # in a chunk the helper may take
    assert batch.begin()
    for i, conn in enumerate(fleet.conns):
        conn.lean.write_now(frame(text if conn is target else f"small {i}"))
    batch.finish()
    assert len(target.counting.writes) == 1  # the rest of the partial write, after the batch
    rest = target.counting.writes[0]
    assert 0 < len(rest) < len(big) and big.endswith(rest)
    # Later frames queue behind what the transport holds, never beside it.
    assert batch.begin()
    target.lean.write_now(frame("tail"))
    batch.finish()
    assert target.counting.writes[1] == wire("tail")
    expected = big + wire("tail")
    assert await read_exactly(target.peer, len(expected)) == expected
    for i, conn in enumerate(fleet.conns):
        if conn is not target:
            assert conn.counting.writes == []
            assert await read_exactly(conn.peer, len(wire(f"small {i}"))) == wire(f"small {i}")


async def test_a_connection_written_twice_in_one_batch_keeps_its_order(fleet: Fleet) -> None:
    batch = fleet.batch
    assert batch.begin()
    for i, conn in enumerate(fleet.conns):
        conn.lean.write_now(frame(f"a{i}"))
    for i, conn in enumerate(fleet.conns):
        conn.lean.write_now(frame(f"b{i}"))  # the first of these writes what came before
    batch.finish()
    for i, conn in enumerate(fleet.conns):
        expected = wire(f"a{i}", f"b{i}")
        assert await read_exactly(conn.peer, len(expected)) == expected


async def test_a_transport_closing_before_the_write_is_never_written_around(fleet: Fleet) -> None:
    # Its descriptor may already be closed and given to another connection: the transport
    # decides (it drops the bytes), the socket is not touched.
    batch = fleet.batch
    closing = fleet.conns[5]
    assert batch.begin()
    for i, conn in enumerate(fleet.conns):
        conn.lean.write_now(frame(f"x{i}"))
    closing.counting.close()
    batch.finish()
    assert closing.counting.writes == [wire("x5")]
    others = [c for c in fleet.conns if c is not closing]
    for conn in others:
        assert conn.counting.writes == []


async def test_disabled_every_write_goes_out_at_once() -> None:
    made = await _fleet(CHUNK * 2, enabled=False)
    try:
        assert not made.batch.begin()
        for i, conn in enumerate(made.conns):
            conn.lean.write_now(frame(f"now {i}"))
            # Written by this call, before the next connection's.
            assert await read_exactly(conn.peer, len(wire(f"now {i}"))) == wire(f"now {i}")
        assert made.batch.helped_chunks == 0
    finally:
        for conn in made.conns:
            conn.counting.close()
            conn.peer.close()
        await asyncio.sleep(0)


async def test_close_stops_the_helper_and_a_later_batch_starts_another(fleet: Fleet) -> None:
    batch = fleet.batch
    for round_ in ("one", "two"):  # two lifespans of one app
        assert batch.begin()
        for i, conn in enumerate(fleet.conns):
            conn.lean.write_now(frame(f"{round_} {i}"))
        batch.finish()
        helper = batch._helper
        assert helper is not None and helper.is_alive()
        batch.close()
        assert not helper.is_alive()
        batch.close()  # idempotent
    for i, conn in enumerate(fleet.conns):
        expected = wire(f"one {i}", f"two {i}")
        assert await read_exactly(conn.peer, len(expected)) == expected


class Exploding(LeanDirectTransport):
    """A transport whose descriptor lookup or whose ``write`` raises (a bug, not a socket
    error): the batch must neither lose the other connections' bytes nor its helper."""

    def __init__(self, *args: object, fd_fails: bool = False, write_fails: bool = False) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.fd_fails, self.write_fails = fd_fails, write_fails
        self.rest: list[bytes] = []

    @property
    def fd(self) -> int:
        if self.fd_fails:
            raise RuntimeError("fd lookup failed")
        return super().fd

    def write_rest(self, data: bytes) -> None:
        self.rest.append(data)
        if self.write_fails:
            raise RuntimeError("transport write failed")
        super().write_rest(data)


async def _swap(fleet: Fleet, index: int, **fails: bool) -> Exploding:
    conn = fleet.conns[index]
    exploding = Exploding(GatedProtocol(conn.counting), **fails)
    exploding.use_batch(fleet.batch)
    conn.lean = exploding
    return exploding


async def test_a_write_that_raises_on_either_thread_goes_to_its_transport_and_the_helper_lives(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    bad = await _swap(fleet, 3, fd_fails=True)  # in the first chunk, the helper's if it woke
    batch = fleet.batch
    assert batch.begin()
    for i, conn in enumerate(fleet.conns):
        conn.lean.write_now(frame(f"x{i}"))
    batch.finish()
    assert bad.rest == [wire("x3")]  # whole, to its transport, on the loop
    assert "batched socket write failed" in caplog.text
    for i, conn in enumerate(fleet.conns):
        expected = wire(f"x{i}")
        assert await read_exactly(conn.peer, len(expected)) == expected
    bad.fd_fails = False
    assert batch.begin()  # the helper still works
    for i, conn in enumerate(fleet.conns):
        conn.lean.write_now(frame(f"y{i}"))
    batch.finish()
    assert batch._helper is not None and batch._helper.is_alive()
    for i, conn in enumerate(fleet.conns):
        assert await read_exactly(conn.peer, len(wire(f"y{i}"))) == wire(f"y{i}")


async def test_a_transport_write_that_raises_costs_the_others_nothing(fleet: Fleet) -> None:
    # Two connections' sockets refuse part of a big frame; the first one's transport raises.
    text = "".join(chr(65 + i % 26) for i in range(4 * 1024 * 1024))
    bad = await _swap(fleet, 2, write_fails=True)
    other = fleet.conns[CHUNK + 1]
    batch = fleet.batch
    assert batch.begin()
    for i, conn in enumerate(fleet.conns):
        conn.lean.write_now(frame(text if i in (2, CHUNK + 1) else f"z{i}"))
    with pytest.raises(RuntimeError, match="transport write failed"):
        batch.finish()
    assert not batch.is_collecting and batch._handed == 0
    assert len(bad.rest) == 1
    assert len(other.counting.writes) == 1  # its rest went to its transport all the same
    expected = wire(text)
    assert await read_exactly(other.peer, len(expected)) == expected


# -- through the hub and the flusher, as the server wires them ---------------------------------


@pytest.fixture
async def wide_hub() -> AsyncIterator[tuple[Hub, list[Peer], WriteBatch]]:
    """A hub whose flusher shares writes with a helper, and 3 chunks' worth of subscribers."""
    batch = WriteBatch(enabled=True)
    async with wired_hub(3 * CHUNK, batch) as (hub, peers):
        yield hub, peers, batch


async def test_a_wide_fan_out_is_on_every_socket_when_dispatch_returns(
    wide_hub: tuple[Hub, list[Peer], WriteBatch],
) -> None:
    hub, peers, batch = wide_hub
    hub.dispatch(change(1))
    assert not batch.is_collecting
    for peer in peers:  # no loop iteration since the dispatch
        assert [f["id"] for f in peer.ready()] == ["i1"]


async def test_a_sustained_stream_reaches_every_socket_in_order_with_rising_stamps(
    wide_hub: tuple[Hub, list[Peer], WriteBatch],
) -> None:
    # The first change is a fan-out written at once; the rest go out in the flusher's passes
    # over all the dirty outboxes (batched too), across many loop iterations.
    hub, peers, batch = wide_hub
    before = batch.batched_writes
    for n in range(1, 201):
        hub.dispatch(change(n))
        if n % 7 == 0:
            await asyncio.sleep(0)
    for peer in peers:
        got = await peer.wait_for(200)
        assert [f["id"] for f in got] == [f"i{n}" for n in range(1, 201)]
        stamps = [f["timestamp"] for f in got]
        assert stamps == sorted(set(stamps))
    # Beyond the first fan-out's: the flusher's passes were batched too.
    assert batch.batched_writes - before > len(peers)


def test_under_uvloop_the_server_loop_too() -> None:
    # uvicorn serves on uvloop (a dependency): its transports are the ones the helper reads
    # (``is_closing``) from its own thread, and whose partial writes the loop completes.
    import uvloop

    async def scenario() -> None:
        made = await _fleet(2 * CHUNK + 3)
        text = "".join(chr(65 + i % 26) for i in range(4 * 1024 * 1024))
        try:
            batch = made.batch
            for round_ in range(5):
                assert batch.begin()
                for i, conn in enumerate(made.conns):
                    big = round_ == 2 and i == CHUNK
                    conn.lean.write_now(frame(text if big else f"{round_}:{i}"))
                batch.finish()
            for i, conn in enumerate(made.conns):
                parts = [text if (r == 2 and i == CHUNK) else f"{r}:{i}" for r in range(5)]
                expected = wire(*parts)
                assert await read_exactly(conn.peer, len(expected)) == expected
        finally:
            made.batch.close()
            for conn in made.conns:
                conn.counting.close()
                conn.peer.close()
            await asyncio.sleep(0)

    uvloop.run(scenario())
