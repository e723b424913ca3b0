"""The chat example's page (examples/chat/public) in real headless Chromium: who is online.

Pages are separate browser contexts (separate users or tabs) on one `surge start`; the online
list comes from the stream's presence events alone. Screenshots end up in
test-artifacts/test_chat_browser/.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

# Without playwright the `browser` fixture skips (fails under CI=true) and says why.
with contextlib.suppress(ImportError):
    from playwright.sync_api import Page, expect

from e2e.browser import browser, new_page  # noqa: F401  (pytest fixtures)
from e2e.surge_process import SurgeProcess

CHAT = Path(__file__).resolve().parents[2] / "examples" / "chat"

NewPage = Callable[..., "Page"]


@pytest.fixture
def chat_app(surge_server: Callable[..., SurgeProcess], tmp_path: Path) -> SurgeProcess:
    project = tmp_path / "chat"
    shutil.copytree(CHAT, project, ignore=shutil.ignore_patterns(".surge", "__pycache__"))
    return surge_server(project)


def open_chat(new_page: NewPage, server: SurgeProcess, token: str) -> Page:  # noqa: F811
    page = new_page(f"{server.url}/#{token}")
    expect(page.get_by_role("status")).to_have_text("live")
    return page


def online(page: Page) -> list[str]:
    return page.get_by_role("list", name="online").get_by_role("listitem").all_inner_texts()


def expect_online(page: Page, *names: str) -> None:
    expect(page.get_by_role("list", name="online").get_by_role("listitem")).to_have_text(
        list(names)
    )


def test_the_page_shows_who_is_online_and_a_second_tab_changes_nothing(
    chat_app: SurgeProcess,
    new_page: NewPage,  # noqa: F811
) -> None:
    alice = open_chat(new_page, chat_app, "alice-token")
    expect_online(alice, "alice (pro)")

    bob = open_chat(new_page, chat_app, "bob-token")
    expect_online(bob, "alice (pro)", "bob (free)")
    expect_online(alice, "alice (pro)", "bob (free)")

    bob_again = open_chat(new_page, chat_app, "bob-token")
    expect_online(bob_again, "alice (pro)", "bob (free)")
    bob.close()  # one of bob's tabs: he is still online
    response = httpx2.get(f"{chat_app.url}/chat/project-b/online", timeout=5)
    assert [m["id"] for m in response.json()] == ["alice", "bob"]
    expect_online(alice, "alice (pro)", "bob (free)")

    bob_again.close()  # the last one
    expect_online(alice, "alice (pro)")
    assert online(alice) == ["alice (pro)"]


def test_messages_still_flow_on_the_page(
    chat_app: SurgeProcess,
    new_page: NewPage,  # noqa: F811
) -> None:
    alice = open_chat(new_page, chat_app, "alice-token")
    bob = open_chat(new_page, chat_app, "bob-token")
    bob.get_by_placeholder("Say something").fill("hi alice")
    bob.get_by_role("button", name="Send").click()
    expect(alice.get_by_role("list", name="messages").get_by_role("listitem")).to_have_text(
        ["bobhi alice"]
    )
