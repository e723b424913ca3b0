"""What the rate limits cost per client frame, and how long one flooding read holds the loop.

    .venv/bin/python bench/ratelimit_cost.py [--frames 200000]

1. ``ConnectionLimiter.frame`` + ``join`` per call (the check every client frame pays; the
   buckets never run dry here, so this is the common path), next to decoding the same join.
2. The websockets Sans-I/O parser on one 256 KiB read of tiny masked frames (what a flooder's
   socket read holds): parsed whole (uvicorn's default) vs in ``PARSE_SLICE`` pieces as
   ``SurgeWebSocketProtocol`` does: the total is the same, the longest single stretch on the
   event loop is what other connections wait for.
In-process, no sockets: numbers for bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import struct
import time

from websockets.protocol import Protocol, Side, State

from surge.config import Limits
from surge.protocol.codec import decode_client_message
from surge.server.protocols import PARSE_SLICE
from surge.server.ratelimit import ConnectionLimiter, Verdict

JOIN = '{"type":"join","data":{"streamName":"todo","groupId":"inbox","subscriptionId":"s1"}}'
READ = 256 * 1024


def masked_text_frame(payload: bytes) -> bytes:
    key = os.urandom(4)
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + key + masked


def limiter_cost(frames: int) -> float:
    limits = Limits(frames_per_second=1e12, joins_per_second=1e12, bytes_in_per_second=1e15)
    limiter = ConnectionLimiter(limits, time.monotonic())
    clock = time.monotonic
    started = time.perf_counter()
    for _ in range(frames):
        now = clock()
        if limiter.frame(JOIN, now) is not Verdict.OK or limiter.join(now) is not Verdict.OK:
            raise AssertionError("the bucket ran dry")
    return (time.perf_counter() - started) / frames


def decode_cost(frames: int) -> float:
    started = time.perf_counter()
    for _ in range(frames):
        decode_client_message(JOIN)
    return (time.perf_counter() - started) / frames


def parse(read: bytes, piece: int) -> tuple[float, float, int]:
    """(total s, longest piece in s, frames) parsing ``read`` ``piece`` bytes at a time."""
    proto = Protocol(Side.SERVER, state=State.OPEN, max_size=64 * 1024)
    longest = total = 0.0
    frames = 0
    for start in range(0, len(read), piece):
        began = time.perf_counter()
        proto.receive_data(read[start : start + piece])
        frames += len(proto.events_received())
        spent = time.perf_counter() - began
        total += spent
        longest = max(longest, spent)
    return total, longest, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200_000)
    args = parser.parse_args()
    per_frame = min(limiter_cost(args.frames) for _ in range(3))
    decode = min(decode_cost(args.frames) for _ in range(3))
    print(
        f"limiter: frame()+join() per client frame: {per_frame * 1e9:.0f} ns "
        f"(decoding that join frame: {decode * 1e9:.0f} ns)"
    )
    frame = masked_text_frame(b'{"type":"noop"}')
    read = frame * (READ // len(frame))
    for label, piece in (("whole read", len(read)), (f"{PARSE_SLICE} B slices", PARSE_SLICE)):
        total, longest, frames = min((parse(read, piece) for _ in range(3)), key=lambda r: r[0])
        print(
            f"parse 256 KiB ({frames} frames), {label}: total {total * 1e3:.1f} ms, "
            f"longest stretch {longest * 1e3:.2f} ms"
        )


if __name__ == "__main__":
    main()
