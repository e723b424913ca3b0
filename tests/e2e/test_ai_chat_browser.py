"""The ai-chat example's web app (examples/ai-chat/web) in headless Chromium, against `surge start`.

The reply grows in the page word by word, each word reaching it as a delta (a ``patch`` frame,
protocol.md section 4), then is complete; and after a kill -9 in the middle of a reply and a
restart, the page (which reconnects by itself) shows the reply regenerated and done.
Screenshots and console logs: test-artifacts/test_ai_chat_browser/.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from ai_chat_example import AI_CHAT, load

# Without playwright the `browser` fixture skips (fails under CI=true) and says why.
with contextlib.suppress(ImportError):
    from playwright.sync_api import Locator, Page, expect

from conftest import require_component
from e2e.browser import browser, new_page  # noqa: F401  (pytest fixtures)
from e2e.surge_process import SurgeProcess

(chat_model,) = load("chat_model")

BUILT_APP = AI_CHAT / "web" / "dist" / "index.html"
# Generous: the reply takes seconds and both cores may be busy with other suites.
REPLY_DEADLINE_MS = 30_000
RECOVERY_DEADLINE_MS = 45_000

NewPage = Callable[..., "Page"]
StartChat = Callable[[float], SurgeProcess]

# Records every distinct length the reply's text takes in the page, from the DOM itself, so
# no intermediate state is missed however the test's own polling is scheduled.
RECORD_REPLY_LENGTHS = """() => {
  window.__replyLengths = []
  const record = () => {
    const el = document.querySelector('[data-role="assistant"] [data-testid="message-content"]')
    const lengths = window.__replyLengths
    if (el && lengths[lengths.length - 1] !== el.textContent.length) {
      lengths.push(el.textContent.length)
    }
  }
  new MutationObserver(record).observe(document.body, {
    subtree: true, childList: true, characterData: true,
  })
}"""


def fake_answer(prompt: str) -> str:
    """The example's fake model's whole answer to ``prompt``."""
    answer: str = chat_model.fake_answer(prompt)
    return answer


@pytest.fixture
def start_chat(
    surge_server: Callable[..., SurgeProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> StartChat:
    """``start_chat(word_delay)``: `surge start` on a private copy of examples/ai-chat."""
    require_component(
        BUILT_APP.is_file(),
        "the ai-chat web app is not built: run `make web` (npm ci + vite build in "
        "examples/ai-chat/web)",
    )

    def start(word_delay: float) -> SurgeProcess:
        for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
            monkeypatch.delenv(name, raising=False)  # the fake model, never the network
        monkeypatch.setenv("AI_CHAT_WORD_DELAY", str(word_delay))  # inherited by the server
        project = tmp_path / "ai-chat"
        shutil.copytree(
            AI_CHAT,
            project,
            ignore=shutil.ignore_patterns(".surge", "__pycache__", "node_modules", "src"),
        )
        return surge_server(project)

    return start


def open_chat(
    new_page: NewPage,  # noqa: F811
    server: SurgeProcess,
    frames: list[str] | None = None,
) -> Page:
    """A page on the app once its subscription has synced; ``frames`` gets every WebSocket
    frame the page receives."""
    page = new_page()
    if frames is not None:
        page.on(
            "websocket",
            lambda ws: ws.on(
                "framereceived",
                lambda payload: frames.append(payload if isinstance(payload, str) else ""),
            ),
        )
    page.goto(server.url + "/")
    expect(page.get_by_role("heading", name="AI chat")).to_be_visible()
    expect(page.get_by_role("main")).to_have_attribute("data-subscribed", "true")
    page.evaluate("window.__notReloaded = true")
    return page


def ask(page: Page, text: str) -> None:
    page.get_by_test_id("chat-input").fill(text)
    page.get_by_test_id("chat-input").press("Enter")
    expect(page.get_by_test_id("chat-input")).to_have_value("")


def reply(page: Page) -> Locator:
    return page.locator('[data-testid="message"][data-role="assistant"]')


def wait_for_partial_reply(page: Page, min_chars: int) -> str:
    """Wait until the reply shows at least ``min_chars`` characters and is still streaming."""
    page.wait_for_function(
        """(min) => {
          const el = document.querySelector('[data-role="assistant"][data-status="streaming"]')
          return el !== null && el.querySelector('.content').textContent.length >= min
        }""",
        arg=min_chars,
        timeout=REPLY_DEADLINE_MS,
    )
    text: str = reply(page).get_by_test_id("message-content").inner_text()
    return text


def test_surge_serves_the_built_app_next_to_the_chat_api(start_chat: StartChat) -> None:
    server = start_chat(0.0)
    page = httpx2.get(f"{server.url}/", timeout=5)
    assert page.status_code == 200
    assert '<div id="root">' in page.text
    refused = httpx2.post(f"{server.url}/chat/default", json={"text": ""}, timeout=5)
    assert refused.status_code == 400


def test_the_reply_grows_in_the_page_then_is_complete(
    start_chat: StartChat,
    new_page: NewPage,  # noqa: F811
) -> None:
    server = start_chat(0.15)
    frames: list[str] = []
    page = open_chat(new_page, server, frames)
    expect(page.get_by_test_id("empty")).to_be_visible()
    expect(page.get_by_test_id("typing-indicator")).to_be_hidden()
    page.evaluate(RECORD_REPLY_LENGTHS)

    ask(page, "What is a stream?")
    answer = fake_answer("What is a stream?")

    user = page.locator('[data-testid="message"][data-role="user"]')
    expect(user.get_by_test_id("message-content")).to_have_text("What is a stream?")
    # Live, while it is being written: partial text, the typing indicator on.
    partial = wait_for_partial_reply(page, 10)
    assert answer.startswith(partial.rstrip("▍").strip()), partial
    expect(page.get_by_test_id("typing-indicator")).to_be_visible()
    expect(page.get_by_test_id("typing-indicator")).to_have_text("Assistant is typing…")

    expect(reply(page)).to_have_attribute("data-status", "done", timeout=REPLY_DEADLINE_MS)
    expect(reply(page).get_by_test_id("message-content")).to_have_text(answer)
    expect(page.get_by_test_id("typing-indicator")).to_be_hidden()
    expect(page.get_by_test_id("message")).to_have_count(2)

    lengths: list[int] = page.evaluate("window.__replyLengths")
    intermediate = [n for n in lengths if 0 < n < len(answer)]
    assert len(intermediate) >= 2, lengths
    assert intermediate == sorted(set(intermediate)), lengths  # it only ever grew
    assert lengths[-1] == len(answer)
    assert page.evaluate("window.__notReloaded") is True
    # Every word reached the page as a delta: the reply was created whole, then only patched.
    reply_id = reply(page).get_attribute("data-message-id") or ""
    kinds = [kind for kind, id in map(frame_kind, frames) if id == reply_id and reply_id]
    assert kinds[0] == "create" and len(kinds) >= 3, kinds
    assert set(kinds[1:]) == {"patch"}, kinds


def frame_kind(text: str) -> tuple[str, str | None]:
    """A frame's change kind and item id: the envelope's, or a compact patch's
    (``{"patch": [stream, group, id, offset, epoch, ops]}``, docs/protocol.md section 4)."""
    frame = json.loads(text)
    if isinstance(frame.get("patch"), list):
        return "patch", frame["patch"][2]
    return str(frame.get("event", {}).get("type")), frame.get("id")


@pytest.mark.slow
def test_kill_9_during_a_reply_then_restart_regenerates_it_and_it_completes(
    start_chat: StartChat,
    new_page: NewPage,  # noqa: F811
) -> None:
    # Slow words: the reply takes ~10 s, so the kill lands in the middle of it.
    server = start_chat(0.25)
    page = open_chat(new_page, server)
    ask(page, "Will you survive a crash?")
    answer = fake_answer("Will you survive a crash?")
    partial = wait_for_partial_reply(page, 15)
    expect(reply(page)).to_have_attribute("data-attempt", "1")

    server.kill()  # SIGKILL in the middle of the handler: nothing shuts down cleanly
    assert len(partial.strip()) < len(answer)
    server.start(timeout=30)  # same directory, same port; the page reconnects by itself

    # The message is delivered again, the same item is regenerated from scratch and completes.
    expect(reply(page)).to_have_attribute("data-attempt", "2", timeout=RECOVERY_DEADLINE_MS)
    expect(reply(page)).to_have_attribute("data-status", "done", timeout=RECOVERY_DEADLINE_MS)
    expect(reply(page).get_by_test_id("message-content")).to_have_text(answer)
    expect(page.get_by_test_id("message")).to_have_count(2)  # still ONE reply
    expect(page.get_by_test_id("typing-indicator")).to_be_hidden()
    assert page.evaluate("window.__notReloaded") is True

    # And the recovered page is live: a new question gets its reply.
    ask(page, "And now?")
    expect(page.get_by_test_id("message")).to_have_count(4, timeout=REPLY_DEADLINE_MS)
    expect(reply(page).last).to_have_attribute("data-status", "done", timeout=REPLY_DEADLINE_MS)
    expect(reply(page).last.get_by_test_id("message-content")).to_have_text(fake_answer("And now?"))
