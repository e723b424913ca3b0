"""Windowed reads, part of the ``StreamAdapter`` contract: ``get_group(limit=, before=)`` on every
store (protocol.md section 5)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
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


async def test_the_newest_50_of_100000_on_the_file_store_take_about_as_long_as_of_50(
    tmp_path: Path,
) -> None:
    """A chat group of 100,000 messages opens with its last 50, in bounded time."""
    store = FileStreamAdapter(tmp_path / "big", synchronous="normal")
    await store.open(lambda message: None)
    try:
        for start in range(0, 100_000, 5_000):
            # One transaction per burst: group commit writes them together.
            await _burst(store, start, 5_000)
        began = time.perf_counter()
        newest = await store.get_group("chat", "big", limit=50)
        first_page_s = time.perf_counter() - began
        began = time.perf_counter()
        deep = await store.get_group("chat", "big", limit=50, before=newest.more)
        for _ in range(20):
            assert deep.more is not None
            deep = await store.get_group("chat", "big", limit=50, before=deep.more)
        paging_s = time.perf_counter() - began
    finally:
        await store.close()

    assert [item["n"] for item in newest.items] == list(range(99_950, 100_000))
    assert [item["n"] for item in deep.items] == list(range(98_900, 98_950))
    # Bounded: an index walk of 51 rows, not a scan of 100,000 (which takes seconds here).
    # Generous for a loaded machine; a full scan and decode misses it by far.
    assert first_page_s < 1.0, first_page_s
    assert paging_s < 5.0, paging_s
    # And the reason it stays bounded: the page is an index walk, never a scan of the group.
    with sqlite3.connect(store.path) as conn:
        plan = conn.execute(
            f"EXPLAIN QUERY PLAN {_GET_BEFORE}", ("chat", "big", 2**63 - 1, 51)
        ).fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "items_by_creation" in details and "TEMP B-TREE" not in details, details


async def _burst(store: FileStreamAdapter, start: int, count: int) -> None:
    items = range(start, start + count)
    await asyncio.gather(
        *(store.set("chat", "big", f"m{n:06}", {"n": n, "text": "x" * 40}) for n in items)
    )
