"""Surge benchmarks, one command per scenario; loopback only, bounded, each run stops by itself.

    .venv/bin/python bench/run.py fanout --subs 100 1000 5000 --duration 10
    .venv/bin/python bench/run.py latency --subs 1000 --rate 20 200
    .venv/bin/python bench/run.py http --store file memory
    .venv/bin/python bench/run.py idle --conns 10000
    .venv/bin/python bench/run.py join-storm --clients 5000 --items 100
    .venv/bin/python bench/run.py cross-instance --rate 20
    .venv/bin/python bench/run.py compare --subs 1000
    .venv/bin/python bench/run.py ceiling --subs 1000      # Surge vs the least work per frame
    .venv/bin/python bench/run.py profile --subs 1000 --out bench/profile-fanout.txt
    .venv/bin/python bench/run.py smoke          # every scenario, tiny, in a few seconds

Any scenario takes ``--smoke`` (tiny sizes) and ``--json FILE`` (append the results). The server
runs in one process (``surge start`` in a copy of examples/todo), the subscribers in another,
the HTTP writer in a third. See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import scenarios
from procs import (
    BENCH,
    Server,
    redis_server,
    redis_store_config,
    start_ceiling,
    start_fastapi_socketio,
    start_node_socketio,
    start_python_socketio,
    start_surge,
)

Result = dict[str, Any]
BURST_APP = BENCH / "burst_app"
FILE_NORMAL_CONFIG = (
    "from surge import Adapters, Config\n"
    "from surge.config import Limits\n"
    "from surge.streams.stores.file import FileStreamAdapter\n\n"
    "config = Config(adapters=Adapters(streams=FileStreamAdapter('.surge/streams', "
    "synchronous='normal')){limits})\n"
)


def raise_fd_limit() -> None:
    """Children (the server and the load generators) inherit the raised limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def machine() -> str:
    """Cores, memory, Python: the line every report starts with."""
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return (
        f"{datetime.date.today()}  {os.cpu_count()} cores, {mem_kb / 2**20:.0f} GiB, "
        f"Python {platform.python_version()}, {platform.machine()}"
    )


def _ms(d: dict[str, float] | None, key: str) -> str:
    return f"{d[key]:.1f}" if d and key in d else "-"


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    """Print an aligned text table (Markdown-compatible)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        print("| " + " | ".join(cells) + " |")
    sys.stdout.flush()


def surge_starter(args: argparse.Namespace, store: str | None = None) -> Callable[[], Server]:
    """Start ``surge start`` with this command's store, log level and GC setting."""
    return lambda: start_surge(
        store or args.store, log_level=args.log_level, gc_mode=args.server_gc
    )


@contextmanager
def server(start: Callable[[], Server]) -> Iterator[Server]:
    """A server for the block; stopped (and its temp dir removed) afterwards."""
    s = start()
    try:
        yield s
    finally:
        if "gc log" in s.name:
            pauses = [
                line
                for line in s.log.read_text(errors="replace").splitlines()
                if line.startswith("surge-bench gc:")
            ]
            print(f"\n{s.name}: {len(pauses)} slow or full collections", *pauses, sep="\n  ")
        s.stop()


# -- scenarios -------------------------------------------------------------------------------


def fanout_rows(results: list[Result]) -> None:
    """Print fanout-max results."""
    table(
        "fanout-max: one group, POST /todo as fast as accepted",
        [
            "server",
            "subs",
            "POST/s",
            "frames/s",
            "µs/delivery",
            "frames/write",
            "server CPU",
            "loadgen CPU",
            "others",
            "softirq",
            "lost",
            "closed",
        ],
        [
            [
                r["server"],
                _n(r["subscribers"]),
                _n(r["post_rate"]),
                _n(r["frames_per_s"]),
                _n(r["us_per_delivery"], 2),
                _n(r.get("frames_per_write"), 1),
                f"{r['server_cpu_util']:.0%}",
                f"{r['loadgen_cpu_util']:.0%}",
                f"{r['others_cpu_util']:.0%}",
                f"{r['softirq_util']:.0%}",
                _n(r["lost"]),
                _n(r["closed"]),
            ]
            for r in results
        ],
    )


