"""The ``update(ops)`` part of the ``StreamAdapter`` contract, checked on every store.

Atomicity is checked where it can break: concurrent increments and appends from two adapter
instances sharing the storage (two file adapters on one directory, two Redis adapters on one
prefix; the memory store has no second instance, so its two "instances" are one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from surge.errors import ConflictError, ValidationError
from surge.streams.adapter import StreamAdapter
from surge.streams.feed import Change, FeedMessage
from surge.streams.ops import apply_ops
from surge.streams.stores.memory import MemoryStreamAdapter

from .conftest import settle_feed, wait_until_fed

pytestmark = pytest.mark.timeout(60)


def changes(feed: list[FeedMessage]) -> list[Change]:
    return [m for m in feed if isinstance(m, Change)]


async def test_update_of_a_missing_item_creates_it_and_feeds_a_create(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    updated = await adapter.update(
        "chat", "c1", "m1", [{"type": "append", "path": "content", "value": "Hel"}]
    )

    assert updated.old is None
    assert (updated.change.kind, updated.change.item) == ("create", {"content": "Hel", "id": "m1"})
    await wait_until_fed(adapter, feed, updated.change)
    assert await adapter.get("chat", "c1", "m1") == {"content": "Hel", "id": "m1"}


async def test_every_op_type_applies_in_order_and_returns_old_and_new(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    await adapter.set("s", "g", "x", {"n": 5, "content": "a", "tags": ["t"], "gone": 1})

    updated = await adapter.update(
        "s",
        "g",
        "x",
        [
            {"type": "increment", "path": "n", "by": 3},
            {"type": "decrement", "path": "n", "by": 1},
            {"type": "append", "path": "content", "value": "bc"},
            {"type": "append", "path": "tags", "value": {"k": 1}},
            {"type": "set", "path": "meta.author.name", "value": "ann"},
            {"type": "merge", "path": "", "value": {"status": "done", "id": "ignored"}},
            {"type": "merge", "path": "meta", "value": {"lang": "en"}},
            {"type": "remove", "path": "gone"},
            {"type": "remove", "path": "never.there"},
        ],
    )

    expected = {
        "n": 7,
        "content": "abc",
        "tags": ["t", {"k": 1}],
        "meta": {"author": {"name": "ann"}, "lang": "en"},
        "status": "done",
        "id": "x",
    }
    assert updated.old == {"n": 5, "content": "a", "tags": ["t"], "gone": 1, "id": "x"}
    assert (updated.change.kind, updated.change.item) == ("update", expected)
    assert await adapter.get("s", "g", "x") == expected
    await wait_until_fed(adapter, feed, updated.change)
    assert changes(feed)[-1].item == expected  # the whole item, as after a set


async def test_set_of_the_whole_item_replaces_it_and_the_key_wins(adapter: StreamAdapter) -> None:
    await adapter.set("s", "g", "x", {"a": 1})

    updated = await adapter.update(
        "s", "g", "x", [{"type": "set", "path": "", "value": {"b": 2, "id": "other"}}]
    )

    assert updated.change.item == {"b": 2, "id": "x"}


@pytest.mark.parametrize(
    ("ops", "index"),
    [
        ([{"type": "explode", "path": "a"}], 0),
        ([{"type": "set", "path": "a", "value": 1}, {"type": "increment", "path": "s"}], 1),
        ([{"type": "append", "path": "n", "value": "x"}], 0),
        ([{"type": "append", "path": "s", "value": 5}], 0),
        ([{"type": "set", "path": "s.deeper", "value": 1}], 0),
        ([{"type": "merge", "path": "s", "value": {"a": 1}}], 0),
        ([{"type": "set", "path": "a..b", "value": 1}], 0),
        ([{"type": "remove", "path": ""}], 0),
        ([{"type": "increment", "path": "n", "by": "1"}], 0),
        ([{"type": "set", "value": 1}], 0),
    ],
)
async def test_invalid_ops_raise_naming_the_op_and_change_nothing(
    adapter: StreamAdapter, feed: list[FeedMessage], ops: list[dict[str, Any]], index: int
) -> None:
    await adapter.set("s", "g", "x", {"n": 1, "s": "text"})
    await settle_feed(adapter, feed)
    fed = len(feed)

    with pytest.raises(ValidationError) as info:
        await adapter.update("s", "g", "x", ops)

    assert info.value.errors[0]["loc"][:2] == ["ops", index]
    assert f"ops[{index}]" in str(info.value)
    assert await adapter.get("s", "g", "x") == {"n": 1, "s": "text", "id": "x"}
    await settle_feed(adapter, feed)
    assert len(feed) == fed


async def test_a_result_the_validator_refuses_changes_nothing(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    await adapter.set("s", "g", "x", {"n": 1})
    await settle_feed(adapter, feed)
    fed = len(feed)
    seen: list[tuple[dict[str, Any], bool]] = []

    def refuse_big_n(item: dict[str, Any], is_new: bool) -> dict[str, Any]:
        seen.append((item, is_new))
        if item.get("n", 0) > 2:
            raise ValidationError("n: too big", [{"loc": ["n"], "msg": "too big", "type": "x"}])
        return {**item, "checked": True}

    with pytest.raises(ValidationError, match="n: too big"):
        await adapter.update(
            "s", "g", "x", [{"type": "increment", "path": "n", "by": 5}], validate=refuse_big_n
        )
    ok = await adapter.update(
        "s", "g", "x", [{"type": "increment", "path": "n"}], validate=refuse_big_n
    )

    assert seen[0] == ({"n": 6, "id": "x"}, False)
    assert ok.change.item == {"n": 2, "checked": True, "id": "x"}  # what validate returns is stored
    await settle_feed(adapter, feed)
    assert changes(feed[fed:]) == [ok.change]


async def test_versions_grow_with_every_change_and_never_repeat(adapter: StreamAdapter) -> None:
    first = await adapter.set("s", "g", "x", {"n": 1})
    second = await adapter.update("s", "g", "x", [{"type": "increment", "path": "n"}])
    deleted = await adapter.delete("s", "g", "x")
    recreated = await adapter.update("s", "g", "x", [{"type": "increment", "path": "n"}])

    assert deleted is not None
    assert first.seq < second.change.seq < deleted.seq < recreated.change.seq
    assert recreated.old is None and recreated.change.item == {"n": 1, "id": "x"}


async def test_if_version_applies_only_at_that_version(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    created = await adapter.set("s", "g", "x", {"n": 1})
    inc = [{"type": "increment", "path": "n"}]

    applied = await adapter.update("s", "g", "x", inc, if_version=created.seq)
    with pytest.raises(ConflictError) as info:
        await adapter.update("s", "g", "x", inc, if_version=created.seq)  # stale now
    await settle_feed(adapter, feed)
    fed = len(feed)
    with pytest.raises(ConflictError):
        await adapter.update("s", "g", "x", inc, if_version=0)  # 0: only if absent

    assert (info.value.expected, info.value.actual) == (created.seq, applied.change.seq)
    assert await adapter.get("s", "g", "x") == {"n": 2, "id": "x"}
    await settle_feed(adapter, feed)
    assert len(feed) == fed
    made = await adapter.update("s", "g", "new", inc, if_version=0)
    assert made.change.kind == "create"
    with pytest.raises(ConflictError) as absent:
        await adapter.update("s", "g", "missing", inc, if_version=5)
    assert absent.value.actual is None


async def _two_instances(
    adapter: StreamAdapter, adapter_factory: Callable[[], StreamAdapter]
) -> tuple[StreamAdapter, list[FeedMessage]]:
    """A second adapter on the same storage (the same object for memory)."""
    if isinstance(adapter, MemoryStreamAdapter):
        return adapter, []
    other = adapter_factory()
    other_feed: list[FeedMessage] = []
    await other.open(other_feed.append)
    return other, other_feed


async def test_50_concurrent_increments_from_two_instances_end_at_exactly_50(
    adapter: StreamAdapter, adapter_factory: Callable[[], StreamAdapter]
) -> None:
    other, _ = await _two_instances(adapter, adapter_factory)
    try:
        inc = [{"type": "increment", "path": "count", "by": 1}]
        results = await asyncio.gather(
            *((adapter if n % 2 else other).update("s", "g", "counter", inc) for n in range(50))
        )
        assert await adapter.get("s", "g", "counter") == {"count": 50, "id": "counter"}
        assert await other.get("s", "g", "counter") == {"count": 50, "id": "counter"}
        # Every update saw a distinct predecessor: the counts returned are exactly 1..50.
        assert sorted(r.change.item["count"] for r in results) == list(range(1, 51))
        assert [r.change.kind for r in results].count("create") == 1
    finally:
        if other is not adapter:
            await other.close()


async def test_append_from_10_concurrent_writers_loses_no_fragment(
    adapter: StreamAdapter, adapter_factory: Callable[[], StreamAdapter]
) -> None:
    other, _ = await _two_instances(adapter, adapter_factory)
    await adapter.set("chat", "c", "reply", {"content": "", "tokens": []})

    async def writer(w: int) -> None:
        store = adapter if w % 2 else other
        for i in range(8):
            fragment = f"<{w}.{i}>"
            await store.update(
                "chat",
                "c",
                "reply",
                [
                    {"type": "append", "path": "content", "value": fragment},
                    {"type": "append", "path": "tokens", "value": fragment},
                ],
            )

    try:
        await asyncio.gather(*(writer(w) for w in range(10)))
        item = await adapter.get("chat", "c", "reply")
        assert item is not None
        expected = sorted(f"<{w}.{i}>" for w in range(10) for i in range(8))
        assert sorted(item["tokens"]) == expected
        assert "".join(item["tokens"]) == item["content"]  # both ops of an update land together
        for w in range(10):  # each writer's fragments in its own order
            mine = [t for t in item["tokens"] if t.startswith(f"<{w}.")]
            assert mine == [f"<{w}.{i}>" for i in range(8)]
    finally:
        if other is not adapter:
            await other.close()


async def test_each_update_is_fed_once_in_seq_order(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    results = await asyncio.gather(
        *(
            adapter.update("s", "g", f"k{n % 3}", [{"type": "increment", "path": "n"}])
            for n in range(30)
        )
    )
    await settle_feed(adapter, feed)

    fed = changes(feed)
    assert sorted(fed, key=lambda c: c.seq) == fed
    assert sorted(c.seq for c in fed) == sorted(r.change.seq for r in results)


# -- deltas: the ops a change carries for subscribers (protocol.md section 4) --------------------


async def test_an_update_of_an_existing_item_carries_ops_that_rebuild_it_on_every_instance(
    adapter: StreamAdapter,
    adapter_factory: Callable[[], StreamAdapter],
    feed: list[FeedMessage],
) -> None:
    other, other_feed = await _two_instances(adapter, adapter_factory)
    try:
        await adapter.set("chat", "c", "m", {"content": "Hel", "n": 1, "meta": {"a": 1}})
        ops: list[dict[str, Any]] = [
            {"type": "append", "path": "content", "value": "lo"},
            {"type": "increment", "path": "n", "by": 2},
            {"type": "merge", "path": "meta", "value": {"b": [1]}},
            {"type": "remove", "path": "meta.a"},
        ]

        updated = await other.update("chat", "c", "m", ops)

        change = updated.change
        assert change.kind == "update" and change.ops == ops
        assert updated.old is not None
        assert apply_ops(updated.old, change.ops, "m") == change.item
        # The writer's own sink, and with a distributed store every other instance's too.
        await wait_until_fed(other, feed if other is adapter else other_feed, change)
        if adapter.is_distributed:
            await wait_until_fed(adapter, feed, change)
    finally:
        if other is not adapter:
            await other.close()


async def test_creates_sets_and_deletes_carry_no_ops(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    created = await adapter.update("s", "g", "x", [{"type": "set", "path": "a", "value": 1}])
    replaced = await adapter.set("s", "g", "x", {"a": 2})
    deleted = await adapter.delete("s", "g", "x")

    assert deleted is not None
    assert (created.change.kind, created.change.ops) == ("create", None)
    assert replaced.ops is None and deleted.ops is None
    await settle_feed(adapter, feed)
    assert [c.ops for c in changes(feed)] == [None, None, None]


async def test_an_update_the_schema_changed_carries_no_ops(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    await adapter.set("s", "g", "x", {"n": 1, "flag": False})

    def coerce(item: dict[str, Any], is_new: bool) -> dict[str, Any]:
        return {**item, "n": int(item["n"]), "flag": bool(item["flag"])}  # 1 -> True, 2.0 -> 2

    coerced = await adapter.update(
        "s", "g", "x", [{"type": "set", "path": "flag", "value": 1}], validate=coerce
    )
    kept = await adapter.update(
        "s", "g", "x", [{"type": "increment", "path": "n", "by": 1}], validate=coerce
    )

    assert coerced.change.item["flag"] is True and coerced.change.ops is None
    assert kept.change.item == {"n": 2, "flag": True, "id": "x"}
    assert kept.change.ops == [{"type": "increment", "path": "n", "by": 1}]
    await settle_feed(adapter, feed)
    assert [c.ops for c in changes(feed)][-2:] == [None, kept.change.ops]


async def test_the_ops_of_a_change_hold_only_what_apply_ops_reads_and_their_own_values(
    adapter: StreamAdapter,
) -> None:
    await adapter.set("s", "g", "x", {"tags": []})
    value = {"k": [1]}
    op = {"type": "append", "path": "tags", "value": value, "note": object()}

    updated = await adapter.update("s", "g", "x", [op])
    value["k"].append(2)  # the caller's value changes afterwards

    assert updated.change.ops == [{"type": "append", "path": "tags", "value": {"k": [1]}}]
