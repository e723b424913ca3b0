"""The stream protocol end to end: a live server on port 0 and real WebSocket clients."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel
from websockets.exceptions import ConnectionClosed

from surge import ApiResponse, ApiRouteConfig, Config, Limits, StreamConfig, create_app
from surge.server.app import SurgeApp
from surge.server.connection import Connection
from surge.streams.feed import GroupSnapshot
from surge.streams.stores.memory import MemoryStreamAdapter
from surge.testing import LiveServer, live_server

from .streamclient import (
    BARRIER_GROUP,
    NpmGroupState,
    StreamClient,
    StrictGroupState,
    connect,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)


class Todo(BaseModel):
    id: str
    description: str
    done: bool = False


async def health(req: Any, ctx: Any) -> ApiResponse:
    return ApiResponse(200, {"ok": True})


def todo_app(**kwargs: Any) -> SurgeApp:
    return create_app(
        streams=[StreamConfig(name="todo", schema=Todo)],
        steps=[(ApiRouteConfig(name="Health", method="GET", path="/health"), health)],
        **kwargs,
    )


@pytest.fixture
async def server() -> AsyncIterator[LiveServer]:
    async with live_server(todo_app()) as srv:
        yield srv


def todo(id: str, description: str = "d", done: bool = False) -> dict[str, Any]:
    return {"id": id, "description": description, "done": done}


# -- group and item subscriptions -------------------------------------------------------------


async def test_group_join_gets_empty_sync_then_create_update_delete_frames(
    server: LiveServer,
) -> None:
    stream = server.app.runtime.streams.todo
    async with connect(server.ws_url) as client:
        await client.join("inbox")
        sync = await client.recv()
        # No "id" key; the offset and epoch of docs/protocol.md section 2.
        assert set(sync) == {"timestamp", "streamName", "groupId", "offset", "epoch", "event"}
        assert isinstance(sync["timestamp"], int)
        assert sync["streamName"] == "todo"
        assert sync["groupId"] == "inbox"
        assert sync["event"] == {"type": "sync", "data": []}

        await stream.set("inbox", "t1", {"id": "t1", "description": "buy milk"})
        create = await client.recv()
        assert create["streamName"] == "todo"
        assert create["groupId"] == "inbox"
        assert create["id"] == "t1"
        assert create["event"] == {"type": "create", "data": todo("t1", "buy milk")}

        await stream.set("inbox", "t1", {"id": "t1", "description": "buy milk", "done": True})
        update = await client.recv()
        assert update["id"] == "t1"
        assert update["event"] == {"type": "update", "data": todo("t1", "buy milk", True)}

        await stream.delete("inbox", "t1")
        delete = await client.recv()
        assert delete["id"] == "t1"
        assert delete["event"] == {"type": "delete", "data": todo("t1", "buy milk", True)}

        assert sync["timestamp"] < create["timestamp"] < update["timestamp"]
        assert update["timestamp"] < delete["timestamp"]

        # Deleting a missing item sends nothing.
        assert await stream.delete("inbox", "t1") is None
        assert await client.barrier() == []


async def test_group_sync_lists_existing_items_in_creation_order(server: LiveServer) -> None:
    stream = server.app.runtime.streams.todo
    await stream.set("inbox", "b", {"id": "b", "description": "first"})
    await stream.set("inbox", "a", {"id": "a", "description": "second"})
    await stream.set("inbox", "b", {"id": "b", "description": "first, edited"})
    async with connect(server.ws_url) as client:
        sync = await client.join_synced("inbox")
    assert "id" not in sync
    assert sync["event"]["data"] == [todo("b", "first, edited"), todo("a", "second")]


async def test_set_without_id_in_data_puts_the_key_id_on_the_wire(server: LiveServer) -> None:
    stream = server.app.runtime.streams.todo
    async with connect(server.ws_url) as client:
        await client.join_synced("inbox")
        await stream.set("inbox", "t9", {"id": "other", "description": "x"})
        frame = await client.recv()
    assert frame["id"] == "t9"
    assert frame["event"]["data"]["id"] == "t9"


async def test_item_join_syncs_null_for_a_missing_item_then_gets_only_its_changes(
    server: LiveServer,
) -> None:
    stream = server.app.runtime.streams.todo
    async with connect(server.ws_url) as client:
        await client.join("inbox", "t1")
        sync = await client.recv()
        assert set(sync) == {"timestamp", "streamName", "groupId", "id", "offset", "epoch", "event"}
        assert sync["id"] == "t1"
        assert sync["event"] == {"type": "sync", "data": None}

        await stream.set("inbox", "t2", todo("t2"))  # another item: not for us
        await stream.set("inbox", "t1", todo("t1", "one"))
        create = await client.recv()
        assert (create["id"], create["event"]["type"]) == ("t1", "create")
        assert create["event"]["data"] == todo("t1", "one")

        await stream.set("inbox", "t1", todo("t1", "two"))
        update = await client.recv()
        assert (update["id"], update["event"]) == (
            "t1",
            {"type": "update", "data": todo("t1", "two")},
        )

        await stream.delete("inbox", "t2")
        await stream.delete("inbox", "t1")
        delete = await client.recv()
        assert (delete["id"], delete["event"]) == (
            "t1",
            {"type": "delete", "data": todo("t1", "two")},
        )
        assert await client.barrier() == []


async def test_item_join_syncs_the_existing_item(server: LiveServer) -> None:
    await server.app.runtime.streams.todo.set("inbox", "t1", todo("t1", "here"))
    async with connect(server.ws_url) as client:
        sync = await client.join_synced("inbox", "t1")
    assert sync["id"] == "t1"
    assert sync["event"]["data"] == todo("t1", "here")


# -- ephemeral events --------------------------------------------------------------------------


async def test_send_to_group_reaches_group_subscribers_but_not_item_subscribers(
    server: LiveServer,
) -> None:
    stream = server.app.runtime.streams.todo
    async with connect(server.ws_url) as group_client, connect(server.ws_url) as item_client:
        await group_client.join_synced("inbox")
        await item_client.join_synced("inbox", "t1")

        await stream.send({"groupId": "inbox"}, {"type": "typing", "data": {"user": "ann"}})

        frame = await group_client.recv()
        assert set(frame) == {"timestamp", "streamName", "groupId", "offset", "epoch", "event"}
        assert frame["streamName"] == "todo"
        assert frame["groupId"] == "inbox"
        assert frame["event"] == {
            "type": "event",
            "event": {"type": "typing", "data": {"user": "ann"}},
        }
        assert await item_client.barrier() == []
    # Ephemeral: never stored.
    assert await stream.get_group("inbox") == []


async def test_send_with_id_reaches_group_and_that_items_subscribers_only(
    server: LiveServer,
) -> None:
    stream = server.app.runtime.streams.todo
    async with (
        connect(server.ws_url) as group_client,
        connect(server.ws_url) as item_client,
        connect(server.ws_url) as other_item_client,
    ):
        await group_client.join_synced("inbox")
        await item_client.join_synced("inbox", "t1")
        await other_item_client.join_synced("inbox", "t2")

        await stream.send({"groupId": "inbox", "id": "t1"}, {"type": "ping", "data": 42})

        expected_event = {"type": "event", "event": {"type": "ping", "data": 42}}
        for client in (group_client, item_client):
            frame = await client.recv()
            assert frame["groupId"] == "inbox"
            assert frame["id"] == "t1"
            assert frame["event"] == expected_event
        assert await other_item_client.barrier() == []
    assert await stream.get("inbox", "t1") is None


# -- routing -----------------------------------------------------------------------------------


async def test_item_subscriber_of_one_group_never_gets_another_groups_item_with_the_same_id(
    server: LiveServer,
) -> None:
    stream = server.app.runtime.streams.todo
    async with connect(server.ws_url) as client:
        await client.join_synced("group-b", "t1")

        await stream.set("group-a", "t1", todo("t1", "a"))
        await stream.set("group-a", "t1", todo("t1", "a2"))
        await stream.send({"groupId": "group-a", "id": "t1"}, {"type": "x", "data": None})
        await stream.send({"groupId": "group-a"}, {"type": "x", "data": None})
        await stream.delete("group-a", "t1")
        assert await client.barrier() == []

        await stream.set("group-b", "t1", todo("t1", "b"))
        frame = await client.recv()
        assert (frame["groupId"], frame["id"]) == ("group-b", "t1")
        assert frame["event"]["data"] == todo("t1", "b")


async def test_group_subscriber_gets_only_its_own_group_and_stream(server: LiveServer) -> None:
    stream = server.app.runtime.streams.todo
    async with connect(server.ws_url) as client:
        await client.join_synced("group-b")
        await stream.set("group-a", "t1", todo("t1"))
        await stream.set("group-b-suffix", "t1", todo("t1"))
        assert await client.barrier() == []


async def test_connection_with_group_and_item_subscription_gets_one_frame_per_change(
    server: LiveServer,
) -> None:
    stream = server.app.runtime.streams.todo
    async with connect(server.ws_url) as client:
        await client.join_synced("inbox")
        await client.join_synced("inbox", "t1")
        await client.join_synced("inbox", "t1")  # a second item subscription, other id

        await stream.set("inbox", "t1", todo("t1", "one"))
        await stream.set("inbox", "t1", todo("t1", "two"))
        await stream.send({"groupId": "inbox", "id": "t1"}, {"type": "poke", "data": 1})
        await stream.delete("inbox", "t1")

        frames = await client.barrier()
    assert [f["event"]["type"] for f in frames] == ["create", "update", "event", "delete"]
    assert all(f["id"] == "t1" for f in frames)


# -- timestamps --------------------------------------------------------------------------------


async def test_timestamps_strictly_increase_across_rapid_updates(server: LiveServer) -> None:
    stream = server.app.runtime.streams.todo
    count = 200
    async with connect(server.ws_url) as group_client, connect(server.ws_url) as item_client:
        group_sync = await group_client.join_synced("inbox")
        item_sync = await item_client.join_synced("inbox", "t1")

        # A tight loop: many of these writes share a millisecond.
        for n in range(count):
            await stream.set("inbox", "t1", todo("t1", f"v{n}"))

        for client, sync in ((group_client, group_sync), (item_client, item_sync)):
            frames = await client.recv_n(count)
            stamps = [sync["timestamp"], *(f["timestamp"] for f in frames)]
            assert all(a < b for a, b in itertools.pairwise(stamps)), stamps
            # Every update arrived, in order, even the ones written within the same millisecond.
            assert [f["event"]["data"]["description"] for f in frames] == [
                f"v{n}" for n in range(count)
            ]
            assert [f["event"]["type"] for f in frames] == ["create"] + ["update"] * (count - 1)
            assert await client.barrier() == []


async def test_npm_item_subscription_keeps_every_rapid_update(server: LiveServer) -> None:
    """The item client drops frames not newer than the last: none may be dropped."""
    stream = server.app.runtime.streams.todo
    async with connect(server.ws_url) as client:
        await client.join_synced("inbox", "t1")
        for n in range(50):
            await stream.set("inbox", "t1", todo("t1", f"v{n}"))
        last_ts = 0
        kept: list[str] = []
        for frame in await client.recv_n(50):
            if frame["timestamp"] > last_ts:
                last_ts = frame["timestamp"]
                kept.append(frame["event"]["data"]["description"])
    assert kept == [f"v{n}" for n in range(50)]


# -- leave and re-join -------------------------------------------------------------------------


async def test_leave_stops_delivery(server: LiveServer) -> None:
    stream = server.app.runtime.streams.todo
    async with connect(server.ws_url) as client:
        group_join = await client.join("inbox")
        await client.recv()
        item_join = await client.join("other", "t1")
        await client.recv()

        await client.leave(group_join)
        await client.leave(item_join)
        assert await client.barrier() == []  # both leaves handled before this answer

        await stream.set("inbox", "t1", todo("t1"))
        await stream.set("other", "t1", todo("t1"))
        await stream.send({"groupId": "inbox"}, {"type": "typing", "data": None})
        assert await client.barrier() == []
    assert server.app.runtime.hub.subscriber_count(("todo", "inbox")) == 0


async def test_leave_of_unknown_subscription_is_ignored(server: LiveServer) -> None:
    stream = server.app.runtime.streams.todo
    async with connect(server.ws_url) as client:
        await client.join_synced("inbox", subscription_id="s1")
        await client.leave({"streamName": "todo", "groupId": "inbox", "subscriptionId": "nope"})
        await stream.set("inbox", "t1", todo("t1"))
        frames = await client.barrier()
    assert [f["event"]["type"] for f in frames] == ["create"]


async def test_duplicate_join_with_same_subscription_id_resyncs_without_duplicate_delivery(
    server: LiveServer,
) -> None:
    stream = server.app.runtime.streams.todo
    async with connect(server.ws_url) as client:
        first = await client.join_synced("inbox", subscription_id="s1")
        assert first["event"]["data"] == []
        await stream.set("inbox", "t1", todo("t1"))
        assert (await client.recv())["event"]["type"] == "create"

        second = await client.join_synced("inbox", subscription_id="s1")
        assert second["event"]["data"] == [todo("t1")]
        assert second["timestamp"] > first["timestamp"]

        await stream.set("inbox", "t1", todo("t1", "again"))
        frames = await client.barrier()
    assert [f["event"]["type"] for f in frames] == ["update"]
    assert server.app.runtime.hub.subscriber_count(("todo", "inbox")) == 0


async def test_same_subscription_id_on_two_connections_is_independent(server: LiveServer) -> None:
    stream = server.app.runtime.streams.todo
    async with connect(server.ws_url) as one, connect(server.ws_url) as two:
        data = await one.join("inbox", subscription_id="shared")
        await one.recv()
        await two.join_synced("inbox", subscription_id="shared")
        await two.leave(data)  # leaves only its own subscription
        assert await two.barrier() == []
        await stream.set("inbox", "t1", todo("t1"))
        assert [f["event"]["type"] for f in await one.barrier()] == ["create"]
        assert await two.barrier() == []


# -- handshake ---------------------------------------------------------------------------------


async def test_offered_authorization_subprotocol_is_echoed(server: LiveServer) -> None:
    async with connect(server.ws_url, subprotocols=["Authorization", "tok"]) as client:
        assert client.ws.subprotocol == "Authorization"
        sync = await client.join_synced("inbox")
    assert sync["event"]["data"] == []


async def test_no_subprotocol_is_answered_when_none_is_offered(server: LiveServer) -> None:
    async with connect(server.ws_url) as client:
        assert client.ws.subprotocol is None


@pytest.mark.parametrize(
    "path", ["", "some/path?authToken=x", "streams/", "?authToken=abc&x=1", "a/b/c/d"]
)
async def test_stream_connection_works_on_any_path(server: LiveServer, path: str) -> None:
    await server.app.runtime.streams.todo.set("inbox", "t1", todo("t1"))
    async with connect(server.ws_url + path) as client:
        sync = await client.join_synced("inbox")
    assert sync["event"]["data"] == [todo("t1")]


async def test_server_sends_no_greeting_frame(server: LiveServer) -> None:
    async with connect(server.ws_url) as client:
        assert await client.barrier() == []


# -- no change lost between snapshot and live feed ---------------------------------------------


class SlowSnapshotAdapter(MemoryStreamAdapter):
    """The memory store with a slow group read, so writes land before *and* after the snapshot."""

    async def get_group(
        self, stream: str, group: str, *, limit: int | None = None, before: str | None = None
    ) -> GroupSnapshot:
        await asyncio.sleep(0.003)
        snapshot = await super().get_group(stream, group, limit=limit, before=before)
        await asyncio.sleep(0.003)
        return snapshot


async def test_clients_joining_during_writes_reconstruct_the_stored_group() -> None:
    adapter = SlowSnapshotAdapter()
    app = todo_app(adapter=adapter)
    clients = 20
    writes = 0
    synced = 0
    writer_done = asyncio.Event()

    async with live_server(app) as srv:
        stream = srv.app.runtime.streams.todo

        async def writer() -> None:
            nonlocal writes
            rng = random.Random(20261123)
            extra = 0
            while extra < 50:
                item_id = f"t{rng.randrange(25)}"
                if rng.random() < 0.25:
                    await stream.delete("g", item_id)
                else:
                    await stream.set("g", item_id, todo(item_id, f"w{writes}"))
                writes += 1
                if synced == clients:
                    extra += 1
                await asyncio.sleep(0)  # let joins and writers interleave with the writes
            writer_done.set()

        async def follow(
            client: StreamClient, npm: NpmGroupState, strict: StrictGroupState
        ) -> None:
            first = True
            while True:
                frame = await client.recv(within=30)
                if frame["groupId"] == BARRIER_GROUP:
                    return
                assert not first or frame["event"]["type"] == "sync", frame
                first = False
                npm.apply(frame)
                strict.apply(frame)

        async def subscriber(index: int) -> tuple[NpmGroupState, StrictGroupState]:
            nonlocal synced
            npm, strict = NpmGroupState(), StrictGroupState()
            async with connect(srv.ws_url) as client:
                await wait_until(lambda: writes >= index * 15, within=30)
                await client.join("g")
                async with asyncio.TaskGroup() as tasks:
                    reader = tasks.create_task(follow(client, npm, strict))
                    await wait_until(lambda: npm.last_timestamp > 0, within=30)
                    synced += 1
                    await writer_done.wait()
                    await client.join(BARRIER_GROUP, subscription_id="barrier")
                    await reader
            return npm, strict

        async with asyncio.timeout(45), asyncio.TaskGroup() as tasks:
            tasks.create_task(writer())
            states = [tasks.create_task(subscriber(i)) for i in range(clients)]

        stored = (await adapter.get_group("todo", "g")).items
        assert stored, "the writer should leave items behind"
        for task in states:
            npm, strict = task.result()
            assert strict.state == stored
            assert npm.state == stored


# -- slow consumers ----------------------------------------------------------------------------


async def test_slow_consumer_is_closed_with_1013_while_others_get_every_frame() -> None:
    # The frame cap is what this test fills; the byte cap must not refuse the final big sync.
    app = todo_app(
        config=Config(limits=Limits(outbox_capacity=8, max_outbound_bytes=64 * 1024 * 1024))
    )
    payload = "x" * 32_000
    async with live_server(app) as srv:
        runtime = srv.app.runtime
        stream = runtime.streams.todo
        async with connect(srv.ws_url) as normal:
            await normal.join_synced("g")
            # max_queue=1: the client library stops reading the socket once one frame waits.
            # No permessage-deflate, or the payloads shrink to nothing and never fill a buffer.
            async with connect(srv.ws_url, max_queue=1, compression=None) as slow:
                await slow.join_synced("g")
                slow_conn: Connection = max(runtime.connections, key=lambda c: c.id)

                sent = 0
                while not slow_conn.outbox.is_overflowed:
                    assert sent < 2000, "the slow consumer never filled its outbox"
                    for _ in range(4):
                        await stream.set("g", f"t{sent}", todo(f"t{sent}", payload))
                        sent += 1
                    # Lock-step, so the reading client's outbox never holds more than 4 frames.
                    frames = await normal.recv_n(4)
                    assert [f["id"] for f in frames] == [f"t{n}" for n in range(sent - 4, sent)]

                # The others keep receiving after the overflow.
                for n in range(sent, sent + 4):
                    await stream.set("g", f"t{n}", todo(f"t{n}"))
                frames = await normal.recv_n(4)
                assert [f["id"] for f in frames] == [f"t{n}" for n in range(sent, sent + 4)]

                # Once the slow client reads again it finds the 1013 close after what was in
                # flight.
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(10):
                        while True:
                            await slow.ws.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1013

            await wait_until(lambda: slow_conn not in runtime.connections)
            await stream.set("g", "after", todo("after"))
            assert (await normal.recv())["id"] == "after"

        # The server stays up: new connections and HTTP are served.
        async with connect(srv.ws_url, max_size=None) as fresh:
            sync = await fresh.join_synced("g")
            assert len(sync["event"]["data"]) == sent + 5
        async with httpx2.AsyncClient(timeout=5) as http:
            response = await http.get(srv.url + "/health")
            assert response.status_code == 200


async def test_a_sync_larger_than_the_byte_cap_is_refused_and_the_socket_stays_open() -> None:
    app = todo_app(config=Config(limits=Limits(max_outbound_bytes=64 * 1024)))
    async with live_server(app) as srv:
        stream = srv.app.runtime.streams.todo
        for n in range(10):
            await stream.set("big", f"t{n}", todo(f"t{n}", "x" * 10_000))
        await stream.set("small", "s", todo("s"))
        async with connect(srv.ws_url) as client:
            await client.join("big")
            refused = await client.recv()
            assert refused["event"]["event"]["type"] == "error"
            assert refused["event"]["event"]["data"]["code"] == "SYNC_TOO_LARGE"
            assert refused["groupId"] == "big"
            sync = await client.join_synced("small")
            assert [item["id"] for item in sync["event"]["data"]] == ["s"]
            await stream.set("big", "t0", todo("t0"))  # no subscription was created for big
            await stream.set("small", "s2", todo("s2"))
            assert (await client.recv())["id"] == "s2"


async def test_repeated_joins_of_one_group_read_the_store_once() -> None:
    app = todo_app()
    async with live_server(app) as srv:
        runtime = srv.app.runtime
        await runtime.streams.todo.set("g", "t1", todo("t1"))
        async with connect(srv.ws_url) as client:
            for n in range(20):
                sync = await client.join_synced("g", subscription_id=f"s{n}")
                assert [item["id"] for item in sync["event"]["data"]] == ["t1"]
            assert runtime.hub.sync_cache.misses == 1
            await runtime.streams.todo.set("g", "t2", todo("t2"))
            assert (await client.recv())["id"] == "t2"
            sync = await client.join_synced("g", subscription_id="after")
            assert [item["id"] for item in sync["event"]["data"]] == ["t1", "t2"]
            assert runtime.hub.sync_cache.misses == 2


# -- access checks run beside the reader -------------------------------------------------------


async def test_a_leave_during_a_slow_can_access_cancels_it_and_later_frames_are_served() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow_check(sub: Any, ctx: Any) -> bool:
        started.set()
        try:
            await asyncio.sleep(30)  # far beyond the test: only a cancel ends it
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return True

    app = create_app(
        streams=[
            StreamConfig(name="todo", schema=Todo),
            StreamConfig(name="guarded", schema=Todo, can_access=slow_check),
        ]
    )
    async with live_server(app) as srv:
        await srv.app.runtime.streams.todo.set("g", "t1", todo("t1"))
        async with connect(srv.ws_url) as client:
            data = await client.join("g", stream="guarded", subscription_id="slow")
            async with asyncio.timeout(10):
                await started.wait()
            # The reader is not blocked by the pending check: this join is answered at once.
            sync = await client.join_synced("g", subscription_id="fast")
            assert [item["id"] for item in sync["event"]["data"]] == ["t1"]
            await client.leave(data)
            async with asyncio.timeout(10):
                await cancelled.wait()
            # Nothing was sent for the cancelled join; the connection keeps working.
            await srv.app.runtime.streams.todo.set("g", "t2", todo("t2"))
            frame = await client.recv()
            assert frame["id"] == "t2"
            assert frame["streamName"] == "todo"


async def test_under_uvicorn_fan_out_takes_the_direct_transport(server: LiveServer) -> None:
    # If a uvicorn upgrade renames what DirectTransport relies on, Surge would silently fall
    # back to one ASGI send per frame (4x slower): this test fails instead.
    async with connect(server.ws_url) as client:
        await client.join_synced("g")
        conn = next(iter(server.app.runtime.connections))
        assert conn.outbox.transport_kind == "direct"
