"""Helpers of the examples/ai-chat tests: its step-side modules, and a fake OpenAI endpoint.

``load`` imports ``steps.sse`` and ``steps.chat_model`` from the example.

They import each other as ``steps.*``, the package Surge's discovery installs for a project. They
are loaded here as that package, then ``sys.modules`` is put back as it was, so the tests that
discover other projects later see no trace of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from abuse.logscan import register_token
from surge.server.serve import bind_socket

__all__ = ["AI_CHAT", "API_KEY", "FakeOpenAI", "load", "serve_fake_openai", "sse_chunk"]

API_KEY = "sk-test-ai-chat-0123456789"
register_token(API_KEY)  # the whole-suite scan fails the session if it reaches any log line

AI_CHAT = Path(__file__).resolve().parents[1] / "examples" / "ai-chat"


def load(*names: str) -> tuple[ModuleType, ...]:
    """``load("sse", "chat_model")`` -> the modules ``steps.sse``, ``steps.chat_model``."""
    saved = {n: m for n, m in sys.modules.items() if n == "steps" or n.startswith("steps.")}
    for name in saved:
        del sys.modules[name]
    spec = ModuleSpec("steps", None, is_package=True)
    spec.submodule_search_locations = [str(AI_CHAT / "steps")]
    sys.modules["steps"] = importlib.util.module_from_spec(spec)
    try:
        return tuple(importlib.import_module(f"steps.{name}") for name in names)
    finally:
        for name in [n for n in sys.modules if n == "steps" or n.startswith("steps.")]:
            del sys.modules[name]
        sys.modules.update(saved)


# --- a fake OpenAI-compatible chat-completions endpoint on 127.0.0.1 ------------------


def sse_chunk(content: str | None, finish: str | None = None) -> bytes:
    """One chat-completion chunk as an SSE event (``content`` None: no text in the delta)."""
    delta = {} if content is None else {"content": content}
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


@dataclass
class FakeOpenAI:
    """A chat-completions endpoint that records its requests and streams ``pieces``."""

    pieces: list[str] = field(default_factory=lambda: ["Hello", ",", " wor", "ld", " ☕"])
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def completions(self, request: Request) -> Response:
        """POST /v1/chat/completions: 401 without the key; model "broken": an error event."""
        body = await request.json()
        self.requests.append({"authorization": request.headers.get("authorization"), **body})
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return JSONResponse({"error": {"message": "Incorrect API key"}}, status_code=401)
        if body.get("model") == "broken":
            return StreamingResponse(self._broken(), media_type="text/event-stream")
        return StreamingResponse(self._stream(), media_type="text/event-stream")

    async def _stream(self) -> AsyncIterator[bytes]:
        yield b'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'
        for piece in self.pieces:
            await asyncio.sleep(0)
            # Split each event in two writes: the client must not care where reads end.
            raw = sse_chunk(piece)
            yield raw[:9]
            yield raw[9:]
            if piece == ",":
                yield b": keep-alive\n\n"
        yield sse_chunk(None, "stop")
        yield b"data: [DONE]\n\n"
        yield sse_chunk("after the end")  # never read

    async def _broken(self) -> AsyncIterator[bytes]:
        yield sse_chunk("partial")
        yield b'data: {"error": {"message": "the model crashed"}}\n\n'


@contextlib.asynccontextmanager
async def serve_fake_openai() -> AsyncIterator[FakeOpenAI]:
    """Serve a ``FakeOpenAI`` on 127.0.0.1:<free port>; ``fake.url`` is its base URL."""
    fake = FakeOpenAI()
    app = Starlette(routes=[Route("/v1/chat/completions", fake.completions, methods=["POST"])])
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        fake.url = f"http://127.0.0.1:{port}/v1"
        yield fake
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task
        sock.close()
