"""Crash safety of ``surge start`` on the default file store, and ``surge dev`` surviving bad steps.

The server runs as a real subprocess on a private copy of examples/todo. ``kill -9`` lands while
requests are in flight; afterwards every acknowledged (200) todo must be back, byte for byte, and
SQLite must find its file intact.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sqlite3
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from e2e.surge_process import SurgeProcess, copy_todo_project, poll

pytestmark = pytest.mark.timeout(90)

ServerFactory = Callable[..., SurgeProcess]

IN_FLIGHT = 16
ACKS_BEFORE_KILL = 150


async def _burst_until_killed(server: SurgeProcess) -> tuple[dict[str, Any], int, int]:
    """POST /todo from IN_FLIGHT workers; SIGKILL the server after ACKS_BEFORE_KILL acks.

    The worker process that serves is killed first, then its supervisor, as an OOM kill or a
    crash would (killing only the supervisor would leave the worker answering until Linux's
    parent-death signal reaches it). Each client worker goes on until a request of its own
    fails. Returns every acknowledged todo by id, how many requests failed (in flight at the
    kill, or sent after it), and how many were outstanding when the kill was sent.
    """
    acked: dict[str, Any] = {}
    cut_off = 0
    outstanding = 0
    outstanding_at_kill = -1
    workers = server.worker_pids()
    assert workers, "surge start reported no worker"
    limits = httpx2.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx2.AsyncClient(base_url=server.url, timeout=10, limits=limits) as http:

        async def worker(n: int) -> None:
            nonlocal cut_off, outstanding, outstanding_at_kill
            for i in itertools.count():
                outstanding += 1
                try:
                    response = await http.post("/todo", json={"description": f"w{n}-{i}"})
                except httpx2.TransportError:
                    cut_off += 1
                    return
                finally:
                    outstanding -= 1
                # Any 200 the client received is an acknowledged write, even after the kill.
                if response.status_code == 200:
                    todo = response.json()
                    acked[todo["id"]] = todo
                else:
                    raise AssertionError(f"{response.status_code}: {response.text}")
                if len(acked) >= ACKS_BEFORE_KILL and outstanding_at_kill < 0:
                    outstanding_at_kill = outstanding
                    for pid in workers:
                        os.kill(pid, signal.SIGKILL)
                    server.kill()

        async with asyncio.timeout(60):
            await asyncio.gather(*(worker(n) for n in range(IN_FLIGHT)))
    return acked, cut_off, outstanding_at_kill


async def test_kill_9_mid_burst_loses_no_acknowledged_todo_and_leaves_sqlite_intact(
    surge_server: ServerFactory, tmp_path: Path
) -> None:
    project = copy_todo_project(tmp_path / "todo")
    server = surge_server(project)

    acked, cut_off, outstanding_at_kill = await _burst_until_killed(server)
    assert len(acked) >= ACKS_BEFORE_KILL
    # The kill landed mid-burst: the other client workers had requests outstanding.
    assert outstanding_at_kill > 0
    assert cut_off == IN_FLIGHT  # every client worker ended on a failed request
    assert server.proc is not None and server.proc.returncode == -9

    server.start()  # same directory, same port
    async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.get("/todo")
    assert response.status_code == 200
    stored = {todo["id"]: todo for todo in response.json()}
    lost = sorted(set(acked) - set(stored))
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged todos lost ({cut_off} cut off)"
    changed = {i: (acked[i], stored[i]) for i in acked if stored[i] != acked[i]}
    assert not changed, f"acknowledged todos came back different: {changed}"
    # Anything beyond the acked set can only be a write the kill caught in flight.
    assert len(stored) - len(acked) <= cut_off

    server.stop()
    assert server.log().count("Application shutdown complete") == 1  # the restarted one
    db = project / ".surge" / "streams" / "streams.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()


HELLO_STEP = """
    from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext

    config = ApiRouteConfig(name="Hello", method="GET", path="/hello")


    async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
        return ApiResponse(status=200, body={"hello": "world"})
"""

BROKEN_STEP = """
    from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext

    config = ApiRouteConfig(name="Hello", method="GET", path="/hello")


    async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse
        return ApiResponse(status=200, body={"hello": "world"})
"""
BROKEN_LINE = 6


def write_atomically(path: Path, source: str) -> None:
    """Replace ``path`` in one step, as editors save: the watcher never sees a half-written file."""
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(textwrap.dedent(source).lstrip())
    staging.replace(path)


def test_dev_keeps_serving_the_last_good_steps_when_a_step_gets_a_syntax_error(
    surge_server: ServerFactory, tmp_path: Path
) -> None:
    project = copy_todo_project(tmp_path / "todo")
    server = surge_server(project, command="dev")
    http = httpx2.Client(base_url=server.url, timeout=5)
    todo = http.post("/todo", json={"description": "before the break"}).json()

    step = project / "steps" / "hello_step.py"
    write_atomically(step, BROKEN_STEP)

    def reload_error() -> str | None:
        lines = server.log().splitlines()
        return next((x for x in lines if "reload failed" in x and str(step) in x), None)

    error_line = poll(reload_error, 15, f"the reload error naming {step}\n{server.log()}")
    assert f"{step}: line {BROKEN_LINE}: syntax error" in error_line, error_line

    # The previous steps keep serving, streams included.
    assert http.get("/hello").status_code == 404
    other = http.post("/todo", json={"description": "during the break"})
    assert other.status_code == 200
    assert [t["id"] for t in http.get("/todo").json()] == [todo["id"], other.json()["id"]]

    write_atomically(step, HELLO_STEP)
    poll(lambda: http.get("/hello").status_code == 200, 15, "the fixed step to be served")
    assert http.get("/hello").json() == {"hello": "world"}
    assert http.get("/todo").status_code == 200
    assert server.proc is not None and server.proc.poll() is None
    http.close()
