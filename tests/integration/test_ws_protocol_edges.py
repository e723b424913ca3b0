"""Edge cases of Surge's own WebSocket protocol (``surge.server.ws_protocol``) under real uvicorn,
on raw sockets, with plain ASGI apps: the closing handshake when the peer's close is already read,
an app's send after the peer closed, the handshake's header forms, and close reasons."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn

from surge.server import ws_protocol
from surge.server.protocols import AFTER_CLOSE_BYTES, PARSE_SLICE, SurgeHttpProtocol
from surge.server.serve import bind_socket
from surge.server.ws_protocol import LeanWebSocketProtocol, accept_key

KEY = base64.b64encode(os.urandom(16))
Asgi = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(app: Asgi) -> AsyncIterator[int]:
    """Serve a plain ASGI app with Surge's HTTP and WebSocket protocols; yields the port."""
    sock = bind_socket("127.0.0.1", 0)
    config = uvicorn.Config(
        app,
        http=SurgeHttpProtocol,
        ws=LeanWebSocketProtocol,
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110  # uvicorn offers no event
                await asyncio.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


def frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (payloads under 126 bytes)."""
    assert len(payload) < 126
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + masked


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    async with asyncio.timeout(10):
        b0, b1 = await reader.readexactly(2)
        size = b1 & 0x7F
        if size == 126:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await reader.readexactly(8))[0]
        return b0 & 0x0F, await reader.readexactly(size)


async def upgrade(
    port: int, head: bytes | None = None
) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if head is None:
        head = (
            b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    writer.write(head)
    async with asyncio.timeout(10):
        answer = await reader.readuntil(b"\r\n\r\n")
    return answer, reader, writer


async def test_a_close_reply_read_before_the_apps_close_ends_the_connection_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The peer's close was read (behind a message the app never takes) when the app closes: it
    # completes the closing handshake now, not after CLOSE_TIMEOUT.
    monkeypatch.setattr(ws_protocol, "CLOSE_TIMEOUT", 3600.0)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        assert (await receive())["text"] == "a"
        await send({"type": "websocket.close", "code": 1000})

    async with serving(app) as port:
        _, reader, writer = await upgrade(port)
        code = (1000).to_bytes(2, "big")
        writer.write(frame(1, b"a") + frame(1, b"b") + frame(8, code))  # one read
        assert await read_frame(reader) == (8, code)
        async with asyncio.timeout(30):
            assert await reader.read() == b""  # the server closed the TCP connection
        writer.close()


async def test_a_close_reply_after_a_long_read_is_parsed_while_a_message_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # After the app's close, a read over PARSE_SLICE (pings, then the close reply) is parsed in
    # slices even though a message the app will never take still waits.
    monkeypatch.setattr(ws_protocol, "CLOSE_TIMEOUT", 3600.0)
    closed = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        assert (await receive())["text"] == "a"  # "b" is parsed and waits, never taken
        await send({"type": "websocket.close", "code": 1000})
        closed.set()

    async with serving(app) as port:
        _, reader, writer = await upgrade(port)
        writer.write(frame(1, b"a") + frame(1, b"b"))
        code = (1000).to_bytes(2, "big")
        assert await read_frame(reader) == (8, code)
        pings = frame(9, b"p" * 125) * (2 * PARSE_SLICE // 131)
        assert PARSE_SLICE < len(pings) < AFTER_CLOSE_BYTES
        writer.write(pings + frame(8, code))
        async with asyncio.timeout(30):
            assert await reader.read() == b""
        writer.close()


async def test_a_send_after_the_peers_close_raises_client_disconnected() -> None:
    # As under uvicorn's websockets protocol: the app learns the client is gone (an OSError,
    # which Starlette turns into WebSocketDisconnect), not a RuntimeError and a traceback.
    outcome: list[BaseException | None] = []
    done = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        message = await receive()
        assert message == {"type": "websocket.disconnect", "code": 4000, "reason": "bye"}
        try:
            # The same step as the close's delivery: before the transport reports it lost.
            await send({"type": "websocket.send", "text": "late"})
        except BaseException as exc:  # what it raises is the test
            outcome.append(exc)
        else:
            outcome.append(None)
        done.set()

    async with serving(app) as port:
        _, reader, writer = await upgrade(port)
        writer.write(frame(8, (4000).to_bytes(2, "big") + b"bye"))
        assert await read_frame(reader) == (8, (4000).to_bytes(2, "big") + b"bye")
        async with asyncio.timeout(10):
            await done.wait()
        writer.close()
    assert len(outcome) == 1 and isinstance(outcome[0], OSError), outcome


async def test_the_handshake_reads_headers_in_any_case_and_connection_token_lists() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await receive()

    async with serving(app) as port:
        head = (
            b"GET / HTTP/1.1\r\nHost: localhost\r\nupgrade: WebSocket\r\n"
            b"CONNECTION: keep-alive, Upgrade\r\nsec-websocket-KEY: " + KEY + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        answer, _, writer = await upgrade(port, head)
        lines = answer.decode().split("\r\n")
        assert lines[0] == "HTTP/1.1 101 Switching Protocols"
        assert f"Sec-WebSocket-Accept: {accept_key(KEY).decode()}" in lines
        writer.close()


async def test_a_refused_method_answers_405_with_allow() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise AssertionError("the app must not be called")

    async with serving(app) as port:
        head = (
            b"POST / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        answer, _, writer = await upgrade(port, head)
        lines = answer.decode().split("\r\n")
        assert lines[0].startswith("HTTP/1.1 405 ")
        assert "Allow: GET" in lines  # RFC 9110 15.5.6: a 405 names the allowed methods
        writer.close()


async def test_a_long_close_reason_is_cut_on_a_character_boundary() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": "é" * 100})
        await receive()

    async with serving(app) as port:
        _, reader, writer = await upgrade(port)
        opcode, payload = await read_frame(reader)
        assert opcode == 8 and len(payload) <= 125
        reason = payload[2:].decode()  # RFC 6455 7.4: a close reason is valid UTF-8
        assert reason and set(reason) == {"é"}
        writer.close()


async def test_messages_read_before_the_peers_fin_all_reach_the_app() -> None:
    # Reading stays paused while a message waits, so the FIN is read only after them.
    got: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            got.append(message)
            if message["type"] == "websocket.disconnect":
                break
        done.set()

    async with serving(app) as port:
        _, _, writer = await upgrade(port)
        code = (4000).to_bytes(2, "big")
        writer.write(frame(1, b"a") + frame(1, b"b") + frame(8, code))
        writer.write_eof()  # the peer is done sending: the bytes before its FIN were all sent
        async with asyncio.timeout(10):
            await done.wait()
        writer.close()
    assert [m.get("text") for m in got[:2]] == ["a", "b"]
    assert got[-1]["code"] == 4000


def big_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One masked client frame of any size."""
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | size])
    elif size < 1 << 16:
        head = bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head = bytes([0x80 | 127]) + struct.pack("!Q", size)
    return bytes([(0x80 if fin else 0) | opcode]) + head + key + masked


