"""The todo web app through a server outage, in real Chromium (issue 13 item 4).

The page is open on `surge start` (examples/todo, file store). The server stops for 5 s; while it
is down another process writes to the same store (the file store is shared by processes: a batch
job, a worker, `surge emit`...): one todo created, one completed, one deleted. Then the server
comes back on the same port. The page must:

- show the connection banner as `reconnecting` while the server is away, and clear it after;
- say in words that its own change could not be saved (not a raw "Failed to fetch");
- show exactly the store's todos again, by itself, without a reload;
- on the wire (recorded with Playwright's websocket events): re-join with `since` (the last
  offset and epoch it saw) and get a `resume` answer and the missed changes, not a full sync
  (docs/protocol.md section 3).

And the browser's own network going (Playwright's offline emulation) shows the `offline` banner;
coming back retries at once and catches up.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

with contextlib.suppress(ImportError):
    from playwright.sync_api import Page, WebSocket, expect

from conftest import require_component
from e2e.browser import ARTIFACTS_DIR, browser, new_page  # noqa: F401  (pytest fixtures)
from e2e.surge_process import EXAMPLE_TODO, SurgeProcess, copy_todo_project

BUILT_APP = EXAMPLE_TODO / "web" / "dist" / "index.html"
OUTAGE_S = 5.0
# The client retries with backoff capped at 10 s: after the server is back, the next attempt
# comes within 10 s (plus a loaded machine's slack).
BACK_WITHIN_MS = 30_000

NewPage = Callable[..., "Page"]

# Another process writing through the same file store while the server is down. It uses the
# project's own stream definition (validation included), as a worker or a script would.
WRITER = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path

    project = Path(sys.argv[1])
    sys.path.insert(0, str(project))
    from steps.todo_stream import config
    from surge.streams.stores.file import FileStreamAdapter
    from surge.streams.stream import Stream

    async def main() -> None:
        plan = json.loads(sys.argv[2])
        adapter = FileStreamAdapter(project / ".surge" / "streams")
        await adapter.open(lambda message: None)
        try:
            todo = Stream(config, adapter)
            await todo.set("inbox", plan["create"]["id"], plan["create"])
            done = await todo.get("inbox", plan["complete"])
            await todo.set("inbox", plan["complete"],
                           done.model_copy(update={"completedAt": "2026-01-01T00:00:00+00:00"}))
            await todo.delete("inbox", plan["delete"])
        finally:
            await adapter.close()

    asyncio.run(main())
    """
)


@dataclass
class Wire:
    """Every WebSocket the page opened, with the frames it sent and received, in order."""

    sockets: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        def on_socket(socket: WebSocket) -> None:
            sent: list[dict[str, Any]] = []
            received: list[dict[str, Any]] = []
            self.sockets.append((sent, received))
            socket.on("framesent", lambda payload: sent.append(json.loads(payload)))
            socket.on("framereceived", lambda payload: received.append(json.loads(payload)))

        page.on("websocket", on_socket)


@pytest.fixture
def todo_app(surge_server: Callable[..., SurgeProcess], tmp_path: Path) -> SurgeProcess:
    """`surge start` serving a private copy of examples/todo, with its built web app."""
    require_component(
        BUILT_APP.is_file(),
        "the todo web app is not built: run `make web` (npm ci + vite build in examples/todo/web)",
    )
    return surge_server(copy_todo_project(tmp_path / "todo"))


def create_todo(server: SurgeProcess, description: str) -> dict[str, Any]:
    response = httpx2.post(f"{server.url}/todo", json={"description": description}, timeout=5)
    assert response.status_code == 200, response.text
    todo: dict[str, Any] = response.json()
    return todo


