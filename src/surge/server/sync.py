"""Syncs: the answer to a join, and fresh syncs for every subscription after a feed gap.

``Syncer.sync`` sends the sync of one pending hub subscription and makes it live. The encoded
sync comes from the hub's ``SyncCache`` (one snapshot read and one encode per key until the key
changes); a sync larger than its connection's byte cap is refused, never queued.

``Syncer.run`` is a long-lived task owned by the app's lifespan: when the storage feed reports a
gap (``Resync``), the hub puts every live subscription back into pending and hands them here; one
snapshot per key serves every subscription of that key, and a storage failure is retried with
backoff while the subscriptions stay pending (bounded: the hub drops a connection whose backlog
outgrows its outbox).
"""

from __future__ import annotations

import asyncio
import logging

from surge.errors import StoreError
from surge.protocol.codec import Frame, encode_group_sync, encode_item_sync
from surge.protocol.codes import STORE_UNAVAILABLE, SYNC_TOO_LARGE
from surge.protocol.messages import SubscriptionKey, SubscriptionRequest
from surge.server.hub import Hub, HubSubscription
from surge.server.stats import STATS
from surge.server.sync_cache import CachedSync
from surge.streams.adapter import StreamAdapter
from surge.streams.feed import GroupSnapshot

__all__ = ["Syncer", "encode_sync"]

logger = logging.getLogger(__name__)


def encode_sync(request: SubscriptionRequest, snapshot: GroupSnapshot, ts: int) -> Frame:
    """The sync frame answering ``request`` from ``snapshot``."""
    if request.id is None:
        return encode_group_sync(request.stream, request.group, snapshot.items, ts)
    item = snapshot.items[0] if snapshot.items else None
    return encode_item_sync(request.stream, request.group, request.id, item, ts)


class Syncer:
    """Sends syncs for one hub from one storage adapter."""

    def __init__(self, hub: Hub, adapter: StreamAdapter) -> None:
        self.hub = hub
        self.adapter = adapter
        self._resyncs: asyncio.Queue[list[HubSubscription]] = asyncio.Queue()
        hub.on_resync = self._queue_resync

    async def snapshot(self, key: SubscriptionKey) -> GroupSnapshot:
        """Read the group (or the one item) of ``key`` with its ``seq``."""
        if len(key) == 2:
            return await self.adapter.get_group(key[0], key[1])
        return await self.adapter.get_item_snapshot(key[0], key[1], key[2])

    async def sync(self, sub: HubSubscription, snapshot: GroupSnapshot | None = None) -> str | None:
        """Send the sync of the pending ``sub`` and make it live.

        Returns:
            None once the sync is queued; else the wire error code (``STORE_UNAVAILABLE`` when
            the storage failed, ``SYNC_TOO_LARGE`` when the sync alone exceeds the connection's
            byte cap), and the subscription is left pending for the caller.
        """
        request = sub.request
        hub = self.hub

        async def load() -> CachedSync:
            read = await self.snapshot(request.key)
            return encode_sync(request, read, hub.clock.next()), read.seq

        try:
            if snapshot is None:
                sync, seq = await hub.sync_cache.get(request.key, load)
            else:
                sync, seq = encode_sync(request, snapshot, hub.clock.next()), snapshot.seq
        except StoreError as exc:
            logger.error("sync of %s failed: %s", request.key, exc)
            return STORE_UNAVAILABLE
        if sync.size > sub.conn.max_sync_bytes:
            return SYNC_TOO_LARGE
        # Stamped now: a cached sync is older than what the client may have seen before.
        hub.activate(sub, sync.restamped(hub.clock.next()), seq)
        return None

    def _queue_resync(self, subs: list[HubSubscription]) -> None:
        logger.warning("stream feed was interrupted: re-syncing %d subscription(s)", len(subs))
        STATS.resyncs += len(subs)
        self._resyncs.put_nowait(subs)

    async def run(self) -> None:
        """The lifespan's re-sync task (see the module docstring)."""
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
                        snapshot = await self.snapshot(key)
                    except StoreError as exc:
                        logger.warning("re-sync of %s failed, retrying: %s", key, exc)
                        failed.extend(group)
                        continue
                    for sub in group:
                        if await self.sync(sub, snapshot) is not None:
                            # Too large for its connection: the slow-consumer policy applies.
                            sub.conn.drop_slow()
                subs = failed
                if subs:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
