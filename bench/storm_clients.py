"""Lean load generator for bench/reconnect_storm.py: many raw WebSocket clients in one process.

Why: the `websockets` client costs a few hundred µs per handshake and tens of µs per frame
(a task, a frame object, a decode, a queue); 5,000 of them receiving a million frames on the
server's own two cores measured the generator, not the server. Here each client is an
``asyncio.Protocol`` on a raw socket: a fixed upgrade request, a pre-masked join, and a frame
parser that reads the header and finds ``"offset":`` in the payload with ``bytes.find``.
The parent (``reconnect_storm.py --generator lean``) runs several of these processes.

Every client still checks that it really is current, from its own frames:

- resume: the ``resume`` frame's ``missed`` count of text frames follows, the last of them
  carrying the storm's last change (``target``) as its offset, and the ``resume`` frame's
  offset is not below it (frames inside a replay are counted, not parsed, except by the
  verifying clients below, which also check that every offset is greater than the one before);
- batched resume (``resume-compact``: the missed messages inside the ``resume`` frame, protocol.md
  section 3): every client parses it, checks the entries' offsets increase from its position
  and end at ``target``;
- sync: a ``sync`` frame whose offset is at least ``target``;
- every ``--verify-every``-th client also keeps the group's items (from its first sync, then
  every replayed change, ``patch`` ops applied with ``surge.streams.ops.apply_ops``) and reports a
  digest of them, which the parent compares with the store's final state.

Bytes: the WebSocket payload bytes received after ``after`` (what the server sent, without frame
headers, as the `websockets` generator counted) and the wire bytes (headers and handshakes too).

Protocol with the parent, one JSON object a line: the parent writes ``{"cmd": "target",
"offset": N}`` (from now on count bytes and wait for N) and ``{"cmd": "stop"}``; the worker writes
``{"event": "synced"}`` once every client synced before the outage and ``{"event": "current",
...}`` with its numbers once every client is current after it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import random
import struct
import sys
import time
from typing import Any

import orjson

from surge.streams.ops import apply_ops

_OFFSET = b'"offset":'
_KIND = b'"event":{"type":"'
_COMPACT = b'"patch":['
_REPLAY = b'"replay":['


def _op3(op: list[Any]) -> dict[str, Any]:
    key = "by" if op[0] in ("increment", "decrement") else "value"
    return {"type": op[0], "path": op[1], key: op[2]}


_VERBOSE = {2: lambda op: {"type": op[0], "path": op[1]}, 3: _op3}


def masked_text(payload: bytes) -> bytes:
    """A client text frame (masked, as RFC 6455 requires of clients)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = bytes((0x81, 0x80 | size))
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
    body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return header + mask + body


def _int_after(payload: bytes, key: bytes, start: int = 0) -> int | None:
    at = payload.find(key, start)
    if at < 0:
        return None
    at += len(key)
    end = at
    while payload[end] in b"0123456789":
        end += 1
    return int(payload[at:end])


class Shared:
    """What the clients of one worker share: the target and the counters."""

    def __init__(self, count: int) -> None:
        self.target: int | None = None  # the storm's last change, once the parent said it
        self.synced = 0
        self.current = 0
        self.count = count
        self.all_synced = asyncio.Event()
        self.all_current = asyncio.Event()


