"""The measurements: each function drives one running server with load-generator processes.

Every function returns a flat dict of numbers (printed by ``run.py`` and kept in its JSON
output). CPU figures are read from /proc for the server and for the load generators, so a
result whose load generator ran near 100% of a core is visible as such.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import procs
from procs import (
    PYTHON,
    Child,
    Server,
    build_csubs,
    busy_seconds,
    cpu_seconds,
    softirq_seconds,
    wait_quiet,
    write_syscalls,
)

__all__ = [
    "cross_instance",
    "fanout",
    "http_throughput",
    "idle",
    "join_storm",
    "latency",
    "profiling",
    "sequential",
]

READY_TIMEOUT_S = 180.0
# How long to wait for other people's load on the machine to go away before measuring (0: never).
QUIET_WAIT_S = 60.0
# Subscribers offer permessage-deflate, as browsers do (run.py --deflate).
DEFLATE = False
# Which subscriber load generator: "python" (subscribers.py), "c" (bench/csubs.c; run.py
# --loadgen c: the same protocol, less CPU per received frame) or "c-spin" (it never sleeps).
LOADGEN = "python"


def _quiet() -> None:
    if QUIET_WAIT_S > 0:
        wait_quiet(QUIET_WAIT_S)


def _subscribers(
    server: Server, kind: str, count: int, *extra: str
) -> tuple[Child, dict[str, Any]]:
    flags = ["--deflate"] if DEFLATE else []
    if LOADGEN == "c-spin":
        flags.append("--spin")
    subs = Child(
        build_csubs() if LOADGEN.startswith("c") else "subscribers.py",
        *("--kind", kind, "--port", str(server.port), "--count", str(count)),
        *flags,
        *extra,
    )
    ready = subs.expect("ready", READY_TIMEOUT_S)
    if ready["synced"] < count:
        subs.kill()
        raise RuntimeError(
            f"{server.name}: only {ready['synced']} of {count} subscribers synced: {ready}"
        )
    return subs, ready


def _name(server: Server) -> str:
    return f"{server.name} +deflate" if DEFLATE else server.name


def _writer(server: Server, *extra: str) -> Child:
    writer = Child("writer.py", "--port", str(server.port), *extra)
    writer.expect("ready", 30)
    return writer


@dataclass(frozen=True)
class _Snapshot:
    """The server's and the machine's counters at one moment of a scenario."""

    t: float
    cpu: float
    system: float
    writes: int
    busy: float
    irq: float


def _snapshot(server: Server) -> _Snapshot:
    cpu, t = server.cpu(), time.monotonic()
    return _Snapshot(
        t, cpu, server.cpu_split()[1], server.write_syscalls(), busy_seconds(), softirq_seconds()
    )


def _usage(before: _Snapshot, after: _Snapshot, loadgen_cpu: float, frames: int) -> dict[str, Any]:
    """CPU and write figures between two snapshots (``loadgen_cpu``: the generators' seconds)."""
    server_cpu, wall = after.cpu - before.cpu, after.t - before.t
    writes = after.writes - before.writes
    return {
        "server_cpu_s": server_cpu,
        "server_cpu_util": server_cpu / wall,
        "server_system_share": (after.system - before.system) / server_cpu if server_cpu else None,
        "us_per_delivery": server_cpu * 1e6 / frames if frames else None,
        # Every write system call of the server meanwhile (HTTP answers and pings included).
        "server_write_syscalls": writes,
        "frames_per_write": frames / writes if writes > 0 else None,
        "loadgen_cpu_util": loadgen_cpu / wall,
        "others_cpu_util": max(0.0, after.busy - before.busy - server_cpu - loadgen_cpu) / wall,
        "softirq_util": (after.irq - before.irq) / wall,
    }


def fanout(
    server: Server,
    kind: str,
    subs_count: int,
    duration: float,
    concurrency: int,
    *,
    mode: str = "count",
    rate: float | None = None,
    profile: Path | None = None,
    write_to: Server | None = None,
) -> dict[str, Any]:
    """N subscribers on one group; POSTs as fast as accepted (or at ``rate``); count deliveries.

    Returns delivered frames/s (first to last receipt), server CPU µs per delivery, lost frames
    (answered POSTs x subscribers - frames received) and, in latency mode, the percentiles from
    the start of each POST to each receipt.
    """
    sub_args = ["--mode", mode]
    subs, _ = _subscribers(server, kind, subs_count, *sub_args)
    writer_args = ["--duration", str(duration), "--concurrency", str(concurrency)]
    if rate is not None:
        writer_args += ["--mode", "rate", "--rate", str(rate)]
    try:
        writer = _writer(write_to or server, *writer_args)
        subs.send("reset")
        subs.expect("reset", 10)
        _quiet()
        with profiling(server, profile):
            lg0, before = subs.cpu() + writer.cpu(), _snapshot(server)
            by_process0 = _by_process(server)
            writer.send("go")
            done = writer.expect("done", duration + 60)
            lg1 = writer.cpu()
            writer.close()
            expected = done["ok"] * subs_count
            subs.send(f"drain {expected} 3")
            drained = subs.expect("drained", 120)
            after = _snapshot(server)
            by_process1 = _by_process(server)
            lg1 += subs.cpu()
    finally:
        subs.close()
    frames = drained["frames"]
    span = (drained["last_ns"] - drained["first_ns"]) / 1e9
    return {
        "server": _name(server),
        "subscribers": subs_count,
        "posts": done["ok"],
        "post_errors": {**done["statuses"], **done["errors"]},
        "post_rate": done["rate"],
        "post_ms": done["latency_ms"],
        "frames": frames,
        "lost": expected - frames,
        "closed": drained["closed"],
        "close_codes": drained["close_codes"],
        "frames_per_s": frames / span if span > 0 else 0.0,
        **_usage(before, after, lg1 - lg0, frames),
        "server_rss_mb": server.rss() / 2**20,
        "latency_ms": drained["latency_ms"],
        "latency_samples": drained["samples"],
        "first_receipt_ms": drained["first_receipt_ms"],
        "last_receipt_ms": drained["last_receipt_ms"],
        **(
            {
                "server_cpu_by_process": [
                    b[0] - a[0] for a, b in zip(by_process0, by_process1, strict=True)
                ],
                "server_writes_by_process": [
                    b[1] - a[1] for a, b in zip(by_process0, by_process1, strict=True)
                ],
            }
            if len(server.pids) > 1
            else {}
        ),
    }


def _by_process(server: Server) -> list[tuple[float, int]]:
    """(CPU seconds, write system calls) of each serving process (``--workers N``)."""
    return [(cpu_seconds(pid), write_syscalls(pid)) for pid in server.pids]


def latency(
    server: Server, kind: str, subs_count: int, rate: float, duration: float
) -> dict[str, Any]:
    """A fixed rate of POST /todo to N subscribers; receipt latency from the start of the POST."""
    return fanout(server, kind, subs_count, duration, 16, mode="latency", rate=rate)


def sequential(
    server: Server,
    subs_count: int,
    sets: int,
    duration: float,
    *,
    profile: Path | None = None,
) -> dict[str, Any]:
    """One handler awaiting ``sets`` sequential ``set``s of one item (``POST /burst`` of
    bench/burst_app), one request at a time for ``duration`` s, to N subscribers of the group.

    The realistic producer (an AI answer, a job's progress): each change is acknowledged before
    the next starts. Returns deliveries/s, server CPU µs per delivery, frames per write and lost.
    """
    import http.client

    import orjson

    subs, _ = _subscribers(server, "surge", subs_count)
    body = orjson.dumps({"n": sets})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        subs.send("reset")
        subs.expect("reset", 10)
        _quiet()
        with profiling(server, profile):
            lg0, before = subs.cpu(), _snapshot(server)
            t0 = before.t
            requests, errors = 0, 0
            request_s: list[float] = []
            while time.monotonic() - t0 < duration:
                r0 = time.monotonic()
                conn.request("POST", "/burst", body, {"content-type": "application/json"})
                response = conn.getresponse()
                response.read()
                request_s.append(time.monotonic() - r0)
                if response.status == 200:
                    requests += 1
                else:
                    errors += 1
            expected = requests * sets * subs_count
            subs.send(f"drain {expected} 3")
            drained = subs.expect("drained", 120)
            after = _snapshot(server)
            lg1 = subs.cpu()
    finally:
        conn.close()
        subs.close()
    frames = drained["frames"]
    span = (drained["last_ns"] - drained["first_ns"]) / 1e9
    request_s.sort()
    return {
        "server": _name(server),
        "subscribers": subs_count,
        "sets_per_request": sets,
        "requests": requests,
        "request_errors": errors,
        "request_ms_p50": request_s[len(request_s) // 2] * 1e3 if request_s else None,
        "sets_per_s": requests * sets / span if span > 0 else 0.0,
        "frames": frames,
        "lost": expected - frames,
        "closed": drained["closed"],
        "frames_per_s": frames / span if span > 0 else 0.0,
        **_usage(before, after, lg1 - lg0, frames),
    }


def cross_instance(
    a: Server, b: Server, subs_count: int, rate: float, duration: float
) -> dict[str, Any]:
    """Subscribers on instance A, a fixed rate of POST /todo on instance B (one Redis)."""
    result = fanout(a, "surge", subs_count, duration, 16, mode="latency", rate=rate, write_to=b)
    result["server"] = "surge B -> A (redis)"
    return result


def http_throughput(
    server: Server, duration: float, concurrency: int, profile: Path | None = None
) -> dict[str, Any]:
    """POST /todo in a closed loop with no subscribers: requests/s and latency."""
    writer = _writer(server, "--duration", str(duration), "--concurrency", str(concurrency))
    _quiet()
    busy0 = busy_seconds()
    with profiling(server, profile), syncs_counted() as syncs:
        cpu0, lg0, t0 = server.cpu(), writer.cpu(), time.monotonic()
        main0, writes0 = _main_thread_cpu(server.pid), server.write_syscalls()
        writer.send("go")
        done = writer.expect("done", duration + 60)
        cpu1, lg1, wall = server.cpu(), writer.cpu(), time.monotonic() - t0
        main1, writes1 = _main_thread_cpu(server.pid), server.write_syscalls()
    busy1 = busy_seconds()
    writer.close()
    posts = done["ok"]
    return {
        "server": _name(server),
        "concurrency": concurrency,
        "posts": done["ok"],
        "post_errors": {**done["statuses"], **done["errors"]},
        "posts_per_s": done["rate"],
        "post_ms": done["latency_ms"],
        "server_cpu_util": (cpu1 - cpu0) / wall,
        "loadgen_cpu_util": (lg1 - lg0) / wall,
        "others_cpu_util": max(0.0, busy1 - busy0 - (cpu1 - cpu0) - (lg1 - lg0)) / wall,
        "us_per_post": (cpu1 - cpu0) * 1e6 / done["ok"] if done["ok"] else None,
        # The event loop's thread alone (the rest: the store's writer thread, a thread pool).
        "loop_us_per_post": (main1 - main0) * 1e6 / posts if posts else None,
        "loop_cpu_util": (main1 - main0) / wall,
        # write-family system calls (sockets and files, every thread) per answered POST
        "writes_per_post": (writes1 - writes0) / posts if posts else None,
        # fsync + fdatasync calls on the whole machine meanwhile (perf; None without it).
        "syncs": syncs.get("count"),
        "posts_per_sync": posts / syncs["count"] if syncs.get("count") else None,
    }


def _main_thread_cpu(pid: int) -> float:
    """CPU seconds of process ``pid``'s main thread (the event loop's, for every server here)."""
    with open(f"/proc/{pid}/task/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / procs.CLK_TCK


@contextmanager
def syncs_counted() -> Iterator[dict[str, int]]:
    """Count fsync and fdatasync calls machine-wide during the block (``perf stat`` on their
    tracepoints: a counter in the kernel, no tracing of each call); the dict gets ``count`` if
    perf is there and allowed, else stays empty. Under bench's exclusive lock only the server
    syncs."""
    found: dict[str, int] = {}
    events = "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync"
    try:
        perf = subprocess.Popen(
            ["perf", "stat", "-a", "-x", ",", "-e", events],  # until SIGINT
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    except OSError:
        yield found
        return
    time.sleep(0.2)  # perf has opened its counters
    try:
        yield found
    finally:
        os.kill(perf.pid, signal.SIGINT)  # perf prints its counts and exits
        _, err = perf.communicate(timeout=10)
        counts = [line.split(",")[0] for line in err.decode().splitlines() if "sys_enter" in line]
        if counts and all(c.isdigit() for c in counts):
            found["count"] = sum(int(c) for c in counts)


def idle(server: Server, conns: int, *, distinct_groups: bool, settle: float) -> dict[str, Any]:
    """N connections, one group subscription each; server RSS growth per connection."""
    time.sleep(settle)
    rss0, cpu0 = server.rss(), server.cpu()
    extra = ["--distinct-groups"] if distinct_groups else []
    subs, ready = _subscribers(server, "surge", conns, *extra)
    try:
        time.sleep(settle)
        rss1, cpu1 = server.rss(), server.cpu()
    finally:
        subs.close()
    return {
        "server": _name(server),
        "connections": conns,
        "groups": conns if distinct_groups else 1,
        "connect_s": ready["all_synced_s"],
        "rss_before_mb": rss0 / 2**20,
        "rss_after_mb": rss1 / 2**20,
        "kb_per_conn": (rss1 - rss0) / conns / 1024,
        "server_cpu_s": cpu1 - cpu0,
    }


def join_storm(
    server: Server, clients: int, items: int, profile: Path | None = None
) -> dict[str, Any]:
    """N clients join a group of ``items`` at once; then all reconnect (a deploy) at once."""
    for i in range(items):
        status, body = server.post("/todo", {"description": f"item {i} " + "x" * 40})
        if status != 200:
            raise RuntimeError(f"prefill failed: {status} {body[:200]!r}")
    _quiet()
    cpu0, rss0 = server.cpu(), server.rss()
    subs = Child(
        "subscribers.py",
        "--port",
        str(server.port),
        "--count",
        str(clients),
        "--connect-concurrency",
        str(clients),
        *(["--deflate"] if DEFLATE else []),
    )
    try:
        with profiling(server, profile):
            first = subs.expect("ready", READY_TIMEOUT_S)
            cpu1, rss1 = server.cpu(), server.rss()
            subs.send("reconnect")
            again = subs.expect("reconnected", READY_TIMEOUT_S)
            cpu2 = server.cpu()
    finally:
        subs.close()
    return {
        "server": _name(server),
        "clients": clients,
        "items": items,
        "first_synced": first["synced"],
        "first_all_synced_s": first["all_synced_s"],
        "first_sync_ms": first["sync_ms"],
        "first_failures": first["failures"],
        "first_server_cpu_s": cpu1 - cpu0,
        "again_synced": again["synced"],
        "again_all_synced_s": again["all_synced_s"],
        "again_sync_ms": again["sync_ms"],
        "again_failures": again["failures"],
        "again_server_cpu_s": cpu2 - cpu1,
        "server_rss_mb": rss1 / 2**20,
        "rss_growth_mb": (rss1 - rss0) / 2**20,
    }


# py-spy --native: C frames too (uvloop, orjson, libc write). It must pause the server for every
# sample, which skews the weights towards system calls; the default samples without pausing and
# charges C time to the Python line that called it.
NATIVE_PROFILE = False


@contextmanager
def profiling(server: Server, out: Path | None) -> Iterator[None]:
    """py-spy records the server for the block (raw collapsed stacks, or an SVG flame graph).

    py-spy itself takes CPU on the machine's other core, so a profiled run's numbers are lower
    than a plain run's.
    """
    if out is None:
        yield
        return
    fmt = "flamegraph" if out.suffix == ".svg" else "raw"
    spy = subprocess.Popen(
        [
            str(Path(PYTHON).parent / "py-spy"),
            "record",
            "--pid",
            str(server.pid),
            *(
                ["--rate", "100", "--native"]
                if NATIVE_PROFILE
                else ["--rate", "250", "--nonblocking"]
            ),
            "--format",
            fmt,
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(0.5)  # attached before the load starts
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            _, err = spy.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
            raise RuntimeError("py-spy did not stop") from None
        if spy.returncode != 0 and not out.exists():
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
