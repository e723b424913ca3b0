"""Presence across instances on Redis: two live servers sharing a prefix, real WebSocket clients.

A member held on two instances is one member and leaves only when both let go; each join and
leave is announced once to every subscriber on every instance; an instance that stops
heartbeating (as a killed one does) loses its members within its bound, each leave announced
once, and nothing of it stays in Redis. The kill -9 of a real ``surge start`` process is in
tests/compat/test_presence_npm.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Any

import pytest
import redis.asyncio as aioredis

from conftest import require_component
from redis_server import REDIS_TEST_URL, PrivateRedis, drop_redis_keys, redis_is_up
from surge import Config, PresenceSettings, StreamAuth, StreamConfig, create_app
from surge.errors import StoreError
from surge.streams.stores.redis import RedisStreamAdapter
from surge.testing import LiveServer, live_server

from .streamclient import StreamClient, connect, wait_until
from .test_presence import ALICE, BOB, Message, authenticate, join_room, presence_frames

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix private to the test on the shared Redis; its keys are deleted afterwards."""
    require_component(redis_is_up(REDIS_TEST_URL), f"no Redis server answers at {REDIS_TEST_URL}")
    unique = f"surge-test-{uuid.uuid4().hex}"
    yield unique
    drop_redis_keys(unique)


def redis_app(prefix: str, url: str = REDIS_TEST_URL, timeout: float = 15.0) -> Any:
    return create_app(
        config=Config(
            stream_auth=StreamAuth(authenticate=authenticate),
            presence=PresenceSettings(timeout=timeout),
        ),
        streams=[
            StreamConfig(
                name="room",
                schema=Message,
                presence=True,
                presence_key="userId",
                presence_meta=["name"],
            )
        ],
        adapter=RedisStreamAdapter(url, prefix=prefix),
    )


@asynccontextmanager
async def two_instances(
    prefix: str, url: str = REDIS_TEST_URL, presence_timeout: float = 15.0
) -> AsyncIterator[tuple[LiveServer, LiveServer]]:
    async with (
        live_server(redis_app(prefix, url, presence_timeout)) as a,
        live_server(redis_app(prefix, url, presence_timeout)) as b,
    ):
        yield a, b


async def next_presence(client: StreamClient, within: float = 10.0) -> dict[str, Any]:
    """The next presence event this client receives (other frames are skipped)."""
    async with asyncio.timeout(within):
        while True:
            events = presence_frames([await client.recv(within)])
            if events:
                return events[0]


async def settled(*servers: LiveServer) -> None:
    for server in servers:
        await wait_until(server.app.runtime.presence.is_idle, within=10)


async def quiet(client: StreamClient, *servers: LiveServer) -> list[dict[str, Any]]:
    """Presence events still on their way to ``client`` (none expected): everything the servers
    published has reached it once a send published after it (a barrier on the feed) has."""
    await settled(*servers)
    marker = f"m-{uuid.uuid4().hex[:6]}"
    await servers[0].app.streams.room.send({"groupId": "r1"}, {"type": "marker", "data": marker})
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while True:
            frame = await client.recv(10)
            event = frame["event"]
            if event["type"] == "event" and event["event"] == {"type": "marker", "data": marker}:
                return seen
            seen.extend(presence_frames([frame]))


