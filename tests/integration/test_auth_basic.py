"""Connection authentication and per-join access checks against a live server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response

from surge import (
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
from surge.errors import StoreError
from surge.server.app import SurgeApp
from surge.testing import LiveServer, live_server

from .streamclient import connect, is_error_event, raw_upgrade, wait_until

pytestmark = pytest.mark.timeout(60)

SECRET = "s3cr3t-token-never-logged"


class Todo(BaseModel):
    id: str
    description: str


@dataclass
class Recorder:
    """What authenticate and can_access saw (a recording fake)."""

    requests: list[AuthRequest] = field(default_factory=list)
    tokens: list[str | None] = field(default_factory=list)
    checks: list[tuple[str, Subscription, Any]] = field(default_factory=list)
    slow_started: asyncio.Event = field(default_factory=asyncio.Event)
    slow_finished: asyncio.Event = field(default_factory=asyncio.Event)


def build_app(rec: Recorder) -> SurgeApp:
    def authenticate(request: AuthRequest) -> dict[str, str] | None:
        token = extract_auth_token(request)
        rec.requests.append(request)
        rec.tokens.append(token)
        if token is None:
            return None
        if token.startswith("tok-"):
            return {"user": token.removeprefix("tok-")}
        raise ValueError(f"invalid token {token!r}")

    def own_group_sync(sub: Subscription, ctx: Any) -> bool:
        rec.checks.append(("sync", sub, ctx))
        return ctx is not None and sub.groupId == ctx["user"]

    async def own_group_async(sub: Subscription, ctx: Any) -> bool:
        rec.checks.append(("async", sub, ctx))
        await asyncio.sleep(0)
        return ctx is not None and sub["groupId"] == ctx["user"]

    def raising(sub: Subscription, ctx: Any) -> bool:
        raise RuntimeError("access rule is broken")

    async def slow(sub: Subscription, ctx: Any) -> bool:
        rec.slow_started.set()
        await asyncio.sleep(1)
        rec.slow_finished.set()
        return True

    async def health(req: Any, ctx: Any) -> ApiResponse:
        return ApiResponse(200, {"ok": True})

    return create_app(
        streams=[
            StreamConfig(name="todo", schema=Todo),
            StreamConfig(name="private_sync", schema=Todo, can_access=own_group_sync),
            StreamConfig(name="private_async", schema=Todo, can_access=own_group_async),
            StreamConfig(name="broken", schema=Todo, can_access=raising),
            StreamConfig(name="slow", schema=Todo, can_access=slow),
        ],
        steps=[(ApiRouteConfig(name="Health", method="GET", path="/health"), health)],
        config=Config(stream_auth=StreamAuth(authenticate=authenticate)),
    )


@dataclass
class Setup:
    server: LiveServer
    rec: Recorder


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    rec = Recorder()
    async with live_server(build_app(rec)) as srv:
        yield Setup(srv, rec)


def is_access_denied(frame: dict[str, Any]) -> bool:
    return is_error_event(frame, "STREAM_ACCESS_DENIED")


async def refused_upgrade(url: str, subprotocols: list[str] | None = None) -> Response:
    """Attempt an upgrade that must be refused; return the server's HTTP response."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, subprotocols=subprotocols):
            pass
    return refused.value.response


# -- authenticate ------------------------------------------------------------------------------


async def test_token_in_authorization_subprotocol_reaches_authenticate(setup: Setup) -> None:
    async with connect(setup.server.ws_url, subprotocols=["Authorization", "tok-ann"]) as client:
        assert client.ws.subprotocol == "Authorization"
        sync = await client.join_synced("ann", stream="private_sync")
    assert sync["event"]["data"] == []
    assert setup.rec.tokens == ["tok-ann"]
    request = setup.rec.requests[0]
    assert request.url == "/"
    assert all(name == name.lower() for name in request.headers)
    assert "Authorization" in request.headers["sec-websocket-protocol"]
    assert setup.rec.checks[0][2] == {"user": "ann"}


async def test_token_in_browser_style_subprotocol_with_space_reaches_authenticate(
    setup: Setup,
) -> None:
    # Browsers send "Authorization, tok" (with a space); the client library cannot.
    status, headers = await raw_upgrade(
        setup.server.host,
        setup.server.port,
        "/",
        {"Sec-WebSocket-Protocol": "Authorization, tok-ann", "Origin": "http://localhost:5173"},
    )
    assert status == 101
    assert headers["sec-websocket-protocol"] == "Authorization"
    await wait_until(lambda: setup.rec.tokens == ["tok-ann"])


@pytest.mark.parametrize("path", ["?authToken=tok-bob", "streams/live?x=1&authToken=tok-bob"])
async def test_token_in_query_reaches_authenticate(setup: Setup, path: str) -> None:
    async with connect(setup.server.ws_url + path) as client:
        assert client.ws.subprotocol is None
        await client.join_synced("bob", stream="private_async")
    assert setup.rec.tokens == ["tok-bob"]
    request = setup.rec.requests[0]
    assert request.url == "/" + path
    assert request.query_params["authToken"] == "tok-bob"


