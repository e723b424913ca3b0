"""One ``surge start`` worker process, run by the supervisor (``surge.cli.master``).

The supervisor starts ``python -m surge.cli.worker`` with one inherited file descriptor, its end
of a control socket pair (``surge.cli.spawn``). The worker imports the framework right away,
then receives its spec (JSON: project, host, port, log level, worker count, index, generation,
drain timeout) together with the listening socket, shared by every worker. It builds the app
from the project directory (fresh code on every generation), runs its lifespan, and then speaks
one JSON object per line on the control socket:

- worker -> supervisor: ``{"event": "failed", "error": "...", "code": N}`` (the project does not
  load: one readable line), ``{"event": "ready", "distributed": bool, "app": {...}}`` (lifespan
  done: storage open, steps loaded, ``/readyz`` would answer ready; ``app`` feeds the banner),
  ``{"event": "serving"}`` (it accepts connections);
- supervisor -> worker: ``{"cmd": "go"}`` (accept connections), ``{"cmd": "stop", "code": C}``
  (drain, closing WebSockets with ``C``: 1012 on a reload, 1001 on a stop).

A worker dies with its supervisor: on Linux the kernel kills it when the supervisor dies
(``PR_SET_PDEATHSIG``), so ``kill -9`` of ``surge start`` is a crash of the whole server, as it is
for one process. Elsewhere, end of file on the control socket means the supervisor is gone:
before the spec the worker exits without a word (an early start nobody took); later it drains
(1001) and exits. Either way no orphan keeps serving. Workers run in their own session: a
terminal's Ctrl-C reaches the supervisor only, which stops them in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import socket
import sys
from typing import Any

__all__ = ["main", "one_line"]

logger = logging.getLogger("surge.worker")


def one_line(exc: BaseException) -> str:
    """An expected startup error as one readable line (pydantic's errors span several)."""
    import pydantic

    from surge.errors import ConfigError
    from surge.steps.discovery import describe_exception

    if isinstance(exc, pydantic.ValidationError):
        return describe_exception(exc)
    text = str(exc)
    cause = exc.__cause__
    if isinstance(exc, ConfigError) and isinstance(cause, pydantic.ValidationError):
        text = text.replace(f"ValidationError: {cause}", describe_exception(cause))
    return " ".join(text.split())


class SupervisorLink:
    """This worker's end of the control socket: JSON lines both ways."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""
        self._watcher: asyncio.Task[None] | None = None

    def send(self, message: dict[str, Any]) -> None:
        """Send one message (a few hundred bytes into an empty socket buffer: never blocks)."""
        # The supervisor may be gone: then receive() sees the end of file.
        with contextlib.suppress(OSError):
            self.sock.sendall(json.dumps(message).encode() + b"\n")

    async def receive(self) -> dict[str, Any] | None:
        """The next message, or None at end of file (the supervisor exited)."""
        loop = asyncio.get_running_loop()
        while b"\n" not in self._buffer:
            try:
                chunk = await loop.sock_recv(self.sock, 4096)
            except OSError:
                return None
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError:
            logger.error("unreadable control message %r", line[:200])
            return None
        return message if isinstance(message, dict) else None

    def watch(self, on_stop: Any) -> None:
        """From now on, call ``on_stop(code)`` on a stop command or the supervisor's end."""

        async def watch() -> None:
            while True:
                message = await self.receive()
                if message is None:
                    on_stop(1001)
                    return
                if message.get("cmd") == "stop":
                    on_stop(int(message.get("code", 1001)))
                    return

        self._watcher = asyncio.get_running_loop().create_task(watch())


def _app_summary(app: Any) -> dict[str, Any]:
    registry = app.runtime.registry
    return {
        "streams": len(registry.streams),
        "routes": [[r.config.method, r.config.path, r.config.name] for r in registry.routes],
        "events": len(registry.events),
        "crons": len(registry.crons),
    }


def run(spec: dict[str, Any], link: SupervisorLink, listener: socket.socket) -> int:
    """Build the app, wait for the supervisor's go, serve until told to stop; the exit status."""
    import pydantic

    from surge.app import create_app
    from surge.errors import SurgeError
    from surge.server.logs import LOG_FORMAT_ENV, LOG_FORMATS, configure_logging

    try:
        surge_app = create_app(spec["dir"])
    except (SurgeError, pydantic.ValidationError) as exc:
        link.send({"event": "failed", "error": one_line(exc), "code": 1})
        return 1
    # --log-format / $SURGE_LOG_FORMAT, else what surge.config.py asks for.
    log_format = os.environ.get(LOG_FORMAT_ENV) or surge_app.runtime.config.log_format
    if log_format not in LOG_FORMATS:
        error = f"Config.log_format must be one of {', '.join(LOG_FORMATS)}"
        link.send({"event": "failed", "error": error, "code": 2})
        return 2
    configure_logging(spec["log_level"], log_format)
    distributed = bool(getattr(surge_app.runtime.adapter, "is_distributed", False))
    if spec["workers"] > 1 and not distributed:
        link.send(
            {
                "event": "failed",
                "code": 2,
                "error": "--workers > 1 needs a storage adapter that fans changes out across "
                "processes: configure the Redis adapter "
                "(Config(adapters=Adapters(streams=RedisStreamAdapter(...)))). The default file "
                "store serves one process.",
            }
        )
        return 2
    surge_app.tune_gc = True
    surge_app.runtime.set_workers(spec["workers"])

    from surge.server.serve import SurgeServer, uvicorn_config

    # JSON: uvicorn's loggers get no handlers of their own and reach the root's JSON handler.
    log_config: dict[str, Any] = {"log_config": None} if log_format == "json" else {}
    config = uvicorn_config(
        surge_app,
        host=spec["host"],
        port=spec["port"],
        log_level=spec["log_level"],
        **log_config,
    )
    summary = {**_app_summary(surge_app), "log_format": log_format}
    server: SurgeServer

    async def gate() -> bool:
        gc.enable()  # off since main(): the lifespan just froze the startup objects (tune_gc)
        link.sock.setblocking(False)
        link.send({"event": "ready", "distributed": distributed, "app": summary})
        message = await link.receive()
        if message is None or message.get("cmd") != "go":
            return False
        link.watch(server.request_drain)
        return True

    server = SurgeServer(
        config,
        app=surge_app,
        drain_timeout=float(spec["drain_timeout"]),
        gate=gate,
        on_started=lambda: link.send({"event": "serving"}),
    )
    server.run(sockets=[listener])
    return 0


def _die_with_supervisor(supervisor: int) -> None:
    """Ask Linux to SIGKILL this process when its parent, the supervisor, dies."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != supervisor:  # it died before the prctl took effect
        os._exit(1)


def _receive_spec(control: socket.socket) -> tuple[dict[str, Any], socket.socket] | None:
    """The spec and the listening socket, or None when the supervisor closed the pair first."""
    data = b""
    listener: socket.socket | None = None
    while b"\n" not in data:
        try:
            chunk, fds, _flags, _addr = socket.recv_fds(control, 65536, 1)
        except OSError:
            return None
        for fd in fds:
            if listener is None:
                listener = socket.socket(fileno=fd)
            else:
                os.close(fd)
        if not chunk:
            return None
        data += chunk
    if listener is None:
        return None
    listener.set_inheritable(False)
    return json.loads(data.split(b"\n", 1)[0]), listener


def _preload() -> None:
    """Import what serving needs while the supervisor is still parsing its command line."""
    import surge.app
    import surge.server.serve  # noqa: F401


def main() -> None:
    """Entry point: ``python -m surge.cli.worker`` (started by the supervisor only)."""
    from surge.cli.spawn import CONTROL_FD_ENV, SUPERVISOR_PID_ENV

    # No collections while importing and building the app: tens of thousands of objects that
    # all stay alive (the app's lifespan freezes them, then the gate turns collection back on).
    gc.disable()
    raw = os.environ.pop(CONTROL_FD_ENV, None)
    if raw is None:
        sys.exit("surge.cli.worker is started by `surge start`, not by hand")
    _die_with_supervisor(int(os.environ.pop(SUPERVISOR_PID_ENV, "0")))
    control = socket.socket(fileno=int(raw))
    control.set_inheritable(False)
    # Step files import `steps.*` from the project root, as under `surge dev`.
    sys.path.insert(0, os.getcwd())
    _preload()
    received = _receive_spec(control)
    if received is None:
        return  # an early start nobody took
    spec, listener = received
    os.environ.update(spec.get("env") or {})
    sys.exit(run(spec, SupervisorLink(control), listener))


if __name__ == "__main__":
    main()
