"""Surge's own WebSocket protocol (``surge.server.ws_protocol``) under real uvicorn, on raw
sockets: the handshake, RFC 6455 framing rules, the closing handshake, and the fast path."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from websockets.asyncio.client import connect

from surge import Config, Limits, StreamConfig, create_app
from surge.server.protocols import SurgeWebSocketProtocol
from surge.server.serve import uvicorn_config
from surge.server.transport import LeanDirectTransport
from surge.server.ws_protocol import (
    LeanWebSocketProtocol,
    _Keepalive,
    _serves_detached,
    accept_key,
)
from surge.testing import LiveServer, live_server

from .streamclient import wait_until

KEY = base64.b64encode(os.urandom(16))


@pytest.fixture
async def server() -> AsyncIterator[LiveServer]:
    app = create_app(streams=[StreamConfig(name="todo", schema={"type": "object"})])
    async with live_server(app) as srv:
        yield srv


class Raw:
    """A hand-written WebSocket client: what it sends is exactly what the test says."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> None:
        head = bytes([(0x80 if fin else 0) | opcode])
        size = len(payload)
        bit = 0x80 if mask else 0
        if size < 126:
            head += bytes([bit | size])
        else:
            head += bytes([bit | 126]) + struct.pack("!H", size)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            head += key
        self.writer.write(head + payload)

    async def frame(self) -> tuple[int, bytes]:
        """The next server frame (opcode, payload); server frames are never masked."""
        async with asyncio.timeout(10):
            b0, b1 = await self.reader.readexactly(2)
            assert not b1 & 0x80
            size = b1 & 0x7F
            if size == 126:
                size = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            return b0 & 0x0F, await self.reader.readexactly(size)

    async def close_code(self) -> int:
        """Read until the server's close frame; its code."""
        while True:
            opcode, payload = await self.frame()
            if opcode == 8:
                return int.from_bytes(payload[:2], "big")


async def handshake(
    srv: LiveServer, *, key: bytes = KEY, version: bytes = b"13", extra: bytes = b""
) -> tuple[bytes, Raw]:
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    writer.write(
        b"GET /?x=1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: "
        + key
        + b"\r\nSec-WebSocket-Version: "
        + version
        + b"\r\n"
        + extra
        + b"\r\n"
    )
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
    return head, Raw(reader, writer)


def join(group: str = "g") -> bytes:
    data = {"streamName": "todo", "groupId": group, "subscriptionId": "s1"}
    return orjson.dumps({"type": "join", "data": data})


def test_uvicorn_config_serves_surges_protocol_unless_compression_is_on() -> None:
    app = create_app(streams=[StreamConfig(name="todo", schema={"type": "object"})])
    assert uvicorn_config(app).ws is LeanWebSocketProtocol
    deflate = create_app(
        streams=[StreamConfig(name="todo", schema={"type": "object"})],
        config=Config(limits=Limits(compression=True)),
    )
    assert uvicorn_config(deflate).ws is SurgeWebSocketProtocol


async def test_fan_out_takes_the_lean_direct_transport(server: LiveServer) -> None:
    # Fails if the upgrade stops reaching Surge's protocol (uvicorn's class, or the ASGI path).
    async with connect(server.ws_url) as ws:
        await ws.send(join().decode())
        sync = orjson.loads(await ws.recv())
        assert sync["event"]["type"] == "sync"
        (conn,) = server.app.runtime.connections
        assert isinstance(conn.outbox._transport, LeanDirectTransport)
        assert conn.outbox.transport_kind == "direct"


def _connection_tasks() -> list[str]:
    """The running tasks that belong to a WebSocket connection (app call, reader, writer)."""
    names = []
    for task in asyncio.all_tasks():
        name = task.get_coro().__qualname__  # type: ignore[union-attr]
        if name.endswith(("_run_asgi", "_read_waiting", "_write")):
            names.append(name)
    return names


async def test_an_idle_subscribed_connection_has_no_task_and_no_scope(server: LiveServer) -> None:
    # Fails if the connection stays on the ASGI call (its task, coroutines and scope).
    async with connect(server.ws_url) as ws:
        await ws.send(join().decode())
        assert orjson.loads(await ws.recv())["event"]["type"] == "sync"
        await wait_until(lambda: not _connection_tasks())
        (conn,) = server.app.runtime.connections
        transport = conn.outbox._transport
        assert isinstance(transport, LeanDirectTransport)
        protocol = transport._protocol
        assert protocol.scope == {} and not protocol.can_detach
        # Still served: a change reaches it, a second join is read and synced.
        await server.app.runtime.streams.todo.set("g", "a", {"n": 1})
        assert orjson.loads(await ws.recv())["event"]["type"] == "create"
        await ws.send(join("h").decode().replace("s1", "s2"))
        assert orjson.loads(await ws.recv())["event"]["type"] == "sync"
        await wait_until(lambda: not _connection_tasks())
    # The peer's close ends it as the end of the app's call did.
    await wait_until(lambda: not server.app.runtime.connections)


