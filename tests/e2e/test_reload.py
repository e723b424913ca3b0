"""Zero-downtime reloads and bounded drains of a real ``surge start`` (issue 13 item 5).

The server runs as a subprocess on a private copy of examples/todo; clients are raw WebSockets
(the ``websockets`` library, no reconnect logic of its own) and HTTP connections opened one per
request, so that any refused or reset connection is counted, not retried away.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from e2e.redis_env import redis_env  # noqa: F401 - fixture
from e2e.surge_process import SURGE, SurgeProcess, copy_todo_project, poll

pytestmark = pytest.mark.timeout(240)

SUBSCRIBERS = 1000
RECONNECT_JITTER = 1.0
JOIN = json.dumps(
    {
        "type": "join",
        "data": {"streamName": "todo", "groupId": "inbox", "subscriptionId": "inbox"},
    }
)

SLOW_STEP = """
import asyncio
from pathlib import Path

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext

config = ApiRouteConfig(name="Slow", method="GET", path="/slow")
STARTED = Path(__file__).resolve().parent.parent / "slow-started"


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    STARTED.write_text("yes")
    await asyncio.sleep(float(req.query_params["seconds"]))
    return ApiResponse(status=200, body={"slept": req.query_params["seconds"]})
"""

HELLO_STEP = """
from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext

config = ApiRouteConfig(name="Hello", method="GET", path="/hello")


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    return ApiResponse(status=200, body={"hello": "GREETING"})
"""


class Subscriber:
    """One raw WebSocket client of the group ``todo/inbox``: reconnects after a close (after a
    random pause of up to ``RECONNECT_JITTER``, as real clients spread their reconnects) and
    rejoins; its state is the last sync plus the changes since."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.items: dict[str, Any] = {}
        self.syncs = 0
        self.connects = 0
        self.close_codes: list[int | None] = []
        self.refusals: list[str] = []
        self.synced = asyncio.Event()

    async def run(self) -> None:
        await asyncio.sleep(random.uniform(0, RECONNECT_JITTER))
        while True:
            try:
                ws = await websockets.connect(self.url, open_timeout=60, max_size=None)
            except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
                self.refusals.append(repr(exc))
                await asyncio.sleep(0.2)
                continue
            self.connects += 1
            try:
                await ws.send(JOIN)
                async for raw in ws:
                    self.apply(orjson.loads(raw))
            except ConnectionClosed:
                pass
            self.close_codes.append(ws.close_code)
            # A thousand handshakes at once in this one process can lag its loop past the
            # server's 10 s request-head deadline on a loaded machine: spread them out.
            await asyncio.sleep(random.uniform(0, RECONNECT_JITTER))

    def apply(self, frame: dict[str, Any]) -> None:
        if frame.get("groupId") != "inbox":
            return
        event = frame["event"]
        kind = event["type"]
        if kind == "sync":
            self.items = {item["id"]: item for item in event["data"]}
            self.syncs += 1
            self.synced.set()
        elif kind in ("create", "update"):
            self.items[event["data"]["id"]] = event["data"]
        elif kind == "delete":
            self.items.pop(event["data"]["id"], None)


class Writer:
    """POST /todo one at a time, each on a new connection; counts what did not get a 200."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.created: list[str] = []
        self.failures: list[str] = []
        self.running = True

    async def run(self) -> None:
        limits = httpx2.Limits(max_keepalive_connections=0)
        async with httpx2.AsyncClient(base_url=self.url, timeout=30, limits=limits) as http:
            n = 0
            while self.running:
                n += 1
                try:
                    response = await http.post("/todo", json={"description": f"change {n}"})
                except httpx2.TransportError as exc:
                    self.failures.append(repr(exc))
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code}: {response.text}")
                else:
                    self.created.append(response.json()["id"])
                await asyncio.sleep(0.02)


async def surge_reload(project: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``surge reload`` for the server on ``port``; its completed process."""
    return await asyncio.to_thread(
        subprocess.run,
        [SURGE, "reload", "--port", str(port), *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=180,
    )


async def wait_for(check: Any, timeout: float, what: str) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("store", ["file", "redis"])
async def test_a_reload_under_load_refuses_no_connection_and_loses_no_change(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    # One process on the file store (the old worker drains before the new one accepts), or two
    # workers on Redis (the new ones accept first).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * SUBSCRIBERS:  # one socket per subscriber in this process
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * SUBSCRIBERS), hard))
    extra = ["--workers", "2"] if store == "redis" else []
    if store == "redis":
        request.getfixturevalue("redis_env")
    server = SurgeProcess(copy_todo_project(tmp_path / "todo"), extra_args=extra)
    await asyncio.to_thread(server.start, 60.0)
    subscribers = [Subscriber(server.ws_url) for _ in range(SUBSCRIBERS)]
    tasks = [asyncio.create_task(s.run()) for s in subscribers]
    writer = Writer(server.url)
    writing: asyncio.Task[None] | None = None
    try:
        await wait_for(lambda: all(s.synced.is_set() for s in subscribers), 120, "every sync")
        old_workers = server.worker_pids()
        writing = asyncio.create_task(writer.run())
        await wait_for(lambda: len(writer.created) >= 10, 60, "10 changes before the reload")

        result = await surge_reload(server.project_dir, server.port)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stderr.startswith("reloaded: generation 2 serving"), result.stderr

        await wait_for(lambda: all(s.connects >= 2 for s in subscribers), 120, "every reconnect")
        mark = len(writer.created)
        await wait_for(lambda: len(writer.created) >= mark + 10, 60, "10 changes after it")
        writer.running = False
        await writing

        async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
            response = await http.get("/todo")
        assert response.status_code == 200
        final = {item["id"]: item for item in response.json()}
        assert set(writer.created) <= set(final), "an acknowledged change is not in the store"
        await wait_for(
            lambda: all(s.items == final for s in subscribers), 120, "every subscriber current"
        )
    finally:
        writer.running = False
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if writing is not None:
            await asyncio.gather(writing, return_exceptions=True)
        log = server.log()
        await asyncio.to_thread(server.stop)

    assert writer.failures == [], writer.failures[:5]
    refusals = [r for s in subscribers for r in s.refusals]
    assert refusals == [], f"{len(refusals)} refused connections, e.g. {refusals[:3]}"
    codes = {code for s in subscribers for code in s.close_codes[:1]}
    assert codes == {1012}, f"the reload closed WebSockets with {codes}\n{log[-3000:]}"
    assert len(old_workers) == (2 if store == "redis" else 1)
    assert "reload: generation 2 serving" in log