async def test_frames_arriving_in_small_pieces_are_reassembled_exactly() -> None:
    # Frames cut into 97-byte pieces, written with pauses (mostly one read each), are parsed
    # from a buffer grown in place: the fragmented message and the frame after it arrive intact
    # and in order.
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})

    text = "".join(chr(0x41 + i % 26) + "é" for i in range(2000))  # two-byte characters too
    data = big_frame(1, text[:3000].encode(), fin=False) + big_frame(0, text[3000:].encode())
    data += frame(1, b"after")
    async with serving(app) as port:
        _, reader, writer = await upgrade(port)
        pieces = [data[i : i + 97] for i in range(0, len(data), 97)]
        for index, piece in enumerate(pieces):
            writer.write(piece)
            await writer.drain()
            if index % 4 == 0:
                await asyncio.sleep(0.001)
        assert await read_frame(reader) == (1, text.encode())
        assert await read_frame(reader) == (1, b"after")
        writer.close()


async def test_a_closed_connection_whose_peer_stopped_reading_is_aborted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The peer stops reading while the app streams to it (flow control holds the app's sends),
    # then sends an invalid frame: the server closes with 1002, but the close cannot be written.
    # After CLOSE_TIMEOUT the connection is aborted, so the socket, its buffer and the app's
    # blocked send are released instead of waiting for a reader that never comes.
    monkeypatch.setattr(ws_protocol, "CLOSE_TIMEOUT", 0.2)
    gone = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        try:
            for _ in range(256):  # 16 MiB: more than the kernel's buffers hold
                await send({"type": "websocket.send", "bytes": b"x" * 65536})
        except OSError:  # ClientDisconnected
            gone.set()

    async with serving(app) as port:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        async with asyncio.timeout(10):
            await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.3)  # the app fills the buffers; this side reads nothing more
        writer.write(bytes([0x81, 0x01]) + b"x")  # unmasked: a protocol error
        async with asyncio.timeout(10):
            await gone.wait()
        writer.close()


