"""Motia's npm client beside Surge's deltas and windowed groups (protocol.md sections 4 and 5).

A 1,000-token answer appended with ``update(ops)`` under ``surge start``: Motia's client (which
never asks for deltas) gets whole items, Surge's Python client and a raw delta subscriber get
patches, and all end with the same item; the bytes per token of both ways are printed. A windowed
stream's sync is the newest items, which Motia's client shows and keeps current unchanged.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
import websockets

import surge.client
from compat.conftest import NodeClient
from e2e.surge_process import SurgeProcess, copy_todo_project
from surge.streams.ops import apply_ops

pytestmark = [pytest.mark.compat, pytest.mark.timeout(120)]

NodeFactory = Callable[..., NodeClient]
ServerFactory = Callable[..., SurgeProcess]
TOKENS = 1000
WAIT = 60.0  # generous: both cores may be busy with other suites

CHAT_STREAM = """
from pydantic import BaseModel

from surge import StreamConfig


class Message(BaseModel):
    id: str
    role: str = "assistant"
    content: str = ""
    status: str = "streaming"


config = StreamConfig(name="chat", schema=Message)
"""

HISTORY_STREAM = """
from pydantic import BaseModel

from surge import StreamConfig


class Entry(BaseModel):
    id: str
    text: str


config = StreamConfig(name="history", schema=Entry, sync_limit=5)
"""

ANSWER_STEP = '''
"""POST /answer/:id: an assistant answer streamed token by token with update(ops)."""

from pydantic import BaseModel

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class Answer(BaseModel):
    tokens: int


config = ApiRouteConfig(name="Answer", method="POST", path="/answer/:id", body_schema=Answer)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    chat = ctx.streams.chat
    message_id = req.path_params["id"]
    await chat.set("c1", message_id, {"id": message_id})
    for n in range(req.body.tokens):
        await chat.update("c1", message_id, [{"type": "append", "path": "content", "value": f" w{n}"}])
    done = await chat.update("c1", message_id, [{"type": "set", "path": "status", "value": "done"}])
    return ApiResponse(status=200, body=done.new_value)
'''

HISTORY_STEP = '''
"""POST /history/:id: set an entry of group h1 (creates it, or edits it in place)."""

from pydantic import BaseModel

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class Text(BaseModel):
    text: str


config = ApiRouteConfig(name="History", method="POST", path="/history/:id", body_schema=Text)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    entry_id = req.path_params["id"]
    await ctx.streams.history.update(
        "h1", entry_id, [{"type": "set", "path": "text", "value": req.body.text}]
    )
    return ApiResponse(status=200, body=await ctx.streams.history.get("h1", entry_id))
'''


def chat_project(tmp_path: Path) -> Path:
    project = copy_todo_project(tmp_path / "todo")
    for name, source in {
        "chat_stream": CHAT_STREAM,
        "history_stream": HISTORY_STREAM,
        "answer_step": ANSWER_STEP,
        "history_step": HISTORY_STEP,
    }.items():
        (project / "steps" / f"{name}.py").write_text(textwrap.dedent(source).lstrip())
    return project


def frames_of(client: NodeClient, item_id: str) -> list[str]:
    """The raw frames Motia's client received for ``item_id`` (creates and updates)."""
    return [
        m["data"]
        for m in list(client.messages)
        if m["type"] == "frame" and json.loads(m["data"]).get("id") == item_id
    ]


async def delta_subscriber(ws_url: str, ready: asyncio.Event) -> tuple[dict[str, Any], int]:
    """A raw subscriber that asks for deltas: its copy of m1 and the bytes of its patches."""
    item: dict[str, Any] | None = None
    patch_bytes = 0
    async with websockets.connect(ws_url, max_size=None) as ws:
        join = {"streamName": "chat", "groupId": "c1", "subscriptionId": "d", "deltas": True}
        await ws.send(json.dumps({"type": "join", "data": join}))
        async with asyncio.timeout(WAIT):
            while True:
                raw = await ws.recv()
                assert isinstance(raw, str)
                frame = json.loads(raw)
                kind = frame["event"]["type"]
                if kind == "sync":
                    ready.set()
                elif kind == "patch":
                    assert item is not None
                    patch_bytes += len(raw.encode())
                    item = apply_ops(dict(item), frame["event"]["data"]["ops"], frame["id"])
                elif kind in ("create", "update"):
                    item = frame["event"]["data"]
                if item is not None and item.get("status") == "done":
                    return item, patch_bytes


