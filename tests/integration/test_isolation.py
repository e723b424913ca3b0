"""Connections cannot touch each other's subscriptions; the origin allow-list guards upgrades."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel
from websockets.exceptions import InvalidStatus

from surge import Config, StreamConfig, create_app
from surge.testing import LiveServer, live_server

from .streamclient import connect


class Todo(BaseModel):
    id: str
    n: int


def app(config: Config | None = None):  # type: ignore[no-untyped-def]
    return create_app(streams=[StreamConfig(name="todo", schema=Todo)], config=config)


@pytest.fixture
async def server() -> AsyncIterator[LiveServer]:
    async with live_server(app()) as running:
        yield running


async def test_leave_with_another_connections_subscription_id_does_not_touch_it(
    server: LiveServer,
) -> None:
    todo = server.app.runtime.streams.todo
    async with connect(server.ws_url) as owner, connect(server.ws_url) as intruder:
        data = await owner.join("inbox", subscription_id="shared-id")
        assert (await owner.recv())["event"]["type"] == "sync"
        await intruder.leave(data)  # the very same data object, from another connection
        await intruder.barrier()
        await todo.set("inbox", "t1", {"id": "t1", "n": 1})
        frame = await owner.recv()
        assert (frame["id"], frame["event"]["type"]) == ("t1", "create")


async def test_join_reusing_another_connections_subscription_id_is_a_separate_subscription(
    server: LiveServer,
) -> None:
    todo = server.app.runtime.streams.todo
    async with connect(server.ws_url) as owner, connect(server.ws_url) as intruder:
        await owner.join_synced("inbox", subscription_id="shared-id")
        # Hijack attempt: the same subscriptionId pointed at another group.
        await intruder.join_synced("elsewhere", subscription_id="shared-id")
        await todo.set("inbox", "t1", {"id": "t1", "n": 1})
        await todo.set("elsewhere", "t2", {"id": "t2", "n": 2})
        assert (await owner.recv())["groupId"] == "inbox"
        assert await owner.barrier() == []  # nothing of "elsewhere" reached the owner
        frames = await intruder.barrier()
        assert [(f["groupId"], f["id"]) for f in frames] == [("elsewhere", "t2")]


async def test_origin_allow_list_refuses_other_sites_and_admits_listed_and_originless_clients() -> (
    None
):
    config = Config(allowed_origins=["https://app.example"])
    async with live_server(app(config)) as server:
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.ws_url, origin="https://evil.example"):
                pass
        assert info.value.response.status_code == 403
        async with connect(server.ws_url, origin="https://app.example") as listed:
            await listed.join_synced("inbox")
        # Non-browser clients (the node client, servers) send no Origin: nothing to forge.
        async with connect(server.ws_url) as originless:
            await originless.join_synced("inbox")


async def test_without_an_allow_list_any_origin_may_connect(server: LiveServer) -> None:
    async with connect(server.ws_url, origin="https://anywhere.example") as client:
        await client.join_synced("inbox")
