"""surge.client across kill -9 and restart of a real `surge start` (examples/todo, file store).

The client must notice the loss, retry with backoff while the port refuses connections, re-join
with the same subscriptionIds and end with exactly the server's state, including changes made
while it was away and a store that was wiped meanwhile.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from e2e.surge_process import SurgeProcess, copy_todo_project
from surge.client import Backoff, Client, ConnectionState, connect
from surge.client.state import Change
from surge.client.transport import TransportConnection, WebSocketTransport

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

FAST = Backoff(initial=0.05, max_delay=0.5, stable_after=1.0)
WAIT = 20.0  # a restart on a loaded machine


async def server_todos(server: SurgeProcess) -> list[dict[str, object]]:
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.get(f"{server.url}/todo")
    response.raise_for_status()
    todos: list[dict[str, object]] = response.json()
    return todos


async def create(server: SurgeProcess, description: str) -> str:
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(f"{server.url}/todo", json={"description": description})
    response.raise_for_status()
    todo_id: str = response.json()["id"]
    return todo_id


async def restart(server: SurgeProcess) -> None:
    """Start again in a thread: the client keeps retrying on this loop meanwhile."""
    await asyncio.to_thread(server.start)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SurgeProcess]:
    proc = SurgeProcess(copy_todo_project(tmp_path / "todo"))
    proc.start()
    yield proc
    proc.stop()


async def test_client_rejoins_after_kill_and_restart_and_matches_the_server(
    server: SurgeProcess,
) -> None:
    states: list[ConnectionState] = []
    async with connect(server.ws_url, backoff=FAST, on_state_change=states.append) as client:
        inbox = await client.subscribe_group("todo", "inbox", timeout=WAIT)
        first = await create(server, "before the crash")
        item = await client.subscribe_item("todo", "inbox", first, timeout=WAIT)
        await inbox.wait(lambda todos: [t["id"] for t in todos] == [first], WAIT)
        ids = (inbox.subscription_id, item.subscription_id)

        await asyncio.to_thread(server.kill)
        await client.wait_state(ConnectionState.RECONNECTING, WAIT)
        await restart(server)
        # Changes made right after the restart, possibly before the client is back.
        second = await create(server, "after the restart")
        async with httpx2.AsyncClient(timeout=10) as http:
            (await http.put(f"{server.url}/todo/{first}", json={})).raise_for_status()

        expected = await server_todos(server)
        await inbox.wait(lambda todos: todos == expected, WAIT)
        await item.wait(lambda todo: todo is not None and todo["completedAt"] is not None, WAIT)
        assert {t["id"] for t in expected} == {first, second}
        assert (inbox.subscription_id, item.subscription_id) == ids
        assert client.connections == 2
        assert states[:2] == [ConnectionState.OPEN, ConnectionState.RECONNECTING]
        assert states[-1] is ConnectionState.OPEN


async def test_a_store_wiped_while_away_replaces_the_client_state(server: SurgeProcess) -> None:
    async with connect(server.ws_url, backoff=FAST) as client:
        inbox = await client.subscribe_group("todo", "inbox", timeout=WAIT)
        old = await create(server, "will vanish")
        item = await client.subscribe_item("todo", "inbox", old, timeout=WAIT)
        await inbox.wait(lambda todos: len(todos) == 1, WAIT)

        await asyncio.to_thread(server.kill)
        shutil.rmtree(server.project_dir / ".surge")
        await restart(server)
        new = await create(server, "fresh")

        await inbox.wait(lambda todos: [t["id"] for t in todos] == [new], WAIT)
        await item.wait(lambda todo: todo is None, WAIT)
        assert inbox.state == await server_todos(server)
        # A new database is a new epoch: the re-join could not resume and says so.
        assert inbox.recovered is False and item.recovered is False
        assert inbox.resumes == 0


class GatedTransport:
    """A WebSocket transport whose connection attempts wait for ``gate``: the test decides
    when the client may come back, so what happens meanwhile is certainly missed."""

    def __init__(self, url: str) -> None:
        self.inner = WebSocketTransport(url)
        self.gate = asyncio.Event()
        self.gate.set()

    async def connect(self) -> TransportConnection:
        await self.gate.wait()
        return await self.inner.connect()


async def typing(server: SurgeProcess, user: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(f"{server.url}/todo/typing", json={"userId": user})
    response.raise_for_status()


async def test_after_kill_and_restart_the_client_resumes_with_the_missed_changes_and_events(
    server: SurgeProcess,
) -> None:
    transport = GatedTransport(server.ws_url)
    async with Client(transport, backoff=FAST) as client:
        inbox = await client.subscribe_group("todo", "inbox", timeout=WAIT)
        first = await create(server, "before the crash")
        item = await client.subscribe_item("todo", "inbox", first, timeout=WAIT)
        await inbox.wait(lambda todos: [t["id"] for t in todos] == [first], WAIT)
        changes: list[Change] = []
        events: list[object] = []
        item_changes: list[Change] = []
        inbox.on_change(changes.append)
        item.on_change(item_changes.append)
        heard = asyncio.Event()

        def on_typing(data: object) -> None:
            events.append(data)
            heard.set()

        inbox.on_event("typing", on_typing)
        await typing(server, "before")
        async with asyncio.timeout(WAIT):
            await heard.wait()
        events.clear()
        offset = inbox.offset

        transport.gate.clear()  # the client stays away until the test lets it back
        await asyncio.to_thread(server.kill)
        await client.wait_state(ConnectionState.RECONNECTING, WAIT)
        await restart(server)
        second = await create(server, "while the client was away")
        await typing(server, "ann")
        async with httpx2.AsyncClient(timeout=10) as http:
            (await http.put(f"{server.url}/todo/{first}", json={})).raise_for_status()
        await typing(server, "bob")
        expected = await server_todos(server)
        transport.gate.set()

        await inbox.wait(lambda todos: todos == expected, WAIT)
        await item.wait(lambda todo: todo is not None and todo["completedAt"] is not None, WAIT)
        await client.wait_open(WAIT)
        # Received once each, in order; the one from before the crash not again.
        assert [e["userId"] for e in events] == ["ann", "bob"]  # type: ignore[index]
        assert inbox.recovered is True and item.recovered is True
        assert (inbox.resumes, item.resumes) == (1, 1)
        assert [c.kind for c in changes] == ["create", "update"]  # no sync: resumed
        assert [c.id for c in changes] == [second, first]
        assert [c.kind for c in item_changes] == ["update"]
        assert inbox.offset is not None and offset is not None and inbox.offset > offset
        assert {t["id"] for t in expected} == {first, second}
        assert client.connections == 2
