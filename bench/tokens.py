"""The AI-token workload (issue 14): many answers streamed token by token, deltas vs whole items.

    .venv/bin/python bench/tokens.py run                      # 200 answers x 500 tokens at 30/s,
                                                              # 3 subscribers each, file store,
                                                              # compact patches, verbose patches,
                                                              # whole items (one run each)
    .venv/bin/python bench/tokens.py run --mode delta --answers 100 --json bench/results/x.jsonl
    .venv/bin/python bench/tokens.py smoke                    # tiny, a few seconds

The server (``surge start`` on a copy of ``bench/tokens_app``, default store: the file store,
fsync on every commit) generates the tokens itself, as an AI app does: ``POST /bench/tokens``
starts one task per answer that creates its item, then awaits one ``update`` with an ``append``
op per token, paced at ``--rate`` tokens/s (token ``i`` is due ``i / rate`` after the answer's
``startNs``), then sets ``status``. Each answer is its own group with ``--per`` subscribers.

The subscribers (``tokens.py subscribers``, another process, lean raw-socket clients from
``lean.py``) join with ``"deltas": true`` (``--mode delta``: ``patch`` frames) or without
(``--mode whole``: the whole item every time) or with ``"compact": true`` too (``--mode
compact``: the compact patch form of protocol.md section 4) and, per token frame, record its
size on the wire (header included) and its latency: receipt time minus the token's due time. A
server that falls behind its schedule therefore shows as latency, not as a lower rate.

Reported: tokens/s the server wrote and deliveries/s (tokens x subscribers) over the run, the
server's CPU (utime + stime, % of one core), bytes per token per subscriber, token latency
percentiles, lost tokens (expected deliveries not received) and the worst lateness of the
generator itself (how late a token's ``update`` started).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import http.client
import sys
import time
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent
APP = BENCH / "tokens_app"
Result = dict[str, Any]


# -- the subscriber process ------------------------------------------------------------------------


def _subscribers_main(args: argparse.Namespace) -> None:
    import uvloop
    from lean import Stats, Subscriber
    from subscribers import emit, percentiles, raise_fd_limit

    raise_fd_limit()
    period_ns = int(1e9 / args.rate)
    join_extra = {
        "delta": b',"deltas":true',
        "compact": b',"deltas":true,"compact":true',
        "whole": b"",
    }[args.mode]

    class Totals:
        def __init__(self) -> None:
            self.token_frames = 0
            self.token_bytes = 0
            self.other_bytes = 0
            self.latencies: list[int] = []
            self.done = 0
            self.first_ns = 0
            self.last_ns = 0

    totals = Totals()
    all_done = asyncio.Event()

    class TokenSubscriber(Subscriber):
        """Joins one answer's group; times and sizes each token frame that follows the create."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.seen = 0
            self.start_ns = 0

        def join_frame(self) -> bytes:
            extra = join_extra
            return (
                b'{"type":"join","data":{"streamName":"answer","groupId":"'
                + self.group.encode()
                + b'","subscriptionId":"s1"'
                + extra
                + b"}}"
            )

        def _count(self, buf: bytes, start: int, end: int, now: int) -> None:
            length = end - start
            size = length + (2 if length < 126 else 4 if length < 65536 else 10)
            n = self.seen
            self.seen = n + 1
            if n == 0:  # the create: it carries the answer's start
                self.start_ns = orjson.loads(buf[start:end])["event"]["data"]["startNs"]
                totals.other_bytes += size
                return
            if n <= args.tokens:
                totals.token_frames += 1
                totals.token_bytes += size
                totals.latencies.append(now - (self.start_ns + (n - 1) * period_ns))
                if not totals.first_ns:
                    totals.first_ns = now
                totals.last_ns = now
                return
            totals.other_bytes += size  # the final status
            if n == args.tokens + 1:
                totals.done += 1
                if totals.done >= len(subs):
                    all_done.set()

    subs: list[TokenSubscriber] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stats = Stats()
        synced = asyncio.Event()

        def on_synced(_: Subscriber) -> None:
            if stats.synced >= len(subs):
                synced.set()

        subs.extend(
            TokenSubscriber(
                stats,
                kind="surge",
                host=args.host,
                port=args.port,
                group=f"a{k}",
                on_synced=on_synced,
            )
            for k in range(args.answers)
            for _ in range(args.per)
        )
        gate = asyncio.Semaphore(100)

        async def open_one(sub: TokenSubscriber) -> None:
            async with gate:
                await loop.create_connection(lambda: sub, args.host, args.port)

        async with asyncio.timeout(120):
            await asyncio.gather(*(open_one(s) for s in subs))
            await synced.wait()
        emit("ready", subscribers=len(subs))
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().split():
            if line[0] == "drain":
                try:
                    async with asyncio.timeout(float(line[1])):
                        await all_done.wait()
                except TimeoutError:
                    pass
                emit(
                    "drained",
                    token_frames=totals.token_frames,
                    token_bytes=totals.token_bytes,
                    other_bytes=totals.other_bytes,
                    done=totals.done,
                    subscribers=len(subs),
                    closed=stats.closed,
                    close_codes=stats.close_codes,
                    first_ns=totals.first_ns,
                    last_ns=totals.last_ns,
                    latency_ms=percentiles(totals.latencies),
                )
            elif line[0] == "quit":
                break
        for sub in subs:
            sub.close()

    uvloop.run(run())


