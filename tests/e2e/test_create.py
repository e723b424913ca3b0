"""`surge create NAME` from a clean directory: a complete project whose own tests pass, whose page
is served at `/` by `surge start`, and whose page stays live in a real browser (issue 12 item 6).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

with contextlib.suppress(ImportError):
    from playwright.sync_api import Page, expect

from e2e.browser import browser, new_page  # noqa: F401  (pytest fixtures)
from e2e.surge_process import REPO, SURGE, SurgeProcess

pytestmark = pytest.mark.timeout(120)

ServerFactory = Callable[..., SurgeProcess]
NewPage = Callable[..., "Page"]


def clean_env() -> dict[str, str]:
    """The environment of a user's shell: nothing pointing back at this repository."""
    drop = ("COLUMNS", "SURGE_STORE", "PYTHONPATH", "SURGE_CREATE_SOURCE", "PYTEST_ADDOPTS")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PYTEST_")}


def create(tmp_path: Path, name: str = "myapp", *args: str) -> Path:
    result = subprocess.run(
        [SURGE, "create", name, *args],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "pip install -e '.[dev]'" in result.stderr  # what to run next, markup intact
    return tmp_path / name


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return create(tmp_path, "myapp", "--surge-source", str(REPO))


def test_the_project_has_everything_a_python_project_needs(project: Path) -> None:
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert files == [
        ".gitignore",
        "README.md",
        "public/app.js",
        "public/index.html",
        "public/style.css",
        "pyproject.toml",
        "steps/complete_todo_step.py",
        "steps/create_todo_step.py",
        "steps/delete_todo_step.py",
        "steps/list_todos_step.py",
        "steps/todo_stream.py",
        "surge.config.py",
        "tests/test_todo.py",
    ]
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "myapp"
    assert pyproject["project"]["dependencies"] == [f"surge @ {REPO.as_uri()}"]
    ignored = (project / ".gitignore").read_text().split()
    for entry in (".surge/", "node_modules/", "dist/", ".venv/", "__pycache__/"):
        assert entry in ignored
    readme = (project / "README.md").read_text()
    assert readme.startswith("# myapp\n")
    assert "surge dev" in readme and "pytest" in readme
    assert "{{" not in readme + (project / "public" / "index.html").read_text()


def test_without_a_source_the_project_depends_on_surge_from_the_index(tmp_path: Path) -> None:
    project = create(tmp_path, "plain")
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["dependencies"] == ["surge"]


def test_the_new_projects_own_tests_pass(project: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    assert not (project / ".surge").exists()  # TestClient never touches the project's store


def test_surge_start_serves_the_page_at_root_and_the_api(
    project: Path, surge_server: ServerFactory
) -> None:
    server = surge_server(project)
    page = httpx2.get(f"{server.url}/", timeout=5)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>myapp: todos</title>" in page.text
    script = httpx2.get(f"{server.url}/app.js", timeout=5)
    assert script.status_code == 200 and "new WebSocket(" in script.text
    assert httpx2.get(f"{server.url}/todo", timeout=5).json() == []
    created = httpx2.post(f"{server.url}/todo", json={"description": "first"}, timeout=5)
    assert created.status_code == 200, created.text
    assert httpx2.get(f"{server.url}/todo", timeout=5).json() == [created.json()]


def test_the_page_is_live_in_two_browsers(
    project: Path,
    surge_server: ServerFactory,
    new_page: NewPage,  # noqa: F811
) -> None:
    server = surge_server(project)
    first, second = new_page(f"{server.url}/"), new_page(f"{server.url}/")
    for page in (first, second):
        expect(page.get_by_role("status")).to_have_text("live")
    first.get_by_placeholder("What needs doing?").fill("buy milk")
    first.get_by_role("button", name="Add").click()
    for page in (first, second):
        expect(page.locator("#todos li")).to_have_count(1)
        expect(page.locator("#todos li span")).to_have_text("buy milk")
    second.get_by_role("button", name="Done").click()
    expect(first.locator("#todos li.done")).to_have_count(1)
    httpx2.post(f"{server.url}/todo", json={"description": "from curl"}, timeout=5)
    expect(second.locator("#todos li")).to_have_count(2)
    first.get_by_role("button", name="Delete").first.click()
    for page in (first, second):
        expect(page.locator("#todos li span")).to_have_text(["from curl"])


def test_create_refuses_a_name_that_is_no_project_name(tmp_path: Path) -> None:
    result = subprocess.run(
        [SURGE, "create", "my app!"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "'my app!' is not a project name" in result.stderr
    assert not (tmp_path / "my app!").exists()
