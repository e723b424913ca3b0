"""Surge's TypeScript client (clients/js) against a live `surge start`: windowed groups and deltas.

A project with a `chat` stream (``sync_limit=2``) of five messages; the client (Node, the built
package, ``ws`` as its WebSocket) must get the newest two, page back to the oldest with
``loadOlder``, then follow four ``append`` updates sent as ``patch`` frames and end with exactly
the stored items. The browser half (resume through an outage) is
tests/e2e/test_todo_offline_browser.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2

from conftest import require_component
from e2e.surge_process import SurgeProcess, surge_server

__all__ = ["surge_server"]

HERE = Path(__file__).resolve().parent
CLIENT_BUILD = HERE.parents[1] / "clients" / "js" / "dist" / "index.js"
WS_PACKAGE = HERE.parents[1] / "clients" / "js" / "node_modules" / "ws" / "package.json"

CHAT_STREAM = """
from pydantic import BaseModel

from surge import StreamConfig


class Message(BaseModel):
    id: str
    content: str


config = StreamConfig(name="chat", schema=Message, sync_limit=2)
"""

STEPS = """
from pydantic import BaseModel

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class Append(BaseModel):
    id: str
    text: str


config = ApiRouteConfig(name="Append", method="POST", path="/append", body_schema=Append)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    op = {"type": "append", "path": "content", "value": req.body.text}
    result = await ctx.streams.chat.update("c1", req.body.id, [op])
    return ApiResponse(status=200, body={"version": result.version})
"""

SEED_STEP = """
from pydantic import BaseModel

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class Seed(BaseModel):
    count: int


config = ApiRouteConfig(name="Seed", method="POST", path="/seed", body_schema=Seed)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    for n in range(1, req.body.count + 1):
        content = "hello" if n == req.body.count else f"message {n}"
        await ctx.streams.chat.set("c1", f"m{n}", {"id": f"m{n}", "content": content})
    return ApiResponse(status=200, body=await ctx.streams.chat.get_group("c1"))
"""

LIST_STEP = """
from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext

config = ApiRouteConfig(name="List", method="GET", path="/messages")


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    return ApiResponse(status=200, body=await ctx.streams.chat.get_group("c1"))
"""


def _project(root: Path) -> Path:
    steps = root / "steps"
    steps.mkdir(parents=True)
    (steps / "chat_stream.py").write_text(CHAT_STREAM)
    (steps / "append_step.py").write_text(STEPS)
    (steps / "seed_step.py").write_text(SEED_STEP)
    (steps / "list_step.py").write_text(LIST_STEP)
    return root


def _dump(value: Any) -> Any:
    return json.loads(json.dumps(value))


def test_the_client_pages_a_windowed_group_and_follows_deltas_on_a_live_server(
    surge_server: Callable[..., SurgeProcess], tmp_path: Path
) -> None:
    require_component(shutil.which("node"), "node is not installed")
    require_component(
        CLIENT_BUILD.is_file() and WS_PACKAGE.is_file(),
        "clients/js is not built: run `make test` (npm ci and npm run build in clients/js)",
    )
    server = surge_server(_project(tmp_path / "chat"))
    seeded = httpx2.post(f"{server.url}/seed", json={"count": 5}, timeout=10)
    assert seeded.status_code == 200, seeded.text

    run = subprocess.run(
        ["node", str(HERE / "live_driver.mjs"), server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{server.log()}"
    result = json.loads(run.stdout)

    assert result["window"] == ["m4", "m5"]
    assert result["hadMore"] is True
    assert result["pages"] == [["m2", "m3"], ["m1"]]
    stored = httpx2.get(f"{server.url}/messages", timeout=10).json()
    assert result["state"] == _dump(stored)
    assert stored[-1]["content"] == "hello streamed word by word"
    types = result["types"]
    assert types.count("page") == 2
    # The appends came as patches (at least most of them: the server may send a whole update
    # around a sync or a page), and the client's copy ended equal to the stored item.
    assert types.count("patch") >= 2, types
