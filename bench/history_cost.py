"""What the per-group history costs the file store: sequential ``send`` and ``set``, and
concurrent ``set`` throughput.

Usage: ``PYTHONPATH=<tree>/src .venv/bin/python bench/history_cost.py [--count 2000] [--runs 3]``

Run it once per tree (before/after) and compare. Each run opens a fresh store in a temporary
directory (``synchronous="full"``, the default) and prints the median over ``--runs`` of:
µs per sequential ``send`` (one awaiting caller), µs per sequential ``set``, and sets/s with 64
concurrent writers (group commit).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from surge.streams.stores.file import FileStreamAdapter


async def one_run(count: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = FileStreamAdapter(Path(tmp) / "streams")
        await store.open(lambda message: None)
        try:
            start = time.perf_counter()
            for i in range(count):
                await store.send("bench", f"g{i % 10}", None, {"type": "typing", "data": i})
            send_us = (time.perf_counter() - start) / count * 1e6
            start = time.perf_counter()
            for i in range(count):
                await store.set("bench", f"g{i % 10}", f"i{i % 100}", {"i": i, "text": "hello"})
            set_us = (time.perf_counter() - start) / count * 1e6

            async def writer(w: int) -> None:
                for i in range(count * 4 // 64):
                    await store.set("bench", f"g{i % 100}", f"w{w}-{i % 50}", {"w": w, "i": i})

            start = time.perf_counter()
            await asyncio.gather(*(writer(w) for w in range(64)))
            rate = (count * 4 // 64) * 64 / (time.perf_counter() - start)
        finally:
            await store.close()
    return send_us, set_us, rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = [await one_run(args.count) for _ in range(args.runs)]
    send_us, set_us, rate = (statistics.median(r[i] for r in results) for i in range(3))
    print(f"sequential send: {send_us:8.1f} us   sequential set: {set_us:8.1f} us   ", end="")
    print(f"64 concurrent writers: {rate:8.0f} sets/s   (median of {args.runs})")


if __name__ == "__main__":
    asyncio.run(main())
