"""The Workbench's background-work views in a real Chromium against a real ``surge dev``.

Emit from the Messages view and watch the message reach done; a failing step's message shows as
a dead letter and its Replay button brings it to done; a trace id opens the Logs view filtered by
it; the Flows view shows the topics. Screenshots go to ``test-artifacts/workbench/``.
"""

from __future__ import annotations

import contextlib
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.browser import ARTIFACTS_DIR, browser, new_page
from e2e.surge_process import SurgeProcess

with contextlib.suppress(ImportError):  # without it the `browser` fixture skips (fails in CI)
    from playwright.sync_api import Locator, Page, expect

__all__ = ["browser", "new_page"]  # pytest fixtures, re-exported for this module

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

SHOTS = ARTIFACTS_DIR / "workbench"
NewPage = Callable[..., "Page"]
StartServer = Callable[..., SurgeProcess]

STEPS = {
    "work_step.py": """
        config = {"type": "event", "name": "Work", "subscribes": ["work"], "emits": []}

        async def handler(input, ctx):
            ctx.logger.info("working", {"n": input["n"]})
    """,
    # Fails the first time a trace comes by (a flag in ctx.state), succeeds when replayed.
    "flaky_step.py": """
        config = {
            "type": "event", "name": "Flaky", "subscribes": ["flaky"], "emits": [],
            "infrastructure": {"queue": {"maxRetries": 0}},
        }

        async def handler(input, ctx):
            if await ctx.state.get("flaky", ctx.trace_id) is None:
                await ctx.state.set("flaky", ctx.trace_id, "failed once")
                raise RuntimeError("first attempt fails")
            ctx.logger.info("flaky succeeded")
    """,
}


@pytest.fixture
def events_dev(tmp_path: Path, surge_server: StartServer) -> SurgeProcess:
    project = tmp_path / "app"
    (project / "steps").mkdir(parents=True)
    for name, source in STEPS.items():
        (project / "steps" / name).write_text(textwrap.dedent(source))
    return surge_server(project, command="dev")


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def emit_from_the_form(page: Page, topic: str, data: str) -> str:
    """Emit with the form; returns the trace id of this emit's answer (not the previous one's)."""
    result = page.get_by_test_id("emit-result")
    previous = result.get_attribute("data-trace-id")
    page.get_by_test_id("emit-topic").select_option(topic)
    page.get_by_test_id("emit-data").fill(data)
    page.get_by_test_id("emit-send").click()
    expect(result).to_have_attribute("data-trace-id", re.compile(r"^[0-9a-f]{32}$"))
    if previous is not None:
        expect(result).not_to_have_attribute("data-trace-id", previous)
    trace_id = result.get_attribute("data-trace-id")
    assert trace_id
    return trace_id


def message_row(page: Page, step: str, trace_id: str) -> Locator:
    """The messages view's row of ``step``'s copy of the message of ``trace_id``."""
    return page.locator(f'[data-testid="message"][data-step="{step}"][data-trace-id="{trace_id}"]')


def test_messages_view_shows_done_then_a_dead_letter_replayed_to_done(
    new_page: NewPage, events_dev: SurgeProcess
) -> None:
    page = new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{events_dev.url}/__surge/workbench/#messages")
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")
    expect(page.get_by_test_id("emit-topic").locator("option")).to_have_count(2)

    # A message that succeeds: queued -> running -> done, shown live.
    work_trace = emit_from_the_form(page, "work", '{"n": 7}')
    expect(page.get_by_test_id("emit-result")).to_contain_text("Emitted to Work")
    work = message_row(page, "Work", work_trace)
    expect(work).to_have_attribute("data-status", "done")
    expect(page.get_by_test_id("queue-Work")).to_be_visible()

    # A message that fails: dead at once (maxRetries 0), listed with its error.
    flaky_trace = emit_from_the_form(page, "flaky", '{"id": "f1"}')
    flaky = message_row(page, "Flaky", flaky_trace)
    expect(flaky).to_have_attribute("data-status", "dead")
    letter = page.get_by_test_id("dead-letter")
    expect(letter).to_have_count(1)
    expect(letter.get_by_test_id("dead-error")).to_have_text("RuntimeError: first attempt fails")
    shot(page, "messages-dead-letter")

    # Replay: the handler succeeds the second time; the dead letter is gone.
    letter.get_by_test_id("replay").click()
    expect(flaky).to_have_attribute("data-status", "done")
    expect(page.get_by_test_id("dead-letter")).to_have_count(0)
    expect(page.get_by_test_id("dead-letters")).to_contain_text("No dead letters.")
    shot(page, "messages-replayed")

    # A trace id opens the Logs view filtered by it.
    work.get_by_test_id("trace-link").click()
    expect(page.get_by_test_id("view-logs")).to_be_visible()
    expect(page.get_by_test_id("logs-trace")).to_have_value(work_trace)
    lines = page.get_by_test_id("log-line")
    expect(lines).to_have_count(1)
    expect(lines).to_have_attribute("data-trace-id", work_trace)
    expect(lines.get_by_test_id("log-message")).to_have_text("working")
    page.get_by_test_id("logs-clear").click()
    expect(page.get_by_test_id("log-line")).to_have_count(2)  # "working", "flaky succeeded"
    shot(page, "logs")

    # The Flows view: each topic with its subscriber.
    page.get_by_test_id("tab-flows").click()
    topic = page.locator('[data-testid="flow-topic"][data-topic="flaky"]')
    expect(topic).to_contain_text("Flaky")
    expect(page.get_by_test_id("flow-topic")).to_have_count(2)
    shot(page, "flows")
