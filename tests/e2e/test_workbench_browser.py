"""The Workbench in a real Chromium against a real ``surge dev``.

Call ``POST /todo`` from the form and watch the response change live when the item is changed
through the API; watch a group's items and ephemeral events live in the streams view (also across
a server restart); and connect with stream auth on, when ``authenticate`` refuses token-less
connections. Screenshots of the main views go to ``test-artifacts/workbench/``.
"""

from __future__ import annotations

import contextlib
import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from e2e.browser import ARTIFACTS_DIR, browser, new_page
from e2e.surge_process import SurgeProcess, copy_todo_project

with contextlib.suppress(ImportError):  # without it the `browser` fixture skips (fails in CI)
    from playwright.sync_api import Page, expect

__all__ = ["browser", "new_page"]  # pytest fixtures, re-exported for this module

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

SHOTS = ARTIFACTS_DIR / "workbench"
WORKBENCH = "/__surge/workbench/"
NewPage = Callable[..., "Page"]
StartServer = Callable[..., SurgeProcess]


def open_workbench(new_page: NewPage, server: SurgeProcess, view: str = "") -> Page:
    """A Workbench page on ``server`` with its stream connected."""
    page = new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{server.url}{WORKBENCH}{'#' + view if view else ''}")
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")
    return page


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def endpoint(page: Page, key: str) -> None:
    page.locator(f'[data-testid="endpoint"][data-key="{key}"]').click()


@pytest.fixture
def todo_dev(tmp_path: Path, surge_server: StartServer) -> SurgeProcess:
    return surge_server(copy_todo_project(tmp_path / "todo"), command="dev")


def test_guide_url_opens_the_workbench_listing_the_api_steps(
    new_page: NewPage, todo_dev: SurgeProcess
) -> None:
    page = new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{todo_dev.url}/endpoints")
    assert page.url == f"{todo_dev.url}{WORKBENCH}"
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")
    expect(page.get_by_test_id("endpoint")).to_have_count(5)
    expect(page.get_by_test_id("endpoint-list")).to_contain_text("PUT/todo/:id")

    endpoint(page, "POST /todo")
    # The body is prefilled from the step's body schema.
    skeleton = json.loads(page.get_by_test_id("request-body").input_value())
    assert skeleton == {"description": "", "dueDate": None}
    page.get_by_test_id("schemas").locator("summary").click()
    expect(page.get_by_test_id("schemas")).to_contain_text("Response 200")
    expect(page.get_by_test_id("schemas")).to_contain_text('"completedAt"')
    shot(page, "endpoints-form")


def test_post_from_the_form_then_an_api_change_updates_the_response_live(
    new_page: NewPage, todo_dev: SurgeProcess
) -> None:
    page = open_workbench(new_page, todo_dev)
    endpoint(page, "POST /todo")
    page.get_by_test_id("request-body").fill('{"description": "buy milk"}')
    page.get_by_test_id("send-request").click()

    expect(page.get_by_test_id("response-status")).to_have_text("200")
    expect(page.get_by_test_id("response-headers")).to_contain_text("x-surge-stream-item")
    expect(page.get_by_test_id("live-item")).to_be_visible()
    expect(page.get_by_test_id("live-state")).to_have_text("live")
    todo = json.loads(page.get_by_test_id("response-body").inner_text())
    assert todo["description"] == "buy milk"
    assert todo["completedAt"] is None

    # Someone else completes it through the API: the response view follows the item.
    completed = httpx2.put(f"{todo_dev.url}/todo/{todo['id']}", json={}, timeout=5)
    assert completed.status_code == 200
    expect(page.get_by_test_id("live-count")).to_have_text("1 change since the response")
    expect(page.get_by_test_id("live-state")).to_contain_text("updated at")
    live = json.loads(page.get_by_test_id("response-body").inner_text())
    assert live == completed.json()
    assert live["completedAt"] is not None
    shot(page, "endpoints-live")

    # Path parameters from the form: un-complete it with PUT /todo/:id.
    endpoint(page, "PUT /todo/:id")
    page.get_by_test_id("path-param-id").fill(todo["id"])
    page.get_by_test_id("request-body").fill('{"completed": false}')
    page.get_by_test_id("send-request").click()
    expect(page.get_by_test_id("response-status")).to_have_text("200")
    expect(page.get_by_test_id("live-state")).to_have_text("live")
    assert json.loads(page.get_by_test_id("response-body").inner_text())["completedAt"] is None

    # Deleting it shows up live too; a response that is not an item is not followed.
    assert httpx2.delete(f"{todo_dev.url}/todo/{todo['id']}", timeout=5).status_code == 200
    expect(page.get_by_test_id("live-item")).to_have_attribute("data-state", "deleted")
    endpoint(page, "GET /todo")
    page.get_by_test_id("send-request").click()
    expect(page.get_by_test_id("response-status")).to_have_text("200")
    expect(page.get_by_test_id("response-body")).to_have_text("[]")
    expect(page.get_by_test_id("live-item")).to_be_hidden()


