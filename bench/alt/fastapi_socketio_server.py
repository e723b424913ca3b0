"""FastAPI + python-socketio doing Surge's todo job durably, for ``bench/run.py compare``.

What a Python developer would build instead of Surge: a FastAPI app whose ``POST /todo`` is
validated by a pydantic model, inserts the item into SQLite (WAL, ``synchronous=FULL``: durable as
Surge's default store, one commit per request, run in FastAPI's thread pool so the event loop is
not blocked) and broadcasts it to the Socket.IO room ``inbox`` with the same envelope Surge sends.
Socket.IO clients connect with ``/socket.io/?EIO=4&transport=websocket`` and emit ``join`` with a
room name (acknowledged once they are in the room), as for ``socketio_server.py``.

The same uvicorn settings as ``surge start`` (uvloop, httptools, the websockets Sans-I/O
WebSocket implementation, no access log): only the framework differs.

Usage: ``.venv/bin/python bench/alt/fastapi_socketio_server.py --port 3101 --db /tmp/todo.db``
"""

from __future__ import annotations

import argparse
import secrets
import sqlite3
import threading
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import socketio
import uvicorn
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")
api = FastAPI()
_local = threading.local()
DB_PATH = "todo.db"


class CreateTodo(BaseModel):
    """The request body, validated as Surge's example validates it."""

    description: str = Field(min_length=1, pattern=r"\S")
    dueDate: str | None = None


class Todo(BaseModel):
    """The stored item."""

    id: str
    description: str
    createdAt: str
    dueDate: str | None = None
    completedAt: str | None = None


def _db() -> sqlite3.Connection:
    """One connection per worker thread (sqlite3 connections are not shared across threads)."""
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(DB_PATH, timeout=5.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        _local.conn = conn
    return conn


def _insert(todo: Todo) -> None:
    _db().execute(
        "INSERT INTO todos (id, data) VALUES (?, ?)", (todo.id, orjson.dumps(todo.model_dump()))
    )


@sio.on("join")
async def join(sid: str, room: str) -> bool:
    """Enter the room; the ack tells the client it is in."""
    await sio.enter_room(sid, room)
    return True


@api.post("/todo")
async def create_todo(body: CreateTodo) -> Todo:
    """Insert a todo (committed before the answer) and broadcast it to the room ``inbox``."""
    todo_id = f"todo-{time.time_ns() // 1_000_000}-{secrets.token_hex(4)}"
    todo = Todo(
        id=todo_id,
        description=body.description,
        createdAt=datetime.now(UTC).isoformat(),
        dueDate=body.dueDate,
    )
    await run_in_threadpool(_insert, todo)
    envelope: dict[str, Any] = {
        "timestamp": time.time_ns() // 1_000_000,
        "streamName": "todo",
        "groupId": "inbox",
        "id": todo_id,
        "event": {"type": "create", "data": todo.model_dump()},
    }
    await sio.emit("todo", envelope, room="inbox")
    return todo


@api.get("/health")
async def health() -> dict[str, bool]:
    """Ready probe."""
    return {"ok": True}


app = socketio.ASGIApp(sio, other_asgi_app=api)


def main() -> None:
    global DB_PATH
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3101)
    parser.add_argument("--db", default="todo.db")
    args = parser.parse_args()
    DB_PATH = args.db
    with sqlite3.connect(DB_PATH) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS todos (id TEXT PRIMARY KEY, data BLOB NOT NULL)")
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
