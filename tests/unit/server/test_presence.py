"""The presence tracker's rules with a real hub, recording connections and a recording backend.

No sockets and no timing: ``flush()`` runs one round of the worker, so every rule (one member
per user, coalescing, retries after storage errors, re-registration after a reset, memory going
back to nothing) is checked step by step.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from surge.errors import StoreError
from surge.protocol.codec import encode_group_sync
from surge.protocol.messages import SubscriptionRequest
from surge.protocol.session import Session
from surge.server.connection import Connection
from surge.server.hub import Hub, HubSubscription
from surge.server.outbox import Outbox
from surge.server.presence import MAX_META_BYTES, PresenceTracker
from surge.steps.config import StreamConfig
from surge.steps.registry import Registry
from surge.streams.presence import LocalPresence, PresenceMember


class RecordingBackend:
    """A ``PresenceBackend`` that records each call and can be told to fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.members_by_group: dict[tuple[str, str], dict[str, PresenceMember]] = {}
        self.failures = 0
        self.on_reset: Any = None

    def _maybe_fail(self) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("Redis is down", retryable=True)

    async def add(self, stream: str, group: str, member: PresenceMember) -> None:
        self._maybe_fail()
        self.calls.append(("add", group, member["id"]))
        self.members_by_group.setdefault((stream, group), {})[member["id"]] = member

    async def remove(self, stream: str, group: str, member_id: str) -> None:
        self._maybe_fail()
        self.calls.append(("remove", group, member_id))
        self.members_by_group.get((stream, group), {}).pop(member_id, None)

    async def members(self, stream: str, group: str) -> list[PresenceMember]:
        self._maybe_fail()
        members = self.members_by_group.get((stream, group), {})
        return [members[k] for k in sorted(members)]

    async def maintain(self) -> None:
        return None

    async def close(self) -> None:
        return None


def registry(**options: Any) -> Registry:
    stream = StreamConfig(name="room", schema={"type": "object"}, presence=True, **options)
    return Registry.build([(stream, None)], [])


def setup(**options: Any) -> tuple[Hub, PresenceTracker, RecordingBackend]:
    hub = Hub()
    backend = RecordingBackend()
    reg = registry(presence_key="userId", **options)
    tracker = PresenceTracker(backend, lambda: reg, hub.clock)
    hub.presence = tracker
    return hub, tracker, backend


def conn(context: Any = None) -> Connection:
    return Connection(Session(), Outbox(1000), context)


def join(hub: Hub, c: Connection, group: str = "g", sid: str = "s1") -> HubSubscription:
    request = SubscriptionRequest(stream="room", group=group, id=None, subscription_id=sid)
    sub = hub.subscribe(c, request)
    hub.activate(sub, encode_group_sync("room", group, [], hub.clock.next()), 0)
    return sub


def presence_sent(c: Connection) -> list[dict[str, Any]]:
    frames = [orjson.loads(f.text) for f in c.outbox._frames]
    return [
        f["event"]["event"]["data"]
        for f in frames
        if f["event"]["type"] == "event" and f["event"]["event"]["type"] == "presence"
    ]


async def flush(tracker: PresenceTracker) -> bool:
    return await tracker._flush()


async def test_tabs_of_one_user_are_one_add_and_one_remove() -> None:
    hub, tracker, backend = setup()
    tab1, tab2 = conn({"userId": "alice"}), conn({"userId": "alice"})
    first = join(hub, tab1)
    second = join(hub, tab2)
    assert await flush(tracker)
    assert backend.calls == [("add", "g", "alice")]
    assert (
        presence_sent(tab1)
        == presence_sent(tab2)
        == [{"action": "sync", "members": [{"id": "alice"}]}]
    )
    hub.unsubscribe(first)
    assert await flush(tracker)
    assert backend.calls == [("add", "g", "alice")]  # one tab gone: nothing
    hub.unsubscribe(second)
    assert await flush(tracker)
    assert backend.calls == [("add", "g", "alice"), ("remove", "g", "alice")]
    assert tracker.sizes() == dict.fromkeys(tracker.sizes(), 0)