def latency_rows(results: list[Result]) -> None:
    """Print latency results (first / last: p50 over POSTs of the first and the last receipt)."""
    table(
        "latency: fixed rate of POST /todo, ms from the start of the POST to each receipt",
        [
            "server",
            "subs",
            "POST/s",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "first / last",
            "µs/delivery",
            "server CPU",
            "loadgen CPU",
            "others",
            "lost",
        ],
        [
            [
                r["server"],
                _n(r["subscribers"]),
                _n(r["post_rate"]),
                _ms(r["latency_ms"], "p50"),
                _ms(r["latency_ms"], "p90"),
                _ms(r["latency_ms"], "p99"),
                _ms(r["latency_ms"], "p999"),
                _ms(r["latency_ms"], "max"),
                f"{_ms(r.get('first_receipt_ms'), 'p50')} / {_ms(r.get('last_receipt_ms'), 'p50')}",
                _n(r.get("us_per_delivery"), 2),
                f"{r['server_cpu_util']:.0%}",
                f"{r['loadgen_cpu_util']:.0%}",
                f"{r['others_cpu_util']:.0%}",
                _n(r["lost"]),
            ]
            for r in results
        ],
    )
    surge = [r for r in results if r["server"].startswith("surge")]
    others = [r for r in results if not r["server"].startswith("surge")]
    if surge and others:
        rows = []
        for s in surge:
            for o in others:
                if s["post_rate"] and o["subscribers"] == s["subscribers"]:
                    sp, op = s["latency_ms"].get("p99"), o["latency_ms"].get("p99")
                    ratio = f"{sp / op:.2f}x" if sp and op else "-"
                    rows.append([s["server"], o["server"], _n(s["post_rate"]), ratio])
        table(
            "p99 ratios in this run (below 1x: Surge's p99 is lower)",
            ["surge", "vs", "POST/s", "p99 surge / other"],
            rows,
        )


def run_fanout(args: argparse.Namespace) -> list[Result]:
    """fanout-max for each --subs on one Surge server."""
    results = []
    # A fresh server per run: POSTs pile up items, and the next run's joins would sync them all.
    for n in args.subs:
        with server(surge_starter(args)) as s:
            results.append(scenarios.fanout(s, "surge", n, args.duration, args.concurrency))
    fanout_rows(results)
    return results


LATENCY_SERVERS: dict[str, tuple[str, Callable[[argparse.Namespace], Callable[[], Server]]]] = {
    "surge": ("surge", surge_starter),
    # The same load generator against the least work per frame (bench/alt/ceiling_server.py):
    # what the machine and the load generator allow, so the bound of Surge's number is visible.
    "ceiling": ("surge", lambda _args: lambda: start_ceiling("direct")),
    "ceiling-coalesce": ("surge", lambda _args: lambda: start_ceiling("coalesce")),
    "node": ("sio", lambda _args: start_node_socketio),
}


def run_latency(args: argparse.Namespace) -> list[Result]:
    """latency for each --rate on a fresh server of each of --servers, in one run."""
    results = []
    for rate in args.rate:
        for name in args.servers:
            kind, starter = LATENCY_SERVERS[name]
            try:
                with server(starter(args)) as s:
                    results.append(scenarios.latency(s, kind, args.subs, rate, args.duration))
            except RuntimeError as exc:
                print(f"{name}: skipped ({exc})", file=sys.stderr)
    latency_rows(results)
    return results


def _start_burst(args: argparse.Namespace, store: str) -> Server:
    """bench/burst_app under ``surge start``; file-normal: the file store with
    synchronous="normal" (no fsync per commit)."""
    return start_surge(
        store,
        log_level=args.log_level,
        gc_mode=args.server_gc,
        app=BURST_APP,
        ready_path="/healthz",
        config_py=FILE_NORMAL_CONFIG if store == "file-normal" else None,
    )


