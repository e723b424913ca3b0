"""Token expiry, ``streams.reauthorize`` and ``streams.revoke`` on a live server (one instance).

Tokens are ``<user>.<exp>`` (exp in epoch seconds, ``0``: none) so each test chooses when a
connection's token expires. ``ACL`` says which groups each user may join; a test changes it and
calls ``reauthorize``. Two instances on Redis, with the npm client too: tests/compat.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel
from websockets.exceptions import ConnectionClosed, InvalidStatus

import surge.client
from surge import (
    ApiRequest,
    ApiResponse,
    ApiRouteConfig,
    AuthRequest,
    Config,
    StreamAuth,
    StreamConfig,
    Subscription,
    create_app,
    extract_auth_token,
)
from surge.client import SubscriptionError
from surge.server.app import SurgeApp
from surge.streams.stores.memory import MemoryStreamAdapter
from surge.testing import LiveServer, live_server

from .streamclient import StreamClient, connect, is_error_event

pytestmark = pytest.mark.timeout(60)

ACL: dict[str, set[str]] = {}


class Note(BaseModel):
    id: str
    text: str


def authenticate(request: AuthRequest) -> dict[str, Any] | None:
    token = extract_auth_token(request)
    if token is None:
        return None
    user, _, exp = token.partition(".")
    context: dict[str, Any] = {"userId": user}
    if exp and float(exp) > 0:
        context["exp"] = float(exp)
    return context


async def can_access(sub: Subscription, auth: Any) -> bool:
    await asyncio.sleep(0)  # an async check, as a database lookup would be
    return auth is not None and sub.groupId in ACL.get(auth["userId"], set())


async def reauthorize_step(req: ApiRequest, ctx: Any) -> ApiResponse:
    removed = await ctx.streams.reauthorize({"userId": req.body["userId"]})
    return ApiResponse(200, {"removed": removed})


def make_app() -> SurgeApp:
    return create_app(
        streams=[StreamConfig(name="notes", schema=Note, can_access=can_access)],
        steps=[
            (
                ApiRouteConfig(name="Reauthorize", method="POST", path="/reauthorize"),
                reauthorize_step,
            )
        ],
        config=Config(stream_auth=StreamAuth(authenticate=authenticate)),
        adapter=MemoryStreamAdapter(),
    )


@pytest.fixture
async def server() -> AsyncIterator[LiveServer]:
    ACL.clear()
    ACL.update({"alice": {"g1", "g2"}, "bob": {"g2"}})
    async with live_server(make_app()) as srv:
        yield srv


def as_user(server: LiveServer, token: str) -> Any:
    return connect(server.ws_url, stream="notes", subprotocols=["Authorization", token])


async def close_code(client: StreamClient, within: float) -> tuple[int | None, list[Any]]:
    frames = []
    try:
        while True:
            frames.append(await client.recv(within))
    except ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd else None), frames


# -- expiry ------------------------------------------------------------------------------------


async def test_a_connection_is_closed_with_4001_when_its_token_expires(server: LiveServer) -> None:
    exp = time.time() + 1.0
    async with as_user(server, f"alice.{exp}") as alice, as_user(server, "bob.0") as bob:
        await alice.join_synced("g1")
        await bob.join_synced("g2")
        assert server.app.runtime.access.expiring == 1
        code, frames = await close_code(alice, within=10)
        closed_at = time.time()
        assert code == 4001
        assert frames == []
        assert exp <= closed_at < exp + 2.0  # not before its time, and promptly
        assert alice.ws.close_reason == "token expired"
        # The connection without an expiry is untouched.
        await server.app.runtime.streams.notes.set("g2", "n1", {"id": "n1", "text": "hi"})
        assert (await bob.recv())["event"]["type"] == "create"
    assert server.app.runtime.access.expiring == 0


async def test_an_already_expired_token_is_refused_at_the_upgrade(server: LiveServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with as_user(server, f"alice.{time.time() - 5}"):
            pass
    assert refused.value.response.status_code == 401
    assert b"token expired" in refused.value.response.body


async def test_many_expiring_connections_share_one_sweeper_and_each_closes_on_time(
    server: LiveServer,
) -> None:
    base = time.time() + 0.5
    exps = [base + n * 0.2 for n in range(5)]
    clients = [as_user(server, f"alice.{exp}") for exp in reversed(exps)]
    opened = [await c.__aenter__() for c in clients]
    try:
        closed = await asyncio.gather(*(close_code(c, within=10) for c in opened))
        assert [code for code, _ in closed] == [4001] * 5
    finally:
        for c in clients:
            await c.__aexit__(None, None, None)


async def test_python_client_refreshes_its_token_after_4001_and_resyncs(
    server: LiveServer,
) -> None:
    issued: list[str] = []

    def token() -> str:
        # The first token lives one second; the refreshed ones an hour.
        exp = time.time() + (1.0 if not issued else 3600)
        issued.append(f"alice.{exp}")
        return issued[-1]

    notes = server.app.runtime.streams.notes
    async with surge.client.connect(server.ws_url, token=token) as client:
        sub = await client.subscribe_group("notes", "g1")
        await client.wait_state(surge.client.ConnectionState.RECONNECTING, timeout=15)
        await client.wait_open(timeout=15)  # reconnected (and resumed or resynced)
        assert isinstance(client.last_error, surge.client.TransportClosed)
        assert client.last_error.code == 4001
        await notes.set("g1", "n1", {"id": "n1", "text": "after the refresh"})
        items = await sub.wait(lambda items: len(items) == 1, timeout=10)
        assert items[0]["text"] == "after the refresh"
    assert len(issued) >= 2


# -- reauthorize -------------------------------------------------------------------------------


async def test_reauthorize_removes_exactly_the_subscriptions_now_denied(
    server: LiveServer,
) -> None:
    notes = server.app.runtime.streams.notes
    async with as_user(server, "alice.0") as alice, as_user(server, "bob.0") as bob:
        await alice.join_synced("g1")
        await alice.join_synced("g2")
        await bob.join_synced("g2")
        ACL["alice"] = {"g1"}
        ACL["bob"] = set()  # bob is not re-checked below: he keeps what he has
        async with httpx2.AsyncClient(base_url=server.url) as http:
            response = await http.post("/reauthorize", json={"userId": "alice"})
        assert response.json() == {"removed": 1}
        denied = await alice.recv()
        assert is_error_event(denied, "STREAM_ACCESS_DENIED"), denied
        assert (denied["streamName"], denied["groupId"]) == ("notes", "g2")
        await notes.set("g2", "n2", {"id": "n2", "text": "for g2"})
        await notes.set("g1", "n1", {"id": "n1", "text": "for g1"})
        after = await alice.recv()
        assert (after["groupId"], after["event"]["type"]) == ("g1", "create")
        assert (await bob.recv())["groupId"] == "g2"
        hub = server.app.runtime.hub
        assert hub.subscriber_count(("notes", "g2")) == 1  # bob's only


async def test_a_join_whose_check_was_running_during_reauthorize_is_checked_again() -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow_check(sub: Subscription, auth: Any) -> bool:
        allowed = sub.groupId in ACL.get(auth["userId"], set())  # read before the change
        if sub.groupId == "slow":
            started.set()
            await release.wait()
        return allowed

    ACL.clear()
    ACL.update({"alice": {"slow"}})
    app = create_app(
        streams=[StreamConfig(name="notes", schema=Note, can_access=slow_check)],
        config=Config(stream_auth=StreamAuth(authenticate=authenticate)),
        adapter=MemoryStreamAdapter(),
    )
    async with live_server(app) as server, as_user(server, "alice.0") as alice:
        await alice.join("slow")
        await asyncio.wait_for(started.wait(), 5)
        ACL["alice"] = set()
        assert await app.streams.reauthorize({"userId": "alice"}) == 0  # nothing live yet
        release.set()  # the first check answers True from what it read before the change
        answer = await alice.recv()
        assert is_error_event(answer, "STREAM_ACCESS_DENIED"), answer
        assert app.runtime.hub.subscriber_count(("notes", "slow")) == 0


async def test_reauthorize_with_a_function_and_for_everyone(server: LiveServer) -> None:
    streams = server.app.runtime.streams
    async with as_user(server, "alice.0") as alice, as_user(server, "bob.0") as bob:
        await alice.join_synced("g2")
        await bob.join_synced("g2")
        ACL["alice"] = set()
        ACL["bob"] = set()
        assert await streams.reauthorize(lambda auth: auth["userId"] == "bob") == 1
        assert is_error_event(await bob.recv(), "STREAM_ACCESS_DENIED")
        assert await streams.reauthorize() == 1  # everyone: alice's is the one left
        assert is_error_event(await alice.recv(), "STREAM_ACCESS_DENIED")
        assert await streams.reauthorize() == 0


async def test_python_client_ends_a_subscription_the_server_took_back(server: LiveServer) -> None:
    async with surge.client.connect(server.ws_url, token="alice.0") as client:
        kept = await client.subscribe_group("notes", "g1")
        taken = await client.subscribe_group("notes", "g2")
        ACL["alice"] = {"g1"}
        assert await server.app.runtime.streams.reauthorize({"userId": "alice"}) == 1
        with pytest.raises(SubscriptionError) as ended:
            await taken.wait(lambda items: False, timeout=10)
        assert ended.value.code == "STREAM_ACCESS_DENIED"
        assert client.subscriptions == [kept]


# -- revoke ------------------------------------------------------------------------------------


async def test_revoke_closes_the_matching_connections_with_4003(server: LiveServer) -> None:
    streams = server.app.runtime.streams
    async with as_user(server, "alice.0") as alice, as_user(server, "bob.0") as bob:
        await alice.join_synced("g1")
        await bob.join_synced("g2")
        started = time.monotonic()
        assert await streams.revoke({"userId": "alice"}) == 1
        code, _ = await close_code(alice, within=5)
        assert code == 4003
        assert time.monotonic() - started < 1.0
        assert await streams.revoke({"userId": "nobody"}) == 0
        await streams.notes.set("g2", "n1", {"id": "n1", "text": "bob still here"})
        assert (await bob.recv())["event"]["type"] == "create"


async def test_python_client_stops_after_a_4003_close(server: LiveServer) -> None:
    async with surge.client.connect(server.ws_url, token="alice.0") as client:
        sub = await client.subscribe_group("notes", "g1")
        assert await server.app.runtime.streams.revoke({"userId": "alice"}) == 1
        await client.wait_state(surge.client.ConnectionState.CLOSED, timeout=10)
        assert client.connections == 1  # it did not come back with the revoked credentials
        with pytest.raises(surge.client.AccessRevoked) as revoked:
            await client.wait_open(timeout=1)
        assert revoked.value.code == 4003
        with pytest.raises(surge.client.AccessRevoked):
            await sub.wait(lambda items: False, timeout=5)
        with pytest.raises(surge.client.AccessRevoked):
            await client.subscribe_group("notes", "g2")


async def test_python_client_with_retry_refused_reconnects_after_a_4003_close(
    server: LiveServer,
) -> None:
    fast = surge.client.Backoff(initial=0.05, max_delay=0.2)
    async with surge.client.connect(
        server.ws_url, token="alice.0", retry_refused=True, backoff=fast
    ) as client:
        sub = await client.subscribe_group("notes", "g1")
        assert await server.app.runtime.streams.revoke({"userId": "alice"}) == 1
        await client.wait_state(surge.client.ConnectionState.RECONNECTING, timeout=10)
        await client.wait_open(timeout=10)
        assert client.connections == 2
        await server.app.runtime.streams.notes.set("g1", "n1", {"id": "n1", "text": "back"})
        items = await sub.wait(lambda items: len(items) == 1, timeout=10)
        assert items[0]["text"] == "back"


async def test_where_must_be_a_mapping_a_function_or_none(server: LiveServer) -> None:
    streams = server.app.runtime.streams
    with pytest.raises(TypeError):
        await streams.revoke("alice")  # type: ignore[arg-type]


async def test_streams_outside_a_server_cannot_reauthorize() -> None:
    from surge.streams.stream import Streams

    with pytest.raises(RuntimeError, match="running Surge server"):
        await Streams({}).reauthorize()


def test_testclient_streams_can_reauthorize_and_revoke(tmp_path: Any) -> None:
    from surge.client import SubscriptionError as Refused
    from surge.testing import TestClient

    acl = tmp_path / "acl.txt"
    acl.write_text("g1 g2")
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "notes_stream.py").write_text(
        "from pathlib import Path\n"
        "from surge import StreamConfig\n"
        f"ACL = Path({str(acl)!r})\n"
        "config = StreamConfig(name='notes', schema={'type': 'object'},\n"
        "    can_access=lambda sub, auth: sub.groupId in ACL.read_text().split())\n"
    )
    with TestClient(tmp_path, token=None) as client:
        kept = client.subscribe_group("notes", "g1")
        taken = client.subscribe_group("notes", "g2")
        acl.write_text("g1")
        assert client.streams.reauthorize() == 1
        with pytest.raises(Refused):
            taken.wait(lambda items: False, timeout=5)
        client.streams.notes.set("g1", "n1", {"text": "still here"})
        assert kept.wait(lambda items: len(items) == 1)[0]["text"] == "still here"
        assert client.streams.revoke() == 1
