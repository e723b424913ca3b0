"""The benchmark's streams: `room` tracks presence, `plain` is the same without it."""

import os

from surge import StreamConfig

SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}}

config = StreamConfig(
    name="room",
    schema=SCHEMA,
    presence=os.environ.get("BENCH_PRESENCE", "1") == "1",
    presence_key="userId" if os.environ.get("BENCH_PRESENCE", "1") == "1" else None,
)
