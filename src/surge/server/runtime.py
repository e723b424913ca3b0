"""The running app's shared state: config, registry (swappable), storage, hub, streams facade."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from surge.config import Config
from surge.server.hub import Hub
from surge.server.outbox import Flusher
from surge.server.plugins import ServerExtensions
from surge.server.sync import Syncer
from surge.steps.registry import Registry
from surge.streams.adapter import StreamAdapter
from surge.streams.schema import Schema, schema_from
from surge.streams.stream import Stream, Streams

if TYPE_CHECKING:
    from surge.server.connection import Connection

__all__ = ["Runtime"]

logger = logging.getLogger(__name__)


class Runtime:
    """Everything requests and connections share; ``swap_registry`` is the hot-reload point."""

    def __init__(self, config: Config, registry: Registry, adapter: StreamAdapter) -> None:
        self.config = config
        self.adapter = adapter
        auth = config.stream_auth
        self.auth_context_schema: Schema | None = (
            schema_from(auth.context_schema, what="stream_auth.context_schema") if auth else None
        )
        self.hub = Hub()
        self.syncer = Syncer(self.hub, adapter)
        self.flusher = Flusher()
        self.connections: set[Connection] = set()
        self.extensions = ServerExtensions()
        """What plugins registered (``surge.server.plugins``); filled before the app serves."""
        self.registry = registry
        self.streams = self._build_streams(registry)

    def _build_streams(self, registry: Registry) -> Streams:
        ext = self.extensions
        observe = ext.observe if ext.value_observers else None
        return Streams(
            {name: Stream(cfg, self.adapter, observe) for name, cfg in registry.streams.items()}
        )

    async def run_resyncs(self) -> None:
        """Long-lived (lifespan) task: fresh syncs after a feed gap (``Syncer.run``)."""
        await self.syncer.run()

    def swap_registry(self, registry: Registry) -> None:
        """Replace streams and routes at once (requests in flight keep the old ones).

        The plugins' registry filters apply to ``registry`` first.
        """
        registry = self.extensions.filter_registry(registry)
        streams = self._build_streams(registry)
        self.registry, self.streams = registry, streams
        logger.info(
            "loaded %d stream(s) and %d API step(s)", len(registry.streams), len(registry.routes)
        )
