"""The Workbench of a Surge app mounted under ``/rt`` in another ASGI app, over real HTTP.

``surge.create_app(..., workbench=True)`` mounted with FastAPI's ``api.mount("/rt", realtime)``
serves the page at ``/rt/__surge/workbench/``, its JSON at ``/rt/__surge/api/...``, redirects
below the prefix, and admits the page's WebSocket at ``ws://host/rt/?surgeWorkbench=<key>``.
Each test runs under both ``root_path`` conventions: Starlette's (``scope["path"]`` keeps the
prefix, ``root_path`` names it) and a host that strips the prefix from ``path``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from collections.abc import AsyncIterator

import httpx2
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from conftest import require_component
from surge.server.app import SurgeApp
from surge.testing import LiveServer, live_server
from surge.workbench import Workbench

from .streamclient import connect
from .test_workbench_api import ITEM_HEADER, Todo, build_app, refused_status

pytestmark = pytest.mark.timeout(60)

PREFIX = "/rt"
PAGE = PREFIX + "/__surge/workbench/"


def fastapi_host(realtime: SurgeApp) -> ASGIApp:
    """The README's embedding: FastAPI runs Surge's lifespan and mounts it at /rt, last."""
    require_component(
        importlib.util.find_spec("fastapi") is not None,
        "fastapi is not installed (make setup installs it)",
    )
    from fastapi import FastAPI

    api = FastAPI(lifespan=realtime.lifespan)

    @api.get("/api/hello")
    async def hello() -> dict[str, str]:
        return {"from": "fastapi"}

    api.mount(PREFIX, realtime)
    return api


def stripping_host(realtime: SurgeApp) -> ASGIApp:
    """A host that mounts the other way (Starlette before 0.33, some routers and proxies): the
    prefix moves from ``path`` to ``root_path``; anything outside it is a 404."""

    async def host(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await realtime(scope, receive, send)
            return
        path: str = scope["path"]
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            if scope["type"] == "http":
                await send({"type": "http.response.start", "status": 404, "headers": []})
                await send({"type": "http.response.body", "body": b"not the mount"})
            else:
                await send({"type": "websocket.close", "code": 1000})
            return
        child = dict(scope)
        child["root_path"] = scope.get("root_path", "") + PREFIX
        child["path"] = path[len(PREFIX) :] or "/"
        child["raw_path"] = child["path"].encode()
        await realtime(child, receive, send)

    return host


HOSTS = {"fastapi-mount": fastapi_host, "stripped-path": stripping_host}


class Mounted(LiveServer):
    """``live_server`` of a host app with the Surge app (``realtime``) mounted at ``/rt``."""

    @property
    def realtime(self) -> SurgeApp:
        return self.app

    @property
    def key(self) -> str:
        workbench = self.app.workbench
        assert isinstance(workbench, Workbench)
        return workbench.key


@contextlib.asynccontextmanager
async def serve(app: ASGIApp, realtime: SurgeApp) -> AsyncIterator[Mounted]:
    """Serve ``app`` with plain uvicorn (as ``uvicorn main:api`` would) until the block exits."""
    async with live_server(realtime, host_app=app) as srv:
        yield Mounted(srv.app, srv.host, srv.port)


@pytest.fixture(params=sorted(HOSTS))
async def mounted(request: pytest.FixtureRequest) -> AsyncIterator[Mounted]:
    # Stream auth on: only the Workbench's key gets a token-less connection in.
    realtime = build_app(workbench=True, auth=True)
    async with serve(HOSTS[request.param](realtime), realtime) as srv:
        yield srv


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=5, follow_redirects=False) as client:
        yield client


async def test_page_modules_and_redirects_are_served_below_the_prefix(
    mounted: Mounted, http: httpx2.AsyncClient
) -> None:
    page = await http.get(mounted.url + PAGE)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Surge Workbench" in page.text
    for name in ("main.js", "urls.js", "endpoints.js", "streams.js", "style.css"):
        assert (await http.get(mounted.url + PAGE + name)).status_code == 200, name

    # Every way in lands on the page below the prefix, not on the host's /__surge/.
    for path in ("/__surge", "/__surge/", "/__surge/workbench", "/endpoints", "/endpoints/"):
        moved = await http.get(mounted.url + PREFIX + path)
        assert (moved.status_code, moved.headers.get("location")) == (307, PAGE), path
        head = await http.head(mounted.url + PREFIX + path)
        assert (head.status_code, head.headers.get("location")) == (307, PAGE), path

    # Outside the mount the host answers, not the Workbench.
    assert (await http.get(mounted.url + "/__surge/workbench/")).status_code == 404
    assert (await http.get(mounted.url + "/__surge/api/session")).status_code == 404


async def test_json_endpoints_answer_below_the_prefix(
    mounted: Mounted, http: httpx2.AsyncClient
) -> None:
    api = mounted.url + PREFIX + "/__surge/api/"
    session = await http.get(api + "session")
    assert session.status_code == 200
    assert session.json() == {"workbenchKey": mounted.key, "streamAuth": True}
    # Same-origin only, under the mount too.
    assert (
        await http.get(api + "session", headers={"Origin": "http://evil.example"})
    ).status_code == 403

    endpoints = (await http.get(api + "endpoints")).json()["endpoints"]
    # The steps' own paths: the page puts the prefix in front when it calls them.
    assert ("POST", "/todo/:id") in [(e["method"], e["path"]) for e in endpoints]

    await mounted.realtime.streams.todo.set("work", "t1", Todo(id="t1", description="a"))
    streams = (await http.get(api + "streams")).json()["streams"]
    assert {s["name"]: s["groups"] for s in streams}["todo"] == ["work"]

    flows = (await http.get(api + "flows")).json()
    assert "CreateTodo" in [s["name"] for s in flows["steps"]]
    messages = await http.get(api + "messages")
    assert (messages.status_code, set(messages.json())) == (200, {"messages", "queues", "capacity"})
    assert (await http.get(api + "dead-letters")).json() == {"deadLetters": []}
    assert set((await http.get(api + "logs?trace=nope")).json()) == {"logs", "capacity"}
    # The POSTs reach the Workbench's handler below the prefix (here: no such dead letter).
    replay = await http.post(api + "dead-letters/replay", json={"step": "Nope", "messageId": "m1"})
    assert replay.status_code == 404, replay.text

    missing = await http.get(api + "nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "no workbench resource /__surge/api/nope"}


async def test_api_steps_below_the_prefix_mark_stream_items_and_the_key_opens_the_websocket(
    mounted: Mounted, http: httpx2.AsyncClient
) -> None:
    # What "try it" sends: the step's path below the prefix.
    made = await http.post(mounted.url + PREFIX + "/todo/t7", json={"description": "milk"})
    assert made.status_code == 201, made.text
    assert json.loads(made.headers[ITEM_HEADER]) == {
        "streamName": "todo",
        "groupId": "inbox",
        "id": "t7",
    }

    ws = f"ws://{mounted.host}:{mounted.port}{PREFIX}/"
    assert await refused_status(ws) == 401  # token-less: authenticate refuses it
    assert await refused_status(f"{ws}?surgeWorkbench=wrong") == 401
    async with connect(f"{ws}?surgeWorkbench={mounted.key}", stream="todo") as client:
        sync = await client.join_synced("inbox")
        assert [item["id"] for item in sync["event"]["data"]] == ["t7"]
        await http.post(mounted.url + PREFIX + "/todo/t8", json={"description": "eggs"})
        created = await client.recv()
        assert (created["event"]["type"], created["event"]["data"]["id"]) == ("create", "t8")
        # can_access of "secret" admits the Workbench's connection under the mount too.
        await mounted.realtime.streams.secret.set("bob", "s1", Todo(id="s1", description="x"))
        secret = await client.join_synced("bob", stream="secret")
        assert [item["id"] for item in secret["event"]["data"]] == ["s1"]
