"""Bad input on the WebSocket and HTTP sides: the offender gets a clear answer, everyone else
carries on (another subscribed connection keeps receiving, the HTTP API keeps answering)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel
from websockets.exceptions import ConnectionClosed

from surge import (
    ApiRequest,
    ApiResponse,
    ApiRouteConfig,
    Config,
    FlowContext,
    Limits,
    StreamConfig,
    ValidationError,
    create_app,
)
from surge.server.app import SurgeApp
from surge.testing import LiveServer, live_server

from .streamclient import StreamClient, connect, is_error_event

pytestmark = pytest.mark.timeout(60)


class Todo(BaseModel):
    id: str
    description: str
    done: bool = False


class CreateTodo(BaseModel):
    description: str
    priority: int = 0


@dataclass
class Calls:
    """Counts handler calls (a recording fake, not a mock)."""

    create: int = 0
    invalid_set: int = 0


def build_app(calls: Calls, limits: Limits | None = None) -> SurgeApp:
    async def create_todo(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
        calls.create += 1
        item_id = req.path_params["id"]
        stored = await ctx.streams.todo.set(
            "inbox", item_id, {"id": item_id, "description": req.body.description}
        )
        return ApiResponse(201, stored)

    async def health(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
        return ApiResponse(200, {"ok": True})

    async def explode(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
        raise RuntimeError("kaboom: secret internal detail")

    async def echo(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
        return ApiResponse(
            200,
            {
                "path_params": dict(req.path_params),
                "query_params": dict(req.query_params),
                "header": req.headers.get("x-custom"),
                "method": req.method,
            },
        )

    async def invalid_set(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
        calls.invalid_set += 1
        try:
            await ctx.streams.todo.set("inbox", "bad", {"id": "bad", "done": "not a bool"})
        except ValidationError as exc:
            return ApiResponse(422, {"errors": exc.errors})
        return ApiResponse(200, {"stored": True})

    async def invalid_set_uncaught(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
        await ctx.streams.todo.set("inbox", "bad", {"description": 12})
        return ApiResponse(200, {"stored": True})

    return create_app(
        streams=[StreamConfig(name="todo", schema=Todo)],
        steps=[
            (
                ApiRouteConfig(
                    name="CreateTodo", method="POST", path="/todo/:id", body_schema=CreateTodo
                ),
                create_todo,
            ),
            (ApiRouteConfig(name="Health", method="GET", path="/health"), health),
            (ApiRouteConfig(name="Explode", method="POST", path="/explode"), explode),
            (ApiRouteConfig(name="Echo", method="GET", path="/echo/:a/:b"), echo),
            (ApiRouteConfig(name="InvalidSet", method="POST", path="/invalid-set"), invalid_set),
            (
                ApiRouteConfig(name="InvalidSetUncaught", method="POST", path="/invalid-set-2"),
                invalid_set_uncaught,
            ),
        ],
        config=Config(limits=limits or Limits()),
    )


_item_ids = itertools.count()


@dataclass
class Setup:
    """A live server, an already-subscribed bystander connection and an HTTP client."""

    server: LiveServer
    bystander: StreamClient
    http: httpx2.AsyncClient
    calls: Calls

    async def assert_everyone_else_carries_on(self) -> None:
        """The bystander still receives changes and the HTTP API still answers."""
        item_id = f"probe-{next(_item_ids)}"
        response = await self.http.post(f"/todo/{item_id}", json={"description": "probe"})
        assert response.status_code == 201, response.text
        frame = await self.bystander.recv()
        assert (frame["id"], frame["event"]["type"]) == (item_id, "create")
        assert (await self.http.get("/health")).status_code == 200


@asynccontextmanager
async def running(limits: Limits | None = None) -> AsyncIterator[Setup]:
    calls = Calls()
    async with (
        live_server(build_app(calls, limits)) as srv,
        connect(srv.ws_url) as bystander,
        httpx2.AsyncClient(base_url=srv.url, timeout=10) as http,
    ):
        await bystander.join_synced("inbox")
        yield Setup(srv, bystander, http, calls)


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async with running() as value:
        yield value


@pytest.fixture
async def strict_setup() -> AsyncIterator[Setup]:
    async with running(Limits(max_errors=4, max_subscriptions=3)) as value:
        yield value


async def expect_close(client: StreamClient, code: int) -> None:
    """Read until the server closes the connection; the close code must be ``code``."""
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            while True:
                await client.ws.recv()
    assert closed.value.rcvd is not None, f"no close frame received: {closed.value!r}"
    assert closed.value.rcvd.code == code


# -- malformed frames ------------------------------------------------------------------------

JOIN = {"streamName": "todo", "groupId": "inbox", "subscriptionId": "s1"}

MALFORMED = [
    pytest.param("garbage", "not valid JSON", id="not-json"),
    pytest.param('{"type": "join", "data": ', "not valid JSON", id="truncated-json"),
    pytest.param("[1, 2, 3]", "JSON object", id="array"),
    pytest.param("42", "JSON object", id="number"),
    pytest.param('"join"', "JSON object", id="string"),
    pytest.param("null", "JSON object", id="null"),
    pytest.param("{}", "type", id="no-type"),
    pytest.param(json.dumps({"type": 5, "data": JOIN}), "type", id="type-not-string"),
    pytest.param(json.dumps({"type": "join"}), "data", id="join-without-data"),
    pytest.param(json.dumps({"type": "join", "data": [JOIN]}), "data", id="data-not-object"),
    pytest.param(json.dumps({"type": "leave", "data": "s1"}), "data", id="leave-data-string"),
    *(
        pytest.param(
            json.dumps({"type": "join", "data": {k: v for k, v in JOIN.items() if k != field}}),
            field,
            id=f"missing-{field}",
        )
        for field in JOIN
    ),
    pytest.param(
        json.dumps({"type": "join", "data": {**JOIN, "groupId": 7}}), "groupId", id="group-int"
    ),
    pytest.param(
        json.dumps({"type": "join", "data": {**JOIN, "streamName": None}}),
        "streamName",
        id="stream-null",
    ),
    pytest.param(
        json.dumps({"type": "join", "data": {**JOIN, "subscriptionId": {"a": 1}}}),
        "subscriptionId",
        id="subscription-object",
    ),
    pytest.param(json.dumps({"type": "join", "data": {**JOIN, "id": 3}}), "id", id="id-int"),
    pytest.param(
        json.dumps({"type": "join", "data": {**JOIN, "groupId": ""}}), "groupId", id="group-empty"
    ),
    pytest.param(json.dumps({"type": "join", "data": {**JOIN, "id": ""}}), "id", id="id-empty"),
    pytest.param(
        json.dumps({"type": "join", "data": {**JOIN, "groupId": "g" * 300}}),
        "groupId",
        id="group-300-chars",
    ),
    pytest.param(
        json.dumps({"type": "join", "data": {**JOIN, "id": "i" * 300}}), "id", id="id-300-chars"
    ),
    pytest.param(
        json.dumps({"type": "join", "data": {**JOIN, "subscriptionId": "s" * 300}}),
        "subscriptionId",
        id="subscription-300-chars",
    ),
    pytest.param(
        json.dumps({"type": "join", "data": {**JOIN, "groupId": "in\x00box"}}),
        "control",
        id="group-nul",
    ),
    pytest.param(
        json.dumps({"type": "join", "data": {**JOIN, "id": "t\n1"}}), "control", id="id-newline"
    ),
    pytest.param(
        json.dumps({"type": "leave", "data": {**JOIN, "groupId": "in\x1bbox"}}),
        "control",
        id="leave-group-escape",
    ),
    pytest.param(
        '{"type": "join", "data": {"streamName": "todo", "groupId": "\\ud800", '
        '"subscriptionId": "s1"}}',
        "surrogate",
        id="group-lone-surrogate",
    ),
]


@pytest.mark.parametrize(("raw", "mentions"), MALFORMED)
async def test_malformed_frame_gets_invalid_message_error_and_connection_keeps_working(
    setup: Setup, raw: str, mentions: str
) -> None:
    async with connect(setup.server.ws_url) as client:
        await client.ws.send(raw)
        frame = await client.recv()
        assert is_error_event(frame, "INVALID_MESSAGE"), frame
        assert set(frame) == {"timestamp", "event"}, frame  # not addressed to any subscription
        assert mentions in frame["event"]["event"]["data"]["message"]
        # Nothing was subscribed, and the connection still works.
        assert setup.server.app.runtime.hub.subscriber_count(("todo", "inbox")) == 1
        sync = await client.join_synced("inbox")
        assert sync["event"]["type"] == "sync"
    await setup.assert_everyone_else_carries_on()


@pytest.mark.parametrize(
    "message",
    [
        {"type": "subscribe", "data": JOIN},
        {"type": "ping"},
        {"type": "presence", "data": None},
        {"type": "", "data": 1},
    ],
)
async def test_unknown_message_type_is_ignored(setup: Setup, message: dict[str, Any]) -> None:
    async with connect(setup.server.ws_url) as client:
        await client.send_json(message)
        assert await client.barrier() == []
        await client.join_synced("inbox")
    await setup.assert_everyone_else_carries_on()


async def test_join_of_unknown_stream_is_denied_and_addressed_to_the_join(setup: Setup) -> None:
    async with connect(setup.server.ws_url) as client:
        await client.join("inbox", "t1", stream="nope")
        frame = await client.recv()
        assert is_error_event(frame, "STREAM_ACCESS_DENIED"), frame
        assert (frame["streamName"], frame["groupId"], frame["id"]) == ("nope", "inbox", "t1")
        await client.join("inbox", stream="nope")
        frame = await client.recv()
        assert is_error_event(frame, "STREAM_ACCESS_DENIED"), frame
        assert "id" not in frame
        assert setup.server.app.runtime.hub.subscriber_count(("nope", "inbox")) == 0
        assert setup.server.app.runtime.hub.subscriber_count(("nope", "inbox", "t1")) == 0
        # The socket stays open and usable.
        await client.join_synced("inbox")
    await setup.assert_everyone_else_carries_on()


# -- frames that close the connection --------------------------------------------------------


async def test_ten_megabyte_frame_closes_with_1009(setup: Setup) -> None:
    async with connect(setup.server.ws_url) as client:
        await client.join_synced("inbox")
        payload = json.dumps({"type": "join", "data": {**JOIN, "groupId": "x" * 10_000_000}})
        with contextlib.suppress(ConnectionClosed):  # the server may close mid-frame
            await client.ws.send(payload)
        await expect_close(client, 1009)
    await setup.assert_everyone_else_carries_on()


async def test_frame_just_over_the_limit_closes_with_1009_even_in_multibyte_text(
    setup: Setup,
) -> None:
    limit = setup.server.app.runtime.config.limits.max_frame_bytes
    async with connect(setup.server.ws_url) as client:
        # Fewer characters than the limit, more bytes than it.
        await client.ws.send("é" * (limit // 2 + 1))
        await expect_close(client, 1009)
    await setup.assert_everyone_else_carries_on()


async def test_binary_frame_closes_with_1003(setup: Setup) -> None:
    async with connect(setup.server.ws_url) as client:
        await client.join_synced("inbox")
        await client.ws.send(json.dumps({"type": "join", "data": JOIN}).encode())
        await expect_close(client, 1003)
    await setup.assert_everyone_else_carries_on()
    assert setup.server.app.runtime.hub.subscriber_count(("todo", "inbox")) == 1


async def test_too_many_invalid_frames_close_with_1008(strict_setup: Setup) -> None:
    setup = strict_setup
    async with connect(setup.server.ws_url) as client:
        await client.join_synced("inbox")
        for _ in range(4):
            await client.ws.send("not json")
        errors = await client.recv_n(4)
        assert all(is_error_event(frame, "INVALID_MESSAGE") for frame in errors)
        await expect_close(client, 1008)
    await setup.assert_everyone_else_carries_on()
    assert setup.server.app.runtime.hub.subscriber_count(("todo", "inbox")) == 1


async def test_too_many_subscriptions_are_refused_with_an_error_addressed_to_the_join(
    strict_setup: Setup,
) -> None:
    setup = strict_setup
    stream = setup.server.app.runtime.streams.todo
    async with connect(setup.server.ws_url) as client:
        first = await client.join("g1")
        await client.recv()
        await client.join_synced("g2")
        await client.join_synced("g3", "t1")

        await client.join("g4", "t9")
        frame = await client.recv()
        assert is_error_event(frame, "TOO_MANY_SUBSCRIPTIONS"), frame
        assert (frame["groupId"], frame["id"]) == ("g4", "t9")

        # The refused join subscribed nothing; the others still work.
        await stream.set("g4", "t9", {"id": "t9", "description": "x"})
        await stream.set("g1", "t1", {"id": "t1", "description": "x"})
        assert [(f["groupId"], f["event"]["type"]) for f in await client.barrier()] == [
            ("g1", "create")
        ]
        # Leaving frees a slot.
        await client.leave(first)
        sync = await client.join_synced("g4", "t9")
        assert sync["event"]["data"]["id"] == "t9"
    await setup.assert_everyone_else_carries_on()


async def test_many_bad_connections_at_once_leave_the_server_serving(setup: Setup) -> None:
    async def offend(raw: str | bytes) -> None:
        async with connect(setup.server.ws_url) as client:
            await client.ws.send(raw)
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(10):
                    while True:
                        await client.ws.recv()

    async with asyncio.timeout(20), asyncio.TaskGroup() as tasks:
        for n in range(20):
            tasks.create_task(offend(b"\x00binary" if n % 2 else "x" * 100_000))
    await setup.assert_everyone_else_carries_on()


# -- HTTP --------------------------------------------------------------------------------------


async def test_invalid_json_body_is_400_and_handler_not_called(setup: Setup) -> None:
    response = await setup.http.post(
        "/todo/t1", content=b'{"description": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]
    assert setup.calls.create == 0
    await setup.assert_everyone_else_carries_on()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "description"),
        ({"description": 5}, "description"),
        ({"description": "ok", "priority": "high"}, "priority"),
    ],
)
async def test_body_failing_schema_is_400_naming_the_field_and_handler_not_called(
    setup: Setup, body: dict[str, Any], field: str
) -> None:
    response = await setup.http.post("/todo/t1", json=body)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [e["loc"] for e in errors] == [[field]]
    assert errors[0]["msg"]
    assert setup.calls.create == 0
    assert await setup.server.app.runtime.streams.todo.get_group("inbox") == []


@pytest.mark.parametrize("body", [b"[1, 2]", b"null", b"", b"42"])
async def test_body_that_is_not_an_object_is_400(setup: Setup, body: bytes) -> None:
    response = await setup.http.post(
        "/todo/t1", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert setup.calls.create == 0


async def test_handler_exception_is_500_with_generic_body_and_logged_trace(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="surge")
    response = await setup.http.post("/explode", json={})
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal server error"
    trace_id = body["traceId"]
    assert trace_id
    assert response.headers["x-trace-id"] == trace_id
    assert "kaboom" not in response.text
    logged = [r for r in caplog.records if trace_id in r.getMessage()]
    assert logged, caplog.text
    assert logged[0].exc_info is not None
    assert "kaboom: secret internal detail" in caplog.text
    await setup.assert_everyone_else_carries_on()


async def test_unknown_route_is_404(setup: Setup) -> None:
    response = await setup.http.get("/nothing/here")
    assert response.status_code == 404


async def test_wrong_method_is_405(setup: Setup) -> None:
    response = await setup.http.get("/todo/t1")
    assert response.status_code == 405
    assert setup.calls.create == 0


async def test_body_over_one_mebibyte_is_413(setup: Setup) -> None:
    body = json.dumps({"description": "x" * (1024 * 1024 + 10)}).encode()
    response = await setup.http.post(
        "/todo/t1", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert setup.calls.create == 0
    await setup.assert_everyone_else_carries_on()


async def test_body_just_under_one_mebibyte_is_accepted(setup: Setup) -> None:
    description = "x" * (1024 * 1024 - 100)
    response = await setup.http.post("/todo/big", json={"description": description})
    assert response.status_code == 201
    assert setup.calls.create == 1


async def test_path_params_query_params_and_headers_reach_the_handler(setup: Setup) -> None:
    response = await setup.http.get(
        "/echo/one/two%20words",
        params=[("x", "1"), ("y", "a"), ("y", "b"), ("empty", "")],
        headers={"X-Custom": "hello"},
    )
    assert response.status_code == 200
    assert response.json() == {
        "path_params": {"a": "one", "b": "two words"},
        "query_params": {"x": "1", "y": ["a", "b"], "empty": ""},
        "header": "hello",
        "method": "GET",
    }


async def test_cors_preflight_is_allowed(setup: Setup) -> None:
    response = await setup.http.options(
        "/todo/t1",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in ("*", "http://localhost:5173")
    assert "POST" in response.headers["access-control-allow-methods"]
    assert setup.calls.create == 0


async def test_cors_headers_on_a_simple_request(setup: Setup) -> None:
    response = await setup.http.get("/health", headers={"Origin": "http://localhost:5173"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in ("*", "http://localhost:5173")


async def test_invalid_item_set_in_a_handler_stores_and_sends_nothing(setup: Setup) -> None:
    response = await setup.http.post("/invalid-set", json={})
    assert response.status_code == 422
    assert setup.calls.invalid_set == 1
    locs = [e["loc"] for e in response.json()["errors"]]
    assert ["description"] in locs
    assert ["done"] in locs

    # Uncaught, the stream's ValidationError is the client's to fix: 400 naming the fields.
    response = await setup.http.post("/invalid-set-2", json={})
    assert response.status_code == 400
    uncaught = [e["loc"] for e in response.json()["errors"]]
    assert ["description"] in uncaught
    assert response.json()["traceId"] == response.headers["x-trace-id"]

    assert await setup.server.app.runtime.streams.todo.get_group("inbox") == []
    assert await setup.server.app.runtime.streams.todo.get("inbox", "bad") is None
    assert await setup.bystander.barrier() == []
    await setup.assert_everyone_else_carries_on()
