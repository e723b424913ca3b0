"""Shared test helpers for every suite."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import NoReturn

import pytest


def require_component(ok: object, reason: str) -> None:
    """Skip the test when a needed component (node, npm, a service) is missing.

    Under ``CI=true`` a missing component is a failure instead: CI must run everything.
    """
    if ok:
        return
    _missing(reason)


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (required under CI=true)", pytrace=False)
    pytest.skip(reason)


# The private redis-server fixture, for every suite that restarts Redis under test.
pytest_plugins = ["redis_server"]


# --- issue 9 item 3: the whole-suite token scan (tests/abuse/logscan.py) ---------------------
# Every log record emitted in this process and every server log file (tests/e2e/surge_process.py)
# is scanned for the test tokens; a leak fails the session, with the offending line printed.
from abuse import logscan  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    logscan.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    logscan.uninstall()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The scan's own test runs last, after every server of the session has written its log.
    items.sort(key=lambda item: item.path.name == "test_zz_log_scan.py")


@pytest.fixture(autouse=True)
def _fresh_client_mistake_budget() -> None:
    """Client mistakes are logged at most 60 lines a minute per process (``CLIENT_MISTAKES``):
    in-process servers of earlier tests must not have spent a test's budget."""
    from surge.server.logs import CLIENT_MISTAKES

    CLIENT_MISTAKES.reset()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    finally:
        logscan.SCAN.scan_files()  # the test's servers are stopped: their logs are complete


def pytest_sessionfinish(session: pytest.Session) -> None:
    logscan.SCAN.scan_files(final=True)
    if logscan.SCAN.failing():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    scan = logscan.SCAN
    if scan.leaks or scan.files or scan.records:
        terminalreporter.write_line(scan.report(), red=bool(scan.failing()))
    if scan.failing():
        terminalreporter.write_line("FAILED: a test token reached a log (see above)", red=True)


# --- end of the token scan ------------------------------------------------------------------
