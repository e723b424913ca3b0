"""`surge start --log-format json` and `surge dev` with SURGE_LOG_FORMAT=json: every line the
process writes is one JSON object (banner, uvicorn's lines, the steps'), a request's lines carry
its x-trace-id and step, and a token in the upgrade URL appears nowhere (the whole-suite scan reads
these files too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
import websockets

from e2e.surge_process import SurgeProcess, copy_todo_project, poll

TOKEN = "tok-ann"  # one of tests/abuse/logscan.py's KNOWN_TOKENS


def json_lines(server: SurgeProcess) -> list[dict[str, Any]]:
    """Every line of the process's output, parsed (the test's own '--- start' markers aside)."""
    lines = [line for line in server.log().splitlines() if line and not line.startswith("--- ")]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}\n{server.log()}")
    return parsed


async def exercise(server: SurgeProcess) -> str:
    """A POST /todo (returns its trace id) and a WebSocket upgrade with a token in its URL."""
    async with httpx2.AsyncClient(base_url=server.url, timeout=5) as http:
        response = await http.post("/todo", json={"description": "json lines"})
    assert response.status_code in (200, 201), response.text
    async with websockets.connect(f"{server.ws_url}?authToken={TOKEN}", open_timeout=5) as ws:
        await ws.send("not json")  # a client mistake: one line with the connection id
        await ws.recv()
    return response.headers["x-trace-id"]


@pytest.mark.parametrize("command", ["start", "dev"])
async def test_every_line_is_json_and_carries_trace_and_connection(
    tmp_path: Path, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = copy_todo_project(tmp_path / "todo")
    if command == "dev":
        monkeypatch.setenv("SURGE_LOG_FORMAT", "json")
        server = SurgeProcess(project, command="dev")
    else:
        server = SurgeProcess(project, extra_args=["--log-format", "json"])
    server.start(30.0)
    try:
        trace = await exercise(server)
        poll(
            lambda: any(line.get("connection_id") for line in json_lines(server)),
            10,
            "a line with the connection id",
        )
    finally:
        server.stop()
    lines = json_lines(server)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line["logger"] == "surge.cli" and "serving" in line["message"] for line in lines)
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    created = [line for line in lines if line["message"].startswith("Todo created successfully")]
    assert [(line["trace_id"], line["step"]) for line in created] == [(trace, "CreateTodo")]
    assert TOKEN not in server.log()
