"""surge.client against a real server (uvicorn on loopback) and in-process (the ASGI transport).

Every test runs twice: over real WebSockets (``surge.testing.live_server`` and
``surge.client.connect``) and over the in-process transport ``surge.testing`` uses; the protocol
client is the same code, so both must behave identically.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

from surge import (
    AuthRequest,
    Config,
    Limits,
    StreamAuth,
    StreamConfig,
    Subscription,
    create_app,
    extract_auth_token,
)
from surge.client import (
    Backoff,
    Change,
    Client,
    ConnectionState,
    SubscriptionError,
    TokenVia,
    UpgradeRefused,
    connect,
)
from surge.server.app import SurgeApp
from surge.testing import AsyncTestClient, live_server

pytestmark = pytest.mark.timeout(60)

FAST = Backoff(initial=0.05, max_delay=0.5)
WAIT = 10.0  # generous: both cores may be busy with other suites


class Todo(BaseModel):
    id: str
    description: str


def authenticate(request: AuthRequest) -> dict[str, str] | None:
    token = extract_auth_token(request)
    if token is None:
        return None
    if token.startswith("tok-"):
        return {"user": token.removeprefix("tok-")}
    raise PermissionError("invalid token")


def own_group(sub: Subscription, ctx: Any) -> bool:
    return ctx is not None and sub.groupId == ctx["user"]


def build_app() -> SurgeApp:
    return create_app(
        streams=[
            StreamConfig(name="todo", schema=Todo),
            StreamConfig(name="private", schema=Todo, can_access=own_group),
        ],
        config=Config(
            stream_auth=StreamAuth(authenticate=authenticate),
            limits=Limits(max_outbound_bytes=64 * 1024),
        ),
    )


MakeClient = Callable[..., Client]


@dataclass
class Env:
    app: SurgeApp
    client: MakeClient

    async def set(self, group: str, id: str, description: str = "d") -> None:
        await self.app.runtime.streams.todo.set(group, id, {"id": id, "description": description})


@pytest.fixture(params=["websocket", "in-process"])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    app = build_app()
    if request.param == "websocket":
        async with live_server(app) as server:

            def make(token: str | None = None, token_via: TokenVia = "subprotocol") -> Client:
                return connect(server.ws_url, token=token, token_via=token_via, backoff=FAST)

            yield Env(app, make)
    else:
        async with AsyncTestClient(app) as tc:

            def make_local(token: str | None = None, token_via: TokenVia = "subprotocol") -> Client:
                return tc.stream_client(token=token, token_via=token_via)

            yield Env(app, make_local)


async def test_group_subscription_follows_creates_updates_and_deletes(env: Env) -> None:
    await env.set("inbox", "a", "first")
    async with env.client() as client:
        inbox = await client.subscribe_group("todo", "inbox", timeout=WAIT)
        assert inbox.state == [{"id": "a", "description": "first"}]
        seen: list[Change] = []
        inbox.on_change(seen.append)
        await env.set("inbox", "b")
        await env.set("inbox", "a", "changed")
        await env.app.runtime.streams.todo.delete("inbox", "b")
        await inbox.wait(lambda items: items == [{"id": "a", "description": "changed"}], WAIT)
        assert [(c.kind, c.id) for c in seen] == [
            ("create", "b"),
            ("update", "a"),
            ("delete", "b"),
        ]


async def test_item_subscription_sees_only_its_item(env: Env) -> None:
    async with env.client() as client:
        item = await client.subscribe_item("todo", "inbox", "t1", timeout=WAIT)
        assert item.state is None
        changes = item.changes()
        await env.set("inbox", "other")
        await env.set("other-group", "t1")  # same id, other group: never routed here
        await env.set("inbox", "t1", "mine")
        first = await anext(changes)
        assert (first.kind, first.item) == ("create", {"id": "t1", "description": "mine"})
        assert item.state == {"id": "t1", "description": "mine"}


async def test_ephemeral_events_reach_on_event(env: Env) -> None:
    async with env.client() as client:
        inbox = await client.subscribe_group("todo", "inbox", timeout=WAIT)
        item = await client.subscribe_item("todo", "inbox", "t1", timeout=WAIT)
        group_events: list[Any] = []
        item_events: list[Any] = []
        inbox.on_event("typing", group_events.append)
        item.on_event("typing", item_events.append)
        streams = env.app.runtime.streams
        await streams.todo.send({"groupId": "inbox"}, {"type": "typing", "data": {"n": 1}})
        await streams.todo.send({"groupId": "inbox", "id": "t1"}, {"type": "typing", "data": 2})
        await env.set("inbox", "barrier")  # frames arrive in order: after it, both events did
        await inbox.wait(lambda items: len(items) == 1, WAIT)
        assert group_events == [{"n": 1}, 2]
        assert item_events == [2]


async def test_denied_join_raises_stream_access_denied(env: Env) -> None:
    async with env.client(token="tok-alice") as client:
        own = await client.subscribe_group("private", "alice", timeout=WAIT)
        assert own.state == []
        with pytest.raises(SubscriptionError) as caught:
            await client.subscribe_group("private", "bob", timeout=WAIT)
        assert caught.value.code == "STREAM_ACCESS_DENIED"
        with pytest.raises(SubscriptionError, match="STREAM_ACCESS_DENIED"):
            await client.subscribe_group("no_such_stream", "g", timeout=WAIT)
        assert client.state is ConnectionState.OPEN  # the socket stays open


async def test_token_in_the_query_authenticates_too(env: Env) -> None:
    async with env.client(token="tok-bob", token_via="query") as client:
        assert (await client.subscribe_group("private", "bob", timeout=WAIT)).state == []


async def test_a_refused_token_is_upgrade_refused_401(env: Env) -> None:
    async with env.client(token="wrong") as client:
        with pytest.raises(UpgradeRefused) as caught:
            await client.subscribe_group("todo", "inbox", timeout=WAIT)
        assert caught.value.status == 401
        assert client.state is ConnectionState.CLOSED


async def test_a_sync_larger_than_the_connection_may_queue_is_sync_too_large(env: Env) -> None:
    for n in range(80):
        await env.set("big", f"item-{n}", "x" * 1000)
    async with env.client() as client:
        with pytest.raises(SubscriptionError) as caught:
            await client.subscribe_group("todo", "big", timeout=WAIT)
        assert caught.value.code == "SYNC_TOO_LARGE"
        assert (await client.subscribe_group("todo", "small", timeout=WAIT)).state == []


async def test_unsubscribe_stops_changes_on_the_server(env: Env) -> None:
    async with env.client() as client:
        inbox = await client.subscribe_group("todo", "inbox", timeout=WAIT)
        await inbox.unsubscribe()
        await env.set("inbox", "after")
        barrier = await client.subscribe_group("todo", "barrier", timeout=WAIT)
        assert barrier.is_synced and inbox.state == []
        assert env.app.runtime.hub.subscriber_count(("todo", "inbox")) == 0


async def test_state_callback_reports_open_then_closed(env: Env) -> None:
    states: list[ConnectionState] = []
    client = env.client()
    client.on_state_change(states.append)
    async with client:
        await client.wait_open(WAIT)
    assert states == [ConnectionState.OPEN, ConnectionState.CLOSED]


@pytest.mark.parametrize("transport", ["websocket", "in-process"])
async def test_an_upgrade_over_the_connect_rate_is_retried_after_its_retry_after(
    transport: str,
) -> None:
    """A 429 is not a refusal: the client waits out the Retry-After, then connects."""
    app = create_app(
        streams=[StreamConfig(name="todo", schema=Todo)],
        config=Config(
            # One upgrade, then one every 4 s: the second client is refused whatever the load.
            limits=Limits(
                connects_per_ip_per_second=0.25, connect_burst_per_ip=1, connect_limit_exempt=()
            )
        ),
    )
    async with contextlib.AsyncExitStack() as stack:
        if transport == "websocket":
            server = await stack.enter_async_context(live_server(app))
            patient = Backoff(initial=0.05, max_delay=10.0)

            def make() -> Client:
                return connect(server.ws_url, backoff=patient)

        else:
            local = await stack.enter_async_context(AsyncTestClient(app))
            make = local.stream_client  # its default backoff waits up to 30 s
        first = await stack.enter_async_context(make())  # the one upgrade the burst allows
        await first.subscribe_group("todo", "inbox", timeout=WAIT)
        loop = asyncio.get_running_loop()
        started = loop.time()
        second = await stack.enter_async_context(make())
        inbox = await second.subscribe_group("todo", "inbox", timeout=WAIT)
        waited = loop.time() - started
        assert inbox.state == []
        assert second.state is ConnectionState.OPEN
        refused = second.last_error
        assert isinstance(refused, UpgradeRefused), refused
        assert refused.status == 429 and refused.retry_after is not None
        assert refused.retry_after >= 1
        assert waited >= refused.retry_after  # not sooner than the server asked
