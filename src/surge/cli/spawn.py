"""Starting ``surge start`` worker processes; binding the port and starting the first one early.

A worker (``surge.cli.worker``) starts with nothing but its end of a control socket pair: it
imports the framework at once, then waits for its spec (project, host, port, ...) and the
listening socket, sent together over that pair (``SCM_RIGHTS``) by ``WorkerProcess.configure``.
So the costly part of a startup, importing the framework in the worker, does not wait for the
command line to be parsed: ``surge``'s entry point calls ``start_early(args)`` before importing
the CLI when the command is ``start``. That binds the port first (when ``--host``/``--port`` are
given in a plain form, or not at all: the defaults), so that a restarted server accepts
connections into the kernel's backlog within milliseconds of its exec (Motia's npm client
retries once, 2 s after a close, and gives up if refused); then it starts the worker. The
supervisor takes both (``take_early_socket``, ``take_early``). An early worker nobody takes
(``surge start --help``, a bad option) sees the end of its control socket and exits without a
word; a port that cannot be bound early is bound again by the command, which reports why not.

Standard library only: this runs before anything else is imported.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import subprocess
import sys
from typing import Any

from surge._net import bind_listener

__all__ = [
    "CONTROL_FD_ENV",
    "SUPERVISOR_PID_ENV",
    "WorkerProcess",
    "bind_listener",
    "start_early",
    "take_early",
    "take_early_socket",
]

CONTROL_FD_ENV = "SURGE_WORKER_CONTROL_FD"
SUPERVISOR_PID_ENV = "SURGE_SUPERVISOR_PID"


class WorkerProcess:
    """A started worker process and the supervisor's end of its control socket."""

    def __init__(self) -> None:
        mine, theirs = socket.socketpair()
        env = {
            **os.environ,
            CONTROL_FD_ENV: str(theirs.fileno()),
            SUPERVISOR_PID_ENV: str(os.getpid()),
        }
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "surge.cli.worker"],
                env=env,
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor only
            )
        finally:
            theirs.close()
        self.control = mine

    def configure(self, spec: dict[str, Any], listener: socket.socket) -> None:
        """Send the worker its spec and the listening socket (one message)."""
        data = json.dumps(spec).encode() + b"\n"
        socket.send_fds(self.control, [data], [listener.fileno()])

    def discard(self) -> None:
        """Close the control socket: an unconfigured worker exits on its own."""
        with contextlib.suppress(OSError):
            self.control.close()


DEFAULT_HOST = "0.0.0.0"  # surge start's --host default
DEFAULT_PORT = 3000


_early: WorkerProcess | None = None
_early_socket: tuple[str, int, socket.socket] | None = None


def _address(args: list[str]) -> tuple[str, int] | None:
    """``--host``/``--port`` from ``surge start``'s arguments; None when unsure (the CLI then
    binds after parsing)."""
    host, port = DEFAULT_HOST, DEFAULT_PORT
    i = 0
    try:
        while i < len(args):
            arg = args[i]
            name, eq, value = arg.partition("=")
            if name in ("--host", "--port", "-p"):
                if not eq:
                    i += 1
                    value = args[i]
                if name == "--host":
                    host = value
                else:
                    port = int(value)
            i += 1
    except (IndexError, ValueError):
        return None
    return host, port


def start_early(args: list[str]) -> None:
    """Bind the port and start one worker now (``surge start``'s arguments, before parsing)."""
    global _early, _early_socket
    address = _address(args)
    if address is not None and _early_socket is None:
        with contextlib.suppress(OSError):  # the command binds again and says why it cannot
            _early_socket = (*address, bind_listener(*address))
    if _early is None:
        try:
            _early = WorkerProcess()
        except OSError:
            return
        atexit.register(_discard_early)


def take_early_socket(host: str, port: int) -> socket.socket | None:
    """The socket ``start_early`` bound, if it is for ``host``:``port`` (once)."""
    global _early_socket
    early, _early_socket = _early_socket, None
    if early is None:
        return None
    if (early[0], early[1]) != (host, port):
        early[2].close()
        return None
    return early[2]


def take_early() -> WorkerProcess | None:
    """The worker ``start_early`` started, once (None if there is none)."""
    global _early
    worker, _early = _early, None
    return worker


def _discard_early() -> None:
    worker = take_early()
    if worker is not None:
        worker.discard()