# -- the orchestrator ------------------------------------------------------------------------------


def _get(port: int, path: str) -> Result:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    body: Result = orjson.loads(conn.getresponse().read())
    conn.close()
    return body


def run_once(mode: str, args: argparse.Namespace) -> Result:
    """One fresh server, one workload, one mode; returns the measured numbers."""
    from procs import Child, busy_seconds, start_surge, wait_quiet
    from scenarios import profiling

    expected = args.answers * args.per * args.tokens
    config_py = None
    if args.synchronous != "full":
        config_py = (
            "from surge import Config\nfrom surge.config import Adapters\n"
            "from surge.streams.stores.file import FileStreamAdapter\n\n"
            "config = Config(adapters=Adapters(streams=FileStreamAdapter(\n"
            f"    '.surge/streams', synchronous={args.synchronous!r})))\n"
        )
    with start_surge(
        args.store, app=APP, ready_path="/bench/tokens", log_level="warning", config_py=config_py
    ) as srv:
        child = Child(
            "tokens.py",
            "subscribers",
            "--port", str(srv.port),
            "--answers", str(args.answers),
            "--per", str(args.per),
            "--tokens", str(args.tokens),
            "--rate", str(args.rate),
            "--mode", mode,
        )  # fmt: skip
        try:
            child.expect("ready", 180)
            wait_quiet()
            with profiling(srv, args.profile):
                cpu0, busy0, wall0 = srv.cpu(), busy_seconds(), time.monotonic()
                work = {"answers": args.answers, "tokens": args.tokens, "rate": args.rate}
                status, body = srv.post("/bench/tokens", work)
                if status != 202:
                    raise RuntimeError(f"POST /bench/tokens: {status} {body!r}")
                # Generous: a server that falls behind still finishes (its lateness is the result).
                budget = 6 * args.tokens / args.rate + 60
                child.send(f"drain {budget}")
                drained = child.expect("drained", budget + 30)
                wall = time.monotonic() - wall0
                cpu, busy = srv.cpu() - cpu0, busy_seconds() - busy0
            progress = _get(srv.port, "/bench/tokens")
        finally:
            child.close()
    span = max(1e-9, (drained["last_ns"] - drained["first_ns"]) / 1e9)
    deliveries = drained["token_frames"]
    return {
        "scenario": "tokens",
        "mode": mode,
        "store": args.store if args.synchronous == "full" else f"{args.store} ({args.synchronous})",
        "answers": args.answers,
        "tokens": args.tokens,
        "rate": args.rate,
        "per": args.per,
        "tokens_per_s": progress["tokens"] / span,
        "deliveries_per_s": deliveries / span,
        "server_cpu_pct": 100 * cpu / wall,
        "server_cpu_s": cpu,
        "server_cpu_us_per_token": 1e6 * cpu / max(1, progress["tokens"]),
        "others_cpu_s": max(0.0, busy - cpu),
        "wall_s": wall,
        "bytes_per_token": drained["token_bytes"] / max(1, deliveries),
        "latency_ms": drained["latency_ms"],
        "lost": expected - deliveries,
        "answers_done": progress["done"],
        "generator_late_ms_max": progress["late_ms_max"],
        "failed": progress["failed"],
        "closed": drained["closed"],
    }


