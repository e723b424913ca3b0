"""Project configuration: what ``surge.config.py`` exports as ``config``.

```python
config = Config(
    stream_auth=StreamAuth(context_schema=AuthContext, authenticate=authenticate),
    adapters=Adapters(streams=FileStreamAdapter(".surge/streams")),
)
```
Every field is optional; ``Config()`` is the default project (file storage, no auth, open CORS).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from surge.errors import ConfigError

if TYPE_CHECKING:
    from surge.queues.base import MessageQueue
    from surge.server.auth import AuthRequest
    from surge.state.base import StateStore
    from surge.streams.adapter import StreamAdapter

__all__ = ["Adapters", "Config", "EventSettings", "Limits", "PresenceSettings", "StreamAuth"]

MAX_WRITE_DELAY = 0.1
"""The longest ``Limits.max_write_delay`` accepted, seconds: beyond it the delay is visible."""

Authenticate = Callable[["AuthRequest"], Any | Awaitable[Any]]


@dataclass(frozen=True, kw_only=True)
class StreamAuth:
    """How WebSocket connections are authenticated.

    ``authenticate(request)`` runs once per connection during the upgrade and returns the auth
    context (validated against ``context_schema`` when given), None for an anonymous connection,
    or raises to refuse the upgrade with HTTP 401.
    """

    authenticate: Authenticate
    context_schema: Any = None


@dataclass(frozen=True, kw_only=True)
class Adapters:
    """Pluggable backends; ``streams`` defaults to the durable file store.

    ``queue`` (event steps' messages) and ``state`` (``ctx.state``) default to the same kind of
    store as the streams: SQLite files under ``.surge/``, or Redis when the streams are on Redis.
    """

    streams: StreamAdapter | None = None
    queue: MessageQueue | None = None
    state: StateStore | None = None


@dataclass(frozen=True, kw_only=True)
class Limits:
    """What one client may cost the server, in bytes and in time (README: "Limits").

    WebSocket connections:
        max_frame_bytes: largest client frame (bigger: close 1009).
        max_subscriptions: live subscriptions per connection (more: ``TOO_MANY_SUBSCRIPTIONS``).
        max_errors: malformed frames before the connection is closed with 1008.
        outbox_capacity: frames queued for one connection.
        max_outbound_bytes: bytes queued for one connection, its transport's write buffer
            included (pongs and closes too). Over either cap the slow-consumer policy applies at
            once: queued frames are dropped and the connection is closed with 1013; a sync that
            alone is larger is refused with ``SYNC_TOO_LARGE``.
        close_timeout: a peer that does not take the close within this time is dropped.
        slow_consumer: the slow-consumer policy of streams that do not choose one
            (``StreamConfig.slow_consumer``): ``"resync"`` (above) or ``"latest"``: first
            collapse the queued changes of each item of those streams into the newest, and
            apply ``"resync"`` only when that does not free enough (README: "Slow consumers").
        max_write_delay: under a sustained stream of changes, the longest a frame waits so that
            the changes made meanwhile leave in the same write, seconds (0: every change is
            written at the end of its event-loop iteration). The next write to the sockets
            waits as long as the previous one took, up to this: a handler awaiting one ``set``
            after another then costs a fraction of the CPU per delivery (README: "Write
            coalescing"). A change after a quieter period is written at once, by its ``set``.
        parallel_writes: write the sockets of a fan-out to many connections (32 or more) on
            two threads, the event loop's and a helper's, so the system calls run on two cores
            (README: "Parallel writes"): for a server with a core to spare. Even when True, only
            while the process may use more CPUs than ``surge start --workers`` runs workers.
        access_check_timeout: how long ``can_access`` may take before the join is denied.
        compression: permessage-deflate (off: see the README).

    Rate limits of one WebSocket connection (token buckets: ``*_per_second`` refills, ``*_burst``
    is what may arrive at once; None turns that limit off). The defaults let a client re-send
    ``max_subscriptions`` joins at once when it reconnects. A frame over a limit is dropped;
    the first one gets a ``RATE_LIMITED`` error event (a join over the join limit gets it each
    time, addressed like the join), and a client that sends ``rate_limit_strikes`` more within
    ``RATE_LIMIT_STRIKE_WINDOW`` seconds (``surge.server.ratelimit``) is closed with 4029:
        frames_per_second, frame_burst: client frames of any kind.
        joins_per_second, join_burst: joins (a join counts as a frame too).
        bytes_in_per_second, bytes_in_burst: UTF-8 bytes of client frames (the burst must hold
            at least one ``max_frame_bytes`` frame).
        rate_limit_strikes: frames over a limit, after the first, before the close.

    Upgrades, per client IP address (``scope["client"]``; behind a proxy, let the server take
    the address from ``X-Forwarded-For``, e.g. uvicorn's ``--forwarded-allow-ips``):
        connects_per_ip_per_second, connect_burst_per_ip: WebSocket upgrade attempts; over it the
            upgrade gets HTTP 429 with ``Retry-After`` before any ``authenticate``.
        max_tracked_ips: addresses remembered (least recently seen forgotten first), so the
            table's memory is bounded.
        connect_limit_exempt: networks never limited (default: loopback, where a local proxy
            or health checker connects from).

    HTTP (and the upgrade request):
        max_header_bytes: request line plus headers (more: 431 and the connection is closed).
        header_timeout: a request's head must arrive within this time (slowloris: 408, closed).
        max_body_bytes: request body (more: 413).
        body_timeout: longest wait for the next piece of a body (then 408).
        keep_alive_timeout: an idle keep-alive connection is closed after this time.
        max_connections: open connections (HTTP and WebSocket); beyond it new HTTP requests get
            503. None: the process's file-descriptor limit less a reserve.
    """

    max_frame_bytes: int = 64 * 1024
    max_subscriptions: int = 256
    max_errors: int = 16
    outbox_capacity: int = 4096
    max_outbound_bytes: int = 4 * 1024 * 1024
    close_timeout: float = 5.0
    slow_consumer: Literal["resync", "latest"] = "resync"
    # 40 ms: a sequential producer on the file store comes within 1.3 - 1.4x of the memory
    # store's deliveries (2.3x behind at 5 ms), fan-out +16 - 34%; at 200 changes/s to 1,000
    # subscribers p99 rises 24 -> 31 ms (bench/README.md, fifth session: "write coalescing").
    max_write_delay: float = 0.04
    # Off: on the 2-core bench machine, with a load generator busy on the other core, fan-out
    # is 0.91x and p99 1.23x; with that core idle, p99 at 1,000 subscribers is 0.70x, for 9%
    # more CPU per delivery (bench/README.md, seventh session: "parallel writes").
    parallel_writes: bool = False
    access_check_timeout: float = 10.0
    # permessage-deflate costs CPU and ~10s of KB per connection for little gain on small JSON
    # frames, and rules out writing one pre-built frame to every connection: off by default.
    compression: bool = False
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    max_body_bytes: int = 1024 * 1024
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_connections: int | None = None
    frames_per_second: float | None = 100.0
    frame_burst: int = 500
    joins_per_second: float | None = 50.0
    join_burst: int = 300
    bytes_in_per_second: float | None = 256 * 1024
    bytes_in_burst: int = 1024 * 1024
    rate_limit_strikes: int = 32
    connects_per_ip_per_second: float | None = 20.0
    connect_burst_per_ip: int = 200
    max_tracked_ips: int = 10_000
    connect_limit_exempt: Sequence[str] = ("127.0.0.0/8", "::1/128")

    def __post_init__(self) -> None:
        for name in (
            "frames_per_second",
            "joins_per_second",
            "bytes_in_per_second",
            "connects_per_ip_per_second",
        ):
            rate = getattr(self, name)
            if rate is not None and not (isinstance(rate, (int, float)) and rate > 0):
                raise ConfigError(f"Limits.{name} must be a positive number or None, not {rate!r}")
        for name in (
            "frame_burst",
            "join_burst",
            "bytes_in_burst",
            "rate_limit_strikes",
            "connect_burst_per_ip",
            "max_tracked_ips",
        ):
            count = getattr(self, name)
            if not (isinstance(count, int) and count >= 1):
                raise ConfigError(f"Limits.{name} must be a positive integer, not {count!r}")
        if self.bytes_in_per_second is not None and self.bytes_in_burst < self.max_frame_bytes:
            raise ConfigError(
                f"Limits.bytes_in_burst ({self.bytes_in_burst}) must be at least "
                f"max_frame_bytes ({self.max_frame_bytes}), or no full-size frame could pass"
            )
        if not (
            isinstance(self.max_write_delay, (int, float))
            and not isinstance(self.max_write_delay, bool)
            and 0 <= self.max_write_delay <= MAX_WRITE_DELAY
        ):
            raise ConfigError(
                f"Limits.max_write_delay must be a number of seconds from 0 to "
                f"{MAX_WRITE_DELAY}, not {self.max_write_delay!r}"
            )
        if not isinstance(self.parallel_writes, bool):
            raise ConfigError(
                f"Limits.parallel_writes must be True or False, not {self.parallel_writes!r}"
            )
        if isinstance(self.connect_limit_exempt, str):
            raise ConfigError("Limits.connect_limit_exempt must be a list of networks, not a str")
        for network in self.connect_limit_exempt:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ConfigError(f"Limits.connect_limit_exempt: {exc}") from exc


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything a project may configure."""

    stream_auth: StreamAuth | None = None
    adapters: Adapters = field(default_factory=Adapters)
    cors_origins: Sequence[str] = ("*",)
    # WebSocket upgrades from other origins are refused when set (cross-site hijacking defence).
    allowed_origins: Sequence[str] | None = None
    limits: Limits = field(default_factory=Limits)
    # Host names (besides localhost and loopback addresses) under which `surge dev` hands out the
    # Workbench's key, e.g. a dev VM's name; see the Workbench section of the README.
    workbench_hosts: Sequence[str] = ()
    # App resources: an async context manager factory (e.g. an @asynccontextmanager function)
    # entered once at startup, after the storage opens, and left at shutdown, after the last
    # handler finished; what it yields (a pool, a client, a dict of them) is `ctx.resources`.
    lifespan: Callable[[], AbstractAsyncContextManager[Any]] | None = None
    # Serve the API steps' OpenAPI 3.1 document at /openapi.json and a docs page at /docs.
    # `surge dev` always does; `surge start` only when this is True.
    openapi: bool = False
    # Middleware around every API handler, before each step's own: `async def mw(req, ctx, next)`
    # (Motia's form; see surge.steps.middleware).
    middleware: Sequence[Callable[..., Awaitable[Any]]] = ()
    # Serve Prometheus metrics at /metrics (`surge dev` always does; SURGE_METRICS=1 also turns
    # them on for `surge start`).
    metrics: bool = False
    # Serve them on this port instead of the app's (`--metrics-port`, SURGE_METRICS_PORT; turns
    # metrics on), bound to metrics_host (None: the app's host). With `--workers N` the workers
    # take metrics_port .. metrics_port + N - 1, one each.
    metrics_port: int | None = None
    metrics_host: str | None = None
    # "plain" lines or "json" (one object per line) for `surge start` and `surge dev`;
    # `--log-format` and SURGE_LOG_FORMAT win over it.
    log_format: str = "plain"
    # OpenTelemetry traces (pip install 'surge[otel]'), exported as the OTEL_* variables say;
    # those variables alone (an OTLP endpoint, OTEL_TRACES_EXPORTER) also turn them on.
    tracing: bool = False
    events: EventSettings = field(default_factory=lambda: EventSettings())
    presence: PresenceSettings = field(default_factory=lambda: PresenceSettings())


@dataclass(frozen=True, kw_only=True)
class EventSettings:
    """How event and cron steps run (per-step settings live in each step's config).

    retry_delay: seconds before the first retry of a failed handler; each retry doubles it
        (with +-10 % jitter), up to ``max_retry_delay``.
    shutdown_grace: on shutdown, running handlers get this long to finish; then they are
        cancelled and their messages stay queued (delivered again after the restart).
    """

    retry_delay: float = 1.0
    max_retry_delay: float = 300.0
    shutdown_grace: float = 10.0


@dataclass(frozen=True, kw_only=True)
class PresenceSettings:
    """How presence (``StreamConfig(presence=True)``) is kept across instances.

    timeout: when an instance dies without a goodbye (``kill -9``, a lost host), its members
        are removed, and their leaves announced, at most this many seconds after its last
        heartbeat (Redis; a single process has nothing to time out). Heartbeats cost one small
        Redis call every ``timeout / 3`` seconds or so per instance.
    """

    timeout: float = 15.0

    def __post_init__(self) -> None:
        t = self.timeout
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 1:
            raise ConfigError(f"PresenceSettings.timeout must be at least 1 second, got {t!r}")
