"""Syncs: the answer to a join, and fresh syncs for every subscription after a feed gap.

``Syncer.sync`` sends the sync of one pending hub subscription and makes it live. The encoded
sync comes from the hub's ``SyncCache`` (one snapshot read and one encode per key until the key
changes); a sync larger than its connection's byte cap is refused, never queued.

Windowed groups (protocol.md section 5): for a stream with ``StreamConfig(sync_limit=N)`` the
snapshot of a group key is its newest N items, and the sync carries ``more``. ``Syncer.page``
answers a ``page`` request: it reads the older items under a ``Hub.capture`` (so the page is
never older than what the connection was sent meanwhile) and sends them to the connection.

``Syncer.run`` is a long-lived task owned by the app's lifespan: when the storage feed reports a
gap (``Resync``), the hub puts every live subscription back into pending and hands them here; one
snapshot per key serves every subscription of that key, and a storage failure is retried with
backoff while the subscriptions stay pending (bounded: the hub drops a connection whose backlog
outgrows its outbox).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from surge.errors import StoreError, ValidationError
from surge.protocol.codec import Frame, encode_group_sync, encode_item_sync, encode_page
from surge.protocol.codes import INVALID_MESSAGE, STORE_UNAVAILABLE, SYNC_TOO_LARGE
from surge.protocol.messages import SubscriptionKey, SubscriptionRequest
from surge.server.hub import Hub, HubSubscription
from surge.server.stats import STATS
from surge.server.sync_cache import CachedSync
from surge.streams.adapter import StreamAdapter
from surge.streams.feed import GroupSnapshot

__all__ = ["DEFAULT_PAGE_LIMIT", "Syncer", "encode_sync"]

logger = logging.getLogger(__name__)

DEFAULT_PAGE_LIMIT = 50
"""Items per ``page`` answer when the request gives no ``limit`` and the stream no sync_limit."""


def encode_sync(request: SubscriptionRequest, snapshot: GroupSnapshot, ts: int) -> Frame:
    """The sync frame answering ``request`` from ``snapshot``."""
    if request.id is None:
        return encode_group_sync(
            request.stream, request.group, snapshot.items, ts, more=snapshot.more
        )
    item = snapshot.items[0] if snapshot.items else None
    return encode_item_sync(request.stream, request.group, request.id, item, ts)


class Syncer:
    """Sends syncs for one hub from one storage adapter."""

    def __init__(
        self,
        hub: Hub,
        adapter: StreamAdapter,
        sync_limit: Callable[[str], int | None] | None = None,
    ) -> None:
        self.hub = hub
        self.adapter = adapter
        self._resyncs: asyncio.Queue[list[HubSubscription]] = asyncio.Queue()
        hub.on_resync = self._queue_resync
        # The stream's StreamConfig.sync_limit (None: whole groups); looked up per sync so a
        # reloaded registry applies to the next join.
        self.sync_limit = sync_limit or (lambda stream: None)

    async def snapshot(self, key: SubscriptionKey) -> GroupSnapshot:
        """Read the group (its newest ``sync_limit`` items) or the one item of ``key``."""
        if len(key) == 2:
            limit = self.sync_limit(key[0])
            return await self.adapter.get_group(key[0], key[1], limit=limit)
        return await self.adapter.get_item_snapshot(key[0], key[1], key[2])

    async def page(
        self, sub: HubSubscription, before: str | None, limit: int | None
    ) -> tuple[str, str] | None:
        """Send ``sub``'s connection the page of its group before the cursor ``before``.

        Returns:
            None once the page is queued, else ``(error code, message)`` for the client.
        """
        request = sub.request
        hub = self.hub
        count = limit or self.sync_limit(request.stream) or DEFAULT_PAGE_LIMIT
        capture = hub.capture(request.stream, request.group)
        try:
            snapshot = await self.adapter.get_group(
                request.stream, request.group, limit=count, before=before
            )
        except ValidationError as exc:
            return INVALID_MESSAGE, f"page: {exc.message}"
        except StoreError as exc:
            logger.error("page of %s failed: %s", request.key, exc)
            return STORE_UNAVAILABLE, "storage unavailable, retry later"
        finally:
            hub.release(capture)
        # From here to the send nothing awaits: no change can slip between the page and the feed.
        items = capture.apply(snapshot)
        frame = encode_page(
            request.stream, request.group, items, hub.clock.next(), more=snapshot.more
        )
        if frame.size > sub.conn.max_sync_bytes:
            return SYNC_TOO_LARGE, (
                f"the page of {request.key} is larger than this connection may queue "
                f"({sub.conn.max_sync_bytes} bytes); ask for a smaller limit"
            )
        if sub.is_removed:
            return None
        hub.paged(sub, snapshot.seq)
        sub.conn.send(frame)
        return None

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
