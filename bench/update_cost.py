"""What one ``Stream.update`` append costs on a store, in process (issue 14's token path).

    .venv/bin/python bench/update_cost.py                      # file store, fsync per commit
    .venv/bin/python bench/update_cost.py --store memory file --answers 200 --tokens 200
    .venv/bin/python bench/update_cost.py --profile /tmp/update.txt   # py-spy raw stacks

``--answers`` tasks each create one item of their own group (the token bench's ``Answer``
model), then await ``--tokens`` updates with one ``append`` op each, as fast as the store takes
them (no pacing: this measures the cost, not the schedule). A sink stands in for the hub: it
encodes every change the way the hub does for a delta subscriber (``encode_patch``), so the
number includes the one encode per change the server pays anyway.

Reported: updates/s, CPU per update (the process's, every thread: the loop and the store's
writer), commits (transactions) and updates per commit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel

from surge.protocol.codec import encode_change, encode_patch
from surge.steps.config import StreamConfig
from surge.streams.adapter import StreamAdapter
from surge.streams.feed import Change, FeedMessage
from surge.streams.stores.file import FileStreamAdapter
from surge.streams.stores.memory import MemoryStreamAdapter
from surge.streams.stream import Stream

WORDS = (" the", " a", " stream", " of", " tokens", " is", " fast", " and", " small", " here")


class Answer(BaseModel):
    id: str
    role: str = "assistant"
    content: str = ""
    status: str = "streaming"
    startNs: int = 0


async def run(store: StreamAdapter, answers: int, tokens: int) -> dict[str, float]:
    """Run the workload on an unopened ``store``; return its numbers."""
    encoded = 0

    def sink(message: FeedMessage) -> None:
        nonlocal encoded
        if isinstance(message, Change):
            if message.ops is not None:
                encode_patch(message, 1, "e").wire  # noqa: B018 (the encode is the point)
            else:
                encode_change(message, 1, "e").wire  # noqa: B018
            encoded += 1

    await store.open(sink)
    stream = Stream(StreamConfig(name="answer", schema=Answer), store)

    async def answer(k: int) -> None:
        group, item = f"a{k}", f"m{k}"
        await stream.set(group, item, {"id": item})
        for i in range(tokens):
            op = {"type": "append", "path": "content", "value": WORDS[i % len(WORDS)]}
            await stream.update(group, item, [op])

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(answer(k) for k in range(answers)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await store.close()
    updates = answers * tokens
    stats = getattr(store, "stats", None)
    commits = float(stats.transactions) if stats is not None else 0.0
    if encoded != updates + answers:
        raise RuntimeError(f"sink saw {encoded} changes, expected {updates + answers}")
    return {
        "updates_per_s": updates / wall,
        "cpu_us_per_update": 1e6 * cpu / updates,
        "cpu_pct": 100 * cpu / wall,
        "commits": commits,
        "updates_per_commit": updates / commits if commits else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", nargs="+", default=["file"], choices=["file", "memory"])
    parser.add_argument("--answers", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--synchronous", choices=["full", "normal"], default="full")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy raw stacks into FILE")
    args = parser.parse_args()
    spy = None
    if args.profile is not None:
        py_spy = str(Path(sys.executable).parent / "py-spy")
        cmd = [py_spy, "record", "--pid", str(os.getpid()), "--rate", "250", "--nonblocking"]
        cmd += ["--format", "raw", "-o", str(args.profile)]
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    try:
        for name in args.store:
            with tempfile.TemporaryDirectory() as tmp:
                store: StreamAdapter = (
                    FileStreamAdapter(tmp, synchronous=args.synchronous)
                    if name == "file"
                    else MemoryStreamAdapter()
                )
                r = asyncio.run(run(store, args.answers, args.tokens))
            print(
                f"{name:7} {args.answers} answers x {args.tokens} appends: "
                f"{r['updates_per_s']:8,.0f} updates/s  {r['cpu_us_per_update']:6.1f} µs CPU/update"
                f"  ({r['cpu_pct']:.0f}% of a core)  {r['updates_per_commit']:.1f} updates/commit"
            )
    finally:
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)


if __name__ == "__main__":
    main()
