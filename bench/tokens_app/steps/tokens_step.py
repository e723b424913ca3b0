"""POST /bench/tokens: start the AI-token workload in this server; GET it for its progress.

Each answer is one item of its own group (``a<k>``): created, then ``tokens`` appends (each an
``update`` with one ``append`` op, awaited: durable before the next) paced at ``rate`` tokens/s
from its start, then a ``set`` op of ``status``. Token ``i`` is due at ``startNs + i / rate``;
subscribers time each token from that due time, so a server falling behind its schedule shows as
latency. Starts are spread evenly over one token interval, as independent answers would be.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import BaseModel

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext

WORDS = (" the", " a", " stream", " of", " tokens", " is", " fast", " and", " small", " here")


class Workload(BaseModel):
    answers: int = 200
    tokens: int = 500
    rate: float = 30.0


config = ApiRouteConfig(
    name="BenchTokens", method="POST", path="/bench/tokens", body_schema=Workload
)

# The bench's own bookkeeping: the generation tasks and their progress (one run per server).
_tasks: set[asyncio.Task[None]] = set()
_progress: dict[str, Any] = {"answers": 0, "done": 0, "tokens": 0, "late_ms_max": 0.0}
_failures: list[str] = []


def _finished(task: asyncio.Task[None]) -> None:
    _tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        _failures.append(repr(task.exception()))


async def _answer(ctx: FlowContext, k: int, work: Workload, start_ns: int) -> None:
    stream = ctx.streams.answer
    group, item = f"a{k}", f"m{k}"
    period_ns = int(1e9 / work.rate)
    await asyncio.sleep(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))
    await stream.set(group, item, {"id": item, "startNs": start_ns})
    for i in range(work.tokens):
        due = start_ns + i * period_ns
        wait = due - time.monotonic_ns()
        if wait > 0:
            await asyncio.sleep(wait / 1e9)
        else:
            _progress["late_ms_max"] = max(_progress["late_ms_max"], -wait / 1e6)
        op = {"type": "append", "path": "content", "value": WORDS[i % len(WORDS)]}
        await stream.update(group, item, [op])
        _progress["tokens"] += 1
    await stream.update(group, item, [{"type": "set", "path": "status", "value": "done"}])
    _progress["done"] += 1


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    work: Workload = req.body
    now = time.monotonic_ns()
    period_ns = int(1e9 / work.rate)
    lead_ns = 200_000_000  # every task is scheduled before the first token is due
    _progress.update(answers=work.answers, done=0, tokens=0, late_ms_max=0.0)
    for k in range(work.answers):
        start = now + lead_ns + k * period_ns // work.answers
        task = asyncio.get_running_loop().create_task(_answer(ctx, k, work, start))
        _tasks.add(task)
        task.add_done_callback(_finished)
    return ApiResponse(status=202, body={"started": work.answers})
