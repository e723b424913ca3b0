"""python-socketio (ASGI on uvicorn) doing Surge's todo job, for ``bench/run.py compare``.

- Socket.IO clients connect with ``/socket.io/?EIO=4&transport=websocket`` and emit
  ``join`` with a room name (acknowledged once they are in the room);
- ``POST /todo {"description": ...}`` builds the same item as Surge's todo example, stores it in a
  dict and emits ``todo`` with the same envelope Surge sends (``timestamp``, ``streamName``,
  ``groupId``, ``id``, ``event: {type: "create", data: item}``) to the room ``inbox``.

The same uvicorn settings as ``surge start`` (uvloop, httptools, the websockets Sans-I/O
WebSocket implementation, no access log): only the framework differs.

Usage: ``.venv/bin/python bench/alt/socketio_server.py --port 3101``
"""

from __future__ import annotations

import argparse
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import socketio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")
items: dict[str, dict[str, Any]] = {}


@sio.on("join")
async def join(sid: str, room: str) -> bool:
    """Enter the room; the ack tells the client it is in."""
    await sio.enter_room(sid, room)
    return True


async def create_todo(request: Request) -> Response:
    """Store a todo and emit it to the room ``inbox``."""
    body = await request.json()
    description = body.get("description")
    if not isinstance(description, str) or not description.strip():
        return JSONResponse({"error": "Description is required"}, status_code=400)
    todo_id = f"todo-{time.time_ns() // 1_000_000}-{secrets.token_hex(4)}"
    item = {
        "id": todo_id,
        "description": description,
        "createdAt": datetime.now(UTC).isoformat(),
        "dueDate": body.get("dueDate"),
        "completedAt": None,
    }
    items[todo_id] = item
    envelope = {
        "timestamp": time.time_ns() // 1_000_000,
        "streamName": "todo",
        "groupId": "inbox",
        "id": todo_id,
        "event": {"type": "create", "data": item},
    }
    await sio.emit("todo", envelope, room="inbox")
    return JSONResponse(item)


async def health(request: Request) -> Response:
    """Ready probe."""
    return JSONResponse({"ok": True})


http_app = Starlette(
    routes=[Route("/todo", create_todo, methods=["POST"]), Route("/health", health)]
)
app = socketio.ASGIApp(sio, other_asgi_app=http_app)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3101)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
