"""OpenTelemetry traces (the ``surge[otel]`` extra), as a server plugin.

One trace per API request: a SERVER span for the request (``POST /todo``; a ``traceparent``
header from the caller makes it a child of the caller's trace), a PRODUCER span for each
``emit`` (its W3C ``traceparent`` travels in the queued message, ``Envelope.trace_parent``), a
CONSUMER span for each event step run (a child of that emit, on whichever instance takes the
message), and CLIENT spans for the storage operations done inside a trace (``surge.store.set``,
...). Surge's trace id is the span's: the ``x-trace-id`` header, ``ctx.trace_id`` and the log
lines' ``trace_id`` name the trace to look up in the tracing backend.

Exporting uses the standard SDK configuration: ``OTEL_SERVICE_NAME`` (default ``surge``),
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_EXPORTER`` (``otlp``, the default, or ``console``),
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``_HEADERS``,
``_TIMEOUT`` and ``OTEL_TRACES_SAMPLER``; the OTLP exporter is the HTTP/protobuf one. A tracer
provider the application set up itself (``trace.set_tracer_provider``) is used as it is.

When: ``surge.app.create_app`` installs this plugin when ``tracing_wanted`` (``surge.tracing``)
says so; otherwise nothing here is imported and the hook (``surge.tracing.TRACER``) stays None.
The hook is installed while the app runs (one tracer per process, as OpenTelemetry's provider).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

import surge.tracing as tracing
from surge.errors import ConfigError
from surge.streams.adapter import StreamAdapter

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigError(
        "tracing needs OpenTelemetry: pip install 'surge[otel]' "
        "(opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http)"
    ) from exc

if TYPE_CHECKING:
    from surge.server.app import SurgeApp

__all__ = ["OtelPlugin", "OtelTracer"]

_STORE_OPERATIONS = frozenset(
    ("get", "set", "update", "delete", "send", "get_group", "get_item_snapshot", "list_groups")
)
_PROPAGATOR = TraceContextTextMapPropagator()


class _RequestSpan:
    """The SERVER span of one API request, current until ``end``."""

    __slots__ = ("_span", "_token", "trace_id")

    def __init__(self, span: trace.Span, token: object) -> None:
        self._span = span
        self._token = token
        self.trace_id = format(span.get_span_context().trace_id, "032x")

    def end(self, status: int, error: BaseException | None = None) -> None:
        span = self._span
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
            if error is not None:
                span.record_exception(error)
        span.end()
        otel_context.detach(self._token)  # type: ignore[arg-type]


class OtelTracer:
    """``surge.tracing.Tracer`` on an OpenTelemetry tracer provider."""

    def __init__(self, provider: trace.TracerProvider) -> None:
        self._tracer = provider.get_tracer("surge")

    def request(
        self, step: str, method: str, route: str, headers: Mapping[str, str]
    ) -> _RequestSpan:
        """Start the request's span (a child of an incoming ``traceparent``) and make it
        current."""
        parent = _PROPAGATOR.extract(headers) if "traceparent" in headers else None
        span = self._tracer.start_span(
            f"{method} {route}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "http.route": route, "surge.step": step},
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return _RequestSpan(span, token)

    @contextlib.contextmanager
    def producer(self, topic: str, trace_id: str) -> Iterator[str | None]:
        """A PRODUCER span around the enqueue; yields its ``traceparent``."""
        attributes = {
            "messaging.system": "surge",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
        }
        with self._tracer.start_as_current_span(
            f"emit {topic}", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier)
            yield carrier.get("traceparent")

    @contextlib.contextmanager
    def consumer(self, step: str, topic: str, trace_parent: str | None) -> Iterator[None]:
        """A CONSUMER span around an event step's handler, a child of the emit."""
        parent = _PROPAGATOR.extract({"traceparent": trace_parent}) if trace_parent else None
        attributes = {
            "messaging.system": "surge",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "surge.step": step,
        }
        with self._tracer.start_as_current_span(
            f"{step} process {topic}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ):
            yield

    def current_span_id(self) -> str | None:
        """The current span's id, or None outside a valid span."""
        context = trace.get_current_span().get_span_context()
        return format(context.span_id, "016x") if context.is_valid else None

    def store_span(self, operation: str, stream: str, group: str) -> Any:
        """A CLIENT span for a storage operation, only inside a trace (a join's sync outside
        any request makes none)."""
        if not trace.get_current_span().get_span_context().is_valid:
            return contextlib.nullcontext()
        return self._tracer.start_as_current_span(
            f"surge.store.{operation}",
            kind=SpanKind.CLIENT,
            attributes={"surge.stream": stream, "surge.group": group},
        )


class _TracedAdapter:
    """The storage adapter with a span per operation done inside a trace."""

    def __init__(self, inner: StreamAdapter, tracer: OtelTracer) -> None:
        self.inner = inner
        self.is_distributed = inner.is_distributed
        self._tracer = tracer

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in _STORE_OPERATIONS:
            return attr
        tracer = self._tracer

        async def traced(stream: str, group: str = "", *args: Any, **kwargs: Any) -> Any:
            with tracer.store_span(name, stream, group):
                return await attr(stream, group, *args, **kwargs)

        return traced

    async def open(self, sink: Any) -> None:
        await self.inner.open(sink)

    async def close(self) -> None:
        await self.inner.close()


def _provider_from_env() -> tuple[trace.TracerProvider, bool]:
    """The application's provider if it set one, else one built from ``OTEL_*`` (owned: True).

    Raises:
        ConfigError: ``OTEL_TRACES_EXPORTER`` names an exporter this extra does not ship.
    """
    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        return current, False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create(
        {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "surge"}
    )
    provider = TracerProvider(resource=resource)  # the sampler: OTEL_TRACES_SAMPLER
    for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(","):
        name = name.strip().lower()
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name not in ("", "none"):
            raise ConfigError(f"OTEL_TRACES_EXPORTER={name!r}: Surge ships 'otlp' and 'console'")
    return provider, True


class OtelPlugin:
    """Traces one app (see the module docstring); ``tracer_provider`` overrides the
    environment's (tests pass an SDK provider with an in-memory exporter)."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._given = tracer_provider

    def install(self, app: SurgeApp) -> None:
        """Wrap the storage, and run the tracer hook while the app runs."""
        if self._given is not None:
            provider, owned = self._given, False
        else:
            provider, owned = _provider_from_env()
        tracer = OtelTracer(provider)
        runtime = app.runtime
        runtime.wrap_adapter(lambda adapter: cast(StreamAdapter, _TracedAdapter(adapter, tracer)))

        async def hook() -> None:
            tracing.install(tracer)
            try:
                await asyncio.Event().wait()  # until the app stops
            finally:
                tracing.uninstall(tracer)
                shutdown = getattr(provider, "shutdown", None)
                if owned and shutdown is not None:
                    shutdown()  # exports the last requests' spans, stops the export thread

        runtime.extensions.services.append(("tracing", hook))
