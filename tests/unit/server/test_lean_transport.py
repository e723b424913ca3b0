"""``LeanDirectTransport.write_many``: the socket write with the GIL released, and every case it
hands to the transport instead (a full socket, a partial write, a closing transport, TLS)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from surge.protocol.codec import Frame
from surge.server.transport import LeanDirectTransport


class Counting:
    """The real transport, with its ``write`` calls counted."""

    def __init__(self, transport: asyncio.Transport, extra: dict[str, Any] | None = None) -> None:
        self.inner = transport
        self.extra = extra or {}
        self.writes: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in self.extra:
            return self.extra[name]
        return self.inner.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        return self.inner.get_write_buffer_size()

    def is_closing(self) -> bool:
        return self.inner.is_closing()

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.inner.write(data)

    def close(self) -> None:
        self.inner.close()


@dataclass
class FakeProtocol:
    transport: Any


@dataclass
class Pair:
    peer: socket.socket
    counting: Counting


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    ours, peer = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    peer.setblocking(False)
    yield Pair(peer, Counting(transport))
    transport.close()
    peer.close()
    await asyncio.sleep(0)


def frames(*texts: str) -> list[Frame]:
    return [Frame(1, text) for text in texts]


def wire(*texts: str) -> bytes:
    return b"".join(frame.wire for frame in frames(*texts))


async def read_exactly(peer: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    got = bytearray()
    while len(got) < size:
        got += await asyncio.wait_for(loop.sock_recv(peer, size - len(got)), 5)
    return bytes(got)


async def test_a_write_to_an_empty_transport_goes_to_the_socket_itself(pair: Pair) -> None:
    lean = LeanDirectTransport(FakeProtocol(pair.counting))  # type: ignore[arg-type]
    lean.write_many(frames("one"))
    lean.write_many(frames("two", "three"))
    assert pair.counting.writes == []  # not through the transport's write
    expected = wire("one", "two", "three")
    assert await read_exactly(pair.peer, len(expected)) == expected


async def test_what_a_full_socket_does_not_take_goes_to_the_transport_in_order(pair: Pair) -> None:
    lean = LeanDirectTransport(FakeProtocol(pair.counting))  # type: ignore[arg-type]
    text = "".join(chr(65 + i % 26) for i in range(4 * 1024 * 1024))  # beyond socket buffers
    big = wire(text)
    lean.write_many(frames(text))
    assert len(pair.counting.writes) == 1  # the remainder of a partial write
    rest = pair.counting.writes[0]
    assert 0 < len(rest) < len(big) and big.endswith(rest)
    assert pair.counting.get_write_buffer_size() > 0
    # While the transport holds bytes, later frames queue behind them, never beside them.
    lean.write_many(frames("tail"))
    assert pair.counting.writes[1] == wire("tail")
    expected = big + wire("tail")
    assert await read_exactly(pair.peer, len(expected)) == expected


async def test_a_closing_transport_is_never_written_around(pair: Pair) -> None:
    # Its descriptor may already be closed and given to another connection.
    lean = LeanDirectTransport(FakeProtocol(pair.counting))  # type: ignore[arg-type]
    pair.counting.close()
    lean.write_many(frames("late"))
    assert pair.counting.writes == [wire("late")]  # the transport decides (it drops it)


async def test_under_tls_every_write_goes_through_the_transport(pair: Pair) -> None:
    pair.counting.extra["sslcontext"] = object()
    lean = LeanDirectTransport(FakeProtocol(pair.counting))  # type: ignore[arg-type]
    lean.write_many(frames("secret"))
    assert pair.counting.writes == [wire("secret")]
    assert await read_exactly(pair.peer, len(wire("secret"))) == wire("secret")


async def test_a_peer_that_is_gone_is_met_by_the_transport(pair: Pair) -> None:
    lean = LeanDirectTransport(FakeProtocol(pair.counting))  # type: ignore[arg-type]
    pair.peer.close()
    for _ in range(3):  # the first write may still be taken by the kernel
        lean.write_many(frames("x" * 1000))
        await asyncio.sleep(0.01)
    # The broken pipe went to the transport, which closes the connection instead of raising.
    assert pair.counting.writes
    assert pair.counting.is_closing()


def test_under_uvloop_the_server_loop_too() -> None:
    # uvicorn serves on uvloop when it is installed (it is a dependency): its transport keeps the
    # GIL through its own write, which is what this path is for.
    import uvloop  # uvicorn[standard], a dependency

    async def scenario() -> None:
        ours, peer = socket.socketpair()
        peer.setblocking(False)
        transport, _ = await asyncio.get_running_loop().connect_accepted_socket(
            asyncio.Protocol, ours
        )
        counting = Counting(transport)
        lean = LeanDirectTransport(FakeProtocol(counting))  # type: ignore[arg-type]
        text = "".join(chr(65 + i % 26) for i in range(4 * 1024 * 1024))
        lean.write_many(frames("small"))
        lean.write_many(frames(text))
        lean.write_many(frames("tail"))
        assert len(counting.writes) == 2 and counting.writes[1] == wire("tail")
        expected = wire("small", text, "tail")
        assert await read_exactly(peer, len(expected)) == expected
        transport.close()
        peer.close()

    uvloop.run(scenario())


@dataclass
class GatedProtocol:
    """``FakeProtocol`` with the flow-control and open state ``write_now`` reads."""

    transport: Any
    is_paused: bool = False
    is_open: bool = True


async def test_write_now_writes_one_frame_to_the_socket_and_behind_what_the_transport_holds(
    pair: Pair,
) -> None:
    lean = LeanDirectTransport(GatedProtocol(pair.counting))  # type: ignore[arg-type]
    assert lean.write_now(Frame(1, "first"))
    assert pair.counting.writes == []  # straight to the socket
    text = "".join(chr(65 + i % 26) for i in range(4 * 1024 * 1024))
    lean.write_many(frames(text))  # the socket takes part of it, the transport the rest
    assert lean.write_now(Frame(1, "tail"))
    assert pair.counting.writes[-1] == wire("tail")  # queued behind, not written around
    expected = wire("first", text, "tail")
    assert await read_exactly(pair.peer, len(expected)) == expected


async def test_write_now_writes_nothing_while_paused_or_once_not_open(pair: Pair) -> None:
    protocol = GatedProtocol(pair.counting, is_paused=True)
    lean = LeanDirectTransport(protocol)  # type: ignore[arg-type]
    assert not lean.write_now(Frame(1, "paused"))
    protocol.is_paused, protocol.is_open = False, False
    assert not lean.write_now(Frame(1, "closed"))
    assert pair.counting.writes == []
    with pytest.raises(BlockingIOError):
        pair.peer.recv(1)
