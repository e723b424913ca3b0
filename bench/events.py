"""Event steps end to end (issue 11): POST /emit -> ctx.emit -> durable queue -> event step ->
stream set -> subscriber frame, on the default file store and on Redis.

    .venv/bin/python bench/events.py throughput --store file redis --duration 10
    .venv/bin/python bench/events.py latency --store file redis --rate 100 --duration 10
    .venv/bin/python bench/events.py smoke

The app is ``bench/events_app`` (copied to a temp dir per run): ``POST /emit`` emits one
``bench.event`` whose data carries ``time.monotonic_ns()`` taken just before ``ctx.emit``; the
event step ``BenchHandle`` (default concurrency 10 unless ``--concurrency``) records
``monotonic_ns() - emitted_ns`` as its first line (emit-to-handler latency, read back from
``GET /bench/latency``), then does one ``ctx.streams.todo.set("inbox", ...)`` whose description
is the writer's (it carries the POST's send time, so the subscribers time POST -> frame).

- ``throughput``: the writer POSTs in a closed loop (``--concurrency-http`` connections) for
  ``--duration`` s; subscribers count frames until every answered POST's frame arrived (or 3 s
  of silence). events/s = frames / (last - first receipt) of one subscriber: what the chain
  delivers end to end, backlog included. ``emit/s`` is the POST rate alone.
- ``latency``: POSTs at a fixed ``--rate``; emit-to-handler and POST-to-frame percentiles.

Redis: the server's streams, queue and state live under a unique key prefix on ``--redis``
(default ``redis://127.0.0.1:6379/0``), deleted after the run.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import scenarios
from procs import BENCH, HOST, Server, busy_seconds, start_surge
from run import machine, raise_fd_limit, table

APP = BENCH / "events_app"
Result = dict[str, Any]


def redis_config(url: str, prefix: str) -> str:
    """surge.config.py putting the streams (hence queue and state) on Redis under ``prefix``."""
    return (
        "from surge import Config\nfrom surge.config import Adapters\n"
        "from surge.streams.stores.redis import RedisStreamAdapter\n\n"
        f"config = Config(adapters=Adapters(streams=RedisStreamAdapter({url!r}, "
        f"prefix={prefix!r})))\n"
    )


def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (the run's); returns how many."""
    import redis

    deleted = 0
    with redis.Redis.from_url(url) as client:
        batch = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += client.delete(*batch)
                batch.clear()
        if batch:
            deleted += client.delete(*batch)
    return deleted


