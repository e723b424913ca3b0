"""Two Surge instances sharing one Redis: writes through either reach subscribers of both.

Each test runs two live servers (real sockets on port 0) whose ``RedisStreamAdapter`` share a key
prefix private to the test; clients are real WebSocket and HTTP clients. The restart test uses a
private ``redis-server`` on a free port, never the shared one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection, connect

from conftest import require_component
from redis_server import REDIS_TEST_URL, PrivateRedis, drop_redis_keys, redis_is_up
from surge import ApiResponse, ApiRouteConfig, StreamConfig, create_app
from surge.steps.context import ApiRequest
from surge.streams.stores.redis import RedisStreamAdapter
from surge.testing import LiveServer, live_server

pytestmark = pytest.mark.timeout(60)

RECV_TIMEOUT = 5.0

Frame = dict[str, Any]


class Todo(BaseModel):
    id: str
    description: str
    done: bool = False


async def put_todo(req: ApiRequest, ctx: Any) -> ApiResponse:
    await ctx.streams.todo.set(req.path_params["group"], req.path_params["id"], req.body)
    return ApiResponse(200, {"ok": True})


async def delete_todo(req: ApiRequest, ctx: Any) -> ApiResponse:
    deleted = await ctx.streams.todo.delete(req.path_params["group"], req.path_params["id"])
    return ApiResponse(200 if deleted is not None else 404, {"deleted": deleted is not None})


async def send_event(req: ApiRequest, ctx: Any) -> ApiResponse:
    await ctx.streams.todo.send({"groupId": req.path_params["group"]}, req.body)
    return ApiResponse(202, {"ok": True})


@contextlib.asynccontextmanager
async def two_instances(url: str, prefix: str) -> AsyncIterator[tuple[LiveServer, LiveServer]]:
    """Two apps, each with its own adapter, on the same Redis and prefix."""

    def app() -> Any:
        return create_app(
            streams=[StreamConfig(name="todo", schema=Todo)],
            steps=[
                (ApiRouteConfig(name="Put", method="POST", path="/todo/:group/:id"), put_todo),
                (ApiRouteConfig(name="Del", method="DELETE", path="/todo/:group/:id"), delete_todo),
                (ApiRouteConfig(name="Send", method="POST", path="/events/:group"), send_event),
            ],
            adapter=RedisStreamAdapter(url, prefix=prefix),
        )

    async with live_server(app()) as a, live_server(app()) as b:
        yield a, b


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix private to the test on the shared Redis; its keys are deleted afterwards."""
    require_component(redis_is_up(REDIS_TEST_URL), f"no Redis server answers at {REDIS_TEST_URL}")
    unique = f"surge-test-{uuid.uuid4().hex}"
    yield unique
    drop_redis_keys(unique)


# -- a minimal stream client ------------------------------------------------------------------


async def join(ws: ClientConnection, group: str, subscription_id: str = "sub-1") -> Frame:
    """Join ``group`` of stream ``todo``; return the sync that answers."""
    data = {"streamName": "todo", "groupId": group, "subscriptionId": subscription_id}
    await ws.send(json.dumps({"type": "join", "data": data}))
    frame = await recv(ws)
    assert frame["event"]["type"] == "sync", frame
    return frame


async def recv(ws: ClientConnection, within: float = RECV_TIMEOUT) -> Frame:
    async with asyncio.timeout(within):
        raw = await ws.recv()
    frame: Frame = json.loads(raw)
    return frame


class GroupState:
    """A group's items as a client keeps them: syncs replace, changes apply."""

    def __init__(self, sync: Frame) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.syncs = 0
        self.apply(sync)

    def apply(self, frame: Frame) -> None:
        event = frame["event"]
        if event["type"] == "sync":
            self.syncs += 1
            self.items = {item["id"]: item for item in event["data"]}
        elif event["type"] in ("create", "update"):
            self.items[event["data"]["id"]] = event["data"]
        elif event["type"] == "delete":
            self.items.pop(event["data"]["id"], None)

    async def follow_until(
        self, ws: ClientConnection, done: Callable[[], bool], within: float = 10.0
    ) -> None:
        """Apply incoming frames until ``done()``; fail after ``within`` seconds."""
        async with asyncio.timeout(within):
            while not done():
                self.apply(await recv(ws, within))


