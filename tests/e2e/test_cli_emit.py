"""`surge emit` posts to a running `surge dev`: the subscribing step runs, the ids are printed."""

from __future__ import annotations

import asyncio
import subprocess
import textwrap
from pathlib import Path

from e2e.surge_process import SURGE, SurgeProcess, poll

STEP = """
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "got.txt"

config = {"type": "event", "name": "Greet", "subscribes": ["greet"], "emits": []}


async def handler(input, ctx):
    OUT.write_text(f"hello {input['name']} {ctx.trace_id}")
"""


def surge_emit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SURGE, "emit", *args], capture_output=True, text=True, timeout=30, check=False
    )


async def test_surge_emit_reaches_the_subscribing_step_of_surge_dev(tmp_path: Path) -> None:
    project = tmp_path / "app"
    (project / "steps").mkdir(parents=True)
    (project / "steps" / "greet_step.py").write_text(textwrap.dedent(STEP))
    server = SurgeProcess(project, command="dev")
    await asyncio.to_thread(server.start, 30.0)
    try:
        port = str(server.port)
        result = await asyncio.to_thread(
            surge_emit, "--topic", "greet", "--data", '{"name": "Ada"}', "--port", port
        )
        assert result.returncode == 0, result.stderr
        ids = result.stdout.split()
        assert len(ids) == 1 and len(ids[0]) == 32
        assert "to Greet" in result.stderr
        got = await asyncio.to_thread(poll, lambda: _read(project / "got.txt"), 20, "the step")
        assert got.startswith("hello Ada ")

        nobody = await asyncio.to_thread(surge_emit, "--topic", "nobody", "--port", port)
        assert nobody.returncode == 0 and nobody.stdout == ""
        assert "no step subscribes to it" in nobody.stderr

        bad = await asyncio.to_thread(surge_emit, "-t", "greet", "--data", "{nope", "--port", port)
        assert bad.returncode == 2 and "--data is not JSON" in bad.stderr
    finally:
        await asyncio.to_thread(server.stop)


def test_surge_emit_without_a_server_says_so() -> None:
    from e2e.surge_process import free_port

    result = surge_emit("--topic", "greet", "--port", str(free_port()))
    assert result.returncode == 1
    assert "no surge dev answers on 127.0.0.1:" in result.stderr


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