def loadavg() -> str:
    """The first three fields of /proc/loadavg."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def get_json(server: Server, path: str) -> Result:
    """One GET, JSON body."""
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    conn.request("GET", path)
    body: Result = orjson.loads(conn.getresponse().read())
    conn.close()
    return body


def start(args: argparse.Namespace, store: str) -> tuple[Server, str | None]:
    """The bench app on ``store`` (file or redis); returns the server and the Redis prefix."""
    env = {"BENCH_EVENT_CONCURRENCY": str(args.concurrency)}
    if store == "redis":
        prefix = f"surge-bench-events-{uuid.uuid4().hex[:10]}"
        server = start_surge(
            "redis",
            config_py=redis_config(args.redis, prefix),
            log_level=args.log_level,
            app=APP,
            ready_path="/bench/latency",
            extra_env=env,
        )
        return server, prefix
    server = start_surge(
        store, log_level=args.log_level, app=APP, ready_path="/bench/latency", extra_env=env
    )
    return server, None


def one_run(args: argparse.Namespace, store: str, *, rate: float | None) -> Result:
    """One server, one load; the flat result dict."""
    server, prefix = start(args, store)
    try:
        mode = "latency"  # subscribers read the POST's send time out of each frame
        subs, _ = scenarios._subscribers(server, "surge", args.subs, "--mode", mode)
        writer_args = ["--path", "/emit", "--duration", str(args.duration)]
        if rate is None:
            writer_args += ["--concurrency", str(args.concurrency_http)]
        else:
            writer_args += ["--mode", "rate", "--rate", str(rate), "--concurrency", "16"]
        try:
            writer = scenarios._writer(server, *writer_args)
            subs.send("reset")
            subs.expect("reset", 10)
            get_json(server, "/bench/latency?reset=1")
            scenarios._quiet()
            la0 = loadavg()
            profile = Path(args.profile) if args.profile else None
            with scenarios.profiling(server, profile):
                busy0, cpu0, lg0 = busy_seconds(), server.cpu(), subs.cpu() + writer.cpu()
                t0 = time.monotonic()
                writer.send("go")
                done = writer.expect("done", args.duration + 60)
                lg1 = writer.cpu()
                writer.close()
                expected = done["ok"] * args.subs
                subs.send(f"drain {expected} 3")
                drained = subs.expect("drained", args.duration * 30 + 120)
                wall = time.monotonic() - t0
                cpu1, lg1 = server.cpu(), lg1 + subs.cpu()
                busy1 = busy_seconds()
            la1 = loadavg()
        finally:
            subs.close()
        handler = get_json(server, "/bench/latency")
    finally:
        server.stop()
        if prefix is not None:
            delete_prefix(args.redis, prefix)
    frames = drained["frames"]
    span = (drained["last_ns"] - drained["first_ns"]) / 1e9
    events = frames / args.subs
    server_cpu = cpu1 - cpu0
    return {
        "server": f"surge ({store})",
        "mode": "max" if rate is None else f"rate {rate:g}/s",
        "concurrency": args.concurrency,
        "subscribers": args.subs,
        "posts": done["ok"],
        "post_errors": {**done["statuses"], **done["errors"]},
        "emit_rate": done["rate"],
        "post_ms": done["latency_ms"],
        "events_handled": handler.get("samples", 0),
        "frames": frames,
        "lost": expected - frames,
        "events_per_s": events / span if span > 0 else 0.0,
        "server_cpu_s": server_cpu,
        "server_cpu_util": server_cpu / wall,
        "us_cpu_per_event": server_cpu * 1e6 / events if events else None,
        "loadgen_cpu_util": (lg1 - lg0) / wall,
        "others_cpu_util": max(0.0, busy1 - busy0 - server_cpu - (lg1 - lg0)) / wall,
        "emit_to_handler_ms": {k: v for k, v in handler.items() if k != "samples"},
        "post_to_frame_ms": drained["latency_ms"],
        "loadavg": [la0, la1],
        # PYTHONPATH in front of the venv: which Surge tree the server ran.
        "surge_src": os.environ.get("PYTHONPATH") or "venv install (working tree)",
    }


def print_rows(results: list[Result]) -> None:
    """One table for every run."""

    def ms(d: dict[str, float], key: str) -> str:
        return f"{d[key]:.1f}" if key in d else "-"

    table(
        "events: POST /emit -> queue -> event step -> stream set -> subscriber frame",
        [
            "server",
            "load",
            "conc",
            "emit/s",
            "events/s",
            "µs CPU/event",
            "server CPU",
            "others",
            "emit->handler p50",
            "p99",
            "POST->frame p50",
            "p99",
            "lost",
            "loadavg",
        ],
        [
            [
                r["server"],
                r["mode"],
                str(r["concurrency"]),
                f"{r['emit_rate']:,.0f}",
                f"{r['events_per_s']:,.0f}",
                f"{r['us_cpu_per_event']:,.0f}" if r["us_cpu_per_event"] else "-",
                f"{r['server_cpu_util']:.0%}",
                f"{r['others_cpu_util']:.0%}",
                ms(r["emit_to_handler_ms"], "p50"),
                ms(r["emit_to_handler_ms"], "p99"),
                ms(r["post_to_frame_ms"], "p50"),
                ms(r["post_to_frame_ms"], "p99"),
                str(r["lost"]),
                " -> ".join(x.split()[0] for x in r["loadavg"]),
            ]
            for r in results
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenario", choices=["throughput", "latency", "smoke"])
    parser.add_argument("--store", nargs="+", default=["file", "redis"], choices=["file", "redis"])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0, help="latency: POST /emit per s")
    parser.add_argument("--concurrency", type=int, default=10, help="the event step's")
    parser.add_argument("--concurrency-http", type=int, default=32, help="throughput: POSTs")
    parser.add_argument("--subs", type=int, default=1, help="subscribers of the stream group")
    parser.add_argument("--repeat", type=int, default=1, help="runs per store")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--json", help="append one JSON line per run")
    parser.add_argument("--profile", help="py-spy raw stacks of the server to this file")
    args = parser.parse_args()
    if args.scenario == "smoke":
        scenarios.QUIET_WAIT_S = 0
        args.duration = 1.0
    raise_fd_limit()
    print(machine())
    results = []
    for _ in range(args.repeat):
        for store in args.store:
            if args.scenario in ("throughput", "smoke"):
                results.append(one_run(args, store, rate=None))
            if args.scenario in ("latency", "smoke"):
                results.append(one_run(args, store, rate=args.rate))
            print_rows(results[-1:])
    print_rows(results)
    if args.profile:
        import profile_summary

        print(profile_summary.summarize(Path(args.profile), top=30))
    if args.json:
        with open(args.json, "ab") as f:
            for r in results:
                line = {"date": str(datetime.date.today()), "scenario": f"events-{args.scenario}"}
                f.write(orjson.dumps({**line, **r}) + b"\n")
    if any(r["lost"] or r["post_errors"] for r in results) and args.scenario == "smoke":
        sys.exit("smoke: lost frames or failed POSTs")


if __name__ == "__main__":
    main()
