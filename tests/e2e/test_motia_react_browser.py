"""Motia's own React hooks (`@motiadev/stream-client-react`, unchanged) in real Chromium against
`surge start`: the wire contract with the browser client, now that Surge's own web apps use
Surge's client. The page (tests/compat/motia-react, built by `make web`) uses
`MotiaStreamProvider`, `useStreamGroup`, `useStreamItem` and `useStreamEventHandler` as a Motia
front end does; everything it shows comes from the stream alone.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

with contextlib.suppress(ImportError):
    from playwright.sync_api import Page, expect

from conftest import require_component
from e2e.browser import browser, new_page  # noqa: F401  (pytest fixtures)
from e2e.surge_process import REPO, SurgeProcess, copy_todo_project

MOTIA_PAGE = REPO / "tests" / "compat" / "motia-react" / "dist"

NewPage = Callable[..., "Page"]


@pytest.fixture
def server(surge_server: Callable[..., SurgeProcess], tmp_path: Path) -> SurgeProcess:
    """`surge start` on a copy of examples/todo whose static files include the page at /motia/."""
    require_component(
        (MOTIA_PAGE / "index.html").is_file(),
        "the Motia React page is not built: run `make web` (npm ci + vite build in "
        "tests/compat/motia-react)",
    )
    project = copy_todo_project(tmp_path / "todo")
    dist = project / "web" / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    if not (dist / "index.html").is_file():
        (dist / "index.html").write_text("<!doctype html><title>todo</title>\n")
    shutil.copytree(MOTIA_PAGE, dist / "motia")
    return surge_server(project)


def post(server: SurgeProcess, method: str, path: str, body: object = None) -> dict[str, Any]:
    response = httpx2.request(method, server.url + path, json=body, timeout=10)
    assert response.status_code // 100 == 2, (method, path, response.text)
    result: dict[str, Any] = response.json()
    return result


def test_motias_react_hooks_follow_a_group_an_item_and_events(
    server: SurgeProcess,
    new_page: NewPage,  # noqa: F811
) -> None:
    first = post(server, "POST", "/todo", {"description": "buy milk"})
    page = new_page(f"{server.url}/motia/?ws={server.ws_url}&item={first['id']}")
    todos = page.locator("#todos li")
    expect(page.locator("#todos")).to_have_attribute("data-subscribed", "yes")
    expect(todos).to_have_text(["buy milk"])  # the group's sync
    expect(page.locator("#item")).to_have_text("buy milk")  # the item's sync

    second = post(server, "POST", "/todo", {"description": "walk the dog"})
    expect(todos).to_have_text(["buy milk", "walk the dog"])  # create, in creation order

    post(server, "PUT", f"/todo/{second['id']}", {})
    expect(page.locator(f'#todos li[data-id="{second["id"]}"]')).to_have_attribute(
        "data-done", "true"
    )  # update

    post(server, "POST", "/todo/typing", {"userId": "ann", "isTyping": True})
    expect(page.locator("#typing")).to_have_text("ann")  # an ephemeral event via onEvent

    post(server, "DELETE", f"/todo/{first['id']}")
    expect(todos).to_have_text(["walk the dog"])  # delete, group
    expect(page.locator("#item")).to_have_text("none")  # delete, item
