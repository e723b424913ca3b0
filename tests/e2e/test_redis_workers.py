"""`surge start --workers 2` on one port with Redis: clients on either worker see every change;
an item's expiry is one delete for every subscriber, whichever worker wrote it; with
--metrics-port each worker serves its own metrics on its own port."""

from __future__ import annotations

import asyncio
import json
import socket
import textwrap
from pathlib import Path

import httpx2
import websockets
from prometheus_client.parser import text_string_to_metric_families

from e2e.redis_env import redis_env  # noqa: F401 - fixture
from e2e.surge_process import SurgeProcess, copy_todo_project, free_port

PID_STEP = '''
import os

from steps.todo_stream import Todo
from surge import ApiResponse, ApiRouteConfig

config = ApiRouteConfig(name="PidTodo", method="POST", path="/pid-todo")


async def handler(req, ctx):
    """Create a todo and say which worker process did it."""
    todo_id = f"t-{os.getpid()}-{req.body['n']}"
    await ctx.streams.todo.set(
        "inbox", todo_id, Todo(id=todo_id, description="x", createdAt="now")
    )
    return ApiResponse(200, {"pid": os.getpid(), "id": todo_id})
'''


async def test_clients_on_different_workers_see_each_others_changes(
    tmp_path: Path,
    redis_env: str,  # noqa: F811
) -> None:
    project = copy_todo_project(tmp_path / "todo")
    (project / "steps" / "pid_todo_step.py").write_text(textwrap.dedent(PID_STEP))
    server = SurgeProcess(project, extra_args=["--workers", "2"])
    await asyncio.to_thread(server.start, 30.0)
    try:
        # Writes until two different worker processes have answered (new connection each time).
        pids: set[int] = set()
        ids: list[str] = []
        for n in range(60):
            async with httpx2.AsyncClient() as client:
                response = await client.post(f"{server.url}/pid-todo", json={"n": n}, timeout=5)
            assert response.status_code == 200, response.text
            pids.add(response.json()["pid"])
            ids.append(response.json()["id"])
            if len(pids) == 2:
                break
        assert len(pids) == 2, "the kernel never handed a connection to the second worker"

        # Clients on whichever workers they land on; then writes through both workers.
        seen: list[set[str]] = [set() for _ in range(8)]
        readies = [asyncio.Event() for _ in seen]
        written: set[str] = set()
        done = asyncio.Event()

        async def collect(ready: asyncio.Event, got: set[str]) -> None:
            async with websockets.connect(server.ws_url, open_timeout=5) as ws:
                join = {"streamName": "todo", "groupId": "inbox", "subscriptionId": "s"}
                await ws.send(json.dumps({"type": "join", "data": join}))
                assert json.loads(await ws.recv())["event"]["type"] == "sync"
                ready.set()
                while not (done.is_set() and got >= written):
                    frame = json.loads(await ws.recv())
                    if frame["event"]["type"] == "create":
                        got.add(frame["id"])

        async with asyncio.timeout(20):
            tasks = [
                asyncio.create_task(collect(ready, got))
                for ready, got in zip(readies, seen, strict=True)
            ]
            await asyncio.gather(*(r.wait() for r in readies))
            by_pid: dict[int, int] = {}
            for n in range(100, 400):
                async with httpx2.AsyncClient() as client:
                    response = await client.post(f"{server.url}/pid-todo", json={"n": n}, timeout=5)
                body = response.json()
                written.add(body["id"])
                by_pid[body["pid"]] = by_pid.get(body["pid"], 0) + 1
                if len(by_pid) == 2 and min(by_pid.values()) >= 3:
                    break
            assert len(by_pid) == 2, f"all writes went to one worker: {by_pid}"
            done.set()
            # The last frame each client waits for may already be in: nudge with one more write.
            async with httpx2.AsyncClient() as client:
                response = await client.post(f"{server.url}/pid-todo", json={"n": 999}, timeout=5)
            await asyncio.gather(*tasks)
        for got in seen:
            assert got >= written
    finally:
        await asyncio.to_thread(server.stop)


TTL_STEP = '''
import os

from steps.todo_stream import Todo
from surge import ApiResponse, ApiRouteConfig

config = ApiRouteConfig(name="TtlTodo", method="POST", path="/ttl-todo")


async def handler(req, ctx):
    """Create a todo that expires in a second; say which worker process wrote it."""
    todo_id = f"e-{os.getpid()}-{req.body['n']}"
    await ctx.streams.todo.set(
        "inbox", todo_id, Todo(id=todo_id, description="x", createdAt="now"), ttl=1.0
    )
    return ApiResponse(200, {"pid": os.getpid(), "id": todo_id})
'''


