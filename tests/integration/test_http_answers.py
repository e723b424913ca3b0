"""How an API step's answer is framed on the wire: status, JSON body, content-length and
content-type, the trace id, the handler's own headers, and bodiless statuses."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx2
import orjson
import pytest
from pydantic import BaseModel

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext, create_app
from surge.testing import live_server

pytestmark = pytest.mark.timeout(30)


async def _ok(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    return ApiResponse(200, {"text": "héllo", "n": 1})


async def _with_headers(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    return ApiResponse(201, {"ok": True}, {"X-Mine": "yes", "Content-Type": "application/x-mine"})


async def _no_content(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    return ApiResponse(204)


async def _no_body(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    return ApiResponse(202)


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    app = create_app(
        steps=[
            (ApiRouteConfig(name="Ok", method="GET", path="/ok"), _ok),
            (ApiRouteConfig(name="WithHeaders", method="POST", path="/mine"), _with_headers),
            (ApiRouteConfig(name="NoContent", method="DELETE", path="/gone"), _no_content),
            (ApiRouteConfig(name="NoBody", method="POST", path="/later"), _no_body),
        ]
    )
    async with live_server(app) as srv, httpx2.AsyncClient(base_url=srv.url, timeout=10) as c:
        yield c


async def test_a_json_answer_has_its_length_type_and_a_fresh_trace_id(
    http: httpx2.AsyncClient,
) -> None:
    first = await http.get("/ok")
    second = await http.get("/ok")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.content == orjson.dumps({"text": "héllo", "n": 1})
    assert first.headers["content-length"] == str(len(first.content))
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["x-trace-id"])
    assert first.headers["x-trace-id"] != second.headers["x-trace-id"]


async def test_the_handlers_headers_go_out_and_its_content_type_wins(
    http: httpx2.AsyncClient,
) -> None:
    response = await http.post("/mine")
    assert response.status_code == 201
    assert response.headers["x-mine"] == "yes"
    assert response.headers.get_list("content-type") == ["application/x-mine"]
    assert response.headers["content-length"] == str(len(response.content))


async def test_a_204_has_no_body_no_length_and_no_type(http: httpx2.AsyncClient) -> None:
    response = await http.delete("/gone")
    assert response.status_code == 204
    assert response.content == b""
    assert "content-length" not in response.headers
    assert "content-type" not in response.headers
    assert "x-trace-id" in response.headers


async def test_an_answer_without_a_body_says_length_zero_and_no_type(
    http: httpx2.AsyncClient,
) -> None:
    response = await http.post("/later")
    assert response.status_code == 202
    assert response.content == b""
    assert response.headers["content-length"] == "0"
    assert "content-type" not in response.headers


async def test_errors_are_json_with_their_length(http: httpx2.AsyncClient) -> None:
    missing = await http.get("/nowhere")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/json"
    assert missing.headers["content-length"] == str(len(missing.content))
    wrong = await http.post("/ok")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET"


class _Item(BaseModel):
    id: str
    score: float
    tags: dict[int, str]
    at: datetime


async def test_a_model_body_is_the_json_of_its_model_dump() -> None:
    item = _Item(id="é1", score=0.1 + 0.2, tags={1: "x"}, at=datetime(2026, 1, 1, tzinfo=UTC))

    async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
        return ApiResponse(200, item)

    app = create_app(steps=[(ApiRouteConfig(name="Item", method="GET", path="/item"), handler)])
    async with live_server(app) as srv, httpx2.AsyncClient(base_url=srv.url, timeout=10) as c:
        response = await c.get("/item")
    assert response.status_code == 200
    assert response.content == orjson.dumps(item.model_dump(mode="json"))
    assert response.headers["content-length"] == str(len(response.content))
