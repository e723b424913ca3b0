"""Config(lifespan=...): app resources opened once at startup, given to every handler as
ctx.resources (API and event steps), closed at shutdown after the last handler finished."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

import surge
from surge import ApiResponse, ApiRouteConfig, Config, EventConfig, StreamConfig

STREAMS = [StreamConfig(name="todo", schema={"type": "object", "properties": {}})]


async def test_what_the_lifespan_yields_is_ctx_resources_until_shutdown() -> None:
    log: list[str] = []
    seen: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def resources() -> AsyncIterator[dict[str, str]]:
        log.append("open")
        yield {"pool": "the-pool"}
        log.append("close")

    async def api(req: Any, ctx: Any) -> ApiResponse:
        seen["api"] = ctx.resources["pool"]
        await ctx.emit({"topic": "job", "data": {}})
        return ApiResponse(200, {"ok": True})

    async def job(input: Any, ctx: Any) -> None:
        seen["event"] = ctx.resources["pool"]

    app = surge.create_app(
        streams=STREAMS,
        config=Config(lifespan=resources),
        steps=[
            (ApiRouteConfig(name="Api", method="POST", path="/go", emits=["job"]), api),
            (EventConfig(name="Job", subscribes=["job"]), job),
        ],
    )
    async with app.lifespan():
        assert log == ["open"]
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.post("/go")).status_code == 200
        await app.wait_idle()
    assert seen == {"api": "the-pool", "event": "the-pool"}
    assert log == ["open", "close"]


async def test_a_failing_lifespan_stops_startup_with_its_error() -> None:
    @contextlib.asynccontextmanager
    async def broken() -> AsyncIterator[None]:
        raise ConnectionError("database unreachable")
        yield

    app = surge.create_app(streams=STREAMS, config=Config(lifespan=broken))
    with pytest.raises(ConnectionError, match="database unreachable"):
        async with app.lifespan():
            pass