async def test_authenticate_raising_refuses_upgrade_with_401_and_server_keeps_serving(
    setup: Setup,
) -> None:
    async with connect(setup.server.ws_url + "?authToken=tok-ann") as good:
        await good.join_synced("ann", stream="private_sync")

        for url, subprotocols in (
            (setup.server.ws_url, ["Authorization", "bad-1"]),
            (setup.server.ws_url + "?authToken=bad-2", None),
        ):
            refused = await refused_upgrade(url, subprotocols)
            assert refused.status_code == 401
            assert b"bad-" not in refused.body

        # The authenticated connection still gets its changes; new connections are accepted.
        await setup.server.app.runtime.streams.private_sync.set(
            "ann", "t1", {"id": "t1", "description": "x"}
        )
        frame = await good.recv()
        assert (frame["id"], frame["event"]["type"]) == ("t1", "create")
    async with connect(setup.server.ws_url) as anonymous:
        await anonymous.join_synced("inbox")
    async with httpx2.AsyncClient(timeout=5) as http:
        assert (await http.get(setup.server.url + "/health")).status_code == 200


async def test_authenticate_returning_none_allows_anonymous_join_without_can_access(
    setup: Setup,
) -> None:
    await setup.server.app.runtime.streams.todo.set("inbox", "t1", {"id": "t1", "description": "x"})
    async with connect(setup.server.ws_url) as client:
        sync = await client.join_synced("inbox")
        assert sync["event"]["data"] == [{"id": "t1", "description": "x"}]
        # An access rule gets None as the context of an anonymous connection.
        await client.join("ann", stream="private_sync")
        assert is_access_denied(await client.recv())
    assert setup.rec.tokens == [None]
    assert setup.rec.checks[0][2] is None


# -- can_access --------------------------------------------------------------------------------


@pytest.mark.parametrize("stream_name", ["private_sync", "private_async"])
async def test_join_refused_by_can_access_sends_access_denied_and_no_frames_after(
    setup: Setup, stream_name: str
) -> None:
    stream = setup.server.app.runtime.streams[stream_name]
    async with connect(setup.server.ws_url + "?authToken=tok-ann", stream=stream_name) as client:
        await client.join("bob")
        denied = await client.recv()
        assert is_access_denied(denied), denied
        assert (denied["streamName"], denied["groupId"]) == (stream_name, "bob")
        assert "id" not in denied

        await client.join("bob", "t1")
        denied_item = await client.recv()
        assert is_access_denied(denied_item), denied_item
        assert (denied_item["groupId"], denied_item["id"]) == ("bob", "t1")

        hub = setup.server.app.runtime.hub
        assert hub.subscriber_count((stream_name, "bob")) == 0
        assert hub.subscriber_count((stream_name, "bob", "t1")) == 0

        await stream.set("bob", "t1", {"id": "t1", "description": "secret"})
        await stream.send({"groupId": "bob"}, {"type": "typing", "data": None})
        await stream.send({"groupId": "bob", "id": "t1"}, {"type": "typing", "data": None})
        await stream.delete("bob", "t1")

        # Allowed joins on the same socket work, and only they deliver.
        await client.join_synced("ann")
        await stream.set("ann", "t2", {"id": "t2", "description": "mine"})
        frames = await client.barrier()
    assert [(f["groupId"], f["event"]["type"]) for f in frames] == [("ann", "create")]
    seen = [(kind, sub.groupId, sub.id) for kind, sub, _ in setup.rec.checks]
    flavour = stream_name.removeprefix("private_")
    assert (flavour, "bob", None) in seen
    assert (flavour, "bob", "t1") in seen


async def test_can_access_that_raises_denies_the_join(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="surge")
    stream = setup.server.app.runtime.streams.broken
    async with connect(setup.server.ws_url + "?authToken=tok-ann", stream="broken") as client:
        await client.join("ann")
        denied = await client.recv()
        assert is_access_denied(denied), denied
        await stream.set("ann", "t1", {"id": "t1", "description": "x"})
        # The barrier's own join is denied too, which still orders it after the set.
        assert await client.barrier() == []
    assert "access rule is broken" in caplog.text


async def test_slow_can_access_on_one_connection_does_not_delay_another_connections_join(
    setup: Setup,
) -> None:
    rec = setup.rec
    async with connect(setup.server.ws_url) as slow_client, connect(setup.server.ws_url) as other:
        await slow_client.join("g", stream="slow")
        async with asyncio.timeout(5):
            await rec.slow_started.wait()

        sync = await other.join_synced("inbox")
        assert sync["event"]["data"] == []
        assert not rec.slow_finished.is_set(), "the other join waited for the slow access check"

        slow_sync = await slow_client.recv(within=5)
        assert rec.slow_finished.is_set()
        assert slow_sync["event"]["type"] == "sync"
        assert slow_sync["streamName"] == "slow"
        assert slow_sync["timestamp"] > sync["timestamp"]


