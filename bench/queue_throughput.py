"""Queue throughput: publish, then receive + ack, messages per second for each backend.

    .venv/bin/python bench/queue_throughput.py [--messages 5000] [--concurrency 50]
        [--redis redis://127.0.0.1:6379/0] [--backends sqlite-file,sqlite-memory,redis]

Publishes come from ``--concurrency`` tasks at once (as concurrent ``emit`` calls do, so the
SQLite writer can group-commit them); consumers receive in batches of ``--batch`` and ack each.
Prints one line per backend. Numbers, not a test: see bench/README.md for the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from surge.queues import Envelope, MessageQueue, SqliteQueue


async def run(queue: MessageQueue, messages: int, concurrency: int, batch: int) -> str:
    await queue.open()
    try:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        per_task = messages // concurrency

        async def publisher() -> None:
            for n in range(per_task):
                await queue.publish([name], Envelope("bench", {"n": n}, "trace"))

        start = time.perf_counter()
        await asyncio.gather(*(publisher() for _ in range(concurrency)))
        published = time.perf_counter() - start
        total = per_task * concurrency

        done = 0

        async def consumer(index: int) -> None:
            nonlocal done
            while done < total:
                got = await queue.receive(name, consumer=f"c{index}", limit=batch, lease=60)
                if not got:
                    await queue.wait(name, 0.05)
                    continue
                await asyncio.gather(*(queue.ack(d) for d in got))
                done += len(got)

        start = time.perf_counter()
        await asyncio.gather(*(consumer(i) for i in range(4)))
        consumed = time.perf_counter() - start
        return (
            f"publish {total / published:>9,.0f} msg/s   "
            f"receive+ack {total / consumed:>9,.0f} msg/s   ({total} messages)"
        )
    finally:
        await queue.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--backends", default="sqlite-file,sqlite-memory,redis")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for backend in args.backends.split(","):
            queue: MessageQueue
            if backend == "sqlite-file":
                queue = SqliteQueue(Path(directory) / "queues.db")
            elif backend == "sqlite-memory":
                queue = SqliteQueue(":memory:")
            elif backend == "redis":
                from surge.queues.redis import RedisStreamsQueue

                prefix = f"surge-bench-{uuid.uuid4().hex[:8]}"
                queue = RedisStreamsQueue(args.redis, prefix=prefix)
            else:
                raise SystemExit(f"unknown backend {backend!r}")
            line = await run(queue, args.messages, args.concurrency, args.batch)
            print(f"{backend:<14} {line}", flush=True)
            if backend == "redis":
                import redis

                with redis.Redis.from_url(args.redis) as client:
                    keys = list(client.scan_iter(match=f"{prefix}:*"))
                    if keys:
                        client.delete(*keys)


if __name__ == "__main__":
    asyncio.run(main())