def run_sequential(args: argparse.Namespace) -> list[Result]:
    """One handler awaiting N sequential sets, per store, to --subs subscribers."""
    results = []
    for store in args.store:
        with server(lambda store=store: _start_burst(args, store)) as s:
            results.append(scenarios.sequential(s, args.subs, args.sets, args.duration))
    sequential_rows(results)
    return results


def sequential_rows(results: list[Result]) -> None:
    """Print sequential-producer results."""
    table(
        "sequential: one handler awaiting N sets of one item, one request at a time",
        [
            "server",
            "subs",
            "sets/request",
            "sets/s",
            "deliveries/s",
            "µs/delivery",
            "frames/write",
            "server CPU",
            "loadgen CPU",
            "others",
            "lost",
        ],
        [
            [
                r["server"],
                _n(r["subscribers"]),
                _n(r["sets_per_request"]),
                _n(r["sets_per_s"]),
                _n(r["frames_per_s"]),
                _n(r["us_per_delivery"], 2),
                _n(r.get("frames_per_write"), 1),
                f"{r['server_cpu_util']:.0%}",
                f"{r['loadgen_cpu_util']:.0%}",
                f"{r['others_cpu_util']:.0%}",
                _n(r["lost"]),
            ]
            for r in results
        ],
    )


def run_http(args: argparse.Namespace) -> list[Result]:
    """POST /todo throughput per store."""
    results = []
    for store in args.store:
        for concurrency in args.concurrency:
            with server(surge_starter(args, store)) as s:
                results.append(scenarios.http_throughput(s, args.duration, concurrency))
    table(
        "http: POST /todo in a closed loop, no subscribers",
        [
            "server",
            "conns",
            "POST/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "µs CPU/POST",
            "of it loop",
            "server CPU",
            "loop CPU",
            "POSTs/fsync",
            "loadgen CPU",
            "others",
            "errors",
        ],
        [
            [
                r["server"],
                _n(r["concurrency"]),
                _n(r["posts_per_s"]),
                _ms(r["post_ms"], "p50"),
                _ms(r["post_ms"], "p99"),
                _ms(r["post_ms"], "max"),
                _n(r["us_per_post"]),
                _n(r["loop_us_per_post"]),
                f"{r['server_cpu_util']:.0%}",
                f"{r['loop_cpu_util']:.0%}",
                _n(r["posts_per_sync"], 1),
                f"{r['loadgen_cpu_util']:.0%}",
                f"{r['others_cpu_util']:.0%}",
                str(r["post_errors"] or 0),
            ]
            for r in results
        ],
    )
    return results


def run_idle(args: argparse.Namespace) -> list[Result]:
    """Idle connections, one subscription each: RSS per connection."""
    results = []
    for distinct in [False, True] if args.both else [args.distinct_groups]:
        with server(surge_starter(args)) as s:
            results.append(
                scenarios.idle(s, args.conns, distinct_groups=distinct, settle=args.settle)
            )
    table(
        "idle: connections each holding one group subscription",
        ["server", "conns", "groups", "connect+sync s", "RSS before MB", "RSS after MB", "KB/conn"],
        [
            [
                r["server"],
                _n(r["connections"]),
                _n(r["groups"]),
                _n(r["connect_s"], 2),
                _n(r["rss_before_mb"], 1),
                _n(r["rss_after_mb"], 1),
                _n(r["kb_per_conn"], 1),
            ]
            for r in results
        ],
    )
    return results