class Client(asyncio.Protocol):
    """One raw WebSocket subscriber of the group, reconnecting on its own."""

    def __init__(self, shared: Shared, host: str, port: int, mode: str, verify: bool) -> None:
        self.shared, self.host, self.port, self.mode = shared, host, port, mode
        self.verify = verify
        self.items: dict[str, dict[str, Any]] = {}
        self.position: tuple[int, str] | None = None  # (offset, epoch) of the last frame
        self.has_synced = False
        self.current_at: float | None = None
        self.payload_bytes = 0
        self.wire_bytes = 0
        self.frames = 0
        self.problems: list[str] = []
        self.closed = asyncio.Event()
        self._buf = bytearray()
        self._upgraded = False
        self._missed = -1  # frames of the replay still to come (-1: none announced)
        self._since = -1
        self._transport: asyncio.Transport | None = None

    # -- the connection ------------------------------------------------------------------
    def _request(self) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        self._accept = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        )
        return (
            f"GET / HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

    def _join(self) -> bytes:
        data: dict[str, Any] = {"streamName": "todo", "groupId": "inbox", "subscriptionId": "s"}
        if self.mode != "sync" and self.position is not None:
            data["since"] = {"offset": self.position[0], "epoch": self.position[1]}
            self._since = self.position[0]
        if self.mode in ("resume-deltas", "resume-compact"):
            data["deltas"] = True
        if self.mode == "resume-compact":
            data["compact"] = True
        return masked_text(orjson.dumps({"type": "join", "data": data}))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._request())

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.closed.set()

    def data_received(self, data: bytes) -> None:
        if self.shared.target is not None and self.current_at is None:
            self.wire_bytes += len(data)
        buf = self._buf
        buf += data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            response = bytes(buf[:end])
            del buf[: end + 4]
            if not response.startswith(b"HTTP/1.1 101") or self._accept not in response:
                self._drop()
                return
            self._upgraded = True
            assert self._transport is not None
            self._transport.write(self._join())
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1] & 0x7F
            head = 2
            if b1 == 126:
                if size - pos < 4:
                    break
                b1 = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif b1 == 127:
                if size - pos < 10:
                    break
                b1 = struct.unpack_from("!Q", buf, pos + 2)[0]
                head = 10
            if size - pos < head + b1:
                break
            if self._missed > 1 and not self.verify and b0 == 0x81:
                # Inside a replay, before its last frame: counted, not parsed (the last one is,
                # and the count must come out right; verifying clients parse every frame).
                self._missed -= 1
                pos += head + b1
                if self.shared.target is not None and self.current_at is None:
                    self.payload_bytes += b1
                    self.frames += 1
                continue
            payload = bytes(buf[pos + head : pos + head + b1])
            pos += head + b1
            opcode = b0 & 0x0F
            if opcode == 1:
                self._text(payload)
            elif opcode == 9 and self._transport is not None:  # ping: pong
                self._transport.write(bytes((0x8A, 0x80)) + os.urandom(4))
            elif opcode == 8:
                self._drop()
                break
        del buf[:pos]

    def _drop(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- frames --------------------------------------------------------------------------
    def _text(self, payload: bytes) -> None:
        shared = self.shared
        counting = shared.target is not None and self.current_at is None
        if counting:
            self.payload_bytes += len(payload)
            self.frames += 1
        at = payload.find(_KIND)
        if at < 0:
            if payload.find(_COMPACT) < 0:
                self.problems.append("a frame without an event type")
                return
            self._compact(orjson.loads(payload)["patch"])
            return
        at += len(_KIND)
        kind = payload[at : payload.index(b'"', at)]
        offset = _int_after(payload, _OFFSET)
        if kind == b"resume" and payload.find(_REPLAY) >= 0:
            self._batched_resume(orjson.loads(payload), counting)
            return
        if kind == b"resume":
            missed = _int_after(payload, b'"missed":')
            self._missed = missed if missed is not None else -1
            self._resume_offset = offset
            if not counting:
                self.problems.append("a resume before the outage")
            elif self._missed == 0:
                self._check_current(None)
            return
        if kind == b"sync":
            if self.verify:
                frame = orjson.loads(payload)
                self.items = {item["id"]: item for item in frame["event"]["data"]}
            self._at(offset, payload)
            if not self.has_synced:
                self.has_synced = True
                shared.synced += 1
                if shared.synced == shared.count:
                    shared.all_synced.set()
            if counting and offset is not None and offset >= (shared.target or 0):
                self._current()
            return
        if self.verify:
            self._apply(kind, payload)
        if offset is not None:
            if self.position is not None and offset <= self.position[0]:
                self.problems.append(f"offset {offset} after {self.position[0]}")
            self._at(offset, payload)
        self._replayed(offset)

    def _batched_resume(self, frame: dict[str, Any], counting: bool) -> None:
        """A resume carrying the missed messages (protocol.md section 3, the compact form):
        ``"replay": [[offset, kind, id, payload], ...]``, parsed by every client (one frame)."""
        self._resume_offset = frame["offset"]
        if not counting:
            self.problems.append("a resume before the outage")
        epoch = frame["epoch"]
        entries = frame["event"]["data"]["replay"]
        last = None
        for offset, kind, item_id, payload in entries:
            if self.position is not None and offset <= self.position[0]:
                self.problems.append(f"offset {offset} after {self.position[0]}")
            self.position = (offset, epoch)
            last = offset
            if not self.verify:
                continue
            if kind in ("create", "update"):
                self.items[item_id] = payload
            elif kind == "delete":
                self.items.pop(item_id, None)
            elif kind == "patch" and item_id in self.items:
                verbose = [_VERBOSE[len(op)](op) for op in payload]
                self.items[item_id] = apply_ops(dict(self.items[item_id]), verbose, item_id)
        self._check_current(last)

    def _compact(self, patch: list[Any]) -> None:
        """A compact patch (protocol.md section 4): [stream, group, id, offset, epoch, ops]."""
        _, _, item_id, offset, epoch, ops = patch
        if self.verify and item_id in self.items:
            verbose = [_VERBOSE[len(op)](op) for op in ops]
            self.items[item_id] = apply_ops(dict(self.items[item_id]), verbose, item_id)
        if offset is not None:
            if self.position is not None and offset <= self.position[0]:
                self.problems.append(f"offset {offset} after {self.position[0]}")
            self.position = (offset, epoch)
        self._replayed(offset)

    def _replayed(self, offset: int | None) -> None:
        if self._missed > 0:
            self._missed -= 1
            if self._missed == 0:
                self._check_current(offset)

    def _at(self, offset: int | None, payload: bytes) -> None:
        if offset is None:
            return
        if self.position is None or self.position[0] != offset:
            at = payload.find(b'"epoch":"') + 9
            self.position = (offset, payload[at : payload.index(b'"', at)].decode())

    def _apply(self, kind: bytes, payload: bytes) -> None:
        frame = orjson.loads(payload)
        event = frame["event"]
        item_id = frame.get("id")
        if kind in (b"create", b"update"):
            self.items[event["data"]["id"]] = event["data"]
        elif kind == b"delete":
            self.items.pop(event["data"]["id"], None)
        elif kind == b"patch" and item_id in self.items:
            self.items[item_id] = apply_ops(
                dict(self.items[item_id]), event["data"]["ops"], item_id
            )

    def _check_current(self, last: int | None) -> None:
        target = self.shared.target or 0
        resumed_to = getattr(self, "_resume_offset", None)
        if last is not None and last != target:
            self.problems.append(f"replay ended at {last}, not at the last change {target}")
        if resumed_to is None or resumed_to < target:
            self.problems.append(f"resume frame at {resumed_to}, below {target}")
        if last is None and self._since < target:
            self.problems.append(f"nothing replayed since {self._since}, target {target}")
        self._current()

    def _current(self) -> None:
        if self.current_at is None:
            self.current_at = time.monotonic()
            shared = self.shared
            shared.current += 1
            if shared.current == shared.count:
                shared.all_current.set()

    def digest(self) -> str:
        return hashlib.sha256(orjson.dumps(self.items, option=orjson.OPT_SORT_KEYS)).hexdigest()

    async def run(self, connects: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.closed.clear()
            self._buf.clear()
            self._upgraded = False
            self._missed = -1
            try:
                async with connects:
                    await asyncio.wait_for(
                        loop.create_connection(lambda: self, self.host, self.port), 10
                    )
                await self.closed.wait()
            except (OSError, TimeoutError):
                pass
            await asyncio.sleep(random.uniform(0.1, 0.3))


async def worker(args: argparse.Namespace) -> None:
    shared = Shared(args.clients)
    clients = [
        Client(shared, args.host, args.port, args.mode, (args.first + i) % args.verify_every == 0)
        for i in range(args.clients)
    ]
    connects = asyncio.Semaphore(args.connects)
    tasks = [asyncio.create_task(c.run(connects)) for c in clients]
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(message: dict[str, Any]) -> None:
        sys.stdout.write(orjson.dumps(message).decode() + "\n")
        sys.stdout.flush()

    await shared.all_synced.wait()
    say({"event": "synced"})
    command = orjson.loads(await reader.readline())
    shared.target = command["offset"]
    await shared.all_current.wait()
    problems = [p for c in clients for p in c.problems]
    say(
        {
            "event": "current",
            "times": [c.current_at for c in clients],
            "payload_bytes": sum(c.payload_bytes for c in clients),
            "wire_bytes": sum(c.wire_bytes for c in clients),
            "frames": sum(c.frames for c in clients),
            "digests": [c.digest() for c in clients if c.verify],
            "problems": problems[:20],
            "problem_count": len(problems),
        }
    )
    await reader.readline()  # stop
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--first", type=int, default=0, help="index of this worker's first client")
    parser.add_argument(
        "--mode", choices=["sync", "resume", "resume-deltas", "resume-compact"], required=True
    )
    parser.add_argument("--verify-every", type=int, default=50)
    parser.add_argument("--connects", type=int, default=250, help="handshakes in flight")
    args = parser.parse_args()
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(worker(args))


if __name__ == "__main__":
    main()
