"""surge.testing.AsyncTestClient under pytest-asyncio: the same app, awaited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from surge.client import ConnectionState, SubscriptionError
from surge.testing import AsyncTestClient

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
WAIT = 10.0


@pytest.fixture
async def client() -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(REPO / "examples" / "todo") as client:
        yield client


async def test_http_and_subscriptions_in_the_test_loop(client: AsyncTestClient) -> None:
    inbox = await client.subscribe_group("todo", "inbox")
    changes = inbox.changes()
    response = await client.post("/todo", json={"description": "async"})
    assert response.status_code == 200
    change = await anext(changes)
    assert change.kind == "create" and change.item == response.json()
    item = await client.subscribe_item("todo", "inbox", change.id or "")
    await client.streams.todo.delete("inbox", change.id or "")
    assert await item.wait(lambda todo: todo is None, WAIT) is None
    assert (await client.get("/todo")).json() == []


async def test_unknown_routes_and_streams(client: AsyncTestClient) -> None:
    assert (await client.get("/nope")).status_code == 404
    assert (await client.patch("/todo")).status_code == 405
    with pytest.raises(SubscriptionError, match="STREAM_ACCESS_DENIED"):
        await client.subscribe_group("nope", "g")


async def test_stream_clients_are_closed_with_the_test_client() -> None:
    async with AsyncTestClient(REPO / "examples" / "todo") as tc:
        states: list[ConnectionState] = []
        extra = tc.stream_client()
        extra.on_state_change(states.append)
        await extra.subscribe_group("todo", "inbox")
        assert states == [ConnectionState.OPEN]
    assert states == [ConnectionState.OPEN, ConnectionState.CLOSED]
