"""Syncs: the answer to a join, and fresh syncs for every subscription after a feed gap.

``Syncer.sync`` sends the sync of one pending hub subscription and makes it live. The encoded
sync comes from the hub's ``SyncCache`` (one snapshot read and one encode per key until the key
changes); a sync larger than its connection's byte cap is refused, never queued.

Windowed groups (protocol.md section 5): for a stream with ``StreamConfig(sync_limit=N)`` the
snapshot of a group key is its newest N items, and the sync carries ``more``. ``Syncer.page``
answers a ``page`` request: it reads the older items under a ``Hub.capture`` (so the page is
never older than what the connection was sent meanwhile) and sends them to the connection.

A join carrying ``since`` (docs/protocol.md section 3) is resumed instead when the epoch is the
storage's and ``read_history`` still holds every message after the offset: the client gets one
``resume`` frame and the missed messages (those of its item, for an item subscription), encoded
once per (key, offset) in the hub's ``ReplayCache`` and joined into one ``FrameBlock`` (one
outbox entry and one write per connection, the same bytes), with the same pending-buffer cut as
a sync (the history's ``seq``). Otherwise, or when the replay would not fit the connection's outbox
(frames or bytes), it gets the usual sync marked ``"recovered": false``. A fresh sync after a
feed gap is a plain sync, whatever the join carried. A subscription that asked for deltas is
replayed an ``update(ops)`` as its ``patch`` (as it was live: the client holds the item's
previous state, its own copy brought forward in order), every other change whole. One that
also asked for the compact form gets the missed messages inside the ``resume`` frame itself
(``[offset, kind, id, payload]`` entries, the address, epoch and timestamp stated once): one
frame, about half the bytes.

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
from surge.protocol.blocks import FrameBlock
from surge.protocol.codec import (
    Frame,
    encode_change,
    encode_event,
    encode_group_sync,
    encode_item_sync,
    encode_page,
    encode_patch,
    encode_resume,
    encode_resume_batch,
    replay_change,
    replay_event,
    unrecovered,
)
from surge.protocol.codes import INVALID_MESSAGE, STORE_UNAVAILABLE, SYNC_TOO_LARGE
from surge.protocol.messages import SubscriptionKey, SubscriptionRequest
from surge.server.hub import Hub, HubSubscription
from surge.server.replay_cache import Replay
from surge.server.stats import STATS
from surge.server.sync_cache import CachedSync
from surge.streams.adapter import StreamAdapter
from surge.streams.feed import Change, GroupSnapshot

__all__ = ["DEFAULT_PAGE_LIMIT", "Syncer", "encode_sync"]

logger = logging.getLogger(__name__)

DEFAULT_PAGE_LIMIT = 50
"""Items per ``page`` answer when the request gives no ``limit`` and the stream no sync_limit."""


def encode_sync(
    request: SubscriptionRequest, snapshot: GroupSnapshot, ts: int, epoch: str | None = None
) -> Frame:
    """The sync frame answering ``request`` from ``snapshot`` (at its ``seq``, given ``epoch``)."""
    offset = snapshot.seq if epoch else None
    if request.id is None:
        return encode_group_sync(
            request.stream,
            request.group,
            snapshot.items,
            ts,
            more=snapshot.more,
            offset=offset,
            epoch=epoch,
        )
    item = snapshot.items[0] if snapshot.items else None
    return encode_item_sync(
        request.stream, request.group, request.id, item, ts, offset=offset, epoch=epoch
    )


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
        hub.epoch = self._epoch

    def _epoch(self) -> str:
        return self.adapter.epoch

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
        is_resume = snapshot is None and request.since is not None
        if is_resume:
            try:
                replay = await self._replay(request)
            except StoreError as exc:
                logger.error("resume of %s failed: %s", request.key, exc)
                return STORE_UNAVAILABLE
            if replay is not None:
                block, seq = replay
                # What the outbox could not take at once is a sync instead (recovered: false).
                conn = sub.conn
                if block.count < conn.pending_limit and block.size <= conn.max_sync_bytes:
                    STATS.resumes += 1
                    hub.activate(sub, block, seq)
                    return None

        async def load() -> CachedSync:
            read = await self.snapshot(request.key)
            return encode_sync(
                request, read, hub.clock.next(), self.adapter.epoch or None
            ), read.seq

        try:
            if snapshot is None:
                sync, seq = await hub.sync_cache.get(request.key, load)
            else:
                sync = encode_sync(request, snapshot, hub.clock.next(), self.adapter.epoch or None)
                seq = snapshot.seq
        except StoreError as exc:
            logger.error("sync of %s failed: %s", request.key, exc)
            return STORE_UNAVAILABLE
        if sync.size > sub.conn.max_sync_bytes:
            return SYNC_TOO_LARGE
        # Stamped now: a cached sync is older than what the client may have seen before.
        ts = hub.clock.next()
        hub.activate(sub, unrecovered(sync, ts) if is_resume else sync.restamped(ts), seq)
        return None

    async def _replay(self, request: SubscriptionRequest) -> Replay:
        """The resume of ``request`` from its ``since``, or None when it cannot be honoured."""
        since = request.since
        epoch = self.adapter.epoch
        if since is None or not epoch or since.epoch != epoch:
            return None
        hub = self.hub

        async def load() -> Replay:
            history = await self.adapter.read_history(request.stream, request.group, since.offset)
            if history is None or self.adapter.epoch != epoch:
                return None
            messages = history.messages
            if request.id is not None:
                messages = [m for m in messages if m.id == request.id]
            clock = hub.clock
            deltas = request.deltas
            if request.compact:
                # One frame: the missed messages as entries (protocol.md section 3).
                entries = [
                    replay_change(m, deltas) if isinstance(m, Change) else replay_event(m)
                    for m in messages
                ]
                frame = encode_resume_batch(
                    request, since.offset, entries, history.seq, epoch, clock.next()
                )
                return FrameBlock([frame]), history.seq
            frames = [
                encode_resume(
                    request, since.offset, len(messages), history.seq, epoch, clock.next()
                )
            ]
            for m in messages:
                if not isinstance(m, Change):
                    frames.append(encode_event(m, clock.next(), epoch))
                elif deltas and m.ops is not None and m.kind == "update":
                    # As it was live: the client's copy is the item's previous state.
                    patch = encode_patch(m, clock.next(), epoch)
                    frames.append(patch)
                else:
                    frames.append(encode_change(m, clock.next(), epoch))
            return FrameBlock(frames), history.seq

        return await hub.replay_cache.get((request.key, since.offset, request.patch_form), load)

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
