"""GET /healthz and /readyz: alive, ready only between startup and the start of a drain, and
not while the Redis feed is down (a private redis-server stopped and started again)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx2

import surge
from redis_server import PrivateRedis
from surge import ApiResponse, ApiRouteConfig, Config, EventConfig, StreamConfig
from surge.streams.stores.redis import RedisStreamAdapter

from .test_metrics import sample

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


async def test_readiness_follows_the_redis_feed_through_an_outage(
    private_redis: PrivateRedis,
) -> None:
    app = surge.create_app(
        streams=STREAMS,
        config=Config(metrics=True),
        adapter=RedisStreamAdapter(private_redis.url, prefix=f"surge-test-{uuid.uuid4().hex}"),
    )

    async def until(status: int) -> httpx2.Response:
        async with asyncio.timeout(20):
            while (response := await get(app, "/readyz")).status_code != status:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        return response

    async with app.lifespan():
        assert (await get(app, "/readyz")).status_code == 200
        before = (await get(app, "/metrics")).text
        assert sample(before, "surge_store_feed_reconnects_total") == 0
        assert sample(before, "surge_ready") == 1

        await private_redis.kill()
        down = await until(503)
        assert "Redis feed" in down.json()["reason"]
        assert (await get(app, "/healthz")).status_code == 200  # alive: do not restart it
        assert sample((await get(app, "/metrics")).text, "surge_ready") == 0

        await private_redis.start()
        await until(200)
        after = (await get(app, "/metrics")).text
        assert sample(after, "surge_store_feed_reconnects_total") == 1
        assert sample(after, "surge_ready") == 1
        assert sample(after, "surge_resyncs_total") == 0  # nobody was subscribed
