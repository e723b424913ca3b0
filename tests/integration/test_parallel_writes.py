"""``Limits.parallel_writes`` through a real server: fan-outs to many WebSocket clients share their
socket writes with a helper thread (``surge.server.write_batch``), and every client still gets
every change, in order, with rising timestamps; the helper stops with the app; it is off by
default and, on, follows the CPUs and ``surge start --workers``."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets
from pydantic import BaseModel

from surge import Config, Limits, StreamConfig, create_app
from surge.errors import ConfigError
from surge.server.write_batch import CHUNK, usable_cpus
from surge.streams.stores.file import FileStreamAdapter
from surge.testing import live_server

pytestmark = pytest.mark.timeout(120)

CLIENTS = CHUNK + 8
SETS = 40


class Progress(BaseModel):
    id: str
    step: int


async def _join(ws: Any) -> int:
    join = {"streamName": "progress", "groupId": "g", "subscriptionId": "s"}
    await ws.send(orjson.dumps({"type": "join", "data": join}).decode())
    frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
    assert frame["event"]["type"] == "sync"
    return int(frame["timestamp"])


def _helpers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "surge-socket-write"]


async def test_every_client_of_a_wide_fan_out_gets_every_change_in_order(tmp_path: Path) -> None:
    app = create_app(
        streams=[StreamConfig(name="progress", schema=Progress)],
        adapter=FileStreamAdapter(tmp_path / "streams"),
        config=Config(limits=Limits(parallel_writes=True)),
    )
    app.runtime.write_batch.enabled = True  # on one CPU too: the path under test, not its gain
    async with live_server(app) as srv:
        clients = [await websockets.connect(srv.ws_url) for _ in range(CLIENTS)]
        try:
            stamps = [await _join(ws) for ws in clients]
            batched = app.runtime.write_batch.batched_writes
            stream = app.runtime.streams.progress
            for step in range(SETS):  # awaited one by one: fan-outs and coalesced flushes
                await stream.set("g", "job", {"id": "job", "step": step})
                if step % 10 == 0:
                    await asyncio.sleep(0.05)  # quiet periods: the next set is a fan-out
            for n, ws in enumerate(clients):
                steps: list[int] = []
                async with asyncio.timeout(30):
                    while len(steps) < SETS:
                        frame = orjson.loads(await ws.recv())
                        assert frame["timestamp"] > stamps[n]
                        stamps[n] = frame["timestamp"]
                        steps.append(frame["event"]["data"]["step"])
                assert steps == list(range(SETS))
            # Each wide fan-out's writes went through the batch (CLIENTS each).
            assert app.runtime.write_batch.batched_writes - batched >= CLIENTS
        finally:
            for ws in clients:
                await ws.close()
    assert _helpers() == []  # stopped with the app


def test_the_setting_is_checked_off_by_default_and_follows_the_cpus_and_workers() -> None:
    with pytest.raises(ConfigError, match="parallel_writes"):
        Limits(parallel_writes=None)  # type: ignore[arg-type]
    default = create_app(streams=[StreamConfig(name="progress", schema=Progress)])
    assert not default.runtime.write_batch.enabled
    assert not default.runtime.write_batch.begin()  # every write goes out at once
    app = create_app(
        streams=[StreamConfig(name="progress", schema=Progress)],
        config=Config(limits=Limits(parallel_writes=True)),
    )
    runtime = app.runtime
    assert runtime.write_batch.enabled == (usable_cpus() > 1)  # one process
    runtime.set_workers(usable_cpus())  # as many workers as CPUs: no core to spare
    assert not runtime.write_batch.enabled
    runtime.set_workers(1)
    assert runtime.write_batch.enabled == (usable_cpus() > 1)
