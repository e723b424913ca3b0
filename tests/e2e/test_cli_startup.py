"""What `surge dev` / `surge start` print as a newcomer runs them (issue 12 item 7): the banner only
once the port is bound, one line for a port in use or a startup validation error, one access line
per HTTP request under `surge dev`, and no wrapping at 80 columns off a terminal.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from e2e.surge_process import SURGE, copy_todo_project, free_port, poll

pytestmark = pytest.mark.timeout(60)


def user_env() -> dict[str, str]:
    """A non-interactive shell's environment: no COLUMNS (Rich would then assume 80)."""
    return {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "SURGE_STORE")}


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SURGE, *args],
        cwd=cwd,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


class Running:
    """`surge ARGS` in the background, its output in a file (a pipe could fill and block it)."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.log_path = cwd.parent / f"{cwd.name}-{os.getpid()}-{free_port()}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [SURGE, *args],
                cwd=cwd,
                env={**user_env(), "PYTHONUNBUFFERED": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 20) -> str:
        def seen() -> str | None:
            out = self.output()
            if text in out:
                return out
            if self.proc.poll() is not None:
                raise AssertionError(f"surge exited with {self.proc.returncode}:\n{out}")
            return None

        return poll(seen, timeout, f"{text!r} in the output")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    # A long path, as in CI workspaces: off a terminal Rich used to fold it at 80 columns.
    root = copy_todo_project(tmp_path / ("a-rather-long-project-directory-name-" * 3))
    shutil.rmtree(root / "web")  # built or not, the same page: public/
    (root / "public").mkdir()
    (root / "public" / "index.html").write_text("<!doctype html><title>todo</title>")
    return root


@pytest.fixture
def dev_server(project: Path) -> Iterator[tuple[Running, int]]:
    port = free_port()
    running = Running(project, "dev", "--port", str(port), "--host", "127.0.0.1")
    try:
        yield running, port
    finally:
        running.stop()


def test_a_port_in_use_is_one_error_line_and_no_banner(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("start", "--port", str(port), "--host", "127.0.0.1", cwd=project)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use; stop the other server "
        "or choose another port with --port"
    ], result.stderr
    assert "surge serving" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_the_banner_comes_once_the_app_has_started_and_the_port_answers(
    dev_server: tuple[Running, int], project: Path
) -> None:
    running, port = dev_server
    out = running.wait_for("surge serving")
    assert out.index("Application startup complete") < out.index("surge serving")
    banner = next(line for line in out.splitlines() if "surge serving" in line)
    assert banner.startswith(f"surge serving {project}: 1 stream(s), 5 API step(s)")
    assert f"on http://127.0.0.1:{port} (WebSocket on the same port) with hot reload" in banner
    assert httpx2.get(f"http://127.0.0.1:{port}/todo", timeout=5).status_code == 200


def test_dev_logs_one_access_line_per_http_request_without_the_query(
    dev_server: tuple[Running, int],
) -> None:
    running, port = dev_server
    running.wait_for("surge serving")
    base = f"http://127.0.0.1:{port}"
    assert httpx2.get(f"{base}/todo?token=s3cr3t-in-query", timeout=5).status_code == 200
    assert httpx2.post(f"{base}/todo", json={"description": "x"}, timeout=5).status_code == 200
    assert httpx2.delete(f"{base}/todo/missing", timeout=5).status_code == 404
    httpx2.get(f"{base}/__surge/workbench/", timeout=5)  # the Workbench's own: not logged
    out = running.wait_for("DELETE /todo/missing 404")
    access = [
        line.split("surge.access: ", 1)[1] for line in out.splitlines() if "surge.access:" in line
    ]
    assert [" ".join(line.split()[:3]) for line in access] == [
        "GET /todo 200",
        "POST /todo 200",
        "DELETE /todo/missing 404",
    ]
    assert all(line.endswith(" ms") for line in access), access
    assert "s3cr3t-in-query" not in out


def test_log_lines_do_not_wrap_at_80_columns_off_a_terminal(
    dev_server: tuple[Running, int], project: Path
) -> None:
    running, _ = dev_server
    out = running.wait_for("surge serving")
    served = [line for line in out.splitlines() if "serving the files of" in line]
    assert len(served) == 1 and served[0].endswith(f"{project / 'public'} at /"), out
    assert all(len(line) != 80 for line in out.splitlines() if "surge." in line)


def test_a_validation_error_at_startup_is_one_readable_line(project: Path) -> None:
    config = project / "surge.config.py"
    config.write_text(
        "from pydantic import BaseModel\n"
        "from surge import Config\n\n"
        "class Settings(BaseModel):\n"
        "    port: int\n\n"
        'SETTINGS = Settings(port="eighty")\n'
        "config = Config()\n"
    )
    result = run("start", "--port", str(free_port()), "--host", "127.0.0.1", cwd=project)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {config}: line 7: ValidationError: invalid Settings: port: Input should be a "
        "valid integer, unable to parse string as an integer"
    ]
