"""The TTL part of the ``StreamAdapter`` contract, checked on every store.

TTLs are short (a few tenths of a second) and every wait has a generous deadline, so the tests
hold with both cores busy. "Exactly once" is checked after a later-expiring item was deleted
too: by then every sweeper has run past the first expiry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from surge.streams.adapter import StreamAdapter
from surge.streams.feed import Change, FeedMessage
from surge.streams.stores.memory import MemoryStreamAdapter

from .conftest import settle_feed

pytestmark = pytest.mark.timeout(60)

TTL_S = 0.2
DEADLINE_S = 10.0


def deletes(feed: list[FeedMessage], id: str) -> list[Change]:
    return [m for m in feed if isinstance(m, Change) and m.kind == "delete" and m.id == id]


async def wait_for(condition: Callable[[], bool], *, within: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.01)


async def wait_until_gone(adapter: StreamAdapter, id: str, feed: list[FeedMessage]) -> None:
    await wait_for(lambda: bool(deletes(feed, id)))
    assert await adapter.get("s", "g", id) is None


async def test_an_expired_item_is_deleted_and_its_delete_fed_once(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    await adapter.set("s", "g", "keep", {"v": 0})
    created = await adapter.set("s", "g", "x", {"v": 1}, ttl=TTL_S)

    await wait_until_gone(adapter, "x", feed)
    await adapter.set("s", "g", "later", {"v": 2}, ttl=TTL_S)
    await wait_until_gone(adapter, "later", feed)
    await settle_feed(adapter, feed)

    [deleted] = deletes(feed, "x")
    assert deleted.item == {"v": 1, "id": "x"}
    assert deleted.seq > created.seq
    assert (await adapter.get_group("s", "g")).items == [{"v": 0, "id": "keep"}]


async def test_expiry_across_two_instances_deletes_once(
    adapter: StreamAdapter,
    adapter_factory: Callable[[], StreamAdapter],
    feed: list[FeedMessage],
) -> None:
    if isinstance(adapter, MemoryStreamAdapter):
        pytest.skip("a memory store has no second instance")
    other = adapter_factory()
    other_feed: list[FeedMessage] = []
    await other.open(other_feed.append)
    try:
        for n in range(20):
            await (adapter if n % 2 else other).set("s", "g", f"k{n}", {"n": n}, ttl=TTL_S)
        await wait_for(
            lambda: (
                len({m.id for m in [*feed, *other_feed] if isinstance(m, Change) and _is_delete(m)})
                == 20
            )
        )
        await adapter.set("s", "g", "later", {}, ttl=TTL_S)
        await wait_for(lambda: bool(deletes(feed, "later") or deletes(other_feed, "later")))
        await settle_feed(adapter, feed)
        await settle_feed(other, other_feed)

        for n in range(20):
            if adapter.is_distributed:  # every instance feeds the one delete
                assert len(deletes(feed, f"k{n}")) == 1
                assert len(deletes(other_feed, f"k{n}")) == 1
            else:  # the instance that deleted it feeds it
                assert len(deletes(feed, f"k{n}")) + len(deletes(other_feed, f"k{n}")) == 1
        assert (await other.get_group("s", "g")).items == []
    finally:
        await other.close()


def _is_delete(message: FeedMessage) -> bool:
    return isinstance(message, Change) and message.kind == "delete"


async def test_set_without_ttl_clears_the_expiry(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    await adapter.set("s", "g", "x", {"v": 1}, ttl=TTL_S)
    await adapter.set("s", "g", "x", {"v": 2})
    await adapter.set("s", "g", "probe", {}, ttl=TTL_S * 2)

    await wait_until_gone(adapter, "probe", feed)

    assert await adapter.get("s", "g", "x") == {"v": 2, "id": "x"}
    assert deletes(feed, "x") == []


async def test_update_keeps_the_expiry_unless_given_a_ttl(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    inc = [{"type": "increment", "path": "n"}]
    await adapter.set("s", "g", "kept", {"n": 0}, ttl=TTL_S)
    await adapter.update("s", "g", "kept", inc)
    await adapter.set("s", "g", "renewed", {"n": 0}, ttl=TTL_S)
    await adapter.update("s", "g", "renewed", inc, ttl=3600)
    created = await adapter.update("s", "g", "made", inc, default_ttl=TTL_S)
    await adapter.update("s", "g", "made", inc, default_ttl=3600)  # not a create: no effect

    await wait_until_gone(adapter, "kept", feed)
    await wait_until_gone(adapter, "made", feed)

    assert created.change.kind == "create"
    assert deletes(feed, "kept")[0].item == {"n": 1, "id": "kept"}
    assert await adapter.get("s", "g", "renewed") == {"n": 1, "id": "renewed"}


async def test_a_delete_before_expiry_feeds_one_delete_only(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    await adapter.set("s", "g", "x", {}, ttl=TTL_S)
    assert await adapter.delete("s", "g", "x") is not None
    await adapter.set("s", "g", "probe", {}, ttl=TTL_S * 2)

    await wait_until_gone(adapter, "probe", feed)
    await settle_feed(adapter, feed)

    assert len(deletes(feed, "x")) == 1


async def test_more_due_items_than_one_sweep_takes_all_expire(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    await asyncio.gather(*(adapter.set("s", "g", f"k{n}", {}, ttl=TTL_S) for n in range(600)))

    await wait_for(lambda: sum(1 for m in feed if _is_delete(m)) == 600)

    assert (await adapter.get_group("s", "g")).items == []


async def test_an_item_that_expired_while_closed_is_gone_at_open(
    adapter: StreamAdapter, adapter_factory: Callable[[], StreamAdapter]
) -> None:
    if isinstance(adapter, MemoryStreamAdapter):
        pytest.skip("a memory store does not outlive its object")
    await adapter.set("s", "g", "x", {"v": 1}, ttl=TTL_S)
    await adapter.set("s", "g", "stays", {"v": 2}, ttl=3600)
    await adapter.close()
    await asyncio.sleep(TTL_S * 2)  # the TTL passes while nothing runs (time, not a condition)

    reopened = adapter_factory()
    reopened_feed: list[FeedMessage] = []
    await reopened.open(reopened_feed.append)
    try:
        assert await reopened.get("s", "g", "x") is None  # right at open, no waiting
        assert await reopened.get("s", "g", "stays") == {"v": 2, "id": "stays"}
    finally:
        await reopened.close()
