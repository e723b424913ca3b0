"""examples/fastapi: Surge mounted into a FastAPI app (at a prefix and at /), served by uvicorn;
the real npm client subscribes through the mount and sees a change made from a FastAPI route."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest

from compat.conftest import NodeClient
from conftest import require_component
from e2e.surge_process import uvicorn_app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi"


def fastapi_installed() -> bool:
    try:
        import fastapi  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def fastapi_server(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Start ``uvicorn app:api`` on a private copy of examples/fastapi; returns its base URL."""
    require_component(fastapi_installed(), "fastapi is not installed (make setup installs it)")
    with contextlib.ExitStack() as servers:
        count = 0

        def start(mount: str) -> str:
            nonlocal count
            count += 1
            project = tmp_path / f"app{count}"
            shutil.copytree(
                EXAMPLE, project, ignore=shutil.ignore_patterns(".surge", "__pycache__")
            )
            served = uvicorn_app(project, "app:api", "/docs", env={"SURGE_MOUNT": mount})
            return servers.enter_context(served)

        yield start


@pytest.mark.parametrize("mount", ["/rt", "/"])
def test_a_change_made_from_a_fastapi_route_reaches_the_npm_client_through_the_mount(
    mount: str,
    fastapi_server: Callable[[str], str],
    node_client: Callable[..., NodeClient],
) -> None:
    base = fastapi_server(mount)
    prefix = mount.rstrip("/")
    ws_url = base.replace("http://", "ws://") + prefix + "/"
    watcher = node_client(ws_url)
    watcher.subscribe_group("g", "todo", "inbox")
    assert watcher.wait_synced("g") == []

    made = httpx2.post(base + "/api/todos", json={"description": "from FastAPI"}, timeout=5)
    assert made.status_code == 200, made.text
    todo = made.json()
    assert watcher.wait_state("g", lambda s: len(s) == 1) == [todo]

    # Surge's own API steps answer under the mount, and FastAPI's routes still answer.
    listed = httpx2.get(base + prefix + "/todo", timeout=5)
    assert listed.status_code == 200
    assert listed.json() == [todo]
    assert httpx2.get(base + "/openapi.json", timeout=5).json()["info"]["title"].startswith("Todo")