def run_idle_trace(args: argparse.Namespace) -> list[Result]:
    """Idle connections on a tracemalloc'd server: where the memory per connection goes."""
    import http.client

    def get(s: Server, path: str) -> Result:
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=120)
        conn.request("GET", path)
        body: Result = orjson.loads(conn.getresponse().read())
        conn.close()
        return body

    with server(lambda: start_surge(args.store, probe=True)) as s:
        rss0 = s.rss()
        get(s, "/__probe/baseline")
        subs, _ = scenarios._subscribers(s, "surge", args.conns)
        try:
            time.sleep(args.settle)
            rss1 = s.rss()
            report = get(s, f"/__probe/diff?n={args.conns}")
        finally:
            subs.close()
    report["rss_kb_per_conn"] = (rss1 - rss0) / args.conns / 1024
    traced_kb = report["traced_bytes_per_conn"] / 1024
    print(
        f"\nidle-trace: {args.conns} connections; RSS growth {report['rss_kb_per_conn']:.1f} "
        f"KB/conn (tracemalloc on), traced Python allocations {traced_kb:.1f} KB/conn"
    )
    table(
        "by file (bytes and blocks per connection)",
        ["file", "bytes", "blocks"],
        [[f, f"{b:,.0f}", f"{c:.1f}"] for f, b, c in report["by_file"]],
    )
    table(
        "by line",
        ["line", "bytes", "blocks"],
        [[f, f"{b:,.0f}", f"{c:.1f}"] for f, b, c in report["by_line"]],
    )
    table(
        "objects per connection, by type",
        ["type", "per conn"],
        [[t, f"{c:.2f}"] for t, c in report["objects_per_conn"]],
    )
    return [report]


def run_join_storm(args: argparse.Namespace) -> list[Result]:
    """N clients join a group of M items at once, then all reconnect."""
    results = []
    for store in args.store:
        with server(surge_starter(args, store)) as s:
            results.append(scenarios.join_storm(s, args.clients, args.items))
    rows = []
    for r in results:
        for phase in ("first", "again"):
            rows.append(
                [
                    r["server"],
                    "connect" if phase == "first" else "reconnect",
                    _n(r["clients"]),
                    _n(r["items"]),
                    _n(r[f"{phase}_synced"]),
                    _n(r[f"{phase}_all_synced_s"], 2),
                    _ms(r[f"{phase}_sync_ms"], "p50"),
                    _ms(r[f"{phase}_sync_ms"], "p99"),
                    _n(r[f"{phase}_server_cpu_s"], 2),
                    str(r[f"{phase}_failures"] or 0),
                ]
            )
    table(
        "join-storm: clients connect and join one group at once",
        [
            "server",
            "phase",
            "clients",
            "items",
            "synced",
            "all synced s",
            "p50 ms",
            "p99 ms",
            "server CPU s",
            "failures",
        ],
        rows,
    )
    return results


def run_cross_instance(args: argparse.Namespace) -> list[Result]:
    """One Redis: two Surge instances (POST on B, subscribers on A), then one ``surge start
    --workers N`` per --workers (subscribers and POSTs on its one port, so on every worker)."""
    results = []
    with redis_server() as redis_port:
        config = redis_store_config(redis_port)
        if not args.no_pair:
            with (
                server(
                    lambda: start_surge("redis", config_py=config, log_level=args.log_level)
                ) as a,
                server(
                    lambda: start_surge("redis", config_py=config, log_level=args.log_level)
                ) as b,
            ):
                for rate in args.rate:
                    results.append(scenarios.cross_instance(a, b, args.subs, rate, args.duration))
        for workers in args.workers:
            for rate in args.rate:

                def start(workers: int = workers) -> Server:
                    return start_surge(
                        "redis", config_py=config, log_level=args.log_level, workers=workers
                    )

                with server(start) as s:
                    results.append(scenarios.latency(s, "surge", args.subs, rate, args.duration))
    latency_rows(results)
    by_workers = [r for r in results if r.get("server_cpu_by_process")]
    if by_workers:
        table(
            "server CPU per delivery by worker count (subscribers spread over the workers)",
            ["server", "POST/s", "µs/delivery", "CPU by worker (s)", "write calls by worker"],
            [
                [
                    r["server"],
                    _n(r["post_rate"]),
                    _n(r["us_per_delivery"], 2),
                    " / ".join(f"{c:.2f}" for c in r["server_cpu_by_process"]),
                    " / ".join(_n(w) for w in r["server_writes_by_process"]),
                ]
                for r in by_workers
            ],
        )
    return results


