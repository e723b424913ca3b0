"""The fan-out hub: routes every feed message to the connections subscribed to it.

Hot path: ``dispatch`` is the adapter's ``FeedSink``. It encodes a message once (only if someone
listens), looks up the group key and, for item-level messages, the item key, and puts the same
``Frame`` into each target connection's outbox, once per connection even when several of its
subscriptions match (the clients route one frame to every matching subscription).

No change is lost between a sync's snapshot and the live feed: ``subscribe`` registers the
subscription *pending* before the snapshot is read; frames that arrive meanwhile are buffered on
it with their ``seq``; ``activate`` sends the sync and then only the buffered changes the snapshot
does not reflect (``seq > snapshot.seq``), events included (they share the sequence; an event
without a ``seq`` is always delivered). So a client never gets an older change after a newer
sync, and never misses a newer one. A resumed join (``Syncer``) is the same with the ``resume``
frame and the replayed history in place of the sync, and the history's ``seq`` as the cut.

Offsets: with ``epoch`` set (``Syncer`` points it at the adapter's), every change, patch and
event frame carries its ``seq`` as ``"offset"`` and the epoch, in the one frame shared by every
connection. Each dispatched message also drops the replays cached for its group.

Presence (``surge.server.presence``) hooks in at the two moments it needs, via ``presence``:
a group subscription going live (``activate``) and any subscription going away (``unsubscribe``).

Deltas (protocol.md section 4): a change with ``ops`` whose keys have subscriptions that asked for
deltas goes through ``_fan_out_patch``: a connection gets the ``patch`` frame when every live
subscription of it that the change concerns asked for deltas and holds the item's previous state
(its sync or page reflects no change newer than this one: ``synced_seq < seq``), else the
whole-item frame (``PatchFrame.full``). Each form is encoded at most once per change, the patch
only when someone asked for deltas. Pending subscriptions buffer the whole item: their buffered
frames are re-delivered after their sync, and a repeated whole item is harmless where a repeated
patch would apply twice. Why ``synced_seq``: a local store's change may be committed, read by a
snapshot and only then dispatched, so a change the client's copy already reflects can still come;
as a whole item it is harmless too.

Pages (protocol.md section 5): while a ``page`` request reads older items, ``capture`` records the
changes dispatched for its group; ``PageCapture.apply`` brings the page's items up to the newest
of them, so the page the client gets is never older than what it was already sent.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from surge.protocol.codec import Frame, PatchFrame, encode_change, encode_event, encode_patch
from surge.protocol.messages import SubscriptionKey, SubscriptionRequest
from surge.server.clock import EnvelopeClock
from surge.server.replay_cache import ReplayCache
from surge.server.sync_cache import SyncCache
from surge.streams.feed import Change, FeedMessage, GroupSnapshot, Resync

if TYPE_CHECKING:
    from surge.server.connection import Connection
    from surge.server.outbox import Flusher

__all__ = ["FANOUT_SAMPLE_EVERY", "Hub", "HubSubscription", "PageCapture", "PresenceHooks"]

FANOUT_SAMPLE_EVERY = 16
"""With ``Hub.on_fanout`` set, one fanned-out message in this many is timed (metrics)."""


class HubSubscription:
    """One live or pending subscription of one connection."""

    __slots__ = ("conn", "is_removed", "pending", "request", "synced_seq")

    def __init__(self, conn: Connection, request: SubscriptionRequest) -> None:
        self.conn = conn
        self.request = request
        # While the sync is being prepared: frames to deliver after it, with their seq
        # (None for ephemeral events, which are always delivered).
        self.pending: list[tuple[Frame, int | None]] | None = []
        self.is_removed = False
        # The newest seq the client's copy may reflect (its sync's or a page's snapshot): a
        # change up to it must not reach this subscription as a patch.
        self.synced_seq = -1


class PageCapture:
    """The changes of one group dispatched while a page of it is being read."""

    __slots__ = ("changes", "key")

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.changes: list[Change] = []

    def apply(self, snapshot: GroupSnapshot) -> list[dict[str, Any]]:
        """The page's items with every captured change newer than the snapshot applied: an
        item updated since is its newest value, one deleted since is gone (creates are newer
        items, never part of an older page)."""
        newer = [change for change in self.changes if change.seq > snapshot.seq]
        if not newer:
            return snapshot.items
        items = {item["id"]: item for item in snapshot.items}
        for change in newer:
            if change.id in items:
                if change.kind == "delete":
                    del items[change.id]
                else:
                    items[change.id] = change.item
        return list(items.values())


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
        self.replay_cache = ReplayCache()
        self.epoch: Callable[[], str] | None = None
        """The storage's current epoch (None or '': frames carry no offsets)."""
        self._routes: dict[SubscriptionKey, dict[Connection, list[HubSubscription]]] = {}
        # How many subscriptions of each key asked for deltas: no patch is encoded without one.
        self._delta_subs: dict[SubscriptionKey, int] = {}
        # How many pending subscriptions each key has: a key without one delivers to every
        # connection it routes to, with no look at their subscriptions.
        self._pending_subs: dict[SubscriptionKey, int] = {}
        self._captures: dict[tuple[str, str], list[PageCapture]] = {}
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
        self.call_after_writes: Callable[[Callable[[float], object], float], None] | None = None
        """Runs a callback once the frames queued so far were written (the runtime sets the
        flusher's ``call_after_flush``); None: at the end of the loop iteration."""
        self.flusher: Flusher | None = None
        """The loop's flusher (the runtime sets it): a message after a quieter period is written
        to its connections during ``dispatch`` (``Flusher.begin_fan_out``); None: queued only."""

    # -- subscriptions -------------------------------------------------------------------------

    def subscribe(self, conn: Connection, request: SubscriptionRequest) -> HubSubscription:
        """Register a pending subscription: live frames are buffered until ``activate``."""
        sub = HubSubscription(conn, request)
        key = request.key
        self._routes.setdefault(key, {}).setdefault(conn, []).append(sub)
        if request.deltas:
            self._delta_subs[key] = self._delta_subs.get(key, 0) + 1
        self._pending_subs[key] = self._pending_subs.get(key, 0) + 1
        return sub

    def _went_live(self, key: SubscriptionKey) -> None:
        """One pending subscription of ``key`` is live or gone."""
        left = self._pending_subs[key] - 1
        if left > 0:
            self._pending_subs[key] = left
        else:
            del self._pending_subs[key]

    def activate(self, sub: HubSubscription, sync: Frame | list[Frame], snapshot_seq: int) -> None:
        """Send the sync (or a resume and its replay), then the buffered frames newer than
        ``snapshot_seq``; go live."""
        pending = sub.pending
        if sub.is_removed or pending is None:
            return
        sub.pending = None
        self._went_live(sub.request.key)
        sub.synced_seq = snapshot_seq
        conn = sub.conn
        if isinstance(sync, Frame):
            conn.send(sync)
        else:
            for frame in sync:
                conn.send(frame)
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
        if sub.pending is not None:
            sub.pending = None
            self._went_live(sub.request.key)
        if self.presence is not None:
            self.presence.on_gone(sub)
        key = sub.request.key
        if sub.request.deltas:
            left = self._delta_subs.get(key, 0) - 1
            if left > 0:
                self._delta_subs[key] = left
            else:
                self._delta_subs.pop(key, None)
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

    # -- pages ---------------------------------------------------------------------------------

    def capture(self, stream: str, group: str) -> PageCapture:
        """Start recording the changes of (stream, group) for a page being read; ``release`` it."""
        capture = PageCapture((stream, group))
        self._captures.setdefault(capture.key, []).append(capture)
        return capture

    def release(self, capture: PageCapture) -> None:
        """Stop recording for ``capture``; idempotent."""
        captures = self._captures.get(capture.key)
        if captures is not None and capture in captures:
            captures.remove(capture)
            if not captures:
                del self._captures[capture.key]

    def paged(self, sub: HubSubscription, snapshot_seq: int) -> None:
        """A page read at ``snapshot_seq`` is being sent to ``sub``: changes up to it that are
        still to come go to it whole (the page may already reflect them)."""
        sub.synced_seq = max(sub.synced_seq, snapshot_seq)

    # -- fan-out -------------------------------------------------------------------------------

    def resync_all(self) -> list[HubSubscription]:
        """Put every live subscription back into pending; the caller must sync each again."""
        again = []
        pending_subs = self._pending_subs
        for key, by_conn in self._routes.items():
            for subs in by_conn.values():
                for sub in subs:
                    if sub.pending is None:
                        sub.pending = []
                        pending_subs[key] = pending_subs.get(key, 0) + 1
                        again.append(sub)
        return again

    def dispatch(self, message: FeedMessage) -> None:
        """Deliver one change or ephemeral event to every subscribed connection."""
        if isinstance(message, Resync):
            self.sync_cache.clear()
            self.replay_cache.clear()
            subs = self.resync_all()
            if self.on_resync is not None:
                self.on_resync(subs)
            return
        if isinstance(message, Change):
            self.sync_cache.invalidate(message.stream, message.group, message.id)
            if self._captures:
                for capture in self._captures.get((message.stream, message.group), ()):
                    capture.changes.append(message)
        self.replay_cache.invalidate(message.stream, message.group)
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
        epoch = (self.epoch() if self.epoch is not None else None) or None
        flusher = self.flusher
        is_writing = flusher is not None and flusher.begin_fan_out()
        try:
            if isinstance(message, Change):
                if message.ops is not None and self._wants_deltas(message):
                    self._fan_out_patch(encode_patch(message, ts, epoch), group_subs, item_subs)
                    if sampled and self.on_fanout is not None:
                        asyncio.get_running_loop().call_soon(self.on_fanout, sampled)
                    return
                frame = encode_change(message, ts, epoch)
                seq: int | None = message.seq
            else:
                frame = encode_event(message, ts, epoch)
                seq = message.seq or None
            self.frames_encoded += 1
            if item_subs is None or group_subs is None:
                # One key: each connection appears once, no de-duplication needed.
                if group_subs is not None:
                    key: SubscriptionKey = group_key
                    by_conn = group_subs
                else:
                    key = (message.stream, message.group, message.id or "")
                    by_conn = item_subs or {}
                if key not in self._pending_subs:
                    for conn in by_conn:  # every subscription of every one of them is live
                        conn.send(frame)
                else:
                    for conn, subs in by_conn.items():
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
        finally:
            if is_writing and flusher is not None:
                flusher.end_fan_out()
        if sampled and self.on_fanout is not None:
            # After the puts: the flush they scheduled (or one already pending) runs first, so
            # this runs once the frames were written.
            if self.call_after_writes is not None:
                self.call_after_writes(self.on_fanout, sampled)
            else:
                asyncio.get_running_loop().call_soon(self.on_fanout, sampled)

    def _wants_deltas(self, change: Change) -> bool:
        """True when a subscription of the change's group or item asked for deltas."""
        deltas = self._delta_subs
        return bool(deltas) and (
            (change.stream, change.group) in deltas
            or (change.stream, change.group, change.id) in deltas
        )

    def _fan_out_patch(
        self,
        patch: PatchFrame,
        group_subs: dict[Connection, list[HubSubscription]] | None,
        item_subs: dict[Connection, list[HubSubscription]] | None,
    ) -> None:
        """Send each connection the patch or the whole item (see the module docstring)."""
        seq = patch.source.seq
        self.frames_encoded += 1
        choice: dict[Connection, int] = {}
        for by_conn in (group_subs, item_subs):
            if by_conn is None:
                continue
            for conn, subs in by_conn.items():
                wants = _patch_choice(subs, patch, seq)
                if wants > choice.get(conn, _NONE_LIVE):
                    choice[conn] = wants
        for conn, wants in choice.items():
            if wants == _PATCH:
                conn.send(patch)
            elif wants == _COMPACT:
                conn.send(patch.compact)
            elif wants == _WHOLE:
                conn.send(patch.full)


# Ordered: a connection gets the most general form any of its concerned subscriptions needs.
_NONE_LIVE, _COMPACT, _PATCH, _WHOLE = 0, 1, 2, 3


def _patch_choice(subs: list[HubSubscription], patch: PatchFrame, seq: int) -> int:
    """Buffer the whole item on pending subscriptions; say what the live ones need."""
    wants = _NONE_LIVE
    for sub in subs:
        pending = sub.pending
        if pending is not None:
            if len(pending) < sub.conn.pending_limit:
                pending.append((patch.full, seq))
            else:
                sub.conn.drop_slow()
        elif wants != _WHOLE:
            form = sub.request.patch_form if sub.synced_seq < seq else 0
            need = _WHOLE if form == 0 else _PATCH if form == 1 else _COMPACT
            if need > wants:
                wants = need
    return wants


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
