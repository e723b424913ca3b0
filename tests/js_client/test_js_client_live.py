"""Surge's TypeScript client (clients/js) against a live `surge start`, in Node (the built
package, ``ws`` as its WebSocket):

- a windowed group: a `chat` stream (``sync_limit=2``) of five messages; the client gets the
  newest two, pages back to the oldest with ``loadOlder``, then follows four ``append`` updates
  sent as ``patch`` frames and ends with exactly the stored items;
- resume: a proxy between client and server cuts the connection while the server takes two
  appends, a create, a delete and two events; back on the same port, the group and the item
  subscription each get a ``resume`` (no sync), the events once and in order, and end equal to the
  store. The browser version (the todo app through a server outage) is
  tests/e2e/test_todo_offline_browser.py;
- access revoked: ``streams.revoke`` closes two clients with 4003; the default one stops (status
  ``closed`` with an ``AccessRevokedError``, no further upgrade reaches the server), the one with
  ``retryRefused`` (the same backoff: the positive control) comes back, twice.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from conftest import require_component
from e2e.surge_process import SurgeProcess, free_port, surge_server

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


config = StreamConfig(name="chat", schema=Message, sync_limit=SYNC_LIMIT)
"""

OP_STEP = """
from pydantic import BaseModel

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class Op(BaseModel):
    action: str
    id: str | None = None
    text: str = ""


config = ApiRouteConfig(name="Op", method="POST", path="/op", body_schema=Op)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    chat, op = ctx.streams.chat, req.body
    if op.action == "set":
        await chat.set("c1", op.id, {"id": op.id, "content": op.text})
    elif op.action == "append":
        await chat.update("c1", op.id, [{"type": "append", "path": "content", "value": op.text}])
    elif op.action == "delete":
        await chat.delete("c1", op.id)
    elif op.action == "note":
        channel = {"groupId": "c1"} if op.id is None else {"groupId": "c1", "id": op.id}
        await chat.send(channel, {"type": "note", "data": op.text})
    else:
        return ApiResponse(status=400, body={"error": f"unknown action {op.action}"})
    return ApiResponse(status=200, body={"done": op.action})
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


def _project(root: Path, sync_limit: int | None = 2) -> Path:
    steps = root / "steps"
    steps.mkdir(parents=True)
    (steps / "chat_stream.py").write_text(CHAT_STREAM.replace("SYNC_LIMIT", repr(sync_limit)))
    (steps / "op_step.py").write_text(OP_STEP)
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
    # The appends came as patches in the compact form the client asks for (at least most of
    # them: the server may send a whole update around a sync or a page), and the client's copy
    # ended equal to the stored item.
    assert types.count("compact patch") >= 2, types
    assert "patch" not in types, types


class CuttableProxy:
    """A TCP proxy on loopback between the client and the server that the test can cut (every
    connection dropped, new ones refused) and restore on the same port: the client loses the
    server while the server stays up and takes changes."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() wakes the thread blocked in accept() (close() alone would not, and the
            # kernel socket would go on accepting).
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                target.sendall(chunk)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


