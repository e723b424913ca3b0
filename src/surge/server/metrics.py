"""Prometheus metrics at ``GET /metrics``, exposed by ``prometheus_client`` (not by hand).

What is counted where: the hot paths (fan-out writes, overflows, re-syncs, connection opens and
closes) bump plain integers (``surge.server.stats``), and a collector turns them, the hub's
tables and the sync cache into metric families when ``/metrics`` is read, so metrics cost the
fan-out nothing but integer additions. HTTP requests (by step and status, with a latency
histogram) and background work (deliveries by step and outcome) are observed through the
server's extension points. Label values are bounded: step and stream names come from the
project's files, close codes outside the known set are ``other``; never a label per group, per
connection or per user.

Per process: with ``surge start --workers N`` each worker serves its own numbers (scrape each,
or aggregate over the instances behind the load balancer).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from surge.protocol.codes import CloseCode
from surge.server.asgi import route_path
from surge.server.plugins import HttpRoute
from surge.server.stats import STATS

if TYPE_CHECKING:
    from surge.server.app import SurgeApp
    from surge.server.runtime import Runtime

__all__ = ["METRICS_PATH", "MetricsPlugin"]

METRICS_PATH = "/metrics"
_KNOWN_CODES = frozenset(int(code) for code in CloseCode)
_OUTCOMES = ("published", "started", "retried", "done", "dead")


class _ServerCollector:
    """Reads the counters and tables of one runtime when scraped."""

    def __init__(self, runtime: Runtime, deliveries: Counter[tuple[str, str]]) -> None:
        self.runtime = runtime
        self.deliveries = deliveries

    def collect(self) -> Iterator[Metric]:
        runtime = self.runtime
        stats = STATS
        yield GaugeMetricFamily(
            "surge_connections", "Open WebSocket connections.", value=len(runtime.connections)
        )
        yield CounterMetricFamily(
            "surge_connections_opened", "WebSocket connections accepted.", stats.connections_opened
        )
        closed = CounterMetricFamily(
            "surge_connections_closed",
            "WebSocket connections closed, by close code.",
            labels=["code"],
        )
        by_code: Counter[str] = Counter()
        for code, count in stats.closed_by_code.items():
            by_code[str(code) if code in _KNOWN_CODES else "other"] += count
        for label, total in sorted(by_code.items()):
            closed.add_metric([label], total)
        yield closed
        subs = GaugeMetricFamily(
            "surge_subscriptions", "Subscriptions (live or syncing), by stream.", labels=["stream"]
        )
        for stream, count in sorted(runtime.hub.subscriptions_by_stream().items()):
            subs.add_metric([stream], count)
        yield subs
        yield CounterMetricFamily(
            "surge_frames_sent", "Frames written to sockets.", stats.frames_sent
        )
        yield CounterMetricFamily(
            "surge_bytes_sent", "Frame bytes written to sockets.", stats.bytes_sent
        )
        yield CounterMetricFamily(
            "surge_socket_writes", "Socket writes (frames are coalesced per write).", stats.writes
        )
        yield CounterMetricFamily(
            "surge_frames_encoded",
            "Changes and events encoded (once each).",
            runtime.hub.frames_encoded,
        )
        yield CounterMetricFamily(
            "surge_outbox_overflows", "Slow consumers closed with 1013.", stats.overflows
        )
        yield CounterMetricFamily(
            "surge_resyncs", "Subscriptions re-synced after a storage feed gap.", stats.resyncs
        )
        cache = runtime.hub.sync_cache
        syncs = CounterMetricFamily(
            "surge_syncs", "Join syncs, by whether the encoded sync was shared.", labels=["cache"]
        )
        syncs.add_metric(["hit"], cache.hits)
        syncs.add_metric(["miss"], cache.misses)
        yield syncs
        events = CounterMetricFamily(
            "surge_event_deliveries",
            "Event step messages, by step and outcome (this process).",
            labels=["step", "outcome"],
        )
        for (step, outcome), count in sorted(self.deliveries.items()):
            events.add_metric([step, outcome], count)
        yield events


class MetricsPlugin:
    """Serves ``/metrics`` for one app (a project's own route at that path wins)."""

    def install(self, app: SurgeApp) -> None:
        """Register the collector, the HTTP and delivery observers and the route."""
        runtime = app.runtime
        registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)  # RSS, CPU, open fds of this process
        deliveries: Counter[tuple[str, str]] = Counter()
        registry.register(_ServerCollector(runtime, deliveries))
        requests = Histogram(
            "surge_http_request_seconds",
            "API step requests, by step and status.",
            ["step", "status"],
            registry=registry,
        )

        def observe_request(step: str, status: int, seconds: float) -> None:
            requests.labels(step, str(status)).observe(seconds)

        def observe_delivery(event: Any) -> None:
            outcome = getattr(event, "kind", None)
            step = getattr(event, "step", None)
            if outcome in _OUTCOMES and isinstance(step, str):
                deliveries[(step, outcome)] += 1

        runtime.extensions.request_observers.append(observe_request)
        observers = getattr(app.background, "observers", None)
        if observers is not None:
            observers.append(observe_delivery)

        async def serve(scope: Scope, receive: Receive, send: Send) -> None:
            body = generate_latest(registry)
            await Response(body, headers={"content-type": CONTENT_TYPE_LATEST})(
                scope, receive, send
            )

        def claims(scope: Scope) -> bool:
            path = route_path(scope)
            return path == METRICS_PATH and runtime.registry.match("GET", path) is None

        runtime.extensions.routes.append(HttpRoute(claims, serve))
