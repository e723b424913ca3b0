"""The Workbench's HTTP side and its way past stream auth, against a live server.

JSON endpoints, the page, the ``/endpoints`` shortcut, the ``x-surge-stream-item`` header on
responses that are stream items, and the per-process key that admits the Workbench's WebSocket
(only with the right key, only when the Workbench is on, and without weakening anyone else's auth).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from pydantic import BaseModel
from websockets.exceptions import InvalidStatus

from surge import (
    ApiRequest,
    ApiResponse,
    ApiRouteConfig,
    AuthRequest,
    Config,
    FlowContext,
    StreamAuth,
    StreamConfig,
    Subscription,
    create_app,
    extract_auth_token,
)
from surge.server.app import SurgeApp
from surge.testing import LiveServer, live_server
from surge.workbench import WORKBENCH_CONTEXT, Workbench

from .streamclient import connect, is_error_event, raw_upgrade, wait_until

pytestmark = pytest.mark.timeout(60)

ITEM_HEADER = "x-surge-stream-item"


class Todo(BaseModel):
    id: str
    description: str
    done: bool = False


class NewTodo(BaseModel):
    description: str


@dataclass
class AuthLog:
    """What authenticate and can_access saw (a recording fake)."""

    tokens: list[str | None] = field(default_factory=list)
    checks: list[tuple[str, Any]] = field(default_factory=list)


def build_app(*, workbench: bool, log: AuthLog | None = None, auth: bool = False) -> SurgeApp:
    """A todo app; with ``auth``, authenticate refuses token-less upgrades and only "tok-ann"
    passes, and ``secret`` only admits ann to her own group."""

    async def create(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
        todo_id = req.path_params["id"]
        todo = await ctx.streams.todo.set(
            "inbox", todo_id, Todo(id=todo_id, **req.body.model_dump())
        )
        return ApiResponse(201, todo)

    async def fetch(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
        todo = await ctx.streams.todo.get("inbox", req.path_params["id"])
        if todo is None:
            return ApiResponse(404, {"error": "no such todo"})
        return ApiResponse(200, todo)

    async def copy(req: ApiRequest, ctx: FlowContext) -> dict[str, Any]:
        # An equal value that is not the object set() returned: not a stream item.
        todo = await ctx.streams.todo.get("inbox", req.path_params["id"])
        assert todo is not None
        return {"status": 200, "body": todo.model_copy()}

    async def raw_dict(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
        # A JSON-Schema stream: set() returns the very dict it was given.
        item = {"id": "n1", "text": "hello"}
        stored = await ctx.streams.notes.set("g", "n1", item)
        return ApiResponse(200, stored)

    async def listing(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
        return ApiResponse(200, await ctx.streams.todo.get_group("inbox"))

    async def plain(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
        return ApiResponse(200, {"ok": True}, {"x-custom": "1"})

    def authenticate(request: AuthRequest) -> dict[str, str]:
        token = extract_auth_token(request)
        if log is not None:
            log.tokens.append(token)
        if token == "tok-ann":
            return {"user": "ann"}
        raise PermissionError("a valid token is required")

    def own_group(sub: Subscription, ctx: Any) -> bool:
        if log is not None:
            log.checks.append((sub.groupId, ctx))
        return ctx is not None and sub.groupId == ctx["user"]

    notes_schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "text": {"type": "string"}},
        "required": ["text"],
    }
    return create_app(
        streams=[
            StreamConfig(name="todo", schema=Todo),
            StreamConfig(name="notes", schema=notes_schema),
            StreamConfig(name="secret", schema=Todo, can_access=own_group),
        ],
        steps=[
            (
                ApiRouteConfig(
                    name="CreateTodo",
                    method="POST",
                    path="/todo/:id",
                    body_schema=NewTodo,
                    response_schema={201: Todo, 400: {"type": "object"}},
                    query_params=[{"name": "dry", "description": "do nothing"}],
                    description="Create a todo.",
                ),
                create,
            ),
            (ApiRouteConfig(name="GetTodo", method="GET", path="/todo/:id"), fetch),
            (ApiRouteConfig(name="CopyTodo", method="GET", path="/todo/:id/copy"), copy),
            (ApiRouteConfig(name="Note", method="POST", path="/note"), raw_dict),
            (ApiRouteConfig(name="ListTodos", method="GET", path="/todo"), listing),
            (ApiRouteConfig(name="Plain", method="GET", path="/plain"), plain),
        ],
        config=Config(stream_auth=StreamAuth(authenticate=authenticate)) if auth else None,
        workbench=workbench,
    )


@pytest.fixture
async def server() -> AsyncIterator[LiveServer]:
    async with live_server(build_app(workbench=True)) as srv:
        yield srv


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=5, follow_redirects=False) as client:
        yield client


def key_of(server: LiveServer) -> str:
    workbench = server.app.workbench
    assert isinstance(workbench, Workbench)
    return workbench.key


# -- JSON endpoints and the page ---------------------------------------------------------------


async def test_session_gives_the_key_to_same_origin_requests_only(
    server: LiveServer, http: httpx2.AsyncClient
) -> None:
    url = server.url + "/__surge/api/session"
    same = await http.get(url)
    assert same.status_code == 200
    assert same.json() == {"workbenchKey": key_of(server), "streamAuth": False}
    assert same.headers["cache-control"] == "no-store"
    host = f"{server.host}:{server.port}"
    assert (await http.get(url, headers={"Origin": f"http://{host}"})).status_code == 200
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": f"http://{host}", "Sec-Fetch-Site": "cross-site"},
    ):
        refused = await http.get(url, headers=headers)
        assert refused.status_code == 403, headers
        assert key_of(server) not in refused.text
        # The project's open CORS does not apply to the Workbench: no other site may read it.
        assert "access-control-allow-origin" not in refused.headers


async def test_endpoints_api_lists_api_steps_with_params_and_schemas(
    server: LiveServer, http: httpx2.AsyncClient
) -> None:
    res = await http.get(server.url + "/__surge/api/endpoints")
    assert res.status_code == 200
    endpoints = res.json()["endpoints"]
    assert [(e["method"], e["path"]) for e in endpoints] == [
        ("POST", "/note"),
        ("GET", "/plain"),
        ("GET", "/todo"),
        ("GET", "/todo/:id"),
        ("POST", "/todo/:id"),
        ("GET", "/todo/:id/copy"),
    ]
    create = next(e for e in endpoints if e["name"] == "CreateTodo")
    assert create["pathParams"] == ["id"]
    assert create["queryParams"] == [{"name": "dry", "description": "do nothing"}]
    assert create["description"] == "Create a todo."
    assert create["bodySchema"]["required"] == ["description"]
    assert set(create["responseSchemas"]) == {"201", "400"}
    assert set(create["responseSchemas"]["201"]["properties"]) == {"id", "description", "done"}
    assert create["responseSchemas"]["400"] == {"type": "object"}
    plain = next(e for e in endpoints if e["name"] == "Plain")
    assert (plain["bodySchema"], plain["responseSchemas"], plain["pathParams"]) == (None, {}, [])


async def test_streams_api_lists_every_stream_with_its_groups_and_schema(
    server: LiveServer, http: httpx2.AsyncClient
) -> None:
    streams = server.app.runtime.streams
    await streams.todo.set("work", "t1", Todo(id="t1", description="a"))
    await streams.todo.set("home", "t2", Todo(id="t2", description="b"))
    res = await http.get(server.url + "/__surge/api/streams")
    assert res.status_code == 200
    by_name = {s["name"]: s for s in res.json()["streams"]}
    assert list(by_name) == ["notes", "secret", "todo"]
    assert by_name["todo"]["groups"] == ["home", "work"]
    assert by_name["notes"]["groups"] == []
    assert set(by_name["todo"]["schema"]["properties"]) == {"id", "description", "done"}
    assert by_name["notes"]["schema"]["required"] == ["text"]
    assert (by_name["secret"]["hasAccessRule"], by_name["todo"]["hasAccessRule"]) == (True, False)


async def test_page_and_its_modules_are_served_under_the_reserved_prefix(
    server: LiveServer, http: httpx2.AsyncClient
) -> None:
    page = await http.get(server.url + "/__surge/workbench/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Surge Workbench" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    for name in ("main.js", "stream.js", "endpoints.js", "streams.js", "schema.js", "dom.js"):
        module = await http.get(f"{server.url}/__surge/workbench/{name}")
        assert module.status_code == 200, name
        # Browsers refuse module scripts served with another type.
        assert module.headers["content-type"].startswith("text/javascript"), name
    css = await http.get(server.url + "/__surge/workbench/style.css")
    assert css.headers["content-type"].startswith("text/css")
    head = await http.head(server.url + "/__surge/workbench/main.js")
    assert head.status_code == 200
    assert head.content == b""

    for path in ("/__surge/workbench", "/__surge", "/__surge/"):
        moved = await http.get(server.url + path)
        assert (moved.status_code, moved.headers["location"]) == (307, "/__surge/workbench/"), path
    for path in (
        "/__surge/workbench/nope.js",
        "/__surge/workbench/%2e%2e/server.py",
        "/__surge/workbench/..%2fserver.py",
        "/__surge/workbench/__init__.py",
        "/__surge/api/nope",
    ):
        assert (await http.get(server.url + path)).status_code == 404, path
    assert (await http.post(server.url + "/__surge/api/session")).status_code == 405


# -- x-surge-stream-item -----------------------------------------------------------------------


async def test_response_that_is_the_value_set_returned_is_marked_and_body_unchanged(
    server: LiveServer, http: httpx2.AsyncClient
) -> None:
    res = await http.post(
        server.url + "/todo/t1", json={"description": "buy milk"}, headers={"Origin": "http://x"}
    )
    assert res.status_code == 201
    assert json.loads(res.headers[ITEM_HEADER]) == {
        "streamName": "todo",
        "groupId": "inbox",
        "id": "t1",
    }
    assert res.content == orjson.dumps({"id": "t1", "description": "buy milk", "done": False})
    # Cross-origin front ends may read it too.
    assert ITEM_HEADER in res.headers["access-control-expose-headers"]

    got = await http.get(server.url + "/todo/t1")
    assert json.loads(got.headers[ITEM_HEADER])["id"] == "t1"
    assert got.content == res.content

    note = await http.post(server.url + "/note")
    assert json.loads(note.headers[ITEM_HEADER]) == {
        "streamName": "notes",
        "groupId": "g",
        "id": "n1",
    }
    assert note.json() == {"id": "n1", "text": "hello"}


async def test_header_absent_for_bodies_that_are_not_a_returned_stream_item(
    server: LiveServer, http: httpx2.AsyncClient
) -> None:
    await server.app.runtime.streams.todo.set("inbox", "t1", Todo(id="t1", description="x"))
    for path in ("/todo/t1/copy", "/todo", "/plain", "/todo/missing", "/nowhere"):
        res = await http.get(server.url + path)
        assert ITEM_HEADER not in res.headers, path
    copied = await http.get(server.url + "/todo/t1/copy")
    assert copied.json() == {"id": "t1", "description": "x", "done": False}
    plain = await http.get(server.url + "/plain")
    assert (plain.json(), plain.headers["x-custom"]) == ({"ok": True}, "1")


async def test_header_absent_and_body_identical_when_the_workbench_is_off(
    server: LiveServer, http: httpx2.AsyncClient
) -> None:
    on = await http.post(server.url + "/todo/t1", json={"description": "same"})
    async with live_server(build_app(workbench=False)) as off_server:
        off = await http.post(off_server.url + "/todo/t1", json={"description": "same"})
    assert ITEM_HEADER in on.headers
    assert ITEM_HEADER not in off.headers
    assert (off.status_code, off.content) == (on.status_code, on.content)
    assert ITEM_HEADER not in off.headers.get("access-control-expose-headers", "")


# -- /endpoints and the off switch --------------------------------------------------------------


async def test_guide_url_endpoints_redirects_to_the_workbench_only_without_a_user_route(
    server: LiveServer, http: httpx2.AsyncClient
) -> None:
    moved = await http.get(server.url + "/endpoints")
    assert (moved.status_code, moved.headers["location"]) == (307, "/__surge/workbench/")

    async def mine(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
        return ApiResponse(200, {"mine": True})

    for method, expected in (("GET", 200), ("POST", 405)):
        app = create_app(
            steps=[(ApiRouteConfig(name="Mine", method=method, path="/endpoints"), mine)],
            workbench=True,
        )
        async with live_server(app) as srv:
            res = await http.get(srv.url + "/endpoints")
        # The project's own route (under any method) wins over the shortcut.
        assert res.status_code == expected, method
        assert "location" not in res.headers


async def test_workbench_off_serves_nothing_under_the_prefix(http: httpx2.AsyncClient) -> None:
    app = build_app(workbench=False)
    assert app.workbench is None
    async with live_server(app) as srv:
        for path in (
            "/__surge/workbench/",
            "/__surge/workbench/main.js",
            "/__surge/api/session",
            "/__surge/api/streams",
            "/endpoints",
        ):
            res = await http.get(srv.url + path)
            assert res.status_code == 404, path
            assert "workbenchKey" not in res.text


# -- the key past stream auth --------------------------------------------------------------------


@pytest.fixture
def auth_log() -> AuthLog:
    return AuthLog()


@pytest.fixture
async def auth_server(auth_log: AuthLog) -> AsyncIterator[LiveServer]:
    async with live_server(build_app(workbench=True, log=auth_log, auth=True)) as srv:
        yield srv


async def refused_status(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, **kwargs):
            pass
    return refused.value.response.status_code


async def test_workbench_key_connects_without_authenticate_and_passes_can_access(
    auth_server: LiveServer, auth_log: AuthLog
) -> None:
    # Without the key, a token-less connection is refused by authenticate.
    assert await refused_status(auth_server.ws_url) == 401
    assert auth_log.tokens == [None]

    url = f"{auth_server.ws_url}?surgeWorkbench={key_of(auth_server)}"
    async with connect(url, stream="secret") as client:
        await auth_server.app.runtime.streams.secret.set(
            "bob", "t1", Todo(id="t1", description="b")
        )
        sync = await client.join_synced("bob")
        assert [item["id"] for item in sync["event"]["data"]] == ["t1"]
        item_sync = await client.join_synced("bob", "t1")
        assert item_sync["event"]["data"]["id"] == "t1"
    assert auth_log.tokens == [None], "authenticate ran for the workbench connection"
    assert auth_log.checks == [], "the user's can_access saw the workbench connection"


async def test_wrong_or_foreign_workbench_key_is_refused_without_calling_authenticate(
    auth_server: LiveServer, auth_log: AuthLog
) -> None:
    key = key_of(auth_server)
    for wrong in ("x", key[:-1], key + "x", "tok-ann"):
        assert await refused_status(f"{auth_server.ws_url}?surgeWorkbench={wrong}") == 401, wrong
    # The right key from another site's page is refused too.
    status, _ = await raw_upgrade(
        auth_server.host,
        auth_server.port,
        f"/?surgeWorkbench={key}",
        {"Origin": "http://evil.example"},
    )
    assert status == 403
    assert auth_log.tokens == []


async def test_workbench_key_does_not_weaken_auth_for_other_connections(
    auth_server: LiveServer, auth_log: AuthLog
) -> None:
    workbench_url = f"{auth_server.ws_url}?surgeWorkbench={key_of(auth_server)}"
    async with connect(workbench_url, stream="secret") as workbench:
        await workbench.join_synced("bob")
        # Meanwhile a user's connection is authenticated and checked as always.
        async with connect(f"{auth_server.ws_url}?authToken=tok-ann", stream="secret") as ann:
            await ann.join_synced("ann")
            await ann.join("bob")
            assert is_error_event(await ann.recv(), "STREAM_ACCESS_DENIED")
        assert await refused_status(auth_server.ws_url) == 401
        assert await refused_status(f"{auth_server.ws_url}?authToken=tok-bob") == 401
    assert auth_log.tokens == ["tok-ann", None, "tok-bob"]
    assert [(group, ctx) for group, ctx in auth_log.checks] == [
        ("ann", {"user": "ann"}),
        ("bob", {"user": "ann"}),
    ]


async def test_workbench_key_parameter_means_nothing_when_the_workbench_is_off(
    auth_log: AuthLog,
) -> None:
    app = build_app(workbench=False, log=auth_log, auth=True)
    async with live_server(app) as srv:
        assert await refused_status(f"{srv.ws_url}?surgeWorkbench=anything") == 401
        # With a valid token the parameter is just ignored: normal auth and access checks.
        async with connect(
            f"{srv.ws_url}?surgeWorkbench=x&authToken=tok-ann", stream="secret"
        ) as c:
            await c.join("bob")
            assert is_error_event(await c.recv(), "STREAM_ACCESS_DENIED")
    assert auth_log.tokens == [None, "tok-ann"]
    assert auth_log.checks == [("bob", {"user": "ann"})]


async def test_authenticate_cannot_hand_out_the_workbench_marker(http: httpx2.AsyncClient) -> None:
    def authenticate(request: AuthRequest) -> object:
        return WORKBENCH_CONTEXT

    app = create_app(
        streams=[StreamConfig(name="todo", schema=Todo, can_access=lambda sub, ctx: False)],
        config=Config(stream_auth=StreamAuth(authenticate=authenticate)),
        workbench=True,
    )
    async with live_server(app) as srv:
        assert await refused_status(srv.ws_url) == 401


async def test_workbench_key_never_appears_in_the_logs(
    auth_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    uvicorn_logger = logging.getLogger("uvicorn.error")  # does not propagate to the root
    uvicorn_logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="uvicorn.error")
    key = key_of(auth_server)
    try:
        async with connect(f"{auth_server.ws_url}?surgeWorkbench={key}", stream="secret") as c:
            await c.join_synced("bob")
        await refused_status(f"{auth_server.ws_url}?surgeWorkbench={key}x")
    finally:
        uvicorn_logger.removeHandler(caplog.handler)
    messages = [
        r.getMessage() for r in caplog.records if not r.name.startswith("websockets.client")
    ]
    assert any("surgeWorkbench=[redacted]" in m for m in messages), messages
    assert all(key not in m for m in messages)


def test_the_key_is_random_per_app() -> None:
    keys: set[str] = set()
    for _ in range(3):
        app = build_app(workbench=True)
        assert app.workbench is not None
        keys.add(app.workbench.key)
    assert len(keys) == 3
    assert all(len(k) >= 40 for k in keys)


CLOSED_STREAM = """
from pydantic import BaseModel