def report(results: list[Result]) -> None:
    from run import machine, table

    print(machine())
    rows = []
    for r in results:
        lat = r["latency_ms"]
        rows.append(
            [
                r["mode"],
                f"{r['answers']}x{r['tokens']} @{r['rate']:g}/s x{r['per']}",
                f"{r['tokens_per_s']:,.0f}",
                f"{r['deliveries_per_s']:,.0f}",
                f"{r['server_cpu_pct']:.0f}%",
                f"{r['bytes_per_token']:,.0f}",
                f"{lat.get('p50', 0):.1f}",
                f"{lat.get('p99', 0):.1f}",
                f"{lat.get('max', 0):.1f}",
                str(r["lost"]),
                f"{r['generator_late_ms_max']:.1f}",
            ]
        )
    table(
        f"AI tokens ({results[0]['store']} store)",
        [
            *("mode", "workload", "tokens/s", "deliveries/s", "server CPU", "bytes/token"),
            *("p50 ms", "p99 ms", "max ms", "lost", "gen late ms"),
        ],
        rows,
    )
    whole = [r["bytes_per_token"] for r in results if r["mode"] == "whole"]
    for r in results:
        if whole and r["mode"] != "whole":
            ratio = whole[0] / max(1e-9, r["bytes_per_token"])
            print(f"whole item / {r['mode']} bytes per token: {ratio:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "smoke"):
        p = sub.add_parser(name)
        p.add_argument(
            "--mode",
            nargs="+",
            choices=["compact", "delta", "whole"],
            default=["compact", "delta", "whole"],
        )
        p.add_argument("--answers", type=int, default=200)
        p.add_argument("--tokens", type=int, default=500)
        p.add_argument("--rate", type=float, default=30.0)
        p.add_argument("--per", type=int, default=3)
        p.add_argument("--store", default="file", choices=["file", "memory"])
        p.add_argument("--json", type=Path, default=None)
        p.add_argument("--profile", type=Path, default=None, help="py-spy the server into FILE")
        p.add_argument(
            "--synchronous",
            choices=["full", "normal"],
            default="full",
            help="the file store's fsync policy (full, the default: fsync every commit)",
        )
    s = sub.add_parser("subscribers")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--answers", type=int, required=True)
    s.add_argument("--per", type=int, required=True)
    s.add_argument("--tokens", type=int, required=True)
    s.add_argument("--rate", type=float, required=True)
    s.add_argument("--mode", choices=["compact", "delta", "whole"], required=True)
    args = parser.parse_args()
    if args.command == "subscribers":
        _subscribers_main(args)
        return
    if args.command == "smoke":
        args.answers, args.tokens, args.rate, args.per = 4, 20, 50.0, 2
    from run import raise_fd_limit

    raise_fd_limit()
    results = [run_once(mode, args) for mode in args.mode]
    report(results)
    if args.json is not None:
        with args.json.open("a") as f:
            for r in results:
                line = {**r, "date": datetime.date.today().isoformat()}
                f.write(orjson.dumps(line).decode() + "\n")


if __name__ == "__main__":
    main()
