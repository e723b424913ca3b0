"""Offsets, epochs and resume on the wire (docs/protocol.md sections 2 and 3), end to end: a live
server on every store and raw WebSocket clients."""

from __future__ import annotations

import asyncio
import functools
import operator
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from conftest import require_component
from redis_server import REDIS_TEST_URL, drop_redis_keys, redis_is_up
from surge import Config, Limits, StreamConfig, create_app
from surge.server.app import SurgeApp
from surge.server.stats import STATS
from surge.streams.adapter import StreamAdapter
from surge.streams.feed import History, Resync
from surge.streams.stores.file import FileStreamAdapter
from surge.streams.stores.memory import MemoryStreamAdapter
from surge.testing import LiveServer, live_server

from .streamclient import StreamClient, StrictGroupState, connect, is_error_event

pytestmark = pytest.mark.timeout(90)

Frame = dict[str, Any]


class Todo(BaseModel):
    id: str
    description: str = ""
    done: bool = False


def todo(id: str, description: str = "d") -> dict[str, Any]:
    return {"id": id, "description": description, "done": False}


def app_on(adapter: StreamAdapter, **stream: Any) -> SurgeApp:
    return create_app(streams=[StreamConfig(name="todo", schema=Todo, **stream)], adapter=adapter)


@pytest.fixture(params=["memory", "file", "redis"])
def make_adapter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    prefix = f"surge-test-{uuid.uuid4().hex}"

    def make() -> StreamAdapter:
        if request.param == "memory":
            return MemoryStreamAdapter()
        if request.param == "file":
            return FileStreamAdapter(tmp_path / "streams")
        require_component(redis_is_up(), f"no Redis server answers at {REDIS_TEST_URL}")
        from surge.streams.stores.redis import RedisStreamAdapter

        return RedisStreamAdapter(REDIS_TEST_URL, prefix=prefix)

    yield make
    if request.param == "redis" and redis_is_up():
        drop_redis_keys(prefix)


@pytest.fixture
async def server(make_adapter: Callable[[], StreamAdapter]) -> AsyncIterator[LiveServer]:
    async with live_server(app_on(make_adapter())) as srv:
        yield srv


def since(frame: Frame) -> dict[str, Any]:
    return {"offset": frame["offset"], "epoch": frame["epoch"]}


