"""Surge's todo app under tracemalloc, to see where an idle connection's memory goes.

Run by ``bench/run.py idle-trace`` in a copy of examples/todo (like ``surge start``), with two
extra endpoints: ``GET /__probe/baseline`` takes the reference snapshot, ``GET /__probe/diff?n=N``
answers the growth since then per connection, by allocation site and by object type. tracemalloc
slows the server a lot and adds its own bookkeeping; use it to see proportions, and the plain
``idle`` scenario for the number.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import uvicorn

FRAMES = 12


def _type_counts() -> Counter[str]:
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    sys.path.insert(0, os.getcwd())  # step files import `steps.*`, as under `surge start`
    tracemalloc.start(FRAMES)

    from surge.server.app import create_app
    from surge.server.serve import uvicorn_config

    surge_app = create_app(Path.cwd())
    state: dict[str, Any] = {}

    def baseline() -> dict[str, Any]:
        gc.collect()
        state["snapshot"] = tracemalloc.take_snapshot()
        state["types"] = _type_counts()
        return {"ok": True}

    def diff(n: int) -> dict[str, Any]:
        gc.collect()
        types = _type_counts()  # before compare_to, whose results are objects too
        types.subtract(state["types"])
        snapshot = tracemalloc.take_snapshot()
        by_line = snapshot.compare_to(state["snapshot"], "lineno")
        by_file = snapshot.compare_to(state["snapshot"], "filename")
        by_trace = snapshot.compare_to(state["snapshot"], "traceback")
        return {
            "traced_bytes_per_conn": sum(s.size_diff for s in by_file) / n,
            "by_file": [
                [str(s.traceback[0].filename), s.size_diff / n, s.count_diff / n]
                for s in by_file[:15]
            ],
            "by_line": [
                [str(s.traceback[0]), s.size_diff / n, s.count_diff / n] for s in by_line[:25]
            ],
            "by_trace": [
                [
                    " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in s.traceback),
                    s.size_diff / n,
                ]
                for s in by_trace[:12]
            ],
            "objects_per_conn": [[name, c / n] for name, c in types.most_common(25)],
        }

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/__probe/"):
            query = dict(
                part.split("=", 1)
                for part in scope.get("query_string", b"").decode().split("&")
                if "=" in part
            )
            body = baseline() if path.endswith("baseline") else diff(int(query.get("n", "1")))
            raw = orjson.dumps(body)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": raw})
            return
        await surge_app(scope, receive, send)

    # Its call only forwards: the stream WebSockets may be detached as under Surge's app alone
    # (surge.server.websocket), so the trace counts what a served connection costs.
    app.serves_detached_websockets = True  # type: ignore[attr-defined]
    config = uvicorn_config(surge_app, host="127.0.0.1", port=args.port, log_level="warning")
    config.app = app
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
