"""GET /metrics: parses with Prometheus' text parser, and each metric moves when a test causes its
event (connections, closes by code, frames and bytes, a 1013 overflow, HTTP requests by step and
status, event deliveries by outcome, subscriptions by stream, storage operations and their
errors, fan-out latency, queue depths, presence members and backend writes); labels stay bounded;
the separate metrics port. The Redis feed's reconnects and readiness:
tests/integration/test_health.py; --workers: tests/e2e."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

import surge
from redis_server import free_port
from surge import (
    ApiResponse,
    ApiRouteConfig,
    Config,
    EventConfig,
    Limits,
    StreamAuth,
    StreamConfig,
)
from surge.config import EventSettings
from surge.errors import ConfigError
from surge.server.auth import AuthRequest
from surge.testing import live_server

from .streamclient import connect, wait_until

STREAMS = [StreamConfig(name="todo", schema={"type": "object", "properties": {}})]


def exact(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly these labels, None when there is none."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly these labels (0 when absent)."""
    value = exact(text, name, **labels)
    return 0.0 if value is None else value


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


def families(text: str) -> dict[str, Any]:
    """Every metric family of a scrape, by name (parsed with Prometheus' text parser)."""
    return {family.name: family for family in text_string_to_metric_families(text)}


async def test_store_operations_fanout_and_queues_are_measured() -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def hold(input: Any, ctx: Any) -> None:
        started.set()
        await release.wait()

    async def fail(input: Any, ctx: Any) -> None:
        raise RuntimeError("always fails")

    app = surge.create_app(
        streams=STREAMS,
        config=Config(metrics=True, events=EventSettings(retry_delay=0.01)),
        steps=[
            (EventConfig(name="Hold", subscribes=["hold"], concurrency=1), hold),
            (EventConfig(name="Fail", subscribes=["fail"], max_retries=1), fail),
        ],
    )
    async with live_server(app) as srv, httpx2.AsyncClient(base_url=srv.url, timeout=5) as http:
        stream = srv.app.runtime.streams.todo
        async with connect(srv.ws_url) as client:
            await client.join_synced("g")
            for n in range(40):
                await stream.set("g", f"t{n}", {"n": n})
            await client.recv_n(40)
            await stream.get("g", "t1")
            await stream.update("g", "t1", [{"type": "set", "path": "n", "value": 7}])
            await stream.delete("g", "t2")
            await stream.delete("g", "absent")
            await client.recv_n(2)
        await srv.app.emit({"topic": "fail", "data": {}})
        for _ in range(3):
            await srv.app.emit({"topic": "hold", "data": {}})
        async with asyncio.timeout(10):
            await started.wait()

        async def scrape() -> str:
            return (await http.get("/metrics")).text

        async def queue_filled() -> str | None:
            text = await scrape()
            dead = sample(text, "surge_queue_messages", step="Fail", state="dead")
            return text if dead == 1 else None

        text = None
        async with asyncio.timeout(10):
            while text is None:
                text = await queue_filled()
                await asyncio.sleep(0.02)
        release.set()
        await srv.app.wait_idle()

    def ops(operation: str) -> float:
        return sample(
            text, "surge_store_operation_seconds_count", store="memory", operation=operation
        )

    assert ops("set") == 40
    assert ops("get") == 1
    assert ops("update") == 1
    assert ops("delete") == 2
    assert ops("get_group") >= 1  # the join's sync
    assert sample(text, "surge_store_errors_total", store="memory", operation="set") == 0
    # 40 + 2 fanned-out changes, one in 16 timed.
    assert sample(text, "surge_fanout_seconds_count") >= 2
    assert sample(text, "surge_fanout_seconds_sum") > 0
    assert sample(text, "surge_queue_messages", step="Hold", state="in_flight") == 1
    assert sample(text, "surge_queue_messages", step="Hold", state="ready") == 2
    assert sample(text, "surge_event_deliveries_total", step="Fail", outcome="retried") == 1
    assert sample(text, "surge_event_deliveries_total", step="Fail", outcome="dead") == 1
    assert sample(text, "surge_ready") == 1


async def test_a_refused_update_counts_as_a_store_error() -> None:
    app = surge.create_app(streams=STREAMS, config=Config(metrics=True))
    async with live_server(app) as srv, httpx2.AsyncClient(base_url=srv.url, timeout=5) as http:
        stream = srv.app.runtime.streams.todo
        await stream.set("g", "a", {"n": "text"})
        with pytest.raises(surge.ValidationError):
            await stream.update("g", "a", [{"type": "increment", "path": "n", "by": 1}])
        text = (await http.get("/metrics")).text
    labels = {"store": "memory", "operation": "update"}
    assert sample(text, "surge_store_errors_total", **labels) == 1
    assert sample(text, "surge_store_operation_seconds_count", **labels) == 1


