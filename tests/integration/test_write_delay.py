"""``Limits.max_write_delay`` over real sockets: a producer awaiting each durable ``set`` (one change
per loop iteration) gets its changes coalesced into fewer writes when flushes take long, and every
subscriber still sees every change, in order, with strictly increasing timestamps; a close the
server decides while frames are held writes them first."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets
from pydantic import BaseModel
from websockets.exceptions import ConnectionClosed

from surge import Config, Limits, StreamConfig, create_app
from surge.server import transport as transport_module
from surge.streams.stores.file import FileStreamAdapter
from surge.testing import live_server

pytestmark = pytest.mark.timeout(120)

SETS = 100


class Progress(BaseModel):
    id: str
    step: int


class CountingWrites:
    """Counts the direct transports' ``write_many`` calls (one socket write each) and the frames
    in them, then calls the real method after ``seconds``: two connections written as slowly as
    a thousand are, so that the flush lasts long enough for the producer to make changes during
    the pause after it (the pause is as long as the flush). Both direct transports: Surge's own
    protocol's (``LeanDirectTransport``, the default) and uvicorn's (``DirectTransport``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
        self.writes = 0
        self.frames = 0
        for cls in (transport_module.DirectTransport, transport_module.LeanDirectTransport):
            monkeypatch.setattr(cls, "write_many", self._counting(cls.write_many, seconds))

    def _counting(self, real: Any, seconds: float) -> Any:
        def write_many(transport: Any, frames: Any) -> None:
            self.writes += 1
            self.frames += len(frames)
            time.sleep(seconds)
            real(transport, frames)

        return write_many


async def _join(ws: Any, sub: str = "s") -> dict[str, Any]:
    join = {"streamName": "progress", "groupId": "g", "subscriptionId": sub}
    await ws.send(orjson.dumps({"type": "join", "data": join}).decode())
    frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
    assert frame["event"]["type"] == "sync"
    return frame


async def test_sequential_durable_sets_are_coalesced_and_arrive_complete_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = CountingWrites(monkeypatch, 0.02)
    app = create_app(
        streams=[StreamConfig(name="progress", schema=Progress)],
        adapter=FileStreamAdapter(tmp_path / "streams"),  # default durability: fsync per commit
        config=Config(limits=Limits(max_write_delay=0.1)),
    )
    async with (
        live_server(app) as srv,
        websockets.connect(srv.ws_url) as a,
        websockets.connect(srv.ws_url) as b,
    ):
        last_ts = {id(a): (await _join(a))["timestamp"], id(b): (await _join(b))["timestamp"]}
        frames0, writes0 = counting.frames, counting.writes
        stream = app.runtime.streams.progress
        for step in range(SETS):  # the realistic producer: each set awaited
            await stream.set("g", "job", {"id": "job", "step": step})
        for ws in (a, b):
            steps: list[int] = []
            async with asyncio.timeout(30):
                while len(steps) < SETS:
                    frame = orjson.loads(await ws.recv())
                    assert frame["timestamp"] > last_ts[id(ws)]
                    last_ts[id(ws)] = frame["timestamp"]
                    steps.append(frame["event"]["data"]["step"])
            assert steps == list(range(SETS))
    # Two connections x SETS frames in fewer writes than one per frame per connection.
    assert counting.frames - frames0 == 2 * SETS
    assert counting.writes - writes0 < 2 * SETS


async def test_a_close_the_server_decides_writes_the_frames_held_back_first(
    tmp_path: Path,
) -> None:
    app = create_app(
        streams=[StreamConfig(name="progress", schema=Progress)],
        adapter=FileStreamAdapter(tmp_path / "streams"),
        config=Config(limits=Limits(max_write_delay=0.1, max_errors=1)),
    )
    async with live_server(app) as srv, websockets.connect(srv.ws_url) as ws:
        await _join(ws)
        stream = app.runtime.streams.progress
        await stream.set("g", "job", {"id": "job", "step": 0})  # written at once
        await stream.set(
            "g", "job", {"id": "job", "step": 1}
        )  # may be held by the pause after the first write
        await ws.send("not json")  # over max_errors: the server closes with 1008
        steps: list[int] = []
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                while True:
                    frame = orjson.loads(await ws.recv())
                    if frame["event"]["type"] in ("create", "update"):
                        steps.append(frame["event"]["data"]["step"])
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert steps == [0, 1]
