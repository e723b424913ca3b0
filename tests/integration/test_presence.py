"""Presence in one process (memory store): real WebSocket clients on a live server.

A user with several tabs is one member; closing one tab is not a leave; the last one is. Joins
and leaves reach the group's subscribers as ``presence`` events, a joining subscription gets the
full list right after its sync, and ``stream.presence(group)`` answers the same list.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from surge import (
    ApiRequest,
    ApiResponse,
    ApiRouteConfig,
    AuthRequest,
    Config,
    ConfigError,
    StreamAuth,
    StreamConfig,
    create_app,
    extract_auth_token,
)
from surge.server.app import SurgeApp
from surge.streams.adapter import StreamAdapter
from surge.streams.presence import LocalPresence
from surge.streams.stores.file import FileStreamAdapter
from surge.streams.stores.memory import MemoryStreamAdapter
from surge.testing import LiveServer, live_server

from .streamclient import StreamClient, connect, wait_until

pytestmark = pytest.mark.timeout(60)


class Message(BaseModel):
    id: str
    text: str


USERS = {
    "alice-token": {"userId": "alice", "name": "Alice", "secret": "s1"},
    "bob-token": {"userId": "bob", "name": "Bob", "secret": "s2"},
}


def authenticate(request: AuthRequest) -> dict[str, Any] | None:
    token = extract_auth_token(request)
    return None if token is None else USERS[token]


async def online(req: ApiRequest, ctx: Any) -> ApiResponse:
    return ApiResponse(200, await ctx.streams.room.presence(req.path_params["group"]))


def presence_app(adapter: StreamAdapter | None = None) -> SurgeApp:
    return create_app(
        adapter=adapter,
        config=Config(stream_auth=StreamAuth(authenticate=authenticate)),
        streams=[
            StreamConfig(
                name="room",
                schema=Message,
                presence=True,
                presence_key="userId",
                presence_meta=["name"],
            ),
            StreamConfig(name="plain", schema=Message),
        ],
        steps=[(ApiRouteConfig(name="Online", method="GET", path="/online/:group"), online)],
    )


@pytest.fixture(params=["memory", "file"])
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LiveServer]:
    """The app on the memory store and on the durable file store (one process each)."""
    adapter = (
        MemoryStreamAdapter()
        if request.param == "memory"
        else FileStreamAdapter(tmp_path / "streams")
    )
    async with live_server(presence_app(adapter)) as srv:
        yield srv


def presence_frames(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``data`` of every presence event among ``frames``."""
    return [
        f["event"]["event"]["data"]
        for f in frames
        if f["event"]["type"] == "event" and f["event"]["event"]["type"] == "presence"
    ]


async def settled(server: LiveServer) -> None:
    """Wait until the presence worker has nothing left to do."""
    await wait_until(server.app.runtime.presence.is_idle)


async def join_room(client: StreamClient, group: str = "r1") -> tuple[dict[str, Any], list[Any]]:
    """Join ``group`` of ``room``; return the join data and the presence list sent after the sync.

    The subscription's own join event may come before that list (it is a subscriber of the
    group too): events are set operations, so the order does not matter to a client.
    """
    data = await client.join(group, stream="room")
    sync = await client.recv()
    assert sync["event"]["type"] == "sync", sync
    while True:
        frame = await client.recv()
        assert frame["groupId"] == group and "offset" not in frame, frame
        (event,) = presence_frames([frame])
        if event["action"] == "sync":
            return data, event["members"]
        assert event["action"] == "join", frame


ALICE = {"id": "alice", "meta": {"name": "Alice"}}
BOB = {"id": "bob", "meta": {"name": "Bob"}}


async def test_tabs_of_one_user_are_one_member_and_only_the_last_tab_leaves(
    server: LiveServer,
) -> None:
    url = server.ws_url
    room = server.app.streams.room
    async with AsyncExitStack() as stack:
        alice = await stack.enter_async_context(connect(f"{url}?authToken=alice-token"))
        _, members = await join_room(alice)
        assert members == [ALICE]

        bob_tab1 = await stack.enter_async_context(connect(f"{url}?authToken=bob-token"))
        _, members = await join_room(bob_tab1)
        assert members == [ALICE, BOB]
        assert presence_frames([await alice.recv()]) == [{"action": "join", "member": BOB}]
        assert await room.presence("r1") == [ALICE, BOB]

        # A second tab: the same member, no new join for anyone.
        bob_tab2 = await stack.enter_async_context(connect(f"{url}?authToken=bob-token"))
        tab2_join, members = await join_room(bob_tab2)
        assert members == [ALICE, BOB]
        await settled(server)
        assert presence_frames(await alice.barrier()) == []

        # Closing one tab is not a leave.
        await bob_tab1.ws.close()
        await wait_until(lambda: server.app.runtime.hub.subscriber_count(("room", "r1")) == 2)
        await settled(server)
        assert presence_frames(await alice.barrier()) == []
        assert await room.presence("r1") == [ALICE, BOB]

        # The last tab leaves (a leave frame, not a close): now bob is gone, announced once.
        await bob_tab2.leave(tab2_join)
        assert presence_frames([await alice.recv()]) == [{"action": "leave", "member": BOB}]
        assert await room.presence("r1") == [ALICE]
        await settled(server)
        assert presence_frames(await alice.barrier()) == []
        assert presence_frames(await bob_tab2.barrier()) == []  # it left: it hears nothing

    # Presence is not part of the group's history: it cost no write and replays nothing.
    history = await server.app.runtime.adapter.read_history("room", "r1", 0)
    assert history is not None and history.messages == []


