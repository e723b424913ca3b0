"""Many idle subscribed connections on ONE server process (issue 16 item 2): RSS, join, fan-out.

    .venv/bin/python bench/many_conns.py --conns 100000            # asks for 100,000
    .venv/bin/python bench/many_conns.py --conns 19000 --procs 4
    .venv/bin/python bench/many_conns.py --conns 100000 --procs 6 --workers 6   # on one Redis

One ``surge start`` worker (memory store, examples/todo) and ``--procs`` subscriber processes
(``subscribers.py``), each connecting from its own loopback source address (127.0.0.2,
127.0.0.3, ...: a source address has ~28,000 ephemeral ports toward one server port) and
joining group ``inbox`` once per connection. The open-file limit is raised here (soft to hard;
the hard limit too when the process may), and every child inherits it; the count is capped at
what the hard limit allows the server (it needs one descriptor per connection, less uvicorn's
reserve), and the report says so. Printed: the server's RSS before and after (per connection),
the time until every connection had its sync, and one fan-out (one POST /todo: the time from
the POST until the last of the N connections received its frame, and how many did).
Bounded: connect and drain deadlines; every process is stopped at the end.

``--workers N`` serves the same port from N worker processes (``surge start --workers N``) on a
throwaway ``redis-server`` (the Redis store, so one POST reaches every worker's connections):
where the open-file hard limit keeps one process under the count asked for, N processes of at
most that many descriptors each hold it on one machine. RSS is then the sum over the workers,
and the report gives each worker's share of the connections (the kernel hands accepts of the
shared socket to whichever worker is waiting).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time

from procs import (
    Child,
    Server,
    connections_of,
    redis_server,
    redis_store_config,
    rss_bytes,
    start_surge,
)
from run import machine

FD_RESERVE = 64 + 200  # surge's own reserve (server.serve.FD_RESERVE) and some room


def raise_nofile(want: int) -> int:
    """Raise RLIMIT_NOFILE as far as allowed (the hard limit too if permitted); the soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            pass  # no CAP_SYS_RESOURCE: the hard limit stays
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conns", type=int, default=100_000)
    parser.add_argument("--procs", type=int, default=5, help="subscriber processes")
    parser.add_argument("--concurrency", type=int, default=256, help="connects in flight/proc")
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--connect-timeout", type=float, default=60.0, help="per process, s")
    parser.add_argument("--workers", type=int, default=1, help="server processes (on Redis)")
    args = parser.parse_args()
    limit = raise_nofile(args.conns + 4096)
    # Each worker holds its share; leave 10% of room for an uneven spread of accepts.
    capacity = limit - FD_RESERVE if args.workers == 1 else int(args.workers * limit * 0.9)
    conns = min(args.conns, capacity)
    print(machine())
    if conns < args.conns:
        print(
            f"asked for {args.conns:,} connections; the open-file hard limit is {limit:,} per "
            f"process and may not be raised here: running {conns:,} on {args.workers} worker(s)"
        )
    per_proc = -(-conns // args.procs)
    with contextlib.ExitStack() as stack:
        if args.workers > 1:
            config = redis_store_config(stack.enter_context(redis_server()))
            server: Server = start_surge(
                "redis", config_py=config, log_level="warning", workers=args.workers
            )
        else:
            server = start_surge("memory", log_level="warning")
        stack.callback(server.stop)
        measure(args, server, conns, per_proc)


def measure(args: argparse.Namespace, server: Server, conns: int, per_proc: int) -> None:
    """Connect, join, read RSS, fan one POST out, print; every subscriber process ends."""
    subs: list[Child] = []

    def rss() -> int:
        return sum(rss_bytes(pid) for pid in server.pids)

    try:
        time.sleep(args.settle)
        rss0 = rss()
        started = time.monotonic()
        left = conns
        for i in range(args.procs):
            count = min(per_proc, left)
            left -= count
            if count <= 0:
                break
            subs.append(
                Child(
                    "subscribers.py",
                    "--port",
                    str(server.port),
                    "--count",
                    str(count),
                    "--source",
                    f"127.0.0.{2 + i}",
                    "--connect-concurrency",
                    str(args.concurrency),
                    "--connect-timeout",
                    str(args.connect_timeout),
                )
            )
        ready = [s.expect("ready", args.connect_timeout + 120) for s in subs]
        joined_s = time.monotonic() - started
        synced = sum(r["synced"] for r in ready)
        failures: dict[str, int] = {}
        for r in ready:
            for name, n in r["failures"].items():
                failures[name] = failures.get(name, 0) + n
        time.sleep(args.settle)
        rss1 = rss()
        spread = [connections_of(pid, server.port) for pid in server.pids]
        for s in subs:
            s.send("reset")
            s.expect("reset", 30)
        t0 = time.monotonic_ns()
        status, _ = server.post("/todo", {"description": "one fan-out to every connection"})
        for s, r in zip(subs, ready, strict=True):
            s.send(f"drain {r['synced']} 5")
        drained = [s.expect("drained", 120) for s in subs]
        got = sum(d["frames"] for d in drained)
        last = max((d["last_ns"] or 0) for d in drained)
        fanout_ms = (last - t0) / 1e6 if last else float("nan")
        print(
            f"\nconnections {conns:,} ({len(subs)} processes, sources 127.0.0.2-{1 + len(subs)})"
            f"\n  synced {synced:,}, failures {failures or 0}"
            f"\n  join: all synced {max(r['all_synced_s'] or 0 for r in ready):.2f} s after their"
            f" process started ({joined_s:.2f} s wall from the first spawn)"
            + (
                f"\n  workers {len(server.pids)}, connections by worker "
                + " / ".join(f"{n:,}" for n in spread)
                if len(server.pids) > 1
                else ""
            )
            + f"\n  RSS {rss0 / 2**20:.1f} MB -> {rss1 / 2**20:.1f} MB: "
            f"{(rss1 - rss0) / max(synced, 1) / 1024:.1f} KB per connection"
            f"\n  fan-out of one POST (status {status}): {got:,} of {synced:,} frames, last "
            f"{fanout_ms:.0f} ms after the POST"
        )
    finally:
        for s in subs:
            s.close()


if __name__ == "__main__":
    main()