ALTERNATIVES: dict[str, tuple[str, Callable[[], Server]]] = {
    "python-socketio": ("sio", start_python_socketio),
    "fastapi + python-socketio": ("sio", start_fastapi_socketio),
    "socket.io (node)": ("sio", start_node_socketio),
}


# Alternatives that commit each POST durably (compared with Surge's file store for POST/s).
DURABLE_ALTERNATIVES = {"fastapi + python-socketio"}


def run_compare(args: argparse.Namespace) -> list[Result]:
    """fanout-max and latency for Surge, python-socketio and Socket.IO on Node, in one run."""
    contenders: list[tuple[str, str, Callable[[], Server]]] = [
        (
            "surge",
            "surge",
            surge_starter(args),
        ),
        *((name, kind, start) for name, (kind, start) in ALTERNATIVES.items()),
    ]
    fan: dict[str, Result] = {}
    lat: dict[str, Result] = {}
    for name, kind, start in contenders if "fanout" in args.phases else ():
        try:
            with server(start) as s:
                fan[name] = scenarios.fanout(s, kind, args.subs, args.duration, args.concurrency)
            with server(start) as s:
                lat[name] = scenarios.latency(s, kind, args.subs, args.rate, args.duration)
        except RuntimeError as exc:
            print(f"{name}: skipped ({exc})", file=sys.stderr)
    # POST/s with no subscribers, durable on both sides: Surge's file store (whatever --store
    # says) against the alternatives that store durably.
    http: dict[str, Result] = {}
    durable = [
        ("surge", surge_starter(args, "file")),
        *((n, st) for n, (_, st) in ALTERNATIVES.items() if n in DURABLE_ALTERNATIVES),
    ]
    for name, start in durable if "http" in args.phases else ():
        try:
            with server(start) as s:
                http[name] = scenarios.http_throughput(s, args.duration, 32)
        except RuntimeError as exc:
            print(f"{name}: http skipped ({exc})", file=sys.stderr)
    if fan:
        fanout_rows(list(fan.values()))
    if lat:
        latency_rows(list(lat.values()))
    if http:
        table(
            "http: POST /todo in a closed loop, 32 connections, no subscribers, durable store",
            [
                "server",
                "POST/s",
                "p50 ms",
                "p99 ms",
                "µs CPU/POST",
                "of it loop thread",
                "loop CPU",
                "POSTs/fsync",
                "writes/POST",
                "others",
                "errors",
            ],
            [
                [
                    r["server"],
                    _n(r["posts_per_s"]),
                    _ms(r["post_ms"], "p50"),
                    _ms(r["post_ms"], "p99"),
                    _n(r["us_per_post"]),
                    _n(r["loop_us_per_post"]),
                    f"{r['loop_cpu_util']:.0%}",
                    _n(r["posts_per_sync"], 1),
                    _n(r["writes_per_post"], 1),
                    f"{r['others_cpu_util']:.0%}",
                    str(r["post_errors"] or 0),
                ]
                for r in http.values()
            ],
        )
    if "surge" in http and not fan:
        for name in http:
            if name != "surge":
                ratio = http["surge"]["posts_per_s"] / max(http[name]["posts_per_s"], 1e-9)
                cpu = http[name]["us_per_post"] / max(http["surge"]["us_per_post"], 1e-9)
                print(f"\nsurge vs {name}: durable POST/s {ratio:.2f}x, CPU/POST {cpu:.2f}x less")
    if "surge" in fan:
        surge_fan, surge_lat = fan["surge"], lat["surge"]
        rows = []
        for name in fan:
            if name == "surge":
                continue
            p99 = lat[name]["latency_ms"].get("p99") if name in lat else None
            posts = (
                f"{http['surge']['posts_per_s'] / max(http[name]['posts_per_s'], 1e-9):.2f}x"
                if name in http and "surge" in http
                else "-"
            )
            surge_p99 = surge_lat["latency_ms"].get("p99")
            rows.append(
                [
                    name,
                    f"{surge_fan['frames_per_s'] / max(fan[name]['frames_per_s'], 1e-9):.2f}x",
                    f"{fan[name]['us_per_delivery'] / surge_fan['us_per_delivery']:.2f}x"
                    if fan[name]["us_per_delivery"] and surge_fan["us_per_delivery"]
                    else "-",
                    f"{p99 / surge_p99:.2f}x" if p99 and surge_p99 else "-",
                    posts,
                ]
            )
        table(
            f"ratios: Surge vs each alternative ({args.subs} subscribers; above 1x = Surge better)",
            [
                "vs",
                "frames/s (Surge / alt)",
                "CPU per delivery (alt / Surge)",
                "p99 (alt / Surge)",
                "durable POST/s (Surge / alt)",
            ],
            rows,
        )
    return [*fan.values(), *lat.values(), *http.values()]


