"""Fixtures of the abuse suite: a real ``surge start`` (or ``surge dev``) per test, measured.

Each attack runs against its own server process on a loopback port, so RSS, CPU time and
descriptors are the attack's alone. The soak run scales the counts and durations up:
``pytest tests/abuse --soak`` (the option exists when this directory is named on the command line)
or ``SURGE_SOAK=1 pytest``; CI runs without it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from e2e.surge_process import REPO, SurgeProcess, copy_todo_project

from .harness import MIB, GoodSubscriber, ServerProbe, http_get_ok

EXAMPLE_CHAT = REPO / "examples" / "chat"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="abuse suite: run the long soak variants (not in CI; also SURGE_SOAK=1)",
    )


@pytest.fixture(scope="session")
def soak(request: pytest.FixtureRequest) -> bool:
    """True for the long soak run."""
    try:
        flag = bool(request.config.getoption("--soak"))
    except ValueError:  # the option is only known when this conftest loads first
        flag = False
    return flag or os.environ.get("SURGE_SOAK") == "1"


@dataclass
class AbuseServer:
    """A running server with its probe and the baseline taken after warm-up."""

    process: SurgeProcess
    probe: ServerProbe
    baseline_rss: int = 0
    baseline_fds: int = 0
    stream: str = "todo"  # a stream and group anyone may join
    group: str = "inbox"

    @property
    def url(self) -> str:
        """HTTP base URL."""
        return self.process.url

    @property
    def ws_url(self) -> str:
        """WebSocket URL."""
        return self.process.ws_url

    @property
    def port(self) -> int:
        """The TCP port."""
        return self.process.port

    def warm_up(self) -> None:
        """Exercise every path once (imports, caches, pools), then take the baseline."""
        with httpx2.Client(base_url=self.url, timeout=10) as client:
            for _ in range(20):
                client.get("/todo")
            posted = client.post("/todo", json={"description": "warm-up"})
            if posted.status_code == 200:
                client.delete(f"/todo/{posted.json()['id']}")
        subscriber = GoodSubscriber(self.ws_url, group=self.group, stream=self.stream).start()
        subscriber.close()
        time.sleep(0.3)
        self.baseline_rss = int(statistics.median(self.rss_samples(5)))
        self.baseline_fds = self.probe.fd_count()

    def rss_samples(self, count: int, interval: float = 0.05) -> list[int]:
        """``count`` RSS readings ``interval`` apart."""
        samples = []
        for _ in range(count):
            samples.append(self.probe.rss())
            time.sleep(interval)
        return samples

    def log_mark(self) -> int:
        """The log's current length in characters: pass to ``log_since``."""
        return len(self.process.log())

    def log_since(self, mark: int) -> list[str]:
        """The log lines written after ``mark``."""
        return self.process.log()[mark:].splitlines()

    def assert_up(self) -> None:
        """The process lives and a normal GET answers."""
        assert self.probe.is_alive(), f"the server died:\n{self.process.log()[-3000:]}"
        http_get_ok(self.url)

    def grown(self, rss: int) -> float:
        """MiB above the baseline."""
        return (rss - self.baseline_rss) / MIB


@contextlib.contextmanager
def _started(
    tmp_path: Path,
    project: str,
    command: str,
    extra_args: tuple[str, ...],
    extra_sessions: dict[str, str],
) -> Iterator[AbuseServer]:
    if project == "todo":
        project_dir = copy_todo_project(tmp_path / "todo")
    else:
        project_dir = tmp_path / project
        shutil.copytree(
            EXAMPLE_CHAT, project_dir, ignore=shutil.ignore_patterns(".surge", "__pycache__")
        )
        with (project_dir / "auth.py").open("a") as auth:  # the copy only: token -> a user's
            for token, user in extra_sessions.items():
                auth.write(f"\nSESSIONS[{token!r}] = SESSIONS[{user + '-token'!r}]\n")
    process = SurgeProcess(project_dir, command=command, extra_args=extra_args)
    try:
        process.start(timeout=30)
        assert process.proc is not None
        server = AbuseServer(process, ServerProbe(process.serving_pid()))
        if project == "chat":
            server.stream, server.group = "announcement", "project-b"
        server.warm_up()
        yield server
    finally:
        process.stop()


@pytest.fixture
def abuse_server(tmp_path: Path) -> Iterator[Callable[..., AbuseServer]]:
    """Factory: ``abuse_server(project="todo"|"chat", command="start", extra_args=(), ...)``.

    ``extra_sessions`` (chat only) adds tokens to the copy's session table: {token: "alice"}.
    """
    with contextlib.ExitStack() as stack:
        count = 0

        def start(
            project: str = "todo",
            command: str = "start",
            extra_args: tuple[str, ...] = (),
            extra_sessions: dict[str, str] | None = None,
        ) -> AbuseServer:
            nonlocal count
            count += 1
            where = tmp_path / f"server{count}"
            sessions = extra_sessions or {}
            return stack.enter_context(_started(where, project, command, extra_args, sessions))

        yield start


@pytest.fixture
def todo_server(abuse_server: Callable[..., AbuseServer]) -> AbuseServer:
    """``surge start`` on a private copy of examples/todo, warmed up, baseline taken."""
    return abuse_server()


def scaled(soak: bool, ci: int, long: int) -> int:
    """``ci`` normally, ``long`` in the soak run."""
    return long if soak else ci


def describe(**numbers: Any) -> str:
    """``key=value`` pairs for a test's measurement line (printed with -s, kept on failure)."""
    return " ".join(
        f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in numbers.items()
    )
