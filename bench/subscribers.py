"""The subscriber process: N lean connections to one group, driven by commands on stdin.

Run by ``bench/run.py`` (not by hand). It connects and joins ``--count`` subscribers, prints
``{"event": "ready", ...}`` once every one has its sync (or the connect deadline passed), then
answers one command per stdin line with one JSON line on stdout:

- ``reset``: forget the frames counted so far;
- ``drain <expected> <quiet_s>``: wait until ``expected`` frames arrived in total, or none arrived
  for ``quiet_s`` seconds, then report frames, first/last receipt times and latency percentiles;
- ``reconnect``: close every connection, open and join them all again, report the time;
- ``quit``: close everything and exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import socket
import sys
import time
from typing import Any

import orjson
import uvloop
from lean import Stats, Subscriber

CONNECT_TIMEOUT_S = 60.0
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux 4.2


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def bound(args: argparse.Namespace) -> socket.socket:
    """A socket connected from ``args.source``. ``IP_BIND_ADDRESS_NO_PORT`` leaves the port to
    ``connect``, which picks it by the whole 4-tuple: a plain ``bind((source, 0))`` searches
    for a port free of every bound socket, slower with each of tens of thousands."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.setblocking(False)
        sock.bind((args.source, 0))
        await asyncio.get_running_loop().sock_connect(sock, (args.host, args.port))
    except BaseException:
        sock.close()
        raise
    return sock


def emit(event: str, **fields: Any) -> None:
    """One JSON line to the orchestrator."""
    sys.stdout.write(orjson.dumps({"event": event, **fields}).decode() + "\n")
    sys.stdout.flush()


def percentiles(values: list[int]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max of ``values`` (ns) in milliseconds."""
    if not values:
        return {}
    values.sort()
    n = len(values)

    def at(q: float) -> float:
        return values[min(n - 1, int(q * n))] / 1e6

    return {
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "p999": at(0.999),
        "max": values[-1] / 1e6,
    }


class Crowd:
    """Every subscriber of this process."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stats = Stats()
        self.subs: list[Subscriber] = []
        self._all_synced = asyncio.Event()
        self.failures: dict[str, int] = {}

    def _group(self, i: int) -> str:
        return f"{self.args.group}-{i}" if self.args.distinct_groups else self.args.group

    def _on_synced(self, _sub: Subscriber) -> None:
        if self.stats.synced >= len(self.subs):
            self._all_synced.set()

    async def connect_all(self) -> dict[str, Any]:
        """Open and join every subscriber; return timing of the syncs."""
        args = self.args
        loop = asyncio.get_running_loop()
        self.stats.synced = 0
        self._all_synced.clear()
        self.subs = [
            Subscriber(
                self.stats,
                kind=args.kind,
                host=args.host,
                port=args.port,
                group=self._group(i),
                mode=args.mode,
                deflate=args.deflate,
                on_synced=self._on_synced,
            )
            for i in range(args.count)
        ]
        gate = asyncio.Semaphore(args.connect_concurrency)
        start = time.monotonic_ns()

        async def open_one(sub: Subscriber) -> None:
            async with gate:
                try:
                    if args.source:
                        await loop.create_connection(lambda: sub, sock=await bound(args))
                    else:
                        await loop.create_connection(lambda: sub, args.host, args.port)
                except OSError as exc:
                    name = type(exc).__name__
                    self.failures[name] = self.failures.get(name, 0) + 1

        connecting = asyncio.gather(*(open_one(sub) for sub in self.subs))
        try:
            async with asyncio.timeout(args.connect_timeout):
                await connecting
                await self._all_synced.wait()
        except TimeoutError:
            connecting.cancel()
        synced = [s.synced_ns - start for s in self.subs if s.is_synced]
        return {
            "connected": sum(1 for s in self.subs if s.is_open),
            "synced": len(synced),
            "failures": dict(self.failures),
            "all_synced_s": max(synced) / 1e9 if synced else None,
            "sync_ms": percentiles(synced),
        }

    async def drain(self, expected: int, quiet_s: float) -> dict[str, Any]:
        """Wait for ``expected`` frames or ``quiet_s`` of silence; report what arrived."""
        stats = self.stats
        last_seen, last_change = stats.frames, time.monotonic()
        while stats.frames < expected:
            await asyncio.sleep(0.05)
            if stats.frames != last_seen:
                last_seen, last_change = stats.frames, time.monotonic()
            elif time.monotonic() - last_change > quiet_s:
                break
        # Per POST: its first receipt (how soon the server reacts) and its last one (when the
        # fan-out to every subscriber was complete).
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for t0, lat in zip(stats.sent_at, stats.latencies, strict=True):
            if lat < first.get(t0, 1 << 62):
                first[t0] = lat
            if lat > last.get(t0, -1):
                last[t0] = lat
        return {
            "first_receipt_ms": percentiles(list(first.values())),
            "last_receipt_ms": percentiles(list(last.values())),
            "frames": stats.frames,
            "first_ns": stats.first_ns,
            "last_ns": stats.last_ns,
            "closed": stats.closed,
            "close_codes": stats.close_codes,
            "latency_ms": percentiles(stats.latencies),
            "samples": len(stats.latencies),
        }

    async def close_all(self) -> None:
        """Close every connection and wait (bounded) until the sockets are gone."""
        open_subs = [s for s in self.subs if s.transport is not None and not s.is_lost]
        if not open_subs:
            return
        gone = asyncio.Event()
        remaining = len(open_subs)

        def lost(_sub: Subscriber) -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0:
                gone.set()

        for sub in open_subs:
            sub.on_lost = lost
        for sub in open_subs:
            sub.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gone.wait(), 10)


async def main_async(args: argparse.Namespace) -> None:
    """Connect, report ready, then serve the orchestrator's commands."""
    crowd = Crowd(args)
    emit("ready", **(await crowd.connect_all()))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        command = line[0]
        if command == "reset":
            crowd.stats.reset()
            emit("reset")
        elif command == "drain":
            emit("drained", **(await crowd.drain(int(line[1]), float(line[2]))))
        elif command == "reconnect":
            await crowd.close_all()
            crowd.stats.closed = 0
            emit("reconnected", **(await crowd.connect_all()))
        elif command == "quit":
            break
    await crowd.close_all()
    emit("bye")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["surge", "sio"], default="surge")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--source", default=None, help="local address to connect from (127.0.0.x: more ports)"
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--group", default="inbox")
    parser.add_argument("--distinct-groups", action="store_true", help="group-<i> per connection")
    parser.add_argument("--mode", choices=["count", "latency"], default="count")
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    parser.add_argument("--connect-concurrency", type=int, default=256)
    parser.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT_S)
    args = parser.parse_args()
    raise_fd_limit()
    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
