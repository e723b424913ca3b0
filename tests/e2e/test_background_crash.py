"""A crash loses no job: kill -9 during an event handler, on the default store and on Redis.

The step files write marker files (``out/``) so the test can see, from outside the process,
which process started the job and which one finished it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from pathlib import Path

import httpx2

from e2e.redis_env import redis_env  # noqa: F401 - fixture
from e2e.surge_process import SurgeProcess, poll

START_STEP = """
from surge import ApiRouteConfig

config = ApiRouteConfig(name="StartJob", method="POST", path="/jobs", emits=["job.requested"])


async def handler(req, ctx):
    ids = await ctx.emit({"topic": "job.requested", "data": {"job": req.body["job"]}})
    return {"status": 202, "body": {"traceId": ctx.trace_id, "messages": ids}}
"""

RUN_STEP = """
import asyncio
import os
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "out"

config = {
    "type": "event",
    "name": "RunJob",
    "subscribes": ["job.requested"],
    "input": {"type": "object", "properties": {"job": {"type": "string"}}, "required": ["job"]},
    "infrastructure": {"queue": {"visibilityTimeout": VISIBILITY}},
}


async def handler(input, ctx):
    OUT.mkdir(exist_ok=True)
    first = not (OUT / "started").exists()
    (OUT / f"started-{os.getpid()}").write_text(ctx.trace_id)
    (OUT / "started").write_text(str(os.getpid()))
    if first:
        await asyncio.sleep(3600)  # killed in here
    (OUT / "done").write_text(f"{input['job']} {ctx.trace_id} {os.getpid()}")
"""


def job_project(root: Path, *, visibility: float) -> Path:
    steps = root / "steps"
    steps.mkdir(parents=True)
    (steps / "start_job_step.py").write_text(textwrap.dedent(START_STEP))
    (steps / "run_job_step.py").write_text(
        textwrap.dedent(RUN_STEP).replace("VISIBILITY", repr(visibility))
    )
    return root


def post_job(server: SurgeProcess, job: str) -> str:
    response = httpx2.post(f"{server.url}/jobs", json={"job": job}, timeout=5)
    assert response.status_code == 202, response.text
    assert len(response.json()["messages"]) == 1
    trace_id: str = response.json()["traceId"]
    return trace_id


def read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


async def test_kill_9_during_a_handler_then_restart_completes_the_job(tmp_path: Path) -> None:
    # A long lease: the restart must not wait for it (the default queue frees a dead process's
    # leases when it opens).
    project = job_project(tmp_path / "jobs", visibility=300)
    out = project / "out"
    server = SurgeProcess(project)
    await asyncio.to_thread(server.start, 30.0)
    try:
        trace_id = await asyncio.to_thread(post_job, server, "report-1")
        await asyncio.to_thread(
            poll, lambda: read(out / "started") or None, 20, "the handler to start"
        )
        server.kill()
        assert read(out / "done") is None
        await asyncio.to_thread(server.start, 30.0)
        done = await asyncio.to_thread(
            poll, lambda: read(out / "done") or None, 30, "the job to finish"
        )
        assert done.split()[:2] == ["report-1", trace_id]
    finally:
        await asyncio.to_thread(server.stop)


async def test_kill_9_of_the_worker_running_a_handler_lets_another_instance_finish_it(
    tmp_path: Path,
    redis_env: str,  # noqa: F811
) -> None:
    project = job_project(tmp_path / "jobs", visibility=2)
    out = project / "out"
    servers = [SurgeProcess(project), SurgeProcess(project)]
    for server in servers:
        await asyncio.to_thread(server.start, 30.0)
    try:
        trace_id = await asyncio.to_thread(post_job, servers[0], "report-2")
        started = await asyncio.to_thread(
            poll, lambda: read(out / "started") or None, 20, "the handler to start"
        )
        # The handler runs in a worker process of one `surge start` (its supervisor is proc).
        victim = next(s for s in servers if int(started) in s.worker_pids())
        survivor = next(s for s in servers if s is not victim)
        victim.kill()  # the supervisor; its worker dies with it
        done = await asyncio.to_thread(
            poll, lambda: read(out / "done") or None, 40, "another worker"
        )
        job, trace, pid = done.split()
        assert (job, trace) == ("report-2", trace_id)
        assert int(pid) in survivor.worker_pids()
    finally:
        for server in servers:
            await asyncio.to_thread(server.stop)


CRON_STEP = """
import os
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "runs.log"

config = {"type": "cron", "name": "EverySecond", "cron": "* * * * * *"}


async def handler(ctx):
    with OUT.open("a") as log:
        log.write(f"{os.getpid()} {ctx.trace_id}\\n")
"""


async def test_cron_runs_once_per_tick_across_two_workers_on_redis(
    tmp_path: Path,
    redis_env: str,  # noqa: F811
) -> None:
    import redis

    project = tmp_path / "cron"
    (project / "steps").mkdir(parents=True)
    (project / "steps" / "every_second_step.py").write_text(textwrap.dedent(CRON_STEP))
    runs = project / "runs.log"
    server = SurgeProcess(project, extra_args=["--workers", "2"])
    await asyncio.to_thread(server.start, 30.0)
    try:
        await asyncio.to_thread(
            poll, lambda: len((read(runs) or "").splitlines()) >= 4, 30, "four cron runs"
        )
    finally:
        await asyncio.to_thread(server.stop)
    lines = (read(runs) or "").splitlines()
    with redis.Redis.from_url(os.environ["SURGE_REDIS_URL"]) as client:
        claimed = list(client.scan_iter(match=f"{redis_env}:cron:*:tick:*"))
    # Every run is a claimed tick and every claimed tick ran once: never once per worker.
    assert len(lines) == len(claimed), (lines, claimed)
    assert len({line.split()[1] for line in lines}) == len(lines)
    assert server.proc is not None and server.proc.returncode in (0, -signal.SIGTERM)