@pytest.mark.parametrize("code", [1005, 1006, 1015, 999, 2000, 5000, "1000"])
async def test_an_app_close_code_an_endpoint_may_not_send_is_refused(code: Any) -> None:
    # RFC 6455 7.4: 1005, 1006 and 1015 are never sent; nothing outside 1000-4999 either.
    raised: list[BaseException] = []
    done = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        try:
            await send({"type": "websocket.close", "code": code})
        except RuntimeError as exc:
            raised.append(exc)
            await send({"type": "websocket.close", "code": 1011})  # the app can still close
        done.set()

    async with serving(app) as port:
        _, reader, writer = await upgrade(port)
        async with asyncio.timeout(10):
            await done.wait()
        # Nothing of the refused close reached the peer: the frame it gets is the app's 1011.
        assert await read_frame(reader) == (8, (1011).to_bytes(2, "big"))
        writer.close()
    assert len(raised) == 1 and "Invalid close code" in str(raised[0])


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket.accept", "headers": [(b"x-a", b"1\r\nx-injected: 1")]},
        {"type": "websocket.accept", "headers": [(b"x-a\n", b"1")]},
        {"type": "websocket.accept", "headers": [("x-a", "1")]},
        {"type": "websocket.accept", "subprotocol": "chat\r\nx-injected: 1"},
        {"type": "websocket.http.response.start", "status": 403, "headers": [(b"x", b"\r\n")]},
    ],
)
async def test_an_app_header_that_would_split_the_answer_is_refused(
    message: dict[str, Any],
) -> None:
    raised: list[BaseException] = []
    done = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        try:
            await send(message)
        except RuntimeError as exc:
            raised.append(exc)
            await send({"type": "websocket.close"})  # refuse the upgrade instead
        done.set()

    async with serving(app) as port:
        answer, _, writer = await upgrade(port)
        async with asyncio.timeout(10):
            await done.wait()
        assert answer.startswith(b"HTTP/1.1 403 ")  # the app's fallback, nothing injected
        assert b"x-injected" not in answer.lower()
        writer.close()
    assert len(raised) == 1 and "Invalid header" in str(raised[0])


async def test_an_app_subprotocol_and_headers_are_written_in_the_answer() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": "chat", "headers": [(b"x-a", b"1")]})
        await receive()

    async with serving(app) as port:
        answer, _, writer = await upgrade(port)
        assert answer.startswith(b"HTTP/1.1 101 ")
        assert b"\r\nSec-WebSocket-Protocol: chat\r\n" in answer
        assert b"\r\nx-a: 1\r\n" in answer
        writer.close()
