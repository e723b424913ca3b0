"""GET /healthz and /readyz: alive, ready only between startup and the start of a drain."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2

import surge
from surge import ApiResponse, ApiRouteConfig, EventConfig, StreamConfig

STREAMS = [StreamConfig(name="todo", schema={"type": "object", "properties": {}})]


async def get(app: Any, path: str) -> httpx2.Response:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
        return await http.get(path)


async def test_ready_between_startup_and_the_start_of_a_drain() -> None:
    release = asyncio.Event()
    running = asyncio.Event()

    async def slow(input: Any, ctx: Any) -> None:
        running.set()
        await release.wait()

    app = surge.create_app(
        streams=STREAMS, steps=[(EventConfig(name="Slow", subscribes=["job"]), slow)]
    )
    assert app.readiness() is not None  # not started
    lifespan = app.lifespan()
    await lifespan.__aenter__()
    assert (await get(app, "/healthz")).json() == {"status": "alive"}
    ready = await get(app, "/readyz")
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")

    await app.emit({"topic": "job", "data": {}})
    async with asyncio.timeout(10):
        await running.wait()
    stopping = asyncio.create_task(lifespan.__aexit__(None, None, None))
    async with asyncio.timeout(10):
        while app.readiness() is None:  # noqa: ASYNC110 - the drain starts in the other task
            await asyncio.sleep(0.01)
    draining = await get(app, "/readyz")
    assert draining.status_code == 503
    assert "draining" in draining.json()["reason"]
    assert (await get(app, "/healthz")).status_code == 200  # alive all along
    release.set()
    await asyncio.wait_for(stopping, 15)


async def test_a_project_route_at_healthz_wins() -> None:
    async def mine(req: Any, ctx: Any) -> ApiResponse:
        return ApiResponse(200, {"mine": True})

    app = surge.create_app(
        streams=STREAMS, steps=[(ApiRouteConfig(name="H", method="GET", path="/healthz"), mine)]
    )
    async with app.lifespan():
        assert (await get(app, "/healthz")).json() == {"mine": True}
        assert (await get(app, "/readyz")).status_code == 200