def run_ceiling(args: argparse.Namespace) -> list[Result]:
    """fanout-max of Surge next to the ceiling server (direct writes, then coalesced writes)."""
    contenders: list[tuple[str, Callable[[], Server]]] = [
        ("surge", surge_starter(args)),
        ("direct", lambda: start_ceiling("direct")),
        ("coalesce", lambda: start_ceiling("coalesce")),
    ]
    results = []
    for _, start in contenders:
        for n in args.subs:
            with server(start) as s:
                results.append(scenarios.fanout(s, "surge", n, args.duration, args.concurrency))
    fanout_rows(results)
    return results


def run_profile(args: argparse.Namespace) -> list[Result]:
    """A scenario under py-spy; prints the top functions by own and total samples."""
    out = Path(args.out)
    scenarios.NATIVE_PROFILE = args.native
    if args.of == "sequential":
        with server(lambda: _start_burst(args, args.store)) as s:
            results = [scenarios.sequential(s, args.subs, args.sets, args.duration, profile=out)]
        sequential_rows(results)
        if out.suffix != ".svg":
            import profile_summary

            print(profile_summary.summarize(out, top=args.top))
        return results
    with server(surge_starter(args)) as s:
        if args.of == "fanout":
            results = [
                scenarios.fanout(
                    s, "surge", args.subs, args.duration, args.concurrency, profile=out
                )
            ]
            fanout_rows(results)
        elif args.of == "latency":
            results = [
                scenarios.fanout(
                    s,
                    "surge",
                    args.subs,
                    args.duration,
                    16,
                    mode="latency",
                    rate=args.rate,
                    profile=out,
                )
            ]
            latency_rows(results)
        elif args.of == "http":
            results = [scenarios.http_throughput(s, args.duration, args.concurrency, profile=out)]
            print(f"\nhttp: {results[0]['posts_per_s']:,.0f} POST/s under the profiler")
        else:
            results = [scenarios.join_storm(s, args.subs, args.items, profile=out)]
            r = results[0]
            print(
                f"\njoin-storm: {r['first_all_synced_s']:.2f} s, "
                f"again {r['again_all_synced_s']:.2f} s under the profiler"
            )
    if out.suffix != ".svg":
        import profile_summary

        print(profile_summary.summarize(out, top=args.top))
    return results


def run_smoke(args: argparse.Namespace) -> list[Result]:
    """Every scenario, tiny: the scripts still work (not a measurement)."""
    results: list[Result] = []
    with server(lambda: start_surge("memory", log_level="warning")) as s:
        r = scenarios.fanout(s, "surge", 20, 0.5, 4)
        fanout_rows([r])
        results.append(r)
        r = scenarios.latency(s, "surge", 20, 40, 0.5)
        latency_rows([r])
        results.append(r)
        results.append(scenarios.http_throughput(s, 0.5, 4))
        print(f"\nhttp: {results[-1]['posts_per_s']:,.0f} POST/s (memory, 0.5 s)")
        r = scenarios.idle(s, 200, distinct_groups=True, settle=0.2)
        print(f"idle: {r['kb_per_conn']:.1f} KB/conn at {r['connections']} connections")
        results.append(r)
        r = scenarios.join_storm(s, 100, 10)
        print(
            f"join-storm: {r['clients']} clients synced in {r['first_all_synced_s']:.2f} s, "
            f"again in {r['again_all_synced_s']:.2f} s"
        )
        results.append(r)
    for r in results:
        if r.get("lost") or r.get("post_errors"):
            raise SystemExit(f"smoke: lost frames or failed POSTs in {r}")
    return results


