"""Put on the server's PYTHONPATH by ``run.py --server-gc``: the GC experiment knob.

- ``SURGE_BENCH_GC=off`` disables Python's cyclic garbage collector in the server process, to
  measure what its full (generation 2) collections cost the latency tail. An experiment only: a
  real server needs the collector (or fewer tracked objects).
- ``SURGE_BENCH_GC=log`` keeps it on and logs every generation-2 collection (and any other over
  5 ms) with its time since the server started (the load starts after the subscribers synced), its
  duration and the number of tracked objects; ``run.py`` prints them at the end.
"""

import gc
import os
import sys
import time

_MODE = os.environ.get("SURGE_BENCH_GC")

if _MODE == "off":
    gc.disable()
elif _MODE == "log":
    _started = [0.0]
    _t0 = time.monotonic()

    def _log(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            _started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - _started[0]) * 1000
        if info["generation"] == 2 or ms > 5:
            tracked = len(gc.get_objects(generation=2)) if info["generation"] == 2 else -1
            sys.stderr.write(
                f"surge-bench gc: t+{time.monotonic() - _t0:.1f} s gen{info['generation']} "
                f"{ms:.1f} ms, "
                f"collected {info['collected']}, gen2 objects {tracked}\n"
            )

    gc.callbacks.append(_log)
