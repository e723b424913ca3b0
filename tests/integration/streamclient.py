"""Helpers of the integration tests: a JSON stream client, a frame barrier, the npm client's state.

The barrier is how these tests assert that something was *not* delivered without sleeping: the
server handles one connection's frames strictly in order and answers each join before reading the
next frame, and a server-side ``set``/``send`` puts its frame into every outbox before it returns.
So after ``await stream.set(...)``, a fresh join on a private group is answered *after* every frame
that change produced for this connection; whatever arrives before that answer is exactly what the
connection got.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

__all__ = [
    "BARRIER_GROUP",
    "RECV_TIMEOUT",
    "NpmGroupState",
    "StreamClient",
    "StrictGroupState",
    "connect",
    "is_error_event",
    "raw_upgrade",
    "wait_until",
]

RECV_TIMEOUT = 5.0
BARRIER_GROUP = "__barrier__"
BARRIER_SUBSCRIPTION = "__barrier__"

Frame = dict[str, Any]


class StreamClient:
    """A WebSocket speaking the stream protocol, with bounded receives."""

    def __init__(self, ws: ClientConnection, stream: str = "todo") -> None:
        self.ws = ws
        self.stream = stream
        self._count = 0

    async def send_json(self, message: Any) -> None:
        """Send one text frame holding ``message`` as JSON."""
        await self.ws.send(json.dumps(message))

    def _data(
        self, group: str, id: str | None, subscription_id: str | None, stream: str | None
    ) -> dict[str, Any]:
        if subscription_id is None:
            self._count += 1
            subscription_id = f"sub-{self._count}"
        data: dict[str, Any] = {"streamName": stream or self.stream, "groupId": group}
        if id is not None:
            data["id"] = id
        data["subscriptionId"] = subscription_id
        return data

    async def join(
        self,
        group: str,
        id: str | None = None,
        *,
        subscription_id: str | None = None,
        stream: str | None = None,
    ) -> dict[str, Any]:
        """Send a join; return its ``data`` object (the same object a leave must send)."""
        data = self._data(group, id, subscription_id, stream)
        await self.send_json({"type": "join", "data": data})
        return data

    async def leave(self, data: dict[str, Any]) -> None:
        """Send a leave with the join's data object."""
        await self.send_json({"type": "leave", "data": data})

    async def recv(self, within: float = RECV_TIMEOUT) -> Frame:
        """Receive one frame (fails the test after ``within`` seconds)."""
        async with asyncio.timeout(within):
            raw = await self.ws.recv()
        assert isinstance(raw, str), f"expected a text frame, got {raw!r}"
        frame: Frame = json.loads(raw)
        return frame

    async def join_synced(
        self,
        group: str,
        id: str | None = None,
        *,
        subscription_id: str | None = None,
        stream: str | None = None,
    ) -> Frame:
        """Join and return the sync that answers it (it must be the next frame)."""
        await self.join(group, id, subscription_id=subscription_id, stream=stream)
        frame = await self.recv()
        assert frame["event"]["type"] == "sync", frame
        assert frame["groupId"] == group, frame
        return frame

    async def barrier(self, within: float = RECV_TIMEOUT) -> list[Frame]:
        """Return every frame the server queued for this connection before now.

        Joins (or re-joins) a private group and collects the frames received before its answer
        (a sync, or an error event when access is denied).
        """
        await self.join(BARRIER_GROUP, subscription_id=BARRIER_SUBSCRIPTION)
        frames: list[Frame] = []
        async with asyncio.timeout(within):
            while True:
                frame = await self.recv(within)
                if frame.get("groupId") == BARRIER_GROUP:
                    return frames
                frames.append(frame)

    async def recv_n(self, n: int, within: float = RECV_TIMEOUT) -> list[Frame]:
        """Receive exactly ``n`` frames within ``within`` seconds in total."""
        async with asyncio.timeout(within):
            return [await self.recv(within) for _ in range(n)]


def is_error_event(frame: Frame, code: str) -> bool:
    """True when ``frame`` is an error event with this wire ``code``."""
    event = frame["event"]
    return bool(
        event["type"] == "event"
        and event["event"]["type"] == "error"
        and event["event"]["data"]["code"] == code
    )


