"""What metrics add to one fanned-out change, measured in-process (no sockets, no other load).

    .venv/bin/python bench/metrics_cost.py --subs 1000 --changes 20000 --rounds 5

Per change, metrics add: the ``TimedAdapter`` around the store write (two ``perf_counter`` calls
and a histogram observation), the API request histogram (one observation per request) and the
hub's fan-out sampling (a countdown; one change in 16 schedules a callback that observes the
fan-out histogram). Per delivered frame they add nothing: the outbox counters are plain integer
additions made with metrics on or off. So the cost per delivery is the per-change cost divided by
the subscribers. This script times each piece both ways in this thread's CPU time
(``time.thread_time``: time the machine gave to other work does not count), alternating off/on
batches, and prints the per-change and per-delivery difference (medians over the batches).

The hub's part is timed with real ``Hub.dispatch`` to ``--subs`` recording connections; the
store's with ``MemoryStreamAdapter.set`` bare and wrapped.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

from surge.protocol.codec import Frame
from surge.protocol.messages import SubscriptionRequest
from surge.server.hub import Hub
from surge.streams.feed import Change
from surge.streams.stores.memory import MemoryStreamAdapter
from surge.streams.timed import TimedAdapter


class _Conn:
    """A connection that only counts what it was sent (the hub's side of the fan-out)."""

    __slots__ = ("sent",)
    pending_limit = 4096

    def __init__(self) -> None:
        self.sent = 0

    def send(self, frame: Frame) -> None:
        self.sent += 1

    def drop_slow(self) -> None:
        pass


def _hub(subs: int, observe: Any) -> Hub:
    hub = Hub()
    for n in range(subs):
        request = SubscriptionRequest(stream="todo", group="g", id=None, subscription_id=f"s{n}")
        sub = hub.subscribe(_Conn(), request)  # type: ignore[arg-type]
        sub.pending = None  # live
    hub.on_fanout = observe
    return hub


async def _time_dispatch(hub: Hub, changes: int) -> float:
    item = {"id": "a", "description": "x" * 40}
    start = time.thread_time()
    for seq in range(changes):
        hub.dispatch(Change("update", "todo", "g", "a", item, seq))
        if seq % 64 == 0:
            await asyncio.sleep(0)  # let the sampled callbacks run, as the loop would
    await asyncio.sleep(0)
    return (time.thread_time() - start) / changes


async def _time_sets(adapter: Any, changes: int) -> float:
    item = {"id": "a", "description": "x" * 40}
    start = time.thread_time()
    for _ in range(changes):
        await adapter.set("todo", "g", "a", item)
    return (time.thread_time() - start) / changes


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subs", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    registry = CollectorRegistry()
    fanout = Histogram("fanout_seconds", "", registry=registry)
    store = Histogram("store_seconds", "", ["store", "operation"], registry=registry)
    requests = Histogram("request_seconds", "", ["step", "status"], registry=registry)
    timer = store.labels("memory", "set")

    def observe_store(operation: str, seconds: float, ok: bool) -> None:
        timer.observe(seconds)

    def fanned_out(start: float) -> None:
        fanout.observe(time.perf_counter() - start)

    bare = MemoryStreamAdapter()
    await bare.open(lambda message: None)
    wrapped_inner = MemoryStreamAdapter()
    await wrapped_inner.open(lambda message: None)
    wrapped = TimedAdapter(wrapped_inner, observe_store)
    hubs = (_hub(args.subs, None), _hub(args.subs, fanned_out))
    sides: dict[str, tuple[list[float], list[float]]] = {
        k: ([], []) for k in ("hub", "store", "request")
    }
    batch = max(args.changes // 10, 16)
    for _ in range(args.rounds * 10):
        sides["hub"][0].append(await _time_dispatch(hubs[0], batch // 8))
        sides["hub"][1].append(await _time_dispatch(hubs[1], batch // 8))
        sides["store"][0].append(await _time_sets(bare, batch))
        sides["store"][1].append(await _time_sets(wrapped, batch))
        start = time.thread_time()
        for _ in range(batch):
            pass
        empty = time.thread_time() - start
        start = time.thread_time()
        for _ in range(batch):
            requests.labels("CreateTodo", "201").observe(0.001)
        sides["request"][0].append(empty / batch)
        sides["request"][1].append((time.thread_time() - start) / batch)
    results = {
        name: [statistics.median(on) - statistics.median(off)] for name, (off, on) in sides.items()
    }
    hub_off = statistics.median(sides["hub"][0]) * 1e6
    print(f"hub.dispatch to {args.subs} connections, metrics off: {hub_off:.1f} µs per change")

    per_change = {k: statistics.median(v) * 1e6 for k, v in results.items()}
    total = sum(per_change.values())
    print(f"subscribers per change: {args.subs}; {args.rounds * 10} batches each way (medians)")
    for name, us in per_change.items():
        print(f"  {name:<8} {us:+8.3f} µs per change")
    per_delivery = total / args.subs * 1000
    print(f"  total    {total:+8.3f} µs per change = {per_delivery:+.2f} ns per delivery")


if __name__ == "__main__":
    asyncio.run(main())
