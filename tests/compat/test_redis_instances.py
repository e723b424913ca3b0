"""Two `surge start` processes on one Redis, with the real npm client: every client sees every
change whichever instance made it, in order, and joiners on either instance get the same sync."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2

from compat.conftest import NodeClient
from e2e.redis_env import redis_env  # noqa: F401 - fixture
from e2e.surge_process import SurgeProcess, copy_todo_project


def call(server: SurgeProcess, method: str, path: str, body: Any = None) -> Any:
    response = httpx2.request(method, f"{server.url}{path}", json=body, timeout=5)
    assert response.status_code < 300, response.text
    return response.json()


def test_a_client_on_instance_a_follows_changes_made_through_instance_b_in_order(
    tmp_path: Path,
    redis_env: str,  # noqa: F811
    surge_server: Callable[..., SurgeProcess],
    node_client: Callable[..., NodeClient],
) -> None:
    a = surge_server(copy_todo_project(tmp_path / "a"))
    b = surge_server(copy_todo_project(tmp_path / "b"))
    watcher = node_client(a.ws_url)
    watcher.subscribe_group("g", "todo", "inbox", events=("typing",))
    assert watcher.wait_synced("g") == []

    first = call(b, "POST", "/todo", {"description": "made on B"})
    second = call(b, "POST", "/todo", {"description": "also on B"})
    done = call(b, "PUT", f"/todo/{first['id']}", {"completed": True})
    call(b, "DELETE", f"/todo/{second['id']}")
    call(b, "POST", "/todo/typing", {"userId": "u-b", "isTyping": True})

    assert watcher.wait_state("g", lambda s: s == [done]) == [done]
    typing = watcher.wait_for(lambda m: m["type"] == "event" and m["event"] == "typing")
    assert typing["data"] == {"userId": "u-b", "isTyping": True}
    kinds = [
        (f["event"]["type"], f.get("id")) for f in watcher.frames() if f["event"]["type"] != "sync"
    ]
    assert kinds == [
        ("create", first["id"]),
        ("create", second["id"]),
        ("update", first["id"]),
        ("delete", second["id"]),
        ("event", None),
    ]

    late = node_client(b.ws_url)
    late.subscribe_group("g", "todo", "inbox")
    assert late.wait_synced("g") == watcher.get_state("g") == call(a, "GET", "/todo")