async def test_labels_stay_bounded_whatever_the_groups_and_users() -> None:
    """Many groups and users add no series: no label carries a group, a user or a connection."""

    def authenticate(request: AuthRequest) -> dict[str, str]:
        return {"user": request.headers.get("x-user", "anon")}

    app = surge.create_app(
        streams=STREAMS,
        config=Config(metrics=True, stream_auth=StreamAuth(authenticate=authenticate)),
    )

    async def series_after(clients: int) -> tuple[set[tuple[str, tuple[str, ...]]], str]:
        async with contextlib.AsyncExitStack() as stack:
            for n in range(clients):
                client = await stack.enter_async_context(
                    connect(srv.ws_url, additional_headers={"x-user": f"user-{n}"})
                )
                await client.join_synced(f"group-{n}")
                await srv.app.runtime.streams.todo.set(f"group-{n}", f"item-{n}", {})
                await client.recv()
            text = (await http.get("/metrics")).text
        keys = {
            (s.name, tuple(sorted(f"{k}={v}" for k, v in s.labels.items())))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        return keys, text

    async with live_server(app) as srv, httpx2.AsyncClient(base_url=srv.url, timeout=5) as http:
        few, _ = await series_after(1)
        many, text = await series_after(30)
    assert many == few
    for n in range(30):
        assert f"group-{n}" not in text
        assert f"user-{n}" not in text
        assert f"item-{n}" not in text


async def test_metrics_on_their_own_port_and_not_on_the_app_port() -> None:
    port = free_port()
    app = surge.create_app(streams=STREAMS, config=Config(metrics_port=port))
    async with live_server(app) as srv, httpx2.AsyncClient(timeout=5) as http:
        assert (await http.get(f"{srv.url}/metrics")).status_code == 404
        metrics_url = f"http://127.0.0.1:{port}"
        response = None
        async with asyncio.timeout(10):
            while response is None:
                try:
                    response = await http.get(f"{metrics_url}/metrics")
                except httpx2.TransportError:
                    await asyncio.sleep(0.02)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        async with connect(srv.ws_url):
            during = (await http.get(f"{metrics_url}/metrics")).text
        assert sample(during, "surge_connections") == 1
        assert "surge_connections" in families(during)
        assert (await http.get(f"{metrics_url}/other")).status_code == 404
        assert (await http.post(f"{metrics_url}/metrics")).status_code == 405
    # The port is released with the app.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_a_bad_metrics_port_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="metrics_port"):
        surge.create_app(streams=STREAMS, config=Config(metrics_port=70000))


async def test_rate_limit_hits_are_counted_by_limit() -> None:
    limits = Limits(joins_per_second=0.001, join_burst=1, rate_limit_strikes=5)
    app = surge.create_app(streams=STREAMS, config=Config(metrics=True, limits=limits))
    async with live_server(app) as srv, httpx2.AsyncClient(base_url=srv.url, timeout=5) as http:
        before = (await http.get("/metrics")).text
        async with connect(srv.ws_url) as client:
            await client.join_synced("g0")
            for n in (1, 2):
                await client.join(f"g{n}")
                await client.recv()  # RATE_LIMITED
        after = (await http.get("/metrics")).text
    grew = sample(after, "surge_rate_limited_total", limit="joins") - sample(
        before, "surge_rate_limited_total", limit="joins"
    )
    assert grew == 2


async def test_presence_members_and_backend_writes_are_measured() -> None:
    """Two tabs of one user and a second user: two members; the last tab's close is a leave."""

    def authenticate(request: AuthRequest) -> dict[str, str]:
        return {"userId": request.headers.get("x-user", "anon")}

    app = surge.create_app(
        streams=[
            *STREAMS,
            StreamConfig(
                name="room", schema={"type": "object"}, presence=True, presence_key="userId"
            ),
        ],
        config=Config(metrics=True, stream_auth=StreamAuth(authenticate=authenticate)),
    )
    presence = app.runtime.presence

    async def scrape() -> str:
        await wait_until(presence.is_idle)
        return (await http.get("/metrics")).text

    async with live_server(app) as srv, httpx2.AsyncClient(base_url=srv.url, timeout=5) as http:
        text = await scrape()
        assert exact(text, "surge_presence_pending") == 0
        assert exact(text, "surge_presence_members", stream="room") == 0  # there, at 0
        async with contextlib.AsyncExitStack() as stack:
            tabs = []
            for user in ("alice", "alice", "bob"):
                tab = await stack.enter_async_context(
                    connect(srv.ws_url, additional_headers={"x-user": user})
                )
                await tab.join_synced("g")  # todo: no presence, not counted
                # Last: presence events follow this sync, and nothing reads them.
                await tab.join_synced("lobby", stream="room")
                tabs.append(tab)
            text = await scrape()
            assert exact(text, "surge_presence_members", stream="room") == 2
            assert exact(text, "surge_presence_members", stream="todo") is None  # no presence
            assert exact(text, "surge_presence_writes_total", op="add") == 2
            assert exact(text, "surge_presence_writes_total", op="remove") == 0
            await tabs[0].ws.close()  # one of alice's tabs: she stays
            await wait_until(lambda: len(srv.app.runtime.connections) == 2)
            text = await scrape()
            assert exact(text, "surge_presence_members", stream="room") == 2
            assert exact(text, "surge_presence_writes_total", op="remove") == 0
        await wait_until(lambda: not srv.app.runtime.connections)
        text = await scrape()
        assert exact(text, "surge_presence_members", stream="room") == 0
        assert exact(text, "surge_presence_pending") == 0
        assert exact(text, "surge_presence_writes_total", op="remove") == 2
        assert exact(text, "surge_presence_failures_total") == 0
