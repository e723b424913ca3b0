"""Prometheus metrics at ``GET /metrics``, exposed by ``prometheus_client`` (not by hand).

What is counted where: the hot paths (fan-out writes, overflows, re-syncs, resumes, rate-limit hits,
connection opens and closes) bump plain integers (``surge.server.stats``), and a collector turns
them, the hub's tables, presence's counts, the sync cache, the storage feed's reconnects and the
event queues' depths into metric families when ``/metrics`` is read, so metrics cost the fan-out
nothing but integer additions. Timed: API requests (by step and status), storage operations (by
store and operation: ``surge.streams.timed.TimedAdapter`` in front of the adapter) and fan-out
latency (one message in ``FANOUT_SAMPLE_EVERY``, from the hub receiving it to its frames written;
see ``Hub.on_fanout``). Background work (deliveries by step and outcome) is observed through the
delivery observers. Label values are bounded: step and stream names come from the project's files,
close codes outside the known set are ``other``, stores and operations are fixed sets; never a label
per group, per connection or per user.

Where: on the app port (a project route at ``/metrics`` wins), or only on a separate port
(``Config(metrics_port=...)``, ``--metrics-port``, ``$SURGE_METRICS_PORT``; bound to
``metrics_host``, default the app's host). Per process: with ``surge start --workers N`` each
worker serves its own numbers on its own port, ``port`` .. ``port + N - 1``
(``surge.server.metrics_port``); on the app port a scrape reaches whichever worker the kernel
picks, so use the metrics port with workers.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from surge.protocol.codes import CloseCode
from surge.server.asgi import route_path
from surge.server.metrics_port import bind_first_free, serve_metrics_port
from surge.server.metrics_settings import MetricsSettings, metrics_settings
from surge.server.plugins import HttpRoute
from surge.server.stats import STATS
from surge.streams.timed import TimedAdapter, store_kind

if TYPE_CHECKING:
    from surge.server.app import SurgeApp
    from surge.server.runtime import Runtime

__all__ = ["METRICS_PATH", "MetricsPlugin"]

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
_KNOWN_CODES = frozenset(int(code) for code in CloseCode)
_OUTCOMES = ("published", "started", "retried", "done", "dead")
_QUEUE_STATES = ("ready", "delayed", "in_flight", "dead")
_QUEUE_STATS_TIMEOUT_S = 2.0
# Storage operations take microseconds (memory) to milliseconds (Redis, fsync'd files).
_STORE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
_FANOUT_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip


class _ServerCollector:
    """Reads the counters and tables of one app when scraped."""

    def __init__(self, app: SurgeApp, deliveries: Counter[tuple[str, str]]) -> None:
        self.app = app
        self.deliveries = deliveries
        self.queues: dict[str, tuple[int, int, int, int]] = {}
        """Per event step: (ready, delayed, in flight, dead), refreshed before each scrape."""

    async def refresh(self) -> None:
        """Read the event queues' depths (async: they are storage reads)."""
        background = self.app.background
        depths: dict[str, tuple[int, int, int, int]] = {}
        for step in self.app.runtime.registry.events:
            name = step.config.name
            try:
                async with asyncio.timeout(_QUEUE_STATS_TIMEOUT_S):
                    stats = await background.queue.stats(name)
            except Exception as exc:  # a scrape must answer even when the queue cannot
                logger.debug("queue stats of %s unavailable: %s", name, exc)
                continue
            depths[name] = (stats.ready, stats.delayed, stats.in_flight, stats.dead)
        self.queues = depths

    def collect(self) -> Iterator[Metric]:
        runtime = self.app.runtime
        stats = STATS
        yield GaugeMetricFamily(
            "surge_ready",
            "1 while /readyz answers 200 (started, not draining, storage feed connected).",
            value=1 if self.app.readiness() is None else 0,
        )
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
        yield from _presence_metrics(runtime)
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
            "surge_outbox_collapsed",
            "Queued item changes a slow consumer skipped under the latest-value policy.",
            stats.collapsed,
        )
        yield CounterMetricFamily(
            "surge_resyncs", "Subscriptions re-synced after a storage feed gap.", stats.resyncs
        )
        yield CounterMetricFamily(
            "surge_resumes",
            "Subscriptions resumed from an offset (the changes since, not a fresh sync).",
            stats.resumes,
        )
        yield _counter_by(
            "surge_rate_limited",
            "Per-connection rate-limit hits, by limit.",
            "limit",
            stats.rate_limited,
        )
        reconnects = getattr(runtime.adapter, "feed_reconnects", None)
        if isinstance(reconnects, int):
            yield CounterMetricFamily(
                "surge_store_feed_reconnects",
                "Times the storage feed (Redis pub/sub) came back after a loss.",
                reconnects,
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
        queued = GaugeMetricFamily(
            "surge_queue_messages",
            "Messages in each event step's queue, by state (shared by every instance on Redis).",
            labels=["step", "state"],
        )
        for step, depths in sorted(self.queues.items()):
            for state, count in zip(_QUEUE_STATES, depths, strict=True):
                queued.add_metric([step, state], count)
        yield queued


def _counter_by(
    name: str, documentation: str, label: str, counts: Mapping[str, int]
) -> CounterMetricFamily:
    """A counter family with one sample per key of ``counts`` (a bounded set of labels)."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family


def _presence_metrics(runtime: Runtime) -> Iterator[Metric]:
    """What ``surge.server.presence`` keeps for this instance: every stream with presence on
    has its members series, 0 included (a dashboard shows none, not "no data")."""
    presence = runtime.presence
    counts = presence.members_by_stream()
    streams = {
        name for name, cfg in runtime.registry.streams.items() if getattr(cfg, "presence", False)
    }
    members = GaugeMetricFamily(
        "surge_presence_members",
        "Presence members this instance's subscriptions hold, by stream (tabs of one user count"
        " once per group).",
        labels=["stream"],
    )
    for stream in sorted(streams | counts.keys()):
        members.add_metric([stream], counts.get(stream, 0))
    yield members
    yield GaugeMetricFamily(
        "surge_presence_pending",
        "Presence joins and leaves not yet written to the backend (grows while storage is down).",
        value=presence.pending,
    )
    yield _counter_by(
        "surge_presence_writes",
        "Presence registrations this instance wrote to the backend, by operation.",
        "op",
        presence.writes,
    )
    yield CounterMetricFamily(
        "surge_presence_failures",
        "Presence backend calls that failed (each is retried with backoff).",
        presence.failures,
    )


class MetricsPlugin:
    """Serves ``/metrics`` for one app, on its port or on ``settings.port``."""

    def __init__(self, settings: MetricsSettings | None = None) -> None:
        self.settings = settings
        self.registry: CollectorRegistry | None = None
        """The app's registry (set by ``install``)."""

    def install(self, app: SurgeApp) -> None:
        """Register the collector, the observers, the timed storage and the route or port."""
        runtime = app.runtime
        settings = self.settings or metrics_settings(runtime.config, always=True)
        registry = CollectorRegistry(auto_describe=True)
        self.registry = registry
        ProcessCollector(registry=registry)  # RSS, CPU, open fds of this process
        deliveries: Counter[tuple[str, str]] = Counter()
        collector = _ServerCollector(app, deliveries)
        registry.register(collector)
        requests = Histogram(
            "surge_http_request_seconds",
            "API step requests, by step and status.",
            ["step", "status"],
            registry=registry,
        )
        store_ops = Histogram(
            "surge_store_operation_seconds",
            "Storage operations, by store and operation (failed ones included).",
            ["store", "operation"],
            registry=registry,
            buckets=_STORE_BUCKETS,
        )
        failures = PromCounter(
            "surge_store_errors",
            "Storage operations that raised, by store and operation.",
            ["store", "operation"],
            registry=registry,
        )
        fanout = Histogram(
            "surge_fanout_seconds",
            "From the hub receiving a change or event to its frames written to every writable "
            "subscriber (sampled: one message in 16).",
            registry=registry,
            buckets=_FANOUT_BUCKETS,
        )

        def observe_request(step: str, status: int, seconds: float) -> None:
            requests.labels(step, str(status)).observe(seconds)

        def observe_delivery(event: Any) -> None:
            outcome = getattr(event, "kind", None)
            step = getattr(event, "step", None)
            if outcome in _OUTCOMES and isinstance(step, str):
                deliveries[(step, outcome)] += 1

        kind = store_kind(runtime.adapter)
        timers: dict[str, Any] = {}
        errors: dict[str, Any] = {}

        def observe_store(operation: str, seconds: float, ok: bool) -> None:
            timer = timers.get(operation)
            if timer is None:
                timer = timers[operation] = store_ops.labels(kind, operation)
            timer.observe(seconds)
            if not ok:
                counter = errors.get(operation)
                if counter is None:
                    counter = errors[operation] = failures.labels(kind, operation)
                counter.inc()

        observe_fanout = fanout.observe
        perf_counter = time.perf_counter

        def fanned_out(start: float) -> None:
            observe_fanout(perf_counter() - start)

        runtime.extensions.request_observers.append(observe_request)
        observers = getattr(app.background, "observers", None)
        if observers is not None:
            observers.append(observe_delivery)
        runtime.wrap_adapter(lambda adapter: TimedAdapter(adapter, observe_store))
        runtime.hub.on_fanout = fanned_out

        async def render() -> tuple[bytes, str]:
            await collector.refresh()
            return generate_latest(registry), CONTENT_TYPE_LATEST

        if settings.port is not None:
            port = settings.port
            host = settings.host or "127.0.0.1"
            ports = range(port, min(port + settings.workers, 65536))

            async def listen() -> None:
                # During a `surge start` reload the old generation holds the ports until it
                # has drained: a port in use is tried again (the error is logged once).
                logged = False
                while True:
                    try:
                        sock = bind_first_free(host, ports)
                        break
                    except OSError as exc:
                        if not logged:
                            logger.error(
                                "cannot serve metrics on %s port %s: %s (trying again)",
                                host,
                                f"{ports.start}-{ports.stop - 1}"
                                if len(ports) > 1
                                else ports.start,
                                exc.strerror or exc,
                            )
                            logged = True
                        if exc.errno != errno.EADDRINUSE:
                            return
                        await asyncio.sleep(0.5)
                await serve_metrics_port(sock, render)

            runtime.extensions.services.append(("metrics port", listen))
            return

        async def serve(scope: Scope, receive: Receive, send: Send) -> None:
            body, content_type = await render()
            await Response(body, headers={"content-type": content_type})(scope, receive, send)

        def claims(scope: Scope) -> bool:
            path = route_path(scope)
            return path == METRICS_PATH and runtime.registry.match("GET", path) is None

        runtime.extensions.routes.append(HttpRoute(claims, serve))
