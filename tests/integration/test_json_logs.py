"""JSON log lines through the real logging path: an API request, the event it emits and the
event step that handles it log lines that parse and carry one trace id (the response's
x-trace-id); a WebSocket connection's lines carry its connection id."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Iterator
from typing import Any

import httpx2
import orjson

import surge
from surge import ApiResponse, ApiRouteConfig, EventConfig, StreamConfig
from surge.server.logs import JsonFormatter
from surge.testing import live_server

from .streamclient import connect, wait_until

STREAMS = [StreamConfig(name="todo", schema={"type": "object", "properties": {}})]


@contextlib.contextmanager
def json_lines() -> Iterator[io.StringIO]:
    """Every record of the ``surge`` loggers as JSON lines into a buffer, for the block."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    target = logging.getLogger("surge")
    level = target.level
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        target.removeHandler(handler)
        target.setLevel(level)


def parsed(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in buffer.getvalue().splitlines()]


async def test_the_trace_id_travels_from_the_api_through_the_emitted_event() -> None:
    handled = asyncio.Event()

    async def create(req: Any, ctx: Any) -> ApiResponse:
        ctx.logger.info("creating", {"n": 1})
        await ctx.emit({"topic": "created", "data": {"n": 1}})
        return ApiResponse(201, {"ok": True})

    async def notify(input: Any, ctx: Any) -> None:
        ctx.logger.info("notifying")
        logging.getLogger("surge.test.library").warning("a library line inside the handler")
        handled.set()

    app = surge.create_app(
        streams=STREAMS,
        steps=[
            (ApiRouteConfig(name="Create", method="POST", path="/t", emits=["created"]), create),
            (EventConfig(name="Notify", subscribes=["created"]), notify),
        ],
    )
    with json_lines() as buffer:
        async with live_server(app) as srv, httpx2.AsyncClient(base_url=srv.url) as http:
            response = await http.post("/t", json={}, timeout=5)
            assert response.status_code == 201
            async with asyncio.timeout(10):
                await handled.wait()
            await srv.app.wait_idle()
    trace = response.headers["x-trace-id"]
    lines = parsed(buffer)
    by_message = {line["message"].split(" ")[0]: line for line in lines}
    assert by_message["creating"]["trace_id"] == trace
    assert by_message["creating"]["step"] == "Create"
    assert by_message["creating"]["logger"] == "surge.step.Create"
    assert by_message["notifying"]["trace_id"] == trace
    assert by_message["notifying"]["step"] == "Notify"
    library = next(line for line in lines if line["logger"] == "surge.test.library")
    assert (library["trace_id"], library["step"], library["level"]) == (trace, "Notify", "WARNING")


async def test_a_connection_s_lines_carry_its_id() -> None:
    app = surge.create_app(streams=STREAMS)
    with json_lines() as buffer:
        async with live_server(app) as srv, connect(srv.ws_url) as client:
            await client.ws.send("not json")  # a client mistake: logged once, at info
            await wait_until(lambda: "connection_id" in buffer.getvalue())
            conn = next(iter(srv.app.runtime.connections))
    line = next(line for line in parsed(buffer) if "connection_id" in line)
    assert line["connection_id"] == conn.id
    assert "trace_id" not in line
