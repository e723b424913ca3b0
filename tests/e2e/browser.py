"""Playwright helpers: Debian's Chromium, launched once per test module, a fresh page per use.

Use them from a test module (or a conftest) by importing the fixtures::

    from e2e.browser import browser, new_page  # noqa: F401  (pytest fixtures)

    def test_page_loads(new_page):
        page = new_page("http://127.0.0.1:3000/")
        expect(page.get_by_role("heading")).to_have_text("Inbox")

- ``browser`` (module scope): one headless Chromium (``/usr/bin/chromium``, or ``$CHROMIUM``).
  Skipped when Playwright or Chromium is missing, a failure under ``CI=true``
  (``require_component``). Never ``playwright install``: the browser comes from apt
  (``scripts/install-chromium.sh``).
- ``new_page`` (function scope): ``new_page(url=None)`` opens a page in its own browser context
  (its own storage and cookies, like a separate user), optionally navigated to ``url``. When the
  test ends every page it opened is saved as ``test-artifacts/<module>/<test>-<n>.png`` with its
  console output next to it (``.log``), pass or fail, then closed.
- Playwright's ``expect`` waits up to ``EXPECT_TIMEOUT_MS`` by default here: assert on locators
  (``to_have_count``, ``to_be_visible``...), never sleep.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import require_component

try:
    from playwright.sync_api import Browser, ConsoleMessage, Error, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the fixtures skip (or fail under CI) instead
    HAS_PLAYWRIGHT = False
else:
    HAS_PLAYWRIGHT = True

__all__ = [
    "ARTIFACTS_DIR",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "EXPECT_TIMEOUT_MS",
    "browser",
    "chromium_available",
    "new_page",
]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = REPO / "test-artifacts"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# Headless and quiet: no GPU, no QUIC, no background traffic to Google, no first-run UI.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXPECT_TIMEOUT_MS = 10_000
VIEWPORT_WIDTH, VIEWPORT_HEIGHT = 900, 700


def chromium_available() -> bool:
    """Whether Playwright is importable and the Chromium binary exists."""
    return HAS_PLAYWRIGHT and CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the whole test module."""
    require_component(
        HAS_PLAYWRIGHT, "playwright (python) is not installed: pip install -e '.[dev]'"
    )
    require_component(
        chromium_available(),
        f"Chromium not found at {CHROMIUM}: run scripts/install-chromium.sh (or `make test`)",
    )
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _artifact_stem(request: pytest.FixtureRequest) -> Path:
    module = Path(str(request.node.path)).stem
    test = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).strip("_")
    return ARTIFACTS_DIR / module / test


@pytest.fixture
def new_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[..., Page]]:
    """Factory: ``new_page(url=None)`` -> a page in a fresh context; saved and closed at teardown."""
    opened: list[tuple[Page, list[str]]] = []

    def open_page(url: str | None = None) -> Page:
        context = browser.new_context(viewport={"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT})
        page = context.new_page()
        log: list[str] = []

        def on_console(message: ConsoleMessage) -> None:
            log.append(f"console.{message.type}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: log.append(f"page error: {exc}"))
        opened.append((page, log))
        if url is not None:
            page.goto(url)
        return page

    yield open_page

    stem = _artifact_stem(request)
    stem.parent.mkdir(parents=True, exist_ok=True)
    for number, (page, log) in enumerate(opened, start=1):
        try:
            page.screenshot(path=f"{stem}-{number}.png", full_page=True)
        except Error as exc:  # a crashed or closed page must not hide the test's own result
            log.append(f"screenshot failed: {exc}")
        Path(f"{stem}-{number}.log").write_text("\n".join(log) + "\n", encoding="utf-8")
        page.context.close()
