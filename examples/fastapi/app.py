"""An existing FastAPI app that adds Surge's live streams under /rt.

    uvicorn app:api --app-dir examples/fastapi --port 8000

- Surge's API steps answer under /rt (GET /rt/todo), its WebSocket clients connect to
  ws://localhost:8000/rt/ (Motia's npm clients unchanged), and /rt/docs is not served unless
  the project's Config says openapi=True.
- FastAPI routes write through the same streams facade handlers get: every subscriber of
  todo/inbox sees POST /api/todos at once.
- Starlette and FastAPI do not run a mounted app's lifespan, so Surge's runs as FastAPI's.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

import surge

realtime = surge.create_app(Path(__file__).parent)
api = FastAPI(title="Todo API with live streams", lifespan=realtime.lifespan)


class NewTodo(BaseModel):
    description: str


@api.post("/api/todos")
async def create_todo(body: NewTodo) -> Any:
    todo_id = f"todo-{secrets.token_hex(4)}"
    return await realtime.streams.todo.set(
        "inbox", todo_id, {"id": todo_id, "description": body.description}
    )


# Mounted last: routes are matched in order, so FastAPI's own routes win even under "/".
api.mount(os.environ.get("SURGE_MOUNT", "/rt"), realtime)