async def test_a_tab_that_leaves_and_comes_back_before_the_worker_costs_nothing() -> None:
    hub, tracker, backend = setup()
    c = conn({"userId": "alice"})
    join(hub, c)
    assert await flush(tracker)
    hub.unsubscribe(hub.find(c, SubscriptionRequest("room", "g", None, "s1")))  # type: ignore[arg-type]
    join(hub, c, sid="s2")  # a reload: gone and back in one go
    assert await flush(tracker)
    assert backend.calls == [("add", "g", "alice")]


async def test_keyless_connections_are_members_of_their_own() -> None:
    hub, tracker, backend = setup()
    join(hub, conn(None))
    join(hub, conn({"name": "no user id"}))
    assert await flush(tracker)
    ids = [call[2] for call in backend.calls]
    assert len(set(ids)) == 2 and all(i.startswith(f"conn-{tracker.instance}-") for i in ids)


async def test_item_subscriptions_and_streams_without_presence_are_not_counted() -> None:
    hub, tracker, backend = setup()
    c = conn({"userId": "alice"})
    item = SubscriptionRequest(stream="room", group="g", id="i1", subscription_id="s1")
    hub.activate(hub.subscribe(c, item), encode_group_sync("room", "g", [], 1), 0)
    other = SubscriptionRequest(stream="plain", group="g", id=None, subscription_id="s2")
    hub.activate(hub.subscribe(c, other), encode_group_sync("plain", "g", [], 2), 0)
    assert await flush(tracker)
    assert backend.calls == [] and presence_sent(c) == []


async def test_storage_errors_keep_the_members_dirty_until_they_go_through() -> None:
    hub, tracker, backend = setup()
    c = conn({"userId": "alice"})
    join(hub, c)
    backend.failures = 1
    assert not await flush(tracker)
    assert backend.calls == [] and presence_sent(c) == []
    assert not tracker.is_idle()
    assert await flush(tracker)
    assert backend.calls == [("add", "g", "alice")]
    assert presence_sent(c) == [{"action": "sync", "members": [{"id": "alice"}]}]
    assert tracker.is_idle()


async def test_a_reset_registers_every_member_again_and_sends_fresh_lists() -> None:
    hub, tracker, backend = setup()
    alice, bob = conn({"userId": "alice"}), conn({"userId": "bob"})
    join(hub, alice)
    join(hub, bob)
    assert await flush(tracker)
    backend.members_by_group.clear()  # as when Redis lost its data
    backend.calls.clear()
    tracker._reset()
    assert await flush(tracker)
    assert sorted(backend.calls) == [("add", "g", "alice"), ("add", "g", "bob")]
    assert presence_sent(alice)[-1] == {
        "action": "sync",
        "members": [{"id": "alice"}, {"id": "bob"}],
    }


async def test_a_resynced_subscription_gets_a_fresh_list_and_is_not_counted_twice() -> None:
    hub, tracker, backend = setup()
    c = conn({"userId": "alice"})
    sub = join(hub, c)
    assert await flush(tracker)
    for again in hub.resync_all():  # a feed gap: every subscription is synced again
        hub.activate(again, encode_group_sync("room", "g", [], hub.clock.next()), 0)
    assert await flush(tracker)
    assert backend.calls == [("add", "g", "alice")]
    assert len(presence_sent(c)) == 2
    hub.unsubscribe(sub)
    assert await flush(tracker)
    assert backend.calls[-1] == ("remove", "g", "alice")


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        (["name"], {"name": "Alice"}),
        (lambda ctx: {"initial": ctx["name"][0]}, {"initial": "A"}),
        (lambda ctx: {"blob": "x" * MAX_META_BYTES}, None),  # too big: dropped
        (lambda ctx: {"when": object()}, None),  # not JSON: dropped
        (lambda ctx: 1 / 0, None),  # raises: dropped, the member still counts
    ],
)
async def test_member_metadata(meta: Any, expected: dict[str, Any] | None) -> None:
    hub, tracker, backend = setup(presence_meta=meta)
    c = conn({"userId": "alice", "name": "Alice"})
    join(hub, c)
    assert await flush(tracker)
    (member,) = backend.members_by_group[("room", "g")].values()
    assert member.get("meta") == expected
    assert member["id"] == "alice"


