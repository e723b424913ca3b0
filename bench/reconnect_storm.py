"""Reconnect storm (issue 13): N clients of one G-item group lose the server for a few seconds
while C changes are made; how long until all are current again, and how many bytes the server
sends them, when they resume from their offsets vs when they re-sync.

Usage (loopback, bounded; each mode starts its own server):

    PYTHONPATH=src .venv/bin/python bench/reconnect_storm.py \\
        --clients 5000 --items 1000 --changes 200 --outage 3 --modes sync resume resume-deltas

The server is ``surge start`` in a copy of examples/todo on the file store (its history survives
the restart). The group is written straight into the store before the start; the clients join it
and record each frame's offset; then the server is killed with SIGKILL, C updates
(``update(ops)``: set ``completedAt``) are applied to the same database by this process over
``--outage`` seconds, and the server is started again. Every client retries every 0.1-0.3 s.

The clients are, by default, the lean generator (``--generator lean``: bench/storm_clients.py,
raw-socket clients in ``--procs`` processes, each checking its offsets, and every
``--verify-every``-th one the group's final items against the store); ``--generator websockets``
runs the first generator (`websockets` clients in this process, which bounded the first
measurements).

Modes: ``sync`` (joins without ``since``: Motia's clients), ``resume`` (``since``, whole items),
``resume-deltas`` (``since`` and ``deltas``; updates come as their ops), ``resume-compact``
(``since``, ``deltas`` and ``compact``: what ``surge.client`` does on a server with the compact
patch form, protocol.md section 4; lean generator only). A client is current once it got a sync
at or after the last change, or its resume frame and every replayed frame.

Printed per mode: time from the restart (the new process) until all clients are current (and
its startup alone), p50/p99 per client, the server's CPU seconds from its readiness until then
(what the storm cost it, whatever the load generator's speed), and the bytes of WebSocket
payload the clients received after the restart (what the server sent them, without frame
headers; "wire MB" counts frame headers and handshakes too).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import websockets
from websockets.exceptions import WebSocketException

from surge.streams.stores.file import FileStreamAdapter

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SURGE = str(Path(sys.executable).parent / "surge")
HOST = "127.0.0.1"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """``surge start`` in ``project``, in its own session so that SIGKILL takes every process."""

    def __init__(self, project: Path, port: int) -> None:
        self.project, self.port = project, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> tuple[float, float]:
        """Start and wait until ``GET /todo`` answers; returns when it was started and when it
        answered (monotonic)."""
        spawned = time.monotonic()
        log = open(self.project / "server.log", "ab")  # noqa: SIM115 - the child keeps it
        argv = [SURGE, "start", "--port", str(self.port), "--host", HOST, "--log-level", "warning"]
        self.proc = subprocess.Popen(
            argv,
            cwd=self.project,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SURGE_STORE": "file"},
            start_new_session=True,
        )
        log.close()
        import http.client

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + (self.project / "server.log").read_text())
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                conn.request("GET", "/todo")
                if conn.getresponse().status == 200:
                    conn.close()
                    return spawned, time.monotonic()
                conn.close()
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("server not ready within 60 s")

    def cpu(self) -> float:
        """CPU seconds used so far by the server's processes (the supervisor and its workers)."""
        if self.proc is None:
            return 0.0
        tick = os.sysconf("SC_CLK_TCK")
        stats: dict[int, tuple[int, float]] = {}  # pid -> (ppid, cpu seconds)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
        ours, total = {self.proc.pid}, 0.0
        for _ in range(4):  # descendants, a few levels down
            ours |= {pid for pid, (ppid, _) in stats.items() if ppid in ours}
        for pid in ours:
            total += stats.get(pid, (0, 0.0))[1]
        return total

    def kill(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None


def todo(i: int, size: int) -> dict[str, Any]:
    return {
        "id": f"todo-{i:05d}",
        "description": f"item {i} " + "x" * size,
        "createdAt": "2026-12-01T12:00:00+00:00",
        "dueDate": None,
        "completedAt": None,
    }


class StormClient:
    """One raw WebSocket client of the group, reconnecting on its own."""

    def __init__(self, url: str, mode: str) -> None:
        self.url, self.mode = url, mode
        self.position: dict[str, Any] | None = None
        self.synced = asyncio.Event()
        self.after_restart = False
        self.target = 0  # the offset of the last change made during the outage
        self.bytes = 0
        self.frames = 0
        self.current_at: float | None = None
        self.current = asyncio.Event()
        self._missed = -1

    def _join(self) -> str:
        data: dict[str, Any] = {"streamName": "todo", "groupId": "inbox", "subscriptionId": "s"}
        if self.mode != "sync" and self.position is not None:
            data["since"] = self.position
        if self.mode in ("resume-deltas", "resume-compact"):
            data["deltas"] = True
        return orjson.dumps({"type": "join", "data": data}).decode()

    def _frame(self, raw: str) -> None:
        frame = orjson.loads(raw)
        kind = frame["event"]["type"]
        if self.after_restart and self.current_at is None:
            self.bytes += len(raw.encode())
            self.frames += 1
        offset = frame.get("offset")
        if kind == "resume":
            self._missed = frame["event"]["data"]["missed"]
            if self._missed == 0:
                self._current()
        elif kind == "sync":
            self.synced.set()
            if self.after_restart and isinstance(offset, int) and offset >= self.target:
                self._current()
        elif self._missed > 0:
            self._missed -= 1
            if self._missed == 0:
                self._current()
        if isinstance(offset, int) and kind != "resume":
            self.position = {"offset": offset, "epoch": frame["epoch"]}

    def _current(self) -> None:
        if self.after_restart and self.current_at is None:
            self.current_at = time.monotonic()
            self.current.set()

    async def run(self, connects: asyncio.Semaphore) -> None:
        while True:
            try:
                async with connects:
                    ws = await websockets.connect(self.url, open_timeout=10, max_size=None)
                async with ws:
                    await ws.send(self._join())
                    async for raw in ws:
                        self._frame(raw if isinstance(raw, str) else raw.decode())
            except (OSError, WebSocketException, TimeoutError):
                pass
            await asyncio.sleep(random.uniform(0.1, 0.3))


async def storm(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="surge-storm-"))
    project = workdir / "todo"
    shutil.copytree(
        REPO / "examples" / "todo",
        project,
        ignore=shutil.ignore_patterns(".surge", "node_modules", "__pycache__", "dist", "web"),
    )
    store_dir = project / ".surge" / "streams"
    store = FileStreamAdapter(store_dir, synchronous="normal")
    await store.open(lambda message: None)
    for i in range(args.items):
        await store.set("todo", "inbox", f"todo-{i:05d}", todo(i, args.description))
    await store.close()

    port = free_port()
    server = Server(project, port)
    server.start()
    if args.generator == "lean":
        fleet: Fleet | WebsocketsFleet = Fleet(args, port, mode)
    else:
        fleet = WebsocketsFleet(args, port, mode)
    try:
        await fleet.start()
        async with asyncio.timeout(300):
            await fleet.synced()
        print(f"  {mode}: {args.clients} clients synced; killing the server", flush=True)

        server.kill()
        killed = time.monotonic()
        writer = FileStreamAdapter(store_dir)
        await writer.open(lambda message: None)
        rng = random.Random(13)
        last = 0
        try:
            for n in range(args.changes):
                i = rng.randrange(args.items)
                ops = [{"type": "set", "path": "completedAt", "value": f"2026-12-01T12:{n:05d}"}]
                updated = await writer.update("todo", "inbox", f"todo-{i:05d}", ops)
                last = updated.change.seq
                await asyncio.sleep(args.outage / args.changes)
            final = await writer.get_group("todo", "inbox")
        finally:
            await writer.close()
        expected = digest({item["id"]: item for item in final.items})
        await fleet.target(last)
        await asyncio.sleep(max(0.0, killed + args.outage - time.monotonic()))
        spawned, ready = await asyncio.to_thread(server.start)
        cpu_ready = server.cpu()
        async with asyncio.timeout(300):
            result = await fleet.current()
        server_cpu = server.cpu() - cpu_ready
    finally:
        await fleet.stop()
        server.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    times = sorted(t - spawned for t in result["times"])
    wrong = [d for d in result["digests"] if d != expected]
    return {
        "startup_s": ready - spawned,
        "server_cpu_s": server_cpu,
        "mode": mode,
        "clients": args.clients,
        "items": args.items,
        "changes": args.changes,
        "all_current_s": max(times),
        "p50_s": times[len(times) // 2],
        "p99_s": times[int(len(times) * 0.99) - 1],
        "bytes": result["payload_bytes"],
        "wire_bytes": result["wire_bytes"],
        "frames": result["frames"],
        "verified": f"{len(result['digests']) - len(wrong)}/{len(result['digests'])}",
        "problems": result["problem_count"],
        "problem_sample": result["problems"][:5],
    }


def digest(items: dict[str, Any]) -> str:
    """What the lean clients that keep the items report (``storm_clients.Client.digest``)."""
    return hashlib.sha256(orjson.dumps(items, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Fleet:
    """The lean generator: ``--procs`` processes of bench/storm_clients.py."""

    def __init__(self, args: argparse.Namespace, port: int, mode: str) -> None:
        self.args, self.port, self.mode = args, port, mode
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        args = self.args
        per = -(-args.clients // args.procs)
        for first in range(0, args.clients, per):
            count = min(per, args.clients - first)
            self.procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(BENCH / "storm_clients.py"),
                    "--port", str(self.port), "--clients", str(count), "--first", str(first),
                    "--mode", self.mode, "--verify-every", str(args.verify_every),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
            )  # fmt: skip

    async def _events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for proc in self.procs:
            assert proc.stdout is not None
            line = await proc.stdout.readline()
            if not line:
                raise RuntimeError(f"a load generator process exited (rc {await proc.wait()})")
            event = orjson.loads(line)
            if event["event"] != name:
                raise RuntimeError(f"expected {name}, got {event}")
            out.append(event)
        return out

    async def _say(self, message: dict[str, Any]) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(orjson.dumps(message) + b"\n")
            await proc.stdin.drain()

    async def synced(self) -> None:
        await self._events("synced")

    async def target(self, offset: int) -> None:
        await self._say({"cmd": "target", "offset": offset})

    async def current(self) -> dict[str, Any]:
        events = await self._events("current")
        merged: dict[str, Any] = {"times": [], "digests": [], "problems": []}
        for key in ("payload_bytes", "wire_bytes", "frames", "problem_count"):
            merged[key] = sum(e[key] for e in events)
        for e in events:
            merged["times"] += e["times"]
            merged["digests"] += e["digests"]
            merged["problems"] += e["problems"]
        return merged

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None and proc.stdin is not None:
                try:
                    proc.stdin.write(b'{"cmd":"stop"}\n')
                    proc.stdin.close()
                except (BrokenPipeError, ConnectionResetError):
                    pass
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


class WebsocketsFleet:
    """The first generator: ``StormClient``s of the `websockets` library in this process."""

    def __init__(self, args: argparse.Namespace, port: int, mode: str) -> None:
        self.clients = [StormClient(f"ws://{HOST}:{port}/", mode) for _ in range(args.clients)]
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        connects = asyncio.Semaphore(500)
        self.tasks = [asyncio.create_task(c.run(connects)) for c in self.clients]

    async def synced(self) -> None:
        for c in self.clients:
            await c.synced.wait()

    async def target(self, offset: int) -> None:
        for c in self.clients:
            c.target, c.after_restart = offset, True

    async def current(self) -> dict[str, Any]:
        for c in self.clients:
            await c.current.wait()
        return {
            "times": [c.current_at or 0.0 for c in self.clients],
            "payload_bytes": sum(c.bytes for c in self.clients),
            "wire_bytes": 0,
            "frames": sum(c.frames for c in self.clients),
            "digests": [],
            "problems": [],
            "problem_count": 0,
        }

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--outage", type=float, default=3.0)
    parser.add_argument("--description", type=int, default=40, help="characters per item")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["sync", "resume", "resume-deltas"],
        choices=["sync", "resume", "resume-deltas", "resume-compact"],
    )
    parser.add_argument(
        "--generator",
        choices=["lean", "websockets"],
        default="lean",
        help="lean: raw-socket clients in --procs processes (bench/storm_clients.py); "
        "websockets: the first generator, websockets clients in this process",
    )
    parser.add_argument("--procs", type=int, default=2, help="lean generator processes")
    parser.add_argument(
        "--verify-every", type=int, default=50, help="every Nth lean client checks the items"
    )
    args = parser.parse_args()
    if args.generator == "websockets" and "resume-compact" in args.modes:
        parser.error("resume-compact needs the lean generator")
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = []
    for mode in args.modes:
        results.append(await storm(args, mode))
    print(f"items of ~{args.description + 120} bytes; times from the restart (startup included)")
    print(f"{'mode':<14}{'clients':>8}{'startup s':>10}{'all current s':>15}", end="")
    print(f"{'p50 s':>8}{'p99 s':>8}{'server cpu s':>14}", end="")
    print(f"{'MB sent':>10}{'wire MB':>9}{'frames':>10}{'bytes/client':>14}{'verified':>10}")
    for r in results:
        print(
            f"{r['mode']:<14}{r['clients']:>8}{r['startup_s']:>10.2f}"
            f"{r['all_current_s']:>15.2f}{r['p50_s']:>8.2f}"
            f"{r['p99_s']:>8.2f}{r['server_cpu_s']:>14.2f}"
            f"{r['bytes'] / 1e6:>10.1f}{r['wire_bytes'] / 1e6:>9.1f}{r['frames']:>10}"
            f"{r['bytes'] // r['clients']:>14}{r['verified']:>10}"
        )
        if r["problems"]:
            print(f"  {r['problems']} PROBLEMS, e.g. {r['problem_sample']}")
    base = next((r for r in results if r["mode"] == "sync"), None)
    if base is not None:
        for r in results:
            if r is not base and r["bytes"]:
                print(f"{r['mode']}: {base['bytes'] / r['bytes']:.1f}x fewer bytes than sync")


if __name__ == "__main__":
    asyncio.run(main())
