"""The Workbench in a real Chromium when the Surge app is mounted into FastAPI at ``/rt``.

The guide's todo project (plus one event step), ``surge.create_app(..., workbench=True)`` and
``api.mount("/rt", realtime)``, served by plain uvicorn as a FastAPI user would. The page at
``/rt/__surge/workbench/`` connects its stream over ``ws://host/rt/``, lists and calls the API
steps below ``/rt``, shows a group live, emits a message, and opens the logs and flows.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest

from conftest import require_component
from e2e.browser import ARTIFACTS_DIR, browser, new_page
from e2e.surge_process import copy_todo_project, uvicorn_app

with contextlib.suppress(ImportError):  # without it the `browser` fixture skips (fails in CI)
    from playwright.sync_api import ConsoleMessage, Page, expect

__all__ = ["browser", "new_page"]  # pytest fixtures, re-exported for this module

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

SHOTS = ARTIFACTS_DIR / "workbench"
NewPage = Callable[..., "Page"]

HOST_APP = """
import logging
from pathlib import Path

from fastapi import FastAPI

import surge

# The host's logging decides which ctx.logger lines exist (Python's default level is WARNING).
logging.basicConfig(level=logging.INFO)
realtime = surge.create_app(Path(__file__).parent, workbench=True)
api = FastAPI(lifespan=realtime.lifespan)


@api.get("/")
async def home() -> dict[str, str]:
    return {"app": "the host's own route"}


api.mount("/rt", realtime)
"""

WORK_STEP = """
config = {"type": "event", "name": "Work", "subscribes": ["work"], "emits": []}


async def handler(input, ctx):
    ctx.logger.info("working", {"n": input["n"]})
"""


@pytest.fixture
def mounted_todo(tmp_path: Path) -> Iterator[str]:
    """uvicorn serving the host app; returns its base URL (Surge is below ``/rt``)."""
    require_component(
        importlib.util.find_spec("fastapi") is not None,
        "fastapi is not installed (make setup installs it)",
    )
    project = copy_todo_project(tmp_path / "todo")
    (project / "host_app.py").write_text(textwrap.dedent(HOST_APP))
    (project / "steps" / "work_step.py").write_text(textwrap.dedent(WORK_STEP))
    with uvicorn_app(project, "host_app:api", "/rt/__surge/api/session") as url:
        yield url


def test_mounted_workbench_streams_live_calls_steps_and_shows_background_work(
    new_page: NewPage, mounted_todo: str
) -> None:
    base = mounted_todo
    page = new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    sockets: list[str] = []
    errors: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # The redirect stays below the prefix; the stream connects over ws://host/rt/.
    page.goto(f"{base}/rt/__surge/")
    assert page.url == f"{base}/rt/__surge/workbench/"
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")
    port = base.rsplit(":", 1)[1]
    assert sockets and all(
        s.startswith(f"ws://127.0.0.1:{port}/rt/?surgeWorkbench=") for s in sockets
    ), [s.split("?")[0] for s in sockets]

    # Streams: the stream is listed; a change made through an API step below /rt shows live.
    page.get_by_test_id("tab-streams").click()
    expect(page.get_by_test_id("stream-todo")).to_be_visible()
    first = httpx2.post(f"{base}/rt/todo", json={"description": "first"}, timeout=5)
    assert first.status_code == 200, first.text
    page.get_by_test_id("group-todo-inbox").click()  # the group list refreshes by itself
    expect(page.get_by_test_id("group-state")).to_have_text("live")
    expect(page.get_by_test_id("stream-item")).to_have_count(1)
    second = httpx2.post(f"{base}/rt/todo", json={"description": "second"}, timeout=5).json()
    expect(page.get_by_test_id("stream-item")).to_have_count(2)
    expect(page.locator(f'[data-testid="stream-item"][data-id="{second["id"]}"]')).to_contain_text(
        '"description": "second"'
    )
    shot(page, "mounted-streams")

    # Endpoints: "try it" calls the step below /rt and follows the item it returned.
    page.get_by_test_id("tab-endpoints").click()
    expect(page.get_by_test_id("endpoint")).to_have_count(5)
    page.locator('[data-testid="endpoint"][data-key="POST /todo"]').click()
    expect(page.get_by_test_id("endpoint-path")).to_have_text("/rt/todo")
    page.get_by_test_id("request-body").fill('{"description": "from the workbench"}')
    page.get_by_test_id("send-request").click()
    expect(page.get_by_test_id("response-status")).to_have_text("200")
    expect(page.get_by_test_id("response")).to_contain_text(" · /rt/todo")
    expect(page.get_by_test_id("live-state")).to_have_text("live")
    todo = json.loads(page.get_by_test_id("response-body").inner_text())
    assert todo["description"] == "from the workbench"
    completed = httpx2.put(f"{base}/rt/todo/{todo['id']}", json={}, timeout=5)
    assert completed.status_code == 200, completed.text
    expect(page.get_by_test_id("live-count")).to_have_text("1 change since the response")
    assert json.loads(page.get_by_test_id("response-body").inner_text()) == completed.json()
    shot(page, "mounted-endpoints")

    # Messages: emit below /rt and watch the message reach done; its trace opens the logs.
    page.get_by_test_id("tab-messages").click()
    page.get_by_test_id("emit-topic").select_option("work")
    page.get_by_test_id("emit-data").fill('{"n": 3}')
    page.get_by_test_id("emit-send").click()
    result = page.get_by_test_id("emit-result")
    expect(result).to_have_attribute("data-trace-id", re.compile(r"^[0-9a-f]{32}$"))
    trace_id = result.get_attribute("data-trace-id")
    assert trace_id
    row = page.locator(f'[data-testid="message"][data-step="Work"][data-trace-id="{trace_id}"]')
    expect(row).to_have_attribute("data-status", "done")
    row.get_by_test_id("trace-link").click()
    expect(page.get_by_test_id("view-logs")).to_be_visible()
    lines = page.get_by_test_id("log-line")
    expect(lines).to_have_count(1)
    expect(lines.get_by_test_id("log-message")).to_have_text("working")

    # Flows: the topic with its subscriber.
    page.get_by_test_id("tab-flows").click()
    expect(page.locator('[data-testid="flow-topic"][data-topic="work"]')).to_contain_text("Work")
    shot(page, "mounted-flows")

    # No request of the page went to the host's own paths (a 404 logs a console error).
    assert errors == []


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
