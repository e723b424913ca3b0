"""The running app's shared state: config, registry (swappable), storage, hub, streams facade."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from surge.config import Config, Limits
from surge.server.access_control import AccessControl
from surge.server.hub import Hub
from surge.server.outbox import Flusher
from surge.server.plugins import ServerExtensions
from surge.server.presence import PresenceTracker
from surge.server.ratelimit import UpgradeLimiter
from surge.server.sync import Syncer
from surge.server.write_batch import WriteBatch, usable_cpus
from surge.steps.registry import Registry
from surge.streams.adapter import StreamAdapter
from surge.streams.presence import LocalPresence, PresenceBackend
from surge.streams.schema import Schema, schema_from
from surge.streams.stream import Stream, Streams

if TYPE_CHECKING:
    from surge.server.connection import Connection

__all__ = ["Runtime"]

logger = logging.getLogger(__name__)


class Runtime:
    """Everything requests and connections share; ``swap_registry`` and ``swap_config`` (dev
    reload) are its only mutators."""

    def __init__(self, config: Config, registry: Registry, adapter: StreamAdapter) -> None:
        self.adapter = adapter
        self.config = config
        self.auth_context_schema = _auth_schema(config)
        self.hub = Hub()
        self.syncer = Syncer(self.hub, adapter, self._sync_limit)
        self.write_batch = WriteBatch(enabled=_parallel_writes(config.limits, workers=1))
        """Shares each large fan-out's socket writes with a helper thread (``write_batch``)."""
        self.flusher = Flusher(config.limits.max_write_delay, batch=self.write_batch)
        self.hub.call_after_writes = self.flusher.call_after_flush
        self.hub.flusher = self.flusher
        self.connections: set[Connection] = set()
        self.upgrade_limiter = UpgradeLimiter.for_limits(config.limits)
        """Upgrade attempts per client address (``Limits.connects_per_ip_per_second``)."""
        self.access = AccessControl(self)
        """Token expiry, ``streams.reauthorize`` and ``streams.revoke``."""
        self.extensions: ServerExtensions = ServerExtensions()
        """What plugins registered (``surge.server.plugins``); filled before the app serves."""
        self.registry = registry
        self.presence = PresenceTracker(
            _presence_backend(adapter, config, self.hub), lambda: self.registry, self.hub.clock
        )
        """Who subscribes to the groups of ``presence=True`` streams (``surge.server.presence``)."""
        self.hub.presence = self.presence
        self.streams = self._build_streams(registry)
        self.latest_value_streams: set[str] = set()
        """Streams under the latest-value slow-consumer policy; every outbox holds this set
        (updated in place when the registry is swapped)."""
        self._update_policies(registry)

    def _update_policies(self, registry: Registry) -> None:
        default = self.config.limits.slow_consumer
        latest = {
            name
            for name, cfg in registry.streams.items()
            if (cfg.slow_consumer or default) == "latest"
        }
        self.latest_value_streams.intersection_update(latest)
        self.latest_value_streams.update(latest)

    def _build_streams(self, registry: Registry) -> Streams:
        ext = self.extensions
        observe = ext.observe if ext.value_observers else None
        return Streams(
            {
                name: Stream(cfg, self.adapter, observe, self.presence)
                for name, cfg in registry.streams.items()
            },
            self.access,
        )

    def wrap_adapter(self, wrap: Callable[[StreamAdapter], StreamAdapter]) -> None:
        """Put ``wrap(adapter)`` (e.g. ``TimedAdapter``) in front of the storage for every user
        of it: the streams facade, the syncer and the lifespan. Before the app serves only."""
        self.adapter = wrap(self.adapter)
        self.syncer.adapter = self.adapter
        self.streams = self._build_streams(self.registry)

    def _sync_limit(self, stream: str) -> int | None:
        """The ``StreamConfig.sync_limit`` of ``stream`` in the current registry."""
        config = self.registry.streams.get(stream)
        return None if config is None else config.sync_limit

    async def run_resyncs(self) -> None:
        """Long-lived (lifespan) task: fresh syncs after a feed gap (``Syncer.run``)."""
        await self.syncer.run()

    def set_workers(self, workers: int) -> None:
        """``surge start --workers N`` runs this process as one of ``workers``: with
        ``Limits.parallel_writes``, write on two threads only with CPUs to spare."""
        self.write_batch.enabled = _parallel_writes(self.config.limits, workers=workers)

    def close(self) -> None:
        """Stop the socket-write helper thread (the lifespan's end); idempotent."""
        self.write_batch.close()

    def swap_config(self, config: Config) -> None:
        """Take a reloaded surge.config.py (``surge dev``): new upgrades use its stream auth and
        origins; the caller keeps what cannot change live (storage, limits)."""
        schema = _auth_schema(config)
        self.config, self.auth_context_schema = config, schema

    def swap_registry(self, registry: Registry) -> None:
        """Replace streams and routes at once (requests in flight keep the old ones).

        The plugins' registry filters apply to ``registry`` first.
        """
        registry = self.extensions.filter_registry(registry)
        streams = self._build_streams(registry)
        self.registry, self.streams = registry, streams
        self._update_policies(registry)
        self.presence.registry_changed(registry)
        # Cached syncs were windowed by the old configs' sync_limit.
        self.hub.sync_cache.clear()
        logger.info(
            "loaded %d stream(s) and %d API step(s)", len(registry.streams), len(registry.routes)
        )


def _parallel_writes(limits: Limits, *, workers: int) -> bool:
    """``Limits.parallel_writes``, and only while this process may run on more CPUs than there
    are workers to keep them busy."""
    return limits.parallel_writes and usable_cpus() > workers


def _presence_backend(adapter: StreamAdapter, config: Config, hub: Hub) -> PresenceBackend:
    """The adapter's own presence registry when it has one (Redis), else this process's."""
    make = getattr(adapter, "presence_backend", None)
    if make is not None:
        backend: PresenceBackend = make(config.presence.timeout)
        return backend
    return LocalPresence(hub.dispatch)


def _auth_schema(config: Config) -> Schema | None:
    auth = config.stream_auth
    return schema_from(auth.context_schema, what="stream_auth.context_schema") if auth else None
