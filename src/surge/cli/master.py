"""The ``surge start`` supervisor: one listening socket, generations of worker processes.

The supervisor binds the port once and keeps that socket open for its whole life; every worker
(``surge.cli.worker``, a fresh interpreter, so a reload loads new code) inherits it and accepts
from it. A connection that arrives while no worker accepts waits in the kernel's backlog: it is
never refused while the supervisor lives.

- **Start**: spawn ``workers`` processes; each loads the project and runs its lifespan, reports
  ready, gets "go" and accepts. A worker whose project does not load sends one error line; the
  supervisor prints each distinct one and exits with the worker's status (1, or 2 for
  ``--workers`` on a store that is not distributed).
- **Reload** (SIGHUP, ``surge reload``): spawn a new generation. If any of it fails or is not
  ready within ``startup_timeout``, it is stopped and the old generation keeps serving (the
  reload reports the error). Then the handover, by what the storage can do:

  * a distributed adapter (Redis: every process sees every change): the new workers accept
    first; then the old ones drain (stop accepting, close WebSockets with 1012, finish requests
    and background work) and exit;
  * one process on the file store (it does not deliver another process's writes): the old
    worker drains and exits first, so every change it still makes is in the store before a new
    subscriber reads it; only then does the new one accept. Meanwhile connections wait in the
    backlog (none is refused); the pause is the old worker's drain.

- **Stop** (SIGTERM, SIGINT): the supervisor closes its copy of the socket, every worker drains
  (WebSockets closed with 1001) within ``drain_timeout``; a worker still running 5 s after that
  is killed. A second SIGINT kills the workers at once.
- **A crashed worker** is replaced (with backoff when it keeps crashing).

The pid file (default ``.surge/surge-<port>.pid`` in the project) names the supervisor for
``surge reload``; the state file next to it (``.state``) says which generation serves and how the
last reload went, which ``surge reload`` waits for. This module imports only the standard
library: it never loads the project or the framework, so nothing in it goes stale on a reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from surge.cli.spawn import WorkerProcess, take_early

__all__ = [
    "KILL_MARGIN",
    "STARTUP_TIMEOUT",
    "MasterSettings",
    "default_pid_file",
    "read_state",
    "run_master",
    "state_file",
]

logger = logging.getLogger("surge.master")

STARTUP_TIMEOUT = 60.0
"""Seconds a new worker may take from spawn to ready before its generation is abandoned."""
KILL_MARGIN = 5.0
"""Seconds past the drain timeout before a worker that has not exited is killed."""
RESTART = 1012
GOING_AWAY = 1001


def default_pid_file(directory: Path, port: int) -> Path:
    """``<project>/.surge/surge-<port>.pid``: one per port, so two servers of one project
    (different ports) do not share it."""
    return directory / ".surge" / f"surge-{port}.pid"


def state_file(pid_file: Path) -> Path:
    """The state file written next to ``pid_file``."""
    return pid_file.with_suffix(".state")


def read_state(pid_file: Path) -> dict[str, Any] | None:
    """The supervisor's last written state, or None when there is none (yet)."""
    try:
        state = json.loads(state_file(pid_file).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


@dataclass(frozen=True)
class MasterSettings:
    """What ``surge start`` was asked for."""

    directory: Path
    host: str
    port: int
    workers: int = 1
    log_level: str = "info"
    drain_timeout: float = 10.0
    startup_timeout: float = STARTUP_TIMEOUT
    pid_file: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Environment for the workers (metrics and log settings: ``surge.server.metrics_settings``,
    ``surge.server.logs``); the early worker was started before the options were parsed."""


@dataclass
class Reporter:
    """How the supervisor talks to the person who ran it (the CLI supplies Rich output)."""

    error: Callable[[str], None]
    serving: Callable[[dict[str, Any], int], None]  # (the app summary, the bound port)


class WorkerFailed(Exception):
    """A worker of a new generation did not get to serving."""

    def __init__(self, errors: list[str], code: int) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors
        self.code = code


@dataclass
class Worker:
    """One worker process and its end of the control socket."""

    proc: subprocess.Popen[bytes]
    control: socket.socket
    index: int
    generation: int
    stopping: bool = False
    messages: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)
    exited: asyncio.Future[int] | None = None
    _reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.proc.pid

    def attach(self) -> None:
        """Start reading its messages (on the supervisor's loop)."""
        loop = asyncio.get_running_loop()
        self.exited = loop.create_future()
        self.control.setblocking(False)
        self._reader = loop.create_task(self._read())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        buffer = b""
        while True:
            try:
                chunk = await loop.sock_recv(self.control, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    self.messages.put_nowait(message)
        self.messages.put_nowait(None)
        code = await asyncio.to_thread(self.proc.wait)
        self.control.close()
        assert self.exited is not None
        if not self.exited.done():
            self.exited.set_result(code)

    def send(self, message: dict[str, Any]) -> None:
        """Send one command; a worker already gone is not an error."""
        with contextlib.suppress(OSError):
            self.control.send(json.dumps(message).encode() + b"\n")

    async def next_event(self, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        """The next message (None: it exited); TimeoutError after ``timeout``."""
        async with asyncio.timeout(timeout):
            return await self.messages.get()

    def kill(self) -> None:
        """SIGKILL (it did not drain in time, or a second Ctrl-C)."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    def terminate(self) -> None:
        """SIGTERM: a worker still starting stops at once, a serving one drains (1001)."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()


def spawn(settings: MasterSettings, sock: socket.socket, index: int, generation: int) -> Worker:
    """A worker serving ``sock`` (the one started early, if there is one; else a new one)."""
    process = take_early() or WorkerProcess()
    spec = {
        "dir": str(settings.directory),
        "host": settings.host,
        "port": sock.getsockname()[1],
        "log_level": settings.log_level,
        "workers": settings.workers,
        "index": index,
        "generation": generation,
        "drain_timeout": settings.drain_timeout,
        "env": settings.env,
    }
    with contextlib.suppress(OSError):  # it died already: its end of file tells us
        process.configure(spec, sock)
    return Worker(process.proc, process.control, index, generation)


class Master:
    """The supervisor's state: the socket, the serving generation, pending signals."""

    def __init__(
        self, settings: MasterSettings, sock: socket.socket, reporter: Reporter, pid_file: Path
    ) -> None:
        self.settings = settings
        self.sock = sock
        self.reporter = reporter
        self.pid_file = pid_file
        self.port = sock.getsockname()[1]
        self.generation = 0
        self.current: list[Worker] = []
        self.reloads = 0
        self.last_reload: dict[str, Any] | None = None
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._starting: list[Worker] = []

    # -- signals ---------------------------------------------------------------------------
    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)
        loop.add_signal_handler(signal.SIGTERM, self._on_stop, signal.SIGTERM)
        loop.add_signal_handler(signal.SIGINT, self._on_stop, signal.SIGINT)

    def _on_stop(self, sig: int) -> None:
        if self._stop.is_set() and sig == signal.SIGINT:
            logger.warning("second interrupt: killing the workers")
            for worker in self._all_workers():
                worker.kill()
        self._stop.set()

    def _all_workers(self) -> list[Worker]:
        return [*self.current, *self._starting]

    # -- generations -----------------------------------------------------------------------
    async def start_generation(self, workers: list[Worker], old: list[Worker]) -> dict[str, Any]:
        """Bring ``workers`` to serving, handing over from ``old``; the app summary.

        Raises:
            WorkerFailed: a worker failed, exited or was not ready in time (the new generation
                is stopped; ``old``, if not yet told to stop, keeps serving).
        """
        self._starting = workers
        try:
            ready = await self._wait_all(workers, "ready", self.settings.startup_timeout)
            distributed = all(message.get("distributed") for message in ready)
            if old and not distributed:
                await self.stop_workers(old, RESTART)  # its writes are in the store first
            for worker in workers:
                worker.send({"cmd": "go"})
            await self._wait_all(workers, "serving", self.settings.startup_timeout)
        except BaseException:
            await self.stop_workers(workers, RESTART, terminate=True)
            raise
        finally:
            self._starting = []
        summary: dict[str, Any] = ready[0].get("app") or {}
        return summary

    async def _wait_all(
        self,
        workers: list[Worker],
        event: str,
        timeout: float,  # noqa: ASYNC109
    ) -> list[dict[str, Any]]:
        async def one(worker: Worker) -> dict[str, Any]:
            try:
                while True:
                    message = await worker.next_event(timeout)
                    if message is None:
                        assert worker.exited is not None
                        code = await worker.exited
                        raise WorkerFailed([f"worker {worker.pid} exited with status {code}"], 1)
                    if message.get("event") == "failed":
                        error = str(message.get("error"))
                        raise WorkerFailed([error], int(message.get("code", 1)))
                    if message.get("event") == event:
                        return message
            except TimeoutError:
                raise WorkerFailed(
                    [f"worker {worker.pid} was not {event} after {timeout:.0f} s"], 1
                ) from None

        tasks = [asyncio.ensure_future(one(worker)) for worker in workers]
        stop: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
        try:
            pending: set[asyncio.Future[Any]] = set(tasks)
            while pending:
                done, pending = await asyncio.wait(
                    pending | {stop}, return_when=asyncio.FIRST_COMPLETED
                )
                if stop in done:
                    raise WorkerFailed(["stopped while starting"], 1)
                pending.discard(stop)
                failures = [t.exception() for t in done if t.exception() is not None]
                if failures:
                    errors: list[str] = []
                    for failure in failures:
                        new = (
                            failure.errors if isinstance(failure, WorkerFailed) else [str(failure)]
                        )
                        errors.extend(e for e in new if e not in errors)
                    first = failures[0]
                    raise WorkerFailed(errors, first.code if isinstance(first, WorkerFailed) else 1)
            return [t.result() for t in tasks]
        finally:
            stop.cancel()
            for task in tasks:
                task.cancel()

    async def stop_workers(
        self, workers: list[Worker], code: int, *, terminate: bool = False
    ) -> None:
        """Drain ``workers`` (WebSockets closed with ``code``) and wait until they exited.

        ``terminate`` also sends SIGTERM, for workers that may still be loading the project
        (they read their control socket only once ready).
        """
        for worker in workers:
            worker.stopping = True
            worker.send({"cmd": "stop", "code": code})
            if terminate:
                worker.terminate()
        bound = self.settings.drain_timeout + KILL_MARGIN
        for worker in workers:
            assert worker.exited is not None
            try:
                async with asyncio.timeout(bound):
                    await asyncio.shield(worker.exited)
            except TimeoutError:
                logger.error(
                    "worker %d did not exit %.0f s after a stop: killed", worker.pid, bound
                )
                worker.kill()
                await worker.exited

    # -- the main loop ---------------------------------------------------------------------
    async def run(self, first: list[Worker]) -> int:
        self.install_signals()
        for worker in first:
            worker.attach()
        try:
            summary = await self.start_generation(first, [])
        except WorkerFailed as exc:
            if self._stop.is_set():
                return 0
            for line in exc.errors:
                self.reporter.error(line)
            return exc.code
        self.generation = 1
        self.current = first
        self._write_pid()
        self._write_state()
        self.reporter.serving(summary, self.port)
        backoff = 1.0
        while True:
            waiters: dict[asyncio.Future[Any], str] = {
                asyncio.ensure_future(self._stop.wait()): "stop",
                asyncio.ensure_future(self._reload.wait()): "reload",
            }
            for worker in self.current:
                assert worker.exited is not None
                waiters[asyncio.ensure_future(asyncio.shield(worker.exited))] = "exit"
            done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            what = {waiters[task] for task in done}
            if "stop" in what:
                await self.stop()
                return 0
            if "reload" in what:
                self._reload.clear()
                await self.reload()
                continue
            crashed = [w for w in self.current if w.exited is not None and w.exited.done()]
            for worker in crashed:
                self.current.remove(worker)
                logger.error(
                    "worker %d exited with status %s; starting another in %.0f s",
                    worker.pid,
                    worker.exited.result() if worker.exited else "?",
                    backoff,
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self._stop.wait()
            if self._stop.is_set():
                continue
            replacements = [
                spawn(self.settings, self.sock, w.index, self.generation) for w in crashed
            ]
            for worker in replacements:
                worker.attach()
            try:
                await self.start_generation(replacements, [])
                self.current.extend(replacements)
                backoff = 1.0
            except WorkerFailed as exc:
                logger.error("a replacement worker failed: %s", exc)
                backoff = min(backoff * 2, 30.0)
                # Exited, so the next turn of the loop sees them as crashed and tries again.
                self.current.extend(replacements)
            self._write_state()

    async def reload(self) -> None:
        """One reload (SIGHUP); the outcome goes to the log and the state file."""
        generation = self.generation + 1
        started = time.monotonic()
        logger.info("reload: starting generation %d", generation)
        new = [spawn(self.settings, self.sock, i, generation) for i in range(self.settings.workers)]
        for worker in new:
            worker.attach()
        old = self.current
        try:
            await self.start_generation(new, old)
        except WorkerFailed as exc:
            self.reloads += 1
            told_to_stop = any(w.stopping for w in old)
            if told_to_stop:
                # The file store's handover had stopped the old generation: the main loop sees
                # the new (exited) workers as crashed and starts others, with backoff.
                self.current = new
            message = f"reload failed: {exc}"
            kept = f"generation {self.generation} keeps serving"
            logger.error("%s; %s", message, "no worker serves" if told_to_stop else kept)
            self.last_reload = {"result": "failed", "message": message}
            self._write_state()
            return
        self.generation = generation
        self.current = new
        self._write_state()
        await self.stop_workers([w for w in old if not (w.exited and w.exited.done())], RESTART)
        self.reloads += 1
        took = time.monotonic() - started
        message = f"generation {generation} serving (pids {', '.join(str(w.pid) for w in new)})"
        logger.info("reload: %s, after %.2f s", message, took)
        self.last_reload = {"result": "ok", "message": message, "seconds": round(took, 3)}
        self._write_state()

    async def stop(self) -> None:
        """Stop serving: refuse new connections, drain every worker, remove the pid file."""
        self.sock.close()
        logger.info("stopping: draining %d worker(s)", len(self.current))
        await self.stop_workers(self.current, GOING_AWAY)
        for path in (self.pid_file, state_file(self.pid_file)):
            with contextlib.suppress(OSError):
                path.unlink()

    # -- files -----------------------------------------------------------------------------
    def _write_pid(self) -> None:
        _write_atomic(self.pid_file, f"{os.getpid()}\n")

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "port": self.port,
            "generation": self.generation,
            "workers": [w.pid for w in self.current],
            "reloads": self.reloads,
            "last_reload": self.last_reload,
        }
        _write_atomic(state_file(self.pid_file), json.dumps(state) + "\n")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_master(settings: MasterSettings, sock: socket.socket, reporter: Reporter) -> int:
    """Serve until stopped; the process's exit status. ``sock`` is bound and listening."""
    port = sock.getsockname()[1]
    pid_file = settings.pid_file or default_pid_file(settings.directory, port)
    # Spawn before anything else: the workers' imports are the startup's critical path.
    first = [spawn(settings, sock, i, 1) for i in range(settings.workers)]
    master = Master(settings, sock, reporter, pid_file)
    try:
        return asyncio.run(master.run(first))
    finally:
        for worker in [*master.current, *first]:
            if worker.proc.poll() is None:
                worker.kill()
