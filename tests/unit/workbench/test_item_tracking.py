"""Returned-item tracking in ``Stream.set``/``get``: how the HTTP adapter knows a body is an item."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel

from surge import StreamConfig
from surge.streams.stores.memory import MemoryStreamAdapter
from surge.streams.stream import Stream
from surge.workbench.items import ItemRef, ReturnedItems, observe, track_returned_items


class Todo(BaseModel):
    id: str
    text: str


@pytest.fixture
async def adapter() -> AsyncIterator[MemoryStreamAdapter]:
    store = MemoryStreamAdapter()
    await store.open(lambda message: None)
    yield store
    await store.close()


def stream(adapter: MemoryStreamAdapter, schema: object = Todo) -> Stream:
    return Stream(StreamConfig(name="todo", schema=schema), adapter, observe)


async def test_set_and_get_results_are_recognised_inside_the_block(
    adapter: MemoryStreamAdapter,
) -> None:
    todo = stream(adapter)
    with track_returned_items() as returned:
        stored = await todo.set("inbox", "t1", Todo(id="t1", text="a"))
        fetched = await todo.get("inbox", "t1")
        missing = await todo.get("inbox", "nope")
    assert returned.origin_of(stored) == ItemRef("todo", "inbox", "t1")
    assert returned.origin_of(fetched) == ItemRef("todo", "inbox", "t1")
    assert missing is None
    assert returned.origin_of(None) is None


async def test_an_equal_copy_is_not_the_item(adapter: MemoryStreamAdapter) -> None:
    todo = stream(adapter)
    with track_returned_items() as returned:
        stored = await todo.set("inbox", "t1", {"id": "t1", "text": "a"})
    assert returned.origin_of(stored.model_copy()) is None
    assert returned.origin_of(stored.model_dump()) is None
    assert returned.origin_of({"id": "t1", "text": "a"}) is None


async def test_dict_schema_set_returns_the_dict_it_was_given(adapter: MemoryStreamAdapter) -> None:
    notes = stream(adapter, {"type": "object", "properties": {"text": {"type": "string"}}})
    item = {"id": "n1", "text": "a"}
    with track_returned_items() as returned:
        stored = await notes.set("g", "n1", item)
    assert stored is item
    assert returned.origin_of(item) == ItemRef("todo", "g", "n1")


async def test_nothing_is_recorded_outside_the_block(adapter: MemoryStreamAdapter) -> None:
    todo = stream(adapter)
    with track_returned_items() as returned:
        pass
    stored = await todo.set("inbox", "t1", Todo(id="t1", text="a"))
    assert returned.origin_of(stored) is None


async def test_tracking_is_per_context_so_concurrent_requests_do_not_mix(
    adapter: MemoryStreamAdapter,
) -> None:
    todo = stream(adapter)

    async def request(item_id: str) -> tuple[ReturnedItems, Todo]:
        with track_returned_items() as returned:
            await asyncio.sleep(0)
            value: Todo = await todo.set("inbox", item_id, Todo(id=item_id, text=item_id))
            await asyncio.sleep(0)
        return returned, value

    (first, a), (second, b) = await asyncio.gather(request("a"), request("b"))
    assert first.origin_of(a) == ItemRef("todo", "inbox", "a")
    assert first.origin_of(b) is None
    assert second.origin_of(b) == ItemRef("todo", "inbox", "b")


def test_a_value_is_kept_alive_so_its_id_cannot_be_reused() -> None:
    returned = ReturnedItems()
    returned.remember({"id": "x"}, ItemRef("s", "g", "x"))
    # The temporary dict above would otherwise be freed and its id() handed to a new object.
    fresh = [{"id": "y"} for _ in range(1000)]
    assert all(returned.origin_of(value) is None for value in fresh)


def test_the_latest_ref_wins_for_the_same_object() -> None:
    returned = ReturnedItems()
    value = {"id": "x"}
    returned.remember(value, ItemRef("s", "g1", "x"))
    returned.remember(value, ItemRef("s", "g2", "x"))
    assert returned.origin_of(value) == ItemRef("s", "g2", "x")