async def test_an_expiry_is_one_delete_for_every_subscriber_across_two_workers(
    tmp_path: Path,
    redis_env: str,  # noqa: F811
) -> None:
    project = copy_todo_project(tmp_path / "todo")
    (project / "steps" / "ttl_todo_step.py").write_text(textwrap.dedent(TTL_STEP))
    server = SurgeProcess(project, extra_args=["--workers", "2"])
    await asyncio.to_thread(server.start, 30.0)
    try:
        deletes: list[list[str]] = [[] for _ in range(8)]
        readies = [asyncio.Event() for _ in deletes]
        stop = asyncio.Event()

        async def collect(ready: asyncio.Event, got: list[str]) -> None:
            async with websockets.connect(server.ws_url, open_timeout=5) as ws:
                join = {"streamName": "todo", "groupId": "inbox", "subscriptionId": "s"}
                await ws.send(json.dumps({"type": "join", "data": join}))
                assert json.loads(await ws.recv())["event"]["type"] == "sync"
                ready.set()
                while not stop.is_set():
                    try:
                        async with asyncio.timeout(0.2):
                            frame = json.loads(await ws.recv())
                    except TimeoutError:
                        continue
                    if frame["event"]["type"] == "delete":
                        got.append(frame["id"])

        async with asyncio.timeout(60):
            tasks = [
                asyncio.create_task(collect(ready, got))
                for ready, got in zip(readies, deletes, strict=True)
            ]
            await asyncio.gather(*(r.wait() for r in readies))
            by_pid: dict[int, list[str]] = {}
            for n in range(60):  # a new connection each time, until both workers wrote some
                async with httpx2.AsyncClient() as client:
                    response = await client.post(f"{server.url}/ttl-todo", json={"n": n}, timeout=5)
                assert response.status_code == 200, response.text
                body = response.json()
                by_pid.setdefault(body["pid"], []).append(body["id"])
                if len(by_pid) == 2 and min(len(v) for v in by_pid.values()) >= 2:
                    break
            assert len(by_pid) == 2, f"all writes went to one worker: {list(by_pid)}"
            written = sorted(i for ids in by_pid.values() for i in ids)
            while not all(sorted(got) == written for got in deletes):
                assert all(len(got) <= len(written) for got in deletes), deletes
                await asyncio.sleep(0.1)
            # Both workers sweep: give a second delete every chance to arrive, then check.
            await asyncio.sleep(2.5)
            stop.set()
            await asyncio.gather(*tasks)
        for got in deletes:
            assert sorted(got) == written  # each expiry seen exactly once by each subscriber
        async with httpx2.AsyncClient() as client:
            response = await client.get(f"{server.url}/todo", timeout=5)
        assert response.status_code == 200, response.text
        assert not {item["id"] for item in response.json()} & set(written)  # gone from storage
    finally:
        await asyncio.to_thread(server.stop)


async def test_each_worker_serves_its_metrics_on_its_own_port(
    tmp_path: Path,
    redis_env: str,  # noqa: F811
) -> None:
    """--workers 2 --metrics-port P: P and P+1 each answer with one worker's numbers, in
    Prometheus' text format; together they count every request the app port took."""
    project = copy_todo_project(tmp_path / "todo")
    (project / "steps" / "pid_todo_step.py").write_text(textwrap.dedent(PID_STEP))
    metrics_port = free_port()
    while not port_is_free(metrics_port + 1):
        metrics_port = free_port()
    server = SurgeProcess(
        project, extra_args=["--workers", "2", "--metrics-port", str(metrics_port)]
    )
    await asyncio.to_thread(server.start, 30.0)
    try:
        async with httpx2.AsyncClient(timeout=5) as client:

            async def scrape(port: int) -> str | None:
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/metrics")
                except httpx2.TransportError:
                    return None
                return response.text if response.status_code == 200 else None

            # Both workers are up once both metrics ports answer (the app port answers as soon
            # as the first one is).
            for port in (metrics_port, metrics_port + 1):
                async with asyncio.timeout(30):
                    while await scrape(port) is None:  # noqa: ASYNC110 - polls another process
                        await asyncio.sleep(0.05)
            pids: set[int] = set()
            for n in range(400):  # a fresh connection each: the kernel picks a worker each time
                response = await client.post(
                    f"{server.url}/pid-todo", json={"n": n}, headers={"connection": "close"}
                )
                assert response.status_code == 200, response.text
                pids.add(response.json()["pid"])
                if len(pids) == 2 and n >= 5:
                    break
            assert len(pids) == 2, "the kernel never handed a connection to the second worker"
            requests = n + 1
            assert (await client.get(f"{server.url}/metrics")).status_code == 404
            texts = [await scrape(port) or "" for port in (metrics_port, metrics_port + 1)]
        served = []
        for text in texts:
            names = {f.name for f in text_string_to_metric_families(text)}
            assert {"surge_connections", "surge_http_request_seconds", "process_cpu_seconds"} <= (
                names
            )
            served.append(
                sum(
                    s.value
                    for f in text_string_to_metric_families(text)
                    for s in f.samples
                    if s.name == "surge_http_request_seconds_count"
                    and s.labels == {"step": "PidTodo", "status": "200"}
                )
            )
        assert sum(served) == requests
        assert all(count > 0 for count in served), served  # two workers, two sets of numbers
    finally:
        await asyncio.to_thread(server.stop)


def port_is_free(port: int) -> bool:
    """True when nothing listens on ``port`` of 127.0.0.1 (a moment ago)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
