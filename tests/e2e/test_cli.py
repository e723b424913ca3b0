"""The ``surge`` command line as a user runs it: create a project, start it, refuse bad setups."""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from e2e.surge_process import SURGE, SurgeProcess, copy_todo_project, free_port

pytestmark = pytest.mark.timeout(60)

ServerFactory = Callable[..., SurgeProcess]


def run_surge(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``surge ARGS`` to completion, as from a non-interactive shell (CI, a pipe)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "SURGE_STORE")}
    return subprocess.run(
        [SURGE, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_create_makes_a_project_that_starts_and_serves_post_todo(
    tmp_path: Path, surge_server: ServerFactory
) -> None:
    result = run_surge("create", "myapp", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    project = tmp_path / "myapp"
    assert (project / "steps" / "todo_stream.py").is_file()
    assert not (project / ".surge").exists()

    server = surge_server(project)
    created = httpx2.post(f"{server.url}/todo", json={"description": "first"}, timeout=5)
    assert created.status_code == 200, created.text
    todo = created.json()
    assert todo["description"] == "first"
    assert httpx2.get(f"{server.url}/todo", timeout=5).json() == [todo]


def test_create_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    result = run_surge("create", "taken", cwd=tmp_path)
    assert result.returncode != 0
    assert "taken" in result.stderr and "not empty" in result.stderr
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["notes.txt"]


def write_broken_step(project: Path) -> Path:
    """A step file with a syntax error on line 5; returns its path."""
    broken = project / "steps" / "broken_step.py"
    broken.write_text(
        textwrap.dedent(
            """\
            from surge import ApiRouteConfig

            config = ApiRouteConfig(name="Broken", method="GET", path="/broken")

            async def handler(req, ctx)
                return None
            """
        )
    )
    return broken


def test_start_with_a_broken_step_exits_non_zero_naming_the_file_and_line(
    tmp_path: Path,
) -> None:
    # A long path, as in CI workspaces: off a terminal the output used to be wrapped at 80
    # columns, which folded the path in two; editors and log greps need `path: line N` whole.
    project = copy_todo_project(tmp_path / ("a-rather-long-project-directory-name-" * 2))
    broken = write_broken_step(project)
    result = run_surge("start", "--port", str(free_port()), "--host", "127.0.0.1", cwd=project)
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert any(f"{broken}: line 5: syntax error" in line for line in lines), result.stderr
    assert "Uvicorn running" not in result.stdout + result.stderr


def test_start_refuses_several_workers_on_the_file_store_with_a_clear_message(
    tmp_path: Path,
) -> None:
    project = copy_todo_project(tmp_path / "app")
    port = free_port()
    result = run_surge("start", "--workers", "2", "--port", str(port), cwd=project)
    assert result.returncode != 0
    message = " ".join((result.stdout + result.stderr).split())
    assert "--workers" in message and "Redis" in message, message
    assert "Uvicorn running" not in message
