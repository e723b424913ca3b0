"""The latest-value slow-consumer policy under a real socket (issue 14 item 6).

A subscriber that stops reading (a small receive buffer, no reads) while 40 items are updated
hundreds of times, 24 MB in all, far beyond the kernel's buffers and the outbox's caps (256 frames, 1 MiB):

- under ``slow_consumer="resync"`` (the default) it is closed with 1013, which shows the
  scenario really overflows;
- under ``"latest"`` it stays connected, the server's memory for it stays under the byte cap,
  and once it reads again it ends in exactly the server's state, every create seen before the
  updates of its item and no update of a deleted item.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import orjson
import pytest
import websockets
from pydantic import BaseModel
from websockets.exceptions import ConnectionClosed

from surge import Config, Limits, StreamConfig, create_app
from surge.server.stats import STATS
from surge.testing import live_server

pytestmark = pytest.mark.timeout(120)

ITEMS = 40
ROUNDS = 300
PAD = "x" * 2000
MAX_BYTES = 1024 * 1024


class Tick(BaseModel):
    id: str
    n: int
    pad: str


def _slow_socket(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


class LatestState:
    """A group rebuilt from frames, failing on a change that contradicts it."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def apply(self, frame: dict[str, Any]) -> None:
        event = frame["event"]
        kind = event["type"]
        if kind == "sync":
            self.items = {item["id"]: item for item in event["data"]}
        elif kind == "create":
            assert frame["id"] not in self.items, f"create of an existing item: {frame['id']}"
            self.items[frame["id"]] = event["data"]
        elif kind == "update":
            assert frame["id"] in self.items, f"update of a missing item: {frame['id']}"
            assert event["data"]["n"] >= self.items[frame["id"]]["n"], "an older value came later"
            self.items[frame["id"]] = event["data"]
        elif kind == "delete":
            assert frame["id"] in self.items, f"delete of a missing item: {frame['id']}"
            del self.items[frame["id"]]


async def _write(app: Any, conn: Any) -> int:
    """Update every item ROUNDS times (item i0 is deleted and re-created now and then); return
    the largest number of bytes the server held for the slow connection meanwhile."""
    stream = app.runtime.streams.ticker
    peak = 0
    for n in range(ROUNDS):
        if n % 50 == 25:
            await stream.delete("g", "i0")
        for i in range(ITEMS):
            await stream.set("g", f"i{i}", {"id": f"i{i}", "n": n, "pad": PAD})
        peak = max(peak, conn.outbox.queued_bytes)
        await asyncio.sleep(0)  # let the loop flush
    return peak


@pytest.mark.parametrize("policy", ["resync", "latest"])
async def test_a_slow_consumer_under_each_policy(policy: str) -> None:
    app = create_app(
        streams=[StreamConfig(name="ticker", schema=Tick, slow_consumer=policy)],  # type: ignore[arg-type]
        config=Config(limits=Limits(outbox_capacity=256, max_outbound_bytes=MAX_BYTES)),
    )
    collapsed_before = STATS.collapsed
    async with live_server(app) as srv:
        sock = _slow_socket(srv.port)
        async with websockets.connect(srv.ws_url, sock=sock, max_queue=1, max_size=None) as ws:
            join = {"streamName": "ticker", "groupId": "g", "subscriptionId": "s"}
            await ws.send(orjson.dumps({"type": "join", "data": join}).decode())
            state = LatestState()
            state.apply(orjson.loads(await asyncio.wait_for(ws.recv(), 10)))
            conn = next(iter(app.runtime.connections))
            peak = await _write(app, conn)
            items = await app.runtime.streams.ticker.get_group("g")
            expected = {item.id: item.model_dump() for item in items}
            if policy == "resync":
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(30):
                        while True:
                            await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
                return
            # Latest value: never closed; reads everything and ends in the server's state.
            async with asyncio.timeout(60):
                while state.items != expected:
                    state.apply(orjson.loads(await ws.recv()))
            assert conn.outbox.close_code is None and not conn.outbox.is_overflowed
            assert STATS.collapsed > collapsed_before  # the policy engaged
            assert peak <= MAX_BYTES
            assert len(state.items) == ITEMS