async def test_presence_answers_over_http_from_a_handler(server: LiveServer) -> None:
    import httpx2

    async with connect(f"{server.ws_url}?authToken=alice-token") as alice:
        await join_room(alice, "r2")
        async with httpx2.AsyncClient() as http:
            response = await http.get(f"{server.url}/online/r2")
            assert response.status_code == 200
            assert response.json() == [ALICE]
            assert (await http.get(f"{server.url}/online/empty")).json() == []


async def test_anonymous_connections_are_members_of_their_own(server: LiveServer) -> None:
    async with connect(server.ws_url) as one, connect(server.ws_url) as two:
        _, first = await join_room(one, "r3")
        _, second = await join_room(two, "r3")
        assert len(first) == 1 and "meta" not in first[0]
        assert len(second) == 2 and first[0] in second
        assert all(m["id"].startswith("conn-") for m in second)
        joined = presence_frames([await one.recv()])
        assert joined == [{"action": "join", "member": next(m for m in second if m not in first)}]


async def test_item_subscriptions_and_other_streams_get_no_presence(server: LiveServer) -> None:
    async with connect(f"{server.ws_url}?authToken=alice-token", stream="plain") as alice:
        await alice.join_synced("r4")
        await alice.join_synced("r4", "m1", stream="room")
        await settled(server)
        assert presence_frames(await alice.barrier()) == []
        assert await server.app.streams.room.presence("r4") == []
    with pytest.raises(ConfigError, match="presence=True"):
        await server.app.streams.plain.presence("r4")


async def test_many_joins_and_leaves_leave_nothing_behind(server: LiveServer) -> None:
    runtime = server.app.runtime
    tokens = [None, "alice-token", "bob-token"]
    for round_ in range(5):
        async with AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(
                    # Unread presence events must not stall the client's closing handshake.
                    connect(
                        server.ws_url + (f"?authToken={tokens[i % 3]}" if tokens[i % 3] else ""),
                        max_queue=None,
                    )
                )
                for i in range(12)
            ]
            for i, client in enumerate(clients):
                for group in (f"g{i % 4}", f"round{round_}"):
                    await client.join(group, stream="room")
            key = ("room", f"round{round_}")
            await wait_until(lambda key=key: runtime.hub.subscriber_count(key) == 12)  # type: ignore[misc]
            await settled(server)
            members = await server.app.streams.room.presence(f"round{round_}")
            assert len(members) == 2 + 4  # alice, bob, and the four anonymous connections
        await wait_until(lambda: not runtime.hub.subscriptions_by_stream())
        await settled(server)
        assert runtime.presence.sizes() == {
            "subscriptions": 0,
            "members": 0,
            "registered": 0,
            "dirty": 0,
            "welcome": 0,
            "streams": 0,
        }
        backend = runtime.presence.backend
        assert isinstance(backend, LocalPresence)
        assert backend.group_count() == 0


async def test_the_python_client_keeps_the_member_list(server: LiveServer) -> None:
    from surge.client import connect as client_connect

    async with (
        client_connect(server.ws_url, token="alice-token") as alice,
        client_connect(server.ws_url, token="bob-token") as bob,
    ):
        alice_room = await alice.subscribe_group("room", "r5", timeout=10)
        bob_room = await bob.subscribe_group("room", "r5", timeout=10)
        await wait_until(lambda: alice_room.members == [ALICE, BOB])
        await wait_until(lambda: bob_room.members == [ALICE, BOB])
        await bob_room.unsubscribe()
        await wait_until(lambda: alice_room.members == [ALICE])


async def test_a_resumed_join_gets_the_member_list_after_its_replay(server: LiveServer) -> None:
    async with connect(f"{server.ws_url}?authToken=alice-token") as alice:
        data = await alice.join("r6", stream="room")
        sync = await alice.recv()
        assert sync["event"]["type"] == "sync"
        since = {"offset": sync["offset"], "epoch": sync["epoch"]}
        while presence_frames([await alice.recv()])[0]["action"] != "sync":
            pass
        await alice.leave(data)
        hub = server.app.runtime.hub
        await wait_until(lambda: hub.subscriber_count(("room", "r6")) == 0)
        await server.app.streams.room.set("r6", "m1", {"id": "m1", "text": "missed"})

        await alice.send_json({"type": "join", "data": {**data, "since": since}})
        resume = await alice.recv()
        assert resume["event"]["type"] == "resume", resume
        assert (await alice.recv())["event"]["type"] == "create"
        events: list[dict[str, Any]] = []
        while not events or events[-1]["action"] != "sync":
            events.extend(presence_frames([await alice.recv()]))
        assert events[-1] == {"action": "sync", "members": [ALICE]}


async def test_presence_works_in_process_under_the_async_test_client() -> None:
    from surge.testing import AsyncTestClient

    async with (
        AsyncTestClient(presence_app()) as tc,
        tc.stream_client(token="alice-token") as alice,
        tc.stream_client(token="bob-token") as bob,
    ):
        room = await alice.subscribe_group("room", "r7", timeout=10)
        await bob.subscribe_group("room", "r7", timeout=10)
        await wait_until(lambda: room.members == [ALICE, BOB])
        response = await tc.get("/online/r7")
        assert response.status_code == 200 and response.json() == [ALICE, BOB]
