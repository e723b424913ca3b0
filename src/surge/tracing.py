"""The tracing hook: where an optional tracer (OpenTelemetry, ``surge[otel]``) sees the work.

``TRACER`` is None unless a tracing plugin installed one (``surge.server.otel``); every call site
tests it first, so tracing off costs one module attribute read per API request, emit and handler
run, and imports nothing. A ``Tracer`` is told:

- ``request(step, method, route, headers)``: an API request begins; the returned ``RequestSpan``
  gives the flow's trace id (the span's, so ``x-trace-id`` is the trace to look up) and is ended
  with the response's status.
- ``producer(topic, trace_id)``: an ``emit`` is being enqueued; yields the W3C ``traceparent``
  that travels in the message (``Envelope.trace_parent``) so the handler's span joins the trace.
- ``consumer(step, topic, trace_parent)``: an event step's handler runs (a child of the emit).
- ``current_span_id()``: the span a log line was written in (JSON lines carry it as ``span_id``).

``tracing_wanted(flag)`` decides whether an app traces: ``Config(tracing=True)``, or the
standard variables naming an exporter (``OTEL_TRACES_EXPORTER`` other than ``none``,
``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); never with
``OTEL_SDK_DISABLED=true``.

A bottom layer: the HTTP adapter, the publisher and the event runner call it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Protocol

__all__ = ["TRACER", "RequestSpan", "Tracer", "install", "tracing_wanted", "uninstall"]


class RequestSpan(Protocol):
    """One API request's span."""

    trace_id: str
    """32 lowercase hex digits."""

    def end(self, status: int, error: BaseException | None = None) -> None:
        """End the span with the response's status (and the error a 5xx came from)."""
        ...


class Tracer(Protocol):
    """What a tracing plugin implements (see the module docstring)."""

    def request(
        self, step: str, method: str, route: str, headers: Mapping[str, str]
    ) -> RequestSpan: ...

    def producer(self, topic: str, trace_id: str) -> AbstractContextManager[str | None]: ...

    def consumer(
        self, step: str, topic: str, trace_parent: str | None
    ) -> AbstractContextManager[None]: ...

    def current_span_id(self) -> str | None:
        """The current span's id (16 hex digits), for log lines; None outside a span."""
        ...


TRACER: Tracer | None = None


def install(tracer: Tracer) -> None:
    """Make ``tracer`` the process's tracer (one per process, like OpenTelemetry's provider)."""
    global TRACER
    TRACER = tracer


def uninstall(tracer: Tracer) -> None:
    """Remove ``tracer`` if it is the installed one."""
    global TRACER
    if TRACER is tracer:
        TRACER = None


def tracing_wanted(configured: bool) -> bool:
    """Whether to trace (see the module docstring)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(
        configured
        or exporter
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
