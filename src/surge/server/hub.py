"""The fan-out hub: routes every feed message to the connections subscribed to it.

Hot path: ``dispatch`` is the adapter's ``FeedSink``. It encodes a message once (only if someone
listens), looks up the group key and, for item-level messages, the item key, and puts the same
``Frame`` into each target connection's outbox, once per connection even when several of its
subscriptions match (the clients route one frame to every matching subscription).

No change is lost between a sync's snapshot and the live feed: ``subscribe`` registers the
subscription *pending* before the snapshot is read; frames that arrive meanwhile are buffered on
it with their ``seq``; ``activate`` sends the sync and then only the buffered changes the snapshot
does not reflect (``seq > snapshot.seq``) plus buffered ephemeral events. So a client never gets an
older change after a newer sync, and never misses a newer one.

Presence (``surge.server.presence``) hooks in at the two moments it needs, via ``presence``:
a group subscription going live (``activate``) and any subscription going away (``unsubscribe``).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from surge.protocol.codec import Frame, encode_change, encode_event
from surge.protocol.messages import SubscriptionKey, SubscriptionRequest
from surge.server.clock import EnvelopeClock
from surge.server.sync_cache import SyncCache
from surge.streams.feed import Change, FeedMessage, Resync

if TYPE_CHECKING:
    from surge.server.connection import Connection

__all__ = ["FANOUT_SAMPLE_EVERY", "Hub", "HubSubscription", "PresenceHooks"]

FANOUT_SAMPLE_EVERY = 16
"""With ``Hub.on_fanout`` set, one fanned-out message in this many is timed (metrics)."""


class HubSubscription:
    """One live or pending subscription of one connection."""

    __slots__ = ("conn", "is_removed", "pending", "request")

    def __init__(self, conn: Connection, request: SubscriptionRequest) -> None:
        self.conn = conn
        self.request = request
        # While the sync is being prepared: frames to deliver after it, with their seq
        # (None for ephemeral events, which are always delivered).
        self.pending: list[tuple[Frame, int | None]] | None = []
        self.is_removed = False


class PresenceHooks(Protocol):
    """What the hub tells presence; both calls are synchronous and must not wait."""

    def on_live(self, sub: HubSubscription) -> None:
        """A group subscription's sync was sent: it is live (again, after a feed gap)."""
        ...

    def on_gone(self, sub: HubSubscription) -> None:
        """A subscription was removed."""
        ...


