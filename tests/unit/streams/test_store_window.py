"""Windowed reads, part of the ``StreamAdapter`` contract: ``get_group(limit=, before=)`` on every
store (protocol.md section 5)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from surge.errors import ValidationError
from surge.streams.adapter import StreamAdapter
from surge.streams.feed import FeedMessage
from surge.streams.stores.file import _GET_BEFORE, FileStreamAdapter

from .conftest import settle_feed

pytestmark = pytest.mark.timeout(120)


async def fill(adapter: StreamAdapter, count: int, group: str = "c1") -> None:
    for n in range(count):
        await adapter.set("chat", group, f"m{n:03}", {"n": n})


def ids(items: list[dict[str, object]]) -> list[object]:
    return [item["id"] for item in items]


async def page_through(adapter: StreamAdapter, limit: int) -> list[list[object]]:
    """Every page from the newest back, as lists of ids."""
    snapshot = await adapter.get_group("chat", "c1", limit=limit)
    pages = [ids(snapshot.items)]
    while snapshot.more is not None:
        snapshot = await adapter.get_group("chat", "c1", limit=limit, before=snapshot.more)
        pages.append(ids(snapshot.items))
    return pages


async def test_a_limit_returns_the_newest_items_in_creation_order_with_a_cursor(
    adapter: StreamAdapter,
) -> None:
    await fill(adapter, 10)

    snapshot = await adapter.get_group("chat", "c1", limit=3)

    assert ids(snapshot.items) == ["m007", "m008", "m009"]
    assert isinstance(snapshot.more, str)
    assert snapshot.seq == (await adapter.get_group("chat", "c1")).seq


async def test_paging_back_returns_every_item_once_in_order(adapter: StreamAdapter) -> None:
    await fill(adapter, 10)

    pages = await page_through(adapter, 3)

    assert pages == [
        ["m007", "m008", "m009"],
        ["m004", "m005", "m006"],
        ["m001", "m002", "m003"],
        ["m000"],
    ]


async def test_a_group_that_fits_the_limit_has_no_cursor(adapter: StreamAdapter) -> None:
    await fill(adapter, 3)

    exact = await adapter.get_group("chat", "c1", limit=3)
    larger = await adapter.get_group("chat", "c1", limit=50)
    empty = await adapter.get_group("chat", "nothing", limit=5)

    assert ids(exact.items) == ids(larger.items) == ["m000", "m001", "m002"]
    assert exact.more is None and larger.more is None
    assert (empty.items, empty.more) == ([], None)


async def test_before_without_a_limit_returns_all_older_items(adapter: StreamAdapter) -> None:
    await fill(adapter, 6)
    newest = await adapter.get_group("chat", "c1", limit=2)
    assert newest.more is not None

    rest = await adapter.get_group("chat", "c1", before=newest.more)

    assert ids(rest.items) == ["m000", "m001", "m002", "m003"]
    assert rest.more is None


async def test_a_whole_group_read_has_no_cursor(adapter: StreamAdapter) -> None:
    await fill(adapter, 4)

    assert (await adapter.get_group("chat", "c1")).more is None


async def test_cursors_survive_changes_updates_keep_places_and_new_items_stay_out(
    adapter: StreamAdapter,
) -> None:
    await fill(adapter, 8)
    newest = await adapter.get_group("chat", "c1", limit=3)  # m005..m007
    assert newest.more is not None

    await adapter.delete("chat", "c1", "m005")  # the item the cursor names
    await adapter.update("chat", "c1", "m003", [{"type": "set", "path": "edited", "value": True}])
    await adapter.delete("chat", "c1", "m001")
    await adapter.set("chat", "c1", "m001", {"n": 1})  # re-created: now the newest
    await adapter.set("chat", "c1", "new", {"n": 99})
    older = await adapter.get_group("chat", "c1", limit=3, before=newest.more)

    assert ids(older.items) == ["m002", "m003", "m004"]
    assert older.items[1]["edited"] is True
    assert older.more is not None
    last = await adapter.get_group("chat", "c1", limit=3, before=older.more)
    assert (ids(last.items), last.more) == (["m000"], None)
    assert ids((await adapter.get_group("chat", "c1", limit=2)).items) == ["m001", "new"]


async def test_groups_are_windowed_separately(adapter: StreamAdapter) -> None:
    await fill(adapter, 4, "a")
    await fill(adapter, 4, "b")

    a = await adapter.get_group("chat", "a", limit=2)
    assert a.more is not None
    b_before = await adapter.get_group("chat", "b", limit=2, before=a.more)

    assert ids(a.items) == ["m002", "m003"]
    # Cursors name a position in their own group only; another group's cursor still reads
    # that group's items, never the first group's.
    assert all(item["id"] in {"m000", "m001", "m002", "m003"} for item in b_before.items)


@pytest.mark.parametrize(
    ("limit", "before"),
    [
        *((limit, None) for limit in (0, -1, True, 2.0, "5")),
        *((None, before) for before in ("", "abc", "-3", "1" * 21, 5, "١٢")),
    ],
)
async def test_a_bad_limit_or_cursor_raises_naming_it(
    adapter: StreamAdapter, limit: object, before: object
) -> None:
    await fill(adapter, 2)

    with pytest.raises(ValidationError) as info:
        await adapter.get_group("chat", "c1", limit=limit, before=before)  # type: ignore[arg-type]

    assert info.value.errors[0]["loc"] == ["limit" if limit is not None else "before"]


async def test_a_huge_cursor_reads_from_the_newest(adapter: StreamAdapter) -> None:
    await fill(adapter, 3)

    snapshot = await adapter.get_group("chat", "c1", limit=2, before="9" * 20)

    assert ids(snapshot.items) == ["m001", "m002"]


async def test_windowed_reads_do_not_feed_anything(
    adapter: StreamAdapter, feed: list[FeedMessage]
) -> None:
    await fill(adapter, 3)
    await settle_feed(adapter, feed)
    fed = len(feed)

    await adapter.get_group("chat", "c1", limit=1)

    await settle_feed(adapter, feed)
    assert len(feed) == fed


async def test_file_store_pages_are_an_index_walk_whatever_the_group_size(
    tmp_path: Path,
) -> None:
    """Bounded cost: a page reads its rows off the creation index, never scans the group (the
    100,000-message group of the integration tests opens with its last 50 because of this)."""
    store = FileStreamAdapter(tmp_path / "big", synchronous="normal")
    await store.open(lambda message: None)
    try:
        await asyncio.gather(*(store.set("chat", "big", f"m{n:05}", {"n": n}) for n in range(2000)))
        newest = await store.get_group("chat", "big", limit=50)
        deep = newest
        for _ in range(20):
            assert deep.more is not None
            deep = await store.get_group("chat", "big", limit=50, before=deep.more)
    finally:
        await store.close()

    assert [item["n"] for item in newest.items] == list(range(1950, 2000))
    assert [item["n"] for item in deep.items] == list(range(950, 1000))
    with sqlite3.connect(store.path) as conn:
        plan = conn.execute(
            f"EXPLAIN QUERY PLAN {_GET_BEFORE}", ("chat", "big", 2**63 - 1, 51)
        ).fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "items_by_creation" in details and "TEMP B-TREE" not in details, details
