"""The event step: a trivial handler, one stream ``set`` per event (subscribers get a frame)."""

import itertools
import os
import time
from typing import Any

from steps.bench_state import LATENCIES_NS
from surge import EventConfig, FlowContext

config = EventConfig(
    name="BenchHandle",
    subscribes=["bench.event"],
    # The default (10) unless the bench asks for another.
    concurrency=int(os.environ.get("BENCH_EVENT_CONCURRENCY", "10")),
)

_ids = itertools.count()


async def handler(input: dict[str, Any], ctx: FlowContext) -> None:
    """Record the emit-to-handler latency, then write one item."""
    LATENCIES_NS.append(time.monotonic_ns() - input["emitted_ns"])
    item_id = f"e{next(_ids)}"
    item = {"id": item_id, "description": input["description"]}
    await ctx.streams.todo.set("inbox", item_id, item)