class Hub:
    """Subscription routing table plus the fan-out of feed messages."""

    def __init__(
        self,
        clock: EnvelopeClock | None = None,
        on_resync: Callable[[list[HubSubscription]], None] | None = None,
    ) -> None:
        self.clock = clock or EnvelopeClock()
        self.sync_cache = SyncCache()
        self._routes: dict[SubscriptionKey, dict[Connection, list[HubSubscription]]] = {}
        self.frames_encoded = 0
        # Called with the subscriptions put back into pending by a Resync; they need new syncs.
        self.on_resync = on_resync
        self.on_fanout: Callable[[float], None] | None = None
        """Fan-out latency sampling (metrics): one message in ``FANOUT_SAMPLE_EVERY`` that has
        subscribers is timed from its arrival here until its frames were written to every
        writable connection (the loop's next flush), and this is told the ``perf_counter`` at
        its arrival. None (the default): one attribute test per message."""
        self._fanout_countdown = FANOUT_SAMPLE_EVERY
        self.presence: PresenceHooks | None = None

    # -- subscriptions -------------------------------------------------------------------------

    def subscribe(self, conn: Connection, request: SubscriptionRequest) -> HubSubscription:
        """Register a pending subscription: live frames are buffered until ``activate``."""
        sub = HubSubscription(conn, request)
        self._routes.setdefault(request.key, {}).setdefault(conn, []).append(sub)
        return sub

    def activate(self, sub: HubSubscription, sync: Frame, snapshot_seq: int) -> None:
        """Send the sync, then the buffered frames newer than the snapshot; go live."""
        pending = sub.pending
        sub.pending = None
        if sub.is_removed or pending is None:
            return
        conn = sub.conn
        conn.send(sync)
        for frame, seq in pending:
            if seq is None or seq > snapshot_seq:
                conn.send(frame)
        if self.presence is not None and sub.request.id is None:
            self.presence.on_live(sub)

    def unsubscribe(self, sub: HubSubscription) -> None:
        """Remove a subscription; idempotent."""
        if sub.is_removed:
            return
        sub.is_removed = True
        sub.pending = None
        if self.presence is not None:
            self.presence.on_gone(sub)
        key = sub.request.key
        by_conn = self._routes.get(key)
        if by_conn is None:
            return
        subs = by_conn.get(sub.conn)
        if subs is None:
            return
        subs.remove(sub)
        if not subs:
            del by_conn[sub.conn]
            if not by_conn:
                del self._routes[key]

    def find(self, conn: Connection, request: SubscriptionRequest) -> HubSubscription | None:
        """The subscription of ``conn`` made for ``request`` (live or pending), if any."""
        for sub in self._routes.get(request.key, {}).get(conn, ()):
            if sub.request == request:
                return sub
        return None

    def unsubscribe_connection(self, conn: Connection, requests: list[SubscriptionRequest]) -> None:
        """Remove every subscription ``conn`` holds for ``requests`` (the connection ended)."""
        for request in requests:
            sub = self.find(conn, request)
            if sub is not None:
                self.unsubscribe(sub)

    def subscriptions_by_stream(self) -> dict[str, int]:
        """How many subscriptions each stream has (for metrics; walks the routing table)."""
        counts: dict[str, int] = {}
        for key, by_conn in self._routes.items():
            counts[key[0]] = counts.get(key[0], 0) + sum(len(subs) for subs in by_conn.values())
        return counts

    def top_groups(self, limit: int) -> list[tuple[str, str, int]]:
        """The ``limit`` (stream, group) pairs with the most subscriptions (group and item level
        together), most first: for the admin view, never for metrics (one entry per group)."""
        counts: dict[tuple[str, str], int] = {}
        for key, by_conn in self._routes.items():
            pair = (key[0], key[1])
            counts[pair] = counts.get(pair, 0) + sum(len(subs) for subs in by_conn.values())
        top = heapq.nlargest(limit, counts.items(), key=lambda entry: (entry[1], entry[0]))
        return [(stream, group, count) for (stream, group), count in top]

    def subscriber_count(self, key: SubscriptionKey) -> int:
        """How many connections subscribe to ``key`` (for tests and the workbench)."""
        return len(self._routes.get(key, ()))

    # -- fan-out -------------------------------------------------------------------------------

    def resync_all(self) -> list[HubSubscription]:
        """Put every live subscription back into pending; the caller must sync each again."""
        again = []
        for by_conn in self._routes.values():
            for subs in by_conn.values():
                for sub in subs:
                    if sub.pending is None:
                        sub.pending = []
                        again.append(sub)
        return again

    def dispatch(self, message: FeedMessage) -> None:
        """Deliver one change or ephemeral event to every subscribed connection."""
        if isinstance(message, Resync):
            self.sync_cache.clear()
            subs = self.resync_all()
            if self.on_resync is not None:
                self.on_resync(subs)
            return
        if isinstance(message, Change):
            self.sync_cache.invalidate(message.stream, message.group, message.id)
        group_key = (message.stream, message.group)
        group_subs = self._routes.get(group_key)
        item_subs = (
            self._routes.get((message.stream, message.group, message.id))
            if message.id is not None
            else None
        )
        if group_subs is None and item_subs is None:
            return
        sampled = 0.0
        if self.on_fanout is not None:
            self._fanout_countdown -= 1
            if self._fanout_countdown <= 0:
                self._fanout_countdown = FANOUT_SAMPLE_EVERY
                sampled = time.perf_counter()
        ts = self.clock.next()
        if isinstance(message, Change):
            frame = encode_change(message, ts)
            seq: int | None = message.seq
        else:
            frame = encode_event(message, ts)
            seq = None
        self.frames_encoded += 1
        if item_subs is None or group_subs is None:
            # One key: each connection appears once, no de-duplication needed.
            for conn, subs in (item_subs or group_subs or {}).items():
                if _deliver_now(subs, frame, seq):
                    conn.send(frame)
        else:
            targets: dict[Connection, None] = {}
            for by_conn in (group_subs, item_subs):
                for conn, subs in by_conn.items():
                    if _deliver_now(subs, frame, seq):
                        targets[conn] = None
            for conn in targets:
                conn.send(frame)
        if sampled and self.on_fanout is not None:
            # Scheduled after the puts: the flusher they scheduled (or one already pending) runs
            # first, so this runs once the frames were written.
            asyncio.get_running_loop().call_soon(self.on_fanout, sampled)


def _deliver_now(subs: list[HubSubscription], frame: Frame, seq: int | None) -> bool:
    """Buffer the frame on pending subscriptions; True if a live one wants it now."""
    if len(subs) == 1 and subs[0].pending is None:
        return True
    live = False
    for sub in subs:
        pending = sub.pending
        if pending is None:
            live = True
        elif len(pending) < sub.conn.pending_limit:
            pending.append((frame, seq))
        else:
            # The sync takes so long that the backlog exceeds what the outbox may hold:
            # the same slow-consumer policy applies.
            sub.conn.drop_slow()
    return live
