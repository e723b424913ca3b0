"""The history part of the ``StreamAdapter`` contract (offsets, epochs, bounded retention,
``read_history``), checked on every store; docs/protocol.md sections 2 and 3."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from surge.errors import ConfigError
from surge.streams.adapter import StreamAdapter
from surge.streams.feed import Change, EphemeralEvent, FeedMessage
from surge.streams.history import DEFAULT_HISTORY_SIZE, HistoryPolicy
from surge.streams.stores.file import FileStreamAdapter
from surge.streams.stores.memory import MemoryStreamAdapter

from .conftest import settle_feed

Message = Change | EphemeralEvent


def of_group(feed: list[FeedMessage], stream: str, group: str) -> list[Message]:
    return [
        m
        for m in feed
        if isinstance(m, Change | EphemeralEvent) and (m.stream, m.group) == (stream, group)
    ]


async def wait_until(condition: Callable[[], object], within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.02)


async def test_changes_and_sends_share_one_strictly_increasing_sequence_per_group(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    await adapter.set("chat", "room", "m1", {"text": "hi"})
    await adapter.send("chat", "room", None, {"type": "typing", "data": "ann"})
    await adapter.set("chat", "other", "m1", {"text": "elsewhere"})
    await adapter.update("chat", "room", "m1", [{"type": "append", "path": "text", "value": "!"}])
    await adapter.send("chat", "room", "m1", {"type": "seen", "data": None})
    await adapter.delete("chat", "room", "m1")
    await settle_feed(adapter, feed)

    room = of_group(feed, "chat", "room")
    assert [type(m).__name__ for m in room] == [
        "Change",
        "EphemeralEvent",
        "Change",
        "EphemeralEvent",
        "Change",
    ]
    seqs = [m.seq for m in room]
    assert all(seq > 0 for seq in seqs)
    assert seqs == sorted(set(seqs))


async def test_read_history_returns_exactly_the_messages_after_an_offset_in_order(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    first = await adapter.set("todo", "inbox", "t1", {"title": "milk"})
    await adapter.set("todo", "inbox", "t2", {"title": "bread"})
    await adapter.send("todo", "inbox", None, {"type": "ping", "data": 1})
    await adapter.delete("todo", "inbox", "t1")
    await adapter.set("todo", "elsewhere", "x", {})
    await settle_feed(adapter, feed)

    history = await adapter.read_history("todo", "inbox", first.seq)

    assert history is not None
    expected = of_group(feed, "todo", "inbox")[1:]
    assert history.messages == expected
    assert [m.seq for m in history.messages] == [m.seq for m in expected]
    assert history.messages[1] == EphemeralEvent("todo", "inbox", None, {"type": "ping", "data": 1})
    assert history.seq >= expected[-1].seq
    snapshot = await adapter.get_group("todo", "inbox")
    assert history.seq <= snapshot.seq


async def test_read_history_at_the_current_position_is_empty_and_beyond_it_is_refused(
    adapter: StreamAdapter,
) -> None:
    await adapter.set("todo", "inbox", "t1", {})
    snapshot = await adapter.get_group("todo", "inbox")

    current = await adapter.read_history("todo", "inbox", snapshot.seq)
    assert current is not None and current.messages == [] and current.seq == snapshot.seq
    assert await adapter.read_history("todo", "inbox", snapshot.seq + 1000) is None


async def test_a_group_without_messages_resumes_from_zero(adapter: StreamAdapter) -> None:
    history = await adapter.read_history("todo", "never-written", 0)

    assert history is not None and history.messages == []


async def test_history_is_bounded_by_count_per_group(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    adapter.configure_history("small", HistoryPolicy(size=5, ttl=300))
    for n in range(12):
        await adapter.set("small", "g", f"i{n % 3}", {"n": n})
    await adapter.send("small", "g", None, {"type": "last", "data": None})
    await settle_feed(adapter, feed)
    messages = of_group(feed, "small", "g")

    kept = await adapter.read_history("small", "g", messages[-6].seq)
    assert kept is not None and kept.messages == messages[-5:]
    assert await adapter.read_history("small", "g", messages[-7].seq) is None
    assert await adapter.read_history("small", "g", 0) is None
    # Another stream keeps the default.
    for n in range(8):
        await adapter.set("big", "g", "x", {"n": n})
    big = await adapter.read_history("big", "g", 0)
    assert big is not None and len(big.messages) == 8


async def test_history_is_bounded_by_age(adapter: StreamAdapter, feed: list[FeedMessage]) -> None:
    adapter.configure_history("brief", HistoryPolicy(size=100, ttl=0.3))
    adapter.configure_history("long", HistoryPolicy(size=100, ttl=300))
    first = await adapter.set("brief", "g", "a", {"v": 1})
    await adapter.set("brief", "g", "a", {"v": 2})
    kept = await adapter.set("long", "g", "a", {"v": 1})
    await adapter.set("long", "g", "a", {"v": 2})

    await wait_until(lambda: _is_none(adapter.read_history("brief", "g", first.seq)))
    long = await adapter.read_history("long", "g", kept.seq)
    assert long is not None and [m.item for m in long.messages if isinstance(m, Change)] == [
        {"v": 2, "id": "a"}
    ]
    # New messages after the expiry are kept again, and resumable from the current position.
    snapshot = await adapter.get_group("brief", "g")
    await adapter.set("brief", "g", "a", {"v": 3})
    again = await adapter.read_history("brief", "g", snapshot.seq)
    assert again is not None and len(again.messages) == 1


async def _is_none(read: object) -> bool:
    return (await read) is None  # type: ignore[misc]


async def test_no_history_when_the_size_is_zero(adapter: StreamAdapter) -> None:
    adapter.configure_history("off", HistoryPolicy(size=0))
    first = await adapter.set("off", "g", "a", {})
    second = await adapter.set("off", "g", "a", {"v": 1})

    assert await adapter.read_history("off", "g", first.seq) is None
    current = await adapter.read_history("off", "g", second.seq)
    assert current is not None and current.messages == []


async def test_expiry_deletes_and_updates_enter_the_history(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    start = await adapter.set("todo", "g", "keep", {"n": 1})
    await adapter.update("todo", "g", "keep", [{"type": "increment", "path": "n"}])
    await adapter.set("todo", "g", "gone", {}, ttl=0.05)

    def expired() -> bool:
        return any(isinstance(m, Change) and m.kind == "delete" for m in feed)

    await wait_until(expired)
    history = await adapter.read_history("todo", "g", start.seq)
    assert history is not None
    assert [(m.kind, m.id) for m in history.messages if isinstance(m, Change)] == [
        ("update", "keep"),
        ("create", "gone"),
        ("delete", "gone"),
    ]


async def test_epoch_is_a_non_empty_string_stable_while_open(adapter: StreamAdapter) -> None:
    epoch = adapter.epoch
    await adapter.set("todo", "g", "a", {})

    assert isinstance(epoch, str) and epoch
    assert adapter.epoch == epoch


async def test_durable_history_and_epoch_survive_a_reopen(
    adapter_factory: Callable[[], StreamAdapter],
) -> None:
    store = adapter_factory()
    if isinstance(store, MemoryStreamAdapter):
        pytest.skip("a memory store does not outlive its object")
    feed: list[FeedMessage] = []
    await store.open(feed.append)
    try:
        first = await store.set("todo", "g", "a", {"v": 1})
        await store.send("todo", "g", None, {"type": "hello", "data": None})
        await store.set("todo", "g", "a", {"v": 2})
        epoch = store.epoch
    finally:
        await store.close()

    again = adapter_factory()
    await again.open(lambda message: None)
    try:
        assert again.epoch == epoch
        history = await again.read_history("todo", "g", first.seq)
        assert history is not None
        assert [type(m).__name__ for m in history.messages] == ["EphemeralEvent", "Change"]
        later = await again.set("todo", "g", "a", {"v": 3})
        assert later.seq > history.messages[-1].seq
    finally:
        await again.close()


async def test_a_new_store_has_a_new_epoch(
    adapter_factory: Callable[[], StreamAdapter], tmp_path: Path
) -> None:
    first = adapter_factory()
    await first.open(lambda message: None)
    try:
        await first.set("todo", "g", "a", {})
        epoch = first.epoch
    finally:
        await first.close()
    if isinstance(first, FileStreamAdapter):
        for path in first.directory.iterdir():
            path.unlink()  # a lost or recreated database
    elif not isinstance(first, MemoryStreamAdapter):
        from redis_server import drop_redis_keys

        drop_redis_keys(first.prefix)  # type: ignore[attr-defined]  # Redis data lost

    second = adapter_factory()
    await second.open(lambda message: None)
    try:
        assert second.epoch != epoch
    finally:
        await second.close()


def test_history_policy_is_checked() -> None:
    assert HistoryPolicy().size == DEFAULT_HISTORY_SIZE
    for bad in ({"size": -1}, {"size": 1.5}, {"ttl": 0}, {"ttl": float("inf")}, {"size": True}):
        with pytest.raises(ConfigError):
            HistoryPolicy(**bad)


async def test_the_history_keeps_an_updates_ops(adapter: StreamAdapter) -> None:
    start = await adapter.set("chat", "c", "m1", {"content": "hello"})
    ops = [{"type": "append", "path": "content", "value": " world"}]
    updated = await adapter.update("chat", "c", "m1", ops)

    history = await adapter.read_history("chat", "c", start.seq)
    assert history is not None
    assert history.messages == [updated.change]
    [change] = history.messages
    assert isinstance(change, Change) and change.ops == updated.change.ops