async def test_sigterm_finishes_requests_closes_websockets_1001_and_exits_in_bounded_time(
    tmp_path: Path,
) -> None:
    project = copy_todo_project(tmp_path / "todo")
    (project / "steps" / "slow_step.py").write_text(textwrap.dedent(SLOW_STEP))
    server = SurgeProcess(project, extra_args=["--drain-timeout", "3"])
    await asyncio.to_thread(server.start, 60.0)
    assert server.proc is not None
    ws = await websockets.connect(server.ws_url)
    await ws.send(JOIN)
    await asyncio.wait_for(ws.recv(), 10)  # the sync
    async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
        finishing = asyncio.create_task(http.get("/slow", params={"seconds": "1"}))
        await asyncio.to_thread(
            poll, lambda: (project / "slow-started").exists(), 10, "the slow request"
        )
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        response = await finishing
    assert response.status_code == 200, response.text
    assert response.json() == {"slept": "1"}
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1001
    await asyncio.to_thread(server.proc.wait, 15)
    assert time.monotonic() - signalled < 3 + 2
    assert server.proc.returncode == 0, server.log()[-2000:]
    assert not (project / ".surge" / f"surge-{server.port}.pid").exists()


async def test_a_drain_past_its_timeout_cuts_the_request_and_still_exits(tmp_path: Path) -> None:
    project = copy_todo_project(tmp_path / "todo")
    (project / "steps" / "slow_step.py").write_text(textwrap.dedent(SLOW_STEP))
    server = SurgeProcess(project, extra_args=["--drain-timeout", "1"])
    await asyncio.to_thread(server.start, 60.0)
    assert server.proc is not None
    async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
        stuck = asyncio.create_task(http.get("/slow", params={"seconds": "120"}))
        await asyncio.to_thread(
            poll, lambda: (project / "slow-started").exists(), 10, "the slow request"
        )
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(server.proc.wait, 15)
        took = time.monotonic() - signalled
        try:
            cut = await stuck
        except httpx2.TransportError:
            pass  # cut before uvicorn could answer
        else:
            assert cut.status_code == 500, cut.text  # the handler was cancelled
    assert took < 1 + 3, f"exited {took:.1f} s after SIGTERM with --drain-timeout 1"
    assert "drain timeout (1.0 s): closing 1 connection(s)" in server.log()


async def test_surge_reload_loads_new_code_and_a_broken_one_keeps_the_old_serving(
    tmp_path: Path,
) -> None:
    project = copy_todo_project(tmp_path / "todo")
    step = project / "steps" / "hello_step.py"
    step.write_text(textwrap.dedent(HELLO_STEP).replace("GREETING", "first"))
    server = SurgeProcess(project)
    await asyncio.to_thread(server.start, 60.0)
    try:
        url = f"{server.url}/hello"
        assert httpx2.get(url, timeout=10).json() == {"hello": "first"}
        first = server.worker_pids()

        step.write_text(textwrap.dedent(HELLO_STEP).replace("GREETING", "second"))
        result = await surge_reload(project, server.port)
        assert result.returncode == 0, result.stdout + result.stderr
        assert httpx2.get(url, timeout=10).json() == {"hello": "second"}
        second = server.worker_pids()
        assert len(second) == 1 and second != first

        step.write_text("this is not python\n")
        result = await surge_reload(project, server.port)
        assert result.returncode == 1
        [line] = result.stderr.splitlines()
        assert line.startswith("error: reload failed: ") and str(step) in line, line
        assert httpx2.get(url, timeout=10).json() == {"hello": "second"}
        assert server.worker_pids() == second
        assert "generation 2 keeps serving" in server.log()
    finally:
        await asyncio.to_thread(server.stop)


async def test_surge_reload_without_a_running_server_says_so(tmp_path: Path) -> None:
    project = copy_todo_project(tmp_path / "todo")
    result = await surge_reload(project, 3999)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: no pid file at {project.resolve() / '.surge' / 'surge-3999.pid'}: is `surge "
        "start` running on port 3999 there?"
    ]


async def test_a_crashed_worker_is_replaced_on_the_same_socket(tmp_path: Path) -> None:
    server = SurgeProcess(copy_todo_project(tmp_path / "todo"))
    await asyncio.to_thread(server.start, 60.0)
    try:
        [worker] = server.worker_pids()
        os.kill(worker, signal.SIGKILL)  # a crash of the serving process, not of surge start

        def replaced() -> list[int] | None:
            pids = server.worker_pids()
            return pids if pids and pids != [worker] else None

        [replacement] = await asyncio.to_thread(poll, replaced, 30, "a replacement worker")
        assert replacement != worker
        # Same port, never closed: the next request is served by the replacement.
        response = await asyncio.to_thread(httpx2.get, f"{server.url}/todo", timeout=30)
        assert response.status_code == 200
        assert f"worker {worker} exited with status -9" in server.log()
    finally:
        await asyncio.to_thread(server.stop)