class Driver:
    """A driver script (resume_driver.mjs...) in a node process; ``expect(predicate)`` waits for
    one of its lines."""

    def __init__(self, url: str, script: str = "resume_driver.mjs") -> None:
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.proc = subprocess.Popen(
            ["node", str(HERE / script), url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def expect(self, predicate: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if predicate(line):
                return line
        stderr = self.stop()
        raise AssertionError(f"timed out waiting for {what}: {stderr}")

    def stop(self) -> str:
        """End the process (if still running), close its pipes; returns what it wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        self._reader.join(10)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        if self.proc.stderr.closed:
            return ""  # stopped before
        stderr = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return stderr


def test_the_client_resumes_changes_patches_and_events_after_a_lost_connection(
    surge_server: Callable[..., SurgeProcess], tmp_path: Path
) -> None:
    require_component(shutil.which("node"), "node is not installed")
    require_component(
        CLIENT_BUILD.is_file() and WS_PACKAGE.is_file(),
        "clients/js is not built: run `make test` (npm ci and npm run build in clients/js)",
    )
    server = surge_server(_project(tmp_path / "chat", sync_limit=None))
    assert httpx2.post(f"{server.url}/seed", json={"count": 5}, timeout=10).status_code == 200
    proxy = CuttableProxy(server.port)
    driver = Driver(f"ws://127.0.0.1:{proxy.port}/")
    try:
        driver.expect(lambda line: line.get("ready") is True, "the syncs")
        proxy.cut()
        driver.expect(lambda line: line.get("status") == "reconnecting", "the lost connection")

        def op(**body: Any) -> None:
            response = httpx2.post(f"{server.url}/op", json=body, timeout=10)
            assert response.status_code == 200, response.text

        # While the client is away: two patches of its item, a create, a delete, two events.
        op(action="append", id="m5", text=" again")
        op(action="note", text="to the group")
        op(action="set", id="m6", text="new")
        op(action="append", id="m5", text=" and again")
        op(action="delete", id="m1")
        op(action="note", id="m5", text="to the item")
        proxy.restore()
        driver.expect(lambda line: line.get("status") == "open", "the reconnect")
        op(action="set", id="m7", text="marker")  # live, after the resume
        report = driver.expect(lambda line: "report" in line, "the report")["report"]
    finally:
        driver.stop()
        proxy.cut()

    stored = httpx2.get(f"{server.url}/messages", timeout=10).json()
    assert report["group"] == stored
    assert report["item"] == next(m for m in stored if m["id"] == "m5")
    assert report["item"]["content"] == "hello again and again"
    assert report["recoveries"] == {
        "group": [{"recovered": True, "missed": 6}],
        "item": [{"recovered": True, "missed": 3}],
    }
    # Events sent while away, each once, in order (the item's event reaches the group too).
    assert report["events"] == {"group": ["to the group", "to the item"], "item": ["to the item"]}
    _, *later = report["connections"]
    # (A compact patch, the form this client asks for, has no "event".)
    after = [
        frame["event"]["type"] if "event" in frame else "compact patch"
        for connection in later
        for frame in connection
    ]
    assert "sync" not in after, after
    assert after.count("resume") == 2, after
    # The missed messages came inside the two resume frames (the compact form's batched
    # resume, protocol.md section 3), the appends among them as compact patches.
    assert "compact patch" not in after, after
    resumes = [frame for connection in later for frame in connection if "event" in frame]
    replays = [f["event"]["data"]["replay"] for f in resumes if f["event"]["type"] == "resume"]
    assert sorted(len(replay) for replay in replays) == [3, 6], replays
    assert [entry[1] for entry in min(replays, key=len)] == ["patch", "patch", "event"], replays


AUTH_CONFIG = """
import os

from surge import Config, StreamAuth, extract_auth_token


def authenticate(request):
    token = extract_auth_token(request)
    if token is None:
        return None
    with open(os.environ["SURGE_TEST_AUTH_LOG"], "a") as log:  # one line per upgrade
        log.write(token + "\\n")
    return {"userId": token, "team": "t1"}


config = Config(stream_auth=StreamAuth(authenticate=authenticate))
"""

NOTES_STREAM = """
from surge import StreamConfig

config = StreamConfig(
    name="notes",
    schema={"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
)
"""

REVOKE_STEP = """
from surge import ApiResponse, ApiRouteConfig

config = ApiRouteConfig(name="Revoke", method="POST", path="/revoke")


async def handler(req, ctx):
    return ApiResponse(200, {"count": await ctx.streams.revoke(req.body)})
"""


def test_the_client_stops_after_access_is_revoked_and_retry_refused_comes_back(
    surge_server: Callable[..., SurgeProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_component(shutil.which("node"), "node is not installed")
    require_component(
        CLIENT_BUILD.is_file() and WS_PACKAGE.is_file(),
        "clients/js is not built: run `make test` (npm ci and npm run build in clients/js)",
    )
    project = tmp_path / "revoke"
    (project / "steps").mkdir(parents=True)
    (project / "surge.config.py").write_text(AUTH_CONFIG)
    (project / "steps" / "notes_stream.py").write_text(NOTES_STREAM)
    (project / "steps" / "revoke_step.py").write_text(REVOKE_STEP)
    auth_log = tmp_path / "auth.log"
    auth_log.write_text("")
    monkeypatch.setenv("SURGE_TEST_AUTH_LOG", str(auth_log))
    server = surge_server(project)

    def revoke(where: dict[str, str], count: int) -> None:
        response = httpx2.post(f"{server.url}/revoke", json=where, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json() == {"count": count}

    def upgrades() -> dict[str, int]:
        tokens = auth_log.read_text().split()
        return {name: tokens.count(name) for name in ("alice", "carol")}

    driver = Driver(server.ws_url, "revoke_driver.mjs")
    try:
        driver.expect(lambda line: line.get("ready") is True, "the syncs")
        assert upgrades() == {"alice": 1, "carol": 1}
        revoke({"team": "t1"}, 2)  # both connections, closed with 4003 in one go
        # The control (same backoff, retryRefused) comes back, then once more after a second
        # revoke: by then a retry of alice's, due with carol's first, would have been seen.
        for cycle in (1, 2):
            driver.expect(
                lambda line: line.get("stream") == "carol" and line.get("state") == "open",
                f"carol back ({cycle})",
            )
            if cycle == 1:
                revoke({"userId": "carol"}, 1)
        assert upgrades() == {"alice": 1, "carol": 3}
        assert driver.proc.stdin is not None
        driver.proc.stdin.close()
        report = driver.expect(lambda line: "report" in line, "the report")["report"]
    finally:
        stderr = driver.stop()
    assert report["statuses"]["alice"] == ["open", "closed"], stderr
    assert report["aliceError"] == {
        "name": "AccessRevokedError",
        "code": 4003,
        "reason": "access revoked",
    }
    assert report["statuses"]["carol"] == ["open", "reconnecting", "open", "reconnecting", "open"]
    assert report["subscribeError"] == {"name": "AccessRevokedError", "isAccessRevoked": True}
    assert upgrades() == {"alice": 1, "carol": 3}
