"""The running app's shared state: config, registry (swappable), storage, hub, streams facade."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from surge.config import Config
from surge.errors import StoreError
from surge.protocol.messages import SubscriptionKey
from surge.server.hub import Hub, HubSubscription
from surge.server.outbox import Flusher
from surge.steps.registry import Registry
from surge.streams.adapter import StreamAdapter
from surge.streams.feed import GroupSnapshot
from surge.streams.schema import Schema, schema_from
from surge.streams.stream import Stream, Streams

if TYPE_CHECKING:
    from surge.server.websocket import Connection

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
        self.hub = Hub(on_resync=self._queue_resync)
        self.flusher = Flusher()
        self._resyncs: asyncio.Queue[list[HubSubscription]] = asyncio.Queue()
        self.connections: set[Connection] = set()
        self.registry = registry
        self.streams = self._build_streams(registry)

    def _build_streams(self, registry: Registry) -> Streams:
        return Streams({name: Stream(cfg, self.adapter) for name, cfg in registry.streams.items()})

    def _queue_resync(self, subs: list[HubSubscription]) -> None:
        logger.warning("stream feed was interrupted: re-syncing %d subscription(s)", len(subs))
        self._resyncs.put_nowait(subs)

    async def run_resyncs(self) -> None:
        """Long-lived (lifespan) task: send fresh syncs to subscriptions after a feed gap.

        One snapshot per key serves every subscription of that key; a storage failure is
        retried with backoff while the subscriptions stay pending (bounded by their outboxes).
        """
        from surge.server.websocket import sync_subscription

        while True:
            subs = await self._resyncs.get()
            delay = 0.1
            while subs:
                by_key: dict[SubscriptionKey, list[HubSubscription]] = {}
                for sub in subs:
                    if not sub.is_removed:
                        by_key.setdefault(sub.request.key, []).append(sub)
                failed: list[HubSubscription] = []
                for key, group in by_key.items():
                    try:
                        snapshot = await self._snapshot(key)
                    except StoreError as exc:
                        logger.warning("re-sync of %s failed, retrying: %s", key, exc)
                        failed.extend(group)
                        continue
                    for sub in group:
                        if await sync_subscription(self, sub, snapshot) is not None:
                            # Too large for its connection: the slow-consumer policy applies.
                            sub.conn.outbox.overflow()
                subs = failed
                if subs:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

    async def _snapshot(self, key: SubscriptionKey) -> GroupSnapshot:
        if len(key) == 2:
            return await self.adapter.get_group(key[0], key[1])
        return await self.adapter.get_item_snapshot(key[0], key[1], key[2])

    def swap_registry(self, registry: Registry) -> None:
        """Replace streams and routes at once (requests in flight keep the old ones)."""
        streams = self._build_streams(registry)
        self.registry, self.streams = registry, streams
        logger.info(
            "loaded %d stream(s) and %d API step(s)", len(registry.streams), len(registry.routes)
        )
