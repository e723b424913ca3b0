"""The writer process: ``POST /todo`` over keep-alive connections, as fast as possible or at a rate.

Run by ``bench/run.py``. It opens ``--concurrency`` connections, prints ``{"event": "ready"}``,
waits for ``go`` on stdin, writes for ``--duration`` seconds and prints one ``{"event": "done"}``
line: requests answered 2xx, other statuses, the achieved rate and the request latency
percentiles. Every description carries the send time (``lean.latency_marker``) so the
subscribers can time each delivery from the start of its POST.

- ``--mode max``: every connection sends its next request as soon as the previous one is
  answered (a closed loop: the server's own pace);
- ``--mode rate``: ``--rate`` requests per second on schedule, each on a free connection (when
  all are busy the request waits for one, and its latency includes that wait).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson
import uvloop
from lean import HttpConnection, latency_marker, post_request
from subscribers import emit, percentiles


class Writer:
    """The connections and the tallies of one run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ok = 0
        self.statuses: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.latencies: list[int] = []
        self.conns: list[HttpConnection] = []
        self.reopened = 0  # connections the server closed during the run, replaced

    async def open(self) -> None:
        """Open the keep-alive connections."""
        loop = asyncio.get_running_loop()
        for _ in range(self.args.concurrency):
            _, conn = await loop.create_connection(HttpConnection, self.args.host, self.args.port)
            self.conns.append(conn)

    async def reopen_all(self) -> int:
        """Replace every connection by a fresh one, right before the load starts.

        Since issue 9 a connection must send a request head within ``Limits.header_timeout``
        (10 s) of opening: the harness may wait longer than that for a quiet machine, and a
        connection opened 9 s before ``go`` would be closed under the load. Returns how many of
        the old ones the server had already closed.
        """
        loop = asyncio.get_running_loop()
        closed = 0
        for i, conn in enumerate(self.conns):
            if conn.transport is None or conn.transport.is_closing() or conn.is_lost:
                closed += 1
            elif conn.transport is not None:
                conn.transport.close()
            _, self.conns[i] = await loop.create_connection(
                HttpConnection, self.args.host, self.args.port
            )
        return closed

    async def reopen(self, conn: HttpConnection) -> HttpConnection:
        """A fresh connection in place of ``conn`` once the server closed it."""
        if conn.transport is not None and not conn.transport.is_closing() and not conn.is_lost:
            return conn
        loop = asyncio.get_running_loop()
        _, fresh = await loop.create_connection(HttpConnection, self.args.host, self.args.port)
        self.conns = [fresh if c is conn else c for c in self.conns]
        self.reopened += 1
        return fresh

    async def post(self, conn: HttpConnection) -> None:
        """One POST; tally its outcome."""
        args = self.args
        t0 = time.monotonic_ns()
        body = orjson.dumps({"description": latency_marker(t0, args.description_size)})
        try:
            status, _ = await conn.request(post_request(args.host, args.port, args.path, body))
        except ConnectionError as exc:
            name = type(exc).__name__
            self.errors[name] = self.errors.get(name, 0) + 1
            await asyncio.sleep(0.01)
            return
        self.latencies.append(time.monotonic_ns() - t0)
        if 200 <= status < 300:
            self.ok += 1
        else:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    async def run_max(self) -> None:
        """Closed loop: each connection posts again as soon as it is answered."""
        deadline = time.monotonic() + self.args.duration

        async def loop(conn: HttpConnection) -> None:
            while time.monotonic() < deadline:
                await self.post(conn)
                conn = await self.reopen(conn)

        await asyncio.gather(*(loop(conn) for conn in self.conns))

    async def run_rate(self) -> None:
        """Open loop: ``rate`` requests per second on schedule."""
        args = self.args
        free: asyncio.Queue[HttpConnection] = asyncio.Queue()
        for conn in self.conns:
            free.put_nowait(conn)
        total = int(args.rate * args.duration)
        start = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()

        async def one(conn: HttpConnection) -> None:
            try:
                await self.post(conn)
                conn = await self.reopen(conn)
            finally:
                free.put_nowait(conn)

        for i in range(total):
            delay = start + i / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            conn = await free.get()
            task = asyncio.create_task(one(conn))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=30)

    def report(self, elapsed: float) -> dict[str, Any]:
        """The tallies as a JSON-able dict."""
        return {
            "ok": self.ok,
            "reopened": self.reopened,
            "statuses": {str(k): v for k, v in self.statuses.items()},  # JSON keys are strings
            "errors": self.errors,
            "elapsed_s": elapsed,
            "rate": self.ok / elapsed if elapsed else 0.0,
            "latency_ms": percentiles(self.latencies),
        }


async def main_async(args: argparse.Namespace) -> None:
    """Open, report ready, wait for ``go``, write, report."""
    writer = Writer(args)
    await writer.open()
    emit("ready")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    if (await reader.readline()).strip() != b"go":
        return
    closed_before_go = await writer.reopen_all()
    start = time.monotonic()
    await (writer.run_max() if args.mode == "max" else writer.run_rate())
    emit("done", closed_before_go=closed_before_go, **writer.report(time.monotonic() - start))
    for conn in writer.conns:
        if conn.transport is not None:
            conn.transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/todo")
    parser.add_argument("--mode", choices=["max", "rate"], default="max")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--description-size", type=int, default=48)
    args = parser.parse_args()
    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
