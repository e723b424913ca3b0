"""API -> event -> event over HTTP on a real socket, on the default file store and on Redis:
every step's log lines carry the request's trace id; streams and state see the work."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from e2e.redis_env import redis_env  # noqa: F401 - fixture
from surge import create_app
from surge.testing import live_server

STEPS = {
    "steps/job_stream.py": """
        from pydantic import BaseModel
        from surge import StreamConfig

        class Job(BaseModel):
            id: str
            progress: int = 0
            result: str | None = None

        config = StreamConfig(name="job", schema=Job)
    """,
    "steps/start_step.py": """
        from pydantic import BaseModel
        from surge import ApiResponse, ApiRouteConfig

        class Start(BaseModel):
            size: int

        config = ApiRouteConfig(
            name="StartJob", method="POST", path="/jobs", body_schema=Start,
            emits=["job.requested"],
        )

        async def handler(req, ctx):
            ctx.logger.info("job requested")
            await ctx.streams.job.set("all", ctx.trace_id, {"id": ctx.trace_id})
            await ctx.emit({"topic": "job.requested", "data": {"size": req.body.size}})
            return ApiResponse(202, {"traceId": ctx.trace_id})
    """,
    "steps/run_step.py": """
        from pydantic import BaseModel
        from surge import EventConfig

        class Requested(BaseModel):
            size: int

        config = EventConfig(
            name="RunJob", subscribes=["job.requested"], emits=["job.finished"], input=Requested,
        )

        async def handler(input, ctx):
            for n in range(1, input.size + 1):
                await ctx.streams.job.set("all", ctx.trace_id, {"id": ctx.trace_id, "progress": n})
            ctx.logger.info("job ran", {"size": input.size})
            await ctx.emit(topic="job.finished", data={"result": "x" * input.size})
    """,
    "steps/finish_step.py": """
        config = {"type": "event", "name": "FinishJob", "subscribes": ["job.finished"], "emits": []}

        async def handler(input, ctx):
            job = await ctx.streams.job.get("all", ctx.trace_id)
            await ctx.streams.job.set("all", ctx.trace_id, {**job.model_dump(), **input})
            await ctx.state.set("finished", ctx.trace_id, input["result"])
            ctx.logger.info("job finished")
    """,
}


def project(root: Path) -> Path:
    for rel, text in STEPS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture(params=["file", "redis"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("SURGE_STORE", raising=False)
    if request.param == "redis":
        request.getfixturevalue("redis_env")
    else:
        monkeypatch.delenv("SURGE_REDIS_URL", raising=False)
    yield request.param


async def test_api_event_event_chain_keeps_one_trace_id(
    tmp_path: Path, store: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="surge.step")
    app = create_app(project(tmp_path / "chain"))
    assert app.background.queue.is_distributed == (store == "redis")
    async with live_server(app) as server, httpx2.AsyncClient() as client:
        response = await client.post(f"{server.url}/jobs", json={"size": 3})
        assert response.status_code == 202, response.text
        trace_id = response.json()["traceId"]
        await app.wait_idle(timeout=20)
        job = await app.runtime.streams.job.get("all", trace_id)
        assert (job.progress, job.result) == (3, "xxx")
        assert await app.background.state.get("finished", trace_id) == "xxx"
    lines = [
        (r.name.removeprefix("surge.step."), r.getMessage())
        for r in caplog.records
        if r.name.startswith("surge.step.")
    ]
    assert lines == [
        ("StartJob", f"job requested [trace {trace_id}]"),
        ("RunJob", f'job ran {{"size":3}} [trace {trace_id}]'),
        ("FinishJob", f"job finished [trace {trace_id}]"),
    ]
