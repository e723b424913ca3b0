"""Motia Python steps run unchanged: API -> event -> event with state, cron, streams, req dicts.

The project is served by the real app (``create_app`` on the default file store) on a real socket;
requests go over HTTP.
"""

from __future__ import annotations

import logging
import textwrap
import time
from pathlib import Path

import httpx2
import pytest

from surge import create_app
from surge.testing import live_server

from .motia_steps import MOTIA_STEPS


def motia_project(root: Path) -> Path:
    for rel, text in MOTIA_STEPS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


async def test_motia_template_flow_runs_unchanged_and_keeps_the_trace_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="surge.step")
    app = create_app(motia_project(tmp_path / "motia"))
    async with live_server(app) as server, httpx2.AsyncClient() as client:
        response = await client.post(f"{server.url}/default", json={"message": "hello"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["message"] == "test-state topic emitted"
        trace_id = body["traceId"]
        assert response.headers["x-trace-id"] == trace_id
        await app.wait_idle()
        assert await app.background.state.get(trace_id, "test") == "Welcome to motia!"
    chain = [
        (r.name, r.getMessage())
        for r in caplog.records
        if r.name.startswith("surge.step.") and trace_id in r.getMessage()
    ]
    assert [name for name, _ in chain] == [
        "surge.step.ApiTrigger",
        "surge.step.SetStateChange",
        "surge.step.CheckStateChange",
        "surge.step.CheckStateChange",
    ]
    assert "The provided value matches the state value" in chain[-1][1]


async def test_motia_cron_step_ticks_and_its_listener_records_state(tmp_path: Path) -> None:
    app = create_app(motia_project(tmp_path / "motia"))
    async with live_server(app):
        deadline = time.monotonic() + 20
        while len(ticks := await app.background.state.get_group("cron-ticks")) < 2:
            assert time.monotonic() < deadline, f"only {len(ticks)} tick(s) in 20 s"
            await app.background.queue.wait("OnCronTicked", 0.5)
        assert {t["message"] for t in ticks} == {"Cron job executed"}


async def test_motia_request_dict_path_query_headers_and_stream_get_group(
    tmp_path: Path,
) -> None:
    app = create_app(motia_project(tmp_path / "motia"))
    async with live_server(app) as server, httpx2.AsyncClient() as client:
        response = await client.post(
            f"{server.url}/lists/groceries/todos?id=milk",
            json={"text": "buy milk"},
            headers={"user-agent": "motia-test"},
        )
        assert response.status_code == 201, response.text
        assert response.json() == {
            "todo": {"id": "milk", "text": "buy milk"},
            "agent": "motia-test",
        }
        await app.wait_idle()
        assert await app.background.state.get("todo-counts", "groceries") == 1