SMOKE: dict[str, dict[str, Any]] = {
    "fanout": {"subs": [20], "duration": 0.5},
    "latency": {"subs": 20, "rate": [40], "duration": 0.5, "servers": ["surge", "ceiling"]},
    "http": {"store": ["memory"], "duration": 0.5, "concurrency": [4]},
    "sequential": {"subs": 20, "sets": 20, "duration": 0.5},
    "idle": {"conns": 200, "settle": 0.2},
    "idle-trace": {"conns": 100, "settle": 0.2},
    "join-storm": {"clients": 100, "items": 10, "store": ["memory"]},
    "cross-instance": {"subs": 20, "rate": [40], "duration": 0.5, "workers": [2]},
    "compare": {"subs": 20, "duration": 0.5, "rate": 40},
    "ceiling": {"subs": [20], "duration": 0.5},
    "profile": {"subs": 20, "duration": 1},
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--smoke", action="store_true", help="tiny sizes: the script still works")
    common.add_argument("--json", help="append the results (one JSON line per run) to this file")
    common.add_argument("--log-level", default="warning", help="surge start --log-level")
    common.add_argument("--duration", type=float, default=10.0, help="seconds of load per run")
    common.add_argument(
        "--server-gc",
        default="default",
        choices=["default", "off", "log"],
        help="off: the server runs with gc.disable(); log: print its slow collections",
    )
    common.add_argument(
        "--deflate", action="store_true", help="subscribers offer permessage-deflate (browsers do)"
    )
    common.add_argument(
        "--loadgen",
        default="python",
        choices=["python", "c", "c-spin"],
        help="the subscribers: subscribers.py, or bench/csubs.c (built with gcc when stale); "
        "c-spin: csubs --spin (polls without sleeping, one whole core)",
    )
    sub = parser.add_subparsers(dest="scenario", required=True)

    p = sub.add_parser("fanout", parents=[common], help="fanout-max: delivered frames/s")
    p.add_argument("--subs", type=int, nargs="+", default=[100, 1000, 5000])
    p.add_argument("--concurrency", type=int, default=8, help="POSTs in flight")
    p.add_argument("--store", default="memory", choices=["memory", "file"])
    p.set_defaults(run=run_fanout)

    p = sub.add_parser("latency", parents=[common], help="p50/p99 from POST to receipt")
    p.add_argument("--subs", type=int, default=1000)
    p.add_argument("--rate", type=float, nargs="+", default=[20.0, 200.0], help="POST/s")
    p.add_argument("--store", default="memory", choices=["memory", "file"])
    p.add_argument(
        "--servers",
        nargs="+",
        default=["surge", "ceiling", "node"],
        choices=list(LATENCY_SERVERS),
        help="ceiling: bench/alt/ceiling_server.py (direct writes); node: Socket.IO on Node",
    )
    p.set_defaults(run=run_latency)

    p = sub.add_parser("sequential", parents=[common], help="one handler, N awaited sets")
    p.add_argument("--subs", type=int, default=1000)
    p.add_argument("--sets", type=int, default=200, help="sequential sets per request")
    p.add_argument(
        "--store",
        nargs="+",
        default=["file", "memory"],
        choices=["memory", "file", "file-normal"],
        help="file-normal: the file store with synchronous='normal'",
    )
    p.set_defaults(run=run_sequential)

    p = sub.add_parser("http", parents=[common], help="POST /todo throughput")
    p.add_argument("--store", nargs="+", default=["file", "memory"], choices=["memory", "file"])
    p.add_argument("--concurrency", type=int, nargs="+", default=[32], help="POSTs in flight")
    p.set_defaults(run=run_http)

    p = sub.add_parser("idle", parents=[common], help="RSS per idle subscribed connection")
    p.add_argument("--conns", type=int, default=10_000)
    p.add_argument("--distinct-groups", action="store_true", help="group-<i> per connection")
    p.add_argument("--both", action="store_true", help="one group, then one group each")
    p.add_argument("--settle", type=float, default=2.0, help="seconds before reading RSS")
    p.add_argument("--store", default="memory", choices=["memory", "file"])
    p.set_defaults(run=run_idle)

    p = sub.add_parser("idle-trace", parents=[common], help="idle memory by allocation site")
    p.add_argument("--conns", type=int, default=2000)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--store", default="memory", choices=["memory", "file"])
    p.set_defaults(run=run_idle_trace)

    p = sub.add_parser("join-storm", parents=[common], help="N clients join at once, twice")
    p.add_argument("--clients", type=int, default=5000)
    p.add_argument("--items", type=int, default=100)
    p.add_argument("--store", nargs="+", default=["file", "memory"], choices=["memory", "file"])
    p.set_defaults(run=run_join_storm)

    p = sub.add_parser("cross-instance", parents=[common], help="write on B, receive on A")
    p.add_argument("--subs", type=int, default=1000)
    p.add_argument("--rate", type=float, nargs="+", default=[20.0])
    p.add_argument(
        "--workers",
        type=int,
        nargs="*",
        default=[1, 2],
        help="also one `surge start --workers N` on Redis per N, subscribers on every worker",
    )
    p.add_argument("--no-pair", action="store_true", help="skip the two-instance B -> A run")
    p.set_defaults(run=run_cross_instance)

    p = sub.add_parser("compare", parents=[common], help="Surge vs python-socketio vs Node")
    p.add_argument("--subs", type=int, default=1000)
    p.add_argument("--rate", type=float, default=20.0, help="POST/s of the latency run")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--store", default="memory", choices=["memory", "file"])
    p.add_argument(
        "--phases",
        nargs="+",
        default=["fanout", "http"],
        choices=["fanout", "http"],
        help="fanout: fanout-max and latency per server; http: durable POST/s (Surge's file store)",
    )
    p.set_defaults(run=run_compare)

    p = sub.add_parser("ceiling", parents=[common], help="Surge vs the least work per frame")
    p.add_argument("--subs", type=int, nargs="+", default=[1000])
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--store", default="memory", choices=["memory", "file"])
    p.set_defaults(run=run_ceiling)

    p = sub.add_parser("profile", parents=[common], help="a scenario under py-spy")
    p.add_argument(
        "of",
        nargs="?",
        default="fanout",
        choices=["fanout", "latency", "http", "join-storm", "sequential"],
    )
    p.add_argument("--sets", type=int, default=200, help="sequential: sets per request")
    p.add_argument("--subs", type=int, default=1000, help="subscribers (join-storm: clients)")
    p.add_argument("--items", type=int, default=100, help="join-storm: items in the group")
    p.add_argument("--rate", type=float, default=20.0, help="latency: POST/s")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--out", default="bench/profile-fanout.txt", help=".txt (raw) or .svg")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--native", action="store_true", help="py-spy --native (pauses the server)")
    p.add_argument("--store", default="memory", choices=["memory", "file", "file-normal"])
    p.set_defaults(run=run_profile)

    p = sub.add_parser("smoke", parents=[common], help="every scenario, tiny")
    p.set_defaults(run=run_smoke)

    args = parser.parse_args()
    scenarios.DEFLATE = args.deflate
    scenarios.LOADGEN = args.loadgen
    if args.smoke or args.scenario == "smoke":
        scenarios.QUIET_WAIT_S = 0
    if args.smoke:
        for key, value in SMOKE.get(args.scenario, {}).items():
            setattr(args, key, value)
    raise_fd_limit()
    print(machine())
    started = time.monotonic()
    results = args.run(args)
    print(f"\n({args.scenario} took {time.monotonic() - started:.1f} s)")
    if args.json:
        with open(args.json, "ab") as f:
            for r in results:
                line = {"date": str(datetime.date.today()), "scenario": args.scenario, **r}
                f.write(orjson.dumps(line) + b"\n")


if __name__ == "__main__":
    main()
