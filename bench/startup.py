"""Startup benchmark: from exec of ``surge start`` to its first accepted WebSocket and HTTP 200.

Each run starts ``surge start`` on a free loopback port in a fresh copy of examples/todo and, from
the moment just before the exec, two probes run side by side, each retrying every millisecond
while the port refuses connections:

- ``listen``: the first TCP connection the port accepts (the kernel's, before any process has
  read it: what Motia's client needs not to be refused);
- ``ws``: a raw WebSocket upgrade of ``/`` until the answer is ``101 Switching Protocols``;
- ``http``: ``GET /todo`` until the answer is ``200``.

``cpu`` is the CPU time (user + system) the server's processes had used by then (the supervisor
and its worker, from ``/proc``): unlike the wall times it hardly moves with other load on the
machine. Then the server gets SIGTERM and ``stop`` is the time until it exited (its drain).
Printed: every run, then the median, min and max of each. A cold restart must land inside
Motia's npm client's single retry, 2 s after a close (issue 13), with room to spare on a loaded
machine.

Bytecode: ``cold`` imports Surge from source with no bytecode cache (this repository's dev venv
sets PYTHONDONTWRITEBYTECODE, so every import of a Surge module compiles it); ``warm`` uses a
bytecode cache (``PYTHONPYCACHEPREFIX``, filled by one untimed run), as an installed package has.

    .venv/bin/python bench/startup.py                      # 7 runs, cold and warm
    .venv/bin/python bench/startup.py --runs 11 --bytecode warm
    .venv/bin/python bench/startup.py --surge /tmp/surge-before/src   # another tree (before/after)
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SURGE = str(Path(sys.executable).parent / "surge")
HOST = "127.0.0.1"
TIMEOUT = 30.0


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _status(
    port: int, request: bytes, deadline: float, connected: list[float] | None = None
) -> int | None:
    """Send ``request`` on a new connection; the answer's status, or None if refused."""
    try:
        sock = socket.create_connection((HOST, port), timeout=max(0.1, deadline - time.monotonic()))
    except (ConnectionRefusedError, ConnectionResetError):
        return None
    if connected is not None and not connected:
        connected.append(time.perf_counter())
    with sock:
        try:
            sock.sendall(request)
            head = b""
            while b"\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    return None  # closed before answering (still starting up)
                head += chunk
        except (ConnectionResetError, BrokenPipeError):
            return None
    return int(head.split(b" ", 2)[1])


def probe(
    port: int, request: bytes, expect: int, t0: float, out: dict[str, float], key: str
) -> None:
    """Retry ``request`` until it is answered ``expect``; record the seconds since ``t0``."""
    deadline = time.monotonic() + TIMEOUT
    connected: list[float] = []
    while time.monotonic() < deadline:
        status = _status(port, request, deadline, connected)
        if connected and f"{key}-listen" not in out:
            out[f"{key}-listen"] = connected[0] - t0
        if status == expect:
            out[key] = time.perf_counter() - t0
            return
        time.sleep(0.001)


def requests(port: int) -> tuple[bytes, bytes]:
    """The WebSocket upgrade of ``/`` and ``GET /todo``, both on one connection each."""
    key = base64.b64encode(os.urandom(16)).decode()
    ws = (
        f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    http = f"GET /todo HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode()
    return ws, http


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def server_pids(proc: subprocess.Popen[bytes]) -> list[int]:
    """The server's processes: ``proc`` and its children (``surge start``'s workers)."""
    pids = [proc.pid]
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except FileNotFoundError:
        children = []
    return pids + [int(pid) for pid in children]


def one_run(project: Path, env: dict[str, str], extra: list[str]) -> dict[str, float]:
    """Start, probe, stop one server; the times in seconds (missing key: never answered)."""
    port = free_port()
    ws, http = requests(port)
    out: dict[str, float] = {}
    log = open(project.parent / "server.log", "ab")  # noqa: SIM115
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [SURGE, "start", "--port", str(port), "--host", HOST, "--log-level", "warning", *extra],
        cwd=project,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    probes = [
        threading.Thread(target=probe, args=(port, ws, 101, t0, out, "ws")),
        threading.Thread(target=probe, args=(port, http, 200, t0, out, "http")),
    ]
    for thread in probes:
        thread.start()
    for thread in probes:
        thread.join()
    out["cpu"] = sum(cpu_seconds(pid) for pid in server_pids(proc))
    firsts = [out.pop(k) for k in ("ws-listen", "http-listen") if k in out]
    if firsts:
        out["listen"] = min(firsts)
    t1 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(TIMEOUT)
        out["stop"] = time.perf_counter() - t1
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()
    return out


def run(label: str, project: Path, env: dict[str, str], runs: int, extra: list[str]) -> None:
    """Print every run of one configuration, then median / min / max per measure."""
    print(f"\n{label}")
    results = [one_run(project, env, extra) for _ in range(runs)]
    for i, r in enumerate(results, 1):
        row = "  ".join(f"{k} {r[k] * 1000:6.0f} ms" if k in r else f"{k}  (none)" for k in KEYS)
        print(f"  run {i:2}: {row}")
    for name, fn in (("median", statistics.median), ("min", min), ("max", max)):
        cells: list[str] = []
        for key in KEYS:
            values = [r[key] for r in results if key in r]
            cells.append(f"{key} {fn(values) * 1000:6.0f} ms" if values else f"{key}  (none)")
        print(f"  {name:>6}: " + "  ".join(cells))


KEYS = ("listen", "ws", "http", "cpu", "stop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--bytecode", choices=("cold", "warm", "both"), default="both")
    parser.add_argument("--project", type=Path, default=REPO / "examples" / "todo")
    parser.add_argument("--surge", type=Path, default=REPO / "src", help="Surge's src directory")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="surge-startup-") as tmp:
        project = Path(tmp) / "todo"
        shutil.copytree(
            args.project,
            project,
            ignore=shutil.ignore_patterns(".surge", "__pycache__", "node_modules", "web"),
        )
        base = {**os.environ, "PYTHONPATH": str(args.surge.resolve())}
        base.pop("SURGE_STORE", None)
        extra = ["--workers", str(args.workers)] if args.workers != 1 else []
        print(f"surge start in a copy of {args.project} ({args.surge}), {os.cpu_count()} cores")
        if args.bytecode in ("cold", "both"):
            env = {**base, "PYTHONDONTWRITEBYTECODE": "1"}
            run("cold (no bytecode cache for Surge)", project, env, args.runs, extra)
        if args.bytecode in ("warm", "both"):
            env = {**base, "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache")}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            one_run(project, env, extra)  # fills the cache
            run("warm (bytecode cached)", project, env, args.runs, extra)


if __name__ == "__main__":
    main()
