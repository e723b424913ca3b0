"""Summarize a py-spy raw profile (collapsed stacks): the functions with the most samples.

``py-spy record --format raw`` writes one line per distinct stack: ``frame;frame;... count``,
each frame ``function (file:line)``. "own" counts the samples where a function was on top of the
stack (where the time is actually spent), "total" the samples where it was anywhere on it.

Usage: ``.venv/bin/python bench/profile_summary.py bench/profile-fanout.txt [--top 25]``
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def _name(frame: str) -> str:
    """``function (path/to/module.py:123)`` -> ``function (module.py)``, shortened for tables."""
    frame = _LINE.sub(")", frame.strip())
    func, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{func} ({where})" if where else func


def summarize(path: Path, top: int = 25) -> str:
    """A text table of the top functions by own and by total samples."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    workers: Counter[str] = Counter()
    samples = worker_samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if any(f.startswith("Thread._bootstrap ") for f in frames):
            # A worker thread (the file store's SQLite threads): not the event loop.
            worker_samples += count
            workers[next((f for f in reversed(frames) if ".py" in f), frames[-1])] += count
            continue
        samples += count
        if frames:
            own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    if not samples:
        return f"{path}: no samples"
    lines = [
        f"{samples} samples of the event-loop thread from {path}"
        + (f" (and {worker_samples} of worker threads, below)" if worker_samples else ""),
        "",
        "own%   function (module)",
    ]
    lines += [f"{100 * n / samples:5.1f}  {name}" for name, n in own.most_common(top)]
    # Inclusive time of Python functions only, without the frames every sample shares (the CLI,
    # uvicorn's run loop), which say nothing.
    inclusive = [
        (name, n) for name, n in total.most_common() if ".py" in name and n < 0.95 * samples
    ][:top]
    lines += ["", "total% Python function (module), inclusive"]
    lines += [f"{100 * n / samples:5.1f}  {name}" for name, n in inclusive]
    if worker_samples:
        lines += ["", "worker threads, samples by innermost Python function (% of loop samples)"]
        lines += [f"{100 * n / samples:5.1f}  {name}" for name, n in workers.most_common(8)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarize(args.path, args.top))


if __name__ == "__main__":
    main()