async def test_a_member_on_two_instances_is_one_member_until_both_let_go(prefix: str) -> None:
    async with two_instances(prefix) as (a, b), AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(connect(f"{a.ws_url}?authToken=alice-token"))
        _, members = await join_room(watcher)
        assert members == [ALICE]

        alice_on_b = await stack.enter_async_context(connect(f"{b.ws_url}?authToken=alice-token"))
        _, members = await join_room(alice_on_b)
        assert members == [ALICE]

        bob = await stack.enter_async_context(connect(f"{b.ws_url}?authToken=bob-token"))
        bob_join, members = await join_room(bob)
        assert members == [ALICE, BOB]
        assert await next_presence(watcher) == {"action": "join", "member": BOB}
        assert await a.app.streams.room.presence("r1") == [ALICE, BOB]
        assert await b.app.streams.room.presence("r1") == [ALICE, BOB]
        assert await quiet(watcher, a, b) == []

        # alice's tab on B goes: she is still on A, so nobody hears of it.
        await alice_on_b.ws.close()
        await wait_until(lambda: b.app.runtime.hub.subscriber_count(("room", "r1")) == 1)
        assert await quiet(watcher, a, b) == []
        assert await a.app.streams.room.presence("r1") == [ALICE, BOB]

        await bob.leave(bob_join)
        assert await next_presence(watcher) == {"action": "leave", "member": BOB}
        assert await quiet(watcher, a, b) == []
        assert await b.app.streams.room.presence("r1") == [ALICE]
        history = await a.app.runtime.adapter.read_history("room", "r1", 0)
        assert history is not None  # presence is not history: only the markers' sends are
        assert [m.event["type"] for m in history.messages] == ["marker"] * 3  # type: ignore[union-attr]


async def test_an_instance_that_stops_heartbeating_loses_its_members_once(prefix: str) -> None:
    async with two_instances(prefix) as (a, b), AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(connect(f"{a.ws_url}?authToken=alice-token"))
        await join_room(watcher)

        # A third instance that holds bob, then dies without a word (its pool just goes away).
        doomed = RedisStreamAdapter(REDIS_TEST_URL, prefix=prefix)
        await doomed.open(lambda message: None)
        presence = doomed.presence_backend(timeout=2.0)
        await presence.add("room", "r1", {"id": "bob", "meta": {"name": "Bob"}})
        await presence.add("room", "r2", {"id": "bob"})
        assert await next_presence(watcher) == {"action": "join", "member": BOB}
        await doomed.close()  # no presence.close(): as after kill -9
        died = time.monotonic()

        assert await next_presence(watcher, within=15) == {"action": "leave", "member": BOB}
        # The bound: its lease (timeout minus a sweep interval) plus one sweep interval of a
        # survivor (1 s by default), plus scheduling slack on a busy machine.
        assert time.monotonic() - died < 2.0 + 1.0 + 3.0
        assert await quiet(watcher, a, b) == []
        assert await b.app.streams.room.presence("r1") == [ALICE]
        assert await b.app.streams.room.presence("r2") == []

        client = aioredis.Redis.from_url(REDIS_TEST_URL)
        try:
            assert not await client.exists(f"{prefix}:presence:inst:{presence.instance}")
            ids = await client.zrange(f"{prefix}:presence:instances", 0, -1)
            assert presence.instance.encode() not in ids
        finally:
            await client.aclose()


async def test_an_instance_declared_dead_registers_its_members_again(prefix: str) -> None:
    async with two_instances(prefix) as (a, b), AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(connect(f"{a.ws_url}?authToken=alice-token"))
        await join_room(watcher)
        bob = await stack.enter_async_context(connect(f"{b.ws_url}?authToken=bob-token"))
        await join_room(bob)
        assert await next_presence(watcher) == {"action": "join", "member": BOB}

        # As if B had been paused past its lease: its deadline is in the past.
        backend: Any = b.app.runtime.presence.backend
        old_id = backend.instance
        client = aioredis.Redis.from_url(REDIS_TEST_URL)
        try:
            await client.zadd(f"{prefix}:presence:instances", {old_id: 0})
        finally:
            await client.aclose()

        # A (or B) sweeps bob away; B notices at its next heartbeat and adds him again.
        assert await next_presence(watcher, within=15) == {"action": "leave", "member": BOB}
        assert await next_presence(watcher, within=15) == {"action": "join", "member": BOB}
        assert backend.instance != old_id
        await wait_until(lambda: b.app.runtime.presence.sizes()["registered"] == 1, within=10)
        assert await a.app.streams.room.presence("r1") == [ALICE, BOB]


