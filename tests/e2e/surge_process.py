"""Run the real ``surge`` command as a subprocess: start, wait until it answers, stop or kill.

Shared by the end-to-end and the compatibility suites. Every wait has a deadline; a server that
dies or never answers fails the test with the tail of its log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import pytest

from abuse.logscan import register_log_file  # issue 9: the whole-suite token scan

__all__ = [
    "EXAMPLE_TODO",
    "SURGE",
    "SurgeProcess",
    "copy_todo_project",
    "free_port",
    "poll",
    "surge_server",
    "uvicorn_app",
]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_TODO = REPO / "examples" / "todo"
# The `surge` script of the interpreter running the tests (the venv's).
SURGE = str(Path(sys.executable).with_name("surge"))

T = TypeVar("T")


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def copy_todo_project(target: Path) -> Path:
    """A private copy of examples/todo (without its .surge data) at ``target``."""
    shutil.copytree(
        EXAMPLE_TODO, target, ignore=shutil.ignore_patterns(".surge", "__pycache__", "node_modules")
    )
    return target


def poll(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Call ``check`` until it returns something other than None or False; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class SurgeProcess:
    """One ``surge start`` / ``surge dev`` process serving ``project_dir`` on ``port``.

    ``start()`` may be called again after ``stop()``/``kill()``: same directory, same port.
    Output goes to a log file next to the project (a pipe could fill up and block the server).
    """

    def __init__(
        self,
        project_dir: Path,
        *,
        command: str = "start",
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.project_dir = project_dir
        self.command = command
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = project_dir.parent / f"{project_dir.name}-surge-{self.port}.log"
        register_log_file(self.log_path)  # scanned for test tokens (tests/abuse/logscan.py)
        self.starts = 0

    @property
    def url(self) -> str:
        """The HTTP base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """The stream WebSocket URL."""
        return f"ws://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 15.0) -> SurgeProcess:
        """Launch the process and return once it answers HTTP."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("already running")
        self.starts += 1
        env = {
            **os.environ,
            # Rich would wrap long lines (file paths) at 80 columns when not on a terminal.
            "COLUMNS": "400",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("SURGE_STORE", None)
        with self.log_path.open("ab") as log:
            log.write(f"--- start #{self.starts}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [
                    SURGE,
                    self.command,
                    "--port",
                    str(self.port),
                    "--host",
                    "127.0.0.1",
                    *self.extra_args,
                ],
                cwd=self.project_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        poll(self._answers, timeout, f"surge {self.command} on port {self.port}\n{self.log()}")
        return self

    def _answers(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise AssertionError(f"surge exited with {code} before answering:\n{self.log()}")
        try:
            # Any HTTP answer (even 404) means the server is up.
            httpx2.get(f"{self.url}/__surge_probe__", timeout=1.0)
        except httpx2.TransportError:
            return False
        return True

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (graceful shutdown) and wait; SIGKILL if it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def worker_pids(self) -> list[int]:
        """The pids of the worker processes serving now (``surge start``'s state file)."""
        from surge.cli.master import default_pid_file, read_state

        state = read_state(default_pid_file(self.project_dir.resolve(), self.port)) or {}
        return [int(pid) for pid in state.get("workers", [])]

    def serving_pid(self) -> int:
        """The process that serves: ``surge start``'s (only) worker, ``surge dev`` itself."""
        assert self.proc is not None
        if self.command != "start":
            return self.proc.pid
        # The supervisor writes its state file once it has seen the worker ready, which can
        # trail the worker's first answer by seconds on a loaded machine: a wide bound.
        pids = poll(self.worker_pids, 30, "surge start's state file")
        assert len(pids) == 1, pids
        return pids[0]

    def log(self) -> str:
        """Everything the process(es) printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@pytest.fixture
def surge_server() -> Iterator[Callable[..., SurgeProcess]]:
    """Factory: ``surge_server(project_dir, command="start", port=None)`` -> a started server.

    Every server it started is stopped at teardown.
    """
    servers: list[SurgeProcess] = []

    def start(project_dir: Path, **options: Any) -> SurgeProcess:
        server = SurgeProcess(project_dir, **options)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@contextlib.contextmanager
def uvicorn_app(
    project: Path, target: str, ready_path: str, *, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``python -m uvicorn <target>`` (e.g. ``host_app:api``, an app of the user's own that
    mounts Surge) in ``project`` on a free loopback port: its base URL once ``ready_path``
    answers 200 (30 s at most); terminated at the end. Its log is ``project/uvicorn.log``."""
    port = free_port()
    log_path = project / "uvicorn.log"
    register_log_file(log_path)  # scanned for test tokens (tests/abuse/logscan.py)
    command = [sys.executable, "-m", "uvicorn", target, "--app-dir", str(project)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=project,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, log_path.read_text(errors="replace")
        try:
            return httpx2.get(url + ready_path, timeout=1).status_code == 200
        except httpx2.TransportError:
            return False

    try:
        poll(up, 30, f"{target} to answer {ready_path}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
