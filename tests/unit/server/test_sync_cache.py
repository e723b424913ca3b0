"""The sync cache: one load per key until the key changes, shared by concurrent joins."""

from __future__ import annotations

import asyncio

import pytest

from surge.protocol.codec import Frame
from surge.server.sync_cache import CachedSync, SyncCache


def loader(calls: list[int], seq: int = 1, gate: asyncio.Event | None = None):  # type: ignore[no-untyped-def]
    async def load() -> CachedSync:
        calls.append(seq)
        if gate is not None:
            await gate.wait()
        return Frame(seq, f'{{"timestamp":{seq},"n":{len(calls)}}}'), seq

    return load


async def test_repeated_joins_of_one_key_load_once() -> None:
    cache = SyncCache()
    calls: list[int] = []
    first = await cache.get(("todo", "g"), loader(calls))
    for _ in range(10):
        assert await cache.get(("todo", "g"), loader(calls)) == first
    assert calls == [1]
    assert (cache.hits, cache.misses) == (10, 1)


async def test_a_change_of_the_group_or_of_an_item_drops_the_entries() -> None:
    cache = SyncCache()
    calls: list[int] = []
    await cache.get(("todo", "g"), loader(calls))
    await cache.get(("todo", "g", "t1"), loader(calls))
    await cache.get(("todo", "h"), loader(calls))
    cache.invalidate("todo", "g", "t1")
    assert len(cache) == 1  # only group h is left
    await cache.get(("todo", "g"), loader(calls, seq=2))
    assert calls == [1, 1, 1, 2]


async def test_concurrent_joins_share_one_load() -> None:
    cache = SyncCache()
    calls: list[int] = []
    gate = asyncio.Event()
    tasks = [
        asyncio.create_task(cache.get(("todo", "g"), loader(calls, gate=gate))) for _ in range(5)
    ]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert calls == [1]
    assert len({id(r[0]) for r in results}) == 1


async def test_a_load_older_than_a_change_is_neither_shared_nor_stored() -> None:
    cache = SyncCache()
    calls: list[int] = []
    gate = asyncio.Event()
    old = asyncio.create_task(cache.get(("todo", "g"), loader(calls, seq=1, gate=gate)))
    await asyncio.sleep(0)
    cache.invalidate("todo", "g", "t1")  # a change dispatched while the first read runs
    fresh = await cache.get(("todo", "g"), loader(calls, seq=2))
    gate.set()
    assert (await old)[1] == 1
    assert fresh[1] == 2
    assert calls == [1, 2]
    assert (await cache.get(("todo", "g"), loader(calls, seq=3)))[1] == 2


async def test_a_cancelled_loader_makes_its_waiters_load_again() -> None:
    cache = SyncCache()
    calls: list[int] = []
    gate = asyncio.Event()
    first = asyncio.create_task(cache.get(("todo", "g"), loader(calls, gate=gate)))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.get(("todo", "g"), loader(calls, seq=7)))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert (await second)[1] == 7


async def test_a_failed_load_fails_every_waiter_and_is_not_stored() -> None:
    cache = SyncCache()
    gate = asyncio.Event()

    async def failing() -> CachedSync:
        await gate.wait()
        raise RuntimeError("store down")

    tasks = [asyncio.create_task(cache.get(("todo", "g"), failing)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    for task in tasks:
        with pytest.raises(RuntimeError):
            await task
    assert len(cache) == 0


async def test_the_cache_stays_within_its_byte_budget() -> None:
    cache = SyncCache(max_bytes=4000)
    for n in range(50):
        text = '{"timestamp":1,"x":"' + "y" * 200 + f'","n":{n}}}'

        async def load(text: str = text) -> CachedSync:
            return Frame(1, text), 1

        await cache.get(("todo", f"g{n}"), load)
    assert 0 < len(cache) < 50
    assert sum(sync.size for (sync, _), _size in cache._entries.values()) <= 4000