async def join_since(
    client: StreamClient, group: str, position: dict[str, Any] | None, id: str | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {"streamName": "todo", "groupId": group}
    if id is not None:
        data["id"] = id
    data["subscriptionId"] = "s1"
    if position is not None:
        data["since"] = position
    await client.send_json({"type": "join", "data": data})
    return data


async def until_barrier(client: StreamClient) -> list[Frame]:
    return await client.barrier(within=10)


async def test_every_change_event_and_sync_frame_carries_an_increasing_offset_and_the_epoch(
    server: LiveServer,
) -> None:
    stream = server.app.runtime.streams.todo
    epoch = server.app.runtime.adapter.epoch
    await stream.set("inbox", "t0", todo("t0"))
    async with connect(server.ws_url) as client:
        sync = await client.join_synced("inbox")
        assert sync["epoch"] == epoch and isinstance(sync["offset"], int) and sync["offset"] > 0
        assert "recovered" not in sync
        await stream.set("inbox", "t1", todo("t1"))
        await stream.send({"groupId": "inbox"}, {"type": "typing", "data": None})
        await stream.update("inbox", "t1", [{"type": "set", "path": "done", "value": True}])
        await stream.delete("inbox", "t0")
        frames = await client.recv_n(4, within=10)
    assert [f["event"]["type"] for f in frames] == ["create", "event", "update", "delete"]
    offsets = [sync["offset"]] + [f["offset"] for f in frames]
    assert offsets == sorted(set(offsets))
    assert {f["epoch"] for f in frames} == {epoch}


async def test_a_resume_replays_exactly_the_missed_changes_and_events_in_order_without_a_sync(
    server: LiveServer,
) -> None:
    stream = server.app.runtime.streams.todo
    await stream.set("inbox", "t0", todo("t0"))
    async with connect(server.ws_url) as client:
        sync = await client.join_synced("inbox")
    # Away: changes and an event the client must get, in order, once.
    await stream.set("inbox", "t1", todo("t1", "while away"))
    await stream.send({"groupId": "inbox"}, {"type": "note", "data": {"n": 1}})
    await stream.set("inbox", "t0", todo("t0", "edited"))
    await stream.delete("inbox", "t1")
    await stream.set("elsewhere", "x", todo("x"))  # another group: not replayed
    resumes = STATS.resumes

    async with connect(server.ws_url) as client:
        await join_since(client, "inbox", since(sync))
        head = await client.recv()
        replay = await client.recv_n(4, within=10)
        assert await until_barrier(client) == []
        await stream.set("inbox", "t2", todo("t2", "live"))
        live = await client.recv()

    assert head["event"] == {"type": "resume", "data": {"since": sync["offset"], "missed": 4}}
    assert head["epoch"] == sync["epoch"]
    assert head["offset"] >= replay[-1]["offset"]
    assert [(f["event"]["type"], f.get("id")) for f in replay] == [
        ("create", "t1"),
        ("event", None),
        ("update", "t0"),
        ("delete", "t1"),
    ]
    assert replay[1]["event"]["event"] == {"type": "note", "data": {"n": 1}}
    offsets = [sync["offset"], *(f["offset"] for f in replay), live["offset"]]
    assert offsets == sorted(set(offsets))
    assert live["offset"] > head["offset"]
    assert head["timestamp"] < replay[0]["timestamp"] < replay[-1]["timestamp"] < live["timestamp"]
    # The client's copy, rebuilt from the sync and the replay, is the stored group.
    state = StrictGroupState()
    for frame in [sync, *replay, live]:
        state.apply(frame)
    assert state.state == [t.model_dump() for t in await stream.get_group("inbox")]
    assert STATS.resumes == resumes + 1


async def test_an_item_subscription_resumes_with_its_items_messages_only(
    server: LiveServer,
) -> None:
    stream = server.app.runtime.streams.todo
    async with connect(server.ws_url) as client:
        sync = await client.join_synced("inbox", "t1")
    await stream.set("inbox", "t2", todo("t2"))
    await stream.set("inbox", "t1", todo("t1", "mine"))
    await stream.send({"groupId": "inbox"}, {"type": "group-wide", "data": None})
    await stream.send({"groupId": "inbox", "id": "t1"}, {"type": "for-t1", "data": None})

    async with connect(server.ws_url) as client:
        await join_since(client, "inbox", since(sync), id="t1")
        head = await client.recv()
        rest = await until_barrier(client)
    assert head["id"] == "t1" and head["event"]["data"]["missed"] == 2
    assert [(f["event"]["type"], f["id"]) for f in rest] == [("create", "t1"), ("event", "t1")]


async def test_a_resume_at_the_current_offset_misses_nothing(server: LiveServer) -> None:
    async with connect(server.ws_url) as client:
        sync = await client.join_synced("inbox")
    async with connect(server.ws_url) as client:
        await join_since(client, "inbox", since(sync))
        head = await client.recv()
        assert await until_barrier(client) == []
    assert head["event"]["data"] == {"since": sync["offset"], "missed": 0}


async def test_an_unknown_epoch_or_a_future_offset_gets_a_sync_marked_not_recovered(
    server: LiveServer,
) -> None:
    stream = server.app.runtime.streams.todo
    await stream.set("inbox", "t1", todo("t1"))
    async with connect(server.ws_url) as client:
        sync = await client.join_synced("inbox")
        for position in (
            {"offset": sync["offset"], "epoch": "another-store"},
            {"offset": sync["offset"] + 10_000, "epoch": sync["epoch"]},
        ):
            await join_since(client, "inbox", position)
            again = await client.recv()
            assert again["event"] == {"type": "sync", "data": [todo("t1")]}, again
            assert again["recovered"] is False
            assert again["offset"] == sync["offset"] and again["epoch"] == sync["epoch"]


async def test_an_offset_older_than_the_window_gets_a_sync_marked_not_recovered(
    make_adapter: Callable[[], StreamAdapter],
) -> None:
    async with live_server(app_on(make_adapter(), history_size=3)) as server:
        stream = server.app.runtime.streams.todo
        async with connect(server.ws_url) as client:
            sync = await client.join_synced("inbox")
        for n in range(4):
            await stream.set("inbox", "t1", todo("t1", f"v{n}"))
        async with connect(server.ws_url) as client:
            await join_since(client, "inbox", since(sync))
            again = await client.recv()
            assert again["event"]["type"] == "sync" and again["recovered"] is False
            assert again["event"]["data"] == [todo("t1", "v3")]
            assert await until_barrier(client) == []


async def test_a_malformed_since_is_an_invalid_message_and_a_leave_still_matches(
    server: LiveServer,
) -> None:
    stream = server.app.runtime.streams.todo
    async with connect(server.ws_url) as client:
        for bad in ({"offset": "1", "epoch": "e"}, {"offset": 1}, [1, "e"], {"offset": -1}):
            await join_since(client, "inbox", bad)  # type: ignore[arg-type]
            assert is_error_event(await client.recv(), "INVALID_MESSAGE")
        sync = await client.join_synced("inbox", subscription_id="s1")
        data = await join_since(client, "inbox", since(sync))  # replaces s1
        assert (await client.recv())["event"]["type"] == "resume"
        data.pop("since")
        await client.leave(data)  # no since: the same subscription
        assert await until_barrier(client) == []  # the leave was handled
        await stream.set("inbox", "t1", todo("t1"))
        assert await until_barrier(client) == []


async def test_after_a_feed_gap_a_resumed_subscription_gets_a_fresh_sync(
    server: LiveServer,
) -> None:
    stream = server.app.runtime.streams.todo
    async with connect(server.ws_url) as client:
        sync = await client.join_synced("inbox")
        await join_since(client, "inbox", since(sync))
        assert (await client.recv())["event"]["type"] == "resume"
        await stream.set("inbox", "t1", todo("t1"))
        assert (await client.recv())["event"]["type"] == "create"

        server.app.runtime.hub.dispatch(Resync("test"))
        fresh = await client.recv(within=10)
    assert fresh["event"] == {"type": "sync", "data": [todo("t1")]}
    assert "recovered" not in fresh


class CountingHistory(MemoryStreamAdapter):
    """The memory store counting its history reads, each slowed so that joins overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def read_history(self, stream: str, group: str, since: int) -> History | None:
        self.reads += 1
        await asyncio.sleep(0.05)
        return await super().read_history(stream, group, since)


async def test_many_clients_resuming_from_one_offset_share_one_history_read() -> None:
    adapter = CountingHistory()
    async with live_server(app_on(adapter)) as server:
        stream = server.app.runtime.streams.todo
        async with connect(server.ws_url) as client:
            sync = await client.join_synced("inbox")
        for n in range(5):
            await stream.set("inbox", f"t{n}", todo(f"t{n}"))

        async def resume() -> list[Frame]:
            async with connect(server.ws_url) as client:
                await join_since(client, "inbox", since(sync))
                return await client.recv_n(6, within=20)

        results = await asyncio.gather(*(resume() for _ in range(20)))
    assert adapter.reads == 1
    assert all(frames == results[0] for frames in results[1:])
    assert results[0][0]["event"]["data"]["missed"] == 5


class SlowHistory(MemoryStreamAdapter):
    """The memory store with a slow history read, so writes land before *and* after it."""

    async def read_history(self, stream: str, group: str, since: int) -> History | None:
        await asyncio.sleep(0.003)
        history = await super().read_history(stream, group, since)
        await asyncio.sleep(0.003)
        return history


async def test_clients_resuming_during_writes_lose_and_repeat_nothing() -> None:
    adapter = SlowHistory()
    clients = 12
    # A history and outboxes big enough that every resume can succeed, however long a loaded
    # machine keeps a client away (20 s of writes).
    limits = Limits(outbox_capacity=30_000, max_outbound_bytes=32 * 1024 * 1024)
    app = create_app(
        streams=[StreamConfig(name="todo", schema=Todo, history_size=20_000)],
        adapter=adapter,
        config=Config(limits=limits),
    )
    async with live_server(app) as server:
        stream = server.app.runtime.streams.todo
        stop = asyncio.Event()

        async def writer() -> None:
            rng = random.Random(20261201)
            n = 0
            while not stop.is_set():
                item_id = f"t{rng.randrange(15)}"
                if rng.random() < 0.2:
                    await stream.delete("g", item_id)
                elif rng.random() < 0.2:
                    await stream.send({"groupId": "g"}, {"type": "tick", "data": n})
                else:
                    await stream.set("g", item_id, todo(item_id, f"w{n}"))
                n += 1
                await asyncio.sleep(0.001)

        finished = 0

        async def subscriber(index: int) -> tuple[StrictGroupState, list[int]]:
            nonlocal finished
            state, offsets = StrictGroupState(), []
            position: dict[str, Any] | None = None
            for attempt in range(4):  # join, then resume three times
                async with connect(server.ws_url) as client:
                    await join_since(client, "g", position)
                    first = await client.recv(within=20)
                    assert first["event"]["type"] == ("sync" if attempt == 0 else "resume"), first
                    if attempt == 0:
                        state.apply(first)
                        offsets.append(first["offset"])
                    else:  # the position the replay brings the client to
                        assert first["event"]["data"]["since"] == offsets[-1]
                        assert first["offset"] >= offsets[-1]
                    for _ in range(3 + index):
                        frame = await client.recv(within=20)
                        state.apply(frame)
                        offsets.append(frame["offset"])
                        position = since(frame)
                    if attempt == 3:  # stay until the writer stopped, then take the rest
                        finished += 1
                        if finished == clients:
                            stop.set()
                        await stop.wait()
                        for frame in await client.barrier(within=20):
                            state.apply(frame)
                            offsets.append(frame["offset"])
            return state, offsets

        async with asyncio.timeout(60), asyncio.TaskGroup() as tasks:
            tasks.create_task(writer())
            subs = [tasks.create_task(subscriber(i)) for i in range(clients)]
        stored = (await adapter.get_group("todo", "g")).items
        for task in subs:
            state, offsets = task.result()
            # Across the sync, the live frames and three replays: nothing repeated or
            # reordered, and nothing lost: the client's copy is the stored group.
            assert offsets == sorted(set(offsets)), offsets
            assert state.state == stored


async def test_a_subscription_with_deltas_is_replayed_updates_as_their_patches(
    server: LiveServer,
) -> None:
    stream = server.app.runtime.streams.todo
    await stream.set("inbox", "t1", todo("t1", "hello"))
    data: dict[str, Any] = {"streamName": "todo", "groupId": "inbox", "subscriptionId": "s1"}
    async with connect(server.ws_url) as client:
        await client.send_json({"type": "join", "data": {**data, "deltas": True}})
        sync = await client.recv()
    await stream.update("inbox", "t1", [{"type": "append", "path": "description", "value": "!"}])
    await stream.set("inbox", "t1", todo("t1", "replaced"))

    async with connect(server.ws_url) as client:
        await client.send_json(
            {"type": "join", "data": {**data, "deltas": True, "since": since(sync)}}
        )
        head = await client.recv()
        patch, whole = await client.recv_n(2)
    assert head["event"]["data"]["missed"] == 2
    assert patch["event"] == {
        "type": "patch",
        "data": {"ops": [{"type": "append", "path": "description", "value": "!"}]},
    }
    assert patch["offset"] < whole["offset"] and whole["event"]["type"] == "update"


async def test_a_cached_replay_goes_out_in_one_write_restamped_after_newer_frames(
    server: LiveServer,
) -> None:
    # The replay is encoded and joined once (ReplayCache, FrameBlock); a connection that was
    # already sent newer frames gets it restamped frame by frame, the rest byte for byte.
    stream = server.app.runtime.streams.todo
    await stream.set("inbox", "t0", todo("t0"))
    async with connect(server.ws_url) as client:
        sync = await client.join_synced("inbox")
    for n in range(30):
        await stream.update(
            "inbox", "t0", [{"type": "set", "path": "description", "value": f"{n}"}]
        )
    async with connect(server.ws_url) as first:
        await join_since(first, "inbox", since(sync))
        cached = await first.recv_n(31, within=10)  # the resume frame and the 30 updates
    async with connect(server.ws_url) as client:
        other = await client.join_synced("other")  # stamped after the cached replay
        assert other["timestamp"] >= cached[0]["timestamp"]  # so the replay is restamped
        writes = STATS.writes
        await join_since(client, "inbox", since(sync))
        again = await client.recv_n(31, within=10)
        assert STATS.writes == writes + 1  # the whole replay in one write
    stamps = [other["timestamp"]] + [f["timestamp"] for f in again]
    assert stamps == sorted(set(stamps))
    unstamped = [{k: v for k, v in f.items() if k != "timestamp"} for f in cached]
    assert [{k: v for k, v in f.items() if k != "timestamp"} for f in again] == unstamped


class _Recording:
    """A connection of ``surge.client`` whose received frames are kept (decoded)."""

    def __init__(self, inner: Any, frames: list[Frame]) -> None:
        self.inner, self.frames = inner, frames

    async def send(self, text: str) -> None:
        await self.inner.send(text)

    async def recv(self) -> str:
        text: str = await self.inner.recv()
        self.frames.append(orjson.loads(text))
        return text

    async def close(self) -> None:
        await self.inner.close()


class _GatedTransport:
    """Connections wait for ``gate`` (the test decides when the client comes back)."""

    def __init__(self, url: str) -> None:
        from surge.client.transport import WebSocketTransport

        self.inner = WebSocketTransport(url)
        self.gate = asyncio.Event()
        self.gate.set()
        self.connections: list[_Recording] = []

    async def connect(self) -> _Recording:
        await self.gate.wait()
        conn = _Recording(await self.inner.connect(), [])
        self.connections.append(conn)
        return conn


async def test_the_python_client_resumes_from_one_batched_resume_frame(
    server: LiveServer,
) -> None:
    # The compact form's resume (protocol.md section 3): the missed changes and events inside
    # the resume frame. Surge's client ends with the stored state, hears each event once, and
    # its offset continues, so the next resume starts where this one ended.
    from surge.client import Backoff, Client, ConnectionState

    stream = server.app.runtime.streams.todo
    for n in range(3):
        await stream.set("inbox", f"t{n}", todo(f"t{n}", "hello"))
    transport = _GatedTransport(server.ws_url)
    fast = Backoff(initial=0.05, max_delay=0.2, stable_after=1.0)
    async with Client(transport, backoff=fast) as client:  # deltas (and compact) by default
        inbox = await client.subscribe_group("todo", "inbox", timeout=20)
        item = await client.subscribe_item("todo", "inbox", "t1", timeout=20)
        events: list[Any] = []
        item_events: list[Any] = []
        inbox.on_event("tick", events.append)
        item.on_event("tick", item_events.append)

        for round_ in range(2):
            transport.gate.clear()
            await transport.connections[-1].close()
            await client.wait_state(ConnectionState.RECONNECTING, 20)
            append = [{"type": "append", "path": "description", "value": f"!{round_}"}]
            await stream.update("inbox", "t1", append)
            await stream.send({"groupId": "inbox"}, {"type": "tick", "data": f"g{round_}"})
            await stream.update("inbox", "t1", append)  # the same item twice in one replay
            await stream.set("inbox", f"n{round_}", todo(f"n{round_}"))
            await stream.send(
                {"groupId": "inbox", "id": "t1"}, {"type": "tick", "data": f"i{round_}"}
            )
            await stream.delete("inbox", "t0" if round_ == 0 else "t2")
            await stream.update("inbox", "t1", [{"type": "set", "path": "done", "value": True}])
            stored = [
                item if isinstance(item, dict) else item.model_dump()
                for item in await stream.get_group("inbox")
            ]
            position = inbox.offset
            transport.gate.set()
            await inbox.wait(functools.partial(operator.eq, stored), 20)
            t1 = next(i for i in stored if i["id"] == "t1")
            await item.wait(functools.partial(operator.eq, t1), 20)
            assert inbox.offset is not None and position is not None and inbox.offset > position

            frames = transport.connections[-1].frames
            resumes = [f for f in frames if f.get("event", {}).get("type") == "resume"]
            assert len(resumes) == 2 and all(f["offset"] == inbox.offset for f in resumes)
            assert not [f for f in frames if f.get("event", {}).get("type") == "sync"]
            assert not [f for f in frames if "patch" in f]  # no frame per replayed patch
            group_replay = next(f for f in resumes if "id" not in f)["event"]["data"]["replay"]
            kinds = [entry[1] for entry in group_replay]
            assert kinds == ["patch", "event", "patch", "create", "event", "delete", "patch"]
            offsets = [entry[0] for entry in group_replay]
            assert offsets == sorted(set(offsets)) and offsets[0] > position

        assert events == ["g0", "i0", "g1", "i1"]  # once each, in order
        assert item_events == ["i0", "i1"]
        assert (inbox.resumes, item.resumes) == (2, 2)
        assert inbox.recovered is True and item.recovered is True
        assert item.state is not None and item.state["description"] == "hello!0!0!1!1"
