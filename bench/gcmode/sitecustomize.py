"""Put on the server's PYTHONPATH by ``run.py --server-gc``: the GC experiment knob.

``SURGE_BENCH_GC=off`` disables Python's cyclic garbage collector in the server process, to
measure what its full (generation 2) collections cost the latency tail. An experiment only: a
real server needs the collector (or fewer tracked objects).
"""

import gc
import os

if os.environ.get("SURGE_BENCH_GC") == "off":
    gc.disable()
