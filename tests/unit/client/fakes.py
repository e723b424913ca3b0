"""A fake transport for the client's unit tests: connections are queues the test drives."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from surge.client import TransportClosed, UpgradeRefused


class FakeConnection:
    """One connection: the test puts server frames in, reads what the client sent."""

    def __init__(self) -> None:
        self.inbound: asyncio.Queue[str | TransportClosed] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.sent_event = asyncio.Event()
        self.closed = False

    async def send(self, text: str) -> None:
        if self.closed:
            raise TransportClosed(1006)
        self.sent.append(json.loads(text))
        self.sent_event.set()

    async def recv(self) -> str:
        item = await self.inbound.get()
        if isinstance(item, TransportClosed):
            self.closed = True
            raise item
        return item

    async def close(self) -> None:
        self.closed = True

    # -- the test's side --------------------------------------------------------------------------

    def push(self, frame: dict[str, Any]) -> None:
        self.inbound.put_nowait(json.dumps(frame))

    def drop(self, code: int = 1006) -> None:
        """The server went away."""
        self.inbound.put_nowait(TransportClosed(code))

    async def next_sent(self, count: int = 1, within: float = 5.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` frames were sent; return all of them."""
        async with asyncio.timeout(within):
            while len(self.sent) < count:
                self.sent_event.clear()
                await self.sent_event.wait()
        return self.sent


class FakeTransport:
    """Hands out ``FakeConnection``s; ``refuse``/``fail`` script failed attempts."""

    def __init__(self) -> None:
        self.connections: list[FakeConnection] = []
        self.attempts = 0
        self._script: list[BaseException] = []
        self.new_connection = asyncio.Event()

    def fail_next(self, *errors: BaseException) -> None:
        self._script.extend(errors)

    async def connect(self) -> FakeConnection:
        self.attempts += 1
        if self._script:
            raise self._script.pop(0)
        conn = FakeConnection()
        self.connections.append(conn)
        self.new_connection.set()
        return conn

    async def connection(self, index: int, within: float = 5.0) -> FakeConnection:
        """The ``index``-th connection, once the client opened it."""
        async with asyncio.timeout(within):
            while len(self.connections) <= index:
                self.new_connection.clear()
                await self.new_connection.wait()
        return self.connections[index]


def refused(status: int = 401) -> UpgradeRefused:
    return UpgradeRefused(status, "authentication failed")


def sync(
    ts: int, data: Any, *, stream: str = "todo", group: str = "inbox", id: str | None = None
) -> dict[str, Any]:
    frame: dict[str, Any] = {"timestamp": ts, "streamName": stream, "groupId": group}
    if id is not None:
        frame["id"] = id
    frame["event"] = {"type": "sync", "data": data}
    return frame


def change(
    ts: int, kind: str, item: dict[str, Any], *, stream: str = "todo", group: str = "inbox"
) -> dict[str, Any]:
    return {
        "timestamp": ts,
        "streamName": stream,
        "groupId": group,
        "id": item["id"],
        "event": {"type": kind, "data": item},
    }


def event(
    ts: int, type: str, data: Any, *, group: str = "inbox", id: str | None = None
) -> dict[str, Any]:
    frame: dict[str, Any] = {"timestamp": ts, "streamName": "todo", "groupId": group}
    if id is not None:
        frame["id"] = id
    frame["event"] = {"type": "event", "event": {"type": type, "data": data}}
    return frame


def error(
    ts: int, code: str, *, stream: str = "todo", group: str = "inbox", id: str | None = None
) -> dict[str, Any]:
    return event(ts, "error", {"code": code, "message": "no"}, group=group, id=id) | {
        "streamName": stream
    }
