"""State shared by the bench steps in the server process: emit-to-handler latencies."""

LATENCIES_NS: list[int] = []
"""Per handled event: monotonic ns from just before ``ctx.emit`` to the handler's first line."""
