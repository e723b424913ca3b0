"""Where /openapi.json and /docs are served: always under `surge dev` (workbench=True), under
`surge start` only with Config(openapi=True), and never over a project's own route."""

from __future__ import annotations

from typing import Any

import surge
from surge import ApiResponse, ApiRouteConfig, Config, StreamConfig
from surge.testing import TestClient


async def hello(req: Any, ctx: Any) -> ApiResponse:
    return ApiResponse(200, {"hello": "world"})


async def my_docs(req: Any, ctx: Any) -> ApiResponse:
    return ApiResponse(200, {"mine": True})


STREAMS = [StreamConfig(name="todo", schema={"type": "object", "properties": {}})]
HELLO = (ApiRouteConfig(name="Hello", method="GET", path="/hello"), hello)


def test_dev_serves_the_document_of_the_api_steps() -> None:
    app = surge.create_app(streams=STREAMS, steps=[HELLO], workbench=True)
    with TestClient(app) as client:
        spec = client.get("/openapi.json").json()
        assert spec["openapi"].startswith("3.1")
        assert "/hello" in spec["paths"]
        assert client.get("/hello").json() == {"hello": "world"}


def test_start_serves_it_only_when_the_config_asks() -> None:
    with TestClient(surge.create_app(streams=STREAMS, steps=[HELLO])) as client:
        assert client.get("/openapi.json").status_code == 404
    enabled = surge.create_app(streams=STREAMS, steps=[HELLO], config=Config(openapi=True))
    with TestClient(enabled) as client:
        assert "/hello" in client.get("/openapi.json").json()["paths"]


def test_a_project_route_at_docs_keeps_it() -> None:
    docs_step = (ApiRouteConfig(name="MyDocs", method="GET", path="/docs"), my_docs)
    app = surge.create_app(streams=STREAMS, steps=[HELLO, docs_step], workbench=True)
    with TestClient(app) as client:
        assert client.get("/docs").json() == {"mine": True}
        assert client.get("/openapi.json").status_code == 200
