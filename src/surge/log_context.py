"""What a log line is about: the trace, the step and the connection, as context variables.

The server sets them where the work starts (an API request: trace and step; an event or cron
handler run: trace and step; a WebSocket connection: its id) and every record logged in that
task, by any logger, can carry them: ``surge.server.logs.JsonFormatter`` reads them. asyncio
copies the context into the tasks a handler starts, so they follow the work. Outside such work
they are None. Setting them costs a ``ContextVar.set``; nothing reads them unless a formatter
does.

A bottom layer (imports nothing of Surge): steps, events and the server all set them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["CONNECTION_ID", "STEP", "TRACE_ID", "log_context"]

TRACE_ID: ContextVar[str | None] = ContextVar("surge_trace_id", default=None)
"""The flow's trace id (the ``x-trace-id`` of the API request that started it)."""
STEP: ContextVar[str | None] = ContextVar("surge_step", default=None)
"""The step whose handler runs."""
CONNECTION_ID: ContextVar[int | None] = ContextVar("surge_connection_id", default=None)
"""The WebSocket connection's id (``Connection.id``, unique in the process)."""


@contextlib.contextmanager
def log_context(*, trace_id: str | None = None, step: str | None = None) -> Iterator[None]:
    """Set the trace id and the step for the block (restored after it)."""
    trace_token = TRACE_ID.set(trace_id)
    step_token = STEP.set(step)
    try:
        yield
    finally:
        STEP.reset(step_token)
        TRACE_ID.reset(trace_token)
