"""The replay cache: shared loads, invalidation by group (also of a load in flight), the budget."""

from __future__ import annotations

import asyncio

from surge.protocol.blocks import FrameBlock
from surge.protocol.codec import Frame
from surge.server.replay_cache import Replay, ReplayCache


def replay(n: int, size: int = 100) -> Replay:
    return FrameBlock([Frame(1, '{"timestamp":1,"x":"' + "y" * size + f'","n":{n}}}')]), n


async def test_concurrent_resumes_from_one_offset_share_one_load() -> None:
    cache = ReplayCache()
    loads = 0

    async def load() -> Replay:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return replay(7)

    key = (("todo", "g"), 5, False)
    results = await asyncio.gather(*(cache.get(key, load) for _ in range(20)))
    assert loads == 1 and all(r == results[0] for r in results)
    assert await cache.get(key, load) == results[0] and loads == 1  # now cached
    assert cache.hits == 20 and cache.misses == 1


async def test_a_message_of_the_group_during_the_load_keeps_it_out_of_the_cache() -> None:
    cache = ReplayCache()
    started = asyncio.Event()

    async def slow() -> Replay:
        started.set()
        await asyncio.sleep(0.01)
        return replay(1)

    key = (("todo", "g"), 0, False)
    task = asyncio.create_task(cache.get(key, slow))
    await started.wait()
    cache.invalidate("todo", "g")  # a change was dispatched while the history was read
    assert await task == replay(1)  # its caller still gets an answer...
    assert len(cache) == 0  # ...which no later caller will reuse
    cache.invalidate("todo", "other")  # nothing else is touched


async def test_the_budget_evicts_the_oldest_and_forgets_their_groups() -> None:
    cache = ReplayCache(max_bytes=1000)
    for n in range(20):

        async def load(n: int = n) -> Replay:
            return replay(n, size=40)  # ~75 bytes, counted twice (frames and joined block)

        await cache.get((("todo", f"g{n}"), 0, False), load)
    assert 0 < len(cache) < 20
    assert sum(size for _, size in cache._entries.values()) <= 1000
    # Evicted keys left no index behind: only the groups still cached are tracked.
    assert set(cache._by_group) == {key[0][:2] for key in cache._entries}
    assert all(size == 2 * value[0].size for value, size in cache._entries.values() if value)
    cache.clear()
    assert len(cache) == 0 and not cache._by_group