def test_streams_view_shows_items_and_ephemeral_events_live_and_survives_a_restart(
    new_page: NewPage, todo_dev: SurgeProcess
) -> None:
    page = open_workbench(new_page, todo_dev, "streams")
    expect(page.get_by_test_id("stream-todo")).to_contain_text("no groups with items yet")

    first = httpx2.post(f"{todo_dev.url}/todo", json={"description": "first"}, timeout=5).json()
    # The new group shows up by itself (the list refreshes while the view is open).
    page.get_by_test_id("group-todo-inbox").click()
    expect(page.get_by_test_id("group-state")).to_have_text("live")
    expect(page.get_by_test_id("stream-item")).to_have_count(1)

    second = httpx2.post(f"{todo_dev.url}/todo", json={"description": "second"}, timeout=5).json()
    items = page.get_by_test_id("stream-item")
    expect(items).to_have_count(2)
    expect(page.locator(f'[data-testid="stream-item"][data-id="{second["id"]}"]')).to_contain_text(
        '"description": "second"'
    )
    typing = httpx2.post(
        f"{todo_dev.url}/todo/typing", json={"userId": "ann", "isTyping": True}, timeout=5
    )
    assert typing.status_code == 202
    event = page.locator('[data-testid="event-entry"][data-kind="event: typing"]')
    expect(event).to_have_count(1)
    expect(event).to_contain_text('"userId": "ann"')
    httpx2.put(f"{todo_dev.url}/todo/{first['id']}", json={}, timeout=5)
    expect(page.locator('[data-testid="event-entry"][data-kind="update"]')).to_have_count(1)
    expect(page.locator(f'[data-id="{first["id"]}"]')).not_to_contain_text('"completedAt": null')
    shot(page, "streams")

    # The server restarts (new process, new workbench key): the page reconnects by itself.
    todo_dev.stop()
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "closed")
    todo_dev.start()
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")
    expect(page.get_by_test_id("group-state")).to_have_text("live")
    third = httpx2.post(f"{todo_dev.url}/todo", json={"description": "third"}, timeout=5).json()
    expect(items).to_have_count(3)
    expect(page.locator(f'[data-id="{third["id"]}"]')).to_be_visible()


AUTH_CONFIG = '''
"""Stream auth that refuses every connection without a valid token."""

from surge import AuthRequest, Config, StreamAuth, extract_auth_token

TOKENS = {"tok-ann": {"userId": "ann", "projects": ["p-ann"]}}


async def authenticate(request: AuthRequest) -> dict[str, object]:
    token = extract_auth_token(request)
    if token is None or token not in TOKENS:
        raise PermissionError("a valid token is required")
    return TOKENS[token]


config = Config(stream_auth=StreamAuth(authenticate=authenticate))
'''

AUTH_STREAM = """
from typing import Any

from pydantic import BaseModel

from surge import StreamConfig, Subscription


class Note(BaseModel):
    id: str
    text: str


def can_access(subscription: Subscription, auth_context: Any) -> bool:
    return auth_context is not None and subscription.groupId in auth_context["projects"]


config = StreamConfig(name="note", schema=Note, can_access=can_access)
"""

AUTH_STEP = """
import secrets

from pydantic import BaseModel

from steps.note_stream import Note
from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class NewNote(BaseModel):
    text: str


config = ApiRouteConfig(
    name="PostNote", method="POST", path="/notes/:project", body_schema=NewNote,
    response_schema={200: Note},
)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    note_id = f"note-{secrets.token_hex(4)}"
    note = await ctx.streams.note.set(
        req.path_params["project"], note_id, Note(id=note_id, text=req.body.text)
    )
    return ApiResponse(status=200, body=note)
"""


def auth_project(root: Path) -> Path:
    (root / "steps").mkdir(parents=True)
    (root / "surge.config.py").write_text(textwrap.dedent(AUTH_CONFIG))
    (root / "steps" / "__init__.py").write_text("")
    (root / "steps" / "note_stream.py").write_text(textwrap.dedent(AUTH_STREAM))
    (root / "steps" / "post_note_step.py").write_text(textwrap.dedent(AUTH_STEP))
    return root


def test_workbench_connects_when_authenticate_refuses_tokenless_connections(
    new_page: NewPage, tmp_path: Path, surge_server: StartServer
) -> None:
    server = surge_server(auth_project(tmp_path / "notes"), command="dev")
    session: dict[str, Any] = httpx2.get(f"{server.url}/__surge/api/session", timeout=5).json()
    assert session["streamAuth"] is True

    page = open_workbench(new_page, server)
    # Calls a step and follows its item, in a group no anonymous client may join.
    endpoint(page, "POST /notes/:project")
    page.get_by_test_id("path-param-project").fill("p-bob")
    page.get_by_test_id("request-body").fill('{"text": "hello"}')
    page.get_by_test_id("send-request").click()
    expect(page.get_by_test_id("live-state")).to_have_text("live")
    note = json.loads(page.get_by_test_id("response-body").inner_text())

    # Watches that group in the streams view, typed in by hand.
    page.get_by_test_id("tab-streams").click()
    page.get_by_test_id("watch-input-note").fill("p-bob")
    page.get_by_test_id("watch-note").click()
    expect(page.get_by_test_id("group-state")).to_have_text("live")
    expect(page.get_by_test_id("stream-item")).to_have_count(1)
    httpx2.post(f"{server.url}/notes/p-bob", json={"text": "again"}, timeout=5)
    expect(page.get_by_test_id("stream-item")).to_have_count(2)
    expect(page.locator(f'[data-id="{note["id"]}"]')).to_contain_text('"text": "hello"')
    shot(page, "streams-auth")

    # The page's own connection is the only one let through: a token-less one is still refused.
    upgrade = httpx2.get(
        f"{server.url}/",
        headers={
            "connection": "upgrade",
            "upgrade": "websocket",
            "sec-websocket-version": "13",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
        timeout=5,
    )
    assert upgrade.status_code == 401
    assert session["workbenchKey"] not in server.log()