class MemberSet:
    """The member set a client builds from the presence events it receives, as set operations."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    def apply(self, frames: list[dict[str, Any]]) -> None:
        for data in presence_frames(frames):
            if data["action"] == "sync":
                self.ids = {m["id"] for m in data["members"]}
            elif data["action"] == "join":
                self.ids.add(data["member"]["id"])
            else:
                self.ids.discard(data["member"]["id"])


async def test_after_redis_lost_everything_the_members_come_back(
    private_redis: PrivateRedis,
) -> None:
    prefix = f"surge-test-{uuid.uuid4().hex}"
    async with (
        two_instances(prefix, private_redis.url, presence_timeout=3.0) as (a, b),
        AsyncExitStack() as stack,
    ):
        watcher = await stack.enter_async_context(connect(f"{a.ws_url}?authToken=alice-token"))
        seen = MemberSet()
        _, members = await join_room(watcher)
        seen.ids = {m["id"] for m in members}
        bob = await stack.enter_async_context(connect(f"{b.ws_url}?authToken=bob-token"))
        await join_room(bob)
        assert await next_presence(watcher) == {"action": "join", "member": BOB}
        seen.ids.add("bob")

        await private_redis.kill()  # no persistence: every presence key is gone with it
        seen.ids = set()  # from here on, only what the watcher is told after the outage counts
        with pytest.raises(StoreError):
            await a.app.streams.room.presence("r1")
        await private_redis.start()

        # Both instances find their ids gone, register again and add their members; the
        # watcher's feed comes back with a resync and a fresh list.
        await wait_until(lambda: _members_are(a, ["alice", "bob"]), within=30)

        async def watcher_agrees() -> bool:
            with suppress(TimeoutError):
                seen.apply([await watcher.recv(0.5)])
            return seen.ids == {"alice", "bob"}

        await wait_until(watcher_agrees, within=30)
        assert await b.app.streams.room.presence("r1") == [ALICE, BOB]


async def _members_are(server: LiveServer, ids: list[str]) -> bool:
    try:
        members = await server.app.streams.room.presence("r1")
    except StoreError:
        return False
    return [m["id"] for m in members] == ids


async def test_many_joins_and_leaves_on_two_instances_leave_nothing_in_redis(prefix: str) -> None:
    tokens = ["alice-token", "bob-token", None]
    async with two_instances(prefix) as (a, b):
        for _round in range(3):
            async with AsyncExitStack() as stack:
                for i in range(12):
                    server = (a, b)[i % 2]
                    token = tokens[i % 3]
                    client = await stack.enter_async_context(
                        connect(
                            server.ws_url + (f"?authToken={token}" if token else ""),
                            max_queue=None,  # unread presence events must not stall the close
                        )
                    )
                    for group in (f"g{i % 3}", "all"):
                        await client.join(group, stream="room")

                async def everyone_there() -> bool:
                    members = await a.app.streams.room.presence("all")
                    return len(members) == 2 + 4  # alice, bob and 4 anonymous connections

                await wait_until(everyone_there, within=20)
            for server in (a, b):
                runtime = server.app.runtime
                await wait_until(lambda rt=runtime: not rt.hub.subscriptions_by_stream())  # type: ignore[misc]
            await settled(a, b)
            assert await a.app.streams.room.presence("all") == []
        for server in (a, b):
            assert server.app.runtime.presence.sizes() == dict.fromkeys(
                server.app.runtime.presence.sizes(), 0
            )
        redis_client = aioredis.Redis.from_url(REDIS_TEST_URL)
        try:
            keys = sorted(
                [k.decode() async for k in redis_client.scan_iter(match=f"{prefix}:*presence*")]
            )
        finally:
            await redis_client.aclose()
        # Only the two live instances' heartbeat entries remain.
        assert keys == [f"{prefix}:presence:instances"]
