"""Fixtures of the compatibility suite: a real Surge server and the real npm client (driver.mjs).

``NodeClient`` talks to ``driver.mjs`` (one ``Stream`` of @motiadev/stream-client-node) over
JSON lines. A reader thread records every line; ``wait_for``/``wait_state`` block on a condition
variable until a line satisfies the predicate, with a deadline, never a bare sleep.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from conftest import require_component
from e2e.surge_process import SurgeProcess, copy_todo_project, surge_server

__all__ = ["NodeClient", "node_client", "require_npm_client", "surge_server", "todo_server"]

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "driver.mjs"
CLIENT_PACKAGE = HERE / "node_modules" / "@motiadev" / "stream-client-node" / "package.json"
DEFAULT_TIMEOUT = 5.0

T = TypeVar("T")
Message = dict[str, Any]


class NodeClient:
    """One npm ``Stream`` in a node process; ``messages`` holds every line it printed."""

    def __init__(self, url: str, protocols: tuple[str, ...] = ()) -> None:
        self.url = url
        self.messages: list[Message] = []
        self.states: dict[str, Any] = {}
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        self._reqs = itertools.count(1)
        self.proc = subprocess.Popen(
            ["node", str(DRIVER), url, *protocols],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.wait_for(lambda m: m["type"] == "ready", what="the driver to start")

    # -- I/O -----------------------------------------------------------------------------------

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                message = {"type": "garbage", "line": line}
            with self._cond:
                self.messages.append(message)
                if message["type"] == "state":
                    self.states[message["key"]] = message["state"]
                self._cond.notify_all()
        with self._cond:
            self.messages.append({"type": "exit"})
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def send(self, cmd: str, **fields: Any) -> int:
        """Write one command line; returns its ``req`` number."""
        req = next(self._reqs)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, "req": req, **fields}) + "\n")
        self.proc.stdin.flush()
        return req

    def request(self, cmd: str, timeout: float = DEFAULT_TIMEOUT, **fields: Any) -> Message:
        """Send a command and return the driver's reply to it."""
        req = self.send(cmd, **fields)
        reply = self.wait_for(
            lambda m: m["type"] == "reply" and m["req"] == req, timeout, f"the reply to {cmd}"
        )
        if "error" in reply:
            raise AssertionError(f"driver refused {cmd} {fields}: {reply['error']}")
        return reply

    # -- waiting -------------------------------------------------------------------------------

    def _wait(self, check: Callable[[], T | None], timeout: float, what: str) -> T:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = check()
                if result is not None:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout} s waiting for {what}\n{self.transcript()}"
                    )
                self._cond.wait(remaining)

    def mark(self) -> int:
        """The index of the next line; pass it as ``since`` to look only at later lines."""
        with self._cond:
            return len(self.messages)

    def wait_for(
        self,
        predicate: Callable[[Message], bool],
        timeout: float = DEFAULT_TIMEOUT,
        what: str = "a matching message",
        since: int = 0,
    ) -> Message:
        """The first line from ``since`` on that satisfies ``predicate``; waits for it."""

        def check() -> Message | None:
            return next((m for m in self.messages[since:] if predicate(m)), None)

        return self._wait(check, timeout, what)

    def wait_state(
        self,
        key: str,
        predicate: Callable[[Any], bool],
        timeout: float = DEFAULT_TIMEOUT,
        what: str = "",
    ) -> Any:
        """Wait until the latest state reported for subscription ``key`` satisfies ``predicate``.

        Also checks that ``getState()`` agrees with the change listener, then returns the state.
        """

        def check() -> list[Any] | None:
            if key in self.states and predicate(self.states[key]):
                return [self.states[key]]
            return None

        (state,) = self._wait(check, timeout, what or f"the state of {key}")
        assert self.get_state(key) == state, "getState() disagrees with the change listener"
        return state

    def wait_synced(self, key: str, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Wait for the first state of subscription ``key`` (its sync) and return it."""
        message = self.wait_for(
            lambda m: m["type"] == "state" and m["key"] == key, timeout, f"the sync of {key}"
        )
        return message["state"]

    # -- commands ------------------------------------------------------------------------------

    def subscribe_group(
        self, key: str, stream: str, group: str, events: tuple[str, ...] = ()
    ) -> None:
        """``stream.subscribeGroup(stream, group)`` with a change listener (and ``onEvent``s)."""
        self.request("subscribeGroup", key=key, stream=stream, group=group, events=events)

    def subscribe_item(
        self, key: str, stream: str, group: str, id: str, events: tuple[str, ...] = ()
    ) -> None:
        """``stream.subscribeItem(stream, group, id)`` with a change listener (and ``onEvent``s)."""
        self.request("subscribeItem", key=key, stream=stream, group=group, id=id, events=events)

    def unsubscribe(self, key: str) -> None:
        """``subscription.close()``: the client sends a leave."""
        self.request("unsubscribe", key=key)

    def on_event(self, key: str, type: str) -> None:
        """``subscription.onEvent(type, ...)``: each call prints an ``event`` line."""
        self.request("onEvent", key=key, type=type)

    def get_state(self, key: str) -> Any:
        """``subscription.getState()``."""
        return self.request("state", key=key)["state"]

    def events(self, key: str, type: str) -> list[Any]:
        """The data of every ``type`` event delivered to subscription ``key`` so far."""
        with self._cond:
            return [
                m["data"]
                for m in self.messages
                if m["type"] == "event" and m["key"] == key and m["event"] == type
            ]

    def frames(self) -> list[Message]:
        """Every frame the client received, decoded."""
        with self._cond:
            return [json.loads(m["data"]) for m in self.messages if m["type"] == "frame"]

    def errors(self) -> list[Message]:
        """Exceptions that escaped the npm client (each would have killed a plain node app)."""
        with self._cond:
            return [m for m in self.messages if m["type"] == "error"]

    def transcript(self, last: int = 40) -> str:
        """The last lines received and the driver's stderr, for failure messages."""
        lines = [json.dumps(m)[:400] for m in self.messages[-last:]]
        return (
            "driver output (last lines):\n  "
            + "\n  ".join(lines)
            + "\nstderr:\n"
            + ("".join(self.stderr[-20:]))
        )

    def close(self) -> None:
        """``Stream.close()`` and end the process."""
        if self.proc.poll() is None:
            try:
                self.send("close")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(autouse=True)
def require_npm_client() -> None:
    """Every test here needs node and the pinned npm client: skip without them (fail in CI)."""
    require_component(shutil.which("node"), "node is not installed")
    require_component(shutil.which("npm"), "npm is not installed")
    require_component(
        CLIENT_PACKAGE.exists(),
        "tests/compat/node_modules is missing: run `npm ci` in tests/compat (or `make setup`)",
    )


@pytest.fixture
def node_client() -> Iterator[Callable[..., NodeClient]]:
    """Factory: ``node_client(ws_url, protocols=())`` -> a ``NodeClient``; closed at teardown."""
    clients: list[NodeClient] = []

    def make(url: str, protocols: tuple[str, ...] = ()) -> NodeClient:
        client = NodeClient(url, protocols)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def todo_server(surge_server: Callable[..., SurgeProcess], tmp_path: Path) -> SurgeProcess:
    """``surge start`` serving a private copy of examples/todo (its own file store)."""
    return surge_server(copy_todo_project(tmp_path / "todo"))