def test_a_delta_subscriber_and_motias_client_end_identical_through_1000_tokens(
    tmp_path: Path, surge_server: ServerFactory, node_client: NodeFactory
) -> None:
    server = surge_server(chat_project(tmp_path))
    motia = node_client(server.ws_url)
    motia.subscribe_group("g", "chat", "c1")
    motia.subscribe_item("i", "chat", "c1", "m1")
    motia.wait_synced("g")
    motia.wait_synced("i")

    async def run() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any], int]:
        async with surge.client.connect(server.ws_url) as client:
            sub = await client.subscribe_group("chat", "c1")
            ready = asyncio.Event()
            raw = asyncio.create_task(delta_subscriber(server.ws_url, ready))
            async with asyncio.timeout(WAIT):
                await ready.wait()
            async with httpx2.AsyncClient(timeout=WAIT) as http:
                response = await http.post(f"{server.url}/answer/m1", json={"tokens": TOKENS})
            assert response.status_code == 200, response.text
            await sub.wait(lambda items: bool(items) and items[0]["status"] == "done", WAIT)
            item, patch_bytes = await raw
            return response.json(), sub.state, item, patch_bytes

    stored, surge_state, raw_item, patch_bytes = asyncio.run(run())
    motia_group = motia.wait_state("g", lambda s: bool(s) and s[0]["status"] == "done", WAIT)
    motia_item = motia.wait_state("i", lambda s: s is not None and s["status"] == "done", WAIT)

    assert stored["content"] == "".join(f" w{n}" for n in range(TOKENS))
    assert motia_group == surge_state == [stored]
    assert motia_item == raw_item == stored
    # Motia's client got whole items only (it never asked for deltas): no patch reached it.
    frames = [json.loads(f)["event"]["type"] for f in frames_of(motia, "m1")]
    assert frames.count("patch") == 0 and frames.count("update") == TOKENS + 1
    whole_bytes = sum(len(f.encode()) for f in frames_of(motia, "m1")[1:])
    print(
        f"\nbytes per token, {TOKENS} tokens: Motia's client (whole items) "
        f"{whole_bytes / TOKENS:.0f}, delta subscriber {patch_bytes / TOKENS:.0f}"
    )
    assert whole_bytes / patch_bytes >= 10


def test_motias_client_works_with_a_windowed_sync(
    tmp_path: Path, surge_server: ServerFactory, node_client: NodeFactory
) -> None:
    server = surge_server(chat_project(tmp_path))
    for n in range(12):
        post = httpx2.post(f"{server.url}/history/e{n:02}", json={"text": str(n)}, timeout=10)
        assert post.status_code == 200, post.text
    motia = node_client(server.ws_url)
    motia.subscribe_group("g", "history", "h1")
    motia.subscribe_item("old", "history", "h1", "e01")

    window = motia.wait_synced("g")
    old = motia.wait_synced("old")
    assert [e["id"] for e in window] == [f"e{n:02}" for n in range(7, 12)]
    assert old == {"id": "e01", "text": "1"}  # an item subscription is never windowed

    for path, text in (("e01", "old, edited"), ("e09", "nine, edited"), ("e12", "new")):
        response = httpx2.post(f"{server.url}/history/{path}", json={"text": text}, timeout=10)
        assert response.status_code == 200, response.text

    state = motia.wait_state("g", lambda s: [e["id"] for e in s][-1:] == ["e12"], WAIT)
    assert [e["id"] for e in state] == [f"e{n:02}" for n in range(7, 13)]
    assert state[2] == {"id": "e09", "text": "nine, edited"}
    # The edit of e01, outside the window, changed nothing in the group (Motia's client ignores
    # an update of an item it does not hold), and reached the item subscription.
    assert motia.wait_state("old", lambda s: s["text"] == "old, edited") == {
        "id": "e01",
        "text": "old, edited",
    }
    assert all(e["id"] != "e01" for e in motia.get_state("g"))
    # The sync frame carried the cursor; Motia's client ignores the key.
    sync = next(
        json.loads(m["data"])
        for m in list(motia.messages)
        if m["type"] == "frame"
        and json.loads(m["data"]).get("groupId") == "h1"
        and json.loads(m["data"])["event"]["type"] == "sync"
        and "id" not in json.loads(m["data"])
    )
    assert isinstance(sync["more"], str)
