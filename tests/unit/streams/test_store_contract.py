"""The ``StreamAdapter`` contract (see ``surge.streams.adapter``), checked on every store.

Where a test looks at the feed right after a write, it goes through ``wait_for_feed`` /
``settle_feed``: no waiting for memory and file (they feed before the writer resumes), a deadline
for redis (its sink runs when the change comes back through pub/sub).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from surge.errors import StoreError, ValidationError
from surge.streams.adapter import StreamAdapter
from surge.streams.feed import Change, EphemeralEvent, FeedMessage

from .conftest import settle_feed, wait_for_feed, wait_until_fed


def changes(feed: list[FeedMessage]) -> list[Change]:
    return [m for m in feed if isinstance(m, Change)]


async def test_adapter_satisfies_the_protocol(adapter: StreamAdapter) -> None:
    assert isinstance(adapter, StreamAdapter)


async def test_set_creates_then_updates_and_returns_the_item_with_its_id(
    adapter: StreamAdapter,
) -> None:
    first = await adapter.set("todo", "inbox", "t1", {"title": "milk"})
    second = await adapter.set("todo", "inbox", "t1", {"title": "bread", "done": True})

    assert (first.kind, first.stream, first.group, first.id) == ("create", "todo", "inbox", "t1")
    assert first.item == {"title": "milk", "id": "t1"}
    assert second.kind == "update"
    assert second.item == {"title": "bread", "done": True, "id": "t1"}
    assert second.seq > first.seq


async def test_set_makes_the_key_win_over_an_id_in_the_item(adapter: StreamAdapter) -> None:
    change = await adapter.set("todo", "inbox", "t1", {"id": "other", "title": "x"})

    assert change.item["id"] == "t1"
    assert await adapter.get("todo", "inbox", "t1") == {"id": "t1", "title": "x"}
    assert await adapter.get("todo", "inbox", "other") is None


async def test_get_returns_the_stored_item_or_none(adapter: StreamAdapter) -> None:
    await adapter.set("todo", "inbox", "t1", {"title": "milk", "tags": ["a", "b"], "n": 1.5})

    assert await adapter.get("todo", "inbox", "t1") == {
        "title": "milk",
        "tags": ["a", "b"],
        "n": 1.5,
        "id": "t1",
    }
    assert await adapter.get("todo", "inbox", "missing") is None
    assert await adapter.get("todo", "other", "t1") is None


async def test_delete_returns_the_deleted_item_and_feeds_it(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    created = await adapter.set("todo", "inbox", "t1", {"title": "milk"})

    deleted = await adapter.delete("todo", "inbox", "t1")

    assert deleted is not None
    assert (deleted.kind, deleted.id, deleted.item) == (
        "delete",
        "t1",
        {"title": "milk", "id": "t1"},
    )
    assert deleted.seq > created.seq
    await wait_until_fed(adapter, feed, deleted)
    assert feed[-1] == deleted
    assert await adapter.get("todo", "inbox", "t1") is None


async def test_delete_of_a_missing_item_returns_none_and_feeds_nothing(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    await adapter.set("todo", "inbox", "t1", {})
    await settle_feed(adapter, feed)
    fed = len(feed)

    assert await adapter.delete("todo", "inbox", "missing") is None
    assert await adapter.delete("todo", "nogroup", "t1") is None
    await settle_feed(adapter, feed)
    assert len(feed) == fed


async def test_get_group_lists_items_in_creation_order(adapter: StreamAdapter) -> None:
    for id in ["c", "a", "b"]:
        await adapter.set("todo", "inbox", id, {"v": 1})
    await adapter.set("todo", "inbox", "a", {"v": 2})  # an update keeps the position
    await adapter.delete("todo", "inbox", "c")
    await adapter.set("todo", "inbox", "c", {"v": 3})  # delete then set goes last

    snapshot = await adapter.get_group("todo", "inbox")

    assert snapshot.items == [{"v": 2, "id": "a"}, {"v": 1, "id": "b"}, {"v": 3, "id": "c"}]


async def test_get_group_of_an_unknown_group_is_empty(adapter: StreamAdapter) -> None:
    snapshot = await adapter.get_group("todo", "nothing")

    assert snapshot.items == []
    assert snapshot.seq >= 0


async def test_groups_and_streams_are_isolated(adapter: StreamAdapter) -> None:
    await adapter.set("s1", "g1", "x", {"at": "s1/g1"})
    await adapter.set("s1", "g2", "x", {"at": "s1/g2"})
    await adapter.set("s2", "g1", "x", {"at": "s2/g1"})

    await adapter.delete("s1", "g2", "x")

    assert await adapter.get("s1", "g1", "x") == {"at": "s1/g1", "id": "x"}
    assert await adapter.get("s1", "g2", "x") is None
    assert await adapter.get("s2", "g1", "x") == {"at": "s2/g1", "id": "x"}
    assert (await adapter.get_group("s1", "g1")).items == [{"at": "s1/g1", "id": "x"}]
    assert (await adapter.get_group("s2", "g1")).items == [{"at": "s2/g1", "id": "x"}]
    assert await adapter.list_groups("s1") == ["g1"]
    assert await adapter.list_groups("s2") == ["g1"]


async def test_snapshot_seq_reflects_exactly_the_changes_up_to_it(adapter: StreamAdapter) -> None:
    before = await adapter.get_group("todo", "inbox")
    created = await adapter.set("todo", "inbox", "t1", {"v": 1})
    after_create = await adapter.get_group("todo", "inbox")
    updated = await adapter.set("todo", "inbox", "t1", {"v": 2})
    after_update = await adapter.get_group("todo", "inbox")

    assert before.seq < created.seq <= after_create.seq < updated.seq <= after_update.seq
    assert after_create.items == [{"v": 1, "id": "t1"}]
    assert after_update.items == [{"v": 2, "id": "t1"}]


async def test_snapshots_taken_during_writes_match_their_seq(adapter: StreamAdapter) -> None:
    # Every snapshot must equal the state obtained by replaying the changes with seq <= its seq.
    snapshots = []
    applied: list[Change] = []

    async def write() -> None:
        for i in range(40):
            applied.append(await adapter.set("s", "g", f"k{i % 7}", {"i": i}))
            if i % 5 == 4:
                deleted = await adapter.delete("s", "g", f"k{(i * 3) % 7}")
                if deleted is not None:
                    applied.append(deleted)

    async def read() -> None:
        for _ in range(20):
            snapshots.append(await adapter.get_group("s", "g"))

    await asyncio.gather(write(), read(), read())

    ordered = sorted(applied, key=lambda c: c.seq)
    for snapshot in snapshots:
        state: dict[str, dict[str, Any]] = {}
        for change in ordered:
            if change.seq > snapshot.seq:
                break
            if change.kind == "delete":
                del state[change.id]
            else:
                state[change.id] = change.item
        assert snapshot.items == list(state.values())


async def test_item_snapshots_taken_during_writes_match_their_seq(adapter: StreamAdapter) -> None:
    snapshots = []
    applied: list[Change] = []

    async def write() -> None:
        for i in range(30):
            applied.append(await adapter.set("s", "g", "k", {"i": i}))
            if i % 4 == 3:
                deleted = await adapter.delete("s", "g", "k")
                assert deleted is not None
                applied.append(deleted)

    async def read() -> None:
        for _ in range(15):
            snapshots.append(await adapter.get_item_snapshot("s", "g", "k"))

    await asyncio.gather(write(), read())

    assert (await adapter.get_item_snapshot("s", "g", "missing")).items == []
    for snapshot in snapshots:
        upto = [c for c in applied if c.seq <= snapshot.seq]
        expected = [] if not upto or upto[-1].kind == "delete" else [upto[-1].item]
        assert snapshot.items == expected


async def test_sink_gets_every_change_once_in_apply_order_before_the_writer_resumes(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    returned: list[Change] = []

    async def write(n: int) -> None:
        for i in range(10):
            change = await adapter.set("s", f"g{n % 3}", f"k{n}-{i % 4}", {"n": n, "i": i})
            await wait_until_fed(adapter, feed, change)  # fed when the writer resumes
            returned.append(change)
            if i % 3 == 2:
                deleted = await adapter.delete("s", f"g{n % 3}", f"k{n}-{i % 4}")
                assert deleted is not None
                await wait_until_fed(adapter, feed, deleted)
                returned.append(deleted)

    await asyncio.gather(*(write(n) for n in range(8)))
    await settle_feed(adapter, feed)

    fed = changes(feed)
    assert len(fed) == len(returned)
    # seq orders the changes of one (stream, group): within each group, the feed carries every
    # change once, in seq order (seqs of different groups are not comparable).
    for group in ("g0", "g1", "g2"):
        fed_group = [c for c in fed if c.group == group]
        returned_group = [c for c in returned if c.group == group]
        assert [c.seq for c in fed_group] == sorted(c.seq for c in returned_group)
        assert len({c.seq for c in fed_group}) == len(fed_group)
        assert sorted(returned_group, key=lambda c: c.seq) == fed_group


async def test_concurrent_first_writes_to_one_key_make_exactly_one_create(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    results = await asyncio.gather(
        *(adapter.set("s", "g", "same", {"writer": n}) for n in range(50))
    )

    assert sorted(c.kind for c in results).count("create") == 1
    await settle_feed(adapter, feed)
    assert [c.kind for c in changes(feed)] == ["create"] + ["update"] * 49
    last = max(results, key=lambda c: c.seq)
    assert await adapter.get("s", "g", "same") == last.item


async def test_concurrent_writes_to_different_keys_all_land(adapter: StreamAdapter) -> None:
    results = await asyncio.gather(*(adapter.set("s", "g", f"k{n}", {"n": n}) for n in range(100)))

    assert all(c.kind == "create" for c in results)
    snapshot = await adapter.get_group("s", "g")
    assert sorted(item["n"] for item in snapshot.items) == list(range(100))
    # creation order is apply order
    assert [item["id"] for item in snapshot.items] == [
        c.id for c in sorted(results, key=lambda c: c.seq)
    ]


async def test_list_groups_reports_groups_with_items_only(adapter: StreamAdapter) -> None:
    assert await adapter.list_groups("s") == []
    await adapter.set("s", "b", "1", {})
    await adapter.set("s", "a", "1", {})
    await adapter.set("s", "c", "1", {})
    await adapter.set("other", "z", "1", {})

    await adapter.delete("s", "c", "1")

    assert await adapter.list_groups("s") == ["a", "b"]


async def test_send_reaches_the_sink_and_is_not_stored(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    await adapter.send("s", "g", None, {"type": "ping", "data": {"n": 1}})
    await adapter.send("s", "g", "item1", {"type": "typing", "data": None})
    await settle_feed(adapter, feed)

    assert feed == [
        EphemeralEvent("s", "g", None, {"type": "ping", "data": {"n": 1}}),
        EphemeralEvent("s", "g", "item1", {"type": "typing", "data": None}),
    ]
    assert await adapter.get("s", "g", "item1") is None
    assert (await adapter.get_group("s", "g")).items == []
    assert await adapter.list_groups("s") == []


@pytest.mark.parametrize(
    "key",
    ["ünïcødé", "日本語", "emoji-🎉", "with space", "a/b\\c", "quote'\"", "%20?#&", "", "x" * 500],
)
async def test_odd_keys_are_stored_verbatim(adapter: StreamAdapter, key: str) -> None:
    await adapter.set(key, key, key, {"k": key})

    assert await adapter.get(key, key, key) == {"k": key, "id": key}
    assert (await adapter.get_group(key, key)).items == [{"k": key, "id": key}]
    assert await adapter.list_groups(key) == [key]


async def test_keys_that_are_not_valid_unicode_are_rejected(adapter: StreamAdapter) -> None:
    with pytest.raises(ValidationError):
        await adapter.set("s", "g", "lone-\ud800", {})
    with pytest.raises(ValidationError):
        await adapter.get("s", "\udfff", "x")


async def test_items_that_are_not_json_are_rejected(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    with pytest.raises(ValidationError):
        await adapter.set("s", "g", "x", {"when": object()})
    await settle_feed(adapter, feed)

    assert feed == []
    assert await adapter.get("s", "g", "x") is None


async def test_items_are_copied_in_and_out(adapter: StreamAdapter) -> None:
    item: dict[str, Any] = {"tags": ["a"], "nested": {"n": 1}}
    change = await adapter.set("s", "g", "x", item)
    item["tags"].append("mutated")
    item["nested"]["n"] = 2
    change.item["tags"].append("mutated")

    got = await adapter.get("s", "g", "x")
    assert got == {"tags": ["a"], "nested": {"n": 1}, "id": "x"}
    assert got is not None
    got["tags"].append("mutated")
    snapshot = await adapter.get_group("s", "g")
    snapshot.items[0]["nested"]["n"] = 3

    assert await adapter.get("s", "g", "x") == {"tags": ["a"], "nested": {"n": 1}, "id": "x"}
    assert (await adapter.get_group("s", "g")).items == [
        {"tags": ["a"], "nested": {"n": 1}, "id": "x"}
    ]


async def test_a_failing_sink_is_logged_and_does_not_fail_the_write(
    adapter_factory: Callable[[], StreamAdapter], caplog: pytest.LogCaptureFixture
) -> None:
    def broken_sink(message: FeedMessage) -> None:
        raise RuntimeError("hub bug")

    store = adapter_factory()
    await store.open(broken_sink)
    try:
        change = await store.set("s", "g", "x", {"v": 1})
        await store.send("s", "g", None, {"type": "t", "data": None})

        def sink_failures() -> list[str]:
            return [r.levelname for r in caplog.records if "feed sink failed" in r.message]

        assert change.kind == "create"
        assert await store.get("s", "g", "x") == {"v": 1, "id": "x"}
        await wait_for_feed(store, lambda: len(sink_failures()) >= 2)
        assert sink_failures() == ["ERROR", "ERROR"]
    finally:
        await store.close()


async def test_calls_after_close_raise_store_error(adapter: StreamAdapter) -> None:
    await adapter.set("s", "g", "x", {})
    await adapter.close()
    await adapter.close()  # idempotent

    with pytest.raises(StoreError):
        await adapter.set("s", "g", "y", {})
    with pytest.raises(StoreError):
        await adapter.delete("s", "g", "x")
    with pytest.raises(StoreError):
        await adapter.get("s", "g", "x")
    with pytest.raises(StoreError):
        await adapter.send("s", "g", None, {"type": "t", "data": None})