def todo(id: str, description: str, done: bool = False) -> dict[str, Any]:
    return {"id": id, "description": description, "done": done}


# -- tests ------------------------------------------------------------------------------------


async def test_a_subscriber_on_one_instance_sees_writes_made_through_the_other_in_order(
    prefix: str,
) -> None:
    async with (
        two_instances(REDIS_TEST_URL, prefix) as (a, b),
        httpx2.AsyncClient(base_url=b.url, timeout=10) as http_b,
        connect(a.ws_url, open_timeout=5, close_timeout=2) as ws_a,
    ):
        assert (await join(ws_a, "inbox"))["event"]["data"] == []

        assert (await http_b.post("/todo/inbox/t1", json=todo("t1", "milk"))).status_code == 200
        assert (
            await http_b.post("/todo/inbox/t1", json=todo("t1", "milk", True))
        ).status_code == 200
        assert (await http_b.post("/todo/inbox/t2", json=todo("t2", "bread"))).status_code == 200
        assert (await http_b.delete("/todo/inbox/t1")).status_code == 200
        typing = {"type": "typing", "data": {"who": "ann"}}
        assert (await http_b.post("/events/inbox", json=typing)).status_code == 202

        frames = [await recv(ws_a) for _ in range(5)]
        assert [(f["event"]["type"], f.get("id")) for f in frames] == [
            ("create", "t1"),
            ("update", "t1"),
            ("create", "t2"),
            ("delete", "t1"),
            ("event", None),
        ]
        assert frames[0]["event"]["data"] == todo("t1", "milk")
        assert frames[1]["event"]["data"] == todo("t1", "milk", True)
        assert frames[3]["event"]["data"] == todo("t1", "milk", True)
        assert frames[4]["event"]["event"] == typing
        timestamps = [f["timestamp"] for f in frames]
        assert timestamps == sorted(timestamps)

        # Late joiners, on either instance, get the same sync: the stored state.
        async with (
            connect(b.ws_url, open_timeout=5, close_timeout=2) as late_b,
            connect(a.ws_url, open_timeout=5, close_timeout=2) as late_a,
        ):
            sync_b = (await join(late_b, "inbox"))["event"]["data"]
            sync_a = (await join(late_a, "inbox"))["event"]["data"]
        assert sync_b == sync_a == [todo("t2", "bread")]


async def test_after_a_redis_restart_a_subscriber_ends_in_the_stored_state(
    private_redis: PrivateRedis,
) -> None:
    prefix = f"surge-test-{uuid.uuid4().hex}"
    async with (
        two_instances(private_redis.url, prefix) as (a, b),
        httpx2.AsyncClient(base_url=b.url, timeout=10) as http_b,
        connect(a.ws_url, open_timeout=5, close_timeout=2) as ws_a,
    ):
        state = GroupState(await join(ws_a, "inbox"))
        for id in ("t1", "t2"):
            assert (await http_b.post(f"/todo/inbox/{id}", json=todo(id, id))).status_code == 200
        await state.follow_until(ws_a, lambda: set(state.items) == {"t1", "t2"})

        await private_redis.kill()  # no persistence: t1 and t2 are gone with it
        started = time.monotonic()
        down = await http_b.post("/todo/inbox/t3", json=todo("t3", "while down"))
        assert down.status_code == 503
        assert time.monotonic() - started < 5
        body = down.json()
        assert body["error"] == "storage unavailable, retry later"
        assert isinstance(body["traceId"], str)

        await private_redis.start()
        # A's feed may still be down (reconnect backoff): it can miss this change.
        assert (await http_b.post("/todo/inbox/t4", json=todo("t4", "after"))).status_code == 200

        stored = await b.app.runtime.adapter.get_group("todo", "inbox")
        assert stored.items == [todo("t4", "after")]
        # Only a re-sync can tell the client that t1 and t2 are gone.
        await state.follow_until(ws_a, lambda: list(state.items.values()) == stored.items)
        assert state.syncs == 2