async def test_a_presence_key_callable_and_bad_ids() -> None:
    hub, tracker, backend = setup()
    reg = registry(presence_key=lambda ctx: ctx.get("sub"))
    tracker._registry = lambda: reg
    join(hub, conn({"sub": 42}))  # an int id is used as its string
    join(hub, conn({"sub": "x" * 10_000}))  # too long for an id: the connection counts
    assert await flush(tracker)
    ids = sorted(call[2] for call in backend.calls)
    assert ids[0] == "42" and ids[1].startswith("conn-")


async def test_local_presence_announces_first_join_and_last_leave_to_the_hub() -> None:
    hub = Hub()
    watcher = conn()
    join(hub, watcher)
    local = LocalPresence(hub.dispatch)
    await local.add("room", "g", {"id": "alice"})
    await local.add("room", "g", {"id": "alice"})
    await local.remove("room", "g", "alice")
    await local.remove("room", "g", "alice")
    assert presence_sent(watcher) == [
        {"action": "join", "member": {"id": "alice"}},
        {"action": "leave", "member": {"id": "alice"}},
    ]
    assert local.group_count() == 0


async def test_the_counts_metrics_read_follow_members_writes_and_failures() -> None:
    hub, tracker, backend = setup()
    alice1, alice2, bob = (
        conn({"userId": "alice"}),
        conn({"userId": "alice"}),
        conn({"userId": "bob"}),
    )
    first = join(hub, alice1)
    join(hub, alice2)  # a second tab: the same member
    join(hub, alice1, group="g2", sid="s2")  # another group: another member
    join(hub, bob)
    assert tracker.members_by_stream() == {"room": 3}
    assert tracker.pending == 3 and tracker.writes == {"add": 0, "remove": 0}
    backend.failures = 1
    assert not await flush(tracker)
    # The batch runs concurrently: the one failed call stays dirty, the other two went through.
    assert tracker.failures == 1 and tracker.pending == 1 and tracker.writes["add"] == 2
    assert await flush(tracker)
    assert tracker.pending == 0 and tracker.writes == {"add": 3, "remove": 0}
    hub.unsubscribe(first)  # alice's other tab stays in g
    assert tracker.members_by_stream() == {"room": 3} and tracker.pending == 0
    hub.unsubscribe_connection(alice1, [SubscriptionRequest("room", "g2", None, "s2")])
    hub.unsubscribe_connection(alice2, [SubscriptionRequest("room", "g", None, "s1")])
    hub.unsubscribe_connection(bob, [SubscriptionRequest("room", "g", None, "s1")])
    assert tracker.members_by_stream() == {} and tracker.pending == 3
    assert await flush(tracker)
    assert tracker.writes == {"add": 3, "remove": 3} and tracker.failures == 1
    assert tracker.sizes() == dict.fromkeys(tracker.sizes(), 0)


async def test_members_being_written_still_count_as_pending() -> None:
    hub, tracker, backend = setup()
    started, release = asyncio.Event(), asyncio.Event()
    add = backend.add

    async def slow_add(stream: str, group: str, member: PresenceMember) -> None:
        started.set()
        await release.wait()  # a backend that is away: the call hangs until its timeout
        await add(stream, group, member)

    backend.add = slow_add  # type: ignore[method-assign]
    join(hub, conn({"userId": "alice"}))
    assert tracker.pending == 1
    flushing = asyncio.create_task(flush(tracker))
    await started.wait()
    assert tracker.pending == 1  # taken from the dirty set, not written yet
    release.set()
    assert await flushing
    assert tracker.pending == 0 and tracker.writes["add"] == 1