@asynccontextmanager
async def connect(
    url: str,
    *,
    stream: str = "todo",
    subprotocols: Sequence[str] | None = None,
    **kwargs: Any,
) -> AsyncIterator[StreamClient]:
    """Open a stream client on ``url`` (any path works); ``kwargs`` go to websockets.connect."""
    kwargs.setdefault("open_timeout", 5)
    kwargs.setdefault("close_timeout", 2)
    offered = None if subprotocols is None else [Subprotocol(p) for p in subprotocols]
    async with websockets.connect(url, subprotocols=offered, **kwargs) as ws:
        yield StreamClient(ws, stream)


class NpmGroupState:
    """The state of a group as ``@motiadev/stream-client``'s ``StreamGroupSubscription`` keeps it.

    A line-by-line port of its ``listener`` (0.17.x), without the optional sort key.
    """

    def __init__(self) -> None:
        self.state: list[dict[str, Any]] = []
        self.last_timestamp = 0
        self.last_timestamp_map: dict[str, int] = {}
        self.events: list[dict[str, Any]] = []

    def apply(self, message: Frame) -> None:
        """Feed one frame routed to this group subscription."""
        event = message["event"]
        kind = event["type"]
        ts = message["timestamp"]
        if kind == "sync":
            if ts < self.last_timestamp:
                return
            self.last_timestamp_map = {}
            self.last_timestamp = ts
            self.state = list(event["data"])
        elif kind == "create":
            item_id = event["data"]["id"]
            if not any(item["id"] == item_id for item in self.state):
                self.state = [*self.state, event["data"]]
        elif kind == "update":
            data = event["data"]
            current = self.last_timestamp_map.get(data["id"])
            if current and current >= ts:
                return
            self.last_timestamp = ts
            self.last_timestamp_map[data["id"]] = ts
            self.state = [data if item["id"] == data["id"] else item for item in self.state]
        elif kind == "delete":
            item_id = event["data"]["id"]
            self.last_timestamp = ts
            self.last_timestamp_map[item_id] = ts
            self.state = [item for item in self.state if item["id"] != item_id]
        elif kind == "event":
            self.events.append(event["event"])


class StrictGroupState:
    """A group's state rebuilt from frames that must be exactly consistent with the store.

    Unlike the tolerant npm client, it fails on any frame that contradicts the state so far: a
    ``create`` of an item already there (an old change after a newer sync), an ``update`` or
    ``delete`` of an item not there (a lost change), a ``delete`` whose item is not the current one.
    """

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}  # insertion order is creation order

    @property
    def state(self) -> list[dict[str, Any]]:
        """The items in creation order."""
        return list(self.items.values())

    def apply(self, message: Frame) -> None:
        """Feed one frame; raises AssertionError when it contradicts the state."""
        event = message["event"]
        kind = event["type"]
        if kind == "sync":
            self.items = {item["id"]: item for item in event["data"]}
            return
        if kind == "event":
            return
        item = event["data"]
        assert item["id"] == message["id"], message
        if kind == "create":
            assert item["id"] not in self.items, f"create of an existing item: {message}"
            self.items[item["id"]] = item
        elif kind == "update":
            assert item["id"] in self.items, f"update of a missing item: {message}"
            self.items[item["id"]] = item
        elif kind == "delete":
            assert self.items.get(item["id"]) == item, f"delete of another item: {message}"
            del self.items[item["id"]]


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], *, within: float = RECV_TIMEOUT
) -> None:
    """Poll ``condition`` until it holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.01)


async def raw_upgrade(
    host: str, port: int, target: str, headers: dict[str, str], *, within: float = RECV_TIMEOUT
) -> tuple[int, dict[str, str]]:
    """Send a WebSocket upgrade by hand (as a browser would); return the status and headers.

    For what the client library will not send, such as ``Sec-WebSocket-Protocol:
    Authorization, <token>`` with the space browsers put after the comma.
    """
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    async with asyncio.timeout(within):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    status_line, *header_lines = head.strip().split("\r\n")
    status = int(status_line.split(" ")[1])
    response_headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        response_headers[name.strip().lower()] = value.strip()
    return status, response_headers
