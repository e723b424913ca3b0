"""Before/after: the same bench/run.py scenarios against two source trees, alternating (A B A B).

    git worktree add /tmp/surge-before 98ee990
    .venv/bin/python bench/ab.py --before /tmp/surge-before/src --rounds 2 --out bench/results/ab \\
        "fanout --subs 1000 --duration 10" "latency --subs 1000 --rate 20 --duration 10"
    git worktree remove /tmp/surge-before --force

The load generators and this harness are the current tree's; only the server's code differs:
BEFORE runs with ``PYTHONPATH=<before>`` in front of the venv (checked: the ``surge`` it imports
must come from there), AFTER with the venv's editable install. Alternating cancels slow drifts of
the machine's load; ``/proc/loadavg`` is recorded before and after every run. Results go to
``<out>-before.jsonl`` / ``<out>-after.jsonl`` (one line per run, ``side``, ``round`` and
``loadavg`` added) and a side-by-side summary is printed at the end.

One tree, two settings: without ``--before`` both sides run this tree, and ``--before-env`` /
``--after-env KEY=VALUE`` (repeatable) set what differs, e.g. the cost of metrics:

    .venv/bin/python bench/ab.py --after-env SURGE_METRICS=1 --rounds 2 \
        --out bench/results/ab-metrics "fanout --subs 1000 --duration 10"
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable


def loadavg() -> str:
    """The first three fields of /proc/loadavg."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def side_env(src: str | None, settings: list[str] | None = None) -> dict[str, str]:
    """The environment of one side: PYTHONPATH=<src> for BEFORE, unchanged for AFTER, plus the
    side's ``KEY=VALUE`` settings."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if src is not None:
        env["PYTHONPATH"] = src
    for setting in settings or ():
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise SystemExit(f"expected KEY=VALUE, got {setting!r}")
        env[key] = value
    return env


def imported_from(env: dict[str, str]) -> str:
    """Where ``import surge`` resolves in that environment (the check that the side is right)."""
    out = subprocess.run(
        [PYTHON, "-c", "import surge.cli.main as m; print(m.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def run_one(scenario: str, env: dict[str, str], json_path: Path) -> list[dict[str, Any]]:
    """One bench/run.py invocation; returns the JSON lines it appended."""
    tmp = json_path.with_suffix(".tmp.jsonl")
    tmp.unlink(missing_ok=True)
    argv = [PYTHON, str(BENCH / "run.py"), *shlex.split(scenario), "--json", str(tmp)]
    proc = subprocess.run(argv, env=env, cwd=BENCH.parent, capture_output=True, text=True)
    sys.stdout.write(proc.stdout[-3000:])
    if proc.returncode != 0:
        sys.stdout.write(proc.stderr[-3000:])
        raise SystemExit(f"run failed ({proc.returncode}): {scenario}")
    lines = [orjson.loads(line) for line in tmp.read_bytes().splitlines() if line.strip()]
    tmp.unlink(missing_ok=True)
    return lines


def key_numbers(r: dict[str, Any]) -> dict[str, float]:
    """The numbers compared side by side, by scenario."""
    s = r["scenario"]
    out: dict[str, float] = {}
    if s == "fanout":
        out["frames/s"] = r["frames_per_s"]
        out["µs/delivery"] = r["us_per_delivery"] or 0.0
    elif s == "latency":
        out["p50 ms"] = r["latency_ms"].get("p50", 0.0)
        out["p99 ms"] = r["latency_ms"].get("p99", 0.0)
        out["last receipt p50 ms"] = (r.get("last_receipt_ms") or {}).get("p50", 0.0)
        out["µs/delivery"] = r["us_per_delivery"] or 0.0
    elif s == "sequential":
        out["deliveries/s"] = r["frames_per_s"]
        out["µs/delivery"] = r["us_per_delivery"] or 0.0
        out["frames/write"] = r.get("frames_per_write") or 0.0
    elif s == "idle":
        out["KB/conn"] = r["kb_per_conn"]
    elif s == "join-storm":
        out["connect s"] = r["first_all_synced_s"]
        out["reconnect s"] = r["again_all_synced_s"]
    if "others_cpu_util" in r:
        out["others"] = r["others_cpu_util"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="+", help='run.py arguments, e.g. "fanout --subs 1000"')
    parser.add_argument(
        "--before", help="the BEFORE tree's src/ directory (default: this tree on both sides)"
    )
    parser.add_argument("--before-env", action="append", help="KEY=VALUE for the BEFORE side")
    parser.add_argument("--after-env", action="append", help="KEY=VALUE for the AFTER side")
    parser.add_argument(
        "--after",
        help="the AFTER tree's src/ (default: the venv's install, i.e. this working tree, "
        "uncommitted edits included)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="A B pairs per scenario")
    parser.add_argument("--out", default="bench/results/ab", help="prefix of the JSONL files")
    args = parser.parse_args()

    if args.before is None and not (args.before_env or args.after_env or args.after):
        raise SystemExit("give --before, or --before-env/--after-env to compare two settings")
    sides = {
        "before": side_env(args.before, args.before_env),
        "after": side_env(args.after, args.after_env),
    }
    trees = {"before": args.before, "after": args.after}
    for name, env in sides.items():
        where = imported_from(env)
        print(f"{name}: surge imported from {where}", flush=True)
        tree = trees[name]
        if tree is not None and not where.startswith(str(Path(tree).resolve())):
            raise SystemExit(f"{name} side imports the wrong tree: {where}")
        if tree is None and args.before and where.startswith(str(Path(args.before).resolve())):
            raise SystemExit(f"{name} side imports the BEFORE tree: {where}")

    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    for scenario in args.scenarios:
        for rnd in range(1, args.rounds + 1):
            for name, env in sides.items():
                la0 = loadavg()
                stamp = time.strftime("%H:%M:%S", time.gmtime())
                print(f"\n== {stamp} UTC  {name}  round {rnd}: {scenario}  (loadavg {la0})")
                sys.stdout.flush()
                results = run_one(scenario, env, Path(f"{args.out}-{name}.jsonl"))
                la1 = loadavg()
                with open(f"{args.out}-{name}.jsonl", "ab") as f:
                    for r in results:
                        r.update(side=name, round=rnd, loadavg=[la0, la1], utc=stamp)
                        f.write(orjson.dumps(r) + b"\n")
                        # Per server: a scenario may run several (stores, ceiling, Node).
                        what = f"{scenario} [{r.get('server', '?')}]"
                        rows.setdefault((what, name), []).append(key_numbers(r))
                print(f"   loadavg after: {la1}", flush=True)

    print("\nside by side (each cell: runs in order, then the median)")
    for scenario in dict.fromkeys(what for what, _ in rows):
        b, a = rows.get((scenario, "before"), []), rows.get((scenario, "after"), [])
        for metric in (b or a or [{}])[0]:
            bv = [r[metric] for r in b if metric in r]
            av = [r[metric] for r in a if metric in r]
            fmt = "{:.0%}" if metric == "others" else "{:,.2f}"

            def cell(vs: list[float], fmt: str = fmt) -> str:
                runs = " / ".join(fmt.format(v) for v in vs)
                return f"{runs}  (median {fmt.format(statistics.median(vs))})" if vs else "-"

            ratio_s = ""
            if av and bv and metric != "others" and statistics.median(bv):
                ratio_s = f"after/before {statistics.median(av) / statistics.median(bv):.3f}x"
            print(f"{scenario} | {metric} | before {cell(bv)} | after {cell(av)} | {ratio_s}")


if __name__ == "__main__":
    main()