from surge import StreamConfig


class Item(BaseModel):
    id: str


config = StreamConfig(name="{name}", schema=Item, can_access=lambda sub, ctx: False)
"""


async def test_hot_reloaded_streams_still_admit_the_workbench(tmp_path: Path) -> None:
    from surge.streams.stores.memory import MemoryStreamAdapter

    steps = tmp_path / "steps"
    steps.mkdir()
    (steps / "closed_stream.py").write_text(CLOSED_STREAM.format(name="closed"))
    app = create_app(tmp_path, reload=True, workbench=True, adapter=MemoryStreamAdapter())
    async with live_server(app) as srv:
        url = f"{srv.ws_url}?surgeWorkbench={key_of(srv)}"
        async with connect(url, stream="closed") as client:
            await client.join_synced("g")
        async with connect(srv.ws_url, stream="closed") as anonymous:
            await anonymous.join("g")
            assert is_error_event(await anonymous.recv(), "STREAM_ACCESS_DENIED")

        (steps / "later_stream.py").write_text(CLOSED_STREAM.format(name="later"))
        await wait_until(lambda: "later" in srv.app.runtime.registry.streams, within=15)
        async with connect(url, stream="later") as client:
            await client.join_synced("g")
        async with connect(srv.ws_url, stream="later") as anonymous:
            await anonymous.join("g")
            assert is_error_event(await anonymous.recv(), "STREAM_ACCESS_DENIED")
