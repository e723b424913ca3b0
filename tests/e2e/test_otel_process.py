"""`surge start` with only OTEL_* variables set: the spans of a request reach a loopback OTLP/HTTP
receiver by the time the process has stopped (SIGTERM flushes them)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from e2e.surge_process import SurgeProcess, copy_todo_project
from otlp_receiver import otlp_receiver  # noqa: F401 - fixture


async def test_surge_start_exports_the_trace_of_a_request(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    otlp_receiver: tuple[str, list[bytes]],  # noqa: F811
) -> None:
    endpoint, bodies = otlp_receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "todo-e2e")
    server = SurgeProcess(copy_todo_project(tmp_path / "todo"))
    await asyncio.to_thread(server.start, 30.0)
    try:
        async with httpx2.AsyncClient(base_url=server.url, timeout=5) as http:
            response = await http.post("/todo", json={"description": "traced"})
        assert response.status_code in (200, 201), response.text
    finally:
        assert await asyncio.to_thread(server.stop) == 0
    trace_id = response.headers["x-trace-id"]
    names = {
        span.name
        for body in bodies
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans
        for scope in resource_spans.scope_spans
        for span in scope.spans
        if span.trace_id.hex() == trace_id
    }
    assert {"POST /todo", "surge.store.set"} <= names, (names, server.log())
