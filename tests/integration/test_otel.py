"""OpenTelemetry (surge[otel]): one trace per API request through the emitted event, the event
step's run and the stream writes of both, checked with the SDK's in-memory exporter and with a
loopback OTLP/HTTP receiver configured by OTEL_* variables only; nothing loaded when off."""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import surge
from otlp_receiver import otlp_receiver  # noqa: F401 - fixture
from surge import ApiResponse, ApiRouteConfig, Config, EventConfig, StreamConfig, tracing
from surge.server.logs import JsonFormatter
from surge.server.otel import OtelPlugin
from surge.testing import live_server

STREAMS = [StreamConfig(name="todo", schema={"type": "object", "properties": {}})]
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def build(seen: dict[str, str], handled: asyncio.Event, **kwargs: Any) -> surge.SurgeApp:
    async def create(req: Any, ctx: Any) -> ApiResponse:
        seen["api"] = ctx.trace_id
        await ctx.streams.todo.set("g", "a", {"by": "api"})
        await ctx.emit({"topic": "created", "data": {"id": "a"}})
        return ApiResponse(201, {"ok": True})

    async def broken(req: Any, ctx: Any) -> ApiResponse:
        raise RuntimeError("the handler broke")

    async def notify(input: Any, ctx: Any) -> None:
        seen["event"] = ctx.trace_id
        ctx.logger.info("notifying")
        await ctx.streams.todo.set("g", "b", {"by": "event"})
        handled.set()

    return surge.create_app(
        streams=STREAMS,
        steps=[
            (ApiRouteConfig(name="Create", method="POST", path="/t", emits=["created"]), create),
            (ApiRouteConfig(name="Broken", method="GET", path="/broken"), broken),
            (EventConfig(name="Notify", subscribes=["created"]), notify),
        ],
        **kwargs,
    )


def hexid(value: int, digits: int) -> str:
    return format(value, f"0{digits}x")


async def test_one_trace_from_the_request_through_the_event_and_the_writes() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    seen: dict[str, str] = {}
    handled = asyncio.Event()
    app = build(
        seen, handled, plugins=[OtelPlugin(tracer_provider=provider)], config=Config(metrics=True)
    )
    caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    step_logger = logging.getLogger("surge.step.Notify")
    step_logger.addHandler(handler)
    step_logger.setLevel(logging.INFO)
    async with live_server(app) as srv, httpx2.AsyncClient(base_url=srv.url, timeout=5) as http:
        response = await http.post("/t", json={}, headers=caller)
        assert response.status_code == 201
        async with asyncio.timeout(10):
            await handled.wait()
        await srv.app.wait_idle()
        failed = await http.get("/broken")
        assert failed.status_code == 500
        metrics = (await http.get("/metrics")).text
    step_logger.removeHandler(handler)
    step_logger.setLevel(logging.NOTSET)
    assert tracing.TRACER is None  # removed with the app
    # Under both wrappers (timing and tracing) the store is still named for what it is.
    assert 'surge_store_operation_seconds_count{operation="set",store="memory"} 2.0' in metrics

    spans = exporter.get_finished_spans()
    flow = [s for s in spans if hexid(s.context.trace_id, 32) == CALLER_TRACE]
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in flow:
        by_name.setdefault(span.name, []).append(span)
    [server] = by_name["POST /t"]
    [producer] = by_name["emit created"]
    [consumer] = by_name["Notify process created"]
    writes = by_name["surge.store.set"]
    assert response.headers["x-trace-id"] == seen["api"] == seen["event"] == CALLER_TRACE
    assert server.kind is SpanKind.SERVER
    assert server.parent is not None and hexid(server.parent.span_id, 16) == CALLER_SPAN
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 201
    assert server.attributes["surge.step"] == "Create"
    assert producer.kind is SpanKind.PRODUCER
    assert producer.parent is not None and producer.parent.span_id == server.context.span_id
    assert consumer.kind is SpanKind.CONSUMER
    assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id
    [line] = [orjson.loads(text) for text in lines.getvalue().splitlines()]
    assert (line["trace_id"], line["span_id"]) == (
        CALLER_TRACE,
        hexid(consumer.context.span_id, 16),
    )
    parents = sorted(w.parent.span_id for w in writes if w.parent is not None)
    assert parents == sorted([server.context.span_id, consumer.context.span_id])

    [broken] = [s for s in spans if s.name == "GET /broken"]
    assert broken.status.status_code is StatusCode.ERROR
    assert [event.name for event in broken.events] == ["exception"]
    assert hexid(broken.context.trace_id, 32) == failed.headers["x-trace-id"]


async def test_spans_reach_an_otlp_endpoint_named_by_the_environment(
    otlp_receiver: tuple[str, list[bytes]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint, bodies = otlp_receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "surge-test")
    seen: dict[str, str] = {}
    handled = asyncio.Event()
    app = build(seen, handled)
    async with live_server(app) as srv, httpx2.AsyncClient(base_url=srv.url, timeout=5) as http:
        response = await http.post("/t", json={})
        async with asyncio.timeout(10):
            await handled.wait()
        await srv.app.wait_idle()
    # The app's shutdown exported what was left.
    names: set[str] = set()
    services: set[str] = set()
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    services.add(attribute.value.string_value)
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    if span.trace_id.hex() == response.headers["x-trace-id"]:
                        names.add(span.name)
    assert services == {"surge-test"}
    assert {"POST /t", "emit created", "Notify process created", "surge.store.set"} <= names


def test_an_app_without_tracing_loads_no_opentelemetry(tmp_path: Path) -> None:
    (tmp_path / "steps").mkdir()
    script = (
        "import sys, surge\n"
        f"app = surge.create_app({str(tmp_path)!r}, adapter=surge.MemoryStreamAdapter())\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'prometheus'))))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
    env.pop("SURGE_METRICS", None)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
    assert out.stdout.strip() == "[]"
