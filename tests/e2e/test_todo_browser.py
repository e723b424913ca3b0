"""The todo example's web app (examples/todo/web) in real headless Chromium, against `surge start`.

Two pages (separate browser contexts, like two users) on one server: every change made in one,
or through the API, shows up in the other from the stream alone, without a reload or a refetch.
Screenshots of every page end up in test-artifacts/test_todo_browser/.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

# Without playwright the `browser` fixture skips (fails under CI=true) and says why.
with contextlib.suppress(ImportError):
    from playwright.sync_api import Locator, Page, Request, expect

from conftest import require_component
from e2e.browser import browser, new_page  # noqa: F401  (pytest fixtures)
from e2e.surge_process import EXAMPLE_TODO, SurgeProcess, copy_todo_project

BUILT_APP = EXAMPLE_TODO / "web" / "dist" / "index.html"

NewPage = Callable[..., "Page"]


@pytest.fixture
def todo_app(surge_server: Callable[..., SurgeProcess], tmp_path: Path) -> SurgeProcess:
    """`surge start` serving a private copy of examples/todo, with its built web app."""
    require_component(
        BUILT_APP.is_file(),
        "the todo web app is not built: run `make web` (npm ci + vite build in examples/todo/web)",
    )
    return surge_server(copy_todo_project(tmp_path / "todo"))


def open_app(new_page: NewPage, server: SurgeProcess) -> Page:  # noqa: F811
    """A page on the app, once its stream subscription has synced (the empty state or a list)."""
    page = new_page(server.url + "/")
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    expect(page.get_by_role("main")).to_have_attribute("data-subscribed", "true")
    # A marker that a reload would wipe: the tests check it is still there at the end.
    page.evaluate("window.__notReloaded = true")
    return page


def items(page: Page) -> Locator:
    """The todo rows of ``page``."""
    return page.get_by_test_id("todo-item")


def descriptions(page: Page) -> Locator:
    """The descriptions of the todo rows of ``page``, in order."""
    return page.get_by_test_id("todo-description")


def assert_not_reloaded(*pages: Page) -> None:
    """Each page is still the document it first loaded."""
    for page in pages:
        assert page.evaluate("window.__notReloaded") is True


def record_api_reads(page: Page) -> list[str]:
    """Every GET the page sends to the todo API from now on (the list must come from the stream)."""
    reads: list[str] = []

    def on_request(request: Request) -> None:
        if request.method == "GET" and "/todo" in request.url:
            reads.append(request.url)

    page.on("request", on_request)
    return reads


def create_todo(server: SurgeProcess, description: str) -> dict[str, str]:
    """POST /todo, as another client would."""
    response = httpx2.post(f"{server.url}/todo", json={"description": description}, timeout=5)
    assert response.status_code == 200, response.text
    todo: dict[str, str] = response.json()
    return todo


def test_surge_serves_the_built_app_next_to_the_api(todo_app: SurgeProcess) -> None:
    page = httpx2.get(f"{todo_app.url}/", timeout=5)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<div id="root">' in page.text
    script = page.text.split('src="', 1)[1].split('"', 1)[0]
    assert httpx2.get(f"{todo_app.url}{script}", timeout=5).status_code == 200
    # API routes win over files, and a missing file is the API's JSON 404.
    assert httpx2.get(f"{todo_app.url}/todo", timeout=5).json() == []
    missing = httpx2.get(f"{todo_app.url}/no-such-file.js", timeout=5)
    assert missing.status_code == 404
    assert missing.json() == {"error": "no route for GET /no-such-file.js"}


def test_todo_added_in_one_page_appears_in_the_other_without_reload(
    todo_app: SurgeProcess,
    new_page: NewPage,  # noqa: F811
) -> None:
    first = open_app(new_page, todo_app)
    second = open_app(new_page, todo_app)
    expect(second.get_by_test_id("empty")).to_be_visible()
    reads = record_api_reads(second)

    first.get_by_test_id("new-todo").fill("buy milk")
    first.get_by_test_id("new-todo").press("Enter")

    for page in (first, second):
        expect(items(page)).to_have_count(1)
        expect(descriptions(page)).to_have_text(["buy milk"])
        expect(page.get_by_test_id("todo-count")).to_have_text("1 of 1 left")
    expect(first.get_by_test_id("new-todo")).to_have_value("")
    assert reads == [], "the list must update from the stream, not by fetching /todo"
    assert_not_reloaded(first, second)


def test_completing_and_deleting_show_up_in_both_pages(
    todo_app: SurgeProcess,
    new_page: NewPage,  # noqa: F811
) -> None:
    first = open_app(new_page, todo_app)
    second = open_app(new_page, todo_app)
    reads = [record_api_reads(first), record_api_reads(second)]
    create_todo(todo_app, "write tests")
    create_todo(todo_app, "ship it")
    for page in (first, second):
        expect(descriptions(page)).to_have_text(["write tests", "ship it"])

    second.get_by_role("checkbox", name="Complete write tests").click()
    for page in (first, second):
        done = items(page).filter(has_text="write tests")
        expect(done).to_have_attribute("data-completed", "true")
        expect(page.get_by_role("checkbox", name="Complete write tests")).to_be_checked()
        expect(page.get_by_test_id("todo-count")).to_have_text("1 of 2 left")

    first.get_by_role("checkbox", name="Complete write tests").click()
    for page in (first, second):
        expect(page.get_by_role("checkbox", name="Complete write tests")).not_to_be_checked()
        expect(page.get_by_test_id("todo-count")).to_have_text("2 of 2 left")

    first.get_by_role("button", name="Delete ship it").click()
    for page in (first, second):
        expect(descriptions(page)).to_have_text(["write tests"])

    second.get_by_role("button", name="Delete write tests").click()
    for page in (first, second):
        expect(items(page)).to_have_count(0)
        expect(page.get_by_test_id("empty")).to_be_visible()
    assert reads == [[], []]
    assert_not_reloaded(first, second)


def test_typing_in_one_page_shows_the_indicator_in_the_other_until_it_stops(
    todo_app: SurgeProcess,
    new_page: NewPage,  # noqa: F811
) -> None:
    typist = open_app(new_page, todo_app)
    watcher = open_app(new_page, todo_app)
    for page in (typist, watcher):
        expect(page.get_by_test_id("typing-indicator")).to_be_hidden()

    typist.get_by_test_id("new-todo").press_sequentially("water the plants", delay=20)
    expect(watcher.get_by_test_id("typing-indicator")).to_be_visible()
    expect(watcher.get_by_test_id("typing-indicator")).to_have_text("someone is typing…")
    # Nobody sees their own typing.
    expect(typist.get_by_test_id("typing-indicator")).to_be_hidden()
    # The typist goes idle: `isTyping: false` after 2 s (or the watcher forgets after 3 s).
    expect(watcher.get_by_test_id("typing-indicator")).to_be_hidden()

    # Typing again and submitting stops the indicator at once, and the todo arrives.
    typist.get_by_test_id("new-todo").fill("")
    typist.get_by_test_id("new-todo").press_sequentially("feed the cat", delay=20)
    expect(watcher.get_by_test_id("typing-indicator")).to_be_visible()
    typist.get_by_test_id("new-todo").press("Enter")
    expect(descriptions(watcher)).to_have_text(["feed the cat"])
    expect(watcher.get_by_test_id("typing-indicator")).to_be_hidden(timeout=1500)
    expect(typist.get_by_test_id("typing-indicator")).to_be_hidden()


def test_pages_recover_by_themselves_after_a_server_restart(
    todo_app: SurgeProcess,
    new_page: NewPage,  # noqa: F811
) -> None:
    first = open_app(new_page, todo_app)
    second = open_app(new_page, todo_app)
    create_todo(todo_app, "survive a crash")
    for page in (first, second):
        expect(descriptions(page)).to_have_text(["survive a crash"])

    todo_app.kill()  # SIGKILL: the sockets drop, nothing shuts down cleanly
    todo_app.start()  # same directory, same port: the stored todo is still there
    create_todo(todo_app, "created after the restart")

    # The clients reconnect 2 s after the close, re-join, and the fresh sync fills the list.
    for page in (first, second):
        expect(descriptions(page)).to_have_text(["survive a crash", "created after the restart"])
        expect(page.get_by_test_id("todo-count")).to_have_text("2 of 2 left")

    # And the recovered subscription is live again: a change made in one page reaches the other.
    second.get_by_role("checkbox", name="Complete created after the restart").click()
    for page in (first, second):
        expect(page.get_by_test_id("todo-count")).to_have_text("1 of 2 left")
    assert_not_reloaded(first, second)