def write_while_down(project: Path, plan: dict[str, Any]) -> None:
    """Run WRITER in its own process (the server's process is gone)."""
    run = subprocess.run(
        [sys.executable, "-c", WRITER, str(project), json.dumps(plan)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, f"the writer failed:\n{run.stdout}\n{run.stderr}"


def ride_out_an_outage(server: SurgeProcess, new_page: NewPage) -> tuple[Page, Wire]:  # noqa: F811
    """The scenario of the module docstring; returns the page and its recorded wire."""
    wire = Wire()
    page = new_page()
    wire.attach(page)
    page.goto(server.url + "/")
    expect(page.get_by_role("main")).to_have_attribute("data-subscribed", "true")
    banner = page.get_by_test_id("connection-banner")
    expect(banner).to_be_hidden()
    page.evaluate("window.__notReloaded = true")

    keep = create_todo(server, "keep me")
    finish = create_todo(server, "finish me")
    drop = create_todo(server, "drop me")
    descriptions = page.get_by_test_id("todo-description")
    expect(descriptions).to_have_text(["keep me", "finish me", "drop me"])

    server.stop()
    stopped_at = time.monotonic()
    expect(banner).to_be_visible()
    expect(banner).to_have_attribute("data-state", "reconnecting")
    expect(banner).to_contain_text("Reconnecting")

    # The page's own change cannot be saved: it says so in words.
    page.get_by_test_id("new-todo").fill("typed while offline")
    page.get_by_test_id("new-todo").press("Enter")
    expect(page.get_by_test_id("error")).to_contain_text("Cannot reach the server")
    expect(page.get_by_test_id("new-todo")).to_have_value("typed while offline")

    created = {
        "id": "todo-written-while-down",
        "description": "made while you were away",
        "createdAt": "2026-01-01T00:00:00+00:00",
    }
    write_while_down(
        server.project_dir, {"create": created, "complete": finish["id"], "delete": drop["id"]}
    )
    # The banner is still up (the attempts go on), with a growing attempt count.
    expect(banner).to_have_attribute("data-state", "reconnecting")
    shots = ARTIFACTS_DIR / Path(__file__).stem
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "during-the-outage.png"))
    remaining = OUTAGE_S - (time.monotonic() - stopped_at)
    if remaining > 0:
        time.sleep(remaining)  # the outage itself is the scenario, not a wait for a condition
    assert int(banner.get_attribute("data-attempt") or "0") >= 2

    server.start()
    expect(descriptions).to_have_text(
        ["keep me", "finish me", "made while you were away"], timeout=BACK_WITHIN_MS
    )
    finished = page.locator(f'[data-todo-id="{finish["id"]}"]')
    expect(finished).to_have_attribute("data-completed", "true")
    expect(page.get_by_test_id("todo-count")).to_have_text("2 of 3 left")
    expect(banner).to_be_hidden()
    expect(page.get_by_test_id("error")).to_have_count(0)  # stale once the connection is back
    assert page.evaluate("window.__notReloaded") is True
    assert keep["id"] in page.locator("[data-todo-id]").evaluate_all(
        "rows => rows.map(row => row.dataset.todoId)"
    )
    return page, wire


def test_the_page_rides_out_a_server_outage_with_a_banner(
    todo_app: SurgeProcess,
    new_page: NewPage,  # noqa: F811
) -> None:
    page, wire = ride_out_an_outage(todo_app, new_page)
    # Two connections: the first, and the one after the outage (no reload, no extra socket).
    assert len(wire.sockets) >= 2
    # Still live after the outage: a change through the API shows up.
    create_todo(todo_app, "after the outage")
    expect(page.get_by_test_id("todo-description")).to_have_count(4)


def _envelopes(received: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [frame for frame in received if frame.get("streamName") == "todo"]


def test_after_the_outage_the_page_resumes_instead_of_a_full_sync(
    todo_app: SurgeProcess,
    new_page: NewPage,  # noqa: F811
) -> None:
    _, wire = ride_out_an_outage(todo_app, new_page)
    (first_sent, first_received), *later = wire.sockets
    # The first connection: a join without since, a sync carrying offset and epoch.
    first_join = next(frame for frame in first_sent if frame["type"] == "join")
    assert "since" not in first_join["data"]
    sync = next(f for f in _envelopes(first_received) if f["event"]["type"] == "sync")
    assert isinstance(sync.get("offset"), int) and isinstance(sync.get("epoch"), str)
    last_seen = [f for f in _envelopes(first_received) if isinstance(f.get("offset"), int)][-1]

    # The connection that worked after the outage: the re-join carries the last position seen...
    sent, received = next((s, r) for s, r in later if _envelopes(r))
    join = next(frame for frame in sent if frame["type"] == "join")
    assert join["data"]["subscriptionId"] == first_join["data"]["subscriptionId"]
    assert join["data"]["since"] == {"offset": last_seen["offset"], "epoch": last_seen["epoch"]}
    # ...and the answer is a resume with exactly the three missed changes, no sync at all (the
    # page's client asks for the compact form, so they come inside the resume frame).
    frames = _envelopes(received)
    assert frames[0]["event"]["type"] == "resume", frames[0]
    data = frames[0]["event"]["data"]
    assert (data["since"], data["missed"]) == (last_seen["offset"], 3)
    assert [entry[1] for entry in data["replay"]] == ["create", "update", "delete"]
    assert all(f["event"]["type"] != "sync" for f in frames)


def test_the_browser_going_offline_shows_offline_and_catches_up_when_back(
    todo_app: SurgeProcess,
    new_page: NewPage,  # noqa: F811
) -> None:
    page = new_page(todo_app.url + "/")
    expect(page.get_by_role("main")).to_have_attribute("data-subscribed", "true")
    banner = page.get_by_test_id("connection-banner")
    create_todo(todo_app, "before")
    expect(page.get_by_test_id("todo-description")).to_have_text(["before"])

    page.context.set_offline(True)  # the browser's network goes (navigator.onLine, 'offline')
    expect(banner).to_have_attribute("data-state", "offline")
    expect(banner).to_contain_text("You are offline")
    create_todo(todo_app, "while the browser was offline")  # the server is up: someone else
    page.context.set_offline(False)  # 'online': the client retries at once, not at its backoff
    expect(page.get_by_test_id("todo-description")).to_have_text(
        ["before", "while the browser was offline"]
    )
    expect(banner).to_be_hidden()
