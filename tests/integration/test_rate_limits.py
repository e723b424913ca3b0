"""Rate limits on a live server: one test per limit (frames, bytes, joins, upgrades per IP).

Each test sets a small limit, goes over it with a real WebSocket client and checks what the
protocol promises: the ``RATE_LIMITED`` error event first, the dropped frames not acted on, the
close with 4029 if the client keeps going, HTTP 429 with ``Retry-After`` at the upgrade, and the
counters in ``surge.server.stats``. Subscriptions (``max_subscriptions``) are tested in
test_bad_input.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import BaseModel
from websockets.exceptions import ConnectionClosed, InvalidStatus

from surge import Config, Limits, StreamAuth, StreamConfig, create_app
from surge.protocol.codes import CloseCode
from surge.server.auth import AuthRequest
from surge.server.stats import STATS
from surge.testing import live_server

from .streamclient import StreamClient, connect, is_error_event, raw_upgrade

pytestmark = pytest.mark.timeout(60)


class Todo(BaseModel):
    id: str
    description: str


def app_with(limits: Limits, **config: Any) -> Any:
    return create_app(
        streams=[StreamConfig(name="todo", schema=Todo)],
        config=Config(limits=limits, **config),
    )


NOOP = json.dumps({"type": "noop"})  # unknown types are ignored: a frame that costs nothing


async def closed_code(client: StreamClient, within: float = 5.0) -> tuple[int | None, list[Any]]:
    """Read until the server closes; return its close code and the frames before it."""
    frames = []
    try:
        while True:
            frames.append(await client.recv(within))
    except ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd else None), frames


async def test_frames_over_the_rate_get_one_error_event_then_a_4029_close() -> None:
    limits = Limits(frames_per_second=0.001, frame_burst=5, rate_limit_strikes=3)
    before = STATS.rate_limited["frames"]
    async with live_server(app_with(limits)) as server, connect(server.ws_url) as client:
        for _ in range(4):
            await client.send_json({"type": "noop"})
        await client.join_synced("inbox")  # the fifth frame: still within the burst
        await client.join("dropped")  # the sixth: over the limit, dropped unparsed
        error = await client.recv()
        assert is_error_event(error, "RATE_LIMITED"), error
        assert "groupId" not in error  # about the connection, not about one join
        assert "frames per second" in error["event"]["event"]["data"]["message"]
        for _ in range(3):  # the client keeps going: dropped silently, then the close
            await client.ws.send(NOOP)
        code, frames = await closed_code(client)
        assert code == CloseCode.RATE_LIMITED
        assert code == 4029
        assert frames == []  # no answer to the dropped join, no second error event
        assert server.app.runtime.hub.subscriber_count(("todo", "dropped")) == 0
    assert STATS.rate_limited["frames"] - before == 4


async def test_a_client_that_slows_down_after_the_error_keeps_its_connection() -> None:
    limits = Limits(frames_per_second=2, frame_burst=3, rate_limit_strikes=1)
    async with live_server(app_with(limits)) as server, connect(server.ws_url) as client:
        for _ in range(3):
            await client.ws.send(NOOP)
        await client.ws.send(NOOP)  # over the burst
        assert is_error_event(await client.recv(), "RATE_LIMITED")
        # The client backs off (the behaviour under test, not a wait for a condition): the
        # bucket refills, frames are served again, and one more strike would have closed it.
        await asyncio.sleep(1.0)
        await client.join_synced("later")
        stream = server.app.runtime.streams.todo
        await stream.set("later", "t1", {"id": "t1", "description": "still served"})
        assert (await client.recv())["event"]["type"] == "create"


async def test_bytes_over_the_rate_are_refused_by_their_own_bucket() -> None:
    limits = Limits(
        max_frame_bytes=2048,
        bytes_in_per_second=1,
        bytes_in_burst=4096,
        frames_per_second=None,
        rate_limit_strikes=1,
    )
    big = json.dumps({"type": "noop", "pad": "x" * 1900})
    before = STATS.rate_limited["bytes"]
    async with live_server(app_with(limits)) as server, connect(server.ws_url) as client:
        await client.ws.send(big)
        await client.ws.send(big)  # 2 x ~1.9 KiB: within the 4 KiB burst
        await client.join_synced("inbox")  # small frames still fit
        await client.ws.send(big)  # over the burst
        error = await client.recv()
        assert is_error_event(error, "RATE_LIMITED"), error
        assert "bytes per second" in error["event"]["event"]["data"]["message"]
        await client.ws.send(big)
        code, _ = await closed_code(client)
        assert code == 4029
    assert STATS.rate_limited["bytes"] - before == 2


async def test_joins_over_the_rate_are_each_refused_with_rate_limited_then_closed() -> None:
    limits = Limits(joins_per_second=0.001, join_burst=3, rate_limit_strikes=2)
    before = STATS.rate_limited["joins"]
    async with live_server(app_with(limits)) as server, connect(server.ws_url) as client:
        for n in range(3):
            await client.join_synced(f"g{n}")
        refused = []
        for n in range(3, 5):
            await client.join(f"g{n}")
            refused.append(await client.recv())
        # Each refused join is answered, addressed like the join, so no client waits forever.
        assert [f["groupId"] for f in refused] == ["g3", "g4"]
        assert all(is_error_event(f, "RATE_LIMITED") for f in refused), refused
        assert "joins per second" in refused[0]["event"]["event"]["data"]["message"]
        await client.join("g5")
        code, frames = await closed_code(client)
        assert code == 4029
        assert [f["groupId"] for f in frames] == ["g5"]
        hub = server.app.runtime.hub
        assert [hub.subscriber_count(("todo", f"g{n}")) for n in range(6)] == [0] * 6
    assert STATS.rate_limited["joins"] - before == 3


async def test_upgrades_over_the_per_ip_rate_get_429_before_authenticate_runs() -> None:
    calls: list[AuthRequest] = []

    def authenticate(request: AuthRequest) -> None:
        calls.append(request)

    limits = Limits(
        connects_per_ip_per_second=0.001, connect_burst_per_ip=2, connect_limit_exempt=()
    )
    before = STATS.rate_limited["connections"]
    auth = StreamAuth(authenticate=authenticate)
    async with live_server(app_with(limits, stream_auth=auth)) as server:
        for _ in range(2):
            async with connect(server.ws_url) as client:
                await client.join_synced("inbox")
        with pytest.raises(InvalidStatus) as refused:
            async with connect(server.ws_url):
                pass
        response = refused.value.response
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) >= 1
        assert b"too many connection attempts" in response.body
        status, _ = await raw_upgrade(server.host, server.port, "/", {})
        assert status == 429
    assert len(calls) == 2  # refused upgrades never reached authenticate
    assert STATS.rate_limited["connections"] - before == 2


async def test_loopback_is_not_limited_per_ip_by_default() -> None:
    limits = Limits(connects_per_ip_per_second=0.001, connect_burst_per_ip=1)
    async with live_server(app_with(limits)) as server:
        for _ in range(5):
            async with connect(server.ws_url) as client:
                await client.join_synced("inbox")
