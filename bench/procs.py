"""Processes of a benchmark run: the servers under test, the load generators, and /proc readings.

- ``start_surge`` / ``start_python_socketio`` / ``start_node_socketio`` start one server on a
  free loopback port and wait until it answers HTTP;
- ``cpu_seconds`` (utime + stime of every thread, from ``/proc/<pid>/stat``) and ``rss_bytes``
  (``VmRSS`` from ``/proc/<pid>/status``) read what a process itself used, so a noisy machine
  or a busy load generator cannot hide in the numbers;
- ``Child`` runs a load-generator process that speaks one JSON line per event on stdout.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "BENCH",
    "REPO",
    "Child",
    "Server",
    "build_csubs",
    "busy_seconds",
    "connections_of",
    "cpu_seconds",
    "redis_server",
    "redis_store_config",
    "rss_bytes",
    "softirq_seconds",
    "start_ceiling",
    "start_fastapi_socketio",
    "start_node_socketio",
    "start_python_socketio",
    "start_redis",
    "start_surge",
    "wait_quiet",
    "write_syscalls",
]

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PYTHON = sys.executable
SURGE = str(Path(sys.executable).parent / "surge")
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (all its threads)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    # After the ")" closing the command name: field 3 (state) is index 0; utime=14, stime=15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by process ``pid``."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def write_syscalls(pid: int) -> int:
    """Write-family system calls (write, writev, send...) made so far by ``pid`` (``syscw``)."""
    with open(f"/proc/{pid}/io", "rb") as f:
        for line in f:
            if line.startswith(b"syscw:"):
                return int(line.split()[1])
    raise RuntimeError(f"no syscw for pid {pid}")


def busy_seconds() -> float:
    """CPU seconds that processes have used on the whole machine (user + system, all cores).

    Interrupt and softirq time are left out: the kernel charges loopback TCP delivery there, to
    no process (see ``softirq_seconds``).
    """
    with open("/proc/stat", "rb") as f:
        user, nice, system, _idle, _iowait, _irq, _softirq, steal = (
            int(x) for x in f.readline().split()[1:9]
        )
    return (user + nice + system + steal) / CLK_TCK


def softirq_seconds() -> float:
    """CPU seconds spent in interrupts and softirqs (loopback TCP delivery is mostly here)."""
    with open("/proc/stat", "rb") as f:
        fields = f.readline().split()[1:9]
    return (int(fields[5]) + int(fields[6])) / CLK_TCK


def wait_quiet(max_wait: float = 60.0, threshold: float = 0.25) -> float:
    """Wait (at most ``max_wait`` s) until other work uses under ``threshold`` cores; return it.

    Other people's test runs on the same machine would otherwise land in our numbers.
    """
    deadline = time.monotonic() + max_wait
    while True:
        before = busy_seconds()
        time.sleep(1.0)
        load = busy_seconds() - before
        if load < threshold or time.monotonic() > deadline:
            return load
        print(f"  (machine busy: {load:.2f} cores in use by others; waiting)", flush=True)


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid``."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def connections_of(pid: int, port: int) -> int:
    """Established TCP connections to local ``port`` held by process ``pid`` (its socket fds
    matched against ``/proc/net/tcp``)."""
    wanted = f":{port:04X}".encode()
    inodes = set()
    with open("/proc/net/tcp", "rb") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1].endswith(wanted) and fields[3] == b"01":
                inodes.add(fields[9])
    held = 0
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            target = os.readlink(f"{fd_dir}/{fd}")
            if target.startswith("socket:[") and target[8:-1].encode() in inodes:
                held += 1
    return held


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """A server under test: its process, port and log."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], port: int, workdir: Path) -> None:
        self.name = name
        self.proc = proc
        self.port = port
        self.workdir = workdir
        self.log = workdir / "server.log"
        self.serving_pid: int | None = None  # `surge start`: its worker, not the supervisor
        # `surge start --workers N`: every worker; CPU and write calls are their sums.
        self.serving_pids: list[int] = []

    @property
    def pid(self) -> int:
        """The server's process id (the process that serves, not a wrapper)."""
        return self.serving_pid or self.proc.pid

    @property
    def pids(self) -> list[int]:
        """Every serving process (one, or each worker of ``--workers N``)."""
        return self.serving_pids or [self.pid]

    def cpu(self) -> float:
        """CPU seconds used so far (summed over the workers)."""
        return sum(cpu_seconds(pid) for pid in self.pids)

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU seconds used so far (summed over the workers)."""
        splits = [cpu_split(pid) for pid in self.pids]
        return sum(u for u, _ in splits), sum(k for _, k in splits)

    def write_syscalls(self) -> int:
        """Write system calls so far (every socket write: frames, HTTP answers, pings)."""
        return sum(write_syscalls(pid) for pid in self.pids)

    def rss(self) -> int:
        """Resident memory now, bytes."""
        return rss_bytes(self.pid)

    def wait_ready(self, path: str, timeout: float = 30.0) -> None:
        """Poll ``GET path`` until it answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                conn.request("GET", path)
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout} s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log, for error messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        """One JSON POST (for setup, not for load)."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
        conn.request("POST", path, orjson.dumps(body), {"content-type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, data

    def stop(self) -> None:
        """SIGINT, then SIGKILL after 10 s; remove the work directory."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _spawn(
    name: str,
    argv: list[str],
    workdir: Path,
    port: int,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Server:
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - the child keeps it open
    proc = subprocess.Popen(
        argv,
        cwd=cwd or workdir,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    log.close()
    return Server(name, proc, port, workdir)


def start_surge(
    store: str = "memory",
    *,
    log_level: str = "info",
    config_py: str | None = None,
    port: int | None = None,
    probe: bool = False,
    gc_mode: str = "default",
    app: Path | None = None,
    ready_path: str = "/todo",
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
) -> Server:
    """``surge start`` in a fresh copy of examples/todo, or of ``app`` (``store``: memory, file or
    redis; ``ready_path`` answers 200 once it serves)."""
    workdir = Path(tempfile.mkdtemp(prefix="surge-bench-"))
    project = workdir / "todo"
    shutil.copytree(
        app or REPO / "examples" / "todo",
        project,
        ignore=shutil.ignore_patterns(".surge", "node_modules", "__pycache__", "dist", "web"),
    )
    env = {"SURGE_STORE": store}
    # Experiments (bench/ab.py --after-env): SURGE_BENCH_LIMITS="max_write_delay=0" runs the
    # project with Config(limits=Limits(max_write_delay=0)), the store still from SURGE_STORE.
    bench_limits = os.environ.get("SURGE_BENCH_LIMITS")
    if bench_limits and config_py is None:
        (project / "surge.config.py").write_text(
            "from surge import Config\nfrom surge.config import Limits\n\n"
            f"config = Config(limits=Limits({bench_limits}))\n"
        )
    if config_py is not None:
        limits = f", limits=Limits({bench_limits})" if bench_limits else ""
        (project / "surge.config.py").write_text(config_py.replace("{limits}", limits))
        env = {}
    if gc_mode != "default":
        env["PYTHONPATH"] = str(BENCH / "gcmode")
        env["SURGE_BENCH_GC"] = gc_mode
    env.update(extra_env or {})
    port = port or free_port()
    argv = [SURGE, "start", "--port", str(port), "--host", HOST, "--log-level", log_level]
    if workers > 1:
        argv += ["--workers", str(workers)]
    if probe:
        argv = [PYTHON, str(BENCH / "memprobe_server.py"), "--port", str(port)]
    # surge start serves the project in its working directory.
    name = f"surge ({store})" if gc_mode == "default" else f"surge ({store}, gc {gc_mode})"
    if workers > 1:
        name = f"surge ({store}, {workers} workers)"
    server = _spawn(name, argv, workdir, port, env, cwd=project)
    server = _ready(server, ready_path)
    if not probe:
        # surge start serves in a worker process; its supervisor only holds the socket.
        # The supervisor writes its state file around the time the worker starts answering.
        state_file = project / ".surge" / f"surge-{port}.state"
        deadline = time.monotonic() + 30
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if state_file.exists():
                state = orjson.loads(state_file.read_bytes())
                if len(state.get("workers") or ()) >= workers:
                    break
            time.sleep(0.05)
        server.serving_pids = [int(pid) for pid in state.get("workers") or ()]
        if not server.serving_pids:
            server.stop()
            raise RuntimeError(f"{name}: no worker in {state_file}")
        server.serving_pid = server.serving_pids[0]
    return server


def _ready(server: Server, path: str) -> Server:
    try:
        server.wait_ready(path)
    except BaseException:
        server.stop()
        raise
    return server


def start_python_socketio() -> Server:
    """bench/alt/socketio_server.py under uvicorn."""
    workdir = Path(tempfile.mkdtemp(prefix="sio-bench-"))
    port = free_port()
    argv = [PYTHON, str(BENCH / "alt" / "socketio_server.py"), "--port", str(port)]
    return _ready(_spawn("python-socketio", argv, workdir, port), "/health")


def start_fastapi_socketio() -> Server:
    """bench/alt/fastapi_socketio_server.py under uvicorn: pydantic, SQLite insert, room emit."""
    workdir = Path(tempfile.mkdtemp(prefix="fastapi-bench-"))
    port = free_port()
    argv = [
        PYTHON,
        str(BENCH / "alt" / "fastapi_socketio_server.py"),
        *("--port", str(port), "--db", str(workdir / "todo.db")),
    ]
    return _ready(_spawn("fastapi + python-socketio", argv, workdir, port), "/health")


def start_node_socketio() -> Server:
    """bench/alt/node_socketio_server.mjs on Node."""
    if not (BENCH / "node" / "node_modules" / "socket.io").is_dir():
        raise RuntimeError("socket.io is not installed: run bench/setup.sh")
    workdir = Path(tempfile.mkdtemp(prefix="node-bench-"))
    port = free_port()
    argv = ["node", str(BENCH / "alt" / "node_socketio_server.mjs"), "--port", str(port)]
    return _ready(_spawn("socket.io (node)", argv, workdir, port), "/health")


def start_ceiling(mode: str) -> Server:
    """bench/alt/ceiling_server.py: the least Python work per frame (a reference point)."""
    workdir = Path(tempfile.mkdtemp(prefix="ceiling-bench-"))
    port = free_port()
    argv = [PYTHON, str(BENCH / "alt" / "ceiling_server.py"), "--port", str(port), "--mode", mode]
    return _ready(_spawn(f"ceiling ({mode})", argv, workdir, port), "/health")


def start_redis() -> tuple[subprocess.Popen[bytes], int, Path]:
    """A throwaway redis-server on loopback (no persistence)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    workdir = Path(tempfile.mkdtemp(prefix="redis-bench-"))
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, port, workdir
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    """``start_redis`` as a context: its port; the server and its directory go at the end."""
    proc, port, workdir = start_redis()
    try:
        yield port
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def redis_store_config(port: int) -> str:
    """A ``surge.config.py`` serving the project's streams from the Redis store on ``port``."""
    return (
        "from surge import Config\nfrom surge.config import Adapters\n"
        "from surge.streams.stores.redis import RedisStreamAdapter\n\n"
        "config = Config(adapters=Adapters(streams=RedisStreamAdapter("
        f"'redis://127.0.0.1:{port}/0')))\n"
    )


def build_csubs() -> str:
    """bench/csubs (the C subscribers), compiled from bench/csubs.c when missing or older."""
    source, binary = BENCH / "csubs.c", BENCH / "csubs"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        gcc = shutil.which("gcc") or shutil.which("cc")
        if gcc is None:
            raise RuntimeError("no C compiler for bench/csubs.c (apt-get install gcc)")
        subprocess.run([gcc, "-O2", "-Wall", "-o", str(binary), str(source)], check=True)
    return binary.name


class Child:
    """A load-generator process: commands on stdin, one JSON event per line on stdout."""

    def __init__(self, script: str, *args: str) -> None:
        # A Python script of bench/, or an executable of bench/ (csubs, built by build_csubs).
        command = [PYTHON, str(BENCH / script)] if script.endswith(".py") else [str(BENCH / script)]
        self.proc = subprocess.Popen(
            [*command, *args],
            cwd=BENCH,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(b"")

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    def cpu(self) -> float:
        """CPU seconds used so far (0 once it exited)."""
        try:
            return cpu_seconds(self.pid)
        except OSError:
            return 0.0

    def send(self, line: str) -> None:
        """One command line."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """Wait for the next event line; it must be ``event``."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise RuntimeError(f"no {event!r} from {self.proc.args} within {timeout} s") from None
        if not line:
            raise RuntimeError(f"{self.proc.args} exited ({self.proc.wait()}) before {event!r}")
        message: dict[str, Any] = orjson.loads(line)
        if message.get("event") != event:
            raise RuntimeError(f"expected {event!r}, got {message}")
        return message

    def close(self) -> None:
        """Ask it to quit; kill it if it does not within 15 s."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.send("quit")
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """Kill this process (and only it)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
