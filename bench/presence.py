"""What presence costs: a join storm and a leave storm on one group, presence on and off.

Usage: ``.venv/bin/python bench/presence.py [--users 300] [--tabs 2] [--store memory redis]``

For each store, and with ``StreamConfig(presence=...)`` on and off, a fresh ``surge start``
serves bench/presence_app (``BENCH_PRESENCE``); ``users x tabs`` WebSocket connections (user
``u<n>`` from ``?authToken=``) all join group ``lobby`` at once. Printed per run:

- join: wall seconds until every connection has its sync (and, with presence, its member
  list), the server's CPU seconds meanwhile (``/proc``), CPU microseconds per join, and the
  frames the clients received (presence adds one ``join`` per new user to every subscriber
  already there: O(users x connections) frames, the nature of presence in one big group);
- settle: seconds until ``GET /online/lobby`` lists every user (presence on);
- leave: wall seconds from closing every connection until the list is empty (presence on; off:
  until the server's CPU is quiet), and the server's CPU meanwhile.

Loopback only, bounded: every wait has a deadline. The load generator (this process) shares the
machine's two cores with the server, so wall times include its own work; compare the server's
CPU columns.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx2
import websockets
from procs import HOST, Server, redis_server, start_surge

APP = Path(__file__).resolve().parent / "presence_app"
DEADLINE_S = 120.0


class Tab:
    """One connection: joins, then counts what it receives."""

    def __init__(self, ws: Any, presence: bool) -> None:
        self.ws = ws
        self.frames = 0
        self.ready = asyncio.Event()
        self._needs = 2 if presence else 1  # its sync, and its member list

    async def read(self) -> None:
        try:
            async for raw in self.ws:
                self.frames += 1
                if self._needs and ('"type":"sync"' in raw or '"action":"sync"' in raw):
                    self._needs -= 1
                    if not self._needs:
                        self.ready.set()
        except websockets.ConnectionClosed:
            pass


async def online(port: int) -> int:
    async with httpx2.AsyncClient() as http:
        response = await http.get(f"http://{HOST}:{port}/online/lobby", timeout=10)
        return len(response.json())


async def until(check: Any, what: str) -> float:
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > DEADLINE_S:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def storm(server: Server, users: int, tabs: int, presence: bool) -> dict[str, float]:
    url = f"ws://{HOST}:{server.port}/"
    conns = []
    for n in range(users * tabs):
        ws = await websockets.connect(
            f"{url}?authToken=u{n % users}", max_queue=None, open_timeout=30, ping_interval=None
        )
        conns.append(Tab(ws, presence))
    readers = [asyncio.create_task(tab.read()) for tab in conns]
    cpu0, start = server.cpu(), time.monotonic()
    join = json.dumps(
        {"type": "join", "data": {"streamName": "room", "groupId": "lobby", "subscriptionId": "s"}}
    )
    await asyncio.gather(*(tab.ws.send(join) for tab in conns))
    async with asyncio.timeout(DEADLINE_S):
        await asyncio.gather(*(tab.ready.wait() for tab in conns))
    join_s, join_cpu = time.monotonic() - start, server.cpu() - cpu0
    settle_s = 0.0
    if presence:

        async def all_online() -> bool:
            return await online(server.port) == users

        settle_s = await until(all_online, "every user online")
    frames = sum(tab.frames for tab in conns)
    cpu1, start = server.cpu(), time.monotonic()
    await asyncio.gather(*(tab.ws.close() for tab in conns))
    if presence:

        async def nobody() -> bool:
            return await online(server.port) == 0

        await until(nobody, "an empty list")
    else:
        await asyncio.sleep(0)
    leave_s, leave_cpu = time.monotonic() - start, server.cpu() - cpu1
    for task in readers:
        task.cancel()
    return {
        "join_s": join_s,
        "join_cpu_s": join_cpu,
        "us_per_join": join_cpu / len(conns) * 1e6,
        "frames": frames,
        "settle_s": settle_s,
        "leave_s": leave_s,
        "leave_cpu_s": leave_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--tabs", type=int, default=2)
    parser.add_argument("--store", nargs="+", default=["memory", "redis"])
    args = parser.parse_args()
    print(f"{args.users} users x {args.tabs} tabs = {args.users * args.tabs} connections")
    header = f"{'store':8} {'presence':8} {'join s':>7} {'cpu s':>6} {'us/join':>8} "
    print(header + f"{'frames':>8} {'settle s':>8} {'leave s':>7} {'cpu s':>6}")
    with contextlib.ExitStack() as stack:
        redis_port: int | None = None
        for store in args.store:
            env = {}
            if store == "redis":
                if redis_port is None:
                    redis_port = stack.enter_context(redis_server())
                env["SURGE_REDIS_URL"] = f"redis://{HOST}:{redis_port}/0"
            for presence in (False, True):
                env["BENCH_PRESENCE"] = "1" if presence else "0"
                with start_surge(
                    store, app=APP, ready_path="/online/lobby", log_level="warning", extra_env=env
                ) as server:
                    r = asyncio.run(storm(server, args.users, args.tabs, presence))
                print(
                    f"{store:8} {'on' if presence else 'off':8} {r['join_s']:7.2f} "
                    f"{r['join_cpu_s']:6.2f} {r['us_per_join']:8.0f} {r['frames']:8.0f} "
                    f"{r['settle_s']:8.2f} {r['leave_s']:7.2f} {r['leave_cpu_s']:6.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    os.environ.pop("SURGE_REDIS_URL", None)
    main()
