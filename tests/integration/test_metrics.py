"""GET /metrics: parses with Prometheus' text parser, and each metric moves when a test causes
its event (connections, closes by code, frames and bytes, a 1013 overflow, HTTP requests by step
and status, event deliveries by outcome, subscriptions by stream)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
from prometheus_client.parser import text_string_to_metric_families

import surge
from surge import ApiResponse, ApiRouteConfig, Config, EventConfig, Limits, StreamConfig
from surge.testing import live_server

from .streamclient import connect, wait_until

STREAMS = [StreamConfig(name="todo", schema={"type": "object", "properties": {}})]


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly these labels (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


async def test_metrics_move_with_what_happens() -> None:
    done = asyncio.Event()

    async def hello(req: Any, ctx: Any) -> ApiResponse:
        await ctx.emit({"topic": "job", "data": {}})
        return ApiResponse(200, {"ok": True})

    async def job(input: Any, ctx: Any) -> None:
        done.set()

    app = surge.create_app(
        streams=STREAMS,
        config=Config(metrics=True, limits=Limits(outbox_capacity=2)),
        steps=[
            (ApiRouteConfig(name="Hello", method="GET", path="/hello", emits=["job"]), hello),
            (EventConfig(name="Job", subscribes=["job"]), job),
        ],
    )
    async with live_server(app) as srv, httpx2.AsyncClient(base_url=srv.url, timeout=5) as http:
        before = (await http.get("/metrics")).text
        async with connect(srv.ws_url) as client:
            await client.join_synced("g")
            during = (await http.get("/metrics")).text
            assert sample(during, "surge_connections") == sample(before, "surge_connections") + 1
            assert sample(during, "surge_subscriptions", stream="todo") == 1
        await wait_until(lambda: not srv.app.runtime.connections)
        assert (await http.get("/hello")).status_code == 200
        async with asyncio.timeout(10):
            await done.wait()
        await srv.app.wait_idle()

        # A slow consumer: frames pile up beyond the outbox's 2 while the client does not read.
        async with connect(srv.ws_url, max_queue=1, compression=None) as slow:
            await slow.join_synced("g")
            stream = srv.app.runtime.streams.todo
            for n in range(2000):
                await stream.set("g", f"t{n}", {"id": f"t{n}", "pad": "x" * 2000})
                if srv.app.runtime.connections and all(
                    c.outbox.is_overflowed for c in srv.app.runtime.connections
                ):
                    break
        after = (await http.get("/metrics")).text

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("surge_connections_opened_total") >= 2
    assert grew("surge_connections_closed_total", code="1000") >= 1
    assert grew("surge_frames_sent_total") >= 2
    assert grew("surge_bytes_sent_total") > 0
    assert grew("surge_outbox_overflows_total") >= 1
    assert sample(after, "surge_http_request_seconds_count", step="Hello", status="200") == 1
    assert sample(after, "surge_event_deliveries_total", step="Job", outcome="done") == 1
    assert sample(after, "surge_syncs_total", cache="miss") >= 1
    assert sample(after, "process_resident_memory_bytes") > 0


async def test_no_metrics_unless_asked() -> None:
    app = surge.create_app(streams=STREAMS)
    async with live_server(app) as srv, httpx2.AsyncClient(base_url=srv.url, timeout=5) as http:
        assert (await http.get("/metrics")).status_code == 404