# -- secrets in logs ---------------------------------------------------------------------------


def server_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The captured records, without those of the test's own WebSocket client library."""
    return [r for r in caplog.records if not r.name.startswith("websockets.client")]


async def test_token_never_appears_in_logs_when_authenticate_raises_with_it(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="surge")
    bad = f"bad-{SECRET}"
    for url, subprotocols in (
        (setup.server.ws_url, ["Authorization", bad]),
        (f"{setup.server.ws_url}?authToken={bad}", None),
    ):
        assert (await refused_upgrade(url, subprotocols)).status_code == 401
    records = server_records(caplog)
    assert any("authentication refused" in r.getMessage() for r in records), caplog.text
    for record in records:
        assert SECRET not in record.getMessage(), record
        assert SECRET not in str(record.exc_text or ""), record


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
async def test_token_never_appears_in_the_servers_upgrade_log_lines(
    setup: Setup, caplog: pytest.LogCaptureFixture, level: int
) -> None:
    """As `surge dev`/`start` log: uvicorn's line for each upgrade holds the URL (INFO), and its
    protocol trace holds the request line and headers (DEBUG)."""
    uvicorn_logger = logging.getLogger("uvicorn.error")  # does not propagate to the root
    uvicorn_logger.addHandler(caplog.handler)
    caplog.set_level(level)
    caplog.set_level(level, logger="uvicorn.error")
    try:
        for url, subprotocols in (
            (f"{setup.server.ws_url}?authToken=bad-{SECRET}", None),
            (setup.server.ws_url, ["Authorization", f"bad-{SECRET}"]),
        ):
            assert (await refused_upgrade(url, subprotocols)).status_code == 401
        for url, subprotocols in (
            (f"{setup.server.ws_url}?authToken=tok-{SECRET}", None),
            (setup.server.ws_url, ["Authorization", f"tok-{SECRET}"]),
        ):
            async with connect(url, subprotocols=subprotocols) as client:
                await client.join_synced("inbox")
    finally:
        uvicorn_logger.removeHandler(caplog.handler)
    records = server_records(caplog)
    assert any(r.name == "uvicorn.error" for r in records)
    leaks = [r.getMessage() for r in records if SECRET in r.getMessage()]
    assert leaks == []


async def test_refused_upgrade_logs_no_error(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    uvicorn_logger = logging.getLogger("uvicorn.error")  # does not propagate to the root
    uvicorn_logger.addHandler(caplog.handler)
    try:
        assert (await refused_upgrade(setup.server.ws_url + "?authToken=bad")).status_code == 401
        async with connect(setup.server.ws_url) as client:  # the refusal has been handled
            await client.join_synced("inbox")
    finally:
        uvicorn_logger.removeHandler(caplog.handler)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (TimeoutError("session store timed out"), 503),
        (ConnectionRefusedError("session store down"), 503),
        (StoreError("redis away", retryable=True), 503),
        (PermissionError("invalid token"), 401),
        (StoreError("corrupt session", retryable=False), 401),
        (RuntimeError("bug in authenticate"), 401),
    ],
)
async def test_authenticate_that_cannot_decide_now_answers_503_and_the_rest_401(
    error: Exception, status: int
) -> None:
    def authenticate(request: AuthRequest) -> None:
        raise error

    app = create_app(
        streams=[StreamConfig(name="todo", schema=Todo)],
        config=Config(stream_auth=StreamAuth(authenticate=authenticate)),
    )
    async with live_server(app) as srv:
        refused = await refused_upgrade(srv.ws_url + "?authToken=secret-tok")
    assert refused.status_code == status
    assert b"secret-tok" not in refused.body
    if status == 503:
        assert refused.headers["Retry-After"] == "1"
        assert b"retry later" in refused.body
    else:
        assert "Retry-After" not in refused.headers


async def test_the_python_client_comes_back_after_the_auth_store_was_away() -> None:
    from surge.client import Backoff, ConnectionState
    from surge.client import connect as client_connect

    attempts: list[str] = []

    def authenticate(request: AuthRequest) -> dict[str, str]:
        attempts.append("away" if len(attempts) < 2 else "ok")
        if attempts[-1] == "away":
            raise ConnectionResetError("session store connection reset")
        return {"user": "ann"}

    app = create_app(
        streams=[StreamConfig(name="todo", schema=Todo)],
        config=Config(stream_auth=StreamAuth(authenticate=authenticate)),
    )
    async with (
        live_server(app) as srv,
        client_connect(srv.ws_url, token="tok", backoff=Backoff(initial=0.05)) as client,
    ):
        inbox = await client.subscribe_group("todo", "inbox", timeout=15)
        assert inbox.state == [] and client.state is ConnectionState.OPEN
    assert attempts == ["away", "away", "ok"]
