"""Measure ``set`` throughput of the built-in stores with N concurrent writers.

Usage: ``.venv/bin/python bench/store_bench.py [--count 20000] [--writers 1 64]``

Each run opens a fresh store (file stores in a temporary directory), lets ``writers`` tasks share
``count`` sets of a small item over 100 groups, and prints sets per second. For the file store it
also prints the transactions used: group commit shows as writes per transaction above 1.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from surge.streams.adapter import StreamAdapter
from surge.streams.stores.file import FileStreamAdapter
from surge.streams.stores.memory import MemoryStreamAdapter


async def run(make: Callable[[], StreamAdapter], writers: int, count: int) -> tuple[float, str]:
    """Return (sets per second, extra info) for one store and one writer count."""
    store = make()
    delivered = 0

    def sink(message: object) -> None:
        nonlocal delivered
        delivered += 1

    await store.open(sink)
    per_writer = count // writers

    async def writer(w: int) -> None:
        for i in range(per_writer):
            await store.set("bench", f"g{i % 100}", f"w{w}-{i}", {"w": w, "i": i, "text": "hello"})

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - start
    await store.close()
    total = per_writer * writers
    if delivered != total:
        raise RuntimeError(f"sink got {delivered} changes for {total} sets")
    info = ""
    stats = getattr(store, "stats", None)
    if stats is not None:
        info = f"{stats.transactions} tx, {total / max(stats.transactions, 1):.1f} writes/tx"
    return total / elapsed, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="sets per run")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 64])
    args = parser.parse_args()

    print(f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, {args.count} sets")
    with tempfile.TemporaryDirectory(prefix="surge-bench-") as tmp:
        runs = 0

        def file_store(synchronous: str) -> Callable[[], StreamAdapter]:
            def make() -> StreamAdapter:
                nonlocal runs
                runs += 1
                return FileStreamAdapter(Path(tmp) / str(runs), synchronous=synchronous)  # type: ignore[arg-type]

            return make

        stores: dict[str, Callable[[], StreamAdapter]] = {
            "memory": MemoryStreamAdapter,
            "file (full)": file_store("full"),
            "file (normal)": file_store("normal"),
        }
        for name, make in stores.items():
            for writers in args.writers:
                rate, info = asyncio.run(run(make, writers, args.count))
                print(f"{name:14} writers={writers:<4} {rate:>10,.0f} set/s  {info}")


if __name__ == "__main__":
    main()