def test_only_surges_app_maybe_under_proxy_headers_serves_detached_connections() -> None:
    # Other middleware may need the app's call to last as long as the connection.
    app = create_app(streams=[StreamConfig(name="todo", schema={"type": "object"})])
    config = uvicorn_config(app, proxy_headers=True)
    config.load()
    assert isinstance(config.loaded_app, ProxyHeadersMiddleware)
    assert _serves_detached(config.loaded_app)

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        await app(scope, receive, send)

    other = uvicorn_config(app)
    other.app = wrapped
    other.load()
    assert not _serves_detached(other.loaded_app)


async def test_the_101_answers_the_key_and_names_the_first_offered_subprotocol(
    server: LiveServer,
) -> None:
    head, raw = await handshake(server, extra=b"Sec-WebSocket-Protocol: a, b\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 101 Switching Protocols"
    assert f"Sec-WebSocket-Accept: {accept_key(KEY).decode()}" in lines
    assert "Sec-WebSocket-Protocol: a" in lines
    assert not any(line.lower().startswith("sec-websocket-extensions") for line in lines)
    raw.writer.close()


@pytest.mark.parametrize(
    ("key", "version", "status"),
    [(b"c2hvcnQ=", b"13", b"400"), (KEY, b"8", b"426")],
)
async def test_a_bad_key_or_version_gets_an_http_error_and_no_app_call(
    server: LiveServer, key: bytes, version: bytes, status: bytes
) -> None:
    head, raw = await handshake(server, key=key, version=version)
    assert head.split(b" ")[1] == status
    assert not server.app.runtime.connections
    raw.writer.close()


async def test_pings_are_answered_and_a_fragmented_join_is_one_message(
    server: LiveServer,
) -> None:
    _, raw = await handshake(server)
    raw.send(9, b"hello")
    assert await raw.frame() == (10, b"hello")
    message = join()
    raw.send(1, message[:5], fin=False)
    raw.send(9, b"between")  # control frames may come between fragments
    raw.send(0, message[5:10], fin=False)
    raw.send(0, message[10:])
    assert await raw.frame() == (10, b"between")
    opcode, payload = await raw.frame()
    assert opcode == 1 and orjson.loads(payload)["event"]["type"] == "sync"
    raw.send(8, (1000).to_bytes(2, "big") + b"bye")
    assert await raw.frame() == (8, (1000).to_bytes(2, "big") + b"bye")  # echoed
    raw.writer.close()


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([(1, b"{}", True, False)], 1002),  # unmasked client frame
        ([(0, b"x", True, True)], 1002),  # continuation without a message
        ([(1, b"a", False, True), (1, b"b", True, True)], 1002),  # new message mid-fragment
        ([(3, b"", True, True)], 1002),  # reserved opcode
        ([(9, b"x" * 126, True, True)], 1002),  # control frame over 125 bytes
        ([(8, (999).to_bytes(2, "big"), True, True)], 1002),  # invalid close code
        ([(1, b"\xff\xfe", True, True)], 1007),  # invalid UTF-8
        ([(8, (1000).to_bytes(2, "big") + b"\xff", True, True)], 1007),
    ],
)
async def test_protocol_errors_close_with_their_code(
    server: LiveServer, frames: list[tuple[int, bytes, bool, bool]], code: int
) -> None:
    _, raw = await handshake(server)
    for opcode, payload, fin, mask in frames:
        raw.send(opcode, payload, fin=fin, mask=mask)
    assert await raw.close_code() == code
    raw.writer.close()


async def test_a_message_over_the_cap_closes_1009_from_its_header_alone(
    server: LiveServer,
) -> None:
    limit = server.app.runtime.config.limits.max_frame_bytes
    _, raw = await handshake(server)
    # Only the header of a frame one byte over the cap: the server must not wait for its body.
    raw.writer.write(bytes([0x81, 0x80 | 127]) + struct.pack("!Q", limit + 1) + os.urandom(4))
    assert await raw.close_code() == 1009
    raw.writer.close()


async def test_a_64_bit_length_with_its_top_bit_set_is_a_protocol_error(
    server: LiveServer,
) -> None:
    # RFC 6455 5.2: not a frame that is too big (1009), a frame that is malformed (1002).
    _, raw = await handshake(server)
    raw.writer.write(bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 1 << 63) + os.urandom(4))
    assert await raw.close_code() == 1002
    raw.writer.close()


async def test_keepalive_wheel_pings_then_times_out_a_silent_peer() -> None:
    calls: list[str] = []
    twice = asyncio.Event()

    class Peer:
        keepalive_slot = -1

        def keepalive_due(self, wheel: _Keepalive) -> None:
            calls.append("due")
            if len(calls) == 1:
                wheel.enroll(self, wheel.timeout or 0)  # type: ignore[arg-type]
            else:
                twice.set()

    wheel = _Keepalive(1.0, 1.0)
    peer: Any = Peer()
    wheel.enroll(peer, 1.0)
    async with asyncio.timeout(10):
        await twice.wait()
    assert peer.keepalive_slot == -1 and wheel._count == 0
    wheel.enroll(peer, 1.0)
    wheel.remove(peer)  # removed before it is due: never called
    assert wheel._count == 0 and not any(wheel._buckets)
